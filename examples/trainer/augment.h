/* Data augmentation on normalised single-channel images, in place.
 *   weak:   random shift by up to 2 pixels, horizontal flip with p = 0.5;
 *   strong: shift by up to 4 pixels, flip, contrast (the image's deviations
 *           from its mean scaled by a factor uniform in [0.6, 1.4]), a
 *           12 x 12 cutout, Gaussian noise (sigma 0.2 in normalised units);
 *   strong + affine: the strong one with a random affine warp after the shift
 *           and flip (rotation in [-30, 30] degrees, shear in [-0.3, 0.3],
 *           scale in [0.8, 1.2], bilinear).
 * Pixels shifted in or cut out take the value `background` (a black pixel
 * after normalisation).  The two views of semi-supervised training are a weak
 * and a strong augmentation of the same image. */
#ifndef TR_AUGMENT_H
#define TR_AUGMENT_H

#include "rng.h"

typedef enum {
    TR_AUG_NONE = 0,
    TR_AUG_WEAK = 1,
    TR_AUG_STRONG = 2,
    TR_AUG_STRONG_AFFINE = 3
} tr_aug;

void tr_augment(tr_aug kind, int count, int h, int w, float background, float *x, tr_rng *rng);

/* One image in place: moved down by dy and right by dx pixels (negative: up,
 * left), the uncovered pixels taking `background`, then flipped left-right
 * when flip is non-zero.  Returns 0, or -1 (image unchanged) when h * w is
 * larger than the 4,096 pixels augmentation supports. */
int tr_shift_flip(float *img, int h, int w, int dy, int dx, int flip, float background);

#endif
