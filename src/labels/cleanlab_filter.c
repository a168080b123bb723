/* cleanlab-compatible label-issue filters (include/kdlib/labels.h; cleanlab
 * filter.py: find_label_issues, _keep_at_least_n_per_class,
 * _reduce_prune_counts, _prune_by_class, _prune_by_count, _reduce_issues;
 * rank.order_label_issues). */
#include "kdlib/labels.h"

#include "labels/cleanlab_internal.h"
#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    void *block;
    int64_t *counts, *start, *order, *cj, *cal, *pcm;
    double *thresholds, *gather, *work, *pcmf, *scores;
    kdi_cl_key *keys;
    uint8_t *offdiag, *mask, *mask2;
} kdi_cl_filter_ws;

static int kdi_cl_is_prune(int32_t filter_by)
{
    return filter_by == KD_CLEANLAB_PRUNE_BY_NOISE_RATE ||
           filter_by == KD_CLEANLAB_PRUNE_BY_CLASS || filter_by == KD_CLEANLAB_BOTH;
}

static kd_status kdi_cl_filter_args(const char *fn, int64_t c, int32_t filter_by, double frac_noise,
                                    const int64_t *ntr, int64_t min_examples, int32_t rank_by,
                                    int32_t adjust, char *err, size_t err_size)
{
    if (filter_by < KD_CLEANLAB_PRUNE_BY_NOISE_RATE || filter_by > KD_CLEANLAB_LOW_SELF_CONFIDENCE)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: filter_by = %d is not a KD_CLEANLAB_* filter", fn,
                              (int)filter_by);
    if (!(frac_noise >= 0.0 && frac_noise <= 1.0))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: frac_noise = %g is outside [0, 1]", fn, frac_noise);
    if (min_examples < 0)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: min_examples_per_class = %lld < 0", fn, (long long)min_examples);
    if (ntr && !kdi_cl_is_prune(filter_by))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: num_to_remove_per_class needs filter_by "
                              "PRUNE_BY_NOISE_RATE, PRUNE_BY_CLASS or BOTH (filter_by = %d)",
                              fn, (int)filter_by);
    if (ntr)
        for (int64_t k = 0; k < c; k++)
            if (ntr[k] < 0)
                return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                      "%s: num_to_remove_per_class[%lld] = %lld < 0", fn,
                                      (long long)k, (long long)ntr[k]);
    if (rank_by == KD_CLEANLAB_RANK_NONE) {
        if (adjust != 0)
            return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                  "%s: adjust_pred_probs = %d without a rank_by score", fn,
                                  (int)adjust);
        return KD_OK;
    }
    return kdi_cl_check_score(fn, "rank_by", rank_by, adjust, c, err, err_size);
}

/* _keep_at_least_n_per_class then _reduce_prune_counts (truncation to int),
 * and the num_to_remove_per_class rescaling: w->pcm, indexed [true][given]. */
static void kdi_cl_prune_counts(int64_t c, int64_t min_examples, double frac_noise,
                                const int64_t *ntr, kdi_cl_filter_ws *w)
{
    int64_t *pcm = w->pcm;
    double *m = w->pcmf, *col = w->work;
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < c; j++)
            pcm[i * c + j] = w->cal[j * c + i];
    for (int64_t j = 0; j < c; j++) {
        const int64_t d = pcm[j * c + j];
        const int64_t nd = d > min_examples ? d : min_examples;
        int64_t nnz = 0;
        for (int64_t i = 0; i < c; i++)
            nnz += pcm[i * c + j] != 0;
        const double num = nnz - 1.0 > 1.0 ? nnz - 1.0 : 1.0;
        const double take = (double)(nd - d) / num;
        for (int64_t i = 0; i < c; i++) {
            const double v = (double)pcm[i * c + j] - take;
            m[i * c + j] = i == j ? (double)nd : v < 0.0 ? 0.0 : v;
        }
    }
    /* _reduce_prune_counts: off-diagonal scaled by frac_noise, what is taken
     * off each column goes to its diagonal; then astype(int) */
    for (int64_t j = 0; j < c; j++)
        col[j] = 0.0;
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < c; j++)
            if (i != j) {
                const double scaled = m[i * c + j] * frac_noise;
                col[j] += m[i * c + j] - scaled;
                pcm[i * c + j] = kdi_cl_to_int64(scaled);
            } else {
                col[j] += 0.0;
            }
    for (int64_t j = 0; j < c; j++)
        pcm[j * c + j] = kdi_cl_to_int64(m[j * c + j] + col[j]);
    if (!ntr)
        return;
    /* psy = pcm / pcm.sum(axis=1) (NumPy broadcasts the row sums along the
     * columns: psy[i][j] = pcm[i][j] / rowsum[j]); tmp = psy * ntr / noise */
    double *rs = w->work, *row = w->work + c;
    for (int64_t i = 0; i < c; i++) {
        int64_t s = 0;
        for (int64_t j = 0; j < c; j++)
            s += pcm[i * c + j];
        rs[i] = (double)s;
    }
    for (int64_t i = 0; i < c; i++) {
        for (int64_t j = 0; j < c; j++)
            row[j] = (double)pcm[i * c + j] / rs[j];
        const double noise = kdi_cl_sum(row, c, 1) - row[i];
        for (int64_t j = 0; j < c; j++)
            m[i * c + j] =
                i == j ? (double)(w->counts[i] - ntr[i]) : row[j] * (double)ntr[i] / noise;
    }
    kdi_cl_round_rows(c, m, pcm, w->work, w->keys);
}

/* Flag the rows of the `count` lowest of the m keys (a selection: only the
 * set matters, and the order is total, so it is the sorted prefix's set). */
static void kdi_cl_flag_lowest(int64_t m, int64_t count, kdi_cl_key *keys, uint8_t *mask)
{
    kdi_cl_select_lowest(keys, m, count);
    for (int64_t r = 0; r < m && r < count; r++)
        mask[keys[r].row] = 1;
}

static void kdi_cl_prune(int64_t n, int64_t c, const float *probs, int64_t ld, int32_t filter_by,
                         int64_t min_examples, kdi_cl_filter_ws *w)
{
    uint8_t *by_class = w->mask, *by_rate = w->mask2;
    for (int64_t i = 0; i < n; i++)
        by_class[i] = by_rate[i] = 0;
    for (int64_t k = 0; k < c; k++) {
        const int64_t *rows = w->order + w->start[k];
        const int64_t m = w->start[k + 1] - w->start[k];
        /* cleanlab applies a class's mask only when it has more than one row */
        if (m <= min_examples || m <= 1)
            continue;
        if (filter_by != KD_CLEANLAB_PRUNE_BY_NOISE_RATE) {
            /* a kept count below 0 (INT64_MIN: beyond int64) keeps none */
            const int64_t kept = w->pcm[k * c + k];
            const int64_t num = kept < 0 ? m : m - kept;
            if (num >= 1) {
                for (int64_t r = 0; r < m; r++) {
                    w->keys[r].key = (double)probs[rows[r] * ld + k];
                    w->keys[r].row = rows[r];
                }
                kdi_cl_flag_lowest(m, num, w->keys, by_class);
            }
        }
        if (filter_by != KD_CLEANLAB_PRUNE_BY_CLASS)
            for (int64_t j = 0; j < c; j++) {
                const int64_t num = w->pcm[j * c + k];
                if (j == k || num <= 0)
                    continue;
                for (int64_t r = 0; r < m; r++) {
                    const float *p = probs + rows[r] * ld;
                    w->keys[r].key = -((double)p[j] - (double)p[k]); /* argsort(-margin) */
                    w->keys[r].row = rows[r];
                }
                kdi_cl_flag_lowest(m, num, w->keys, by_rate);
            }
    }
    for (int64_t i = 0; i < n; i++)
        w->mask[i] = filter_by == KD_CLEANLAB_PRUNE_BY_CLASS        ? by_class[i]
                     : filter_by == KD_CLEANLAB_PRUNE_BY_NOISE_RATE ? by_rate[i]
                                                                    : (by_class[i] & by_rate[i]);
}

kd_status kd_cleanlab_find_label_issues(int64_t n, int64_t c, const float *probs, int64_t ld,
                                        const int32_t *labels, int32_t ignore_index,
                                        int32_t filter_by, double frac_noise,
                                        const int64_t *num_to_remove_per_class,
                                        int64_t min_examples_per_class, int32_t rank_by,
                                        int32_t adjust_pred_probs, uint8_t *issues, int64_t *ranked,
                                        int64_t *num_issues, char *err, size_t err_size)
{
    static const char fn[] = "kd_cleanlab_find_label_issues";
    kdi_label_clear(err, err_size);
    kd_status st = kdi_cl_check_inputs(fn, n, c, probs, ld, labels, ignore_index, err, err_size);
    if (st == KD_OK)
        st = kdi_cl_filter_args(fn, c, filter_by, frac_noise, num_to_remove_per_class,
                                min_examples_per_class, rank_by, adjust_pred_probs, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[6] = {
        kdi_buf_matrix("probs", -1, probs, n, ld, c, 4, 0),
        kdi_buf_vector("labels", -1, labels, n, 4, 0),
        kdi_buf_vector("num_to_remove_per_class", -1, num_to_remove_per_class, c, 8, 0),
        kdi_buf_vector("issues", -1, issues, n, 1, 1),
        kdi_buf_vector("ranked", -1, ranked, n, 8, 1),
        kdi_buf_vector("num_issues", -1, num_issues, 1, 8, 1),
    };
    st = kdi_check_aliasing(err, err_size, fn, bufs, 6);
    if (st != KD_OK)
        return st;

    kdi_cl_filter_ws w;
    size_t cc;
    const size_t un = (size_t)n, uc = (size_t)c;
    const size_t nk = un > uc ? un : uc;
    if (!kdi_size_mul(uc, uc, &cc) || !kdi_size_add(cc, 2 * uc, &cc))
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              "%s: c = %lld: c x c matrices do not fit in memory", fn,
                              (long long)c);
    void **ptr[15] = {(void **)&w.counts,     (void **)&w.start,  (void **)&w.order,
                      (void **)&w.cj,         (void **)&w.cal,    (void **)&w.pcm,
                      (void **)&w.thresholds, (void **)&w.gather, (void **)&w.work,
                      (void **)&w.pcmf,       (void **)&w.scores, (void **)&w.keys,
                      (void **)&w.offdiag,    (void **)&w.mask,   (void **)&w.mask2};
    const size_t count[15] = {uc, uc + 1, un, cc, cc, cc, uc, un, cc, cc, un, nk, un, un, un};
    const size_t size[15] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, sizeof(kdi_cl_key), 1, 1, 1};
    w.block = kdi_cl_alloc(15, ptr, count, size);
    if (!w.block)
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              "%s: out of memory for n = %lld rows and c = %lld classes", fn,
                              (long long)n, (long long)c);

    kdi_cl_thresholds(n, c, probs, ld, labels, ignore_index, w.counts, w.thresholds, w.gather,
                      w.order, w.start);
    kdi_cl_confident_joint(n, c, probs, ld, labels, ignore_index, w.thresholds, w.cj, w.offdiag);
    if (filter_by == KD_CLEANLAB_LOW_NORMALIZED_MARGIN ||
        filter_by == KD_CLEANLAB_LOW_SELF_CONFIDENCE) {
        /* the num_label_issues (off_diagonal) rows of lowest score */
        int64_t num = 0, m = 0;
        for (int64_t i = 0; i < n; i++)
            num += w.offdiag[i] && !kdi_cl_label_is_near_argmax(probs + i * ld, c, labels[i]);
        kdi_cl_scores(n, c, probs, ld, labels, ignore_index,
                      filter_by == KD_CLEANLAB_LOW_SELF_CONFIDENCE
                          ? KD_LABEL_SCORE_SELF_CONFIDENCE
                          : KD_LABEL_SCORE_NORMALIZED_MARGIN,
                      0, w.thresholds, w.scores, w.work);
        for (int64_t i = 0; i < n; i++)
            if (labels[i] != ignore_index) {
                w.keys[m].key = w.scores[i];
                w.keys[m++].row = i;
            }
        for (int64_t i = 0; i < n; i++)
            w.mask[i] = 0;
        kdi_cl_flag_lowest(m, num, w.keys, w.mask);
    } else {
        if (kdi_cl_is_prune(filter_by)) {
            kdi_cl_calibrate(c, w.cj, w.counts, w.cal, w.work, w.keys);
            kdi_cl_prune_counts(c, min_examples_per_class, frac_noise, num_to_remove_per_class, &w);
            kdi_cl_prune(n, c, probs, ld, filter_by, min_examples_per_class, &w);
        } else if (filter_by == KD_CLEANLAB_CONFIDENT_LEARNING) {
            for (int64_t i = 0; i < n; i++)
                w.mask[i] = w.offdiag[i];
        } else { /* predicted_neq_given */
            for (int64_t i = 0; i < n; i++) {
                const float *p = probs + i * ld;
                int64_t best = 0;
                for (int64_t j = 1; j < c; j++)
                    if (p[j] > p[best])
                        best = j;
                w.mask[i] = labels[i] != ignore_index && best != labels[i];
            }
        }
        /* _reduce_issues: the given label within 1e-6 of the argmax */
        for (int64_t i = 0; i < n; i++)
            if (w.mask[i] && kdi_cl_label_is_near_argmax(probs + i * ld, c, labels[i]))
                w.mask[i] = 0;
    }

    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += w.mask[i];
    if (ranked) {
        int64_t m = 0;
        if (rank_by != KD_CLEANLAB_RANK_NONE) {
            kdi_cl_scores(n, c, probs, ld, labels, ignore_index, rank_by, adjust_pred_probs,
                          w.thresholds, w.scores, w.work);
            for (int64_t i = 0; i < n; i++)
                if (w.mask[i]) {
                    w.keys[m].key = w.scores[i];
                    w.keys[m++].row = i;
                }
            kdi_cl_sort(w.keys, m);
            for (int64_t r = 0; r < m; r++)
                ranked[r] = w.keys[r].row;
        } else {
            for (int64_t i = 0; i < n; i++)
                if (w.mask[i])
                    ranked[m++] = i;
        }
    }
    if (issues && n > 0)
        memcpy(issues, w.mask, un);
    if (num_issues)
        *num_issues = total;
    free(w.block);
    return KD_OK;
}
