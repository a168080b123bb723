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
    /* A validated batch of confidences and predictions.  NULL, or a
     * non-NULL message from refuse_scalar, makes the entry point
     * KD_ERR_UNSUPPORTED. */
    void (*update)(kd_threshold *th, int64_t n, const int64_t *indices, const float *confidences,
                   const int32_t *predictions);
    void (*weights)(const kd_threshold *th, int64_t n, const float *confidences,
                    const int32_t *predictions, float *weights);
    /* NULL, or why the confidence entry points cannot serve the current
     * parameters (the row ones can); NULL return: they can. */
    const char *(*refuse_scalar)(const kd_threshold *th);
    /* A validated batch of probability rows (c = num_classes, ld >= c;
     * indices non-NULL unless indices_optional, then NULL).  NULL: the handle reduces each row
     * to max / argmax (lowest index on ties) and calls update / weights. */
    void (*update_probs)(kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                         const int64_t *indices);
    void (*weights_probs)(const kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                          float *weights);
    /* The pseudo-labels of weights_probs.  NULL: the argmax of the rows as
     * given (lowest index on ties). */
    void (*labels_probs)(const kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                         int32_t *labels);
    /* A validated batch of labelled rows (kd_threshold_update_labeled_probs).
     * NULL: the algorithm does not use them (KD_ERR_UNSUPPORTED). */
    void (*update_labeled_probs)(kd_threshold *th, int64_t n, const float *probs, int64_t ld);
    int indices_optional; /* 1: no per-sample state, update_probs accepts NULL indices */
    /* Split statistics (kd_threshold_stats_size ...).  stats_size: doubles
     * per round, or 0 with *why = the reason there are none for the current
     * parameters; a NULL stats_size: none ever (per-sample state).
     * local_stats writes [0, size) for a validated batch (n may be 0);
     * local_labeled_stats (NULL: KD_ERR_UNSUPPORTED) its labelled part.
     * check_stats validates a summed buffer whose values are all finite
     * (message "fn: ..."); update_stats applies a valid one. */
    int64_t (*stats_size)(const kd_threshold *th, const char **why);
    void (*local_stats)(const kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                        double *stats);
    void (*local_labeled_stats)(const kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                double *stats);
    kd_status (*check_stats)(const kd_threshold *th, const double *stats, char *err,
                             const char *fn);
    void (*update_stats)(kd_threshold *th, const double *stats);
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
extern const kdi_threshold_algo kdi_threshold_freematch;
extern const kdi_threshold_algo kdi_threshold_softmatch;
extern const kdi_threshold_algo kdi_threshold_adamatch;
extern const kdi_threshold_algo kdi_threshold_dash;
extern const kdi_threshold_algo kdi_threshold_debiaspl;

/* Max and argmax (lowest index on ties) of a row of c >= 1 values. */
static inline float kdi_threshold_row_max(const float *row, int64_t c, int32_t *argmax)
{
    float m = row[0];
    int32_t a = 0;
    for (int64_t j = 1; j < c; j++)
        if (row[j] > m) {
            m = row[j];
            a = (int32_t)j;
        }
    *argmax = a;
    return m;
}

/* Distribution alignment (USB's dist_align hooks): the ratio
 * r_j = (target_j + 1e-6) / (p_model_j + 1e-6), target NULL = uniform 1/c. */
#define KDI_THRESHOLD_ALIGN_EPS 1e-6

static inline void kdi_threshold_align_ratio(int64_t c, const double *target, const double *p_model,
                                             double *ratio)
{
    const double u = 1.0 / (double)c;
    for (int64_t j = 0; j < c; j++)
        ratio[j] = ((target ? target[j] : u) + KDI_THRESHOLD_ALIGN_EPS) /
                   (p_model[j] + KDI_THRESHOLD_ALIGN_EPS);
}

/* Max and argmax (lowest index on ties) of a row aligned with ratio,
 * a_j = q_j r_j / sum_i q_i r_i, in double; a zero row gives 0 and class 0. */
static inline double kdi_threshold_aligned_max(const float *row, int64_t c, const double *ratio,
                                               int32_t *argmax)
{
    double total = 0.0, best = -1.0;
    int32_t arg = 0;
    for (int64_t j = 0; j < c; j++) {
        const double v = (double)row[j] * ratio[j];
        total += v;
        if (v > best) {
            best = v;
            arg = (int32_t)j;
        }
    }
    *argmax = arg;
    return total > 0.0 ? best / total : 0.0;
}

/* sum[j] = sum_k probs[k * ld + j] over n rows, in double. */
static inline void kdi_threshold_column_sums(int64_t n, int64_t c, const float *probs, int64_t ld,
                                             double *sum)
{
    for (int64_t j = 0; j < c; j++)
        sum[j] = 0.0;
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < c; j++)
            sum[j] += probs[k * ld + j];
}

/* An EMA step in double: m s + (1 - m) x. */
static inline double kdi_threshold_ema(double s, double m, double x)
{
    return m * s + (1.0 - m) * x;
}

/* Checks of a summed statistics buffer for check_stats (KD_ERR_INVALID_ARGUMENT
 * naming the index): stats[i] is a count, a whole number in [0, 2^53];
 * stats[first, first + len) are in [0, bound] (bound_of NULL) or in
 * [0, bound_of[k]] each; stats[first, first + len) are counts summing to
 * total. */
kd_status kdi_threshold_stats_count(char *err, const char *fn, const double *stats, int64_t i);
kd_status kdi_threshold_stats_range(char *err, const char *fn, const double *stats, int64_t first,
                                    int64_t len, double bound, const double *bound_of);
kd_status kdi_threshold_stats_hist(char *err, const char *fn, const double *stats, int64_t first,
                                   int64_t len, double total);

/* State files of algorithms whose meta section starts with N and C (u64)
 * and whose data section is an array of f64 (FreeMatch, SoftMatch).
 * kdi_threshold_meta_shape: the meta section has meta_size bytes and N, C
 * are in range (KD_ERR_CORRUPT), *n and *c receive them; call it first in
 * check_meta, then check the algorithm's own fields, then
 * kdi_threshold_data_shape: the data section holds fixed + per_class * C
 * doubles (KD_ERR_CORRUPT) and the shape is the handle's (KD_ERR_MISMATCH). */
kd_status kdi_threshold_meta_shape(const kdi_statefile_reader *r, uint64_t meta_size, uint64_t *n,
                                   uint64_t *c, char *msg);
kd_status kdi_threshold_data_shape(const kd_threshold *h, const kdi_statefile_reader *r, uint64_t n,
                                   uint64_t c, uint64_t fixed, uint64_t per_class, char *msg);
/* The whole validated load of such a file into buf (count doubles), then
 * ok(i, C, value) for each value (KD_ERR_CORRUPT naming the first bad one).
 * On KD_OK the reader is open (the caller takes its parameters from r->meta,
 * commits buf and closes it); on failure it is closed. */
kd_status kdi_threshold_load_f64(kd_threshold *th, const kdi_statefile_kind *kind, const char *path,
                                 uint64_t meta_size, double *buf, int64_t count,
                                 int (*ok)(int64_t i, int64_t c, double v), kdi_statefile_reader *r,
                                 char *msg);

/* An ok of kdi_threshold_load_f64 for states of probabilities: v in [0, 1]. */
int kdi_threshold_value_in_unit(int64_t i, int64_t c, double v);

/* FlexMatch's predictions as int32, for flexmatch.h's layer (no copy). */
const int32_t *kdi_flexmatch_predictions_of(const kd_threshold *th);

/* The names used in messages: kd_threshold_* or the kd_flexmatch_* layer. */
typedef struct {
    const char *prefix; /* "kd_threshold" */
    const char *params; /* "KD_THRESHOLD_PARAM_" */
} kdi_threshold_names;

extern const kdi_threshold_names kdi_threshold_own_names;

/* The entry points with the caller's names (threshold_handle.c). */
kd_status kdi_threshold_create(kd_threshold **out, kd_threshold_algorithm algorithm, int64_t n,
                               int64_t c, char *err, const kdi_threshold_names *nm);
kd_status kdi_threshold_set(kd_threshold *th, const kdi_threshold_names *nm, int32_t key, int type,
                            double real, int64_t integer);
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
