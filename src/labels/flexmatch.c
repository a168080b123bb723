/* FlexMatch dynamic thresholds (include/kdlib/flexmatch.h, docs/labels.md). */
#include "kdlib/flexmatch.h"

#include "core/error.h"
#include "core/statefile.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KDI_FLEXMATCH_FORMAT_VERSION 1u
#define KDI_FLEXMATCH_META_SIZE 32u

static const char kdi_flexmatch_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'F', 'L', 'E', 'X', 'M', '\0'};

struct kd_flexmatch {
    int64_t num_samples;
    int64_t num_classes;
    int32_t *pred;         /* N last confident predictions, -1 = none */
    int64_t *sigma;        /* C counts of pred == c */
    int64_t unused;        /* count of pred == -1 */
    int32_t *load_pred;    /* N: load reads here first, so a failed load changes nothing */
    int64_t *load_sigma;   /* C */
    float threshold;
    int32_t mapping;
    int32_t warmup;
    int32_t non_strict;
    char err[KDI_ERROR_SIZE];
};

/* kd_flexmatch_create has no handle to hold its message. */
static _Thread_local char kdi_flexmatch_create_err[KDI_ERROR_SIZE];

/* ---- life cycle ----------------------------------------------------------- */

kd_status kd_flexmatch_create(kd_flexmatch **out, int64_t num_samples, int64_t num_classes)
{
    char *msg = kdi_flexmatch_create_err;
    kdi_clear_error(msg);
    if (!out)
        return kdi_fail(msg, KD_ERR_NULL_POINTER, "kd_flexmatch_create: out is NULL");
    if (num_samples < 1 || num_samples > KD_FLEXMATCH_MAX_SAMPLES)
        return kdi_fail(msg, KD_ERR_INVALID_ARGUMENT,
                        "kd_flexmatch_create: num_samples = %lld is outside [1, 2^40]",
                        (long long)num_samples);
    if (num_classes < 1 || num_classes > KD_FLEXMATCH_MAX_CLASSES)
        return kdi_fail(msg, KD_ERR_INVALID_ARGUMENT,
                        "kd_flexmatch_create: num_classes = %lld is outside [1, 2^30]",
                        (long long)num_classes);
    kd_flexmatch *h = calloc(1, sizeof *h);
    if (h) {
        h->pred = malloc((size_t)num_samples * sizeof *h->pred);
        h->load_pred = malloc((size_t)num_samples * sizeof *h->load_pred);
        h->sigma = calloc((size_t)num_classes, sizeof *h->sigma);
        h->load_sigma = calloc((size_t)num_classes, sizeof *h->load_sigma);
    }
    if (!h || !h->pred || !h->load_pred || !h->sigma || !h->load_sigma) {
        kd_flexmatch_destroy(h);
        return kdi_fail(msg, KD_ERR_OUT_OF_MEMORY,
                        "kd_flexmatch_create: out of memory for %lld samples and %lld classes",
                        (long long)num_samples, (long long)num_classes);
    }
    h->num_samples = num_samples;
    h->num_classes = num_classes;
    for (int64_t i = 0; i < num_samples; i++)
        h->pred[i] = -1;
    h->unused = num_samples;
    h->threshold = KD_FLEXMATCH_DEFAULT_THRESHOLD;
    h->mapping = KD_FLEXMATCH_MAPPING_CONVEX;
    h->warmup = 0;
    h->non_strict = 0;
    *out = h;
    return KD_OK;
}

void kd_flexmatch_destroy(kd_flexmatch *fm)
{
    if (!fm)
        return;
    free(fm->pred);
    free(fm->load_pred);
    free(fm->sigma);
    free(fm->load_sigma);
    free(fm);
}

kd_status kd_flexmatch_reset(kd_flexmatch *fm)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    for (int64_t i = 0; i < fm->num_samples; i++)
        fm->pred[i] = -1;
    memset(fm->sigma, 0, (size_t)fm->num_classes * sizeof *fm->sigma);
    fm->unused = fm->num_samples;
    return KD_OK;
}

/* ---- parameters ----------------------------------------------------------- */

static const char *kdi_flexmatch_param_name(kd_flexmatch_param p)
{
    switch (p) {
    case KD_FLEXMATCH_PARAM_THRESHOLD: return "KD_FLEXMATCH_PARAM_THRESHOLD";
    case KD_FLEXMATCH_PARAM_MAPPING: return "KD_FLEXMATCH_PARAM_MAPPING";
    case KD_FLEXMATCH_PARAM_WARMUP: return "KD_FLEXMATCH_PARAM_WARMUP";
    case KD_FLEXMATCH_PARAM_NON_STRICT: return "KD_FLEXMATCH_PARAM_NON_STRICT";
    case KD_FLEXMATCH_PARAM_NUM_SAMPLES: return "KD_FLEXMATCH_PARAM_NUM_SAMPLES";
    case KD_FLEXMATCH_PARAM_NUM_CLASSES: return "KD_FLEXMATCH_PARAM_NUM_CLASSES";
    default: return "unknown parameter";
    }
}

kd_status kd_flexmatch_param_bounds(kd_flexmatch_param param, double *lower, double *upper)
{
    if (!lower || !upper)
        return KD_ERR_NULL_POINTER;
    switch (param) {
    case KD_FLEXMATCH_PARAM_THRESHOLD: *lower = 0.0; *upper = 1.0; return KD_OK;
    case KD_FLEXMATCH_PARAM_MAPPING:
        *lower = KD_FLEXMATCH_MAPPING_LINEAR;
        *upper = KD_FLEXMATCH_MAPPING_CONVEX;
        return KD_OK;
    case KD_FLEXMATCH_PARAM_WARMUP:
    case KD_FLEXMATCH_PARAM_NON_STRICT: *lower = 0.0; *upper = 1.0; return KD_OK;
    default: return KD_ERR_UNSUPPORTED;
    }
}

kd_status kd_flexmatch_set_float(kd_flexmatch *fm, kd_flexmatch_param param, float value)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (param != KD_FLEXMATCH_PARAM_THRESHOLD)
        return kdi_fail(fm->err, KD_ERR_UNSUPPORTED,
                        "kd_flexmatch_set_float: %s (%d) is not a settable float parameter",
                        kdi_flexmatch_param_name(param), (int)param);
    if (!(value >= 0.0f && value <= 1.0f))
        return kdi_fail(fm->err, KD_ERR_INVALID_ARGUMENT,
                        "kd_flexmatch_set_float: KD_FLEXMATCH_PARAM_THRESHOLD = %g is outside [0, 1]",
                        (double)value);
    fm->threshold = value;
    return KD_OK;
}

kd_status kd_flexmatch_set_int(kd_flexmatch *fm, kd_flexmatch_param param, int64_t value)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    int64_t hi;
    switch (param) {
    case KD_FLEXMATCH_PARAM_MAPPING: hi = KD_FLEXMATCH_MAPPING_CONVEX; break;
    case KD_FLEXMATCH_PARAM_WARMUP:
    case KD_FLEXMATCH_PARAM_NON_STRICT: hi = 1; break;
    default:
        return kdi_fail(fm->err, KD_ERR_UNSUPPORTED,
                        "kd_flexmatch_set_int: %s (%d) is not a settable int parameter",
                        kdi_flexmatch_param_name(param), (int)param);
    }
    if (value < 0 || value > hi)
        return kdi_fail(fm->err, KD_ERR_INVALID_ARGUMENT,
                        "kd_flexmatch_set_int: %s = %lld is outside [0, %lld]",
                        kdi_flexmatch_param_name(param), (long long)value, (long long)hi);
    if (param == KD_FLEXMATCH_PARAM_MAPPING)
        fm->mapping = (int32_t)value;
    else if (param == KD_FLEXMATCH_PARAM_WARMUP)
        fm->warmup = (int32_t)value;
    else
        fm->non_strict = (int32_t)value;
    return KD_OK;
}

kd_status kd_flexmatch_get_float(kd_flexmatch *fm, kd_flexmatch_param param, float *value)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!value)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_get_float: value is NULL");
    if (param != KD_FLEXMATCH_PARAM_THRESHOLD)
        return kdi_fail(fm->err, KD_ERR_UNSUPPORTED,
                        "kd_flexmatch_get_float: %s (%d) is not a float parameter",
                        kdi_flexmatch_param_name(param), (int)param);
    *value = fm->threshold;
    return KD_OK;
}

kd_status kd_flexmatch_get_int(kd_flexmatch *fm, kd_flexmatch_param param, int64_t *value)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!value)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_get_int: value is NULL");
    switch (param) {
    case KD_FLEXMATCH_PARAM_MAPPING: *value = fm->mapping; return KD_OK;
    case KD_FLEXMATCH_PARAM_WARMUP: *value = fm->warmup; return KD_OK;
    case KD_FLEXMATCH_PARAM_NON_STRICT: *value = fm->non_strict; return KD_OK;
    case KD_FLEXMATCH_PARAM_NUM_SAMPLES: *value = fm->num_samples; return KD_OK;
    case KD_FLEXMATCH_PARAM_NUM_CLASSES: *value = fm->num_classes; return KD_OK;
    default:
        return kdi_fail(fm->err, KD_ERR_UNSUPPORTED,
                        "kd_flexmatch_get_int: %s (%d) is not an int parameter",
                        kdi_flexmatch_param_name(param), (int)param);
    }
}

/* ---- update and thresholds ------------------------------------------------ */

kd_status kd_flexmatch_update(kd_flexmatch *fm, int64_t n, const int64_t *indices,
                              const float *confidences, const int32_t *predictions)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (n < 0)
        return kdi_fail(fm->err, KD_ERR_INVALID_ARGUMENT, "kd_flexmatch_update: n = %lld < 0",
                        (long long)n);
    if (n == 0)
        return KD_OK;
    if (!indices || !confidences || !predictions)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_update: %s is NULL",
                        !indices ? "indices" : !confidences ? "confidences" : "predictions");
    /* Validate the whole batch first: a rejected batch changes nothing. */
    for (int64_t k = 0; k < n; k++) {
        if (indices[k] < 0 || indices[k] >= fm->num_samples)
            return kdi_fail(fm->err, KD_ERR_INVALID_ARGUMENT,
                            "kd_flexmatch_update: indices[%lld] = %lld is outside [0, %lld)",
                            (long long)k, (long long)indices[k], (long long)fm->num_samples);
        if (predictions[k] < 0 || predictions[k] >= fm->num_classes)
            return kdi_fail(fm->err, KD_ERR_INVALID_ARGUMENT,
                            "kd_flexmatch_update: predictions[%lld] = %d is outside [0, %lld)",
                            (long long)k, (int)predictions[k], (long long)fm->num_classes);
        if (isnan(confidences[k]))
            return kdi_fail(fm->err, KD_ERR_NOT_FINITE,
                            "kd_flexmatch_update: confidences[%lld] is NaN", (long long)k);
    }
    const float tau = fm->threshold;
    for (int64_t k = 0; k < n; k++) {
        const float p = confidences[k];
        if (!(p > tau || (fm->non_strict && p == tau)))
            continue;
        int32_t *slot = &fm->pred[indices[k]];
        if (*slot >= 0)
            fm->sigma[*slot]--;
        else
            fm->unused--;
        *slot = predictions[k];
        fm->sigma[*slot]++;
    }
    return KD_OK;
}

static double kdi_flexmatch_map(int32_t mapping, double x)
{
    switch (mapping) {
    case KD_FLEXMATCH_MAPPING_LINEAR: return x;
    case KD_FLEXMATCH_MAPPING_CONCAVE: return log1p(x) / log(2.0);
    default: return x / (2.0 - x);
    }
}

/* beta_c in double; writes C values (all zero while nothing is predicted). */
static void kdi_flexmatch_beta(const kd_flexmatch *fm, double *beta, float *beta_f, float *tau_c)
{
    int64_t max = 0;
    for (int64_t c = 0; c < fm->num_classes; c++)
        max = fm->sigma[c] > max ? fm->sigma[c] : max;
    const int64_t denom = (fm->warmup && fm->unused > max) ? fm->unused : max;
    for (int64_t c = 0; c < fm->num_classes; c++) {
        double b = denom > 0 ? (double)fm->sigma[c] / (double)denom : 0.0;
        if (beta)
            beta[c] = b;
        if (beta_f)
            beta_f[c] = (float)b;
        if (tau_c)
            tau_c[c] = (float)(kdi_flexmatch_map(fm->mapping, b) * (double)fm->threshold);
    }
}

kd_status kd_flexmatch_thresholds(kd_flexmatch *fm, float *thresholds)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!thresholds)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_thresholds: thresholds is NULL");
    kdi_flexmatch_beta(fm, NULL, NULL, thresholds);
    return KD_OK;
}

kd_status kd_flexmatch_learning_effect(kd_flexmatch *fm, float *beta)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!beta)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_learning_effect: beta is NULL");
    kdi_flexmatch_beta(fm, NULL, beta, NULL);
    return KD_OK;
}

kd_status kd_flexmatch_counts(kd_flexmatch *fm, int64_t *sigma, int64_t *unused)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (sigma)
        memcpy(sigma, fm->sigma, (size_t)fm->num_classes * sizeof *sigma);
    if (unused)
        *unused = fm->unused;
    return KD_OK;
}

kd_status kd_flexmatch_predictions(kd_flexmatch *fm, int32_t *predictions)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!predictions)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_predictions: predictions is NULL");
    memcpy(predictions, fm->pred, (size_t)fm->num_samples * sizeof *predictions);
    return KD_OK;
}

const char *kd_flexmatch_last_error(const kd_flexmatch *fm)
{
    return fm ? fm->err : kdi_flexmatch_create_err;
}

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section of format version 1 (little-endian):
 *    0  8  N (num_samples)            u64
 *    8  8  C (num_classes)            u64
 *   16  4  threshold tau              f32
 *   20  4  mapping                    u32
 *   24  4  warm-up (0/1)              u32
 *   28  4  non-strict (0/1)           u32
 * Data section: the N predictions, i32 each (-1 = none).
 * The counts are not stored: load recomputes them from the predictions.
 */

kd_status kd_flexmatch_save(kd_flexmatch *fm, const char *path)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!path)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_save: path is NULL");
    unsigned char meta[KDI_FLEXMATCH_META_SIZE];
    kdi_le_put_u64(meta + 0, (uint64_t)fm->num_samples);
    kdi_le_put_u64(meta + 8, (uint64_t)fm->num_classes);
    kdi_le_put_f32(meta + 16, fm->threshold);
    kdi_le_put_u32(meta + 20, (uint32_t)fm->mapping);
    kdi_le_put_u32(meta + 24, (uint32_t)fm->warmup);
    kdi_le_put_u32(meta + 28, (uint32_t)fm->non_strict);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk dchunk = {fm->pred, (uint64_t)fm->num_samples * sizeof(int32_t), 4};
    char msg[KDI_ERROR_SIZE];
    kd_status st = kdi_statefile_write(path, kdi_flexmatch_magic, KDI_FLEXMATCH_FORMAT_VERSION,
                                       &mchunk, 1, &dchunk, 1, msg);
    if (st != KD_OK)
        return kdi_fail(fm->err, st, "kd_flexmatch_save: %s", msg);
    return KD_OK;
}

/* Structural problems are KD_ERR_CORRUPT (the checksums passed, so the writer
 * was not kdlib), a valid state of another shape is KD_ERR_MISMATCH. */
static kd_status kdi_flexmatch_check_meta(const kd_flexmatch *h, const kdi_statefile_reader *r,
                                          const char *path, char *msg)
{
    if (r->meta_size != KDI_FLEXMATCH_META_SIZE)
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': meta section of %llu bytes, expected %u", path,
                        (unsigned long long)r->meta_size, KDI_FLEXMATCH_META_SIZE);
    const unsigned char *m = r->meta;
    uint64_t n = kdi_le_get_u64(m), c = kdi_le_get_u64(m + 8);
    float tau = kdi_le_get_f32(m + 16);
    uint32_t mapping = kdi_le_get_u32(m + 20), warmup = kdi_le_get_u32(m + 24),
             non_strict = kdi_le_get_u32(m + 28);
    if (n < 1 || n > (uint64_t)KD_FLEXMATCH_MAX_SAMPLES || c < 1
        || c > (uint64_t)KD_FLEXMATCH_MAX_CLASSES || !(tau >= 0.0f && tau <= 1.0f)
        || mapping > KD_FLEXMATCH_MAPPING_CONVEX || warmup > 1 || non_strict > 1)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (N %llu, C %llu, threshold %g, mapping %u, "
                        "warm-up %u, non-strict %u)",
                        path, (unsigned long long)n, (unsigned long long)c, (double)tau,
                        (unsigned)mapping, (unsigned)warmup, (unsigned)non_strict);
    if (r->data_size != n * sizeof(int32_t))
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': data section of %llu bytes for %llu samples",
                        path, (unsigned long long)r->data_size, (unsigned long long)n);
    if (n != (uint64_t)h->num_samples || c != (uint64_t)h->num_classes)
        return kdi_fail(msg, KD_ERR_MISMATCH,
                        "'%s' holds %llu samples x %llu classes, the handle has %lld x %lld", path,
                        (unsigned long long)n, (unsigned long long)c, (long long)h->num_samples,
                        (long long)h->num_classes);
    return KD_OK;
}

kd_status kd_flexmatch_load(kd_flexmatch *fm, const char *path)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(fm->err);
    if (!path)
        return kdi_fail(fm->err, KD_ERR_NULL_POINTER, "kd_flexmatch_load: path is NULL");
    char msg[KDI_ERROR_SIZE];
    kdi_statefile_reader r;
    kd_status st = kdi_statefile_open(&r, path, kdi_flexmatch_magic, KDI_FLEXMATCH_FORMAT_VERSION,
                                      msg);
    if (st == KD_OK)
        st = kdi_flexmatch_check_meta(fm, &r, path, msg);
    /* Read into the handle's load buffers: the live state changes only once
     * every byte and every prediction is verified. */
    if (st == KD_OK)
        st = kdi_statefile_read_data(&r, fm->load_pred,
                                     (uint64_t)fm->num_samples * sizeof(int32_t), 4, msg);
    if (st == KD_OK)
        st = kdi_statefile_finish(&r, msg);
    int64_t unused = 0;
    if (st == KD_OK) {
        memset(fm->load_sigma, 0, (size_t)fm->num_classes * sizeof *fm->load_sigma);
        for (int64_t i = 0; i < fm->num_samples; i++) {
            int32_t p = fm->load_pred[i];
            if (p < -1 || p >= fm->num_classes) {
                st = kdi_fail(msg, KD_ERR_CORRUPT, "'%s': prediction of sample %lld is %d", path,
                              (long long)i, (int)p);
                break;
            }
            if (p < 0)
                unused++;
            else
                fm->load_sigma[p]++;
        }
    }
    if (st == KD_OK) {
        int32_t *tp = fm->pred;
        fm->pred = fm->load_pred;
        fm->load_pred = tp;
        int64_t *ts = fm->sigma;
        fm->sigma = fm->load_sigma;
        fm->load_sigma = ts;
        fm->unused = unused;
        fm->threshold = kdi_le_get_f32(r.meta + 16);
        fm->mapping = (int32_t)kdi_le_get_u32(r.meta + 20);
        fm->warmup = (int32_t)kdi_le_get_u32(r.meta + 24);
        fm->non_strict = (int32_t)kdi_le_get_u32(r.meta + 28);
    }
    kdi_statefile_close(&r);
    if (st != KD_OK)
        return kdi_fail(fm->err, st, "kd_flexmatch_load: %s", msg);
    return KD_OK;
}
