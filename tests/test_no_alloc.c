/* Compute calls with shapes already seen never allocate (docs/api.md,
 * issue 16 point 4).  This program defines malloc, calloc, realloc and the
 * aligned allocators itself: the dynamic linker binds libkd's (and
 * libgomp's) calls to these, which count while counting is on and forward to
 * glibc's own __libc_* entry points.  Without a sanitizer only (the
 * sanitizers replace the allocator themselves): the test is labelled nosan.
 *
 * For every loss kind, with one thread: a first call at n rows may grow the
 * handle's workspace; every later call at n or fewer rows, forward, backward
 * and fused, must allocate nothing.  The same for kd_threshold's update, weights
 * and split-statistics entry points and kd_ema_update, which document "no
 * allocation". */
#define _GNU_SOURCE
#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/ema.h"
#include "kdlib/kdlib.h"
#include "kdlib/threshold.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
int main(void) { return 77; } /* the sanitizer owns the allocator: skipped */
#else

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile int counting;
static volatile long allocations;

void *malloc(size_t n)
{
    if (counting)
        allocations++;
    return __libc_malloc(n);
}
void *calloc(size_t k, size_t n)
{
    if (counting)
        allocations++;
    return __libc_calloc(k, n);
}
void *realloc(void *p, size_t n)
{
    if (counting)
        allocations++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t a, size_t n)
{
    if (counting)
        allocations++;
    return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n)
{
    if (counting)
        allocations++;
    void *p = __libc_memalign(a, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

#define N 64
#define C 37 /* a long row and a SIMD tail */

static float student[N * C], teacher[N * C], grad[N * C], grad_t[N * C], per[N], mask[N];
static float la[N * C], ua[N * C], gla[N * C], gua[N * C], up[N], w[N], cls[C];
static int32_t labels[N], plabels[N];

static void fill(void)
{
    for (int i = 0; i < N * C; i++) {
        student[i] = (float)((i * 7919) % 113) * 0.05f - 2.5f;
        teacher[i] = (float)((i * 104729) % 97) * 0.06f - 3.0f;
        la[i] = student[i] * 0.5f, ua[i] = teacher[i] * 0.7f;
    }
    for (int i = 0; i < N; i++) {
        labels[i] = (i * 5) % C;
        up[i] = 1.0f;
        w[i] = 0.5f + (float)(i % 3) * 0.25f;
    }
    for (int j = 0; j < C; j++)
        cls[j] = 0.5f + (float)(j % 4) * 0.125f;
}

static long allocations_of(kd_status (*call)(kd_loss *, int64_t, float *), kd_loss *h, int64_t n)
{
    float loss[N];
    allocations = 0;
    counting = 1;
    const kd_status st = call(h, n, loss);
    counting = 0;
    ck_assert_msg(st == KD_OK, "%s", kd_loss_last_error(h));
    return allocations;
}

static kd_status backward_call(kd_loss *h, int64_t n, float *loss)
{
    (void)loss;
    return kd_loss_backward(h, n, up);
}

/* Binds what the kind takes; roles it lacks are refused and ignored. */
static kd_loss *make(kd_loss_kind kind)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, kind, C), KD_OK);
    if (kind == KD_LOSS_WORST_CASE) {
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, N / 2), KD_OK);
        kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, student, C);
        kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, la, C);
        kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, teacher, C);
        kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, ua, C);
        kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, gla, C);
        kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, gua, C);
        return h;
    }
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, student, C);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, teacher, C);
    kd_loss_bind_labels(h, labels);
    kd_loss_bind_weights(h, w);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, C);
    kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, grad_t, C);
    kd_loss_bind_output(h, KD_ARG_MASK, mask, 0);
    kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, plabels);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, cls);
    kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, cls);
    if (kind == KD_LOSS_KL_DISTILL)
        kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5);
    return h;
}

static const kd_loss_kind KINDS[] = {
    KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,  KD_LOSS_LOGIT_MSE,     KD_LOSS_PSEUDO_LABEL,
    KD_LOSS_STRONG_WEAK,   KD_LOSS_CONSISTENCY, KD_LOSS_CLASS_BALANCE, KD_LOSS_MCC,
    KD_LOSS_WORST_CASE,    KD_LOSS_ENTROPY,     KD_LOSS_FAIRNESS,
};

START_TEST(loss_calls_at_seen_shapes_do_not_allocate)
{
    const kd_loss_kind kind = KINDS[_i];
    fill();
    kd_loss *h = make(kind);
    /* the first call at N rows may grow the workspace */
    (void)allocations_of(kd_loss_forward_backward, h, N);
    for (int rep = 0; rep < 3; rep++) {
        const int64_t n = rep == 0 ? N : (rep == 1 ? N / 2 : 1);
        ck_assert_msg(allocations_of(kd_loss_forward, h, n) == 0,
                      "kind %d: kd_loss_forward(n = %lld) allocated %ld times", (int)kind,
                      (long long)n, allocations);
        ck_assert_msg(allocations_of(backward_call, h, n) == 0,
                      "kind %d: kd_loss_backward(n = %lld) allocated %ld times", (int)kind,
                      (long long)n, allocations);
        ck_assert_msg(allocations_of(kd_loss_forward_backward, h, n) == 0,
                      "kind %d: kd_loss_forward_backward(n = %lld) allocated %ld times", (int)kind,
                      (long long)n, allocations);
    }
    /* per-sample output: another workspace layout, seen once, then none */
    if (kind != KD_LOSS_CLASS_BALANCE && kind != KD_LOSS_MCC && kind != KD_LOSS_WORST_CASE &&
        kind != KD_LOSS_FAIRNESS) {
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE), KD_OK);
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0), KD_OK);
        (void)allocations_of(kd_loss_forward_backward, h, N);
        ck_assert_msg(allocations_of(kd_loss_forward_backward, h, N) == 0,
                      "kind %d with reduction NONE allocated %ld times", (int)kind, allocations);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(batch_statistics_calls_at_seen_shapes_do_not_allocate)
{
    static const kd_loss_kind batch[] = {KD_LOSS_CLASS_BALANCE, KD_LOSS_MCC, KD_LOSS_FAIRNESS};
    const kd_loss_kind kind = batch[_i];
    fill();
    kd_loss *h = make(kind);
    int64_t m = 0;
    ck_assert_int_eq(kd_loss_stats_size(h, &m), KD_OK);
    double stats[C * C + 2];
    float loss[N];
    ck_assert_int_eq(kd_loss_local_stats(h, N, stats), KD_OK);
    ck_assert_int_eq(kd_loss_finish(h, N, stats, loss), KD_OK);
    allocations = 0;
    counting = 1;
    kd_status a = kd_loss_local_stats(h, N, stats);
    kd_status b = kd_loss_finish(h, N, stats, loss);
    counting = 0;
    ck_assert_int_eq(a, KD_OK);
    ck_assert_int_eq(b, KD_OK);
    ck_assert_msg(allocations == 0, "kind %d: local_stats + finish allocated %ld times", (int)kind,
                  allocations);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(threshold_and_ema_updates_do_not_allocate)
{
    fill();
    float probs[N * C];
    int64_t idx[N];
    for (int i = 0; i < N; i++) {
        float s = 0;
        for (int j = 0; j < C; j++)
            s += probs[i * C + j] = (float)((i + 3 * j) % 11) + 0.5f;
        for (int j = 0; j < C; j++)
            probs[i * C + j] /= s;
        probs[i * C + i % C] = 0.99f;
        idx[i] = i;
    }
    for (kd_threshold_algorithm a = KD_THRESHOLD_FLEXMATCH; a <= KD_THRESHOLD_SOFTMATCH; a++) {
        kd_threshold *t = NULL;
        ck_assert_int_eq(kd_threshold_create(&t, a, N, C), KD_OK);
        allocations = 0;
        counting = 1;
        kd_status s1 = kd_threshold_update_probs(t, N, C, probs, C, idx);
        kd_status s2 = kd_threshold_weights_probs(t, N, C, probs, C, w, plabels);
        counting = 0;
        ck_assert_int_eq(s1, KD_OK);
        ck_assert_int_eq(s2, KD_OK);
        ck_assert_msg(allocations == 0, "%s: update/weights allocated %ld times",
                      kd_threshold_algorithm_name(a), allocations);
        kd_threshold_destroy(t);
    }
    /* split statistics: local stats of the rows (and labelled rows), update_stats */
    for (kd_threshold_algorithm a = KD_THRESHOLD_FREEMATCH; a <= KD_THRESHOLD_DEBIASPL; a++) {
        kd_threshold *t = NULL;
        ck_assert_int_eq(kd_threshold_create(&t, a, N, C), KD_OK);
        if (a == KD_THRESHOLD_SOFTMATCH)
            ck_assert_int_eq(kd_threshold_set_int(t, KD_THRESHOLD_PARAM_DIST_ALIGN, 0), KD_OK);
        double stats[3 + 3 * C];
        int64_t size = 0;
        allocations = 0;
        counting = 1;
        kd_status s0 = kd_threshold_stats_size(t, &size);
        kd_status s1 = kd_threshold_local_stats(t, N, C, probs, C, stats);
        kd_status s2 = a == KD_THRESHOLD_ADAMATCH
                           ? kd_threshold_local_labeled_stats(t, N, C, probs, C, stats)
                           : KD_OK;
        kd_status s3 = kd_threshold_update_stats(t, stats);
        counting = 0;
        ck_assert_int_eq(s0, KD_OK);
        ck_assert_int_le(size, 3 + 3 * C);
        ck_assert_int_eq(s1, KD_OK);
        ck_assert_int_eq(s2, KD_OK);
        ck_assert_int_eq(s3, KD_OK);
        ck_assert_msg(allocations == 0, "%s: split statistics allocated %ld times",
                      kd_threshold_algorithm_name(a), allocations);
        kd_threshold_destroy(t);
    }
    const float *arrays[1] = {student};
    const int64_t lengths[1] = {N * C};
    kd_ema *e = NULL;
    ck_assert_int_eq(kd_ema_create(&e, 1, arrays, lengths, NULL), KD_OK);
    allocations = 0;
    counting = 1;
    kd_status st = kd_ema_update(e, arrays);
    counting = 0;
    ck_assert_int_eq(st, KD_OK);
    ck_assert_msg(allocations == 0, "kd_ema_update allocated %ld times", allocations);
    kd_ema_destroy(e);
}
END_TEST

/* The counter itself works: a call that must allocate is seen. */
START_TEST(the_counter_sees_the_library_allocate)
{
    kd_loss *h = NULL;
    allocations = 0;
    counting = 1;
    kd_status st = kd_loss_create(&h, KD_LOSS_KL_DISTILL, C);
    counting = 0;
    ck_assert_int_eq(st, KD_OK);
    ck_assert_msg(allocations > 0, "kd_loss_create was not seen allocating");
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("no_alloc");
    TCase *tc = tcase_create("calls");
    tcase_add_test(tc, the_counter_sees_the_library_allocate);
    tcase_add_loop_test(tc, loss_calls_at_seen_shapes_do_not_allocate, 0,
                        (int)(sizeof KINDS / sizeof KINDS[0]));
    tcase_add_loop_test(tc, batch_statistics_calls_at_seen_shapes_do_not_allocate, 0, 3);
    tcase_add_test(tc, threshold_and_ema_updates_do_not_allocate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
#endif
