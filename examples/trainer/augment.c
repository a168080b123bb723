#include "augment.h"

#include <math.h>
#include <string.h>

#define TR_AUG_MAX_PIXELS 4096

int tr_shift_flip(float *img, int h, int w, int dy, int dx, int flip, float background)
{
    if (h * w > TR_AUG_MAX_PIXELS)
        return -1;
    float tmp[TR_AUG_MAX_PIXELS];
    memcpy(tmp, img, (size_t)h * w * sizeof *img);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sy = y - dy, sx = (flip ? w - 1 - x : x) - dx;
            img[y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? tmp[sy * w + sx] : background;
        }
    return 0;
}

static void cutout(float *img, int h, int w, int size, float background, tr_rng *rng)
{
    int cy = (int)tr_rng_below(rng, h), cx = (int)tr_rng_below(rng, w);
    for (int y = cy - size / 2; y < cy + size / 2; y++)
        for (int x = cx - size / 2; x < cx + size / 2; x++)
            if (y >= 0 && y < h && x >= 0 && x < w)
                img[y * w + x] = background;
}

/* img = mean + f (img - mean), f uniform in [0.6, 1.4], mean over the image. */
static void contrast(float *img, int n, tr_rng *rng)
{
    double sum = 0.0;
    for (int p = 0; p < n; p++)
        sum += img[p];
    const float mean = (float)(sum / n), f = 0.6f + 0.8f * tr_rng_uniform(rng);
    for (int p = 0; p < n; p++)
        img[p] = mean + f * (img[p] - mean);
}

/* Bilinear sample of img at (y, x), background outside. */
static float sample(const float *img, int h, int w, double y, double x, float background)
{
    const int y0 = (int)floor(y), x0 = (int)floor(x);
    const double fy = y - y0, fx = x - x0;
    double v = 0.0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            const int yy = y0 + dy, xx = x0 + dx;
            const double wgt = (dy ? fy : 1.0 - fy) * (dx ? fx : 1.0 - fx);
            v += wgt * (yy >= 0 && yy < h && xx >= 0 && xx < w ? img[yy * w + xx] : background);
        }
    return (float)v;
}

/* A random affine warp about the centre: rotation uniform in [-30, 30]
 * degrees, horizontal shear in [-0.3, 0.3], scale in [0.8, 1.2] (RandAugment's
 * geometric operations, all at once), bilinear, background outside. */
static void affine(float *img, int h, int w, float background, tr_rng *rng)
{
    float tmp[TR_AUG_MAX_PIXELS];
    memcpy(tmp, img, (size_t)h * w * sizeof *img);
    const double pi = 3.14159265358979323846;
    const double theta = (2.0 * tr_rng_uniform(rng) - 1.0) * pi / 6.0;
    const double shear = (2.0 * tr_rng_uniform(rng) - 1.0) * 0.3;
    const double scale = 0.8 + 0.4 * tr_rng_uniform(rng);
    /* forward A = scale R(theta) [1 shear; 0 1]; each output pixel reads A^-1 (p - c) + c */
    const double c = cos(theta), sn = sin(theta);
    const double a00 = scale * c, a01 = scale * (c * shear - sn);
    const double a10 = scale * sn, a11 = scale * (sn * shear + c);
    const double det = a00 * a11 - a01 * a10;
    const double i00 = a11 / det, i01 = -a01 / det, i10 = -a10 / det, i11 = a00 / det;
    const double cy = 0.5 * (h - 1), cx = 0.5 * (w - 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const double dx = x - cx, dy = y - cy;
            img[y * w + x] =
                sample(tmp, h, w, i10 * dx + i11 * dy + cy, i00 * dx + i01 * dy + cx, background);
        }
}

void tr_augment(tr_aug kind, int count, int h, int w, float background, float *x, tr_rng *rng)
{
    if (kind == TR_AUG_NONE || h * w > TR_AUG_MAX_PIXELS)
        return;
    const int strong = kind == TR_AUG_STRONG || kind == TR_AUG_STRONG_AFFINE;
    const int max_shift = strong ? 4 : 2;
    for (int i = 0; i < count; i++) {
        float *img = x + (int64_t)i * h * w;
        int dy = (int)tr_rng_below(rng, 2 * max_shift + 1) - max_shift;
        int dx = (int)tr_rng_below(rng, 2 * max_shift + 1) - max_shift;
        int flip = tr_rng_uniform(rng) < 0.5f;
        tr_shift_flip(img, h, w, dy, dx, flip, background);
        if (kind == TR_AUG_STRONG_AFFINE)
            affine(img, h, w, background, rng);
        if (strong) {
            contrast(img, h * w, rng);
            cutout(img, h, w, 12, background, rng);
            for (int p = 0; p < h * w; p++)
                img[p] += 0.2f * tr_rng_normal(rng);
        }
    }
}
