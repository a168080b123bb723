/* KD_LOSS_KL_DISTILL: Hinton distillation against the double reference of
 * tests/support/ref_losses.c for every option (temperature, alpha / soft and
 * hard weights, T^2, forward / reverse KL, JSD(beta), batch / valid
 * normalisation, several teachers, label smoothing, per-sample weights).
 * Each ref_verify() call checks MEAN, SUM and NONE, forward / backward /
 * fused, in place, strided rows, and 1/2/3 threads (see ref_losses.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_losses.h"

/* A KL case: student and one teacher, strides c + 3 and c + 5, NaN padding. */
static ref_case kl_case(ref_arena *a, uint64_t seed, int64_t n, int64_t c)
{
    ref_case k;
    ref_case_init(&k, REF_KL_DISTILL, n, c);
    k.student = ref_new_logits(a, seed, n, c, c + 3, 2.0, 0.0);
    k.ld_student = c + 3;
    k.n_teachers = 1;
    k.teachers[0] = ref_new_logits(a, seed + 1000, n, c, c + 5, 3.0, 0.5);
    k.ld_teachers[0] = c + 5;
    return k;
}

START_TEST(forward_kl_at_temperature_matches_reference)
{
    static const double temps[] = {1.0, 4.0, 0.5, 2.5};
    static const int64_t shapes[][2] = {{7, 5}, {13, 37}, {5, 10}, {3, 257}};
    for (size_t t = 0; t < 4; t++) {
        ref_arena a = {0};
        ref_case k = kl_case(&a, 10 + t, shapes[t][0], shapes[t][1]);
        k.temperature = temps[t];
        verify(&k, t < 3 ? REF_VERIFY_KERNEL_FD : 0);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(identical_teacher_and_student_give_zero_divergence)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 20, 4, 6);
    kd_loss *h;
    float loss = 1.0f, g[24];
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 6);
    kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 3.0);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, k.student, k.ld_student);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, k.student, k.ld_student);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 6);
    for (int d = KD_DIVERGENCE_FORWARD_KL; d <= KD_DIVERGENCE_JSD; d++) {
        kd_loss_set_int(h, KD_PARAM_DIVERGENCE, d);
        ck_assert_int_eq(kd_loss_forward_backward(h, 4, &loss), KD_OK);
        ck_assert_msg(fabs(loss) < 1e-6, "divergence %d: loss %g", d, loss);
        for (int e = 0; e < 24; e++)
            ck_assert(fabs(g[e]) < 1e-6);
    }
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(alpha_mixes_soft_term_with_hard_label_cross_entropy)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 30, 9, 7);
    k.labels = ref_new_labels(&a, 31, k.n, k.c, 0.3, -100);
    k.temperature = 4.0;
    k.soft_weight = 0.9; /* KD_PARAM_ALPHA = 0.9 */
    k.hard_weight = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.soft_weight = 1.8; /* the fastai seeds' 2 * alpha */
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.soft_weight = 0.0;
    k.hard_weight = 1.0;
    verify(&k, REF_VERIFY_KERNEL_FD);

    /* KD_PARAM_ALPHA sets both weights */
    kd_loss *h;
    double v;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 7);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.25), KD_OK);
    kd_loss_get_float(h, KD_PARAM_SOFT_WEIGHT, &v);
    ck_assert(v == 0.25);
    kd_loss_get_float(h, KD_PARAM_HARD_WEIGHT, &v);
    ck_assert(v == 0.75);
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(without_labels_the_hard_term_is_absent)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 40, 6, 5);
    k.soft_weight = 0.9;
    k.hard_weight = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    /* same loss as hard weight 0 */
    kd_loss *h;
    float l1, l2;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 5);
    ref_configure(h, &k);
    ck_assert_int_eq(kd_loss_forward(h, k.n, &l1), KD_OK);
    kd_loss_set_float(h, KD_PARAM_HARD_WEIGHT, 0.0);
    ck_assert_int_eq(kd_loss_forward(h, k.n, &l2), KD_OK);
    ck_assert(l1 == l2);
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(t2_scaling_multiplies_soft_term_by_temperature_squared)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 50, 8, 6);
    k.temperature = 3.0;
    k.labels = ref_new_labels(&a, 51, k.n, k.c, 0.2, -100);
    k.hard_weight = 0.5;
    k.t2_scaling = 0;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.t2_scaling = 1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    /* without labels the two differ by exactly T^2 */
    kd_loss *h;
    float on, off;
    k.labels = NULL;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 6);
    ref_configure(h, &k);
    kd_loss_forward(h, k.n, &on);
    kd_loss_set_int(h, KD_PARAM_T2_SCALING, 0);
    kd_loss_forward(h, k.n, &off);
    ck_assert(kdt_close(on, 9.0 * off, 1e-6, 0));
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(reverse_kl_matches_reference)
{
    static const double temps[] = {1.0, 2.0, 5.0};
    for (size_t t = 0; t < 3; t++) {
        ref_arena a = {0};
        ref_case k = kl_case(&a, 60 + t, 7, 9);
        k.divergence = REF_REVERSE_KL;
        k.temperature = temps[t];
        verify(&k, REF_VERIFY_KERNEL_FD);
        k.labels = ref_new_labels(&a, 70 + t, k.n, k.c, 0.3, -100);
        k.hard_weight = 0.3;
        verify(&k, REF_VERIFY_KERNEL_FD);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(jsd_matches_reference_for_several_beta)
{
    static const double betas[] = {0.0, 0.1, 0.5, 0.75, 0.99, 1.0};
    for (size_t b = 0; b < sizeof betas / sizeof betas[0]; b++) {
        ref_arena a = {0};
        ref_case k = kl_case(&a, 80 + b, 7, 8);
        k.divergence = REF_JSD;
        k.jsd_beta = betas[b];
        k.temperature = b % 2 ? 2.0 : 1.0;
        verify(&k, REF_VERIFY_KERNEL_FD);
        k.labels = ref_new_labels(&a, 90 + b, k.n, k.c, 0.3, -100);
        k.hard_weight = 0.2;
        k.normalization = REF_NORMALIZE_VALID;
        verify(&k, REF_VERIFY_KERNEL_FD);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(jsd_beta_0_is_forward_kl_and_beta_1_is_reverse_kl)
{
    /* Liger-Kernel's endpoints: the mixture formula would give 0 there. */
    ref_arena a = {0};
    ref_case k = kl_case(&a, 100, 6, 7);
    kd_loss *h;
    float lj, lk, gj[42], gk[42];
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 7);
    ref_configure(h, &k);
    for (int end = 0; end <= 1; end++) {
        kd_loss_set_int(h, KD_PARAM_DIVERGENCE, KD_DIVERGENCE_JSD);
        kd_loss_set_float(h, KD_PARAM_JSD_BETA, end);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gj, 7);
        ck_assert_int_eq(kd_loss_forward_backward(h, 6, &lj), KD_OK);
        kd_loss_set_int(h, KD_PARAM_DIVERGENCE,
                        end ? KD_DIVERGENCE_REVERSE_KL : KD_DIVERGENCE_FORWARD_KL);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gk, 7);
        ck_assert_int_eq(kd_loss_forward_backward(h, 6, &lk), KD_OK);
        ck_assert(lk > 1e-3);
        ck_assert(kdt_close(lj, lk, 1e-6, 0));
        for (int e = 0; e < 42; e++)
            ck_assert(kdt_close(gj[e], gk[e], 1e-5, 1e-7));
    }
    /* JSD is symmetric at beta = 1/2: swapping teacher and student keeps the value */
    float l1, l2;
    kd_loss_set_int(h, KD_PARAM_DIVERGENCE, KD_DIVERGENCE_JSD);
    kd_loss_set_float(h, KD_PARAM_JSD_BETA, 0.5);
    kd_loss_forward(h, 6, &l1);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, k.teachers[0], k.ld_teachers[0]);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, k.student, k.ld_student);
    kd_loss_forward(h, 6, &l2);
    ck_assert(kdt_close(l1, l2, 1e-5, 0));
    ck_assert(l1 > 0.0f && l1 <= (float)log(2.0)); /* JSD <= log 2 at T = 1 */
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(batch_normalisation_divides_by_n_and_valid_by_non_ignored_rows)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 110, 10, 6);
    k.labels = ref_new_labels(&a, 111, k.n, k.c, 0.4, -100);
    k.temperature = 2.0;
    k.soft_weight = 0.7;
    k.hard_weight = 0.3;
    k.normalization = REF_NORMALIZE_BATCH;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.normalization = REF_NORMALIZE_VALID;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.ignore_index = 3; /* an ignore index that is also a class */
    k.labels = ref_new_labels(&a, 112, k.n, k.c, 0.4, 3);
    verify(&k, 0);

    /* soft only, 2 of 4 rows ignored: VALID mean = 2 x BATCH mean */
    float lb, lv;
    int32_t y[4] = {1, -100, 0, -100};
    float s[8] = {0, 1, 0, 2, 1, 0, 3, 0}, t[8] = {1, 0, 0, 0, 0, 1, 0, 3};
    float s2[8] = {0, 1, 0, 0, 1, 0, 0, 3}; /* ignored rows 1, 3 equal to their teacher */
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 2);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_labels(h, y);
    ck_assert_int_eq(kd_loss_forward(h, 4, &lb), KD_OK);
    kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_VALID);
    ck_assert_int_eq(kd_loss_forward(h, 4, &lv), KD_OK);
    ck_assert(lv != lb); /* VALID drops the ignored rows' soft terms too */
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s2, 2);
    kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_BATCH);
    ck_assert_int_eq(kd_loss_forward(h, 4, &lb), KD_OK);
    kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_VALID);
    ck_assert_int_eq(kd_loss_forward(h, 4, &lv), KD_OK);
    ck_assert(kdt_close(lv, 2.0 * lb, 1e-6, 0));
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(several_teachers_are_averaged_in_logit_space_with_optional_weights)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 120, 7, 6);
    k.n_teachers = 3;
    for (int t = 1; t < 3; t++) {
        k.teachers[t] = ref_new_logits(&a, 121 + t, k.n, k.c, k.c + 1 + t, 2.0, 0.0);
        k.ld_teachers[t] = k.c + 1 + t;
    }
    k.temperature = 4.0;
    verify(&k, REF_VERIFY_KERNEL_FD);
    static const float w[3] = {1.0f, 3.0f, 0.0f};
    k.teacher_weights = w;
    k.labels = ref_new_labels(&a, 125, k.n, k.c, 0.2, -100);
    k.soft_weight = 0.9;
    k.hard_weight = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.divergence = REF_JSD;
    k.jsd_beta = 0.3;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(label_smoothing_applies_to_the_hard_term)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 130, 8, 5);
    k.labels = ref_new_labels(&a, 131, k.n, k.c, 0.25, -100);
    k.soft_weight = 0.5;
    k.hard_weight = 0.5;
    k.label_smoothing = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.smoothing_mode = REF_SMOOTHING_OTHERS;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(per_sample_weights_scale_both_terms_but_not_the_denominators)
{
    ref_arena a = {0};
    ref_case k = kl_case(&a, 140, 9, 6);
    k.labels = ref_new_labels(&a, 141, k.n, k.c, 0.3, -100);
    k.weights = ref_new_weights(&a, 142, k.n);
    k.soft_weight = 0.6;
    k.hard_weight = 0.4;
    k.temperature = 2.0;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.divergence = REF_REVERSE_KL;
    k.normalization = REF_NORMALIZE_VALID;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(single_row_one_class_and_two_classes)
{
    for (int d = REF_FORWARD_KL; d <= REF_JSD; d++) {
        ref_arena a = {0};
        ref_case k = kl_case(&a, 150 + d, 1, 2);
        k.divergence = d;
        k.temperature = 2.0;
        verify(&k, REF_VERIFY_KERNEL_FD);
        k.labels = ref_new_labels(&a, 160 + d, 1, 2, 0.0, -100);
        k.hard_weight = 0.5;
        verify(&k, REF_VERIFY_KERNEL_FD);
        ref_arena_free(&a);
        /* C = 1: every softmax is 1, the divergence is 0 */
        k = kl_case(&a, 170 + d, 4, 1);
        k.divergence = d;
        k.labels = ref_new_labels(&a, 180 + d, 4, 1, 0.0, -100);
        k.hard_weight = 1.0;
        verify(&k, 0);
        kd_loss *h;
        float loss = 9.0f, g[4] = {9, 9, 9, 9};
        kd_loss_create(&h, KD_LOSS_KL_DISTILL, 1);
        ref_configure(h, &k);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 1);
        /* the C = 1 matrices have ld 4 and 6: use n = 1 with the dense view */
        ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
        ck_assert(loss == 0.0f && g[0] == 0.0f);
        kd_loss_destroy(h);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(logits_of_magnitude_1e4_give_finite_correct_results)
{
    for (int d = REF_FORWARD_KL; d <= REF_JSD; d++) {
        ref_arena a = {0};
        ref_case k = kl_case(&a, 190 + d, 6, 8);
        float *s = (float *)k.student, *t = (float *)k.teachers[0];
        for (int64_t i = 0; i < k.n; i++)
            for (int64_t j = 0; j < k.c; j++) {
                s[i * k.ld_student + j] += (j % 3 == 0) ? 1e4f : (j % 3 == 1 ? -1e4f : 0.0f);
                t[i * k.ld_teachers[0] + j] += (j % 4 == 0) ? -1e4f : (j % 4 == 1 ? 1e4f : 0.0f);
            }
        k.divergence = d;
        k.temperature = 4.0;
        verify(&k, REF_VERIFY_EXTREME);
        k.labels = ref_new_labels(&a, 200 + d, k.n, k.c, 0.2, -100);
        k.soft_weight = 0.9;
        k.hard_weight = 0.1;
        verify(&k, REF_VERIFY_EXTREME);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(all_rows_ignored_with_valid_normalisation_give_zero)
{
    float s[6] = {1, 2, 3, 4, 5, 6}, t[6] = {0, 0, 1, 0, 2, 0}, g[6], loss[2], per[2];
    int32_t y[2] = {-100, -100};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 3);
    kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5);
    kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_VALID);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 3);
    kd_loss_bind_labels(h, y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
    for (int red = KD_REDUCTION_MEAN; red <= KD_REDUCTION_NONE; red++) {
        for (int e = 0; e < 6; e++)
            g[e] = 9.0f;
        loss[0] = loss[1] = per[0] = per[1] = 9.0f;
        kd_loss_set_int(h, KD_PARAM_REDUCTION, red);
        ck_assert_int_eq(kd_loss_forward_backward(h, 2, loss), KD_OK);
        ck_assert(loss[0] == 0.0f && per[0] == 0.0f && per[1] == 0.0f);
        for (int e = 0; e < 6; e++)
            ck_assert(g[e] == 0.0f);
    }
    /* with batch normalisation the ignored rows keep their soft term (only the
     * hard term is dropped): the loss equals the soft-only loss */
    float soft_only, with_labels;
    kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_MEAN);
    kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_BATCH);
    ck_assert_int_eq(kd_loss_forward(h, 2, &with_labels), KD_OK);
    kd_loss_bind_labels(h, NULL);
    ck_assert_int_eq(kd_loss_forward(h, 2, &soft_only), KD_OK);
    ck_assert(with_labels == soft_only && soft_only > 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(empty_batch_gives_zero_loss)
{
    float s[1] = {NAN}, t[1] = {NAN}, g[1] = {5.0f}, loss = 9.0f;
    int32_t y[1] = {0};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 4);
    kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 4);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 4);
    kd_loss_bind_labels(h, y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 4);
    for (int red = KD_REDUCTION_MEAN; red <= KD_REDUCTION_SUM; red++) {
        kd_loss_set_int(h, KD_PARAM_REDUCTION, red);
        loss = 9.0f;
        ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
        ck_assert(loss == 0.0f && g[0] == 5.0f);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_and_inf_propagate_to_their_row_by_default)
{
    float s[6] = {0.5f, 1.0f, -1.0f, 0.2f, 0.1f, 0.3f};
    float t[6] = {0.0f, 1.0f, 2.0f, NAN, 0.0f, 0.0f};
    float g[6], per[2], loss;
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 3);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
    for (int d = KD_DIVERGENCE_FORWARD_KL; d <= KD_DIVERGENCE_JSD; d++) {
        kd_loss_set_int(h, KD_PARAM_DIVERGENCE, d);
        ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
        ck_assert(isnan(loss) && isfinite(per[0]) && isnan(per[1]));
        for (int j = 0; j < 3; j++)
            ck_assert(isfinite(g[j]) && isnan(g[3 + j]));
    }
    t[3] = INFINITY; /* an +Inf teacher logit gives NaN too */
    kd_loss_set_int(h, KD_PARAM_DIVERGENCE, KD_DIVERGENCE_FORWARD_KL);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    ck_assert(isnan(per[1]) && isfinite(per[0]));
    kd_loss_destroy(h);
}
END_TEST

/* ---- issue 16 point 2: accurate divergences over the whole accepted
 * temperature range.  Reference in long double, each term of the divergence
 * in a form that is >= 0 on its own (p w - (p - q) with w = log p - log q,
 * whose first-order parts cancel exactly), so that it stays accurate where
 * P and Q are near uniform (large T); checked against the plain
 * sum p (log p - log q) where that is accurate (T <= 100). */
typedef long double ld;

/* p log(p / q) - (p - q) >= 0, from p, q and w = log p - log q */
static ld ref_kl_term(ld p, ld q, ld w)
{
    if (p == 0.0L)
        return q;
    return w <= 0.0L ? q * (w * expl(w) - expm1l(w)) : p * (expm1l(-w) + w);
}

static void ref_log_softmax(const float *x, int64_t c, ld inv_t, ld *out)
{
    ld m = -INFINITY, sum = 0.0L;
    for (int64_t j = 0; j < c; j++)
        m = fmaxl(m, (ld)x[j] * inv_t);
    for (int64_t j = 0; j < c; j++)
        sum += expl((ld)x[j] * inv_t - m);
    for (int64_t j = 0; j < c; j++)
        out[j] = (ld)x[j] * inv_t - m - logl(sum);
}

/* One row of T^2 D (soft weight 1) and its gradient (reduction SUM). */
static ld ref_divergence_row(const float *s, const float *t, int64_t c, double temp, int div,
                             double beta, ld *g, ld *plain)
{
    ld lq[512], lp[512], lm[512];
    const ld T = temp, inv_t = 1.0L / T, b = beta;
    ref_log_softmax(s, c, inv_t, lq);
    ref_log_softmax(t, c, inv_t, lp);
    ld d = 0.0L, dq = 0.0L, dp = 0.0L, naive = 0.0L;
    for (int64_t j = 0; j < c; j++) {
        const ld p = expl(lp[j]), q = expl(lq[j]), w = lp[j] - lq[j];
        lm[j] = lq[j] + log1pl(b * expm1l(w)); /* log(b p + (1 - b) q) */
        if (div == KD_DIVERGENCE_FORWARD_KL) {
            d += ref_kl_term(p, q, w);
            naive += p * w;
        } else if (div == KD_DIVERGENCE_REVERSE_KL) {
            d += ref_kl_term(q, p, -w);
            naive -= q * w;
        } else {
            const ld m = expl(lm[j]);
            dp += ref_kl_term(p, m, lp[j] - lm[j]);
            dq += ref_kl_term(q, m, lq[j] - lm[j]);
            naive += b * p * (lp[j] - lm[j]) + (1.0L - b) * q * (lq[j] - lm[j]);
        }
    }
    if (div == KD_DIVERGENCE_JSD)
        d = b * dp + (1.0L - b) * dq;
    for (int64_t j = 0; j < c; j++) {
        const ld q = expl(lq[j]), w = lp[j] - lq[j];
        if (div == KD_DIVERGENCE_FORWARD_KL)
            g[j] = T * -q * expm1l(w); /* T^2 (q - p) / T */
        else if (div == KD_DIVERGENCE_REVERSE_KL)
            g[j] = T * q * (-w - d);
        else
            g[j] = T * q * (1.0L - b) * ((lq[j] - lm[j]) - dq);
    }
    *plain = T * T * naive;
    return T * T * d;
}

START_TEST(divergences_are_accurate_at_every_accepted_temperature)
{
    static const double temps[] = {1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6};
    static const int64_t widths[] = {10, 100, 300};
    static const double betas[] = {0.0, 0.0, 0.3}; /* JSD's beta (by divergence) */
    enum { N = 6 };
    kdt_rng r;
    kdt_seed(&r, 1616);
    int cases = 0;
    for (size_t w = 0; w < 3; w++) {
        const int64_t c = widths[w];
        float *s = malloc(sizeof(float) * N * c), *t = malloc(sizeof(float) * N * c);
        float *g = malloc(sizeof(float) * N * c);
        ld *rg = malloc(sizeof(ld) * c);
        kdt_fill_normal(&r, s, (size_t)(N * c), 2.0);
        kdt_fill_normal(&r, t, (size_t)(N * c), 2.0);
        for (int div = KD_DIVERGENCE_FORWARD_KL; div <= KD_DIVERGENCE_JSD; div++)
            for (size_t k = 0; k < sizeof temps / sizeof temps[0]; k++) {
                kd_loss *h;
                float per[N], loss;
                ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, c), KD_OK);
                ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, temps[k]), KD_OK);
                kd_loss_set_int(h, KD_PARAM_DIVERGENCE, div);
                kd_loss_set_float(h, KD_PARAM_JSD_BETA, betas[div]);
                kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, c);
                kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
                ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
                for (int i = 0; i < N; i++) {
                    ld plain;
                    const ld ref = ref_divergence_row(s + i * c, t + i * c, c, temps[k], div,
                                                      betas[div], rg, &plain);
                    if (temps[k] <= 100.0) /* the plain sum is accurate there */
                        ck_assert(fabsl(plain - ref) <= 1e-9L * ref);
                    ck_assert_msg(per[i] >= 0.0f && fabsl(per[i] - ref) <= 1e-5L * ref,
                                  "C %lld div %d T %g row %d: %.9g, reference %.12Lg", (long long)c,
                                  div, temps[k], i, per[i], ref);
                    ld gmax = 0.0L;
                    for (int64_t j = 0; j < c; j++)
                        gmax = fmaxl(gmax, fabsl(rg[j]));
                    for (int64_t j = 0; j < c; j++)
                        ck_assert_msg(
                            fabsl(g[i * c + j] - rg[j]) <= 1e-4L * fabsl(rg[j]) + 1e-6L * gmax,
                            "C %lld div %d T %g grad[%d][%lld] = %.9g, reference %.12Lg",
                            (long long)c, div, temps[k], i, (long long)j, g[i * c + j], rg[j]);
                    cases++;
                }
                kd_loss_destroy(h);
            }
        free(s);
        free(t);
        free(g);
        free(rg);
    }
    ck_assert_int_eq(cases, 3 * 3 * 7 * N);
}
END_TEST

/* A divergence is never negative: near-identical teacher and student (the
 * divergence is then a sum of terms far below the float rounding of each
 * log-probability) at every divergence, temperature and path. */
START_TEST(near_identical_rows_never_give_a_negative_divergence)
{
    static const double temps[] = {1.0, 4.0, 30.0};
    static const int64_t widths[] = {8, 64, 1000};
    enum { N = 64 };
    kdt_rng r;
    kdt_seed(&r, 1617);
    for (size_t w = 0; w < 3; w++) {
        const int64_t c = widths[w];
        float *s = malloc(sizeof(float) * N * c), *t = malloc(sizeof(float) * N * c);
        kdt_fill_normal(&r, s, (size_t)(N * c), 3.0);
        for (int64_t e = 0; e < N * c; e++) /* one or two ulps apart */
            t[e] = nextafterf(s[e], kdt_uniform(&r) < 0.5 ? INFINITY : -INFINITY);
        for (int div = KD_DIVERGENCE_FORWARD_KL; div <= KD_DIVERGENCE_JSD; div++)
            for (size_t k = 0; k < 3; k++) {
                kd_loss *h;
                float per[N], loss;
                kd_loss_create(&h, KD_LOSS_KL_DISTILL, c);
                kd_loss_set_float(h, KD_PARAM_TEMPERATURE, temps[k]);
                kd_loss_set_int(h, KD_PARAM_DIVERGENCE, div);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
                kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
                ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
                for (int i = 0; i < N; i++)
                    ck_assert_msg(per[i] >= 0.0f, "C %lld div %d T %g row %d: %g", (long long)c,
                                  div, temps[k], i, per[i]);
                ck_assert(loss >= 0.0f);
                kd_loss_destroy(h);
            }
        free(s);
        free(t);
    }
}
END_TEST

/* Issue 16 point 9: a row whose student logits span more than FLT_MAX
 * (logits near 1e38) has a divergence near 3e38, and the batch mean 1.6e38:
 * both fit in float, and the float kernels overflowed to +Inf.  Short rows
 * (C = 4) and row kernels (C = 200), T = 1 and 2 (the float kernels). */
START_TEST(logits_near_1e38_give_a_finite_divergence_where_it_fits)
{
    static const int64_t widths[] = {4, 200};
    static const double temps[] = {1.0, 2.0};
    for (size_t w = 0; w < 2; w++)
        for (size_t k = 0; k < 2; k++) {
            const int64_t c = widths[w];
            const double T = temps[k];
            float *s = calloc((size_t)(2 * c), sizeof(float)),
                  *t = calloc((size_t)(2 * c), sizeof(float));
            float *g = calloc((size_t)(2 * c), sizeof(float));
            s[0] = 1.8e38f;
            s[1] = -1.8e38f; /* s_1 - s_0 overflows float */
            for (int64_t j = 2; j < c; j++)
                s[j] = -1.4e38f;
            /* row 1: student = teacher = 0 (divergence 0) */
            kd_loss *h;
            float per[2], loss;
            kd_loss_create(&h, KD_LOSS_KL_DISTILL, c);
            kd_loss_set_float(h, KD_PARAM_TEMPERATURE, T);
            kd_loss_set_int(h, KD_PARAM_T2_SCALING, 0);
            kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
            kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
            kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, c);
            kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
            ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
            /* P uniform, log Q_j = (s_j - s_0) / T (Q_0 = 1) */
            ld ref = -logl((ld)c);
            for (int64_t j = 1; j < c; j++)
                ref += ((ld)s[0] - (ld)s[j]) / (T * (ld)c);
            ck_assert_msg(isfinite(per[0]) && fabsl(per[0] - ref) <= 1e-6L * ref,
                          "C %lld T %g: row %.9g, reference %.9Lg", (long long)c, T, per[0], ref);
            ck_assert(per[1] == 0.0f);
            ck_assert_msg(isfinite(loss) && fabsl(loss - ref / 2) <= 1e-6L * ref, "mean %g", loss);
            for (int64_t j = 0; j < 2 * c; j++)
                ck_assert(isfinite(g[j]));
            /* g_0 = (Q_0 - P_0) / (2 T): the mean over two rows */
            ck_assert(fabs(g[0] - (1.0 - 1.0 / (double)c) / (2.0 * T)) < 1e-6);
            kd_loss_destroy(h);
            free(s);
            free(t);
            free(g);
        }
}
END_TEST

/* Issue 16 point 3: below about 3e-39, 1/T overflows float and the KL kinds,
 * CE with a teacher target, strong/weak and MCC gave NaN.  The accepted
 * range is [1e-6, 1e6] for every kind with a temperature (one check in the
 * parameter setter): below it KD_ERR_INVALID_ARGUMENT with a message, the
 * old value kept; at 1e-6 the loss and the gradient are finite (logits of
 * spread ~3, and of magnitude 1e4). */
START_TEST(temperatures_below_the_minimum_are_refused_and_the_minimum_is_finite)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_KL_DISTILL, KD_LOSS_CROSS_ENTROPY,
                                         KD_LOSS_STRONG_WEAK, KD_LOSS_MCC};
    static const double bad[] = {9.99e-7, 1e-7, 1e-30, 2.9e-39, 1e-40, 1e-300, 4.9e-324};
    enum { N = 5, C = 7 };
    float s[N * C], t[N * C], g[N * C];
    kdt_rng r;
    kdt_seed(&r, 1618);
    int cases = 0;
    for (int big = 0; big < 2; big++) {
        kdt_fill_normal(&r, s, N * C, big ? 1e4 : 3.0);
        kdt_fill_normal(&r, t, N * C, big ? 1e4 : 3.0);
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            for (int div = 0; div < (kinds[k] == KD_LOSS_KL_DISTILL ? 3 : 1); div++) {
                kd_loss *h;
                double v;
                ck_assert_int_eq(kd_loss_create(&h, kinds[k], C), KD_OK);
                if (kinds[k] == KD_LOSS_KL_DISTILL)
                    kd_loss_set_int(h, KD_PARAM_DIVERGENCE, div);
                ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0), KD_OK);
                for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
                    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, bad[b]),
                                     KD_ERR_INVALID_ARGUMENT);
                    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "KD_PARAM_TEMPERATURE"));
                    kd_loss_get_float(h, KD_PARAM_TEMPERATURE, &v);
                    ck_assert(v == 2.0);
                    cases++;
                }
                double lo, hi;
                int32_t open;
                ck_assert_int_eq(
                    kd_loss_param_bounds(kinds[k], KD_PARAM_TEMPERATURE, &lo, &hi, &open), KD_OK);
                ck_assert(lo == 1e-6 && hi == 1e6 && open == 0);
                ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 1e-6), KD_OK);
                if (kinds[k] == KD_LOSS_STRONG_WEAK)
                    kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.0);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, C);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, C);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, C);
                float loss = NAN;
                ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
                ck_assert_msg(isfinite(loss), "kind %d div %d big %d: loss %g", (int)kinds[k], div,
                              big, loss);
                for (int e = 0; e < N * C; e++)
                    ck_assert_msg(isfinite(g[e]), "kind %d div %d big %d: g[%d] = %g",
                                  (int)kinds[k], div, big, e, g[e]);
                kd_loss_destroy(h);
                cases++;
            }
    }
    ck_assert_int_eq(cases, 2 * 6 * 8);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kl_distill");
    TCase *tc = tcase_create("kl_distill");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, forward_kl_at_temperature_matches_reference);
    tcase_add_test(tc, identical_teacher_and_student_give_zero_divergence);
    tcase_add_test(tc, alpha_mixes_soft_term_with_hard_label_cross_entropy);
    tcase_add_test(tc, without_labels_the_hard_term_is_absent);
    tcase_add_test(tc, t2_scaling_multiplies_soft_term_by_temperature_squared);
    tcase_add_test(tc, reverse_kl_matches_reference);
    tcase_add_test(tc, jsd_matches_reference_for_several_beta);
    tcase_add_test(tc, jsd_beta_0_is_forward_kl_and_beta_1_is_reverse_kl);
    tcase_add_test(tc, batch_normalisation_divides_by_n_and_valid_by_non_ignored_rows);
    tcase_add_test(tc, several_teachers_are_averaged_in_logit_space_with_optional_weights);
    tcase_add_test(tc, label_smoothing_applies_to_the_hard_term);
    tcase_add_test(tc, per_sample_weights_scale_both_terms_but_not_the_denominators);
    tcase_add_test(tc, single_row_one_class_and_two_classes);
    tcase_add_test(tc, logits_of_magnitude_1e4_give_finite_correct_results);
    tcase_add_test(tc, all_rows_ignored_with_valid_normalisation_give_zero);
    tcase_add_test(tc, empty_batch_gives_zero_loss);
    tcase_add_test(tc, nan_and_inf_propagate_to_their_row_by_default);
    tcase_add_test(tc, divergences_are_accurate_at_every_accepted_temperature);
    tcase_add_test(tc, near_identical_rows_never_give_a_negative_divergence);
    tcase_add_test(tc, logits_near_1e38_give_a_finite_divergence_where_it_fits);
    tcase_add_test(tc, temperatures_below_the_minimum_are_refused_and_the_minimum_is_finite);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
