/* KD_LOSS_STRONG_WEAK: tllib StrongWeakConsistencyLoss(threshold, temperature)
 *   sum_i m_i KL(softmax(w_i) || softmax(s_i / T)) / max(sum_i m_i, 1). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { N = 29, C = 7, LD = 9 };

typedef struct {
    float s[N * LD], t[N * LD], w[N], g[N * LD];
    double sd[N * C], td[N * C], wd[N];
} data;

static void make(data *d, uint64_t seed)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, d->s, N * LD, 2.0);
    kdt_fill_normal(&r, d->t, N * LD, 3.0);
    for (int i = 0; i < N; i++)
        d->wd[i] = d->w[i] = (float)kdt_uniform(&r);
    rst_to_double(d->s, LD, N, C, d->sd);
    rst_to_double(d->t, LD, N, C, d->td);
}

static kd_loss *make_loss(data *d, double tau, double temp)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, tau), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, temp), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->s, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->t, LD), KD_OK);
    return h;
}

START_TEST(mean_divides_by_the_kept_rows_and_matches_reference)
{
    data d;
    make(&d, 11);
    kd_loss *h = make_loss(&d, 0.7, 0.4);
    ck_assert_int_eq(kd_loss_bind_weights(h, d.w), KD_OK);
    float loss[N], mask[N], per[N];
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, mask, 0), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0), KD_OK);
    rst_thresh th = {0.7, 0, NULL};
    for (int red = 0; red < 3; red++) {
        double rper[N];
        double ref = rst_strong_weak(N, C, d.sd, d.td, 0.4, &th, d.wd, red, rper);
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
        ck_assert_int_eq(kd_loss_forward(h, N, loss), KD_OK);
        if (red < 2)
            ck_assert_msg(kdt_close(loss[0], ref, 1e-5, 1e-6), "%d: %g vs %g", red, loss[0], ref);
        double kept = 0, sum = 0;
        for (int i = 0; i < N; i++) {
            ck_assert(kdt_close(per[i], rper[i], 1e-5, 1e-6));
            kept += mask[i];
            sum += per[i];
        }
        ck_assert(kept > 2 && kept < N - 2);
        if (red == 0)
            ck_assert(kdt_close(loss[0], sum / kept, 1e-5, 0));
    }
    kd_loss_destroy(h);
}
END_TEST

typedef struct {
    data *d;
    int red;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    fd_ctx *f = ctx;
    rst_thresh th = {0.6, 0, NULL};
    return rst_strong_weak(N, C, x, f->d->td, 0.5, &th, f->d->wd, f->red, NULL);
}

START_TEST(gradient_matches_finite_differences)
{
    data d;
    make(&d, 12);
    kd_loss *h = make_loss(&d, 0.6, 0.5);
    ck_assert_int_eq(kd_loss_bind_weights(h, d.w), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.g, LD), KD_OK);
    for (int red = 0; red < 2; red++) {
        fd_ctx f = {&d, red};
        double fd[N * C];
        rst_fd_grad(fd_fn, &f, d.sd, N * C, 1e-6, fd);
        float loss, up = -1.5f;
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
        ck_assert_double_lt(kdt_max_abs_diff(d.g, LD, fd, N, C), 3e-6);
        ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
        for (int k = 0; k < N * C; k++)
            fd[k] *= -1.5;
        ck_assert_double_lt(kdt_max_abs_diff(d.g, LD, fd, N, C), 5e-6);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(no_kept_row_gives_zero_and_inclusive_threshold_keeps_ties)
{
    float s[4] = {1.0f, 2.0f, -1.0f, 0.5f}, t[4] = {0.0f, 0.0f, 0.0f, 0.0f}, g[4], loss;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 0.0f && g[3] == 0.0f);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THRESHOLD_MODE, KD_THRESHOLD_INCLUSIVE), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    double sd[4] = {1, 2, -1, 0.5}, td[4] = {0, 0, 0, 0};
    rst_thresh th = {0.5, 1, NULL};
    ck_assert(kdt_close(loss, rst_strong_weak(2, 2, sd, td, 1.0, &th, NULL, 0, NULL), 1e-6, 1e-7));
    ck_assert(loss > 0.0f && g[0] != 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(edge_shapes_extreme_logits_nan_and_in_place)
{
    /* C = 1: KL = 0 */
    float s1[2] = {3.0f, -4.0f}, t1[2] = {1.0f, 5.0f}, loss;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, 1), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s1, 1);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t1, 1);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
    /* N = 1, +-1e4: teacher one-hot on class 0, student on class 1: KL = 2e4 / T */
    float s[2] = {-1e4f, 1e4f}, t[2] = {1e4f, -1e4f}, g[2];
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, 2), KD_OK);
    kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, s, 2); /* in place */
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, 1e4, 1e-6, 0));
    ck_assert(s[0] == -0.5f && s[1] == 0.5f);
    /* NaN in a kept student row propagates; check_finite rejects */
    float sn[2] = {NAN, 0.0f};
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, sn, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(isnan(loss));
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    loss = 3.0f;
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_ERR_NOT_FINITE);
    ck_assert(loss == 3.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(threads_give_identical_bits)
{
    enum { M = 513 };
    static float s[M * C], t[M * C], g1[M * C], g2[M * C];
    kdt_rng r;
    kdt_seed(&r, 13);
    kdt_fill_normal(&r, s, M * C, 2.0);
    kdt_fill_normal(&r, t, M * C, 3.0);
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, C), KD_OK);
    kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.6);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, C);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, C);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, C);
    float l1, l2;
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l1), KD_OK);
    kd_loss_set_int(h, KD_PARAM_THREADS, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g2, C);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l2), KD_OK);
    ck_assert(l1 == l2);
    ck_assert(memcmp(g1, g2, sizeof g1) == 0);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(documented_errors)
{
    data d;
    make(&d, 14);
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, C), KD_OK);
    float loss = 5.0f;
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, -0.1), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TARGET, d.t, LD), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d.s, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d.t, LD), KD_OK);
    /* gradient overlapping the weak view */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, (float *)d.t, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    ck_assert(loss == 5.0f);
    float w[N];
    for (int i = 0; i < N; i++)
        w[i] = 1.0f;
    w[3] = -1.0f;
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_WEIGHTS, w), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert(loss == 5.0f);
    kd_loss_destroy(h);
}
END_TEST

/* Issue 16 point 9: a confident weak view (P_y = 0.99996) and a confident
 * strong view: the gradient at the argmax, (Q_y - P_y) / T, was a difference
 * of two numbers near 1 (relative error 1e-3) and the small KL lost its
 * digits.  T = 1 and 2, C = 10 and 300, in place and not; long-double
 * reference. */
START_TEST(confident_rows_keep_the_gradient_at_the_argmax_and_the_small_divergence)
{
    static const int64_t widths[] = {10, 300};
    static const double temps[] = {1.0, 2.0};
    enum { NR = 4, CMAX = 300 };
    kdt_rng r;
    kdt_seed(&r, 1620);
    int cases = 0;
    for (size_t w = 0; w < 2; w++)
        for (size_t k = 0; k < 2; k++)
            for (int in_place = 0; in_place < 2; in_place++) {
                const int64_t c = widths[w];
                const long double T = temps[k];
                float s[NR * CMAX], t[NR * CMAX], g[NR * CMAX], per[NR], loss;
                long double rl[NR], rg[NR * CMAX];
                kdt_fill_normal(&r, t, (size_t)(NR * c), 0.3);
                for (int i = 0; i < NR; i++) {
                    const int64_t y = (int64_t)(kdt_next(&r) % (uint64_t)c);
                    t[i * c + y] = logf((float)(c - 1) / 4e-5f);
                    for (int64_t j = 0; j < c; j++) /* strong view: Q_y = 0.99993 or so */
                        s[i * c + j] = (float)T * (t[i * c + j] - (j == y ? 0.5f : 0.0f));
                    long double mt = -INFINITY, ms = -INFINITY, zt = 0.0L, zs = 0.0L;
                    for (int64_t j = 0; j < c; j++) {
                        mt = fmaxl(mt, t[i * c + j]);
                        ms = fmaxl(ms, s[i * c + j] / T);
                    }
                    for (int64_t j = 0; j < c; j++) {
                        zt += expl(t[i * c + j] - mt);
                        zs += expl(s[i * c + j] / T - ms);
                    }
                    rl[i] = 0.0L;
                    for (int64_t j = 0; j < c; j++) {
                        const long double lp = t[i * c + j] - mt - logl(zt);
                        const long double lq = s[i * c + j] / T - ms - logl(zs);
                        rl[i] += expl(lp) * (lp - lq);
                        rg[i * c + j] = (expl(lq) - expl(lp)) / T;
                    }
                }
                float *gb = in_place ? s : g;
                kd_loss *h;
                kd_loss_create(&h, KD_LOSS_STRONG_WEAK, c);
                kd_loss_set_float(h, KD_PARAM_TEMPERATURE, (double)T);
                kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5);
                kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gb, c);
                kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
                ck_assert_int_eq(kd_loss_forward_backward(h, NR, &loss), KD_OK);
                for (int i = 0; i < NR; i++) {
                    ck_assert_msg(fabsl(per[i] - rl[i]) <= 1e-5L * rl[i],
                                  "C %lld T %g in place %d row %d: loss %.9g, reference %.12Lg",
                                  (long long)c, (double)T, in_place, i, per[i], rl[i]);
                    for (int64_t j = 0; j < c; j++) {
                        const long double e = rg[i * c + j];
                        ck_assert_msg(
                            fabsl(gb[i * c + j] - e) <= 1e-5L * fabsl(e) + 1e-12L,
                            "C %lld T %g in place %d row %d: g[%lld] = %.9g, reference %.12Lg",
                            (long long)c, (double)T, in_place, i, (long long)j, gb[i * c + j], e);
                    }
                    cases++;
                }
                kd_loss_destroy(h);
            }
    ck_assert_int_eq(cases, 2 * 2 * 2 * NR);
}
END_TEST

/* Rows below the confident threshold go through the float SIMD row of KL
 * distillation with the teacher at temperature 1: every width the kernel
 * splits differently (short rows, tails, several segments), T below and
 * above 1, in place or not, 1 or 2 threads (the same bits), against a
 * long-double reference. */
START_TEST(float_rows_match_the_reference_at_every_width_and_temperature)
{
    static const int64_t widths[] = {1, 3, 17, 100, 1000, 9000};
    static const double temps[] = {0.4, 1.0, 2.5};
    enum { NR = 3, CMAX = 9000 };
    static float s[NR * CMAX], s0[NR * CMAX], t[NR * CMAX], g[NR * CMAX], g1[NR * CMAX];
    static long double rg[NR * CMAX];
    kdt_rng r;
    kdt_seed(&r, 1621);
    int cases = 0;
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++)
        for (size_t k = 0; k < sizeof temps / sizeof *temps; k++) {
            const int64_t c = widths[w], n = NR * c;
            const long double T = temps[k];
            kdt_fill_normal(&r, s0, (size_t)n, 2.0);
            kdt_fill_normal(&r, t, (size_t)n, 1.0);
            long double rl[NR];
            for (int i = 0; i < NR; i++) {
                const float *si = s0 + i * c, *ti = t + i * c;
                long double mt = -INFINITY, ms = -INFINITY, zt = 0.0L, zs = 0.0L;
                for (int64_t j = 0; j < c; j++) {
                    mt = fmaxl(mt, ti[j]);
                    ms = fmaxl(ms, si[j] / T);
                }
                for (int64_t j = 0; j < c; j++) {
                    zt += expl(ti[j] - mt);
                    zs += expl(si[j] / T - ms);
                }
                rl[i] = 0.0L;
                for (int64_t j = 0; j < c; j++) {
                    const long double lp = ti[j] - mt - logl(zt), lq = si[j] / T - ms - logl(zs);
                    rl[i] += expl(lp) * (lp - lq);
                    rg[i * c + j] = (expl(lq) - expl(lp)) / T;
                }
            }
            for (int in_place = 0; in_place < 2; in_place++)
                for (int thr = 1; thr <= 2; thr++) {
                    memcpy(s, s0, (size_t)n * sizeof *s);
                    float *gb = in_place ? s : thr == 1 ? g : g1, per[NR], loss;
                    kd_loss *h;
                    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_STRONG_WEAK, c), KD_OK);
                    kd_loss_set_float(h, KD_PARAM_TEMPERATURE, (double)T);
                    kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.0);
                    kd_loss_set_int(h, KD_PARAM_THREADS, thr);
                    kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
                    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
                    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
                    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gb, c);
                    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
                    ck_assert_int_eq(kd_loss_forward_backward(h, NR, &loss), KD_OK);
                    kd_loss_destroy(h);
                    for (int i = 0; i < NR; i++) {
                        ck_assert_msg(fabsl(per[i] - rl[i]) <= 1e-5L * rl[i] + 1e-6L,
                                      "C %lld T %g row %d: loss %.9g, reference %.12Lg",
                                      (long long)c, (double)T, i, per[i], rl[i]);
                        for (int64_t j = 0; j < c; j++) {
                            const long double e = rg[i * c + j];
                            ck_assert_msg(fabsl(gb[i * c + j] - e) <= 1e-4L * fabsl(e) + 1e-7L,
                                          "C %lld T %g row %d: g[%lld] = %.9g, reference %.12Lg",
                                          (long long)c, (double)T, i, (long long)j, gb[i * c + j],
                                          e);
                        }
                        cases++;
                    }
                    if (!in_place && thr == 2) /* the thread count changes no bit */
                        ck_assert(memcmp(g, g1, (size_t)n * sizeof *g) == 0);
                }
        }
    ck_assert_int_eq(cases, 6 * 3 * 2 * 2 * NR);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("strong_weak");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, mean_divides_by_the_kept_rows_and_matches_reference);
    tcase_add_test(tc, gradient_matches_finite_differences);
    tcase_add_test(tc, no_kept_row_gives_zero_and_inclusive_threshold_keeps_ties);
    tcase_add_test(tc, edge_shapes_extreme_logits_nan_and_in_place);
    tcase_add_test(tc, threads_give_identical_bits);
    tcase_add_test(tc, documented_errors);
    tcase_add_test(tc, confident_rows_keep_the_gradient_at_the_argmax_and_the_small_divergence);
    tcase_add_test(tc, float_rows_match_the_reference_at_every_width_and_temperature);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
