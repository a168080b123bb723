/* kd-bench-linear: fused linear + KL distillation (kd_linear_kl_distill)
 * against materialising the logits, time and peak memory.
 *
 * The problem: student hidden states H (N x d) and output weight W (C x d),
 * teacher hidden states Ht (N x dt) and weight Wt (C x dt) (or, with
 * --teacher logits, teacher logits N x C given as input), labels with ~10%
 * ignored, T = 2, alpha = 0.5, forward + backward to grad_hidden and
 * grad_weight.
 *
 *   materialised  S = H W^T and T = Ht Wt^T in full (sgemm), then
 *                 kd_loss_forward_backward with the gradient in place over S,
 *                 then grad_hidden = G W and grad_weight = G^T H (sgemm);
 *   fused         kd_linear_kl_distill with the given chunk rows (0 = default).
 *
 * Each variant runs in its own forked child, so ru_maxrss is that variant's
 * peak alone; "extra" is the peak minus the child's resident size after its
 * inputs and outputs were allocated and touched and OpenBLAS was warmed up
 * (the memory the method itself needs).  The machine's load average is printed, since it skews the times.
 *
 *   kd-bench-linear                                   quick: N=512 d=256 C=8000
 *   kd-bench-linear --n 4096 --d 1024 --c 32000 --reps 1
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdlib/kdlib.h"

typedef struct {
    int64_t n, d, dt, c;
    int reps, threads;
    int teacher_logits; /* 1: teacher given as N x C logits */
} config;

typedef struct {
    double seconds; /* best of reps */
    double cpu;     /* CPU seconds (user + system, all threads) of that rep */
    double loss;
    long base_kib; /* resident after inputs and outputs were touched */
    long peak_kib; /* ru_maxrss at the end */
    int status;
} result;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_fill(size_t count, unsigned seed, float scale)
{
    float *x = malloc(count * sizeof *x);
    if (!x) {
        fprintf(stderr, "out of memory (%zu floats)\n", count);
        exit(2);
    }
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(seed >> 8) / 16777216.0f - 0.5f);
    }
    return x;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* The variant's work in this (child) process: chunk < 0 = materialised. */
static result run_variant(const config *cf, int64_t chunk)
{
    const int64_t n = cf->n, d = cf->d, dt = cf->dt, c = cf->c;
    result r;
    memset(&r, 0, sizeof r);
    float *H = alloc_fill((size_t)(n * d), 1, 2.0f);
    float *W = alloc_fill((size_t)(c * d), 2, 4.0f / sqrtf((float)d));
    float *Ht = NULL, *Wt = NULL, *Tl = NULL;
    if (cf->teacher_logits) {
        Tl = alloc_fill((size_t)(n * c), 3, 6.0f);
    } else {
        Ht = alloc_fill((size_t)(n * dt), 3, 2.0f);
        Wt = alloc_fill((size_t)(c * dt), 4, 6.0f / sqrtf((float)dt));
    }
    int32_t *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++)
        y[i] = i % 10 == 9 ? -100 : (int32_t)((i * 7919) % c);
    float *GH = alloc_fill((size_t)(n * d), 5, 0.0f);
    float *GW = alloc_fill((size_t)(c * d), 6, 0.0f);
    /* OpenBLAS allocates and touches its packing buffers at the first
     * sgemm: warm it up so that they count in the base, not in "extra" */
    {
        const int m = 512;
        float *a = alloc_fill((size_t)m * m, 7, 1.0f), *b = alloc_fill((size_t)m * m, 8, 1.0f);
        float *o = alloc_fill((size_t)m * m, 9, 0.0f);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, m, m, 1.0f, a, m, b, m, 0.0f, o, m);
        free(a);
        free(b);
        free(o);
    }
    r.base_kib = maxrss_kib();

    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, c);
    kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0);
    kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5);
    kd_loss_set_int(h, KD_PARAM_THREADS, cf->threads);
    kd_loss_bind_labels(h, y);
    if (Tl)
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, Tl, c);

    r.seconds = 1e30;
    for (int rep = 0; rep < cf->reps; rep++) {
        float loss = 0.0f;
        double t0 = now(), c0 = cpu_seconds();
        if (chunk >= 0) {
            r.status = kd_linear_kl_distill(h, n, d, H, d, W, d, NULL, Tl ? 0 : dt, Ht, dt, Wt, dt,
                                            NULL, chunk, &loss, GH, d, GW, d, NULL);
        } else {
            /* the logits exist in full: allocated per call, as a framework does */
            float *S = malloc((size_t)(n * c) * sizeof *S);
            float *T = Tl ? NULL : malloc((size_t)(n * c) * sizeof *T);
            if (!S || (!Tl && !T)) {
                fprintf(stderr, "out of memory (materialised logits)\n");
                exit(2);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)c, (int)d, 1.0f, H,
                        (int)d, W, (int)d, 0.0f, S, (int)c);
            if (T) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)c, (int)dt, 1.0f,
                            Ht, (int)dt, Wt, (int)dt, 0.0f, T, (int)c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, T, c);
            }
            kd_loss_bind_matrix(h, KD_ARG_STUDENT, S, c);
            kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, S, c); /* in place */
            r.status = kd_loss_forward_backward(h, n, &loss);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c, (int)d, (int)n, 1.0f, S,
                        (int)c, H, (int)d, 0.0f, GW, (int)d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)c, 1.0f, S,
                        (int)c, W, (int)d, 0.0f, GH, (int)d);
            kd_loss_bind_matrix(h, KD_ARG_STUDENT, NULL, 0);
            if (T)
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, NULL, 0);
            free(S);
            free(T);
        }
        double t = now() - t0, ct = cpu_seconds() - c0;
        if (r.status) {
            fprintf(stderr, "kdlib: %s (%s)\n", kd_status_string(r.status), kd_loss_last_error(h));
            break;
        }
        if (t < r.seconds) {
            r.seconds = t;
            r.cpu = ct;
        }
        r.loss = loss;
    }
    r.peak_kib = maxrss_kib();
    kd_loss_destroy(h);
    return r;
}

/* Run one variant in a child and read its result through a pipe. */
static result in_child(const config *cf, int64_t chunk)
{
    result r;
    memset(&r, 0, sizeof r);
    r.status = -1;
    int fd[2];
    if (pipe(fd) != 0)
        return r;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        result mine = run_variant(cf, chunk);
        ssize_t w = write(fd[1], &mine, sizeof mine);
        _exit(w == (ssize_t)sizeof mine ? 0 : 1);
    }
    close(fd[1]);
    if (pid < 0) {
        close(fd[0]);
        return r;
    }
    if (read(fd[0], &r, sizeof r) != (ssize_t)sizeof r)
        r.status = -1;
    close(fd[0]);
    int ws;
    waitpid(pid, &ws, 0);
    return r;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kd-bench-linear [--n N] [--d D] [--dt DT] [--c C] [--chunks R1,R2,...]\n"
            "                       [--reps K] [--threads T] [--teacher linear|logits]\n"
            "  chunk 0 = kd_linear_default_chunk_rows(C); defaults N=512 D=256 C=8000,\n"
            "  DT=D, chunks 0,1024, reps 3, threads 1, teacher linear\n");
    exit(2);
}

int main(int argc, char **argv)
{
    config cf = {512, 256, 0, 8000, 3, 1, 0};
    int64_t chunks[16] = {0, 1024};
    int n_chunks = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--n"))
            cf.n = atoll(v);
        else if (!strcmp(a, "--d"))
            cf.d = atoll(v);
        else if (!strcmp(a, "--dt"))
            cf.dt = atoll(v);
        else if (!strcmp(a, "--c"))
            cf.c = atoll(v);
        else if (!strcmp(a, "--reps"))
            cf.reps = atoi(v);
        else if (!strcmp(a, "--threads"))
            cf.threads = atoi(v);
        else if (!strcmp(a, "--teacher"))
            cf.teacher_logits = !strcmp(v, "logits");
        else if (!strcmp(a, "--chunks")) {
            n_chunks = 0;
            for (char *s = (char *)v; *s && n_chunks < 16;) {
                chunks[n_chunks++] = strtoll(s, &s, 10);
                if (*s == ',')
                    s++;
            }
        } else
            usage();
    }
    if (cf.dt == 0)
        cf.dt = cf.d;
    if (cf.n < 1 || cf.d < 1 || cf.dt < 1 || cf.c < 1 || cf.reps < 1 || cf.threads < 0)
        usage();

    double load[3] = {0, 0, 0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = 0;
        fclose(la);
    }
    printf("kd-bench-linear  N=%lld d=%lld dt=%lld C=%lld  teacher=%s  reps=%d (best)  "
           "kdlib threads=%d  OpenBLAS threads=%d  cores=%ld  load average %.2f %.2f %.2f\n",
           (long long)cf.n, (long long)cf.d, (long long)cf.dt, (long long)cf.c,
           cf.teacher_logits ? "logits (N x C input)" : "hidden+weight", cf.reps, cf.threads,
           openblas_get_num_threads(), sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
    const double nc_mib = (double)cf.n * (double)cf.c * 4.0 / 1048576.0;
    printf("one N x C float matrix = %.0f MiB\n\n", nc_mib);
    printf(
        "| variant | chunk rows | time (s) | CPU (s) | peak RSS (MiB) | extra over inputs+outputs (MiB) | loss |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");

    int failed = 0;
    result base = in_child(&cf, -1);
    failed |= base.status != 0;
    printf("| materialised logits | %lld | %.3f | %.3f | %.0f | %.0f | %.6f |\n", (long long)cf.n,
           base.seconds, base.cpu, base.peak_kib / 1024.0, (base.peak_kib - base.base_kib) / 1024.0,
           base.loss);
    fflush(stdout);
    for (int k = 0; k < n_chunks; k++) {
        int64_t rows = chunks[k] > 0 ? chunks[k] : kd_linear_default_chunk_rows(cf.c);
        if (rows > cf.n)
            rows = cf.n;
        result r = in_child(&cf, chunks[k]);
        failed |= r.status != 0;
        printf("| fused kd_linear_kl_distill | %lld%s | %.3f | %.3f | %.0f | %.0f | %.6f |\n",
               (long long)rows, chunks[k] == 0 ? " (default)" : "", r.seconds, r.cpu,
               r.peak_kib / 1024.0, (r.peak_kib - r.base_kib) / 1024.0, r.loss);
        if (fabs(r.loss - base.loss) > 1e-4 * fabs(base.loss) + 1e-6) {
            fprintf(stderr, "loss differs from the materialised one\n");
            failed = 1;
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}
