#define _DEFAULT_SOURCE
/* DebiasPL (KD_THRESHOLD_DEBIASPL of kdlib/threshold.h) against a double
 * reference written from the authors' main_DebiasPL.py (initial_qhat,
 * causal_inference, update_qhat) on the logits, in its train() order:
 * pseudo-labels softmax(z - tau log qhat) and the mask max >= threshold
 * from the qhat so far, then qhat = m qhat + (1 - m) mean softmax(z).  The
 * handle sees softmax(z) in float32.  Several steps on imbalanced random
 * batches; parameters, refused calls, save/load. */
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

/* ---- the reference (the authors' functions, in double) -------------------- */

typedef struct {
    int64_t c;
    double m, tau, threshold;
    double qhat[MAXC];
} ref_dp;

static void ref_dp_init(ref_dp *r, int64_t c, double m, double tau, double threshold)
{
    r->c = c;
    r->m = m;
    r->tau = tau;
    r->threshold = threshold;
    for (int64_t j = 0; j < c; j++)
        r->qhat[j] = 1.0 / (double)c; /* initial_qhat */
}

/* causal_inference(): softmax(z - tau log qhat). */
static void ref_dp_debias(const ref_dp *r, const double *z, double *out)
{
    double mx = -1e300, s = 0.0;
    for (int64_t j = 0; j < r->c; j++) {
        out[j] = z[j] - r->tau * log(r->qhat[j]);
        mx = fmax(mx, out[j]);
    }
    for (int64_t j = 0; j < r->c; j++)
        s += out[j] = exp(out[j] - mx);
    for (int64_t j = 0; j < r->c; j++)
        out[j] /= s;
}

/* update_qhat() with softmax(z) of the batch (masked_qhat False). */
static void ref_dp_update(ref_dp *r, int64_t n, const double *z)
{
    double mean[MAXC] = {0};
    for (int64_t k = 0; k < n; k++) {
        double mx = -1e300, s = 0.0;
        for (int64_t j = 0; j < r->c; j++)
            mx = fmax(mx, z[k * r->c + j]);
        for (int64_t j = 0; j < r->c; j++)
            s += exp(z[k * r->c + j] - mx);
        for (int64_t j = 0; j < r->c; j++)
            mean[j] += exp(z[k * r->c + j] - mx) / s / (double)n;
    }
    for (int64_t j = 0; j < r->c; j++)
        r->qhat[j] = r->m * r->qhat[j] + (1.0 - r->m) * mean[j];
}

/* ---- helpers -------------------------------------------------------------- */

/* n rows of logits N(0, scale^2) plus a class bias (a long tail: class j
 * gets bias * (c - 1 - j) / c) and their float32 softmax (stride ld). */
static void random_rows(kdt_rng *g, int64_t n, int64_t c, int64_t ld, double scale, double bias,
                        double *z, float *out)
{
    double b[MAXC];
    for (int64_t j = 0; j < c; j++)
        b[j] = bias * (double)(c - 1 - j) / (double)c;
    kdt_softmax_rows(g, n, c, ld, scale, b, z, out);
}

static kd_threshold *debiaspl(int64_t n, int64_t c)
{
    kd_threshold *th = NULL;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_DEBIASPL, n, c), KD_OK);
    return th;
}

/* Every observable value of the state: p_hat (C) and the updates. */
static void snapshot(const kd_threshold *th, int64_t c, float *out)
{
    int64_t u;
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, c, out), KD_OK);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UPDATES, 1, &u), KD_OK);
    out[c] = (float)u;
}

typedef struct {
    int64_t kept, dropped, moved; /* masks 1 and 0; labels the debiasing changed */
} counts;

static counts run_reference(int64_t c, double m, double tau, double threshold, double scale,
                            double bias, int steps, uint64_t seed)
{
    const int64_t ld = c + 2;
    kd_threshold *th = debiaspl(100, c);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, m), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_DEBIAS_TAU, tau), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, threshold), KD_OK);
    ref_dp r;
    ref_dp_init(&r, c, m, tau, threshold);
    kdt_rng g;
    kdt_seed(&g, seed);
    double z[MAXB * MAXC];
    float probs[MAXB * (MAXC + 2)], w[MAXB], s[MAXC + 1];
    int32_t pl[MAXB];
    counts cnt = {0, 0, 0};
    for (int t = 0; t < steps; t++) {
        const int64_t n = 1 + (int64_t)(kdt_uniform(&g) * (MAXB - 1));
        random_rows(&g, n, c, ld, scale, bias, z, probs);
        /* the code's order: pseudo-labels and mask from qhat, then its update */
        ck_assert_int_eq(kd_threshold_weights_probs(th, n, c, probs, ld, w, pl), KD_OK);
        for (int64_t k = 0; k < n; k++) {
            double a[MAXC] = {0};
            ref_dp_debias(&r, z + k * c, a);
            int64_t arg = 0, raw = 0;
            for (int64_t j = 1; j < c; j++) {
                arg = a[j] > a[arg] ? j : arg;
                raw = z[k * c + j] > z[k * c + raw] ? j : raw;
            }
            double second = -1.0;
            for (int64_t j = 0; j < c; j++)
                if (j != arg)
                    second = fmax(second, a[j]);
            if (a[arg] - second > 1e-5) {
                ck_assert_msg(pl[k] == arg, "step %d row %lld: label %d, reference %lld", t,
                              (long long)k, (int)pl[k], (long long)arg);
                cnt.moved += arg != raw;
            }
            if (fabs(a[arg] - threshold) > 1e-5) {
                const float want = a[arg] >= threshold ? 1.0f : 0.0f;
                ck_assert_msg(w[k] == want, "step %d row %lld: weight %g, max %.9g", t,
                              (long long)k, w[k], a[arg]);
                cnt.kept += want == 1.0f;
                cnt.dropped += want == 0.0f;
            }
        }
        ck_assert_int_eq(kd_threshold_update_probs(th, n, c, probs, ld, NULL), KD_OK);
        ref_dp_update(&r, n, z);
        snapshot(th, c, s);
        for (int64_t j = 0; j < c; j++)
            ck_assert_msg(kdt_close(s[j], r.qhat[j], 1e-6, 1e-7), "p_hat[%lld] %.9g vs %.9g",
                          (long long)j, s[j], r.qhat[j]);
        ck_assert(s[c] == (float)(t + 1));
    }
    kd_threshold_destroy(th);
    return cnt;
}

START_TEST(masks_and_labels_follow_the_authors_code)
{
    const struct {
        int64_t c;
        double m, tau, threshold, scale, bias;
        uint64_t seed;
    } cases[] = {
        {10, 0.999, 0.4, 0.95, 3.0, 3.0, 1}, /* the paper's constants */
        {5, 0.9, 0.4, 0.7, 2.0, 4.0, 2},     /* faster EMA: labels move to the tail */
        {8, 0.8, 1.0, 0.8, 2.5, 5.0, 3},     /* the code's default tau */
        {3, 0.5, 2.0, 0.6, 1.5, 3.0, 4},     {2, 0.0, 0.4, 0.9, 2.0, 2.0, 5}, /* last batch only */
        {6, 0.9, 0.0, 0.8, 2.0, 3.0, 6},                                      /* tau 0: FixMatch */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        counts cnt = run_reference(cases[i].c, cases[i].m, cases[i].tau, cases[i].threshold,
                                   cases[i].scale, cases[i].bias, 40, cases[i].seed);
        ck_assert_msg(cnt.kept > 20 && cnt.dropped > 20, "case %zu: kept %lld, dropped %lld", i,
                      (long long)cnt.kept, (long long)cnt.dropped);
        if (cases[i].m < 0.99 && cases[i].tau > 0.0)
            ck_assert_msg(cnt.moved > 0, "case %zu: no label moved", i);
        if (cases[i].tau == 0.0)
            ck_assert(cnt.moved == 0);
    }
}
END_TEST

START_TEST(p_hat_starts_uniform_and_the_floor_keeps_the_adjustment_finite)
{
    kd_threshold *th = debiaspl(4, 2);
    float s[3], w[2];
    int32_t pl[2];
    snapshot(th, 2, s);
    ck_assert(s[0] == 0.5f && s[1] == 0.5f && s[2] == 0.0f);
    /* a uniform p_hat: the rows as given */
    const float rows[4] = {0.96f, 0.04f, 0.3f, 0.7f};
    ck_assert_int_eq(kd_threshold_weights_probs(th, 2, 2, rows, 2, w, pl), KD_OK);
    ck_assert(w[0] == 1.0f && w[1] == 0.0f && pl[0] == 0 && pl[1] == 1);
    /* momentum 0: p_hat = (1, 0); class 1 is boosted by (1e-12)^-0.4 = 6.3e4 */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, (float[]){1.0f, 0.0f}, 2, NULL), KD_OK);
    snapshot(th, 2, s);
    ck_assert(s[0] == 1.0f && s[1] == 0.0f && s[2] == 1.0f);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 2, 2, rows, 2, w, pl), KD_OK);
    ck_assert(w[0] == 1.0f && w[1] == 1.0f && pl[0] == 1 && pl[1] == 1);
    /* zero rows: 0 and class 0; threshold 0 keeps them */
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0, 0}, 2, w, pl), KD_OK);
    ck_assert(w[0] == 0.0f && pl[0] == 0);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0, 0}, 2, w, NULL), KD_OK);
    ck_assert(w[0] == 1.0f);
    /* tau 0 after the fact: the rows as given again */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_DEBIAS_TAU, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 2, 2, rows, 2, w, pl), KD_OK);
    ck_assert(pl[0] == 0 && pl[1] == 1);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- parameters and refused calls ----------------------------------------- */

START_TEST(parameters_have_the_papers_defaults_and_refused_calls_change_nothing)
{
    kd_threshold *th = debiaspl(10, 3);
    ck_assert_str_eq(kd_threshold_algorithm_name(KD_THRESHOLD_DEBIASPL), "debiaspl");
    const struct {
        kd_threshold_param key;
        double def, hi;
    } reals[] = {
        {KD_THRESHOLD_PARAM_THRESHOLD, 0.95, 1.0},
        {KD_THRESHOLD_PARAM_MOMENTUM, 0.999, 1.0},
        {KD_THRESHOLD_PARAM_DEBIAS_TAU, 0.4, 10.0},
    };
    double v, lo, hi;
    for (size_t k = 0; k < 3; k++) {
        ck_assert_int_eq(kd_threshold_get_float(th, reals[k].key, &v), KD_OK);
        ck_assert(v == reals[k].def);
        ck_assert_int_eq(kd_threshold_param_bounds(KD_THRESHOLD_DEBIASPL, reals[k].key, &lo, &hi),
                         KD_OK);
        ck_assert(lo == 0.0 && hi == reals[k].hi);
        ck_assert_int_eq(kd_threshold_set_float(th, reals[k].key, hi + 0.5),
                         KD_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(kd_threshold_set_float(th, reals[k].key, -0.1), KD_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(kd_threshold_set_float(th, reals[k].key, NAN), KD_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(kd_threshold_get_float(th, reals[k].key, &v), KD_OK);
        ck_assert(v == reals[k].def);
    }
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_DEBIAS_TAU, 11.0),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_DEBIAS_TAU"));
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, 1),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_INIT, 1.0),
                     KD_ERR_UNSUPPORTED);
    int64_t i;
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_PERIOD, &i), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_ALGORITHM, &i), KD_OK);
    ck_assert_int_eq(i, KD_THRESHOLD_DEBIASPL);
    kd_threshold *dash = NULL;
    ck_assert_int_eq(kd_threshold_create(&dash, KD_THRESHOLD_DASH, 10, 3), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(dash, KD_THRESHOLD_PARAM_DEBIAS_TAU, 1.0),
                     KD_ERR_UNSUPPORTED);
    kd_threshold_destroy(dash);

    float before[4], after[4], w[2] = {7, 7};
    snapshot(th, 3, before);
    const float conf[2] = {0.9f, 0.5f};
    const int32_t pred[2] = {0, 2};
    const int64_t idx[2] = {0, 1};
    ck_assert_int_eq(kd_threshold_update(th, 2, idx, conf, pred), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(
        strstr(kd_threshold_last_error(th),
               "debiaspl needs whole probability rows: use kd_threshold_update_probs"));
    ck_assert_int_eq(kd_threshold_weights(th, 2, conf, pred, w), KD_ERR_UNSUPPORTED);
    ck_assert(w[0] == 7 && w[1] == 7);
    const float bad[3] = {0.5f, NAN, 0.5f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, bad, 3, NULL), KD_ERR_NOT_FINITE);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, (float[]){0.5f, 1.5f, 0.5f}, 3, NULL),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, bad, 3, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, bad, 2, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, -1, 3, bad, 3, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, NULL, 3, NULL), KD_ERR_NULL_POINTER);
    float rows[3] = {0.2f, 0.3f, 0.5f};
    int32_t pl[2];
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, bad, 3, w, pl), KD_ERR_NOT_FINITE);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, rows, 3, NULL, pl), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, rows, 3, rows + 1, pl), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, rows, 3), KD_ERR_UNSUPPORTED);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_TARGET_PROBS, 3, w),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, 2, w),
                     KD_ERR_INVALID_ARGUMENT);
    /* reset: the initial state, parameters kept */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 0.5), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, rows, 3, NULL), KD_OK);
    snapshot(th, 3, after);
    ck_assert(after[2] != before[2] && after[3] == 1);
    ck_assert_int_eq(kd_threshold_reset(th), KD_OK);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.5);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- state file ----------------------------------------------------------- */

KDT_STATE_DIR("kd_debiaspl")

START_TEST(the_state_survives_save_and_load_and_a_failed_load_changes_nothing)
{
    const int64_t c = 5, n = 24;
    kd_threshold *a = debiaspl(40, c), *b = debiaspl(40, c);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_MOMENTUM, 0.75), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_THRESHOLD, 0.8), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_DEBIAS_TAU, 0.7), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 21);
    double z[24 * 5];
    float probs[24 * 5], sa[6], sb[6], wa[24], wb[24];
    int32_t la[24], lb[24];
    for (int t = 0; t < 5; t++) {
        random_rows(&g, n, c, c, 2.0, 4.0, z, probs);
        ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    }
    ck_assert_int_eq(kd_threshold_save(a, in_dir("dp.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_load(b, in_dir("dp.state")), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0 && sb[c] == 5);
    double v;
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.8);
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.75);
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_DEBIAS_TAU, &v), KD_OK);
    ck_assert(v == 0.7);
    /* the same weights and labels (the ratio is rebuilt), the same next step */
    random_rows(&g, n, c, c, 2.0, 4.0, z, probs);
    ck_assert_int_eq(kd_threshold_weights_probs(a, n, c, probs, c, wa, la), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, c, wb, lb), KD_OK);
    ck_assert(memcmp(wa, wb, sizeof wa) == 0 && memcmp(la, lb, sizeof la) == 0);
    ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, c, NULL), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    size_t s1;
    unsigned char *f1 = kdt_read_file(in_dir("dp.state"), &s1);
    ck_assert_ptr_nonnull(f1);
    ck_assert_uint_eq(s1, 44 + 48 + 8 * 5);
    ck_assert(memcmp(f1, "KDDEBPL\0", 8) == 0 && f1[8] == 1);

    kd_threshold *other = debiaspl(40, c + 1), *ds = NULL;
    ck_assert_int_eq(kd_threshold_create(&ds, KD_THRESHOLD_DASH, 40, c), KD_OK);
    ck_assert_int_eq(kd_threshold_save(other, in_dir("other.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_save(ds, in_dir("dash.state")), KD_OK);
    ck_assert_int_eq(kdt_write_file(in_dir("short.state"), f1, s1 - 1), 0);
    kdt_save_corrupted(a, in_dir("big.state"), 2, 1.5);
    kdt_save_corrupted(a, in_dir("nan.state"), 4, NAN);
    const kdt_failed_load fails[] = {
        {"other.state", KD_ERR_MISMATCH, "holds 40 samples x 6 classes, the handle has 40 x 5"},
        {"dash.state", KD_ERR_VERSION, ""},
        {"short.state", KD_ERR_CORRUPT, ""},
        {"big.state", KD_ERR_CORRUPT, "state value 2 is 1.5"},
        {"nan.state", KD_ERR_CORRUPT, "state value 4 is nan"},
        {"missing.state", KD_ERR_IO, "missing.state"},
    };
    ck_assert_int_eq(kd_threshold_set_float(b, KD_THRESHOLD_PARAM_DEBIAS_TAU, 0.25), KD_OK);
    snapshot(b, c, sb);
    kdt_failed_loads_change_nothing(b, c, fails, sizeof fails / sizeof fails[0], in_dir, snapshot,
                                    sb, sa, sizeof sb / sizeof sb[0], KD_THRESHOLD_PARAM_DEBIAS_TAU,
                                    0.25);
    ck_assert_int_eq(kd_threshold_load(ds, in_dir("dp.state")), KD_ERR_VERSION);
    free(f1);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
    kd_threshold_destroy(other);
    kd_threshold_destroy(ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("debiaspl");
    TCase *t = tcase_create("reference");
    tcase_add_test(t, masks_and_labels_follow_the_authors_code);
    tcase_add_test(t, p_hat_starts_uniform_and_the_floor_keeps_the_adjustment_finite);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("errors");
    tcase_add_test(e, parameters_have_the_papers_defaults_and_refused_calls_change_nothing);
    suite_add_tcase(s, e);
    TCase *f = tcase_create("statefile");
    tcase_add_checked_fixture(f, dir_setup, dir_teardown);
    tcase_add_test(f, the_state_survives_save_and_load_and_a_failed_load_changes_nothing);
    suite_add_tcase(s, f);
    return kdt_run_suite(s);
}
