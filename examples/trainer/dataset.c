#define _POSIX_C_SOURCE 200809L
#include "dataset.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idx.h"

/* First existing file among the spellings of the IDX file names. */
static void find_file(const char *dir, const char *split, const char *kind, int ndim, char *path,
                      size_t size)
{
    static const char *const forms[] = {"%s/%s-%s-idx%d-ubyte.gz", "%s/%s-%s-idx%d-ubyte",
                                        "%s/%s-%s.idx%d-ubyte.gz", "%s/%s-%s.idx%d-ubyte"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(path, size, forms[i], dir, split, kind, ndim);
        if (access(path, R_OK) == 0)
            return;
    }
    snprintf(path, size, forms[0], dir, split, kind, ndim); /* for the error message */
}

int tr_dataset_load(const char *dir, const char *split, int64_t limit, tr_dataset *d, char *err,
                    size_t err_size)
{
    char path[4096];
    tr_idx images, labels;
    memset(d, 0, sizeof *d);
    find_file(dir, split, "images", 3, path, sizeof path);
    if (tr_idx_load(path, 3, &images, err, err_size) != 0)
        return -1;
    find_file(dir, split, "labels", 1, path, sizeof path);
    if (tr_idx_load(path, 1, &labels, err, err_size) != 0) {
        tr_idx_free(&images);
        return -1;
    }
    if (labels.dims[0] != images.dims[0]) {
        snprintf(err, err_size, "%s: %lld labels for %lld images", path, (long long)labels.dims[0],
                 (long long)images.dims[0]);
        goto fail;
    }
    d->n = images.dims[0];
    if (limit > 0 && limit < d->n)
        d->n = limit;
    d->h = (int)images.dims[1];
    d->w = (int)images.dims[2];
    d->x = malloc((size_t)(d->n * d->h * d->w) * sizeof *d->x);
    d->y = malloc((size_t)d->n * sizeof *d->y);
    if (!d->x || !d->y) {
        snprintf(err, err_size, "out of memory for %lld images", (long long)d->n);
        goto fail;
    }
    for (int64_t i = 0; i < d->n * d->h * d->w; i++)
        d->x[i] = images.data[i] * (1.0f / 255.0f);
    for (int64_t i = 0; i < d->n; i++) {
        d->y[i] = labels.data[i];
        if (d->y[i] + 1 > d->classes)
            d->classes = d->y[i] + 1;
    }
    tr_idx_free(&images);
    tr_idx_free(&labels);
    return 0;
fail:
    tr_idx_free(&images);
    tr_idx_free(&labels);
    tr_dataset_free(d);
    return -1;
}

void tr_dataset_free(tr_dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

void tr_dataset_stats(const tr_dataset *d, float *mean, float *std)
{
    double s = 0.0, s2 = 0.0;
    int64_t count = d->n * d->h * d->w;
    for (int64_t i = 0; i < count; i++) {
        s += d->x[i];
        s2 += (double)d->x[i] * d->x[i];
    }
    double m = count ? s / count : 0.0;
    double var = count ? s2 / count - m * m : 1.0;
    *mean = (float)m;
    *std = (float)sqrt(var > 1e-12 ? var : 1.0);
}

void tr_dataset_normalize(tr_dataset *d, float mean, float std)
{
    int64_t count = d->n * d->h * d->w;
    for (int64_t i = 0; i < count; i++)
        d->x[i] = (d->x[i] - mean) / std;
}

void tr_dataset_gather(const tr_dataset *d, const int32_t *idx, int count, float *x)
{
    size_t size = (size_t)d->h * d->w;
    for (int i = 0; i < count; i++)
        memcpy(x + i * size, d->x + (size_t)idx[i] * size, size * sizeof *x);
}

const char *tr_class_name(int fashion, int label)
{
    static const char *const fashion_names[10] = {"T-shirt", "Trouser", "Pullover", "Dress",
                                                  "Coat",    "Sandal",  "Shirt",    "Sneaker",
                                                  "Bag",     "Boot"};
    static const char *const digits[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    if (label < 0 || label > 9)
        return "?";
    return fashion ? fashion_names[label] : digits[label];
}

int tr_dataset_is_fashion(const char *dir)
{
    static const char word[] = "fashion";
    for (const char *p = dir; *p; p++) {
        size_t k = 0;
        while (word[k] && p[k] && tolower((unsigned char)p[k]) == word[k])
            k++;
        if (!word[k])
            return 1;
    }
    return 0;
}

int tr_dataset_load_pair(const char *dir, int64_t limit_train, int64_t limit_test,
                         tr_dataset *train, tr_dataset *test, float *background)
{
    char err[4400];
    if (tr_dataset_load(dir, "train", limit_train, train, err, sizeof err) != 0 ||
        tr_dataset_load(dir, "t10k", limit_test, test, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        tr_dataset_free(train);
        return -1;
    }
    if (train->classes < test->classes)
        train->classes = test->classes;
    test->classes = train->classes;
    float mean, std;
    tr_dataset_stats(train, &mean, &std);
    tr_dataset_normalize(train, mean, std);
    tr_dataset_normalize(test, mean, std);
    *background = -mean / std;
    return 0;
}

int64_t tr_dataset_split_balanced(const tr_dataset *d, int64_t count, tr_rng *rng, int32_t *chosen,
                                  int32_t *rest, int64_t *rest_n)
{
    int32_t *order = malloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *order);
    int64_t taken[256] = {0}, n_chosen = 0, n_rest = 0;
    if (!order) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < d->n; i++)
        order[i] = (int32_t)i;
    tr_rng_shuffle(rng, order, d->n);
    int64_t per_class = d->classes > 0 ? count / d->classes : 0;
    for (int64_t i = 0; i < d->n; i++) {
        int32_t k = order[i], c = d->y[k];
        if (c >= 0 && c < 256 && taken[c] < per_class && n_chosen < count) {
            taken[c]++;
            if (chosen)
                chosen[n_chosen] = k;
            n_chosen++;
        } else {
            if (rest)
                rest[n_rest] = k;
            n_rest++;
        }
    }
    free(order);
    if (rest_n)
        *rest_n = n_rest;
    return n_chosen;
}
