#define _DEFAULT_SOURCE
/* AdaMatch (KD_THRESHOLD_ADAMATCH of kdlib/threshold.h) against a double
 * reference written from USB's DistAlignEMAHook with p_target_type 'model'
 * (semilearn/algorithms/hooks/dist_align.py) and AdaMatchThresholdingHook
 * (semilearn/algorithms/adamatch/utils.py), in AdaMatch.train_step's order:
 * update p_model and p_target, align the unlabelled rows, mask them against
 * p_cutoff times the mean max of the labelled rows, pseudo-labels from the
 * aligned rows.  Several steps on random batches, with and without
 * alignment; parameters, refused calls, save/load. */
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
    double m, tau;
    int align;
    int have_p_model; /* USB: p_model = None until the first batch */
    double p_model[MAXC], p_target[MAXC];
    double kappa; /* max_probs.mean() of the labelled batch */
} ref_am;

static void ref_am_init(ref_am *r, int64_t c, double m, double tau, int align)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->m = m;
    r->tau = tau;
    r->align = align;
    for (int64_t j = 0; j < c; j++)
        r->p_target[j] = 1.0 / (double)c; /* set_p_target('model'): uniform */
}

/* update_p(): p_model from the unlabelled rows, p_target from the labelled
 * ones; the masking hook's mean max of the labelled rows. */
static void ref_am_update(ref_am *r, int64_t nl, const float *lb, int64_t nu, const float *ulb,
                          int64_t ld)
{
    const int64_t c = r->c;
    double mu[MAXC] = {0}, ml[MAXC] = {0}, kappa = 0.0;
    for (int64_t k = 0; k < nu; k++)
        for (int64_t j = 0; j < c; j++)
            mu[j] += ulb[k * ld + j] / (double)nu;
    for (int64_t k = 0; k < nl; k++) {
        double mx = 0.0;
        for (int64_t j = 0; j < c; j++) {
            ml[j] += lb[k * ld + j] / (double)nl;
            mx = fmax(mx, lb[k * ld + j]);
        }
        kappa += mx / (double)nl;
    }
    for (int64_t j = 0; j < c; j++) {
        r->p_model[j] = r->have_p_model ? r->p_model[j] * r->m + mu[j] * (1 - r->m) : mu[j];
        r->p_target[j] = r->p_target[j] * r->m + ml[j] * (1 - r->m);
    }
    r->have_p_model = 1;
    r->kappa = kappa;
}

/* The aligned row (probs * (p_target + 1e-6) / (p_model + 1e-6), renormalised). */
static void ref_am_align(const ref_am *r, const float *row, double *out)
{
    double s = 0.0;
    for (int64_t j = 0; j < r->c; j++) {
        const double ratio = r->align ? (r->p_target[j] + 1e-6) / (r->p_model[j] + 1e-6) : 1.0;
        out[j] = row[j] * ratio;
        s += out[j];
    }
    for (int64_t j = 0; j < r->c; j++)
        out[j] /= s;
}

/* ---- helpers -------------------------------------------------------------- */

/* n softmax rows with stride ld, logits N(0, scale^2) plus a bias per class
 * (shifted by `shift` classes: labelled and unlabelled batches disagree, so
 * the alignment moves the rows). */
static void random_rows(kdt_rng *g, int64_t n, int64_t c, int64_t ld, double scale, int shift,
                        float *out)
{
    double bias[MAXC];
    for (int64_t j = 0; j < c; j++)
        bias[j] = 0.6 * (double)((j + shift) % 3);
    kdt_softmax_rows(g, n, c, ld, scale, bias, NULL, out);
}

static kd_threshold *adamatch(int64_t n, int64_t c)
{
    kd_threshold *th = NULL;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_ADAMATCH, n, c), KD_OK);
    return th;
}

/* Every observable float of the state (2 + 2C values). */
static void snapshot(const kd_threshold *th, int64_t c, float *out)
{
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_LABELED_CONFIDENCE, 1, out),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD, 1, out + 1),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_PROBS, c, out + 2),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_TARGET_PROBS, c, out + 2 + c),
                     KD_OK);
}

static void check_state(const kd_threshold *th, const ref_am *r)
{
    const int64_t c = r->c;
    float s[2 + 2 * MAXC];
    snapshot(th, c, s);
    ck_assert_msg(kdt_close(s[0], r->kappa, 1e-6, 1e-7), "kappa %.9g vs %.9g", s[0], r->kappa);
    ck_assert_msg(kdt_close(s[1], r->tau * r->kappa, 1e-6, 1e-7), "cut %.9g vs %.9g", s[1],
                  r->tau * r->kappa);
    for (int64_t j = 0; j < c; j++) {
        ck_assert_msg(kdt_close(s[2 + j], r->p_model[j], 1e-6, 1e-7), "p_model[%lld] %.9g vs %.9g",
                      (long long)j, s[2 + j], r->p_model[j]);
        ck_assert_msg(kdt_close(s[2 + c + j], r->p_target[j], 1e-6, 1e-7),
                      "p_target[%lld] %.9g vs %.9g", (long long)j, s[2 + c + j], r->p_target[j]);
    }
}

typedef struct {
    int64_t kept, dropped, moved; /* masks 1 and 0; pseudo-labels the alignment changed */
} counts;

/* Masks and pseudo-labels of the unlabelled batch against the reference;
 * rows within 1e-6 of the cut, or with a near tie, are not compared. */
static void check_weights(const kd_threshold *th, const ref_am *r, int64_t n, const float *probs,
                          int64_t ld, counts *cnt)
{
    float w[MAXB];
    int32_t pl[MAXB];
    ck_assert_int_eq(kd_threshold_weights_probs(th, n, r->c, probs, ld, w, pl), KD_OK);
    const double cut = r->tau * r->kappa;
    for (int64_t k = 0; k < n; k++) {
        double a[MAXC] = {0};
        ref_am_align(r, probs + k * ld, a);
        int64_t arg = 0, raw = 0;
        for (int64_t j = 1; j < r->c; j++) {
            arg = a[j] > a[arg] ? j : arg;
            raw = probs[k * ld + j] > probs[k * ld + raw] ? j : raw;
        }
        double second = -1.0;
        for (int64_t j = 0; j < r->c; j++)
            if (j != arg)
                second = fmax(second, a[j]);
        if (a[arg] - second > 1e-6) {
            ck_assert_msg(pl[k] == arg, "row %lld: label %d, reference %lld", (long long)k,
                          (int)pl[k], (long long)arg);
            cnt->moved += arg != raw;
        }
        if (fabs(a[arg] - cut) > 1e-6) {
            const float want = a[arg] >= cut ? 1.0f : 0.0f;
            ck_assert_msg(w[k] == want, "row %lld: weight %g, max %.9g, cut %.9g", (long long)k,
                          w[k], a[arg], cut);
            cnt->kept += want == 1.0f;
            cnt->dropped += want == 0.0f;
        }
    }
}

/* ---- reference ------------------------------------------------------------ */

static counts run_reference(int64_t c, double m, double tau, int align, double scale, int steps,
                            uint64_t seed)
{
    const int64_t ld = c + 2;
    kd_threshold *th = adamatch(100, c);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, m), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, tau), KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, align), KD_OK);
    ref_am r;
    ref_am_init(&r, c, m, tau, align);
    kdt_rng g;
    kdt_seed(&g, seed);
    float lb[MAXB * (MAXC + 2)], ulb[MAXB * (MAXC + 2)];
    counts cnt = {0, 0, 0};
    for (int t = 0; t < steps; t++) {
        const int64_t nl = 1 + (int64_t)(kdt_uniform(&g) * (MAXB / 2));
        const int64_t nu = 1 + (int64_t)(kdt_uniform(&g) * (MAXB - 1));
        random_rows(&g, nl, c, ld, 1.5 * scale, 0, lb); /* labelled: more confident */
        random_rows(&g, nu, c, ld, scale, 1, ulb);
        /* either order of the two updates gives USB's state */
        if (t % 2) {
            ck_assert_int_eq(kd_threshold_update_labeled_probs(th, nl, c, lb, ld), KD_OK);
            ck_assert_int_eq(kd_threshold_update_probs(th, nu, c, ulb, ld, NULL), KD_OK);
        } else {
            ck_assert_int_eq(kd_threshold_update_probs(th, nu, c, ulb, ld, NULL), KD_OK);
            ck_assert_int_eq(kd_threshold_update_labeled_probs(th, nl, c, lb, ld), KD_OK);
        }
        ref_am_update(&r, nl, lb, nu, ulb, ld);
        check_state(th, &r);
        check_weights(th, &r, nu, ulb, ld, &cnt);
    }
    int64_t u, l;
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UPDATES, 1, &u), KD_OK);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_LABELED_UPDATES, 1, &l), KD_OK);
    ck_assert(u == steps && l == steps);
    kd_threshold_destroy(th);
    return cnt;
}

START_TEST(masks_and_labels_follow_usb_with_alignment_to_the_labelled_predictions)
{
    const struct {
        int64_t c;
        double m, tau, scale;
        uint64_t seed;
    } cases[] = {
        {10, 0.999, 0.95, 3.0, 1}, /* USB's defaults */
        {5, 0.8, 0.9, 2.0, 2},     /* fast EMAs: the alignment moves labels */
        {4, 0.5, 0.7, 1.5, 3},     {12, 0.9, 0.95, 4.0, 4}, /* classes absent from batches */
        {2, 0.0, 0.95, 1.0, 5},                             /* momentum 0: the last batches only */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        counts cnt = run_reference(cases[i].c, cases[i].m, cases[i].tau, 1, cases[i].scale, 30,
                                   cases[i].seed);
        /* the masks cut the batches and (with fast EMAs) alignment changes labels */
        ck_assert_msg(cnt.kept > 20 && cnt.dropped > 20, "case %zu: kept %lld, dropped %lld", i,
                      (long long)cnt.kept, (long long)cnt.dropped);
        if (cases[i].m < 0.99)
            ck_assert_msg(cnt.moved > 0, "case %zu: no label moved", i);
    }
}
END_TEST

START_TEST(without_alignment_rows_and_confidences_agree)
{
    counts cnt = run_reference(6, 0.7, 0.9, 0, 2.0, 20, 7); /* labels: the raw argmax */
    ck_assert(cnt.kept > 20 && cnt.dropped > 20);
    const int64_t c = 4, n = 20;
    kd_threshold *th = adamatch(30, c);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, 0), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 12);
    float probs[20 * 4], lb[8 * 4], conf[20], w1[20], w2[20];
    int32_t pred[20], pl[20];
    for (int t = 0; t < 4; t++) {
        random_rows(&g, 8, c, c, 3.0, 0, lb);
        random_rows(&g, n, c, c, 2.0, 1, probs);
        ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 8, c, lb, c), KD_OK);
        ck_assert_int_eq(kd_threshold_update_probs(th, n, c, probs, c, NULL), KD_OK);
        for (int64_t k = 0; k < n; k++) {
            pred[k] = 0;
            for (int32_t j = 1; j < c; j++)
                if (probs[k * c + j] > probs[k * c + pred[k]])
                    pred[k] = j;
            conf[k] = probs[k * c + pred[k]];
        }
        ck_assert_int_eq(kd_threshold_weights(th, n, conf, pred, w1), KD_OK);
        ck_assert_int_eq(kd_threshold_weights_probs(th, n, c, probs, c, w2, pl), KD_OK);
        ck_assert(memcmp(w1, w2, sizeof w1) == 0);
        ck_assert(memcmp(pred, pl, sizeof pl) == 0);
    }
    kd_threshold_destroy(th);
}
END_TEST

START_TEST(before_any_labelled_batch_the_cut_is_tau)
{
    kd_threshold *th = adamatch(4, 2);
    float w[3], v[2];
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_GLOBAL_THRESHOLD, 1, v), KD_OK);
    ck_assert(v[0] == 0.95f);
    /* p_model = p_target = 1/2: the alignment is the identity */
    const float rows[6] = {0.96f, 0.04f, 0.9f, 0.1f, 0.02f, 0.98f};
    int32_t pl[3];
    ck_assert_int_eq(kd_threshold_weights_probs(th, 3, 2, rows, 2, w, pl), KD_OK);
    ck_assert(w[0] == 1.0f && w[1] == 0.0f && w[2] == 1.0f);
    ck_assert(pl[0] == 0 && pl[1] == 0 && pl[2] == 1);
    /* an empty labelled batch changes nothing; a labelled batch sets kappa */
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 0, 2, NULL, 2), KD_OK);
    ck_assert_int_eq(
        kd_threshold_update_labeled_probs(th, 2, 2, (float[]){0.8f, 0.2f, 0.4f, 0.6f}, 2), KD_OK);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_LABELED_CONFIDENCE, 1, v),
                     KD_OK);
    ck_assert_msg(kdt_close(v[0], 0.7, 1e-7, 0), "kappa %.9g", v[0]);
    int64_t l;
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_LABELED_UPDATES, 1, &l), KD_OK);
    ck_assert_int_eq(l, 1);
    /* rows of zeros: confidence 0, class 0, never kept (tau > 0) */
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0, 0}, 2, w, pl), KD_OK);
    ck_assert(w[0] == 0.0f && pl[0] == 0);
    /* tau 0: every row kept */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 0.0), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(th, 1, 2, (float[]){0, 0}, 2, w, NULL), KD_OK);
    ck_assert(w[0] == 1.0f);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- parameters and refused calls ----------------------------------------- */

START_TEST(parameters_have_usb_defaults_and_refused_calls_change_nothing)
{
    kd_threshold *th = adamatch(10, 3);
    ck_assert_str_eq(kd_threshold_algorithm_name(KD_THRESHOLD_ADAMATCH), "adamatch");
    double v, lo, hi;
    int64_t i;
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.95);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.999);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, &i), KD_OK);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_ADAMATCH, KD_THRESHOLD_PARAM_THRESHOLD, &lo, &hi),
        KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_ADAMATCH, KD_THRESHOLD_PARAM_N_SIGMA, &lo, &hi),
        KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 1.5),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_THRESHOLD"));
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, NAN),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_DIST_ALIGN, 2),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_WARMUP, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.95);

    const float conf[2] = {0.9f, 0.5f};
    const int32_t pred[2] = {0, 2};
    const int64_t idx[2] = {0, 1};
    float w[2] = {7, 7}, before[2 + 6], after[2 + 6];
    snapshot(th, 3, before);
    /* the confidence update never serves (p_model needs rows); the
     * confidence weights only without alignment */
    ck_assert_int_eq(kd_threshold_update(th, 2, idx, conf, pred), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "use kd_threshold_update_probs"));
    ck_assert_int_eq(kd_threshold_weights(th, 2, conf, pred, w), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th),
                                 "adamatch with DIST_ALIGN = 1 aligns whole probability rows"));
    ck_assert(w[0] == 7 && w[1] == 7);

    /* bad labelled rows: the shared checks, nothing changes */
    const float bad[3] = {0.5f, NAN, 0.5f};
    ck_assert_int_eq(kd_threshold_update_labeled_probs(NULL, 1, 3, bad, 3), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, NULL, 3), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "probs is NULL"));
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, bad, 3), KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th),
                                 "kd_threshold_update_labeled_probs: probs[0][1] is NaN"));
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 2, bad, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, bad, 2), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, -1, 3, bad, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, (float[]){0.5f, -0.1f, 0.5f}, 3),
                     KD_ERR_INVALID_ARGUMENT);
    snapshot(th, 3, after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_LABELED_UPDATES, 1, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    /* state arrays of other algorithms are refused, short buffers too */
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CONF_MEAN, 1, w),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_TARGET_PROBS, 2, w),
                     KD_ERR_INVALID_ARGUMENT);

    /* the other algorithms do not learn from labelled rows */
    const kd_threshold_algorithm others[] = {KD_THRESHOLD_FLEXMATCH, KD_THRESHOLD_FREEMATCH,
                                             KD_THRESHOLD_SOFTMATCH};
    for (size_t k = 0; k < 3; k++) {
        kd_threshold *o = NULL;
        ck_assert_int_eq(kd_threshold_create(&o, others[k], 10, 3), KD_OK);
        ck_assert_int_eq(kd_threshold_update_labeled_probs(o, 1, 3, (float[]){1, 0, 0}, 3),
                         KD_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(o), "does not learn from labelled"));
        ck_assert_int_eq(kd_threshold_get_floats(o, KD_THRESHOLD_STATE_TARGET_PROBS, 3, w),
                         KD_ERR_UNSUPPORTED);
        kd_threshold_destroy(o);
    }

    /* reset: the initial state, parameters kept */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 0.5), KD_OK);
    ck_assert_int_eq(kd_threshold_update_labeled_probs(th, 1, 3, (float[]){0.2f, 0.2f, 0.6f}, 3),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_reset(th), KD_OK);
    snapshot(th, 3, after);
    ck_assert(after[0] == 1.0f && after[1] == 0.5f && after[2] == (float)(1.0 / 3) &&
              after[2 + 3] == (float)(1.0 / 3));
    kd_threshold_destroy(th);
}
END_TEST

/* ---- state file ----------------------------------------------------------- */

KDT_STATE_DIR("kd_adamatch")

START_TEST(the_state_survives_save_and_load_and_a_failed_load_changes_nothing)
{
    const int64_t c = 5, n = 24;
    kd_threshold *a = adamatch(40, c), *b = adamatch(40, c);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_MOMENTUM, 0.75), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_THRESHOLD, 0.8), KD_OK);
    kdt_rng g;
    kdt_seed(&g, 21);
    float probs[24 * 5], lb[24 * 5], sa[2 + 10], sb[2 + 10], wa[24], wb[24];
    int32_t la[24], lbl[24];
    for (int t = 0; t < 5; t++) {
        random_rows(&g, n, c, c, 2.0, 1, probs);
        random_rows(&g, 10, c, c, 3.0, 0, lb);
        ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
        ck_assert_int_eq(kd_threshold_update_labeled_probs(a, 10, c, lb, c), KD_OK);
    }
    ck_assert_int_eq(kd_threshold_save(a, in_dir("am.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_load(b, in_dir("am.state")), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    double v;
    int64_t i;
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.8);
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_MOMENTUM, &v), KD_OK);
    ck_assert(v == 0.75);
    ck_assert_int_eq(kd_threshold_get_ints(b, KD_THRESHOLD_STATE_UPDATES, 1, &i), KD_OK);
    ck_assert_int_eq(i, 5);
    ck_assert_int_eq(kd_threshold_get_ints(b, KD_THRESHOLD_STATE_LABELED_UPDATES, 1, &i), KD_OK);
    ck_assert_int_eq(i, 5);
    /* the same weights and labels (the alignment ratio is rebuilt), the same next step */
    random_rows(&g, n, c, c, 2.0, 1, probs);
    ck_assert_int_eq(kd_threshold_weights_probs(a, n, c, probs, c, wa, la), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(b, n, c, probs, c, wb, lbl), KD_OK);
    ck_assert(memcmp(wa, wb, sizeof wa) == 0 && memcmp(la, lbl, sizeof la) == 0);
    ck_assert_int_eq(kd_threshold_save(b, in_dir("am2.state")), KD_OK);
    size_t s1, s2;
    unsigned char *f1 = kdt_read_file(in_dir("am.state"), &s1);
    unsigned char *f2 = kdt_read_file(in_dir("am2.state"), &s2);
    ck_assert(f1 && f2 && s1 == s2 && memcmp(f1, f2, s1) == 0);
    ck_assert_uint_eq(s1, 44 + 56 + 8 * (1 + 2 * 5));
    ck_assert(memcmp(f1, "KDADAMT\0", 8) == 0 && f1[8] == 1);
    ck_assert_int_eq(kd_threshold_update_probs(a, n, c, probs, c, NULL), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(b, n, c, probs, c, NULL), KD_OK);
    snapshot(a, c, sa);
    snapshot(b, c, sb);
    ck_assert(memcmp(sa, sb, sizeof sa) == 0);
    /* a fresh handle: p_model is averaged into, not set from the next batch */
    kd_threshold *fresh = adamatch(40, c);
    ck_assert_int_eq(kd_threshold_load(fresh, in_dir("am.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_update_probs(fresh, n, c, probs, c, NULL), KD_OK);
    float sf[2 + 10];
    snapshot(fresh, c, sf);
    ck_assert(memcmp(sa, sf, sizeof sa) == 0);

    kd_threshold *other = adamatch(40, c + 1), *sm = NULL;
    ck_assert_int_eq(kd_threshold_create(&sm, KD_THRESHOLD_SOFTMATCH, 40, c), KD_OK);
    ck_assert_int_eq(kd_threshold_save(other, in_dir("other.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_save(sm, in_dir("sm.state")), KD_OK);
    ck_assert_int_eq(kdt_write_file(in_dir("short.state"), f1, s1 - 1), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("kappa.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("kappa.state"), 0, 1.5), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("target.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("target.state"), 1 + 5 + 2, -0.25), 0);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("nan.state")), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(in_dir("nan.state"), 3, NAN), 0);
    const kdt_failed_load fails[] = {
        {"other.state", KD_ERR_MISMATCH, "holds 40 samples x 6 classes, the handle has 40 x 5"},
        {"sm.state", KD_ERR_VERSION, ""},
        {"short.state", KD_ERR_CORRUPT, ""},
        {"kappa.state", KD_ERR_CORRUPT, "state value 0 is 1.5"},
        {"target.state", KD_ERR_CORRUPT, "state value 8 is -0.25"},
        {"nan.state", KD_ERR_CORRUPT, "state value 3 is nan"},
        {"missing.state", KD_ERR_IO, "missing.state"},
    };
    ck_assert_int_eq(kd_threshold_set_float(b, KD_THRESHOLD_PARAM_THRESHOLD, 0.6), KD_OK);
    snapshot(b, c, sb);
    kdt_failed_loads_change_nothing(b, c, fails, sizeof fails / sizeof fails[0], in_dir, snapshot,
                                    sb, sf, sizeof sb / sizeof sb[0], KD_THRESHOLD_PARAM_THRESHOLD,
                                    0.6);
    ck_assert_int_eq(kd_threshold_load(sm, in_dir("am.state")), KD_ERR_VERSION);
    free(f1);
    free(f2);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
    kd_threshold_destroy(fresh);
    kd_threshold_destroy(other);
    kd_threshold_destroy(sm);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("adamatch");
    TCase *t = tcase_create("reference");
    tcase_add_test(t, masks_and_labels_follow_usb_with_alignment_to_the_labelled_predictions);
    tcase_add_test(t, without_alignment_rows_and_confidences_agree);
    tcase_add_test(t, before_any_labelled_batch_the_cut_is_tau);
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
