/* AdaMatch, an algorithm of the threshold handle family (kdlib/threshold.h;
 * formulas and deviations from USB in docs/labels.md, "AdaMatch").
 *
 * Relative confidence threshold with distribution alignment to the labelled
 * predictions (USB's AdaMatchThresholdingHook and DistAlignEMAHook with
 * p_target_type = 'model'):
 *   labelled rows l_k:    p_target = m p_target + (1 - m) mean_k l_k   (from 1/C)
 *                         kappa    = mean_k max_j l_kj                (that batch's)
 *   unlabelled rows q_k:  p_model  = mean_k q_k (first batch), then
 *                                    m p_model + (1 - m) mean_k q_k
 *   weights:              a_kj = q_kj r_j / sum_i q_ki r_i,
 *                         r_j = (p_target_j + 1e-6) / (p_model_j + 1e-6)
 *                         w_k = [max_j a_kj >= tau kappa],
 *                         pseudo-label argmax_j a_kj.
 * Without DIST_ALIGN, a_k = q_k.  The state is kept in double. */
#include "labels/threshold_algo.h"

#include <stdlib.h>
#include <string.h>

#define KDI_ADAMATCH_FORMAT_VERSION 1u
#define KDI_ADAMATCH_META 56u

typedef struct {
    double *pm;              /* C: p_model */
    double *pt;              /* C: p_target */
    double *ratio;           /* C: r_j */
    double *sum;             /* C: scratch of the updates */
    double *load;            /* 1 + 2C: load reads here first, so a failed load changes nothing */
    double kappa;            /* mean max of the last labelled batch; 1 before any */
    int64_t updates;         /* non-empty unlabelled updates (p_model) */
    int64_t labeled_updates; /* non-empty labelled updates (p_target, kappa) */
    double momentum;
    double tau;
    int32_t dist_align;
} kdi_adamatch;

static kdi_adamatch *kdi_am(const kd_threshold *th) { return th->state; }

static void kdi_adamatch_free(void *state)
{
    kdi_adamatch *s = state;
    if (!s)
        return;
    free(s->pm); /* one block */
    free(s);
}

static void kdi_adamatch_ratio(kd_threshold *th)
{
    kdi_adamatch *s = kdi_am(th);
    kdi_threshold_align_ratio(th->num_classes, s->pt, s->pm, s->ratio);
}

static void kdi_adamatch_reset(kd_threshold *th)
{
    kdi_adamatch *s = kdi_am(th);
    const double u = 1.0 / (double)th->num_classes;
    for (int64_t c = 0; c < th->num_classes; c++)
        s->pm[c] = s->pt[c] = u;
    s->kappa = 1.0;
    s->updates = s->labeled_updates = 0;
    kdi_adamatch_ratio(th);
}

static int kdi_adamatch_create(kd_threshold *th)
{
    const size_t c = (size_t)th->num_classes;
    kdi_adamatch *s = calloc(1, sizeof *s);
    double *block = s ? malloc((6 * c + 1) * sizeof *block) : NULL;
    if (!block) {
        free(s);
        return 0;
    }
    s->pm = block;
    s->pt = block + c;
    s->ratio = block + 2 * c;
    s->sum = block + 3 * c;
    s->load = block + 4 * c;
    s->momentum = 0.999; /* USB's ema_p */
    s->tau = 0.95;       /* USB's p_cutoff */
    s->dist_align = 1;
    th->state = s;
    kdi_adamatch_reset(th);
    return 1;
}

/* ---- parameters ----------------------------------------------------------- */

static const kdi_param_spec kdi_adamatch_specs[] = {
    {KD_THRESHOLD_PARAM_THRESHOLD, "THRESHOLD", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_MOMENTUM, "MOMENTUM", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_THRESHOLD_PARAM_DIST_ALIGN, "DIST_ALIGN", KDI_PT_INT, 1, 0, 1},
};

static void kdi_adamatch_set_real(kd_threshold *th, int32_t key, double value)
{
    kdi_adamatch *s = kdi_am(th);
    if (key == KD_THRESHOLD_PARAM_MOMENTUM)
        s->momentum = value;
    else
        s->tau = value;
}

static double kdi_adamatch_get_real(const kd_threshold *th, int32_t key)
{
    const kdi_adamatch *s = kdi_am(th);
    return key == KD_THRESHOLD_PARAM_MOMENTUM ? s->momentum : s->tau;
}

/* DIST_ALIGN is the only int parameter. */
static void kdi_adamatch_set_int(kd_threshold *th, int32_t key, int64_t value)
{
    (void)key;
    kdi_am(th)->dist_align = (int32_t)value;
}

static int64_t kdi_adamatch_get_int(const kd_threshold *th, int32_t key)
{
    (void)key;
    return kdi_am(th)->dist_align;
}

static const char *kdi_adamatch_refuse_scalar(const kd_threshold *th)
{
    return kdi_am(th)->dist_align ? "with DIST_ALIGN = 1 aligns whole probability rows" : NULL;
}

/* ---- updates and weights -------------------------------------------------- */

/* The EMA steps of a batch of dn > 0 labelled rows with sum of maxima
 * max_sum and column sums sum, and of unlabelled rows with column sums. */
static void kdi_adamatch_apply_labeled(kd_threshold *th, double dn, double max_sum,
                                       const double *sum)
{
    kdi_adamatch *s = kdi_am(th);
    s->kappa = max_sum / dn;
    for (int64_t j = 0; j < th->num_classes; j++)
        s->pt[j] = kdi_threshold_ema(s->pt[j], s->momentum, sum[j] / dn);
    s->labeled_updates++;
    kdi_adamatch_ratio(th);
}

static void kdi_adamatch_apply(kd_threshold *th, double dn, const double *sum)
{
    kdi_adamatch *s = kdi_am(th);
    for (int64_t j = 0; j < th->num_classes; j++) {
        const double mean = sum[j] / dn;
        s->pm[j] = s->updates == 0 ? mean : kdi_threshold_ema(s->pm[j], s->momentum, mean);
    }
    s->updates++;
    kdi_adamatch_ratio(th);
}

static double kdi_adamatch_max_sum(int64_t n, int64_t C, const float *probs, int64_t ld)
{
    double max_sum = 0.0;
    for (int64_t k = 0; k < n; k++) {
        int32_t a;
        max_sum += kdi_threshold_row_max(probs + k * ld, C, &a);
    }
    return max_sum;
}

static void kdi_adamatch_update_labeled_probs(kd_threshold *th, int64_t n, const float *probs,
                                              int64_t ld)
{
    kdi_adamatch *s = kdi_am(th);
    const int64_t C = th->num_classes;
    const double max_sum = kdi_adamatch_max_sum(n, C, probs, ld);
    kdi_threshold_column_sums(n, C, probs, ld, s->sum);
    kdi_adamatch_apply_labeled(th, (double)n, max_sum, s->sum);
}

static void kdi_adamatch_update_probs(kd_threshold *th, int64_t n, const float *probs, int64_t ld,
                                      const int64_t *indices)
{
    (void)indices;
    kdi_adamatch *s = kdi_am(th);
    kdi_threshold_column_sums(n, th->num_classes, probs, ld, s->sum);
    kdi_adamatch_apply(th, (double)n, s->sum);
}

/* ---- split statistics ------------------------------------------------------ */
/* Unlabelled n and column sums (C); labelled n, sum of maxima and column sums (C). */

static int64_t kdi_adamatch_stats_size(const kd_threshold *th, const char **why)
{
    (void)why;
    return 3 + 2 * th->num_classes;
}

static void kdi_adamatch_local_stats(const kd_threshold *th, int64_t n, const float *probs,
                                     int64_t ld, double *stats)
{
    const int64_t C = th->num_classes;
    stats[0] = (double)n;
    kdi_threshold_column_sums(n, C, probs, ld, stats + 1);
    for (int64_t i = 1 + C; i < 3 + 2 * C; i++)
        stats[i] = 0.0; /* no labelled rows until local_labeled_stats */
}

static void kdi_adamatch_local_labeled_stats(const kd_threshold *th, int64_t n, const float *probs,
                                             int64_t ld, double *stats)
{
    const int64_t C = th->num_classes;
    stats[1 + C] = (double)n;
    stats[2 + C] = kdi_adamatch_max_sum(n, C, probs, ld);
    kdi_threshold_column_sums(n, C, probs, ld, stats + 3 + C);
}

static kd_status kdi_adamatch_check_stats(const kd_threshold *th, const double *stats, char *err,
                                          const char *fn)
{
    const int64_t C = th->num_classes;
    kd_status st = kdi_threshold_stats_count(err, fn, stats, 0);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 1, C, stats[0], NULL);
    if (st == KD_OK)
        st = kdi_threshold_stats_count(err, fn, stats, 1 + C);
    if (st == KD_OK)
        st = kdi_threshold_stats_range(err, fn, stats, 2 + C, 1 + C, stats[1 + C], NULL);
    return st;
}

/* USB's order: the labelled rows, then the unlabelled ones. */
static void kdi_adamatch_update_stats(kd_threshold *th, const double *stats)
{
    const int64_t C = th->num_classes;
    if (stats[1 + C] > 0.0)
        kdi_adamatch_apply_labeled(th, stats[1 + C], stats[2 + C], stats + 3 + C);
    if (stats[0] > 0.0)
        kdi_adamatch_apply(th, stats[0], stats + 1);
}

/* The row's confidence and class, aligned with DIST_ALIGN. */
static double kdi_adamatch_item(const kdi_adamatch *s, const float *row, int64_t c, int32_t *cls)
{
    return s->dist_align ? kdi_threshold_aligned_max(row, c, s->ratio, cls)
                         : kdi_threshold_row_max(row, c, cls);
}

static void kdi_adamatch_weights_probs(const kd_threshold *th, int64_t n, const float *probs,
                                       int64_t ld, float *weights)
{
    const kdi_adamatch *s = kdi_am(th);
    const double cut = s->tau * s->kappa;
    for (int64_t k = 0; k < n; k++) {
        int32_t cls;
        weights[k] =
            kdi_adamatch_item(s, probs + k * ld, th->num_classes, &cls) >= cut ? 1.0f : 0.0f;
    }
}

static void kdi_adamatch_labels_probs(const kd_threshold *th, int64_t n, const float *probs,
                                      int64_t ld, int32_t *labels)
{
    const kdi_adamatch *s = kdi_am(th);
    for (int64_t k = 0; k < n; k++)
        (void)kdi_adamatch_item(s, probs + k * ld, th->num_classes, &labels[k]);
}

/* DIST_ALIGN = 0: the confidences against tau kappa. */
static void kdi_adamatch_weights(const kd_threshold *th, int64_t n, const float *confidences,
                                 const int32_t *predictions, float *weights)
{
    (void)predictions;
    const kdi_adamatch *s = kdi_am(th);
    const double cut = s->tau * s->kappa;
    for (int64_t k = 0; k < n; k++)
        weights[k] = (double)confidences[k] >= cut ? 1.0f : 0.0f;
}

/* ---- state arrays --------------------------------------------------------- */

static int64_t kdi_adamatch_state_length(const kd_threshold *th, kd_threshold_state what,
                                         int is_int)
{
    switch (what) {
    case KD_THRESHOLD_STATE_CLASS_PROBS:
    case KD_THRESHOLD_STATE_TARGET_PROBS:
        return is_int ? 0 : th->num_classes;
    case KD_THRESHOLD_STATE_GLOBAL_THRESHOLD:
    case KD_THRESHOLD_STATE_LABELED_CONFIDENCE:
        return is_int ? 0 : 1;
    case KD_THRESHOLD_STATE_UPDATES:
    case KD_THRESHOLD_STATE_LABELED_UPDATES:
        return is_int ? 1 : 0;
    default:
        return 0;
    }
}

static void kdi_adamatch_copy_floats(const kd_threshold *th, kd_threshold_state what, float *out)
{
    const kdi_adamatch *s = kdi_am(th);
    if (what == KD_THRESHOLD_STATE_GLOBAL_THRESHOLD) {
        out[0] = (float)(s->tau * s->kappa);
    } else if (what == KD_THRESHOLD_STATE_LABELED_CONFIDENCE) {
        out[0] = (float)s->kappa;
    } else {
        const double *src = what == KD_THRESHOLD_STATE_CLASS_PROBS ? s->pm : s->pt;
        for (int64_t c = 0; c < th->num_classes; c++)
            out[c] = (float)src[c];
    }
}

static void kdi_adamatch_copy_ints(const kd_threshold *th, kd_threshold_state what, int64_t *out)
{
    const kdi_adamatch *s = kdi_am(th);
    out[0] = what == KD_THRESHOLD_STATE_UPDATES ? s->updates : s->labeled_updates;
}

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian, 56 bytes):
 *    0  8  N (num_samples)                u64
 *    8  8  C (num_classes)                u64
 *   16  8  momentum                       f64
 *   24  8  threshold tau                  f64
 *   32  4  dist_align (0/1)               u32
 *   36  4  reserved, 0                    u32
 *   40  8  number of unlabelled updates   u64
 *   48  8  number of labelled updates     u64
 * Data section: kappa, then p_model (C), then p_target (C), f64 each.
 */

static const char kdi_adamatch_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'A', 'D',
                                                                  'A', 'M', 'T', '\0'};

static kd_status kdi_adamatch_save(const kd_threshold *th, const char *path, char *err)
{
    const kdi_adamatch *s = kdi_am(th);
    const uint64_t C = (uint64_t)th->num_classes;
    unsigned char meta[KDI_ADAMATCH_META];
    kdi_le_put_u64(meta + 0, (uint64_t)th->num_samples);
    kdi_le_put_u64(meta + 8, C);
    kdi_le_put_f64(meta + 16, s->momentum);
    kdi_le_put_f64(meta + 24, s->tau);
    kdi_le_put_u32(meta + 32, (uint32_t)s->dist_align);
    kdi_le_put_u32(meta + 36, 0);
    kdi_le_put_u64(meta + 40, (uint64_t)s->updates);
    kdi_le_put_u64(meta + 48, (uint64_t)s->labeled_updates);
    kdi_statefile_chunk mchunk = {meta, sizeof meta, 1};
    kdi_statefile_chunk data[3] = {{&s->kappa, sizeof s->kappa, 8},
                                   {s->pm, C * sizeof(double), 8},
                                   {s->pt, C * sizeof(double), 8}};
    return kdi_statefile_write(path, kdi_adamatch_magic, KDI_ADAMATCH_FORMAT_VERSION, &mchunk, 1,
                               data, 3, err);
}

static kd_status kdi_adamatch_check_meta(const void *handle, const kdi_statefile_reader *r,
                                         char *msg)
{
    uint64_t n, c;
    kd_status st = kdi_threshold_meta_shape(r, KDI_ADAMATCH_META, &n, &c, msg);
    if (st != KD_OK)
        return st;
    const unsigned char *m = r->meta;
    const double momentum = kdi_le_get_f64(m + 16), tau = kdi_le_get_f64(m + 24);
    const uint32_t dist_align = kdi_le_get_u32(m + 32);
    const uint64_t updates = kdi_le_get_u64(m + 40), labeled = kdi_le_get_u64(m + 48);
    if (!(momentum >= 0.0 && momentum <= 1.0) || !(tau >= 0.0 && tau <= 1.0) || dist_align > 1 ||
        updates > (uint64_t)INT64_MAX || labeled > (uint64_t)INT64_MAX)
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (momentum %g, threshold %g, dist-align %u, "
                        "updates %llu / %llu)",
                        r->path, momentum, tau, (unsigned)dist_align, (unsigned long long)updates,
                        (unsigned long long)labeled);
    return kdi_threshold_data_shape(handle, r, n, c, 1, 2, msg);
}

static const kdi_statefile_kind kdi_adamatch_file = {
    kdi_adamatch_magic, KDI_ADAMATCH_FORMAT_VERSION, kdi_adamatch_check_meta};

static kd_status kdi_adamatch_load(kd_threshold *th, const char *path, char *msg)
{
    kdi_adamatch *s = kdi_am(th);
    const int64_t C = th->num_classes;
    kdi_statefile_reader r;
    kd_status st = kdi_threshold_load_f64(th, &kdi_adamatch_file, path, KDI_ADAMATCH_META, s->load,
                                          1 + 2 * C, kdi_threshold_value_in_unit, &r, msg);
    if (st != KD_OK)
        return st;
    s->kappa = s->load[0];
    memcpy(s->pm, s->load + 1, (size_t)C * sizeof(double));
    memcpy(s->pt, s->load + 1 + C, (size_t)C * sizeof(double));
    s->momentum = kdi_le_get_f64(r.meta + 16);
    s->tau = kdi_le_get_f64(r.meta + 24);
    s->dist_align = (int32_t)kdi_le_get_u32(r.meta + 32);
    s->updates = (int64_t)kdi_le_get_u64(r.meta + 40);
    s->labeled_updates = (int64_t)kdi_le_get_u64(r.meta + 48);
    kdi_statefile_close(&r);
    kdi_adamatch_ratio(th);
    return KD_OK;
}

const kdi_threshold_algo kdi_threshold_adamatch = {
    .id = KD_THRESHOLD_ADAMATCH,
    .name = "adamatch",
    .specs = kdi_adamatch_specs,
    .num_specs = sizeof kdi_adamatch_specs / sizeof kdi_adamatch_specs[0],
    .create = kdi_adamatch_create,
    .free_state = kdi_adamatch_free,
    .reset = kdi_adamatch_reset,
    .set_real = kdi_adamatch_set_real,
    .set_int = kdi_adamatch_set_int,
    .get_real = kdi_adamatch_get_real,
    .get_int = kdi_adamatch_get_int,
    .update = NULL, /* p_model needs whole rows */
    .weights = kdi_adamatch_weights,
    .refuse_scalar = kdi_adamatch_refuse_scalar,
    .update_probs = kdi_adamatch_update_probs,
    .weights_probs = kdi_adamatch_weights_probs,
    .labels_probs = kdi_adamatch_labels_probs,
    .update_labeled_probs = kdi_adamatch_update_labeled_probs,
    .stats_size = kdi_adamatch_stats_size,
    .local_stats = kdi_adamatch_local_stats,
    .local_labeled_stats = kdi_adamatch_local_labeled_stats,
    .check_stats = kdi_adamatch_check_stats,
    .update_stats = kdi_adamatch_update_stats,
    .indices_optional = 1,
    .state_length = kdi_adamatch_state_length,
    .copy_floats = kdi_adamatch_copy_floats,
    .copy_ints = kdi_adamatch_copy_ints,
    .save = kdi_adamatch_save,
    .load = kdi_adamatch_load,
};
