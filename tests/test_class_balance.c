/* KD_LOSS_CLASS_BALANCE: tllib self-ensemble ClassBalanceLoss,
 * (1/C) sum_c BCE(mean_i p_ic, 1/C), a batch loss with the gradient through
 * the batch mean. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { N = 37, C = 11, LD = 12 };

static void make(float *x, double *xd, uint64_t seed, int logits)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, x, N * LD, 2.0);
    if (!logits)
        for (int i = 0; i < N; i++) {
            double z[C], lp[C];
            for (int j = 0; j < C; j++)
                z[j] = x[i * LD + j];
            rst_log_softmax(z, C, 1.0, lp);
            for (int j = 0; j < C; j++)
                x[i * LD + j] = (float)exp(lp[j]);
        }
    rst_to_double(x, LD, N, C, xd);
}

static kd_loss *make_loss(const float *x, int logits, int64_t c, int64_t ld)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CLASS_BALANCE, c), KD_OK);
    ck_assert_int_eq(
        kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, logits ? KD_INPUT_LOGITS : KD_INPUT_PROBABILITIES),
        KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, x, ld), KD_OK);
    return h;
}

typedef struct {
    int logits;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    return rst_class_balance(N, C, x, ((fd_ctx *)ctx)->logits);
}

START_TEST(loss_and_gradient_match_reference_and_finite_differences)
{
    for (int logits = 0; logits < 2; logits++) {
        float x[N * LD], g[N * LD], loss, up = 0.75f;
        double xd[N * C], fd[N * C];
        make(x, xd, 60 + logits, logits);
        kd_loss *h = make_loss(x, logits, C, LD);
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD), KD_OK);
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
        double ref = rst_class_balance(N, C, xd, logits);
        ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-7), "logits %d: %g vs %g", logits, loss, ref);
        fd_ctx f = {logits};
        rst_fd_grad(fd_fn, &f, xd, N * C, 1e-7, fd);
        ck_assert_double_lt(kdt_max_abs_diff(g, LD, fd, N, C), 1e-6);
        ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
        for (int k = 0; k < N * C; k++)
            fd[k] *= 0.75;
        ck_assert_double_lt(kdt_max_abs_diff(g, LD, fd, N, C), 1e-6);
        float l2 = -1.0f;
        ck_assert_int_eq(kd_loss_forward(h, N, &l2), KD_OK);
        ck_assert(l2 == loss);
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(column_sums_are_bit_identical_for_any_thread_count)
{
    enum { M = 300, W = 600 }; /* more columns than one column block */
    float *x = malloc(sizeof(float) * M * W), *g1 = malloc(sizeof(float) * M * W),
          *g2 = malloc(sizeof(float) * M * W);
    kdt_rng r;
    kdt_seed(&r, 61);
    kdt_fill_normal(&r, x, M * W, 3.0);
    kd_loss *h = make_loss(x, 1, W, W);
    float l1, l2;
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, W);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l1), KD_OK);
    kd_loss_set_int(h, KD_PARAM_THREADS, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g2, W);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l2), KD_OK);
    ck_assert(l1 == l2);
    ck_assert(memcmp(g1, g2, sizeof(float) * M * W) == 0);
    /* in place */
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, x, W);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l2), KD_OK);
    ck_assert(l1 == l2);
    ck_assert(memcmp(x, g1, sizeof(float) * M * W) == 0);
    kd_loss_destroy(h);
    free(x);
    free(g1);
    free(g2);
}
END_TEST

START_TEST(edge_shapes_and_extreme_logits)
{
    float loss, g[4];
    kd_loss *h;
    /* C = 1: mean 1 against target 1: 0 (PyTorch: 0 * -100 = 0) */
    float x1[3] = {2.0f, -7.0f, 1.0f};
    h = make_loss(x1, 1, 1, 1);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 3, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 0.0f && g[2] == 0.0f);
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK); /* empty batch: 0 */
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
    /* N = 1, C = 2, +-1e4: mean (1, 0), both logs clamped: loss 50 */
    float x2[2] = {1e4f, -1e4f};
    h = make_loss(x2, 1, 2, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, 50.0, 1e-6, 0));
    ck_assert(isfinite(g[0]) && isfinite(g[1]));
    kd_loss_destroy(h);
    /* a dominant class: 1 - mean is summed from the other class (float32
     * 1 - x would be 0 and clamp at -100) */
    float x3[4] = {0.0f, -21.0f, 0.0f, -21.0f};
    double xd[4] = {0, -21, 0, -21};
    h = make_loss(x3, 1, 2, 2);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    ck_assert_msg(kdt_close(loss, rst_class_balance(2, 2, xd, 1), 1e-5, 0), "%g vs %g", loss,
                  rst_class_balance(2, 2, xd, 1));
    kd_loss_destroy(h);
}
END_TEST

/* Issue 16, point 9: rows saturated on one class (softmax 1 - 5.6e-11 and
 * less).  Float p_m rounds to 1, and v_m - sum_k p_k v_k cancelled to 0: the
 * dominant class lost its gradient.  Double reference: 1 - x_c and
 * 1 - p_ic summed from the other classes, and the softmax backward in its
 * pairwise form g_ij = (1/N) p_ij sum_{c != j} p_ic (v_j - v_c), which has
 * no cancellation. */
static double saturated_reference(int64_t n, int64_t c, const double *z, double *g)
{
    double *p = malloc(sizeof(double) * (size_t)(n * c)), *v = malloc(sizeof(double) * (size_t)c);
    double loss = 0.0, y = 1.0 / (double)c;
    for (int64_t i = 0; i < n; i++)
        rst_log_softmax(z + i * c, c, 1.0, p + i * c);
    for (int64_t k = 0; k < n * c; k++)
        p[k] = exp(p[k]);
    for (int64_t j = 0; j < c; j++) {
        double x = 0.0, rest = 0.0; /* x_j and 1 - x_j */
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < c; k++)
                *(k == j ? &x : &rest) += p[i * c + k] / (double)n;
        double lx = log(x), lr = log(rest);
        loss -= y * (lx < -100 ? -100 : lx) + (1.0 - y) * (lr < -100 ? -100 : lr);
        double d = x * rest;
        v[j] = y * (x - y) / (d > 1e-12 ? d : 1e-12);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < c; k++)
                s += k == j ? 0.0 : p[i * c + k] * (v[j] - v[k]);
            g[i * c + j] = p[i * c + j] * s / (double)n;
        }
    free(p);
    free(v);
    return loss * y;
}

START_TEST(saturated_rows_keep_the_dominant_gradient)
{
    /* N = 1, C = 2, softmax (1 - 5.6e-11, 5.6e-11): dL/dz = +-(1/2 - 5.6e-11) */
    {
        float z[2] = {0.0f, -23.6f}, g[2], loss;
        double zd[2] = {0.0, -23.6}, gd[2];
        kd_loss *h = make_loss(z, 1, 2, 2);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
        ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
        const double ref = saturated_reference(1, 2, zd, gd);
        ck_assert(kdt_close(gd[0], 0.5, 1e-9, 0) && kdt_close(gd[1], -0.5, 1e-9, 0));
        ck_assert_msg(kdt_close(loss, ref, 1e-6, 0), "%.9g vs %.9g", loss, ref);
        ck_assert_msg(kdt_close(g[0], gd[0], 1e-5, 0) && kdt_close(g[1], gd[1], 1e-5, 0),
                      "g = (%g, %g), reference (%g, %g)", g[0], g[1], gd[0], gd[1]);
        kd_loss_destroy(h);
    }
    /* N = 3, C = 4, every row saturated on class 1 (in place too) */
    enum { SN = 3, SC = 4 };
    const double zd[SN * SC] = {-30, 0, -24, -27, -25, 1, -26, -23, -29, 0.5, -31, -24.5};
    double gd[SN * SC];
    float z[SN * SC], g[SN * SC], loss;
    for (int k = 0; k < SN * SC; k++)
        z[k] = (float)zd[k];
    const double ref = saturated_reference(SN, SC, zd, gd);
    kd_loss *h = make_loss(z, 1, SC, SC);
    for (int in_place = 0; in_place < 2; in_place++) {
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, in_place ? z : g, SC);
        ck_assert_int_eq(kd_loss_forward_backward(h, SN, &loss), KD_OK);
        ck_assert_msg(kdt_close(loss, ref, 1e-6, 0), "%.9g vs %.9g", loss, ref);
        const float *got = in_place ? z : g;
        for (int k = 0; k < SN * SC; k++)
            ck_assert_msg(kdt_close(got[k], gd[k], 1e-4, 1e-6 * fabs(gd[1])),
                          "in place %d: g[%d] = %g, reference %g", in_place, k, got[k], gd[k]);
    }
    ck_assert(fabs(gd[1]) > 0.1); /* the dominant class's share is not small */
    kd_loss_destroy(h);
}
END_TEST

/* A class ~95 under the others in every row: its softmax is subnormal in
 * float (the SIMD exp flushes it to 0), and its mean's log (about -95) is
 * above PyTorch's clamp at -100, so a flushed class would change the loss by
 * about (100 - 95) / C^2.  In place and not, logits and the split path. */
START_TEST(subnormal_probabilities_count)
{
    enum { SN = 4, SC = 3 };
    const double zd[SN * SC] = {0, -95, 1, 2, -94, 0, 0, -96, 0.5, -1, -95.5, 0};
    float z[SN * SC], g[SN * SC], loss;
    for (int k = 0; k < SN * SC; k++)
        z[k] = (float)zd[k];
    const double ref = rst_class_balance(SN, SC, zd, 1);
    kd_loss *h = make_loss(z, 1, SC, SC);
    ck_assert_int_eq(kd_loss_forward(h, SN, &loss), KD_OK);
    ck_assert_msg(kdt_close(loss, ref, 1e-5, 0), "forward %.9g vs %.9g", loss, ref);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, SC);
    ck_assert_int_eq(kd_loss_forward_backward(h, SN, &loss), KD_OK);
    ck_assert_msg(kdt_close(loss, ref, 1e-5, 0), "fused %.9g vs %.9g", loss, ref);
    for (int k = 0; k < SN * SC; k++)
        ck_assert(isfinite(g[k]));
    double st[SC + 1];
    ck_assert_int_eq(kd_loss_local_stats(h, SN, st), KD_OK);
    ck_assert(st[1] > 0.0);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, z, SC);
    ck_assert_int_eq(kd_loss_forward_backward(h, SN, &loss), KD_OK);
    ck_assert_msg(kdt_close(loss, ref, 1e-5, 0), "in place %.9g vs %.9g", loss, ref);
    ck_assert(memcmp(z, g, sizeof g) == 0);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(probabilities_outside_the_unit_interval_are_rejected_nothing_written)
{
    float p[4] = {0.5f, 0.5f, 1.9f, 0.2f}, g[4] = {9, 9, 9, 9}, loss = 9.0f;
    kd_loss *h = make_loss(p, 0, 2, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "class 0"));
    ck_assert(loss == 9.0f && g[0] == 9.0f && g[3] == 9.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_propagates_and_check_finite_rejects)
{
    float x[4] = {0.0f, NAN, 1.0f, 2.0f}, loss = 1.0f;
    kd_loss *h = make_loss(x, 1, 2, 2);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    ck_assert(isnan(loss));
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    loss = 1.0f;
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_ERR_NOT_FINITE);
    ck_assert(loss == 1.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(documented_errors)
{
    float x[N * LD], g[N * LD], loss = 3.0f, up = 1.0f;
    double xd[N * C];
    make(x, xd, 62, 1);
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CLASS_BALANCE, C), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, x, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, -2, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_forward(h, N, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_backward(h, N, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_MEAN), KD_OK);
    double lo, hi;
    int32_t open;
    ck_assert_int_eq(
        kd_loss_param_bounds(KD_LOSS_CLASS_BALANCE, KD_PARAM_REDUCTION, &lo, &hi, &open), KD_OK);
    ck_assert(lo == 0.0 && hi == 0.0);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_weights(h, g), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, g, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, x, LD), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, x, C - 1), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, x + 1, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    ck_assert(loss == 3.0f);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("class_balance");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, loss_and_gradient_match_reference_and_finite_differences);
    tcase_add_test(tc, column_sums_are_bit_identical_for_any_thread_count);
    tcase_add_test(tc, edge_shapes_and_extreme_logits);
    tcase_add_test(tc, saturated_rows_keep_the_dominant_gradient);
    tcase_add_test(tc, subnormal_probabilities_count);
    tcase_add_test(tc, probabilities_outside_the_unit_interval_are_rejected_nothing_written);
    tcase_add_test(tc, nan_propagates_and_check_finite_rejects);
    tcase_add_test(tc, documented_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
