/* kd-mpi: data-parallel distillation with a batch regulariser under MPI.
 *
 * Every rank holds the same small CNN (examples/trainer) and the same
 * synthetic data set; each step the global batch of B images is cut into
 * one shard per rank.  The loss of the global batch is
 *
 *     L = mean_i KD(s_i, t_i, y_i)  +  lambda * R(global batch)
 *
 * with KD = KL distillation at temperature 4 plus the hard-label term, and R
 * = MCC (default) or class balance, a loss of the whole batch.  Per rank:
 *
 *   1. forward the shard, KD with reduction SUM (divided by B below);
 *   2. R: kd_loss_local_stats -> MPI_Allreduce(SUM, MPI_DOUBLE) ->
 *      kd_loss_finish: the global R and this shard's rows of dR/dlogits;
 *   3. dlogits = (1/B) dKD + lambda dR are rows of the GLOBAL loss's
 *      gradient; they are multiplied by the number of ranks P because step 4
 *      averages (as torch DDP and most trainers do): the average over ranks
 *      of P * (shard gradient) is the sum of the shards' gradients, the
 *      global batch's parameter gradient;
 *   4. backward, MPI_Allreduce(SUM) of the parameter gradients, / P;
 *   5. the same SGD step on every rank (the replicas stay equal).
 *
 * Run alone (no mpirun, or -np 1) it is the single-process trainer on the
 * whole batch; `mpirun -np 2` reproduces its loss curve to float32 rounding
 * (tests: examples/mpi/CMakeLists.txt, compare_curves.cmake).
 *
 *   kd-mpi [--steps N] [--batch B] [--seed S] [--reg mcc|cb] [--lambda X]
 *          [--out curve.txt]
 *   kd-mpi --compare single.txt ranks.txt TOLERANCE
 * Prints (rank 0) one line per step: "step loss kd reg". */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "model.h"
#include "rng.h"
#include "sgd.h"
#include "train.h"

enum { SIDE = 12, PIX = SIDE * SIDE, CLASSES = 10, SAMPLES = 2048 };

typedef struct {
    float *x;       /* SAMPLES x PIX images */
    int32_t *y;     /* labels */
    float *teacher; /* SAMPLES x CLASSES teacher logits */
} data_set;

/* Class templates plus noise; the "teacher" is template matching, a fixed
 * classifier that is right most of the time and soft where images are
 * ambiguous.  The same seed gives the same data on every rank. */
static int make_data(data_set *d, uint64_t seed)
{
    d->x = malloc(sizeof(float) * SAMPLES * PIX);
    d->y = malloc(sizeof(int32_t) * SAMPLES);
    d->teacher = malloc(sizeof(float) * SAMPLES * CLASSES);
    float *tmpl = malloc(sizeof(float) * CLASSES * PIX);
    if (!d->x || !d->y || !d->teacher || !tmpl) {
        free(tmpl);
        return -1;
    }
    tr_rng r;
    tr_rng_seed(&r, seed, 1);
    for (int k = 0; k < CLASSES * PIX; k++)
        tmpl[k] = tr_rng_normal(&r);
    for (int i = 0; i < SAMPLES; i++) {
        const int c = (int)tr_rng_below(&r, CLASSES);
        d->y[i] = c;
        float *xi = d->x + (size_t)i * PIX;
        for (int p = 0; p < PIX; p++)
            xi[p] = 0.6f * tmpl[c * PIX + p] + tr_rng_normal(&r);
        for (int k = 0; k < CLASSES; k++) {
            double dot = 0.0;
            for (int p = 0; p < PIX; p++)
                dot += (double)xi[p] * tmpl[k * PIX + p];
            d->teacher[i * CLASSES + k] = (float)(dot / PIX * 4.0);
        }
    }
    free(tmpl);
    return 0;
}

static void free_data(data_set *d)
{
    free(d->x);
    free(d->y);
    free(d->teacher);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) {                                                                        \
            fprintf(stderr, "kd-mpi: %s failed: %s\n", #call, kd_status_string(st_));              \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

/* --compare A B TOL: the largest |a - b| / max(1, |a|) over the steps' total
 * losses of two curves; exit status 0 when it is <= TOL and the curves have
 * the same steps.  Runs without MPI. */
static int compare_curves(const char *pa, const char *pb, double tol)
{
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    if (!fa || !fb) {
        fprintf(stderr, "kd-mpi: cannot read %s\n", fa ? pb : pa);
        if (fa)
            fclose(fa);
        if (fb)
            fclose(fb);
        return 1;
    }
    int sa, sb, lines = 0, ok = 1;
    double a[3], b[3], worst = 0.0, worst_abs = 0.0;
    int worst_step = -1;
    for (;;) {
        int ra = fscanf(fa, "%d %lg %lg %lg", &sa, &a[0], &a[1], &a[2]);
        int rb = fscanf(fb, "%d %lg %lg %lg", &sb, &b[0], &b[1], &b[2]);
        if (ra != 4 || rb != 4) {
            ok = ra == EOF && rb == EOF && lines > 0;
            break;
        }
        if (sa != sb) {
            ok = 0;
            break;
        }
        const double diff = fabs(a[0] - b[0]), rel = diff / fmax(1.0, fabs(a[0]));
        if (isnan(rel) || rel > worst) { /* NaN counts as the worst */
            worst = isnan(rel) ? INFINITY : rel;
            worst_abs = diff;
            worst_step = sa;
        }
        lines++;
    }
    fclose(fa);
    fclose(fb);
    if (!ok) {
        fprintf(stderr, "kd-mpi: the curves %s and %s do not have the same steps\n", pa, pb);
        return 1;
    }
    printf("kd-mpi: %d steps, largest relative difference %.3g (|diff| %.3g at step %d), "
           "tolerance %.3g: %s\n",
           lines, worst, worst_abs, worst_step, tol, worst <= tol ? "ok" : "FAILED");
    return worst <= tol ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "--compare"))
        return compare_curves(argv[2], argv[3], atof(argv[4]));
    int steps = 60, batch = 64;
    uint64_t seed = 7;
    double lambda = 1.0;
    int use_mcc = 1;
    const char *out_path = NULL;
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(argv[a], "--steps") && v)
            steps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--batch") && v)
            batch = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--seed") && v)
            seed = strtoull(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--lambda") && v)
            lambda = atof(argv[++a]);
        else if (!strcmp(argv[a], "--reg") && v)
            use_mcc = strcmp(argv[++a], "cb") != 0;
        else if (!strcmp(argv[a], "--out") && v)
            out_path = argv[++a];
        else {
            if (rank == 0)
                fprintf(stderr, "usage: kd-mpi [--steps N] [--batch B] [--seed S] [--reg mcc|cb] "
                                "[--lambda X] [--out FILE]\n");
            MPI_Finalize();
            return 2;
        }
    }
    if (steps < 1 || batch < 1 || batch > SAMPLES) {
        if (rank == 0)
            fprintf(stderr, "kd-mpi: bad --steps or --batch\n");
        MPI_Finalize();
        return 2;
    }
    tr_set_threads(1); /* one BLAS thread per rank: runs are reproducible */

    data_set d;
    if (make_data(&d, seed)) {
        fprintf(stderr, "kd-mpi: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* This rank's shard of every global batch: rows [lo, hi), uneven when P
     * does not divide B. */
    const int lo = (int)((int64_t)batch * rank / ranks),
              hi = (int)((int64_t)batch * (rank + 1) / ranks);
    const int n = hi - lo;

    char err[256];
    tr_model *m = tr_model_create("conv8-fc32", SIDE, SIDE, CLASSES, batch, err, sizeof err);
    if (!m) {
        fprintf(stderr, "kd-mpi: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    tr_rng init;
    tr_rng_seed(&init, seed, 2);
    tr_model_init(m, &init); /* same seed: same parameters on every rank */
    tr_sgd opt;
    if (tr_sgd_init(&opt, m->num_params, 0.05f, 0.9f, 0.0f)) {
        fprintf(stderr, "kd-mpi: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    kd_loss *kd, *reg;
    CHECK(kd_loss_create(&kd, KD_LOSS_KL_DISTILL, CLASSES));
    CHECK(kd_loss_set_float(kd, KD_PARAM_TEMPERATURE, 4.0));
    CHECK(kd_loss_set_float(kd, KD_PARAM_ALPHA, 0.9));
    CHECK(kd_loss_set_int(kd, KD_PARAM_REDUCTION, KD_REDUCTION_SUM));
    CHECK(kd_loss_create(&reg, use_mcc ? KD_LOSS_MCC : KD_LOSS_CLASS_BALANCE, CLASSES));
    if (use_mcc)
        CHECK(kd_loss_set_float(reg, KD_PARAM_TEMPERATURE, 2.5));
    int64_t nstats;
    CHECK(kd_loss_stats_size(reg, &nstats));

    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * PIX);
    float *t = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * CLASSES);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    float *g_kd = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * CLASSES);
    float *g_reg = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * CLASSES);
    int32_t *order = malloc(sizeof(int32_t) * SAMPLES);
    double *stats = malloc(sizeof(double) * (size_t)nstats);
    FILE *out = NULL;
    if (!x || !t || !y || !g_kd || !g_reg || !order || !stats) {
        fprintf(stderr, "kd-mpi: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0 && out_path && !(out = fopen(out_path, "w"))) {
        fprintf(stderr, "kd-mpi: cannot write %s\n", out_path);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int i = 0; i < SAMPLES; i++)
        order[i] = i;
    tr_rng shuffle;
    tr_rng_seed(&shuffle, seed, 3);
    int pos = SAMPLES;

    for (int step = 0; step < steps; step++) {
        if (pos + batch > SAMPLES) { /* a new epoch: the same shuffle on every rank */
            tr_rng_shuffle(&shuffle, order, SAMPLES);
            pos = 0;
        }
        for (int i = 0; i < n; i++) {
            const int s = order[pos + lo + i];
            memcpy(x + (size_t)i * PIX, d.x + (size_t)s * PIX, sizeof(float) * PIX);
            memcpy(t + (size_t)i * CLASSES, d.teacher + (size_t)s * CLASSES,
                   sizeof(float) * CLASSES);
            y[i] = d.y[s];
        }
        pos += batch;

        /* the trainer's forward needs one row at least; an empty shard only
         * takes part in the reductions */
        const float *logits = n > 0 ? tr_model_forward(m, x, n) : x;
        float kd_sum = 0.0f, reg_loss;
        CHECK(kd_loss_bind_matrix(kd, KD_ARG_STUDENT, logits, CLASSES));
        CHECK(kd_loss_bind_matrix(kd, KD_ARG_TEACHER, t, CLASSES));
        CHECK(kd_loss_bind_labels(kd, y));
        CHECK(kd_loss_bind_output(kd, KD_ARG_GRAD_STUDENT, g_kd, CLASSES));
        CHECK(kd_loss_forward_backward(kd, n, &kd_sum));

        CHECK(kd_loss_bind_matrix(reg, KD_ARG_STUDENT, logits, CLASSES));
        CHECK(kd_loss_bind_output(reg, KD_ARG_GRAD_STUDENT, g_reg, CLASSES));
        CHECK(kd_loss_local_stats(reg, n, stats));
        MPI_Allreduce(MPI_IN_PLACE, stats, (int)nstats, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        CHECK(kd_loss_finish(reg, n, stats, &reg_loss));

        double kd_total = kd_sum;
        MPI_Allreduce(MPI_IN_PLACE, &kd_total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        const double kd_mean = kd_total / batch;

        if (n > 0) {
            const float a = (float)ranks / (float)batch, b = (float)(ranks * lambda);
            for (int k = 0; k < n * CLASSES; k++)
                g_kd[k] = a * g_kd[k] + b * g_reg[k];
            tr_model_backward(m, g_kd);
        } else {
            memset(m->grads, 0, sizeof(float) * (size_t)m->num_params);
        }
        MPI_Allreduce(MPI_IN_PLACE, m->grads, (int)m->num_params, MPI_FLOAT, MPI_SUM,
                      MPI_COMM_WORLD);
        const float inv_ranks = 1.0f / (float)ranks;
        for (int64_t k = 0; k < m->num_params; k++)
            m->grads[k] *= inv_ranks;
        tr_sgd_step(&opt, m->params, m->grads);

        const double total = kd_mean + lambda * reg_loss;
        if (rank == 0) {
            printf("%d %.9g %.9g %.9g\n", step, total, kd_mean, (double)reg_loss);
            if (out)
                fprintf(out, "%d %.9g %.9g %.9g\n", step, total, kd_mean, (double)reg_loss);
        }
    }
    if (out)
        fclose(out);
    kd_loss_destroy(kd);
    kd_loss_destroy(reg);
    tr_sgd_free(&opt);
    tr_model_destroy(m);
    free(x);
    free(t);
    free(y);
    free(g_kd);
    free(g_reg);
    free(order);
    free(stats);
    free_data(&d);
    MPI_Finalize();
    return 0;
}
