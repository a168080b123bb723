/* Label quality scores (self-confidence, margins) and the worst-first ranking
 * (include/kdlib/labels.h). */
#include "kdlib/labels.h"

#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>

#define KDI_QUALITY_FN "kd_label_quality"

typedef struct {
    float score;
    int64_t row;
} kdi_rank_entry;

/* Score ascending, then row ascending: the order of a stable sort by score. */
static int kdi_rank_compare(const void *pa, const void *pb)
{
    const kdi_rank_entry *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

static float kdi_label_score(const float *row, int64_t c, int32_t y, int32_t kind)
{
    const float self = row[y];
    if (kind == KD_LABEL_SCORE_SELF_CONFIDENCE)
        return self;
    float other = 0.0f; /* max over the other classes; none when c == 1 */
    for (int64_t j = 0; j < c; j++)
        if (j != y && row[j] > other)
            other = row[j];
    const float margin = self - other;
    return kind == KD_LABEL_SCORE_MARGIN ? margin : (margin + 1.0f) * 0.5f;
}

kd_status kd_label_quality(int64_t n, int64_t c, const float *probs, int64_t ld,
                           const int32_t *labels, int32_t ignore_index, int32_t score_kind,
                           float *scores, int64_t *ranking, int64_t *num_ranked, char *err,
                           size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (!probs || !labels)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_QUALITY_FN ": %s is NULL",
                              !probs ? "probs" : "labels");
    kd_status st = kdi_label_check_shape(KDI_QUALITY_FN, "ld", n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    if (score_kind < KD_LABEL_SCORE_SELF_CONFIDENCE || score_kind > KD_LABEL_SCORE_MARGIN)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_QUALITY_FN ": score_kind = %d is not a KD_LABEL_SCORE_*",
                              (int)score_kind);
    st = kdi_label_check_labels(KDI_QUALITY_FN, labels, n, c, ignore_index, err, err_size);
    if (st == KD_OK)
        st = kdi_label_check_probs(KDI_QUALITY_FN, "probs", probs, n, c, ld, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[5] = {
        kdi_buf_matrix("probs", -1, probs, n, ld, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("scores", -1, scores, n, 4, 1),
        kdi_buf_vector("ranking", -1, ranking, n, sizeof *ranking, 1),
        kdi_buf_vector("num_ranked", -1, num_ranked, 1, sizeof *num_ranked, 1),
    };
    st = kdi_check_aliasing(err, err_size, KDI_QUALITY_FN, bufs, 5);
    if (st != KD_OK)
        return st;

    kdi_rank_entry *rank = NULL;
    if (ranking && n > 0) {
        size_t bytes;
        rank = kdi_size_mul((size_t)n, sizeof *rank, &bytes) ? malloc(bytes) : NULL;
        if (!rank)
            return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                                  KDI_QUALITY_FN ": out of memory for %lld rows", (long long)n);
    }
    int64_t labelled = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t y = labels[i];
        if (y == ignore_index) {
            if (scores)
                scores[i] = NAN;
            continue;
        }
        const float s = kdi_label_score(probs + i * ld, c, y, score_kind);
        if (scores)
            scores[i] = s;
        if (rank) {
            rank[labelled].score = s;
            rank[labelled].row = i;
        }
        labelled++;
    }
    if (rank) {
        qsort(rank, (size_t)labelled, sizeof *rank, kdi_rank_compare);
        for (int64_t r = 0; r < labelled; r++)
            ranking[r] = rank[r].row;
        int64_t pos = labelled;
        for (int64_t i = 0; i < n; i++)
            if (labels[i] == ignore_index)
                ranking[pos++] = i;
        free(rank);
    }
    if (num_ranked)
        *num_ranked = labelled;
    return KD_OK;
}
