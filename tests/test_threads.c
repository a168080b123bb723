/*
 * Thread safety and determinism.
 *
 * - Distinct handles used concurrently from many threads (pthreads) give the
 *   results of a single-threaded run, bit for bit (core.h, loss.h, ema.h,
 *   flexmatch.h: "distinct handles are independent").
 * - The same inputs and thread count give bit-identical outputs, and the
 *   loss and EMA results do not depend on KD_PARAM_THREADS (1, 2, 3, 4): rows
 *   are reduced in row order.
 *
 * - With one thread (the default) no call enters OpenMP: GOMP_parallel,
 *   interposed below, is never called (issue 16: a parallel region allocates
 *   a team, and libgomp exits the process when that allocation fails).
 *
 * Every scenario below runs a whole life cycle (create, configure, bind,
 * compute, destroy) and returns its outputs as one byte string, so that
 * comparisons are memcmp.  scripts/tsan.sh builds this test with
 * ThreadSanitizer (clang, LLVM's libomp with the Archer tool, so that OpenMP's
 * own synchronisation is understood).
 */
#define _GNU_SOURCE
#include <check.h>
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdlib/ema.h"
#include "kdlib/flexmatch.h"
#include "kdlib/kdlib.h"
#include "kdlib/linear.h"
#include "kdtest.h"

/* libgomp's entry of every `#pragma omp parallel` (GCC), interposed: the
 * executable's definition comes first in the lookup of libkd.so's
 * reference, and forwards to libgomp's. */
static atomic_long g_parallel_regions;
/* when set, the interposer calls it before the region starts (the busy-handle
 * test holds a call there) */
static void (*_Atomic g_region_hook)(void);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)
{
    typedef void (*real_fn)(void (*)(void *), void *, unsigned, unsigned);
    static real_fn real;
    if (!real) {
        real = (real_fn)dlvsym(RTLD_NEXT, "GOMP_parallel", "GOMP_4.0");
        if (!real)
            real = (real_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    }
    atomic_fetch_add(&g_parallel_regions, 1);
    void (*hook)(void) = atomic_exchange(&g_region_hook, NULL);
    if (hook)
        hook();
    if (real)
        real(fn, data, num_threads, flags);
    else
        fn(data); /* no OpenMP runtime with this entry: a team of one */
}

#define N 67 /* odd: uneven splits over 2, 3 and 4 threads */
#define NU 41
#define C 13
#define LD 16

/* Read-only inputs shared by every thread. */
static float g_student[N * LD], g_teacher[N * LD], g_teacher2[N * LD], g_probs[N * LD];
static float g_um[NU * LD], g_ua[NU * LD], g_weights[N], g_mask[N], g_pm[C], g_lh[C];
static int32_t g_labels[N];

static void init_inputs(void)
{
    kdt_rng r;
    kdt_seed(&r, 8);
    kdt_fill_normal(&r, g_student, N * LD, 2.0);
    kdt_fill_normal(&r, g_teacher, N * LD, 3.0);
    kdt_fill_normal(&r, g_teacher2, N * LD, 3.0);
    kdt_fill_normal(&r, g_um, NU * LD, 2.0);
    kdt_fill_normal(&r, g_ua, NU * LD, 2.0);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < C; j++)
            s += (g_probs[i * LD + j] = (float)kdt_uniform(&r));
        for (int j = 0; j < C; j++)
            g_probs[i * LD + j] = (float)(g_probs[i * LD + j] / s);
        g_labels[i] = i % 11 == 5 ? -100 : (int32_t)(kdt_next(&r) % C);
        g_weights[i] = (float)kdt_uniform(&r);
        g_mask[i] = g_weights[i] > 0.4f ? 1.0f : 0.0f;
    }
    for (int j = 0; j < C; j++) {
        g_pm[j] = (float)(0.5 + kdt_uniform(&r)) / C;
        g_lh[j] = j == 2 ? 0.0f : (float)(0.5 + kdt_uniform(&r)) / C;
    }
    /* a few confident teacher rows so that thresholded losses keep some */
    for (int i = 0; i < N; i += 3)
        g_teacher[i * LD + i % C] += 12.0f;
}

/* ---- results as byte strings ---------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int failed; /* a call returned an error: the message is in `msg` */
    char msg[256];
} result;

static void put(result *r, const void *p, size_t n)
{
    if (r->n + n > r->cap) {
        r->cap = (r->n + n) * 2;
        r->p = realloc(r->p, r->cap);
        if (!r->p)
            abort();
    }
    memcpy(r->p + r->n, p, n);
    r->n += n;
}

static void check(result *r, kd_status st, const char *what, const char *detail)
{
    if (st != KD_OK && !r->failed) {
        r->failed = 1;
        snprintf(r->msg, sizeof r->msg, "%s: %s (%s)", what, kd_status_string(st),
                 detail ? detail : "");
    }
}

static void result_free(result *r)
{
    free(r->p);
    memset(r, 0, sizeof *r);
}

static int same(const result *a, const result *b)
{
    return !a->failed && !b->failed && a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

/* ---- scenarios -------------------------------------------------------------- */

enum {
    S_KL,
    S_KL_MULTI,
    S_CE,
    S_MSE,
    S_PSEUDO,
    S_STRONG_WEAK,
    S_CONSISTENCY,
    S_CLASS_BALANCE,
    S_MCC,
    S_WORST_CASE,
    S_ENTROPY,
    S_FAIRNESS,
    NUM_LOSS_SCENARIOS,
    S_EMA = NUM_LOSS_SCENARIOS,
    S_FLEXMATCH,
    S_LABELS,
    NUM_SCENARIOS
};

static const char *scenario_name(int s)
{
    static const char *names[] = {"kl",           "kl-multi",    "ce",          "mse",
                                  "pseudo-label", "strong-weak", "consistency", "class-balance",
                                  "mcc",          "worst-case",  "entropy",     "fairness",
                                  "ema",          "flexmatch",   "labels"};
    return names[s];
}

static void run_loss(int s, int threads, result *out)
{
    static const kd_loss_kind kinds[] = {
        KD_LOSS_KL_DISTILL,   KD_LOSS_KL_DISTILL,  KD_LOSS_CROSS_ENTROPY, KD_LOSS_LOGIT_MSE,
        KD_LOSS_PSEUDO_LABEL, KD_LOSS_STRONG_WEAK, KD_LOSS_CONSISTENCY,   KD_LOSS_CLASS_BALANCE,
        KD_LOSS_MCC,          KD_LOSS_WORST_CASE,  KD_LOSS_ENTROPY,       KD_LOSS_FAIRNESS};
    float grad[N * LD], grad2[N * LD], gu[NU * LD], per[N], mask[N], loss = 0;
    int32_t plabels[N];
    memset(grad, 0, sizeof grad), memset(grad2, 0, sizeof grad2), memset(gu, 0, sizeof gu);
    memset(per, 0, sizeof per), memset(mask, 0, sizeof mask), memset(plabels, 0, sizeof plabels);
    kd_loss *h = NULL;
    kd_status st = kd_loss_create(&h, kinds[s], C);
    check(out, st, "kd_loss_create", scenario_name(s));
    if (st)
        return;
#define T(call) check(out, (call), #call, kd_loss_last_error(h))
    T(kd_loss_set_int(h, KD_PARAM_THREADS, threads));
    switch (s) {
    case S_KL:
    case S_KL_MULTI:
        T(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 4.0));
        T(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.9));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_labels(h, g_labels));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        T(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0));
        if (s == S_KL) {
            T(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD));
        } else {
            const float *ts[2] = {g_teacher, g_teacher2};
            const int64_t lds[2] = {LD, LD};
            const float w[2] = {0.7f, 0.3f};
            T(kd_loss_set_int(h, KD_PARAM_DIVERGENCE, KD_DIVERGENCE_JSD));
            T(kd_loss_set_int(h, KD_PARAM_NORMALIZATION, KD_NORMALIZE_VALID));
            T(kd_loss_bind_teachers(h, 2, ts, lds, w));
            T(kd_loss_bind_weights(h, g_weights));
        }
        break;
    case S_CE:
        T(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0));
        T(kd_loss_set_float(h, KD_PARAM_LABEL_SMOOTHING, 0.1));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD));
        T(kd_loss_bind_labels(h, g_labels));
        T(kd_loss_bind_weights(h, g_weights));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        T(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0));
        break;
    case S_MSE:
        T(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD));
        T(kd_loss_bind_labels(h, g_labels));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        break;
    case S_PSEUDO:
    case S_STRONG_WEAK:
        T(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.6));
        if (s == S_STRONG_WEAK)
            T(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.5));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        T(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0));
        T(kd_loss_bind_output(h, KD_ARG_MASK, mask, 0));
        T(kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, plabels));
        break;
    case S_CONSISTENCY:
        T(kd_loss_set_int(h, KD_PARAM_DISTANCE, KD_DISTANCE_JS));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD));
        T(kd_loss_bind_weights(h, g_weights));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, grad2, LD));
        break;
    case S_CLASS_BALANCE:
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        break;
    case S_ENTROPY:
        T(kd_loss_bind_weights(h, g_weights));
        T(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0));
        T(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.5));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        break;
    case S_FAIRNESS:
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_weights(h, g_mask));
        T(kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, g_pm));
        T(kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, g_lh));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        break;
    case S_MCC:
        T(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.5));
        T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD));
        break;
    case S_WORST_CASE:
        T(kd_loss_set_float(h, KD_PARAM_ETA_PRIME, 2.0));
        T(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, NU));
        T(kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, g_teacher, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, g_student, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, g_um, LD));
        T(kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, g_ua, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, grad, LD));
        T(kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, gu, LD));
        break;
    default:
        break;
    }
    /* fused, then forward and backward separately (SUM for a second value) */
    T(kd_loss_forward_backward(h, N, &loss));
    put(out, &loss, sizeof loss);
    put(out, grad, sizeof grad), put(out, grad2, sizeof grad2), put(out, gu, sizeof gu);
    put(out, per, sizeof per), put(out, mask, sizeof mask), put(out, plabels, sizeof plabels);
    T(kd_loss_forward(h, N, &loss));
    put(out, &loss, sizeof loss);
    float up = 0.5f;
    T(kd_loss_backward(h, N, &up));
    put(out, grad, sizeof grad), put(out, gu, sizeof gu);
#undef T
    kd_loss_destroy(h);
}

static void run_ema(int threads, result *out)
{
    enum { L0 = 1000, L1 = 37, L2 = 20011 };
    static float s0[L0], s1[L1], s2[L2];
    float *a0 = malloc(sizeof s0), *a1 = malloc(sizeof s1), *a2 = malloc(sizeof s2);
    for (int i = 0; i < L0; i++)
        a0[i] = (float)(i % 17) * 0.25f;
    for (int i = 0; i < L1; i++)
        a1[i] = (float)i;
    for (int i = 0; i < L2; i++)
        a2[i] = (float)((i * 7919) % 101) / 101.0f - 0.5f;
    const float *arrays[3] = {a0, a1, a2};
    const int64_t lengths[3] = {L0, L1, L2};
    const int32_t kinds[3] = {KD_EMA_AVERAGE, KD_EMA_COPY, KD_EMA_AVERAGE};
    kd_ema *e = NULL;
    kd_status st = kd_ema_create(&e, 3, arrays, lengths, kinds);
    check(out, st, "kd_ema_create", kd_ema_last_error(NULL));
    if (!st) {
#define T(call) check(out, (call), #call, kd_ema_last_error(e))
        T(kd_ema_set_int(e, KD_EMA_PARAM_THREADS, threads));
        T(kd_ema_set_float(e, KD_EMA_PARAM_DECAY, 0.99f));
        T(kd_ema_set_int(e, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER));
        for (int step = 0; step < 6; step++) {
            for (int i = 0; i < L0; i++)
                a0[i] = a0[i] * 0.9f + (float)step;
            for (int i = 0; i < L1; i++)
                a1[i] += 1.0f;
            for (int i = 0; i < L2; i++)
                a2[i] = a2[i] * 1.01f - 0.001f * (float)step;
            T(kd_ema_update(e, arrays));
        }
        const float *t = NULL;
        int64_t len = 0, stp = 0;
        T(kd_ema_teacher_flat(e, &t, &len));
        T(kd_ema_step(e, &stp));
        if (t)
            put(out, t, (size_t)len * sizeof(float));
        put(out, &stp, sizeof stp);
#undef T
        kd_ema_destroy(e);
    }
    free(a0), free(a1), free(a2);
}

static void run_flexmatch(result *out)
{
    enum { NS = 500, B = 64 };
    kd_flexmatch *f = NULL;
    kd_status st = kd_flexmatch_create(&f, NS, C);
    check(out, st, "kd_flexmatch_create", kd_flexmatch_last_error(NULL));
    if (st)
        return;
#define T(call) check(out, (call), #call, kd_flexmatch_last_error(f))
    T(kd_flexmatch_set_int(f, KD_FLEXMATCH_PARAM_WARMUP, 1));
    int64_t idx[B];
    float conf[B], tau[C];
    int32_t pred[B], all[NS];
    kdt_rng r;
    kdt_seed(&r, 99);
    for (int step = 0; step < 20; step++) {
        for (int k = 0; k < B; k++) {
            idx[k] = (int64_t)(kdt_next(&r) % NS);
            conf[k] = (float)kdt_uniform(&r);
            pred[k] = (int32_t)(kdt_next(&r) % C);
        }
        T(kd_flexmatch_thresholds(f, tau));
        put(out, tau, sizeof tau);
        T(kd_flexmatch_update(f, B, idx, conf, pred));
    }
    T(kd_flexmatch_predictions(f, all));
    put(out, all, sizeof all);
#undef T
    kd_flexmatch_destroy(f);
}

static void run_labels(result *out)
{
    float conf[N], mask[N], avg[N * LD], scores[N], cth[C];
    int32_t pl[N], cc[N];
    int64_t sel = 0, rank[N], nr = 0, ns = 0;
    uint8_t sus[N];
    char err[128];
    memset(avg, 0, sizeof avg);
#define T(call) check(out, (call), #call, err)
    T(kd_select_pseudo_labels(N, C, g_teacher, LD, KD_SELECT_LOGITS, 0.5f, NULL, 3, conf, pl, mask,
                              &sel, err, sizeof err));
    put(out, conf, sizeof conf), put(out, pl, sizeof pl), put(out, mask, sizeof mask);
    put(out, &sel, sizeof sel);
    const float *ins[2] = {g_teacher, g_teacher2};
    const int64_t lds[2] = {LD, LD};
    const float w[2] = {1.0f, 3.0f};
    T(kd_ensemble_average(N, C, 2, ins, lds, w, avg, LD, err, sizeof err));
    put(out, avg, sizeof avg);
    T(kd_label_quality(N, C, g_probs, LD, g_labels, -100, KD_LABEL_SCORE_NORMALIZED_MARGIN, scores,
                       rank, &nr, err, sizeof err));
    put(out, rank, sizeof rank), put(out, &nr, sizeof nr);
    T(kd_find_label_issues(N, C, g_probs, LD, g_labels, -100, cth, cc, sus, &ns, err, sizeof err));
    put(out, cth, sizeof cth), put(out, cc, sizeof cc), put(out, sus, sizeof sus);
#undef T
}

static void run_scenario(int s, int threads, result *out)
{
    memset(out, 0, sizeof *out);
    if (s < NUM_LOSS_SCENARIOS)
        run_loss(s, threads, out);
    else if (s == S_EMA)
        run_ema(threads, out);
    else if (s == S_FLEXMATCH)
        run_flexmatch(out);
    else
        run_labels(out);
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(results_do_not_depend_on_the_thread_count)
{
    for (int s = 0; s < NUM_SCENARIOS; s++) {
        result ref;
        run_scenario(s, 1, &ref);
        ck_assert_msg(!ref.failed, "%s: %s", scenario_name(s), ref.msg);
        for (int t = 2; t <= 4; t++) {
            result got;
            run_scenario(s, t, &got);
            ck_assert_msg(same(&ref, &got), "%s: KD_PARAM_THREADS %d differs from 1 %s",
                          scenario_name(s), t, got.msg);
            result_free(&got);
        }
        result_free(&ref);
    }
}
END_TEST

START_TEST(same_inputs_and_thread_count_are_bit_identical)
{
    static const int counts[] = {1, 2, 4};
    for (int s = 0; s < NUM_SCENARIOS; s++)
        for (int k = 0; k < 3; k++) {
            result a, b;
            run_scenario(s, counts[k], &a);
            run_scenario(s, counts[k], &b);
            ck_assert_msg(same(&a, &b), "%s with %d threads: two runs differ %s", scenario_name(s),
                          counts[k], a.msg);
            result_free(&a), result_free(&b);
        }
}
END_TEST

/* Fewer rows than threads and rows of at least 2^18 classes: each row's
 * segments run on all the threads (execute.c).  Loss, gradient, per-sample
 * values and pseudo-labels are the bits of the single-threaded run. */
static void run_long_rows(kd_loss_kind kind, int64_t n, int threads, result *out)
{
    enum { CL = (1 << 18) + 1001 };
    static float s[3 * CL], t[3 * CL];
    static int ready;
    if (!ready) {
        kdt_rng r;
        kdt_seed(&r, 31);
        kdt_fill_normal(&r, s, 3 * CL, 3.0);
        kdt_fill_normal(&r, t, 3 * CL, 3.0);
        t[CL + 77] += 30.0f; /* row 1 confident, so the pseudo-label keeps it */
        ready = 1;
    }
    float *grad = calloc((size_t)n * CL, sizeof(float)), per[3] = {0}, loss = 0;
    int32_t labels[3] = {5, CL - 3, 100000}, plabels[3] = {0};
    memset(out, 0, sizeof *out);
    kd_loss *h = NULL;
    check(out, kd_loss_create(&h, kind, CL), "kd_loss_create", "long rows");
#define T(call) check(out, (call), #call, kd_loss_last_error(h))
    T(kd_loss_set_int(h, KD_PARAM_THREADS, threads));
    T(kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, CL));
    T(kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, CL));
    T(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, CL));
    T(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0));
    if (kind == KD_LOSS_PSEUDO_LABEL) {
        T(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5));
        T(kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, plabels));
    } else {
        T(kd_loss_bind_labels(h, labels));
        if (kind != KD_LOSS_LOGIT_MSE)
            T(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 4.0));
        if (kind != KD_LOSS_CROSS_ENTROPY)
            T(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.9));
    }
    T(kd_loss_forward_backward(h, n, &loss));
#undef T
    put(out, &loss, sizeof loss);
    put(out, per, sizeof per), put(out, plabels, sizeof plabels);
    put(out, grad, (size_t)n * CL * sizeof(float));
    kd_loss_destroy(h);
    free(grad);
}

START_TEST(long_rows_split_over_threads_give_the_same_bits)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_KL_DISTILL, KD_LOSS_CROSS_ENTROPY,
                                         KD_LOSS_LOGIT_MSE, KD_LOSS_PSEUDO_LABEL};
    for (int k = 0; k < 4; k++)
        for (int64_t n = 1; n <= 3; n += 2) {
            result ref;
            run_long_rows(kinds[k], n, 1, &ref);
            ck_assert_msg(!ref.failed, "kind %d: %s", (int)kinds[k], ref.msg);
            for (int th = 2; th <= 4; th++) {
                result got;
                run_long_rows(kinds[k], n, th, &got);
                ck_assert_msg(same(&ref, &got), "kind %d n=%lld: %d threads differ from 1 %s",
                              (int)kinds[k], (long long)n, th, got.msg);
                result_free(&got);
            }
            result_free(&ref);
        }
}
END_TEST

#define NUM_WORKERS 8
#define ROUNDS 3

typedef struct {
    int id;
    const result *ref; /* NUM_SCENARIOS single-threaded references */
    int mismatches;
    char msg[400];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < NUM_SCENARIOS; k++) {
            /* each worker walks the scenarios in its own order */
            int s = (k + w->id * 5 + round) % NUM_SCENARIOS;
            /* handles' own OpenMP threads too */
            int threads = 1 + (w->id + round) % 2;
            result got;
            run_scenario(s, threads, &got);
            if (!same(&w->ref[s], &got) && !w->mismatches++)
                snprintf(w->msg, sizeof w->msg, "worker %d, %s, %d thread(s): differs %s", w->id,
                         scenario_name(s), threads, got.msg);
            result_free(&got);
        }
    return NULL;
}

START_TEST(distinct_handles_run_concurrently)
{
    result ref[NUM_SCENARIOS];
    for (int s = 0; s < NUM_SCENARIOS; s++) {
        run_scenario(s, 1, &ref[s]);
        ck_assert_msg(!ref[s].failed, "%s: %s", scenario_name(s), ref[s].msg);
    }
    pthread_t tid[NUM_WORKERS];
    worker w[NUM_WORKERS];
    for (int i = 0; i < NUM_WORKERS; i++) {
        w[i] = (worker){.id = i, .ref = ref};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < NUM_WORKERS; i++)
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    for (int i = 0; i < NUM_WORKERS; i++)
        ck_assert_msg(w[i].mismatches == 0, "%s", w[i].msg);
    for (int s = 0; s < NUM_SCENARIOS; s++)
        result_free(&ref[s]);
}
END_TEST

/* Functions without a handle keep their failure message per thread. */
static void *failing_create(void *arg)
{
    int *ok = arg;
    for (int i = 0; i < 200; i++) {
        kd_ema *e = NULL;
        const float x = 1.0f;
        const float *arrays[1] = {&x};
        int64_t bad = -1 - (int64_t)(i % 3);
        if (kd_ema_create(&e, 1, arrays, &bad, NULL) != KD_ERR_SHAPE || !*kd_ema_last_error(NULL))
            *ok = 0;
        kd_flexmatch *f = NULL;
        if (kd_flexmatch_create(&f, 0, 3) != KD_ERR_INVALID_ARGUMENT ||
            !*kd_flexmatch_last_error(NULL))
            *ok = 0;
        int64_t good = 1;
        if (kd_ema_create(&e, 1, arrays, &good, NULL) != KD_OK || *kd_ema_last_error(NULL))
            *ok = 0;
        kd_ema_destroy(e);
    }
    return NULL;
}

START_TEST(create_messages_are_per_thread)
{
    pthread_t tid[4];
    int ok[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&tid[i], NULL, failing_create, &ok[i]), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
        ck_assert_msg(ok[i], "thread %d saw a wrong status or message", i);
    }
}
END_TEST

/* the fused linear call on a KL handle with `threads` threads */
static kd_status run_linear(int threads)
{
    enum { LN = 9, LD_H = 6 };
    static float hidden[LN * LD_H], weight[C * LD_H], gh[LN * LD_H], gw[C * LD_H], gb[C];
    kdt_rng r;
    kdt_seed(&r, 3);
    kdt_fill_normal(&r, hidden, LN * LD_H, 1.0);
    kdt_fill_normal(&r, weight, C * LD_H, 1.0);
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THREADS, threads), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD), KD_OK);
    float loss;
    kd_status st = kd_linear_kl_distill(h, LN, LD_H, hidden, LD_H, weight, LD_H, NULL, 0, NULL, 0,
                                        NULL, 0, NULL, 0, &loss, gh, LD_H, gw, LD_H, gb);
    kd_loss_destroy(h);
    return st;
}

/* Is GOMP_parallel the entry of the library's regions (GCC and libgomp)?
 * Not with clang and LLVM's libomp (scripts/tsan.sh): the checks that need
 * the interposer are skipped there. */
static int regions_are_seen(void)
{
    const long before = atomic_load(&g_parallel_regions);
    result r = {0};
    run_scenario(S_KL, 2, &r);
    result_free(&r);
    if (atomic_load(&g_parallel_regions) > before)
        return 1;
    printf("test_threads: OpenMP regions do not go through GOMP_parallel (not libgomp): "
           "interposer checks skipped\n");
    return 0;
}

START_TEST(one_thread_never_enters_openmp)
{
    if (!regions_are_seen())
        return;
    /* every loss kind (fused, forward, backward), EMA, FlexMatch, the label
     * tools and the fused linear call, with one thread */
    for (int s = 0; s < NUM_SCENARIOS; s++) {
        result r = {0};
        const long before = atomic_load(&g_parallel_regions);
        run_scenario(s, 1, &r);
        ck_assert_msg(!r.failed, "%s: %s", scenario_name(s), r.msg);
        ck_assert_msg(atomic_load(&g_parallel_regions) == before,
                      "%s with 1 thread entered %ld OpenMP parallel regions", scenario_name(s),
                      atomic_load(&g_parallel_regions) - before);
        result_free(&r);
    }
    long before = atomic_load(&g_parallel_regions);
    ck_assert_int_eq(run_linear(1), KD_OK);
    ck_assert_msg(atomic_load(&g_parallel_regions) == before,
                  "linear with 1 thread entered an OpenMP parallel region");
    /* the interposer sees the regions of more threads (the checks above are
     * not vacuous) */
    before = atomic_load(&g_parallel_regions);
    ck_assert_int_eq(run_linear(2), KD_OK);
    ck_assert_msg(atomic_load(&g_parallel_regions) > before,
                  "the linear call with 2 threads entered no OpenMP region");
}
END_TEST

/* Called from inside the caller's own OpenMP region (each thread of a team
 * of 2 with its own handle, one kdlib thread): the multi-teacher scratch row
 * and the batch losses' per-thread scratch must be the handle's first, not
 * the caller's thread number (which was an out-of-bounds row of a one-thread
 * workspace). */
static const int team_scenarios[] = {S_KL_MULTI, S_CLASS_BALANCE, S_MCC, S_FAIRNESS};
#define N_TEAM ((int)(sizeof team_scenarios / sizeof team_scenarios[0]))
typedef struct {
    result r[N_TEAM][2];
} team_results;

static void team_member(void *arg)
{
    team_results *t = arg;
    /* libgomp's, loaded with libkd (the test itself is not an OpenMP program) */
    int (*thread_num)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_thread_num");
    int me = thread_num ? thread_num() : 0;
    if (me < 2)
        for (int s = 0; s < N_TEAM; s++)
            run_scenario(team_scenarios[s], 1, &t->r[s][me]);
}

START_TEST(one_thread_inside_the_callers_openmp_team)
{
    result ref[N_TEAM];
    memset(ref, 0, sizeof ref);
    for (int s = 0; s < N_TEAM; s++)
        run_scenario(team_scenarios[s], 1, &ref[s]);
    team_results t;
    memset(&t, 0, sizeof t);
    GOMP_parallel(team_member, &t, 2, 0);
    for (int s = 0; s < N_TEAM; s++) {
        for (int k = 0; k < 2; k++) {
            if (!t.r[s][k].p)
                continue; /* the runtime gave fewer threads */
            ck_assert_msg(!t.r[s][k].failed, "%s", t.r[s][k].msg);
            ck_assert_msg(same(&t.r[s][k], &ref[s]), "%s: thread %d of the caller's team differs",
                          scenario_name(team_scenarios[s]), k);
            result_free(&t.r[s][k]);
        }
        result_free(&ref[s]);
    }
}
END_TEST

/* One handle, two threads (loss.h: one thread at a time).  Thread A's
 * forward_backward is held inside the call (at its OpenMP region, by the
 * interposer's hook) while the main thread calls the same handle: every
 * call returns KD_ERR_STATE at once, writes nothing (outputs, bindings,
 * parameters, message), and A's call then completes with the same result as
 * an undisturbed one. */
static sem_t g_inside, g_go;
static void hold_inside(void)
{
    sem_post(&g_inside);
    sem_wait(&g_go);
}

typedef struct {
    kd_loss *h;
    float loss;
    kd_status st;
} busy_call;

static void *busy_worker(void *arg)
{
    busy_call *b = arg;
    b->st = kd_loss_forward_backward(b->h, N, &b->loss);
    return NULL;
}

START_TEST(a_handle_busy_in_another_thread_gives_state)
{
    static float grad[N * LD], grad_ref[N * LD], hidden[N * 4], weight[C * 4];
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THREADS, 2), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_labels(h, g_labels), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad_ref, LD), KD_OK);
    float ref;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &ref), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, LD), KD_OK);
    /* a message to keep: the concurrent calls must not overwrite it */
    ck_assert_int_ne(kd_loss_set_int(h, KD_PARAM_REDUCTION, 99), KD_OK);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", kd_loss_last_error(h));

    ck_assert_int_eq(sem_init(&g_inside, 0, 0), 0);
    ck_assert_int_eq(sem_init(&g_go, 0, 0), 0);
    atomic_store(&g_region_hook, hold_inside);
    busy_call b = {h, 0.0f, -1};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, busy_worker, &b), 0);
    /* A is inside forward_backward, held at its OpenMP region; without
     * libgomp (scripts/tsan.sh) the hook is never reached and the test is
     * skipped */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    if (sem_timedwait(&g_inside, &deadline) != 0) {
        if (atomic_exchange(&g_region_hook, NULL) != NULL) {
            ck_assert_int_eq(pthread_join(tid, NULL), 0);
            printf("test_threads: no GOMP_parallel region: busy-handle check skipped\n");
            kd_loss_destroy(h);
            return;
        }
        sem_wait(&g_inside); /* the hook was taken just now */
    }

    float loss = 777.0f, up = 1.0f, g_out[N * LD];
    double stats[C * C + 2];
    int64_t iv;
    const float *tp[1] = {g_teacher2};
    const int64_t lds[1] = {LD};
    kd_status got[16];
    int k = 0;
    got[k++] = kd_loss_forward(h, N, &loss);
    got[k++] = kd_loss_backward(h, N, &up);
    got[k++] = kd_loss_forward_backward(h, N, &loss);
    got[k++] = kd_loss_local_stats(h, N, stats);
    got[k++] = kd_loss_finish(h, N, stats, &loss);
    got[k++] = kd_linear_kl_distill(h, N, 4, hidden, 4, weight, 4, NULL, 0, NULL, 0, NULL, 0, NULL,
                                    0, &loss, NULL, 4, NULL, 4, NULL);
    got[k++] = kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_teacher2, LD);
    got[k++] = kd_loss_bind_teachers(h, 1, tp, lds, NULL);
    got[k++] = kd_loss_bind_labels(h, NULL);
    got[k++] = kd_loss_bind_weights(h, g_weights);
    got[k++] = kd_loss_bind_vector(h, KD_ARG_WEIGHTS, g_weights);
    got[k++] = kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g_out, LD);
    got[k++] = kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, NULL);
    got[k++] = kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
    got[k++] = kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 9.0);
    for (int i = 0; i < k; i++)
        ck_assert_msg(got[i] == KD_ERR_STATE, "concurrent call %d returned %d", i, (int)got[i]);
    ck_assert_msg(loss == 777.0f, "a refused call wrote the loss");
    ck_assert_str_eq(kd_loss_last_error(h), msg);
    sem_post(&g_go);
    ck_assert_int_eq(pthread_join(tid, NULL), 0);
    ck_assert_int_eq(b.st, KD_OK);
    /* A's call ran undisturbed: nothing the refused calls asked for happened */
    ck_assert(memcmp(&b.loss, &ref, sizeof ref) == 0);
    ck_assert(memcmp(grad, grad_ref, sizeof grad) == 0);
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_REDUCTION, &iv), KD_OK);
    ck_assert_int_eq(iv, KD_REDUCTION_MEAN);
    /* the handle is free again */
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
    ck_assert(memcmp(&loss, &ref, sizeof ref) == 0);
    sem_destroy(&g_inside);
    sem_destroy(&g_go);
    kd_loss_destroy(h);
}
END_TEST

/* Two threads hammering one handle: every call gives KD_OK with the
 * undisturbed result or KD_ERR_STATE, never anything else (before the busy
 * flag: heap-use-after-free in the row driver under ASan). */
typedef struct {
    kd_loss *h;
    int ok, state, other, wrong;
    float ref[2]; /* the loss with one teacher and with the same teacher twice */
} hammer;

static void *hammer_worker(void *arg)
{
    hammer *w = arg;
    const float *ts[2] = {g_teacher, g_teacher};
    const int64_t lds[2] = {LD, LD};
    for (int it = 0; it < 2000; it++) {
        float loss;
        kd_status st = it % 2 ? kd_loss_forward(w->h, N, &loss)
                              : kd_loss_bind_teachers(w->h, 1 + it % 4 / 2, ts, lds, NULL);
        if (st == KD_OK) {
            w->ok++;
            if (it % 2 && memcmp(&loss, &w->ref[0], sizeof loss) != 0 &&
                memcmp(&loss, &w->ref[1], sizeof loss) != 0)
                w->wrong++;
        } else if (st == KD_ERR_STATE) {
            w->state++;
        } else {
            w->other++;
        }
    }
    return NULL;
}

START_TEST(two_threads_hammering_one_handle)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, g_student, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, g_teacher, LD), KD_OK);
    float ref[2];
    ck_assert_int_eq(kd_loss_forward(h, N, &ref[0]), KD_OK);
    const float *ts[2] = {g_teacher, g_teacher};
    const int64_t lds[2] = {LD, LD};
    ck_assert_int_eq(kd_loss_bind_teachers(h, 2, ts, lds, NULL), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, N, &ref[1]), KD_OK);
    hammer w[2] = {{h, 0, 0, 0, 0, {ref[0], ref[1]}}, {h, 0, 0, 0, 0, {ref[0], ref[1]}}};
    pthread_t tid[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&tid[i], NULL, hammer_worker, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
        ck_assert_msg(w[i].other == 0 && w[i].wrong == 0,
                      "thread %d: %d unexpected statuses, %d wrong losses", i, w[i].other,
                      w[i].wrong);
        ck_assert_int_eq(w[i].ok + w[i].state, 2000);
    }
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    init_inputs();
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, results_do_not_depend_on_the_thread_count);
    tcase_add_test(tc, same_inputs_and_thread_count_are_bit_identical);
    tcase_add_test(tc, long_rows_split_over_threads_give_the_same_bits);
    tcase_add_test(tc, distinct_handles_run_concurrently);
    tcase_add_test(tc, create_messages_are_per_thread);
    tcase_add_test(tc, one_thread_never_enters_openmp);
    tcase_add_test(tc, one_thread_inside_the_callers_openmp_team);
    tcase_add_test(tc, a_handle_busy_in_another_thread_gives_state);
    tcase_add_test(tc, two_threads_hammering_one_handle);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
