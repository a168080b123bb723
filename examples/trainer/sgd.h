/* SGD with momentum and (coupled) weight decay, PyTorch's torch.optim.SGD:
 *   g = grad + wd * p;  v = momentum * v + g;  p -= lr * v. */
#ifndef TR_SGD_H
#define TR_SGD_H

#include <stdint.h>

typedef struct {
    float lr, momentum, weight_decay;
    int64_t n;
    float *velocity;
} tr_sgd;

/* Returns 0, or -1 when out of memory. */
int tr_sgd_init(tr_sgd *s, int64_t n, float lr, float momentum, float weight_decay);
void tr_sgd_free(tr_sgd *s);
void tr_sgd_step(tr_sgd *s, float *params, const float *grads);
/* Cosine decay from lr0 at step 0 to 0 at step `total`. */
float tr_cosine_lr(float lr0, int64_t step, int64_t total);

#endif
