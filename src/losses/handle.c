/* Loss handle life cycle and argument bindings. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "losses/loss_internal.h"

void kdi_loss_defaults(kd_loss *h);

#define MAX_TEACHERS 1024

/* why the last kd_loss_create of this thread failed ("" after a success) */
static _Thread_local char kdi_loss_create_err[KDI_ERROR_SIZE];

kd_status kd_loss_create(kd_loss **out, kd_loss_kind kind, int64_t num_classes)
{
    char *err = kdi_loss_create_err;
    kdi_clear_error(err);
    if (!out)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "kd_loss_create: out is NULL");
    const kdi_kind *kd = kdi_kind_of((int)kind);
    if (!kd)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "kd_loss_create: unknown loss kind %d",
                        (int)kind);
    if (num_classes < 1 || num_classes > INT32_MAX)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "kd_loss_create: num_classes = %lld outside [1, %d]",
                        (long long)num_classes, (int)INT32_MAX);
    kd_loss *h = calloc(1, sizeof *h);
    if (!h)
        return kdi_fail(err, KD_ERR_OUT_OF_MEMORY, "kd_loss_create: out of memory");
    atomic_flag_clear(&h->busy);
    h->kind = kind;
    h->kd = kd;
    h->ops = kdi_simd(KDI_ISA_AUTO);
    h->c = num_classes;
    /* a row's kernel touches about 7 rows of floats (student, teacher, two
     * rows of exps, gradient, the next row's student and teacher; 8 for KL
     * with a label at a temperature other than 1, 2, 4): the next row is
     * prefetched only when they fit in this core's L2 (1 MiB if unknown) */
    long l2 = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    h->prefetch_c = (l2 > 0 ? l2 : 1L << 20) / (7 * (long)sizeof(float));
    kdi_loss_defaults(h);
    *out = h;
    return KD_OK;
}

void kd_loss_destroy(kd_loss *h)
{
    kdi_clear_error(kdi_loss_create_err);
    if (!h)
        return;
    free(h->teachers);
    free(h->ld_teachers);
    free(h->teacher_weights);
    free(h->terms);
    free(h->scratch);
    free(h->bf);
    free(h->bd);
    free(h);
}

const char *kd_loss_last_error(const kd_loss *h)
{
    if (h)
        return h->err;
    return kdi_loss_create_err[0] ? kdi_loss_create_err : "invalid handle (NULL)";
}

static int has_teacher(const kd_loss *h) { return (h->kd->roles & KDI_R_TEACHER) != 0; }

static int is_thresholded(const kd_loss *h) { return (h->kd->roles & KDI_R_THRESH) != 0; }

/* Kinds without per-sample terms: no weights, no per-sample output. */
static int is_whole_batch(const kd_loss *h) { return !(h->kd->roles & KDI_R_WEIGHTS); }

/* Kinds with a per-sample output: per-sample terms reduced by the row path
 * (FAIRNESS takes weights but its loss is one batch value). */
static int has_per_sample(const kd_loss *h)
{
    return !is_whole_batch(h) && h->kd->path == KDI_PATH_ROWS;
}

/* WORST_CASE's input roles map to slots 0..3, its gradients to 0..1. */
static int worst_case_slot(kd_arg role)
{
    return role >= KD_ARG_LABELED_MAIN && role <= KD_ARG_UNLABELED_ADV ? role - KD_ARG_LABELED_MAIN
                                                                       : -1;
}

static kd_status unsupported(kd_loss *h, const char *fn, kd_arg role)
{
    return kdi_fail(h->err, KD_ERR_UNSUPPORTED, "%s: role %d is not supported by loss kind %d", fn,
                    (int)role, (int)h->kind);
}

static kd_status loss_bind_teachers_locked(kd_loss *h, int32_t count, const float *const *teachers,
                                           const int64_t *lds, const float *weights);

static kd_status loss_bind_matrix_locked(kd_loss *h, kd_arg role, const float *data, int64_t ld)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    const int wc = (h->kd->roles & KDI_R_ADV) != 0;
    int ok = (role == KD_ARG_STUDENT && !wc) || (role == KD_ARG_TEACHER && has_teacher(h)) ||
             (role == KD_ARG_TARGET && (h->kd->roles & KDI_R_TARGET)) ||
             (wc && worst_case_slot(role) >= 0);
    if (!ok)
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED,
                        "kd_loss_bind_matrix: role %d is not an input matrix of loss kind %d",
                        (int)role, (int)h->kind);
    if (data && ld < h->c)
        return kdi_fail(h->err, KD_ERR_SHAPE, "kd_loss_bind_matrix: ld = %lld < num_classes = %lld",
                        (long long)ld, (long long)h->c);
    if (role == KD_ARG_TEACHER)
        return loss_bind_teachers_locked(h, data ? 1 : 0, &data, &ld, NULL);
    if (wc) {
        h->wc_in[worst_case_slot(role)] = data;
        h->wc_ld[worst_case_slot(role)] = ld;
    } else if (role == KD_ARG_STUDENT) {
        h->student = data;
        h->ld_student = ld;
    } else {
        h->target = data;
        h->ld_target = ld;
    }
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_matrix(kd_loss *h, kd_arg role, const float *data, int64_t ld)
{
    KDI_GUARDED(h, loss_bind_matrix_locked(h, role, data, ld));
}

static kd_status loss_bind_teachers_locked(kd_loss *h, int32_t count, const float *const *teachers,
                                           const int64_t *lds, const float *weights)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (!has_teacher(h))
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED,
                        "kd_loss_bind_teachers: loss kind %d has no teacher", (int)h->kind);
    if (count < 0 || count > MAX_TEACHERS)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "kd_loss_bind_teachers: count = %d outside [0, %d]", (int)count,
                        MAX_TEACHERS);
    if (count > 0 && (!teachers || !lds))
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "kd_loss_bind_teachers: %s is NULL",
                        teachers ? "lds" : "teachers");
    double wsum = 0.0;
    for (int32_t k = 0; k < count; k++) {
        if (!teachers[k])
            return kdi_fail(h->err, KD_ERR_NULL_POINTER,
                            "kd_loss_bind_teachers: teachers[%d] is NULL", (int)k);
        if (lds[k] < h->c)
            return kdi_fail(h->err, KD_ERR_SHAPE,
                            "kd_loss_bind_teachers: lds[%d] = %lld < num_classes = %lld", (int)k,
                            (long long)lds[k], (long long)h->c);
        /* any finite float >= 0: the sum of at most 1024 of them stays finite
         * in double (<= 1024 FLT_MAX), and so does each quotient w / sum */
        double w = weights ? weights[k] : 1.0;
        if (!(w >= 0.0) || !isfinite(w))
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "kd_loss_bind_teachers: weights[%d] = %g is not a finite value >= 0",
                            (int)k, w);
        wsum += w;
    }
    if (count > 0 && !(wsum > 0.0))
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "kd_loss_bind_teachers: weights sum to 0");
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
            return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "kd_loss_bind_teachers: out of memory");
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

kd_status kd_loss_bind_teachers(kd_loss *h, int32_t count, const float *const *teachers,
                                const int64_t *lds, const float *weights)
{
    KDI_GUARDED(h, loss_bind_teachers_locked(h, count, teachers, lds, weights));
}

/* either width: the one bound replaces the other (NULL and NULL: none) */
static kd_status loss_bind_labels_locked(kd_loss *h, const char *fn, kdi_labels labels)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (!(h->kd->roles & KDI_R_LABELS))
        return unsupported(h, fn, KD_ARG_LABELS);
    h->labels = labels;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_labels(kd_loss *h, const int32_t *labels)
{
    KDI_GUARDED(h, loss_bind_labels_locked(h, "bind_labels", (kdi_labels){labels, NULL}));
}

kd_status kd_loss_bind_labels64(kd_loss *h, const int64_t *labels)
{
    KDI_GUARDED(h, loss_bind_labels_locked(h, "bind_labels64", (kdi_labels){NULL, labels}));
}

static kd_status loss_bind_weights_locked(kd_loss *h, const float *weights)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (is_whole_batch(h))
        return unsupported(h, "bind_weights", KD_ARG_WEIGHTS);
    h->weights = weights;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_weights(kd_loss *h, const float *weights)
{
    KDI_GUARDED(h, loss_bind_weights_locked(h, weights));
}

static kd_status loss_bind_output_locked(kd_loss *h, kd_arg role, float *data, int64_t ld)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    const int wc = (h->kd->roles & KDI_R_ADV) != 0;
    const int is_matrix = role == KD_ARG_GRAD_STUDENT || role == KD_ARG_GRAD_TEACHER ||
                          role == KD_ARG_GRAD_LABELED_ADV || role == KD_ARG_GRAD_UNLABELED_ADV;
    if ((role == KD_ARG_GRAD_STUDENT && wc) || (role == KD_ARG_PER_SAMPLE && !has_per_sample(h)) ||
        (role == KD_ARG_MASK && !is_thresholded(h)) ||
        (role == KD_ARG_GRAD_TEACHER && !(h->kd->roles & KDI_R_GRAD_TEACHER)) ||
        ((role == KD_ARG_GRAD_LABELED_ADV || role == KD_ARG_GRAD_UNLABELED_ADV) && !wc))
        return unsupported(h, "bind_output", role);
    if (is_matrix && data && ld < h->c)
        return kdi_fail(h->err, KD_ERR_SHAPE,
                        "kd_loss_bind_output: grad ld = %lld < num_classes = %lld", (long long)ld,
                        (long long)h->c);
    if (role == KD_ARG_GRAD_STUDENT) {
        h->grad = data;
        h->ld_grad = ld;
    } else if (role == KD_ARG_PER_SAMPLE) {
        h->per_sample = data;
    } else if (role == KD_ARG_MASK) {
        h->mask_out = data;
    } else if (role == KD_ARG_GRAD_TEACHER) {
        h->grad_teacher = data;
        h->ld_grad_teacher = ld;
    } else if (role == KD_ARG_GRAD_LABELED_ADV || role == KD_ARG_GRAD_UNLABELED_ADV) {
        int k = role == KD_ARG_GRAD_UNLABELED_ADV;
        h->wc_grad[k] = data;
        h->wc_ld_grad[k] = ld;
    } else {
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED, "kd_loss_bind_output: role %d is not an output",
                        (int)role);
    }
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_output(kd_loss *h, kd_arg role, float *data, int64_t ld)
{
    KDI_GUARDED(h, loss_bind_output_locked(h, role, data, ld));
}

static kd_status loss_bind_vector_locked(kd_loss *h, kd_arg role, const float *data)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (role == KD_ARG_WEIGHTS)
        return loss_bind_weights_locked(h, data);
    if ((role == KD_ARG_CLASS_PROBS || role == KD_ARG_LABEL_HISTOGRAM) &&
        (h->kd->roles & KDI_R_CLASS_VECTORS)) {
        if (role == KD_ARG_CLASS_PROBS)
            h->class_probs = data;
        else
            h->label_hist = data;
        kdi_clear_error(h->err);
        return KD_OK;
    }
    if (role != KD_ARG_CLASS_THRESHOLDS || !is_thresholded(h))
        return unsupported(h, "bind_vector", role);
    h->class_thresholds = data;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_vector(kd_loss *h, kd_arg role, const float *data)
{
    KDI_GUARDED(h, loss_bind_vector_locked(h, role, data));
}

static kd_status loss_bind_output_labels_locked(kd_loss *h, kd_arg role, int32_t *data)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (role != KD_ARG_PSEUDO_LABELS || !is_thresholded(h))
        return unsupported(h, "bind_output_labels", role);
    h->labels_out = data;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_bind_output_labels(kd_loss *h, kd_arg role, int32_t *data)
{
    KDI_GUARDED(h, loss_bind_output_labels_locked(h, role, data));
}
