/* Double-precision references of the self-training losses, written from the
 * tllib definitions (loss values only: gradients are checked against central
 * finite differences of these functions, so the references never encode the
 * library's gradient formulas).  Matrices are dense row-major n x c doubles.
 * red: 0 = mean, 1 = sum, 2 = none (per[] gets the per-sample values; the
 * return value is then their sum). */
#ifndef REF_SELFTRAIN_H
#define REF_SELFTRAIN_H

#include <stdint.h>

/* log softmax(scale * z) of one row. */
void rst_log_softmax(const double *z, int64_t c, double scale, double *out);
/* torch.argmax: first maximum, first NaN if any. */
int64_t rst_argmax(const double *z, int64_t c);

typedef struct {
    double tau;              /* global threshold */
    int inclusive;           /* 0: conf > tau, 1: conf >= tau */
    const double *class_tau; /* per-class thresholds or NULL */
} rst_thresh;

/* m_i CE(s_i, argmax t_i), m_i = [max softmax(t_i) > tau]; mean over n. */
double rst_pseudo_label(int64_t n, int64_t c, const double *s, const double *t,
                        const rst_thresh *th, const double *w, int red, double *per, double *mask,
                        int32_t *labels);
/* m_i KL(softmax(t_i) || softmax(s_i / T)); mean = sum / max(sum m, 1). */
double rst_strong_weak(int64_t n, int64_t c, const double *s, const double *t, double temp,
                       const rst_thresh *th, const double *w, int red, double *per);
/* w_i D(p1_i, p2_i); dist 0 = L2, 1 = KL(p2||p1), 2 = JS; logits or probabilities. */
double rst_consistency(int64_t n, int64_t c, const double *x1, const double *x2, int logits,
                       int dist, const double *w, int red, double *per);
/* (1/C) sum_c BCE(mean_i p_ic, 1/C), logs clamped at -100. */
double rst_class_balance(int64_t n, int64_t c, const double *x, int logits);
/* MCC at temperature T.  wfix: entropy weights to hold fixed (NULL: compute
 * them); w_out (may be NULL) receives the weights used. */
double rst_mcc(int64_t n, int64_t c, const double *z, double temp, const double *wfix,
               double *w_out);
/* eta' * mean CE(la, argmax lm) + mean -log(min(1 - softmax(ua)[argmax um] + 1e-6, 1)). */
double rst_worst_case(int64_t nl, int64_t nu, int64_t c, const double *lm, const double *la,
                      const double *um, const double *ua, double eta, int red);

/* Central finite differences of f at x (m values, x restored afterwards). */
typedef double (*rst_fn)(void *ctx, const double *x);
void rst_fd_grad(rst_fn f, void *ctx, double *x, int64_t m, double step, double *g);

/* Strided float matrix -> dense double (and back, for building inputs). */
void rst_to_double(const float *x, int64_t ld, int64_t n, int64_t c, double *out);

#endif
