/* UDA's training-signal annealing (kd_tsa_threshold, kd_tsa_mask of
 * kdlib/labels.h) against a double reference written from USB's UDA.TSA
 * (semilearn/algorithms/uda/uda.py) and its supervised mask
 * max(softmax(logits)) <= tsa, and from the paper's variant (the label's
 * probability); schedules, edge cases and every documented error. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/labels.h"
#include "kdtest.h"

/* ---- the reference -------------------------------------------------------- */

/* USB's UDA.TSA(schedule, cur_iter, total_iter, num_classes). */
static double ref_tsa(int32_t schedule, int64_t step, int64_t total, int64_t c)
{
    const double t = (double)step / (double)total;
    double alpha;
    switch (schedule) {
    case KD_TSA_LINEAR:
        alpha = t;
        break;
    case KD_TSA_EXP:
        alpha = exp((t - 1) * 5);
        break;
    case KD_TSA_LOG:
        alpha = 1 - exp(-t * 5);
        break;
    default:
        return 1.0;
    }
    return alpha * (1 - 1.0 / (double)c) + 1.0 / (double)c;
}

/* The probability the mask compares: the row's max softmax, or its label's. */
static double ref_prob(const float *row, int64_t c, int32_t label)
{
    double m = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < c; j++)
        m = fmax(m, row[j]);
    for (int64_t j = 0; j < c; j++)
        s += exp((double)row[j] - m);
    double best = 0.0;
    for (int64_t j = 0; j < c; j++)
        best = fmax(best, exp((double)row[j] - m) / s);
    return label < 0 ? best : exp((double)row[label] - m) / s;
}

/* ---- schedules ------------------------------------------------------------ */

START_TEST(thresholds_follow_usb)
{
    const int32_t schedules[] = {KD_TSA_NONE, KD_TSA_LINEAR, KD_TSA_EXP, KD_TSA_LOG};
    const int64_t totals[] = {1, 7, 1000, 1 << 20};
    const int64_t classes[] = {1, 2, 10, 1000};
    for (size_t s = 0; s < 4; s++)
        for (size_t t = 0; t < 4; t++)
            for (size_t k = 0; k < 4; k++)
                for (int64_t q = 0; q <= 8; q++) {
                    const int64_t step = totals[t] * q / 8;
                    double v = -1.0;
                    ck_assert_int_eq(
                        kd_tsa_threshold(schedules[s], step, totals[t], classes[k], &v, NULL, 0),
                        KD_OK);
                    const double want = ref_tsa(schedules[s], step, totals[t], classes[k]);
                    ck_assert_msg(kdt_close(v, want, 1e-15, 1e-15),
                                  "schedule %d step %lld / %lld, c %lld: %.17g vs %.17g",
                                  (int)schedules[s], (long long)step, (long long)totals[t],
                                  (long long)classes[k], v, want);
                    ck_assert(v >= 1.0 / (double)classes[k] - 1e-15 && v <= 1.0 + 1e-15);
                }
    double v;
    /* exact points: linear at half way, every schedule's end, log's and linear's start */
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LINEAR, 50, 100, 10, &v, NULL, 0), KD_OK);
    ck_assert(fabs(v - 0.55) < 1e-15);
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_EXP, 100, 100, 10, &v, NULL, 0), KD_OK);
    ck_assert(fabs(v - 1.0) < 1e-15);
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LOG, 0, 100, 10, &v, NULL, 0), KD_OK);
    ck_assert(fabs(v - 0.1) < 1e-15);
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_EXP, 0, 100, 10, &v, NULL, 0), KD_OK);
    ck_assert(fabs(v - (exp(-5.0) * 0.9 + 0.1)) < 1e-15);
    /* one class: always 1 */
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LINEAR, 0, 100, 1, &v, NULL, 0), KD_OK);
    ck_assert(v == 1.0);
}
END_TEST

START_TEST(threshold_errors)
{
    double v = 7.0;
    char err[160];
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LINEAR, 0, 10, 10, NULL, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_str_eq(err, "kd_tsa_threshold: threshold is NULL");
    ck_assert_int_eq(kd_tsa_threshold(4, 0, 10, 10, &v, err, sizeof err), KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err, "kd_tsa_threshold: schedule = 4 is not a KD_TSA_* value");
    ck_assert_int_eq(kd_tsa_threshold(-1, 0, 10, 10, &v, err, sizeof err), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LOG, 11, 10, 10, &v, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err, "kd_tsa_threshold: step = 11 is outside [0, 10]");
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LOG, -1, 10, 10, &v, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_LOG, 0, 0, 10, &v, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err, "kd_tsa_threshold: total_steps = 0 < 1");
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_NONE, 0, 10, 0, &v, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err, "kd_tsa_threshold: c = 0 < 1");
    ck_assert(v == 7.0); /* nothing written on failure */
    ck_assert_int_eq(kd_tsa_threshold(KD_TSA_NONE, 3, 10, 5, &v, err, sizeof err), KD_OK);
    ck_assert(v == 1.0 && err[0] == '\0');
}
END_TEST

/* ---- the mask ------------------------------------------------------------- */

START_TEST(masks_follow_the_reference_with_and_without_labels)
{
    enum { N = 300, C = 7, LD = 9 };
    static float logits[N * LD];
    static int32_t labels[N];
    float mask[N];
    kdt_rng g;
    kdt_seed(&g, 3);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < LD; j++)
            logits[i * LD + j] = j < C ? (float)(kdt_normal(&g) * (1 + i % 4)) : NAN;
        labels[i] = i % 11 == 0 ? -100 : (int32_t)(kdt_uniform(&g) * C);
    }
    const double thresholds[] = {0.0, 1.0 / C, 0.3, 0.55, 0.9, 1.0};
    for (int with_labels = 0; with_labels < 2; with_labels++)
        for (size_t t = 0; t < sizeof thresholds / sizeof thresholds[0]; t++) {
            int64_t kept = -1, want_kept = 0, zero = 0, one = 0;
            ck_assert_int_eq(kd_tsa_mask(N, C, logits, LD, with_labels ? labels : NULL, -100,
                                         thresholds[t], mask, &kept, NULL, 0),
                             KD_OK);
            for (int i = 0; i < N; i++) {
                const int ignored = with_labels && labels[i] == -100;
                const double p = ref_prob(logits + i * LD, C, with_labels ? labels[i] : -1);
                const float want = !ignored && p <= thresholds[t] ? 1.0f : 0.0f;
                want_kept += want == 1.0f;
                if (ignored || fabs(p - thresholds[t]) > 1e-6)
                    ck_assert_msg(mask[i] == want, "row %d, p %.9g, threshold %g: %g", i, p,
                                  thresholds[t], mask[i]);
                zero += mask[i] == 0.0f;
                one += mask[i] == 1.0f;
            }
            ck_assert_int_eq(zero + one, N);
            ck_assert_int_eq(kept, one);
            ck_assert_int_le(llabs(kept - want_kept), 2);
            if (thresholds[t] == 0.0)
                ck_assert_int_eq(kept, 0); /* every p >= 1/C > 0 */
            if (thresholds[t] == 1.0)
                ck_assert_int_eq(kept, with_labels ? N - (N + 10) / 11 : N);
            if (thresholds[t] == 0.55)
                ck_assert(kept > 20 && kept < N - 20);
        }
}
END_TEST

START_TEST(edge_cases)
{
    float mask[4] = {7, 7, 7, 7};
    int64_t kept;
    /* extreme logits: p = 1 (kept only at threshold 1) and p = 0 for the others */
    const float big[8] = {1e4f, -1e4f, 0.0f, 0.0f, -1e4f, 1e4f, 0.0f, 0.0f};
    ck_assert_int_eq(kd_tsa_mask(2, 2, big, 4, NULL, -100, 0.999999, mask, &kept, NULL, 0), KD_OK);
    ck_assert(mask[0] == 0.0f && mask[1] == 0.0f && kept == 0);
    ck_assert_int_eq(kd_tsa_mask(2, 2, big, 4, NULL, -100, 1.0, mask, &kept, NULL, 0), KD_OK);
    ck_assert(mask[0] == 1.0f && mask[1] == 1.0f && kept == 2);
    /* the label's probability of a row dominated by another class: 0, kept */
    ck_assert_int_eq(kd_tsa_mask(2, 2, big, 4, (int32_t[]){1, 1}, -100, 0.5, mask, &kept, NULL, 0),
                     KD_OK);
    ck_assert(mask[0] == 1.0f && mask[1] == 0.0f && kept == 1);
    /* -Inf logits are masked classes; one class: p = 1 */
    const float minf[3] = {-INFINITY, 0.0f, 0.0f};
    ck_assert_int_eq(kd_tsa_mask(1, 3, minf, 3, NULL, -100, 0.5, mask, NULL, NULL, 0), KD_OK);
    ck_assert(mask[0] == 1.0f);
    ck_assert_int_eq(kd_tsa_mask(1, 1, (float[]){3.0f}, 1, NULL, -100, 0.999, mask, &kept, NULL, 0),
                     KD_OK);
    ck_assert(mask[0] == 0.0f && kept == 0);
    /* n = 0: nothing written, 0 kept */
    mask[0] = 7;
    ck_assert_int_eq(kd_tsa_mask(0, 3, minf, 3, NULL, -100, 0.5, mask, &kept, NULL, 0), KD_OK);
    ck_assert(mask[0] == 7 && kept == 0);
    /* every row ignored: every mask 0 */
    ck_assert_int_eq(kd_tsa_mask(2, 2, big, 4, (int32_t[]){-1, -1}, -1, 1.0, mask, &kept, NULL, 0),
                     KD_OK);
    ck_assert(mask[0] == 0.0f && mask[1] == 0.0f && kept == 0);
}
END_TEST

START_TEST(mask_errors_write_nothing)
{
    float x[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, mask[2] = {7, 7};
    int64_t kept = 9;
    char err[200];
    const struct {
        kd_status st;
        const char *msg;
        int64_t n, c, ld;
        const float *logits;
        const int32_t *labels;
        int32_t ignore;
        double threshold;
        float *mask;
        int64_t *kept;
    } cases[] = {
        {KD_ERR_NULL_POINTER, "kd_tsa_mask: logits is NULL", 2, 3, 3, NULL, NULL, -100, 0.5, mask,
         &kept},
        {KD_ERR_NULL_POINTER, "kd_tsa_mask: mask is NULL", 2, 3, 3, x, NULL, -100, 0.5, NULL,
         &kept},
        {KD_ERR_SHAPE, "kd_tsa_mask: n = -1 < 0", -1, 3, 3, x, NULL, -100, 0.5, mask, &kept},
        {KD_ERR_SHAPE, "kd_tsa_mask: c = 0", 2, 0, 3, x, NULL, -100, 0.5, mask, &kept},
        {KD_ERR_SHAPE, "kd_tsa_mask: ld = 2 < c = 3", 2, 3, 2, x, NULL, -100, 0.5, mask, &kept},
        {KD_ERR_INVALID_ARGUMENT, "kd_tsa_mask: threshold = nan is outside [0, 1]", 2, 3, 3, x,
         NULL, -100, NAN, mask, &kept},
        {KD_ERR_INVALID_ARGUMENT, "kd_tsa_mask: threshold = 1.5 is outside [0, 1]", 2, 3, 3, x,
         NULL, -100, 1.5, mask, &kept},
        {KD_ERR_INVALID_ARGUMENT, "kd_tsa_mask: labels[1] = 3", 2, 3, 3, x, (int32_t[]){0, 3}, -100,
         0.5, mask, &kept},
        {KD_ERR_INVALID_ARGUMENT, "kd_tsa_mask: ignore_index = 2 is a class", 2, 3, 3, x,
         (int32_t[]){0, 1}, 2, 0.5, mask, &kept},
        {KD_ERR_NOT_FINITE, "kd_tsa_mask", 2, 3, 3, (float[]){0, NAN, 0, 0, 0, 0}, NULL, -100, 0.5,
         mask, &kept},
        {KD_ERR_NOT_FINITE, "kd_tsa_mask", 2, 3, 3, (float[]){0, 0, 0, 0, INFINITY, 0}, NULL, -100,
         0.5, mask, &kept},
        {KD_ERR_NOT_FINITE, "kd_tsa_mask", 1, 3, 3, (float[]){-INFINITY, -INFINITY, -INFINITY},
         NULL, -100, 0.5, mask, &kept},
        {KD_ERR_ALIASING, "kd_tsa_mask", 2, 3, 3, x, NULL, -100, 0.5, x + 1, &kept},
        {KD_ERR_ALIASING, "kd_tsa_mask", 2, 3, 3, x, NULL, -100, 0.5, mask,
         (int64_t *)(void *)mask},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float before[6];
        memcpy(before, x, sizeof x);
        kd_status st = kd_tsa_mask(cases[k].n, cases[k].c, cases[k].logits, cases[k].ld,
                                   cases[k].labels, cases[k].ignore, cases[k].threshold,
                                   cases[k].mask, cases[k].kept, err, sizeof err);
        ck_assert_msg(st == cases[k].st, "case %zu: status %d (%s)", k, (int)st, err);
        ck_assert_msg(strstr(err, cases[k].msg) != NULL, "case %zu: '%s'", k, err);
        ck_assert(mask[0] == 7 && mask[1] == 7 && kept == 9);
        ck_assert(memcmp(before, x, sizeof x) == 0);
    }
    /* a short message buffer is truncated, never overrun */
    char tiny[8];
    ck_assert_int_eq(kd_tsa_mask(2, 3, NULL, 3, NULL, -100, 0.5, mask, NULL, tiny, sizeof tiny),
                     KD_ERR_NULL_POINTER);
    ck_assert(strlen(tiny) == 7);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tsa");
    TCase *t = tcase_create("tsa");
    tcase_add_test(t, thresholds_follow_usb);
    tcase_add_test(t, threshold_errors);
    tcase_add_test(t, masks_follow_the_reference_with_and_without_labels);
    tcase_add_test(t, edge_cases);
    tcase_add_test(t, mask_errors_write_nothing);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
