/* Distillation by divergence at temperature T between the teacher's
 * P = softmax(t/T) and the student's Q = softmax(s/T), plus the optional
 * hard-label cross-entropy term.  With f = T^2 (or 1):
 *   forward KL  D = sum P (log P - log Q)         dD/ds = (Q - P) / T
 *   reverse KL  D = sum Q (log Q - log P)         dD/ds = Q (d - D) / T, d = log Q - log P
 *   JSD(beta)   D = beta KL(P||M) + (1-beta) KL(Q||M), M = beta P + (1-beta) Q
 *               dD/ds = Q (g - sum Q g) / T,  g = (1-beta)(log Q - log M)
 * (Liger-Kernel's generalized JSD: beta = 0 is forward KL, beta = 1 reverse.) */
#include <math.h>

#include "kernels/rowops.h"
#include "kernels/simd.h"
#include "losses/loss_internal.h"

kdi_hard kdi_hard_begin(const kd_loss *h, const kdi_row *r)
{
    kdi_hard hd = {0};
    hd.active = r->y >= 0;
    if (!hd.active)
        return hd;
    hd.l = kdi_row_lse_ops(h->ops, r->s, h->c, 1.0f);
    hd.oh = kdi_smoothed_onehot(h);
    hd.y = r->y;
    hd.coef = (float)r->c_hard;
    return hd;
}

/* ---- the double-precision row (every divergence at T > KDI_KL_FAST_MAX_T,
 * reverse KL and JSD at every T, and the value of a forward-KL row whose
 * float pass overflowed) ----
 * With w = log p - log q each divergence is a sum of terms
 *   p w - (p - q) = p log(p / q) - p + q >= 0
 * (the p - q parts add up to 0): their first-order parts cancel exactly
 * inside each term, so the sum stays accurate where P and Q are near uniform
 * (large T, where sum p w alone is a difference of near-equal numbers), and
 * it is never negative.  Every log-probability is computed in double from
 * the float logits, and p - q = -q expm1(w) (or p expm1(-w)). */

/* JSD's M = beta P + (1 - beta) Q: log p - log m and log q - log m from w
 * and x (kdi_kl_pq_of) without going through log m itself, whose rounding
 * (about 1e-16 of log C) would exceed the terms at large T */
static inline void jsd_logs(double beta, double w, kdi_kl_pq x, double *wpm, double *wqm)
{
    if (w <= 0.0) { /* m = q (1 + beta expm1(w)) */
        const double l = log1p(beta * x.e);
        *wpm = w - l;
        *wqm = -l;
    } else { /* m = p (1 + (1 - beta) expm1(-w)) */
        const double l = log1p((1.0 - beta) * x.e);
        *wpm = -l;
        *wqm = -w - l;
    }
}

typedef struct {
    float ms, mt;
    double inv_t, lss, lst; /* log sum exp((x - max) inv_t) of s and t */
} kl_lse;

static kl_lse kl_lse_of(const kd_loss *h, const float *s, const float *t)
{
    kl_lse l;
    const int64_t c = h->c;
    l.inv_t = 1.0 / h->temperature;
    l.ms = h->ops->row_max(s, c);
    l.mt = h->ops->row_max(t, c);
    double ss = 0.0, st = 0.0;
    for (int64_t j = 0; j < c; j++) {
        ss += exp(((double)s[j] - l.ms) * l.inv_t);
        st += exp(((double)t[j] - l.mt) * l.inv_t);
    }
    l.lss = log(ss);
    l.lst = log(st);
    return l;
}

/* log q_j, log p_j */
static inline void kl_logs(const kl_lse *l, float s, float t, double *lq, double *lp)
{
    *lq = ((double)s - l->ms) * l->inv_t - l->lss;
    *lp = ((double)t - l->mt) * l->inv_t - l->lst;
}

/* forward KL of one row in double (no gradient) */
double kdi_kl_forward_double(const kd_loss *h, const float *s, const float *t)
{
    const kl_lse l = kl_lse_of(h, s, t);
    double d = 0.0;
    for (int64_t j = 0; j < h->c; j++) {
        double lq, lp;
        kl_logs(&l, s[j], t[j], &lq, &lp);
        d += kdi_kl_term(kdi_kl_pq_of(lp, lq, lp - lq), lp - lq);
    }
    return d;
}

static void kl_double_row(const kd_loss *h, const kdi_row *r, int div, double beta, float f,
                          float cs, double terms[2])
{
    const int64_t c = h->c;
    const float *s = r->s, *t = r->t;
    float *g = r->g;
    const kl_lse l = kl_lse_of(h, s, t);
    const kdi_hard hd = kdi_hard_begin(h, r);
    double d = 0.0, dq = 0.0, ce = 0.0; /* JSD: d = KL(P||M), dq = KL(Q||M) */
    for (int64_t j = 0; j < c; j++) {
        double lq, lp;
        kl_logs(&l, s[j], t[j], &lq, &lp);
        const double w = lp - lq;
        const kdi_kl_pq x = kdi_kl_pq_of(lp, lq, w);
        if (hd.active)
            ce += kdi_hard_loss_at(&hd, s[j], j);
        if (div == KD_DIVERGENCE_FORWARD_KL) {
            d += kdi_kl_term(x, w);
            if (g) /* the only pass: s_j is read before g_j is written */
                g[j] = (float)(cs * -x.pq) + (hd.active ? kdi_hard_grad_at(&hd, s[j], j) : 0.0f);
        } else if (div == KD_DIVERGENCE_REVERSE_KL) {
            const kdi_kl_pq y = {x.q, x.p, -x.pq, 0.0};
            d += kdi_kl_term(y, -w);
        } else { /* KL(P||M) and KL(Q||M): m - q = beta (p - q), m - p = (1 - beta) (q - p) */
            double wpm, wqm;
            jsd_logs(beta, w, x, &wpm, &wqm);
            const double m = x.q + beta * x.pq;
            const kdi_kl_pq yp = {x.p, m, (1.0 - beta) * x.pq, 0.0},
                            yq = {x.q, m, -beta * x.pq, 0.0};
            d += kdi_kl_term(yp, wpm);
            dq += kdi_kl_term(yq, wqm);
        }
    }
    if (div == KD_DIVERGENCE_JSD)
        d = beta * d + (1.0 - beta) * dq;
    /* last guard (each term is >= 0; keeps NaN) */
    terms[0] = f * (d < 0.0 ? 0.0 : d);
    terms[1] = ce;
    if (!g || div == KD_DIVERGENCE_FORWARD_KL)
        return;
    /* reverse KL: g = cs q (d_j - D), d_j = log q_j - log p_j, D = the divergence;
     * JSD: g = cs q (1 - beta) ((log q_j - log m_j) - KL(Q||M)) */
    const double mean = div == KD_DIVERGENCE_REVERSE_KL ? d : dq;
    for (int64_t j = 0; j < c; j++) {
        const float sj = s[j];
        double lq, lp;
        kl_logs(&l, sj, t[j], &lq, &lp);
        const double w = lp - lq;
        double gj;
        if (div == KD_DIVERGENCE_REVERSE_KL) {
            gj = exp(lq) * (-w - mean);
        } else {
            const kdi_kl_pq x = kdi_kl_pq_of(lp, lq, w);
            double wpm, wqm;
            jsd_logs(beta, w, x, &wpm, &wqm);
            gj = x.q * (1.0 - beta) * (wqm - mean);
        }
        g[j] = (float)(cs * gj) + (hd.active ? kdi_hard_grad_at(&hd, sj, j) : 0.0f);
    }
}

int kdi_kl_fast(const kd_loss *h)
{
    const int fwd = h->divergence == KD_DIVERGENCE_FORWARD_KL ||
                    (h->divergence == KD_DIVERGENCE_JSD && h->jsd_beta == 0.0);
    return fwd && h->temperature <= KDI_KL_FAST_MAX_T;
}

void kdi_kl_distill_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const float *s = r->s, *t = r->t;
    const float inv_t = (float)(1.0 / h->temperature);
    const float f = h->t2_scaling ? (float)(h->temperature * h->temperature) : 1.0f;
    const float cs = (float)r->c_soft * f * inv_t;
    float *g = r->g;

    int div = h->divergence;
    double beta = h->jsd_beta;
    if (div == KD_DIVERGENCE_JSD && beta == 0.0)
        div = KD_DIVERGENCE_FORWARD_KL;
    else if (div == KD_DIVERGENCE_JSD && beta == 1.0)
        div = KD_DIVERGENCE_REVERSE_KL;

    if (!kdi_kl_fast(h)) {
        kl_double_row(h, r, div, beta, f, cs, terms);
        return;
    }
    /* forward KL at T <= KDI_KL_FAST_MAX_T: one vectorised float row kernel */
    double d = 0.0, ce = 0.0;
    const kdi_onehot oh = kdi_smoothed_onehot(h);
    kdi_simd_label lab = {r->y >= 0, r->y, oh.on, oh.off, (float)r->c_hard};
    h->ops->kl_row(s, t, g, c, inv_t, inv_t, cs, &lab, r->work, r->nthr, r->pipe, &d, &ce);
    terms[0] = f * kdi_kl_fix(h, s, t, g, d);
    terms[1] = ce;
}

double kdi_kl_fix_slow(const kd_loss *h, const float *s, const float *t, const float *g, double d)
{
    /* the float pass overflows (+Inf) where the student row spans more than
     * FLT_MAX (logits near 1e38): the row's value again in double while the
     * student is still there (the gradient is right: q_j underflows to 0) */
    if (d == INFINITY && g != s && isfinite(h->ops->row_max(s, h->c)))
        d = kdi_kl_forward_double(h, s, t);
    return d < 0.0 ? 0.0 : d; /* last guard against rounding (keeps NaN) */
}
