/* Image classification data sets in IDX format (Fashion-MNIST, MNIST). */
#ifndef TR_DATASET_H
#define TR_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
    int64_t n;   /* images */
    int h, w;    /* image size (28 x 28) */
    int classes; /* 1 + largest label */
    float *x;    /* n * h * w pixels, normalised (see tr_dataset_normalize) */
    int32_t *y;  /* n labels */
} tr_dataset;

/* Load split "train" or "t10k" from dir: <split>-images-idx3-ubyte[.gz] and
 * <split>-labels-idx1-ubyte[.gz] (also the "<split>-images.idx3-ubyte"
 * spelling).  limit > 0 keeps only the first `limit` images.  Pixels are
 * scaled to [0, 1].  Returns 0, or -1 with a message in err. */
int tr_dataset_load(const char *dir, const char *split, int64_t limit, tr_dataset *d, char *err,
                    size_t err_size);
void tr_dataset_free(tr_dataset *d);

/* Mean and standard deviation of all pixels. */
void tr_dataset_stats(const tr_dataset *d, float *mean, float *std);
/* x = (x - mean) / std. */
void tr_dataset_normalize(tr_dataset *d, float mean, float std);

/* Copy the images idx[0..count) into x (count * h * w floats). */
void tr_dataset_gather(const tr_dataset *d, const int32_t *idx, int count, float *x);

/* Short class name for a label: Fashion-MNIST names when fashion is
 * non-zero, the digit otherwise. */
const char *tr_class_name(int fashion, int label);
/* Non-zero when dir looks like Fashion-MNIST (its path names "fashion"). */
int tr_dataset_is_fashion(const char *dir);

/* Load the train and t10k splits of dir (limits as tr_dataset_load), and
 * normalise both with the training set's pixel mean and std.  *background
 * receives the normalised value of a black pixel.  Returns 0, or -1 with a
 * message on stderr. */
int tr_dataset_load_pair(const char *dir, int64_t limit_train, int64_t limit_test,
                         tr_dataset *train, tr_dataset *test, float *background);

/* Random class-balanced subset: count images (count / classes of each class
 * while the class has them), indices into chosen, the other indices into
 * rest (either may be NULL).  Returns the number chosen; *rest_n receives
 * the number of the rest. */
int64_t tr_dataset_split_balanced(const tr_dataset *d, int64_t count, tr_rng *rng, int32_t *chosen,
                                  int32_t *rest, int64_t *rest_n);

#endif
