#include "train.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "sgd.h"

int tr_sampler_init(tr_sampler *s, const int32_t *pool, int64_t n, tr_rng rng)
{
    s->order = malloc((size_t)(n > 0 ? n : 1) * sizeof *s->order);
    if (!s->order)
        return -1;
    memcpy(s->order, pool, (size_t)n * sizeof *pool);
    s->n = n;
    s->pos = n; /* shuffle at the first draw */
    s->rng = rng;
    return 0;
}

void tr_sampler_free(tr_sampler *s)
{
    free(s->order);
    s->order = NULL;
}

void tr_sampler_next(tr_sampler *s, int count, int32_t *out)
{
    for (int i = 0; i < count; i++) {
        if (s->pos >= s->n) {
            tr_rng_shuffle(&s->rng, s->order, s->n);
            s->pos = 0;
        }
        out[i] = s->order[s->pos++];
    }
}

int tr_supervised_init(tr_supervised *s, const tr_dataset *data, const int32_t *pool, int64_t n,
                       int batch, tr_aug aug, float background, uint64_t seed, tr_loss_fn loss,
                       void *loss_ctx)
{
    memset(s, 0, sizeof *s);
    s->data = data;
    s->batch = batch;
    s->aug = aug;
    s->background = background;
    s->loss = loss;
    s->loss_ctx = loss_ctx;
    tr_rng sampling;
    tr_rng_seed(&sampling, seed, 1);
    tr_rng_seed(&s->rng, seed, 2);
    s->x = malloc((size_t)batch * data->h * data->w * sizeof *s->x);
    s->dlogits = malloc((size_t)batch * data->classes * sizeof *s->dlogits);
    s->idx = malloc((size_t)batch * sizeof *s->idx);
    if (!s->x || !s->dlogits || !s->idx || tr_sampler_init(&s->sampler, pool, n, sampling) != 0) {
        tr_supervised_free(s);
        return -1;
    }
    return 0;
}

void tr_supervised_free(tr_supervised *s)
{
    free(s->x);
    free(s->dlogits);
    free(s->idx);
    tr_sampler_free(&s->sampler);
    s->x = s->dlogits = NULL;
    s->idx = NULL;
}

float tr_supervised_step(void *ctx, tr_model *m, int64_t step)
{
    (void)step;
    tr_supervised *s = ctx;
    tr_sampler_next(&s->sampler, s->batch, s->idx);
    tr_dataset_gather(s->data, s->idx, s->batch, s->x);
    tr_augment(s->aug, s->batch, s->data->h, s->data->w, s->background, s->x, &s->rng);
    const float *logits = tr_model_forward(m, s->x, s->batch);
    float loss = s->loss(s->loss_ctx, s->idx, s->batch, logits, s->dlogits);
    tr_model_backward(m, s->dlogits);
    return loss;
}

int tr_train(tr_model *m, const tr_train_opts *o, tr_step_fn step, void *step_ctx,
             const tr_dataset *valid, tr_log *log)
{
    tr_sgd sgd;
    if (tr_sgd_init(&sgd, m->num_params, o->lr, o->momentum, o->weight_decay) != 0)
        return -1;
    sgd.nesterov = o->nesterov;
    const int64_t eval_every = o->eval_every > 0 ? o->eval_every : o->steps;
    double loss_sum = 0.0, t_row = tr_now();
    int64_t loss_count = 0;
    for (int64_t t = 0; t < o->steps; t++) {
        if (o->cosine == 2)
            sgd.lr = tr_fixmatch_lr(o->lr, t, o->steps);
        else if (o->cosine)
            sgd.lr = tr_cosine_lr(o->lr, t, o->steps);
        float loss = step(step_ctx, m, t);
        tr_sgd_step(&sgd, m->params, m->grads);
        if (o->after_update)
            o->after_update(o->hook_ctx, m);
        loss_sum += loss;
        loss_count++;
        int64_t in_row = t % eval_every + 1;
        if (in_row % 16 == 0)
            tr_log_progress(log, in_row, eval_every, loss_sum / (double)loss_count);
        if ((t + 1) % eval_every == 0 || t + 1 == o->steps) {
            double vloss = 0.0, acc = 0.0;
            if (valid)
                tr_evaluate(m, valid, &vloss, &acc);
            double epoch = o->samples_per_epoch > 0
                               ? (double)(t + 1) * o->batch / (double)o->samples_per_epoch
                               : (double)(t + 1);
            double now = tr_now();
            tr_log_row(log, o->run, epoch, t + 1, loss_sum / (double)loss_count, vloss, acc,
                       now - t_row);
            t_row = now;
            loss_sum = 0.0;
            loss_count = 0;
        }
    }
    tr_sgd_free(&sgd);
    return 0;
}

int tr_argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

void tr_predict(tr_model *m, const tr_dataset *d, const int32_t *idx, int64_t count, float *out)
{
    const int64_t size = (int64_t)d->h * d->w, C = m->classes;
    float *x = malloc((size_t)(m->max_batch * size) * sizeof *x);
    int32_t *rows = malloc((size_t)m->max_batch * sizeof *rows);
    if (!x || !rows) {
        fprintf(stderr, "tr_predict: out of memory\n");
        exit(1);
    }
    if (!idx)
        count = d->n;
    for (int64_t start = 0; start < count; start += m->max_batch) {
        int b = (int)(count - start < m->max_batch ? count - start : m->max_batch);
        for (int i = 0; i < b; i++)
            rows[i] = idx ? idx[start + i] : (int32_t)(start + i);
        tr_dataset_gather(d, rows, b, x);
        const float *logits = tr_model_forward(m, x, b);
        memcpy(out + start * C, logits, (size_t)(b * C) * sizeof *out);
    }
    free(x);
    free(rows);
}

void tr_evaluate(tr_model *m, const tr_dataset *d, double *loss, double *accuracy)
{
    const int C = m->classes;
    float *logits = malloc((size_t)(d->n * C) * sizeof *logits);
    kd_loss *ce = NULL;
    float sum = 0.0f;
    if (!logits || kd_loss_create(&ce, KD_LOSS_CROSS_ENTROPY, C) != KD_OK) {
        fprintf(stderr, "tr_evaluate: out of memory\n");
        exit(1);
    }
    tr_predict(m, d, NULL, d->n, logits);
    kd_loss_set_int(ce, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
    kd_loss_bind_matrix(ce, KD_ARG_STUDENT, logits, C);
    kd_loss_bind_labels(ce, d->y);
    kd_status st = kd_loss_forward(ce, d->n, &sum);
    if (st != KD_OK) {
        fprintf(stderr, "tr_evaluate: %s\n", kd_loss_last_error(ce));
        exit(1);
    }
    int64_t correct = 0;
    for (int64_t i = 0; i < d->n; i++)
        correct += tr_argmax(logits + i * C, C) == d->y[i];
    *loss = d->n ? sum / (double)d->n : 0.0;
    *accuracy = d->n ? (double)correct / (double)d->n : 0.0;
    kd_loss_destroy(ce);
    free(logits);
}

int tr_set_threads(int threads)
{
    if (threads <= 0)
        threads = omp_get_num_procs();
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
    return threads;
}

void tr_run_parallel(int count, int threads, tr_run_fn fn, void *ctx, tr_log *log)
{
    if (threads <= 1 || count <= 1) {
        for (int i = 0; i < count; i++)
            fn(ctx, i, log);
        return;
    }
    tr_log *logs = calloc((size_t)count, sizeof *logs);
    if (!logs) {
        fprintf(stderr, "tr_run_parallel: out of memory\n");
        exit(1);
    }
    for (int i = 1; i < count; i++)
        if (tr_log_open_buffered(&logs[i], log) != 0) {
            fprintf(stderr, "tr_run_parallel: out of memory\n");
            exit(1);
        }
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for num_threads(threads < count ? threads : count) schedule(dynamic, 1)
    for (int i = 0; i < count; i++)
        fn(ctx, i, i == 0 ? log : &logs[i]);
    openblas_set_num_threads(blas_threads);
    for (int i = 1; i < count; i++)
        tr_log_finish_buffered(&logs[i], log);
    free(logs);
}

kd_ema *tr_ema_create(const tr_model *m, double decay)
{
    kd_ema *ema = NULL;
    kd_status st = kd_ema_create_flat(&ema, m->params, m->num_params);
    if (st == KD_OK)
        st = kd_ema_set_float(ema, KD_EMA_PARAM_DECAY, (float)decay);
    if (st == KD_OK)
        st = kd_ema_set_int(ema, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER);
    if (st != KD_OK) {
        fprintf(stderr, "kdlib: ema: %s: %s\n", kd_status_string(st), kd_ema_last_error(ema));
        exit(1);
    }
    return ema;
}

void tr_ema_update(void *ema, tr_model *m)
{
    kd_status st = kd_ema_update_flat(ema, m->params);
    if (st != KD_OK) {
        fprintf(stderr, "kdlib: ema update: %s: %s\n", kd_status_string(st),
                kd_ema_last_error(ema));
        exit(1);
    }
}
