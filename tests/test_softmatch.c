#define _DEFAULT_SOURCE
/* SoftMatch (KD_THRESHOLD_SOFTMATCH of kdlib/threshold.h) against a double
 * reference written from USB's DistAlignEMAHook (uniform target,
 * semilearn/algorithms/hooks/dist_align.py) and SoftMatchWeightingHook
 * (semilearn/algorithms/softmatch/utils.py), in SoftMatch.train_step's order:
 * align (updating p_model), update mu / var on the aligned rows, weights.
 * Several steps on random batches, global and per class, with and without
 * alignment; parameters, refused confidence calls, save/load. */
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
#define MAXB 64

/* ---- the reference (USB's hooks, in double) ------------------------------- */

typedef struct {
    int64_t c;
    double m, n_sigma;
    int per_class, align;
    int have_p_model; /* USB: p_model = None until the first batch */
    double p_model[MAXC];
    double mu, var, cmu[MAXC], cvar[MAXC];
} ref_sm;

static void ref_sm_init(ref_sm *r, int64_t c, double m, double n_sigma, int per_class, int align)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->m = m;
    r->n_sigma = n_sigma;
    r->per_class = per_class;
    r->align = align;
    r->mu = 1.0 / (double)c;
    r->var = 1.0;
    for (int64_t j = 0; j < c; j++) {
        r->cmu[j] = 1.0 / (double)c;
        r->cvar[j] = 1.0;
    }
}

/* dist_align(): update p_model, then probs * (p_target + 1e-6) / (p_model +
 * 1e-6), renormalised.  out: n x c dense. */
static void ref_sm_align(ref_sm *r, int update, int64_t n, const float *probs, int64_t ld,
                         double *out)
{
    const int64_t c = r->c;
    if (update && r->align) {
        double mean[MAXC] = {0};
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < c; j++)
                mean[j] += probs[k * ld + j] / (double)n;
        for (int64_t j = 0; j < c; j++)
            r->p_model[j] = r->have_p_model ? r->p_model[j] * r->m + mean[j] * (1 - r->m) : mean[j];
        r->have_p_model = 1;
    }
    for (int64_t k = 0; k < n; k++) {
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) {
            double ratio = 1.0;
            if (r->align && r->have_p_model)
                ratio = (1.0 / (double)c + 1e-6) / (r->p_model[j] + 1e-6);
            out[k * c + j] = probs[k * ld + j] * ratio;
            s += out[k * c + j];
        }
        for (int64_t j = 0; j < c; j++)
            out[k * c + j] /= s;
    }
}

static int64_t ref_argmax_d(const double *row, int64_t c)
{
    int64_t a = 0;
    for (int64_t j = 1; j < c; j++)
        if (row[j] > row[a])
            a = j;
    return a;
}

/* update(): mean and unbiased variance of the max probabilities, globally or
 * per class (classes with fewer than 2 samples: mean 0, variance 1). */
static void ref_sm_update(ref_sm *r, int64_t n, const double *a)
{
    const int64_t c = r->c;
    double maxp[MAXB];
    int64_t idx[MAXB];
    double mean = 0.0;
    for (int64_t k = 0; k < n; k++) {
        idx[k] = ref_argmax_d(a + k * c, c);
        maxp[k] = a[k * c + idx[k]];
        mean += maxp[k] / (double)n;
    }
    double var = 0.0;
    for (int64_t k = 0; k < n; k++)
        var += (maxp[k] - mean) * (maxp[k] - mean) / (double)(n - 1);
    r->mu = r->m * r->mu + (1 - r->m) * mean;
    if (n > 1) /* kdlib's deviation: USB's torch.var of one value is NaN */
        r->var = r->m * r->var + (1 - r->m) * var;
    for (int64_t i = 0; i < c; i++) {
        double cm = 0.0, cv = 1.0, cnt = 0.0, s = 0.0, q = 0.0;
        for (int64_t k = 0; k < n; k++)
            if (idx[k] == i) {
                cnt += 1.0;
                s += maxp[k];
            }
        if (cnt > 1.0) {
            cm = s / cnt;
            for (int64_t k = 0; k < n; k++)
                if (idx[k] == i)
                    q += (maxp[k] - cm) * (maxp[k] - cm);
            cv = q / (cnt - 1.0);
        }
        r->cmu[i] = r->m * r->cmu[i] + (1 - r->m) * cm;
        r->cvar[i] = r->m * r->cvar[i] + (1 - r->m) * cv;
    }
}

/* masking(): exp(-(clamp(max - mu, max=0) ** 2) / (2 * var / n_sigma ** 2)) */
static double ref_sm_weight(const ref_sm *r, const double *row)
{
    const int64_t i = ref_argmax_d(row, r->c);
    const double mu = r->per_class ? r->cmu[i] : r->mu;
    const double var = r->per_class ? r->cvar[i] : r->var;
    const double d = fmin(row[i] - mu, 0.0);
    return exp(-(d * d) / (2 * var / (r->n_sigma * r->n_sigma)));
}

/* ---- helpers -------------------------------------------------------------- */

/* n softmax rows with stride ld, logits N(0, scale^2) plus a bias per class
 * (a skewed p_model for the alignment to correct). */
static void random_rows(kdt_rng *g, int64_t n, int64_t c, int64_t ld, double scale, float *out)
{
    double bias[MAXC];
    for (int64_t j = 0; j < c; j++)
        bias[j] = 0.4 * (double)(j % 3);
    kdt_softmax_rows(g, n, c, ld, scale, bias, NULL, out);
}

static kd_threshold *softmatch(int64_t n, int64_t c)
{
    kd_threshold *th = NULL;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_SOFTMATCH, n, c), KD_OK);
    return th;
}

/* Every observable float of the state (2 + 3C values). */
static void snapshot(const kd_threshold *th, int64_t c, float *out)
{
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_MEAN, 1, out), KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_VAR, 1, out + 1), KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_CONF_MEAN, c, out + 2),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_CONF_VAR, c, out + 2 + c),
                     KD_OK);
    ck_assert_int_eq(
        kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, c, out + 2 + 2 * c), KD_OK);
}

static void check_state(const kd_threshold *th, const ref_sm *r)
{
    const int64_t c = r->c;
    float s[2 + 3 * MAXC];
    snapshot(th, c, s);
    ck_assert_msg(kdt_close(s[0], r->mu, 1e-6, 1e-7), "mu %.9g vs %.9g", s[0], r->mu);
    ck_assert_msg(kdt_close(s[1], r->var, 1e-6, 1e-7), "var %.9g vs %.9g", s[1], r->var);
    for (int64_t j = 0; j < c; j++) {
        ck_assert_msg(kdt_close(s[2 + j], r->cmu[j], 1e-6, 1e-7), "mu[%lld] %.9g vs %.9g",
                      (long long)j, s[2 + j], r->cmu[j]);
        ck_assert_msg(kdt_close(s[2 + c + j], r->cvar[j], 1e-6, 1e-7), "var[%lld] %.9g vs %.9g",
                      (long long)j, s[2 + c + j], r->cvar[j]);
        if (r->have_p_model)
            ck_assert_msg(kdt_close(s[2 + 2 * c + j], r->p_model[j], 1e-6, 1e-7),
                          "p_model[%lld] %.9g vs %.9g", (long long)j, s[2 + 2 * c + j],
                          r->p_model[j]);
    }
}

/* Weights of the batch against the reference (aligned with the current
 * p_model); pseudo-labels are the argmax of the rows as given.  Returns the
 * number of weights strictly inside (0, 1). */
static int64_t check_weights(const kd_threshold *th, ref_sm *r, int64_t n, const float *probs,
                             int64_t ld)
{
    float w[MAXB];
    int32_t pl[MAXB];
    double a[MAXB * MAXC];
    ck_assert_int_eq(kd_threshold_weights_probs(th, n, r->c, probs, ld, w, pl), KD_OK);
    ref_sm_align(r, 0, n, probs, ld, a);
    int64_t soft = 0;
    for (int64_t k = 0; k < n; k++) {
        const double want = ref_sm_weight(r, a + k * r->c);
        ck_assert_msg(kdt_close(w[k], want, 2e-5, 1e-6), "row %lld: weight %.9g, reference %.9g",
                      (long long)k, w[k], want);
        int64_t arg = 0;
        for (int64_t j = 1; j < r->c; j++)
            if (probs[k * ld + j] > probs[k * ld + arg])
                arg = j;
        ck_assert_int_eq(pl[k], arg);
        soft += want > 1e-3 && want < 1.0;
    }
    return soft;
}

/* ---- reference ------------------------------------------------------------ */

/* Returns the number of weights strictly inside (0, 1) after the updates. */
static int64_t run_reference(int64_t c, double m, double n_sigma, int per_class, int align,
                             double scale, int steps, uint64_t seed)
{
    const int64_t ld = c + 1;
    kd_threshold *th = softmatch(100, c);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, m), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_N_SIGMA, n_sigma), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_PER_CLASS, per_class), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, align), KD_OK);
    ref_sm r;
    ref_sm_init(&r, c, m, n_sigma, per_class, align);
    check_state(th, &r);
    kdt_rng g;
    kdt_seed(&g, seed);
    float probs[MAXB * (MAXC + 1)];
    double a[MAXB * MAXC];
    int64_t soft = 0;
    for (int t = 0; t < steps; t++) {
        const int64_t n = 2 + (int64_t)(kdt_uniform(&g) * (MAXB - 2));
        random_rows(&g, n, c, ld, scale, probs);
        check_weights(th, &r, n, probs, ld); /* before the update (kdlib's order) */
        ck_assert_int_eq(kd_threshold_update_probs(th, n, c, probs, ld, NULL), KD_OK);
        ref_sm_align(&r, 1, n, probs, ld, a);
        ref_sm_update(&r, n, a);
        check_state(th, &r);
        soft += check_weights(th, &r, n, probs, ld); /* after it (USB's) */
    }
    int64_t u;
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UPDATES, 1, &u), KD_OK);
    ck_assert_int_eq(u, steps);
    kd_threshold_destroy(th);
    return soft;
}

START_TEST(weights_follow_usb_with_uniform_alignment)
{
    /* USB's defaults: mu stays near 1/C <= every max early on, weights 1 */
    run_reference(10, 0.999, 2.0, 0, 1, 2.0, 40, 1);
    /* faster EMAs: the Gaussian part is exercised */
    ck_assert_int_gt(run_reference(5, 0.8, 2.0, 0, 1, 1.5, 40, 2), 100);
    ck_assert_int_gt(run_reference(4, 0.9, 3.0, 0, 1, 3.0, 30, 3), 100);
}
END_TEST

START_TEST(per_class_weights_follow_usb)
{
    ck_assert_int_gt(run_reference(6, 0.9, 2.0, 1, 1, 2.0, 40, 4), 100);
    ck_assert_int_gt(run_reference(3, 0.7, 1.0, 1, 1, 1.0, 30, 5), 100);
    run_reference(12, 0.999, 2.0, 1, 1, 2.5, 20, 6); /* classes absent from batches */
}
END_TEST

START_TEST(without_alignment_rows_and_confidences_agree)
{
    ck_assert_int_gt(run_reference(5, 0.85, 2.0, 0, 0, 2.0, 30, 7), 100);
    ck_assert_int_gt(run_reference(5, 0.85, 2.0, 1, 0, 2.0, 30, 8), 100);
    /* with DIST_ALIGN = 0 the confidence entry points give the same state
     * and weights as the rows reduced to max / argmax */
    const int64_t c = 4, n = 20;
    kd_threshold *a = softmatch(30, c), *b = softmatch(30, c);
    for (int i = 0; i < 2; i++) {
        kd_threshold *h = i ? b : a;
        ck_assert_int_eq(kd_threshold_set_int(h, KD_THRESHOLD_PARAM_DIST_ALIGN, 0), KD_OK);
        ck_assert_int_eq(kd_threshold_set_int(h, KD_THRESHOLD_PARAM_PER_CLASS, 1), KD_OK);
        ck_assert_int_eq(kd_threshold_set_float(h, KD_THRESHOLD_PARAM_MOMENTUM, 0.6), KD_OK);
    }
    kdt_rng g;
    kdt_seed(&g, 12);
    float probs[20 * 4], conf[20], w1[20], w2[20];
    int32_t pred[20];
    int64_t idx[20];
    for (int t = 0; t < 4; t++) {
        random_rows(&g, n, c, c, 2.0, probs);
        for (int64_t k = 0; k < n; k++) {
            pred[k] = 0;
            for (int32_t j = 1; j < c; j++)
                if (probs[k * c + j] > probs[k * c + pred[k]])
                    pred[k] = j;
            conf[k] = probs[k * c + pred[k]];
            idx[k] = k;
        }
        ck_assert_int_eq(kd_threshold_update(a, n, idx, conf, pred), KD_OK);
        ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, c, NULL), KD_OK);
        ck_assert_int_eq(kd_threshold_weights(a, n, conf, pred, w1), KD_OK);
        ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, c, w2, NULL), KD_OK);
        ck_assert(memcmp(w1, w2, sizeof w1) == 0);
    }
    float sa[2 + 3 * 4], sb[2 + 3 * 4];
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
}
END_TEST

START_TEST(edge_cases_of_the_gaussian)
{
    kd_threshold *th = softmatch(4, 2);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, 0), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.0), KD_OK);
    float w[3];
    /* one row: the mean moves, the variance (undefined for one value) stays 1 */
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, (float[]){0.3f, 0.7f}, 2, NULL), KD_OK);
    float v[2];
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_MEAN, 1, v), KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_VAR, 1, v + 1), KD_OK);
    ck_assert(v[0] == 0.7f && v[1] == 1.0f);
    /* two equal rows: variance 0, weights 1 at or above mu and 0 below it */
    const float rows[4] = {0.2f, 0.8f, 0.2f, 0.8f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, 2, rows, 2, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_VAR, 1, v + 1), KD_OK);
    ck_assert(v[1] == 0.0f);
    ck_assert_int_eq(
        kd_threshold_weights(th, 3, (float[]){0.8f, 0.9f, 0.7f}, (int32_t[]){1, 1, 0}, w), KD_OK);
    ck_assert(w[0] == 1.0f && w[1] == 1.0f && w[2] == 0.0f);
    /* updates without alignment leave p_model at 1/C */
    float pm[2];
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, 2, pm), KD_OK);
    ck_assert(pm[0] == 0.5f && pm[1] == 0.5f);
    /* rows of zeros with alignment: confidence 0 */
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, 1), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 2, 2, (float[]){0, 0, 0, 0}, 2, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_MEAN, 1, v), KD_OK);
    ck_assert(v[0] == 0.0f);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- parameters and refused calls ----------------------------------------- */

START_TEST(parameters_have_usb_defaults_and_confidence_calls_need_no_alignment)
{
    kd_threshold *th = softmatch(10, 3);
    ck_assert_str_eq(kd_threshold_algorithm_name(KD_THRESHOLD_SOFTMATCH), "softmatch");
    double v, lo, hi;
    int64_t i;
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.999);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_N_SIGMA, &v), KD_OK);
    ck_assert(v == 2.0);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_PER_CLASS, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, &i), KD_OK);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_SOFTMATCH, KD_THRESHOLD_PARAM_N_SIGMA, &lo, &hi),
        KD_OK);
    ck_assert(lo == 0.001 && hi == 1000.0);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_SOFTMATCH, KD_THRESHOLD_PARAM_CLIP, &lo, &hi),
        KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_N_SIGMA, 0.0),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_N_SIGMA"));
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_N_SIGMA, INFINITY),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, -0.5),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_PER_CLASS, 2),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, -1),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_CLIP, 0.5), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_WARMUP, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_N_SIGMA, &v), KD_OK);
    ck_assert(v == 2.0);

    /* with alignment (the default) the confidence calls are refused */
    const float conf[2] = {0.9f, 0.5f};
    const int32_t pred[2] = {0, 2};
    const int64_t idx[2] = {0, 1};
    float w[2] = {7, 7}, before[2 + 9], after[2 + 9];
    snapshot(th, 3, before);
    ck_assert_int_eq(kd_threshold_update(th, 2, idx, conf, pred), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th),
                                 "kd_threshold_update: softmatch with DIST_ALIGN = 1 aligns "
                                 "whole probability rows: use kd_threshold_update_probs"));
    ck_assert_int_eq(kd_threshold_weights(th, 2, conf, pred, w), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "use kd_threshold_weights_probs"));
    ck_assert(w[0] == 7 && w[1] == 7);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, 0), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_update(th, 2, idx, conf, pred), KD_OK); /* mu 0.7, var 0.08 */
    ck_assert_int_eq(kd_threshold_weights(th, 2, conf, pred, w), KD_OK);
    ck_assert(w[0] == 1.0f);
    ck_assert_msg(kdt_close(w[1], exp(-1.0), 1e-6, 0), "w %.9g", w[1]); /* exp(-0.04 / 0.04) */

    /* bad rows: refused, nothing changes (the shared checks) */
    snapshot(th, 3, before);
    const float bad[3] = {0.5f, NAN, 0.5f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, bad, 3, NULL), KD_ERR_NOT_FINITE);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, bad, 3, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, (float[]){0.5f, 1.01f, 0}, 3, NULL),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, bad, 3, (int64_t[]){10}),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, bad, 3, w, NULL), KD_ERR_NOT_FINITE);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);

    /* reset: the initial state, parameters kept */
    ck_assert_int_eq(kd_threshold_reset(th), KD_OK);
    snapshot(th, 3, after);
    ck_assert(after[0] == (float)(1.0 / 3) && after[1] == 1.0f && after[2 + 3] == 1.0f);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- state file ----------------------------------------------------------- */

KDT_STATE_DIR("kd_softmatch")

START_TEST(the_state_survives_save_and_load_and_a_failed_load_changes_nothing)
{
    const int64_t c = 5, n = 24;
    kd_threshold *a = softmatch(40, c), *b = softmatch(40, c);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_MOMENTUM, 0.75), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_N_SIGMA, 3.5), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(a, KD_THRESHOLD_PARAM_PER_CLASS, 1), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 21);
    float probs[24 * 5], sa[2 + 15], sb[2 + 15], wa[24], wb[24];
    for (int t = 0; t < 5; t++) {
        random_rows(&g, n, c, c, 2.0, probs);
        ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    }
    ck_assert_int_eq(kd_threshold_save(a, in_dir("sm.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_load(b, in_dir("sm.state")), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    double v;
    int64_t i;
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_N_SIGMA, &v), KD_OK);
    ck_assert(v == 3.5);
    ck_assert_int_eq(kd_threshold_get_int(b, KD_THRESHOLD_PARAM_PER_CLASS, &i), KD_OK);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(kd_threshold_get_ints(b, KD_THRESHOLD_STATE_UPDATES, 1, &i), KD_OK);
    ck_assert_int_eq(i, 5);
    /* the same weights (the alignment ratio is rebuilt) and the same next step */
    random_rows(&g, n, c, c, 2.0, probs);
    ck_assert_int_eq(kd_threshold_weights_probs(a, n, c, probs, c, wa, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, c, wb, NULL), KD_OK);
    ck_assert(memcmp(wa, wb, sizeof wa) == 0);
    ck_assert_int_eq(kd_threshold_save(b, in_dir("sm2.state")), KD_OK);
    size_t s1, s2;
    unsigned char *f1 = kdt_read_file(in_dir("sm.state"), &s1);
    unsigned char *f2 = kdt_read_file(in_dir("sm2.state"), &s2);
    ck_assert(f1 && f2 && s1 == s2 && memcmp(f1, f2, s1) == 0);
    ck_assert_uint_eq(s1, 44 + 56 + 8 * (2 + 3 * 5));
    ck_assert(memcmp(f1, "KDSOFTM\0", 8) == 0 && f1[8] == 1);
    ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, c, NULL), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    /* a fresh handle: p_model is set from the first batch, not averaged */
    kd_threshold *fresh = softmatch(40, c);
    ck_assert_int_eq(kd_threshold_load(fresh, in_dir("sm.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(fresh, n, c, probs, c, NULL), KD_OK);
    float sf[2 + 15];
    snapshot(fresh, c, sf);
    ck_assert(memcmp(sa, sf, sizeof sa) == 0);

    kd_threshold *other = softmatch(40, c + 1), *fm = NULL;
    ck_assert_int_eq(kd_threshold_create(&fm, KD_THRESHOLD_FREEMATCH, 40, c), KD_OK);
    ck_assert_int_eq(kd_threshold_save(other, in_dir("other.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_save(fm, in_dir("fm.state")), KD_OK);
    ck_assert_int_eq(kdt_write_file(in_dir("short.state"), f1, s1 - 1), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("negvar.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("negvar.state"), 1, -0.5), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("pmodel.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("pmodel.state"), 2 + 2 * 5 + 1, 2.0), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("inf.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("inf.state"), 3, INFINITY), 0);
    const kdt_failed_load fails[] = {
        {"other.state", KD_ERR_MISMATCH, "holds 40 samples x 6 classes, the handle has 40 x 5"},
        {"fm.state", KD_ERR_VERSION, ""},
        {"short.state", KD_ERR_CORRUPT, ""},
        {"negvar.state", KD_ERR_CORRUPT, "state value 1 is -0.5"},
        {"pmodel.state", KD_ERR_CORRUPT, "state value 13 is 2"},
        {"inf.state", KD_ERR_CORRUPT, "state value 3 is inf"},
    };
    ck_assert_int_eq(kd_threshold_set_float(b, KD_THRESHOLD_PARAM_N_SIGMA, 1.5), KD_OK);
    kdt_failed_loads_change_nothing(b, c, fails, sizeof fails / sizeof fails[0], in_dir, snapshot,
                                    sa, sb, sizeof sa / sizeof sa[0], KD_THRESHOLD_PARAM_N_SIGMA,
                                    1.5);
    ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, c, wb, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_load(fm, in_dir("sm.state")), KD_ERR_VERSION);
    free(f1);
    free(f2);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
    kd_threshold_destroy(fresh);
    kd_threshold_destroy(other);
    kd_threshold_destroy(fm);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("softmatch");
    TCase *t = tcase_create("reference");
    tcase_add_test(t, weights_follow_usb_with_uniform_alignment);
    tcase_add_test(t, per_class_weights_follow_usb);
    tcase_add_test(t, without_alignment_rows_and_confidences_agree);
    tcase_add_test(t, edge_cases_of_the_gaussian);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("errors");
    tcase_add_test(e, parameters_have_usb_defaults_and_confidence_calls_need_no_alignment);
    suite_add_tcase(s, e);
    TCase *f = tcase_create("statefile");
    tcase_add_checked_fixture(f, dir_setup, dir_teardown);
    tcase_add_test(f, the_state_survives_save_and_load_and_a_failed_load_changes_nothing);
    suite_add_tcase(s, f);
    return kdt_run_suite(s);
}
