/* cleanlab-compatible label quality scores (include/kdlib/labels.h; cleanlab
 * rank.py and internal/label_quality_utils.py). */
#include "kdlib/labels.h"

#include "labels/cleanlab_internal.h"
#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kd_status kdi_cl_check_score(const char *fn, const char *name, int32_t method, int32_t adjust,
                             int64_t c, char *err, size_t err_size)
{
    if (method != KD_LABEL_SCORE_SELF_CONFIDENCE && method != KD_LABEL_SCORE_NORMALIZED_MARGIN &&
        method != KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: %s = %d is not KD_LABEL_SCORE_SELF_CONFIDENCE, "
                              "_NORMALIZED_MARGIN or _CONFIDENCE_WEIGHTED_ENTROPY",
                              fn, name, (int)method);
    if (adjust != 0 && adjust != 1)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: adjust_pred_probs = %d is not 0 or 1", fn, (int)adjust);
    if (method == KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY && adjust)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: adjust_pred_probs is not supported with the "
                              "confidence-weighted entropy (as in cleanlab)",
                              fn);
    if (method == KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY && c < 2)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: the confidence-weighted entropy needs c >= 2 (c = %lld)", fn,
                              (long long)c);
    return KD_OK;
}

void kdi_cl_scores(int64_t n, int64_t c, const float *probs, int64_t ld, const int32_t *labels,
                   int32_t ignore_index, int32_t method, int adjust, const double *thresholds,
                   double *scores, double *row)
{
    double tmax = 0.0;
    if (adjust) {
        tmax = thresholds[0];
        for (int64_t j = 1; j < c; j++)
            if (thresholds[j] > tmax)
                tmax = thresholds[j];
    }
    const double log_c = c > 1 ? log((double)c) : 1.0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t y = labels[i];
        if (y == ignore_index) {
            scores[i] = NAN;
            continue;
        }
        const float *p = probs + i * ld;
        for (int64_t j = 0; j < c; j++)
            row[j] = (double)p[j];
        if (adjust) { /* _subtract_confident_thresholds */
            for (int64_t j = 0; j < c; j++)
                row[j] = row[j] - thresholds[j] + tmax;
            const double s = kdi_cl_sum(row, c, 1);
            for (int64_t j = 0; j < c; j++)
                row[j] /= s;
        }
        const double self = row[y];
        if (method == KD_LABEL_SCORE_SELF_CONFIDENCE) {
            scores[i] = self;
        } else if (method == KD_LABEL_SCORE_NORMALIZED_MARGIN) {
            double other = 0.0; /* c = 1: no other class (cleanlab fails there) */
            int any = 0;
            for (int64_t j = 0; j < c; j++)
                if (j != y && (!any || row[j] > other)) {
                    other = row[j];
                    any = 1;
                }
            scores[i] = (self - other + 1) / 2;
        } else { /* confidence-weighted entropy, c >= 2 */
            for (int64_t j = 0; j < c; j++)
                row[j] = row[j] == 0.0 ? 0.0 : row[j] * log(row[j]); /* xlogy */
            const double entropy = -kdi_cl_sum(row, c, 1) / log_c;
            const double sc = self < 1e-6 ? 1e-6 : self;
            const double s = entropy / sc;
            const double clipped = s < 1e-6 ? 1e-6 : s;
            scores[i] = log(s + 1) / clipped;
        }
    }
}

kd_status kd_cleanlab_get_label_quality_scores(int64_t n, int64_t c, const float *probs, int64_t ld,
                                               const int32_t *labels, int32_t ignore_index,
                                               int32_t method, int32_t adjust_pred_probs,
                                               double *scores, char *err, size_t err_size)
{
    static const char fn[] = "kd_cleanlab_get_label_quality_scores";
    kdi_label_clear(err, err_size);
    if (!scores)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, "%s: scores is NULL", fn);
    kd_status st = kdi_cl_check_inputs(fn, n, c, probs, ld, labels, ignore_index, err, err_size);
    if (st == KD_OK)
        st = kdi_cl_check_score(fn, "method", method, adjust_pred_probs, c, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[3] = {
        kdi_buf_matrix("probs", -1, probs, n, ld, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("scores", -1, scores, n, 8, 1),
    };
    st = kdi_check_aliasing(err, err_size, fn, bufs, 3);
    if (st != KD_OK)
        return st;
    int64_t *counts = NULL, *order = NULL, *start = NULL;
    double *t = NULL, *gather = NULL, *row = NULL, *out = NULL;
    const size_t un = (size_t)n, uc = (size_t)c;
    void **ptr[7] = {(void **)&counts, (void **)&order, (void **)&start, (void **)&t,
                     (void **)&gather, (void **)&row,   (void **)&out};
    const size_t count[7] = {uc, un, uc + 1, uc, un, uc, un};
    const size_t size[7] = {8, 8, 8, 8, 8, 8, 8};
    void *block = kdi_cl_alloc(7, ptr, count, size);
    if (!block)
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              "%s: out of memory for n = %lld rows and c = %lld classes", fn,
                              (long long)n, (long long)c);
    if (adjust_pred_probs)
        kdi_cl_thresholds(n, c, probs, ld, labels, ignore_index, counts, t, gather, order, start);
    kdi_cl_scores(n, c, probs, ld, labels, ignore_index, method, adjust_pred_probs, t, out, row);
    if (n > 0)
        memcpy(scores, out, un * sizeof *scores);
    free(block);
    return KD_OK;
}
