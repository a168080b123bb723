/* The threshold handle family (include/kdlib/threshold.h): what every
 * algorithm shares.  An algorithm is a kdi_threshold_algo (threshold_algo.h). */
#include "labels/threshold_algo.h"

#include "core/bufcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kdi_threshold_algo *const kdi_threshold_algos[] = {
    &kdi_threshold_flexmatch, &kdi_threshold_freematch, &kdi_threshold_softmatch,
    &kdi_threshold_adamatch,  &kdi_threshold_dash,      &kdi_threshold_debiaspl};

const kdi_threshold_names kdi_threshold_own_names = {"kd_threshold", "KD_THRESHOLD_PARAM_"};

/* kd_threshold_create has no handle to hold its message. */
static _Thread_local char kdi_threshold_create_err[KDI_ERROR_SIZE];

static const kdi_threshold_algo *kdi_threshold_algo_of(kd_threshold_algorithm id)
{
    for (size_t i = 0; i < sizeof kdi_threshold_algos / sizeof kdi_threshold_algos[0]; i++)
        if (kdi_threshold_algos[i]->id == id)
            return kdi_threshold_algos[i];
    return NULL;
}

/* Read-only parameters of every algorithm. */
static const kdi_param_spec kdi_threshold_common[] = {
    {KD_THRESHOLD_PARAM_NUM_SAMPLES, "NUM_SAMPLES", KDI_PT_INT, 0, 0, 0},
    {KD_THRESHOLD_PARAM_NUM_CLASSES, "NUM_CLASSES", KDI_PT_INT, 0, 0, 0},
    {KD_THRESHOLD_PARAM_ALGORITHM, "ALGORITHM", KDI_PT_INT, 0, 0, 0},
};

/* The table holding key: the algorithm's own, else the common one. */
static kdi_param_table kdi_threshold_table(const kdi_threshold_algo *a, const char *prefix,
                                           int32_t key)
{
    kdi_param_table t = {prefix, "the _set_int / _get_int and _set_float / _get_float functions",
                         a->specs, a->num_specs};
    if (!kdi_param_find(&t, key)) {
        t.specs = kdi_threshold_common;
        t.count = sizeof kdi_threshold_common / sizeof kdi_threshold_common[0];
    }
    return t;
}

/* ---- life cycle ----------------------------------------------------------- */

kd_status kdi_threshold_create(kd_threshold **out, kd_threshold_algorithm algorithm, int64_t n,
                               int64_t c, char *err, const kdi_threshold_names *nm)
{
    kdi_clear_error(err);
    if (!out)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s_create: out is NULL", nm->prefix);
    const kdi_threshold_algo *a = kdi_threshold_algo_of(algorithm);
    if (!a)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s_create: algorithm = %d is not a %s",
                        nm->prefix, (int)algorithm, "kd_threshold_algorithm (kdlib/threshold.h)");
    if (n < 1 || n > KD_THRESHOLD_MAX_SAMPLES)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "%s_create: num_samples = %lld is outside [1, 2^40]", nm->prefix,
                        (long long)n);
    if (c < 1 || c > KD_THRESHOLD_MAX_CLASSES)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "%s_create: num_classes = %lld is outside [1, 2^30]", nm->prefix,
                        (long long)c);
    kd_threshold *h = calloc(1, sizeof *h);
    if (h) {
        h->algo = a;
        h->num_samples = n;
        h->num_classes = c;
    }
    if (!h || !a->create(h)) {
        kd_threshold_destroy(h);
        return kdi_fail(err, KD_ERR_OUT_OF_MEMORY,
                        "%s_create: out of memory for %lld samples and %lld classes", nm->prefix,
                        (long long)n, (long long)c);
    }
    *out = h;
    return KD_OK;
}

kd_status kd_threshold_create(kd_threshold **out, kd_threshold_algorithm algorithm,
                              int64_t num_samples, int64_t num_classes)
{
    return kdi_threshold_create(out, algorithm, num_samples, num_classes, kdi_threshold_create_err,
                                &kdi_threshold_own_names);
}

void kd_threshold_destroy(kd_threshold *th)
{
    if (!th)
        return;
    th->algo->free_state(th->state);
    free(th);
}

kd_status kd_threshold_reset(kd_threshold *th)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    th->algo->reset(th);
    return KD_OK;
}

const char *kd_threshold_algorithm_name(kd_threshold_algorithm algorithm)
{
    const kdi_threshold_algo *a = kdi_threshold_algo_of(algorithm);
    return a ? a->name : NULL;
}

const char *kd_threshold_last_error(const kd_threshold *th)
{
    return th ? th->err : kdi_threshold_create_err;
}

/* ---- parameters ----------------------------------------------------------- */

kd_status kdi_threshold_set(kd_threshold *th, const kdi_threshold_names *nm, int32_t key, int type,
                            double real, int64_t integer)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    char fn[48];
    snprintf(fn, sizeof fn, "%s_set_%s", nm->prefix, type == KDI_PT_REAL ? "float" : "int");
    kdi_param_table t = kdi_threshold_table(th->algo, nm->params, key);
    const kdi_param_spec *s;
    kd_status st = kdi_param_check(&t, th->err, fn, key, type, 1, &s);
    if (st == KD_OK)
        st = type == KDI_PT_REAL ? kdi_param_check_real(&t, s, th->err, fn, real)
                                 : kdi_param_check_int(&t, s, th->err, fn, integer);
    if (st != KD_OK)
        return st;
    if (type == KDI_PT_REAL)
        th->algo->set_real(th, key, real);
    else
        th->algo->set_int(th, key, integer);
    return KD_OK;
}

kd_status kdi_threshold_get(const kd_threshold *th, const kdi_threshold_names *nm, int32_t key,
                            int type, double *real, int64_t *integer)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    char fn[48];
    snprintf(fn, sizeof fn, "%s_get_%s", nm->prefix, type == KDI_PT_REAL ? "float" : "int");
    kdi_param_table t = kdi_threshold_table(th->algo, nm->params, key);
    const kdi_param_spec *s;
    kd_status st = kdi_param_check(&t, err, fn, key, type, 0, &s);
    if (st != KD_OK)
        return st;
    if (type == KDI_PT_REAL ? !real : !integer)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s: value is NULL", fn);
    if (type == KDI_PT_REAL)
        *real = th->algo->get_real(th, key);
    else if (key == KD_THRESHOLD_PARAM_NUM_SAMPLES)
        *integer = th->num_samples;
    else if (key == KD_THRESHOLD_PARAM_NUM_CLASSES)
        *integer = th->num_classes;
    else if (key == KD_THRESHOLD_PARAM_ALGORITHM)
        *integer = th->algo->id;
    else
        *integer = th->algo->get_int(th, key);
    return KD_OK;
}

kd_status kdi_threshold_bounds(kd_threshold_algorithm algorithm, int32_t key, double *lower,
                               double *upper)
{
    const kdi_threshold_algo *a = kdi_threshold_algo_of(algorithm);
    if (!a)
        return (lower && upper) ? KD_ERR_UNSUPPORTED : KD_ERR_NULL_POINTER;
    kdi_param_table t = kdi_threshold_table(a, "", key);
    return kdi_param_bounds(&t, key, lower, upper);
}

kd_status kd_threshold_set_float(kd_threshold *th, kd_threshold_param param, double value)
{
    return kdi_threshold_set(th, &kdi_threshold_own_names, param, KDI_PT_REAL, value, 0);
}

kd_status kd_threshold_set_int(kd_threshold *th, kd_threshold_param param, int64_t value)
{
    return kdi_threshold_set(th, &kdi_threshold_own_names, param, KDI_PT_INT, 0.0, value);
}

kd_status kd_threshold_get_float(const kd_threshold *th, kd_threshold_param param, double *value)
{
    return kdi_threshold_get(th, &kdi_threshold_own_names, param, KDI_PT_REAL, value, NULL);
}

kd_status kd_threshold_get_int(const kd_threshold *th, kd_threshold_param param, int64_t *value)
{
    return kdi_threshold_get(th, &kdi_threshold_own_names, param, KDI_PT_INT, NULL, value);
}

kd_status kd_threshold_param_bounds(kd_threshold_algorithm algorithm, kd_threshold_param param,
                                    double *lower, double *upper)
{
    return kdi_threshold_bounds(algorithm, param, lower, upper);
}

/* ---- update and weights --------------------------------------------------- */

/* Checks of a batch shared by update (with indices) and weights (without). */
static kd_status kdi_threshold_check_batch(const kd_threshold *th, char *err, const char *fn,
                                           int64_t n, const int64_t *indices, int need_indices,
                                           const float *confidences, const int32_t *predictions)
{
    if (n < 0)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (n == 0)
        return KD_OK;
    if ((need_indices && !indices) || !confidences || !predictions)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        (need_indices && !indices) ? "indices"
                        : !confidences             ? "confidences"
                                                   : "predictions");
    for (int64_t k = 0; k < n; k++) {
        if (need_indices && (indices[k] < 0 || indices[k] >= th->num_samples))
            return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                            "%s: indices[%lld] = %lld is outside [0, %lld)", fn, (long long)k,
                            (long long)indices[k], (long long)th->num_samples);
        if (predictions[k] < 0 || predictions[k] >= th->num_classes)
            return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                            "%s: predictions[%lld] = %d is outside [0, %lld)", fn, (long long)k,
                            (int)predictions[k], (long long)th->num_classes);
        if (isnan(confidences[k]))
            return kdi_fail(err, KD_ERR_NOT_FINITE, "%s: confidences[%lld] is NaN", fn,
                            (long long)k);
    }
    return KD_OK;
}

/* The confidence entry points of an algorithm that needs probability rows. */
static kd_status kdi_threshold_check_scalar(const kd_threshold *th, char *err, const char *fn,
                                            int has_hook)
{
    const char *why = !has_hook                 ? "needs whole probability rows"
                      : th->algo->refuse_scalar ? th->algo->refuse_scalar(th)
                                                : NULL;
    if (why)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: %s %s: use %s_probs", fn, th->algo->name, why,
                        fn);
    return KD_OK;
}

kd_status kdi_threshold_update_as(kd_threshold *th, const kdi_threshold_names *nm, int64_t n,
                                  const int64_t *indices, const float *confidences,
                                  const int32_t *predictions)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    char fn[48];
    snprintf(fn, sizeof fn, "%s_update", nm->prefix);
    kd_status st =
        kdi_threshold_check_batch(th, th->err, fn, n, indices, 1, confidences, predictions);
    if (st == KD_OK)
        st = kdi_threshold_check_scalar(th, th->err, fn, th->algo->update != NULL);
    if (st == KD_OK && n > 0)
        th->algo->update(th, n, indices, confidences, predictions);
    return st;
}

kd_status kd_threshold_update(kd_threshold *th, int64_t n, const int64_t *indices,
                              const float *confidences, const int32_t *predictions)
{
    return kdi_threshold_update_as(th, &kdi_threshold_own_names, n, indices, confidences,
                                   predictions);
}

kd_status kd_threshold_weights(const kd_threshold *th, int64_t n, const float *confidences,
                               const int32_t *predictions, float *weights)
{
    static const char fn[] = "kd_threshold_weights";
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    kd_status st = kdi_threshold_check_batch(th, err, fn, n, NULL, 0, confidences, predictions);
    if (st == KD_OK)
        st = kdi_threshold_check_scalar(th, err, fn, th->algo->weights != NULL);
    if (st == KD_OK && n > 0 && !weights)
        st = kdi_fail(err, KD_ERR_NULL_POINTER, "%s: weights is NULL", fn);
    if (st == KD_OK && n > 0) {
        const kdi_buf b[3] = {
            kdi_buf_vector("confidences", -1, confidences, n, sizeof(float), 0),
            kdi_buf_vector("predictions", -1, predictions, n, sizeof(int32_t), 0),
            kdi_buf_vector("weights", -1, weights, n, sizeof(float), 1),
        };
        st = kdi_check_aliasing(err, KDI_ERROR_SIZE, fn, b, 3);
    }
    if (st == KD_OK && n > 0)
        th->algo->weights(th, n, confidences, predictions, weights);
    return st;
}

/* ---- probability rows ----------------------------------------------------- */

/* Checks of a batch of rows shared by update_probs and weights_probs. */
static kd_status kdi_threshold_check_rows(const kd_threshold *th, char *err, const char *fn,
                                          int64_t n, int64_t c, const float *probs, int64_t ld,
                                          const int64_t *indices, int need_indices)
{
    if (n < 0)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (c != th->num_classes)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: c = %lld, the handle has %lld classes",
                        fn, (long long)c, (long long)th->num_classes);
    if (ld < c)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: ld = %lld < c = %lld", fn, (long long)ld,
                        (long long)c);
    if (n == 0)
        return KD_OK;
    if (ld > (INT64_MAX - c) / n)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "%s: n = %lld rows of stride ld = %lld overflow int64", fn, (long long)n,
                        (long long)ld);
    if (!probs || (need_indices && !indices))
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        !probs ? "probs" : "indices");
    for (int64_t k = 0; k < n; k++) {
        if (indices && (indices[k] < 0 || indices[k] >= th->num_samples))
            return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                            "%s: indices[%lld] = %lld is outside [0, %lld)", fn, (long long)k,
                            (long long)indices[k], (long long)th->num_samples);
        const float *row = probs + k * ld;
        for (int64_t j = 0; j < c; j++) {
            const float p = row[j];
            if (!isfinite(p))
                return kdi_fail(err, KD_ERR_NOT_FINITE, "%s: probs[%lld][%lld] is %s", fn,
                                (long long)k, (long long)j, isnan(p) ? "NaN" : "infinite");
            if (!(p >= 0.0f && p <= 1.0f))
                return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                                "%s: probs[%lld][%lld] = %g is outside [0, 1]", fn, (long long)k,
                                (long long)j, (double)p);
        }
    }
    return KD_OK;
}

/* Rows reduced to max / argmax in chunks on the stack, for algorithms without
 * row hooks: update (weights NULL) or weights of each chunk. */
enum { KDI_THRESHOLD_CHUNK = 256 };

static void kdi_threshold_by_chunks(kd_threshold *th, const kd_threshold *cth, int64_t n,
                                    const float *probs, int64_t ld, const int64_t *indices,
                                    float *weights)
{
    float conf[KDI_THRESHOLD_CHUNK];
    int32_t pred[KDI_THRESHOLD_CHUNK];
    const int64_t c = cth->num_classes;
    for (int64_t k0 = 0; k0 < n; k0 += KDI_THRESHOLD_CHUNK) {
        const int64_t m = n - k0 < KDI_THRESHOLD_CHUNK ? n - k0 : KDI_THRESHOLD_CHUNK;
        for (int64_t k = 0; k < m; k++)
            conf[k] = kdi_threshold_row_max(probs + (k0 + k) * ld, c, &pred[k]);
        if (weights)
            cth->algo->weights(cth, m, conf, pred, weights + k0);
        else
            th->algo->update(th, m, indices + k0, conf, pred);
    }
}

kd_status kd_threshold_update_probs(kd_threshold *th, int64_t n, int64_t c, const float *probs,
                                    int64_t ld, const int64_t *indices)
{
    static const char fn[] = "kd_threshold_update_probs";
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    const kdi_threshold_algo *a = th->algo;
    kd_status st =
        kdi_threshold_check_rows(th, th->err, fn, n, c, probs, ld, indices, !a->indices_optional);
    if (st != KD_OK || n == 0)
        return st;
    if (a->update_probs) {
        a->update_probs(th, n, probs, ld, a->indices_optional ? NULL : indices);
        return KD_OK;
    }
    kdi_threshold_by_chunks(th, th, n, probs, ld, indices, NULL);
    return KD_OK;
}

kd_status kd_threshold_weights_probs(const kd_threshold *th, int64_t n, int64_t c,
                                     const float *probs, int64_t ld, float *weights,
                                     int32_t *pseudo_labels)
{
    static const char fn[] = "kd_threshold_weights_probs";
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    const kdi_threshold_algo *a = th->algo;
    kd_status st = kdi_threshold_check_rows(th, err, fn, n, c, probs, ld, NULL, 0);
    if (st == KD_OK && n > 0 && !weights)
        st = kdi_fail(err, KD_ERR_NULL_POINTER, "%s: weights is NULL", fn);
    if (st == KD_OK && n > 0) {
        const kdi_buf b[3] = {
            kdi_buf_matrix("probs", -1, probs, n, ld, c, sizeof(float), 0),
            kdi_buf_vector("weights", -1, weights, n, sizeof(float), 1),
            kdi_buf_vector("pseudo_labels", -1, pseudo_labels, n, sizeof(int32_t), 1),
        };
        st = kdi_check_aliasing(err, KDI_ERROR_SIZE, fn, b, 3);
    }
    if (st != KD_OK || n == 0)
        return st;
    if (a->weights_probs)
        a->weights_probs(th, n, probs, ld, weights);
    else
        kdi_threshold_by_chunks(NULL, th, n, probs, ld, NULL, weights);
    if (pseudo_labels && a->labels_probs)
        a->labels_probs(th, n, probs, ld, pseudo_labels);
    else if (pseudo_labels)
        for (int64_t k = 0; k < n; k++)
            (void)kdi_threshold_row_max(probs + k * ld, c, &pseudo_labels[k]);
    return KD_OK;
}

kd_status kd_threshold_update_labeled_probs(kd_threshold *th, int64_t n, int64_t c,
                                            const float *probs, int64_t ld)
{
    static const char fn[] = "kd_threshold_update_labeled_probs";
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    const kdi_threshold_algo *a = th->algo;
    if (!a->update_labeled_probs)
        return kdi_fail(th->err, KD_ERR_UNSUPPORTED, "%s: %s does not learn from labelled rows", fn,
                        a->name);
    kd_status st = kdi_threshold_check_rows(th, th->err, fn, n, c, probs, ld, NULL, 0);
    if (st == KD_OK && n > 0)
        a->update_labeled_probs(th, n, probs, ld);
    return st;
}

/* ---- split statistics ----------------------------------------------------- */

/* *size, or KD_ERR_UNSUPPORTED saying why and to gather the rows. */
static kd_status kdi_threshold_stats_of(const kd_threshold *th, char *err, const char *fn,
                                        int64_t *size)
{
    const char *why = "keeps per-sample state";
    *size = th->algo->stats_size ? th->algo->stats_size(th, &why) : 0;
    if (*size == 0)
        return kdi_fail(err, KD_ERR_UNSUPPORTED,
                        "%s: %s %s, so it has no additive batch statistics: gather every rank's "
                        "rows and call kd_threshold_update_probs",
                        fn, th->algo->name, why);
    return KD_OK;
}

kd_status kd_threshold_stats_size(const kd_threshold *th, int64_t *size)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    if (!size)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "kd_threshold_stats_size: size is NULL");
    int64_t s;
    kd_status st = kdi_threshold_stats_of(th, err, "kd_threshold_stats_size", &s);
    if (st == KD_OK)
        *size = s;
    return st;
}

/* kd_threshold_local_stats (labeled 0) and kd_threshold_local_labeled_stats. */
static kd_status kdi_threshold_local(const kd_threshold *th, int labeled, int64_t n, int64_t c,
                                     const float *probs, int64_t ld, double *stats)
{
    const char *fn = labeled ? "kd_threshold_local_labeled_stats" : "kd_threshold_local_stats";
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    const kdi_threshold_algo *a = th->algo;
    int64_t size;
    kd_status st = kdi_threshold_stats_of(th, err, fn, &size);
    if (st == KD_OK && labeled && !a->local_labeled_stats)
        st = kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: %s does not learn from labelled rows", fn,
                      a->name);
    if (st == KD_OK && !stats)
        st = kdi_fail(err, KD_ERR_NULL_POINTER, "%s: stats is NULL", fn);
    if (st == KD_OK)
        st = kdi_threshold_check_rows(th, err, fn, n, c, probs, ld, NULL, 0);
    if (st == KD_OK && n > 0) {
        const kdi_buf b[2] = {
            kdi_buf_matrix("probs", -1, probs, n, ld, c, sizeof(float), 0),
            kdi_buf_vector("stats", -1, stats, size, sizeof(double), 1),
        };
        st = kdi_check_aliasing(err, KDI_ERROR_SIZE, fn, b, 2);
    }
    if (st != KD_OK)
        return st;
    if (labeled)
        a->local_labeled_stats(th, n, probs, ld, stats);
    else
        a->local_stats(th, n, probs, ld, stats);
    return KD_OK;
}

kd_status kd_threshold_local_stats(const kd_threshold *th, int64_t n, int64_t c, const float *probs,
                                   int64_t ld, double *stats)
{
    return kdi_threshold_local(th, 0, n, c, probs, ld, stats);
}

kd_status kd_threshold_local_labeled_stats(const kd_threshold *th, int64_t n, int64_t c,
                                           const float *probs, int64_t ld, double *stats)
{
    return kdi_threshold_local(th, 1, n, c, probs, ld, stats);
}

kd_status kd_threshold_update_stats(kd_threshold *th, const double *stats)
{
    static const char fn[] = "kd_threshold_update_stats";
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    int64_t size;
    kd_status st = kdi_threshold_stats_of(th, th->err, fn, &size);
    if (st == KD_OK && !stats)
        st = kdi_fail(th->err, KD_ERR_NULL_POINTER, "%s: stats is NULL", fn);
    for (int64_t i = 0; st == KD_OK && i < size; i++)
        if (!isfinite(stats[i]))
            st = kdi_fail(th->err, KD_ERR_NOT_FINITE, "%s: stats[%lld] is %s", fn, (long long)i,
                          isnan(stats[i]) ? "NaN" : "infinite");
    if (st == KD_OK)
        st = th->algo->check_stats(th, stats, th->err, fn);
    if (st == KD_OK)
        th->algo->update_stats(th, stats);
    return st;
}

#define KDI_THRESHOLD_STATS_MAX_COUNT 9007199254740992.0 /* 2^53 */

kd_status kdi_threshold_stats_count(char *err, const char *fn, const double *stats, int64_t i)
{
    const double v = stats[i];
    if (!(v >= 0.0 && v <= KDI_THRESHOLD_STATS_MAX_COUNT && v == floor(v)))
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "%s: stats[%lld] = %g is a count, not a whole number in [0, 2^53]", fn,
                        (long long)i, v);
    return KD_OK;
}

kd_status kdi_threshold_stats_range(char *err, const char *fn, const double *stats, int64_t first,
                                    int64_t len, double bound, const double *bound_of)
{
    for (int64_t k = 0; k < len; k++) {
        const double v = stats[first + k], b = bound_of ? bound_of[k] : bound;
        if (!(v >= 0.0 && v <= b))
            return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: stats[%lld] = %g is outside [0, %g]",
                            fn, (long long)(first + k), v, b);
    }
    return KD_OK;
}

kd_status kdi_threshold_stats_hist(char *err, const char *fn, const double *stats, int64_t first,
                                   int64_t len, double total)
{
    double sum = 0.0;
    for (int64_t k = 0; k < len; k++) {
        kd_status st = kdi_threshold_stats_count(err, fn, stats, first + k);
        if (st != KD_OK)
            return st;
        sum += stats[first + k];
    }
    if (sum != total)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "%s: the counts stats[%lld, %lld) sum to %g, not to the row count %g", fn,
                        (long long)first, (long long)(first + len), sum, total);
    return KD_OK;
}

/* ---- state arrays --------------------------------------------------------- */

static kd_status kdi_threshold_check_state(const kd_threshold *th, char *err, const char *fn,
                                           kd_threshold_state what, int is_int, int64_t count,
                                           const void *out)
{
    if (!out)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s: out is NULL", fn);
    int64_t len = th->algo->state_length(th, what, is_int);
    if (len == 0)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: state %d is not an %s array of %s", fn,
                        (int)what, is_int ? "int" : "float", th->algo->name);
    if (count != len)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "%s: count = %lld, state %d has %lld elements", fn, (long long)count,
                        (int)what, (long long)len);
    return KD_OK;
}

kd_status kd_threshold_get_floats(const kd_threshold *th, kd_threshold_state what, int64_t count,
                                  float *out)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    kd_status st =
        kdi_threshold_check_state(th, err, "kd_threshold_get_floats", what, 0, count, out);
    if (st == KD_OK)
        th->algo->copy_floats(th, what, out);
    return st;
}

kd_status kd_threshold_get_ints(const kd_threshold *th, kd_threshold_state what, int64_t count,
                                int64_t *out)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    kd_status st = kdi_threshold_check_state(th, err, "kd_threshold_get_ints", what, 1, count, out);
    if (st == KD_OK)
        th->algo->copy_ints(th, what, out);
    return st;
}

/* ---- state file ----------------------------------------------------------- */

kd_status kdi_threshold_save_as(const kd_threshold *th, const kdi_threshold_names *nm,
                                const char *path)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(th->err);
    kdi_clear_error(err);
    if (!path)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s_save: path is NULL", nm->prefix);
    char msg[KDI_ERROR_SIZE];
    kd_status st = th->algo->save(th, path, msg);
    if (st != KD_OK)
        return kdi_fail(err, st, "%s_save: %s", nm->prefix, msg);
    return KD_OK;
}

kd_status kdi_threshold_load_as(kd_threshold *th, const kdi_threshold_names *nm, const char *path)
{
    if (!th)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(th->err);
    if (!path)
        return kdi_fail(th->err, KD_ERR_NULL_POINTER, "%s_load: path is NULL", nm->prefix);
    char msg[KDI_ERROR_SIZE];
    kd_status st = th->algo->load(th, path, msg);
    if (st != KD_OK)
        return kdi_fail(th->err, st, "%s_load: %s", nm->prefix, msg);
    return KD_OK;
}

kd_status kdi_threshold_meta_shape(const kdi_statefile_reader *r, uint64_t meta_size, uint64_t *n,
                                   uint64_t *c, char *msg)
{
    if (r->meta_size != meta_size)
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': meta section of %llu bytes, expected %llu",
                        r->path, (unsigned long long)r->meta_size, (unsigned long long)meta_size);
    *n = kdi_le_get_u64(r->meta);
    *c = kdi_le_get_u64(r->meta + 8);
    if (*n < 1 || *n > (uint64_t)KD_THRESHOLD_MAX_SAMPLES || *c < 1 ||
        *c > (uint64_t)KD_THRESHOLD_MAX_CLASSES)
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': invalid shape (N %llu, C %llu)", r->path,
                        (unsigned long long)*n, (unsigned long long)*c);
    return KD_OK;
}

kd_status kdi_threshold_data_shape(const kd_threshold *h, const kdi_statefile_reader *r, uint64_t n,
                                   uint64_t c, uint64_t fixed, uint64_t per_class, char *msg)
{
    if (r->data_size != (fixed + per_class * c) * sizeof(double))
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': data section of %llu bytes for %llu classes",
                        r->path, (unsigned long long)r->data_size, (unsigned long long)c);
    if (n != (uint64_t)h->num_samples || c != (uint64_t)h->num_classes)
        return kdi_fail(msg, KD_ERR_MISMATCH,
                        "'%s' holds %llu samples x %llu classes, the handle has %lld x %lld",
                        r->path, (unsigned long long)n, (unsigned long long)c,
                        (long long)h->num_samples, (long long)h->num_classes);
    return KD_OK;
}

int kdi_threshold_value_in_unit(int64_t i, int64_t c, double v)
{
    (void)i, (void)c;
    return v >= 0.0 && v <= 1.0;
}

kd_status kdi_threshold_load_f64(kd_threshold *th, const kdi_statefile_kind *kind, const char *path,
                                 uint64_t meta_size, double *buf, int64_t count,
                                 int (*ok)(int64_t i, int64_t c, double v), kdi_statefile_reader *r,
                                 char *msg)
{
    kd_status st = kdi_statefile_load(r, kind, th, path, meta_size, buf,
                                      (uint64_t)count * sizeof(double), 8, msg);
    for (int64_t i = 0; i < count && st == KD_OK; i++)
        if (!ok(i, th->num_classes, buf[i])) {
            st = kdi_fail(msg, KD_ERR_CORRUPT, "'%s': state value %lld is %g", path, (long long)i,
                          buf[i]);
            kdi_statefile_close(r);
        }
    return st;
}

kd_status kd_threshold_save(const kd_threshold *th, const char *path)
{
    return kdi_threshold_save_as(th, &kdi_threshold_own_names, path);
}

kd_status kd_threshold_load(kd_threshold *th, const char *path)
{
    return kdi_threshold_load_as(th, &kdi_threshold_own_names, path);
}
