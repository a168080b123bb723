/* Internal: pieces shared by the cleanlab-compatible functions
 * (src/labels/cleanlab_*.c, include/kdlib/labels.h).  Everything here works
 * in double and follows NumPy's order of operations where cleanlab's results
 * depend on it (pairwise summation, argsort of up to 16 keys). */
#ifndef KDI_CLEANLAB_INTERNAL_H
#define KDI_CLEANLAB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kdlib/core.h"

/* NumPy's np.add.reduce of n doubles with stride (elements): blocks of up to
 * 128 summed with 8 accumulators, larger ranges split in two (pairwise). */
double kdi_cl_sum(const double *a, int64_t n, int64_t stride);

/* One key of a sort: ascending key, equal keys by row, NaN last. */
typedef struct {
    double key;
    int64_t row;
} kdi_cl_key;
void kdi_cl_sort(kdi_cl_key *e, int64_t n);

/* Reorder e so that e[0 .. k) are its k lowest keys in kdi_cl_sort's order
 * (in no particular order among themselves): O(n) expected. */
void kdi_cl_select_lowest(kdi_cl_key *e, int64_t n, int64_t k);

/* The checks every kd_cleanlab_* function starts with: probs and labels
 * non-NULL, the shape, the labels and the probabilities. */
kd_status kdi_cl_check_inputs(const char *fn, int64_t n, int64_t c, const float *probs, int64_t ld,
                              const int32_t *labels, int32_t ignore_index, char *err,
                              size_t err_size);

/* One malloc for several arrays: count[i] elements of size[i] bytes each,
 * every piece 16-byte aligned; *ptr[i] receives the piece.  Returns the block
 * (free it) or NULL when the size overflows or malloc fails. */
void *kdi_cl_alloc(int k, void **ptr[], const size_t count[], const size_t size[]);

/* Given-label counts of the labelled rows (c int64) and the confident
 * thresholds (c doubles).  gather: n doubles of scratch; order and start as
 * kdi_cl_group_rows fills them (they stay valid for the caller). */
void kdi_cl_thresholds(int64_t n, int64_t c, const float *probs, int64_t ld, const int32_t *labels,
                       int32_t ignore_index, int64_t *counts, double *thresholds, double *gather,
                       int64_t *order, int64_t *start);

/* Row order of the labelled rows grouped by class: rows of class k are
 * order[start[k] .. start[k + 1]) in ascending row index (start: c + 1). */
void kdi_cl_group_rows(int64_t n, int64_t c, const int32_t *labels, int32_t ignore_index,
                       int64_t *start, int64_t *order);

/* The uncalibrated confident joint (c x c, diagonal >= 1) and, optionally,
 * the off-diagonal flag of every row (n bytes, 0 for ignored rows). */
void kdi_cl_confident_joint(int64_t n, int64_t c, const float *probs, int64_t ld,
                            const int32_t *labels, int32_t ignore_index, const double *thresholds,
                            int64_t *cj, uint8_t *off_diagonal);

/* calibrate_confident_joint: cj (c x c, entries >= 0) to the label counts,
 * rounded preserving row totals, into out (c x c).  work: c x c + c doubles;
 * keys: c entries. */
void kdi_cl_calibrate(int64_t c, const int64_t *cj, const int64_t *counts, int64_t *out,
                      double *work, kdi_cl_key *keys);

/* NumPy's astype(int) of one double on x86: the truncated value, or
 * INT64_MIN when it is not finite or beyond int64 (a C cast would be
 * undefined there). */
int64_t kdi_cl_to_int64(double v);

/* round_preserving_row_totals on a c x c double matrix, into out (int64;
 * a non-finite entry or one beyond int64 becomes INT64_MIN, as NumPy's
 * astype(int) gives on x86).  work: c doubles; keys: c entries. */
void kdi_cl_round_rows(int64_t c, const double *m, int64_t *out, double *work, kdi_cl_key *keys);

/* The row's given label y is the argmax of p_i once p_iy is raised by 1e-6
 * (cleanlab's _reduce_issues: such rows are never issues). */
int kdi_cl_label_is_near_argmax(const float *row, int64_t c, int32_t y);

/* rank.get_label_quality_scores of every labelled row into scores (NaN for
 * ignored rows); method and adjust already checked.  thresholds: the
 * confident thresholds (read with adjust only); row: c doubles of scratch. */
void kdi_cl_scores(int64_t n, int64_t c, const float *probs, int64_t ld, const int32_t *labels,
                   int32_t ignore_index, int32_t method, int adjust, const double *thresholds,
                   double *scores, double *row);

/* KD_ERR_INVALID_ARGUMENT unless method is a cleanlab score, adjust is 0 or
 * 1, and adjust / c suit the method.  name: the argument's name. */
kd_status kdi_cl_check_score(const char *fn, const char *name, int32_t method, int32_t adjust,
                             int64_t c, char *err, size_t err_size);

#endif
