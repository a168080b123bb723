/* Internal: one algorithm of the threshold handle family (kdlib/threshold.h).
 *
 * threshold_handle.c owns everything the algorithms share: the handle, its
 * message, argument checks, the parameter table plumbing (core/params.h),
 * the state-file container (core/statefile.h) and the compatibility names of
 * flexmatch.h.  An algorithm provides one kdi_threshold_algo (its parameters,
 * state, update, weights and state file) and a row in kdi_threshold_algos[]
 * (threshold_handle.c).  CONTRIBUTING.md has the checklist. */
#ifndef KDI_THRESHOLD_ALGO_H
#define KDI_THRESHOLD_ALGO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/params.h"
#include "core/statefile.h"
#include "kdlib/threshold.h"

struct kd_threshold {
    const struct kdi_threshold_algo *algo;
    int64_t num_samples;
    int64_t num_classes;
    void *state; /* the algorithm's */
    char err[KDI_ERROR_SIZE];
};

typedef struct kdi_threshold_algo {
    kd_threshold_algorithm id;
    const char *name;
    const kdi_param_spec *specs; /* the algorithm's own parameters */
    size_t num_specs;

    /* Allocate the state of th (num_samples, num_classes set) with default
     * parameters; 0 on out of memory.  free_state accepts a NULL state. */
    int (*create)(kd_threshold *th);
    void (*free_state)(void *state);
    void (*reset)(kd_threshold *th);
    /* Parameters, already checked against specs (key, type, bounds). */
    void (*set_real)(kd_threshold *th, int32_t key, double value);
    void (*set_int)(kd_threshold *th, int32_t key, int64_t value);
    double (*get_real)(const kd_threshold *th, int32_t key);
    int64_t (*get_int)(const kd_threshold *th, int32_t key);
    /* A validated batch. */
    void (*update)(kd_threshold *th, int64_t n, const int64_t *indices, const float *confidences,
                   const int32_t *predictions);
    void (*weights)(const kd_threshold *th, int64_t n, const float *confidences,
                    const int32_t *predictions, float *weights);
    /* Length of state array `what` (0: the algorithm has none of that type,
     * is_int = 1 for int arrays), and its copy. */
    int64_t (*state_length)(const kd_threshold *th, kd_threshold_state what, int is_int);
    void (*copy_floats)(const kd_threshold *th, kd_threshold_state what, float *out);
    void (*copy_ints)(const kd_threshold *th, kd_threshold_state what, int64_t *out);
    /* State file: write; read with kdi_statefile_load and commit on success
     * (nothing changes on failure).  err receives the reason without the
     * function name. */
    kd_status (*save)(const kd_threshold *th, const char *path, char *err);
    kd_status (*load)(kd_threshold *th, const char *path, char *err);
} kdi_threshold_algo;

extern const kdi_threshold_algo kdi_threshold_flexmatch;

/* FlexMatch's predictions as int32, for flexmatch.h's layer (no copy). */
const int32_t *kdi_flexmatch_predictions_of(const kd_threshold *th);

/* The names used in messages: kd_threshold_* or the kd_flexmatch_* layer. */
typedef struct {
    const char *prefix;  /* "kd_threshold" */
    const char *params;  /* "KD_THRESHOLD_PARAM_" */
} kdi_threshold_names;

extern const kdi_threshold_names kdi_threshold_own_names;

/* The entry points with the caller's names (threshold_handle.c). */
kd_status kdi_threshold_create(kd_threshold **out, kd_threshold_algorithm algorithm, int64_t n,
                               int64_t c, char *err, const kdi_threshold_names *nm);
kd_status kdi_threshold_set(kd_threshold *th, const kdi_threshold_names *nm, int32_t key,
                            int type, double real, int64_t integer);
kd_status kdi_threshold_get(const kd_threshold *th, const kdi_threshold_names *nm, int32_t key,
                            int type, double *real, int64_t *integer);
kd_status kdi_threshold_bounds(kd_threshold_algorithm algorithm, int32_t key, double *lower,
                               double *upper);
kd_status kdi_threshold_update_as(kd_threshold *th, const kdi_threshold_names *nm, int64_t n,
                                  const int64_t *indices, const float *confidences,
                                  const int32_t *predictions);
kd_status kdi_threshold_save_as(const kd_threshold *th, const kdi_threshold_names *nm,
                                const char *path);
kd_status kdi_threshold_load_as(kd_threshold *th, const kdi_threshold_names *nm, const char *path);

#endif
