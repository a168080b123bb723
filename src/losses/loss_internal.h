/* Internal: the loss handle and the contract between the generic driver
 * (execute.c) and the per-family row kernels. */
#ifndef KDI_LOSS_INTERNAL_H
#define KDI_LOSS_INTERNAL_H

#include <math.h>
#include <stddef.h>

#include "core/error.h"
#include "kdlib/loss.h"
#include "kernels/rowops.h"

struct kd_loss {
    kd_loss_kind kind;
    int64_t c;

    /* parameters */
    int32_t reduction;
    double temperature;
    double soft_weight, hard_weight;
    int32_t t2_scaling;
    int32_t divergence;
    double jsd_beta;
    int32_t normalization;
    int32_t ignore_index;
    double label_smoothing;
    int32_t smoothing_mode;
    double label_weight;
    int32_t threads;
    int32_t check_finite;

    /* bindings (borrowed) */
    const float *student;
    int64_t ld_student;
    int32_t n_teachers;
    const float **teachers;  /* owned array of n_teachers pointers */
    int64_t *ld_teachers;    /* owned */
    float *teacher_weights;  /* owned, normalised */
    const float *target;
    int64_t ld_target;
    const int32_t *labels;
    const float *weights;
    float *grad;
    int64_t ld_grad;
    float *per_sample;

    /* workspace: per-row term values and per-thread scratch rows */
    double *terms;
    size_t terms_cap;
    float *scratch;
    size_t scratch_cap;

    char err[KDI_ERROR_SIZE];
};

/* One row of work for a kernel.  The kernel computes the row's term values
 * (terms[0] = soft term, terms[1] = hard term, unweighted) and, when g is not
 * NULL, writes g = c_soft * d terms[0] / ds + c_hard * d terms[1] / ds.
 * g may equal s (in place): kernels read s[j] before writing g[j]. */
typedef struct {
    const float *s;  /* student logits */
    const float *t;  /* teacher logits (averaged) or NULL */
    const float *q;  /* target probabilities or NULL */
    int32_t y;       /* label, or -1 when the row has no label term */
    float *g;        /* gradient row or NULL */
    double c_soft, c_hard;
} kdi_row;

typedef void (*kdi_row_kernel)(const kd_loss *h, const kdi_row *r, double terms[2]);

void kdi_cross_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_kl_distill_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_logit_mse_row(const kd_loss *h, const kdi_row *r, double terms[2]);

/* Smoothed one-hot target of the hard-label terms: the labelled class gets
 * `on`, every other class `off` (KD_PARAM_LABEL_SMOOTHING and _MODE). */
typedef struct {
    float on, off;
} kdi_onehot;

kdi_onehot kdi_smoothed_onehot(const kd_loss *h);

/* q_j of the smoothed one-hot target for label y (y < 0: no label, 0). */
static inline float kdi_onehot_at(kdi_onehot oh, int32_t y, int64_t j)
{
    return y < 0 ? 0.0f : (j == y ? oh.on : oh.off);
}

/* The hard-label cross-entropy term CE(s, y) with the smoothed one-hot target,
 * evaluated inside a distillation kernel's own loops so that the fused pass
 * (and the in-place gradient) stay single-pass. */
typedef struct {
    int active;   /* 0: the row has no hard term */
    kdi_lse l;    /* log-sum-exp of s at scale 1 */
    kdi_onehot oh;
    int32_t y;
    float coef;   /* gradient coefficient c_hard */
} kdi_hard;

kdi_hard kdi_hard_begin(const kd_loss *h, const kdi_row *r);

/* -q_j log p_j, the element's share of CE (0 when q_j = 0). */
static inline double kdi_hard_loss_at(const kdi_hard *hd, float s, int64_t j)
{
    float q = kdi_onehot_at(hd->oh, hd->y, j);
    return q != 0.0f ? -(double)q * kdi_log_softmax(s, 1.0f, hd->l) : 0.0;
}

/* c_hard * (p_j - q_j), the element's CE gradient. */
static inline float kdi_hard_grad_at(const kdi_hard *hd, float s, int64_t j)
{
    float p = expf(kdi_log_softmax(s, 1.0f, hd->l));
    return hd->coef * (p - kdi_onehot_at(hd->oh, hd->y, j));
}

#endif
