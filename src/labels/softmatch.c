/* SoftMatch, an algorithm of the threshold handle family (kdlib/threshold.h;
 * formulas and deviations from USB in docs/labels.md, "SoftMatch").
 *
 * With DIST_ALIGN, a batch of rows q_k first updates p_model (the first
 * batch's mean, then m p_model + (1 - m) mean_k q_k) and is aligned to the
 * uniform distribution u = 1/C:
 *   a_kj = q_kj r_j / sum_i q_ki r_i,   r_j = (u + 1e-6) / (p_model_j + 1e-6).
 * Its max confidences x_k = max_j a_kj (classes c_k = argmax_j a_kj) update
 *   mu  = m mu  + (1 - m) mean_k x_k,   var = m var + (1 - m) var_k x_k (unbiased)
 * globally and per class (a class with fewer than 2 samples in the batch
 * contributes mean 0 and variance 1, as USB does), from mu = 1/C, var = 1.
 * Weights: w_k = exp(-(min(x_k - mu, 0))^2 / (2 var / n_sigma^2)), with mu,
 * var of c_k when PER_CLASS.  The state is kept in double. */
#include "labels/threshold_algo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KDI_SOFTMATCH_FORMAT_VERSION 1u
#define KDI_SOFTMATCH_META 56u

typedef struct {
    double mu, var;        /* global mu_t, var_t */
    double *cmu;           /* C: per-class mu_t */
    double *cvar;          /* C: per-class var_t */
    double *pm;            /* C: p_model */
    double *ratio;         /* C: r_j from p_model (1 before the first aligned update) */
    double *sum;           /* C: scratch of update */
    double *sq;            /* C: scratch of update */
    double *cnt;           /* C: scratch of update */
    double *load;          /* 2 + 3C: load reads here first, so a failed load changes nothing */
    int64_t updates;       /* non-empty updates */
    int64_t align_updates; /* of them, those that updated p_model */
    double momentum;
    double n_sigma;
    int32_t per_class;
    int32_t dist_align;
} kdi_softmatch;

static kdi_softmatch *kdi_sm(const kd_threshold *th) { return th->state; }

static void kdi_softmatch_free(void *state)
{
    kdi_softmatch *s = state;
    if (!s)
        return;
    free(s->cmu); /* one block */
    free(s);
}

static void kdi_softmatch_ratio(kd_threshold *th)
{
    kdi_softmatch *s = kdi_sm(th);
    kdi_threshold_align_ratio(th->num_classes, NULL, s->pm, s->ratio);
}

static void kdi_softmatch_reset(kd_threshold *th)
{
    kdi_softmatch *s = kdi_sm(th);
    const double u = 1.0 / (double)th->num_classes;
    s->mu = u;
    s->var = 1.0;
    for (int64_t c = 0; c < th->num_classes; c++) {
        s->cmu[c] = s->pm[c] = u;
        s->cvar[c] = 1.0;
    }
    s->updates = s->align_updates = 0;
    kdi_softmatch_ratio(th);
}

static int kdi_softmatch_create(kd_threshold *th)
{
    const size_t c = (size_t)th->num_classes;
    kdi_softmatch *s = calloc(1, sizeof *s);
    double *block = s ? malloc((10 * c + 2) * sizeof *block) : NULL;
    if (!block) {
        free(s);
        return 0;
    }
    s->cmu = block;
    s->cvar = block + c;
    s->pm = block + 2 * c;
    s->ratio = block + 3 * c;
    s->sum = block + 4 * c;
    s->sq = block + 5 * c;
    s->cnt = block + 6 * c;
    s->load = block + 7 * c;
    s->momentum = 0.999; /* USB's ema_p */
    s->n_sigma = 2.0;
    s->dist_align = 1;
    th->state = s;
    kdi_softmatch_reset(th);
    return 1;
}

/* ---- parameters ----------------------------------------------------------- */

static const kdi_param_spec kdi_softmatch_specs[] = {
    {KD_THRESHOLD_PARAM_MOMENTUM, "MOMENTUM", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_N_SIGMA, "N_SIGMA", KDI_PT_REAL, 1, 0.001, 1000.0},
    {KD_THRESHOLD_PARAM_PER_CLASS, "PER_CLASS", KDI_PT_INT, 1, 0, 1},
    {KD_THRESHOLD_PARAM_DIST_ALIGN, "DIST_ALIGN", KDI_PT_INT, 1, 0, 1},
};

static void kdi_softmatch_set_real(kd_threshold *th, int32_t key, double value)
{
    kdi_softmatch *s = kdi_sm(th);
    if (key == KD_THRESHOLD_PARAM_MOMENTUM)
        s->momentum = value;
    else
        s->n_sigma = value;
}

static double kdi_softmatch_get_real(const kd_threshold *th, int32_t key)
{
    const kdi_softmatch *s = kdi_sm(th);
    return key == KD_THRESHOLD_PARAM_MOMENTUM ? s->momentum : s->n_sigma;
}

static void kdi_softmatch_set_int(kd_threshold *th, int32_t key, int64_t value)
{
    kdi_softmatch *s = kdi_sm(th);
    if (key == KD_THRESHOLD_PARAM_PER_CLASS)
        s->per_class = (int32_t)value;
    else
        s->dist_align = (int32_t)value;
}

static int64_t kdi_softmatch_get_int(const kd_threshold *th, int32_t key)
{
    const kdi_softmatch *s = kdi_sm(th);
    return key == KD_THRESHOLD_PARAM_PER_CLASS ? s->per_class : s->dist_align;
}

static const char *kdi_softmatch_refuse_scalar(const kd_threshold *th)
{
    return kdi_sm(th)->dist_align ? "with DIST_ALIGN = 1 aligns whole probability rows" : NULL;
}

/* ---- the batch as (confidence, class) items -------------------------------- */

/* Either confidences and predictions, or rows (aligned with ratio when not
 * NULL). */
typedef struct {
    const float *conf;
    const int32_t *pred;
    const float *probs;
    int64_t ld;
    int64_t c;
    const double *ratio;
} kdi_sm_batch;

static double kdi_sm_item(const kdi_sm_batch *b, int64_t k, int32_t *cls)
{
    if (!b->probs) {
        *cls = b->pred[k];
        return b->conf[k];
    }
    const float *row = b->probs + k * b->ld;
    return b->ratio ? kdi_threshold_aligned_max(row, b->c, b->ratio, cls)
                    : kdi_threshold_row_max(row, b->c, cls);
}

/* The EMA step of the global mu and var from a batch of dn > 0 maxima with
 * mean `mean` and sum of squared deviations m2 (the variance of one value is
 * undefined, USB: NaN, and leaves var). */
static void kdi_sm_apply(kd_threshold *th, double dn, double mean, double m2)
{
    kdi_softmatch *s = kdi_sm(th);
    s->mu = kdi_threshold_ema(s->mu, s->momentum, mean);
    if (dn > 1.0)
        s->var = kdi_threshold_ema(s->var, s->momentum, m2 / (dn - 1.0));
    s->updates++;
}

/* The same for class c with cnt maxima (fewer than 2: mean 0, variance 1). */
static void kdi_sm_apply_class(kd_threshold *th, int64_t c, double cnt, double mean, double m2)
{
    kdi_softmatch *s = kdi_sm(th);
    const int many = cnt > 1.0;
    s->cmu[c] = kdi_threshold_ema(s->cmu[c], s->momentum, many ? mean : 0.0);
    s->cvar[c] = kdi_threshold_ema(s->cvar[c], s->momentum, many ? m2 / (cnt - 1.0) : 1.0);
}

static void kdi_sm_stats(kd_threshold *th, int64_t n, const kdi_sm_batch *b)
{
    kdi_softmatch *s = kdi_sm(th);
    const int64_t C = th->num_classes;
    memset(s->sum, 0, (size_t)C * sizeof *s->sum);
    memset(s->sq, 0, (size_t)C * sizeof *s->sq);
    memset(s->cnt, 0, (size_t)C * sizeof *s->cnt);
    double total = 0.0;
    int32_t cls;
    for (int64_t k = 0; k < n; k++) {
        const double x = kdi_sm_item(b, k, &cls);
        total += x;
        s->sum[cls] += x;
        s->cnt[cls] += 1.0;
    }
    const double mean = total / (double)n;
    for (int64_t c = 0; c < C; c++)
        if (s->cnt[c] > 0.0)
            s->sum[c] /= s->cnt[c]; /* now the class means */
    double dev = 0.0;
    for (int64_t k = 0; k < n; k++) {
        const double x = kdi_sm_item(b, k, &cls);
        dev += (x - mean) * (x - mean);
        s->sq[cls] += (x - s->sum[cls]) * (x - s->sum[cls]);
    }
    kdi_sm_apply(th, (double)n, mean, dev);
    for (int64_t c = 0; c < C; c++)
        kdi_sm_apply_class(th, c, s->cnt[c], s->sum[c], s->sq[c]);
}

static void kdi_sm_weights(const kd_threshold *th, int64_t n, const kdi_sm_batch *b, float *weights)
{
    const kdi_softmatch *s = kdi_sm(th);
    const double ns2 = s->n_sigma * s->n_sigma;
    for (int64_t k = 0; k < n; k++) {
        int32_t cls;
        const double x = kdi_sm_item(b, k, &cls);
        const double mu = s->per_class ? s->cmu[cls] : s->mu;
        const double var = s->per_class ? s->cvar[cls] : s->var;
        const double d = x - mu;
        double w = 1.0;
        if (d < 0.0)
            w = var > 0.0 ? exp(-(d * d) / (2.0 * var / ns2)) : 0.0;
        weights[k] = (float)w;
    }
}

static void kdi_softmatch_update(kd_threshold *th, int64_t n, const int64_t *indices,
                                 const float *confidences, const int32_t *predictions)
{
    (void)indices;
    kdi_sm_batch b = {confidences, predictions, NULL, 0, th->num_classes, NULL};
    kdi_sm_stats(th, n, &b);
}

static void kdi_softmatch_weights(const kd_threshold *th, int64_t n, const float *confidences,
                                  const int32_t *predictions, float *weights)
{
    kdi_sm_batch b = {confidences, predictions, NULL, 0, th->num_classes, NULL};
    kdi_sm_weights(th, n, &b, weights);
}

static void kdi_softmatch_update_probs(kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                       const int64_t *indices)
{
    (void)indices;
    kdi_softmatch *s = kdi_sm(th);
    const int64_t C = th->num_classes;
    if (s->dist_align) {
        /* p_model from the rows as given, then the rows aligned with it */
        kdi_threshold_column_sums(n, C, probs, ld, s->sum);
        for (int64_t j = 0; j < C; j++) {
            const double mean = s->sum[j] / (double)n;
            s->pm[j] =
                s->align_updates == 0 ? mean : kdi_threshold_ema(s->pm[j], s->momentum, mean);
        }
        s->align_updates++;
        kdi_softmatch_ratio(th);
    }
    kdi_sm_batch b = {NULL, NULL, probs, ld, C, s->dist_align ? s->ratio : NULL};
    kdi_sm_stats(th, n, &b);
}

static void kdi_softmatch_weights_probs(const kd_threshold *th, int64_t n, const float *probs,
                                        int64_t ld, float *weights)
{
    const kdi_softmatch *s = kdi_sm(th);
    kdi_sm_batch b = {NULL, NULL, probs, ld, th->num_classes, s->dist_align ? s->ratio : NULL};
    kdi_sm_weights(th, n, &b, weights);
}

/* ---- split statistics (DIST_ALIGN 0) -------------------------------------- */
/* n, sum x_k, sum (x_k - mu)^2, then per class: counts (C), sums (C), sums
 * of squared deviations from the same mu (C).  mu, the state's, is the same
 * on every rank, so the sums add; the deviations are taken from it to keep
 * the variance from cancelling (docs/labels.md has the error bound). */

static int64_t kdi_softmatch_stats_size(const kd_threshold *th, const char **why)
{
    *why = "with DIST_ALIGN = 1 aligns the rows with p_model updated by the whole batch's mean "
           "before taking their maxima";
    return kdi_sm(th)->dist_align ? 0 : 3 + 3 * th->num_classes;
}

static void kdi_softmatch_local_stats(const kd_threshold *th, int64_t n, const float *probs,
                                      int64_t ld, double *stats)
{
    const int64_t C = th->num_classes;
    const double shift = kdi_sm(th)->mu;
    double *cnt = stats + 3, *sum = cnt + C, *sq = sum + C;
    for (int64_t i = 0; i < 3 + 3 * C; i++)
        stats[i] = 0.0;
    stats[0] = (double)n;
    for (int64_t k = 0; k < n; k++) {
        int32_t cls;
        const double x = kdi_threshold_row_max(probs + k * ld, C, &cls), d = x - shift;
        stats[1] += x;
        stats[2] += d * d;
        cnt[cls] += 1.0;
        sum[cls] += x;
        sq[cls] += d * d;
    }
}

static kd_status kdi_softmatch_check_stats(const kd_threshold *th, const double *stats, char *err,
                                           const char *fn)
{
    const int64_t C = th->num_classes;
    kd_status st = kdi_threshold_stats_count(err, fn, stats, 0);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 1, 2, stats[0], NULL);
    if (st == KD_OK)
        st = kdi_threshold_stats_hist(err, fn, stats, 3, C, stats[0]);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 3 + C, C, 0.0, stats + 3);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 3 + 2 * C, C, 0.0, stats + 3);
    return st;
}

/* Sum of squared deviations from the mean, from those from shift. */
static double kdi_sm_m2(double n, double sum, double sq, double shift)
{
    const double d = sum / n - shift, m2 = sq - n * d * d;
    return m2 > 0.0 ? m2 : 0.0;
}

static void kdi_softmatch_update_stats(kd_threshold *th, const double *stats)
{
    const int64_t C = th->num_classes;
    const double n = stats[0], shift = kdi_sm(th)->mu;
    const double *cnt = stats + 3, *sum = cnt + C, *sq = sum + C;
    if (n == 0.0)
        return;
    for (int64_t c = 0; c < C; c++)
        kdi_sm_apply_class(th, c, cnt[c], cnt[c] > 0.0 ? sum[c] / cnt[c] : 0.0,
                           cnt[c] > 0.0 ? kdi_sm_m2(cnt[c], sum[c], sq[c], shift) : 0.0);
    kdi_sm_apply(th, n, stats[1] / n, kdi_sm_m2(n, stats[1], stats[2], shift));
}

/* ---- state arrays --------------------------------------------------------- */

static int64_t kdi_softmatch_state_length(const kd_threshold *th, kd_threshold_state what,
                                          int is_int)
{
    switch (what) {
    case KD_THRESHOLD_STATE_CONF_MEAN:
    case KD_THRESHOLD_STATE_CONF_VAR:
        return is_int ? 0 : 1;
    case KD_THRESHOLD_STATE_CLASS_CONF_MEAN:
    case KD_THRESHOLD_STATE_CLASS_CONF_VAR:
    case KD_THRESHOLD_STATE_CLASS_PROBS:
        return is_int ? 0 : th->num_classes;
    case KD_THRESHOLD_STATE_UPDATES:
        return is_int ? 1 : 0;
    default:
        return 0;
    }
}

static void kdi_softmatch_copy_floats(const kd_threshold *th, kd_threshold_state what, float *out)
{
    const kdi_softmatch *s = kdi_sm(th);
    if (what == KD_THRESHOLD_STATE_CONF_MEAN || what == KD_THRESHOLD_STATE_CONF_VAR) {
        out[0] = (float)(what == KD_THRESHOLD_STATE_CONF_MEAN ? s->mu : s->var);
        return;
    }
    const double *src = what == KD_THRESHOLD_STATE_CLASS_CONF_MEAN  ? s->cmu
                        : what == KD_THRESHOLD_STATE_CLASS_CONF_VAR ? s->cvar
                                                                    : s->pm;
    for (int64_t c = 0; c < th->num_classes; c++)
        out[c] = (float)src[c];
}

static void kdi_softmatch_copy_ints(const kd_threshold *th, kd_threshold_state what, int64_t *out)
{
    (void)what; /* UPDATES is the only int array */
    out[0] = kdi_sm(th)->updates;
}

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian, 56 bytes):
 *    0  8  N (num_samples)                   u64
 *    8  8  C (num_classes)                   u64
 *   16  8  momentum                          f64
 *   24  8  n_sigma                           f64
 *   32  4  per_class (0/1)                   u32
 *   36  4  dist_align (0/1)                  u32
 *   40  8  number of updates                 u64
 *   48  8  number of them that set p_model   u64 (<= updates)
 * Data section: mu, var, then per-class mu (C), per-class var (C) and
 * p_model (C), f64 each.
 */

static const char kdi_softmatch_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'S', 'O',
                                                                   'F', 'T', 'M', '\0'};

static kd_status kdi_softmatch_save(const kd_threshold *th, const char *path, char *err)
{
    const kdi_softmatch *s = kdi_sm(th);
    const uint64_t C = (uint64_t)th->num_classes;
    unsigned char meta[KDI_SOFTMATCH_META];
    kdi_le_put_u64(meta + 0, (uint64_t)th->num_samples);
    kdi_le_put_u64(meta + 8, C);
    kdi_le_put_f64(meta + 16, s->momentum);
    kdi_le_put_f64(meta + 24, s->n_sigma);
    kdi_le_put_u32(meta + 32, (uint32_t)s->per_class);
    kdi_le_put_u32(meta + 36, (uint32_t)s->dist_align);
    kdi_le_put_u64(meta + 40, (uint64_t)s->updates);
    kdi_le_put_u64(meta + 48, (uint64_t)s->align_updates);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk data[5] = {{&s->mu, sizeof s->mu, 8},
                                   {&s->var, sizeof s->var, 8},
                                   {s->cmu, C * sizeof(double), 8},
                                   {s->cvar, C * sizeof(double), 8},
                                   {s->pm, C * sizeof(double), 8}};
    return kdi_statefile_write(path, kdi_softmatch_magic, KDI_SOFTMATCH_FORMAT_VERSION, &mchunk, 1,
                               data, 5, err);
}

static kd_status kdi_softmatch_check_meta(const void *handle, const kdi_statefile_reader *r,
                                          char *msg)
{
    uint64_t n, c;
    kd_status st = kdi_threshold_meta_shape(r, KDI_SOFTMATCH_META, &n, &c, msg);
    if (st != KD_OK)
        return st;
    const unsigned char *m = r->meta;
    const double momentum = kdi_le_get_f64(m + 16), n_sigma = kdi_le_get_f64(m + 24);
    const uint32_t per_class = kdi_le_get_u32(m + 32), dist_align = kdi_le_get_u32(m + 36);
    const uint64_t updates = kdi_le_get_u64(m + 40), align_updates = kdi_le_get_u64(m + 48);
    if (!(momentum >= 0.0 && momentum <= 1.0) || !(n_sigma >= 0.001 && n_sigma <= 1000.0) ||
        per_class > 1 || dist_align > 1 || updates > (uint64_t)INT64_MAX || align_updates > updates)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (momentum %g, n_sigma %g, per-class %u, "
                        "dist-align %u, updates %llu / %llu)",
                        r->path, momentum, n_sigma, (unsigned)per_class, (unsigned)dist_align,
                        (unsigned long long)updates, (unsigned long long)align_updates);
    return kdi_threshold_data_shape(handle, r, n, c, 2, 3, msg);
}

static const kdi_statefile_kind kdi_softmatch_file = {
    kdi_softmatch_magic, KDI_SOFTMATCH_FORMAT_VERSION, kdi_softmatch_check_meta};

/* Means finite, variances finite and >= 0 (confidences of kd_threshold_update
 * are only checked against NaN), p_model in [0, 1]. */
static int kdi_softmatch_value_ok(int64_t i, int64_t C, double v)
{
    if (i == 1 || (i >= 2 + C && i < 2 + 2 * C))
        return isfinite(v) && v >= 0.0;
    if (i >= 2 + 2 * C)
        return v >= 0.0 && v <= 1.0;
    return isfinite(v);
}

static kd_status kdi_softmatch_load(kd_threshold *th, const char *path, char *msg)
{
    kdi_softmatch *s = kdi_sm(th);
    const int64_t C = th->num_classes;
    kdi_statefile_reader r;
    kd_status st = kdi_threshold_load_f64(th, &kdi_softmatch_file, path, KDI_SOFTMATCH_META,
                                          s->load, 2 + 3 * C, kdi_softmatch_value_ok, &r, msg);
    if (st != KD_OK)
        return st;
    s->mu = s->load[0];
    s->var = s->load[1];
    memcpy(s->cmu, s->load + 2, (size_t)C * sizeof(double));
    memcpy(s->cvar, s->load + 2 + C, (size_t)C * sizeof(double));
    memcpy(s->pm, s->load + 2 + 2 * C, (size_t)C * sizeof(double));
    s->momentum = kdi_le_get_f64(r.meta + 16);
    s->n_sigma = kdi_le_get_f64(r.meta + 24);
    s->per_class = (int32_t)kdi_le_get_u32(r.meta + 32);
    s->dist_align = (int32_t)kdi_le_get_u32(r.meta + 36);
    s->updates = (int64_t)kdi_le_get_u64(r.meta + 40);
    s->align_updates = (int64_t)kdi_le_get_u64(r.meta + 48);
    kdi_statefile_close(&r);
    kdi_softmatch_ratio(th);
    return KD_OK;
}

const kdi_threshold_algo kdi_threshold_softmatch = {
    .id = KD_THRESHOLD_SOFTMATCH,
    .name = "softmatch",
    .specs = kdi_softmatch_specs,
    .num_specs = sizeof kdi_softmatch_specs / sizeof kdi_softmatch_specs[0],
    .create = kdi_softmatch_create,
    .free_state = kdi_softmatch_free,
    .reset = kdi_softmatch_reset,
    .set_real = kdi_softmatch_set_real,
    .set_int = kdi_softmatch_set_int,
    .get_real = kdi_softmatch_get_real,
    .get_int = kdi_softmatch_get_int,
    .update = kdi_softmatch_update,
    .weights = kdi_softmatch_weights,
    .refuse_scalar = kdi_softmatch_refuse_scalar,
    .update_probs = kdi_softmatch_update_probs,
    .weights_probs = kdi_softmatch_weights_probs,
    .indices_optional = 1,
    .stats_size = kdi_softmatch_stats_size,
    .local_stats = kdi_softmatch_local_stats,
    .check_stats = kdi_softmatch_check_stats,
    .update_stats = kdi_softmatch_update_stats,
    .state_length = kdi_softmatch_state_length,
    .copy_floats = kdi_softmatch_copy_floats,
    .copy_ints = kdi_softmatch_copy_ints,
    .save = kdi_softmatch_save,
    .load = kdi_softmatch_load,
};
