#include "image.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "font.h"

int tr_image_init(tr_image *im, int width, int height, uint8_t grey)
{
    im->width = width;
    im->height = height;
    im->rgb = malloc((size_t)width * height * 3);
    if (!im->rgb)
        return -1;
    memset(im->rgb, grey, (size_t)width * height * 3);
    return 0;
}

void tr_image_free(tr_image *im)
{
    free(im->rgb);
    im->rgb = NULL;
}

static void put(tr_image *im, int x, int y, uint8_t r, uint8_t g, uint8_t b)
{
    if (x < 0 || y < 0 || x >= im->width || y >= im->height)
        return;
    uint8_t *p = im->rgb + ((size_t)y * im->width + x) * 3;
    p[0] = r;
    p[1] = g;
    p[2] = b;
}

void tr_image_fill(tr_image *im, int x, int y, int w, int h, uint8_t r, uint8_t g, uint8_t b)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            put(im, i, j, r, g, b);
}

void tr_image_draw_grey(tr_image *im, int x, int y, const float *pixels, int h, int w, float lo,
                        float hi, int scale)
{
    for (int j = 0; j < h; j++)
        for (int i = 0; i < w; i++) {
            float v = (pixels[j * w + i] - lo) / (hi - lo);
            uint8_t g = (uint8_t)(255.0f * (v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v) + 0.5f);
            tr_image_fill(im, x + i * scale, y + j * scale, scale, scale, g, g, g);
        }
}

void tr_image_text(tr_image *im, int x, int y, const char *text, uint8_t r, uint8_t g, uint8_t b)
{
    for (int k = 0; text[k]; k++)
        for (int row = 0; row < TR_FONT_HEIGHT; row++) {
            uint8_t bits = tr_font_row(text[k], row);
            for (int col = 0; col < TR_FONT_WIDTH; col++)
                if (bits & (0x10 >> col))
                    put(im, x + k * (TR_FONT_WIDTH + 1) + col, y + row, r, g, b);
        }
}

int tr_image_write_png(const tr_image *im, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "%s: libpng failed to write the image\n", path);
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)im->width, (png_uint_32)im->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < im->height; y++)
        png_write_row(png, im->rgb + (size_t)y * im->width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}
