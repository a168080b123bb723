/* A small sequential CNN: blocks given by a spec string such as
 * "conv32-conv64-fc128": every "convN" is a 3x3 convolution with N output
 * channels + ReLU + 2x2 max-pool, every "fcN" a fully connected layer + ReLU;
 * a linear head to the classes always ends the model and outputs logits (no
 * softmax: the losses come from kdlib).
 *
 * All parameters live in one flat array (params, with grads alongside), which
 * is what the optimiser and kdlib's EMA teacher (kd_ema_create_flat) want. */
#ifndef TR_MODEL_H
#define TR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "layers.h"
#include "rng.h"

#define TR_MAX_LAYERS 8

typedef enum { TR_LAYER_CONV, TR_LAYER_FC, TR_LAYER_HEAD } tr_layer_kind;

typedef struct {
    tr_layer_kind kind;
    tr_conv conv;         /* TR_LAYER_CONV */
    int in, out;          /* input and output values per sample */
    int64_t w_off, b_off; /* offsets of weights and bias in params / grads */
    float *col, *z, *y, *dcol, *dz, *dx;
    int32_t *argmax;
} tr_layer;

typedef struct {
    char spec[128];
    int h, w, classes, max_batch;
    int num_layers;
    tr_layer layers[TR_MAX_LAYERS];
    int64_t num_params;
    float *params, *grads;
    const float *input; /* last forward input, read by backward */
    int batch;          /* last forward batch size */
} tr_model;

/* Build a model for h x w single-channel images; forward accepts up to
 * max_batch images.  Returns NULL with a message in err on a bad spec (an
 * unknown block, too many blocks, a size that does not halve evenly) or on
 * out of memory.  Parameters start at zero: call tr_model_init. */
tr_model *tr_model_create(const char *spec, int h, int w, int classes, int max_batch, char *err,
                          size_t err_size);
void tr_model_destroy(tr_model *m);

/* He initialisation: weights ~ N(0, 2 / fan_in) (the head 1 / fan_in), biases 0. */
void tr_model_init(tr_model *m, tr_rng *rng);

/* Logits (batch x classes, row-major, ld = classes) of batch <= max_batch
 * images x (batch x h x w); the pointer is valid until the next forward. */
const float *tr_model_forward(tr_model *m, const float *x, int batch);
/* Gradients of the last forward's batch from d loss / d logits; overwrites grads. */
void tr_model_backward(tr_model *m, const float *dlogits);

/* Multiply-adds of one forward pass per image. */
int64_t tr_model_flops(const tr_model *m);

#endif
