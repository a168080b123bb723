/* Dash, an algorithm of the threshold handle family (kdlib/threshold.h;
 * formulas and deviations from USB in docs/labels.md, "Dash").
 *
 * A dynamic threshold rho on the loss of each weak view against its own
 * pseudo-label (USB's DashThresholdingHook, semilearn/algorithms/dash/):
 *   update u (from 0):  when u % PERIOD == 0:
 *                         rho = max(DASH_C GAMMA^-k RHO_INIT, RHO_MIN), k = k + 1
 *                       hard = (rho == RHO_MIN)
 *   weights of a row q: l = -log max_j q_j                        (hard)
 *                       l = -sum_j p_j log q_j, p = q^(1/T) / sum (soft)
 *                       w = [l <= rho], pseudo-label argmax_j q_j.
 * The rows themselves do not enter the state: an update only steps the
 * schedule (USB's update() runs once per masking call).  State in double. */
#include "labels/threshold_algo.h"

#include <math.h>
#include <stdlib.h>

#define KDI_DASH_FORMAT_VERSION 1u
#define KDI_DASH_META 88u

typedef struct {
    double rho;      /* the last recomputed threshold (valid once updates > 0) */
    double load;     /* load reads rho here first, so a failed load changes nothing */
    int64_t updates; /* non-empty updates */
    int64_t k;       /* recomputations of rho (USB's rho_update_cnt) */
    int32_t hard;    /* rho == rho_min at the last update (USB's use_hard_label) */
    double rho_init, gamma, c, rho_min, temperature;
    int64_t period;
} kdi_dash;

static kdi_dash *kdi_ds(const kd_threshold *th) { return th->state; }

static void kdi_dash_free(void *state) { free(state); }

/* USB's rho at the k-th recomputation. */
static double kdi_dash_schedule(const kdi_dash *s, int64_t k)
{
    const double rho = s->c * pow(s->gamma, -(double)k) * s->rho_init;
    return rho > s->rho_min ? rho : s->rho_min;
}

/* rho and the label kind that weights use: before the first update, the
 * values the first update sets. */
static double kdi_dash_rho(const kdi_dash *s, int32_t *hard)
{
    const double rho = s->updates == 0 ? kdi_dash_schedule(s, 0) : s->rho;
    *hard = s->updates == 0 ? rho == s->rho_min : s->hard;
    return rho;
}

static void kdi_dash_reset(kd_threshold *th)
{
    kdi_dash *s = kdi_ds(th);
    s->updates = s->k = 0;
    s->hard = 0;
    s->rho = 0.0;
}

static int kdi_dash_create(kd_threshold *th)
{
    kdi_dash *s = calloc(1, sizeof *s);
    if (!s)
        return 0;
    s->rho_init = log((double)th->num_classes); /* a uniform prediction's loss */
    s->gamma = 1.27;                            /* USB's defaults */
    s->c = 1.0001;
    s->rho_min = 0.05;
    s->temperature = 0.5;
    s->period = 10240; /* 10 epochs of USB's 1024 iterations */
    th->state = s;
    kdi_dash_reset(th);
    return 1;
}

/* ---- parameters ----------------------------------------------------------- */

#define KDI_DASH_MAX_PERIOD 1099511627776.0 /* 2^40 */

static const kdi_param_spec kdi_dash_specs[] = {
    {KD_THRESHOLD_PARAM_RHO_INIT, "RHO_INIT", KDI_PT_REAL, 1, 0.0, 1000.0},
    {KD_THRESHOLD_PARAM_GAMMA, "GAMMA", KDI_PT_REAL, 1, 1.0, 1000.0},
    {KD_THRESHOLD_PARAM_DASH_C, "DASH_C", KDI_PT_REAL, 1, 0.0, 1000.0},
    {KD_THRESHOLD_PARAM_RHO_MIN, "RHO_MIN", KDI_PT_REAL, 1, 0.0, 1000.0},
    {KD_THRESHOLD_PARAM_PERIOD, "PERIOD", KDI_PT_INT, 1, 1.0, KDI_DASH_MAX_PERIOD},
    {KD_THRESHOLD_PARAM_TEMPERATURE, "TEMPERATURE", KDI_PT_REAL, 1, 0.01, 100.0},
};

static double *kdi_dash_real(kdi_dash *s, int32_t key)
{
    switch (key) {
    case KD_THRESHOLD_PARAM_RHO_INIT:
        return &s->rho_init;
    case KD_THRESHOLD_PARAM_GAMMA:
        return &s->gamma;
    case KD_THRESHOLD_PARAM_DASH_C:
        return &s->c;
    case KD_THRESHOLD_PARAM_RHO_MIN:
        return &s->rho_min;
    default:
        return &s->temperature;
    }
}

static void kdi_dash_set_real(kd_threshold *th, int32_t key, double value)
{
    *kdi_dash_real(kdi_ds(th), key) = value;
}

static double kdi_dash_get_real(const kd_threshold *th, int32_t key)
{
    return *kdi_dash_real(kdi_ds(th), key);
}

/* PERIOD is the only int parameter. */
static void kdi_dash_set_int(kd_threshold *th, int32_t key, int64_t value)
{
    (void)key;
    kdi_ds(th)->period = value;
}

static int64_t kdi_dash_get_int(const kd_threshold *th, int32_t key)
{
    (void)key;
    return kdi_ds(th)->period;
}

/* ---- updates and weights -------------------------------------------------- */

/* One step of USB's update(): the batch's contents do not matter. */
static void kdi_dash_step(kd_threshold *th)
{
    kdi_dash *s = kdi_ds(th);
    if (s->updates % s->period == 0) {
        s->rho = kdi_dash_schedule(s, s->k);
        s->k++;
    }
    s->hard = s->rho == s->rho_min;
    s->updates++;
}

static void kdi_dash_update(kd_threshold *th, int64_t n, const int64_t *indices,
                            const float *confidences, const int32_t *predictions)
{
    (void)n, (void)indices, (void)confidences, (void)predictions;
    kdi_dash_step(th);
}

static void kdi_dash_update_probs(kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                  const int64_t *indices)
{
    (void)n, (void)probs, (void)ld, (void)indices;
    kdi_dash_step(th);
}

/* Split statistics: n alone (a non-empty batch steps the schedule). */
static int64_t kdi_dash_stats_size(const kd_threshold *th, const char **why)
{
    (void)th, (void)why;
    return 1;
}

static void kdi_dash_local_stats(const kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                 double *stats)
{
    (void)th, (void)probs, (void)ld;
    stats[0] = (double)n;
}

static kd_status kdi_dash_check_stats(const kd_threshold *th, const double *stats, char *err,
                                      const char *fn)
{
    (void)th;
    return kdi_threshold_stats_count(err, fn, stats, 0);
}

static void kdi_dash_update_stats(kd_threshold *th, const double *stats)
{
    if (stats[0] > 0.0)
        kdi_dash_step(th);
}

/* The cross-entropy of row q against its soft pseudo-label p = q^(1/T) /
 * sum_i q_i^(1/T), -sum_j p_j log q_j (0 log 0 = 0), in double; q^(1/T) is
 * taken relative to the row's max m, (q_j / m)^(1/T), so it cannot underflow
 * to a zero sum.  A zero row: +inf. */
static double kdi_dash_soft_loss(const float *row, int64_t c, double inv_t)
{
    int32_t arg;
    const double m = kdi_threshold_row_max(row, c, &arg);
    if (!(m > 0.0))
        return INFINITY;
    const double log_m = log(m);
    double sum = 0.0, dot = 0.0;
    for (int64_t j = 0; j < c; j++) {
        if (row[j] > 0.0f) {
            const double lq = log((double)row[j]);
            const double u = exp((lq - log_m) * inv_t);
            sum += u;
            dot += u * lq;
        }
    }
    return -dot / sum;
}

static void kdi_dash_weights_probs(const kd_threshold *th, int64_t n, const float *probs,
                                   int64_t ld, float *weights)
{
    const kdi_dash *s = kdi_ds(th);
    const int64_t c = th->num_classes;
    int32_t hard;
    const double rho = kdi_dash_rho(s, &hard), inv_t = 1.0 / s->temperature;
    for (int64_t k = 0; k < n; k++) {
        const float *row = probs + k * ld;
        int32_t arg;
        const double loss = hard ? -log((double)kdi_threshold_row_max(row, c, &arg))
                                 : kdi_dash_soft_loss(row, c, inv_t);
        weights[k] = loss <= rho ? 1.0f : 0.0f;
    }
}

/* ---- state arrays --------------------------------------------------------- */

static int64_t kdi_dash_state_length(const kd_threshold *th, kd_threshold_state what, int is_int)
{
    (void)th;
    switch (what) {
    case KD_THRESHOLD_STATE_RHO:
        return is_int ? 0 : 1;
    case KD_THRESHOLD_STATE_UPDATES:
    case KD_THRESHOLD_STATE_RHO_UPDATES:
    case KD_THRESHOLD_STATE_HARD_LABEL:
        return is_int ? 1 : 0;
    default:
        return 0;
    }
}

static void kdi_dash_copy_floats(const kd_threshold *th, kd_threshold_state what, float *out)
{
    (void)what; /* RHO */
    int32_t hard;
    out[0] = (float)kdi_dash_rho(kdi_ds(th), &hard);
}

static void kdi_dash_copy_ints(const kd_threshold *th, kd_threshold_state what, int64_t *out)
{
    const kdi_dash *s = kdi_ds(th);
    int32_t hard;
    (void)kdi_dash_rho(s, &hard);
    out[0] = what == KD_THRESHOLD_STATE_UPDATES       ? s->updates
             : what == KD_THRESHOLD_STATE_RHO_UPDATES ? s->k
                                                      : hard;
}

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian, 88 bytes):
 *    0  8  N (num_samples)                u64
 *    8  8  C (num_classes)                u64
 *   16  8  rho_init                       f64
 *   24  8  gamma                          f64
 *   32  8  C of the schedule (DASH_C)     f64
 *   40  8  rho_min                        f64
 *   48  8  temperature                    f64
 *   56  8  period                         u64
 *   64  8  number of updates              u64
 *   72  8  k, recomputations of rho       u64
 *   80  4  hard label (0/1)               u32
 *   84  4  reserved, 0                    u32
 * Data section: rho, f64.
 */

static const char kdi_dash_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'D', 'A',
                                                              'S', 'H', 'T', '\0'};

static kd_status kdi_dash_save(const kd_threshold *th, const char *path, char *err)
{
    const kdi_dash *s = kdi_ds(th);
    unsigned char meta[KDI_DASH_META];
    kdi_le_put_u64(meta + 0, (uint64_t)th->num_samples);
    kdi_le_put_u64(meta + 8, (uint64_t)th->num_classes);
    kdi_le_put_f64(meta + 16, s->rho_init);
    kdi_le_put_f64(meta + 24, s->gamma);
    kdi_le_put_f64(meta + 32, s->c);
    kdi_le_put_f64(meta + 40, s->rho_min);
    kdi_le_put_f64(meta + 48, s->temperature);
    kdi_le_put_u64(meta + 56, (uint64_t)s->period);
    kdi_le_put_u64(meta + 64, (uint64_t)s->updates);
    kdi_le_put_u64(meta + 72, (uint64_t)s->k);
    kdi_le_put_u32(meta + 80, (uint32_t)s->hard);
    kdi_le_put_u32(meta + 84, 0);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk data[1] = {{&s->rho, sizeof s->rho, 8}};
    return kdi_statefile_write(path, kdi_dash_magic, KDI_DASH_FORMAT_VERSION, &mchunk, 1, data, 1,
                               err);
}

/* v inside the bounds of the spec of key (NaN is not). */
static int kdi_dash_in_spec(int32_t key, double v)
{
    static const kdi_param_table t = {"KD_THRESHOLD_PARAM_", "", kdi_dash_specs,
                                      sizeof kdi_dash_specs / sizeof kdi_dash_specs[0]};
    const kdi_param_spec *spec = kdi_param_find(&t, key);
    return v >= spec->lower && v <= spec->upper;
}

static kd_status kdi_dash_check_meta(const void *handle, const kdi_statefile_reader *r, char *msg)
{
    uint64_t n, c;
    kd_status st = kdi_threshold_meta_shape(r, KDI_DASH_META, &n, &c, msg);
    if (st != KD_OK)
        return st;
    const unsigned char *m = r->meta;
    static const int32_t reals[5] = {KD_THRESHOLD_PARAM_RHO_INIT, KD_THRESHOLD_PARAM_GAMMA,
                                     KD_THRESHOLD_PARAM_DASH_C, KD_THRESHOLD_PARAM_RHO_MIN,
                                     KD_THRESHOLD_PARAM_TEMPERATURE};
    int ok = 1;
    for (int i = 0; i < 5; i++)
        ok = ok && kdi_dash_in_spec(reals[i], kdi_le_get_f64(m + 16 + 8 * i));
    const uint64_t period = kdi_le_get_u64(m + 56), updates = kdi_le_get_u64(m + 64),
                   k = kdi_le_get_u64(m + 72);
    const uint32_t hard = kdi_le_get_u32(m + 80);
    if (!ok || period < 1 || period > (uint64_t)KDI_DASH_MAX_PERIOD ||
        updates > (uint64_t)INT64_MAX || k > updates || hard > 1)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (rho_init %g, gamma %g, C %g, rho_min %g, "
                        "temperature %g, period %llu, updates %llu, k %llu, hard %u)",
                        r->path, kdi_le_get_f64(m + 16), kdi_le_get_f64(m + 24),
                        kdi_le_get_f64(m + 32), kdi_le_get_f64(m + 40), kdi_le_get_f64(m + 48),
                        (unsigned long long)period, (unsigned long long)updates,
                        (unsigned long long)k, (unsigned)hard);
    return kdi_threshold_data_shape(handle, r, n, c, 1, 0, msg);
}

static const kdi_statefile_kind kdi_dash_file = {kdi_dash_magic, KDI_DASH_FORMAT_VERSION,
                                                 kdi_dash_check_meta};

/* rho is a loss threshold: finite, >= 0. */
static int kdi_dash_value_ok(int64_t i, int64_t c, double v)
{
    (void)i, (void)c;
    return v >= 0.0 && v <= 1e300;
}

static kd_status kdi_dash_load(kd_threshold *th, const char *path, char *msg)
{
    kdi_dash *s = kdi_ds(th);
    kdi_statefile_reader r;
    kd_status st = kdi_threshold_load_f64(th, &kdi_dash_file, path, KDI_DASH_META, &s->load, 1,
                                          kdi_dash_value_ok, &r, msg);
    if (st != KD_OK)
        return st;
    const unsigned char *m = r.meta;
    s->rho = s->load;
    s->rho_init = kdi_le_get_f64(m + 16);
    s->gamma = kdi_le_get_f64(m + 24);
    s->c = kdi_le_get_f64(m + 32);
    s->rho_min = kdi_le_get_f64(m + 40);
    s->temperature = kdi_le_get_f64(m + 48);
    s->period = (int64_t)kdi_le_get_u64(m + 56);
    s->updates = (int64_t)kdi_le_get_u64(m + 64);
    s->k = (int64_t)kdi_le_get_u64(m + 72);
    s->hard = (int32_t)kdi_le_get_u32(m + 80);
    kdi_statefile_close(&r);
    return KD_OK;
}

const kdi_threshold_algo kdi_threshold_dash = {
    .id = KD_THRESHOLD_DASH,
    .name = "dash",
    .specs = kdi_dash_specs,
    .num_specs = sizeof kdi_dash_specs / sizeof kdi_dash_specs[0],
    .create = kdi_dash_create,
    .free_state = kdi_dash_free,
    .reset = kdi_dash_reset,
    .set_real = kdi_dash_set_real,
    .set_int = kdi_dash_set_int,
    .get_real = kdi_dash_get_real,
    .get_int = kdi_dash_get_int,
    .update = kdi_dash_update,
    .weights = NULL, /* the soft label's loss needs the whole row */
    .refuse_scalar = NULL,
    .update_probs = kdi_dash_update_probs,
    .weights_probs = kdi_dash_weights_probs,
    .labels_probs = NULL, /* the argmax of the rows */
    .update_labeled_probs = NULL,
    .stats_size = kdi_dash_stats_size,
    .local_stats = kdi_dash_local_stats,
    .check_stats = kdi_dash_check_stats,
    .update_stats = kdi_dash_update_stats,
    .indices_optional = 1,
    .state_length = kdi_dash_state_length,
    .copy_floats = kdi_dash_copy_floats,
    .copy_ints = kdi_dash_copy_ints,
    .save = kdi_dash_save,
    .load = kdi_dash_load,
};
