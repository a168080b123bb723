/* Training loop, batch sampling, evaluation and prediction.
 *
 * tr_train runs `steps` SGD updates; each step calls the program's step
 * function, which samples a batch, runs the model forward, computes the loss
 * and d loss / d logits (with kdlib), and runs the model backward.  The loop
 * does the update, the learning-rate schedule, the progress bar and, every
 * eval_every steps, a table row with the validation loss and accuracy. */
#ifndef TR_TRAIN_H
#define TR_TRAIN_H

#include <stdint.h>

#include "kdlib/ema.h"

#include "augment.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "rng.h"

/* Endless shuffled passes over a pool of sample indices. */
typedef struct {
    int32_t *order;
    int64_t n, pos;
    tr_rng rng;
} tr_sampler;

int tr_sampler_init(tr_sampler *s, const int32_t *pool, int64_t n, tr_rng rng);
void tr_sampler_free(tr_sampler *s);
void tr_sampler_next(tr_sampler *s, int count, int32_t *out);

/* Loss of a batch: writes d loss / d logits (count x classes) and returns the
 * loss.  idx are the dataset indices of the batch rows. */
typedef float (*tr_loss_fn)(void *ctx, const int32_t *idx, int count, const float *logits,
                            float *dlogits);

/* The usual step: sample, gather, augment, forward, loss, backward. */
typedef struct {
    const tr_dataset *data;
    tr_sampler sampler;
    int batch;
    tr_aug aug;
    float background;
    tr_rng rng;
    tr_loss_fn loss;
    void *loss_ctx;
    float *x, *dlogits;
    int32_t *idx;
} tr_supervised;

int tr_supervised_init(tr_supervised *s, const tr_dataset *data, const int32_t *pool, int64_t n,
                       int batch, tr_aug aug, float background, uint64_t seed, tr_loss_fn loss,
                       void *loss_ctx);
void tr_supervised_free(tr_supervised *s);
/* A tr_step_fn with ctx = tr_supervised *. */
float tr_supervised_step(void *ctx, tr_model *m, int64_t step);

typedef float (*tr_step_fn)(void *ctx, tr_model *m, int64_t step);
typedef void (*tr_hook_fn)(void *ctx, tr_model *m);

typedef struct {
    const char *run; /* name in the table and the CSV */
    int64_t steps;
    int64_t eval_every;        /* steps per table row (0: once, at the end) */
    int64_t samples_per_epoch; /* for the epoch column: batch * steps / this */
    int batch;
    float lr, momentum, weight_decay;
    int cosine;              /* 1: cosine learning-rate decay to 0; 2: FixMatch's
                                cos(7 pi k / 16 K) (tr_fixmatch_lr) */
    int nesterov;            /* 1: Nesterov momentum */
    tr_hook_fn after_update; /* optional, e.g. the EMA teacher update */
    void *hook_ctx;
} tr_train_opts;

/* An EMA of m's weights (kd_ema over m->params) with the given decay and
 * Mean Teacher's warm-up; exits with a message on failure.  tr_ema_update is
 * its tr_hook_fn (after_update), with hook_ctx = the kd_ema. */
kd_ema *tr_ema_create(const tr_model *m, double decay);
void tr_ema_update(void *ema, tr_model *m);

/* Returns 0, or -1 when out of memory. */
int tr_train(tr_model *m, const tr_train_opts *o, tr_step_fn step, void *step_ctx,
             const tr_dataset *valid, tr_log *log);

/* Mean cross-entropy (computed by kdlib) and accuracy of m on d. */
void tr_evaluate(tr_model *m, const tr_dataset *d, double *loss, double *accuracy);

/* Logits of the images idx[0..count) (all of d when idx is NULL) into out
 * (count x classes). */
void tr_predict(tr_model *m, const tr_dataset *d, const int32_t *idx, int64_t count, float *out);

/* Index of the largest of n values. */
int tr_argmax(const float *v, int n);

/* Independent training runs in parallel: fn(ctx, i, log_i) for i in
 * [0, count), `threads` runs at a time, each single-threaded (OpenBLAS set
 * to 1 thread meanwhile), so each run's result does not depend on the thread
 * count.  Run 0 logs live to `log`; the others log to buffers printed in
 * order once all have finished.  threads <= 1 runs them one after the other
 * with OpenBLAS at tr_set_threads' count. */
typedef void (*tr_run_fn)(void *ctx, int index, tr_log *log);
void tr_run_parallel(int count, int threads, tr_run_fn fn, void *ctx, tr_log *log);

/* Thread counts of OpenBLAS and OpenMP; 0 = all cores.  Returns the count. */
int tr_set_threads(int threads);

#endif
