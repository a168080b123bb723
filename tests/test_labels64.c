/* kd_loss_bind_labels64: int64 labels read in place give bit for bit the
 * results of the same labels bound as int32 (every kind with labels, every
 * reduction, the fused linear call), the same label errors, a refusal of
 * labels beyond the int32 range, rebinding rules and the aliasing check over
 * the labels' 8-byte span. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"

enum { N = 37, C = 11, LD = C + 2, D = 6 };

typedef struct {
    float s[N * LD], t[N * LD], g32[N * LD], g64[N * LD], l32[N], l64[N];
    int32_t y32[N];
    int64_t y64[N];
} data;

static void fill(data *d, uint64_t seed)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, d->s, N * LD, 2.0);
    kdt_fill_normal(&r, d->t, N * LD, 2.0);
    for (int i = 0; i < N; i++) {
        d->y32[i] = (i % 5 == 3) ? -100 : (int32_t)(kdt_next(&r) % C);
        d->y64[i] = d->y32[i];
    }
}

/* One fused call with either label width bound; returns the status. */
static kd_status run(kd_loss_kind kind, int red, const data *d, int wide, float *loss, float *g)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, kind, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->s, LD);
    if (kind != KD_LOSS_CROSS_ENTROPY)
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->t, LD);
    ck_assert_int_eq(wide ? kd_loss_bind_labels64(h, d->y64) : kd_loss_bind_labels(h, d->y32),
                     KD_OK);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
    kd_status st = kd_loss_forward_backward(h, N, loss);
    kd_loss_destroy(h);
    return st;
}

START_TEST(int64_labels_give_the_int32_results_bit_for_bit)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,
                                         KD_LOSS_LOGIT_MSE};
    static const int reds[] = {KD_REDUCTION_MEAN, KD_REDUCTION_SUM, KD_REDUCTION_NONE};
    data *d = calloc(1, sizeof *d);
    fill(d, 7);
    for (size_t k = 0; k < 3; k++)
        for (size_t r = 0; r < 3; r++) {
            memset(d->g32, 0, sizeof d->g32);
            memset(d->g64, 0, sizeof d->g64);
            ck_assert_int_eq(run(kinds[k], reds[r], d, 0, d->l32, d->g32), KD_OK);
            ck_assert_int_eq(run(kinds[k], reds[r], d, 1, d->l64, d->g64), KD_OK);
            const size_t nl = reds[r] == KD_REDUCTION_NONE ? N : 1;
            ck_assert_msg(memcmp(d->l32, d->l64, nl * sizeof(float)) == 0, "loss kind %d red %d",
                          (int)kinds[k], reds[r]);
            ck_assert_msg(memcmp(d->g32, d->g64, sizeof d->g32) == 0, "grad kind %d red %d",
                          (int)kinds[k], reds[r]);
        }
    free(d);
}
END_TEST

START_TEST(ignore_index_rows_are_skipped_with_int64_labels)
{
    /* every row ignored: loss 0 and zero gradient, as with int32 labels */
    data *d = calloc(1, sizeof *d);
    fill(d, 8);
    for (int i = 0; i < N; i++)
        d->y64[i] = d->y32[i] = -100;
    ck_assert_int_eq(run(KD_LOSS_CROSS_ENTROPY, KD_REDUCTION_MEAN, d, 1, d->l64, d->g64), KD_OK);
    ck_assert(d->l64[0] == 0.0f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            ck_assert(d->g64[i * LD + j] == 0.0f);
    free(d);
}
END_TEST

static void expect_refused(int64_t bad, const char *text)
{
    data *d = calloc(1, sizeof *d);
    fill(d, 9);
    d->y64[4] = bad;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->s, LD);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->t, LD);
    kd_loss_bind_labels64(h, d->y64);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d->g64, LD);
    for (int i = 0; i < N * LD; i++)
        d->g64[i] = 1234.5f;
    float loss = 1234.5f;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kd_loss_last_error(h), text) != NULL, "%s", kd_loss_last_error(h));
    ck_assert(loss == 1234.5f && d->g64[0] == 1234.5f); /* nothing written */
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    kd_loss_destroy(h);
    free(d);
}

START_TEST(out_of_range_int64_labels_are_refused_naming_the_row)
{
    expect_refused(C, "labels[4] = 11 outside [0, 11)");
    expect_refused(-7, "labels[4] = -7 outside");
}
END_TEST

START_TEST(labels_beyond_the_int32_range_are_refused_not_truncated)
{
    /* 2^32 + 3 truncates to class 3; 2^32 - 100 to the ignore index -100 */
    expect_refused(((int64_t)1 << 32) + 3, "labels[4] = 4294967299 outside");
    expect_refused(((int64_t)1 << 32) - 100, "labels[4] = 4294967196 outside");
    expect_refused(INT64_MIN, "labels[4] = -9223372036854775808 outside");
}
END_TEST

START_TEST(binding_one_width_replaces_the_other_and_null_unbinds)
{
    data *d = calloc(1, sizeof *d);
    fill(d, 10);
    d->y64[0] = C; /* the int64 labels are invalid, the int32 ones valid */
    kd_loss *h;
    float loss;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, C), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->s, LD);
    ck_assert_int_eq(kd_loss_bind_labels64(h, d->y64), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_bind_labels(h, d->y32), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
    ck_assert_int_eq(kd_loss_bind_labels64(h, d->y64), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_bind_labels64(h, NULL), KD_OK); /* unbinds both */
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert_int_eq(kd_loss_bind_labels64(NULL, d->y64), KD_ERR_NULL_POINTER);
    kd_loss_destroy(h);
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_MCC, C), KD_OK);
    ck_assert_int_eq(kd_loss_bind_labels64(h, d->y64), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "bind_labels64"));
    kd_loss_destroy(h);
    free(d);
}
END_TEST

START_TEST(a_gradient_over_the_second_half_of_the_int64_labels_is_aliasing)
{
    /* N int64 labels span 8N bytes; a gradient starting 4N bytes in overlaps
     * them, though it would not overlap N int32 labels there */
    enum { NA = 4, CA = 3 };
    int64_t *buf = calloc(NA * 2 + NA * CA, sizeof(int64_t));
    float s[NA * CA] = {0}, t[NA * CA] = {0}, loss;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, CA), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, CA);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, CA);
    kd_loss_bind_labels64(h, buf);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, (float *)(void *)buf + NA, CA);
    ck_assert_int_eq(kd_loss_forward_backward(h, NA, &loss), KD_ERR_ALIASING);
    kd_loss_bind_labels(h, (const int32_t *)(void *)buf);
    ck_assert_int_eq(kd_loss_forward_backward(h, NA, &loss), KD_OK);
    kd_loss_destroy(h);
    free(buf);
}
END_TEST

/* the fused linear call with each label width */
static void linear(const data *d, const float *hid, const float *w, int wide, float *loss,
                   float *gh, float *gw)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->t, LD);
    if (wide)
        kd_loss_bind_labels64(h, d->y64);
    else
        kd_loss_bind_labels(h, d->y32);
    ck_assert_int_eq(kd_linear_kl_distill(h, N, D, hid, D, w, D, NULL, 0, NULL, 0, NULL, 0, NULL, 0,
                                          loss, gh, D, gw, D, NULL),
                     KD_OK);
    kd_loss_destroy(h);
}

START_TEST(the_fused_linear_call_reads_int64_labels_bit_for_bit)
{
    data *d = calloc(1, sizeof *d);
    fill(d, 11);
    float hid[N * D], w[C * D], gh32[N * D], gw32[C * D], gh64[N * D], gw64[C * D], a, b;
    kdt_rng r;
    kdt_seed(&r, 12);
    kdt_fill_normal(&r, hid, N * D, 1.0);
    kdt_fill_normal(&r, w, C * D, 1.0);
    linear(d, hid, w, 0, &a, gh32, gw32);
    linear(d, hid, w, 1, &b, gh64, gw64);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
    ck_assert(memcmp(gh32, gh64, sizeof gh32) == 0);
    ck_assert(memcmp(gw32, gw64, sizeof gw32) == 0);
    d->y64[2] = ((int64_t)1 << 40) + 1;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->t, LD);
    kd_loss_bind_labels64(h, d->y64);
    ck_assert_int_eq(kd_linear_kl_distill(h, N, D, hid, D, w, D, NULL, 0, NULL, 0, NULL, 0, NULL, 0,
                                          &a, gh64, D, gw64, D, NULL),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "labels[2] = 1099511627777"));
    kd_loss_destroy(h);
    free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("labels64");
    TCase *tc = tcase_create("labels64");
    tcase_add_test(tc, int64_labels_give_the_int32_results_bit_for_bit);
    tcase_add_test(tc, ignore_index_rows_are_skipped_with_int64_labels);
    tcase_add_test(tc, out_of_range_int64_labels_are_refused_naming_the_row);
    tcase_add_test(tc, labels_beyond_the_int32_range_are_refused_not_truncated);
    tcase_add_test(tc, binding_one_width_replaces_the_other_and_null_unbinds);
    tcase_add_test(tc, a_gradient_over_the_second_half_of_the_int64_labels_is_aliasing);
    tcase_add_test(tc, the_fused_linear_call_reads_int64_labels_bit_for_bit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
