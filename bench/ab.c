/* kd-ab: paired A/B timing of two builds of libkd in one process.
 *
 *   kd-ab LIB_A LIB_B LOSS NxC [REPS] [THREADS]
 *
 * dlopen()s both shared libraries (copies with distinct paths, e.g.
 * /tmp/a.so and /tmp/b.so), binds the same inputs to a handle of each and
 * alternates fused forward+backward calls A, B, A, B, ...  On a machine whose
 * speed drifts (shared or virtual), the ratio of each adjacent pair is far
 * steadier than two separate runs.  Prints the best time of each, the ratio of
 * the bests and the median of the per-pair ratios (B / A < 1: B faster), and
 * both losses, and whether the losses and gradients (one buffer per library)
 * are bit-identical or where they first differ.  LOSS: kl_distill (T = 4, alpha = 0.9,
 * labels), soft_ce (teacher at T = 4), pseudo_label (threshold 0), logit_mse;
 * the same setups as kd-bench. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdlib/kdlib.h"

typedef struct {
    kd_status (*create)(kd_loss **, kd_loss_kind, int64_t);
    kd_status (*set_int)(kd_loss *, kd_param, int64_t);
    kd_status (*set_float)(kd_loss *, kd_param, double);
    kd_status (*bind_matrix)(kd_loss *, kd_arg, const float *, int64_t);
    kd_status (*bind_output)(kd_loss *, kd_arg, float *, int64_t);
    kd_status (*bind_labels)(kd_loss *, const int32_t *);
    kd_status (*fused)(kd_loss *, int64_t, float *);
    const char *(*last_error)(const kd_loss *);
} api;

static int load(api *a, const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "kd-ab: %s\n", dlerror());
        return 1;
    }
    /* POSIX: a void * from dlsym converts to a function pointer */
    *(void **)&a->create = dlsym(h, "kd_loss_create");
    *(void **)&a->set_int = dlsym(h, "kd_loss_set_int");
    *(void **)&a->set_float = dlsym(h, "kd_loss_set_float");
    *(void **)&a->bind_matrix = dlsym(h, "kd_loss_bind_matrix");
    *(void **)&a->bind_output = dlsym(h, "kd_loss_bind_output");
    *(void **)&a->bind_labels = dlsym(h, "kd_loss_bind_labels");
    *(void **)&a->fused = dlsym(h, "kd_loss_forward_backward");
    *(void **)&a->last_error = dlsym(h, "kd_loss_last_error");
    return !a->create || !a->fused || !a->last_error;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = 8.0f * ((float)(seed >> 8) / 16777216.0f - 0.5f);
    }
}

int main(int argc, char **argv)
{
    long long n = 0, c = 0;
    if (argc < 5 || sscanf(argv[4], "%lldx%lld", &n, &c) != 2 || n < 1 || c < 1) {
        fprintf(stderr, "usage: kd-ab LIB_A LIB_B LOSS NxC [REPS] [THREADS]\n");
        return 2;
    }
    const char *loss = argv[3];
    const int reps = argc > 5 && atoi(argv[5]) > 0 ? atoi(argv[5]) : 40;
    const int threads = argc > 6 ? atoi(argv[6]) : 1;
    const kd_loss_kind kind = !strcmp(loss, "kl_distill")     ? KD_LOSS_KL_DISTILL
                              : !strcmp(loss, "soft_ce")      ? KD_LOSS_CROSS_ENTROPY
                              : !strcmp(loss, "pseudo_label") ? KD_LOSS_PSEUDO_LABEL
                                                              : KD_LOSS_LOGIT_MSE;
    api libs[2];
    if (load(&libs[0], argv[1]) || load(&libs[1], argv[2]))
        return 1;
    const size_t e = (size_t)n * (size_t)c;
    float *s = malloc(e * 4), *t = malloc(e * 4), *g[2] = {malloc(e * 4), malloc(e * 4)};
    int32_t *y = malloc((size_t)n * 4);
    double *ta = malloc((size_t)reps * sizeof *ta), *tb = malloc((size_t)reps * sizeof *tb);
    double *ratio = malloc((size_t)reps * sizeof *ratio);
    if (!s || !t || !g[0] || !g[1] || !y || !ta || !tb || !ratio)
        return 1;
    fill(s, e, 1);
    fill(t, e, 2);
    for (long long i = 0; i < n; i++)
        y[i] = (int32_t)((i * 7919) % c);
    kd_loss *h[2];
    for (int v = 0; v < 2; v++) {
        const api *a = &libs[v];
        int bad = a->create(&h[v], kind, c);
        if (bad)
            return 1;
        bad |= a->set_int(h[v], KD_PARAM_THREADS, threads);
        bad |= a->bind_matrix(h[v], KD_ARG_STUDENT, s, c);
        bad |= a->bind_matrix(h[v], KD_ARG_TEACHER, t, c);
        bad |= a->bind_output(h[v], KD_ARG_GRAD_STUDENT, g[v], c);
        if (kind == KD_LOSS_KL_DISTILL) {
            bad |= a->set_float(h[v], KD_PARAM_TEMPERATURE, 4.0);
            bad |= a->set_float(h[v], KD_PARAM_ALPHA, 0.9);
            bad |= a->bind_labels(h[v], y);
        } else if (kind == KD_LOSS_CROSS_ENTROPY) {
            bad |= a->set_float(h[v], KD_PARAM_TEMPERATURE, 4.0);
        } else if (kind == KD_LOSS_PSEUDO_LABEL) {
            bad |= a->set_float(h[v], KD_PARAM_THRESHOLD, 0.0);
        }
        if (bad) {
            fprintf(stderr, "kd-ab: setup: %s\n", a->last_error(h[v]));
            return 1;
        }
    }
    float value[2] = {0.0f, 0.0f};
    for (int r = -2; r < reps; r++) { /* two warm-up pairs */
        double dt[2];
        for (int v = 0; v < 2; v++) {
            double t0 = now();
            if (libs[v].fused(h[v], n, &value[v])) {
                fprintf(stderr, "kd-ab: %s\n", libs[v].last_error(h[v]));
                return 1;
            }
            dt[v] = now() - t0;
        }
        if (r >= 0) {
            ta[r] = dt[0];
            tb[r] = dt[1];
            ratio[r] = dt[1] / dt[0];
        }
    }
    qsort(ta, (size_t)reps, sizeof *ta, by_value);
    qsort(tb, (size_t)reps, sizeof *tb, by_value);
    qsort(ratio, (size_t)reps, sizeof *ratio, by_value);
    printf(
        "%-13s %10s thr %d  A %10.1f us  B %10.1f us  B/A best %.2f  median pair %.2f  (loss %g %g)\n",
        loss, argv[4], threads, ta[0] * 1e6, tb[0] * 1e6, tb[0] / ta[0], ratio[reps / 2],
        (double)value[0], (double)value[1]);
    if (memcmp(&value[0], &value[1], sizeof value[0])) {
        printf("  loss differs: %a vs %a\n", (double)value[0], (double)value[1]);
        return 3;
    }
    if (memcmp(g[0], g[1], e * 4)) {
        size_t k = 0;
        while (!memcmp(&g[0][k], &g[1][k], sizeof g[0][k]))
            k++;
        printf("  gradient differs first at row %zu col %zu: %a vs %a\n", k / (size_t)c,
               k % (size_t)c, (double)g[0][k], (double)g[1][k]);
        return 3;
    }
    printf("  bit-identical (loss and %zu gradient floats)\n", e);
    return 0;
}
