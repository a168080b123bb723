#include "augment.h"

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

void tr_augment(tr_aug kind, int count, int h, int w, float background, float *x, tr_rng *rng)
{
    if (kind == TR_AUG_NONE || h * w > TR_AUG_MAX_PIXELS)
        return;
    const int max_shift = kind == TR_AUG_STRONG ? 4 : 2;
    for (int i = 0; i < count; i++) {
        float *img = x + (int64_t)i * h * w;
        int dy = (int)tr_rng_below(rng, 2 * max_shift + 1) - max_shift;
        int dx = (int)tr_rng_below(rng, 2 * max_shift + 1) - max_shift;
        int flip = tr_rng_uniform(rng) < 0.5f;
        tr_shift_flip(img, h, w, dy, dx, flip, background);
        if (kind == TR_AUG_STRONG) {
            contrast(img, h * w, rng);
            cutout(img, h, w, 12, background, rng);
            for (int p = 0; p < h * w; p++)
                img[p] += 0.2f * tr_rng_normal(rng);
        }
    }
}
