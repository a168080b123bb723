/* KD_LOSS_CONSISTENCY: tllib Pi-model ConsistencyLoss, mask_i * D(p1_i, p2_i)
 * with D = squared L2 of probabilities, KL(p2 || p1) or JS, on logits or
 * probabilities, gradients to both inputs. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { N = 23, C = 6, LD = 8 };

typedef struct {
    float a[N * LD], b[N * LD], w[N], ga[N * LD], gb[N * LD];
    double ad[N * C], bd[N * C], wd[N];
} data;

/* a row of logits replaced by its softmax (c <= 1000) */
static void to_probabilities(float *x, int64_t c)
{
    double z[1000] = {0}, lp[1000];
    for (int64_t j = 0; j < c; j++)
        z[j] = x[j];
    rst_log_softmax(z, c, 1.0, lp);
    for (int64_t j = 0; j < c; j++)
        x[j] = (float)exp(lp[j]);
}

/* logits, or rows of probabilities (softmax of random logits) */
static void make(data *d, uint64_t seed, int logits)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, d->a, N * LD, 2.0);
    kdt_fill_normal(&r, d->b, N * LD, 2.0);
    for (int i = 0; i < N; i++)
        d->wd[i] = d->w[i] = (float)(i % 4 ? kdt_uniform(&r) : 0.0); /* a 0/1-ish mask */
    if (!logits)
        for (int i = 0; i < N; i++) {
            to_probabilities(d->a + i * LD, C);
            to_probabilities(d->b + i * LD, C);
        }
    rst_to_double(d->a, LD, N, C, d->ad);
    rst_to_double(d->b, LD, N, C, d->bd);
}

static kd_loss *make_loss(data *d, int logits, int dist)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, C), KD_OK);
    ck_assert_int_eq(
        kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, logits ? KD_INPUT_LOGITS : KD_INPUT_PROBABILITIES),
        KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DISTANCE, dist), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->a, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->b, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_weights(h, d->w), KD_OK);
    return h;
}

START_TEST(every_distance_input_type_and_reduction_matches_reference)
{
    for (int logits = 0; logits < 2; logits++)
        for (int dist = 0; dist < 3; dist++) {
            data d;
            make(&d, 20 + dist, logits);
            kd_loss *h = make_loss(&d, logits, dist);
            float loss[N], per[N];
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0), KD_OK);
            for (int red = 0; red < 3; red++) {
                double rper[N];
                double ref = rst_consistency(N, C, d.ad, d.bd, logits, dist, d.wd, red, rper);
                ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
                ck_assert_int_eq(kd_loss_forward(h, N, loss), KD_OK);
                if (red < 2)
                    ck_assert_msg(kdt_close(loss[0], ref, 1e-5, 1e-6),
                                  "logits %d dist %d red %d: %g vs %g", logits, dist, red, loss[0],
                                  ref);
                for (int i = 0; i < N; i++)
                    ck_assert(kdt_close(per[i], rper[i], 1e-5, 1e-6));
            }
            kd_loss_destroy(h);
        }
}
END_TEST

typedef struct {
    data *d;
    int logits, dist, second;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    fd_ctx *f = ctx;
    return f->second ? rst_consistency(N, C, f->d->ad, x, f->logits, f->dist, f->d->wd, 0, NULL)
                     : rst_consistency(N, C, x, f->d->bd, f->logits, f->dist, f->d->wd, 0, NULL);
}

START_TEST(gradients_to_both_inputs_match_finite_differences)
{
    for (int logits = 0; logits < 2; logits++)
        for (int dist = 0; dist < 3; dist++) {
            data d;
            make(&d, 30 + dist, logits);
            kd_loss *h = make_loss(&d, logits, dist);
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.ga, LD), KD_OK);
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, LD), KD_OK);
            float loss;
            ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
            double fd[N * C];
            fd_ctx f = {&d, logits, dist, 0};
            rst_fd_grad(fd_fn, &f, d.ad, N * C, 1e-7, fd);
            ck_assert_msg(kdt_max_abs_diff(d.ga, LD, fd, N, C) < 1e-5,
                          "first: logits %d dist %d: %g", logits, dist,
                          kdt_max_abs_diff(d.ga, LD, fd, N, C));
            f.second = 1;
            rst_fd_grad(fd_fn, &f, d.bd, N * C, 1e-7, fd);
            ck_assert_msg(kdt_max_abs_diff(d.gb, LD, fd, N, C) < 1e-5,
                          "second: logits %d dist %d: %g", logits, dist,
                          kdt_max_abs_diff(d.gb, LD, fd, N, C));
            /* NULL skips one gradient; backward scales by upstream */
            float gb1[N * LD], up = 3.0f;
            memcpy(gb1, d.gb, sizeof gb1);
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0), KD_OK);
            ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
            for (int i = 0; i < N; i++)
                for (int j = 0; j < C; j++)
                    ck_assert(kdt_close(d.gb[i * LD + j], 3.0 * gb1[i * LD + j], 1e-6, 1e-9));
            kd_loss_destroy(h);
        }
}
END_TEST

START_TEST(both_gradients_in_place)
{
    data d;
    make(&d, 40, 1);
    kd_loss *h = make_loss(&d, 1, KD_DISTANCE_JS);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.ga, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, LD), KD_OK);
    float l1, l2;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l1), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.a, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.b, LD), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THREADS, 2), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l2), KD_OK);
    ck_assert(l1 == l2);
    for (int i = 0; i < N; i++) {
        ck_assert(memcmp(d.a + i * LD, d.ga + i * LD, C * sizeof(float)) == 0);
        ck_assert(memcmp(d.b + i * LD, d.gb + i * LD, C * sizeof(float)) == 0);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(edge_shapes_extreme_logits_and_zero_probabilities)
{
    kd_loss *h;
    float loss, g1[2], g2[2];
    /* C = 1 logits: both softmaxes are 1, D = 0 */
    float a1[1] = {5.0f}, b1[1] = {-3.0f};
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 1), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, a1, 1);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, b1, 1);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
    /* N = 1, C = 2, opposite one-hots from +-1e4 logits */
    float a[2] = {1e4f, -1e4f}, b[2] = {-1e4f, 1e4f};
    const double expect[3] = {2.0, 2e4, log(2.0)};
    for (int dist = 0; dist < 3; dist++) {
        ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 2), KD_OK);
        kd_loss_set_int(h, KD_PARAM_DISTANCE, dist);
        kd_loss_bind_matrix(h, KD_ARG_STUDENT, a, 2);
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, b, 2);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, 2);
        kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, g2, 2);
        ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
        ck_assert_msg(kdt_close(loss, expect[dist], 1e-6, 0), "dist %d: %g", dist, loss);
        ck_assert(isfinite(g1[0]) && isfinite(g1[1]) && isfinite(g2[0]) && isfinite(g2[1]));
        kd_loss_destroy(h);
    }
    /* probabilities with zeros: 0 log 0 = 0 and a zero gradient there */
    float p1[3] = {0.5f, 0.5f, 0.0f}, p2[3] = {0.25f, 0.75f, 0.0f}, h1[3], h2[3];
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 3), KD_OK);
    kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, KD_INPUT_PROBABILITIES);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, p1, 3);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, p2, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, h1, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, h2, 3);
    for (int dist = 1; dist < 3; dist++) {
        kd_loss_set_int(h, KD_PARAM_DISTANCE, dist);
        ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
        double pd1[3] = {0.5, 0.5, 0}, pd2[3] = {0.25, 0.75, 0};
        ck_assert(
            kdt_close(loss, rst_consistency(1, 3, pd1, pd2, 0, dist, NULL, 0, NULL), 1e-6, 1e-7));
        ck_assert(h1[2] == 0.0f && h2[2] == 0.0f);
    }
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_propagates_and_check_finite_rejects)
{
    float a[2] = {NAN, 1.0f}, b[2] = {0.0f, 1.0f}, loss = 2.0f;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, a, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, b, 2);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(isnan(loss));
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    loss = 2.0f;
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_ERR_NOT_FINITE);
    ck_assert(loss == 2.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(documented_errors)
{
    data d;
    make(&d, 50, 1);
    kd_loss *h = make_loss(&d, 1, KD_DISTANCE_L2);
    float loss = 4.0f, up = 1.0f;
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DISTANCE, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, 2), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, d.w, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, C - 1), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_ERR_MISSING_INPUT);
    /* the second input's gradient over the student */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.a + 1, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    /* ... over the second input with another stride */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.b, LD + 1), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N - 2, &loss), KD_ERR_ALIASING);
    ck_assert(loss == 4.0f);
    /* two teachers */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, LD), KD_OK);
    const float *ts[2] = {d.b, d.b};
    int64_t lds[2] = {LD, LD};
    ck_assert_int_eq(kd_loss_bind_teachers(h, 2, ts, lds, NULL), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "exactly one"));
    ck_assert(loss == 4.0f);
    kd_loss_destroy(h);
}
END_TEST

/* The SIMD row (L2 on either input, KL and JS of logits) at lengths around the
 * vector widths and long rows (several accumulation blocks): loss and both
 * gradients against a double reference, logits of +-1e4 in some rows,
 * in place giving the same bits as out of place. */
enum { LN = 5, LMAX = 1000 };

/* double reference gradients of row i: L2 v = 2 (p1 - p2), through the
 * softmax for logits; KL g1 = p1 - p2, g2 = p2 (log p2 - log p1 - D); JS
 * gk = pk ((log pk - log M) / 2 - dk / 2), dk = KL(pk || M) */
static void ref_grads(const double *a, const double *b, int64_t c, int logits, int dist, double *g1,
                      double *g2)
{
    double lp1[LMAX] = {0}, lp2[LMAX] = {0}, p1[LMAX], p2[LMAX], t1 = 0, t2 = 0, d = 0;
    if (logits) {
        rst_log_softmax(a, c, 1.0, lp1);
        rst_log_softmax(b, c, 1.0, lp2);
    }
    for (int64_t j = 0; j < c; j++) {
        p1[j] = logits ? exp(lp1[j]) : a[j];
        p2[j] = logits ? exp(lp2[j]) : b[j];
        t1 += 2.0 * p1[j] * (p1[j] - p2[j]);
        t2 -= 2.0 * p2[j] * (p1[j] - p2[j]);
        if (dist == KD_DISTANCE_KL && p2[j] > 0)
            d += p2[j] * (lp2[j] - lp1[j]);
    }
    double lm[LMAX], d1 = 0, d2 = 0;
    for (int64_t j = 0; j < c && dist == KD_DISTANCE_JS; j++) {
        const double u = lp1[j] > lp2[j] ? lp1[j] : lp2[j], v = lp1[j] > lp2[j] ? lp2[j] : lp1[j];
        lm[j] = u + log1p(exp(v - u)) - log(2.0);
        d1 += p1[j] > 0 ? p1[j] * (lp1[j] - lm[j]) : 0.0;
        d2 += p2[j] > 0 ? p2[j] * (lp2[j] - lm[j]) : 0.0;
    }
    for (int64_t j = 0; j < c; j++) {
        const double v = 2.0 * (p1[j] - p2[j]);
        if (dist == KD_DISTANCE_JS) {
            g1[j] = p1[j] > 0 ? p1[j] * (0.5 * (lp1[j] - lm[j]) - 0.5 * d1) : 0.0;
            g2[j] = p2[j] > 0 ? p2[j] * (0.5 * (lp2[j] - lm[j]) - 0.5 * d2) : 0.0;
        } else if (dist == KD_DISTANCE_KL) {
            g1[j] = p1[j] - p2[j];
            g2[j] = p2[j] > 0 ? p2[j] * (lp2[j] - lp1[j] - d) : 0.0;
        } else if (logits) {
            g1[j] = p1[j] * (v - t1);
            g2[j] = p2[j] * (-v - t2);
        } else {
            g1[j] = v;
            g2[j] = -v;
        }
    }
}

START_TEST(simd_rows_of_every_length_match_reference_in_place_and_with_extreme_logits)
{
    static const int lens[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 129, 257, 1000};
    static float a[LN * LMAX], b[LN * LMAX], ga[LN * LMAX], gb[LN * LMAX], ia[LN * LMAX],
        ib[LN * LMAX];
    static double ad[LN * LMAX], bd[LN * LMAX], r1[LMAX], r2[LMAX];
    kdt_rng rng;
    kdt_seed(&rng, 77);
    for (int li = 0; li < (int)(sizeof lens / sizeof lens[0]); li++) {
        const int c = lens[li];
        for (int logits = 0; logits < 2; logits++)
            for (int dist = 0; dist < 3; dist++) {
                if (dist != KD_DISTANCE_L2 && !logits)
                    continue;
                kdt_fill_normal(&rng, a, (size_t)LN * c, 3.0);
                kdt_fill_normal(&rng, b, (size_t)LN * c, 3.0);
                if (logits) /* rows 1 and 3: one-hot-like rows from +-1e4 logits */
                    for (int j = 0; j < c; j++) {
                        a[c + j] = j == c / 2 ? 1e4f : -1e4f;
                        b[c + j] = j == c / 3 ? 1e4f : -1e4f;
                        a[3 * c + j] = j % 2 ? 1e4f : -1e4f;
                    }
                else
                    for (int i = 0; i < LN; i++) {
                        to_probabilities(a + i * c, c);
                        to_probabilities(b + i * c, c);
                    }
                rst_to_double(a, c, LN, c, ad);
                rst_to_double(b, c, LN, c, bd);
                kd_loss *h;
                ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, c), KD_OK);
                kd_loss_set_int(h, KD_PARAM_INPUT_TYPE,
                                logits ? KD_INPUT_LOGITS : KD_INPUT_PROBABILITIES);
                kd_loss_set_int(h, KD_PARAM_DISTANCE, dist);
                kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, a, c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, b, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, ga, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, gb, c);
                float loss, loss2;
                ck_assert_int_eq(kd_loss_forward_backward(h, LN, &loss), KD_OK);
                const double ref =
                    rst_consistency(LN, c, ad, bd, logits, dist, NULL, KD_REDUCTION_SUM, NULL);
                ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-6), "c %d logits %d dist %d: %g vs %g",
                              c, logits, dist, loss, ref);
                for (int i = 0; i < LN; i++) {
                    ref_grads(ad + i * c, bd + i * c, c, logits, dist, r1, r2);
                    /* rows of +-1e4: log p of about -2e4 in float (ulp 2e-3), e.g. KL's
                     * g2 = p2 (log p2 - log p1 - D) of ~80 from differences of ~2e4 */
                    const double rt = logits && (i == 1 || i == 3) ? 1e-4 : 1e-5;
                    for (int j = 0; j < c; j++)
                        ck_assert_msg(kdt_close(ga[i * c + j], r1[j], rt, 1e-6) &&
                                          kdt_close(gb[i * c + j], r2[j], rt, 1e-6),
                                      "c %d logits %d dist %d row %d j %d: %g/%g %g/%g", c, logits,
                                      dist, i, j, ga[i * c + j], r1[j], gb[i * c + j], r2[j]);
                }
                /* in place: the same bits */
                memcpy(ia, a, sizeof(float) * (size_t)LN * c);
                memcpy(ib, b, sizeof(float) * (size_t)LN * c);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, ia, c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, ib, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, ia, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, ib, c);
                ck_assert_int_eq(kd_loss_forward_backward(h, LN, &loss2), KD_OK);
                ck_assert(loss2 == loss);
                ck_assert(memcmp(ia, ga, sizeof(float) * (size_t)LN * c) == 0);
                ck_assert(memcmp(ib, gb, sizeof(float) * (size_t)LN * c) == 0);
                kd_loss_destroy(h);
            }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("consistency");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, every_distance_input_type_and_reduction_matches_reference);
    tcase_add_test(tc, gradients_to_both_inputs_match_finite_differences);
    tcase_add_test(tc, both_gradients_in_place);
    tcase_add_test(tc, edge_shapes_extreme_logits_and_zero_probabilities);
    tcase_add_test(tc, nan_propagates_and_check_finite_rejects);
    tcase_add_test(tc, documented_errors);
    tcase_add_test(tc, simd_rows_of_every_length_match_reference_in_place_and_with_extreme_logits);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
