/* SIMD row kernels chosen at run time.
 *
 * The same source (simd_impl.h and the parts it includes, written with
 * GCC/Clang vector extensions) is compiled once per instruction set: portable
 * baseline (SSE2 on x86-64, plain scalar code elsewhere), AVX2+FMA and
 * AVX-512.  kdi_simd() picks the best one the CPU has; tests call every
 * variant the machine supports and compare.
 * The exp (of arguments <= 0, all softmax needs) is a degree-6 polynomial in
 * the baseline variant and a table of 2^(i/8) (AVX2) or 2^(i/16) (AVX-512)
 * with a degree-4 (AVX2) or degree-3 (AVX-512) polynomial, all within ~1 ulp (tested on a sweep of
 * floats); otherwise the variants differ only in the order of the row sums,
 * so they agree to float32 rounding. */
#ifndef KDI_SIMD_H
#define KDI_SIMD_H

#include <stdint.h>

enum { KDI_ISA_AUTO = 0, KDI_ISA_BASE = 1, KDI_ISA_AVX2 = 2, KDI_ISA_AVX512 = 3 };

/* A hard label inside a row kernel: the labelled class y gets `on`, every
 * other class `off`; coef is the gradient coefficient of that term. */
typedef struct {
    int active;
    int32_t y;
    float on, off, coef;
} kdi_simd_label;

/* Rows of at most small_c classes (kdi_simd_ops) go through the *_small
 * kernels, which hold up to `lanes` rows at once with one row per vector
 * lane, so a short row costs a few vector instructions instead of a full row
 * pass.  KDI_SMALL_C is the largest small_c of any variant. */
#define KDI_SMALL_C 100
#define KDI_MAX_LANES 16
/* ce_small and pl_small take the log-sum of a row whose float loss is below
 * this again in double (a confident row: see lane_logsum_ in simd_short.h) */
#define KDI_SMALL_LOSS 0.01f

/* One row of a *_small call. */
typedef struct {
    const float *s; /* student logits */
    const float *t; /* teacher logits, probabilities (ce_small src_kind 1) or NULL */
    float *g;       /* gradient row or NULL; may equal s */
    float cs;       /* gradient coefficient of the soft term */
    float a;        /* ce_small: weight of the soft source */
    float lab_sum;  /* ce_small: sum of the label part of q */
    kdi_simd_label lab;
} kdi_small_row;

/* Long rows are cut into segments of KDI_SEG elements (the last segment also
 * takes the remainder; a row under 2 KDI_SEG is one segment).  Every pass
 * over a row runs segment by segment, and the segments of one row can run
 * on several threads (the nthr argument; 1 = the calling thread only); the
 * per-segment sums are added in segment order, so the results are the same
 * for every nthr. */
#define KDI_SEG 4096
#define KDI_NSEG(c) ((c) >= 2 * KDI_SEG ? (c) / KDI_SEG : 1)

/* Scratch floats per row that the row kernels need: three rows of exps and
 * per segment three double sums and the next row's two maxima. */
#define KDI_SIMD_WORK(c) (3 * (c) + 8 * KDI_NSEG(c))

/* Rows handed to a row kernel one after another: the kernel also takes the
 * maxima of the next row, and the next call skips its max pass.  A row of
 * one segment takes them in its exp passes over row s (and t), so the next
 * row's first read from memory overlaps this row's arithmetic; a longer row
 * (of at most prefetch_c classes) prefetches the next row into L2 in its exp
 * passes and takes the maxima in its gradient pass; longer rows hand nothing.
 * In: ns / nt = the next row (NULL: none); s / t, ms / mt = a row whose
 * maxima are known (NULL: none), used when they are this call's row.
 * Out: s / t, ms / mt describe the next row (or NULL). */
typedef struct {
    const float *s, *t;
    float ms, mt;
    const float *ns, *nt;
    int kept;           /* pseudo-label: the last row was kept (its student row is then
                 prefetched during the next teacher row's scan) */
    int64_t prefetch_c; /* rows of more than one segment and at most this many
                           classes prefetch the next row into L2 (see above) */
} kdi_pipe;

typedef struct kdi_simd_ops kdi_simd_ops;
struct kdi_simd_ops {
    int isa;
    const char *name;
    int lanes;       /* rows per *_small call */
    int small_c;     /* the longest rows the *_small kernels take: where they stop
                    being faster than the row kernels (measured: about 100 on
                    AVX-512, 32 on AVX2 and the baseline) */
    int mse_small_c; /* the same for mse_small, whose row kernel is much
                        cheaper (no exps without a label; measured: 32 on
                        AVX-512, 16 on AVX2, 8 on the baseline) */
    /* max of a row; NaN if any element is NaN */
    float (*row_max)(const float *x, int64_t c);
    /* sum_j exp(scale * (x_j - max)), max >= every x_j (the row max) */
    double (*row_sumexp)(const float *x, int64_t c, float scale, float max);
    /* index of the largest element, the first on ties; the first NaN if any
     * (torch.argmax semantics); 0 for a row of -Inf */
    int64_t (*row_argmax)(const float *x, int64_t c);
    /* A teacher row's pseudo-label: returns its argmax (as row_argmax) and
     * sets *sum = sum_j exp(t_j - t_argmax) (the confidence is 1 / *sum), NaN
     * when t_argmax is not finite.  work: KDI_SIMD_WORK(c) floats; pf: NULL
     * or c floats (the student row) to prefetch into L2 during the scan. */
    int64_t (*row_confidence)(const float *t, int64_t c, float *work, int nthr, const float *pf,
                              double *sum);
    /* One row of forward-KL distillation at temperature 1/inv_t (the teacher
     * at 1/inv_tt: equal for distillation, 1 for strong/weak), everything
     * in one call: with Q = softmax(s inv_t), P = softmax(t inv_tt) returns
     * *kl = sum_j P_j (log P_j - log Q_j) (0 where P_j = 0) and, for an active
     * label, *ce = CE(s, y) with the smoothed one-hot (on, off); when g != NULL
     * writes g_j = cs (Q_j - P_j) + coef (softmax(s)_j - onehot_j).  g may
     * equal s.  work: KDI_SIMD_WORK(c) floats (the exps are computed once);
     * the row's segments run on nthr threads (see KDI_SEG); pipe: NULL or
     * the maxima handed between consecutive rows (see kdi_pipe). */
    void (*kl_row)(const float *s, const float *t, float *g, int64_t c, float inv_t, float inv_tt,
                   float cs, const kdi_simd_label *lab, float *work, int nthr, kdi_pipe *pipe,
                   double *kl, double *ce);
    /* One row of cross-entropy against q_j = a src_j + lab (lab = the smoothed
     * one-hot (on, off), already scaled by its weight; coef unused), src = given
     * probabilities (src_kind 1), softmax(t inv_t) (2) or nothing (0).  Returns
     * -sum_j q_j log softmax(s)_j (0 where q_j = 0); when g != NULL writes
     * g_j = cs (softmax(s)_j sum(q) - q_j), sum(q) = lab_sum + a sum(src).
     * g may equal s.  work, nthr and pipe as in kl_row. */
    double (*ce_row)(const float *s, const float *src, int src_kind, float *g, int64_t c,
                     float inv_t, float a, const kdi_simd_label *lab, float lab_sum, float cs,
                     float *work, int nthr, kdi_pipe *pipe);
    /* One row of logit matching: *sq = sum_j (s_j - t_j)^2 and, for an active
     * label, *ce = CE(s, y) as in kl_row; when g != NULL writes
     * g_j = k (s_j - t_j) + coef (softmax(s)_j - onehot_j).  g may equal s.
     * work, nthr and pipe as in kl_row. */
    void (*mse_row)(const float *s, const float *t, float *g, int64_t c, float k,
                    const kdi_simd_label *lab, float *work, int nthr, kdi_pipe *pipe, double *sq,
                    double *ce);
    /* kl_row for nrows <= lanes rows of c <= KDI_SMALL_C classes at once:
     * kl[r], ce[r] per row; gradients as kl_row (g may equal s). */
    void (*kl_small)(const kdi_small_row *rows, int nrows, int64_t c, float inv_t, double *kl,
                     double *ce);
    /* ce_row for nrows <= lanes rows of c <= KDI_SMALL_C classes at once, with
     * q_j = a src_j + lab (per row) and src as in ce_row; loss[r] per row. */
    void (*ce_small)(const kdi_small_row *rows, int nrows, int64_t c, int src_kind, float inv_t,
                     double *loss);
    /* Confidence-threshold pseudo-label of nrows <= lanes short rows (t =
     * teacher logits): label[r] = argmax t (first index on ties, the first NaN
     * if any, as torch), keep[r] = max softmax(t) > tau_label (>= when
     * inclusive; tau_label = class_thr[label], or tau when class_thr is NULL);
     * kept rows: loss[r] = CE(s, label), g = cs (softmax(s) - onehot(label));
     * masked rows: loss 0 and a zero gradient. */
    void (*pl_small)(const kdi_small_row *rows, int nrows, int64_t c, const float *class_thr,
                     float tau, int inclusive, double *loss, int32_t *label, int *keep);
    /* mse_row for nrows <= lanes rows of c <= KDI_SMALL_C classes at once,
     * k = cs per row: sq[r], ce[r] per row (ce 0 without a label). */
    void (*mse_small)(const kdi_small_row *rows, int nrows, int64_t c, double *sq, double *ce);
    /* One row of the consistency loss (src/losses/consistency.c) with p1, p2
     * = softmax(x1), softmax(x2) (logits) or x1, x2 (probabilities): returns
     * D = sum_j (p1_j - p2_j)^2 (dist KD_DISTANCE_L2) and, for logits only
     * (probabilities always take L2), D = KL(p2 || p1) = sum_j p2_j (log p2_j
     * - log p1_j) (KD_DISTANCE_KL) or D = JS(p1, p2) = (KL(p1 || M) + KL(p2
     * || M)) / 2, M = (p1 + p2) / 2 (KD_DISTANCE_JS), terms with a zero p in
     * front of a log 0; when g1 / g2 != NULL writes cs dD/dx1 / cs dD/dx2 (g1
     * may equal x1, g2 may equal x2).  work: 2c floats (logits). */
    double (*cons_row)(const float *x1, const float *x2, int64_t c, int logits, int dist, float cs,
                       float *g1, float *g2, float *work);
};

/* The variant for isa (KDI_ISA_AUTO: the best this CPU supports); NULL when
 * the CPU lacks the instruction set or it was not built. */
const kdi_simd_ops *kdi_simd(int isa);

const kdi_simd_ops *kdi_simd_base(void);
const kdi_simd_ops *kdi_simd_avx2(void);
const kdi_simd_ops *kdi_simd_avx512(void);

#endif
