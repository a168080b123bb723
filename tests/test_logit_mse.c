/* KD_LOSS_LOGIT_MSE: logit matching (PyTorch MSELoss semantics) with the
 * optional hard-label cross-entropy mix, against the double reference of
 * tests/support/ref_losses.c.  Each ref_verify() call checks MEAN, SUM and
 * NONE, forward / backward / fused, in place, strided rows, and 1/2/3 threads
 * (see ref_losses.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_losses.h"

static ref_case mse_case(ref_arena *a, uint64_t seed, int64_t n, int64_t c)
{
    ref_case k;
    ref_case_init(&k, REF_LOGIT_MSE, n, c);
    k.student = ref_new_logits(a, seed, n, c, c + 3, 2.0, 0.0);
    k.ld_student = c + 3;
    k.n_teachers = 1;
    k.teachers[0] = ref_new_logits(a, seed + 1000, n, c, c + 5, 3.0, 0.5);
    k.ld_teachers[0] = c + 5;
    return k;
}

START_TEST(squared_error_matches_reference)
{
    static const int64_t shapes[][2] = {{7, 5}, {13, 37}, {4, 2}, {3, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        ref_arena a = {0};
        ref_case k = mse_case(&a, 10 + s, shapes[s][0], shapes[s][1]);
        verify(&k, s < 3 ? REF_VERIFY_KERNEL_FD : 0);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(mean_is_over_all_n_times_c_elements_and_sum_adds_row_means)
{
    /* s - t = [[1, 2], [3, 4]]: MEAN = (1 + 4 + 9 + 16) / 4 = 7.5 (MSELoss);
     * per-sample l_i = mean_c: (2.5, 12.5); SUM = 15; gradient 2 (s - t) / (n C). */
    float s[4] = {1, 2, 3, 4}, t[4] = {0, 0, 0, 0}, g[4], loss[2];
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 2);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, loss), KD_OK);
    ck_assert(loss[0] == 7.5f);
    for (int e = 0; e < 4; e++)
        ck_assert(kdt_close(g[e], 2.0 * s[e] / 4.0, 1e-7, 0));
    kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
    ck_assert_int_eq(kd_loss_forward(h, 2, loss), KD_OK);
    ck_assert(loss[0] == 15.0f);
    kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE);
    ck_assert_int_eq(kd_loss_forward(h, 2, loss), KD_OK);
    ck_assert(loss[0] == 2.5f && loss[1] == 12.5f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(alpha_mixes_squared_error_with_hard_label_cross_entropy)
{
    ref_arena a = {0};
    ref_case k = mse_case(&a, 30, 9, 7);
    k.labels = ref_new_labels(&a, 31, k.n, k.c, 0.3, -100);
    k.soft_weight = 0.9;
    k.hard_weight = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.soft_weight = 0.0;
    k.hard_weight = 1.0;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.soft_weight = 2.0;
    k.hard_weight = 0.5;
    k.label_smoothing = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.smoothing_mode = REF_SMOOTHING_OTHERS;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(batch_normalisation_divides_by_n_and_valid_by_non_ignored_rows)
{
    ref_arena a = {0};
    ref_case k = mse_case(&a, 40, 10, 6);
    k.labels = ref_new_labels(&a, 41, k.n, k.c, 0.4, -100);
    k.soft_weight = 0.7;
    k.hard_weight = 0.3;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.normalization = REF_NORMALIZE_VALID;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(several_teachers_are_averaged_with_optional_weights)
{
    ref_arena a = {0};
    ref_case k = mse_case(&a, 50, 7, 6);
    k.n_teachers = 4;
    for (int t = 1; t < 4; t++) {
        k.teachers[t] = ref_new_logits(&a, 51 + t, k.n, k.c, k.c + t, 2.0, 0.0);
        k.ld_teachers[t] = k.c + t;
    }
    verify(&k, REF_VERIFY_KERNEL_FD);
    static const float w[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    k.teacher_weights = w;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(per_sample_weights_scale_rows_but_not_the_denominators)
{
    ref_arena a = {0};
    ref_case k = mse_case(&a, 60, 9, 5);
    k.weights = ref_new_weights(&a, 61, k.n);
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.labels = ref_new_labels(&a, 62, k.n, k.c, 0.3, -100);
    k.hard_weight = 0.4;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(single_row_one_class_and_two_classes)
{
    ref_arena a = {0};
    ref_case k = mse_case(&a, 70, 1, 2);
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.labels = ref_new_labels(&a, 71, 1, 2, 0.0, -100);
    k.hard_weight = 0.5;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
    k = mse_case(&a, 72, 5, 1);
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.labels = ref_new_labels(&a, 73, 5, 1, 0.0, -100);
    k.hard_weight = 0.5; /* CE with one class is 0 */
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(logits_of_magnitude_1e4_give_finite_correct_results)
{
    ref_arena a = {0};
    ref_case k = mse_case(&a, 80, 6, 8);
    float *s = (float *)k.student, *t = (float *)k.teachers[0];
    for (int64_t i = 0; i < k.n; i++)
        for (int64_t j = 0; j < k.c; j++) {
            s[i * k.ld_student + j] += (j % 3 == 0) ? 1e4f : (j % 3 == 1 ? -1e4f : 0.0f);
            t[i * k.ld_teachers[0] + j] += (j % 2 == 0) ? -1e4f : 1e4f;
        }
    verify(&k, REF_VERIFY_EXTREME);
    k.labels = ref_new_labels(&a, 81, k.n, k.c, 0.2, -100);
    k.hard_weight = 0.5;
    verify(&k, REF_VERIFY_EXTREME);
    ref_arena_free(&a);
}
END_TEST

START_TEST(all_rows_ignored_with_valid_normalisation_give_zero)
{
    float s[6] = {1, 2, 3, 4, 5, 6}, t[6] = {0}, g[6], loss[2], per[2];
    int32_t y[2] = {-100, -100};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 3);
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
    kd_loss_destroy(h);
}
END_TEST

START_TEST(empty_batch_gives_zero_loss)
{
    float s[1] = {NAN}, t[1] = {NAN}, g[1] = {5.0f}, loss = 9.0f;
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 4);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 4);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 4);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 4);
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 5.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_and_inf_propagate_to_their_row_by_default)
{
    float s[6] = {0.5f, 1.0f, -1.0f, 0.2f, INFINITY, 0.3f};
    float t[6] = {0.0f, NAN, 2.0f, 0.0f, 0.0f, 0.0f};
    float g[6], per[2], loss;
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 3);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    ck_assert(isnan(per[0]) && isinf(per[1]) && isnan(loss));
    /* elementwise: only the non-finite elements' gradients are non-finite */
    ck_assert(isfinite(g[0]) && isnan(g[1]) && isfinite(g[2]));
    ck_assert(isfinite(g[3]) && isinf(g[4]) && isfinite(g[5]));
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("logit_mse");
    TCase *tc = tcase_create("logit_mse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, squared_error_matches_reference);
    tcase_add_test(tc, mean_is_over_all_n_times_c_elements_and_sum_adds_row_means);
    tcase_add_test(tc, alpha_mixes_squared_error_with_hard_label_cross_entropy);
    tcase_add_test(tc, batch_normalisation_divides_by_n_and_valid_by_non_ignored_rows);
    tcase_add_test(tc, several_teachers_are_averaged_with_optional_weights);
    tcase_add_test(tc, per_sample_weights_scale_rows_but_not_the_denominators);
    tcase_add_test(tc, single_row_one_class_and_two_classes);
    tcase_add_test(tc, logits_of_magnitude_1e4_give_finite_correct_results);
    tcase_add_test(tc, all_rows_ignored_with_valid_normalisation_give_zero);
    tcase_add_test(tc, empty_batch_gives_zero_loss);
    tcase_add_test(tc, nan_and_inf_propagate_to_their_row_by_default);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
