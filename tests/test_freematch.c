#define _DEFAULT_SOURCE
/* FreeMatch (KD_THRESHOLD_FREEMATCH of kdlib/threshold.h) against a double
 * reference written from USB's FreeMatchThresholingHook
 * (semilearn/algorithms/freematch/utils.py): several steps of updates on
 * random batches, the self-adaptive thresholds and masks; parameters, the
 * row entry points' checks, save/load.  Also FlexMatch through the row entry
 * points (max / argmax of each row). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdlib/threshold.h"
#include "kdt_threshold.h"
#include "kdtest.h"

#define MAXC 16

/* ---- the reference (USB's hook, in double) -------------------------------- */

typedef struct {
    int64_t c;
    double m, clip; /* clip: USB's clip_thresh clips to [0, 0.95]; 1 = off */
    double q;       /* use_quantile: torch.quantile(max_probs, q); < 0 = off (the mean) */
    double time_p, p_model[MAXC], label_hist[MAXC];
} ref_fm;

static void ref_fm_init(ref_fm *r, int64_t c, double m, double clip, double q)
{
    r->c = c;
    r->q = q;
    r->m = m;
    r->clip = clip;
    for (int64_t j = 0; j < c; j++)
        r->p_model[j] = r->label_hist[j] = 1.0 / (double)c;
    r->time_p = 1.0 / (double)c; /* p_model.mean() */
}

static int64_t ref_argmax(const float *row, int64_t c)
{
    int64_t a = 0;
    for (int64_t j = 1; j < c; j++)
        if (row[j] > row[a])
            a = j;
    return a;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* torch.quantile(x, q), linear interpolation, on a sorted copy. */
static double ref_quantile(const double *x, int64_t n, double q)
{
    double s[256];
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    const double pos = q * (double)(n - 1);
    const int64_t lo = (int64_t)floor(pos), hi = (int64_t)ceil(pos);
    return s[lo] + (pos - (double)lo) * (s[hi] - s[lo]);
}

/* update(): max_probs.mean() (or its quantile), probs.mean(dim=0),
 * bincount(argmax) / n */
static void ref_fm_update(ref_fm *r, int64_t n, const float *probs, int64_t ld)
{
    double mean_max = 0.0, mean[MAXC] = {0}, hist[MAXC] = {0}, maxes[256];
    for (int64_t k = 0; k < n; k++) {
        const float *row = probs + k * ld;
        int64_t a = ref_argmax(row, r->c);
        maxes[k] = row[a];
        mean_max += row[a] / (double)n;
        hist[a] += 1.0;
        for (int64_t j = 0; j < r->c; j++)
            mean[j] += row[j] / (double)n;
    }
    if (r->q >= 0.0)
        mean_max = ref_quantile(maxes, n, r->q);
    r->time_p = r->time_p * r->m + (1 - r->m) * mean_max;
    r->time_p = fmin(fmax(r->time_p, 0.0), r->clip);
    for (int64_t j = 0; j < r->c; j++) {
        r->p_model[j] = r->p_model[j] * r->m + (1 - r->m) * mean[j];
        r->label_hist[j] = r->label_hist[j] * r->m + (1 - r->m) * hist[j] / (double)n;
    }
}

/* masking(): max_probs >= time_p * (p_model / max p_model)[argmax] */
static double ref_fm_threshold(const ref_fm *r, int64_t cls)
{
    double mx = 0.0;
    for (int64_t j = 0; j < r->c; j++)
        mx = fmax(mx, r->p_model[j]);
    return r->time_p * r->p_model[cls] / mx;
}

/* ---- helpers -------------------------------------------------------------- */

/* n softmax rows of c classes with stride ld (logits N(0, scale^2)); a few
 * rows with a tie at the top. */
static void random_rows(kdt_rng *g, int64_t n, int64_t c, int64_t ld, double scale, float *out)
{
    for (int64_t k = 0; k < n; k++) {
        double z[MAXC], mx = -1e300, s = 0.0;
        for (int64_t j = 0; j < c; j++) {
            z[j] = scale * kdt_normal(g);
            mx = fmax(mx, z[j]);
        }
        if (k % 7 == 3 && c > 2)
            z[c - 1] = z[1] = mx + 0.5; /* tie between classes 1 and c-1 */
        for (int64_t j = 0; j < c; j++)
            s += exp(z[j] - mx);
        for (int64_t j = 0; j < c; j++)
            out[k * ld + j] = (float)(exp(z[j] - mx) / s);
        for (int64_t j = c; j < ld; j++)
            out[k * ld + j] = -7.0f; /* padding: never read */
    }
}

static kd_threshold *freematch(int64_t n, int64_t c)
{
    kd_threshold *th = NULL;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_FREEMATCH, n, c), KD_OK);
    return th;
}

static float get1(const kd_threshold *th, kd_threshold_state what)
{
    float v = -1.0f;
    ck_assert_int_eq(kd_threshold_get_floats(th, what, 1, &v), KD_OK);
    return v;
}

/* Every observable float of the state, in one array (3C + 1 values). */
static void snapshot(const kd_threshold *th, int64_t c, float *out)
{
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD, 1, out),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, c, out + 1),
                     KD_OK);
    ck_assert_int_eq(
        kd_threshold_get_floats(th, KD_THRESHOLD_STATE_LABEL_HISTOGRAM, c, out + 1 + c), KD_OK);
    ck_assert_int_eq(
        kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, c, out + 1 + 2 * c),
        KD_OK);
}

static void check_against(const kd_threshold *th, const ref_fm *r)
{
    const int64_t c = r->c;
    float s[3 * MAXC + 1];
    snapshot(th, c, s);
    ck_assert_msg(kdt_close(s[0], r->time_p, 1e-6, 1e-7), "tau_t %.9g, reference %.9g", s[0],
                  r->time_p);
    for (int64_t j = 0; j < c; j++) {
        ck_assert_msg(kdt_close(s[1 + j], r->p_model[j], 1e-6, 1e-7), "p_t[%lld] %.9g vs %.9g",
                      (long long)j, s[1 + j], r->p_model[j]);
        ck_assert_msg(kdt_close(s[1 + c + j], r->label_hist[j], 1e-6, 1e-7),
                      "label_hist[%lld] %.9g vs %.9g", (long long)j, s[1 + c + j],
                      r->label_hist[j]);
        ck_assert_msg(kdt_close(s[1 + 2 * c + j], ref_fm_threshold(r, j), 1e-6, 1e-7),
                      "tau_c[%lld] %.9g vs %.9g", (long long)j, s[1 + 2 * c + j],
                      ref_fm_threshold(r, j));
    }
}

/* Masks of the batch against the reference; rows within 1e-6 of their
 * threshold are skipped (float rounding of the state).  Returns the number
 * of rows kept. */
static int64_t check_masks(const kd_threshold *th, const ref_fm *r, int64_t n, const float *probs,
                           int64_t ld)
{
    float w[256];
    int32_t pl[256];
    ck_assert_int_le(n, 256);
    ck_assert_int_eq(kd_threshold_weights_probs(th, n, r->c, probs, ld, w, pl), KD_OK);
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) {
        const float *row = probs + k * ld;
        const int64_t a = ref_argmax(row, r->c);
        ck_assert_int_eq(pl[k], a);
        const double thr = ref_fm_threshold(r, a);
        if (fabs(row[a] - thr) < 1e-6)
            continue;
        ck_assert_msg(w[k] == (row[a] >= thr ? 1.0f : 0.0f),
                      "row %lld: max %.9g threshold %.9g weight %g", (long long)k, row[a], thr,
                      w[k]);
        kept += w[k] == 1.0f;
    }
    return kept;
}

/* ---- reference ------------------------------------------------------------ */

static void run_reference(int64_t c, double m, double clip, double q, double scale, int steps,
                          uint64_t seed, int rejects)
{
    enum { B = 48 };
    const int64_t ld = c + 3;
    kd_threshold *th = freematch(1000, c);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, m), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_CLIP, clip), KD_OK);
    if (q >= 0.0) {
        ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_USE_QUANTILE, 1), KD_OK);
        ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_QUANTILE, q), KD_OK);
    }
    ref_fm r;
    ref_fm_init(&r, c, m, clip, q);
    check_against(th, &r);
    kdt_rng g;
    kdt_seed(&g, seed);
    float *probs = malloc(sizeof(float) * B * (size_t)ld);
    int64_t used = 0, total = 0;
    for (int t = 0; t < steps; t++) {
        const int64_t n = 1 + (int64_t)(kdt_uniform(&g) * B);
        random_rows(&g, n, c, ld, scale, probs);
        /* before the batch's update (kdlib's order), then after it (USB's) */
        check_masks(th, &r, n, probs, ld);
        ck_assert_int_eq(kd_threshold_update_probs(th, n, c, probs, ld, NULL), KD_OK);
        ref_fm_update(&r, n, probs, ld);
        check_against(th, &r);
        used += check_masks(th, &r, n, probs, ld);
        total += n;
    }
    int64_t updates = -1;
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UPDATES, 1, &updates), KD_OK);
    ck_assert_int_eq(updates, steps);
    /* the masks were not all equal (the test would not see a wrong threshold) */
    ck_assert_int_gt(used, 0);
    if (rejects)
        ck_assert_int_lt(used, total);
    else
        ck_assert_int_eq(used, total);
    free(probs);
    kd_threshold_destroy(th);
}

START_TEST(thresholds_and_masks_follow_usb_over_many_steps)
{
    run_reference(5, 0.9, 1.0, -1, 2.0, 60, 1, 1); /* fast EMA: the state moves a lot */
    /* USB's default: tau_t stays near 1/C <= every max, so every mask is 1 */
    run_reference(10, 0.999, 1.0, -1, 3.0, 40, 2, 0);
    run_reference(3, 0.5, 0.95, -1, 6.0, 30, 3, 1); /* sharp rows: tau_t reaches the clip */
}
END_TEST

START_TEST(the_quantile_option_follows_torch_quantile)
{
    run_reference(5, 0.9, 1.0, 0.8, 2.0, 60, 11, 1); /* USB's use_quantile: 0.8 */
    run_reference(4, 0.7, 1.0, 0.5, 1.5, 40, 12, 1);
    run_reference(6, 0.8, 0.95, 1.0, 3.0, 30, 13, 1); /* the max, clipped */
    run_reference(3, 0.9, 1.0, 0.0, 2.0, 30, 14, 1);  /* the min */
    /* equal maxima, zero rows (-0.0 too) */
    kd_threshold *th = freematch(4, 2);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_USE_QUANTILE, 1), KD_OK);
    const float rows[8] = {0.25f, 0.75f, 0.75f, 0.25f, -0.0f, -0.0f, 0.5f, 0.5f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 4, 2, rows, 2, NULL), KD_OK);
    /* maxima 0.75 0.75 0 0.5 -> sorted 0 0.5 0.75 0.75, pos 2.4 -> 0.75 */
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 0.75f);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_QUANTILE, 0.25), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 4, 2, rows, 2, NULL), KD_OK);
    /* pos 0.75 -> 0 + 0.75 (0.5 - 0) */
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 0.375f);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, rows + 6, 2, NULL), KD_OK);
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 0.5f); /* one row: its max */
    kd_threshold_destroy(th);
}
END_TEST

START_TEST(the_clip_bounds_the_global_threshold)
{
    kd_threshold *th = freematch(4, 2);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.0), KD_OK);
    const float rows[4] = {1.0f, 0.0f, 0.0f, 1.0f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, 2, rows, 2, NULL), KD_OK);
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 1.0f);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_CLIP, 0.95), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, 2, rows, 2, NULL), KD_OK);
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 0.95f);
    /* a row at 0.96 passes the clipped threshold (p_t is uniform: MaxNorm 1) */
    float w[1];
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0.04f, 0.96f}, 2, w, NULL),
                     KD_OK);
    ck_assert(w[0] == 1.0f);
    kd_threshold_destroy(th);
    /* one class: rows of 1, tau_t stays 1 = 1/C, every mask 1 */
    th = freematch(4, 1);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.5), KD_OK);
    const float ones[3] = {1, 1, 1};
    for (int t = 0; t < 3; t++) {
        ck_assert_int_eq(kd_threshold_update_probs(th, 3, 1, ones, 1, NULL), KD_OK);
        float w3[3];
        ck_assert_int_eq(kd_threshold_weights_probs(th, 3, 1, ones, 1, w3, NULL), KD_OK);
        ck_assert(w3[0] == 1.0f && w3[1] == 1.0f && w3[2] == 1.0f);
    }
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 1.0f); /* 1/C */
    kd_threshold_destroy(th);
}
END_TEST

START_TEST(confidence_weights_equal_row_weights_and_the_confidence_update_is_refused)
{
    const int64_t c = 6, n = 40;
    kd_threshold *th = freematch(10, c);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.8), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 9);
    float probs[40 * 6], conf[40], w1[40], w2[40];
    int32_t pred[40];
    for (int t = 0; t < 5; t++) {
        random_rows(&g, n, c, c, 2.5, probs);
        ck_assert_int_eq(kd_threshold_update_probs(th, n, c, probs, c, NULL), KD_OK);
    }
    for (int64_t k = 0; k < n; k++) {
        pred[k] = (int32_t)ref_argmax(probs + k * c, c);
        conf[k] = probs[k * c + pred[k]];
    }
    ck_assert_int_eq(kd_threshold_weights(th, n, conf, pred, w1), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, n, c, probs, c, w2, NULL), KD_OK);
    ck_assert(memcmp(w1, w2, sizeof w1) == 0);

    float before[3 * 6 + 1], after[3 * 6 + 1];
    snapshot(th, c, before);
    const int64_t idx[2] = {0, 1};
    ck_assert_int_eq(kd_threshold_update(th, 2, idx, conf, pred), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th),
                                 "kd_threshold_update: freematch needs whole probability rows: "
                                 "use kd_threshold_update_probs"));
    snapshot(th, c, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- parameters ----------------------------------------------------------- */

START_TEST(parameters_have_usb_defaults_bounds_and_clear_errors)
{
    kd_threshold *th = freematch(10, 4);
    ck_assert_str_eq(kd_threshold_algorithm_name(KD_THRESHOLD_FREEMATCH), "freematch");
    double v, lo, hi;
    int64_t i;
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.999);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_CLIP, &v), KD_OK);
    ck_assert(v == 1.0);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_ALGORITHM, &i), KD_OK);
    ck_assert_int_eq(i, KD_THRESHOLD_FREEMATCH);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_USE_QUANTILE, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_QUANTILE, &v), KD_OK);
    ck_assert(v == 0.8);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_USE_QUANTILE, 2),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_QUANTILE, 1.01),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_FREEMATCH, KD_THRESHOLD_PARAM_MOMENTUM, &lo, &hi),
        KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_FREEMATCH, KD_THRESHOLD_PARAM_CLIP, &lo, &hi),
        KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_FREEMATCH, KD_THRESHOLD_PARAM_THRESHOLD, &lo, &hi),
        KD_ERR_UNSUPPORTED);

    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 1.5),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_MOMENTUM"));
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, NAN),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_CLIP, -0.1),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 0.5),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_PER_CLASS, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_MOMENTUM, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.999);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.5), KD_OK);
    ck_assert_str_eq(kd_threshold_last_error(th), "");

    /* reset: the initial state, parameters kept */
    const float rows[8] = {1, 0, 0, 0, 0, 0.5f, 0.5f, 0};
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, 4, rows, 4, NULL), KD_OK);
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) != 0.25f);
    ck_assert_int_eq(kd_threshold_reset(th), KD_OK);
    ck_assert(get1(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) == 0.25f);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.5);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- the row entry points' checks ----------------------------------------- */

START_TEST(bad_rows_are_refused_and_change_nothing)
{
    const int64_t c = 3;
    kd_threshold *th = freematch(5, c);
    float rows[6] = {0.2f, 0.3f, 0.5f, 0.1f, 0.8f, 0.1f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, c, rows, c, NULL), KD_OK);
    float before[3 * 3 + 1], after[3 * 3 + 1];
    snapshot(th, c, before);
    float w[2] = {9, 9};
    int32_t pl[2] = {9, 9};
    const int64_t bad_idx[2] = {0, 5};

    struct {
        int64_t n, c, ld;
        int bad; /* 1: NaN, 2: inf, 3: 1.5, 4: -0.25 at rows[4] */
        int null_probs;
        const int64_t *idx;
        kd_status want;
        const char *msg;
    } cases[] = {
        {-1, 3, 3, 0, 0, NULL, KD_ERR_INVALID_ARGUMENT, "n = -1 < 0"},
        {2, 4, 4, 0, 0, NULL, KD_ERR_INVALID_ARGUMENT, "c = 4, the handle has 3 classes"},
        {2, 3, 2, 0, 0, NULL, KD_ERR_INVALID_ARGUMENT, "ld = 2 < c = 3"},
        {2, 3, INT64_MAX / 2, 0, 0, NULL, KD_ERR_INVALID_ARGUMENT, "overflow"},
        {2, 3, 3, 0, 1, NULL, KD_ERR_NULL_POINTER, "probs is NULL"},
        {2, 3, 3, 1, 0, NULL, KD_ERR_NOT_FINITE, "probs[1][1] is NaN"},
        {2, 3, 3, 2, 0, NULL, KD_ERR_NOT_FINITE, "probs[1][1] is infinite"},
        {2, 3, 3, 3, 0, NULL, KD_ERR_INVALID_ARGUMENT, "probs[1][1] = 1.5 is outside [0, 1]"},
        {2, 3, 3, 4, 0, NULL, KD_ERR_INVALID_ARGUMENT, "probs[1][1] = -0.25 is outside [0, 1]"},
        {2, 3, 3, 0, 0, bad_idx, KD_ERR_INVALID_ARGUMENT, "indices[1] = 5 is outside [0, 5)"},
    };
    const float bad_values[5] = {0.8f, NAN, INFINITY, 1.5f, -0.25f};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        rows[4] = bad_values[cases[t].bad];
        const float *p = cases[t].null_probs ? NULL : rows;
        kd_status st =
            kd_threshold_update_probs(th, cases[t].n, cases[t].c, p, cases[t].ld, cases[t].idx);
        ck_assert_msg(st == cases[t].want, "case %zu: update status %d", t, (int)st);
        ck_assert_msg(strstr(kd_threshold_last_error(th), cases[t].msg) != NULL, "case %zu: '%s'",
                      t, kd_threshold_last_error(th));
        ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "kd_threshold_update_probs: "));
        if (!cases[t].idx) {
            st = kd_threshold_weights_probs(th, cases[t].n, cases[t].c, p, cases[t].ld, w, pl);
            ck_assert_msg(st == cases[t].want, "case %zu: weights status %d", t, (int)st);
            ck_assert_ptr_nonnull(
                strstr(kd_threshold_last_error(th), "kd_threshold_weights_probs: "));
        }
        snapshot(th, c, after);
        ck_assert_msg(memcmp(before, after, sizeof before) == 0, "case %zu changed the state", t);
        ck_assert(w[0] == 9 && w[1] == 9 && pl[0] == 9 && pl[1] == 9);
    }
    rows[4] = 0.8f;
    ck_assert_int_eq(kd_threshold_weights_probs(th, 2, c, rows, c, NULL, pl), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "weights is NULL"));
    ck_assert_int_eq(kd_threshold_update_probs(NULL, 2, c, rows, c, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_weights_probs(NULL, 2, c, rows, c, w, pl), KD_ERR_NULL_POINTER);
    /* n = 0: nothing is read; indices are optional and checked when given */
    ck_assert_int_eq(kd_threshold_update_probs(th, 0, c, NULL, c, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 0, c, NULL, c, NULL, NULL), KD_OK);
    snapshot(th, c, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, c, rows, c, (int64_t[]){4, 0}), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 2, c, rows, c, w, NULL), KD_OK);
    ck_assert(pl[0] == 9);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- FlexMatch through the row entry points ------------------------------- */

START_TEST(flexmatch_reduces_rows_to_max_and_lowest_argmax)
{
    const int64_t N = 600, c = 4, n = 520, ld = 5; /* n > the handle's chunk of 256 rows */
    kd_threshold *a = NULL, *b = NULL;
    ck_assert_int_eq(kd_threshold_create(&a, KD_THRESHOLD_FLEXMATCH, N, c), KD_OK);
    ck_assert_int_eq(kd_threshold_create(&b, KD_THRESHOLD_FLEXMATCH, N, c), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_THRESHOLD, 0.6), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(b, KD_THRESHOLD_PARAM_THRESHOLD, 0.6), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 5);
    float *probs = malloc(sizeof(float) * (size_t)(n * ld)), conf[520], w1[520], w2[520];
    int32_t pred[520], pl[520];
    int64_t idx[520], p1[600], p2[600];
    for (int t = 0; t < 3; t++) {
        random_rows(&g, n, c, ld, 3.0, probs);
        probs[0] = probs[1] = 0.75f; /* an exact tie: class 0 */
        probs[2] = probs[3] = 0.0f;
        for (int64_t k = 0; k < n; k++) {
            idx[k] = (k * 7 + t) % N;
            pred[k] = (int32_t)ref_argmax(probs + k * ld, c);
            conf[k] = probs[k * ld + pred[k]];
        }
        ck_assert_int_eq(pred[0], 0);
        ck_assert_int_eq(kd_threshold_weights(a, n, conf, pred, w1), KD_OK);
        ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, ld, w2, pl), KD_OK);
        ck_assert(memcmp(w1, w2, sizeof(float) * (size_t)n) == 0);
        ck_assert(memcmp(pred, pl, sizeof(int32_t) * (size_t)n) == 0);
        ck_assert_int_eq(kd_threshold_update(a, n, idx, conf, pred), KD_OK);
        ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, ld, idx), KD_OK);
        ck_assert_int_eq(kd_threshold_get_ints(a, KD_THRESHOLD_STATE_PREDICTIONS, N, p1), KD_OK);
        ck_assert_int_eq(kd_threshold_get_ints(b, KD_THRESHOLD_STATE_PREDICTIONS, N, p2), KD_OK);
        ck_assert(memcmp(p1, p2, sizeof p1) == 0);
    }
    /* FlexMatch keeps a prediction per sample: indices are required */
    ck_assert_int_eq(kd_threshold_update_probs(b, 1, c, probs, ld, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(b), "indices is NULL"));
    free(probs);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
}
END_TEST

/* ---- state file ----------------------------------------------------------- */

KDT_STATE_DIR("kd_freematch")

START_TEST(the_state_survives_save_and_load_and_a_failed_load_changes_nothing)
{
    const int64_t c = 7, n = 30;
    kd_threshold *a = freematch(50, c), *b = freematch(50, c);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_MOMENTUM, 0.7), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_CLIP, 0.9), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(a, KD_THRESHOLD_PARAM_USE_QUANTILE, 1), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_QUANTILE, 0.65), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 11);
    float probs[30 * 7];
    for (int t = 0; t < 4; t++) {
        random_rows(&g, n, c, c, 2.0, probs);
        ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    }
    ck_assert_int_eq(kd_threshold_save(a, in_dir("fm.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_load(b, in_dir("fm.state")), KD_OK);
    float sa[3 * 7 + 1], sb[3 * 7 + 1];
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    double v;
    int64_t ua, ub;
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.7);
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_CLIP, &v), KD_OK);
    ck_assert(v == 0.9);
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_QUANTILE, &v), KD_OK);
    ck_assert(v == 0.65);
    ck_assert_int_eq(kd_threshold_get_int(b, KD_THRESHOLD_PARAM_USE_QUANTILE, &ua), KD_OK);
    ck_assert_int_eq(ua, 1);
    ck_assert_int_eq(kd_threshold_get_ints(a, KD_THRESHOLD_STATE_UPDATES, 1, &ua), KD_OK);
    ck_assert_int_eq(kd_threshold_get_ints(b, KD_THRESHOLD_STATE_UPDATES, 1, &ub), KD_OK);
    ck_assert(ua == 4 && ub == 4);
    /* the double state itself: saved again, the same bytes; the same next step */
    ck_assert_int_eq(kd_threshold_save(b, in_dir("fm2.state")), KD_OK);
    size_t s1, s2;
    unsigned char *f1 = kdt_read_file(in_dir("fm.state"), &s1);
    unsigned char *f2 = kdt_read_file(in_dir("fm2.state"), &s2);
    ck_assert(f1 && f2 && s1 == s2 && memcmp(f1, f2, s1) == 0);
    ck_assert_uint_eq(s1, 44 + 56 + 8 * (1 + 2 * 7));
    ck_assert(memcmp(f1, "KDFREEM\0", 8) == 0 && f1[8] == 1);
    random_rows(&g, n, c, c, 2.0, probs);
    ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, c, NULL), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);

    /* failed loads: b keeps its state and parameters */
    kd_threshold *other = freematch(51, c), *flex = NULL;
    ck_assert_int_eq(kd_threshold_create(&flex, KD_THRESHOLD_FLEXMATCH, 50, c), KD_OK);
    ck_assert_int_eq(kd_threshold_save(other, in_dir("other.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_save(flex, in_dir("flex.state")), KD_OK);
    ck_assert_int_eq(kdt_write_file(in_dir("short.state"), f1, s1 - 5), 0);
    f1[44 + 56 + 3] ^= 0x10; /* a data byte: checksum mismatch */
    ck_assert_int_eq(kdt_write_file(in_dir("flip.state"), f1, s1), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("bad.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("bad.state"), 3, 1.25), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("nan.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("nan.state"), 0, NAN), 0);
    const kdt_failed_load fails[] = {
        {"other.state", KD_ERR_MISMATCH, "holds 51 samples x 7 classes, the handle has 50 x 7"},
        {"flex.state", KD_ERR_VERSION, ""},
        {"short.state", KD_ERR_CORRUPT, ""},
        {"flip.state", KD_ERR_CORRUPT, ""},
        {"bad.state", KD_ERR_CORRUPT, "state value 3 is 1.25"},
        {"nan.state", KD_ERR_CORRUPT, "state value 0 is nan"},
        {"missing.state", KD_ERR_IO, "missing.state"},
    };
    ck_assert_int_eq(kd_threshold_set_float(b, KD_THRESHOLD_PARAM_MOMENTUM, 0.3), KD_OK);
    kdt_failed_loads_change_nothing(b, c, fails, sizeof fails / sizeof fails[0], in_dir, snapshot,
                                    sa, sb, sizeof sa / sizeof sa[0], KD_THRESHOLD_PARAM_MOMENTUM,
                                    0.3);
    /* a FreeMatch file is not a FlexMatch one */
    ck_assert_int_eq(kd_threshold_load(flex, in_dir("fm.state")), KD_ERR_VERSION);
    free(f1);
    free(f2);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
    kd_threshold_destroy(other);
    kd_threshold_destroy(flex);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("freematch");
    TCase *t = tcase_create("reference");
    tcase_add_test(t, thresholds_and_masks_follow_usb_over_many_steps);
    tcase_add_test(t, the_clip_bounds_the_global_threshold);
    tcase_add_test(t, the_quantile_option_follows_torch_quantile);
    tcase_add_test(t, confidence_weights_equal_row_weights_and_the_confidence_update_is_refused);
    tcase_add_test(t, flexmatch_reduces_rows_to_max_and_lowest_argmax);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("errors");
    tcase_add_test(e, parameters_have_usb_defaults_bounds_and_clear_errors);
    tcase_add_test(e, bad_rows_are_refused_and_change_nothing);
    suite_add_tcase(s, e);
    TCase *f = tcase_create("statefile");
    tcase_add_checked_fixture(f, dir_setup, dir_teardown);
    tcase_add_test(f, the_state_survives_save_and_load_and_a_failed_load_changes_nothing);
    suite_add_tcase(s, f);
    return kdt_run_suite(s);
}
