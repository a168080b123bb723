/*
 * kdlib label tools: stateless functions for the pseudo-labeling and
 * noisy-label workflows (docs/labels.md has the formulas and examples).
 *
 *   kd_select_pseudo_labels   confidence, argmax and threshold mask from teacher
 *                             probabilities or logits, optional top-k per class
 *   kd_tsa_threshold,         UDA's training-signal annealing: the schedule's
 *   kd_tsa_mask               threshold and the labelled rows it keeps
 *   kd_label_quality          self-confidence / margin scores of given labels
 *                             and the ranking of samples, worst first
 *   kd_find_label_issues      confident-learning per-class thresholds, confident
 *                             class of every sample and the suspect mask
 *   kd_soft_labels            q = w onehot(y) + (1 - w) onehot(pred) or (1 - w) p
 *   kd_soft_labels_selective  the same for suspects only, or with w from the
 *                             out-of-fold confidence of the given label
 *   kd_ensemble_average       weighted average of K teacher matrices
 *   kd_cleanlab_*             cleanlab 2.x's confident learning with its exact rules:
 *                             thresholds, confident joint, joint, py and noise
 *                             matrices, num_label_issues, the 7 find_label_issues
 *                             filters and the label quality scores
 *
 * Conventions shared by every function here:
 *
 * - Matrices are row-major float32 with an explicit row stride (ld, in
 *   elements, >= c), like BLAS: element (i, j) of x is x[i * ld + j].
 *   n >= 0 rows (n = 0 is valid and writes nothing), 1 <= c <= INT32_MAX
 *   classes; the matrix extent (n - 1) * ld + c must fit in int64.
 * - Labels are int32 in [0, c), or equal to ignore_index (PyTorch's -100 is
 *   KD_LABELS_DEFAULT_IGNORE_INDEX); anything else is KD_ERR_INVALID_ARGUMENT.
 * - Required pointers must be non-NULL even when n = 0.  Outputs documented as
 *   optional may be NULL (skipped).
 * - NaN policy: inputs are checked before anything is written.  Probability
 *   inputs must be finite and in [0, 1] (NaN or +-Inf: KD_ERR_NOT_FINITE; a
 *   finite value outside [0, 1]: KD_ERR_INVALID_ARGUMENT).  Rows need not sum
 *   to 1 (the functions never renormalise).  Logit inputs may hold -Inf (a
 *   masked class, probability 0) but not NaN or +Inf, and every row needs one
 *   finite logit (KD_ERR_NOT_FINITE otherwise).
 * - Errors: every function returns a kd_status (core.h).  On failure nothing
 *   is written to any output.  The functions take no handle; instead, the last
 *   two arguments `err, err_size` receive a NUL-terminated message naming the
 *   function, the argument and the value that failed ("" on success),
 *   truncated to err_size bytes.  Pass NULL, 0 to skip the message.
 * - Memory: kd_select_pseudo_labels (with top-k), kd_label_quality (with a
 *   ranking), kd_find_label_issues and kd_ensemble_average allocate temporary
 *   memory (O(n), O(n), O(c) and O(K)) before writing anything; allocation
 *   failure is KD_ERR_OUT_OF_MEMORY.
 * - Thread safety: pure functions of their arguments; any thread, any time.
 *   Single-threaded and deterministic.
 */
#ifndef KDLIB_LABELS_H
#define KDLIB_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "kdlib/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KD_LABELS_DEFAULT_IGNORE_INDEX (-100)

/* ---- pseudo-label selection --------------------------------------------- */

/* Flags of kd_select_pseudo_labels (bitwise or).  Pinned values. */
enum {
    KD_SELECT_PROBABILITIES = 0, /* scores are probabilities (the default) */
    KD_SELECT_LOGITS = 1,        /* scores are logits: softmax is taken inside */
    KD_SELECT_NON_STRICT = 2     /* mask uses confidence >= threshold (FixMatch/USB)
                                    instead of > (tllib, the default) */
};

/* kd_select_pseudo_labels():
 * For every row i of the n x c teacher scores:
 *
 *     p_i        = scores_i (probabilities) or softmax(scores_i) (KD_SELECT_LOGITS)
 *     label_i    = argmax_j scores_ij      (lowest index on ties)
 *     conf_i     = max_j p_ij              (for logits: exp(-logsumexp(z_i - max z_i)))
 *     t_i        = class_thresholds[label_i] if class_thresholds else threshold
 *     mask_i     = conf_i > t_i            (>= with KD_SELECT_NON_STRICT)
 *
 * then, if top_k_per_class > 0, among the selected rows of each predicted
 * class only the top_k_per_class most confident stay selected (equal
 * confidences: the lower row index wins); the others get mask_i = 0.
 *
 *   n, c, scores, ld   the teacher matrix (see the conventions above).
 *   flags              KD_SELECT_* bits; unknown bits are KD_ERR_INVALID_ARGUMENT.
 *   threshold          in [0, 1] (0.95 in tllib's FixMatch); ignored when
 *                      class_thresholds is given.
 *   class_thresholds   NULL or c per-class thresholds in [0, 1] (e.g. from
 *                      kd_flexmatch_thresholds).
 *   top_k_per_class    0 = no limit, else the maximum kept per class (>= 0).
 *   confidence         optional n floats: conf_i (for every row, selected or not).
 *   pseudo_labels      optional n int32: label_i (for every row).
 *   mask               optional n floats: 1.0 selected, 0.0 not (ready to bind
 *                      as per-sample weights of a loss).
 *   num_selected       optional: number of selected rows.
 * An output overlapping an input or another output is KD_ERR_ALIASING
 * (nothing written).
 * Returns KD_OK; KD_ERR_NULL_POINTER (scores); KD_ERR_SHAPE (n < 0, c < 1,
 * ld < c, extent overflow); KD_ERR_INVALID_ARGUMENT (flags, threshold,
 * class_thresholds[j], top_k_per_class, a probability outside [0, 1]);
 * KD_ERR_NOT_FINITE (see the NaN policy); KD_ERR_ALIASING;
 * KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_select_pseudo_labels(int64_t n, int64_t c, const float *scores, int64_t ld,
                                         int32_t flags, float threshold,
                                         const float *class_thresholds, int64_t top_k_per_class,
                                         float *confidence, int32_t *pseudo_labels, float *mask,
                                         int64_t *num_selected, char *err, size_t err_size);

/* ---- training-signal annealing (UDA) ------------------------------------ */

/* Schedules of kd_tsa_threshold.  Pinned values. */
enum {
    KD_TSA_NONE = 0,   /* threshold 1: every labelled row kept */
    KD_TSA_LINEAR = 1, /* alpha = t */
    KD_TSA_EXP = 2,    /* alpha = exp(5 (t - 1)) */
    KD_TSA_LOG = 3     /* alpha = 1 - exp(-5 t) */
};

/* kd_tsa_threshold():
 * UDA's training-signal annealing threshold (Xie et al., NeurIPS 2020, as
 * USB's UDA.TSA): with progress t = step / total_steps,
 *     threshold = alpha(t) (1 - 1/c) + 1/c     (KD_TSA_NONE: 1),
 * rising from 1/c to 1 over training.
 *   schedule     KD_TSA_*.
 *   step         in [0, total_steps]; total_steps >= 1.
 *   c            number of classes, >= 1.
 *   threshold    receives the value (written only on success).
 * Returns KD_OK; KD_ERR_NULL_POINTER (threshold); KD_ERR_INVALID_ARGUMENT
 * (schedule, step, total_steps, c). */
KD_API kd_status kd_tsa_threshold(int32_t schedule, int64_t step, int64_t total_steps, int64_t c,
                                  double *threshold, char *err, size_t err_size);

/* kd_tsa_mask():
 * The supervised rows TSA keeps: mask_i = 1 when p_i <= threshold, else 0,
 * compared in double, with
 *     p_i = max_j softmax(logits_i)_j           labels NULL (USB's UDA)
 *     p_i = softmax(logits_i)_{labels_i}        labels given (the UDA paper:
 *                                               the probability of the label)
 * Rows labelled ignore_index get 0.  Bind mask as the per-sample weights
 * (KD_ARG_WEIGHTS) of the supervised cross-entropy: MEAN divides by n, as
 * USB's (ce * mask).mean().
 *   n, c, logits, ld   the labelled batch's logits (see the conventions;
 *                      detached: no gradient flows through the mask).
 *   labels             NULL, or n labels in [0, c) or ignore_index.
 *   threshold          in [0, 1] (e.g. from kd_tsa_threshold).
 *   mask               n floats, 1.0 kept, 0.0 masked out.
 *   num_kept           optional: the number of rows kept.
 * Returns KD_OK; KD_ERR_NULL_POINTER (logits, mask); KD_ERR_SHAPE;
 * KD_ERR_INVALID_ARGUMENT (threshold, a label, ignore_index a class);
 * KD_ERR_NOT_FINITE (see the NaN policy for logits); KD_ERR_ALIASING. */
KD_API kd_status kd_tsa_mask(int64_t n, int64_t c, const float *logits, int64_t ld,
                             const int32_t *labels, int32_t ignore_index, double threshold,
                             float *mask, int64_t *num_kept, char *err, size_t err_size);

/* ---- label quality and label issues (confident learning) ---------------- */

/* Label quality scores of kd_label_quality.  Pinned values.  With y_i the
 * given label and m_i = max_{j != y_i} p_ij (m_i = 0 when c = 1):
 *
 *   KD_LABEL_SCORE_SELF_CONFIDENCE    s_i = p_i,y_i
 *   KD_LABEL_SCORE_NORMALIZED_MARGIN  s_i = (p_i,y_i - m_i + 1) / 2   (cleanlab >= 2.0,
 *                                     in [0, 1])
 *   KD_LABEL_SCORE_MARGIN             s_i = p_i,y_i - m_i             (cleanlab 1.x's
 *                                     "normalized margin", in [-1, 1])
 *
 * Lower scores mean the given label is more likely wrong. */
enum {
    KD_LABEL_SCORE_SELF_CONFIDENCE = 0,
    KD_LABEL_SCORE_NORMALIZED_MARGIN = 1,
    KD_LABEL_SCORE_MARGIN = 2
};

/* kd_label_quality():
 * Score every labelled row of out-of-fold predicted probabilities and rank
 * the rows, most suspicious first.
 *   n, c, probs, ld   out-of-fold probabilities (one row per sample).
 *   labels            n given labels; rows with ignore_index are not scored.
 *   ignore_index      label value meaning "no label" (any int32 outside [0, c)).
 *   score_kind        KD_LABEL_SCORE_*.
 *   scores            optional n floats: s_i (NaN for ignored rows).
 *   ranking           optional n int64: the labelled rows sorted by s_i
 *                     ascending, equal scores by row index ascending (a stable
 *                     sort), followed by the ignored rows in index order.
 *   num_ranked        optional: number of labelled rows (the length of the
 *                     scored prefix of ranking).
 * Scores are computed in float32 (one subtraction and, for the normalized
 * margin, one addition and a halving).
 * An output overlapping an input or another output is KD_ERR_ALIASING.
 * Returns KD_OK; KD_ERR_NULL_POINTER (probs, labels); KD_ERR_SHAPE;
 * KD_ERR_INVALID_ARGUMENT (score_kind, a label, ignore_index in [0, c), a
 * probability outside [0, 1]); KD_ERR_NOT_FINITE; KD_ERR_ALIASING;
 * KD_ERR_OUT_OF_MEMORY (only when ranking is requested). */
KD_API kd_status kd_label_quality(int64_t n, int64_t c, const float *probs, int64_t ld,
                                  const int32_t *labels, int32_t ignore_index, int32_t score_kind,
                                  float *scores, int64_t *ranking, int64_t *num_ranked, char *err,
                                  size_t err_size);

/* kd_find_label_issues():
 * Confident learning's per-class thresholds and off-diagonal suspects
 * (Northcutt et al., JAIR 2021; cleanlab's compute_confident_joint):
 *
 *   t_j = mean of p_ij over the labelled rows with y_i = j   (accumulated in
 *         double, rounded to float; +Inf when no row is labelled j, so that no
 *         sample is ever confidently j)
 *   J_i = { j : p_ij >= t_j }                 (the confident classes of row i)
 *   k_i = argmax_{j in J_i} p_ij              (lowest index on ties), -1 if J_i is empty
 *   suspect_i = (y_i is a label) and (k_i >= 0) and (k_i != y_i)
 *
 * k_i is computed for ignored rows too (they never are suspects).
 *   n, c, probs, ld, labels, ignore_index   as kd_label_quality.
 *   class_thresholds   optional c floats: t_j.
 *   confident_class    optional n int32: k_i.
 *   suspect            optional n bytes: 1 suspect, 0 not.
 *   num_suspects       optional: number of suspects.
 * To list the issues worst first, walk the ranking of kd_label_quality and
 * keep the rows whose suspect byte is 1 (cleanlab's own rules, filters and
 * rankings: kd_cleanlab_find_label_issues).
 * Differences from cleanlab: cleanlab compares p_ij >= t_j - 1e-6, and when
 * two or more classes are confident it takes the argmax over all classes
 * (which may be a class that is not confident); kdlib uses the exact
 * comparison and the argmax over confident classes, as the paper states.
 * An output overlapping an input or another output is KD_ERR_ALIASING.
 * Returns KD_OK; KD_ERR_NULL_POINTER (probs, labels); KD_ERR_SHAPE;
 * KD_ERR_INVALID_ARGUMENT (a label, ignore_index in [0, c), a probability
 * outside [0, 1]); KD_ERR_NOT_FINITE; KD_ERR_ALIASING; KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_find_label_issues(int64_t n, int64_t c, const float *probs, int64_t ld,
                                      const int32_t *labels, int32_t ignore_index,
                                      float *class_thresholds, int32_t *confident_class,
                                      uint8_t *suspect, int64_t *num_suspects, char *err,
                                      size_t err_size);

/* ---- soft labels --------------------------------------------------------- */

/* Modes of kd_soft_labels.  Pinned values. */
enum {
    KD_SOFT_LABEL_ONEHOT = 0,       /* q = w onehot(y) + (1 - w) onehot(pred) */
    KD_SOFT_LABEL_PROBABILITIES = 1 /* q = w onehot(y) + (1 - w) p           */
};

/* kd_soft_labels():
 * Soften given labels with a model's predictions, into an n x c matrix q
 * (feed it to the soft-target cross-entropy):
 *
 *   KD_SOFT_LABEL_ONEHOT         q_i = w onehot(y_i) + (1 - w) onehot(pred_i)
 *   KD_SOFT_LABEL_PROBABILITIES  q_i = w onehot(y_i) + (1 - w) p_i
 *
 * with pred_i = predictions[i] when predictions is given, else argmax_j p_ij
 * (lowest index on ties).  A row whose label is ignore_index has no given
 * label: its q_i is the prediction term alone with weight 1 (onehot(pred_i)
 * or p_i), i.e. a plain pseudo-label.  Computed in float32 as written
 * (w * [j == y] + (1 - w) * x).
 *   n, c           shape.
 *   labels         n given labels (or ignore_index).
 *   ignore_index   label value meaning "no label" (outside [0, c)).
 *   label_weight   w in [0, 1] (0.7 in the seeds' recipe).
 *   mode           KD_SOFT_LABEL_*.
 *   probs, ld_probs  n x c probabilities; required for PROBABILITIES, and for
 *                  ONEHOT without predictions; may be NULL otherwise (then
 *                  ld_probs is ignored).
 *   predictions    NULL or n classes in [0, c) (ONEHOT only; must be NULL
 *                  with PROBABILITIES).
 *   out, ld_out    the n x c output.  out may be probs itself (in place, same
 *                  ld); any other overlap with an input (probs, labels,
 *                  predictions) is KD_ERR_ALIASING.
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_SHAPE; KD_ERR_INVALID_ARGUMENT
 * (mode, label_weight, a label or prediction, ignore_index in [0, c),
 * predictions with PROBABILITIES, a probability outside [0, 1]);
 * KD_ERR_NOT_FINITE; KD_ERR_ALIASING. */
KD_API kd_status kd_soft_labels(int64_t n, int64_t c, const int32_t *labels, int32_t ignore_index,
                                float label_weight, int32_t mode, const float *probs,
                                int64_t ld_probs, const int32_t *predictions, float *out,
                                int64_t ld_out, char *err, size_t err_size);

/* Flags of kd_soft_labels_selective (bitwise or).  Pinned values. */
enum {
    KD_SOFT_LABEL_SUSPECTS_ONLY = 1,    /* soften only the rows flagged in suspect; the
                                           others keep their hard given label */
    KD_SOFT_LABEL_CONFIDENCE_WEIGHT = 2 /* w_i = w + (1 - w) p_i,y_i: the given label's weight
                                           grows with its out-of-fold probability */
};

/* kd_soft_labels_selective():
 * The soft labels of kd_soft_labels, chosen row by row from out-of-fold
 * probabilities p (the seeds' "soften only suspects, or weight by the
 * out-of-fold confidence"):
 *
 *   q_i = w_i onehot(y_i) + (1 - w_i) x_i,  x_i = onehot(argmax_j p_ij) (ONEHOT,
 *                                           lowest index on ties) or p_i (PROBABILITIES)
 *   w_i = 1                            with SUSPECTS_ONLY and suspect[i] = 0
 *         w + (1 - w) p_i,y_i          with CONFIDENCE_WEIGHT (otherwise)
 *         w                            otherwise (flags = 0 is kd_soft_labels
 *                                      without predictions, bit for bit)
 *
 * (w = label_weight).  A row labelled ignore_index gets x_i with weight 1, as
 * in kd_soft_labels.  The suspect mask is e.g. the issues of
 * kd_cleanlab_find_label_issues or the suspects of kd_find_label_issues.
 * Computed in float32 as written.
 *   n, c, labels, ignore_index, label_weight, mode   as kd_soft_labels.
 *   flags          KD_SOFT_LABEL_SUSPECTS_ONLY | KD_SOFT_LABEL_CONFIDENCE_WEIGHT.
 *   probs, ld_probs  n x c probabilities (required).
 *   suspect        n bytes 0 / 1, required with SUSPECTS_ONLY, else must be NULL.
 *   out, ld_out    the n x c output; out may be probs itself (same ld); any
 *                  other overlap with an input is KD_ERR_ALIASING.
 * Returns KD_OK; KD_ERR_NULL_POINTER (labels, probs, out, suspect with
 * SUSPECTS_ONLY); KD_ERR_SHAPE; KD_ERR_INVALID_ARGUMENT (mode, flags,
 * label_weight, a label, ignore_index in [0, c), suspect given without
 * SUSPECTS_ONLY or a suspect byte other than 0 / 1, a probability outside
 * [0, 1]); KD_ERR_NOT_FINITE; KD_ERR_ALIASING. */
KD_API kd_status kd_soft_labels_selective(int64_t n, int64_t c, const int32_t *labels,
                                          int32_t ignore_index, float label_weight, int32_t mode,
                                          int32_t flags, const float *probs, int64_t ld_probs,
                                          const uint8_t *suspect, float *out, int64_t ld_out,
                                          char *err, size_t err_size);

/* ---- ensembles ----------------------------------------------------------- */

/* kd_ensemble_average():
 * out = sum_k w_k X_k with w_k = weights[k] / sum(weights) (computed in
 * double, rounded to float), or w_k = 1/K when weights is NULL.  The same
 * call averages teacher logits (then take the softmax: "average before the
 * softmax", as the multi-teacher distillation loss does) or teacher
 * probabilities (rows keep summing to 1 up to rounding).  Accumulated in
 * float32 in the order k = 0..K-1.
 *   n, c           shape.
 *   k              number of teachers, >= 1.
 *   inputs         k matrix pointers (each non-NULL), n x c.
 *   lds            k row strides (each >= c).
 *   weights        NULL or k weights, each finite and >= 0, with a positive sum.
 *   out, ld_out    the n x c output.  out may be inputs[0] itself (in place,
 *                  same ld); any other overlap with an input matrix or with the
 *                  arrays inputs, lds and weights is KD_ERR_ALIASING.
 * Every input element must be finite (KD_ERR_NOT_FINITE: the message names
 * the teacher, row and column).
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_SHAPE; KD_ERR_INVALID_ARGUMENT
 * (k, a weight); KD_ERR_NOT_FINITE; KD_ERR_ALIASING; KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_ensemble_average(int64_t n, int64_t c, int32_t k, const float *const *inputs,
                                     const int64_t *lds, const float *weights, float *out,
                                     int64_t ld_out, char *err, size_t err_size);

/* ---- cleanlab-compatible confident learning ------------------------------ */

/* The functions below reproduce cleanlab 2.x (count.py, filter.py, rank.py)
 * for multi-class (multi_label=False) data, with cleanlab's names, defaults
 * and tie rules; docs/labels.md lists every deviation.  They follow the
 * conventions of this header, with these specifics:
 *
 * - Rows whose label is ignore_index are left out, as if the caller had
 *   removed them before calling cleanlab ("n" below means the number of
 *   labelled rows); they are never issues and get NaN scores.
 * - Probabilities are float32; every computation is in double, in cleanlab's
 *   order of operations (NumPy's pairwise summation included), so results
 *   equal cleanlab's on pred_probs.astype(np.float64).
 * - c x c matrices are dense row-major (row stride c); the confident joint
 *   is int64 and indexed [given label][true label] as in cleanlab.
 * - Temporary memory: O(n + c^2) doubles and int64, allocated before anything
 *   is written (KD_ERR_OUT_OF_MEMORY when it is not available).
 * - cleanlab's checks that kdlib does not copy: it rejects n = 0 and labels
 *   with a single class other than 0; kdlib computes the same formulas. */

/* Flags of kd_cleanlab_confident_joint and
 * kd_cleanlab_estimate_py_and_noise_matrices (bitwise or).  Pinned values. */
enum {
    KD_CLEANLAB_CALIBRATE = 1, /* calibrate the joint (cleanlab's calibrate=True) */
    KD_CLEANLAB_CONVERGE = 2   /* converge_latent_estimates=True */
};

/* kd_cleanlab_confident_thresholds(): cleanlab's get_confident_thresholds:
 *   t_j = mean of p_ij over the rows labelled j (NumPy's pairwise sum / count),
 *         2 when no row is labelled j, then max(t_j, 2e-6).
 *   thresholds   c doubles (required).
 * Returns KD_OK; KD_ERR_NULL_POINTER (probs, labels, thresholds);
 * KD_ERR_SHAPE; KD_ERR_INVALID_ARGUMENT (a label, ignore_index in [0, c), a
 * probability outside [0, 1]); KD_ERR_NOT_FINITE; KD_ERR_ALIASING;
 * KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_cleanlab_confident_thresholds(int64_t n, int64_t c, const float *probs,
                                                  int64_t ld, const int32_t *labels,
                                                  int32_t ignore_index, double *thresholds,
                                                  char *err, size_t err_size);

/* kd_cleanlab_confident_joint(): cleanlab's compute_confident_joint
 * (thresholds from kd_cleanlab_confident_thresholds):
 *
 *   J_i   = { j : p_ij >= t_j - 1e-6 }
 *   k_i   = the only element of J_i when |J_i| = 1; argmax_j p_ij over ALL
 *           classes (lowest index on ties) when |J_i| >= 2; none when J_i is
 *           empty (row i is not counted)
 *   C[y_i][k_i] += 1, then every diagonal entry is raised to at least 1.
 *
 * With KD_CLEANLAB_CALIBRATE (cleanlab's default calibrate=True), row y of C
 * is rescaled to the number of rows labelled y, the whole matrix to n, and
 * each row rounded to integers preserving its total (cleanlab's
 * calibrate_confident_joint and round_preserving_row_totals).
 *   flags             0 or KD_CLEANLAB_CALIBRATE (others: KD_ERR_INVALID_ARGUMENT).
 *   confident_joint   c x c int64 (required).
 *   off_diagonal      optional n bytes: 1 when row i is counted and k_i != y_i
 *                     (cleanlab's return_indices_of_off_diagonals; these rows
 *                     are filter_by="confident_learning" before its final
 *                     argmax check).
 *   num_off_diagonal  optional: their number.
 * Returns as kd_cleanlab_confident_thresholds, plus KD_ERR_INVALID_ARGUMENT
 * (flags). */
KD_API kd_status kd_cleanlab_confident_joint(int64_t n, int64_t c, const float *probs, int64_t ld,
                                             const int32_t *labels, int32_t ignore_index,
                                             int32_t flags, int64_t *confident_joint,
                                             uint8_t *off_diagonal, int64_t *num_off_diagonal,
                                             char *err, size_t err_size);

/* kd_cleanlab_estimate_joint(): cleanlab's estimate_joint: the calibrated
 * confident joint divided by its sum, P(given label = i, true label = j).
 *   confident_joint   NULL: computed (calibrated) from probs and labels; else
 *                     a c x c int64 joint of the caller's (entries >= 0),
 *                     calibrated to the labels first, as cleanlab does.
 *   joint             c x c doubles (required).
 * Returns as kd_cleanlab_confident_thresholds, plus KD_ERR_INVALID_ARGUMENT
 * (a negative confident_joint entry). */
KD_API kd_status kd_cleanlab_estimate_joint(int64_t n, int64_t c, const float *probs, int64_t ld,
                                            const int32_t *labels, int32_t ignore_index,
                                            const int64_t *confident_joint, double *joint,
                                            char *err, size_t err_size);

/* kd_cleanlab_estimate_py_and_noise_matrices(): cleanlab's
 * estimate_py_and_noise_matrices_from_probabilities with py_method="cnt":
 * from the confident joint C (calibrated with KD_CLEANLAB_CALIBRATE),
 *
 *   ps_j               = (rows labelled j) / n
 *   noise_matrix[i][j] = C[i][j] / sum_i C[i][j]        P(given i | true j)
 *   inv_noise[j][i]    = C[i][j] / sum_j C[i][j]        P(true j | given i)
 *   py_j               = inv_noise[j][j] / noise_matrix[j][j] * ps_j, clipped
 *                        to [1e-6, 1] and normalised to sum 1
 *
 * with off-diagonal noise rates clipped to [0, 0.9999] and columns
 * renormalised (clip_noise_rates); with KD_CLEANLAB_CONVERGE (cleanlab's
 * default converge_latent_estimates=True) the three estimates are then made
 * consistent (3 x 5 iterations of _converge_estimates) and py clipped to
 * [1e-5, 1].  cleanlab's defaults are flags = KD_CLEANLAB_CALIBRATE |
 * KD_CLEANLAB_CONVERGE.
 *   py, noise_matrix, inv_noise_matrix   optional c and c x c doubles.
 *   confident_joint    optional c x c int64: C.
 * Returns as kd_cleanlab_confident_thresholds, plus KD_ERR_INVALID_ARGUMENT
 * (flags). */
KD_API kd_status kd_cleanlab_estimate_py_and_noise_matrices(
    int64_t n, int64_t c, const float *probs, int64_t ld, const int32_t *labels,
    int32_t ignore_index, int32_t flags, double *py, double *noise_matrix, double *inv_noise_matrix,
    int64_t *confident_joint, char *err, size_t err_size);

/* Estimation methods of kd_cleanlab_num_label_issues.  Pinned values. */
enum {
    KD_CLEANLAB_OFF_DIAGONAL = 0,            /* "off_diagonal" (cleanlab's default) */
    KD_CLEANLAB_OFF_DIAGONAL_CALIBRATED = 1, /* "off_diagonal_calibrated" */
    KD_CLEANLAB_OFF_DIAGONAL_CUSTOM = 2      /* "off_diagonal_custom" */
};

/* kd_cleanlab_num_label_issues(): cleanlab's count.num_label_issues:
 *   OFF_DIAGONAL             the off-diagonal rows of the (uncalibrated)
 *                            confident joint, minus the rows whose given label
 *                            is the argmax once p_i,y_i is raised by 1e-6
 *   OFF_DIAGONAL_CALIBRATED  rint((1 - trace(estimate_joint)) * n)
 *   OFF_DIAGONAL_CUSTOM      the same with the caller's confident_joint
 *   confident_joint   c x c int64 (entries >= 0) for OFF_DIAGONAL_CUSTOM, else
 *                     must be NULL (cleanlab ignores it with a warning; kdlib
 *                     rejects the call).
 *   num_issues        required.
 * Returns as kd_cleanlab_confident_thresholds, plus KD_ERR_NULL_POINTER (no
 * confident_joint with OFF_DIAGONAL_CUSTOM), KD_ERR_INVALID_ARGUMENT
 * (estimation_method, a confident_joint given to another method, a negative
 * entry). */
KD_API kd_status kd_cleanlab_num_label_issues(int64_t n, int64_t c, const float *probs, int64_t ld,
                                              const int32_t *labels, int32_t ignore_index,
                                              int32_t estimation_method,
                                              const int64_t *confident_joint, int64_t *num_issues,
                                              char *err, size_t err_size);

/* Filters of kd_cleanlab_find_label_issues (cleanlab's filter_by).  Pinned. */
enum {
    KD_CLEANLAB_PRUNE_BY_NOISE_RATE = 0, /* cleanlab's default */
    KD_CLEANLAB_PRUNE_BY_CLASS = 1,
    KD_CLEANLAB_BOTH = 2,
    KD_CLEANLAB_CONFIDENT_LEARNING = 3,
    KD_CLEANLAB_PREDICTED_NEQ_GIVEN = 4,
    KD_CLEANLAB_LOW_NORMALIZED_MARGIN = 5,
    KD_CLEANLAB_LOW_SELF_CONFIDENCE = 6
};

/* Score of kd_cleanlab_get_label_quality_scores beyond KD_LABEL_SCORE_SELF_CONFIDENCE
 * and KD_LABEL_SCORE_NORMALIZED_MARGIN (KD_LABEL_SCORE_MARGIN is not a
 * cleanlab method there).  Pinned value. */
enum {
    KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY = 3,
    KD_CLEANLAB_RANK_NONE = -1 /* rank_by of kd_cleanlab_find_label_issues: row order */
};

/* kd_cleanlab_find_label_issues(): cleanlab's filter.find_label_issues.
 * From the calibrated confident joint C, the prune counts P = C^T go through
 * _keep_at_least_n_per_class (diagonal raised to min_examples_per_class, the
 * difference taken from the nonzero off-diagonal entries, frac_noise applied,
 * truncated to integers).  Then, for the rows labelled k (only classes with
 * more than min_examples_per_class rows, and more than one row):
 *   PRUNE_BY_NOISE_RATE  for every j != k, the P[j][k] rows with the largest
 *                        p_ij - p_ik
 *   PRUNE_BY_CLASS       the (count_k - P[k][k]) rows with the smallest p_ik
 *   BOTH                 rows flagged by both
 *   CONFIDENT_LEARNING   the off-diagonal rows of the confident joint
 *   PREDICTED_NEQ_GIVEN  argmax_j p_ij != y_i
 * and, for these five, a row is not an issue when its given label is the
 * argmax once p_i,y_i is raised by 1e-6.
 *   LOW_NORMALIZED_MARGIN, LOW_SELF_CONFIDENCE   the num_label_issues
 *                        (OFF_DIAGONAL) rows with the lowest score.
 * Equal keys are ordered by row index (cleanlab's NumPy quicksort keeps that
 * order for up to 16 keys; docs/labels.md).
 *   filter_by                KD_CLEANLAB_* filter.
 *   frac_noise               in [0, 1] (cleanlab's default 1); used by the
 *                            three prune filters only (ignored otherwise, as
 *                            cleanlab does after a warning).
 *   num_to_remove_per_class  NULL or c int64 >= 0 (prune filters only, else
 *                            KD_ERR_INVALID_ARGUMENT as in cleanlab).
 *   min_examples_per_class   >= 0 (cleanlab's default 1).
 *   rank_by                  KD_CLEANLAB_RANK_NONE or the quality score
 *                            (KD_LABEL_SCORE_SELF_CONFIDENCE, _NORMALIZED_MARGIN,
 *                            _CONFIDENCE_WEIGHTED_ENTROPY) ordering ranked
 *                            (cleanlab's return_indices_ranked_by).
 *   adjust_pred_probs        0 or 1: rank_by_kwargs={"adjust_pred_probs": True}.
 *   issues                   optional n bytes: 1 issue, 0 not (the mask).
 *   ranked                   optional n int64: the issues' row indices, lowest
 *                            score first (equal scores: row order), or in row
 *                            order with KD_CLEANLAB_RANK_NONE; entries past
 *                            num_issues are left unchanged.
 *   num_issues               optional.
 * Returns as kd_cleanlab_confident_thresholds, plus KD_ERR_INVALID_ARGUMENT
 * (filter_by, frac_noise, num_to_remove_per_class, min_examples_per_class,
 * rank_by, adjust_pred_probs). */
KD_API kd_status kd_cleanlab_find_label_issues(int64_t n, int64_t c, const float *probs, int64_t ld,
                                               const int32_t *labels, int32_t ignore_index,
                                               int32_t filter_by, double frac_noise,
                                               const int64_t *num_to_remove_per_class,
                                               int64_t min_examples_per_class, int32_t rank_by,
                                               int32_t adjust_pred_probs, uint8_t *issues,
                                               int64_t *ranked, int64_t *num_issues, char *err,
                                               size_t err_size);

/* kd_cleanlab_get_label_quality_scores(): cleanlab's rank.get_label_quality_scores
 * (higher = label more likely correct), in double.  With q_i = p_i, or with
 * adjust_pred_probs = 1 q_ij = (p_ij - t_j + max_k t_k) / sum_j (...) (t the
 * confident thresholds):
 *   KD_LABEL_SCORE_SELF_CONFIDENCE    q_i,y_i
 *   KD_LABEL_SCORE_NORMALIZED_MARGIN  (q_i,y_i - max_{j != y_i} q_ij + 1) / 2
 *                                     (the max is 0 when c = 1)
 *   KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY
 *                                     s = H(p_i) / log(c) / max(p_i,y_i, 1e-6),
 *                                     score log(s + 1) / max(s, 1e-6)
 *                                     (needs c >= 2; no adjust_pred_probs)
 *   scores   n doubles (required); NaN for ignored rows.
 * Returns as kd_cleanlab_confident_thresholds, plus KD_ERR_INVALID_ARGUMENT
 * (method, adjust_pred_probs not 0/1 or with the entropy score, the entropy
 * score with c = 1). */
KD_API kd_status kd_cleanlab_get_label_quality_scores(int64_t n, int64_t c, const float *probs,
                                                      int64_t ld, const int32_t *labels,
                                                      int32_t ignore_index, int32_t method,
                                                      int32_t adjust_pred_probs, double *scores,
                                                      char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_LABELS_H */
