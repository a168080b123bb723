/* Label tools against double-precision references (tests/support/ref_labels.c):
 * pseudo-label selection (probabilities, logits, strictness, per-class
 * thresholds, top-k with ties, all masked), label quality scores and the
 * stable ranking, confident-learning label issues, soft labels, ensemble
 * averaging; strides everywhere; errors that write nothing. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_labels.h"

/* ---- helpers ---------------------------------------------------------------- */

#define SENTINEL_F 12345.0f
#define SENTINEL_I 0x5A5A5A5A

/* n x c random probabilities (softmax of N(0, scale) logits, rows sum to 1)
 * with stride ld; padding columns hold NaN to catch reads past c. */
static float *random_probs(kdt_rng *r, int64_t n, int64_t c, int64_t ld, double scale)
{
    float *p = malloc((size_t)(n * ld + 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++) {
        double z[64], s = 0.0;
        for (int64_t j = 0; j < c; j++) {
            z[j] = scale * kdt_normal(r);
            s += exp(z[j]);
        }
        for (int64_t j = 0; j < c; j++)
            p[i * ld + j] = (float)(exp(z[j]) / s);
        for (int64_t j = c; j < ld; j++)
            p[i * ld + j] = NAN;
    }
    return p;
}

static float *random_logits(kdt_rng *r, int64_t n, int64_t c, int64_t ld, double scale)
{
    float *x = malloc((size_t)(n * ld + 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < c; j++)
            x[i * ld + j] = (float)(scale * kdt_normal(r));
        for (int64_t j = c; j < ld; j++)
            x[i * ld + j] = NAN;
    }
    return x;
}

static void fill_f(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

static void fill_i(int32_t *x, size_t n, int32_t v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

static int all_f(const float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&x[i], &v, sizeof v) != 0)
            return 0;
    return 1;
}

static int all_i(const int32_t *x, size_t n, int32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != v)
            return 0;
    return 1;
}

/* ---- pseudo-label selection ---------------------------------------------------- */

static void check_select(int logits, int non_strict, int64_t top_k, const float *class_t,
                         uint64_t seed)
{
    const int64_t n = 257, c = 10, ld = 13;
    kdt_rng r;
    kdt_seed(&r, seed);
    float *x = logits ? random_logits(&r, n, c, ld, 3.0) : random_probs(&r, n, c, ld, 3.0);
    float conf[257], mask[257];
    int32_t lab[257];
    int64_t count = -1;
    const int flags = (logits ? KD_SELECT_LOGITS : 0) | (non_strict ? KD_SELECT_NON_STRICT : 0);
    char err[128];
    ck_assert_int_eq(kd_select_pseudo_labels(n, c, x, ld, flags, 0.6f, class_t, top_k, conf, lab,
                                             mask, &count, err, sizeof err),
                     KD_OK);
    ck_assert_str_eq(err, "");
    double rconf[257];
    int32_t rlab[257];
    int rmask[257];
    ref_select(n, c, x, ld, logits, non_strict, 0.6f, class_t, top_k, rconf, rlab, rmask);
    int64_t rcount = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(kdt_close(conf[i], rconf[i], 2e-6, 1e-7), "row %lld: %.9g vs %.9g",
                      (long long)i, (double)conf[i], rconf[i]);
        ck_assert_int_eq(lab[i], rlab[i]);
        ck_assert_msg(mask[i] == (float)rmask[i], "row %lld mask %g vs %d", (long long)i,
                      (double)mask[i], rmask[i]);
        rcount += rmask[i];
    }
    ck_assert_int_eq(count, rcount);
    ck_assert(count > 0 && count < n);
    /* Each output alone gives the same values. */
    float mask2[257];
    int64_t count2;
    ck_assert_int_eq(kd_select_pseudo_labels(n, c, x, ld, flags, 0.6f, class_t, top_k, NULL, NULL,
                                             mask2, &count2, NULL, 0),
                     KD_OK);
    ck_assert(memcmp(mask, mask2, sizeof mask) == 0 && count2 == count);
    free(x);
}

START_TEST(select_from_probabilities_matches_reference)
{
    check_select(0, 0, 0, NULL, 1);
    check_select(0, 1, 0, NULL, 2);
}
END_TEST

START_TEST(select_from_logits_matches_reference)
{
    check_select(1, 0, 0, NULL, 3);
    check_select(1, 1, 0, NULL, 4);
}
END_TEST

START_TEST(select_with_class_thresholds_matches_reference)
{
    const float t[10] = {0.1f, 0.9f, 0.5f, 0.0f, 1.0f, 0.6f, 0.7f, 0.3f, 0.95f, 0.4f};
    check_select(0, 0, 0, t, 5);
    check_select(1, 1, 0, t, 6);
}
END_TEST

START_TEST(select_top_k_per_class_matches_reference)
{
    check_select(0, 0, 3, NULL, 7);
    check_select(1, 0, 1, NULL, 8);
    check_select(0, 1, 1000, NULL, 9); /* k above every count: no change */
}
END_TEST

START_TEST(select_logits_are_stable_for_extreme_values)
{
    /* +-1e4 logits and -Inf (masked) classes: no overflow, exact one-hot. */
    const float x[3 * 4] = {1e4f, -1e4f,     0.0f,  -INFINITY, -INFINITY, -INFINITY,
                            5.0f, -INFINITY, -1e4f, -1e4f,     -1e4f,     -1e4f};
    float conf[3], mask[3];
    int32_t lab[3];
    int64_t cnt;
    ck_assert_int_eq(kd_select_pseudo_labels(3, 4, x, 4, KD_SELECT_LOGITS, 0.5f, NULL, 0, conf, lab,
                                             mask, &cnt, NULL, 0),
                     KD_OK);
    ck_assert(conf[0] == 1.0f && lab[0] == 0 && mask[0] == 1.0f);
    ck_assert(conf[1] == 1.0f && lab[1] == 2 && mask[1] == 1.0f);
    ck_assert(kdt_close(conf[2], 0.25, 1e-7, 0) && lab[2] == 0 && mask[2] == 0.0f);
    ck_assert_int_eq(cnt, 2);
}
END_TEST

START_TEST(select_is_strict_by_default)
{
    /* The confidence equals the threshold exactly. */
    const float p[2 * 2] = {0.9f, 0.1f, 0.25f, 0.75f};
    float mask[2];
    int64_t cnt;
    ck_assert_int_eq(
        kd_select_pseudo_labels(2, 2, p, 2, 0, 0.9f, NULL, 0, NULL, NULL, mask, &cnt, NULL, 0),
        KD_OK);
    ck_assert(mask[0] == 0.0f && mask[1] == 0.0f && cnt == 0);
    ck_assert_int_eq(kd_select_pseudo_labels(2, 2, p, 2, KD_SELECT_NON_STRICT, 0.9f, NULL, 0, NULL,
                                             NULL, mask, &cnt, NULL, 0),
                     KD_OK);
    ck_assert(mask[0] == 1.0f && mask[1] == 0.0f && cnt == 1);
    /* Per-class thresholds: row 1 (class 1, conf 0.75) against t_1. */
    const float t[2] = {1.0f, 0.75f};
    ck_assert_int_eq(kd_select_pseudo_labels(2, 2, p, 2, KD_SELECT_NON_STRICT, 0.0f, t, 0, NULL,
                                             NULL, mask, &cnt, NULL, 0),
                     KD_OK);
    ck_assert(mask[0] == 0.0f && mask[1] == 1.0f && cnt == 1);
}
END_TEST

START_TEST(select_top_k_breaks_ties_by_lower_index)
{
    /* Five identical rows of class 1 and two of class 0: k = 2 keeps rows
     * 0 and 1 (class 1, the lowest indices) and both class-0 rows; the argmax
     * tie of row 2 goes to the lower class. */
    const float p[7 * 3] = {0.1f, 0.8f, 0.1f, 0.1f, 0.8f, 0.1f, 0.45f, 0.45f, 0.1f,  0.1f, 0.8f,
                            0.1f, 0.1f, 0.8f, 0.1f, 0.1f, 0.8f, 0.1f,  0.9f,  0.05f, 0.05f};
    /* rows: 0 c1, 1 c1, 2 c0 (tie 0/1 -> 0), 3 c1, 4 c1, 5 c1, 6 c0 */
    float mask[7];
    int32_t lab[7];
    int64_t cnt;
    ck_assert_int_eq(
        kd_select_pseudo_labels(7, 3, p, 3, 0, 0.4f, NULL, 2, NULL, lab, mask, &cnt, NULL, 0),
        KD_OK);
    const int32_t want_lab[7] = {1, 1, 0, 1, 1, 1, 0};
    const float want_mask[7] = {1, 1, 1, 0, 0, 0, 1};
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(lab[i], want_lab[i]);
        ck_assert_msg(mask[i] == want_mask[i], "row %d", i);
    }
    ck_assert_int_eq(cnt, 4);
    /* k = 1: the most confident of each class (row 6 beats row 2 for class 0). */
    ck_assert_int_eq(
        kd_select_pseudo_labels(7, 3, p, 3, 0, 0.4f, NULL, 1, NULL, NULL, mask, &cnt, NULL, 0),
        KD_OK);
    const float want1[7] = {1, 0, 0, 0, 0, 0, 1};
    ck_assert(memcmp(mask, want1, sizeof mask) == 0 && cnt == 2);
}
END_TEST

START_TEST(select_all_masked_and_empty_batch)
{
    kdt_rng r;
    kdt_seed(&r, 10);
    float *p = random_probs(&r, 20, 5, 5, 1.0);
    float mask[20];
    int64_t cnt = -1;
    ck_assert_int_eq(
        kd_select_pseudo_labels(20, 5, p, 5, 0, 1.0f, NULL, 2, NULL, NULL, mask, &cnt, NULL, 0),
        KD_OK);
    ck_assert(all_f(mask, 20, 0.0f) && cnt == 0);
    ck_assert_int_eq(
        kd_select_pseudo_labels(0, 5, p, 5, 0, 0.5f, NULL, 2, NULL, NULL, NULL, &cnt, NULL, 0),
        KD_OK);
    ck_assert_int_eq(cnt, 0);
    free(p);
}
END_TEST

START_TEST(select_errors_write_nothing_and_name_the_argument)
{
    float p[2 * 3] = {0.2f, 0.3f, 0.5f, 0.6f, 0.2f, 0.2f};
    float conf[2], mask[2];
    int32_t lab[2];
    int64_t cnt = SENTINEL_I;
    char err[160];
#define SEL(n_, c_, x_, ld_, fl_, th_, ct_, k_)                                                    \
    kd_select_pseudo_labels(n_, c_, x_, ld_, fl_, th_, ct_, k_, conf, lab, mask, &cnt, err,        \
                            sizeof err)
    fill_f(conf, 2, SENTINEL_F);
    fill_f(mask, 2, SENTINEL_F);
    fill_i(lab, 2, SENTINEL_I);
    ck_assert_int_eq(SEL(2, 3, NULL, 3, 0, 0.5f, NULL, 0), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(err, "scores"));
    ck_assert_int_eq(SEL(-1, 3, p, 3, 0, 0.5f, NULL, 0), KD_ERR_SHAPE);
    ck_assert_int_eq(SEL(2, 0, p, 3, 0, 0.5f, NULL, 0), KD_ERR_SHAPE);
    ck_assert_int_eq(SEL(2, 3, p, 2, 0, 0.5f, NULL, 0), KD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err, "ld = 2 < c = 3"));
    ck_assert_int_eq(SEL(INT64_MAX / 2, 3, p, 3, 0, 0.5f, NULL, 0), KD_ERR_SHAPE);
    ck_assert_int_eq(SEL(2, 3, p, 3, 4, 0.5f, NULL, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "flags = 4"));
    ck_assert_int_eq(SEL(2, 3, p, 3, 0, 1.5f, NULL, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "threshold = 1.5"));
    ck_assert_int_eq(SEL(2, 3, p, 3, 0, NAN, NULL, 0), KD_ERR_INVALID_ARGUMENT);
    const float bad_t[3] = {0.5f, -0.1f, 0.5f};
    ck_assert_int_eq(SEL(2, 3, p, 3, 0, 0.5f, bad_t, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "class_thresholds[1] = -0.1"));
    ck_assert_int_eq(SEL(2, 3, p, 3, 0, 0.5f, NULL, -1), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "top_k_per_class = -1"));
    p[4] = NAN;
    ck_assert_int_eq(SEL(2, 3, p, 3, 0, 0.5f, NULL, 0), KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(err, "scores[1][1]"));
    ck_assert_int_eq(SEL(2, 3, p, 3, KD_SELECT_LOGITS, 0.5f, NULL, 0), KD_ERR_NOT_FINITE);
    p[4] = INFINITY;
    ck_assert_int_eq(SEL(2, 3, p, 3, KD_SELECT_LOGITS, 0.5f, NULL, 0), KD_ERR_NOT_FINITE);
    p[4] = 1.5f;
    ck_assert_int_eq(SEL(2, 3, p, 3, 0, 0.5f, NULL, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "not a probability"));
    p[3] = p[4] = p[5] = -INFINITY;
    ck_assert_int_eq(SEL(2, 3, p, 3, KD_SELECT_LOGITS, 0.5f, NULL, 0), KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(err, "row 1"));
    ck_assert(all_f(conf, 2, SENTINEL_F) && all_f(mask, 2, SENTINEL_F) &&
              all_i(lab, 2, SENTINEL_I));
    ck_assert_int_eq(cnt, SENTINEL_I);
    /* A short message buffer is truncated and terminated; NULL skips it. */
    char tiny[8];
    ck_assert_int_eq(kd_select_pseudo_labels(2, 3, p, 2, 0, 0.5f, NULL, 0, NULL, NULL, NULL, NULL,
                                             tiny, sizeof tiny),
                     KD_ERR_SHAPE);
    ck_assert_int_eq(strlen(tiny), 7);
    ck_assert_int_eq(
        kd_select_pseudo_labels(2, 3, p, 2, 0, 0.5f, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0),
        KD_ERR_SHAPE);
#undef SEL
}
END_TEST

/* ---- label quality ------------------------------------------------------------ */

static void check_quality(int kind, uint64_t seed)
{
    const int64_t n = 300, c = 6, ld = 9;
    kdt_rng r;
    kdt_seed(&r, seed);
    float *p = random_probs(&r, n, c, ld, 2.0);
    int32_t y[300];
    for (int64_t i = 0; i < n; i++)
        y[i] = (i % 17 == 5) ? -100 : (int32_t)(kdt_next(&r) % (uint64_t)c);
    float s[300];
    int64_t rank[300], nr;
    ck_assert_int_eq(kd_label_quality(n, c, p, ld, y, -100, kind, s, rank, &nr, NULL, 0), KD_OK);
    int64_t labelled = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] == -100) {
            ck_assert(isnan(s[i]));
            continue;
        }
        labelled++;
        double ref = ref_label_score(p + i * ld, c, y[i], kind);
        ck_assert_msg(kdt_close(s[i], ref, 1e-6, 1e-7), "kind %d row %lld: %.9g vs %.9g", kind,
                      (long long)i, (double)s[i], ref);
    }
    ck_assert_int_eq(nr, labelled);
    /* Ranking: a permutation; scores ascending, ties by index; ignored last. */
    int seen[300] = {0};
    for (int64_t k = 0; k < n; k++) {
        ck_assert(rank[k] >= 0 && rank[k] < n && !seen[rank[k]]);
        seen[rank[k]] = 1;
        if (k < nr)
            ck_assert(y[rank[k]] != -100);
        else
            ck_assert(y[rank[k]] == -100);
        if (k > 0 && k < nr)
            ck_assert(s[rank[k - 1]] < s[rank[k]] ||
                      (s[rank[k - 1]] == s[rank[k]] && rank[k - 1] < rank[k]));
        if (k > nr)
            ck_assert(rank[k - 1] < rank[k]);
    }
    free(p);
}

START_TEST(quality_self_confidence_matches_reference)
{
    check_quality(KD_LABEL_SCORE_SELF_CONFIDENCE, 21);
}
END_TEST
START_TEST(quality_normalized_margin_matches_reference)
{
    check_quality(KD_LABEL_SCORE_NORMALIZED_MARGIN, 22);
}
END_TEST
START_TEST(quality_margin_matches_reference) { check_quality(KD_LABEL_SCORE_MARGIN, 23); }
END_TEST

START_TEST(quality_ranking_is_stable_for_equal_scores)
{
    /* Rows 0, 2, 3 have self-confidence 0.5; row 1 0.2; row 4 0.9. */
    const float p[5 * 2] = {0.5f, 0.5f, 0.8f, 0.2f, 0.5f, 0.5f, 0.5f, 0.5f, 0.1f, 0.9f};
    const int32_t y[5] = {0, 1, 1, 0, 1};
    int64_t rank[5], nr;
    float s[5];
    ck_assert_int_eq(
        kd_label_quality(5, 2, p, 2, y, -1, KD_LABEL_SCORE_SELF_CONFIDENCE, s, rank, &nr, NULL, 0),
        KD_OK);
    const int64_t want[5] = {1, 0, 2, 3, 4};
    ck_assert(memcmp(rank, want, sizeof want) == 0 && nr == 5);
    /* Margins: row 1 = 0.2 - 0.8 = -0.6, rows 0, 2, 3 = 0, row 4 = 0.8. */
    ck_assert_int_eq(
        kd_label_quality(5, 2, p, 2, y, -1, KD_LABEL_SCORE_MARGIN, s, rank, &nr, NULL, 0), KD_OK);
    ck_assert(memcmp(rank, want, sizeof want) == 0);
    ck_assert(kdt_close(s[1], -0.6, 1e-6, 0) && s[0] == 0.0f && kdt_close(s[4], 0.8, 1e-6, 0));
    ck_assert_int_eq(kd_label_quality(5, 2, p, 2, y, -1, KD_LABEL_SCORE_NORMALIZED_MARGIN, s, NULL,
                                      NULL, NULL, 0),
                     KD_OK);
    ck_assert(kdt_close(s[1], 0.2, 1e-6, 0) && s[0] == 0.5f && kdt_close(s[4], 0.9, 1e-6, 0));
    /* One class: the margin is the self-confidence (no other class). */
    const float p1[2] = {0.3f, 1.0f};
    const int32_t y1[2] = {0, 0};
    ck_assert_int_eq(
        kd_label_quality(2, 1, p1, 1, y1, -100, KD_LABEL_SCORE_MARGIN, s, rank, &nr, NULL, 0),
        KD_OK);
    ck_assert(s[0] == 0.3f && s[1] == 1.0f && rank[0] == 0 && rank[1] == 1);
    /* Every row ignored: ranking is the identity, nothing scored. */
    const int32_t yi[2] = {-100, -100};
    ck_assert_int_eq(
        kd_label_quality(2, 1, p1, 1, yi, -100, KD_LABEL_SCORE_MARGIN, s, rank, &nr, NULL, 0),
        KD_OK);
    ck_assert(nr == 0 && rank[0] == 0 && rank[1] == 1 && isnan(s[0]));
}
END_TEST

START_TEST(quality_errors_write_nothing)
{
    const float p[2 * 3] = {0.2f, 0.3f, 0.5f, 0.6f, 0.2f, 0.2f};
    int32_t y[2] = {0, 3};
    float s[2];
    int64_t rank[2] = {SENTINEL_I, SENTINEL_I}, nr = SENTINEL_I;
    char err[160];
    fill_f(s, 2, SENTINEL_F);
    ck_assert_int_eq(kd_label_quality(2, 3, p, 3, y, -100, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "labels[1] = 3"));
    y[1] = 1;
    ck_assert_int_eq(kd_label_quality(2, 3, p, 3, y, 2, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "ignore_index = 2"));
    ck_assert_int_eq(kd_label_quality(2, 3, p, 3, y, -100, 3, s, rank, &nr, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "score_kind = 3"));
    ck_assert_int_eq(kd_label_quality(2, 3, NULL, 3, y, -100, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_label_quality(2, 3, p, 3, NULL, -100, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(err, "labels"));
    ck_assert_int_eq(kd_label_quality(2, 3, p, 1, y, -100, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_SHAPE);
    float q[6] = {0.2f, 0.3f, 0.5f, 0.6f, -0.2f, 0.2f};
    ck_assert_int_eq(kd_label_quality(2, 3, q, 3, y, -100, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    q[4] = NAN;
    ck_assert_int_eq(kd_label_quality(2, 3, q, 3, y, -100, 0, s, rank, &nr, err, sizeof err),
                     KD_ERR_NOT_FINITE);
    ck_assert(all_f(s, 2, SENTINEL_F) && rank[0] == SENTINEL_I && rank[1] == SENTINEL_I &&
              nr == SENTINEL_I);
}
END_TEST

/* ---- label issues ------------------------------------------------------------- */

START_TEST(issues_match_reference_with_noisy_labels)
{
    const int64_t n = 400, c = 5, ld = 7;
    kdt_rng r;
    kdt_seed(&r, 31);
    float *p = random_probs(&r, n, c, ld, 2.5);
    int32_t y[400];
    /* Mostly the argmax (a decent model), 20% flipped, some ignored. */
    for (int64_t i = 0; i < n; i++) {
        int32_t best = 0;
        for (int32_t j = 1; j < c; j++)
            if (p[i * ld + j] > p[i * ld + best])
                best = j;
        y[i] = kdt_uniform(&r) < 0.2 ? (int32_t)(kdt_next(&r) % (uint64_t)c) : best;
        if (i % 23 == 0)
            y[i] = -1;
    }
    float t[5], rt[5];
    int32_t k[400], rk[400];
    uint8_t sus[400];
    int rsus[400];
    int64_t ns;
    char err[64];
    ck_assert_int_eq(kd_find_label_issues(n, c, p, ld, y, -1, t, k, sus, &ns, err, sizeof err),
                     KD_OK);
    ck_assert_str_eq(err, "");
    ref_label_issues(n, c, p, ld, y, -1, rt, rk, rsus);
    int64_t rns = 0;
    for (int j = 0; j < c; j++)
        ck_assert(t[j] == rt[j]);
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(k[i], rk[i]);
        ck_assert_int_eq(sus[i], rsus[i]);
        rns += rsus[i];
        if (y[i] == -1)
            ck_assert_int_eq(sus[i], 0);
    }
    ck_assert_int_eq(ns, rns);
    ck_assert(ns > 10);
    free(p);
}
END_TEST

START_TEST(issues_hand_example_and_unlabelled_class)
{
    /* Binary-exact values.  t_0 = (0.75 + 0.25) / 2 = 0.5, t_1 = (0.25 + 0) / 2
     * = 0.125; class 2 has no labelled row: t_2 = +Inf, never confident. */
    const float p[4 * 3] = {0.75f, 0.125f, 0.125f, /* y 0: J = {0, 1}, k 0 */
                            0.25f, 0.5f,   0.25f,  /* y 0: J = {1}, k 1: suspect */
                            0.5f,  0.25f,  0.25f,  /* y 1: J = {0, 1} (0.5 >= 0.5), k 0: suspect */
                            0.0f,  0.0f,   1.0f};  /* y 1: J empty, k -1 */
    const int32_t y[4] = {0, 0, 1, 1};
    float t[3];
    int32_t k[4];
    uint8_t s[4];
    int64_t ns;
    ck_assert_int_eq(kd_find_label_issues(4, 3, p, 3, y, -100, t, k, s, &ns, NULL, 0), KD_OK);
    ck_assert(t[0] == 0.5f && t[1] == 0.125f && t[2] == INFINITY);
    ck_assert(k[0] == 0 && k[1] == 1 && k[2] == 0 && k[3] == -1);
    ck_assert(s[0] == 0 && s[1] == 1 && s[2] == 1 && s[3] == 0 && ns == 2);
    /* Outputs are optional. */
    ck_assert_int_eq(kd_find_label_issues(4, 3, p, 3, y, -100, NULL, NULL, NULL, &ns, NULL, 0),
                     KD_OK);
    ck_assert_int_eq(ns, 2);
    ck_assert_int_eq(kd_find_label_issues(0, 3, p, 3, y, -100, t, k, s, &ns, NULL, 0), KD_OK);
    ck_assert(ns == 0 && t[0] == INFINITY);
}
END_TEST

START_TEST(issues_errors_write_nothing)
{
    float p[2 * 2] = {0.5f, 0.5f, 0.5f, NAN};
    int32_t y[2] = {0, 1};
    float t[2] = {SENTINEL_F, SENTINEL_F};
    int32_t k[2] = {SENTINEL_I, SENTINEL_I};
    uint8_t s[2] = {7, 7};
    int64_t ns = SENTINEL_I;
    char err[128];
    ck_assert_int_eq(kd_find_label_issues(2, 2, p, 2, y, -100, t, k, s, &ns, err, sizeof err),
                     KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(err, "probs[1][1]"));
    p[3] = 0.5f;
    y[0] = -5;
    ck_assert_int_eq(kd_find_label_issues(2, 2, p, 2, y, -100, t, k, s, &ns, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "labels[0] = -5"));
    ck_assert_int_eq(kd_find_label_issues(2, 2, NULL, 2, y, -100, t, k, s, &ns, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_find_label_issues(2, 2, p, 1, y, -100, t, k, s, &ns, err, sizeof err),
                     KD_ERR_SHAPE);
    ck_assert(all_f(t, 2, SENTINEL_F) && all_i(k, 2, SENTINEL_I) && s[0] == 7 && s[1] == 7 &&
              ns == SENTINEL_I);
}
END_TEST

/* ---- soft labels ---------------------------------------------------------------- */

START_TEST(soft_labels_match_reference_in_every_mode)
{
    const int64_t n = 50, c = 7, ldp = 9, ldo = 8;
    kdt_rng r;
    kdt_seed(&r, 41);
    float *p = random_probs(&r, n, c, ldp, 2.0);
    int32_t y[50], pred[50];
    for (int64_t i = 0; i < n; i++) {
        y[i] = i % 9 == 4 ? -100 : (int32_t)(kdt_next(&r) % (uint64_t)c);
        pred[i] = (int32_t)(kdt_next(&r) % (uint64_t)c);
    }
    float *q = malloc((size_t)(n * ldo) * sizeof *q);
    double *ref = malloc((size_t)(n * c) * sizeof *ref);
    for (int variant = 0; variant < 3; variant++) {
        const int mode = variant == 2 ? KD_SOFT_LABEL_PROBABILITIES : KD_SOFT_LABEL_ONEHOT;
        const int32_t *pr = variant == 1 ? pred : NULL;
        fill_f(q, (size_t)(n * ldo), SENTINEL_F);
        ck_assert_int_eq(kd_soft_labels(n, c, y, -100, 0.7f, mode, variant == 1 ? NULL : p, ldp, pr,
                                        q, ldo, NULL, 0),
                         KD_OK);
        ref_soft_labels(n, c, y, -100, 0.7f, mode, p, ldp, pr, ref);
        ck_assert_msg(kdt_max_abs_diff(q, ldo, ref, n, c) < 1e-6, "variant %d", variant);
        for (int64_t i = 0; i < n; i++) {
            ck_assert(q[i * ldo + 7] == SENTINEL_F); /* padding untouched */
            double sum = 0;
            for (int64_t j = 0; j < c; j++)
                sum += q[i * ldo + j];
            ck_assert(fabs(sum - 1.0) < 1e-5);
        }
    }
    /* In place over the probabilities. */
    ref_soft_labels(n, c, y, -100, 0.3f, KD_SOFT_LABEL_PROBABILITIES, p, ldp, NULL, ref);
    ck_assert_int_eq(kd_soft_labels(n, c, y, -100, 0.3f, KD_SOFT_LABEL_PROBABILITIES, p, ldp, NULL,
                                    p, ldp, NULL, 0),
                     KD_OK);
    ck_assert(kdt_max_abs_diff(p, ldp, ref, n, c) < 1e-6);
    free(p);
    free(q);
    free(ref);
}
END_TEST

START_TEST(soft_labels_hand_example)
{
    const float p[2 * 3] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f};
    const int32_t y[2] = {0, -100};
    float q[6];
    ck_assert_int_eq(
        kd_soft_labels(2, 3, y, -100, 0.7f, KD_SOFT_LABEL_ONEHOT, p, 3, NULL, q, 3, NULL, 0),
        KD_OK);
    /* Row 0: 0.7 on the label, 0.3 on the argmax (1); row 1 unlabelled: onehot(0). */
    ck_assert(q[0] == 0.7f && kdt_close(q[1], 0.3, 1e-7, 0) && q[2] == 0.0f);
    ck_assert(q[3] == 1.0f && q[4] == 0.0f && q[5] == 0.0f);
    /* Label and prediction agree: all the mass on one class. */
    const int32_t pr[2] = {0, 2};
    ck_assert_int_eq(
        kd_soft_labels(2, 3, y, -100, 0.7f, KD_SOFT_LABEL_ONEHOT, NULL, 0, pr, q, 3, NULL, 0),
        KD_OK);
    ck_assert(kdt_close(q[0], 1.0, 1e-7, 0) && q[1] == 0.0f && q[5] == 1.0f);
}
END_TEST

START_TEST(soft_labels_errors_write_nothing)
{
    float p[2 * 3] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f};
    int32_t y[2] = {0, 1}, pr[2] = {0, 3};
    float q[8];
    char err[160];
    fill_f(q, 8, SENTINEL_F);
#define SOFT(w_, m_, p_, ldp_, pr_, q_, ldq_)                                                      \
    kd_soft_labels(2, 3, y, -100, w_, m_, p_, ldp_, pr_, q_, ldq_, err, sizeof err)
    ck_assert_int_eq(SOFT(1.5f, 0, p, 3, NULL, q, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "label_weight = 1.5"));
    ck_assert_int_eq(SOFT(NAN, 0, p, 3, NULL, q, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(SOFT(0.5f, 2, p, 3, NULL, q, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(SOFT(0.5f, 0, p, 3, pr, q, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "predictions[1] = 3"));
    pr[1] = 1;
    ck_assert_int_eq(SOFT(0.5f, 1, p, 3, pr, q, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(SOFT(0.5f, 1, NULL, 3, NULL, q, 3), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(err, "probs"));
    ck_assert_int_eq(SOFT(0.5f, 0, NULL, 3, NULL, q, 3), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(SOFT(0.5f, 0, p, 3, NULL, NULL, 3), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(SOFT(0.5f, 0, p, 3, NULL, q, 2), KD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err, "ld_out"));
    ck_assert_int_eq(SOFT(0.5f, 0, p, 2, NULL, q, 3), KD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err, "ld_probs"));
    y[1] = 7;
    ck_assert_int_eq(SOFT(0.5f, 0, p, 3, NULL, q, 3), KD_ERR_INVALID_ARGUMENT);
    y[1] = 1;
    p[2] = -1.0f;
    ck_assert_int_eq(SOFT(0.5f, 1, p, 3, NULL, q, 3), KD_ERR_INVALID_ARGUMENT);
    p[2] = NAN;
    ck_assert_int_eq(SOFT(0.5f, 1, p, 3, NULL, q, 3), KD_ERR_NOT_FINITE);
    ck_assert(all_f(q, 8, SENTINEL_F));
    p[2] = 0.3f;
    float before[6];
    memcpy(before, p, sizeof before);
    /* Partial overlap with probs (shifted by one element, or another stride). */
    ck_assert_int_eq(SOFT(0.5f, 1, p, 3, NULL, p + 1, 3), KD_ERR_ALIASING);
    ck_assert_int_eq(SOFT(0.5f, 1, p, 3, NULL, p, 4), KD_ERR_ALIASING);
    ck_assert(memcmp(before, p, sizeof before) == 0);
#undef SOFT
}
END_TEST

/* ---- ensembles ---------------------------------------------------------------- */

START_TEST(ensemble_matches_reference_with_and_without_weights)
{
    const int64_t n = 33, c = 11;
    kdt_rng r;
    kdt_seed(&r, 51);
    const int64_t lds[3] = {11, 14, 12};
    float *x[3];
    for (int k = 0; k < 3; k++)
        x[k] = random_logits(&r, n, c, lds[k], 4.0);
    const float *in[3] = {x[0], x[1], x[2]};
    const int64_t ldo = 13;
    float *out = malloc((size_t)(n * ldo) * sizeof *out);
    double *ref = malloc((size_t)(n * c) * sizeof *ref);
    const float w[3] = {2.0f, 0.5f, 1.5f};
    for (int variant = 0; variant < 2; variant++) {
        const float *wt = variant ? w : NULL;
        ck_assert_int_eq(kd_ensemble_average(n, c, 3, in, lds, wt, out, ldo, NULL, 0), KD_OK);
        ref_ensemble(n, c, 3, in, lds, wt, ref);
        ck_assert_msg(kdt_max_abs_diff(out, ldo, ref, n, c) < 1e-5, "variant %d", variant);
    }
    /* A zero weight drops a teacher; K = 1 copies. */
    const float w0[3] = {1.0f, 0.0f, 0.0f};
    ck_assert_int_eq(kd_ensemble_average(n, c, 3, in, lds, w0, out, ldo, NULL, 0), KD_OK);
    for (int64_t i = 0; i < n; i++)
        ck_assert(memcmp(out + i * ldo, x[0] + i * lds[0], (size_t)c * sizeof(float)) == 0);
    ck_assert_int_eq(kd_ensemble_average(n, c, 1, in + 1, lds + 1, NULL, out, ldo, NULL, 0), KD_OK);
    for (int64_t i = 0; i < n; i++)
        ck_assert(memcmp(out + i * ldo, x[1] + i * lds[1], (size_t)c * sizeof(float)) == 0);
    /* In place into the first input. */
    ref_ensemble(n, c, 3, in, lds, w, ref);
    ck_assert_int_eq(kd_ensemble_average(n, c, 3, in, lds, w, x[0], lds[0], NULL, 0), KD_OK);
    ck_assert(kdt_max_abs_diff(x[0], lds[0], ref, n, c) < 1e-5);
    for (int k = 0; k < 3; k++)
        free(x[k]);
    free(out);
    free(ref);
}
END_TEST

START_TEST(ensemble_errors_write_nothing)
{
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, out[4];
    const float *in[2] = {a, b};
    int64_t lds[2] = {2, 2};
    char err[160];
    fill_f(out, 4, SENTINEL_F);
    ck_assert_int_eq(kd_ensemble_average(2, 2, 0, in, lds, NULL, out, 2, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "k = 0"));
    const float *in_null[2] = {a, NULL};
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in_null, lds, NULL, out, 2, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(err, "inputs[1]"));
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, NULL, lds, NULL, out, 2, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, NULL, NULL, out, 2, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    lds[1] = 1;
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, lds, NULL, out, 2, err, sizeof err),
                     KD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err, "lds[1]"));
    lds[1] = 2;
    const float wneg[2] = {1.0f, -1.0f}, wnan[2] = {NAN, 1.0f}, wzero[2] = {0.0f, 0.0f};
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, lds, wneg, out, 2, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "weights[1] = -1"));
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, lds, wnan, out, 2, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, lds, wzero, out, 2, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "sum to 0"));
    b[3] = INFINITY;
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, lds, NULL, out, 2, err, sizeof err),
                     KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(err, "inputs[1][1][1]"));
    ck_assert(all_f(out, 4, SENTINEL_F));
    b[3] = 8;
    /* Output over the second input, or shifted over the first. */
    ck_assert_int_eq(kd_ensemble_average(2, 2, 2, in, lds, NULL, b, 2, err, sizeof err),
                     KD_ERR_ALIASING);
    ck_assert_int_eq(kd_ensemble_average(1, 2, 2, in, lds, NULL, a + 1, 2, err, sizeof err),
                     KD_ERR_ALIASING);
    ck_assert(a[0] == 1 && a[1] == 2 && b[0] == 5 && b[3] == 8);
}
END_TEST

static Suite *labels_suite(void)
{
    Suite *s = suite_create("labels");
    TCase *tc = tcase_create("select");
    tcase_add_test(tc, select_from_probabilities_matches_reference);
    tcase_add_test(tc, select_from_logits_matches_reference);
    tcase_add_test(tc, select_with_class_thresholds_matches_reference);
    tcase_add_test(tc, select_top_k_per_class_matches_reference);
    tcase_add_test(tc, select_logits_are_stable_for_extreme_values);
    tcase_add_test(tc, select_is_strict_by_default);
    tcase_add_test(tc, select_top_k_breaks_ties_by_lower_index);
    tcase_add_test(tc, select_all_masked_and_empty_batch);
    tcase_add_test(tc, select_errors_write_nothing_and_name_the_argument);
    suite_add_tcase(s, tc);

    tc = tcase_create("quality");
    tcase_add_test(tc, quality_self_confidence_matches_reference);
    tcase_add_test(tc, quality_normalized_margin_matches_reference);
    tcase_add_test(tc, quality_margin_matches_reference);
    tcase_add_test(tc, quality_ranking_is_stable_for_equal_scores);
    tcase_add_test(tc, quality_errors_write_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("issues");
    tcase_add_test(tc, issues_match_reference_with_noisy_labels);
    tcase_add_test(tc, issues_hand_example_and_unlabelled_class);
    tcase_add_test(tc, issues_errors_write_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("soft_labels");
    tcase_add_test(tc, soft_labels_match_reference_in_every_mode);
    tcase_add_test(tc, soft_labels_hand_example);
    tcase_add_test(tc, soft_labels_errors_write_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("ensemble");
    tcase_add_test(tc, ensemble_matches_reference_with_and_without_weights);
    tcase_add_test(tc, ensemble_errors_write_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(labels_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
