/* An RGB canvas for figures: grey-scale tiles, text in the built-in font,
 * written as PNG with libpng. */
#ifndef TR_IMAGE_H
#define TR_IMAGE_H

#include <stdint.h>

typedef struct {
    int width, height;
    uint8_t *rgb; /* width * height * 3 */
} tr_image;

/* A canvas filled with one grey level.  Returns 0, or -1 when out of memory. */
int tr_image_init(tr_image *im, int width, int height, uint8_t grey);
void tr_image_free(tr_image *im);
void tr_image_fill(tr_image *im, int x, int y, int w, int h, uint8_t r, uint8_t g, uint8_t b);
/* A h x w grey-scale picture with values in [lo, hi] mapped to 0..255 (white
 * on black), each pixel drawn as a scale x scale square at (x, y). */
void tr_image_draw_grey(tr_image *im, int x, int y, const float *pixels, int h, int w, float lo,
                        float hi, int scale);
/* Text at (x, y) (top-left), one pixel per font dot, clipped to the canvas. */
void tr_image_text(tr_image *im, int x, int y, const char *text, uint8_t r, uint8_t g, uint8_t b);
/* Returns 0, or -1 with a message on stderr. */
int tr_image_write_png(const tr_image *im, const char *path);

#endif
