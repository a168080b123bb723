/* FlexMatch, an algorithm of the threshold handle family (kdlib/threshold.h,
 * formulas in kdlib/flexmatch.h and docs/labels.md). */
#include "labels/threshold_algo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Version 1 stored tau as f32 at meta offset 16 (32-byte meta); version 2
 * appends it as f64 at offset 32 (the f32 copy stays for older readers of
 * the layout).  Both are read. */
#define KDI_FLEXMATCH_FORMAT_VERSION 2u
#define KDI_FLEXMATCH_META_V1 32u
#define KDI_FLEXMATCH_META_V2 40u

typedef struct {
    int32_t *pred;       /* N last confident predictions, -1 = none */
    int64_t *sigma;      /* C counts of pred == c */
    int64_t unused;      /* count of pred == -1 */
    int32_t *load_pred;  /* N: load reads here first, so a failed load changes nothing */
    int64_t *load_sigma; /* C */
    double threshold;
    int32_t mapping;
    int32_t warmup;
    int32_t non_strict;
} kdi_flexmatch;

static kdi_flexmatch *kdi_fm(const kd_threshold *th) { return th->state; }

static void kdi_flexmatch_free(void *state)
{
    kdi_flexmatch *s = state;
    if (!s)
        return;
    free(s->pred);
    free(s->load_pred);
    free(s->sigma);
    free(s->load_sigma);
    free(s);
}

static void kdi_flexmatch_reset(kd_threshold *th)
{
    kdi_flexmatch *s = kdi_fm(th);
    for (int64_t i = 0; i < th->num_samples; i++)
        s->pred[i] = -1;
    memset(s->sigma, 0, (size_t)th->num_classes * sizeof *s->sigma);
    s->unused = th->num_samples;
}

static int kdi_flexmatch_create(kd_threshold *th)
{
    const size_t n = (size_t)th->num_samples, c = (size_t)th->num_classes;
    kdi_flexmatch *s = calloc(1, sizeof *s);
    if (s) {
        s->pred = malloc(n * sizeof *s->pred);
        s->load_pred = malloc(n * sizeof *s->load_pred);
        s->sigma = calloc(c, sizeof *s->sigma);
        s->load_sigma = calloc(c, sizeof *s->load_sigma);
    }
    if (!s || !s->pred || !s->load_pred || !s->sigma || !s->load_sigma) {
        kdi_flexmatch_free(s);
        return 0;
    }
    th->state = s;
    kdi_flexmatch_reset(th);
    s->threshold = 0.95; /* tllib's default */
    s->mapping = KD_THRESHOLD_MAPPING_CONVEX;
    return 1;
}

/* ---- parameters ----------------------------------------------------------- */

static const kdi_param_spec kdi_flexmatch_specs[] = {
    {KD_THRESHOLD_PARAM_THRESHOLD, "THRESHOLD", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_MAPPING, "MAPPING", KDI_PT_INT, 1, KD_THRESHOLD_MAPPING_LINEAR,
     KD_THRESHOLD_MAPPING_CONVEX},
    {KD_THRESHOLD_PARAM_WARMUP, "WARMUP", KDI_PT_INT, 1, 0, 1},
    {KD_THRESHOLD_PARAM_NON_STRICT, "NON_STRICT", KDI_PT_INT, 1, 0, 1},
};

static void kdi_flexmatch_set_real(kd_threshold *th, int32_t key, double value)
{
    (void)key; /* THRESHOLD is the only real parameter */
    kdi_fm(th)->threshold = value;
}

static int32_t *kdi_flexmatch_int_slot(const kd_threshold *th, int32_t key)
{
    kdi_flexmatch *s = kdi_fm(th);
    return key == KD_THRESHOLD_PARAM_MAPPING  ? &s->mapping
           : key == KD_THRESHOLD_PARAM_WARMUP ? &s->warmup
                                              : &s->non_strict;
}

static void kdi_flexmatch_set_int(kd_threshold *th, int32_t key, int64_t value)
{
    *kdi_flexmatch_int_slot(th, key) = (int32_t)value;
}

static double kdi_flexmatch_get_real(const kd_threshold *th, int32_t key)
{
    (void)key;
    return kdi_fm(th)->threshold;
}

static int64_t kdi_flexmatch_get_int(const kd_threshold *th, int32_t key)
{
    return *kdi_flexmatch_int_slot(th, key);
}

/* ---- update, thresholds, weights ------------------------------------------ */

static void kdi_flexmatch_update(kd_threshold *th, int64_t n, const int64_t *indices,
                                 const float *confidences, const int32_t *predictions)
{
    kdi_flexmatch *s = kdi_fm(th);
    const double tau = s->threshold;
    for (int64_t k = 0; k < n; k++) {
        const double p = confidences[k];
        if (!(p > tau || (s->non_strict && p == tau)))
            continue;
        int32_t *slot = &s->pred[indices[k]];
        if (*slot >= 0)
            s->sigma[*slot]--;
        else
            s->unused--;
        *slot = predictions[k];
        s->sigma[*slot]++;
    }
}

static double kdi_flexmatch_map(int32_t mapping, double x)
{
    switch (mapping) {
    case KD_THRESHOLD_MAPPING_LINEAR:
        return x;
    case KD_THRESHOLD_MAPPING_CONCAVE:
        return log1p(x) / log(2.0);
    default:
        return x / (2.0 - x);
    }
}

/* beta_c = sigma_c / max(max_k sigma_k [, unused with warm-up]) in double,
 * 0 while nothing is predicted; out receives beta_c or tau_c = M(beta_c) tau,
 * rounded once to float. */
static void kdi_flexmatch_beta(const kd_threshold *th, int thresholds, float *out)
{
    const kdi_flexmatch *s = kdi_fm(th);
    int64_t max = 0;
    for (int64_t c = 0; c < th->num_classes; c++)
        max = s->sigma[c] > max ? s->sigma[c] : max;
    const int64_t denom = (s->warmup && s->unused > max) ? s->unused : max;
    for (int64_t c = 0; c < th->num_classes; c++) {
        double b = denom > 0 ? (double)s->sigma[c] / (double)denom : 0.0;
        out[c] = (float)(thresholds ? kdi_flexmatch_map(s->mapping, b) * s->threshold : b);
    }
}

/* O(n + C) without allocation: tau_c of a predicted class computed on
 * demand from the counts. */
static void kdi_flexmatch_weights(const kd_threshold *th, int64_t n, const float *confidences,
                                  const int32_t *predictions, float *weights)
{
    const kdi_flexmatch *s = kdi_fm(th);
    int64_t max = 0;
    for (int64_t c = 0; c < th->num_classes; c++)
        max = s->sigma[c] > max ? s->sigma[c] : max;
    const int64_t denom = (s->warmup && s->unused > max) ? s->unused : max;
    for (int64_t k = 0; k < n; k++) {
        const int32_t c = predictions[k];
        double b = denom > 0 ? (double)s->sigma[c] / (double)denom : 0.0;
        float tau_c = (float)(kdi_flexmatch_map(s->mapping, b) * s->threshold);
        weights[k] = confidences[k] >= tau_c ? 1.0f : 0.0f;
    }
}

/* ---- state arrays --------------------------------------------------------- */

static int64_t kdi_flexmatch_state_length(const kd_threshold *th, kd_threshold_state what,
                                          int is_int)
{
    switch (what) {
    case KD_THRESHOLD_STATE_CLASS_THRESHOLDS:
    case KD_THRESHOLD_STATE_LEARNING_EFFECT:
        return is_int ? 0 : th->num_classes;
    case KD_THRESHOLD_STATE_CLASS_COUNTS:
        return is_int ? th->num_classes : 0;
    case KD_THRESHOLD_STATE_UNUSED:
        return is_int ? 1 : 0;
    case KD_THRESHOLD_STATE_PREDICTIONS:
        return is_int ? th->num_samples : 0;
    default:
        return 0;
    }
}

static void kdi_flexmatch_copy_floats(const kd_threshold *th, kd_threshold_state what, float *out)
{
    kdi_flexmatch_beta(th, what == KD_THRESHOLD_STATE_CLASS_THRESHOLDS, out);
}

static void kdi_flexmatch_copy_ints(const kd_threshold *th, kd_threshold_state what, int64_t *out)
{
    const kdi_flexmatch *s = kdi_fm(th);
    if (what == KD_THRESHOLD_STATE_UNUSED)
        *out = s->unused;
    else if (what == KD_THRESHOLD_STATE_CLASS_COUNTS)
        memcpy(out, s->sigma, (size_t)th->num_classes * sizeof *out);
    else
        for (int64_t i = 0; i < th->num_samples; i++)
            out[i] = s->pred[i];
}

const int32_t *kdi_flexmatch_predictions_of(const kd_threshold *th) { return kdi_fm(th)->pred; }

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian):
 *    0  8  N (num_samples)            u64
 *    8  8  C (num_classes)            u64
 *   16  4  threshold tau              f32 (version 1: the value; version 2: a copy)
 *   20  4  mapping                    u32
 *   24  4  warm-up (0/1)              u32
 *   28  4  non-strict (0/1)           u32
 *   32  8  threshold tau              f64 (version 2 only)
 * Data section: the N predictions, i32 each (-1 = none).
 * The counts are not stored: load recomputes them from the predictions.
 */

static const char kdi_flexmatch_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'F', 'L',
                                                                   'E', 'X', 'M', '\0'};

static double kdi_flexmatch_meta_tau(const kdi_statefile_reader *r)
{
    return r->version >= 2 ? kdi_le_get_f64(r->meta + 32) : (double)kdi_le_get_f32(r->meta + 16);
}

static kd_status kdi_flexmatch_save(const kd_threshold *th, const char *path, char *err)
{
    const kdi_flexmatch *s = kdi_fm(th);
    unsigned char meta[KDI_FLEXMATCH_META_V2];
    kdi_le_put_u64(meta + 0, (uint64_t)th->num_samples);
    kdi_le_put_u64(meta + 8, (uint64_t)th->num_classes);
    kdi_le_put_f32(meta + 16, (float)s->threshold);
    kdi_le_put_u32(meta + 20, (uint32_t)s->mapping);
    kdi_le_put_u32(meta + 24, (uint32_t)s->warmup);
    kdi_le_put_u32(meta + 28, (uint32_t)s->non_strict);
    kdi_le_put_f64(meta + 32, s->threshold);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk dchunk = {s->pred, (uint64_t)th->num_samples * sizeof(int32_t), 4};
    return kdi_statefile_write(path, kdi_flexmatch_magic, KDI_FLEXMATCH_FORMAT_VERSION, &mchunk, 1,
                               &dchunk, 1, err);
}

/* Structural problems are KD_ERR_CORRUPT (the checksums passed, so the writer
 * was not kdlib), a valid state of another shape is KD_ERR_MISMATCH. */
static kd_status kdi_flexmatch_check_meta(const void *handle, const kdi_statefile_reader *r,
                                          char *msg)
{
    const kd_threshold *h = handle;
    const char *path = r->path;
    const uint64_t want = r->version >= 2 ? KDI_FLEXMATCH_META_V2 : KDI_FLEXMATCH_META_V1;
    if (r->meta_size != want)
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': meta section of %llu bytes, expected %llu",
                        path, (unsigned long long)r->meta_size, (unsigned long long)want);
    const unsigned char *m = r->meta;
    uint64_t n = kdi_le_get_u64(m), c = kdi_le_get_u64(m + 8);
    double tau = kdi_flexmatch_meta_tau(r);
    uint32_t mapping = kdi_le_get_u32(m + 20), warmup = kdi_le_get_u32(m + 24),
             non_strict = kdi_le_get_u32(m + 28);
    if (n < 1 || n > (uint64_t)KD_THRESHOLD_MAX_SAMPLES || c < 1 ||
        c > (uint64_t)KD_THRESHOLD_MAX_CLASSES || !(tau >= 0.0 && tau <= 1.0) ||
        mapping > KD_THRESHOLD_MAPPING_CONVEX || warmup > 1 || non_strict > 1)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (N %llu, C %llu, threshold %g, mapping %u, "
                        "warm-up %u, non-strict %u)",
                        path, (unsigned long long)n, (unsigned long long)c, tau, (unsigned)mapping,
                        (unsigned)warmup, (unsigned)non_strict);
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

static const kdi_statefile_kind kdi_flexmatch_file = {
    kdi_flexmatch_magic, KDI_FLEXMATCH_FORMAT_VERSION, kdi_flexmatch_check_meta};

static kd_status kdi_flexmatch_load(kd_threshold *th, const char *path, char *msg)
{
    kdi_flexmatch *s = kdi_fm(th);
    kdi_statefile_reader r;
    /* Into the load buffers: the live state changes only once every byte
     * and every prediction is verified. */
    kd_status st =
        kdi_statefile_load(&r, &kdi_flexmatch_file, th, path, KDI_FLEXMATCH_META_V2, s->load_pred,
                           (uint64_t)th->num_samples * sizeof(int32_t), 4, msg);
    if (st != KD_OK)
        return st;
    int64_t unused = 0;
    memset(s->load_sigma, 0, (size_t)th->num_classes * sizeof *s->load_sigma);
    for (int64_t i = 0; i < th->num_samples && st == KD_OK; i++) {
        int32_t p = s->load_pred[i];
        if (p < -1 || p >= th->num_classes)
            st = kdi_fail(msg, KD_ERR_CORRUPT, "'%s': prediction of sample %lld is %d", path,
                          (long long)i, (int)p);
        else if (p < 0)
            unused++;
        else
            s->load_sigma[p]++;
    }
    if (st == KD_OK) {
        int32_t *tp = s->pred;
        s->pred = s->load_pred;
        s->load_pred = tp;
        int64_t *ts = s->sigma;
        s->sigma = s->load_sigma;
        s->load_sigma = ts;
        s->unused = unused;
        s->threshold = kdi_flexmatch_meta_tau(&r);
        s->mapping = (int32_t)kdi_le_get_u32(r.meta + 20);
        s->warmup = (int32_t)kdi_le_get_u32(r.meta + 24);
        s->non_strict = (int32_t)kdi_le_get_u32(r.meta + 28);
    }
    kdi_statefile_close(&r);
    return st;
}

const kdi_threshold_algo kdi_threshold_flexmatch = {
    .id = KD_THRESHOLD_FLEXMATCH,
    .name = "flexmatch",
    .specs = kdi_flexmatch_specs,
    .num_specs = sizeof kdi_flexmatch_specs / sizeof kdi_flexmatch_specs[0],
    .create = kdi_flexmatch_create,
    .free_state = kdi_flexmatch_free,
    .reset = kdi_flexmatch_reset,
    .set_real = kdi_flexmatch_set_real,
    .set_int = kdi_flexmatch_set_int,
    .get_real = kdi_flexmatch_get_real,
    .get_int = kdi_flexmatch_get_int,
    .update = kdi_flexmatch_update,
    .weights = kdi_flexmatch_weights,
    .state_length = kdi_flexmatch_state_length,
    .copy_floats = kdi_flexmatch_copy_floats,
    .copy_ints = kdi_flexmatch_copy_ints,
    .save = kdi_flexmatch_save,
    .load = kdi_flexmatch_load,
};
