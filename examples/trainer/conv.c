#include <cblas.h>
#include <string.h>

#include "layers.h"

int64_t tr_conv_col_size(const tr_conv *c, int batch)
{
    return (int64_t)batch * c->h * c->w * c->k * c->k * c->cin;
}

/* One row of col per output pixel: its k x k x cin input patch, zeros where
 * the patch hangs over the border.  NHWC makes each (ky, kx) a contiguous
 * run of cin values. */
static void im2col(const tr_conv *c, int batch, const float *x, float *col)
{
    const int h = c->h, w = c->w, k = c->k, cin = c->cin, pad = k / 2;
    const int64_t K = (int64_t)k * k * cin;
    for (int b = 0; b < batch; b++) {
        for (int oy = 0; oy < h; oy++) {
            for (int ox = 0; ox < w; ox++) {
                float *row = col + (((int64_t)b * h + oy) * w + ox) * K;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy + ky - pad;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox + kx - pad;
                        float *dst = row + (ky * k + kx) * cin;
                        const float *src = x + (((int64_t)b * h + iy) * w + ix) * cin;
                        int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                        /* A plain loop: cin is often tiny (1 for the first layer). */
                        for (int ci = 0; ci < cin; ci++)
                            dst[ci] = inside ? src[ci] : 0.0f;
                    }
                }
            }
        }
    }
}

/* The adjoint of im2col: every patch entry is added back to its pixel. */
static void col2im(const tr_conv *c, int batch, const float *col, float *x)
{
    const int h = c->h, w = c->w, k = c->k, cin = c->cin, pad = k / 2;
    const int64_t K = (int64_t)k * k * cin;
    memset(x, 0, (size_t)batch * h * w * cin * sizeof *x);
    for (int b = 0; b < batch; b++) {
        for (int oy = 0; oy < h; oy++) {
            for (int ox = 0; ox < w; ox++) {
                const float *row = col + (((int64_t)b * h + oy) * w + ox) * K;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy + ky - pad;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox + kx - pad;
                        if (ix < 0 || ix >= w)
                            continue;
                        const float *src = row + (ky * k + kx) * cin;
                        float *dst = x + (((int64_t)b * h + iy) * w + ix) * cin;
                        for (int ci = 0; ci < cin; ci++)
                            dst[ci] += src[ci];
                    }
                }
            }
        }
    }
}

void tr_conv_forward(const tr_conv *c, int batch, const float *x, const float *W, const float *b,
                     float *col, float *y)
{
    const int M = batch * c->h * c->w, K = c->k * c->k * c->cin, N = c->cout;
    im2col(c, batch, x, col);
    for (int i = 0; i < M; i++)
        memcpy(y + (int64_t)i * N, b, (size_t)N * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, col, K, W, K, 1.0f, y, N);
}

void tr_conv_backward(const tr_conv *c, int batch, const float *col, const float *W,
                      const float *dy, float *dW, float *db, float *dcol, float *dx)
{
    const int M = batch * c->h * c->w, K = c->k * c->k * c->cin, N = c->cout;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dy, N, col, K, 0.0f, dW, K);
    memset(db, 0, (size_t)N * sizeof *db);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            db[j] += dy[(int64_t)i * N + j];
    if (dx) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dy, N, W, K, 0.0f,
                    dcol, K);
        col2im(c, batch, dcol, dx);
    }
}
