/*
 * kdlib fused linear + distillation: the KL distillation loss of a student
 * whose logits come from a linear output layer, computed chunk by chunk so
 * that the n x C student logits (LLM vocabularies: C = 32000 .. 256000) never
 * exist at once.
 *
 *   kd_loss *h;
 *   kd_loss_create(&h, KD_LOSS_KL_DISTILL, vocab);        // C = vocab
 *   kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0);
 *   kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_VALID);
 *   kd_loss_bind_labels(h, tokens);                        // optional
 *   float loss;
 *   kd_linear_kl_distill(h, n, d, hidden, d, lm_head, d, NULL,
 *                        dt, teacher_hidden, dt, teacher_head, dt, NULL,
 *                        0, &loss, grad_hidden, d, grad_lm_head, d, NULL);
 *
 * Student logits S = H W^T + b (H: n x d hidden states, W: C x d, the layout
 * of PyTorch's nn.Linear.weight, b: C or none).  The teacher logits are either
 * the teacher(s) bound on the handle (KD_ARG_TEACHER / kd_loss_bind_teachers,
 * n x C) or, when teacher_hidden is given, Ht Wt^T + bt from the teacher's
 * own last layer (Ht: n x d_teacher, Wt: C x d_teacher; no gradient).
 *
 * The loss is exactly KD_LOSS_KL_DISTILL's (include/kdlib/loss.h,
 * docs/losses.md) with every parameter of the handle: temperature, soft /
 * hard weights (alpha), T^2, divergence, normalisation, labels and
 * ignore_index, label smoothing, per-sample weights (KD_ARG_WEIGHTS), the
 * reduction, KD_ARG_PER_SAMPLE, KD_PARAM_THREADS and KD_PARAM_CHECK_FINITE.
 * The handle's KD_ARG_STUDENT and KD_ARG_GRAD_STUDENT bindings are not used.
 * MEAN's denominators are global: the labels are counted over all n rows
 * before the first chunk, so chunking never changes the loss.
 *
 * Per chunk of r rows (chunk_rows; 0 = kd_linear_default_chunk_rows(C), at
 * least 256 rows):  S_k = H_k W^T + b  (cblas_sgemm), the KL row kernels
 * turn S_k in place into G_k = d loss / d S_k, then
 *   grad_weight += G_k^T H_k,  grad_bias += column sums of G_k,
 *   grad_hidden_k = G_k W      (cblas_sgemm).
 * The gradients are those of kd_loss_forward_backward (upstream 1; 1 per row
 * for NONE) taken through the linear layer.
 *
 * Outputs (each may be NULL to skip it, except loss):
 *   loss        1 value (MEAN, SUM) or n values (NONE);
 *   grad_hidden n x d, row stride ld_grad_hidden >= d.  It may be written in
 *               place over hidden (same pointer, same stride): each chunk's
 *               rows are read for the last time before they are written;
 *   grad_weight C x d, row stride ld_grad_weight >= d, OVERWRITTEN (not
 *               accumulated; for gradient accumulation over micro-batches
 *               add it to the running sum yourself);
 *   grad_bias   C values, overwritten.
 * With every gradient NULL only the loss is computed (the gradient sgemms are
 * skipped).  With n = 0 the loss is 0 and grad_weight / grad_bias are 0.
 * Any overlap between outputs, or between an output and an input, other than
 * grad_hidden in place over hidden, is refused (KD_ERR_ALIASING).
 *
 * Memory: peak extra memory is r x C floats for the student logits (x 2 when
 * the teacher is given as hidden states), 2 r doubles and KD_PARAM_THREADS
 * rows of 4 C floats of kernel scratch, plus C doubles for grad_bias; it
 * lives in the handle's workspace, which grows only when these sizes grow.
 *
 * Numerics: the logits and the gradient products are float32 sgemms; per-row
 * values are accumulated in double and reduced in row order over all chunks,
 * as in kd_loss_forward_backward.  The result equals materialising the logits
 * and calling kd_loss_forward_backward to float32 rounding of the sgemms (the
 * summation order of grad_weight over rows depends on chunk_rows).
 *
 * Threads: the row kernels use KD_PARAM_THREADS OpenMP threads; the sgemms
 * run in OpenBLAS with its own thread count, which kdlib never sets
 * (OPENBLAS_NUM_THREADS or openblas_set_num_threads() are the caller's).
 * A handle is used by one thread at a time.
 *
 * Errors (nothing is written to any output on error, and the handle keeps a
 * message naming the argument, kd_loss_last_error()):
 *   KD_ERR_NULL_POINTER      h, loss, hidden or weight NULL; teacher_weight
 *                            NULL with teacher_hidden given (or vice versa);
 *   KD_ERR_UNSUPPORTED       h is not a KD_LOSS_KL_DISTILL handle;
 *   KD_ERR_MISSING_INPUT     no teacher bound and no teacher_hidden given;
 *   KD_ERR_INVALID_ARGUMENT  n < 0, d < 1, d_teacher < 1 (with
 *                            teacher_hidden), chunk_rows < 0, teacher logits
 *                            bound and teacher_hidden given, teacher_bias
 *                            without teacher_hidden, label outside [0, C) and
 *                            not ignore_index, negative or non-finite weight;
 *   KD_ERR_SHAPE             an ld smaller than its row length, a dimension
 *                            or stride above INT32_MAX (CBLAS int), an extent
 *                            that overflows;
 *   KD_ERR_NOT_FINITE        (KD_PARAM_CHECK_FINITE = 1) NaN/Inf in hidden,
 *                            weight, bias or a teacher input;
 *   KD_ERR_ALIASING, KD_ERR_OUT_OF_MEMORY.
 */
#ifndef KDLIB_LINEAR_H
#define KDLIB_LINEAR_H

#include <stdint.h>

#include "kdlib/core.h"
#include "kdlib/loss.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fused linear layer + KL distillation, forward and backward (see above). */
KD_API kd_status kd_linear_kl_distill(kd_loss *h, int64_t n, int64_t d, const float *hidden,
                                      int64_t ld_hidden, const float *weight, int64_t ld_weight,
                                      const float *bias, int64_t d_teacher,
                                      const float *teacher_hidden, int64_t ld_teacher_hidden,
                                      const float *teacher_weight, int64_t ld_teacher_weight,
                                      const float *teacher_bias, int64_t chunk_rows, float *loss,
                                      float *grad_hidden, int64_t ld_grad_hidden,
                                      float *grad_weight, int64_t ld_grad_weight, float *grad_bias);

/* The chunk size kd_linear_kl_distill uses for chunk_rows = 0 and C classes:
 * max(256, 2^21 / C) rows, i.e. 8 MiB of logits for C <= 8192 and 256 rows
 * (C KiB) above.  Fewer rows per chunk save memory but re-stream the C x d
 * weights more often: at N = 4096, d = 1024, C = 32000, 65-row chunks (8 MiB)
 * took 1.35x the CPU time of materialising the logits, 256-row chunks 0.98x
 * (docs/losses.md).  Never fails; C < 1 gives 256. */
KD_API int64_t kd_linear_default_chunk_rows(int64_t num_classes);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_LINEAR_H */
