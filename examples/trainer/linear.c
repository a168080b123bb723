#include <cblas.h>
#include <string.h>

#include "layers.h"

void tr_linear_forward(int batch, int in, int out, const float *x, const float *W, const float *b,
                       float *y)
{
    for (int i = 0; i < batch; i++)
        memcpy(y + (int64_t)i * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, W, in, 1.0f,
                y, out);
}

void tr_linear_backward(int batch, int in, int out, const float *x, const float *W, const float *dy,
                        float *dW, float *db, float *dx)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, dy, out, x, in, 0.0f,
                dW, in);
    memset(db, 0, (size_t)out * sizeof *db);
    for (int i = 0; i < batch; i++)
        for (int j = 0; j < out; j++)
            db[j] += dy[(int64_t)i * out + j];
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f, dy, out, W, in,
                    0.0f, dx, in);
}
