/* kd-bench: time kdlib's loss kernels (forward, backward, fused) on the
 * design's shapes, next to a streaming-bandwidth probe (triad) measured in the
 * same run.  Prints ns per element, GB/s of the minimal traffic and the ratio
 * to the triad bandwidth.  --tsv prints machine-readable rows for
 * bench/compare_torch.py.  OpenBLAS (MCC's products) runs on the thread
 * count of each row. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdlib/kdlib.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *x, size_t n, unsigned seed, float scale)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(seed >> 8) / 16777216.0f - 0.5f);
    }
}

/* a[i] = b[i] + 0.5 c[i] over [lo, hi), compiled for the widest vectors the
 * CPU has (chosen at load time), so that in-cache sizes are not limited by
 * the width of the loop */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
triad_loop(float *restrict a, const float *restrict b, const float *restrict c, size_t lo,
           size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        a[i] = b[i] + 0.5f * c[i];
}

/* Triad a = b + s * c over three arrays of n floats: bytes moved per second,
 * counting 3 arrays (2 reads, 1 write), best of repetitions that run for at
 * least min_sec (and at least 10).  With n far above the caches this is the
 * memory bandwidth; with n of a loss shape's N x C it is the bandwidth of
 * the cache level such a shape's three arrays live in. */
static double triad_gbs(int threads, size_t n, double min_sec)
{
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
    if (!a || !b || !c)
        return 0.0;
#pragma omp parallel for num_threads(threads)
    for (size_t i = 0; i < n; i++) {
        a[i] = 0.0f;
        b[i] = 1.0f;
        c[i] = 2.0f;
    }
    double best = 1e30, total = 0.0;
    for (int r = 0; r < 10 || total < min_sec; r++) {
        double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            const size_t nt = (size_t)omp_get_num_threads(), k = (size_t)omp_get_thread_num();
            triad_loop(a, b, c, n * k / nt, n * (k + 1) / nt);
        }
        double t = now() - t0;
        total += t;
        if (t < best)
            best = t;
    }
    volatile float sink = a[n / 2];
    (void)sink;
    free(a);
    free(b);
    free(c);
    return 3.0 * 4.0 * (double)n / best / 1e9;
}

typedef struct {
    const char *name;
    kd_loss_kind kind;
} bench_loss;

static const bench_loss LOSSES[] = {
    {"kl_distill", KD_LOSS_KL_DISTILL}, /* T = 4, alpha = 0.9, labels */
    {"soft_ce", KD_LOSS_CROSS_ENTROPY}, /* target = softmax(teacher / T) */
    {"logit_mse", KD_LOSS_LOGIT_MSE},
    {"pseudo_label", KD_LOSS_PSEUDO_LABEL},   /* threshold 0: every row kept (the full path) */
    {"strong_weak", KD_LOSS_STRONG_WEAK},     /* T = 0.4 (tllib UDA), threshold 0 */
    {"consistency", KD_LOSS_CONSISTENCY},     /* L2 on softmaxes, teacher = the second view */
    {"class_balance", KD_LOSS_CLASS_BALANCE}, /* logits */
    {"mcc", KD_LOSS_MCC},                     /* T = 2.5 (tllib's default) */
    {"worst_case", KD_LOSS_WORST_CASE},       /* eta' = 1; n labeled and n unlabeled rows: main
                                               heads = teacher, adversarial heads = student */
    {"entropy", KD_LOSS_ENTROPY},             /* T = 1, no weights */
    {"fairness", KD_LOSS_FAIRNESS},           /* no mask (every row), uniform p_model and
                                                 label_hist (FreeMatch's initial state) */
};

/* FAIRNESS's class vectors: C values of 1/C, grown with C (never freed) */
static const float *uniform_classes(int64_t c)
{
    static float *v;
    static int64_t cap;
    if (c > cap) {
        float *q = realloc(v, (size_t)c * sizeof *q);
        if (!q)
            return NULL;
        v = q;
        cap = c;
    }
    for (int64_t j = 0; j < c; j++)
        v[j] = 1.0f / (float)c;
    return v;
}

enum { MODE_FORWARD, MODE_BACKWARD, MODE_FUSED };
static const char *MODE_NAMES[] = {"forward", "backward", "fused"};

/* g2: a second gradient buffer (worst case's unlabeled head) */
static int setup(kd_loss **out, const bench_loss *bl, int64_t c, int threads, const float *s,
                 const float *t, const int32_t *y, float *g, float *g2)
{
    kd_loss *h;
    if (kd_loss_create(&h, bl->kind, c))
        return 1;
    int bad = kd_loss_set_int(h, KD_PARAM_THREADS, threads);
    if (bl->kind == KD_LOSS_WORST_CASE) {
        bad |= kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN, t, c);
        bad |= kd_loss_bind_matrix(h, KD_ARG_LABELED_ADV, s, c);
        bad |= kd_loss_bind_matrix(h, KD_ARG_UNLABELED_MAIN, t, c);
        bad |= kd_loss_bind_matrix(h, KD_ARG_UNLABELED_ADV, s, c);
        bad |= kd_loss_bind_output(h, KD_ARG_GRAD_LABELED_ADV, g, c);
        bad |= kd_loss_bind_output(h, KD_ARG_GRAD_UNLABELED_ADV, g2, c);
    } else {
        bad |= kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
        bad |= kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, c);
    }
    if (bl->kind != KD_LOSS_CLASS_BALANCE && bl->kind != KD_LOSS_MCC &&
        bl->kind != KD_LOSS_WORST_CASE && bl->kind != KD_LOSS_ENTROPY &&
        bl->kind != KD_LOSS_FAIRNESS)
        bad |= kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
    if (bl->kind == KD_LOSS_FAIRNESS) {
        const float *u = uniform_classes(c);
        bad |= !u || kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, u) ||
               kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, u);
    }
    if (bl->kind == KD_LOSS_KL_DISTILL) {
        bad |= kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 4.0);
        bad |= kd_loss_set_float(h, KD_PARAM_ALPHA, 0.9);
        bad |= kd_loss_bind_labels(h, y);
    } else if (bl->kind == KD_LOSS_CROSS_ENTROPY) {
        bad |= kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 4.0);
    } else if (bl->kind == KD_LOSS_PSEUDO_LABEL) {
        bad |= kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.0);
    } else if (bl->kind == KD_LOSS_STRONG_WEAK) {
        bad |= kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.0);
        bad |= kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.4);
    } else if (bl->kind == KD_LOSS_MCC) {
        bad |= kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.5);
    }
    if (bad) {
        fprintf(stderr, "setup %s: %s\n", bl->name, kd_loss_last_error(h));
        kd_loss_destroy(h);
        return 1;
    }
    *out = h;
    return 0;
}

static double time_mode(kd_loss *h, int mode, int64_t n, int reps)
{
    float loss = 0.0f, up = 1.0f;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* first run warms caches and workspace */
        double t0 = now();
        kd_status st = mode == MODE_FORWARD    ? kd_loss_forward(h, n, &loss)
                       : mode == MODE_BACKWARD ? kd_loss_backward(h, n, &up)
                                               : kd_loss_forward_backward(h, n, &loss);
        double t = now() - t0;
        if (st) {
            fprintf(stderr, "run failed: %s\n", kd_loss_last_error(h));
            exit(1);
        }
        if (r > 0 && t < best)
            best = t;
    }
    return best;
}

/* EMA update of a 2^26-float model (256 MiB teacher + 256 MiB student):
 * reads teacher and student, writes the teacher: 3 x 4 bytes per parameter. */
static void bench_ema(int threads, int reps, int tsv, double bw)
{
    const int64_t n = (int64_t)1 << 26;
    float *student = malloc((size_t)n * 4);
    if (!student)
        return;
    fill(student, (size_t)n, 3, 1.0f);
    kd_ema *e;
    if (kd_ema_create_flat(&e, student, n) || kd_ema_set_int(e, KD_EMA_PARAM_THREADS, threads)) {
        fprintf(stderr, "ema setup failed\n");
        exit(1);
    }
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        if (kd_ema_update_flat(e, student)) {
            fprintf(stderr, "ema update failed: %s\n", kd_ema_last_error(e));
            exit(1);
        }
        double t = now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    double gbs = 12.0 * (double)n / best / 1e9;
    if (tsv)
        printf("ema_update\tupdate\t1\t%lld\t%d\t%.9f\n", (long long)n, threads, best);
    else
        printf("%-12s %-8s %6d %7s %3d %10.1f %8.3f %8.2f %6.0f%%\n", "ema_update", "update", 1,
               "64M", threads, best * 1e6, best * 1e9 / (double)n, gbs,
               bw > 0 ? 100.0 * gbs / bw : 0.0);
    kd_ema_destroy(e);
    free(student);
}

static void usage(void)
{
    puts(
        "usage: kd-bench [--loss NAME] [--shape NxC] [--threads T] [--reps R] [--tsv] [--no-triad]\n"
        "                [--triad-shape] [--blas-threads B]\n"
        "  --loss    kl_distill | soft_ce | logit_mse | pseudo_label | strong_weak | consistency |\n"
        "            class_balance | mcc | worst_case | entropy | fairness | ema_update\n"
        "            (default: all)\n"
        "  --shape   one shape (default: 4096x10 1024x100 1024x1000 256x32000 64x128000)\n"
        "  --threads thread count (default: 1 and all cores); 0 = all cores\n"
        "  --reps    timed repetitions, the best is reported (default 20)\n"
        "  --blas-threads  OpenBLAS threads (MCC's products): 0 = the row's thread count\n"
        "            (default), else B for every row\n"
        "  --mode    forward | backward | fused (default: all)\n"
        "  --tsv     machine-readable rows: loss mode n c threads seconds\n"
        "  --triad-shape  only the triad over three arrays of N x C floats per shape and\n"
        "            thread count (the bandwidth of the cache level that shape lives in):\n"
        "            rows: triad shape n c threads GB/s");
}

int main(int argc, char **argv)
{
    int64_t shapes[8][2] = {{4096, 10}, {1024, 100}, {1024, 1000}, {256, 32000}, {64, 128000}};
    int nshapes = 5, reps = 20, tsv = 0, triad = 1, mode_only = -1, triad_shape = 0, blas = 0;
    int thread_list[2] = {1, omp_get_num_procs()}, nthreads = thread_list[1] > 1 ? 2 : 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--loss") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            long long n, c;
            if (sscanf(argv[++i], "%lldx%lld", &n, &c) != 2 || n < 1 || c < 1) {
                usage();
                return 2;
            }
            shapes[0][0] = n;
            shapes[0][1] = c;
            nshapes = 1;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            int t = atoi(argv[++i]);
            thread_list[0] = t > 0 ? t : omp_get_num_procs();
            nthreads = 1;
        } else if (!strcmp(argv[i], "--blas-threads") && i + 1 < argc) {
            blas = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1)
                reps = 1;
        } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            mode_only = !strcmp(m, "forward")    ? 0
                        : !strcmp(m, "backward") ? 1
                        : !strcmp(m, "fused")    ? 2
                                                 : -2;
            if (mode_only == -2) {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--tsv")) {
            tsv = 1;
        } else if (!strcmp(argv[i], "--no-triad")) {
            triad = 0;
        } else if (!strcmp(argv[i], "--triad-shape")) {
            triad_shape = 1;
        } else {
            usage();
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }

    if (triad_shape) { /* the triad over three arrays of N x C floats: GB/s */
        for (int si = 0; si < nshapes; si++)
            for (int k = 0; k < nthreads; k++)
                printf("triad\tshape\t%lld\t%lld\t%d\t%.3f\n", (long long)shapes[si][0],
                       (long long)shapes[si][1], thread_list[k],
                       triad_gbs(thread_list[k], (size_t)(shapes[si][0] * shapes[si][1]), 0.2));
        return 0;
    }
    double bw[2] = {0, 0};
    if (triad)
        for (int k = 0; k < nthreads; k++)
            bw[k] = triad_gbs(thread_list[k], (size_t)1 << 25, 0.0); /* 3 x 128 MiB */
    if (!tsv) {
        printf("kdlib %s benchmark; triad bandwidth:", kd_version_string());
        for (int k = 0; k < nthreads; k++)
            printf(" %.1f GB/s (%d thread%s)", bw[k], thread_list[k],
                   thread_list[k] > 1 ? "s" : "");
        printf("\n%-12s %-8s %6s %7s %3s %10s %8s %8s %7s\n", "loss", "mode", "N", "C", "thr",
               "time_us", "ns/elem", "GB/s", "%triad");
    }
    for (size_t li = 0; li < sizeof LOSSES / sizeof LOSSES[0]; li++) {
        if (only && strcmp(only, LOSSES[li].name))
            continue;
        for (int si = 0; si < nshapes; si++) {
            int64_t n = shapes[si][0], c = shapes[si][1];
            size_t e = (size_t)(n * c);
            float *s = malloc(e * 4), *t = malloc(e * 4), *g = malloc(e * 4), *g2 = NULL;
            int32_t *y = malloc((size_t)n * 4);
            if (LOSSES[li].kind == KD_LOSS_WORST_CASE)
                g2 = malloc(e * 4);
            if (!s || !t || !g || !y || (LOSSES[li].kind == KD_LOSS_WORST_CASE && !g2))
                return 1;
            fill(s, e, 1, 8.0f);
            fill(t, e, 2, 8.0f);
            for (int64_t i = 0; i < n; i++)
                y[i] = (int32_t)((i * 7919) % c);
            for (int k = 0; k < nthreads; k++) {
                kd_loss *h;
                /* the losses that call BLAS (MCC) run OpenBLAS on the same thread
                 * count (as torch.set_num_threads does for PyTorch) */
                openblas_set_num_threads(blas > 0 ? blas : thread_list[k]);
                if (setup(&h, &LOSSES[li], c, thread_list[k], s, t, y, g, g2))
                    return 1;
                for (int m = 0; m < 3; m++) {
                    if (mode_only >= 0 && m != mode_only)
                        continue;
                    double sec = time_mode(h, m, n, reps);
                    /* minimal traffic: read the inputs (student and teacher; the student
                     * only for the batch losses; four heads for worst case), write the
                     * gradients */
                    const kd_loss_kind kind = LOSSES[li].kind;
                    const int batch = kind == KD_LOSS_CLASS_BALANCE || kind == KD_LOSS_MCC ||
                                      kind == KD_LOSS_ENTROPY ||
                                      kind == KD_LOSS_FAIRNESS; /* student only */
                    const int wc = kind == KD_LOSS_WORST_CASE;
                    double arrays = (batch ? 1.0
                                     : wc  ? 4.0
                                           : 2.0) +
                                    (m == MODE_FORWARD ? 0.0
                                     : wc              ? 2.0
                                                       : 1.0);
                    double bytes = arrays * 4.0 * (double)e;
                    double gbs = bytes / sec / 1e9;
                    if (tsv)
                        printf("%s\t%s\t%lld\t%lld\t%d\t%.9f\n", LOSSES[li].name, MODE_NAMES[m],
                               (long long)n, (long long)c, thread_list[k], sec);
                    else
                        printf("%-12s %-8s %6lld %7lld %3d %10.1f %8.3f %8.2f %6.0f%%\n",
                               LOSSES[li].name, MODE_NAMES[m], (long long)n, (long long)c,
                               thread_list[k], sec * 1e6, sec * 1e9 / (double)e, gbs,
                               bw[k] > 0 ? 100.0 * gbs / bw[k] : 0.0);
                    fflush(stdout);
                }
                kd_loss_destroy(h);
            }
            free(s);
            free(t);
            free(g);
            free(g2);
            free(y);
        }
    }
    /* the EMA case has its own size: with --shape it runs only when asked for */
    if ((!only && nshapes > 1) || (only && !strcmp(only, "ema_update")))
        for (int k = 0; k < nthreads; k++)
            bench_ema(thread_list[k], reps < 5 ? reps : 5, tsv, bw[k]);
    return 0;
}
