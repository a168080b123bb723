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
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, logits ? KD_INPUT_LOGITS : KD_INPUT_PROBABILITIES), KD_OK);
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
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_MEAN), KD_OK);
    double lo, hi;
    int32_t open;
    ck_assert_int_eq(kd_loss_param_bounds(KD_LOSS_CLASS_BALANCE, KD_PARAM_REDUCTION, &lo, &hi, &open), KD_OK);
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
