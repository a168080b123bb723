/* KD_LOSS_WORST_CASE: DST WorstCaseEstimationLoss(eta'),
 *   eta' CE(y_l_adv, argmax y_l) + mean -log(min(1 - softmax(y_u_adv)[argmax y_u] + 1e-6, 1)),
 * two batches of their own sizes, gradients to both adversarial inputs. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { NL = 13, NU = 21, C = 9, LDL = 10, LDU = 12 };

typedef struct {
    float lm[NL * LDL], la[NL * LDL], um[NU * LDU], ua[NU * LDU], gl[NL * LDL], gu[NU * LDU];
    double lmd[NL * C], lad[NL * C], umd[NU * C], uad[NU * C];
} data;

static void make(data *d, uint64_t seed)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, d->lm, NL * LDL, 2.0);
    kdt_fill_normal(&r, d->la, NL * LDL, 2.0);
    kdt_fill_normal(&r, d->um, NU * LDU, 2.0);
    kdt_fill_normal(&r, d->ua, NU * LDU, 2.0);
    rst_to_double(d->lm, LDL, NL, C, d->lmd);
    rst_to_double(d->la, LDL, NL, C, d->lad);
    rst_to_double(d->um, LDU, NU, C, d->umd);
    rst_to_double(d->ua, LDU, NU, C, d->uad);
}

static kd_loss *make_loss(data *d, double eta)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_WORST_CASE, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ETA_PRIME, eta), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, NU), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, d->lm, LDL), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, d->la, LDL), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, d->um, LDU), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, d->ua, LDU), KD_OK);
    return h;
}

typedef struct {
    data *d;
    int red, unlabeled;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    fd_ctx *f = ctx;
    data *d = f->d;
    return f->unlabeled ? rst_worst_case(NL, NU, C, d->lmd, d->lad, d->umd, x, 2.0, f->red)
                        : rst_worst_case(NL, NU, C, d->lmd, x, d->umd, d->uad, 2.0, f->red);
}

START_TEST(loss_and_both_gradients_match_reference_and_finite_differences)
{
    data d;
    make(&d, 80);
    kd_loss *h = make_loss(&d, 2.0);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, d.gl, LDL), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, d.gu, LDU), KD_OK);
    for (int red = 0; red < 2; red++) {
        float loss, up = 0.5f;
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
        ck_assert_int_eq(kd_loss_forward_backward(h, NL, &loss), KD_OK);
        double ref = rst_worst_case(NL, NU, C, d.lmd, d.lad, d.umd, d.uad, 2.0, red);
        ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-6), "red %d: %g vs %g", red, loss, ref);
        double fl[NL * C], fu[NU * C];
        fd_ctx f = {&d, red, 0};
        rst_fd_grad(fd_fn, &f, d.lad, NL * C, 1e-6, fl);
        f.unlabeled = 1;
        rst_fd_grad(fd_fn, &f, d.uad, NU * C, 1e-6, fu);
        ck_assert_double_lt(kdt_max_abs_diff(d.gl, LDL, fl, NL, C), 2e-5);
        ck_assert_double_lt(kdt_max_abs_diff(d.gu, LDU, fu, NU, C), 2e-5);
        /* backward with an upstream, one gradient skipped */
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, NULL, 0), KD_OK);
        memset(d.gl, 0, sizeof d.gl);
        ck_assert_int_eq(kd_loss_backward(h, NL, &up), KD_OK);
        for (int k = 0; k < NU * C; k++)
            fu[k] *= 0.5;
        ck_assert_double_lt(kdt_max_abs_diff(d.gu, LDU, fu, NU, C), 1e-5);
        ck_assert(d.gl[0] == 0.0f);
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, d.gl, LDL), KD_OK);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(one_minus_p_keeps_precision_and_the_clamp_zeroes_the_term)
{
    /* row 0: p_k = 1 - 7.6e-10 (tllib's float 1 - p is 0 there);
     * row 1: p_k = 2e-9 < 1e-6: min(., 1) clamps: term 0, gradient 0 */
    float m[4] = {1.0f, 0.0f, 0.0f, 1.0f}, a[4] = {0.0f, -21.0f, 0.0f, -20.0f}, g[4], loss;
    double md[4] = {1, 0, 0, 1}, ad[4] = {0, -21, 0, -20};
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_WORST_CASE, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, m, 2);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, a, 2);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, m, 2);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, a, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, g, 2);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ETA_PRIME, 0.0), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    double q = exp(-21.0) / (1.0 + exp(-21.0));
    ck_assert(kdt_close(loss, -log(q + 1e-6), 1e-6, 0));
    ck_assert(kdt_close(loss, rst_worst_case(0, 2, 2, md, ad, md, ad, 0.0, 1), 1e-6, 0));
    ck_assert(g[2] == 0.0f && g[3] == 0.0f);
    ck_assert(kdt_close(g[0], (1 - q) * q / (q + 1e-6), 1e-5, 0));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(batch_sizes_edge_shapes_and_in_place)
{
    data d;
    make(&d, 81);
    kd_loss *h = make_loss(&d, 1.5);
    float loss;
    /* no unlabeled rows: the labeled term only; no labeled rows: the unlabeled term */
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, 0), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, NL, &loss), KD_OK);
    ck_assert(
        kdt_close(loss, rst_worst_case(NL, 0, C, d.lmd, d.lad, d.umd, d.uad, 1.5, 0), 1e-5, 0));
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, NU), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, 0, &loss), KD_OK);
    ck_assert(
        kdt_close(loss, rst_worst_case(0, NU, C, d.lmd, d.lad, d.umd, d.uad, 1.5, 0), 1e-5, 0));
    /* default unlabeled rows = n */
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, -1), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, NL, &loss), KD_OK);
    ck_assert(
        kdt_close(loss, rst_worst_case(NL, NL, C, d.lmd, d.lad, d.umd, d.uad, 1.5, 0), 1e-5, 0));
    ck_assert_int_eq(kd_loss_forward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    /* in place on both adversarial inputs, several threads: same bits */
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, NU), KD_OK);
    kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, d.gl, LDL);
    kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, d.gu, LDU);
    float l1, l2;
    ck_assert_int_eq(kd_loss_forward_backward(h, NL, &l1), KD_OK);
    kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, d.la, LDL);
    kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, d.ua, LDU);
    kd_loss_set_int(h, KD_PARAM_THREADS, 3);
    ck_assert_int_eq(kd_loss_forward_backward(h, NL, &l2), KD_OK);
    ck_assert(l1 == l2);
    for (int i = 0; i < NL; i++)
        ck_assert(memcmp(d.la + i * LDL, d.gl + i * LDL, C * sizeof(float)) == 0);
    for (int i = 0; i < NU; i++)
        ck_assert(memcmp(d.ua + i * LDU, d.gu + i * LDU, C * sizeof(float)) == 0);
    kd_loss_destroy(h);
    /* C = 1: CE 0; 1 - p = 0 exactly: -log(1e-6), no gradient */
    float one[1] = {3.0f}, g1[1], g2[1];
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_WORST_CASE, 1), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, one, 1);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, one, 1);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, one, 1);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, one, 1);
    kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, g1, 1);
    kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, g2, 1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, -log(1e-6), 1e-6, 0));
    ck_assert(g1[0] == 0.0f && g2[0] == 0.0f);
    kd_loss_destroy(h);
    /* +-1e4 logits */
    float big_m[2] = {1e4f, -1e4f}, big_a[2] = {-1e4f, 1e4f}, gb[2], gc[2];
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_WORST_CASE, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, big_m, 2);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, big_a, 2);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, big_m, 2);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, big_a, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, gb, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, gc, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, 2e4, 1e-6, 0)); /* CE 2e4; unlabeled clamped to 0 */
    ck_assert(gb[0] == -1.0f && gb[1] == 1.0f && gc[0] == 0.0f && gc[1] == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_propagates_and_check_finite_rejects)
{
    float m[2] = {0.0f, 1.0f}, a[2] = {NAN, 0.0f}, loss = 1.0f;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_WORST_CASE, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, m, 2);
    kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, a, 2);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, m, 2);
    kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, m, 2);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(isnan(loss));
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    loss = 1.0f;
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "labeled_adv"));
    ck_assert(loss == 1.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(documented_errors)
{
    data d;
    make(&d, 82);
    kd_loss *h;
    float loss = 6.0f, up = 1.0f;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_WORST_CASE, C), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d.la, LDL), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d.la, LDL), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.gl, LDL), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, d.gl, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_weights(h, d.gl), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, d.la, C - 1), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ETA_PRIME, -1.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, -2), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THRESHOLD_MODE, 0), KD_ERR_UNSUPPORTED);
    /* each missing input is named */
    ck_assert_int_eq(kd_loss_forward(h, NL, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "labeled_main"));
    kd_loss_destroy(h);
    h = make_loss(&d, 1.0);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, NULL, 0), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, NL, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "unlabeled_adv"));
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, d.ua, LDU), KD_OK);
    ck_assert_int_eq(kd_loss_backward(h, NL, &up), KD_ERR_MISSING_INPUT); /* no gradient bound */
    /* a gradient over another input, or over the other gradient */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, d.um, LDL), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, NL, &loss), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, d.gu, LDL), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, d.gu + 1, LDU), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, NL, &loss), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_loss_forward(h, -1, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_forward(h, NL, NULL), KD_ERR_NULL_POINTER);
    ck_assert(loss == 6.0f);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("worst_case");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, loss_and_both_gradients_match_reference_and_finite_differences);
    tcase_add_test(tc, one_minus_p_keeps_precision_and_the_clamp_zeroes_the_term);
    tcase_add_test(tc, batch_sizes_edge_shapes_and_in_place);
    tcase_add_test(tc, nan_propagates_and_check_finite_rejects);
    tcase_add_test(tc, documented_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
