/*
 * Deprecated (kept until 1.0): these names are a thin layer over the threshold
 * handle family of kdlib/threshold.h with KD_THRESHOLD_FLEXMATCH, with the same
 * behaviour, messages and float signatures as before.  New code uses
 * kd_threshold_*.
 *
 * kdlib FlexMatch thresholds: curriculum pseudo-labeling with per-class
 * dynamic thresholds (Zhang et al., "FlexMatch", NeurIPS 2021), with the
 * semantics of tllib's FlexMatch (examples/.../flexmatch.py and
 * tllib.self_training.flexmatch.DynamicThresholdingModule).
 *
 * Usage, one training step (see docs/labels.md for a full loop):
 *
 *     kd_flexmatch *fm;
 *     kd_flexmatch_create(&fm, num_unlabeled, num_classes);
 *     kd_flexmatch_set_int(fm, KD_FLEXMATCH_PARAM_MAPPING, KD_FLEXMATCH_MAPPING_CONVEX);
 *     ...
 *     kd_flexmatch_thresholds(fm, tau_c);                 // thresholds of the state so far
 *     kd_select_pseudo_labels(..., tau_c, ..., conf, pred, mask, ...);  // labels.h
 *     kd_flexmatch_update(fm, batch, sample_index, conf, pred);
 *     ... pseudo-label loss with `pred` and `mask` ...
 *
 * State: the unlabeled set has a fixed size N (num_samples); the handle keeps
 * for every sample i its last confident prediction pred[i] in {-1, 0..C-1}
 * (-1 = never confidently predicted; all -1 at create), and the counts
 *
 *     sigma_c = #{ i : pred[i] == c }         (c = 0..C-1)
 *     unused  = #{ i : pred[i] == -1 }
 *
 * kept incrementally (O(1) per updated sample).
 *
 * Learning effect (tllib's `classwise_acc`, the paper's beta_t(c)):
 *
 *     warm-up off:  beta_c = sigma_c / max_k sigma_k
 *     warm-up on:   beta_c = sigma_c / max(max_k sigma_k, unused)
 *
 * and beta_c = 0 for every c while no sample has a prediction (max_k sigma_k = 0).
 *
 * Thresholds:  tau_c = M(beta_c) * tau, with the mapping M
 *
 *     KD_FLEXMATCH_MAPPING_LINEAR   M(x) = x
 *     KD_FLEXMATCH_MAPPING_CONCAVE  M(x) = ln(x + 1) / ln 2
 *     KD_FLEXMATCH_MAPPING_CONVEX   M(x) = x / (2 - x)     (tllib, the paper's choice)
 *
 * computed in double precision from the exact integer counts and rounded once
 * to float.  So tau_c = 0 for classes never predicted, and tau_c = tau for
 * the most predicted class (when it outnumbers the unused samples).
 *
 * Update: for each (index, confidence, prediction) triple in order, the sample
 * is (re)assigned pred[index] = prediction when confidence > tau (the global
 * threshold tau, not tau_c, strictly greater, as tllib's `select`); with
 * KD_FLEXMATCH_PARAM_NON_STRICT = 1 the test is confidence >= tau (USB).
 * Samples below the threshold keep their previous prediction.  The per-class
 * thresholds used for the loss mask (tllib: confidence >= tau_c of the
 * predicted class) are those read BEFORE the update of the same batch.
 *
 * Differences from tllib (documented in docs/labels.md):
 *   - tllib recomputes beta only when max_c count < N (counting -1 as a class)
 *     and otherwise keeps the previous epoch-local value; kdlib always uses the
 *     current counts (identical except when every sample has the same value).
 *   - tllib's DynamicThresholdingModule.get_status fails when nothing was
 *     predicted without warm-up; kdlib returns beta = 0.
 *
 * Errors: every function returns a kd_status (core.h).  On failure the handle's
 * state and parameters and every caller buffer are unchanged; only the message
 * of kd_flexmatch_last_error() changes.  A successful call clears it.
 *
 * Memory: everything is allocated by kd_flexmatch_create (about 8 bytes per
 * sample plus 16 per class); update, thresholds, save and load allocate nothing
 * beyond the state file's small meta section (load).
 *
 * Thread safety: a handle is used by one thread at a time (including the
 * read-only functions, which update the error message); distinct handles are
 * independent.
 */
#ifndef KDLIB_FLEXMATCH_H
#define KDLIB_FLEXMATCH_H

#include <stdint.h>

#include "kdlib/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle. */
typedef struct kd_flexmatch kd_flexmatch;

/* Parameter keys.  Pinned values; new parameters get new numbers.
 *
 * KD_FLEXMATCH_PARAM_THRESHOLD   float, tau in [0, 1], default 0.95 (tllib).
 * KD_FLEXMATCH_PARAM_MAPPING     int, KD_FLEXMATCH_MAPPING_*, default CONVEX.
 * KD_FLEXMATCH_PARAM_WARMUP      int 0/1, default 0 (tllib's --warmup default;
 *                                the FlexMatch paper and USB use 1).
 * KD_FLEXMATCH_PARAM_NON_STRICT  int 0/1, default 0: update selects
 *                                confidence > tau; 1: confidence >= tau.
 * KD_FLEXMATCH_PARAM_NUM_SAMPLES int, read only (N).
 * KD_FLEXMATCH_PARAM_NUM_CLASSES int, read only (C).
 */
typedef int32_t kd_flexmatch_param;
enum {
    KD_FLEXMATCH_PARAM_THRESHOLD = 1,
    KD_FLEXMATCH_PARAM_MAPPING = 2,
    KD_FLEXMATCH_PARAM_WARMUP = 3,
    KD_FLEXMATCH_PARAM_NON_STRICT = 4,
    KD_FLEXMATCH_PARAM_NUM_SAMPLES = 5,
    KD_FLEXMATCH_PARAM_NUM_CLASSES = 6
};

/* Mapping functions (values of KD_FLEXMATCH_PARAM_MAPPING).  Pinned values. */
enum {
    KD_FLEXMATCH_MAPPING_LINEAR = 0,  /* M(x) = x */
    KD_FLEXMATCH_MAPPING_CONCAVE = 1, /* M(x) = ln(x + 1) / ln 2 */
    KD_FLEXMATCH_MAPPING_CONVEX = 2   /* M(x) = x / (2 - x) */
};

#define KD_FLEXMATCH_DEFAULT_THRESHOLD 0.95f
/* Largest N and C accepted by kd_flexmatch_create. */
#define KD_FLEXMATCH_MAX_SAMPLES ((int64_t)1 << 40)
#define KD_FLEXMATCH_MAX_CLASSES ((int64_t)1 << 30)

/* ---- life cycle ---------------------------------------------------------- */

/* kd_flexmatch_create():
 * Create the state of an unlabeled set of num_samples samples and num_classes
 * classes, every prediction -1, default parameters.
 *   out          receives the handle (untouched on failure).
 *   num_samples  N, 1 <= N <= KD_FLEXMATCH_MAX_SAMPLES.
 *   num_classes  C, 1 <= C <= KD_FLEXMATCH_MAX_CLASSES.
 * Returns KD_OK; KD_ERR_NULL_POINTER (out); KD_ERR_INVALID_ARGUMENT (N or C
 * out of range); KD_ERR_OUT_OF_MEMORY.  The message of a failed create goes to
 * kd_flexmatch_last_error(NULL) (per thread). */
KD_API kd_status kd_flexmatch_create(kd_flexmatch **out, int64_t num_samples, int64_t num_classes);

/* kd_flexmatch_destroy(): free the handle.  Accepts NULL (no-op). */
KD_API void kd_flexmatch_destroy(kd_flexmatch *fm);

/* kd_flexmatch_reset(): every prediction back to -1 (parameters kept).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_flexmatch_reset(kd_flexmatch *fm);

/* ---- parameters ---------------------------------------------------------- */

/* kd_flexmatch_set_float() / kd_flexmatch_set_int():
 * Set a parameter, validated now (an invalid value is refused, the old one
 * kept).  Float: THRESHOLD.  Int: MAPPING, WARMUP, NON_STRICT.
 * Returns KD_OK; KD_ERR_NULL_POINTER (fm); KD_ERR_UNSUPPORTED (unknown key, a
 * key of the other type, or a read-only key); KD_ERR_INVALID_ARGUMENT (out of
 * range or NaN; the message names the parameter and the value). */
KD_API kd_status kd_flexmatch_set_float(kd_flexmatch *fm, kd_flexmatch_param param, float value);
KD_API kd_status kd_flexmatch_set_int(kd_flexmatch *fm, kd_flexmatch_param param, int64_t value);

/* kd_flexmatch_get_float() / kd_flexmatch_get_int(): read a parameter.
 * Int: MAPPING, WARMUP, NON_STRICT, NUM_SAMPLES, NUM_CLASSES.
 * Returns KD_OK; KD_ERR_NULL_POINTER (fm, value); KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_flexmatch_get_float(kd_flexmatch *fm, kd_flexmatch_param param, float *value);
KD_API kd_status kd_flexmatch_get_int(kd_flexmatch *fm, kd_flexmatch_param param, int64_t *value);

/* kd_flexmatch_param_bounds():
 * Inclusive bounds of a settable parameter (int parameters as doubles).
 * Pure; any thread.
 * Returns KD_OK; KD_ERR_NULL_POINTER (lower, upper); KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_flexmatch_param_bounds(kd_flexmatch_param param, double *lower, double *upper);

/* ---- update and thresholds ----------------------------------------------- */

/* kd_flexmatch_update():
 * Record a batch of n predictions.  For k = 0..n-1 in order: if
 * confidences[k] > tau (>= with NON_STRICT), pred[indices[k]] =
 * predictions[k].  A sample repeated in the batch takes its last selected
 * prediction.  The whole batch is validated first.
 *   n            >= 0 (0: no-op).
 *   indices      n sample indices in [0, N).
 *   confidences  n confidences (e.g. max softmax of the weak view); not NaN.
 *   predictions  n predicted classes in [0, C) (checked for every entry,
 *                selected or not).
 * O(n), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (fm, or an array when n > 0);
 * KD_ERR_INVALID_ARGUMENT (n < 0, an index or prediction out of range: the
 * message names the entry and the value); KD_ERR_NOT_FINITE (a NaN confidence). */
KD_API kd_status kd_flexmatch_update(kd_flexmatch *fm, int64_t n, const int64_t *indices,
                                     const float *confidences, const int32_t *predictions);

/* kd_flexmatch_thresholds():
 * Write tau_c for c = 0..C-1 into thresholds (C floats).  O(C).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_flexmatch_thresholds(kd_flexmatch *fm, float *thresholds);

/* kd_flexmatch_learning_effect():
 * Write beta_c for c = 0..C-1 into beta (C floats, in [0, 1]).  O(C).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_flexmatch_learning_effect(kd_flexmatch *fm, float *beta);

/* kd_flexmatch_counts():
 * sigma (C int64, may be NULL) = per-class counts; *unused (may be NULL) =
 * number of samples without a prediction.
 * Returns KD_OK; KD_ERR_NULL_POINTER (fm). */
KD_API kd_status kd_flexmatch_counts(kd_flexmatch *fm, int64_t *sigma, int64_t *unused);

/* kd_flexmatch_predictions():
 * Copy pred[] (N int32, -1 = none) into predictions.
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_flexmatch_predictions(kd_flexmatch *fm, int32_t *predictions);

/* ---- state file ---------------------------------------------------------- */

/* kd_flexmatch_save():
 * Write the state (N, C, threshold, mapping, warm-up, strictness and the N
 * predictions) to `path` in the versioned, CRC-32C-checksummed little-endian
 * container of docs/labels.md (magic "KDFLEXM\0", format version 2, which also
 * holds the threshold in double; version 1 files are read too), written to a temporary file, fsync'ed and
 * renamed: an interrupted save leaves the previous file or the new one.
 * The handle is not changed.
 * Returns KD_OK; KD_ERR_NULL_POINTER (fm, path); KD_ERR_IO (the message has
 * the path and the reason); KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_flexmatch_save(kd_flexmatch *fm, const char *path);

/* kd_flexmatch_load():
 * Restore a state written by kd_flexmatch_save into a handle of the same N
 * and C: predictions, counts and parameters are replaced.  The whole file,
 * checksums and every prediction's range included, is validated before the
 * handle changes; on any failure nothing changes.
 * Returns KD_OK; KD_ERR_NULL_POINTER (fm, path); KD_ERR_IO (cannot open or
 * read); KD_ERR_VERSION (not a FlexMatch state file, or an unknown format
 * version); KD_ERR_CORRUPT (truncated, extended, checksum mismatch or invalid
 * values); KD_ERR_MISMATCH (a valid file for another N or C: the message has
 * both shapes); KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_flexmatch_load(kd_flexmatch *fm, const char *path);

/* ---- errors -------------------------------------------------------------- */

/* kd_flexmatch_last_error():
 * Message of the last failed call on this handle, naming the function, the
 * argument and the value ("" after a success).  Valid until the next call on
 * the handle.  With NULL: the message of the calling thread's last
 * kd_flexmatch_create.  Never returns NULL. */
KD_API const char *kd_flexmatch_last_error(const kd_flexmatch *fm);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_FLEXMATCH_H */
