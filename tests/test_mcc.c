/* KD_LOSS_MCC: tllib MinimumClassConfusionLoss(temperature), a batch loss
 * through cblas_sgemm, with tllib's column broadcast and the entropy weights
 * held constant in the gradient. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { N = 37, C = 11, LD = 13 };

static kd_loss *make_loss(const float *z, int64_t c, int64_t ld, double temp)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_MCC, c), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, temp), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, z, ld), KD_OK);
    return h;
}

typedef struct {
    double temp;
    const double *w;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    fd_ctx *f = ctx;
    return rst_mcc(N, C, x, f->temp, f->w, NULL);
}

START_TEST(loss_and_gradient_match_reference_and_finite_differences)
{
    const double temps[2] = {1.0, 2.5};
    for (int k = 0; k < 2; k++) {
        float z[N * LD], g[N * LD], loss, up = -2.0f;
        double zd[N * C], fd[N * C], w[N];
        kdt_rng r;
        kdt_seed(&r, 70 + k);
        kdt_fill_normal(&r, z, N * LD, 3.0);
        rst_to_double(z, LD, N, C, zd);
        kd_loss *h = make_loss(z, C, LD, temps[k]);
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD), KD_OK);
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
        double ref = rst_mcc(N, C, zd, temps[k], NULL, w);
        ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-7), "T %g: %g vs %g", temps[k], loss, ref);
        fd_ctx f = {temps[k], w}; /* the entropy weights are constants */
        rst_fd_grad(fd_fn, &f, zd, N * C, 1e-6, fd);
        ck_assert_msg(kdt_max_abs_diff(g, LD, fd, N, C) < 2e-6, "%g",
                      kdt_max_abs_diff(g, LD, fd, N, C));
        ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
        for (int j = 0; j < N * C; j++)
            fd[j] *= -2.0;
        ck_assert_double_lt(kdt_max_abs_diff(g, LD, fd, N, C), 4e-6);
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(threads_and_in_place_give_identical_bits)
{
    enum { M = 200, W = 40 };
    float *z = malloc(sizeof(float) * M * W), *g1 = malloc(sizeof(float) * M * W),
          *g2 = malloc(sizeof(float) * M * W);
    kdt_rng r;
    kdt_seed(&r, 72);
    kdt_fill_normal(&r, z, M * W, 2.0);
    kd_loss *h = make_loss(z, W, W, 2.0);
    float l1, l2;
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, W);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l1), KD_OK);
    kd_loss_set_int(h, KD_PARAM_THREADS, 4);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g2, W);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l2), KD_OK);
    ck_assert(l1 == l2);
    ck_assert(memcmp(g1, g2, sizeof(float) * M * W) == 0);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, z, W);
    ck_assert_int_eq(kd_loss_forward_backward(h, M, &l2), KD_OK);
    ck_assert(l1 == l2);
    ck_assert(memcmp(z, g1, sizeof(float) * M * W) == 0);
    kd_loss_destroy(h);
    free(z);
    free(g1);
    free(g2);
}
END_TEST

START_TEST(edge_shapes_and_a_zero_mass_class)
{
    float loss, g[6];
    kd_loss *h;
    /* C = 1: A' = [1], loss 0 */
    float z1[2] = {3.0f, -1.0f};
    h = make_loss(z1, 1, 1, 1.0);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 0.0f && g[1] == 0.0f);
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
    /* N = 1, C = 2: A = w p p^T, loss = (p0 p1 / p1 + p1 p0 / p0) / 2 ... against the reference */
    float z2[2] = {0.3f, -0.4f};
    double zd2[2] = {0.3, -0.4};
    h = make_loss(z2, 2, 2, 1.0);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, rst_mcc(1, 2, zd2, 1.0, NULL, NULL), 1e-6, 1e-7));
    kd_loss_destroy(h);
    /* +-1e4 logits: class 2 has no mass (tllib: 0/0 = NaN; kdlib: 0) */
    float z3[6] = {1e4f, -1e4f, -1e4f, -1e4f, 1e4f, -1e4f};
    double zd3[6] = {1e4, -1e4, -1e4, -1e4, 1e4, -1e4};
    h = make_loss(z3, 3, 3, 1.0);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    ck_assert(isfinite(loss));
    ck_assert(kdt_close(loss, rst_mcc(2, 3, zd3, 1.0, NULL, NULL), 1e-6, 1e-7));
    for (int k = 0; k < 6; k++)
        ck_assert(isfinite(g[k]));
    kd_loss_destroy(h);
}
END_TEST

/* Issue 16, point 9: one class far below the others in every row (its P
 * near or below the bottom of float's normal range; tllib's 1 / r_k of that
 * class does not fit in float).  The loss was finite and the gradient NaN;
 * now both are the double reference's (the gradient its finite differences
 * with the entropy weights fixed), P as subnormal as float allows.  Where P
 * is below even float's subnormals (z / T more than ~103.9 under the row's
 * log-sum-exp) it is 0 and the class counts as a zero-mass one: loss and
 * gradient are the reference's with those logits at -Inf. */
typedef struct {
    int64_t n, c;
    double temp;
    const double *w;
} fd_ext;

static double fd_ext_fn(void *ctx, const double *x)
{
    const fd_ext *f = ctx;
    return rst_mcc(f->n, f->c, x, f->temp, f->w, NULL);
}

START_TEST(extreme_logits_loss_and_gradient_agree)
{
    enum { EN = 5, EC = 3 };
    /* P = e^-80 (normal float), e^-95 (subnormal), e^-110 (0 in float) */
    const double gaps[3] = {80.0, 95.0, 110.0};
    const double base[EN][EC] = {{0, 0, 1}, {2, 0, 0}, {0, 0, 0.5}, {1, 0, 3}, {-1, 0, 0.25}};
    for (int t = 0; t < 3; t++) {
        float z[EN * EC], g[EN * EC], loss = NAN;
        double zd[EN * EC], zr[EN * EC], fd[EN * EC], w[EN];
        for (int i = 0; i < EN; i++)
            for (int j = 0; j < EC; j++) {
                const double top = base[i][0] > base[i][2] ? base[i][0] : base[i][2];
                zd[i * EC + j] = j == 1 ? top - gaps[t] - 0.5 * i : base[i][j];
                z[i * EC + j] = (float)zd[i * EC + j];
                zr[i * EC + j] = t == 2 && j == 1 ? -INFINITY : zd[i * EC + j];
            }
        kd_loss *h = make_loss(z, EC, EC, 1.0);
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, EC), KD_OK);
        ck_assert_int_eq(kd_loss_forward_backward(h, EN, &loss), KD_OK);
        const double ref = rst_mcc(EN, EC, zr, 1.0, NULL, w);
        ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-7), "gap %g: loss %.9g vs %.9g", gaps[t], loss,
                      ref);
        fd_ext f = {EN, EC, 1.0, w};
        rst_fd_grad(fd_ext_fn, &f, zr, EN * EC, 1e-6, fd);
        double scale = 0.0;
        for (int k = 0; k < EN * EC; k++) {
            ck_assert_msg(isfinite(g[k]), "gap %g: g[%d] = %g", gaps[t], k, g[k]);
            if (!isfinite(fd[k])) /* -Inf logits: no gradient */
                fd[k] = 0.0;
            scale = fabs(fd[k]) > scale ? fabs(fd[k]) : scale;
        }
        ck_assert(scale > 1e-3);
        ck_assert_msg(kdt_max_abs_diff(g, EC, fd, EN, EC) < 1e-5 * scale, "gap %g: off by %g",
                      gaps[t], kdt_max_abs_diff(g, EC, fd, EN, EC));
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(nan_propagates_and_check_finite_rejects)
{
    float z[4] = {0.0f, 1.0f, NAN, 2.0f}, loss = 1.0f;
    kd_loss *h = make_loss(z, 2, 2, 1.0);
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
    float z[N * LD], loss = 3.0f, up = 1.0f;
    kdt_rng r;
    kdt_seed(&r, 73);
    kdt_fill_normal(&r, z, N * LD, 1.0);
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_MCC, C), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, z, LD), KD_OK);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, INFINITY), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_weights(h, z), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_WEIGHTS, z), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, z, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, z, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, z + LD, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    ck_assert(loss == 3.0f);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mcc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, loss_and_gradient_match_reference_and_finite_differences);
    tcase_add_test(tc, threads_and_in_place_give_identical_bits);
    tcase_add_test(tc, edge_shapes_and_a_zero_mass_class);
    tcase_add_test(tc, extreme_logits_loss_and_gradient_agree);
    tcase_add_test(tc, nan_propagates_and_check_finite_rejects);
    tcase_add_test(tc, documented_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
