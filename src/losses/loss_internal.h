/* Internal: the loss handle and the contract between the generic driver
 * (execute.c) and the per-family row kernels. */
#ifndef KDI_LOSS_INTERNAL_H
#define KDI_LOSS_INTERNAL_H

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>

#include "core/bufcheck.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kdlib/loss.h"
#include "kernels/rowops.h"
#include "kernels/simd.h"

typedef struct kdi_kind kdi_kind;
/* The bound labels: one of the two widths, or none (both NULL). */
typedef struct {
    const int32_t *l32;
    const int64_t *l64;
} kdi_labels;
static inline int kdi_labels_bound(kdi_labels l) { return l.l32 || l.l64; }

struct kd_loss {
    kd_loss_kind kind;
    const kdi_kind *kd;      /* the kind's descriptor (kinds.c) */
    const kdi_simd_ops *ops; /* the SIMD variant, resolved once at create */
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
    int64_t prefetch_c; /* rows of several segments and at most this many classes
                           prefetch the next row (see kdi_pipe) */
    /* self-training parameters */
    double threshold;
    int32_t threshold_mode;
    int32_t distance;
    int32_t input_type;
    double eta_prime;
    int32_t unlabeled_rows;

    /* bindings (borrowed) */
    const float *student;
    int64_t ld_student;
    int32_t n_teachers;
    const float **teachers; /* owned array of n_teachers pointers */
    int64_t *ld_teachers;   /* owned */
    float *teacher_weights; /* owned, normalised */
    const float *target;
    int64_t ld_target;
    kdi_labels labels; /* int32 or int64 (kd_loss_bind_labels64), read in place */
    const float *weights;
    float *grad;
    int64_t ld_grad;
    float *per_sample;
    /* self-training bindings (borrowed) */
    const float *class_thresholds;
    const float *class_probs, *label_hist; /* FAIRNESS: p_model and label_hist, C each */
    float *mask_out;
    int32_t *labels_out;
    float *grad_teacher;
    int64_t ld_grad_teacher;
    const float *wc_in[4]; /* WORST_CASE: labeled main, labeled adv, unlabeled main, adv */
    int64_t wc_ld[4];
    float *wc_grad[2]; /* WORST_CASE: grad of labeled adv, unlabeled adv */
    int64_t wc_ld_grad[2];

    /* threads of the OpenMP region the driver is about to run (1: none, the
     * calling thread, which may be any thread of the caller's own region)
     * for kdi_thread_scratch */
    int region_threads;
    /* workspace: per-row term values and per-thread scratch rows */
    double *terms;
    size_t terms_cap;
    float *scratch;
    size_t scratch_cap;
    /* batch-loss workspace (CLASS_BALANCE, MCC) */
    float *bf;
    size_t bf_cap;
    double *bd;
    size_t bd_cap;
    /* CLASS_BALANCE, MCC, FAIRNESS: what the per-row values in bf / bd
     * (log-sum-exp, MCC's P and entropy weights, FAIRNESS's P of the selected
     * rows) were last computed from, so that kd_loss_finish reuses the pass of
     * kd_loss_local_stats (batch_execute.c) */
    struct {
        int valid;
        const float *student, *weights;
        int64_t ld, n;
        double temperature;
        int32_t input_type;
    } batch_rows;

    char err[KDI_ERROR_SIZE];
    /* set while a call runs (KDI_GUARDED): a call from a second thread sees it
     * and returns KD_ERR_STATE without touching the handle */
    atomic_flag busy;
};

/* The body of every public function that changes a handle: a handle busy in
 * another call (another thread: loss.h allows one thread at a time) gives
 * KD_ERR_STATE at once, writing nothing, not even the message (SQLite's
 * SQLITE_MISUSE); one atomic test-and-set and one clear per call. */
#define KDI_GUARDED(h, call)                                                                       \
    do {                                                                                           \
        if (!(h))                                                                                  \
            return KD_ERR_NULL_POINTER;                                                            \
        if (atomic_flag_test_and_set_explicit(&(h)->busy, memory_order_acquire))                   \
            return KD_ERR_STATE;                                                                   \
        const kd_status kdi_st_ = (call);                                                          \
        atomic_flag_clear_explicit(&(h)->busy, memory_order_release);                              \
        return kdi_st_;                                                                            \
    } while (0)

/* One row of work for a kernel.  The kernel computes the row's term values
 * (terms[0] = soft term, terms[1] = hard term, unweighted) and, when g is not
 * NULL, writes g = c_soft * d terms[0] / ds + c_hard * d terms[1] / ds.
 * g may equal s (in place): kernels read s[j] before writing g[j]. */
typedef struct {
    const float *s; /* student logits */
    const float *t; /* teacher logits (averaged) or NULL */
    const float *q; /* target probabilities or NULL */
    int32_t y;      /* label, or -1 when the row has no label term */
    float *g;       /* gradient row or NULL */
    double c_soft, c_hard;
    float *work;    /* KDI_SIMD_WORK(C) floats of this thread's scratch for the row kernel */
    int nthr;       /* threads for the row's segments (KDI_SEG); 1 = the calling thread */
    kdi_pipe *pipe; /* maxima handed between consecutive rows, or NULL (see kdi_pipe) */
    float *g2;      /* CONSISTENCY: gradient row of the second input, or NULL */
    float *mask;    /* thresholded kinds: where to write m_i, or NULL */
    int32_t *label; /* thresholded kinds: where to write yhat_i, or NULL */
} kdi_row;

typedef void (*kdi_row_kernel)(const kd_loss *h, const kdi_row *r, double terms[2]);

/* Rows are handed to the kernels in blocks of up to KDI_ROW_BLOCK, so that the
 * families with a short-row SIMD path (kdi_simd_ops *_small) can process
 * several rows at once; the other kinds loop over their row kernel. */
#define KDI_ROW_BLOCK KDI_MAX_LANES
void kdi_run_rows(const kd_loss *h, kdi_row *rows, int count, double (*terms)[2]);

void kdi_cross_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_kl_distill_row(const kd_loss *h, const kdi_row *r, double terms[2]);
/* Forward KL (or JSD at beta = 0) at T <= KDI_KL_FAST_MAX_T goes through the
 * float SIMD kernels (kl_row, kl_small; absolute error of a row's divergence
 * about 1e-7); every other case through the double row of kl_distill.c
 * (relative error about 1e-7 at every accepted T, see docs/losses.md). */
#define KDI_KL_FAST_MAX_T 4.0
int kdi_kl_fast(const kd_loss *h);
/* A forward-KL row's divergence d from the float kernel, made safe: a row
 * that overflowed (+Inf, logits near 1e38) again in double when the student
 * row is still readable (g != s), and never below 0. */
double kdi_kl_fix_slow(const kd_loss *h, const float *s, const float *t, const float *g, double d);
static inline double kdi_kl_fix(const kd_loss *h, const float *s, const float *t, const float *g,
                                double d)
{
    return d >= 0.0 && d < INFINITY ? d : kdi_kl_fix_slow(h, s, t, g, d);
}
double kdi_kl_forward_double(const kd_loss *h, const float *s, const float *t);

/* p = e^lp and q = e^lq, and pq = p - q without cancellation, with one exp
 * and one expm1 (e = expm1(w) for w = lp - lq <= 0, else expm1(-w)), from
 * the smaller one of p and q (kl_distill.c, strong_weak.c) */
typedef struct {
    double p, q, pq, e;
} kdi_kl_pq;

static inline kdi_kl_pq kdi_kl_pq_of(double lp, double lq, double w)
{
    kdi_kl_pq r;
    if (w <= 0.0) {
        r.q = exp(lq);
        r.e = expm1(w);
        r.pq = r.q * r.e;
        r.p = r.q + r.pq;
    } else {
        r.p = exp(lp);
        r.e = expm1(-w);
        r.pq = -r.p * r.e;
        r.q = r.p - r.pq;
    }
    return r;
}

/* p w - (p - q) for w = log p - log q: the sum over a row of these terms
 * is the divergence (the p - q parts add up to 0) */
static inline double kdi_kl_term(kdi_kl_pq x, double w)
{
    return x.p == 0.0 ? x.q : w * x.p - x.pq; /* p = 0 (w = -Inf): the limit is q */
}

/* A confident cross-entropy row (loss < KDI_CONFIDENT_LOSS): the gradient at
 * the target's argmax k is a difference of two numbers near 1 in the float
 * kernels, so it is taken from the complement (a CE gradient row sums to 0:
 * g_k = -sum of the others, in double).  k = y when the label's weight is at
 * least 0.5, else the argmax of src (the target's probabilities or teacher
 * logits; NULL: none).  g NULL: nothing to do.  (The kernels take a small
 * loss from the double sum of exps: log(1 + rest), not the float sum.) */
#define KDI_CONFIDENT_LOSS 0.01 /* p_k > 0.99: above it the float difference is within 1e-5 */
void kdi_ce_confident_fix(const kd_loss *h, const float *src, float *g, int32_t y, float lab_w);
void kdi_logit_mse_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_pseudo_label_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_strong_weak_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_consistency_row(const kd_loss *h, const kdi_row *r, double terms[2]);
void kdi_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2]);

typedef enum { KDI_FORWARD, KDI_BACKWARD, KDI_FUSED } kdi_mode;

/* ---- the loss kinds' descriptors (kinds.c) ---- */
enum { /* roles a kind accepts */
       KDI_R_STUDENT = 1u << 0,
       KDI_R_TEACHER = 1u << 1, /* required unless the kind takes a target */
       KDI_R_TARGET = 1u << 2,  /* labels, target probabilities or teacher: one is required */
       KDI_R_LABELS = 1u << 3,
       KDI_R_WEIGHTS = 1u << 4,      /* sample weights in, per-sample vector out */
       KDI_R_THRESH = 1u << 5,       /* class thresholds in, mask and pseudo-labels out */
       KDI_R_GRAD_TEACHER = 1u << 6, /* exactly one second input, with a gradient */
       KDI_R_ADV = 1u << 7,          /* WORST_CASE's four inputs and two gradients */
       KDI_R_CLASS_VECTORS = 1u << 8 /* FAIRNESS's class probabilities and label histogram */
};
enum { /* parameter families (params.c) */
       KDI_P_EVERY = 1u << 0,
       KDI_P_LABEL = 1u << 1,   /* ignore_index, label smoothing */
       KDI_P_DISTILL = 1u << 2, /* soft / hard weights, normalization */
       KDI_P_TEMPERATURE = 1u << 3,
       KDI_P_KL = 1u << 4,      /* t2_scaling, divergence, jsd_beta */
       KDI_P_SOFT_CE = 1u << 5, /* label_weight */
       KDI_P_THRESH = 1u << 6,
       KDI_P_DISTANCE = 1u << 7,
       KDI_P_INPUT_TYPE = 1u << 8,
       KDI_P_WORST_CASE = 1u << 9
};
enum {                                    /* flags of the row path */
       KDI_F_SPLITS = 1u << 0,            /* a row's segments may run on several threads */
       KDI_F_SPLITS_FORWARD_KL = 1u << 1, /* the same, with the forward KL divergence only */
       KDI_F_LABELS_IN_SOFT =
           1u
           << 2, /* labels are part of the soft term (CE): each row gets its label, the mean skips ignored rows */
       KDI_F_MEAN_OVER_KEPT = 1u << 3, /* mean over the rows kept by the threshold (tllib UDA) */
       KDI_F_SELF_TRAINING = 1u << 4   /* validate_self_training applies */
};
typedef enum { KDI_PATH_ROWS, KDI_PATH_BATCH, KDI_PATH_TWO_BATCH } kdi_path;
struct kdi_kind {
    const char *name;
    unsigned roles;
    unsigned params; /* KDI_P_* families */
    int32_t max_reduction;
    kdi_path path;
    unsigned flags;     /* KDI_F_* */
    kdi_row_kernel row; /* KDI_PATH_ROWS only */
    int small;          /* KDI_SMALL_* short-row kernel, or KDI_SMALL_NONE */
};

/* The descriptor of a kind, NULL for an unknown kind. */
const kdi_kind *kdi_kind_of(int kind);
int kdi_kind_last(void);

/* ---- the term plan: which terms a row has and their weights (execute.c;
 * the row driver and linear_distill.c) ---- */
typedef struct {
    int labels_in_soft, is_distill, soft_skips_ignored, has_labels;
    int red;
    double sw, hw;             /* weights of the soft and hard terms */
    double inv_soft, inv_hard; /* 1 / denominator of each term for MEAN, else 1 */
} kdi_term_plan;

typedef struct {
    int32_t y;   /* the label the kernel gets, -1 for none */
    int hard_on; /* the row has a hard term */
} kdi_row_terms;

kdi_term_plan kdi_term_plan_of(const kd_loss *h, int64_t n, int64_t valid, int nthreads);

/* A row's terms from its label; 0 when the row has none (its soft term
 * skips ignored rows and this one is). */
static inline int kdi_term_plan_row(const kdi_term_plan *tp, int32_t y, int ignored,
                                    kdi_row_terms *rt)
{
    if (tp->soft_skips_ignored && ignored)
        return 0;
    rt->hard_on = tp->is_distill && tp->has_labels && !ignored && tp->hw != 0.0;
    rt->y = tp->labels_in_soft ? (ignored ? -1 : y) : (rt->hard_on ? y : -1);
    return 1;
}

/* A row's kernel coefficients from the upstream factor and its weight. */
static inline void kdi_term_plan_coeffs(const kdi_term_plan *tp, double up, double w,
                                        double *c_soft, double *c_hard)
{
    *c_soft = up * w * tp->sw * tp->inv_soft;
    *c_hard = up * w * tp->hw * tp->inv_hard;
}

/* The weighted terms of a row from the kernel's unweighted ones. */
static inline void kdi_term_plan_store(const kdi_term_plan *tp, double w, int hard_on,
                                       const double terms[2], double out[2])
{
    out[0] = w * tp->sw * terms[0];
    out[1] = hard_on ? w * tp->hw * terms[1] : 0.0;
}

/* Row-order reduction of the weighted terms (terms[2 i], terms[2 i + 1]),
 * which may come in consecutive pieces (linear_distill.c's chunks): each
 * piece's per-sample values into per_sample and, for NONE, loss_vec (either
 * may be NULL), its sums added to sums[2]; kdi_reduced_loss at the end. */
void kdi_reduce_rows(const double *terms, int64_t n, int red, float *per_sample, float *loss_vec,
                     double sums[2]);
static inline float kdi_reduced_loss(const kdi_term_plan *tp, const double sums[2])
{
    return (float)(sums[0] * tp->inv_soft + sums[1] * tp->inv_hard);
}

/* ---- shared argument checks (checks.c), all writing h->err ---- */

/* Labels in [0, C) or the ignore index, weights finite and >= 0; *valid =
 * the number of rows whose label is not ignored (n without labels). */
kd_status kdi_check_labels_weights(kd_loss *h, const char *fn, int64_t n, int64_t *valid);

/* Row i's label, -1 when no labels are bound; the compute calls have checked
 * every label against [0, C) and the ignore index first (in int64,
 * kdi_check_labels_weights), so a row's label fits an int32. */
static inline int32_t kdi_label_at(kdi_labels l, int64_t i)
{
    return l.l64 ? (int32_t)l.l64[i] : l.l32 ? l.l32[i] : -1;
}
kd_status kdi_check_extent(kd_loss *h, const char *fn, const char *what, int64_t n, int64_t ld);
kd_status kdi_check_finite_matrix(kd_loss *h, const char *fn, const char *what, const float *x,
                                  int64_t n, int64_t ld);
/* KD_ERR_NOT_FINITE when one of the m upstream values is not finite. */
kd_status kdi_check_finite_upstream(kd_loss *h, const char *fn, const float *up, int64_t m);
/* Grow *p to hold at least need elements of size elem (realloc, contents not kept). */
kd_status kdi_grow(kd_loss *h, const char *fn, void **p, size_t *cap, size_t need, size_t elem);

/* ---- thresholding of a teacher row (threshold.c) ---- */
typedef struct {
    kdi_lse l;     /* the teacher row's log-sum-exp at temperature 1 */
    int32_t label; /* argmax */
    int keep;      /* the mask m_i */
} kdi_confident;

/* work: KDI_SIMD_WORK(C) floats; nthr: threads for the row's segments; pf:
 * NULL or a row to prefetch during the scan (see row_confidence) */
kdi_confident kdi_threshold_row(const kd_loss *h, const float *t, float *work, int nthr,
                                const float *pf);

/* Teacher row i: the single teacher's row, or the weighted average written
 * into scratch (C floats). */
/* Per-thread scratch: one row for the averaged teacher, then the row
 * kernel's work area.  Sized by the driver for its thread count. */
#define KDI_SCRATCH_STRIDE(c) ((size_t)(c) + (size_t)KDI_SIMD_WORK(c))

float *kdi_thread_scratch(const kd_loss *h);

/* Row i of the teacher: the bound matrix, or the weighted average of the
 * bound teachers written into this thread's scratch. */
const float *kdi_teacher_row(const kd_loss *h, int64_t i);

/* Number of kept rows among n (STRONG_WEAK's MEAN denominator). */
int64_t kdi_count_confident(const kd_loss *h, int64_t n, int nthreads);

/* ---- losses with their own execution path ---- */
/* CLASS_BALANCE and MCC: whole-batch statistics, then a gradient pass. */
static inline int kdi_is_batch_kind(const kd_loss *h) { return h->kd->path == KDI_PATH_BATCH; }
kd_status kdi_batch_run(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, float *loss,
                        const float *upstream);
kd_status kdi_worst_case_run(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, float *loss,
                             const float *upstream);

/* Statistics + finish + gradient pass of the batch losses (class_balance.c,
 * mcc.c).  The statistics add over rows: kd_loss_local_stats hands them to
 * a distributed caller, which sums them over ranks and calls kd_loss_finish;
 * the single-process calls run the same pieces on their own statistics.
 * Workspace is laid out by batch_execute.c:
 *   rows  : per-row values (log-sum-exp; MCC: P and e o P, e_i), kept from
 *           the rows pass for the gradient pass
 *   own   : the handle's own statistics (kd_loss_stats_size doubles)
 *   coef  : what the gradient pass needs from the finish */
typedef struct {
    int64_t n;       /* local rows */
    double count;    /* rows the statistics cover (the global N) */
    kdi_lse *lse;    /* n */
    double *own;     /* the single-process path's statistics */
    double *coef;    /* MCC: 1 value: the scale N/S of the entropy weights;
                        FAIRNESS: 1 value, 1 when a row is selected, else 0 */
    float *mat;      /* MCC: C x C: the upper triangle of the local Ahat */
    float *probs;    /* MCC: n x C, P; FAIRNESS: n x C, P of the selected rows */
    float *work;     /* MCC: n x C, sqrt(e) o P */
    double *ew;      /* MCC: n entropy weights e_i = 1 + exp(-H_i) */
    double *rsum;    /* MCC: 2C: the gradient's a and b (mcc.c) */
    float *vec;      /* CLASS_BALANCE, FAIRNESS: C gradient coefficients as float */
    double *part;    /* CLASS_BALANCE: nchunks x C column sums of row chunks */
    int64_t nchunks; /* CLASS_BALANCE: kdi_class_balance_chunks(n, C) */
    float *scratch;  /* per thread (scratch_stride floats each): the SIMD softmax's
                           work area, then its input row (MCC) or KDI_CB_GROUP softmax
                           rows (CLASS_BALANCE) */
    size_t scratch_stride;
    int to_grad; /* CLASS_BALANCE: the gradient pass follows the statistics in
                           this call (forward_backward, backward): they may leave each
                           row's softmax in its gradient row */
    int nthreads;
} kdi_batch;

/* This thread's scratch of a batch pass.  thread is omp_get_thread_num():
 * without a region of its own (one thread) the pass runs on the calling
 * thread, whose number in the caller's OpenMP team is not a scratch index
 * (as kdi_thread_scratch). */
static inline float *kdi_batch_scratch(const kdi_batch *b, int thread)
{
    return b->scratch + (size_t)(b->nthreads > 1 ? thread : 0) * b->scratch_stride;
}

/* p = softmax(x) of one row of c classes with the shared SIMD kernel, down
 * to float's subnormals; p may not alias x; work: KDI_SIMD_WORK(c) floats
 * (batch_execute.c). */
void kdi_batch_softmax(const float *x, float *p, int64_t c, float *work);

/* Backward through p = softmax of one row: g_j = up p_j (v_j - sum_k p_k v_k),
 * the largest p_m's share from the other classes (no cancellation when p_m
 * rounds to 1); p may be g (batch_execute.c). */
void kdi_batch_softmax_grad(float *g, const float *p, const float *v, float up, int64_t c);

/* Rows of class balance's statistics pass per update of the column sums. */
#define KDI_CB_GROUP 4

/* Row chunks of class balance's column sums: a function of n and C only, so
 * that every thread count sums the same chunks in the same order. */
int64_t kdi_class_balance_chunks(int64_t n, int64_t c);

/* Number of statistics (doubles) of a batch kind: C + 1, C^2 + 2 or 2 C + 1. */
int64_t kdi_batch_stats_size(const kd_loss *h);

/* rows: the per-row values of the n local rows; stats: the local statistics
 * into out (kdi_batch_stats_size doubles, the row count last); finish: the
 * loss and the gradient coefficients from statistics summed over every row
 * of the global batch (stats[last] = N > 0); grad: the local gradient rows
 * times up. */
void kdi_class_balance_rows(const kd_loss *h, kdi_batch *b);
void kdi_class_balance_stats(const kd_loss *h, kdi_batch *b, double *out);
kd_status kdi_class_balance_finish(kd_loss *h, const char *fn, kdi_batch *b, const double *stats,
                                   double *loss);
void kdi_class_balance_grad(const kd_loss *h, const kdi_batch *b, float up);
void kdi_mcc_rows(const kd_loss *h, kdi_batch *b);
void kdi_mcc_stats(const kd_loss *h, kdi_batch *b, double *out);
void kdi_mcc_finish(const kd_loss *h, kdi_batch *b, const double *stats, double *loss);
void kdi_mcc_grad(const kd_loss *h, kdi_batch *b, float up);
void kdi_fairness_rows(const kd_loss *h, kdi_batch *b);
void kdi_fairness_stats(const kd_loss *h, kdi_batch *b, double *out);
kd_status kdi_fairness_finish(kd_loss *h, const char *fn, kdi_batch *b, const double *stats,
                              double *loss);
void kdi_fairness_grad(const kd_loss *h, const kdi_batch *b, float up);
/* FAIRNESS's class vectors: bound, finite, >= 0, sum_k pm_k r_k > 0 */
kd_status kdi_fairness_check_vectors(kd_loss *h, const char *fn);

/* Smoothed one-hot target of the hard-label terms: the labelled class gets
 * `on`, every other class `off` (KD_PARAM_LABEL_SMOOTHING and _MODE). */
typedef struct {
    float on, off;
} kdi_onehot;

kdi_onehot kdi_smoothed_onehot(const kd_loss *h);

/* The short-row path (small_rows.c): KL distillation (forward KL), cross-
 * entropy, logit matching and pseudo-label with at most small_c classes and
 * at most one teacher.  The driver sets the plan up once per call, describes each row
 * with kdi_small_row_of (no kdi_row) and runs blocks of up to KDI_ROW_BLOCK
 * rows with kdi_small_run. */
enum { KDI_SMALL_NONE = 0, KDI_SMALL_KL, KDI_SMALL_CE, KDI_SMALL_MSE, KDI_SMALL_PL };
typedef struct {
    int kind, src_kind;  /* src_kind (CE): 0 labels only, 1 target probabilities, 2 teacher */
    float inv_t, f;      /* f (KL): the T^2 factor or 1 */
    float label_weight;  /* CE */
    double mse_k, inv_c; /* MSE: 2 / C and 1 / C (no division per row) */
    int64_t c;
    kdi_onehot oh;
} kdi_small_plan;

/* 1 and the plan when the call takes the short-row path, else 0 */
int kdi_small_plan_of(const kd_loss *h, kdi_small_plan *p);

/* One row: s, the teacher t or target q (NULL when not bound), g (or NULL),
 * y (the row's label for the hard term, -1 for none: as kdi_row's y) and
 * the row's coefficients (as kdi_row's c_soft, c_hard). */
static inline kdi_small_row kdi_small_row_of(const kdi_small_plan *p, const float *s,
                                             const float *t, const float *q, float *g, int32_t y,
                                             double c_soft, double c_hard)
{
    if (p->kind == KDI_SMALL_KL) {
        kdi_small_row x = {s,
                           t,
                           g,
                           (float)c_soft * p->f * p->inv_t,
                           0.0f,
                           0.0f,
                           {y >= 0, y, p->oh.on, p->oh.off, (float)c_hard}};
        return x;
    }
    if (p->kind == KDI_SMALL_CE) { /* q = lab_w smoothed onehot(y) + src_w q_src */
        const int src = p->src_kind;
        const float lab_w = y >= 0 ? (src ? p->label_weight : 1.0f) : 0.0f;
        const float src_w = src ? (y >= 0 ? 1.0f - p->label_weight : 1.0f) : 0.0f;
        kdi_small_row x = {s,
                           q ? q : t,
                           g,
                           (float)c_soft,
                           src_w,
                           lab_w,
                           {y >= 0, y, lab_w * p->oh.on, lab_w * p->oh.off, 0.0f}};
        return x;
    }
    if (p->kind == KDI_SMALL_MSE) { /* as kdi_logit_mse_row */
        kdi_small_row x = {s,
                           t,
                           g,
                           (float)(c_soft * p->mse_k),
                           0.0f,
                           0.0f,
                           {y >= 0, y, p->oh.on, p->oh.off, (float)c_hard}};
        return x;
    }
    kdi_small_row x = {s, t, g, (float)c_soft, 0.0f, 0.0f, {0, -1, 0.0f, 0.0f, 0.0f}};
    return x;
}

/* The kernels over count <= KDI_ROW_BLOCK rows: terms as kdi_row_kernel's;
 * pseudo-label also writes mask_out[idx[k]] and labels_out[idx[k]] (either
 * may be NULL). */
void kdi_small_run(const kd_loss *h, const kdi_small_plan *p, const kdi_small_row *sr, int count,
                   double (*terms)[2], const int64_t *idx, float *mask_out, int32_t *labels_out);

/* q_j of the smoothed one-hot target for label y (y < 0: no label, 0). */
static inline float kdi_onehot_at(kdi_onehot oh, int32_t y, int64_t j)
{
    return y < 0 ? 0.0f : (j == y ? oh.on : oh.off);
}

/* The hard-label cross-entropy term CE(s, y) with the smoothed one-hot target,
 * evaluated inside a distillation kernel's own loops so that the fused pass
 * (and the in-place gradient) stay single-pass. */
typedef struct {
    int active; /* 0: the row has no hard term */
    kdi_lse l;  /* log-sum-exp of s at scale 1 */
    kdi_onehot oh;
    int32_t y;
    float coef; /* gradient coefficient c_hard */
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
