/* A tiny built-in 5 x 7 bitmap font (upper-case letters, digits, - : / . and
 * space; lower case is drawn as upper case). */
#ifndef TR_FONT_H
#define TR_FONT_H

#include <stdint.h>

#define TR_FONT_WIDTH 5
#define TR_FONT_HEIGHT 7

/* Row r (0 = top) of character ch: bit 4 is the leftmost pixel.  Unknown
 * characters are drawn as a box. */
uint8_t tr_font_row(char ch, int r);

#endif
