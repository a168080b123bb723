/* The trainer's layers.  Activations are NHWC (batch, row, column, channel)
 * float32; a layer's forward keeps what its backward needs in caller-owned
 * buffers, and backward *overwrites* the parameter gradients (one backward
 * per step; the model sums nothing across calls). */
#ifndef TR_LAYERS_H
#define TR_LAYERS_H

#include <stdint.h>

/* 2-D convolution, k x k kernel (k odd), stride 1, zero padding k/2, so the
 * output has the input's height and width.  Weights W are [cout][k][k][cin]
 * (a cout x K matrix, K = k*k*cin), bias b[cout].  Computed as im2col into
 * col (B*h*w x K) followed by one sgemm. */
typedef struct {
    int cin, cout, k, h, w;
} tr_conv;

int64_t tr_conv_col_size(const tr_conv *c, int batch);
void tr_conv_forward(const tr_conv *c, int batch, const float *x, const float *W, const float *b,
                     float *col, float *y);
/* dy: B*h*w x cout.  Writes dW, db, and dx (if not NULL; dcol is then a
 * scratch buffer of the col size). */
void tr_conv_backward(const tr_conv *c, int batch, const float *col, const float *W,
                      const float *dy, float *dW, float *db, float *dcol, float *dx);

/* Max-pool 2 x 2, stride 2, on B x h x w x ch (h, w even).  argmax keeps the
 * input position of each output for the backward pass. */
void tr_maxpool_forward(int batch, int h, int w, int ch, const float *x, float *y, int32_t *argmax);
/* dx (B x h x w x ch) is overwritten. */
void tr_maxpool_backward(int batch, int h, int w, int ch, const float *dy, const int32_t *argmax,
                         float *dx);

/* ReLU in place; backward masks dy where the forward output was 0. */
void tr_relu_forward(int64_t n, float *x);
void tr_relu_backward(int64_t n, const float *y, float *dy);

/* Fully connected: y[B][out] = x[B][in] W^T + b, W is [out][in]. */
void tr_linear_forward(int batch, int in, int out, const float *x, const float *W, const float *b,
                       float *y);
/* Writes dW, db, and dx (if not NULL). */
void tr_linear_backward(int batch, int in, int out, const float *x, const float *W, const float *dy,
                        float *dW, float *db, float *dx);

#endif
