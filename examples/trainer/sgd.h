/* SGD with momentum and (coupled) weight decay, PyTorch's torch.optim.SGD:
 *   g = grad + wd * p;  v = momentum * v + g;  p -= lr * v,
 * or with nesterov = 1 (SGD(nesterov=True)):  p -= lr * (g + momentum * v). */
#ifndef TR_SGD_H
#define TR_SGD_H

#include <stdint.h>

typedef struct {
    float lr, momentum, weight_decay;
    int nesterov; /* 0 or 1; tr_sgd_init sets 0 */
    int64_t n;
    float *velocity;
} tr_sgd;

/* Returns 0, or -1 when out of memory. */
int tr_sgd_init(tr_sgd *s, int64_t n, float lr, float momentum, float weight_decay);
void tr_sgd_free(tr_sgd *s);
void tr_sgd_step(tr_sgd *s, float *params, const float *grads);
/* Cosine decay from lr0 at step 0 to 0 at step `total`. */
float tr_cosine_lr(float lr0, int64_t step, int64_t total);
/* FixMatch's schedule: lr0 * cos(7 pi step / (16 total)), which ends at
 * about 0.2 lr0 instead of 0. */
float tr_fixmatch_lr(float lr0, int64_t step, int64_t total);

#endif
