#include "ref_selftrain.h"

#include <math.h>
#include <stdlib.h>

void rst_log_softmax(const double *z, int64_t c, double scale, double *out)
{
    double m = -INFINITY;
    for (int64_t j = 0; j < c; j++)
        m = scale * z[j] > m ? scale * z[j] : m;
    double s = 0.0;
    for (int64_t j = 0; j < c; j++)
        s += exp(scale * z[j] - m);
    for (int64_t j = 0; j < c; j++)
        out[j] = scale * z[j] - m - log(s);
}

int64_t rst_argmax(const double *z, int64_t c)
{
    int64_t b = 0;
    for (int64_t j = 0; j < c; j++) {
        if (isnan(z[j]))
            return j;
        if (z[j] > z[b])
            b = j;
    }
    return b;
}

static double reduce(int64_t n, const double *v, double denom, int red, double *per)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += v[i];
        if (per)
            per[i] = v[i];
    }
    if (red == 0)
        return denom > 0 ? s / denom : 0.0;
    return s;
}

/* Mask and label of one teacher row; lp receives log softmax(t). */
static int keep_row(const double *t, int64_t c, const rst_thresh *th, double *lp, int32_t *label)
{
    rst_log_softmax(t, c, 1.0, lp);
    int64_t k = rst_argmax(t, c);
    double conf = exp(lp[k]);
    double tau = th->class_tau ? th->class_tau[k] : th->tau;
    *label = (int32_t)k;
    return th->inclusive ? conf >= tau : conf > tau;
}

double rst_pseudo_label(int64_t n, int64_t c, const double *s, const double *t,
                        const rst_thresh *th, const double *w, int red, double *per, double *mask,
                        int32_t *labels)
{
    double *lp = malloc(sizeof(double) * (size_t)c), *ls = malloc(sizeof(double) * (size_t)c);
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        int32_t y;
        int m = keep_row(t + i * c, c, th, lp, &y);
        if (mask)
            mask[i] = m;
        if (labels)
            labels[i] = y;
        if (m) {
            rst_log_softmax(s + i * c, c, 1.0, ls);
            v[i] = (w ? w[i] : 1.0) * -ls[y];
        }
    }
    double r = reduce(n, v, (double)n, red, per);
    free(lp);
    free(ls);
    free(v);
    return r;
}

double rst_strong_weak(int64_t n, int64_t c, const double *s, const double *t, double temp,
                       const rst_thresh *th, const double *w, int red, double *per)
{
    double *lp = malloc(sizeof(double) * (size_t)c), *lq = malloc(sizeof(double) * (size_t)c);
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    double kept = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int32_t y;
        if (!keep_row(t + i * c, c, th, lp, &y))
            continue;
        kept += 1.0;
        rst_log_softmax(s + i * c, c, 1.0 / temp, lq);
        double d = 0.0;
        for (int64_t j = 0; j < c; j++)
            if (exp(lp[j]) > 0.0)
                d += exp(lp[j]) * (lp[j] - lq[j]);
        v[i] = (w ? w[i] : 1.0) * d;
    }
    double r = reduce(n, v, kept > 1.0 ? kept : 1.0, red, per);
    free(lp);
    free(lq);
    free(v);
    return r;
}

double rst_consistency(int64_t n, int64_t c, const double *x1, const double *x2, int logits,
                       int dist, const double *w, int red, double *per)
{
    double *l1 = malloc(sizeof(double) * (size_t)c), *l2 = malloc(sizeof(double) * (size_t)c);
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < c; j++) {
            l1[j] = logits ? 0 : log(x1[i * c + j]);
            l2[j] = logits ? 0 : log(x2[i * c + j]);
        }
        if (logits) {
            rst_log_softmax(x1 + i * c, c, 1.0, l1);
            rst_log_softmax(x2 + i * c, c, 1.0, l2);
        }
        double d = 0.0;
        for (int64_t j = 0; j < c; j++) {
            double p1 = logits ? exp(l1[j]) : x1[i * c + j],
                   p2 = logits ? exp(l2[j]) : x2[i * c + j];
            if (dist == 0) {
                d += (p1 - p2) * (p1 - p2);
            } else if (dist == 1) {
                if (p2 > 0)
                    d += p2 * (l2[j] - l1[j]);
            } else {
                double m = 0.5 * (p1 + p2), lm = log(m);
                if (p1 > 0)
                    d += 0.5 * p1 * (l1[j] - lm);
                if (p2 > 0)
                    d += 0.5 * p2 * (l2[j] - lm);
            }
        }
        v[i] = (w ? w[i] : 1.0) * d;
    }
    double r = reduce(n, v, (double)n, red, per);
    free(l1);
    free(l2);
    free(v);
    return r;
}

static double clamped_log(double x)
{
    double l = log(x);
    return l > -100.0 ? l : -100.0;
}

double rst_class_balance(int64_t n, int64_t c, const double *x, int logits)
{
    if (n == 0)
        return 0.0;
    double *mean = calloc((size_t)c, sizeof(double)), *lp = malloc(sizeof(double) * (size_t)c);
    for (int64_t i = 0; i < n; i++) {
        if (logits)
            rst_log_softmax(x + i * c, c, 1.0, lp);
        for (int64_t j = 0; j < c; j++)
            mean[j] += (logits ? exp(lp[j]) : x[i * c + j]) / (double)n;
    }
    double y = 1.0 / (double)c, l = 0.0;
    for (int64_t j = 0; j < c; j++)
        l -= y * clamped_log(mean[j]) + (1.0 - y) * clamped_log(1.0 - mean[j]);
    free(mean);
    free(lp);
    return l / (double)c;
}

double rst_mcc(int64_t n, int64_t c, const double *z, double temp, const double *wfix,
               double *w_out)
{
    if (n == 0)
        return 0.0;
    double *p = malloc(sizeof(double) * (size_t)(n * c)), *w = malloc(sizeof(double) * (size_t)n);
    double *a = calloc((size_t)(c * c), sizeof(double)), *r = calloc((size_t)c, sizeof(double));
    double se = 0.0;
    for (int64_t i = 0; i < n; i++) {
        rst_log_softmax(z + i * c, c, 1.0 / temp, p + i * c);
        double h = 0.0;
        for (int64_t j = 0; j < c; j++) {
            p[i * c + j] = exp(p[i * c + j]);
            h -= p[i * c + j] * log(p[i * c + j] + 1e-5);
        }
        w[i] = 1.0 + exp(-h);
        se += w[i];
    }
    for (int64_t i = 0; i < n; i++) {
        w[i] = wfix ? wfix[i] : (double)n * w[i] / se;
        if (w_out)
            w_out[i] = w[i];
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++)
            for (int64_t k = 0; k < c; k++)
                a[j * c + k] += w[i] * p[i * c + j] * p[i * c + k];
    for (int64_t k = 0; k < c; k++)
        for (int64_t m = 0; m < c; m++)
            r[k] += a[k * c + m];
    double l = 0.0; /* sum A' - trace A', A'_jk = A_jk / r_k (broadcast over the last dim) */
    for (int64_t j = 0; j < c; j++)
        for (int64_t k = 0; k < c; k++)
            if (j != k && r[k] != 0.0)
                l += a[j * c + k] / r[k];
    free(p);
    free(w);
    free(a);
    free(r);
    return l / (double)c;
}

double rst_worst_case(int64_t nl, int64_t nu, int64_t c, const double *lm, const double *la,
                      const double *um, const double *ua, double eta, int red)
{
    double *lp = malloc(sizeof(double) * (size_t)c), sl = 0.0, su = 0.0;
    for (int64_t i = 0; i < nl; i++) {
        rst_log_softmax(la + i * c, c, 1.0, lp);
        sl -= lp[rst_argmax(lm + i * c, c)];
    }
    for (int64_t i = 0; i < nu; i++) {
        rst_log_softmax(ua + i * c, c, 1.0, lp);
        int64_t k = rst_argmax(um + i * c, c);
        double q = 0.0;
        for (int64_t j = 0; j < c; j++)
            q += j == k ? 0.0 : exp(lp[j]);
        double v = q + 1e-6;
        su -= log(v < 1.0 ? v : 1.0);
    }
    free(lp);
    if (red == 0)
        return eta * (nl > 0 ? sl / (double)nl : 0.0) + (nu > 0 ? su / (double)nu : 0.0);
    return eta * sl + su;
}

void rst_fd_grad(rst_fn f, void *ctx, double *x, int64_t m, double step, double *g)
{
    for (int64_t k = 0; k < m; k++) {
        double x0 = x[k];
        x[k] = x0 + step;
        double fp = f(ctx, x);
        x[k] = x0 - step;
        double fm = f(ctx, x);
        x[k] = x0;
        g[k] = (fp - fm) / (2.0 * step);
    }
}

void rst_to_double(const float *x, int64_t ld, int64_t n, int64_t c, double *out)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++)
            out[i * c + j] = x[i * ld + j];
}
