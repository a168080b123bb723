/* Double-precision reference implementations of the distillation-family
 * losses (soft-target cross-entropy, KL distillation, logit MSE), written from
 * the formulas of docs/losses.md and include/kdlib/loss.h, not from the
 * library code.  They are deliberately plain: every probability vector is
 * materialised in double, the divergences are evaluated from their
 * definitions, and the gradients go through the generic chain rule
 *     dL/dz_j = G_j - softmax(z)_j * sum_k G_k,   G_k = dL/d log softmax(z)_k
 * so that they share no shortcut with the float32 kernels.
 *
 * The support library does not depend on libkd: the integer options below use
 * the pinned values of the public KD_* enums, so a test can copy them across.
 * When kdlib/loss.h is included before this header, ref_configure() (which
 * sets up a kd_loss handle from a ref_case) is also available. */
#ifndef REF_LOSSES_H
#define REF_LOSSES_H

#include <stddef.h>
#include <stdint.h>

enum { REF_CROSS_ENTROPY = 1, REF_KL_DISTILL = 2, REF_LOGIT_MSE = 3, REF_ENTROPY = 16 };
enum { REF_MEAN = 0, REF_SUM = 1, REF_NONE = 2 };
enum { REF_FORWARD_KL = 0, REF_REVERSE_KL = 1, REF_JSD = 2 };
enum { REF_NORMALIZE_BATCH = 0, REF_NORMALIZE_VALID = 1 };
enum { REF_SMOOTHING_UNIFORM = 0, REF_SMOOTHING_OTHERS = 1 };

#define REF_MAX_TEACHERS 8

/* One problem: options (meaning and defaults of the KD_PARAM_* of loss.h) and
 * the float32 inputs exactly as the kernels read them (row strides included). */
typedef struct {
    int kind;
    int64_t n, c;

    int reduction;
    double temperature;
    double soft_weight, hard_weight; /* KL and MSE only */
    int t2_scaling;
    int divergence;
    double jsd_beta;
    int normalization;
    int32_t ignore_index;
    double label_smoothing;
    int smoothing_mode;
    double label_weight; /* CE only */

    const float *student;
    int64_t ld_student;
    int n_teachers;
    const float *teachers[REF_MAX_TEACHERS];
    int64_t ld_teachers[REF_MAX_TEACHERS];
    const float *teacher_weights; /* NULL: equal weights; else raw (normalised here) */
    const float *target;          /* CE probabilities, or NULL */
    int64_t ld_target;
    const int32_t *labels; /* or NULL */
    const float *weights;  /* per-sample weights, or NULL */
} ref_case;

/* Every option at its documented default; no input bound. */
void ref_case_init(ref_case *k, int kind, int64_t n, int64_t c);

/* The loss.  loss receives 1 value for MEAN/SUM or n values for NONE;
 * per_sample (may be NULL) the n weighted per-sample values.
 * student (may be NULL) replaces the case's student logits by a dense
 * n x c double matrix (used by the finite-difference check). */
void ref_forward(const ref_case *k, const double *student, double *loss, double *per_sample);

/* d(upstream . loss) / d student as a dense n x c matrix; upstream holds 1
 * value for MEAN/SUM, n for NONE. */
void ref_backward(const ref_case *k, const double *student, const double *upstream, double *grad);

/* upstream . loss (the scalar whose gradient ref_backward returns). */
double ref_objective(const ref_case *k, const double *student, const double *upstream);

/* Central finite-difference gradient of ref_objective w.r.t. the student
 * logits in double precision (absolute step h), dense n x c. */
void ref_fd_gradient(const ref_case *k, const double *upstream, double h, double *grad);

/* The case's student logits as a dense n x c double matrix. */
void ref_student_dense(const ref_case *k, double *out);

/* ---- Test data: every buffer is owned by an arena freed in one call ---- */
typedef struct {
    void *p[64];
    int count;
} ref_arena;

void ref_arena_free(ref_arena *a);
/* n x c float32 matrix with row stride ld: entries scale * N(0, 1) + shift,
 * the padding columns [c, ld) set to NaN so that reading them shows. */
float *ref_new_logits(ref_arena *a, uint64_t seed, int64_t n, int64_t c, int64_t ld, double scale,
                      double shift);
/* Rows of probabilities (softmax of N(0, 2) logits, each row sums to 1),
 * stride ld, NaN padding. */
float *ref_new_probabilities(ref_arena *a, uint64_t seed, int64_t n, int64_t c, int64_t ld);
/* n labels in [0, c); about a fraction `ignored` of them (at least one when
 * > 0 and n > 1, never all) set to ignore_index. */
int32_t *ref_new_labels(ref_arena *a, uint64_t seed, int64_t n, int64_t c, double ignored,
                        int32_t ignore_index);
/* n per-sample weights in [0, 2) with weights[0] = 0 when n > 1 (a mask). */
float *ref_new_weights(ref_arena *a, uint64_t seed, int64_t n);

/* FreeMatch's fairness loss (USB entropy_loss) over the rows with w_i > 0
 * (w NULL: all, weight 1), each counted w_i times; s dense n x c logits,
 * pm / lh the class probabilities and label histogram (c each).  Returns the
 * loss; grad (n x c, or NULL) receives d loss / d s. */
double ref_fairness(int64_t n, int64_t c, const double *s, const float *w, const float *pm,
                    const float *lh, double *grad);

/* ---- Bridge to libkd, available when kdlib/loss.h is included first ---- */
#ifdef KDLIB_LOSS_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set every option of the case on h and bind its inputs (not the outputs).
 * Returns the first failing status. */
static inline kd_status ref_configure(kd_loss *h, const ref_case *k)
{
    kd_status st = KD_OK;
#define REF_TRY(call)                                                                              \
    do {                                                                                           \
        st = (call);                                                                               \
        if (st != KD_OK)                                                                           \
            return st;                                                                             \
    } while (0)
    REF_TRY(kd_loss_set_int(h, KD_PARAM_REDUCTION, k->reduction));
    if (k->kind == REF_ENTROPY) { /* student, weights and temperature only */
        REF_TRY(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, k->temperature));
        REF_TRY(kd_loss_bind_matrix(h, KD_ARG_STUDENT, k->student, k->ld_student));
        REF_TRY(kd_loss_bind_weights(h, k->weights));
        return st;
    }
    REF_TRY(kd_loss_set_int(h, KD_PARAM_IGNORE_INDEX, k->ignore_index));
    REF_TRY(kd_loss_set_float(h, KD_PARAM_LABEL_SMOOTHING, k->label_smoothing));
    REF_TRY(kd_loss_set_int(h, KD_PARAM_SMOOTHING_MODE, k->smoothing_mode));
    if (k->kind != REF_LOGIT_MSE)
        REF_TRY(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, k->temperature));
    if (k->kind == REF_CROSS_ENTROPY) {
        REF_TRY(kd_loss_set_float(h, KD_PARAM_LABEL_WEIGHT, k->label_weight));
    } else {
        REF_TRY(kd_loss_set_float(h, KD_PARAM_SOFT_WEIGHT, k->soft_weight));
        REF_TRY(kd_loss_set_float(h, KD_PARAM_HARD_WEIGHT, k->hard_weight));
        REF_TRY(kd_loss_set_int(h, KD_PARAM_NORMALIZATION, k->normalization));
    }
    if (k->kind == REF_KL_DISTILL) {
        REF_TRY(kd_loss_set_int(h, KD_PARAM_T2_SCALING, k->t2_scaling));
        REF_TRY(kd_loss_set_int(h, KD_PARAM_DIVERGENCE, k->divergence));
        REF_TRY(kd_loss_set_float(h, KD_PARAM_JSD_BETA, k->jsd_beta));
    }
    REF_TRY(kd_loss_bind_matrix(h, KD_ARG_STUDENT, k->student, k->ld_student));
    if (k->n_teachers > 0)
        REF_TRY(kd_loss_bind_teachers(h, k->n_teachers, k->teachers, k->ld_teachers,
                                      k->teacher_weights));
    if (k->kind == REF_CROSS_ENTROPY)
        REF_TRY(kd_loss_bind_matrix(h, KD_ARG_TARGET, k->target, k->ld_target));
    REF_TRY(kd_loss_bind_labels(h, k->labels));
    REF_TRY(kd_loss_bind_weights(h, k->weights));
#undef REF_TRY
    return st;
}

/* What ref_verify() checks beyond the always-on comparisons. */
enum {
    REF_VERIFY_KERNEL_FD = 1, /* kernel gradient against finite differences of the kernel loss */
    REF_VERIFY_EXTREME = 2    /* logits of magnitude ~1e4: tolerances scale with the logits,
                                 no finite differences (the loss is nearly piecewise linear) */
};

#define REF_FAIL(...)                                                                              \
    do {                                                                                           \
        snprintf(msg, cap, __VA_ARGS__);                                                           \
        goto done;                                                                                 \
    } while (0)

/* First element (or -1) where a strided float gradient differs from a dense
 * double reference by more than rtol |ref| + atol * max|ref| + floor. */
static inline int64_t ref_grad_mismatch(const float *g, int64_t ld, const double *r, int64_t n,
                                        int64_t c, double rtol, double atol, double floor)
{
    double gmax = 0.0;
    for (int64_t e = 0; e < n * c; e++)
        gmax = fabs(r[e]) > gmax ? fabs(r[e]) : gmax;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double a = g[i * ld + j], b = r[i * c + j];
            if (!(fabs(a - b) <= rtol * fabs(b) + atol * gmax + floor))
                return i * c + j;
        }
    return -1;
}

static inline int ref_same_bits(const void *a, const void *b, size_t bytes)
{
    return memcmp(a, b, bytes) == 0;
}

/* The whole battery for one case, under each reduction (MEAN, SUM, NONE):
 *  - the double reference's gradient against its own central finite
 *    differences;
 *  - forward (loss and per-sample output), backward with an upstream scalar
 *    or vector, and fused forward+backward against the double reference;
 *  - fused == forward for the loss and == backward(upstream 1) for the
 *    gradient, bit for bit;
 *  - in-place gradient (grad == student, same ld) == out-of-place, bit for bit;
 *  - 2 and 3 threads == 1 thread, bit for bit;
 *  - the gradient output's padding columns are never written;
 *  - optionally the kernel gradient against finite differences of the kernel.
 * The case's matrices should have ld > c and NaN padding.  Returns 1, or 0
 * with a message in msg. */
static inline int ref_verify(const ref_case *base, unsigned flags, char *msg, size_t cap)
{
    const int64_t n = base->n, c = base->c;
    const int64_t ldg = c + 2, lds = base->ld_student;
    const size_t nc = (size_t)(n * c) + 1, gsz = (size_t)(n * ldg) + 1, ssz = (size_t)(n * lds) + 1;
    int ok = 0;
    kd_loss *h = NULL;
    double *rl = malloc(((size_t)n + 1) * sizeof(double)),
           *rps = malloc(((size_t)n + 1) * sizeof(double));
    double *rg = malloc(nc * sizeof(double)), *rg1 = malloc(nc * sizeof(double)),
           *fd = malloc(nc * sizeof(double));
    double *u = malloc(((size_t)n + 1) * sizeof(double)),
           *ones = malloc(((size_t)n + 1) * sizeof(double));
    float *uf = malloc(((size_t)n + 1) * sizeof(float)),
          *onesf = malloc(((size_t)n + 1) * sizeof(float));
    float *kl = malloc(((size_t)n + 1) * sizeof(float)),
          *kps = malloc(((size_t)n + 1) * sizeof(float));
    float *kl2 = malloc(((size_t)n + 1) * sizeof(float));
    float *gb = malloc(gsz * sizeof(float)), *gf = malloc(gsz * sizeof(float)),
          *g2 = malloc(gsz * sizeof(float));
    float *sbuf = malloc(ssz * sizeof(float));
    double maxlogit = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++)
            maxlogit = fmax(maxlogit, fabs(base->student[i * lds + j]));
    const int extreme = (flags & REF_VERIFY_EXTREME) != 0;
    const double loss_rtol = extreme ? 1e-5 : 2e-5;
    const double grad_rtol = extreme ? 1e-3 : 2e-4, grad_atol = extreme ? 1e-4 : 2e-6;
    const double grad_floor = extreme ? 1e-6 : 1e-9; /* float rounding of O(1) probabilities */
    const float canary = 12345.0f;

    for (int red = REF_MEAN; red <= REF_NONE; red++) {
        ref_case k = *base;
        k.reduction = red;
        const int64_t m = red == REF_NONE ? n : 1;
        for (int64_t i = 0; i < n + 1; i++) {
            u[i] = red == REF_NONE ? ((i % 2) ? -0.5 : 1.25) + 0.125 * (double)(i % 5) : 0.75;
            uf[i] = (float)u[i];
            ones[i] = 1.0;
            onesf[i] = 1.0f;
        }
        const char *rn = red == REF_MEAN ? "mean" : red == REF_SUM ? "sum" : "none";

        /* the reference against itself */
        ref_forward(&k, NULL, rl, rps);
        ref_backward(&k, NULL, u, rg);
        ref_backward(&k, NULL, ones, rg1);
        if (!extreme && n * c > 0) {
            ref_fd_gradient(&k, u, 1e-5, fd);
            double gmax = 1e-12;
            for (size_t e = 0; e < nc - 1; e++)
                gmax = fmax(gmax, fabs(rg[e]));
            for (size_t e = 0; e < nc - 1; e++)
                if (!(fabs(fd[e] - rg[e]) <= 1e-6 * gmax + 1e-6 * fabs(rg[e])))
                    REF_FAIL(
                        "[%s] reference gradient %zu = %.10g but finite differences give %.10g", rn,
                        e, rg[e], fd[e]);
        }

        /* forward */
        kd_loss_destroy(h);
        h = NULL;
        if (kd_loss_create(&h, k.kind, c) != KD_OK)
            REF_FAIL("[%s] create failed", rn);
        kd_status st = ref_configure(h, &k);
        if (st)
            REF_FAIL("[%s] configure: %s (%s)", rn, kd_status_string(st), kd_loss_last_error(h));
        kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, kps, 0);
        st = kd_loss_forward(h, n, kl);
        if (st)
            REF_FAIL("[%s] forward: %s (%s)", rn, kd_status_string(st), kd_loss_last_error(h));
        for (int64_t i = 0; i < m; i++) {
            double atol = 1e-6 * (1.0 + maxlogit) * (red == REF_SUM ? (double)n : 1.0);
            if (!(fabs(kl[i] - rl[i]) <= loss_rtol * fabs(rl[i]) + atol))
                REF_FAIL("[%s] loss[%lld] = %.9g, reference %.12g", rn, (long long)i, kl[i], rl[i]);
        }
        for (int64_t i = 0; i < n; i++)
            if (!(fabs(kps[i] - rps[i]) <= loss_rtol * fabs(rps[i]) + 1e-6 * (1.0 + maxlogit)))
                REF_FAIL("[%s] per_sample[%lld] = %.9g, reference %.12g", rn, (long long)i, kps[i],
                         rps[i]);
        if (red == REF_NONE && !ref_same_bits(kl, kps, (size_t)n * sizeof(float)))
            REF_FAIL("[none] loss vector and per-sample output differ");

        /* backward with an upstream scalar / vector, padding untouched */
        for (size_t e = 0; e < gsz; e++)
            gb[e] = canary;
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gb, ldg);
        st = kd_loss_backward(h, n, uf);
        if (st)
            REF_FAIL("[%s] backward: %s (%s)", rn, kd_status_string(st), kd_loss_last_error(h));
        int64_t bad = ref_grad_mismatch(gb, ldg, rg, n, c, grad_rtol, grad_atol, grad_floor);
        if (bad >= 0)
            REF_FAIL("[%s] backward grad[%lld][%lld] = %.9g, reference %.12g", rn,
                     (long long)(bad / c), (long long)(bad % c), gb[(bad / c) * ldg + bad % c],
                     rg[bad]);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = c; j < ldg; j++)
                if (gb[i * ldg + j] != canary)
                    REF_FAIL("[%s] backward wrote the padding of row %lld", rn, (long long)i);

        /* fused == forward + backward(1) */
        for (size_t e = 0; e < gsz; e++)
            gf[e] = canary;
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gf, ldg);
        st = kd_loss_forward_backward(h, n, kl2);
        if (st)
            REF_FAIL("[%s] fused: %s (%s)", rn, kd_status_string(st), kd_loss_last_error(h));
        if (!ref_same_bits(kl, kl2, (size_t)m * sizeof(float)))
            REF_FAIL("[%s] fused loss %.9g differs from forward %.9g", rn, kl2[0], kl[0]);
        bad = ref_grad_mismatch(gf, ldg, rg1, n, c, grad_rtol, grad_atol, grad_floor);
        if (bad >= 0)
            REF_FAIL("[%s] fused grad[%lld][%lld] = %.9g, reference %.12g", rn,
                     (long long)(bad / c), (long long)(bad % c), gf[(bad / c) * ldg + bad % c],
                     rg1[bad]);
        for (size_t e = 0; e < gsz; e++)
            g2[e] = canary;
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g2, ldg);
        kd_loss_backward(h, n, onesf);
        if (!ref_same_bits(gf, g2, gsz * sizeof(float)))
            REF_FAIL("[%s] fused gradient differs from backward with upstream 1", rn);

        /* thread counts 2 and 3 give the same bits as 1 */
        for (int t = 2; t <= 3; t++) {
            kd_loss_set_int(h, KD_PARAM_THREADS, t);
            for (size_t e = 0; e < gsz; e++)
                g2[e] = canary;
            st = kd_loss_forward_backward(h, n, kl2);
            if (st || !ref_same_bits(kl, kl2, (size_t)m * sizeof(float)) ||
                !ref_same_bits(gf, g2, gsz * sizeof(float)))
                REF_FAIL("[%s] %d threads differ from 1 thread", rn, t);
            float *ps1 = malloc(((size_t)n + 1) * sizeof(float));
            memcpy(ps1, kps, (size_t)n * sizeof(float));
            kd_loss_forward(h, n, kl2);
            int same = ref_same_bits(ps1, kps, (size_t)n * sizeof(float));
            free(ps1);
            if (!same)
                REF_FAIL("[%s] per-sample output with %d threads differs", rn, t);
        }
        kd_loss_set_int(h, KD_PARAM_THREADS, 1);

        /* in place: grad over a copy of the student, same ld */
        memcpy(sbuf, base->student, ssz * sizeof(float));
        kd_loss_bind_matrix(h, KD_ARG_STUDENT, sbuf, lds);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, sbuf, lds);
        st = kd_loss_forward_backward(h, n, kl2);
        if (st)
            REF_FAIL("[%s] in-place fused: %s (%s)", rn, kd_status_string(st),
                     kd_loss_last_error(h));
        if (!ref_same_bits(kl, kl2, (size_t)m * sizeof(float)))
            REF_FAIL("[%s] in-place loss differs", rn);
        for (int64_t i = 0; i < n; i++) {
            if (!ref_same_bits(sbuf + i * lds, gf + i * ldg, (size_t)c * sizeof(float)))
                REF_FAIL("[%s] in-place fused gradient row %lld differs from out of place", rn,
                         (long long)i);
            if (!ref_same_bits(sbuf + i * lds + c, base->student + i * lds + c,
                               (size_t)(lds - c) * sizeof(float)))
                REF_FAIL("[%s] in-place wrote the padding of row %lld", rn, (long long)i);
        }
        memcpy(sbuf, base->student, ssz * sizeof(float));
        st = kd_loss_backward(h, n, uf);
        for (int64_t i = 0; i < n && !st; i++)
            if (!ref_same_bits(sbuf + i * lds, gb + i * ldg, (size_t)c * sizeof(float)))
                REF_FAIL("[%s] in-place backward row %lld differs from out of place", rn,
                         (long long)i);

        /* the kernel against its own finite differences (float32 steps) */
        if ((flags & REF_VERIFY_KERNEL_FD) && !extreme) {
            memcpy(sbuf, base->student, ssz * sizeof(float));
            kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0);
            kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, NULL, 0);
            double gmax = 1e-6;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < c; j++)
                    gmax = fmax(gmax, fabs(gb[i * ldg + j]));
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < c; j++) {
                    float x0 = sbuf[i * lds + j];
                    float xp = x0 + 1e-2f, xm = x0 - 1e-2f;
                    double fp = 0.0, fm = 0.0;
                    sbuf[i * lds + j] = xp;
                    kd_loss_forward(h, n, kl2);
                    for (int64_t a = 0; a < m; a++)
                        fp += u[a] * kl2[a];
                    sbuf[i * lds + j] = xm;
                    kd_loss_forward(h, n, kl2);
                    for (int64_t a = 0; a < m; a++)
                        fm += u[a] * kl2[a];
                    sbuf[i * lds + j] = x0;
                    double d = (fp - fm) / ((double)xp - (double)xm), g = gb[i * ldg + j];
                    if (!(fabs(d - g) <= 2e-3 * gmax + 1e-2 * fabs(g)))
                        REF_FAIL(
                            "[%s] kernel grad[%lld][%lld] = %.7g but kernel finite differences "
                            "give %.7g",
                            rn, (long long)i, (long long)j, g, d);
                }
        }
    }
    ok = 1;
done:
    kd_loss_destroy(h);
    free(rl);
    free(rps);
    free(rg);
    free(rg1);
    free(fd);
    free(u);
    free(ones);
    free(uf);
    free(onesf);
    free(kl);
    free(kps);
    free(kl2);
    free(gb);
    free(gf);
    free(g2);
    free(sbuf);
    return ok;
}
#undef REF_FAIL

#ifdef CHECK_H
/* ref_verify() as a Check assertion (test programs include check.h first). */
static inline void verify(const ref_case *k, unsigned flags)
{
    char msg[512] = "";
    int ok = ref_verify(k, flags, msg, sizeof msg);
    ck_assert_msg(ok, "%s", msg);
}
#endif
#endif

#endif
