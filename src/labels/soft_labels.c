/* Soft labels from given labels and predictions (include/kdlib/labels.h). */
#include "kdlib/labels.h"

#include "kernels/rowops.h"
#include "labels/labels_internal.h"

#define KDI_SOFT_FN "kd_soft_labels"

kd_status kd_soft_labels(int64_t n, int64_t c, const int32_t *labels, int32_t ignore_index,
                         float label_weight, int32_t mode, const float *probs, int64_t ld_probs,
                         const int32_t *predictions, float *out, int64_t ld_out, char *err,
                         size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (mode != KD_SOFT_LABEL_ONEHOT && mode != KD_SOFT_LABEL_PROBABILITIES)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SOFT_FN ": mode = %d is not a KD_SOFT_LABEL_*", (int)mode);
    if (mode == KD_SOFT_LABEL_PROBABILITIES && predictions)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SOFT_FN ": predictions must be NULL with "
                                          "KD_SOFT_LABEL_PROBABILITIES");
    /* probs is read unless ONEHOT takes its classes from predictions. */
    const int use_probs = !(mode == KD_SOFT_LABEL_ONEHOT && predictions);
    if (!labels || !out || (use_probs && !probs))
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_SOFT_FN ": %s is NULL",
                              !labels ? "labels" : !out ? "out" : "probs");
    kd_status st = kdi_label_check_shape(KDI_SOFT_FN, "ld_out", n, c, ld_out, err, err_size);
    if (st == KD_OK && use_probs)
        st = kdi_label_check_shape(KDI_SOFT_FN, "ld_probs", n, c, ld_probs, err, err_size);
    if (st != KD_OK)
        return st;
    if (!(label_weight >= 0.0f && label_weight <= 1.0f))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SOFT_FN ": label_weight = %g is outside [0, 1]",
                              (double)label_weight);
    st = kdi_label_check_labels(KDI_SOFT_FN, labels, n, c, ignore_index, err, err_size);
    if (st != KD_OK)
        return st;
    if (predictions)
        for (int64_t i = 0; i < n; i++)
            if (predictions[i] < 0 || predictions[i] >= c)
                return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                      KDI_SOFT_FN ": predictions[%lld] = %d is outside [0, %lld)",
                                      (long long)i, (int)predictions[i], (long long)c);
    if (use_probs) {
        st = kdi_label_check_probs(KDI_SOFT_FN, "probs", probs, n, c, ld_probs, err, err_size);
        if (st != KD_OK)
            return st;
    }
    /* In place (out == probs, same stride) is fine: each row is read before
     * it is written.  Any other overlap with an input is not. */
    kdi_buf bufs[4] = {
        kdi_buf_matrix("probs", -1, use_probs ? probs : NULL, n, ld_probs, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("predictions", -1, predictions, n, 4, 0),
        kdi_buf_matrix("out", -1, out, n, ld_out, c, 4, 1),
    };
    bufs[3].in_place = 0;
    st = kdi_check_aliasing(err, err_size, KDI_SOFT_FN, bufs, 4);
    if (st != KD_OK)
        return st;

    for (int64_t i = 0; i < n; i++) {
        const float *p = use_probs ? probs + i * ld_probs : NULL;
        float *q = out + i * ld_out;
        const int32_t y = labels[i];
        /* An unlabelled row is a plain pseudo-label: the prediction with weight 1. */
        const float w = y == ignore_index ? 0.0f : label_weight;
        const float rest = 1.0f - w;
        if (mode == KD_SOFT_LABEL_ONEHOT) {
            const int64_t pred = predictions ? predictions[i] : kdi_row_argmax(p, c);
            for (int64_t j = 0; j < c; j++)
                q[j] = w * (float)(j == y) + rest * (float)(j == pred);
        } else {
            for (int64_t j = 0; j < c; j++)
                q[j] = w * (float)(j == y) + rest * p[j];
        }
    }
    return KD_OK;
}
