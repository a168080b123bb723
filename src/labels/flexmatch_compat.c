/* kdlib/flexmatch.h: the FlexMatch names of before the threshold handle
 * family, kept as a thin layer over kd_threshold (same behaviour, messages
 * with the kd_flexmatch_* names).  Deprecated; removed before 1.0. */
#include "kdlib/flexmatch.h"

#include "labels/threshold_algo.h"

#include <string.h>

static const kdi_threshold_names kdi_fm_names = {"kd_flexmatch", "KD_FLEXMATCH_PARAM_"};
static _Thread_local char kdi_fm_create_err[KDI_ERROR_SIZE];

/* A kd_flexmatch is a kd_threshold of the FlexMatch algorithm. */
static kd_threshold *kdi_th(const kd_flexmatch *fm) { return (kd_threshold *)(uintptr_t)fm; }

kd_status kd_flexmatch_create(kd_flexmatch **out, int64_t num_samples, int64_t num_classes)
{
    kd_threshold *th = NULL;
    kd_status st = kdi_threshold_create(out ? &th : NULL, KD_THRESHOLD_FLEXMATCH, num_samples,
                                        num_classes, kdi_fm_create_err, &kdi_fm_names);
    if (st != KD_OK)
        return st;
    /* The float default of before, bit for bit. */
    kdi_threshold_set(th, &kdi_fm_names, KD_THRESHOLD_PARAM_THRESHOLD, KDI_PT_REAL,
                      (double)KD_FLEXMATCH_DEFAULT_THRESHOLD, 0);
    *out = (kd_flexmatch *)(void *)th;
    return KD_OK;
}

void kd_flexmatch_destroy(kd_flexmatch *fm) { kd_threshold_destroy(kdi_th(fm)); }

kd_status kd_flexmatch_reset(kd_flexmatch *fm) { return kd_threshold_reset(kdi_th(fm)); }

kd_status kd_flexmatch_set_float(kd_flexmatch *fm, kd_flexmatch_param param, float value)
{
    return kdi_threshold_set(kdi_th(fm), &kdi_fm_names, param, KDI_PT_REAL, value, 0);
}

kd_status kd_flexmatch_set_int(kd_flexmatch *fm, kd_flexmatch_param param, int64_t value)
{
    return kdi_threshold_set(kdi_th(fm), &kdi_fm_names, param, KDI_PT_INT, 0.0, value);
}

kd_status kd_flexmatch_get_float(kd_flexmatch *fm, kd_flexmatch_param param, float *value)
{
    double v = 0.0;
    kd_status st =
        kdi_threshold_get(kdi_th(fm), &kdi_fm_names, param, KDI_PT_REAL, value ? &v : NULL, NULL);
    if (st == KD_OK)
        *value = (float)v;
    return st;
}

kd_status kd_flexmatch_get_int(kd_flexmatch *fm, kd_flexmatch_param param, int64_t *value)
{
    return kdi_threshold_get(kdi_th(fm), &kdi_fm_names, param, KDI_PT_INT, NULL, value);
}

kd_status kd_flexmatch_param_bounds(kd_flexmatch_param param, double *lower, double *upper)
{
    return kdi_threshold_bounds(KD_THRESHOLD_FLEXMATCH, param, lower, upper);
}

kd_status kd_flexmatch_update(kd_flexmatch *fm, int64_t n, const int64_t *indices,
                              const float *confidences, const int32_t *predictions)
{
    return kdi_threshold_update_as(kdi_th(fm), &kdi_fm_names, n, indices, confidences, predictions);
}

/* C floats of state `what`; the NULL check with this layer's names. */
static kd_status kdi_fm_floats(kd_flexmatch *fm, const char *fn, const char *arg,
                               kd_threshold_state what, float *out)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kd_threshold *th = kdi_th(fm);
    if (!out)
        return kdi_fail(th->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn, arg);
    return kd_threshold_get_floats(th, what, th->num_classes, out);
}

kd_status kd_flexmatch_thresholds(kd_flexmatch *fm, float *thresholds)
{
    return kdi_fm_floats(fm, "kd_flexmatch_thresholds", "thresholds",
                         KD_THRESHOLD_STATE_CLASS_THRESHOLDS, thresholds);
}

kd_status kd_flexmatch_learning_effect(kd_flexmatch *fm, float *beta)
{
    return kdi_fm_floats(fm, "kd_flexmatch_learning_effect", "beta",
                         KD_THRESHOLD_STATE_LEARNING_EFFECT, beta);
}

kd_status kd_flexmatch_counts(kd_flexmatch *fm, int64_t *sigma, int64_t *unused)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kd_threshold *th = kdi_th(fm);
    kdi_clear_error(th->err);
    kd_status st = KD_OK;
    if (sigma)
        st = kd_threshold_get_ints(th, KD_THRESHOLD_STATE_CLASS_COUNTS, th->num_classes, sigma);
    if (st == KD_OK && unused)
        st = kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UNUSED, 1, unused);
    return st;
}

kd_status kd_flexmatch_predictions(kd_flexmatch *fm, int32_t *predictions)
{
    if (!fm)
        return KD_ERR_NULL_POINTER;
    kd_threshold *th = kdi_th(fm);
    kdi_clear_error(th->err);
    if (!predictions)
        return kdi_fail(th->err, KD_ERR_NULL_POINTER,
                        "kd_flexmatch_predictions: predictions is NULL");
    memcpy(predictions, kdi_flexmatch_predictions_of(th),
           (size_t)th->num_samples * sizeof *predictions);
    return KD_OK;
}

kd_status kd_flexmatch_save(kd_flexmatch *fm, const char *path)
{
    return kdi_threshold_save_as(kdi_th(fm), &kdi_fm_names, path);
}

kd_status kd_flexmatch_load(kd_flexmatch *fm, const char *path)
{
    return kdi_threshold_load_as(kdi_th(fm), &kdi_fm_names, path);
}

const char *kd_flexmatch_last_error(const kd_flexmatch *fm)
{
    return fm ? kdi_th(fm)->err : kdi_fm_create_err;
}
