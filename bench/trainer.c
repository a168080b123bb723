/* kd-bench-trainer: seconds per epoch of the example trainer (examples/trainer).
 *
 *   kd-bench-trainer [--net SPEC] [--batch B] [--steps S] [--threads T]
 *
 * Times S SGD steps (momentum 0.9, weight decay 5e-4) of the model SPEC on
 * B-image batches of 28 x 28 images: forward, cross-entropy by kdlib,
 * backward, update; the batches are drawn from synthetic images so that no
 * file is read (the cost of a step does not depend on the pixels).  Prints
 * one tab-separated line: net, batch, threads, steps, seconds, seconds per
 * 60,000 images.  bench/trainer_vs_torch.sh runs it next to the same
 * experiment in PyTorch (bench/trainer_torch.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_core.h"
#include "kdlib/kdlib.h"
#include "model.h"
#include "rng.h"
#include "sgd.h"
#include "train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    tr_blas_core(argc, argv, "kd-bench-trainer");
    const char *net = "conv32-conv64-fc128";
    int batch = 64, steps = 200, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--net") && i + 1 < argc)
            net = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: kd-bench-trainer [--net SPEC] [--batch B] [--steps S] "
                            "[--threads T]\n");
            return 2;
        }
    }
    if (batch < 1 || batch > 4096 || steps < 1 || threads < 1) {
        fprintf(stderr, "kd-bench-trainer: batch in [1, 4096], steps and threads >= 1\n");
        return 2;
    }
    tr_set_threads(threads);
    char err[256];
    tr_model *m = tr_model_create(net, 28, 28, 10, batch, err, sizeof err);
    if (!m) {
        fprintf(stderr, "kd-bench-trainer: %s\n", err);
        return 2;
    }
    tr_rng rng;
    tr_rng_seed(&rng, 1, 0);
    tr_model_init(m, &rng);
    const int pool = 16;
    float *x = malloc(sizeof(float) * (size_t)pool * batch * 28 * 28);
    float *dlogits = malloc(sizeof(float) * (size_t)batch * 10);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)pool * batch);
    kd_loss *ce = NULL;
    tr_sgd sgd;
    if (!x || !dlogits || !labels || kd_loss_create(&ce, KD_LOSS_CROSS_ENTROPY, 10) != KD_OK ||
        tr_sgd_init(&sgd, m->num_params, 0.02f, 0.9f, 5e-4f) != 0) {
        fprintf(stderr, "kd-bench-trainer: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < (int64_t)pool * batch * 28 * 28; i++)
        x[i] = tr_rng_uniform(&rng) * 2.0f - 1.0f;
    for (int i = 0; i < pool * batch; i++)
        labels[i] = (int32_t)tr_rng_below(&rng, 10);
    double t0 = 0.0;
    for (int s = -2; s < steps; s++) { /* two warm-up steps */
        if (s == 0)
            t0 = now();
        const int p = (s + 2) % pool;
        const float *logits = tr_model_forward(m, x + (int64_t)p * batch * 28 * 28, batch);
        float loss = 0.0f;
        if (kd_loss_bind_matrix(ce, KD_ARG_STUDENT, logits, 10) != KD_OK ||
            kd_loss_bind_labels(ce, labels + p * batch) != KD_OK ||
            kd_loss_bind_output(ce, KD_ARG_GRAD_STUDENT, dlogits, 10) != KD_OK ||
            kd_loss_forward_backward(ce, batch, &loss) != KD_OK) {
            fprintf(stderr, "kd-bench-trainer: %s\n", kd_loss_last_error(ce));
            return 1;
        }
        tr_model_backward(m, dlogits);
        tr_sgd_step(&sgd, m->params, m->grads);
    }
    const double t = now() - t0;
    printf("kdlib\t%s\t%d\t%d\t%d\t%.3f\t%.2f\n", net, batch, threads, steps, t,
           t / ((double)steps * batch) * 60000.0);
    tr_sgd_free(&sgd);
    kd_loss_destroy(ce);
    free(x);
    free(dlogits);
    free(labels);
    tr_model_destroy(m);
    return 0;
}
