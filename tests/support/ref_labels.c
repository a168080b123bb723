/* Double-precision references of the label tools (ref_labels.h). */
#include "ref_labels.h"

#include <math.h>
#include <stdlib.h>

void ref_flexmatch_thresholds(const int32_t *pred, int64_t n, int64_t c, double tau, int mapping,
                              int warmup, double *tau_c, double *beta)
{
    int64_t *count = calloc((size_t)c, sizeof *count);
    int64_t none = 0;
    for (int64_t i = 0; i < n; i++) {
        if (pred[i] < 0)
            none++;
        else
            count[pred[i]]++;
    }
    int64_t max = 0;
    for (int64_t j = 0; j < c; j++)
        if (count[j] > max)
            max = count[j];
    double denom = (double)max;
    if (warmup && none > max)
        denom = (double)none;
    for (int64_t j = 0; j < c; j++) {
        double b = max == 0 ? 0.0 : (double)count[j] / denom;
        double m = mapping == 0 ? b : mapping == 1 ? log(b + 1.0) / log(2.0) : b / (2.0 - b);
        tau_c[j] = m * tau;
        if (beta)
            beta[j] = b;
    }
    free(count);
}

void ref_select(int64_t n, int64_t c, const float *x, int64_t ld, int logits, int non_strict,
                double threshold, const float *class_thresholds, int64_t top_k, double *conf,
                int32_t *label, int *mask)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * ld;
        int32_t best = 0;
        for (int64_t j = 1; j < c; j++)
            if (row[j] > row[best])
                best = (int32_t)j;
        label[i] = best;
        if (logits) {
            double s = 0.0;
            for (int64_t j = 0; j < c; j++)
                s += exp((double)row[j] - (double)row[best]);
            conf[i] = 1.0 / s;
        } else {
            conf[i] = row[best];
        }
        double t = class_thresholds ? class_thresholds[best] : threshold;
        mask[i] = conf[i] > t || (non_strict && conf[i] >= t);
    }
    if (top_k <= 0)
        return;
    int *keep = malloc((size_t)(n > 0 ? n : 1) * sizeof *keep);
    for (int64_t i = 0; i < n; i++) {
        keep[i] = 0;
        if (!mask[i])
            continue;
        int64_t better = 0;
        for (int64_t j = 0; j < n; j++)
            if (j != i && mask[j] && label[j] == label[i] &&
                (conf[j] > conf[i] || (conf[j] == conf[i] && j < i)))
                better++;
        keep[i] = better < top_k;
    }
    for (int64_t i = 0; i < n; i++)
        mask[i] = keep[i];
    free(keep);
}

double ref_label_score(const float *row, int64_t c, int32_t y, int kind)
{
    double self = row[y];
    if (kind == 0)
        return self;
    double other = 0.0;
    for (int64_t j = 0; j < c; j++)
        if (j != y && row[j] > other)
            other = row[j];
    double margin = self - other;
    return kind == 2 ? margin : (margin + 1.0) / 2.0;
}

void ref_label_issues(int64_t n, int64_t c, const float *p, int64_t ld, const int32_t *labels,
                      int32_t ignore_index, float *t, int32_t *k, int *suspect)
{
    for (int64_t j = 0; j < c; j++) {
        double s = 0.0;
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (labels[i] == j) {
                s += p[i * ld + j];
                m++;
            }
        t[j] = m ? (float)(s / (double)m) : INFINITY;
    }
    for (int64_t i = 0; i < n; i++) {
        int32_t best = -1;
        for (int64_t j = 0; j < c; j++)
            if (p[i * ld + j] >= t[j] && (best < 0 || p[i * ld + j] > p[i * ld + best]))
                best = (int32_t)j;
        k[i] = best;
        suspect[i] = labels[i] != ignore_index && best >= 0 && best != labels[i];
    }
}

void ref_soft_labels(int64_t n, int64_t c, const int32_t *labels, int32_t ignore_index, double w,
                     int mode, const float *p, int64_t ld, const int32_t *pred, double *q)
{
    for (int64_t i = 0; i < n; i++) {
        double wi = labels[i] == ignore_index ? 0.0 : w;
        int64_t pr = 0;
        if (mode == 0) {
            if (pred) {
                pr = pred[i];
            } else {
                for (int64_t j = 1; j < c; j++)
                    if (p[i * ld + j] > p[i * ld + pr])
                        pr = j;
            }
        }
        for (int64_t j = 0; j < c; j++) {
            double other = mode == 0 ? (double)(j == pr) : (double)p[i * ld + j];
            q[i * c + j] = wi * (double)(j == labels[i]) + (1.0 - wi) * other;
        }
    }
}

void ref_ensemble(int64_t n, int64_t c, int k, const float *const *x, const int64_t *lds,
                  const float *weights, double *out)
{
    double total = 0.0;
    for (int r = 0; r < k; r++)
        total += weights ? weights[r] : 1.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double s = 0.0;
            for (int r = 0; r < k; r++)
                s += (weights ? weights[r] : 1.0) * (double)x[r][i * lds[r] + j];
            out[i * c + j] = s / total;
        }
}
