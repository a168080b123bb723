/* UDA's training-signal annealing for the supervised term
 * (include/kdlib/labels.h; formulas and deviations in docs/labels.md, "TSA"). */
#include "kdlib/labels.h"

#include "kernels/rowops.h"
#include "kernels/simd.h"
#include "labels/labels_internal.h"

#include <math.h>

#define KDI_TSA_THRESHOLD_FN "kd_tsa_threshold"
#define KDI_TSA_MASK_FN "kd_tsa_mask"
#define KDI_TSA_SCALE 5.0 /* UDA's and USB's exp / log schedules */

kd_status kd_tsa_threshold(int32_t schedule, int64_t step, int64_t total_steps, int64_t c,
                           double *threshold, char *err, size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (!threshold)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER,
                              KDI_TSA_THRESHOLD_FN ": threshold is NULL");
    if (schedule < KD_TSA_NONE || schedule > KD_TSA_LOG)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_TSA_THRESHOLD_FN ": schedule = %d is not a KD_TSA_* value",
                              (int)schedule);
    if (total_steps < 1)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_TSA_THRESHOLD_FN ": total_steps = %lld < 1",
                              (long long)total_steps);
    if (step < 0 || step > total_steps)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_TSA_THRESHOLD_FN ": step = %lld is outside [0, %lld]",
                              (long long)step, (long long)total_steps);
    if (c < 1)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_TSA_THRESHOLD_FN ": c = %lld < 1", (long long)c);
    if (schedule == KD_TSA_NONE) {
        *threshold = 1.0;
        return KD_OK;
    }
    const double progress = (double)step / (double)total_steps;
    const double alpha = schedule == KD_TSA_LINEAR ? progress
                         : schedule == KD_TSA_EXP  ? exp((progress - 1.0) * KDI_TSA_SCALE)
                                                   : 1.0 - exp(-progress * KDI_TSA_SCALE);
    const double u = 1.0 / (double)c;
    *threshold = alpha * (1.0 - u) + u;
    return KD_OK;
}

kd_status kd_tsa_mask(int64_t n, int64_t c, const float *logits, int64_t ld, const int32_t *labels,
                      int32_t ignore_index, double threshold, float *mask, int64_t *num_kept,
                      char *err, size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (!logits || !mask)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_TSA_MASK_FN ": %s is NULL",
                              !logits ? "logits" : "mask");
    kd_status st = kdi_label_check_shape(KDI_TSA_MASK_FN, "ld", n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    if (!(threshold >= 0.0 && threshold <= 1.0))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_TSA_MASK_FN ": threshold = %g is outside [0, 1]", threshold);
    if (labels) {
        st = kdi_label_check_labels(KDI_TSA_MASK_FN, labels, n, c, ignore_index, err, err_size);
        if (st != KD_OK)
            return st;
    }
    st = kdi_label_check_logits(KDI_TSA_MASK_FN, "logits", logits, n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[4] = {
        kdi_buf_matrix("logits", -1, logits, n, ld, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("mask", -1, mask, n, 4, 1),
        kdi_buf_vector("num_kept", -1, num_kept, 1, sizeof *num_kept, 1),
    };
    st = kdi_check_aliasing(err, err_size, KDI_TSA_MASK_FN, bufs, 4);
    if (st != KD_OK)
        return st;

    const kdi_simd_ops *ops = kdi_simd(KDI_ISA_AUTO); /* resolved once per call */
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * ld;
        int on = 0;
        if (!labels || labels[i] != ignore_index) {
            const kdi_lse l = kdi_row_lse_ops(ops, row, c, 1.0f);
            /* max softmax = exp(-logsum); the label's = exp(log softmax) */
            const float p =
                labels ? expf(kdi_log_softmax(row[labels[i]], 1.0f, l)) : expf(-l.logsum);
            on = (double)p <= threshold;
        }
        mask[i] = on ? 1.0f : 0.0f;
        kept += on;
    }
    if (num_kept)
        *num_kept = kept;
    return KD_OK;
}
