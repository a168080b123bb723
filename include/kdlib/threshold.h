/*
 * kdlib threshold handles: the state of a pseudo-labeling threshold or
 * weighting algorithm over an unlabeled set, as one handle family keyed by
 * the algorithm (kd_threshold_algorithm).  Every algorithm has the same life
 * cycle, parameters interface, update, weights, state arrays, crash-safe
 * state file and messages; algorithms differ only in their parameters and
 * state (docs/labels.md gives each one's formulas and its deviations from the
 * reference implementation).
 *
 * Algorithms (pinned values):
 *
 *   KD_THRESHOLD_FLEXMATCH  FlexMatch curriculum thresholds (Zhang et al.,
 *                           NeurIPS 2021) with tllib's semantics: the model
 *                           and formulas of flexmatch.h, which is now a thin
 *                           compatibility layer over this handle.
 *   KD_THRESHOLD_FREEMATCH  FreeMatch self-adaptive thresholds (Wang et al.,
 *                           ICLR 2023) as USB implements them.
 *   KD_THRESHOLD_SOFTMATCH  SoftMatch truncated-Gaussian weights with uniform
 *                           distribution alignment (Chen et al., ICLR 2023)
 *                           as USB implements them.
 *   KD_THRESHOLD_ADAMATCH   AdaMatch's relative confidence threshold with
 *                           distribution alignment to the labelled
 *                           predictions (Berthelot et al., ICLR 2022) as USB
 *                           implements them; it also learns from the
 *                           labelled batch (kd_threshold_update_labeled_probs).
 *   KD_THRESHOLD_DASH       Dash's dynamic threshold on the pseudo-label loss
 *                           (Xu et al., ICML 2021) as USB implements it
 *                           (DashThresholdingHook): a row is kept when the
 *                           cross-entropy against its own (soft, then hard)
 *                           pseudo-label is <= rho, rho decreasing on a schedule.
 *   KD_THRESHOLD_DEBIASPL   DebiasPL's debiased pseudo-labels (Wang et al.,
 *                           CVPR 2022, the authors' code): the rows adjusted
 *                           by an EMA p_hat of the mean prediction,
 *                           softmax(log q - tau log p_hat), kept when their
 *                           max >= the threshold.  p_hat is also the
 *                           adaptive margin of the loss (docs/labels.md).
 *
 * FreeMatch, SoftMatch, AdaMatch and DebiasPL need whole probability rows for their
 * updates; Dash for its weights (kd_threshold_update_probs / kd_threshold_weights_probs); every
 * algorithm accepts rows (FlexMatch reduces each to its max and argmax).
 *
 * One training step:
 *
 *     kd_threshold *th;
 *     kd_threshold_create(&th, KD_THRESHOLD_FLEXMATCH, num_unlabeled, num_classes);
 *     ...
 *     // confidence and prediction of each weak view, e.g. kd_select_pseudo_labels
 *     kd_threshold_weights(th, batch, conf, pred, weight);     // from the state so far
 *     kd_threshold_update(th, batch, sample_index, conf, pred); // then record the batch
 *     ... pseudo-label loss with `pred` and per-sample weights `weight` ...
 *
 * With rows, in USB's order (AdaMatch also records the labelled batch):
 *
 *     kd_threshold_update_labeled_probs(th, labelled, C, labelled_probs, C); // AdaMatch only
 *     kd_threshold_update_probs(th, batch, C, weak_probs, C, NULL);
 *     kd_threshold_weights_probs(th, batch, C, weak_probs, C, weight, pseudo);
 *
 * Parameters: real parameters are double (kd_threshold_set_float), integer
 * ones int64 (kd_threshold_set_int); each algorithm accepts its own keys
 * (KD_ERR_UNSUPPORTED for the others) and kd_threshold_param_bounds() gives
 * the range per algorithm.  Getters take a const handle.
 *
 * Errors: every function returns a kd_status (core.h).  On failure the
 * handle's state and parameters and every caller buffer are unchanged; only
 * the message of kd_threshold_last_error() changes ("function: argument and
 * value"); a successful call clears it.  A failed create leaves its message
 * in kd_threshold_last_error(NULL) (per thread).
 *
 * Memory: create allocates everything (FlexMatch: about 8 bytes per sample
 * and 16 per class; FreeMatch 48 bytes per class, SoftMatch 80,
 * AdaMatch 48, Dash none, DebiasPL 32); update,
 * weights (both kinds), the split statistics, the getters and save allocate nothing;
 * load allocates only the state file's meta section.
 *
 * Thread safety: a handle is used by one thread at a time (the const getters
 * included: they write the message); distinct handles are independent.
 */
#ifndef KDLIB_THRESHOLD_H
#define KDLIB_THRESHOLD_H

#include <stdint.h>

#include "kdlib/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle. */
typedef struct kd_threshold kd_threshold;

/* Algorithm keys.  Pinned values; new algorithms get new numbers. */
typedef int32_t kd_threshold_algorithm;
enum {
    KD_THRESHOLD_FLEXMATCH = 1,
    KD_THRESHOLD_FREEMATCH = 2,
    KD_THRESHOLD_SOFTMATCH = 3,
    KD_THRESHOLD_ADAMATCH = 4,
    KD_THRESHOLD_DASH = 5,
    KD_THRESHOLD_DEBIASPL = 6
};

/* Parameter keys.  Pinned values (equal to the KD_FLEXMATCH_PARAM_* ones);
 * new parameters get new numbers.
 *
 * Every algorithm:
 *   KD_THRESHOLD_PARAM_NUM_SAMPLES  int, read only (N).
 *   KD_THRESHOLD_PARAM_NUM_CLASSES  int, read only (C).
 *   KD_THRESHOLD_PARAM_ALGORITHM    int, read only (the kd_threshold_algorithm).
 * FlexMatch:
 *   KD_THRESHOLD_PARAM_THRESHOLD    real, tau in [0, 1], default 0.95 (tllib).
 *                                   Compared with float confidences as a
 *                                   double: (double)confidence > tau.
 *   KD_THRESHOLD_PARAM_MAPPING      int, KD_THRESHOLD_MAPPING_*, default CONVEX.
 *   KD_THRESHOLD_PARAM_WARMUP       int 0/1, default 0 (tllib's default; the
 *                                   paper and USB use 1).
 *   KD_THRESHOLD_PARAM_NON_STRICT   int 0/1, default 0: update records
 *                                   confidence > tau; 1: confidence >= tau.
 * FreeMatch and SoftMatch:
 *   KD_THRESHOLD_PARAM_MOMENTUM     real, m in [0, 1], default 0.999 (USB's
 *                                   ema_p): every EMA is s = m s + (1 - m) x.
 * FreeMatch:
 *   KD_THRESHOLD_PARAM_CLIP         real in [0, 1], default 1 (no clip): tau_t
 *                                   is clipped to [0, CLIP] after each update
 *                                   (USB's clip_thresh = True is CLIP 0.95).
 *   KD_THRESHOLD_PARAM_USE_QUANTILE int 0/1, default 0 (USB): 1 updates tau_t
 *                                   with the QUANTILE quantile of the batch's
 *                                   max confidences instead of their mean.
 *   KD_THRESHOLD_PARAM_QUANTILE     real in [0, 1], default 0.8 (USB's),
 *                                   linear interpolation (torch.quantile).
 * SoftMatch:
 *   KD_THRESHOLD_PARAM_N_SIGMA      real in [0.001, 1000], default 2 (USB).
 *   KD_THRESHOLD_PARAM_PER_CLASS    int 0/1, default 0: mu and var of the
 *                                   class of each sample (USB's per_class).
 *   KD_THRESHOLD_PARAM_DIST_ALIGN   int 0/1, default 1: uniform distribution
 *                                   alignment of the rows before the
 *                                   statistics and weights (USB always aligns).
 *                                   With 1 the confidence entry points
 *                                   (kd_threshold_update / _weights) are
 *                                   KD_ERR_UNSUPPORTED: use the _probs ones.
 * AdaMatch:
 *   KD_THRESHOLD_PARAM_THRESHOLD    real, tau in [0, 1], default 0.95 (USB's
 *                                   p_cutoff): a row is kept when its
 *                                   (aligned) max >= tau kappa, kappa the mean
 *                                   max of the last labelled batch.
 *   KD_THRESHOLD_PARAM_MOMENTUM     real, m in [0, 1], default 0.999 (USB's ema_p)
 *                                   of p_model and p_target.
 *   KD_THRESHOLD_PARAM_DIST_ALIGN   int 0/1, default 1: align the unlabelled
 *                                   rows with p_target / p_model before the
 *                                   threshold and the pseudo-labels (USB
 *                                   always aligns).  With 1 kd_threshold_weights
 *                                   is KD_ERR_UNSUPPORTED.
 * Dash (USB's DashThresholdingHook; every update steps the schedule, see
 * KD_THRESHOLD_STATE_RHO):
 *   KD_THRESHOLD_PARAM_RHO_INIT     real in [0, 1000], default log C (the
 *                                   loss of a uniform prediction): USB's
 *                                   rho_init, the mean cross-entropy of the
 *                                   supervised warm-up model on the
 *                                   evaluation set; set it after the warm-up.
 *   KD_THRESHOLD_PARAM_GAMMA        real in [1, 1000], default 1.27 (USB).
 *   KD_THRESHOLD_PARAM_DASH_C       real in [0, 1000], default 1.0001 (USB's C).
 *   KD_THRESHOLD_PARAM_RHO_MIN      real in [0, 1000], default 0.05 (USB).
 *   KD_THRESHOLD_PARAM_PERIOD       int in [1, 2^40], default 10240: rho is
 *                                   recomputed every PERIOD updates (USB: 10
 *                                   epochs of iterations, 10 x 1024).
 *   KD_THRESHOLD_PARAM_TEMPERATURE  real in [0.01, 100], default 0.5 (USB's
 *                                   T): the soft pseudo-label softmax(z / T).
 * DebiasPL:
 *   KD_THRESHOLD_PARAM_THRESHOLD    real in [0, 1], default 0.95 (the paper's
 *                                   FixMatch base; the authors' ImageNet
 *                                   scripts use 0.7 / 0.8): a row is kept when
 *                                   its adjusted max >= THRESHOLD.
 *   KD_THRESHOLD_PARAM_MOMENTUM     real in [0, 1], default 0.999 (qhat_m):
 *                                   p_hat = m p_hat + (1 - m) mean_k q_k.
 *   KD_THRESHOLD_PARAM_DEBIAS_TAU   real in [0, 10], default 0.4 (the paper
 *                                   and the authors' scripts): the strength
 *                                   tau of the adjustment and of the margin.
 */
typedef int32_t kd_threshold_param;
enum {
    KD_THRESHOLD_PARAM_THRESHOLD = 1,
    KD_THRESHOLD_PARAM_MAPPING = 2,
    KD_THRESHOLD_PARAM_WARMUP = 3,
    KD_THRESHOLD_PARAM_NON_STRICT = 4,
    KD_THRESHOLD_PARAM_NUM_SAMPLES = 5,
    KD_THRESHOLD_PARAM_NUM_CLASSES = 6,
    KD_THRESHOLD_PARAM_ALGORITHM = 7,
    KD_THRESHOLD_PARAM_MOMENTUM = 8,
    KD_THRESHOLD_PARAM_CLIP = 9,
    KD_THRESHOLD_PARAM_N_SIGMA = 10,
    KD_THRESHOLD_PARAM_PER_CLASS = 11,
    KD_THRESHOLD_PARAM_DIST_ALIGN = 12,
    KD_THRESHOLD_PARAM_USE_QUANTILE = 13,
    KD_THRESHOLD_PARAM_QUANTILE = 14,
    KD_THRESHOLD_PARAM_RHO_INIT = 15,
    KD_THRESHOLD_PARAM_GAMMA = 16,
    KD_THRESHOLD_PARAM_DASH_C = 17,
    KD_THRESHOLD_PARAM_RHO_MIN = 18,
    KD_THRESHOLD_PARAM_PERIOD = 19,
    KD_THRESHOLD_PARAM_TEMPERATURE = 20,
    KD_THRESHOLD_PARAM_DEBIAS_TAU = 21
};

/* FlexMatch's mapping functions (values of KD_THRESHOLD_PARAM_MAPPING). */
enum {
    KD_THRESHOLD_MAPPING_LINEAR = 0,  /* M(x) = x */
    KD_THRESHOLD_MAPPING_CONCAVE = 1, /* M(x) = ln(x + 1) / ln 2 */
    KD_THRESHOLD_MAPPING_CONVEX = 2   /* M(x) = x / (2 - x) */
};

/* State arrays (kd_threshold_get_floats / kd_threshold_get_ints), with their
 * lengths.  Pinned values.
 *   KD_THRESHOLD_STATE_CLASS_THRESHOLDS  floats, C: the per-class thresholds
 *                                        tau_c that kd_threshold_weights uses
 *                                        (FlexMatch; FreeMatch: tau_t times
 *                                        MaxNorm(p_t)_c).
 *   KD_THRESHOLD_STATE_LEARNING_EFFECT   floats, C: FlexMatch's beta_c.
 *   KD_THRESHOLD_STATE_CLASS_COUNTS      ints, C: FlexMatch's sigma_c.
 *   KD_THRESHOLD_STATE_UNUSED            ints, 1: FlexMatch's unused count.
 *   KD_THRESHOLD_STATE_PREDICTIONS       ints, N: FlexMatch's last confident
 *                                        prediction per sample, -1 = none.
 *   KD_THRESHOLD_STATE_GLOBAL_THRESHOLD  floats, 1: FreeMatch's tau_t; AdaMatch's
 *                                        tau kappa.
 *   KD_THRESHOLD_STATE_CLASS_PROBS       floats, C: FreeMatch's p_t; SoftMatch's
 *                                        and AdaMatch's p_model of the
 *                                        distribution alignment; DebiasPL's
 *                                        p_hat (the margin is tau log p_hat).
 *   KD_THRESHOLD_STATE_LABEL_HISTOGRAM   floats, C: FreeMatch's label_hist (EMA
 *                                        of the batch histogram of argmax).
 *   KD_THRESHOLD_STATE_CONF_MEAN         floats, 1: SoftMatch's global mu_t.
 *   KD_THRESHOLD_STATE_CONF_VAR          floats, 1: SoftMatch's global var_t.
 *   KD_THRESHOLD_STATE_CLASS_CONF_MEAN   floats, C: SoftMatch's per-class mu_t.
 *   KD_THRESHOLD_STATE_CLASS_CONF_VAR    floats, C: SoftMatch's per-class var_t.
 *   KD_THRESHOLD_STATE_UPDATES           ints, 1: FreeMatch, SoftMatch, AdaMatch,
 *                                        Dash, DebiasPL: the number of
 *                                        non-empty updates (of unlabelled rows).
 *   KD_THRESHOLD_STATE_TARGET_PROBS      floats, C: AdaMatch's p_target.
 *   KD_THRESHOLD_STATE_LABELED_CONFIDENCE floats, 1: AdaMatch's kappa.
 *   KD_THRESHOLD_STATE_LABELED_UPDATES   ints, 1: AdaMatch's number of
 *                                        non-empty labelled updates.
 *   KD_THRESHOLD_STATE_RHO               floats, 1: Dash's loss threshold rho.
 *                                        An update u (counting from 0) with
 *                                        u % PERIOD == 0 sets rho =
 *                                        max(DASH_C GAMMA^-k RHO_INIT, RHO_MIN)
 *                                        and k = k + 1; before the first
 *                                        update, the value it will set.
 *   KD_THRESHOLD_STATE_RHO_UPDATES       ints, 1: Dash's k, the number of
 *                                        recomputations of rho.
 *   KD_THRESHOLD_STATE_HARD_LABEL        ints, 1: Dash: 1 when rho == RHO_MIN
 *                                        (hard pseudo-labels), 0 (soft). */
typedef int32_t kd_threshold_state;
enum {
    KD_THRESHOLD_STATE_CLASS_THRESHOLDS = 1,
    KD_THRESHOLD_STATE_LEARNING_EFFECT = 2,
    KD_THRESHOLD_STATE_CLASS_COUNTS = 3,
    KD_THRESHOLD_STATE_UNUSED = 4,
    KD_THRESHOLD_STATE_PREDICTIONS = 5,
    KD_THRESHOLD_STATE_GLOBAL_THRESHOLD = 6,
    KD_THRESHOLD_STATE_CLASS_PROBS = 7,
    KD_THRESHOLD_STATE_LABEL_HISTOGRAM = 8,
    KD_THRESHOLD_STATE_CONF_MEAN = 9,
    KD_THRESHOLD_STATE_CONF_VAR = 10,
    KD_THRESHOLD_STATE_CLASS_CONF_MEAN = 11,
    KD_THRESHOLD_STATE_CLASS_CONF_VAR = 12,
    KD_THRESHOLD_STATE_UPDATES = 13,
    KD_THRESHOLD_STATE_TARGET_PROBS = 14,
    KD_THRESHOLD_STATE_LABELED_CONFIDENCE = 15,
    KD_THRESHOLD_STATE_LABELED_UPDATES = 16,
    KD_THRESHOLD_STATE_RHO = 17,
    KD_THRESHOLD_STATE_RHO_UPDATES = 18,
    KD_THRESHOLD_STATE_HARD_LABEL = 19
};

/* Largest N and C accepted by kd_threshold_create. */
#define KD_THRESHOLD_MAX_SAMPLES ((int64_t)1 << 40)
#define KD_THRESHOLD_MAX_CLASSES ((int64_t)1 << 30)

/* ---- life cycle ---------------------------------------------------------- */

/* kd_threshold_create():
 * The state of `algorithm` over an unlabeled set of num_samples samples and
 * num_classes classes, in its initial state, with default parameters.
 *   out          receives the handle (untouched on failure).
 *   num_samples  N, 1 <= N <= KD_THRESHOLD_MAX_SAMPLES.
 *   num_classes  C, 1 <= C <= KD_THRESHOLD_MAX_CLASSES.
 * Returns KD_OK; KD_ERR_NULL_POINTER (out); KD_ERR_UNSUPPORTED (unknown
 * algorithm); KD_ERR_INVALID_ARGUMENT (N or C out of range);
 * KD_ERR_OUT_OF_MEMORY.  Message: kd_threshold_last_error(NULL). */
KD_API kd_status kd_threshold_create(kd_threshold **out, kd_threshold_algorithm algorithm,
                                     int64_t num_samples, int64_t num_classes);

/* kd_threshold_destroy(): free the handle.  Accepts NULL (no-op). */
KD_API void kd_threshold_destroy(kd_threshold *th);

/* kd_threshold_reset(): the initial state again (parameters kept).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_threshold_reset(kd_threshold *th);

/* kd_threshold_algorithm_name(): "flexmatch", ...; NULL for an unknown key.
 * Pure; any thread. */
KD_API const char *kd_threshold_algorithm_name(kd_threshold_algorithm algorithm);

/* ---- parameters ---------------------------------------------------------- */

/* kd_threshold_set_float() / kd_threshold_set_int():
 * Set a parameter of the handle's algorithm, validated now (an invalid value
 * is refused, the old one kept).
 * Returns KD_OK; KD_ERR_NULL_POINTER (th); KD_ERR_UNSUPPORTED (a key the
 * algorithm does not have, a key of the other type, or a read-only key);
 * KD_ERR_INVALID_ARGUMENT (out of range or NaN; the message names the
 * parameter, the value and the range). */
KD_API kd_status kd_threshold_set_float(kd_threshold *th, kd_threshold_param param, double value);
KD_API kd_status kd_threshold_set_int(kd_threshold *th, kd_threshold_param param, int64_t value);

/* kd_threshold_get_float() / kd_threshold_get_int(): read a parameter.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, value); KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_threshold_get_float(const kd_threshold *th, kd_threshold_param param,
                                        double *value);
KD_API kd_status kd_threshold_get_int(const kd_threshold *th, kd_threshold_param param,
                                      int64_t *value);

/* kd_threshold_param_bounds():
 * Inclusive bounds of a settable parameter of `algorithm` (int parameters as
 * doubles).  Pure; any thread.
 * Returns KD_OK; KD_ERR_NULL_POINTER (lower, upper); KD_ERR_UNSUPPORTED
 * (unknown algorithm, or a key it cannot set). */
KD_API kd_status kd_threshold_param_bounds(kd_threshold_algorithm algorithm,
                                           kd_threshold_param param, double *lower, double *upper);

/* ---- update and weights -------------------------------------------------- */

/* kd_threshold_update():
 * Record a batch of n predictions into the state (FlexMatch: for k in order,
 * pred[indices[k]] = predictions[k] when confidences[k] > tau, >= with
 * NON_STRICT; a sample repeated in the batch keeps its last selected
 * prediction).  The whole batch is validated first.
 *   n            >= 0 (0: no-op).
 *   indices      n sample indices in [0, N).
 *   confidences  n confidences (e.g. the max softmax of the weak view); not NaN.
 *   predictions  n predicted classes in [0, C) (every entry is checked).
 * FreeMatch needs whole rows and SoftMatch with DIST_ALIGN too: they refuse
 * this call with KD_ERR_UNSUPPORTED (use kd_threshold_update_probs).  Dash
 * accepts it: a non-empty batch steps its schedule (its contents unused).
 * O(n), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, or an array when n > 0);
 * KD_ERR_UNSUPPORTED (see above);
 * KD_ERR_INVALID_ARGUMENT (n < 0, an index or prediction out of range: the
 * message names the entry and the value); KD_ERR_NOT_FINITE (a NaN confidence). */
KD_API kd_status kd_threshold_update(kd_threshold *th, int64_t n, const int64_t *indices,
                                     const float *confidences, const int32_t *predictions);

/* kd_threshold_weights():
 * Per-sample loss weights of a batch from the current state, before the
 * batch's own update (FlexMatch: weights[k] = 1 when confidences[k] >=
 * tau_c of predictions[k], else 0; tau_c as KD_THRESHOLD_STATE_CLASS_THRESHOLDS).
 *   n            >= 0 (0: no-op); confidences, predictions as for update.
 *   weights      n floats (written only on success).
 * FreeMatch: weights[k] = 1 when confidences[k] >= tau_t MaxNorm(p_t) of
 * predictions[k]; SoftMatch without DIST_ALIGN: its Gaussian weight of
 * confidences[k]; SoftMatch with DIST_ALIGN, Dash (the soft label's loss
 * needs the row) and DebiasPL: KD_ERR_UNSUPPORTED.
 * O(n + C), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_UNSUPPORTED (see above);
 * KD_ERR_INVALID_ARGUMENT (n < 0, a
 * prediction out of range); KD_ERR_NOT_FINITE (a NaN confidence);
 * KD_ERR_ALIASING (weights overlaps confidences or predictions). */
KD_API kd_status kd_threshold_weights(const kd_threshold *th, int64_t n, const float *confidences,
                                      const int32_t *predictions, float *weights);

/* kd_threshold_update_probs():
 * Record a batch of n probability rows (e.g. the softmax of the weak views):
 * row k is probs[k * ld + j], j < c.  FreeMatch, SoftMatch and AdaMatch
 * update their EMA statistics from the whole batch (docs/labels.md); FlexMatch reduces
 * each row to its max (the confidence) and argmax (the prediction, lowest
 * index on ties) and does what kd_threshold_update does.  The whole batch is
 * validated first; rows are not required to sum to 1.
 *   n        >= 0 (0: no-op).
 *   c        the handle's number of classes.
 *   probs    n rows of c values in [0, 1].
 *   ld       row stride in floats, >= c.
 *   indices  n sample indices in [0, N): required by FlexMatch; FreeMatch,
 *            SoftMatch and AdaMatch keep no per-sample state and accept NULL
 *            (checked when given).
 * O(n c), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, probs or a required indices when
 * n > 0); KD_ERR_INVALID_ARGUMENT (n < 0, c not the handle's C, ld < c, an
 * index out of range, a probability outside [0, 1]: the message names the
 * entry and the value); KD_ERR_NOT_FINITE (a NaN or infinite probability). */
KD_API kd_status kd_threshold_update_probs(kd_threshold *th, int64_t n, int64_t c,
                                           const float *probs, int64_t ld, const int64_t *indices);

/* kd_threshold_update_labeled_probs():
 * Record a batch of n probability rows of labelled samples (e.g. the
 * softmax of the labelled batch's logits, detached): AdaMatch updates
 * p_target = m p_target + (1 - m) mean_k l_k and sets kappa = mean_k max_j l_kj
 * (this batch's).  Same row layout and checks as kd_threshold_update_probs
 * (no indices).  Other algorithms do not learn from labelled rows:
 * KD_ERR_UNSUPPORTED.
 * O(n c), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, or probs when n > 0);
 * KD_ERR_UNSUPPORTED; KD_ERR_INVALID_ARGUMENT; KD_ERR_NOT_FINITE. */
KD_API kd_status kd_threshold_update_labeled_probs(kd_threshold *th, int64_t n, int64_t c,
                                                   const float *probs, int64_t ld);

/* kd_threshold_weights_probs():
 * Per-sample loss weights of a batch of probability rows from the current
 * state (FlexMatch, FreeMatch: 0/1 masks of the row's max against the
 * threshold of its argmax; SoftMatch: truncated-Gaussian weights in (0, 1];
 * AdaMatch: 0/1 masks of the aligned row's max against tau kappa; DebiasPL:
 * of the logit-adjusted row's max against the threshold; Dash: 1 when the
 * row's loss against its pseudo-label is <= rho, else 0).
 * USB computes the weights after the batch's own update: call
 * kd_threshold_update_probs first to reproduce it (Dash's masking() too);
 * DebiasPL's code masks before its update: call this first, then update.
 *   n, c, probs, ld  as for kd_threshold_update_probs.
 *   weights          n floats (written only on success).
 *   pseudo_labels    NULL, or n int32 receiving the argmax of each row
 *                    (lowest index on ties): of the rows as given, before
 *                    any alignment (SoftMatch, as USB), except AdaMatch: of
 *                    the aligned rows (as USB), and DebiasPL: of the adjusted
 *                    rows (as the authors' code).
 * O(n c), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, probs or weights when n > 0);
 * KD_ERR_INVALID_ARGUMENT; KD_ERR_NOT_FINITE (as for update_probs);
 * KD_ERR_ALIASING (weights or pseudo_labels overlaps probs or each other). */
KD_API kd_status kd_threshold_weights_probs(const kd_threshold *th, int64_t n, int64_t c,
                                            const float *probs, int64_t ld, float *weights,
                                            int32_t *pseudo_labels);

/* ---- split statistics (data-parallel training, docs/distributed.md) ------ */

/* A batch split over R ranks, every rank's handle in the same state, gives
 * every rank the state of one handle updated with the whole batch when each
 * rank computes the additive statistics of its own rows
 * (kd_threshold_local_stats), the R buffers are summed element-wise (e.g.
 * MPI_Allreduce / torch.distributed.all_reduce with SUM, in double) and each
 * rank applies the sum (kd_threshold_update_stats) instead of all-gathering
 * the rows for kd_threshold_update_probs.  A buffer holds
 * kd_threshold_stats_size doubles (docs/labels.md gives each layout):
 *   FreeMatch (USE_QUANTILE 0)  2 + 2C: n, sum of row maxima, column sums,
 *                               argmax histogram.
 *   SoftMatch (DIST_ALIGN 0)    3 + 3C: n, sum of maxima, sum of their squared
 *                               deviations from the state's mu, then per
 *                               argmax class: counts, sums, squared deviations.
 *   AdaMatch                    3 + 2C: unlabelled n and column sums, then
 *                               labelled n, sum of maxima and column sums
 *                               (kd_threshold_local_labeled_stats).
 *   Dash                        1: n (the update steps the schedule).
 *   DebiasPL                    1 + C: n and column sums.
 * FlexMatch (per-sample state), FreeMatch with USE_QUANTILE (a quantile is
 * not additive) and SoftMatch with DIST_ALIGN (the maxima are taken after an
 * alignment with the whole batch's mean) have none: KD_ERR_UNSUPPORTED, gather
 * the rows and call kd_threshold_update_probs.  Sums of counts and of
 * column sums are the same sums as update_probs's: bit-identical with one
 * rank, and with several when the sums are exact in double; otherwise they
 * differ only by the order of the double additions (relative n 2^-53).
 * SoftMatch's variances come from sums of squared deviations from a shift
 * every rank shares (the state's mu), so they agree with update_probs's
 * two-pass variances to a relative error of about (n + 4) 2^-53 (1 + (mu_b -
 * mu)^2 / v_b), mu_b and v_b the batch's mean and biased variance. */

/* kd_threshold_stats_size(): *size = the number of doubles of a buffer for
 * the current parameters.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, size); KD_ERR_UNSUPPORTED (no
 * additive statistics: the message says why and to gather the rows). */
KD_API kd_status kd_threshold_stats_size(const kd_threshold *th, int64_t *size);

/* kd_threshold_local_stats():
 * This rank's n unlabelled rows (layout and checks of kd_threshold_update_probs,
 * no indices) -> stats[0, size); the handle is not changed (only its
 * message).  n = 0 writes the statistics of no rows.  AdaMatch: also zeroes
 * the labelled part, so call kd_threshold_local_labeled_stats after it.
 * O(n c), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, stats, probs when n > 0);
 * KD_ERR_UNSUPPORTED (as stats_size); KD_ERR_INVALID_ARGUMENT;
 * KD_ERR_NOT_FINITE (as update_probs); KD_ERR_ALIASING (stats overlaps probs). */
KD_API kd_status kd_threshold_local_stats(const kd_threshold *th, int64_t n, int64_t c,
                                          const float *probs, int64_t ld, double *stats);

/* kd_threshold_local_labeled_stats():
 * AdaMatch: this rank's n labelled rows (as kd_threshold_update_labeled_probs)
 * -> the labelled part of stats (stats[1 + C, 3 + 2C)), the rest untouched.
 * The summed buffer then makes update_stats do update_labeled_probs with
 * every rank's labelled rows (when their n > 0), then update_probs with the
 * unlabelled ones (when their n > 0).  Other algorithms: KD_ERR_UNSUPPORTED.
 * Returns as kd_threshold_local_stats. */
KD_API kd_status kd_threshold_local_labeled_stats(const kd_threshold *th, int64_t n, int64_t c,
                                                  const float *probs, int64_t ld, double *stats);

/* kd_threshold_update_stats():
 * Apply the element-wise sum over the ranks of their local buffers: the same
 * state change as kd_threshold_update_probs with every rank's rows (a total
 * n of 0: no change).  The buffer is validated first (every value finite;
 * counts whole numbers in [0, 2^53]; sums of probabilities in [0, count];
 * histograms summing to their n; sums of squares >= 0) and nothing changes
 * on failure.  O(C), no allocation.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, stats); KD_ERR_UNSUPPORTED (as
 * stats_size); KD_ERR_NOT_FINITE (a NaN or infinite value: the message names
 * its index); KD_ERR_INVALID_ARGUMENT (any other invalid value). */
KD_API kd_status kd_threshold_update_stats(kd_threshold *th, const double *stats);

/* kd_threshold_get_floats() / kd_threshold_get_ints():
 * Copy the state array `what` (KD_THRESHOLD_STATE_*) into out, which holds
 * `count` elements: count must equal the array's length (C, N or 1, see
 * above), so a short buffer is refused instead of overrun.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, out); KD_ERR_UNSUPPORTED (an array
 * the algorithm does not have, or of the other type); KD_ERR_INVALID_ARGUMENT
 * (count is not the array's length: the message has both). */
KD_API kd_status kd_threshold_get_floats(const kd_threshold *th, kd_threshold_state what,
                                         int64_t count, float *out);
KD_API kd_status kd_threshold_get_ints(const kd_threshold *th, kd_threshold_state what,
                                       int64_t count, int64_t *out);

/* ---- state file ---------------------------------------------------------- */

/* kd_threshold_save():
 * Write the state and parameters to `path` in the versioned,
 * CRC-32C-checksummed little-endian container of docs/labels.md (FlexMatch:
 * magic "KDFLEXM\0", format version 2; the files of kd_flexmatch_save;
 * FreeMatch "KDFREEM\0", SoftMatch "KDSOFTM\0", AdaMatch "KDADAMT\0", Dash
 * "KDDASHT\0" and DebiasPL "KDDEBPL\0", version 1), via
 * a temporary file, fsync and rename: an interrupted save leaves the previous
 * file or the new one.  The handle is not changed.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, path); KD_ERR_IO (the message has
 * the path and the reason); KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_threshold_save(const kd_threshold *th, const char *path);

/* kd_threshold_load():
 * Restore a state written by kd_threshold_save or kd_flexmatch_save (either
 * format version) into a handle of the same algorithm, N and C: state and
 * parameters are replaced.  The whole file is validated before the handle
 * changes; on any failure nothing changes.
 * Returns KD_OK; KD_ERR_NULL_POINTER (th, path); KD_ERR_IO (cannot open or
 * read); KD_ERR_VERSION (not a state file of this algorithm, or an unknown
 * format version); KD_ERR_CORRUPT (truncated, extended, checksum mismatch or
 * invalid values); KD_ERR_MISMATCH (a valid file for another N or C: the
 * message has both shapes); KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_threshold_load(kd_threshold *th, const char *path);

/* ---- errors -------------------------------------------------------------- */

/* kd_threshold_last_error():
 * Message of the last failed call on this handle ("" after a success), valid
 * until the next call on it.  With NULL: the message of the calling thread's
 * last kd_threshold_create.  Never returns NULL. */
KD_API const char *kd_threshold_last_error(const kd_threshold *th);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_THRESHOLD_H */
