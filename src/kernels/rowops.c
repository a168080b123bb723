#include "kernels/rowops.h"
#include "kernels/simd.h"

#include <math.h>

float kdi_row_max(const float *x, int64_t c) { return kdi_simd(KDI_ISA_AUTO)->row_max(x, c); }

kdi_lse kdi_row_lse(const float *x, int64_t c, float scale)
{
    return kdi_row_lse_ops(kdi_simd(KDI_ISA_AUTO), x, c, scale);
}

kdi_lse kdi_row_lse_ops(const kdi_simd_ops *v, const float *x, int64_t c, float scale)
{
    kdi_lse l;
    l.max = v->row_max(x, c);
    if (!isfinite(l.max)) {
        /* NaN or +Inf anywhere, or every logit -Inf: no finite softmax exists;
         * NaN propagates through every later use. */
        l.logsum = NAN;
        return l;
    }
    l.logsum = (float)log(v->row_sumexp(x, c, scale, l.max));
    return l;
}

int64_t kdi_row_argmax(const float *x, int64_t c)
{
    int64_t best = 0;
    float m = x[0];
    for (int64_t j = 1; j < c; j++)
        if (x[j] > m || (isnan(m) && !isnan(x[j]))) {
            m = x[j];
            best = j;
        }
    return best;
}

double kdi_row_sum(const float *x, int64_t c)
{
    double s = 0.0;
    for (int64_t j = 0; j < c; j++)
        s += x[j];
    return s;
}

void kdi_row_average(float *out, const float *const *rows, const float *w, int32_t k, int64_t c)
{
    for (int64_t j = 0; j < c; j++)
        out[j] = w[0] * rows[0][j];
    for (int32_t r = 1; r < k; r++)
        for (int64_t j = 0; j < c; j++)
            out[j] += w[r] * rows[r][j];
}

int kdi_row_all_finite(const float *x, int64_t c, int64_t *bad)
{
    for (int64_t j = 0; j < c; j++)
        if (!isfinite(x[j])) {
            *bad = j;
            return 0;
        }
    return 1;
}

/* torch.max / argmax: the first maximum, or the first NaN. */
int64_t kdi_row_argmax_torch(const float *x, int64_t c)
{
    return kdi_simd(KDI_ISA_AUTO)->row_argmax(x, c);
}

void kdi_softmax_backward(float *g, const float *x, kdi_lse l, float scale, const float *v,
                          float coef, int64_t c)
{
    double dot = 0.0;
    for (int64_t j = 0; j < c; j++)
        dot += (double)expf(kdi_log_softmax(x[j], scale, l)) * v[j];
    const float d = (float)dot;
    for (int64_t j = 0; j < c; j++) {
        float p = expf(kdi_log_softmax(x[j], scale, l));
        g[j] = coef * p * (v[j] - d);
    }
}
