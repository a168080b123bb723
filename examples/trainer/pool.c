#include <string.h>

#include "layers.h"

void tr_maxpool_forward(int batch, int h, int w, int ch, const float *x, float *y, int32_t *argmax)
{
    const int oh = h / 2, ow = w / 2;
    for (int b = 0; b < batch; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int64_t o = (((int64_t)b * oh + oy) * ow + ox) * ch;
                int64_t base = (((int64_t)b * h + 2 * oy) * w + 2 * ox) * ch;
                const int64_t offs[4] = {0, ch, (int64_t)w * ch, (int64_t)w * ch + ch};
                for (int c = 0; c < ch; c++) {
                    int64_t best = base + c;
                    for (int q = 1; q < 4; q++)
                        if (x[base + offs[q] + c] > x[best])
                            best = base + offs[q] + c;
                    y[o + c] = x[best];
                    argmax[o + c] = (int32_t)(best - (int64_t)b * h * w * ch);
                }
            }
}

void tr_maxpool_backward(int batch, int h, int w, int ch, const float *dy, const int32_t *argmax,
                         float *dx)
{
    const int64_t in_size = (int64_t)h * w * ch, out_size = (int64_t)(h / 2) * (w / 2) * ch;
    memset(dx, 0, (size_t)(batch * in_size) * sizeof *dx);
    for (int b = 0; b < batch; b++)
        for (int64_t o = 0; o < out_size; o++)
            dx[b * in_size + argmax[b * out_size + o]] += dy[b * out_size + o];
}
