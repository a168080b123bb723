/* Confident learning: per-class thresholds, confident class, suspects
 * (include/kdlib/labels.h). */
#include "kdlib/labels.h"

#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>

#define KDI_ISSUES_FN "kd_find_label_issues"

kd_status kd_find_label_issues(int64_t n, int64_t c, const float *probs, int64_t ld,
                               const int32_t *labels, int32_t ignore_index, float *class_thresholds,
                               int32_t *confident_class, uint8_t *suspect, int64_t *num_suspects,
                               char *err, size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (!probs || !labels)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_ISSUES_FN ": %s is NULL",
                              !probs ? "probs" : "labels");
    kd_status st = kdi_label_check_shape(KDI_ISSUES_FN, "ld", n, c, ld, err, err_size);
    if (st == KD_OK)
        st = kdi_label_check_labels(KDI_ISSUES_FN, labels, n, c, ignore_index, err, err_size);
    if (st == KD_OK)
        st = kdi_label_check_probs(KDI_ISSUES_FN, "probs", probs, n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[6] = {
        kdi_buf_matrix("probs", -1, probs, n, ld, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("class_thresholds", -1, class_thresholds, c, 4, 1),
        kdi_buf_vector("confident_class", -1, confident_class, n, 4, 1),
        kdi_buf_vector("suspect", -1, suspect, n, 1, 1),
        kdi_buf_vector("num_suspects", -1, num_suspects, 1, sizeof *num_suspects, 1),
    };
    st = kdi_check_aliasing(err, err_size, KDI_ISSUES_FN, bufs, 6);
    if (st != KD_OK)
        return st;

    /* Per class: sum of self-confidences (double), count, threshold. */
    double *sum = calloc((size_t)c, sizeof *sum);
    int64_t *count = calloc((size_t)c, sizeof *count);
    float *t = malloc((size_t)c * sizeof *t);
    if (!sum || !count || !t) {
        free(sum);
        free(count);
        free(t);
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              KDI_ISSUES_FN ": out of memory for %lld classes", (long long)c);
    }
    for (int64_t i = 0; i < n; i++) {
        const int32_t y = labels[i];
        if (y == ignore_index)
            continue;
        sum[y] += probs[i * ld + y];
        count[y]++;
    }
    /* A class nobody is labelled with gets +Inf: no probability reaches it
     * (cleanlab uses 2 for the same purpose). */
    for (int64_t j = 0; j < c; j++)
        t[j] = count[j] > 0 ? (float)(sum[j] / (double)count[j]) : INFINITY;

    int64_t suspects = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = probs + i * ld;
        int32_t best = -1;
        float best_p = 0.0f;
        for (int64_t j = 0; j < c; j++)
            if (row[j] >= t[j] && (best < 0 || row[j] > best_p)) {
                best = (int32_t)j;
                best_p = row[j];
            }
        const int is_suspect = labels[i] != ignore_index && best >= 0 && best != labels[i];
        if (confident_class)
            confident_class[i] = best;
        if (suspect)
            suspect[i] = (uint8_t)is_suspect;
        suspects += is_suspect;
    }
    if (class_thresholds)
        for (int64_t j = 0; j < c; j++)
            class_thresholds[j] = t[j];
    if (num_suspects)
        *num_suspects = suspects;
    free(sum);
    free(count);
    free(t);
    return KD_OK;
}
