/* FreeMatch, an algorithm of the threshold handle family (kdlib/threshold.h;
 * formulas and deviations from USB in docs/labels.md, "FreeMatch").
 *
 * Self-adaptive thresholding over batches of probability rows q_k:
 *   tau_t = m tau + (1 - m) mean_k max_j q_kj          (then min(tau_t, CLIP))
 *           (with USE_QUANTILE: the QUANTILE quantile of max_j q_kj, not the mean)
 *   p_t   = m p   + (1 - m) mean_k q_k                 (vector of C)
 *   h_t   = m h   + (1 - m) histogram(argmax_j q_kj) / n
 *   mask_k = [max_j q_kj >= tau_t p_t(c_k) / max_c p_t(c)],  c_k = argmax_j q_kj
 * all three starting at 1/C.  The state is kept in double. */
#include "labels/threshold_algo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KDI_FREEMATCH_FORMAT_VERSION 1u
#define KDI_FREEMATCH_META 56u

typedef struct {
    double tau;    /* tau_t */
    double *p;     /* C: p_t */
    double *hist;  /* C: label_hist */
    double *sum;   /* C: scratch of update (batch sums of the rows) */
    double *count; /* C: scratch of update (batch histogram) */
    double *load;  /* 1 + 2C: load reads here first, so a failed load changes nothing */
    int64_t updates;
    double momentum;
    double clip;
    double quantile;
    int32_t use_quantile;
} kdi_freematch;

static kdi_freematch *kdi_fr(const kd_threshold *th) { return th->state; }

static void kdi_freematch_free(void *state)
{
    kdi_freematch *s = state;
    if (!s)
        return;
    free(s->p); /* one block: p, hist, sum, count, load */
    free(s);
}

static void kdi_freematch_reset(kd_threshold *th)
{
    kdi_freematch *s = kdi_fr(th);
    const double u = 1.0 / (double)th->num_classes;
    s->tau = u;
    for (int64_t c = 0; c < th->num_classes; c++)
        s->p[c] = s->hist[c] = u;
    s->updates = 0;
}

static int kdi_freematch_create(kd_threshold *th)
{
    const size_t c = (size_t)th->num_classes;
    kdi_freematch *s = calloc(1, sizeof *s);
    double *block = s ? malloc((6 * c + 1) * sizeof *block) : NULL;
    if (!block) {
        free(s);
        return 0;
    }
    s->p = block;
    s->hist = block + c;
    s->sum = block + 2 * c;
    s->count = block + 3 * c;
    s->load = block + 4 * c;
    s->momentum = 0.999; /* USB's ema_p */
    s->clip = 1.0;
    s->quantile = 0.8; /* USB's torch.quantile(max_probs, 0.8) */
    th->state = s;
    kdi_freematch_reset(th);
    return 1;
}

/* ---- parameters ----------------------------------------------------------- */

static const kdi_param_spec kdi_freematch_specs[] = {
    {KD_THRESHOLD_PARAM_MOMENTUM, "MOMENTUM", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_CLIP, "CLIP", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_USE_QUANTILE, "USE_QUANTILE", KDI_PT_INT, 1, 0, 1},
    {KD_THRESHOLD_PARAM_QUANTILE, "QUANTILE", KDI_PT_REAL, 1, 0.0, 1.0},
};

static double *kdi_freematch_real_slot(const kd_threshold *th, int32_t key)
{
    kdi_freematch *s = kdi_fr(th);
    return key == KD_THRESHOLD_PARAM_MOMENTUM ? &s->momentum
           : key == KD_THRESHOLD_PARAM_CLIP   ? &s->clip
                                              : &s->quantile;
}

static void kdi_freematch_set_real(kd_threshold *th, int32_t key, double value)
{
    *kdi_freematch_real_slot(th, key) = value;
}

static double kdi_freematch_get_real(const kd_threshold *th, int32_t key)
{
    return *kdi_freematch_real_slot(th, key);
}

/* USE_QUANTILE is the only int parameter. */
static void kdi_freematch_set_int(kd_threshold *th, int32_t key, int64_t value)
{
    (void)key;
    kdi_fr(th)->use_quantile = (int32_t)value;
}

static int64_t kdi_freematch_get_int(const kd_threshold *th, int32_t key)
{
    (void)key;
    return kdi_fr(th)->use_quantile;
}

/* ---- update and weights --------------------------------------------------- */

/* Max of row k.  Confidences are in [0, 1], so their IEEE-754 bit patterns
 * (as uint32) are ordered as the values: order statistics by bisection on
 * the bit patterns, without sorting or scratch memory. */
static float kdi_freematch_row_max(const float *probs, int64_t ld, int64_t c, int64_t k)
{
    int32_t a;
    return kdi_threshold_row_max(probs + k * ld, c, &a);
}

static uint32_t kdi_freematch_bits(float x)
{
    if (x == 0.0f)
        return 0; /* -0.0f too */
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* The rank-th smallest (0-based) of the n row maxima. */
static float kdi_freematch_order_stat(const float *probs, int64_t n, int64_t ld, int64_t c,
                                      int64_t rank)
{
    uint32_t lo = 0, hi = kdi_freematch_bits(1.0f); /* the answer's bits are in [lo, hi] */
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        int64_t at_most = 0;
        for (int64_t k = 0; k < n; k++)
            at_most += kdi_freematch_bits(kdi_freematch_row_max(probs, ld, c, k)) <= mid;
        if (at_most > rank)
            hi = mid;
        else
            lo = mid + 1;
    }
    float v;
    memcpy(&v, &lo, sizeof v);
    return v;
}

/* torch.quantile(x, q) (linear): with pos = q (n - 1), i = floor(pos),
 * x_(i) + (pos - i) (x_(i+1) - x_(i)) on the sorted maxima. */
static double kdi_freematch_quantile(const float *probs, int64_t n, int64_t ld, int64_t c, double q)
{
    const double pos = q * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i > n - 1)
        i = n - 1;
    const double frac = pos - (double)i;
    const double lo = kdi_freematch_order_stat(probs, n, ld, c, i);
    if (frac == 0.0 || i == n - 1)
        return lo;
    const double hi = kdi_freematch_order_stat(probs, n, ld, c, i + 1);
    return lo + frac * (hi - lo);
}

/* The batch's sum of row maxima, column sums and argmax histogram. */
static double kdi_freematch_sums(int64_t n, int64_t C, const float *probs, int64_t ld, double *sum,
                                 double *count)
{
    memset(sum, 0, (size_t)C * sizeof *sum);
    memset(count, 0, (size_t)C * sizeof *count);
    double max_sum = 0.0;
    for (int64_t k = 0; k < n; k++) {
        const float *row = probs + k * ld;
        int32_t a;
        max_sum += kdi_threshold_row_max(row, C, &a);
        count[a] += 1.0;
        for (int64_t j = 0; j < C; j++)
            sum[j] += row[j];
    }
    return max_sum;
}

/* The EMA step of a batch of dn > 0 rows with statistic stat (mean or
 * quantile of the maxima), column sums and histogram. */
static void kdi_freematch_apply(kd_threshold *th, double dn, double stat, const double *sum,
                                const double *count)
{
    kdi_freematch *s = kdi_fr(th);
    const double m = s->momentum;
    s->tau = kdi_threshold_ema(s->tau, m, stat);
    if (s->tau > s->clip)
        s->tau = s->clip;
    for (int64_t j = 0; j < th->num_classes; j++) {
        s->p[j] = kdi_threshold_ema(s->p[j], m, sum[j] / dn);
        s->hist[j] = kdi_threshold_ema(s->hist[j], m, count[j] / dn);
    }
    s->updates++;
}

static void kdi_freematch_update_probs(kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                       const int64_t *indices)
{
    (void)indices;
    kdi_freematch *s = kdi_fr(th);
    const int64_t C = th->num_classes;
    const double max_sum = kdi_freematch_sums(n, C, probs, ld, s->sum, s->count), dn = (double)n;
    const double stat =
        s->use_quantile ? kdi_freematch_quantile(probs, n, ld, C, s->quantile) : max_sum / dn;
    kdi_freematch_apply(th, dn, stat, s->sum, s->count);
}

/* ---- split statistics: n, sum of maxima, column sums (C), histogram (C) --- */

static int64_t kdi_freematch_stats_size(const kd_threshold *th, const char **why)
{
    *why = "with USE_QUANTILE = 1 takes a quantile of the batch's maxima";
    return kdi_fr(th)->use_quantile ? 0 : 2 + 2 * th->num_classes;
}

static void kdi_freematch_local_stats(const kd_threshold *th, int64_t n, const float *probs,
                                      int64_t ld, double *stats)
{
    const int64_t C = th->num_classes;
    stats[0] = (double)n;
    stats[1] = kdi_freematch_sums(n, C, probs, ld, stats + 2, stats + 2 + C);
}

static kd_status kdi_freematch_check_stats(const kd_threshold *th, const double *stats, char *err,
                                           const char *fn)
{
    const int64_t C = th->num_classes;
    kd_status st = kdi_threshold_stats_count(err, fn, stats, 0);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 1, 1 + C, stats[0], NULL);
    if (st == KD_OK)
        st = kdi_threshold_stats_hist(err, fn, stats, 2 + C, C, stats[0]);
    return st;
}

static void kdi_freematch_update_stats(kd_threshold *th, const double *stats)
{
    const int64_t C = th->num_classes;
    if (stats[0] > 0.0)
        kdi_freematch_apply(th, stats[0], stats[1] / stats[0], stats + 2, stats + 2 + C);
}

/* max_c p_t(c), or 1 when p_t is all zero (rows of zeros only). */
static double kdi_freematch_pmax(const kd_threshold *th)
{
    const kdi_freematch *s = kdi_fr(th);
    double mx = 0.0;
    for (int64_t c = 0; c < th->num_classes; c++)
        mx = s->p[c] > mx ? s->p[c] : mx;
    return mx > 0.0 ? mx : 1.0;
}

static void kdi_freematch_weights(const kd_threshold *th, int64_t n, const float *confidences,
                                  const int32_t *predictions, float *weights)
{
    const kdi_freematch *s = kdi_fr(th);
    const double scale = s->tau / kdi_freematch_pmax(th);
    for (int64_t k = 0; k < n; k++)
        weights[k] = (double)confidences[k] >= scale * s->p[predictions[k]] ? 1.0f : 0.0f;
}

/* ---- state arrays --------------------------------------------------------- */

static int64_t kdi_freematch_state_length(const kd_threshold *th, kd_threshold_state what,
                                          int is_int)
{
    switch (what) {
    case KD_THRESHOLD_STATE_CLASS_THRESHOLDS:
    case KD_THRESHOLD_STATE_CLASS_PROBS:
    case KD_THRESHOLD_STATE_LABEL_HISTOGRAM:
        return is_int ? 0 : th->num_classes;
    case KD_THRESHOLD_STATE_GLOBAL_THRESHOLD:
        return is_int ? 0 : 1;
    case KD_THRESHOLD_STATE_UPDATES:
        return is_int ? 1 : 0;
    default:
        return 0;
    }
}

static void kdi_freematch_copy_floats(const kd_threshold *th, kd_threshold_state what, float *out)
{
    const kdi_freematch *s = kdi_fr(th);
    const int64_t C = th->num_classes;
    if (what == KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) {
        out[0] = (float)s->tau;
    } else if (what == KD_THRESHOLD_STATE_CLASS_THRESHOLDS) {
        const double scale = s->tau / kdi_freematch_pmax(th);
        for (int64_t c = 0; c < C; c++)
            out[c] = (float)(scale * s->p[c]);
    } else {
        const double *src = what == KD_THRESHOLD_STATE_CLASS_PROBS ? s->p : s->hist;
        for (int64_t c = 0; c < C; c++)
            out[c] = (float)src[c];
    }
}

static void kdi_freematch_copy_ints(const kd_threshold *th, kd_threshold_state what, int64_t *out)
{
    (void)what; /* UPDATES is the only int array */
    out[0] = kdi_fr(th)->updates;
}

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian, 56 bytes):
 *    0  8  N (num_samples)      u64
 *    8  8  C (num_classes)      u64
 *   16  8  momentum             f64
 *   24  8  clip                 f64
 *   32  8  number of updates    u64
 *   40  8  quantile             f64
 *   48  4  use_quantile (0/1)   u32
 *   52  4  reserved, 0          u32
 * Data section: tau_t, then p_t (C), then label_hist (C), f64 each.
 */

static const char kdi_freematch_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'F', 'R',
                                                                   'E', 'E', 'M', '\0'};

static kd_status kdi_freematch_save(const kd_threshold *th, const char *path, char *err)
{
    const kdi_freematch *s = kdi_fr(th);
    const uint64_t C = (uint64_t)th->num_classes;
    unsigned char meta[KDI_FREEMATCH_META];
    kdi_le_put_u64(meta + 0, (uint64_t)th->num_samples);
    kdi_le_put_u64(meta + 8, C);
    kdi_le_put_f64(meta + 16, s->momentum);
    kdi_le_put_f64(meta + 24, s->clip);
    kdi_le_put_u64(meta + 32, (uint64_t)s->updates);
    kdi_le_put_f64(meta + 40, s->quantile);
    kdi_le_put_u32(meta + 48, (uint32_t)s->use_quantile);
    kdi_le_put_u32(meta + 52, 0);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk data[3] = {{&s->tau, sizeof s->tau, 8},
                                   {s->p, C * sizeof(double), 8},
                                   {s->hist, C * sizeof(double), 8}};
    return kdi_statefile_write(path, kdi_freematch_magic, KDI_FREEMATCH_FORMAT_VERSION, &mchunk, 1,
                               data, 3, err);
}

static kd_status kdi_freematch_check_meta(const void *handle, const kdi_statefile_reader *r,
                                          char *msg)
{
    uint64_t n, c;
    kd_status st = kdi_threshold_meta_shape(r, KDI_FREEMATCH_META, &n, &c, msg);
    if (st != KD_OK)
        return st;
    const double momentum = kdi_le_get_f64(r->meta + 16), clip = kdi_le_get_f64(r->meta + 24);
    const uint64_t updates = kdi_le_get_u64(r->meta + 32);
    if (!(momentum >= 0.0 && momentum <= 1.0) || !(clip >= 0.0 && clip <= 1.0) ||
        updates > (uint64_t)INT64_MAX)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (momentum %g, clip %g, updates %llu)", r->path,
                        momentum, clip, (unsigned long long)updates);
    return kdi_threshold_data_shape(handle, r, n, c, 1, 2, msg);
}

static const kdi_statefile_kind kdi_freematch_file = {
    kdi_freematch_magic, KDI_FREEMATCH_FORMAT_VERSION, kdi_freematch_check_meta};

static kd_status kdi_freematch_load(kd_threshold *th, const char *path, char *msg)
{
    kdi_freematch *s = kdi_fr(th);
    const int64_t C = th->num_classes;
    kdi_statefile_reader r;
    kd_status st = kdi_threshold_load_f64(th, &kdi_freematch_file, path, KDI_FREEMATCH_META,
                                          s->load, 1 + 2 * C, kdi_threshold_value_in_unit, &r, msg);
    if (st != KD_OK)
        return st;
    s->tau = s->load[0];
    memcpy(s->p, s->load + 1, (size_t)C * sizeof(double));
    memcpy(s->hist, s->load + 1 + C, (size_t)C * sizeof(double));
    s->momentum = kdi_le_get_f64(r.meta + 16);
    s->clip = kdi_le_get_f64(r.meta + 24);
    s->updates = (int64_t)kdi_le_get_u64(r.meta + 32);
    s->quantile = kdi_le_get_f64(r.meta + 40);
    s->use_quantile = (int32_t)kdi_le_get_u32(r.meta + 48);
    kdi_statefile_close(&r);
    return KD_OK;
}

const kdi_threshold_algo kdi_threshold_freematch = {
    .id = KD_THRESHOLD_FREEMATCH,
    .name = "freematch",
    .specs = kdi_freematch_specs,
    .num_specs = sizeof kdi_freematch_specs / sizeof kdi_freematch_specs[0],
    .create = kdi_freematch_create,
    .free_state = kdi_freematch_free,
    .reset = kdi_freematch_reset,
    .set_real = kdi_freematch_set_real,
    .set_int = kdi_freematch_set_int,
    .get_real = kdi_freematch_get_real,
    .get_int = kdi_freematch_get_int,
    .update = NULL, /* p_t needs whole rows */
    .weights = kdi_freematch_weights,
    .update_probs = kdi_freematch_update_probs,
    .weights_probs = NULL, /* max / argmax of each row, then weights */
    .indices_optional = 1,
    .stats_size = kdi_freematch_stats_size,
    .local_stats = kdi_freematch_local_stats,
    .check_stats = kdi_freematch_check_stats,
    .update_stats = kdi_freematch_update_stats,
    .state_length = kdi_freematch_state_length,
    .copy_floats = kdi_freematch_copy_floats,
    .copy_ints = kdi_freematch_copy_ints,
    .save = kdi_freematch_save,
    .load = kdi_freematch_load,
};
