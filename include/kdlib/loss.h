/*
 * kdlib losses: one opaque handle per loss, configured by enum-keyed
 * parameters, fed by role-keyed bindings, executed by forward / backward /
 * fused forward+backward.
 *
 *   kd_loss *h;
 *   kd_loss_create(&h, KD_LOSS_KL_DISTILL, num_classes);
 *   kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 4.0);
 *   kd_loss_set_float(h, KD_PARAM_ALPHA, 0.9);
 *   kd_loss_bind_matrix(h, KD_ARG_STUDENT, student_logits, ld);
 *   kd_loss_bind_matrix(h, KD_ARG_TEACHER, teacher_logits, ld);
 *   kd_loss_bind_labels(h, labels);
 *   kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, ld);
 *   float loss;
 *   kd_loss_forward_backward(h, n, &loss);   // loss and d loss / d student
 *   kd_loss_destroy(h);
 *
 * Data: logits and probabilities are row-major float32 matrices of n rows and
 * C = num_classes columns, row i starting at data + i * ld (ld >= C, like BLAS).
 * Labels are int32 with an ignore value (KD_PARAM_IGNORE_INDEX, default -100).
 * The math of every loss, with its gradient and the PyTorch expression it
 * matches, is in docs/losses.md.
 *
 * Bindings are borrowed pointers: the handle remembers them until they are
 * rebound or unbound (bind NULL), and reads or writes them only inside the
 * compute calls.  Binding checks the role and the stride, not the memory.
 *
 * Reductions (KD_PARAM_REDUCTION): each loss is a sum of terms; for each term
 * MEAN divides the sum of per-sample values by the number of rows that count
 * (all n rows, or the rows whose label is not ignored, see each loss), SUM adds
 * them, NONE returns the per-sample values.  Per-sample weights
 * (KD_ARG_WEIGHTS, >= 0) scale each row's loss and gradient but never change
 * the denominator, so a 0/1 weight is a mask whose masked rows count as 0 (as
 * tllib).  A term with no row to average (n = 0, or every row ignored for a
 * term that skips ignored rows) contributes 0 and a zero gradient (PyTorch
 * gives NaN there); a distillation soft term normalised by the batch still
 * counts every row when all labels are ignored.
 *
 * Non-finite input: by default NaN/Inf propagate through the arithmetic as in
 * PyTorch (an +Inf logit gives NaN).  With KD_PARAM_CHECK_FINITE = 1 every
 * input is scanned first and KD_ERR_NOT_FINITE is returned, nothing written.
 *
 * In place: the student gradient may be written over the student logits
 * (KD_ARG_GRAD_STUDENT bound to the same pointer with the same ld), which
 * saves an n x C buffer.  Any other overlap between an output (gradients,
 * the loss value or vector, KD_ARG_PER_SAMPLE, KD_ARG_MASK,
 * KD_ARG_PSEUDO_LABELS, statistics) and any other buffer the call reads or
 * writes (inputs, labels, weights, class thresholds, the upstream values,
 * global statistics, other outputs) is refused with KD_ERR_ALIASING: every
 * output's byte range is checked against every other bound buffer.
 *
 * Errors: on any error nothing is written to any output; the handle keeps a
 * message naming the argument and the value (kd_loss_last_error()).
 *
 * Threads: rows are split across KD_PARAM_THREADS OpenMP threads (default 1,
 * 0 = all cores).  With fewer rows than threads and rows of at least 2^18
 * classes (KL distillation with KD_DIVERGENCE_FORWARD_KL, cross-entropy,
 * logit MSE, pseudo-label), each row is split instead: its segments of 4096
 * classes run on all the threads.  Per-row values are reduced in row order
 * and per-segment sums in segment order, so results are bit-identical for
 * any thread count.  With one thread no call enters OpenMP (no parallel
 * region, nothing allocated by the runtime); with more, the OpenMP runtime
 * may end the process when it cannot allocate its threads (docs/api.md).
 * A handle is used by one thread at a time; distinct handles are independent
 * and may run concurrently.  A call that changes a handle (bind, set,
 * forward, backward, forward_backward, local_stats, finish,
 * kd_linear_kl_distill, and the getters kd_loss_get_int, kd_loss_get_float
 * and kd_loss_stats_size) while another thread's call on the same handle is
 * running returns KD_ERR_STATE at once and writes nothing: no output, no
 * binding, no parameter, not even the handle's message (the running call
 * owns it).  This detects misuse cheaply (one atomic flag per call, as
 * SQLite's SQLITE_MISUSE); it is not a lock: kd_loss_destroy and
 * kd_loss_last_error are not covered, and the caller must still serialise.
 *
 * Memory: the handle owns a workspace that grows when n or the number of
 * teachers grows; compute calls with shapes already seen never allocate.
 */
#ifndef KDLIB_LOSS_H
#define KDLIB_LOSS_H

#include "kdlib/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kd_loss kd_loss;

/* Loss kinds (pinned values). */
typedef int32_t kd_loss_kind;
enum {
    /* Soft-target cross-entropy  l_i = -sum_c q_ic log softmax(s_i)_c.
     * The target q comes from what is bound:
     *   labels only         q = onehot(y) with label smoothing eps:
     *                       (1-eps) onehot + eps/C  (PyTorch F.cross_entropy);
     *   KD_ARG_TARGET       q = the given probabilities;
     *   KD_ARG_TEACHER      q = softmax(t / T), T = KD_PARAM_TEMPERATURE
     *                       (the student is not divided by T);
     *   labels + target or teacher: q = w * onehot(y) + (1 - w) * q_src,
     *                       w = KD_PARAM_LABEL_WEIGHT (soft labels).
     * With labels bound, rows labelled ignore_index give 0 and do not count
     * in the mean; otherwise the mean is over n. */
    KD_LOSS_CROSS_ENTROPY = 1,
    /* Distillation  l_i = ws * T^2 * D(t_i, s_i) + wh * CE(s_i, y_i)
     * with D the divergence at temperature T between softmax(t/T) (teacher)
     * and softmax(s/T) (student): forward KL (default), reverse KL or the
     * generalised JSD(beta).  ws = KD_PARAM_SOFT_WEIGHT (alpha), wh =
     * KD_PARAM_HARD_WEIGHT (1 - alpha); the T^2 factor can be switched off.
     * Labels optional: without labels the hard term is absent and the soft
     * term keeps its weight, so the default (alpha = 1) is T^2 * KL, Hinton's
     * loss without labels; a weight set for the labelled case (alpha = 0.9)
     * still scales it.  Several
     * teachers (kd_loss_bind_teachers) are averaged, with optional weights,
     * in logit space before the softmax.  MEAN divides the soft term by n
     * ("batchmean", KD_NORMALIZE_BATCH) or by the non-ignored rows
     * (KD_NORMALIZE_VALID) and the hard term by the non-ignored rows. */
    KD_LOSS_KL_DISTILL = 2,
    /* Logit matching  l_i = ws * mean_c (s_ic - t_ic)^2 + wh * CE(s_i, y_i)
     * (PyTorch MSELoss: MEAN = mean over all n*C elements; SUM adds the
     * per-row means, i.e. MSELoss(reduction="sum") / C).  Teachers are
     * averaged as for KL_DISTILL. */
    KD_LOSS_LOGIT_MSE = 3,

    /* ---- self-training (tllib.self_training; values 10-29 reserved) ----
     * Thresholding (PSEUDO_LABEL and STRONG_WEAK): the teacher row t_i gives
     * conf_i = max_c softmax(t_i)_c (float32, as PyTorch), the pseudo-label
     * yhat_i = argmax_c t_i (first maximum; first NaN if any) and the mask
     * m_i = [conf_i > tau] (KD_THRESHOLD_STRICT, tllib, default) or
     * [conf_i >= tau] (KD_THRESHOLD_INCLUSIVE, FixMatch/USB), with tau =
     * KD_PARAM_THRESHOLD rounded to float, or tau_{yhat_i} when per-class
     * thresholds are bound (KD_ARG_CLASS_THRESHOLDS, e.g. from FlexMatch).
     * The teacher never gets a gradient.  Several teachers are averaged in
     * logit space as for KL_DISTILL.  A masked row (m_i = 0) contributes
     * exactly 0 and a zero gradient, even when its student row is not finite
     * (tllib multiplies, so NaN * 0 = NaN there).  KD_ARG_MASK and
     * KD_ARG_PSEUDO_LABELS, if bound, receive m_i (0/1) and yhat_i from
     * forward and forward_backward. */

    /* Pseudo-label (tllib ConfidenceBasedSelfTrainingLoss):
     *   l_i = m_i * CE(s_i, yhat_i).
     * MEAN divides by n: masked rows count as 0 in the mean. */
    KD_LOSS_PSEUDO_LABEL = 10,
    /* UDA strong/weak consistency (tllib StrongWeakConsistencyLoss):
     *   l_i = m_i * KL(softmax(t_i) || softmax(s_i / T)),
     * t = weak-view logits (KD_ARG_TEACHER, at temperature 1), s = strong-view
     * student logits, T = KD_PARAM_TEMPERATURE.  MEAN is
     * sum_i l_i / max(sum_i m_i, 1) (per-sample weights scale l_i only). */
    KD_LOSS_STRONG_WEAK = 11,
    /* Consistency (tllib Pi-model ConsistencyLoss):  l_i = D(p1_i, p2_i),
     * p1 from KD_ARG_STUDENT, p2 from KD_ARG_TEACHER (exactly one; the second
     * view, which may be trainable), both logits (p = softmax, the gradient
     * goes through it) or probabilities (KD_PARAM_INPUT_TYPE).  D =
     * KD_PARAM_DISTANCE: L2 sum_c (p1 - p2)^2 (tllib, default), KL(p2 || p1)
     * = sum_c p2 (log p2 - log p1) (F.kl_div(log p1, p2)), or JS =
     * (KL(p1||M) + KL(p2||M)) / 2, M = (p1 + p2) / 2.  0 log 0 = 0, and the
     * gradient of such a term with respect to the zero probability is 0.
     * The optional mask is KD_ARG_WEIGHTS.  MEAN divides by n.
     * KD_ARG_GRAD_TEACHER, if bound, receives d loss / d second input. */
    KD_LOSS_CONSISTENCY = 12,
    /* Class balance (tllib self-ensemble ClassBalanceLoss):  a batch loss
     *   pbar_c = (1/n) sum_i p_ic,  L = (1/C) sum_c BCE(pbar_c, 1/C),
     * BCE(x, y) = -(y max(log x, -100) + (1-y) max(log(1-x), -100)) (PyTorch),
     * p = softmax of logits or given probabilities (KD_PARAM_INPUT_TYPE).
     * The gradient flows through the batch mean to every row.  Reduction MEAN
     * only (the loss is one scalar); no per-sample output, no weights.  Given
     * probabilities must give pbar_c in [0, 1] (KD_ERR_INVALID_ARGUMENT).
     * With logits, 1 - pbar_c of a dominant class is summed from the other
     * classes (no cancellation).  n = 0 gives 0. */
    KD_LOSS_CLASS_BALANCE = 13,
    /* Minimum class confusion (tllib MinimumClassConfusionLoss), a batch loss:
     *   P = softmax(s / T);  H_i = -sum_c P_ic log(P_ic + 1e-5);
     *   w_i = n (1 + e^-H_i) / sum_j (1 + e^-H_j)   (no gradient through w);
     *   A = (w o P)^T P (C x C, cblas_sgemm);  r_k = sum_m A_km;
     *   A'_jk = A_jk / r_k  (tllib's A / A.sum(dim=1) broadcasts the row
     *   sums over the columns);  L = (sum A' - trace A') / C.
     * A class with r_k = 0 (every P_ik underflowed to 0) would give 0/0 =
     * NaN in tllib; kdlib defines that quotient as 0 (no loss, no gradient).
     * Logits only; reduction MEAN only; no per-sample output, no weights.
     * The C x C matrix products run in OpenBLAS with its own threads.
     * n = 0 gives 0. */
    KD_LOSS_MCC = 14,
    /* DST worst-case estimation (tllib WorstCaseEstimationLoss), two batches:
     *   L = eta' * mean_i CE(a_i, argmax l_i)
     *     + mean_u -log(min(1 - softmax(b_u)[argmax m_u] + 1e-6, 1))
     * with l = KD_ARG_LABELED_MAIN and a = KD_ARG_LABELED_ADV (n rows, the n
     * of the compute calls), m = KD_ARG_UNLABELED_MAIN and b =
     * KD_ARG_UNLABELED_ADV (KD_PARAM_UNLABELED_ROWS rows, default n), eta' =
     * KD_PARAM_ETA_PRIME.  The main-head logits only give argmax labels (no
     * gradient); gradients go to KD_ARG_GRAD_LABELED_ADV and
     * KD_ARG_GRAD_UNLABELED_ADV (either may be left unbound; backward needs
     * one).  1 - p is summed from the other classes relative to the row
     * maximum (tllib subtracts in float32 and loses it near p = 1).  Where
     * the min clamps (p < ~1e-6) the term and its gradient are 0.
     * Reduction MEAN (each batch by its own row count; an empty batch gives
     * 0) or SUM; no NONE, per-sample output or weights.  KD_ARG_STUDENT is not
     * used. */
    KD_LOSS_WORST_CASE = 15,
    /* Entropy minimisation (Grandvalet & Bengio 2005; tllib entropy()):
     *   l_i = H(p_i) = -sum_c p_ic log p_ic,  p_i = softmax(s_i / T),
     * s = KD_ARG_STUDENT logits (the only input; no teacher, no labels),
     * T = KD_PARAM_TEMPERATURE (default 1).  Gradient
     *   d l_i / d s_ij = -(1/T) p_ij (log p_ij + H(p_i)).
     * Per-sample weights (KD_ARG_WEIGHTS, e.g. a confidence mask) scale l_i;
     * MEAN divides by n (tllib's entropy(softmax(s), 'mean')), SUM adds,
     * NONE returns l_i.  0 log 0 = 0 (PyTorch's p * log_softmax gives NaN
     * for a -Inf logit); a confident row (max p > 0.99) keeps its relative
     * accuracy: it runs in double, H = log1p(rest) - sum_{j != argmax} p_j z_j
     * with rest = sum_{j != argmax} e^{z_j}, z = (s - max s) / T. */
    KD_LOSS_ENTROPY = 16,
    /* FreeMatch self-adaptive fairness (Wang et al. 2023; USB's entropy_loss
     * in semilearn/algorithms/freematch/freematch.py), a batch loss over the
     * selected rows of the strong-view student logits s (KD_ARG_STUDENT):
     *   p_i = softmax(s_i),  k_i = argmax_c p_ic (first maximum, as torch.max),
     *   P_c = sum_i w_i p_ic,  K_c = sum_i w_i [k_i = c]   (K: hist_s unnormalised),
     *   q_c = pm_c r_c / sum_k pm_k r_k,  r_c = 1 / lh_c (0 where lh_c = 0),
     *   u_c = P_c / K_c (0 where K_c = 0),  m_c = u_c / sum_k u_k,
     *   L = sum_c q_c log(m_c + 1e-12)
     * with pm = KD_ARG_CLASS_PROBS (FreeMatch's p_model,
     * KD_THRESHOLD_STATE_CLASS_PROBS) and lh = KD_ARG_LABEL_HISTOGRAM
     * (label_hist, KD_THRESHOLD_STATE_LABEL_HISTOGRAM), both C values, finite
     * and >= 0, required, with sum_k pm_k r_k > 0 (else KD_ERR_INVALID_ARGUMENT).
     * m_c is USB's normalize(mean(p) / hist_s): the 1/N factors cancel.  The
     * scalers r and 1/K_c carry no gradient (USB detaches them); the gradient
     * flows through P to every selected row.  L <= 0 and is what USB adds to
     * its total loss times lambda_e (ent_loss_ratio, default 0.01): minimising
     * L is what USB minimises.  The mask is KD_ARG_WEIGHTS (optional; unbound =
     * every row selected): a row of weight 0 is dropped (its logits are not
     * read, its gradient row is 0, even when not finite); a weight w > 0
     * counts the row w times in P and K, so a 0/1 mask (FreeMatch's) is USB's
     * mask.bool() selection.  A soft mask is NOT USB's: USB selects every
     * nonzero row with weight 1; pass (w > 0) for that.  No selected row
     * (n = 0, every weight 0) gives 0 and a zero gradient (USB skips the term).
     * Logits only; reduction MEAN only (one scalar); no per-sample output;
     * NaN/Inf logits in a selected row give NaN as PyTorch (or
     * KD_ERR_NOT_FINITE with KD_PARAM_CHECK_FINITE, which scans every row). */
    KD_LOSS_FAIRNESS = 17
};

/* Parameters (pinned values).  Each applies to the kinds named; setting one on
 * another kind gives KD_ERR_UNSUPPORTED.  Values are validated when set
 * (KD_ERR_INVALID_ARGUMENT, nothing changed).  Integer parameters use
 * kd_loss_set_int, real ones kd_loss_set_float; kd_loss_param_bounds() gives
 * the accepted range. */
typedef int32_t kd_param;
enum {
    KD_PARAM_REDUCTION = 1,        /* int, all kinds: KD_REDUCTION_*, default MEAN */
    KD_PARAM_TEMPERATURE = 2,      /* real in [1e-6, 1e6], CE (teacher target), KL, STRONG_WEAK
                                     and MCC; default 1.  Below 1e-6 KD_ERR_INVALID_ARGUMENT
                                     (1/T and the scaled logits would leave float's range) */
    KD_PARAM_ALPHA = 3,            /* real in [0,1], KL and MSE: sets soft weight alpha and
                                     hard weight 1 - alpha; reads back the soft weight */
    KD_PARAM_SOFT_WEIGHT = 4,      /* real >= 0 (finite), KL and MSE; default 1 */
    KD_PARAM_HARD_WEIGHT = 5,      /* real >= 0 (finite), KL and MSE; default 0 */
    KD_PARAM_T2_SCALING = 6,       /* int 0/1, KL: multiply the soft term by T^2; default 1 */
    KD_PARAM_DIVERGENCE = 7,       /* int, KL: KD_DIVERGENCE_*, default FORWARD_KL */
    KD_PARAM_JSD_BETA = 8,         /* real in [0,1], KL with JSD; default 0.5 */
    KD_PARAM_NORMALIZATION = 9,    /* int, KL and MSE: KD_NORMALIZE_*, default BATCH */
    KD_PARAM_IGNORE_INDEX = 10,    /* int (int32 range), kinds with labels; default -100 */
    KD_PARAM_LABEL_SMOOTHING = 11, /* real in [0,1], CE/KL/MSE hard labels; default 0 */
    KD_PARAM_SMOOTHING_MODE = 12,  /* int, KD_SMOOTHING_*, default UNIFORM (eps/C) */
    KD_PARAM_LABEL_WEIGHT = 13,    /* real in [0,1], CE with labels + soft target; default 0.7 */
    KD_PARAM_THREADS = 14,      /* int >= 0, all kinds: OpenMP threads, 0 = all cores; default 1 */
    KD_PARAM_CHECK_FINITE = 15, /* int 0/1, all kinds: reject NaN/Inf input; default 0 */
    KD_PARAM_NUM_CLASSES = 16,  /* int, read only */
    KD_PARAM_KIND = 17,         /* int, read only */

    /* self-training (values 32-63 reserved) */
    KD_PARAM_THRESHOLD = 32,      /* real in [0,1], PSEUDO_LABEL and STRONG_WEAK: the global
                                     confidence threshold tau; default 0.95 */
    KD_PARAM_THRESHOLD_MODE = 33, /* int, PSEUDO_LABEL and STRONG_WEAK: KD_THRESHOLD_*,
                                     default STRICT (conf > tau, tllib) */
    KD_PARAM_DISTANCE = 34,       /* int, CONSISTENCY: KD_DISTANCE_*, default L2 */
    KD_PARAM_INPUT_TYPE = 35,     /* int, CONSISTENCY and CLASS_BALANCE: KD_INPUT_*,
                                     default LOGITS */
    KD_PARAM_ETA_PRIME = 36,      /* real >= 0 (finite), WORST_CASE: weight eta' of the
                                     labeled term; default 1 */
    KD_PARAM_UNLABELED_ROWS = 37  /* int in [-1, 2^31-1], WORST_CASE: rows of the unlabeled
                                     batch; -1 (default) = the n of the compute call */
};

enum { KD_REDUCTION_MEAN = 0, KD_REDUCTION_SUM = 1, KD_REDUCTION_NONE = 2 };
enum { KD_DIVERGENCE_FORWARD_KL = 0, KD_DIVERGENCE_REVERSE_KL = 1, KD_DIVERGENCE_JSD = 2 };
enum { KD_NORMALIZE_BATCH = 0, KD_NORMALIZE_VALID = 1 };
/* UNIFORM: q = (1-eps) onehot + eps/C (PyTorch).  OTHERS: the true class gets
 * 1-eps and each other class eps/(C-1) (C = 1: the true class gets 1). */
enum { KD_SMOOTHING_UNIFORM = 0, KD_SMOOTHING_OTHERS = 1 };
/* STRICT: keep a row when conf > tau (tllib).  INCLUSIVE: conf >= tau
 * (FixMatch, USB). */
enum { KD_THRESHOLD_STRICT = 0, KD_THRESHOLD_INCLUSIVE = 1 };
/* Consistency distances (see KD_LOSS_CONSISTENCY). */
enum { KD_DISTANCE_L2 = 0, KD_DISTANCE_KL = 1, KD_DISTANCE_JS = 2 };
/* LOGITS: rows are logits, p = softmax(row).  PROBABILITIES: rows are p. */
enum { KD_INPUT_LOGITS = 0, KD_INPUT_PROBABILITIES = 1 };

/* Reductions each kind accepts (KD_PARAM_REDUCTION; others give
 * KD_ERR_INVALID_ARGUMENT when set): CLASS_BALANCE, MCC and FAIRNESS only
 * MEAN (a scalar loss), WORST_CASE MEAN and SUM, every other kind all three. */

/* Argument roles (pinned values). */
typedef int32_t kd_arg;
enum {
    KD_ARG_STUDENT = 1,      /* input matrix: student logits (all kinds) */
    KD_ARG_TEACHER = 2,      /* input matrix: teacher logits (KL, MSE; CE target) */
    KD_ARG_TARGET = 3,       /* input matrix: target probabilities (CE) */
    KD_ARG_LABELS = 4,       /* input int32 vector of n labels (kd_loss_bind_labels) */
    KD_ARG_WEIGHTS = 5,      /* input float vector of n per-sample weights >= 0 */
    KD_ARG_GRAD_STUDENT = 6, /* output matrix: d loss / d student logits */
    KD_ARG_PER_SAMPLE = 7,   /* output float vector: the n weighted per-sample losses
                                 (not CLASS_BALANCE, MCC, WORST_CASE) */

    /* self-training (values 16-47 reserved) */
    KD_ARG_CLASS_THRESHOLDS = 16,   /* input float vector of C thresholds in [0,1]
                                     (kd_loss_bind_vector): PSEUDO_LABEL, STRONG_WEAK */
    KD_ARG_MASK = 17,               /* output float vector of n masks 0/1: PSEUDO_LABEL,
                                     STRONG_WEAK */
    KD_ARG_PSEUDO_LABELS = 18,      /* output int32 vector of n argmax labels
                                     (kd_loss_bind_output_labels): PSEUDO_LABEL, STRONG_WEAK */
    KD_ARG_GRAD_TEACHER = 19,       /* output matrix: d loss / d second input (CONSISTENCY) */
    KD_ARG_LABELED_MAIN = 20,       /* input matrix, WORST_CASE: main head, labeled (y_l) */
    KD_ARG_LABELED_ADV = 21,        /* input matrix, WORST_CASE: worst-case head, labeled */
    KD_ARG_UNLABELED_MAIN = 22,     /* input matrix, WORST_CASE: main head, unlabeled (y_u) */
    KD_ARG_UNLABELED_ADV = 23,      /* input matrix, WORST_CASE: worst-case head, unlabeled */
    KD_ARG_GRAD_LABELED_ADV = 24,   /* output matrix, WORST_CASE: d loss / d LABELED_ADV */
    KD_ARG_GRAD_UNLABELED_ADV = 25, /* output matrix, WORST_CASE: d loss / d UNLABELED_ADV */
    KD_ARG_CLASS_PROBS = 26,        /* input float vector of C values >= 0 (kd_loss_bind_vector),
                                      FAIRNESS: the model's class probabilities (FreeMatch's
                                      p_model, KD_THRESHOLD_STATE_CLASS_PROBS) */
    KD_ARG_LABEL_HISTOGRAM = 27     /* input float vector of C values >= 0, FAIRNESS: the
                                      pseudo-label histogram (FreeMatch's label_hist,
                                      KD_THRESHOLD_STATE_LABEL_HISTOGRAM) */
};

/* Create a loss of the given kind for num_classes >= 1 classes with every
 * parameter at its default.  *out is set only on success.
 * Errors: KD_ERR_NULL_POINTER (out), KD_ERR_INVALID_ARGUMENT (unknown kind,
 * num_classes < 1 or > 2^31 - 1 = INT32_MAX), KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_loss_create(kd_loss **out, kd_loss_kind kind, int64_t num_classes);

/* Free a handle.  Accepts NULL (no-op). */
KD_API void kd_loss_destroy(kd_loss *h);

/* The message of the last failed call on this handle ("" after a success).
 * With NULL: the message of this thread's last failed kd_loss_create (kept
 * until the next kd_loss_create or kd_loss_destroy on this thread), else
 * "invalid handle (NULL)".  The string lives until the next call. */
KD_API const char *kd_loss_last_error(const kd_loss *h);

/* Set / get parameters.  Errors: KD_ERR_NULL_POINTER, KD_ERR_UNSUPPORTED
 * (unknown parameter, wrong kind, read-only, or int/float mismatch),
 * KD_ERR_INVALID_ARGUMENT (out of range, not finite), KD_ERR_STATE (busy in
 * another thread).  The getters take a const handle yet, like every call,
 * set its message on failure and clear it on success. */
KD_API kd_status kd_loss_set_int(kd_loss *h, kd_param param, int64_t value);
KD_API kd_status kd_loss_set_float(kd_loss *h, kd_param param, double value);
KD_API kd_status kd_loss_get_int(const kd_loss *h, kd_param param, int64_t *value);
KD_API kd_status kd_loss_get_float(const kd_loss *h, kd_param param, double *value);

/* Accepted range [*lo, *hi] of a parameter for a kind (inclusive;
 * is_open_low = 1 marks an open lower bound such as "> 0"; temperature reports
 * [1e-6, 1e6], closed).
 * Errors: KD_ERR_NULL_POINTER, KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_loss_param_bounds(kd_loss_kind kind, kd_param param, double *lo, double *hi,
                                      int32_t *is_open_low);

/* Bind an input matrix (KD_ARG_STUDENT, KD_ARG_TEACHER, KD_ARG_TARGET, and
 * WORST_CASE's KD_ARG_LABELED_* / KD_ARG_UNLABELED_*) with
 * row stride ld >= C.  data = NULL unbinds the role (ld ignored).
 * KD_ARG_TEACHER binds a single teacher (replacing any set of teachers).
 * Errors: KD_ERR_NULL_POINTER (h), KD_ERR_UNSUPPORTED (role not an input
 * matrix of this kind), KD_ERR_SHAPE (ld < C). */
KD_API kd_status kd_loss_bind_matrix(kd_loss *h, kd_arg role, const float *data, int64_t ld);

/* Bind count >= 1 teacher logit matrices averaged before the softmax with
 * weights (NULL = equal; else count values >= 0 with a positive sum, used
 * normalised to sum 1).  The pointer arrays are copied; the matrices are
 * borrowed.  count = 0 unbinds all teachers.
 * Errors: KD_ERR_NULL_POINTER (h, teachers, lds, or teachers[k]),
 * KD_ERR_UNSUPPORTED (kind without teachers), KD_ERR_SHAPE (lds[k] < C),
 * KD_ERR_INVALID_ARGUMENT (count < 0 or > 1024, bad weights),
 * KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_loss_bind_teachers(kd_loss *h, int32_t count, const float *const *teachers,
                                       const int64_t *lds, const float *weights);

/* Bind n int32 labels (NULL unbinds).  Labels must lie in [0, C) or equal the
 * ignore index; this is checked by the compute calls (KD_ERR_INVALID_ARGUMENT
 * naming the row).  Errors: KD_ERR_NULL_POINTER (h), KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_loss_bind_labels(kd_loss *h, const int32_t *labels);

/* Bind n int64 labels (NULL unbinds), read in place by the compute calls
 * (PyTorch's label dtype: no conversion copy).  It replaces labels bound by
 * kd_loss_bind_labels and is replaced by it.  Same rules and results as the
 * int32 labels: each must lie in [0, C) or equal the ignore index, checked by
 * the compute calls in int64, so a label outside the int32 range is refused
 * (KD_ERR_INVALID_ARGUMENT naming the row and its value), never truncated.
 * Errors: KD_ERR_NULL_POINTER (h), KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_loss_bind_labels64(kd_loss *h, const int64_t *labels);

/* Bind n per-sample weights (NULL unbinds).  Weights must be finite and
 * >= 0, checked by the compute calls (FAIRNESS: the mask, see its manual).
 * Errors: KD_ERR_NULL_POINTER (h), KD_ERR_UNSUPPORTED (CLASS_BALANCE, MCC,
 * WORST_CASE: no per-sample terms). */
KD_API kd_status kd_loss_bind_weights(kd_loss *h, const float *weights);

/* Bind an input float vector (NULL unbinds): KD_ARG_CLASS_THRESHOLDS (C
 * values, each finite and in [0,1], checked by the compute calls: else
 * KD_ERR_INVALID_ARGUMENT naming the class), FAIRNESS's KD_ARG_CLASS_PROBS and
 * KD_ARG_LABEL_HISTOGRAM (C values, each finite and >= 0, checked by
 * forward / backward / forward_backward and kd_loss_finish) or KD_ARG_WEIGHTS
 * (n values, as kd_loss_bind_weights).  Errors: KD_ERR_NULL_POINTER (h),
 * KD_ERR_UNSUPPORTED (role not a vector input of this kind). */
KD_API kd_status kd_loss_bind_vector(kd_loss *h, kd_arg role, const float *data);

/* Bind an int32 output vector of n values (NULL unbinds):
 * KD_ARG_PSEUDO_LABELS.  Written by forward and forward_backward.
 * Errors: KD_ERR_NULL_POINTER (h), KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_loss_bind_output_labels(kd_loss *h, kd_arg role, int32_t *data);

/* Bind an output: KD_ARG_GRAD_STUDENT (matrix, ld >= C) or KD_ARG_PER_SAMPLE
 * (vector of n, ld ignored).  NULL unbinds.  Self-training kinds also take
 * KD_ARG_MASK (vector), KD_ARG_GRAD_TEACHER and KD_ARG_GRAD_*_ADV (matrices);
 * WORST_CASE has no KD_ARG_GRAD_STUDENT.  A gradient may be written in place
 * over the input it differentiates (same pointer and ld); any other overlap
 * with an input or another output is refused by the compute calls
 * (KD_ERR_ALIASING).
 * Errors: KD_ERR_NULL_POINTER (h), KD_ERR_UNSUPPORTED, KD_ERR_SHAPE. */
KD_API kd_status kd_loss_bind_output(kd_loss *h, kd_arg role, float *data, int64_t ld);

/* Forward: the loss over n >= 0 rows.  loss receives 1 value for MEAN and
 * SUM, n values for NONE.  KD_ARG_PER_SAMPLE, if bound, receives the per-sample
 * values in any reduction.  Gradients are not written.
 * Errors: KD_ERR_NULL_POINTER (h, loss), KD_ERR_MISSING_INPUT (student or the
 * kind's target not bound; FAIRNESS: a class vector not bound),
 * KD_ERR_INVALID_ARGUMENT (n < 0, label out of range, negative weight, class
 * threshold outside [0,1], CONSISTENCY with more than one teacher,
 * CLASS_BALANCE mean probability outside [0,1], FAIRNESS class vector
 * negative or not finite, or with sum_k pm_k r_k = 0),
 * KD_ERR_SHAPE (n * ld overflows), KD_ERR_NOT_FINITE, KD_ERR_ALIASING,
 * KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_loss_forward(kd_loss *h, int64_t n, float *loss);

/* Backward: write d(upstream . loss)/d student into KD_ARG_GRAD_STUDENT.
 * upstream holds 1 value for MEAN and SUM, n values for NONE (one per row).
 * Same errors as forward, plus KD_ERR_NULL_POINTER (upstream) and
 * KD_ERR_MISSING_INPUT (no gradient output bound). */
KD_API kd_status kd_loss_backward(kd_loss *h, int64_t n, const float *upstream);

/* Fused forward + backward in one pass over the inputs: the loss as forward
 * and the gradient as backward with upstream 1 (for NONE: 1 per row).
 * Errors: those of forward and backward. */
KD_API kd_status kd_loss_forward_backward(kd_loss *h, int64_t n, float *loss);

/* ---- Split batch statistics: data-parallel training (docs/distributed.md) ----
 *
 * CLASS_BALANCE, MCC and FAIRNESS depend on the whole batch through a few
 * sums over its rows.  When the batch is split over ranks (processes, GPUs), each rank
 *   1. kd_loss_local_stats(h, n_r, stats)    its n_r rows -> stats
 *   2. all-reduces stats with SUM            (MPI_Allreduce(MPI_SUM, MPI_DOUBLE),
 *                                             ncclAllReduce(ncclSum, ncclFloat64),
 *                                             torch.distributed.all_reduce(SUM))
 *   3. kd_loss_finish(h, n_r, stats, &loss)  the global loss, and its own rows
 *                                            of the global gradient
 * kdlib never links a communication library: the caller's engine moves the
 * buffer.  Every rank gets the same loss, equal to the single-process loss of
 * the concatenated batch, and its own rows of that batch's gradient (within
 * float32 rounding: the sums are added in another order).
 *
 * Why a sum is enough: every statistic is a sum over rows of a per-row value,
 * the row count included, so the sum over ranks is the global batch's sum;
 * the loss is a function of those sums only, and row i's gradient is a
 * function of the sums and of row i alone.  Layout (doubles, all summed):
 *   CLASS_BALANCE  C + 1:    [0, C)  sum_i p_ic  (column sums of p)
 *                            [C]     N, the row count
 *   MCC            C^2 + 2:  [0, C^2) Ahat = sum_i e_i P_i^T P_i, row-major
 *                                    (e_i = 1 + exp(-H_i), the undivided
 *                                    entropy weight; P_i = softmax(z_i / T))
 *                            [C^2]   S = sum_i e_i (the weights' normaliser)
 *                            [C^2+1] N, the row count
 *   FAIRNESS       2 C + 1:  [0, C)  P_c = sum_i w_i p_ic  (weighted column sums of p)
 *                            [C, 2C) K_c = sum_i w_i [argmax p_i = c]
 *                                    (the weighted prediction histogram)
 *                            [2C]    N, the row count (selected or not)
 * The finish forms x_c = sum_c / N (class balance), A = (N / S) Ahat and its
 * row sums r_k (MCC), or u_c = P_c / K_c (FAIRNESS, with the bound class
 * vectors, which every rank binds alike) from the summed buffer.  Doubles, not floats: the sums
 * of a large global batch keep their precision and N stays exact (to 2^53).
 * The buffer must be summed, never averaged: an average keeps the loss but
 * multiplies the gradient by the number of ranks.
 *
 * Gradient convention: the rows kd_loss_finish writes are rows of d L / d
 * logits for the GLOBAL loss L.  The parameter gradient of the global batch
 * is therefore the SUM over ranks of each rank's backpropagated gradient; an
 * engine that AVERAGES gradients (torch DistributedDataParallel, most
 * Allreduce-average trainers) needs these rows multiplied by the number of
 * ranks (docs/distributed.md).
 *
 * The single-process forward / backward / forward_backward run exactly
 * these pieces (local statistics into the handle's workspace, then the
 * finish), so one rank with the whole batch gives bit-identical results.
 *
 * Memory: the calls allocate only when n or C grows, as the others. */

/* Number of doubles in the statistics buffer of this handle's kind: C + 1
 * for CLASS_BALANCE, C * C + 2 for MCC, 2 C + 1 for FAIRNESS.  *count is set only on success.
 * Errors: KD_ERR_NULL_POINTER (h, count), KD_ERR_UNSUPPORTED (a kind without
 * batch statistics), KD_ERR_STATE (busy in another thread).  A failure
 * leaves its message in the handle as every other call (kd_loss_last_error). */
KD_API kd_status kd_loss_stats_size(const kd_loss *h, int64_t *count);

/* Compute this rank's statistics over its n >= 0 rows of the bound student
 * (KD_ARG_STUDENT; probabilities or logits per KD_PARAM_INPUT_TYPE for
 * CLASS_BALANCE; FAIRNESS: with its weights) into stats (kd_loss_stats_size
 * doubles, overwritten; n = 0 gives zeros).  The per-row values (log-sum-exp;
 * MCC's softmax and entropy weights; FAIRNESS's softmax) stay in the handle's
 * workspace for kd_loss_finish.  FAIRNESS's class vectors are not needed here.
 * Errors: KD_ERR_NULL_POINTER (h, stats), KD_ERR_UNSUPPORTED (not
 * CLASS_BALANCE, MCC or FAIRNESS), KD_ERR_MISSING_INPUT (student not bound),
 * KD_ERR_INVALID_ARGUMENT (n < 0; FAIRNESS: a weight negative or not
 * finite), KD_ERR_SHAPE (n * ld overflows; MCC: n > 2^31 - 1),
 * KD_ERR_NOT_FINITE (KD_PARAM_CHECK_FINITE), KD_ERR_ALIASING (stats overlaps
 * the student matrix or the weights), KD_ERR_OUT_OF_MEMORY.  On error stats
 * is untouched. */
KD_API kd_status kd_loss_local_stats(kd_loss *h, int64_t n, double *stats);

/* From global_stats (the SUM over every rank of kd_loss_local_stats'
 * buffers, this rank's included), write the global loss into *loss and, when
 * KD_ARG_GRAD_STUDENT is bound, this rank's n rows of d L / d student (as
 * forward_backward with upstream 1; scale them yourself for another
 * upstream).  n and the bound student must be those given to
 * kd_loss_local_stats, with the data unchanged: the per-row values are
 * reused when n, the student (pointer, ld) and the parameters are the same
 * as that call's, and recomputed from the bound student otherwise.  In place
 * (gradient over the student) destroys the student, as always.  A global
 * count N = 0 gives 0 and writes no row; n = 0 with N > 0 gives the loss and
 * writes no row.  FAIRNESS with no selected row in the whole batch (every
 * K_c = 0) gives 0 and zero gradient rows.
 * Errors: KD_ERR_NULL_POINTER (h, global_stats, loss), KD_ERR_UNSUPPORTED
 * (not CLASS_BALANCE, MCC or FAIRNESS), KD_ERR_MISSING_INPUT (student not
 * bound; FAIRNESS: a class vector not bound), KD_ERR_INVALID_ARGUMENT (n < 0;
 * the count global_stats[last] not an integer in [n, 2^53]; MCC: S <= 0 with
 * N > 0; CLASS_BALANCE: a mean probability outside [0, 1]; FAIRNESS: a
 * weight or class-vector value negative or not finite, sum_k pm_k r_k = 0,
 * a P_c or K_c < 0, or selected classes whose P_c / K_c sum to 0),
 * KD_ERR_SHAPE, KD_ERR_NOT_FINITE (with
 * KD_PARAM_CHECK_FINITE: the student or a global statistic),
 * KD_ERR_ALIASING (the gradient overlapping the student without being it,
 * or global_stats, or FAIRNESS's weights or class vectors; the loss inside
 * the gradient, the student, global_stats or those vectors),
 * KD_ERR_OUT_OF_MEMORY.  On error nothing is
 * written. */
KD_API kd_status kd_loss_finish(kd_loss *h, int64_t n, const double *global_stats, float *loss);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_LOSS_H */
