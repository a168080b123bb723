#include "layers.h"

void tr_relu_forward(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void tr_relu_backward(int64_t n, const float *y, float *dy)
{
    /* Branch-free (a select the compiler vectorises): the mask is random. */
    for (int64_t i = 0; i < n; i++)
        dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
