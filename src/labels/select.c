/* Pseudo-label selection: confidence, argmax, threshold mask, top-k per class
 * (include/kdlib/labels.h). */
#include "kdlib/labels.h"

#include "kernels/rowops.h"
#include "kernels/simd.h"
#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>

#define KDI_SELECT_FN "kd_select_pseudo_labels"

typedef struct {
    int32_t label;
    float conf;
    int64_t row;
} kdi_select_entry;

/* Class ascending, then confidence descending, then row ascending: a total
 * order, so the result does not depend on qsort's (unstable) algorithm. */
static int kdi_select_compare(const void *pa, const void *pb)
{
    const kdi_select_entry *a = pa, *b = pb;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    if (a->conf != b->conf)
        return a->conf > b->conf ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

static void kdi_select_row(const kdi_simd_ops *ops, const float *row, int64_t c, int logits,
                           float *conf, int32_t *label)
{
    *label = (int32_t)kdi_row_argmax(row, c);
    if (logits) {
        /* max softmax = exp(z_max - max - logsum) = exp(-logsum). */
        kdi_lse l = kdi_row_lse_ops(ops, row, c, 1.0f);
        *conf = expf(-l.logsum);
    } else {
        *conf = row[*label];
    }
}

static int kdi_select_passes(float conf, float t, int non_strict)
{
    return conf > t || (non_strict && conf == t);
}

kd_status kd_select_pseudo_labels(int64_t n, int64_t c, const float *scores, int64_t ld,
                                  int32_t flags, float threshold, const float *class_thresholds,
                                  int64_t top_k_per_class, float *confidence,
                                  int32_t *pseudo_labels, float *mask, int64_t *num_selected,
                                  char *err, size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (!scores)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_SELECT_FN ": scores is NULL");
    kd_status st = kdi_label_check_shape(KDI_SELECT_FN, "ld", n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    if (flags & ~(KD_SELECT_LOGITS | KD_SELECT_NON_STRICT))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SELECT_FN ": flags = %d has unknown bits", (int)flags);
    const int logits = (flags & KD_SELECT_LOGITS) != 0;
    const int non_strict = (flags & KD_SELECT_NON_STRICT) != 0;
    if (class_thresholds) {
        for (int64_t j = 0; j < c; j++)
            if (!(class_thresholds[j] >= 0.0f && class_thresholds[j] <= 1.0f))
                return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                      KDI_SELECT_FN
                                      ": class_thresholds[%lld] = %g is outside [0, 1]",
                                      (long long)j, (double)class_thresholds[j]);
    } else if (!(threshold >= 0.0f && threshold <= 1.0f)) {
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SELECT_FN ": threshold = %g is outside [0, 1]",
                              (double)threshold);
    }
    if (top_k_per_class < 0)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_SELECT_FN ": top_k_per_class = %lld < 0",
                              (long long)top_k_per_class);
    st = logits ? kdi_label_check_logits(KDI_SELECT_FN, "scores", scores, n, c, ld, err, err_size)
                : kdi_label_check_probs(KDI_SELECT_FN, "scores", scores, n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[6] = {
        kdi_buf_matrix("scores", -1, scores, n, ld, c, 4, 0),
        kdi_buf_vector("class_thresholds", -1, class_thresholds, c, 4, 0),
        kdi_buf_vector("confidence", -1, confidence, n, 4, 1),
        kdi_buf_vector("pseudo_labels", -1, pseudo_labels, n, 4, 1),
        kdi_buf_vector("mask", -1, mask, n, 4, 1),
        kdi_buf_vector("num_selected", -1, num_selected, 1, sizeof *num_selected, 1),
    };
    st = kdi_check_aliasing(err, err_size, KDI_SELECT_FN, bufs, 6);
    if (st != KD_OK)
        return st;

    /* Top-k needs every selected row at once: collect them before writing. */
    kdi_select_entry *sel = NULL;
    int64_t count = 0;
    if (top_k_per_class > 0 && n > 0) {
        size_t bytes;
        sel = kdi_size_mul((size_t)n, sizeof *sel, &bytes) ? malloc(bytes) : NULL;
        if (!sel)
            return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                                  KDI_SELECT_FN ": out of memory for %lld rows", (long long)n);
    }

    const kdi_simd_ops *ops = kdi_simd(KDI_ISA_AUTO); /* resolved once per call */
    for (int64_t i = 0; i < n; i++) {
        float conf;
        int32_t label;
        kdi_select_row(ops, scores + i * ld, c, logits, &conf, &label);
        const float t = class_thresholds ? class_thresholds[label] : threshold;
        const int on = kdi_select_passes(conf, t, non_strict);
        if (confidence)
            confidence[i] = conf;
        if (pseudo_labels)
            pseudo_labels[i] = label;
        if (mask)
            mask[i] = on ? 1.0f : 0.0f;
        if (on) {
            if (sel) {
                sel[count].label = label;
                sel[count].conf = conf;
                sel[count].row = i;
            }
            count++;
        }
    }

    if (sel) {
        qsort(sel, (size_t)count, sizeof *sel, kdi_select_compare);
        int64_t kept = 0, run = 0;
        for (int64_t s = 0; s < count; s++) {
            run = (s > 0 && sel[s].label == sel[s - 1].label) ? run + 1 : 0;
            if (run < top_k_per_class)
                kept++;
            else if (mask)
                mask[sel[s].row] = 0.0f;
        }
        count = kept;
        free(sel);
    }
    if (num_selected)
        *num_selected = count;
    return KD_OK;
}
