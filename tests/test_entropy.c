/* KD_LOSS_ENTROPY: entropy minimisation H(softmax(s / T)) against the double
 * reference of tests/support/ref_losses.c (ref_verify: MEAN, SUM, NONE,
 * forward / backward / fused, in place, strided rows, 1/2/3 threads), a
 * long-double check of confident rows, and every documented error. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_losses.h"

static ref_case ent_case(ref_arena *a, uint64_t seed, int64_t n, int64_t c, double scale)
{
    ref_case k;
    ref_case_init(&k, REF_ENTROPY, n, c);
    k.student = ref_new_logits(a, seed, n, c, c + 3, scale, 0.25);
    k.ld_student = c + 3;
    return k;
}

START_TEST(entropy_matches_reference)
{
    static const int64_t shapes[][2] = {{7, 5}, {13, 37}, {4, 2}, {3, 300}, {1, 10}};
    static const double temps[] = {1.0, 0.5, 2.5};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t t = 0; t < 3; t++) {
            ref_arena a = {0};
            ref_case k = ent_case(&a, 10 + s, shapes[s][0], shapes[s][1], 2.0);
            k.temperature = temps[t];
            verify(&k, s != 3 ? REF_VERIFY_KERNEL_FD : 0);
            k.weights = ref_new_weights(&a, 50 + s, k.n); /* weights[0] = 0: a mask */
            verify(&k, s != 3 ? REF_VERIFY_KERNEL_FD : 0);
            ref_arena_free(&a);
        }
}
END_TEST

START_TEST(extreme_logits_match_reference)
{
    ref_arena a = {0};
    ref_case k = ent_case(&a, 77, 6, 9, 1e4);
    verify(&k, REF_VERIFY_EXTREME);
    k.temperature = 0.25;
    verify(&k, REF_VERIFY_EXTREME);
    ref_arena_free(&a);
}
END_TEST

static kd_loss *make(int64_t c, const float *s, int64_t ld, float *g, int32_t red, double t)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_ENTROPY, c), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, t), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, ld), KD_OK);
    if (g)
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, ld), KD_OK);
    return h;
}

START_TEST(hand_values_and_gradient_formula)
{
    /* uniform row of C = 4: H = log 4, gradient 0; tllib's entropy(softmax(s))
     * of two rows with MEAN is their mean */
    float s[8] = {1, 1, 1, 1, 0, 1, 2, 3}, g[8], loss;
    kd_loss *h = make(4, s, 4, g, KD_REDUCTION_MEAN, 2.0);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    double p[4], z = 0, hh = 0;
    for (int j = 0; j < 4; j++)
        z += exp(s[4 + j] / 2.0);
    for (int j = 0; j < 4; j++) {
        p[j] = exp(s[4 + j] / 2.0) / z;
        hh -= p[j] * log(p[j]);
    }
    ck_assert(kdt_close(loss, (log(4.0) + hh) / 2.0, 1e-6, 0));
    for (int j = 0; j < 4; j++) {
        ck_assert(fabsf(g[j]) < 1e-7f);
        /* d l / d s_j = -(1/T) p_j (log p_j + H), divided by n = 2 for MEAN */
        ck_assert(kdt_close(g[4 + j], -0.5 * p[j] * (log(p[j]) + hh) / 2.0, 1e-6, 1e-9));
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(one_class_gives_zero)
{
    float s[3] = {5, -1e4f, 1e4f}, g[3] = {9, 9, 9}, loss[3];
    kd_loss *h = make(1, s, 1, g, KD_REDUCTION_NONE, 1.0);
    ck_assert_int_eq(kd_loss_forward_backward(h, 3, loss), KD_OK);
    for (int i = 0; i < 3; i++)
        ck_assert(loss[i] == 0.0f && g[i] == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(empty_batch_gives_zero)
{
    float s[2] = {0, 1}, g[2] = {7, 7}, loss = 5;
    kd_loss *h = make(2, s, 2, g, KD_REDUCTION_MEAN, 1.0);
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 7.0f);
    kd_loss_destroy(h);
}
END_TEST

/* H and its gradient in long double from the definition; the log-sum-exp
 * as log1p of the sum over the classes other than the maximum (a plain
 * log(1 + 1e-19) loses the small part even in long double); s[0] is the
 * maximum of the test rows */
static long double ld_entropy(const float *s, int c, long double t, long double *g)
{
    long double rest = 0, hh = 0;
    for (int j = 1; j < c; j++)
        rest += expl((s[j] - (long double)s[0]) / t);
    const long double lse = log1pl(rest);
    for (int j = 0; j < c; j++) {
        long double lp = (s[j] - (long double)s[0]) / t - lse, p = expl(lp);
        hh -= p * lp;
    }
    for (int j = 0; j < c; j++) {
        long double lp = (s[j] - (long double)s[0]) / t - lse, p = expl(lp);
        g[j] = -p * (lp + hh) / t;
    }
    return hh;
}

START_TEST(confident_rows_keep_relative_accuracy)
{
    /* max p from 1 - 1e-4 down to 1 - 1e-30: H ~ rest (1 + log(1/rest)) is
     * tiny; 1 - p_max rounds to 0 in float, and log p_max to 0 */
    static const float gaps[] = {10, 20, 30, 40, 60};
    for (size_t q = 0; q < sizeof gaps / sizeof gaps[0]; q++)
        for (int ti = 0; ti < 2; ti++) {
            const double t = ti ? 0.7 : 1.0;
            float s[5] = {gaps[q], 0.0f, -1.5f, 0.5f, -3.0f}, g[5], loss;
            long double rg[5];
            const long double rl = ld_entropy(s, 5, t, rg);
            kd_loss *h = make(5, s, 5, g, KD_REDUCTION_SUM, t);
            ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
            ck_assert_msg(rl > 0 && fabsl(loss - rl) <= 2e-6L * rl,
                          "gap %g T %g: H = %.9g, long double %.12Lg", gaps[q], t, loss, rl);
            for (int j = 0; j < 5; j++)
                ck_assert_msg(fabsl(g[j] - rg[j]) <= 2e-6L * fabsl(rg[j]) + 1e-44L,
                              "gap %g T %g: g[%d] = %.9g, long double %.12Lg", gaps[q], t, j, g[j],
                              rg[j]);
            kd_loss_destroy(h);
        }
}
END_TEST

START_TEST(non_finite_input)
{
    /* NaN and +Inf give NaN (as PyTorch); a -Inf class has p = 0 and 0 log 0 = 0 */
    float s[9] = {NAN, 0, 1, INFINITY, 0, 1, -INFINITY, 0, 0}, g[9], loss[3];
    kd_loss *h = make(3, s, 3, g, KD_REDUCTION_NONE, 1.0);
    ck_assert_int_eq(kd_loss_forward_backward(h, 3, loss), KD_OK);
    ck_assert(isnan(loss[0]) && isnan(loss[1]));
    ck_assert(kdt_close(loss[2], log(2.0), 1e-6, 0));
    ck_assert(g[6] == 0.0f && fabsf(g[7]) < 1e-7f && fabsf(g[8]) < 1e-7f);
    ck_assert(isnan(g[0]) && isnan(g[4]));
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1), KD_OK);
    loss[0] = 42;
    ck_assert_int_eq(kd_loss_forward(h, 3, loss), KD_ERR_NOT_FINITE);
    ck_assert(loss[0] == 42.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(errors)
{
    float s[4] = {0, 1, 2, 3}, t[4] = {0}, g[4], loss;
    int32_t y[2] = {0, 1};
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_ENTROPY, 2), KD_OK);
    /* temperature must be > 0 (KD_PARAM_TEMPERATURE's range) */
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, -1.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, NAN), KD_ERR_INVALID_ARGUMENT);
    /* no teacher, target, labels or thresholds */
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 2), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TARGET, t, 2), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_labels(h, y), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.9), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5), KD_ERR_UNSUPPORTED);
    /* missing inputs and NULL pointers */
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, 2, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_backward(h, 2, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_ERR_MISSING_INPUT); /* no grad */
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 1), KD_ERR_SHAPE);  /* ld < C */
    ck_assert_int_eq(kd_loss_forward(h, -1, &loss), KD_ERR_INVALID_ARGUMENT);
    /* negative weight */
    float w[2] = {1, -1};
    ck_assert_int_eq(kd_loss_bind_weights(h, w), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_bind_weights(h, NULL), KD_OK);
    /* a gradient overlapping the student other than exactly in place */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, s + 1, 2), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    /* reductions: MEAN, SUM, NONE only */
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, 3), KD_ERR_INVALID_ARGUMENT);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("entropy");
    TCase *tc = tcase_create("entropy");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, entropy_matches_reference);
    tcase_add_test(tc, extreme_logits_match_reference);
    tcase_add_test(tc, hand_values_and_gradient_formula);
    tcase_add_test(tc, one_class_gives_zero);
    tcase_add_test(tc, empty_batch_gives_zero);
    tcase_add_test(tc, confident_rows_keep_relative_accuracy);
    tcase_add_test(tc, non_finite_input);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
