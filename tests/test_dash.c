#define _DEFAULT_SOURCE
/* Dash (KD_THRESHOLD_DASH of kdlib/threshold.h) against a double reference
 * written from USB's DashThresholdingHook (semilearn/algorithms/dash/utils.py)
 * on the logits: every masking() first runs update() (rho recomputed when
 * it % period == 0, use_hard_label = rho == rho_min), then the mask
 * ce_loss(logits, pseudo_label) <= rho with the pseudo-label softmax(z / T)
 * or argmax(z).  The handle sees softmax(z) in float32, as a caller would
 * pass it.  Several schedules through the soft and the hard phase;
 * parameters, refused calls, save/load. */
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

/* ---- the reference (USB's hook, in double) -------------------------------- */

typedef struct {
    double rho_init, gamma, c, rho_min, t;
    int64_t period;
    int64_t it, cnt; /* algorithm.it, rho_update_cnt */
    double rho;
    int hard;
} ref_dash;

static void ref_dash_update(ref_dash *r)
{
    if (r->it % r->period == 0) {
        r->rho = r->c * pow(r->gamma, -(double)r->cnt) * r->rho_init;
        r->rho = fmax(r->rho, r->rho_min);
        r->cnt++;
    }
    r->hard = r->rho == r->rho_min;
}

/* ce_loss(logits, pseudo_label) of one row of logits z. */
static double ref_dash_loss(const ref_dash *r, const double *z, int64_t c)
{
    double mx = -1e300, s = 0.0, st = 0.0, logq[MAXC] = {0};
    for (int64_t j = 0; j < c; j++)
        mx = fmax(mx, z[j]);
    for (int64_t j = 0; j < c; j++) {
        s += exp(z[j] - mx);
        st += exp((z[j] - mx) / r->t);
    }
    int64_t arg = 0;
    for (int64_t j = 0; j < c; j++) {
        logq[j] = z[j] - mx - log(s);
        arg = z[j] > z[arg] ? j : arg;
    }
    if (r->hard)
        return -logq[arg];
    double loss = 0.0;
    for (int64_t j = 0; j < c; j++)
        loss -= exp((z[j] - mx) / r->t) / st * logq[j];
    return loss;
}

/* ---- helpers -------------------------------------------------------------- */

/* n rows of logits N(0, scale^2) and their float32 softmax (stride ld). */
static void random_rows(kdt_rng *g, int64_t n, int64_t c, int64_t ld, double scale, double *z,
                        float *out)
{
    double bias[MAXC];
    for (int64_t j = 0; j < c; j++)
        bias[j] = 0.5 * (double)(j % 3);
    kdt_softmax_rows(g, n, c, ld, scale, bias, z, out);
}

static kd_threshold *dash(int64_t n, int64_t c)
{
    kd_threshold *th = NULL;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_DASH, n, c), KD_OK);
    return th;
}

/* Every observable value of the state: rho, updates, k, hard (as floats). */
static void snapshot(const kd_threshold *th, int64_t c, float *out)
{
    (void)c;
    int64_t v[3];
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_RHO, 1, out), KD_OK);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UPDATES, 1, v), KD_OK);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_RHO_UPDATES, 1, v + 1), KD_OK);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_HARD_LABEL, 1, v + 2), KD_OK);
    for (int i = 0; i < 3; i++)
        out[1 + i] = (float)v[i];
}

static void set_params(kd_threshold *th, const ref_dash *r)
{
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_INIT, r->rho_init), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_GAMMA, r->gamma), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_DASH_C, r->c), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_MIN, r->rho_min), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_TEMPERATURE, r->t), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_PERIOD, r->period), KD_OK);
}

typedef struct {
    int64_t kept, dropped, soft_steps, hard_steps;
} counts;

/* steps of masking(): update, then the mask of a random batch. */
static counts run_reference(ref_dash r, int64_t c, double scale, int steps, uint64_t seed)
{
    const int64_t ld = c + 1;
    kd_threshold *th = dash(100, c);
    set_params(th, &r);
    kdt_rng g;
    kdt_seed(&g, seed);
    double z[MAXB * MAXC];
    float probs[MAXB * (MAXC + 1)], w[MAXB], s[4];
    int32_t pl[MAXB];
    counts cnt = {0, 0, 0, 0};
    for (int t = 0; t < steps; t++) {
        const int64_t n = 1 + (int64_t)(kdt_uniform(&g) * (MAXB - 1));
        random_rows(&g, n, c, ld, scale, z, probs);
        ck_assert_int_eq(kd_threshold_update_probs(th, n, c, probs, ld, NULL), KD_OK);
        ref_dash_update(&r);
        r.it++;
        snapshot(th, c, s);
        ck_assert_msg(kdt_close(s[0], r.rho, 1e-7, 0), "step %d: rho %.9g vs %.9g", t, s[0], r.rho);
        ck_assert(s[1] == (float)r.it && s[2] == (float)r.cnt && s[3] == (float)r.hard);
        ck_assert_int_eq(kd_threshold_weights_probs(th, n, c, probs, ld, w, pl), KD_OK);
        cnt.soft_steps += !r.hard;
        cnt.hard_steps += r.hard;
        for (int64_t k = 0; k < n; k++) {
            const double loss = ref_dash_loss(&r, z + k * c, c);
            int32_t arg = 0;
            for (int32_t j = 1; j < c; j++)
                arg = probs[k * ld + j] > probs[k * ld + arg] ? j : arg;
            ck_assert_int_eq(pl[k], arg);
            if (fabs(loss - r.rho) <= 1e-5 * (1.0 + r.rho))
                continue; /* float32 rows: too close to call */
            const float want = loss <= r.rho ? 1.0f : 0.0f;
            ck_assert_msg(w[k] == want, "step %d row %lld: weight %g, loss %.9g, rho %.9g", t,
                          (long long)k, w[k], loss, r.rho);
            cnt.kept += want == 1.0f;
            cnt.dropped += want == 0.0f;
        }
    }
    kd_threshold_destroy(th);
    return cnt;
}

START_TEST(masks_follow_usb_through_the_soft_and_the_hard_phase)
{
    const struct {
        int64_t c;
        double rho_init, gamma, cc, rho_min, t, scale;
        int64_t period;
        uint64_t seed;
    } cases[] = {
        {10, 1.2, 1.27, 1.0001, 0.05, 0.5, 3.0, 4, 1}, /* USB's constants, a short period */
        {5, 0.9, 1.5, 1.0, 0.2, 0.5, 2.5, 3, 2},
        {3, 0.6, 2.0, 1.2, 0.1, 0.25, 2.0, 2, 3}, /* sharper soft labels */
        {12, 2.0, 1.27, 1.0001, 0.3, 1.0, 4.0, 5, 4},
        {2, 0.4, 1.1, 1.0, 0.05, 2.0, 1.5, 1, 5}, /* recomputed at every update */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ref_dash r = {cases[i].rho_init,
                      cases[i].gamma,
                      cases[i].cc,
                      cases[i].rho_min,
                      cases[i].t,
                      cases[i].period,
                      0,
                      0,
                      0.0,
                      0};
        counts cnt = run_reference(r, cases[i].c, cases[i].scale, 60, cases[i].seed);
        ck_assert_msg(cnt.kept > 20 && cnt.dropped > 20, "case %zu: kept %lld, dropped %lld", i,
                      (long long)cnt.kept, (long long)cnt.dropped);
        ck_assert_msg(cnt.soft_steps > 0 && cnt.hard_steps > 0, "case %zu: soft %lld, hard %lld", i,
                      (long long)cnt.soft_steps, (long long)cnt.hard_steps);
    }
}
END_TEST

START_TEST(before_the_first_update_rho_is_the_first_value)
{
    kd_threshold *th = dash(4, 2);
    float s[4], w[3];
    int32_t pl[3];
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_INIT, 0.5), KD_OK);
    snapshot(th, 2, s);
    ck_assert(s[0] == (float)(1.0001 * 0.5) && s[1] == 0 && s[2] == 0 && s[3] == 0);
    /* soft labels, T = 0.5: row (0.9, 0.1): p = (0.81, 0.01) / 0.82 */
    const float rows[6] = {0.9f, 0.1f, 0.6f, 0.4f, 0.0f, 1.0f};
    ck_assert_int_eq(kd_threshold_weights_probs(th, 3, 2, rows, 2, w, pl), KD_OK);
    const double l0 = -(0.81 * log(0.9f) + 0.01 * log(0.1f)) / 0.82;     /* 0.1306 */
    ck_assert(l0 < 0.5 && w[0] == 1.0f && w[1] == 0.0f && w[2] == 1.0f); /* (0, 1): loss 0 */
    ck_assert(pl[0] == 0 && pl[1] == 0 && pl[2] == 1);
    /* rho_init below rho_min: hard labels from the start */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_MIN, 0.6), KD_OK);
    snapshot(th, 2, s);
    ck_assert(s[0] == 0.6f && s[3] == 1);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 3, 2, rows, 2, w, NULL), KD_OK);
    ck_assert(w[0] == 1.0f && w[1] == 1.0f && w[2] == 1.0f); /* -log 0.6 = 0.51 <= 0.6 */
    /* a zero row: an infinite loss in either mode */
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0, 0}, 2, w, NULL), KD_OK);
    ck_assert(w[0] == 0.0f);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_MIN, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0, 0}, 2, w, NULL), KD_OK);
    ck_assert(w[0] == 0.0f);
    /* the confidence update steps the schedule too; an empty batch does not */
    ck_assert_int_eq(kd_threshold_update(th, 0, NULL, NULL, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 0, 2, NULL, 2, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_update(th, 1, (int64_t[]){3}, (float[]){0.5f}, (int32_t[]){1}),
                     KD_OK);
    snapshot(th, 2, s);
    ck_assert(s[0] == (float)(1.0001 * 0.5) && s[1] == 1 && s[2] == 1 && s[3] == 0);
    /* parameters set later act at the next recomputation (PERIOD 10240) */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_RHO_INIT, 3.0), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, rows, 2, NULL), KD_OK);
    snapshot(th, 2, s);
    ck_assert(s[0] == (float)(1.0001 * 0.5) && s[1] == 2 && s[2] == 1);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- parameters and refused calls ----------------------------------------- */

START_TEST(parameters_have_usb_defaults_and_refused_calls_change_nothing)
{
    kd_threshold *th = dash(10, 3);
    ck_assert_str_eq(kd_threshold_algorithm_name(KD_THRESHOLD_DASH), "dash");
    const struct {
        kd_threshold_param key;
        double def, lo, hi;
    } reals[] = {
        {KD_THRESHOLD_PARAM_RHO_INIT, log(3.0), 0.0, 1000.0},
        {KD_THRESHOLD_PARAM_GAMMA, 1.27, 1.0, 1000.0},
        {KD_THRESHOLD_PARAM_DASH_C, 1.0001, 0.0, 1000.0},
        {KD_THRESHOLD_PARAM_RHO_MIN, 0.05, 0.0, 1000.0},
        {KD_THRESHOLD_PARAM_TEMPERATURE, 0.5, 0.01, 100.0},
    };
    double v, lo, hi;
    int64_t i;
    for (size_t k = 0; k < sizeof reals / sizeof reals[0]; k++) {
        ck_assert_int_eq(kd_threshold_get_float(th, reals[k].key, &v), KD_OK);
        ck_assert(v == reals[k].def);
        ck_assert_int_eq(kd_threshold_param_bounds(KD_THRESHOLD_DASH, reals[k].key, &lo, &hi),
                         KD_OK);
        ck_assert(lo == reals[k].lo && hi == reals[k].hi);
        ck_assert_int_eq(kd_threshold_set_float(th, reals[k].key, hi * 1.5 + 1.0),
                         KD_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(kd_threshold_set_float(th, reals[k].key, NAN), KD_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(kd_threshold_get_float(th, reals[k].key, &v), KD_OK);
        ck_assert(v == reals[k].def);
    }
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_GAMMA, 0.9),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_GAMMA"));
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_PERIOD, &i), KD_OK);
    ck_assert_int_eq(i, 10240);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_DASH, KD_THRESHOLD_PARAM_PERIOD, &lo, &hi), KD_OK);
    ck_assert(lo == 1.0 && hi == 1099511627776.0);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_PERIOD, 0),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_PERIOD"));
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_PERIOD, 5.0),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 0.5),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_DASH, KD_THRESHOLD_PARAM_MOMENTUM, &lo, &hi),
        KD_ERR_UNSUPPORTED);
    /* the keys are Dash's own */
    kd_threshold *fm = NULL;
    ck_assert_int_eq(kd_threshold_create(&fm, KD_THRESHOLD_FLEXMATCH, 10, 3), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(fm, KD_THRESHOLD_PARAM_RHO_INIT, 1.0),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_floats(fm, KD_THRESHOLD_STATE_RHO, 1, (float[1]){0}),
                     KD_ERR_UNSUPPORTED);
    kd_threshold_destroy(fm);

    float before[4], after[4], w[2] = {7, 7};
    snapshot(th, 3, before);
    /* the soft label's loss needs the row: no confidence weights */
    const float conf[2] = {0.9f, 0.5f};
    const int32_t pred[2] = {0, 2};
    ck_assert_int_eq(kd_threshold_weights(th, 2, conf, pred, w), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(
        strstr(kd_threshold_last_error(th),
               "dash needs whole probability rows: use kd_threshold_weights_probs"));
    ck_assert(w[0] == 7 && w[1] == 7);
    /* bad batches: the shared checks, nothing changes */
    const float bad[3] = {0.5f, NAN, 0.5f};
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, bad, 3, NULL), KD_ERR_NOT_FINITE);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 2, bad, 3, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, bad, 2, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, -1, 3, bad, 3, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, NULL, 3, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(
        kd_threshold_update_probs(th, 1, 3, (float[]){0.5f, 0.5f, 0.5f}, 3, (int64_t[]){10}),
        KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update(th, 1, (int64_t[]){0}, (float[]){NAN}, (int32_t[]){0}),
                     KD_ERR_NOT_FINITE);
    ck_assert_int_eq(kd_threshold_update(th, 1, (int64_t[]){0}, (float[]){0.5f}, (int32_t[]){3}),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, bad, 3, w, NULL), KD_ERR_NOT_FINITE);
    float rows[3] = {0.2f, 0.3f, 0.5f};
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, rows, 3, NULL, NULL),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 3, rows, 3, rows, NULL), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, rows, 3), KD_ERR_UNSUPPORTED);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    /* state arrays of other algorithms are refused, short buffers too */
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, 3, w),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_RHO, 2, w),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_RHO, 1, &i), KD_ERR_UNSUPPORTED);

    /* reset: the initial state, parameters kept */
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_PERIOD, 1), KD_OK);
    for (int t = 0; t < 3; t++)
        ck_assert_int_eq(kd_threshold_update_probs(th, 1, 3, rows, 3, NULL), KD_OK);
    snapshot(th, 3, after);
    ck_assert(after[1] == 3 && after[2] == 3);
    ck_assert_int_eq(kd_threshold_reset(th), KD_OK);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_PERIOD, &i), KD_OK);
    ck_assert_int_eq(i, 1);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- state file ----------------------------------------------------------- */

KDT_STATE_DIR("kd_dash")

START_TEST(the_state_survives_save_and_load_and_a_failed_load_changes_nothing)
{
    const int64_t c = 4, n = 16;
    kd_threshold *a = dash(40, c), *b = dash(40, c);
    ref_dash r = {1.5, 1.3, 1.0001, 0.4, 0.7, 3, 0, 0, 0.0, 0};
    set_params(a, &r);
    kdt_rng g;
    kdt_seed(&g, 21);
    double z[16 * 4];
    float probs[16 * 4], sa[4], sb[4], wa[16], wb[16];
    for (int t = 0; t < 7; t++) {
        random_rows(&g, n, c, c, 2.0, z, probs);
        ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    }
    ck_assert_int_eq(kd_threshold_save(a, in_dir("dash.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_load(b, in_dir("dash.state")), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    ck_assert(sa[1] == 7 && sa[2] == 3);
    const kd_threshold_param keys[] = {KD_THRESHOLD_PARAM_RHO_INIT, KD_THRESHOLD_PARAM_GAMMA,
                                       KD_THRESHOLD_PARAM_DASH_C, KD_THRESHOLD_PARAM_RHO_MIN,
                                       KD_THRESHOLD_PARAM_TEMPERATURE};
    for (size_t k = 0; k < 5; k++) {
        double va, vb;
        ck_assert_int_eq(kd_threshold_get_float(a, keys[k], &va), KD_OK);
        ck_assert_int_eq(kd_threshold_get_float(b, keys[k], &vb), KD_OK);
        ck_assert(va == vb);
    }
    int64_t p;
    ck_assert_int_eq(kd_threshold_get_int(b, KD_THRESHOLD_PARAM_PERIOD, &p), KD_OK);
    ck_assert_int_eq(p, 3);
    /* the same weights, the same schedule afterwards */
    for (int t = 0; t < 4; t++) {
        random_rows(&g, n, c, c, 2.0, z, probs);
        ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
        ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, c, NULL), KD_OK);
        ck_assert_int_eq(kd_threshold_weights_probs(a, n, c, probs, c, wa, NULL), KD_OK);
        ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, c, wb, NULL), KD_OK);
        ck_assert(memcmp(wa, wb, sizeof wa) == 0);
        snapshot(a, c, sa);
        snapshot(b, c, sb);
        ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    }
    size_t s1;
    unsigned char *f1 = kdt_read_file(in_dir("dash.state"), &s1);
    ck_assert_ptr_nonnull(f1);
    ck_assert_uint_eq(s1, 44 + 88 + 8);
    ck_assert(memcmp(f1, "KDDASHT\0", 8) == 0 && f1[8] == 1);

    kd_threshold *other = dash(41, c), *am = NULL;
    ck_assert_int_eq(kd_threshold_create(&am, KD_THRESHOLD_ADAMATCH, 40, c), KD_OK);
    ck_assert_int_eq(kd_threshold_save(other, in_dir("other.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_save(am, in_dir("am.state")), KD_OK);
    ck_assert_int_eq(kdt_write_file(in_dir("short.state"), f1, s1 - 1), 0);
    kdt_save_corrupted(a, in_dir("neg.state"), 0, -0.5);
    kdt_save_corrupted(a, in_dir("nan.state"), 0, NAN);
    kdt_save_corrupted(a, in_dir("inf.state"), 0, INFINITY);
    const kdt_failed_load fails[] = {
        {"other.state", KD_ERR_MISMATCH, "holds 41 samples x 4 classes, the handle has 40 x 4"},
        {"am.state", KD_ERR_VERSION, ""},
        {"short.state", KD_ERR_CORRUPT, ""},
        {"neg.state", KD_ERR_CORRUPT, "state value 0 is -0.5"},
        {"nan.state", KD_ERR_CORRUPT, "state value 0 is nan"},
        {"inf.state", KD_ERR_CORRUPT, "state value 0 is inf"},
        {"missing.state", KD_ERR_IO, "missing.state"},
    };
    ck_assert_int_eq(kd_threshold_set_float(b, KD_THRESHOLD_PARAM_RHO_INIT, 0.75), KD_OK);
    snapshot(b, c, sb);
    kdt_failed_loads_change_nothing(b, c, fails, sizeof fails / sizeof fails[0], in_dir, snapshot,
                                    sb, sa, sizeof sb / sizeof sb[0], KD_THRESHOLD_PARAM_RHO_INIT,
                                    0.75);
    ck_assert_int_eq(kd_threshold_load(am, in_dir("dash.state")), KD_ERR_VERSION);
    free(f1);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
    kd_threshold_destroy(other);
    kd_threshold_destroy(am);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dash");
    TCase *t = tcase_create("reference");
    tcase_add_test(t, masks_follow_usb_through_the_soft_and_the_hard_phase);
    tcase_add_test(t, before_the_first_update_rho_is_the_first_value);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("errors");
    tcase_add_test(e, parameters_have_usb_defaults_and_refused_calls_change_nothing);
    suite_add_tcase(s, e);
    TCase *f = tcase_create("statefile");
    tcase_add_checked_fixture(f, dir_setup, dir_teardown);
    tcase_add_test(f, the_state_survives_save_and_load_and_a_failed_load_changes_nothing);
    suite_add_tcase(s, f);
    return kdt_run_suite(s);
}
