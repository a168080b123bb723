/* Double-precision reference losses; see ref_losses.h.  Written from the
 * definitions in docs/losses.md, independently of src/losses. */
#include "ref_losses.h"

#include "kdtest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_case_init(ref_case *k, int kind, int64_t n, int64_t c)
{
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->n = n;
    k->c = c;
    k->reduction = REF_MEAN;
    k->temperature = 1.0;
    k->soft_weight = 1.0;
    k->hard_weight = 0.0;
    k->t2_scaling = 1;
    k->divergence = REF_FORWARD_KL;
    k->jsd_beta = 0.5;
    k->normalization = REF_NORMALIZE_BATCH;
    k->ignore_index = -100;
    k->label_smoothing = 0.0;
    k->smoothing_mode = REF_SMOOTHING_UNIFORM;
    k->label_weight = 0.7;
}

void ref_student_dense(const ref_case *k, double *out)
{
    for (int64_t i = 0; i < k->n; i++)
        for (int64_t j = 0; j < k->c; j++)
            out[i * k->c + j] = k->student[i * k->ld_student + j];
}

/* log softmax(scale * z) in double, max subtracted. */
static void log_softmax(const double *z, int64_t c, double scale, double *out)
{
    double m = -INFINITY;
    int nan = 0;
    for (int64_t j = 0; j < c; j++) {
        double v = scale * z[j];
        if (isnan(v))
            nan = 1;
        else if (v > m)
            m = v;
    }
    if (nan)
        m = NAN;
    double sum = 0.0;
    for (int64_t j = 0; j < c; j++)
        sum += exp(scale * z[j] - m);
    double ls = log(sum);
    for (int64_t j = 0; j < c; j++)
        out[j] = scale * z[j] - m - ls;
}

/* Gradient of a function of log softmax(scale * z) with respect to z, given
 * G = d f / d log softmax (log-probabilities treated as free coordinates):
 * d f / d z_j = scale * (G_j - p_j * sum_k G_k). */
static void chain_log_softmax(const double *lp, const double *gl, int64_t c, double scale,
                              double *dz)
{
    double sg = 0.0;
    for (int64_t j = 0; j < c; j++)
        sg += gl[j];
    for (int64_t j = 0; j < c; j++)
        dz[j] = scale * (gl[j] - exp(lp[j]) * sg);
}

/* Smoothed one-hot target of label y at class j. */
static double onehot(const ref_case *k, int32_t y, int64_t j)
{
    double eps = k->label_smoothing, c = (double)k->c;
    if (k->smoothing_mode == REF_SMOOTHING_OTHERS) {
        if (k->c == 1)
            return 1.0;
        return j == y ? 1.0 - eps : eps / (c - 1.0);
    }
    return (j == y ? 1.0 - eps : 0.0) + eps / c;
}

/* Cross-entropy -sum_j q_j log softmax(s)_j (0 log 0 = 0) and its gradient. */
static double cross_entropy(const double *s, const double *q, int64_t c, double *grad, double *lp,
                            double *gl)
{
    log_softmax(s, c, 1.0, lp);
    double l = 0.0;
    for (int64_t j = 0; j < c; j++) {
        if (q[j] != 0.0)
            l -= q[j] * lp[j];
        gl[j] = -q[j];
    }
    chain_log_softmax(lp, gl, c, 1.0, grad);
    return l;
}

typedef struct {
    const ref_case *k;
    const double *s; /* dense student */
    double *t;       /* dense (averaged) teacher, or NULL */
    double *q;       /* dense target, or NULL */
    int64_t valid;   /* rows whose label is not ignored (n without labels) */
    double *buf;     /* 6 scratch rows */
} ctx;

static int ignored(const ref_case *k, int64_t i)
{
    return k->labels && k->labels[i] == k->ignore_index;
}

static void ctx_open(ctx *x, const ref_case *k, const double *student, double *own_student)
{
    const int64_t n = k->n, c = k->c;
    x->k = k;
    if (!student) {
        ref_student_dense(k, own_student);
        student = own_student;
    }
    x->s = student;
    x->t = NULL;
    x->q = NULL;
    size_t nc = (size_t)(n * c) + 1;
    if (k->n_teachers > 0) {
        x->t = calloc(nc, sizeof(double));
        double wsum = 0.0;
        for (int a = 0; a < k->n_teachers; a++)
            wsum += k->teacher_weights ? k->teacher_weights[a] : 1.0;
        for (int a = 0; a < k->n_teachers; a++) {
            double w = (k->teacher_weights ? k->teacher_weights[a] : 1.0) / wsum;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < c; j++)
                    x->t[i * c + j] += w * k->teachers[a][i * k->ld_teachers[a] + j];
        }
    }
    if (k->target) {
        x->q = malloc(nc * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < c; j++)
                x->q[i * c + j] = k->target[i * k->ld_target + j];
    }
    x->valid = 0;
    for (int64_t i = 0; i < n; i++)
        x->valid += !ignored(k, i);
    x->buf = malloc(6 * (size_t)(c + 1) * sizeof(double));
}

static void ctx_close(ctx *x)
{
    free(x->t);
    free(x->q);
    free(x->buf);
}

/* The divergence at temperature T between P = softmax(t/T) and
 * Q = softmax(s/T) and d D / d s. */
static double divergence(const ref_case *k, const double *s, const double *t, double *grad,
                         double *w)
{
    const int64_t c = k->c;
    const double inv_t = 1.0 / k->temperature;
    double *lq = w, *lp = w + c, *gl = w + 2 * c;
    log_softmax(s, c, inv_t, lq);
    log_softmax(t, c, inv_t, lp);
    int div = k->divergence;
    double beta = k->jsd_beta;
    /* Liger-Kernel's generalized JSD: the endpoints are the KL divergences
     * (the mixture formula itself would degenerate to 0 there). */
    if (div == REF_JSD && beta == 0.0)
        div = REF_FORWARD_KL;
    if (div == REF_JSD && beta == 1.0)
        div = REF_REVERSE_KL;
    double d = 0.0;
    for (int64_t j = 0; j < c; j++) {
        double p = exp(lp[j]), q = exp(lq[j]);
        if (div == REF_FORWARD_KL) {
            /* KL(P || Q) = sum P (log P - log Q) */
            if (p > 0.0)
                d += p * (lp[j] - lq[j]);
            gl[j] = -p;
        } else if (div == REF_REVERSE_KL) {
            /* KL(Q || P) = sum Q (log Q - log P) */
            if (q > 0.0) {
                d += q * (lq[j] - lp[j]);
                gl[j] = q * (lq[j] - lp[j] + 1.0);
            } else {
                gl[j] = 0.0;
            }
        } else {
            /* beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q */
            double m = beta * p + (1.0 - beta) * q, lm = log(m);
            if (p > 0.0)
                d += beta * p * (lp[j] - lm);
            if (q > 0.0)
                d += (1.0 - beta) * q * (lq[j] - lm);
            gl[j] = q > 0.0 ? (1.0 - beta) * q * (lq[j] - lm) : 0.0;
        }
    }
    chain_log_softmax(lq, gl, c, inv_t, grad);
    double f = k->t2_scaling ? k->temperature * k->temperature : 1.0;
    for (int64_t j = 0; j < c; j++)
        grad[j] *= f;
    return f * d;
}

/* Unweighted soft and hard terms of row i and their gradients (NULL-able
 * outputs are never NULL here: callers pass scratch). *soft_on / *hard_on
 * say whether the term exists for the row. */
static void row_terms(const ctx *x, int64_t i, double *soft, double *gsoft, int *soft_on,
                      double *hard, double *ghard, int *hard_on)
{
    const ref_case *k = x->k;
    const int64_t c = k->c;
    const double *s = x->s + i * c;
    double *w = x->buf, *qrow = w + 3 * c, *lp = w + 4 * c, *gl = w + 5 * c;
    const int ign = ignored(k, i);
    const int32_t y = k->labels ? k->labels[i] : -1;
    *soft = *hard = 0.0;
    for (int64_t j = 0; j < c; j++)
        gsoft[j] = ghard[j] = 0.0;
    *hard_on = 0;

    if (k->kind == REF_CROSS_ENTROPY) {
        *soft_on = !ign;
        if (ign)
            return;
        const int has_src = x->q || x->t;
        if (x->t && !x->q) {
            log_softmax(x->t + i * c, c, 1.0 / k->temperature, lp);
            for (int64_t j = 0; j < c; j++)
                qrow[j] = exp(lp[j]);
        } else if (x->q) {
            for (int64_t j = 0; j < c; j++)
                qrow[j] = x->q[i * c + j];
        }
        if (k->labels) {
            double lw = has_src ? k->label_weight : 1.0;
            for (int64_t j = 0; j < c; j++)
                qrow[j] = lw * onehot(k, y, j) + (has_src ? (1.0 - lw) * qrow[j] : 0.0);
        }
        *soft = cross_entropy(s, qrow, c, gsoft, lp, gl);
        return;
    }

    if (k->kind == REF_ENTROPY) {
        /* H = -sum p log p, p = softmax(s / T): d H / d log p_j = -p_j (log p_j + 1) */
        *soft_on = 1;
        log_softmax(s, c, 1.0 / k->temperature, lp);
        for (int64_t j = 0; j < c; j++) {
            const double p = exp(lp[j]);
            *soft -= p > 0.0 ? p * lp[j] : 0.0;
            gl[j] = p > 0.0 ? -p * (lp[j] + 1.0) : 0.0;
        }
        chain_log_softmax(lp, gl, c, 1.0 / k->temperature, gsoft);
        return;
    }
    *soft_on = !(ign && k->normalization == REF_NORMALIZE_VALID);
    if (*soft_on) {
        const double *t = x->t + i * c;
        if (k->kind == REF_KL_DISTILL) {
            *soft = divergence(k, s, t, gsoft, w);
        } else {
            double acc = 0.0;
            for (int64_t j = 0; j < c; j++) {
                double e = s[j] - t[j];
                acc += e * e;
                gsoft[j] = 2.0 * e / (double)c;
            }
            *soft = acc / (double)c;
        }
    }
    *hard_on = k->labels && !ign && k->hard_weight != 0.0;
    if (*hard_on) {
        for (int64_t j = 0; j < c; j++)
            qrow[j] = onehot(k, y, j);
        *hard = cross_entropy(s, qrow, c, ghard, lp, gl);
    }
}

/* Per-term denominators for MEAN (0 = the term is empty and contributes 0). */
static void denominators(const ctx *x, double *d_soft, double *d_hard)
{
    const ref_case *k = x->k;
    int64_t ds = k->n;
    if (k->labels && (k->kind == REF_CROSS_ENTROPY || k->normalization == REF_NORMALIZE_VALID))
        ds = x->valid;
    *d_soft = (double)ds;
    *d_hard = (double)x->valid;
}

static double soft_weight(const ref_case *k)
{
    return k->kind == REF_CROSS_ENTROPY || k->kind == REF_ENTROPY ? 1.0 : k->soft_weight;
}

void ref_forward(const ref_case *k, const double *student, double *loss, double *per_sample)
{
    const int64_t n = k->n, c = k->c;
    double *own = malloc(((size_t)(n * c) + 1) * sizeof(double));
    double *gs = malloc(((size_t)c + 1) * sizeof(double)),
           *gh = malloc(((size_t)c + 1) * sizeof(double));
    ctx x;
    ctx_open(&x, k, student, own);
    double d_soft, d_hard;
    denominators(&x, &d_soft, &d_hard);
    double sum_soft = 0.0, sum_hard = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double soft, hard;
        int son, hon;
        row_terms(&x, i, &soft, gs, &son, &hard, gh, &hon);
        double w = k->weights ? k->weights[i] : 1.0;
        double ts = son ? w * soft_weight(k) * soft : 0.0;
        double th = hon ? w * k->hard_weight * hard : 0.0;
        if (per_sample)
            per_sample[i] = ts + th;
        if (k->reduction == REF_NONE)
            loss[i] = ts + th;
        sum_soft += ts;
        sum_hard += th;
    }
    if (k->reduction == REF_SUM)
        *loss = sum_soft + sum_hard;
    else if (k->reduction == REF_MEAN)
        *loss = (d_soft > 0 ? sum_soft / d_soft : 0.0) + (d_hard > 0 ? sum_hard / d_hard : 0.0);
    ctx_close(&x);
    free(own);
    free(gs);
    free(gh);
}

void ref_backward(const ref_case *k, const double *student, const double *upstream, double *grad)
{
    const int64_t n = k->n, c = k->c;
    double *own = malloc(((size_t)(n * c) + 1) * sizeof(double));
    double *gs = malloc(((size_t)c + 1) * sizeof(double)),
           *gh = malloc(((size_t)c + 1) * sizeof(double));
    ctx x;
    ctx_open(&x, k, student, own);
    double d_soft, d_hard;
    denominators(&x, &d_soft, &d_hard);
    const int mean = k->reduction == REF_MEAN;
    const double cs = mean ? (d_soft > 0 ? 1.0 / d_soft : 0.0) : 1.0;
    const double ch = mean ? (d_hard > 0 ? 1.0 / d_hard : 0.0) : 1.0;
    for (int64_t i = 0; i < n; i++) {
        double soft, hard;
        int son, hon;
        row_terms(&x, i, &soft, gs, &son, &hard, gh, &hon);
        double w = k->weights ? k->weights[i] : 1.0;
        double u = k->reduction == REF_NONE ? upstream[i] : upstream[0];
        for (int64_t j = 0; j < c; j++) {
            double g = 0.0;
            if (son)
                g += cs * soft_weight(k) * gs[j];
            if (hon)
                g += ch * k->hard_weight * gh[j];
            grad[i * c + j] = u * w * g;
        }
    }
    ctx_close(&x);
    free(own);
    free(gs);
    free(gh);
}

double ref_objective(const ref_case *k, const double *student, const double *upstream)
{
    const int64_t n = k->n;
    double *l = malloc(((size_t)n + 1) * sizeof(double));
    ref_forward(k, student, l, NULL);
    double v = 0.0;
    if (k->reduction == REF_NONE)
        for (int64_t i = 0; i < n; i++)
            v += upstream[i] * l[i];
    else
        v = upstream[0] * l[0];
    free(l);
    return v;
}

void ref_fd_gradient(const ref_case *k, const double *upstream, double h, double *grad)
{
    const int64_t n = k->n, c = k->c;
    double *s = malloc(((size_t)(n * c) + 1) * sizeof(double));
    ref_student_dense(k, s);
    for (int64_t e = 0; e < n * c; e++) {
        double x0 = s[e], xp = x0 + h, xm = x0 - h;
        s[e] = xp;
        double fp = ref_objective(k, s, upstream);
        s[e] = xm;
        double fm = ref_objective(k, s, upstream);
        s[e] = x0;
        grad[e] = (fp - fm) / (xp - xm);
    }
    free(s);
}

/* ---- test data ---- */

static void *keep(ref_arena *a, void *p)
{
    if (a->count < (int)(sizeof a->p / sizeof a->p[0]))
        a->p[a->count++] = p;
    return p;
}

void ref_arena_free(ref_arena *a)
{
    for (int i = 0; i < a->count; i++)
        free(a->p[i]);
    a->count = 0;
}

float *ref_new_logits(ref_arena *a, uint64_t seed, int64_t n, int64_t c, int64_t ld, double scale,
                      double shift)
{
    float *x = keep(a, malloc(((size_t)(n * ld) + 1) * sizeof(float)));
    kdt_rng r;
    kdt_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < ld; j++)
            x[i * ld + j] = j < c ? (float)(scale * kdt_normal(&r) + shift) : NAN;
    return x;
}

float *ref_new_probabilities(ref_arena *a, uint64_t seed, int64_t n, int64_t c, int64_t ld)
{
    float *x = ref_new_logits(a, seed, n, c, ld, 2.0, 0.0);
    for (int64_t i = 0; i < n; i++) {
        double m = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            m = x[i * ld + j] > m ? x[i * ld + j] : m;
        for (int64_t j = 0; j < c; j++)
            sum += exp(x[i * ld + j] - m);
        for (int64_t j = 0; j < c; j++)
            x[i * ld + j] = (float)(exp(x[i * ld + j] - m) / sum);
    }
    return x;
}

int32_t *ref_new_labels(ref_arena *a, uint64_t seed, int64_t n, int64_t c, double ignored,
                        int32_t ignore_index)
{
    int32_t *y = keep(a, malloc(((size_t)n + 1) * sizeof(int32_t)));
    kdt_rng r;
    kdt_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        y[i] = (int32_t)(kdt_next(&r) % (uint64_t)c);
        if (ignored > 0.0 && kdt_uniform(&r) < ignored)
            y[i] = ignore_index;
    }
    if (ignored > 0.0 && n > 1) {
        y[n - 1] = ignore_index;
        y[0] = (int32_t)(c - 1);
    }
    return y;
}

float *ref_new_weights(ref_arena *a, uint64_t seed, int64_t n)
{
    float *w = keep(a, malloc(((size_t)n + 1) * sizeof(float)));
    kdt_rng r;
    kdt_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(2.0 * kdt_uniform(&r));
    if (n > 1)
        w[0] = 0.0f;
    return w;
}

/* FreeMatch fairness (USB entropy_loss), from its definition: the selected
 * rows (w_i > 0) counted w_i times, p = softmax, hist = weighted histogram of
 * argmax p (first maximum), q = normalize(pm / lh) with 1/0 -> 0,
 * mbar = normalize(mean(p) / hist) with 1/0 -> 0, loss = sum q log(mbar + 1e-12).
 * The gradient: the scalers held constant, by the chain rule through the
 * normalisations and the mean, then the softmax Jacobian. */
double ref_fairness(int64_t n, int64_t c, const double *s, const float *w, const float *pm,
                    const float *lh, double *grad)
{
    double *p = malloc(sizeof(double) * (size_t)(n * c + 1));
    double *mean = calloc((size_t)c + 1, sizeof(double)),
           *hist = calloc((size_t)c + 1, sizeof(double));
    double *q = malloc(sizeof(double) * (size_t)(c + 1)),
           *mb = malloc(sizeof(double) * (size_t)(c + 1));
    double *gm = malloc(sizeof(double) * (size_t)(c + 1));
    double cnt = 0.0, loss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double wi = w ? w[i] : 1.0;
        if (grad)
            for (int64_t j = 0; j < c; j++)
                grad[i * c + j] = 0.0;
        if (wi == 0.0)
            continue;
        double mx = -INFINITY, z = 0.0;
        for (int64_t j = 0; j < c; j++)
            mx = fmax(mx, s[i * c + j]);
        for (int64_t j = 0; j < c; j++)
            z += exp(s[i * c + j] - mx);
        int64_t k = 0;
        for (int64_t j = 0; j < c; j++) {
            p[i * c + j] = exp(s[i * c + j] - mx) / z;
            if (p[i * c + j] > p[i * c + k])
                k = j;
        }
        hist[k] += wi;
        cnt += wi;
        for (int64_t j = 0; j < c; j++)
            mean[j] += wi * p[i * c + j];
    }
    if (cnt > 0.0) {
        double zq = 0.0, zm = 0.0;
        for (int64_t j = 0; j < c; j++) {
            mean[j] /= cnt;
            hist[j] /= cnt;
            q[j] = lh[j] != 0.0f ? (double)pm[j] / (double)lh[j] : 0.0;
            mb[j] = hist[j] != 0.0 ? mean[j] / hist[j] : 0.0;
            zq += q[j];
            zm += mb[j];
        }
        for (int64_t j = 0; j < c; j++) {
            q[j] /= zq;
            loss += q[j] * log(mb[j] / zm + 1e-12);
        }
        if (grad) {
            /* d loss / d mean_k = sum_j q_j / (mbar_j + eps) d mbar_j / d mean_k,
             * mbar_j = mb_j / zm, mb_j = mean_j / hist_j */
            double dot = 0.0;
            for (int64_t j = 0; j < c; j++)
                dot += q[j] / (mb[j] / zm + 1e-12) * mb[j] / zm;
            for (int64_t k = 0; k < c; k++) {
                const double dl_dmb = (q[k] / (mb[k] / zm + 1e-12) - dot) / zm;
                gm[k] = hist[k] != 0.0 ? dl_dmb / hist[k] : 0.0;
            }
            for (int64_t i = 0; i < n; i++) {
                const double wi = w ? w[i] : 1.0;
                if (wi == 0.0)
                    continue;
                /* d mean_k / d p_ik = w_i / cnt; softmax Jacobian */
                double sp = 0.0;
                for (int64_t k = 0; k < c; k++)
                    sp += p[i * c + k] * gm[k];
                for (int64_t j = 0; j < c; j++)
                    grad[i * c + j] = wi / cnt * p[i * c + j] * (gm[j] - sp);
            }
        }
    }
    free(p);
    free(mean);
    free(hist);
    free(q);
    free(mb);
    free(gm);
    return loss;
}
