/* Enum-keyed parameters of the loss handle: one table says, for every
 * parameter, its type, range, its family (the kinds' descriptors in kinds.c
 * name the families they take) and where it lives. */
#include <math.h>
#include <stddef.h>

#include "losses/loss_internal.h"

enum { P_INT, P_REAL };
typedef struct {
    kd_param id;
    const char *name;
    int type;
    double lo, hi;
    int open_low;      /* lo itself is not accepted */
    unsigned families; /* KDI_P_* (loss_internal.h): the kinds that name one take it */
    int read_only;
    size_t offset; /* of the int32_t or double field in struct kd_loss */
} param_info;

#define F(field) offsetof(struct kd_loss, field)
static const param_info PARAMS[] = {
    {KD_PARAM_REDUCTION, "REDUCTION", P_INT, 0, 2, 0, KDI_P_EVERY, 0, F(reduction)},
    /* T >= 1e-6: 1/T (<= 1e6), T^2 and the scaled logits (x - max) / T stay
     * finite and normal in float for logits up to about 1e32 (below ~3e-39
     * 1/T itself overflows float) */
    {KD_PARAM_TEMPERATURE, "TEMPERATURE", P_REAL, 1e-6, 1e6, 0, KDI_P_TEMPERATURE, 0,
     F(temperature)},
    {KD_PARAM_ALPHA, "ALPHA", P_REAL, 0, 1, 0, KDI_P_DISTILL, 0, F(soft_weight)},
    {KD_PARAM_SOFT_WEIGHT, "SOFT_WEIGHT", P_REAL, 0, 1e6, 0, KDI_P_DISTILL, 0, F(soft_weight)},
    {KD_PARAM_HARD_WEIGHT, "HARD_WEIGHT", P_REAL, 0, 1e6, 0, KDI_P_DISTILL, 0, F(hard_weight)},
    {KD_PARAM_T2_SCALING, "T2_SCALING", P_INT, 0, 1, 0, KDI_P_KL, 0, F(t2_scaling)},
    {KD_PARAM_DIVERGENCE, "DIVERGENCE", P_INT, 0, 2, 0, KDI_P_KL, 0, F(divergence)},
    {KD_PARAM_JSD_BETA, "JSD_BETA", P_REAL, 0, 1, 0, KDI_P_KL, 0, F(jsd_beta)},
    {KD_PARAM_NORMALIZATION, "NORMALIZATION", P_INT, 0, 1, 0, KDI_P_DISTILL, 0, F(normalization)},
    {KD_PARAM_IGNORE_INDEX, "IGNORE_INDEX", P_INT, INT32_MIN, INT32_MAX, 0, KDI_P_LABEL, 0,
     F(ignore_index)},
    {KD_PARAM_LABEL_SMOOTHING, "LABEL_SMOOTHING", P_REAL, 0, 1, 0, KDI_P_LABEL, 0,
     F(label_smoothing)},
    {KD_PARAM_SMOOTHING_MODE, "SMOOTHING_MODE", P_INT, 0, 1, 0, KDI_P_LABEL, 0, F(smoothing_mode)},
    {KD_PARAM_LABEL_WEIGHT, "LABEL_WEIGHT", P_REAL, 0, 1, 0, KDI_P_SOFT_CE, 0, F(label_weight)},
    {KD_PARAM_THREADS, "THREADS", P_INT, 0, 4096, 0, KDI_P_EVERY, 0, F(threads)},
    {KD_PARAM_CHECK_FINITE, "CHECK_FINITE", P_INT, 0, 1, 0, KDI_P_EVERY, 0, F(check_finite)},
    {KD_PARAM_NUM_CLASSES, "NUM_CLASSES", P_INT, 1, INT32_MAX, 0, KDI_P_EVERY, 1, 0},
    {KD_PARAM_KIND, "KIND", P_INT, 1, INT32_MAX, 0, KDI_P_EVERY, 1, 0}, /* hi: kdi_kind_last() */
    {KD_PARAM_THRESHOLD, "THRESHOLD", P_REAL, 0, 1, 0, KDI_P_THRESH, 0, F(threshold)},
    {KD_PARAM_THRESHOLD_MODE, "THRESHOLD_MODE", P_INT, 0, 1, 0, KDI_P_THRESH, 0, F(threshold_mode)},
    {KD_PARAM_DISTANCE, "DISTANCE", P_INT, 0, 2, 0, KDI_P_DISTANCE, 0, F(distance)},
    {KD_PARAM_INPUT_TYPE, "INPUT_TYPE", P_INT, 0, 1, 0, KDI_P_INPUT_TYPE, 0, F(input_type)},
    {KD_PARAM_ETA_PRIME, "ETA_PRIME", P_REAL, 0, 1e6, 0, KDI_P_WORST_CASE, 0, F(eta_prime)},
    {KD_PARAM_UNLABELED_ROWS, "UNLABELED_ROWS", P_INT, -1, INT32_MAX, 0, KDI_P_WORST_CASE, 0,
     F(unlabeled_rows)},
};
#undef F

static const param_info *find(kd_param id)
{
    for (size_t i = 0; i < sizeof PARAMS / sizeof PARAMS[0]; i++)
        if (PARAMS[i].id == id)
            return &PARAMS[i];
    return NULL;
}

void kdi_loss_defaults(kd_loss *h);
void kdi_loss_defaults(kd_loss *h)
{
    h->reduction = KD_REDUCTION_MEAN;
    h->temperature = 1.0;
    h->soft_weight = 1.0;
    h->hard_weight = 0.0;
    h->t2_scaling = 1;
    h->divergence = KD_DIVERGENCE_FORWARD_KL;
    h->jsd_beta = 0.5;
    h->normalization = KD_NORMALIZE_BATCH;
    h->ignore_index = -100;
    h->label_smoothing = 0.0;
    h->smoothing_mode = KD_SMOOTHING_UNIFORM;
    h->label_weight = 0.7;
    h->threads = 1;
    h->check_finite = 0;
    h->threshold = 0.95;
    h->threshold_mode = KD_THRESHOLD_STRICT;
    h->distance = KD_DISTANCE_L2;
    h->input_type = KD_INPUT_LOGITS;
    h->eta_prime = 1.0;
    h->unlabeled_rows = -1;
}

/* Look up a parameter for a handle and the wanted type. */
static kd_status lookup(const kd_loss *h, char *err, const char *fn, kd_param id, int type,
                        int writing, const param_info **out)
{
    const param_info *p = find(id);
    if (!p)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: param = %d is not a KD_PARAM_* parameter", fn,
                        (int)id);
    if (!(p->families & h->kd->params))
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: KD_PARAM_%s does not apply to loss kind %d",
                        fn, p->name, (int)h->kind);
    if (p->type != type)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: KD_PARAM_%s is %s; use kd_loss_%s_%s", fn,
                        p->name, p->type == P_INT ? "an integer" : "a real number",
                        writing ? "set" : "get", p->type == P_INT ? "int" : "float");
    if (writing && p->read_only)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: KD_PARAM_%s is read only", fn, p->name);
    *out = p;
    return KD_OK;
}

static int in_range(const param_info *p, double v)
{
    if (!(v >= p->lo && v <= p->hi)) /* also rejects NaN */
        return 0;
    return !(p->open_low && v == p->lo);
}

static kd_status loss_set_int_locked(kd_loss *h, kd_param param, int64_t value)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    const param_info *p = NULL;
    kd_status st = lookup(h, h->err, "kd_loss_set_int", param, P_INT, 1, &p);
    if (st)
        return st;
    if (!in_range(p, (double)value))
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "kd_loss_set_int: KD_PARAM_%s = %lld is outside [%.0f, %.0f]", p->name,
                        (long long)value, p->lo, p->hi);
    if (param == KD_PARAM_REDUCTION && value > h->kd->max_reduction)
        return kdi_fail(
            h->err, KD_ERR_INVALID_ARGUMENT,
            "kd_loss_set_int: KD_PARAM_REDUCTION = %lld is not supported by loss kind %d (at most %lld)",
            (long long)value, (int)h->kind, (long long)h->kd->max_reduction);
    *(int32_t *)((char *)h + p->offset) = (int32_t)value;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_set_int(kd_loss *h, kd_param param, int64_t value)
{
    KDI_GUARDED(h, loss_set_int_locked(h, param, value));
}

static kd_status loss_set_float_locked(kd_loss *h, kd_param param, double value)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    const param_info *p = NULL;
    kd_status st = lookup(h, h->err, "kd_loss_set_float", param, P_REAL, 1, &p);
    if (st)
        return st;
    if (!isfinite(value) || !in_range(p, value))
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "kd_loss_set_float: KD_PARAM_%s = %.9g is outside %s%g, %g]", p->name,
                        value, p->open_low ? "(" : "[", p->lo, p->hi);
    *(double *)((char *)h + p->offset) = value;
    if (param == KD_PARAM_ALPHA)
        h->hard_weight = 1.0 - value;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_set_float(kd_loss *h, kd_param param, double value)
{
    KDI_GUARDED(h, loss_set_float_locked(h, param, value));
}

/* The getters take a const handle but, as every failing call, leave their
 * message in it: the handle is never a const object (kd_loss_create
 * allocates it), so writing its message through a cast is defined. */
static kd_status loss_get_int_locked(kd_loss *h, kd_param param, int64_t *value)
{
    if (!value)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "kd_loss_get_int: value is NULL");
    const param_info *p = NULL;
    kd_status st = lookup(h, h->err, "kd_loss_get_int", param, P_INT, 0, &p);
    if (st)
        return st;
    if (param == KD_PARAM_NUM_CLASSES)
        *value = h->c;
    else if (param == KD_PARAM_KIND)
        *value = h->kind;
    else
        *value = *(const int32_t *)((const char *)h + p->offset);
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_get_int(const kd_loss *h, kd_param param, int64_t *value)
{
    kd_loss *m = (kd_loss *)(uintptr_t)h;
    KDI_GUARDED(m, loss_get_int_locked(m, param, value));
}

static kd_status loss_get_float_locked(kd_loss *h, kd_param param, double *value)
{
    if (!value)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "kd_loss_get_float: value is NULL");
    const param_info *p = NULL;
    kd_status st = lookup(h, h->err, "kd_loss_get_float", param, P_REAL, 0, &p);
    if (st)
        return st;
    *value = *(const double *)((const char *)h + p->offset);
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_get_float(const kd_loss *h, kd_param param, double *value)
{
    kd_loss *m = (kd_loss *)(uintptr_t)h;
    KDI_GUARDED(m, loss_get_float_locked(m, param, value));
}

kd_status kd_loss_param_bounds(kd_loss_kind kind, kd_param param, double *lo, double *hi,
                               int32_t *is_open_low)
{
    if (!lo || !hi || !is_open_low)
        return KD_ERR_NULL_POINTER;
    const param_info *p = find(param);
    const kdi_kind *kd = kdi_kind_of((int)kind);
    if (!p || !kd || !(p->families & kd->params))
        return KD_ERR_UNSUPPORTED;
    *lo = p->lo;
    *hi = p->hi;
    if (param == KD_PARAM_REDUCTION)
        *hi = (double)kd->max_reduction;
    if (param == KD_PARAM_KIND)
        *hi = (double)kdi_kind_last();
    *is_open_low = p->open_low;
    return KD_OK;
}
