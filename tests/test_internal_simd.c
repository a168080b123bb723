/* The SIMD variants of the row kernels (src/kernels/simd.h): every variant
 * this CPU supports is checked against a double-precision reference and
 * against the portable variant, for every row length around the vector
 * widths, in place and out of place. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kdtest.h"
#include "kernels/simd.h"
#include "losses/loss_internal.h"

static const kdi_simd_ops *variants[3];
static int nvariants;

static void find_variants(void)
{
    nvariants = 0;
    for (int isa = KDI_ISA_BASE; isa <= KDI_ISA_AVX512; isa++)
        if (kdi_simd(isa))
            variants[nvariants++] = kdi_simd(isa);
}

START_TEST(auto_picks_a_supported_variant)
{
    find_variants();
    ck_assert_int_ge(nvariants, 1);
    ck_assert_ptr_nonnull(kdi_simd(KDI_ISA_AUTO));
    ck_assert_ptr_eq(kdi_simd(KDI_ISA_AUTO), variants[nvariants - 1]);
    ck_assert_ptr_null(kdi_simd(99));
}
END_TEST

/* Issue 15: the variant is resolved once per handle, at kd_loss_create, and
 * every kernel of the handle reads it from there (h->ops), not per row. */
START_TEST(a_handle_resolves_its_variant_once_at_create)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, 10), KD_OK);
    ck_assert_ptr_nonnull(h->ops);
    ck_assert_ptr_eq(h->ops, kdi_simd(KDI_ISA_AUTO));
    /* the row log-sum-exp with an explicit variant is the per-call one's */
    const float x[5] = {1.0f, -2.0f, 3.5f, 0.25f, 3.5f};
    const kdi_lse a = kdi_row_lse_ops(h->ops, x, 5, 0.5f), b = kdi_row_lse(x, 5, 0.5f);
    ck_assert(a.max == b.max && a.logsum == b.logsum);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(exp_of_nonpositive_arguments_is_within_two_ulp_and_handles_specials)
{
    find_variants();
    for (int v = 0; v < nvariants; v++) {
        double worst = 0.0, worst_ulp = 0.0;
        for (float x = -87.0f; x <= 0.0f; x += 0.00731f) {
            double e = exp((double)x);
            double got = variants[v]->row_sumexp(&x, 1, 1.0f, 0.0f);
            double rel = fabs(got - e) / e;
            if (rel > worst)
                worst = rel;
        }
        /* every 997th float in [ln FLT_MIN, 0], error in units of the
         * result's last place (docs: at most ~1 ulp) */
        for (uint32_t bits = 0x80000000u; bits <= 0xC2AEAC4Fu; bits += 997) {
            float x;
            memcpy(&x, &bits, sizeof x);
            const double e = exp((double)x);
            int ex;
            frexp(e, &ex);
            const double u =
                fabs(variants[v]->row_sumexp(&x, 1, 1.0f, 0.0f) - e) / ldexp(1.0, ex - 24);
            if (u > worst_ulp)
                worst_ulp = u;
        }
        ck_assert_msg(worst < 2.5 * 5.96e-8, "%s: exp rel error %g", variants[v]->name, worst);
        ck_assert_msg(worst_ulp < 1.1, "%s: exp error %g ulp", variants[v]->name, worst_ulp);
        float ninf = -INFINITY, big = -100.0f, nan = NAN, zero = 0.0f;
        ck_assert(variants[v]->row_sumexp(&ninf, 1, 1.0f, 0.0f) == 0.0);
        ck_assert(variants[v]->row_sumexp(&big, 1, 1.0f, 0.0f) == 0.0);
        ck_assert(isnan(variants[v]->row_sumexp(&nan, 1, 1.0f, 0.0f)));
        ck_assert(variants[v]->row_sumexp(&zero, 1, 1.0f, 0.0f) == 1.0);
        /* arguments far below the cut (the table path's intermediates
         * overflow there) still give 0 */
        const float far[4] = {-1e30f, -3.4e38f, -87.4f, -1e6f};
        for (int i = 0; i < 4; i++)
            ck_assert(variants[v]->row_sumexp(&far[i], 1, 1.0f, 0.0f) == 0.0);
    }
}
END_TEST

START_TEST(row_max_propagates_nan_at_every_position)
{
    find_variants();
    float x[40];
    for (int c = 1; c <= 40; c++)
        for (int pos = 0; pos < c; pos++)
            for (int v = 0; v < nvariants; v++) {
                for (int j = 0; j < c; j++)
                    x[j] = (float)j;
                ck_assert(variants[v]->row_max(x, c) == (float)(c - 1));
                x[pos] = NAN;
                ck_assert_msg(isnan(variants[v]->row_max(x, c)), "%s c=%d pos=%d",
                              variants[v]->name, c, pos);
            }
}
END_TEST

/* row_argmax, and row_confidence's label with its sum of exps (NaN where the
 * max is not finite or the row holds a NaN), with a prefetch row or not */
static void check_argmax(const kdi_simd_ops *ops, const float *x, int c, int want, int sum_nan)
{
    static float work[KDI_SIMD_WORK(64)];
    ck_assert_msg(ops->row_argmax(x, c) == want, "%s c=%d want %d", ops->name, c, want);
    for (int pf = 0; pf < 2; pf++) {
        double sum;
        ck_assert_msg(ops->row_confidence(x, c, work, 1, pf ? x : NULL, &sum) == want,
                      "%s confidence c=%d want %d", ops->name, c, want);
        if (sum_nan)
            ck_assert(isnan(sum));
        else
            ck_assert(kdt_close(sum, ops->row_sumexp(x, c, 1.0f, x[want]), 1e-6, 0));
    }
    if (c > ops->small_c)
        return;
    /* pl_small's label, the row in lane 3 of 6 (the others a plain row) */
    static float plain[64], g[6][64];
    kdi_small_row rows[6];
    for (int r = 0; r < 6; r++) {
        kdi_small_row row = {r == 3 ? x : plain, r == 3 ? x : plain, g[r], 1.0f, 0.0f, 0.0f,
                             {0, -1, 0, 0, 0}};
        rows[r] = row;
    }
    double loss[6];
    int32_t label[6];
    int keep[6];
    ops->pl_small(rows, 6, c, NULL, 0.0f, 0, loss, label, keep);
    ck_assert_msg(label[3] == want && keep[3] == !sum_nan && label[2] == 0 && keep[2],
                  "%s pl_small c=%d want %d got %d", ops->name, c, want, label[3]);
}

START_TEST(row_argmax_is_torch_argmax_at_every_position)
{
    find_variants();
    float x[40];
    for (int c = 1; c <= 40; c++)
        for (int pos = 0; pos < c; pos++)
            for (int v = 0; v < nvariants; v++) {
                const kdi_simd_ops *ops = variants[v];
                for (int j = 0; j < c; j++)
                    x[j] = (float)((j * 7) % 5);
                x[pos] = 9.0f;
                check_argmax(ops, x, c, pos, 0);
                if (pos + 1 < c) { /* a later tie keeps the first */
                    x[c - 1] = 9.0f;
                    check_argmax(ops, x, c, pos, 0);
                }
                if (pos + 1 < c) { /* -0 and +0 tie: the first */
                    for (int j = 0; j < c; j++)
                        x[j] = -1.0f;
                    x[pos] = -0.0f;
                    x[c - 1] = 0.0f;
                    check_argmax(ops, x, c, pos, 0);
                }
                x[pos] = INFINITY; /* the first +Inf */
                check_argmax(ops, x, c, pos, 1);
                x[pos] = NAN; /* the first NaN wins, wherever the max is */
                if (pos + 1 < c)
                    x[c - 1] = NAN;
                check_argmax(ops, x, c, pos, 1);
                for (int j = 0; j < c; j++)
                    x[j] = -INFINITY;
                check_argmax(ops, x, c, 0, 1);
            }
}
END_TEST

/* double reference of one forward-KL row with a hard label */
static void ref_kl(const float *s, const float *t, int c, double inv_t, double cs,
                   const kdi_simd_label *lab, double *g, double *kl, double *ce)
{
    double ms = -INFINITY, mt = -INFINITY, ss = 0, st = 0, s1 = 0;
    for (int j = 0; j < c; j++) {
        ms = fmax(ms, s[j]);
        mt = fmax(mt, t[j]);
    }
    for (int j = 0; j < c; j++) {
        ss += exp((s[j] - ms) * inv_t);
        st += exp((t[j] - mt) * inv_t);
        s1 += exp(s[j] - ms);
    }
    *kl = *ce = 0;
    for (int j = 0; j < c; j++) {
        double lq = (s[j] - ms) * inv_t - log(ss), lp = (t[j] - mt) * inv_t - log(st);
        double lp1 = (s[j] - ms) - log(s1);
        double p = exp(lp), oh = lab->active ? (j == lab->y ? lab->on : lab->off) : 0.0;
        *kl += p > 0 ? p * (lp - lq) : 0.0;
        *ce -= oh * lp1;
        g[j] = cs * (exp(lq) - p) + (lab->active ? lab->coef * (exp(lp1) - oh) : 0.0);
    }
}

/* double reference of one cross-entropy row against q = a softmax(t inv_t) +
 * on [j = y]: returns the loss, g = softmax(s) sum(q) - q */
static double ref_ce(const float *s, const float *t, int c, double inv_t, double a, int y,
                     double on, double *g)
{
    double mt = -INFINITY, st = 0, ms = -INFINITY, ss = 0, l = 0;
    for (int j = 0; j < c; j++) {
        mt = fmax(mt, t[j]);
        ms = fmax(ms, s[j]);
    }
    for (int j = 0; j < c; j++) {
        st += exp((t[j] - mt) * inv_t);
        ss += exp(s[j] - ms);
    }
    for (int j = 0; j < c; j++) {
        double q = a * exp((t[j] - mt) * inv_t) / st + (j == y ? on : 0.0);
        double lp = s[j] - ms - log(ss);
        l -= q * lp;
        g[j] = exp(lp) * (a + on) - q;
    }
    return l;
}

START_TEST(kl_ce_mse_rows_match_reference_for_every_length)
{
    find_variants();
    kdt_rng rng;
    kdt_seed(&rng, 7);
    enum { CMAX = 70 };
    float s[CMAX], t[CMAX], g[CMAX], work[KDI_SIMD_WORK(CMAX)], inplace[CMAX];
    double gr[CMAX], grc[CMAX];
    for (int c = 1; c < CMAX; c++) {
        kdt_fill_normal(&rng, s, c, 4.0);
        kdt_fill_normal(&rng, t, c, 4.0);
        kdi_simd_label lab = {1, (int32_t)(kdt_next(&rng) % (uint64_t)c), 0.95f, 0.05f / c, 0.3f};
        double kl_ref, ce_ref;
        ref_kl(s, t, c, 0.25, 0.7, &lab, gr, &kl_ref, &ce_ref);
        for (int v = 0; v < nvariants; v++) {
            double kl, ce;
            variants[v]->kl_row(s, t, g, c, 0.25f, 0.25f, 0.7f, &lab, work, 1, NULL, &kl, &ce);
            ck_assert_msg(kdt_close(kl, kl_ref, 1e-5, 1e-6) && kdt_close(ce, ce_ref, 1e-5, 1e-6),
                          "%s c=%d kl %g/%g ce %g/%g", variants[v]->name, c, kl, kl_ref, ce,
                          ce_ref);
            for (int j = 0; j < c; j++)
                ck_assert_msg(fabs(g[j] - gr[j]) < 1e-6, "%s c=%d j=%d", variants[v]->name, c, j);
            /* in place: the gradient overwrites the student */
            memcpy(inplace, s, sizeof(float) * (size_t)c);
            double kl2, ce2;
            variants[v]->kl_row(inplace, t, inplace, c, 0.25f, 0.25f, 0.7f, &lab, work, 1, NULL,
                                &kl2, &ce2);
            ck_assert(kl2 == kl && ce2 == ce);
            ck_assert(memcmp(inplace, g, sizeof(float) * (size_t)c) == 0);

            /* cross-entropy against teacher probabilities at T = 4 plus the label */
            kdi_simd_label cl = {1, lab.y, 0.5f, 0.0f, 0.0f};
            float gce[CMAX];
            double l =
                variants[v]->ce_row(s, t, 2, gce, c, 0.25f, 0.5f, &cl, 0.5f, 1.0f, work, 1, NULL);
            const double lref = ref_ce(s, t, c, 0.25, 0.5, lab.y, 0.5, grc);
            for (int j = 0; j < c; j++)
                ck_assert_msg(fabs(gce[j] - grc[j]) < 1e-6, "%s ce c=%d j=%d", variants[v]->name, c,
                              j);
            ck_assert_msg(kdt_close(l, lref, 1e-5, 1e-6), "%s ce c=%d %g/%g", variants[v]->name, c,
                          l, lref);

            /* squared difference */
            kdi_simd_label none = {0, 0, 0, 0, 0};
            double sq, ce0;
            variants[v]->mse_row(s, t, gce, c, 2.0f, &none, work, 1, NULL, &sq, &ce0);
            double sref = 0;
            for (int j = 0; j < c; j++) {
                sref += ((double)s[j] - t[j]) * ((double)s[j] - t[j]);
                ck_assert(fabs(gce[j] - 2.0 * ((double)s[j] - t[j])) < 1e-5);
            }
            ck_assert(kdt_close(sq, sref, 1e-5, 1e-6) && ce0 == 0.0);
        }
    }
}
END_TEST

START_TEST(variants_agree_to_float_rounding_on_long_rows)
{
    find_variants();
    enum { C = 5003 };
    static float s[C], t[C], g0[C], g1[C], work[KDI_SIMD_WORK(C)];
    kdt_rng rng;
    kdt_seed(&rng, 11);
    kdt_fill_normal(&rng, s, C, 20.0);
    kdt_fill_normal(&rng, t, C, 20.0);
    kdi_simd_label lab = {1, 17, 1.0f, 0.0f, 0.1f};
    double kl0, ce0;
    variants[0]->kl_row(s, t, g0, C, 1.0f, 1.0f, 1.0f, &lab, work, 1, NULL, &kl0, &ce0);
    for (int v = 1; v < nvariants; v++) {
        double kl1, ce1;
        variants[v]->kl_row(s, t, g1, C, 1.0f, 1.0f, 1.0f, &lab, work, 1, NULL, &kl1, &ce1);
        ck_assert(kdt_close(kl1, kl0, 1e-6, 0) && kdt_close(ce1, ce0, 1e-6, 0));
        for (int j = 0; j < C; j++)
            ck_assert(fabs(g1[j] - g0[j]) <= 1e-6 * (fabs(g0[j]) + 1e-6));
    }
}
END_TEST

/* KL with a hard label at T = 2 and 4 (the T = 1 softmax from powers of the
 * exps at T) and at T = 3 (its own exps), with logit gaps spanning [-130, 0]
 * so that the powers cross the subnormal range; a NaN student makes both
 * terms NaN on every path. */
START_TEST(kl_row_label_term_at_every_temperature_path)
{
    find_variants();
    enum { CL = 301 };
    static const float inv_ts[] = {0.5f, 0.25f, 1.0f / 3.0f};
    float s[CL], t[CL], g[CL], work[KDI_SIMD_WORK(CL)];
    double gr[CL];
    kdt_rng rng;
    kdt_seed(&rng, 5);
    kdt_fill_normal(&rng, t, CL, 3.0);
    for (int j = 0; j < CL; j++)
        s[j] = -130.0f * (float)j / (CL - 1) + (float)kdt_uniform(&rng);
    for (int k = 0; k < 3; k++) {
        kdi_simd_label lab = {1, 7, 0.9f, 0.1f / CL, 0.6f};
        double kl_ref, ce_ref;
        ref_kl(s, t, CL, inv_ts[k], 0.4, &lab, gr, &kl_ref, &ce_ref);
        for (int v = 0; v < nvariants; v++) {
            double kl, ce;
            variants[v]->kl_row(s, t, g, CL, inv_ts[k], inv_ts[k], 0.4f, &lab, work, 1, NULL, &kl,
                                &ce);
            ck_assert_msg(kdt_close(kl, kl_ref, 1e-5, 1e-6) && kdt_close(ce, ce_ref, 1e-5, 1e-6),
                          "%s T=%g kl %g/%g ce %g/%g", variants[v]->name, 1.0 / inv_ts[k], kl,
                          kl_ref, ce, ce_ref);
            for (int j = 0; j < CL; j++)
                ck_assert_msg(fabs(g[j] - gr[j]) < 1e-6, "%s T=%g j=%d", variants[v]->name,
                              1.0 / inv_ts[k], j);
            const float keep = s[11];
            const kdi_simd_label hard = {1, 7, 1.0f, 0.0f, 0.6f}; /* CE from log Z1 alone */
            s[11] = NAN;
            variants[v]->kl_row(s, t, g, CL, inv_ts[k], inv_ts[k], 0.4f, &hard, work, 1, NULL, &kl,
                                &ce);
            s[11] = keep;
            ck_assert_msg(isnan(kl) && isnan(ce), "%s T=%g NaN student: kl %g ce %g",
                          variants[v]->name, 1.0 / inv_ts[k], kl, ce);
        }
    }
}
END_TEST

/* Consecutive rows through a kdi_pipe (the next row's maxima taken during
 * this row's exp passes; for rows of several segments, the next row
 * prefetched and its maxima taken in the gradient pass) give the bits of
 * rows run alone, NaN rows too. */
START_TEST(rows_through_a_pipe_match_rows_alone)
{
    find_variants();
    enum { R = 5, CP = 2 * KDI_SEG + 808 };
    static const int lens[] = {40, 100, 1000, CP};
    static float s[R][CP], t[R][CP], g0[CP], g1[CP], work[KDI_SIMD_WORK(CP)];
    kdt_rng rng;
    kdt_seed(&rng, 41);
    kdt_fill_normal(&rng, &s[0][0], R * CP, 5.0);
    kdt_fill_normal(&rng, &t[0][0], R * CP, 5.0);
    for (int li = 0; li < 4; li++) {
        const int c = lens[li];
        s[3][c / 2] = NAN; /* a NaN row in the middle: its maxima ignore the NaN */
        t[2][c - 1] = NAN;
        s[4][c - 1] = 40.0f; /* maxima in a row's last elements (the tail) */
        t[1][c - 3] = 40.0f;
        for (int v = 0; v < nvariants; v++) {
            const kdi_simd_ops *ops = variants[v];
            for (int kind = 0; kind < 4; kind++) {
                kdi_pipe pipe = {NULL, NULL, 0.0f, 0.0f, NULL, NULL, 1, CP};
                for (int r = 0; r < R; r++) {
                    kdi_simd_label lab = {kind != 2, (r * 7) % c, 0.9f, 0.1f / c, 0.3f};
                    pipe.ns = r + 1 < R ? s[r + 1] : NULL;
                    pipe.nt = r + 1 < R ? t[r + 1] : NULL;
                    double a0 = 0, b0 = 0, a1 = 0, b1 = 0;
                    if (kind == 0) {
                        ops->kl_row(s[r], t[r], g0, c, 0.25f, 0.25f, 0.7f, &lab, work, 1, NULL, &a0,
                                    &b0);
                        ops->kl_row(s[r], t[r], g1, c, 0.25f, 0.25f, 0.7f, &lab, work, 1, &pipe,
                                    &a1, &b1);
                    } else if (kind == 1 || kind == 2) { /* teacher + label, label only */
                        const int sk = kind == 1 ? 2 : 0;
                        a0 = ops->ce_row(s[r], sk ? t[r] : NULL, sk, g0, c, 0.5f, 0.5f, &lab, 0.5f,
                                         1.0f, work, 1, NULL);
                        a1 = ops->ce_row(s[r], sk ? t[r] : NULL, sk, g1, c, 0.5f, 0.5f, &lab, 0.5f,
                                         1.0f, work, 1, &pipe);
                    } else {
                        ops->mse_row(s[r], t[r], g0, c, 0.5f, &lab, work, 1, NULL, &a0, &b0);
                        ops->mse_row(s[r], t[r], g1, c, 0.5f, &lab, work, 1, &pipe, &a1, &b1);
                    }
                    ck_assert_msg(!memcmp(&a0, &a1, sizeof a0) && !memcmp(&b0, &b1, sizeof b0) &&
                                      !memcmp(g0, g1, sizeof(float) * (size_t)c),
                                  "%s kind %d c=%d row %d", ops->name, kind, c, r);
                    if (r + 1 < R) {
                        /* the pipe holds the next row's maxima (NaN ignored): from the
                         * exp passes of a one-segment row, the gradient pass of a longer one */
                        ck_assert(pipe.s == s[r + 1]);
                        const int with_t = kind == 0 || kind == 1;
                        ck_assert(pipe.t == (with_t ? t[r + 1] : NULL));
                        float ms = -INFINITY, mt = -INFINITY;
                        for (int j = 0; j < c; j++) {
                            ms = s[r + 1][j] > ms ? s[r + 1][j] : ms;
                            mt = t[r + 1][j] > mt ? t[r + 1][j] : mt;
                        }
                        ck_assert_msg(pipe.ms == ms && (!with_t || pipe.mt == mt),
                                      "%s kind %d c=%d", ops->name, kind, c);
                    }
                }
            }
        }
        s[3][c / 2] = s[4][c - 1] = 1.0f;
        t[2][c - 1] = t[1][c - 3] = 1.0f;
    }
}
END_TEST

/* A cross-entropy row whose target is all 0 has loss 0, even when its
 * student holds a NaN or +Inf (0 log p is 0 for every class), in the row
 * kernel and in the short-row kernel. */
START_TEST(cross_entropy_of_an_all_zero_target_is_zero)
{
    find_variants();
    enum { C = 1000 };
    static float s[C], q[C], g[C], work[KDI_SIMD_WORK(C)];
    const kdi_simd_label none = {0, -1, 0.0f, 0.0f, 0.0f};
    for (int bad = 0; bad < 2; bad++)
        for (int v = 0; v < nvariants; v++) {
            const kdi_simd_ops *ops = variants[v];
            for (int c = 10; c <= C; c += C - 10) {
                for (int j = 0; j < c; j++) {
                    s[j] = 0.1f * (float)j;
                    q[j] = 0.0f;
                }
                s[3] = bad ? INFINITY : NAN;
                const double l =
                    ops->ce_row(s, q, 1, g, c, 1.0f, 1.0f, &none, 0.0f, 1.0f, work, 1, NULL);
                ck_assert_msg(l == 0.0, "%s ce_row c=%d: %g", ops->name, c, l);
                kdi_small_row row = {s, q, g, 1.0f, 1.0f, 0.0f, none};
                double ls = 0.0;
                if (c <= ops->small_c) {
                    ops->ce_small(&row, 1, c, 1, 1.0f, &ls);
                    ck_assert_msg(ls == 0.0, "%s ce_small c=%d: %g", ops->name, c, ls);
                }
                /* a target that sums to 0 but is not 0: NaN */
                q[0] = 0.5f;
                q[1] = -0.5f;
                ck_assert(isnan(
                    ops->ce_row(s, q, 1, g, c, 1.0f, 1.0f, &none, 0.0f, 1.0f, work, 1, NULL)));
                if (c <= ops->small_c) {
                    ops->ce_small(&row, 1, c, 1, 1.0f, &ls);
                    ck_assert_msg(isnan(ls), "%s ce_small c=%d: %g", ops->name, c, ls);
                }
            }
        }
}
END_TEST

/* The hard-label term at label smoothing 1 (on = off: the labelled class
 * has no extra weight) with a student of -Inf at the label: +Inf (every
 * class's log p is weighted), not the NaN of 0 (-Inf); and squares of huge
 * differences summed without overflow, in the row and short-row kernels. */
START_TEST(label_term_without_extra_weight_and_huge_squares)
{
    find_variants();
    enum { C = 32 };
    static float s[C], t[C], g[C], work[KDI_SIMD_WORK(C)];
    for (int v = 0; v < nvariants; v++) {
        const kdi_simd_ops *ops = variants[v];
        const kdi_simd_label lab = {1, 2, 1.0f / C, 1.0f / C, 0.5f};
        for (int j = 0; j < C; j++)
            s[j] = t[j] = (float)j * 0.1f;
        s[2] = -INFINITY;
        double a, b;
        ops->kl_row(s, t, g, C, 1.0f, 1.0f, 1.0f, &lab, work, 1, NULL, &a, &b);
        ck_assert_msg(isinf(b) && b > 0, "%s kl_row: %g", ops->name, b);
        ops->mse_row(s, t, g, C, 1.0f, &lab, work, 1, NULL, &a, &b);
        ck_assert_msg(isinf(b) && b > 0, "%s mse_row: %g", ops->name, b);
        kdi_small_row row = {s, t, g, 1.0f, 0.0f, 0.0f, lab};
        ops->mse_small(&row, 1, C, &a, &b);
        ck_assert_msg(isinf(b) && b > 0, "%s mse_small: %g", ops->name, b);
        /* 32 squares of 1.089e37: 3.5e38, above FLT_MAX, finite in double */
        for (int j = 0; j < C; j++) {
            s[j] = 3.3e18f;
            t[j] = 0.0f;
        }
        const kdi_simd_label none = {0, -1, 0.0f, 0.0f, 0.0f};
        row.lab = none;
        ops->mse_small(&row, 1, C, &a, &b);
        double sq1, ce1;
        ops->mse_row(s, t, g, C, 1.0f, &none, work, 1, NULL, &sq1, &ce1);
        ck_assert_msg(isfinite(a) && kdt_close(a, 32.0 * 3.3e18 * 3.3e18, 1e-6, 0) &&
                          kdt_close(a, sq1, 1e-6, 0),
                      "%s mse_small squares: %g / %g", ops->name, a, sq1);
    }
}
END_TEST

/* Rows that end where readable memory ends (the next page is PROT_NONE):
 * every kernel of every variant, with partial vectors, masked loads and
 * stores, overlapping tails and gathers, must neither read nor write past a
 * row's last element (a fault would kill the test). */
START_TEST(kernels_never_touch_memory_past_a_row)
{
    find_variants();
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    enum { CX = 200 };
    char *map = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(map != MAP_FAILED);
    /* three one-page areas (s, t, g), each followed by an inaccessible page */
    ck_assert(mprotect(map + page, page, PROT_NONE) == 0);
    ck_assert(mprotect(map + 3 * page, page, PROT_NONE) == 0);
    char *area[2] = {map, map + 2 * page};
    static float work[KDI_SIMD_WORK(CX)], gt[KDI_MAX_LANES][CX];
    static const int lens[] = {1, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 64, 100, 101, CX};
    kdt_rng rng;
    kdt_seed(&rng, 3);
    for (int li = 0; li < (int)(sizeof lens / sizeof lens[0]); li++) {
        const int c = lens[li];
        /* s ends at the first guard page; t and g share the second area */
        float *s = (float *)(area[0] + page) - c;
        float *t = (float *)(area[1] + page) - c, *g = t - c;
        kdt_fill_normal(&rng, s, (size_t)c, 3.0);
        kdt_fill_normal(&rng, t, (size_t)c, 3.0);
        kdi_simd_label lab = {1, c / 2, 0.9f, 0.1f / c, 0.3f};
        for (int v = 0; v < nvariants; v++) {
            const kdi_simd_ops *ops = variants[v];
            double a, b, sum;
            ops->kl_row(s, t, g, c, 0.25f, 0.25f, 0.5f, &lab, work, 1, NULL, &a, &b);
            ops->kl_row(s, t, g, c, 1.0f / 3.0f, 1.0f / 3.0f, 0.5f, &lab, work, 1, NULL, &a, &b);
            ops->ce_row(s, t, 2, g, c, 0.5f, 0.5f, &lab, 0.5f, 1.0f, work, 1, NULL);
            ops->mse_row(s, t, g, c, 1.0f, &lab, work, 1, NULL, &a, &b);
            (void)ops->row_max(s, c);
            (void)ops->row_sumexp(s, c, 1.0f, ops->row_max(s, c));
            (void)ops->row_argmax(t, c);
            (void)ops->row_confidence(t, c, work, 1, s, &sum);
            for (int kind = 0; kind < 4;
                 kind++) /* consistency: L2, KL, JS of logits, L2 of probabilities */
                (void)ops->cons_row(s, t, c, kind < 3, kind < 3 ? kind : 0, 0.5f, g, NULL, work);
            if (c <= ops->small_c) { /* every lane the same row, the one at the edge */
                kdi_small_row rows[KDI_MAX_LANES];
                double x[KDI_MAX_LANES], y[KDI_MAX_LANES];
                int32_t labels[KDI_MAX_LANES];
                int keep[KDI_MAX_LANES];
                for (int r = 0; r < ops->lanes; r++) {
                    kdi_small_row row = {s, t, r ? gt[r] : g, 0.5f, 0.5f, 0.5f, lab};
                    rows[r] = row;
                }
                ops->kl_small(rows, ops->lanes, c, 0.25f, x, y);
                ops->ce_small(rows, ops->lanes, c, 2, 0.5f, x);
                ops->pl_small(rows, ops->lanes, c, NULL, 0.0f, 0, x, labels, keep);
                ops->mse_small(rows, ops->lanes, c, x, y);
            }
        }
    }
    munmap(map, 4 * page);
}
END_TEST

/* Rows of several segments (KDI_SEG): the kernels match the double
 * reference, and running the segments on 3 threads gives the bits of 1
 * thread, in place too; row_confidence combines the segments' argmaxes with
 * torch's rules (first NaN, first of ties, 0 for a row of -Inf). */
START_TEST(long_rows_in_segments_match_reference_on_any_thread_count)
{
    find_variants();
    enum { CM = 5 * KDI_SEG + 3 };
    static const int lens[] = {2 * KDI_SEG - 1, 2 * KDI_SEG, 2 * KDI_SEG + 17, CM};
    static float s[CM], t[CM], g1[CM], g3[CM], inplace[CM], work[KDI_SIMD_WORK(CM)];
    static double gr[CM], grc[CM];
    kdt_rng rng;
    kdt_seed(&rng, 23);
    for (int li = 0; li < 4; li++) {
        const int c = lens[li];
        kdt_fill_normal(&rng, s, c, 4.0);
        kdt_fill_normal(&rng, t, c, 4.0);
        s[c - 2] += 25.0f; /* the maxima in the last segment, far above the first */
        t[c - 5] += 25.0f;
        kdi_simd_label lab = {1, c / 3, 0.9f, 0.1f / c, 0.4f};
        double kl_ref, ce_ref;
        ref_kl(s, t, c, 0.25, 0.7, &lab, gr, &kl_ref, &ce_ref);
        for (int v = 0; v < nvariants; v++) {
            const kdi_simd_ops *ops = variants[v];
            double kl1, ce1, kl3, ce3;
            ops->kl_row(s, t, g1, c, 0.25f, 0.25f, 0.7f, &lab, work, 1, NULL, &kl1, &ce1);
            ops->kl_row(s, t, g3, c, 0.25f, 0.25f, 0.7f, &lab, work, 3, NULL, &kl3, &ce3);
            ck_assert_msg(kdt_close(kl1, kl_ref, 1e-5, 1e-6) && kdt_close(ce1, ce_ref, 1e-5, 1e-6),
                          "%s c=%d kl %g/%g ce %g/%g", ops->name, c, kl1, kl_ref, ce1, ce_ref);
            for (int j = 0; j < c; j++)
                ck_assert_msg(fabs(g1[j] - gr[j]) < 1e-6, "%s kl c=%d j=%d", ops->name, c, j);
            ck_assert(kl3 == kl1 && ce3 == ce1 && !memcmp(g1, g3, sizeof(float) * (size_t)c));
            memcpy(inplace, s, sizeof(float) * (size_t)c);
            ops->kl_row(inplace, t, inplace, c, 0.25f, 0.25f, 0.7f, &lab, work, 3, NULL, &kl3,
                        &ce3);
            ck_assert(kl3 == kl1 && !memcmp(inplace, g1, sizeof(float) * (size_t)c));

            const kdi_simd_label cl = {1, lab.y, 0.5f, 0.0f, 0.0f};
            const double lref = ref_ce(s, t, c, 0.25, 0.5, lab.y, 0.5, grc);
            double l1 = ops->ce_row(s, t, 2, g1, c, 0.25f, 0.5f, &cl, 0.5f, 1.0f, work, 1, NULL);
            double l3 = ops->ce_row(s, t, 2, g3, c, 0.25f, 0.5f, &cl, 0.5f, 1.0f, work, 3, NULL);
            ck_assert_msg(kdt_close(l1, lref, 1e-5, 1e-6), "%s ce c=%d %g/%g", ops->name, c, l1,
                          lref);
            for (int j = 0; j < c; j++)
                ck_assert_msg(fabs(g1[j] - grc[j]) < 1e-6, "%s ce c=%d j=%d", ops->name, c, j);
            ck_assert(l3 == l1 && !memcmp(g1, g3, sizeof(float) * (size_t)c));

            /* logit matching with the label term: CE as in kl_row's reference */
            double sq1, sq3, c1, c3, sref = 0;
            ops->mse_row(s, t, g1, c, 2.0f, &lab, work, 1, NULL, &sq1, &c1);
            ops->mse_row(s, t, g3, c, 2.0f, &lab, work, 3, NULL, &sq3, &c3);
            for (int j = 0; j < c; j++)
                sref += ((double)s[j] - t[j]) * ((double)s[j] - t[j]);
            ck_assert(kdt_close(sq1, sref, 1e-5, 1e-6) && kdt_close(c1, ce_ref, 1e-5, 1e-6));
            ck_assert(sq3 == sq1 && c3 == c1 && !memcmp(g1, g3, sizeof(float) * (size_t)c));

            /* pseudo-label confidence */
            double sum1, sum3;
            int64_t a1 = ops->row_confidence(t, c, work, 1, NULL, &sum1);
            int64_t a3 = ops->row_confidence(t, c, work, 3, s, &sum3); /* prefetching s: a hint */
            ck_assert(a1 == ops->row_argmax(t, c) && a1 == c - 5 && a3 == a1 && sum3 == sum1);
            ck_assert(kdt_close(sum1, ops->row_sumexp(t, c, 1.0f, t[a1]), 1e-6, 0));
        }
    }
    /* ties across segments: the first; a NaN: the first NaN; all -Inf: 0 and a NaN sum */
    const int c = CM;
    for (int j = 0; j < c; j++)
        t[j] = 1.0f;
    t[KDI_SEG + 7] = t[3 * KDI_SEG + 1] = 9.0f;
    for (int v = 0; v < nvariants; v++) {
        double sum;
        ck_assert_int_eq(variants[v]->row_confidence(t, c, work, 3, NULL, &sum), KDI_SEG + 7);
        t[4 * KDI_SEG + 2] = NAN;
        t[2 * KDI_SEG + 9] = NAN;
        ck_assert_int_eq(variants[v]->row_confidence(t, c, work, 3, NULL, &sum), 2 * KDI_SEG + 9);
        ck_assert(isnan(sum));
        t[4 * KDI_SEG + 2] = t[2 * KDI_SEG + 9] = 1.0f;
    }
    for (int j = 0; j < c; j++)
        t[j] = -INFINITY;
    for (int v = 0; v < nvariants; v++) {
        double sum;
        ck_assert_int_eq(variants[v]->row_confidence(t, c, work, 3, NULL, &sum), 0);
        ck_assert(isnan(sum));
    }
}
END_TEST

/* 1, 2, ..., 12, then steps of 5, then max itself */
static int next_len(int c, int max)
{
    if (c < 12)
        return c + 1;
    return c == max ? max + 1 : (c + 5 < max ? c + 5 : max);
}

/* The one-row-per-lane kernels give what the row kernels give, for every
 * short length, any number of rows per call, labels, and in place. */
START_TEST(short_row_kernels_match_the_row_kernels)
{
    find_variants();
    kdt_rng rng;
    kdt_seed(&rng, 23);
    enum { R = KDI_MAX_LANES, CM = KDI_SMALL_C };
    static float s[R][CM], t[R][CM], g_small[R][CM], g_row[R][CM], work[KDI_SIMD_WORK(CM)],
        sc[R][CM];
    for (int v = 0; v < nvariants; v++) {
        const kdi_simd_ops *ops = variants[v];
        for (int c = 1; c <= ops->small_c; c = next_len(c, ops->small_c)) {
            for (int nrows = 1; nrows <= ops->lanes; nrows += 3) {
                kdi_small_row rows[R];
                for (int r = 0; r < nrows; r++) {
                    kdt_fill_normal(&rng, s[r], c, 6.0);
                    kdt_fill_normal(&rng, t[r], c, 6.0);
                    if (r == 1 && c > 1)
                        s[r][0] = -INFINITY; /* a masked-out class */
                    int y = r % 3 == 0 ? -1 : (int)(kdt_next(&rng) % (uint64_t)c);
                    kdi_simd_label lab = {y >= 0, y, 0.9f, 0.1f / (float)c, 0.25f};
                    kdi_small_row x = {s[r], t[r], g_small[r], 0.5f, 0.3f, y >= 0 ? 0.7f : 0.0f,
                                       lab};
                    rows[r] = x;
                }
                double kl[R], ce[R];
                const float inv_t = (c + nrows) % 3 == 0   ? 0.25f
                                    : (c + nrows) % 3 == 1 ? 0.5f
                                                           : 0.3f;
                ops->kl_small(rows, nrows, c, inv_t, kl, ce);
                for (int r = 0; r < nrows; r++) {
                    double kl1, ce1;
                    ops->kl_row(s[r], t[r], g_row[r], c, inv_t, inv_t, 0.5f, &rows[r].lab, work, 1,
                                NULL, &kl1, &ce1);
                    ck_assert_msg(kdt_close(kl[r], kl1, 2e-5, 1e-6) &&
                                      kdt_close(ce[r], ce1, 2e-5, 1e-6),
                                  "%s kl_small c=%d r=%d: %g/%g %g/%g", ops->name, c, r, kl[r], kl1,
                                  ce[r], ce1);
                    for (int j = 0; j < c; j++)
                        ck_assert_msg(fabs(g_small[r][j] - g_row[r][j]) < 2e-6, "%s c=%d r=%d j=%d",
                                      ops->name, c, r, j);
                }
                /* in place */
                for (int r = 0; r < nrows; r++) {
                    memcpy(sc[r], s[r], sizeof(float) * (size_t)c);
                    rows[r].s = rows[r].g = sc[r];
                }
                double kl2[R], ce2[R];
                ops->kl_small(rows, nrows, c, inv_t, kl2, ce2);
                for (int r = 0; r < nrows; r++) {
                    ck_assert(kl2[r] == kl[r] && ce2[r] == ce[r]);
                    ck_assert(memcmp(sc[r], g_small[r], sizeof(float) * (size_t)c) == 0);
                    rows[r].s = s[r];
                    rows[r].g = g_small[r];
                }
                /* cross-entropy against teacher softmax at T = 2 mixed with the label */
                double loss[R];
                ops->ce_small(rows, nrows, c, 2, 0.5f, loss);
                for (int r = 0; r < nrows; r++) {
                    kdi_simd_label lab = rows[r].lab;
                    double l1 = ops->ce_row(s[r], t[r], 2, g_row[r], c, 0.5f, rows[r].a, &lab,
                                            rows[r].lab_sum, 0.5f, work, 1, NULL);
                    ck_assert_msg(kdt_close(loss[r], l1, 2e-5, 1e-6),
                                  "%s ce_small c=%d r=%d: %g/%g", ops->name, c, r, loss[r], l1);
                    for (int j = 0; j < c; j++)
                        ck_assert_msg(fabs(g_small[r][j] - g_row[r][j]) < 2e-6,
                                      "%s ce c=%d r=%d j=%d", ops->name, c, r, j);
                }
                /* logit matching (k = cs) with the same labels */
                double sq[R], cem[R];
                ops->mse_small(rows, nrows, c, sq, cem);
                for (int r = 0; r < nrows; r++) {
                    double sq1, ce1;
                    ops->mse_row(s[r], t[r], g_row[r], c, rows[r].cs, &rows[r].lab, work, 1, NULL,
                                 &sq1, &ce1);
                    ck_assert_msg(kdt_close(sq[r], sq1, 2e-5, 1e-6) &&
                                      kdt_close(cem[r], ce1, 2e-5, 1e-6),
                                  "%s mse_small c=%d r=%d: %g/%g %g/%g", ops->name, c, r, sq[r],
                                  sq1, cem[r], ce1);
                    for (int j = 0; j < c; j++)
                        ck_assert_msg(fabs(g_small[r][j] - g_row[r][j]) < 2e-6 ||
                                          (isinf(g_small[r][j]) && g_small[r][j] == g_row[r][j]),
                                      "%s mse c=%d r=%d j=%d", ops->name, c, r, j);
                }
            }
        }
        /* a row without a label next to one with: its +Inf logit gives the row
         * kernel's +Inf gradient and square, not the NaN of its softmax */
        const int c = 7;
        float a[2][7], b[2][7], ga[2][7], gb[7];
        for (int j = 0; j < c; j++)
            a[0][j] = a[1][j] = b[0][j] = b[1][j] = (float)j * 0.5f;
        a[1][3] = INFINITY;
        kdi_small_row rr[2] = {{a[0], b[0], ga[0], 0.4f, 0.0f, 0.0f, {1, 2, 0.9f, 0.0f, 0.3f}},
                               {a[1], b[1], ga[1], 0.4f, 0.0f, 0.0f, {0, -1, 0.0f, 0.0f, 0.0f}}};
        double sq[2], cem[2], sq1, ce1;
        ops->mse_small(rr, 2, c, sq, cem);
        ops->mse_row(a[1], b[1], gb, c, 0.4f, &rr[1].lab, work, 1, NULL, &sq1, &ce1);
        ck_assert_msg(sq[0] == 0.0 && isinf(sq[1]) && isinf(sq1) && cem[1] == 0.0 && ce1 == 0.0,
                      "%s", ops->name);
        ck_assert(!isnan(cem[0]) && !memcmp(ga[1], gb, sizeof gb) && isinf(ga[1][3]));
    }
}
END_TEST

/* The short-row kernels read and write rows wherever they are: evenly
 * spaced (ld = c or c + 3, or negative: rows in reverse order, taken with
 * one gather per column) or anywhere (one address per row, also when only
 * the rows of the second 8 lanes break the spacing); every layout
 * gives the same bits, losses and gradients. */
START_TEST(short_row_kernels_give_the_same_bits_for_any_row_layout)
{
    find_variants();
    kdt_rng rng;
    kdt_seed(&rng, 41);
    enum { R = KDI_MAX_LANES, CM = KDI_SMALL_C, SPAN = R * (CM + 8) };
    static float src_s[R][CM], src_t[R][CM], mem_s[SPAN], mem_t[SPAN], mem_g[SPAN], ref_g[6][R][CM];
    for (int v = 0; v < nvariants; v++) {
        const kdi_simd_ops *ops = variants[v];
        for (int c = 1; c <= ops->small_c; c = next_len(c, ops->small_c)) {
            for (int nrows = 1; nrows <= ops->lanes; nrows += 5) {
                for (int r = 0; r < nrows; r++) {
                    kdt_fill_normal(&rng, src_s[r], c, 4.0);
                    kdt_fill_normal(&rng, src_t[r], c, 4.0);
                }
                double ref[6][R];
                int32_t ref_lab[R];
                for (int layout = 0; layout < 5; layout++) {
                    /* offset of row r: ld c, ld c + 3, reversed, uneven, even
                     * but for the rows from 12 on (the second 8 lanes) */
                    int64_t off[R];
                    for (int r = 0; r < nrows; r++)
                        off[r] = layout == 0   ? r * c
                                 : layout == 1 ? r * (c + 3)
                                 : layout == 2 ? (nrows - 1 - r) * c
                                 : layout == 3 ? r * (c + 8) - (r * r) % 7 + 6
                                               : r * (c + 8) + (r >= 12 ? 3 : 0);
                    kdi_small_row rows[R];
                    for (int r = 0; r < nrows; r++) {
                        memcpy(mem_s + off[r], src_s[r], sizeof(float) * (size_t)c);
                        memcpy(mem_t + off[r], src_t[r], sizeof(float) * (size_t)c);
                        const int y = nrows % 2 == 0 && r % 3 ? (int)((r * 7) % c)
                                                              : -1; /* odd nrows: no label */
                        kdi_small_row x = {mem_s + off[r],
                                           mem_t + off[r],
                                           mem_g + off[r],
                                           0.5f,
                                           0.6f,
                                           y >= 0 ? 0.4f : 0.0f,
                                           {y >= 0, y, 0.9f, 0.1f / (float)c, 0.25f}};
                        rows[r] = x;
                    }
                    double out[6][R];
                    int32_t lab[R];
                    int keep[R];
                    for (int k = 0; k < 6; k++) {
                        if (k == 0)
                            ops->kl_small(rows, nrows, c, 0.5f, out[0], out[5]);
                        else if (k <= 3)
                            ops->ce_small(rows, nrows, c, k - 1, 0.5f, out[k]);
                        else if (k == 4)
                            ops->pl_small(rows, nrows, c, NULL, 0.0f, 0, out[4], lab, keep);
                        else if (c <= ops->mse_small_c)
                            ops->mse_small(rows, nrows, c, out[5], out[0]);
                        else
                            continue;
                        for (int r = 0; r < nrows; r++) {
                            if (layout == 0) {
                                memcpy(ref_g[k][r], mem_g + off[r], sizeof(float) * (size_t)c);
                                ref[k][r] = out[k][r];
                                if (k == 4)
                                    ref_lab[r] = lab[r];
                                continue;
                            }
                            ck_assert_msg(
                                !memcmp(ref_g[k][r], mem_g + off[r], sizeof(float) * (size_t)c) &&
                                    !memcmp(&ref[k][r], &out[k][r], sizeof(double)) &&
                                    (k != 4 || ref_lab[r] == lab[r]),
                                "%s kernel %d c=%d nrows=%d layout %d row %d", ops->name, k, c,
                                nrows, layout, r);
                        }
                    }
                }
            }
        }
    }
}
END_TEST

/* A short row's results do not depend on the other rows of its block: a
 * NaN, +Inf or -Inf logit in row 0, or row 1 or 9 without a gradient, leaves
 * every other row's loss and gradient bits as they were. */
START_TEST(short_row_results_do_not_depend_on_the_other_rows)
{
    find_variants();
    kdt_rng rng;
    kdt_seed(&rng, 59);
    enum { R = KDI_MAX_LANES, C = 10 };
    static float s[R][C], t[R][C], g[R][C], g0[R][C];
    kdt_fill_normal(&rng, &s[0][0], R * C, 3.0);
    kdt_fill_normal(&rng, &t[0][0], R * C, 3.0);
    for (int v = 0; v < nvariants; v++) {
        const kdi_simd_ops *ops = variants[v];
        for (int labels = 0; labels < 2; labels++) {
            for (int k = 0; k < 5; k++) {
                double ref[R], ref2[R];
                for (int change = 0; change < 6; change++) {
                    const float keep = s[0][3];
                    if (change >= 1 && change <= 3)
                        s[0][3] = change == 1 ? NAN : change == 2 ? INFINITY : -INFINITY;
                    kdi_small_row rows[R];
                    for (int r = 0; r < ops->lanes; r++) {
                        const int y = labels && r % 2 ? (r * 3) % C : -1;
                        kdi_small_row x = {
                            s[r],
                            t[r],
                            (change == 4 && r == 1) || (change == 5 && r == 9) ? NULL : g[r],
                            0.5f,
                            0.6f,
                            y >= 0 ? 0.4f : 0.0f,
                            {y >= 0, y, 0.9f, 0.01f, 0.25f}};
                        rows[r] = x;
                    }
                    double out[R], out2[R];
                    int32_t lab[R];
                    int kept[R];
                    if (k == 0)
                        ops->kl_small(rows, ops->lanes, C, 0.5f, out, out2);
                    else if (k <= 2)
                        ops->ce_small(rows, ops->lanes, C, k, 0.5f, out);
                    else if (k == 3)
                        ops->pl_small(rows, ops->lanes, C, NULL, 0.0f, 0, out, lab, kept);
                    else
                        ops->mse_small(rows, ops->lanes, C, out, out2);
                    s[0][3] = keep;
                    for (int r = 1; r < ops->lanes; r++) {
                        if (change == 0) {
                            ref[r] = out[r];
                            ref2[r] = k == 0 || k == 4 ? out2[r] : 0.0;
                            memcpy(g0[r], g[r], sizeof g[r]);
                            continue;
                        }
                        ck_assert_msg(!memcmp(&ref[r], &out[r], sizeof(double)) &&
                                          (!(k == 0 || k == 4) ||
                                           !memcmp(&ref2[r], &out2[r], sizeof(double))) &&
                                          (rows[r].g == NULL || !memcmp(g0[r], g[r], sizeof g[r])),
                                      "%s kernel %d labels %d change %d row %d", ops->name, k,
                                      labels, change, r);
                    }
                }
            }
        }
    }
}
END_TEST

/* mse_small without labels reads each row in place: every length up to
 * small_c, out of place and in place, matches a double reference; each
 * square is added in double (10 squares of 1e38, beyond FLT_MAX in any float
 * partial sum, give 1e39); a row without a label gives the same bits in a
 * block where another row has one. */
START_TEST(mse_small_without_labels_in_place_and_squares_beyond_float)
{
    find_variants();
    kdt_rng rng;
    kdt_seed(&rng, 71);
    enum { R = KDI_MAX_LANES, CM = KDI_SMALL_C };
    static float s[R][CM], t[R][CM], g[R][CM], sc[R][CM];
    const kdi_simd_label none = {0, -1, 0.0f, 0.0f, 0.0f};
    for (int v = 0; v < nvariants; v++) {
        const kdi_simd_ops *ops = variants[v];
        for (int c = 1; c <= ops->small_c; c++) {
            const int nrows = 1 + c % ops->lanes;
            kdi_small_row rows[R];
            for (int r = 0; r < nrows; r++) {
                kdt_fill_normal(&rng, s[r], c, 4.0);
                kdt_fill_normal(&rng, t[r], c, 4.0);
                kdi_small_row x = {s[r], t[r], g[r], 0.5f + 0.25f * (float)r, 0.0f, 0.0f, none};
                rows[r] = x;
            }
            double sq[R], ce[R], sq2[R], ce2[R];
            ops->mse_small(rows, nrows, c, sq, ce);
            for (int r = 0; r < nrows; r++) {
                double ref = 0.0;
                for (int j = 0; j < c; j++) {
                    const double d = (double)s[r][j] - (double)t[r][j];
                    ref += d * d;
                    ck_assert_msg(g[r][j] == rows[r].cs * (s[r][j] - t[r][j]), "%s c=%d r=%d j=%d",
                                  ops->name, c, r, j);
                }
                ck_assert_msg(kdt_close(sq[r], ref, 1e-6, 0) && ce[r] == 0.0, "%s c=%d r=%d: %g/%g",
                              ops->name, c, r, sq[r], ref);
                memcpy(sc[r], s[r], sizeof(float) * (size_t)c);
                rows[r].s = rows[r].g = sc[r];
            }
            ops->mse_small(rows, nrows, c, sq2, ce2);
            for (int r = 0; r < nrows; r++) {
                ck_assert(sq2[r] == sq[r] && ce2[r] == 0.0);
                ck_assert(memcmp(sc[r], g[r], sizeof(float) * (size_t)c) == 0);
                rows[r].s = s[r];
                rows[r].g = g[r];
            }
            if (c <= ops->mse_small_c && nrows > 1) { /* row 0 gets a label */
                static float g0[CM];
                memcpy(g0, g[1], sizeof(float) * (size_t)c);
                kdi_simd_label lab = {1, c - 1, 0.9f, 0.1f / (float)c, 0.25f};
                rows[0].lab = lab;
                ops->mse_small(rows, nrows, c, sq2, ce2);
                ck_assert_msg(sq2[1] == sq[1] && ce2[1] == 0.0 && (c == 1 || ce2[0] > 0.0) &&
                                  memcmp(g0, g[1], sizeof(float) * (size_t)c) == 0,
                              "%s c=%d", ops->name, c);
            }
        }
        /* squares beyond float: 10 of 1e38 */
        float hs[10], ht[10], hg[10];
        for (int j = 0; j < 10; j++) {
            hs[j] = 1e19f;
            ht[j] = 0.0f;
        }
        kdi_small_row row = {hs, ht, hg, 1.0f, 0.0f, 0.0f, none};
        double a, b;
        ops->mse_small(&row, 1, 10, &a, &b);
        ck_assert_msg(isfinite(a) && kdt_close(a, 10.0 * (double)hs[0] * (double)hs[0], 1e-6, 0),
                      "%s: %g", ops->name, a);
    }
}
END_TEST

/* cons_row of every variant agrees with the portable one to float
 * rounding at lengths around the vector widths (L2, KL and JS of logits,
 * L2 of probabilities), with both gradients. */
START_TEST(cons_row_variants_agree)
{
    find_variants();
    kdt_rng rng;
    kdt_seed(&rng, 83);
    enum { CX = 300 };
    static float a[CX], b[CX], ga[3][CX], gb[3][CX], work[KDI_SIMD_WORK(CX)];
    static const int lens[] = {1, 5, 8, 9, 16, 17, 40, 129, 257, CX};
    for (int li = 0; li < (int)(sizeof lens / sizeof lens[0]); li++) {
        const int c = lens[li];
        for (int kind = 0; kind < 4; kind++) {
            kdt_fill_normal(&rng, a, (size_t)c, 3.0);
            kdt_fill_normal(&rng, b, (size_t)c, 3.0);
            if (kind == 3) /* probabilities: a and b normalised */
                for (int k = 0; k < 2; k++) {
                    float *x = k ? b : a;
                    double sum = 0.0;
                    for (int j = 0; j < c; j++)
                        sum += x[j] = (float)exp(x[j]);
                    for (int j = 0; j < c; j++)
                        x[j] = (float)(x[j] / sum);
                }
            double d[3];
            for (int v = 0; v < nvariants; v++) {
                d[v] = variants[v]->cons_row(a, b, c, kind < 3, kind < 3 ? kind : 0, 0.7f, ga[v],
                                             gb[v], work);
                ck_assert_msg(kdt_close(d[v], d[0], 1e-5, 1e-7), "%s c=%d kind %d: %g/%g",
                              variants[v]->name, c, kind, d[v], d[0]);
                for (int j = 0; j < c; j++)
                    ck_assert_msg(kdt_close(ga[v][j], ga[0][j], 1e-5, 1e-7) &&
                                      kdt_close(gb[v][j], gb[0][j], 1e-5, 1e-7),
                                  "%s c=%d kind %d j=%d", variants[v]->name, c, kind, j);
            }
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("simd");
    TCase *tc = tcase_create("simd");
    tcase_add_test(tc, auto_picks_a_supported_variant);
    tcase_add_test(tc, a_handle_resolves_its_variant_once_at_create);
    tcase_add_test(tc, exp_of_nonpositive_arguments_is_within_two_ulp_and_handles_specials);
    tcase_add_test(tc, cross_entropy_of_an_all_zero_target_is_zero);
    tcase_add_test(tc, label_term_without_extra_weight_and_huge_squares);
    tcase_add_test(tc, row_max_propagates_nan_at_every_position);
    tcase_add_test(tc, row_argmax_is_torch_argmax_at_every_position);
    tcase_add_test(tc, kl_ce_mse_rows_match_reference_for_every_length);
    tcase_add_test(tc, variants_agree_to_float_rounding_on_long_rows);
    tcase_add_test(tc, short_row_kernels_match_the_row_kernels);
    tcase_add_test(tc, short_row_kernels_give_the_same_bits_for_any_row_layout);
    tcase_add_test(tc, short_row_results_do_not_depend_on_the_other_rows);
    tcase_add_test(tc, long_rows_in_segments_match_reference_on_any_thread_count);
    tcase_add_test(tc, kl_row_label_term_at_every_temperature_path);
    tcase_add_test(tc, rows_through_a_pipe_match_rows_alone);
    tcase_add_test(tc, kernels_never_touch_memory_past_a_row);
    tcase_add_test(tc, mse_small_without_labels_in_place_and_squares_beyond_float);
    tcase_add_test(tc, cons_row_variants_agree);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
