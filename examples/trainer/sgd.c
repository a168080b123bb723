#include "sgd.h"

#include <math.h>
#include <stdlib.h>

int tr_sgd_init(tr_sgd *s, int64_t n, float lr, float momentum, float weight_decay)
{
    s->lr = lr;
    s->momentum = momentum;
    s->weight_decay = weight_decay;
    s->nesterov = 0;
    s->n = n;
    s->velocity = calloc((size_t)(n > 0 ? n : 1), sizeof *s->velocity);
    return s->velocity ? 0 : -1;
}

void tr_sgd_free(tr_sgd *s)
{
    free(s->velocity);
    s->velocity = NULL;
}

void tr_sgd_step(tr_sgd *s, float *params, const float *grads)
{
    for (int64_t i = 0; i < s->n; i++) {
        float g = grads[i] + s->weight_decay * params[i];
        s->velocity[i] = s->momentum * s->velocity[i] + g;
        params[i] -= s->lr * (s->nesterov ? g + s->momentum * s->velocity[i] : s->velocity[i]);
    }
}

float tr_cosine_lr(float lr0, int64_t step, int64_t total)
{
    if (total <= 0)
        return lr0;
    return lr0 * 0.5f * (1.0f + cosf(3.14159265f * (float)step / (float)total));
}

float tr_fixmatch_lr(float lr0, int64_t step, int64_t total)
{
    if (total <= 0)
        return lr0;
    return lr0 * cosf(7.0f * 3.14159265f * (float)step / (16.0f * (float)total));
}
