/* Soft labels from given labels and predictions (include/kdlib/labels.h). */
#include "kdlib/labels.h"

#include "kernels/rowops.h"
#include "labels/labels_internal.h"

#define KDI_SOFT_FN "kd_soft_labels"

/* The checks both functions share: the shapes, label_weight, the labels. */
static kd_status kdi_soft_check(const char *fn, int64_t n, int64_t c, const int32_t *labels,
                                int32_t ignore_index, float label_weight, int check_probs,
                                int64_t ld_probs, int64_t ld_out, char *err, size_t err_size)
{
    kd_status st = kdi_label_check_shape(fn, "ld_out", n, c, ld_out, err, err_size);
    if (st == KD_OK && check_probs)
        st = kdi_label_check_shape(fn, "ld_probs", n, c, ld_probs, err, err_size);
    if (st != KD_OK)
        return st;
    if (!(label_weight >= 0.0f && label_weight <= 1.0f))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: label_weight = %g is outside [0, 1]", fn, (double)label_weight);
    return kdi_label_check_labels(fn, labels, n, c, ignore_index, err, err_size);
}

/* q = w onehot(y) + (1 - w) x, x = onehot(pred) (ONEHOT) or p (p may be q). */
static void kdi_soft_row(float *q, const float *p, int64_t c, int32_t y, int64_t pred, float w,
                         int32_t mode)
{
    const float rest = 1.0f - w;
    if (mode == KD_SOFT_LABEL_ONEHOT) {
        for (int64_t j = 0; j < c; j++)
            q[j] = w * (float)(j == y) + rest * (float)(j == pred);
    } else {
        for (int64_t j = 0; j < c; j++)
            q[j] = w * (float)(j == y) + rest * p[j];
    }
}

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
                              !labels ? "labels"
                              : !out  ? "out"
                                      : "probs");
    kd_status st = kdi_soft_check(KDI_SOFT_FN, n, c, labels, ignore_index, label_weight, use_probs,
                                  ld_probs, ld_out, err, err_size);
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
        const int64_t pred = mode != KD_SOFT_LABEL_ONEHOT ? -1
                             : predictions                ? predictions[i]
                                                          : kdi_row_argmax(p, c);
        kdi_soft_row(q, p, c, y, pred, w, mode);
    }
    return KD_OK;
}

#define KDI_SEL_FN "kd_soft_labels_selective"

kd_status kd_soft_labels_selective(int64_t n, int64_t c, const int32_t *labels,
                                   int32_t ignore_index, float label_weight, int32_t mode,
                                   int32_t flags, const float *probs, int64_t ld_probs,
                                   const uint8_t *suspect, float *out, int64_t ld_out, char *err,
                                   size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (mode != KD_SOFT_LABEL_ONEHOT && mode != KD_SOFT_LABEL_PROBABILITIES)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SEL_FN ": mode = %d is not a KD_SOFT_LABEL_*", (int)mode);
    if (flags & ~(KD_SOFT_LABEL_SUSPECTS_ONLY | KD_SOFT_LABEL_CONFIDENCE_WEIGHT))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SEL_FN ": flags = %d has bits other than "
                                         "KD_SOFT_LABEL_SUSPECTS_ONLY and _CONFIDENCE_WEIGHT",
                              (int)flags);
    const int only_suspects = (flags & KD_SOFT_LABEL_SUSPECTS_ONLY) != 0;
    if (!labels || !probs || !out || (only_suspects && !suspect))
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_SEL_FN ": %s is NULL",
                              !labels  ? "labels"
                              : !probs ? "probs"
                              : !out   ? "out"
                                       : "suspect (KD_SOFT_LABEL_SUSPECTS_ONLY)");
    if (!only_suspects && suspect)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SEL_FN ": suspect must be NULL without "
                                         "KD_SOFT_LABEL_SUSPECTS_ONLY");
    kd_status st = kdi_soft_check(KDI_SEL_FN, n, c, labels, ignore_index, label_weight, 1, ld_probs,
                                  ld_out, err, err_size);
    if (st != KD_OK)
        return st;
    if (suspect)
        for (int64_t i = 0; i < n; i++)
            if (suspect[i] > 1)
                return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                      KDI_SEL_FN ": suspect[%lld] = %d is not 0 or 1", (long long)i,
                                      (int)suspect[i]);
    st = kdi_label_check_probs(KDI_SEL_FN, "probs", probs, n, c, ld_probs, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[4] = {
        kdi_buf_matrix("probs", -1, probs, n, ld_probs, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("suspect", -1, suspect, n, 1, 0),
        kdi_buf_matrix("out", -1, out, n, ld_out, c, 4, 1),
    };
    bufs[3].in_place = 0; /* out may be probs itself (same ld) */
    st = kdi_check_aliasing(err, err_size, KDI_SEL_FN, bufs, 4);
    if (st != KD_OK)
        return st;

    for (int64_t i = 0; i < n; i++) {
        const float *p = probs + i * ld_probs;
        float *q = out + i * ld_out;
        const int32_t y = labels[i];
        const int labelled = y != ignore_index;
        /* read the row before writing it (out may be probs) */
        const int64_t pred = kdi_row_argmax(p, c);
        float w = label_weight;
        if (!labelled)
            w = 0.0f; /* a plain pseudo-label, as kd_soft_labels */
        else if (only_suspects && !suspect[i])
            w = 1.0f; /* the given label, kept hard */
        else if (flags & KD_SOFT_LABEL_CONFIDENCE_WEIGHT)
            w = label_weight + (1.0f - label_weight) * p[y];
        kdi_soft_row(q, p, c, y, pred, w, mode);
    }
    return KD_OK;
}
