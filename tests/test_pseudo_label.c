/* KD_LOSS_PSEUDO_LABEL: m_i * CE(s_i, argmax t_i), m_i = [max softmax(t_i) > tau]
 * (tllib ConfidenceBasedSelfTrainingLoss), against the double reference. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { N = 37, C = 11, LD = 13 };

typedef struct {
    float s[N * LD], t[N * LD], w[N], g[N * LD];
    double sd[N * C], td[N * C], wd[N];
} data;

static void make(data *d, uint64_t seed, double tscale)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, d->s, N * LD, 2.0);
    kdt_fill_normal(&r, d->t, N * LD, tscale);
    for (int i = 0; i < N; i++)
        d->w[i] = (float)kdt_uniform(&r);
    rst_to_double(d->s, LD, N, C, d->sd);
    rst_to_double(d->t, LD, N, C, d->td);
    for (int i = 0; i < N; i++)
        d->wd[i] = d->w[i];
}

static kd_loss *make_loss(data *d, double tau)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_PSEUDO_LABEL, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, tau), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->s, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->t, LD), KD_OK);
    return h;
}

START_TEST(loss_mask_and_labels_match_reference_in_every_reduction)
{
    data d;
    make(&d, 1, 3.0);
    kd_loss *h = make_loss(&d, 0.6);
    ck_assert_int_eq(kd_loss_bind_weights(h, d.w), KD_OK);
    float mask[N], per[N], loss[N];
    int32_t lab[N];
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, mask, 0), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, lab), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0), KD_OK);
    rst_thresh th = {0.6, 0, NULL};
    for (int red = 0; red < 3; red++) {
        double rper[N], rmask[N];
        int32_t rlab[N];
        double ref = rst_pseudo_label(N, C, d.sd, d.td, &th, d.wd, red, rper, rmask, rlab);
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
        ck_assert_int_eq(kd_loss_forward(h, N, loss), KD_OK);
        if (red < 2)
            ck_assert_msg(kdt_close(loss[0], ref, 1e-5, 1e-6), "red %d: %g vs %g", red, loss[0],
                          ref);
        int kept = 0;
        for (int i = 0; i < N; i++) {
            ck_assert(kdt_close(per[i], rper[i], 1e-5, 1e-6));
            if (red == 2)
                ck_assert(kdt_close(loss[i], rper[i], 1e-5, 1e-6));
            ck_assert(mask[i] == (float)rmask[i]);
            ck_assert_int_eq(lab[i], rlab[i]);
            kept += mask[i] != 0.0f;
        }
        ck_assert(kept > 3 && kept < N - 3); /* the data exercises both sides */
    }
    kd_loss_destroy(h);
}
END_TEST

typedef struct {
    data *d;
    rst_thresh th;
    int red;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    fd_ctx *f = ctx;
    return rst_pseudo_label(N, C, x, f->d->td, &f->th, f->d->wd, f->red, NULL, NULL, NULL);
}

START_TEST(gradient_matches_finite_differences_and_backward_scales_it)
{
    data d;
    make(&d, 2, 3.0);
    kd_loss *h = make_loss(&d, 0.5);
    ck_assert_int_eq(kd_loss_bind_weights(h, d.w), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.g, LD), KD_OK);
    for (int red = 0; red < 2; red++) {
        fd_ctx f = {&d, {0.5, 0, NULL}, red};
        double fd[N * C];
        rst_fd_grad(fd_fn, &f, d.sd, N * C, 1e-6, fd);
        float loss;
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
        ck_assert_double_lt(kdt_max_abs_diff(d.g, LD, fd, N, C), 2e-6);
        float up = 2.5f, g1[N * LD];
        memcpy(g1, d.g, sizeof g1);
        ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < C; j++)
                ck_assert(kdt_close(d.g[i * LD + j], 2.5 * g1[i * LD + j], 1e-6, 1e-9));
    }
    /* NONE: one upstream value per row */
    float ups[N], per[N];
    for (int i = 0; i < N; i++)
        ups[i] = (float)(i % 3);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE), KD_OK);
    ck_assert_int_eq(kd_loss_backward(h, N, ups), KD_OK);
    float g_none[N * LD];
    memcpy(g_none, d.g, sizeof g_none);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, per), KD_OK);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            ck_assert(kdt_close(g_none[i * LD + j], ups[i] * d.g[i * LD + j], 1e-6, 1e-9));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(threshold_is_strict_by_default_and_inclusive_on_request)
{
    float s[2] = {0.3f, -0.2f}, t[2] = {1.0f, 1.0f}, loss, mask; /* confidence exactly 0.5 */
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_PSEUDO_LABEL, 2), KD_OK);
    int64_t mode;
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_THRESHOLD_MODE, &mode), KD_OK);
    ck_assert_int_eq(mode, KD_THRESHOLD_STRICT);
    double tau;
    ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_THRESHOLD, &tau), KD_OK);
    ck_assert(tau == 0.95);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_output(h, KD_ARG_MASK, &mask, 0);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(loss == 0.0f && mask == 0.0f);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THRESHOLD_MODE, KD_THRESHOLD_INCLUSIVE), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(mask == 1.0f);
    ck_assert(kdt_close(loss, log1p(exp(-0.5)), 1e-6, 0)); /* CE(s, 0), first index on ties */
    kd_loss_destroy(h);
}
END_TEST

START_TEST(per_class_thresholds_apply_by_the_pseudo_label)
{
    data d;
    make(&d, 3, 3.0);
    kd_loss *h = make_loss(&d, 0.99);
    float ct[C], mask[N], loss;
    double ctd[C];
    for (int j = 0; j < C; j++)
        ctd[j] = ct[j] = (float)(j % 2 ? 0.3 : 0.8);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, ct), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, mask, 0), KD_OK);
    rst_thresh th = {0.99, 0, ctd};
    double rmask[N];
    double ref = rst_pseudo_label(N, C, d.sd, d.td, &th, NULL, 0, NULL, rmask, NULL);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
    ck_assert(kdt_close(loss, ref, 1e-5, 1e-6));
    for (int i = 0; i < N; i++)
        ck_assert(mask[i] == (float)rmask[i]);
    /* unbinding restores the global threshold */
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, NULL), KD_OK);
    th.class_tau = NULL;
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
    ck_assert(kdt_close(loss, rst_pseudo_label(N, C, d.sd, d.td, &th, NULL, 0, NULL, NULL, NULL),
                        1e-5, 1e-6));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(all_masked_rows_give_zero_even_with_nan_students)
{
    data d;
    make(&d, 4, 1.0);
    d.s[5] = NAN;
    kd_loss *h = make_loss(&d, 1.0); /* conf > 1 never holds */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.g, LD), KD_OK);
    float loss = -1.0f;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            ck_assert(d.g[i * LD + j] == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(edge_shapes_and_extreme_logits)
{
    /* C = 1: confidence 1, CE 0, gradient 0 */
    float s1[3] = {4.0f, -2.0f, 7.0f}, t1[3] = {1.0f, 2.0f, 3.0f}, g1[3], loss;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_PSEUDO_LABEL, 1), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s1, 1);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t1, 1);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, 1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 3, &loss), KD_OK);
    ck_assert(loss == 0.0f && g1[0] == 0.0f && g1[2] == 0.0f);
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK); /* empty batch */
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
    /* N = 1, C = 2, logits of +-1e4: finite loss 2e4 and gradient (p - onehot) */
    float s[2] = {-1e4f, 1e4f}, t[2] = {1e4f, -1e4f}, g[2];
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_PSEUDO_LABEL, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, 2e4, 1e-6, 0));
    ck_assert(g[0] == -1.0f && g[1] == 1.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_teacher_rows_are_masked_nan_students_propagate_check_finite_rejects)
{
    float s[4] = {NAN, 0.0f, 1.0f, 0.0f}, t[4] = {0.0f, 9.0f, 1.0f, NAN}, loss, mask[2] = {7, 7};
    int32_t lab[2] = {7, 7};
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_PSEUDO_LABEL, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_output(h, KD_ARG_MASK, mask, 0);
    kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, lab);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    ck_assert(isnan(loss)); /* row 0 is kept, its student is NaN */
    ck_assert(mask[0] == 1.0f && lab[0] == 1);
    ck_assert(mask[1] == 0.0f && lab[1] == 1); /* NaN teacher: torch.max picks the NaN */
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1), KD_OK);
    mask[0] = 7;
    loss = 7;
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_ERR_NOT_FINITE);
    ck_assert(loss == 7.0f && mask[0] == 7.0f);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "student[0][0]"));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(in_place_several_teachers_and_threads_are_consistent)
{
    data d;
    make(&d, 5, 3.0);
    kd_loss *h = make_loss(&d, 0.4);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.g, LD), KD_OK);
    float loss1, loss2, g_in[N * LD];
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss1), KD_OK);
    memcpy(g_in, d.s, sizeof g_in);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_in, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g_in, LD), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THREADS, 4), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss2), KD_OK);
    ck_assert(loss1 == loss2);
    for (int i = 0; i < N; i++)
        ck_assert(memcmp(g_in + i * LD, d.g + i * LD, C * sizeof(float)) == 0);
    /* two teachers t and 3t averaged with weights 1:1 equal one teacher 2t */
    float t3[N * LD], t2[N * LD];
    for (int k = 0; k < N * LD; k++) {
        t3[k] = 3.0f * d.t[k];
        t2[k] = 2.0f * d.t[k];
    }
    const float *ts[2] = {d.t, t3};
    int64_t lds[2] = {LD, LD};
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d.s, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0), KD_OK);
    ck_assert_int_eq(kd_loss_bind_teachers(h, 2, ts, lds, NULL), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss1), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, t2, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss2), KD_OK);
    ck_assert(kdt_close(loss1, loss2, 1e-6, 0));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(documented_errors_leave_outputs_untouched)
{
    data d;
    make(&d, 6, 3.0);
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_PSEUDO_LABEL, C), KD_OK);
    float loss = 7.0f, mask[N];
    for (int i = 0; i < N; i++)
        mask[i] = 7.0f;
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d.s, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d.t, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_forward(h, -1, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_backward(h, N, &loss), KD_ERR_MISSING_INPUT); /* no gradient */
    /* parameters */
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 1.5), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, NAN), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THRESHOLD_MODE, 2), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DISTANCE, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5), KD_ERR_UNSUPPORTED);
    double lo, hi;
    int32_t open;
    ck_assert_int_eq(
        kd_loss_param_bounds(KD_LOSS_PSEUDO_LABEL, KD_PARAM_THRESHOLD, &lo, &hi, &open), KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0 && open == 0);
    /* roles */
    int32_t labels[N] = {0};
    ck_assert_int_eq(kd_loss_bind_labels(h, labels), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.g, LD), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_MASK, mask), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output_labels(h, KD_ARG_LABELS, labels), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_vector(NULL, KD_ARG_CLASS_THRESHOLDS, mask), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_bind_output_labels(NULL, KD_ARG_PSEUDO_LABELS, labels),
                     KD_ERR_NULL_POINTER);
    /* class thresholds outside [0, 1] */
    float ct[C];
    for (int j = 0; j < C; j++)
        ct[j] = 0.5f;
    ct[4] = 1.5f;
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, ct), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, mask, 0), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "class_thresholds[4]"));
    ct[4] = NAN;
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert(loss == 7.0f && mask[0] == 7.0f);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, NULL), KD_OK);
    /* mask written over an input */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, d.t + 3, 0), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_ALIASING);
    ck_assert(loss == 7.0f);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pseudo_label");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, loss_mask_and_labels_match_reference_in_every_reduction);
    tcase_add_test(tc, gradient_matches_finite_differences_and_backward_scales_it);
    tcase_add_test(tc, threshold_is_strict_by_default_and_inclusive_on_request);
    tcase_add_test(tc, per_class_thresholds_apply_by_the_pseudo_label);
    tcase_add_test(tc, all_masked_rows_give_zero_even_with_nan_students);
    tcase_add_test(tc, edge_shapes_and_extreme_logits);
    tcase_add_test(tc, nan_teacher_rows_are_masked_nan_students_propagate_check_finite_rejects);
    tcase_add_test(tc, in_place_several_teachers_and_threads_are_consistent);
    tcase_add_test(tc, documented_errors_leave_outputs_untouched);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
