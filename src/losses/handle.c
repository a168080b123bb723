/* Loss handle life cycle and argument bindings. */
#include <stdlib.h>
#include <string.h>

#include "losses/loss_internal.h"

void kdi_loss_defaults(kd_loss *h);

#define MAX_TEACHERS 1024

kd_status kd_loss_create(kd_loss **out, kd_loss_kind kind, int64_t num_classes)
{
    if (!out)
        return KD_ERR_NULL_POINTER;
    if (kind != KD_LOSS_CROSS_ENTROPY && kind != KD_LOSS_KL_DISTILL && kind != KD_LOSS_LOGIT_MSE)
        return KD_ERR_INVALID_ARGUMENT;
    if (num_classes < 1 || num_classes > INT32_MAX)
        return KD_ERR_INVALID_ARGUMENT;
    kd_loss *h = calloc(1, sizeof *h);
    if (!h)
        return KD_ERR_OUT_OF_MEMORY;
    h->kind = kind;
    h->c = num_classes;
    kdi_loss_defaults(h);
    *out = h;
    return KD_OK;
}

void kd_loss_destroy(kd_loss *h)
{
    if (!h)
        return;
    free(h->teachers);
    free(h->ld_teachers);
    free(h->teacher_weights);
    free(h->terms);
    free(h->scratch);
    free(h);
}

const char *kd_loss_last_error(const kd_loss *h)
{
    return h ? h->err : "invalid handle (NULL)";
}

static int has_teacher(kd_loss_kind k) { return k == KD_LOSS_KL_DISTILL || k == KD_LOSS_LOGIT_MSE || k == KD_LOSS_CROSS_ENTROPY; }

kd_status kd_loss_bind_matrix(kd_loss *h, kd_arg role, const float *data, int64_t ld)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    int ok = role == KD_ARG_STUDENT || (role == KD_ARG_TEACHER && has_teacher(h->kind)) ||
             (role == KD_ARG_TARGET && h->kind == KD_LOSS_CROSS_ENTROPY);
    if (!ok)
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED,
                        "bind_matrix: role %d is not an input matrix of loss kind %d", (int)role,
                        (int)h->kind);
    if (data && ld < h->c)
        return kdi_fail(h->err, KD_ERR_SHAPE, "bind_matrix: ld = %lld < num_classes = %lld",
                        (long long)ld, (long long)h->c);
    if (role == KD_ARG_TEACHER)
        return kd_loss_bind_teachers(h, data ? 1 : 0, &data, &ld, NULL);
    if (role == KD_ARG_STUDENT) {
        h->student = data;
        h->ld_student = ld;
    } else {
        h->target = data;
        h->ld_target = ld;
    }
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_teachers(kd_loss *h, int32_t count, const float *const *teachers,
                                const int64_t *lds, const float *weights)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (!has_teacher(h->kind))
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED, "bind_teachers: loss kind %d has no teacher",
                        (int)h->kind);
    if (count < 0 || count > MAX_TEACHERS)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "bind_teachers: count = %d outside [0, %d]",
                        (int)count, MAX_TEACHERS);
    if (count > 0 && (!teachers || !lds))
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "bind_teachers: %s is NULL",
                        teachers ? "lds" : "teachers");
    double wsum = 0.0;
    for (int32_t k = 0; k < count; k++) {
        if (!teachers[k])
            return kdi_fail(h->err, KD_ERR_NULL_POINTER, "bind_teachers: teachers[%d] is NULL", (int)k);
        if (lds[k] < h->c)
            return kdi_fail(h->err, KD_ERR_SHAPE, "bind_teachers: lds[%d] = %lld < num_classes = %lld",
                            (int)k, (long long)lds[k], (long long)h->c);
        double w = weights ? weights[k] : 1.0;
        if (!(w >= 0.0) || !(w < 1e30))
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "bind_teachers: weights[%d] = %g is not a finite value >= 0", (int)k, w);
        wsum += w;
    }
    if (count > 0 && !(wsum > 0.0))
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "bind_teachers: weights sum to 0");
    const float **tp = NULL;
    int64_t *lp = NULL;
    float *wp = NULL;
    if (count > 0) {
        tp = malloc((size_t)count * sizeof *tp);
        lp = malloc((size_t)count * sizeof *lp);
        wp = malloc((size_t)count * sizeof *wp);
        if (!tp || !lp || !wp) {
            free(tp);
            free(lp);
            free(wp);
            return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "bind_teachers: out of memory");
        }
        for (int32_t k = 0; k < count; k++) {
            tp[k] = teachers[k];
            lp[k] = lds[k];
            wp[k] = (float)((weights ? weights[k] : 1.0) / wsum);
        }
    }
    free(h->teachers);
    free(h->ld_teachers);
    free(h->teacher_weights);
    h->teachers = tp;
    h->ld_teachers = lp;
    h->teacher_weights = wp;
    h->n_teachers = count;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_labels(kd_loss *h, const int32_t *labels)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    h->labels = labels;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_weights(kd_loss *h, const float *weights)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    h->weights = weights;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_output(kd_loss *h, kd_arg role, float *data, int64_t ld)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (role == KD_ARG_GRAD_STUDENT) {
        if (data && ld < h->c)
            return kdi_fail(h->err, KD_ERR_SHAPE, "bind_output: grad ld = %lld < num_classes = %lld",
                            (long long)ld, (long long)h->c);
        h->grad = data;
        h->ld_grad = ld;
    } else if (role == KD_ARG_PER_SAMPLE) {
        h->per_sample = data;
    } else {
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED, "bind_output: role %d is not an output",
                        (int)role);
    }
    kdi_clear_error(h->err);
    return KD_OK;
}
