/* DebiasPL, an algorithm of the threshold handle family (kdlib/threshold.h;
 * formulas and deviations from the authors' code in docs/labels.md,
 * "DebiasPL").
 *
 * Debiased pseudo-labels (Wang et al., CVPR 2022; main_DebiasPL.py's
 * causal_inference and update_qhat):
 *   unlabelled rows q_k:  p_hat = m p_hat + (1 - m) mean_k q_k   (from 1/C)
 *   weights:              a_kj = q_kj r_j / sum_i q_ki r_i,
 *                         r_j = max(p_hat_j, 1e-12)^-tau
 *                         (= softmax(log q_k - tau log p_hat)),
 *                         w_k = [max_j a_kj >= threshold],
 *                         pseudo-label argmax_j a_kj.
 * The adaptive margin of the loss (the strong view's logits + tau log p_hat)
 * is the caller's, with KD_THRESHOLD_STATE_CLASS_PROBS.  State in double. */
#include "labels/threshold_algo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KDI_DEBIASPL_FORMAT_VERSION 1u
#define KDI_DEBIASPL_META 48u
#define KDI_DEBIASPL_FLOOR 1e-12 /* p_hat below it counts as it in r_j */

typedef struct {
    double *ph;      /* C: p_hat */
    double *ratio;   /* C: r_j */
    double *sum;     /* C: scratch of the updates */
    double *load;    /* C: load reads here first, so a failed load changes nothing */
    int64_t updates; /* non-empty updates */
    double momentum, threshold, tau;
} kdi_debiaspl;

static kdi_debiaspl *kdi_dp(const kd_threshold *th) { return th->state; }

static void kdi_debiaspl_free(void *state)
{
    kdi_debiaspl *s = state;
    if (!s)
        return;
    free(s->ph); /* one block */
    free(s);
}

static void kdi_debiaspl_ratio(kd_threshold *th)
{
    kdi_debiaspl *s = kdi_dp(th);
    for (int64_t j = 0; j < th->num_classes; j++)
        s->ratio[j] = pow(s->ph[j] > KDI_DEBIASPL_FLOOR ? s->ph[j] : KDI_DEBIASPL_FLOOR, -s->tau);
}

static void kdi_debiaspl_reset(kd_threshold *th)
{
    kdi_debiaspl *s = kdi_dp(th);
    const double u = 1.0 / (double)th->num_classes;
    for (int64_t c = 0; c < th->num_classes; c++)
        s->ph[c] = u;
    s->updates = 0;
    kdi_debiaspl_ratio(th);
}

static int kdi_debiaspl_create(kd_threshold *th)
{
    const size_t c = (size_t)th->num_classes;
    kdi_debiaspl *s = calloc(1, sizeof *s);
    double *block = s ? malloc(4 * c * sizeof *block) : NULL;
    if (!block) {
        free(s);
        return 0;
    }
    s->ph = block;
    s->ratio = block + c;
    s->sum = block + 2 * c;
    s->load = block + 3 * c;
    s->momentum = 0.999; /* the paper's and the code's qhat_m */
    s->threshold = 0.95; /* the paper's FixMatch base */
    s->tau = 0.4;        /* the paper's and the authors' scripts */
    th->state = s;
    kdi_debiaspl_reset(th);
    return 1;
}

/* ---- parameters ----------------------------------------------------------- */

static const kdi_param_spec kdi_debiaspl_specs[] = {
    {KD_THRESHOLD_PARAM_THRESHOLD, "THRESHOLD", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_MOMENTUM, "MOMENTUM", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_DEBIAS_TAU, "DEBIAS_TAU", KDI_PT_REAL, 1, 0.0, 10.0},
};

static double *kdi_debiaspl_real(kdi_debiaspl *s, int32_t key)
{
    return key == KD_THRESHOLD_PARAM_MOMENTUM    ? &s->momentum
           : key == KD_THRESHOLD_PARAM_THRESHOLD ? &s->threshold
                                                 : &s->tau;
}

static void kdi_debiaspl_set_real(kd_threshold *th, int32_t key, double value)
{
    *kdi_debiaspl_real(kdi_dp(th), key) = value;
    if (key == KD_THRESHOLD_PARAM_DEBIAS_TAU)
        kdi_debiaspl_ratio(th);
}

static double kdi_debiaspl_get_real(const kd_threshold *th, int32_t key)
{
    return *kdi_debiaspl_real(kdi_dp(th), key);
}

/* ---- updates and weights -------------------------------------------------- */

/* The EMA step of a batch of dn > 0 rows with column sums sum. */
static void kdi_debiaspl_apply(kd_threshold *th, double dn, const double *sum)
{
    kdi_debiaspl *s = kdi_dp(th);
    for (int64_t j = 0; j < th->num_classes; j++)
        s->ph[j] = kdi_threshold_ema(s->ph[j], s->momentum, sum[j] / dn);
    s->updates++;
    kdi_debiaspl_ratio(th);
}

static void kdi_debiaspl_update_probs(kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                      const int64_t *indices)
{
    (void)indices;
    kdi_debiaspl *s = kdi_dp(th);
    kdi_threshold_column_sums(n, th->num_classes, probs, ld, s->sum);
    kdi_debiaspl_apply(th, (double)n, s->sum);
}

/* Split statistics: n and column sums (C). */
static int64_t kdi_debiaspl_stats_size(const kd_threshold *th, const char **why)
{
    (void)why;
    return 1 + th->num_classes;
}

static void kdi_debiaspl_local_stats(const kd_threshold *th, int64_t n, const float *probs,
                                     int64_t ld, double *stats)
{
    stats[0] = (double)n;
    kdi_threshold_column_sums(n, th->num_classes, probs, ld, stats + 1);
}

static kd_status kdi_debiaspl_check_stats(const kd_threshold *th, const double *stats, char *err,
                                          const char *fn)
{
    kd_status st = kdi_threshold_stats_count(err, fn, stats, 0);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 1, th->num_classes, stats[0], NULL);
    return st;
}

static void kdi_debiaspl_update_stats(kd_threshold *th, const double *stats)
{
    if (stats[0] > 0.0)
        kdi_debiaspl_apply(th, stats[0], stats + 1);
}

static void kdi_debiaspl_weights_probs(const kd_threshold *th, int64_t n, const float *probs,
                                       int64_t ld, float *weights)
{
    const kdi_debiaspl *s = kdi_dp(th);
    for (int64_t k = 0; k < n; k++) {
        int32_t cls;
        weights[k] = kdi_threshold_aligned_max(probs + k * ld, th->num_classes, s->ratio, &cls) >=
                             s->threshold
                         ? 1.0f
                         : 0.0f;
    }
}

static void kdi_debiaspl_labels_probs(const kd_threshold *th, int64_t n, const float *probs,
                                      int64_t ld, int32_t *labels)
{
    const kdi_debiaspl *s = kdi_dp(th);
    for (int64_t k = 0; k < n; k++)
        (void)kdi_threshold_aligned_max(probs + k * ld, th->num_classes, s->ratio, &labels[k]);
}

/* ---- state arrays --------------------------------------------------------- */

static int64_t kdi_debiaspl_state_length(const kd_threshold *th, kd_threshold_state what,
                                         int is_int)
{
    if (what == KD_THRESHOLD_STATE_CLASS_PROBS)
        return is_int ? 0 : th->num_classes;
    if (what == KD_THRESHOLD_STATE_UPDATES)
        return is_int ? 1 : 0;
    return 0;
}

static void kdi_debiaspl_copy_floats(const kd_threshold *th, kd_threshold_state what, float *out)
{
    (void)what; /* CLASS_PROBS */
    const kdi_debiaspl *s = kdi_dp(th);
    for (int64_t c = 0; c < th->num_classes; c++)
        out[c] = (float)s->ph[c];
}

static void kdi_debiaspl_copy_ints(const kd_threshold *th, kd_threshold_state what, int64_t *out)
{
    (void)what; /* UPDATES */
    out[0] = kdi_dp(th)->updates;
}

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian, 48 bytes):
 *    0  8  N (num_samples)                u64
 *    8  8  C (num_classes)                u64
 *   16  8  momentum                       f64
 *   24  8  threshold                      f64
 *   32  8  tau (DEBIAS_TAU)               f64
 *   40  8  number of updates              u64
 * Data section: p_hat (C), f64.
 */

static const char kdi_debiaspl_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'D', 'E',
                                                                  'B', 'P', 'L', '\0'};

static kd_status kdi_debiaspl_save(const kd_threshold *th, const char *path, char *err)
{
    const kdi_debiaspl *s = kdi_dp(th);
    unsigned char meta[KDI_DEBIASPL_META];
    kdi_le_put_u64(meta + 0, (uint64_t)th->num_samples);
    kdi_le_put_u64(meta + 8, (uint64_t)th->num_classes);
    kdi_le_put_f64(meta + 16, s->momentum);
    kdi_le_put_f64(meta + 24, s->threshold);
    kdi_le_put_f64(meta + 32, s->tau);
    kdi_le_put_u64(meta + 40, (uint64_t)s->updates);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk data[1] = {{s->ph, (size_t)th->num_classes * sizeof(double), 8}};
    return kdi_statefile_write(path, kdi_debiaspl_magic, KDI_DEBIASPL_FORMAT_VERSION, &mchunk, 1,
                               data, 1, err);
}

static kd_status kdi_debiaspl_check_meta(const void *handle, const kdi_statefile_reader *r,
                                         char *msg)
{
    uint64_t n, c;
    kd_status st = kdi_threshold_meta_shape(r, KDI_DEBIASPL_META, &n, &c, msg);
    if (st != KD_OK)
        return st;
    const unsigned char *m = r->meta;
    const double momentum = kdi_le_get_f64(m + 16), threshold = kdi_le_get_f64(m + 24),
                 tau = kdi_le_get_f64(m + 32);
    const uint64_t updates = kdi_le_get_u64(m + 40);
    if (!(momentum >= 0.0 && momentum <= 1.0) || !(threshold >= 0.0 && threshold <= 1.0) ||
        !(tau >= 0.0 && tau <= 10.0) || updates > (uint64_t)INT64_MAX)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (momentum %g, threshold %g, tau %g, updates %llu)",
                        r->path, momentum, threshold, tau, (unsigned long long)updates);
    return kdi_threshold_data_shape(handle, r, n, c, 0, 1, msg);
}

static const kdi_statefile_kind kdi_debiaspl_file = {
    kdi_debiaspl_magic, KDI_DEBIASPL_FORMAT_VERSION, kdi_debiaspl_check_meta};

static kd_status kdi_debiaspl_load(kd_threshold *th, const char *path, char *msg)
{
    kdi_debiaspl *s = kdi_dp(th);
    const int64_t C = th->num_classes;
    kdi_statefile_reader r;
    kd_status st = kdi_threshold_load_f64(th, &kdi_debiaspl_file, path, KDI_DEBIASPL_META, s->load,
                                          C, kdi_threshold_value_in_unit, &r, msg);
    if (st != KD_OK)
        return st;
    memcpy(s->ph, s->load, (size_t)C * sizeof(double));
    s->momentum = kdi_le_get_f64(r.meta + 16);
    s->threshold = kdi_le_get_f64(r.meta + 24);
    s->tau = kdi_le_get_f64(r.meta + 32);
    s->updates = (int64_t)kdi_le_get_u64(r.meta + 40);
    kdi_statefile_close(&r);
    kdi_debiaspl_ratio(th);
    return KD_OK;
}

const kdi_threshold_algo kdi_threshold_debiaspl = {
    .id = KD_THRESHOLD_DEBIASPL,
    .name = "debiaspl",
    .specs = kdi_debiaspl_specs,
    .num_specs = sizeof kdi_debiaspl_specs / sizeof kdi_debiaspl_specs[0],
    .create = kdi_debiaspl_create,
    .free_state = kdi_debiaspl_free,
    .reset = kdi_debiaspl_reset,
    .set_real = kdi_debiaspl_set_real,
    .set_int = NULL, /* no int parameter: the spec table refuses them */
    .get_real = kdi_debiaspl_get_real,
    .get_int = NULL,
    .update = NULL,  /* p_hat needs whole rows */
    .weights = NULL, /* the adjustment needs whole rows */
    .refuse_scalar = NULL,
    .update_probs = kdi_debiaspl_update_probs,
    .weights_probs = kdi_debiaspl_weights_probs,
    .labels_probs = kdi_debiaspl_labels_probs,
    .update_labeled_probs = NULL,
    .stats_size = kdi_debiaspl_stats_size,
    .local_stats = kdi_debiaspl_local_stats,
    .check_stats = kdi_debiaspl_check_stats,
    .update_stats = kdi_debiaspl_update_stats,
    .indices_optional = 1,
    .state_length = kdi_debiaspl_state_length,
    .copy_floats = kdi_debiaspl_copy_floats,
    .copy_ints = kdi_debiaspl_copy_ints,
    .save = kdi_debiaspl_save,
    .load = kdi_debiaspl_load,
};
