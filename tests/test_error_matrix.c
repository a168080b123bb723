/*
 * The bad-input matrix of docs/errors.md, one test row per row of that
 * document: every public function that returns a kd_status, each invalid
 * input, and the status it must return.  The compute entry points
 * (kd_loss_forward, kd_loss_forward_backward, kd_loss_backward) share one
 * table, COMPUTE, each row run on every entry point it names.
 *
 * Every caller buffer lives in one block (B).  Each row sets up its handles
 * and inputs, then CALL() snapshots B and the observable state of every live
 * handle (parameters, teacher values, step, predictions), makes the call, and
 * checks that the status is the documented one and that nothing changed:
 * outputs, inputs and handles are untouched on error (core.h).
 *
 * docs/errors.md is generated from this table (`test_error_matrix
 * --markdown`); the test `errors_md_matches_the_table` fails when the two
 * disagree, so a new row goes into both.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdlib/ema.h"
#include "kdlib/flexmatch.h"
#include "kdlib/threshold.h"
#include "kdlib/kdlib.h"
#include "kdlib/linear.h"

#define N 6
#define C 4
#define LD 5
#define P0 7
#define P1 3
#define FM_N 9
#define DH 3 /* hidden size of the linear rows */

static struct {
    float student[N * LD], teacher[N * LD], probs[N * LD], grad[N * LD], out[N * LD];
    float loss[N], up[N], weights[N], mask[N], conf[N], scores[N], cthr[C];
    float hidden[N * DH], weight[C * DH];
    float p0[P0], p1[P1], s0[P0], s1[P1];
    double stats[C * C + 2];
    int32_t labels[N], plabels[N], pred[N], cc[N];
    int64_t labels64[N];
    int64_t idx[N], rank[N], sigma[C];
    uint8_t sus[N];
    int64_t clcj[C * C]; /* issue 19 rows: c x c int64 and double outputs */
    double cldbl[C * C];
    char err[128];
    int64_t i64;
    int32_t i32;
    float f32;
    double f64, f64b;
    const float *cptr;
} B, SNAP;

static const float *ARRAYS[2] = {B.p0, B.p1};
static const int64_t LENGTHS[2] = {P0, P1};
static const float *INS2[2] = {B.teacher, B.probs};
static const int64_t LDS2[2] = {LD, LD};
static kd_loss *OUT_LOSS = (kd_loss *)0x1;
static kd_ema *OUT_EMA = (kd_ema *)0x1;
static kd_flexmatch *OUT_FM = (kd_flexmatch *)0x1;
static kd_threshold *OUT_TH = (kd_threshold *)0x1;

/* ---- fixtures: every handle made here is destroyed after its row ---------- */

#define MAX_LIVE 8
static kd_loss *live_loss[MAX_LIVE];
static kd_ema *live_ema[MAX_LIVE];
static kd_flexmatch *live_fm[MAX_LIVE];
static kd_threshold *live_th[MAX_LIVE];
static int n_loss, n_ema, n_fm, n_th;
static char tmpdir[64];
static char pathbuf[4][160];
static int npath;

static void fill(void)
{
    memset(&B, 0, sizeof B);
    for (int i = 0; i < N * LD; i++) {
        B.student[i] = (float)((i * 7) % 11) * 0.3f - 1.5f;
        B.teacher[i] = (float)((i * 5) % 13) * 0.4f - 2.0f;
        B.probs[i] = (i % LD) < C ? 1.0f / C : 0.0f;
        B.grad[i] = B.out[i] = 1234.5f; /* canaries */
    }
    for (int i = 0; i < N; i++) {
        B.loss[i] = B.mask[i] = B.scores[i] = 1234.5f;
        B.up[i] = 1.0f;
        B.weights[i] = 0.5f;
        B.conf[i] = 0.99f;
        B.labels[i] = i % C;
        B.labels64[i] = i % C;
        B.pred[i] = (i + 1) % C;
        B.plabels[i] = B.cc[i] = 77;
        B.idx[i] = i;
        B.rank[i] = 77;
        B.sus[i] = 77;
    }
    for (int j = 0; j < C; j++) {
        B.cthr[j] = 0.5f;
        B.sigma[j] = 77;
    }
    for (int i = 0; i < N * DH; i++)
        B.hidden[i] = (float)(i % 5) * 0.2f;
    for (int i = 0; i < C * DH; i++)
        B.weight[i] = (float)(i % 3) * 0.1f;
    for (int i = 0; i < P0; i++)
        B.p0[i] = (float)i, B.s0[i] = (float)(2 * i);
    for (int i = 0; i < P1; i++)
        B.p1[i] = (float)-i, B.s1[i] = 1.0f;
    for (int i = 0; i < C * C + 2; i++)
        B.stats[i] = 0.25;
    B.stats[C] = N; /* CLASS_BALANCE's count */
    memset(B.err, 'x', sizeof B.err);
    B.i64 = 77, B.i32 = 77, B.f32 = 77.0f, B.f64 = B.f64b = 77.0;
    B.cptr = NULL;
    OUT_LOSS = (kd_loss *)0x1, OUT_EMA = (kd_ema *)0x1, OUT_FM = (kd_flexmatch *)0x1;
    OUT_TH = (kd_threshold *)0x1;
}

static kd_loss *mk(kd_loss_kind kind)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, kind, C), KD_OK);
    live_loss[n_loss++] = h;
    return h;
}

/* KL distillation with student, teacher, labels and a gradient bound. */
static kd_loss *kl(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, B.student, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, B.teacher, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_labels(h, B.labels), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.grad, LD), KD_OK);
    return h;
}

/* A self-training kind with student (and teacher where it has one) bound. */
static kd_loss *selftrain(kd_loss_kind kind)
{
    kd_loss *h = mk(kind);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, B.student, LD), KD_OK);
    if (kind != KD_LOSS_CLASS_BALANCE && kind != KD_LOSS_MCC)
        ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, B.teacher, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.grad, LD), KD_OK);
    return h;
}

/* FAIRNESS with student, weights, both class vectors (B.cthr) and a gradient. */
static kd_loss *fair(void)
{
    kd_loss *h = mk(KD_LOSS_FAIRNESS);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, B.student, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_weights(h, B.weights), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, B.cthr), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, B.cthr), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.grad, LD), KD_OK);
    return h;
}

static kd_ema *ema(void)
{
    kd_ema *e = NULL;
    ck_assert_int_eq(kd_ema_create(&e, 2, ARRAYS, LENGTHS, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_update(e, (const float *const[]){B.s0, B.s1}), KD_OK);
    live_ema[n_ema++] = e;
    return e;
}

static void track_fm(kd_flexmatch *f) { live_fm[n_fm++] = f; }

static kd_flexmatch *fm(void)
{
    kd_flexmatch *f = NULL;
    ck_assert_int_eq(kd_flexmatch_create(&f, FM_N, C), KD_OK);
    int64_t idx[3] = {0, 4, 8};
    float conf[3] = {0.99f, 0.5f, 0.97f};
    int32_t pred[3] = {1, 2, 3};
    ck_assert_int_eq(kd_flexmatch_update(f, 3, idx, conf, pred), KD_OK);
    track_fm(f);
    return f;
}

static kd_threshold *th(void)
{
    kd_threshold *t = NULL;
    ck_assert_int_eq(kd_threshold_create(&t, KD_THRESHOLD_FLEXMATCH, FM_N, C), KD_OK);
    int64_t idx[3] = {0, 4, 8};
    float conf[3] = {0.99f, 0.5f, 0.97f};
    int32_t pred[3] = {1, 2, 3};
    ck_assert_int_eq(kd_threshold_update(t, 3, idx, conf, pred), KD_OK);
    live_th[n_th++] = t;
    return t;
}

/* A handle of another algorithm (FreeMatch, SoftMatch), fed one batch. */
static kd_threshold *th_of(kd_threshold_algorithm algorithm)
{
    kd_threshold *t = NULL;
    ck_assert_int_eq(kd_threshold_create(&t, algorithm, FM_N, C), KD_OK);
    float rows[2 * C] = {0.7f, 0.1f, 0.1f, 0.1f, 0.05f, 0.05f, 0.1f, 0.8f};
    ck_assert_int_eq(kd_threshold_update_probs(t, 2, C, rows, C, NULL), KD_OK);
    live_th[n_th++] = t;
    return t;
}

static const char *tmp_path(const char *name)
{
    char *p = pathbuf[npath++ % 4];
    snprintf(p, sizeof pathbuf[0], "%s/%s", tmpdir, name);
    return p;
}

/* A valid state file of another object (a fresh handle of the fixture shape). */
static const char *ema_file(void)
{
    kd_ema *e = NULL;
    const char *p = tmp_path("fixture.kdema");
    ck_assert_int_eq(kd_ema_create(&e, 2, ARRAYS, LENGTHS, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_save(e, p), KD_OK);
    kd_ema_destroy(e);
    return p;
}

static const char *fm_file(void)
{
    kd_flexmatch *f = NULL;
    const char *p = tmp_path("fixture.kdfm");
    ck_assert_int_eq(kd_flexmatch_create(&f, FM_N, C), KD_OK);
    ck_assert_int_eq(kd_flexmatch_save(f, p), KD_OK);
    kd_flexmatch_destroy(f);
    return p;
}

static long file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Negative offsets count from the end of the file. */
static void truncate_file(const char *p, long by)
{
    ck_assert_int_eq(truncate(p, file_size(p) + by), 0);
}

static void patch(const char *p, long off, const void *bytes, size_t n)
{
    FILE *f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, off < 0 ? file_size(p) + off : off, SEEK_SET);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

static void poke32(const char *p, long off, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    patch(p, off, b, 4);
}

static void flip(const char *p, long off)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, off < 0 ? file_size(p) + off : off, SEEK_SET);
    int c = fgetc(f);
    fclose(f);
    unsigned char b = (unsigned char)(c ^ 0x10);
    patch(p, off, &b, 1);
}

/* kd_linear_kl_distill over the bound teacher, all gradients skipped. */
#define LINEAR(h, n, hidden, weight, loss)                                                         \
    kd_linear_kl_distill(h, n, DH, hidden, DH, weight, DH, NULL, 0, NULL, 0, NULL, 0, NULL, 0,     \
                         loss, NULL, 0, NULL, 0, NULL)

/* ---- observable state of the live handles --------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n;
} bytes;

static void add(bytes *b, const void *p, size_t n)
{
    b->p = realloc(b->p, b->n + n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static bytes state(void)
{
    bytes b = {NULL, 0};
    for (int k = 0; k < n_loss; k++)
        for (kd_param p = 1; p < 64; p++) {
            int64_t iv = 0;
            double fv = 0;
            if (kd_loss_get_int(live_loss[k], p, &iv) == KD_OK)
                add(&b, &iv, sizeof iv);
            if (kd_loss_get_float(live_loss[k], p, &fv) == KD_OK)
                add(&b, &fv, sizeof fv);
        }
    for (int k = 0; k < n_ema; k++) {
        const float *t = NULL;
        int64_t len = 0, step = 0;
        double d = 0;
        int64_t w = 0, th = 0;
        kd_ema_teacher_flat(live_ema[k], &t, &len);
        add(&b, t, (size_t)len * sizeof *t);
        kd_ema_step(live_ema[k], &step);
        kd_ema_get_float(live_ema[k], KD_EMA_PARAM_DECAY, &d);
        kd_ema_get_int(live_ema[k], KD_EMA_PARAM_WARMUP, &w);
        kd_ema_get_int(live_ema[k], KD_EMA_PARAM_THREADS, &th);
        add(&b, &step, sizeof step), add(&b, &d, sizeof d), add(&b, &w, sizeof w);
        add(&b, &th, sizeof th);
    }
    for (int k = 0; k < n_fm; k++) {
        int64_t nn = 0, cc = 0, v = 0;
        float tau = 0;
        kd_flexmatch_get_int(live_fm[k], KD_FLEXMATCH_PARAM_NUM_SAMPLES, &nn);
        kd_flexmatch_get_int(live_fm[k], KD_FLEXMATCH_PARAM_NUM_CLASSES, &cc);
        int32_t *pred = malloc((size_t)nn * sizeof *pred);
        kd_flexmatch_predictions(live_fm[k], pred);
        add(&b, pred, (size_t)nn * sizeof *pred);
        free(pred);
        kd_flexmatch_get_float(live_fm[k], KD_FLEXMATCH_PARAM_THRESHOLD, &tau);
        add(&b, &tau, sizeof tau);
        for (kd_flexmatch_param p = KD_FLEXMATCH_PARAM_MAPPING; p <= KD_FLEXMATCH_PARAM_NON_STRICT;
             p++) {
            kd_flexmatch_get_int(live_fm[k], p, &v);
            add(&b, &v, sizeof v);
        }
    }
    for (int k = 0; k < n_th; k++) {
        int64_t pred[FM_N + 1] = {0}, v = 0, ns = 0;
        double tau = 0;
        kd_threshold_get_int(live_th[k], KD_THRESHOLD_PARAM_NUM_SAMPLES, &ns);
        kd_threshold_get_ints(live_th[k], KD_THRESHOLD_STATE_PREDICTIONS, ns, pred);
        add(&b, pred, sizeof pred);
        kd_threshold_get_float(live_th[k], KD_THRESHOLD_PARAM_THRESHOLD, &tau);
        add(&b, &tau, sizeof tau);
        for (kd_threshold_param p = KD_THRESHOLD_PARAM_MAPPING; p <= KD_THRESHOLD_PARAM_NON_STRICT;
             p++) {
            kd_threshold_get_int(live_th[k], p, &v);
            add(&b, &v, sizeof v);
        }
    }
    return b;
}

static bytes state_before;

static void before_call(void)
{
    SNAP = B;
    state_before = state();
}

/* Statuses above this range are the checker's own verdicts. */
#define CHANGED_BUFFERS 1001
#define CHANGED_HANDLE 1002

static kd_status after_call(kd_status st)
{
    bytes now = state();
    int handle_same =
        now.n == state_before.n && (now.n == 0 || memcmp(now.p, state_before.p, now.n) == 0);
    free(now.p);
    free(state_before.p);
    state_before.p = NULL;
    /* the label tools write their message into B.err: not a result */
    memcpy(SNAP.err, B.err, sizeof B.err);
    if (st != KD_OK && memcmp(&SNAP, &B, sizeof B) != 0)
        return CHANGED_BUFFERS;
    if (st != KD_OK && !handle_same)
        return CHANGED_HANDLE;
    return st;
}

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        before_call();                                                                             \
        kd_status st_ = (expr);                                                                    \
        return after_call(st_);                                                                    \
    } while (0)

/* ---- the rows --------------------------------------------------------------- */

/* kd_threshold (the family; FlexMatch as its algorithm) */
static kd_status thr1(void) { CALL(kd_threshold_create(NULL, KD_THRESHOLD_FLEXMATCH, FM_N, C)); }
static kd_status thr2(void) { CALL(kd_threshold_create(&OUT_TH, 0, FM_N, C)); }
static kd_status thr3(void) { CALL(kd_threshold_create(&OUT_TH, KD_THRESHOLD_FLEXMATCH, 0, C)); }
static kd_status thr4(void)
{
    CALL(kd_threshold_create(&OUT_TH, KD_THRESHOLD_FLEXMATCH, FM_N, KD_THRESHOLD_MAX_CLASSES + 1));
}
static kd_status thr5(void) { CALL(kd_threshold_reset(NULL)); }
static kd_status thr6(void)
{
    CALL(kd_threshold_set_float(NULL, KD_THRESHOLD_PARAM_THRESHOLD, 0.5));
}
static kd_status thr7(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_set_float(t, KD_THRESHOLD_PARAM_THRESHOLD, NAN));
}
static kd_status thr8(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_set_float(t, KD_THRESHOLD_PARAM_MAPPING, 1.0));
}
static kd_status thr9(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_set_int(t, KD_THRESHOLD_PARAM_MAPPING, 3));
}
static kd_status thr10(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_set_int(t, KD_THRESHOLD_PARAM_ALGORITHM, 1));
}
static kd_status thr11(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_get_float(t, KD_THRESHOLD_PARAM_THRESHOLD, NULL));
}
static kd_status thr12(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_get_int(t, 99, &B.i64));
}
static kd_status thr13(void)
{
    CALL(kd_threshold_param_bounds(KD_THRESHOLD_FLEXMATCH, KD_THRESHOLD_PARAM_NUM_SAMPLES, &B.f64,
                                   &B.f64b));
}
static kd_status thr14(void)
{
    CALL(kd_threshold_param_bounds(0, KD_THRESHOLD_PARAM_THRESHOLD, &B.f64, &B.f64b));
}
static kd_status thr15(void)
{
    CALL(kd_threshold_param_bounds(KD_THRESHOLD_FLEXMATCH, KD_THRESHOLD_PARAM_THRESHOLD, NULL,
                                   &B.f64b));
}
static kd_status thr16(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_update(t, N, B.idx, B.conf, NULL));
}
static kd_status thr17(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_update(t, -1, B.idx, B.conf, B.pred));
}
static kd_status thr18(void)
{
    kd_threshold *t = th();
    B.idx[2] = FM_N;
    CALL(kd_threshold_update(t, N, B.idx, B.conf, B.pred));
}
static kd_status thr19(void)
{
    kd_threshold *t = th();
    B.pred[1] = C;
    CALL(kd_threshold_update(t, N, B.idx, B.conf, B.pred));
}
static kd_status thr20(void)
{
    kd_threshold *t = th();
    B.conf[0] = NAN;
    CALL(kd_threshold_update(t, N, B.idx, B.conf, B.pred));
}
static kd_status thr21(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, NULL));
}
static kd_status thr22(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_weights(t, -1, B.conf, B.pred, B.mask));
}
static kd_status thr23(void)
{
    kd_threshold *t = th();
    B.pred[0] = -1;
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, B.mask));
}
static kd_status thr24(void)
{
    kd_threshold *t = th();
    B.conf[3] = NAN;
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, B.mask));
}
static kd_status thr25(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_get_floats(t, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, C, NULL));
}
static kd_status thr26(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_get_floats(t, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, C - 1, B.cthr));
}
static kd_status thr27(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_get_ints(t, KD_THRESHOLD_STATE_LEARNING_EFFECT, C, B.sigma));
}
static kd_status thr28(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_save(t, NULL));
}
static kd_status thr29(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_save(t, tmp_path("no-such-dir/x.state")));
}
static kd_status thr30(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_load(t, tmp_path("missing.state")));
}
static kd_status thr31(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_load(t, ema_file()));
}
static kd_status thr32(void)
{
    kd_threshold *t = th();
    const char *p = fm_file();
    truncate_file(p, -5);
    CALL(kd_threshold_load(t, p));
}
static kd_status thr33(void)
{
    kd_threshold *t = NULL;
    ck_assert_int_eq(kd_threshold_create(&t, KD_THRESHOLD_FLEXMATCH, FM_N + 1, C), KD_OK);
    live_th[n_th++] = t;
    CALL(kd_threshold_load(t, fm_file()));
}

static kd_status thr34(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_update_probs(t, N, C, NULL, LD, B.idx));
}
static kd_status thr35(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_update_probs(t, N, C, B.probs, LD, NULL));
}
static kd_status thr36(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_update_probs(t, -1, C, B.probs, LD, B.idx));
}
static kd_status thr37(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_update_probs(t, N, C + 1, B.probs, LD, NULL));
}
static kd_status thr38(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_update_probs(t, N, C, B.probs, C - 1, NULL));
}
static kd_status thr39(void)
{
    kd_threshold *t = th();
    B.idx[2] = FM_N;
    CALL(kd_threshold_update_probs(t, N, C, B.probs, LD, B.idx));
}
static kd_status thr40(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    B.probs[LD + 1] = 1.5f;
    CALL(kd_threshold_update_probs(t, N, C, B.probs, LD, NULL));
}
static kd_status thr41(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    B.probs[2 * LD] = NAN;
    CALL(kd_threshold_update_probs(t, N, C, B.probs, LD, NULL));
}
static kd_status thr42(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_weights_probs(t, N, C, B.probs, LD, NULL, B.plabels));
}
static kd_status thr43(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_weights_probs(t, N, C, B.probs, LD, B.probs + LD, B.plabels));
}
static kd_status thr44(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_weights_probs(t, N, C, B.probs, LD, B.mask, (int32_t *)(void *)(B.mask + 1)));
}
static kd_status thr45(void)
{
    kd_threshold *t = th();
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, (float *)(void *)B.pred));
}
static kd_status thr46(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_update(t, N, B.idx, B.conf, B.pred));
}
static kd_status thr47(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    ck_assert_int_eq(kd_threshold_set_int(t, KD_THRESHOLD_PARAM_DIST_ALIGN, 1), KD_OK);
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, B.mask));
}
static kd_status thr48(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_set_float(t, KD_THRESHOLD_PARAM_QUANTILE, 1.5));
}
static kd_status thr49(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_set_float(t, KD_THRESHOLD_PARAM_THRESHOLD, 0.9));
}
static kd_status thr50(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_get_floats(t, KD_THRESHOLD_STATE_CONF_MEAN, 1, B.cthr));
}
static kd_status thr51(void)
{
    kd_threshold *f = th_of(KD_THRESHOLD_FREEMATCH);
    const char *p = tmp_path("fixture.kdfree");
    ck_assert_int_eq(kd_threshold_save(f, p), KD_OK);
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_load(t, p));
}
static kd_status thr52(void)
{
    kd_threshold *f = th_of(KD_THRESHOLD_SOFTMATCH);
    const char *p = tmp_path("fixture.kdsoft");
    ck_assert_int_eq(kd_threshold_save(f, p), KD_OK);
    truncate_file(p, -3);
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_load(t, p));
}
static kd_status thr53(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_update_labeled_probs(t, N, C, B.probs, LD));
}
static kd_status thr54(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    CALL(kd_threshold_update_labeled_probs(t, N, C, NULL, LD));
}
static kd_status thr55(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    B.probs[LD + 1] = INFINITY;
    CALL(kd_threshold_update_labeled_probs(t, N, C, B.probs, LD));
}
static kd_status thr56(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    CALL(kd_threshold_update_labeled_probs(t, N, C, B.probs, C - 1));
}
static kd_status thr57(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    CALL(kd_threshold_update(t, N, B.idx, B.conf, B.pred));
}
static kd_status thr58(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, B.mask));
}
static kd_status thr59(void)
{
    kd_threshold *f = th_of(KD_THRESHOLD_ADAMATCH);
    const char *p = tmp_path("fixture.kdada");
    ck_assert_int_eq(kd_threshold_save(f, p), KD_OK);
    truncate_file(p, -3);
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    CALL(kd_threshold_load(t, p));
}

static kd_status thr60(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DASH);
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, B.mask));
}
static kd_status thr61(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DASH);
    CALL(kd_threshold_set_float(t, KD_THRESHOLD_PARAM_GAMMA, 0.5));
}
static kd_status thr62(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DASH);
    CALL(kd_threshold_set_int(t, KD_THRESHOLD_PARAM_PERIOD, 0));
}
static kd_status thr63(void)
{
    kd_threshold *f = th_of(KD_THRESHOLD_ADAMATCH);
    const char *p = tmp_path("fixture.kdada2");
    ck_assert_int_eq(kd_threshold_save(f, p), KD_OK);
    kd_threshold *t = th_of(KD_THRESHOLD_DASH);
    CALL(kd_threshold_load(t, p));
}
static kd_status thr64(void)
{
    kd_threshold *f = th_of(KD_THRESHOLD_DASH);
    const char *p = tmp_path("fixture.kddash");
    ck_assert_int_eq(kd_threshold_save(f, p), KD_OK);
    truncate_file(p, -3);
    kd_threshold *t = th_of(KD_THRESHOLD_DASH);
    CALL(kd_threshold_load(t, p));
}
static kd_status thr65(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DEBIASPL);
    CALL(kd_threshold_update(t, N, B.idx, B.conf, B.pred));
}
static kd_status thr66(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DEBIASPL);
    CALL(kd_threshold_weights(t, N, B.conf, B.pred, B.mask));
}
static kd_status thr67(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DEBIASPL);
    CALL(kd_threshold_set_float(t, KD_THRESHOLD_PARAM_DEBIAS_TAU, 11.0));
}
static kd_status thr68(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DEBIASPL);
    float v[1];
    CALL(kd_threshold_get_floats(t, KD_THRESHOLD_STATE_RHO, 1, v));
}
static kd_status thr69(void)
{
    kd_threshold *f = th_of(KD_THRESHOLD_DEBIASPL);
    const char *p = tmp_path("fixture.kddebpl");
    ck_assert_int_eq(kd_threshold_save(f, p), KD_OK);
    truncate_file(p, -3);
    kd_threshold *t = th_of(KD_THRESHOLD_DEBIASPL);
    CALL(kd_threshold_load(t, p));
}

/* split statistics: a FreeMatch handle and this buffer of the rows' */
static kd_threshold *th_stats(kd_threshold_algorithm algorithm)
{
    kd_threshold *t = th_of(algorithm);
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, B.probs, LD, B.stats), KD_OK);
    return t;
}
static kd_status thr70(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_stats_size(t, NULL));
}
static kd_status thr71(void)
{
    kd_threshold *t = th();
    int64_t size;
    CALL(kd_threshold_stats_size(t, &size));
}
static kd_status thr72(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_SOFTMATCH);
    CALL(kd_threshold_local_stats(t, N, C, B.probs, LD, B.stats));
}
static kd_status thr73(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_local_stats(t, N, C, B.probs, LD, NULL));
}
static kd_status thr74(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    B.probs[LD + 1] = NAN;
    CALL(kd_threshold_local_stats(t, N, C, B.probs, LD, B.stats));
}
static kd_status thr75(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_DEBIASPL);
    CALL(kd_threshold_local_stats(t, N, C, B.probs, C - 1, B.stats));
}
static kd_status thr76(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_local_stats(t, N, C, B.probs, LD, (double *)(void *)(B.probs + 2)));
}
static kd_status thr77(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_local_labeled_stats(t, N, C, B.probs, LD, B.stats));
}
static kd_status thr78(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_FREEMATCH);
    CALL(kd_threshold_update_stats(t, NULL));
}
static kd_status thr79(void)
{
    kd_threshold *t = th_stats(KD_THRESHOLD_FREEMATCH);
    B.stats[3] = NAN;
    CALL(kd_threshold_update_stats(t, B.stats));
}
static kd_status thr80(void)
{
    kd_threshold *t = th_stats(KD_THRESHOLD_FREEMATCH);
    B.stats[0] = -1.0;
    CALL(kd_threshold_update_stats(t, B.stats));
}
static kd_status thr81(void)
{
    kd_threshold *t = th_stats(KD_THRESHOLD_DEBIASPL);
    B.stats[1] = B.stats[0] + 1.0;
    CALL(kd_threshold_update_stats(t, B.stats));
}
static kd_status thr82(void)
{
    kd_threshold *t = th_stats(KD_THRESHOLD_FREEMATCH);
    B.stats[2 + C] += 1.0;
    CALL(kd_threshold_update_stats(t, B.stats));
}
static kd_status thr83(void)
{
    kd_threshold *t = th_of(KD_THRESHOLD_ADAMATCH);
    B.probs[2] = INFINITY;
    CALL(kd_threshold_local_labeled_stats(t, N, C, B.probs, LD, B.stats));
}

typedef struct {
    const char *function, *input;
    kd_status status;
    const char *status_name;
    kd_status (*run)(void);
} row;

static kd_status row000(void) { CALL(kd_loss_create(NULL, KD_LOSS_KL_DISTILL, C)); }

static kd_status row001(void) { CALL(kd_loss_create(&OUT_LOSS, 4, C)); }

static kd_status row002(void) { CALL(kd_loss_create(&OUT_LOSS, KD_LOSS_KL_DISTILL, 0)); }

static kd_status row003(void)
{
    CALL(kd_loss_create(&OUT_LOSS, KD_LOSS_KL_DISTILL, (int64_t)1 << 31));
}

static kd_status row004(void) { CALL(kd_loss_set_int(NULL, KD_PARAM_REDUCTION, 0)); }

static kd_status row005(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, 999, 0));
}

static kd_status row006(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_TEMPERATURE, 2));
}

static kd_status row007(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_NUM_CLASSES, 3));
}

static kd_status row008(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_THRESHOLD_MODE, 1));
}

static kd_status row009(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_REDUCTION, 3));
}

static kd_status row010(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE));
}

static kd_status row011(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_THREADS, 4097));
}

static kd_status row012(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_IGNORE_INDEX, (int64_t)INT32_MAX + 1));
}

static kd_status row013(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 2));
}

static kd_status row014(void)
{
    kd_loss *h = mk(KD_LOSS_WORST_CASE);
    CALL(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, -2));
}

static kd_status row015(void) { CALL(kd_loss_set_float(NULL, KD_PARAM_TEMPERATURE, 2.0)); }

static kd_status row016(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.0));
}

static kd_status row016a(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 1e-7));
}

static kd_status row016b(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 1e-40));
}

static kd_status row017(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_ALPHA, NAN));
}

static kd_status row018(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_SOFT_WEIGHT, INFINITY));
}

static kd_status row019(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_ALPHA, 1.5));
}

static kd_status row020(void)
{
    kd_loss *h = mk(KD_LOSS_PSEUDO_LABEL);
    CALL(kd_loss_set_float(h, KD_PARAM_THRESHOLD, -0.1));
}

static kd_status row021(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_REDUCTION, 1.0));
}

static kd_status row022(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5));
}

static kd_status row023(void) { CALL(kd_loss_get_int(NULL, KD_PARAM_REDUCTION, &B.i64)); }

static kd_status row024(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_get_int(h, KD_PARAM_REDUCTION, NULL));
}

static kd_status row025(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_get_int(h, KD_PARAM_TEMPERATURE, &B.i64));
}

static kd_status row026(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_get_float(h, KD_PARAM_TEMPERATURE, NULL));
}

static kd_status row027(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_get_float(h, KD_PARAM_REDUCTION, &B.f64));
}

static kd_status row028(void)
{
    CALL(kd_loss_param_bounds(KD_LOSS_KL_DISTILL, KD_PARAM_TEMPERATURE, NULL, &B.f64, &B.i32));
}

static kd_status row029(void)
{
    CALL(kd_loss_param_bounds(KD_LOSS_MCC, KD_PARAM_ALPHA, &B.f64, &B.f64b, &B.i32));
}

static kd_status row030(void) { CALL(kd_loss_bind_matrix(NULL, KD_ARG_STUDENT, B.student, LD)); }

static kd_status row031(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_bind_matrix(h, KD_ARG_STUDENT, B.student, C - 1));
}

static kd_status row032(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_bind_matrix(h, KD_ARG_GRAD_STUDENT, B.student, LD));
}

static kd_status row033(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_bind_matrix(h, KD_ARG_TARGET, B.probs, LD));
}

static kd_status row034(void)
{
    const float *t[1] = {B.teacher};
    int64_t l[1] = {LD};
    CALL(kd_loss_bind_teachers(NULL, 1, t, l, NULL));
}

static kd_status row035(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    int64_t l[1] = {LD};
    CALL(kd_loss_bind_teachers(h, 1, NULL, l, NULL));
}

static kd_status row036(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    const float *t[2] = {B.teacher, NULL};
    int64_t l[2] = {LD, LD};
    CALL(kd_loss_bind_teachers(h, 2, t, l, NULL));
}

static kd_status row037(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    const float *t[1] = {B.teacher};
    int64_t l[1] = {LD};
    CALL(kd_loss_bind_teachers(h, -1, t, l, NULL));
}

static kd_status row038(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    const float *t[2] = {B.teacher, B.student};
    int64_t l[2] = {LD, LD};
    float w[2] = {1.0f, -1.0f};
    CALL(kd_loss_bind_teachers(h, 2, t, l, w));
}

static kd_status row039(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    const float *t[2] = {B.teacher, B.student};
    int64_t l[2] = {LD, LD};
    float w[2] = {0.0f, 0.0f};
    CALL(kd_loss_bind_teachers(h, 2, t, l, w));
}

static kd_status row040(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    const float *t[2] = {B.teacher, B.student};
    int64_t l[2] = {LD, C - 1};
    CALL(kd_loss_bind_teachers(h, 2, t, l, NULL));
}

static kd_status row041(void)
{
    kd_loss *h = mk(KD_LOSS_CLASS_BALANCE);
    const float *t[1] = {B.teacher};
    int64_t l[1] = {LD};
    CALL(kd_loss_bind_teachers(h, 1, t, l, NULL));
}

static kd_status row042(void) { CALL(kd_loss_bind_labels(NULL, B.labels)); }

static kd_status row043(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_bind_labels(h, B.labels));
}

static kd_status row229(void) { CALL(kd_loss_bind_labels64(NULL, B.labels64)); }

static kd_status row230(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_bind_labels64(h, B.labels64));
}

static kd_status row044(void) { CALL(kd_loss_bind_weights(NULL, B.weights)); }

static kd_status row045(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_bind_weights(h, B.weights));
}

static kd_status row046(void) { CALL(kd_loss_bind_vector(NULL, KD_ARG_WEIGHTS, B.weights)); }

static kd_status row047(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, B.cthr));
}

static kd_status row048(void)
{
    CALL(kd_loss_bind_output_labels(NULL, KD_ARG_PSEUDO_LABELS, B.plabels));
}

static kd_status row049(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, B.plabels));
}

static kd_status row050(void) { CALL(kd_loss_bind_output(NULL, KD_ARG_GRAD_STUDENT, B.grad, LD)); }

static kd_status row051(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.grad, C - 1));
}

static kd_status row052(void)
{
    kd_loss *h = mk(KD_LOSS_WORST_CASE);
    CALL(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.grad, LD));
}

static kd_status row087(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_stats_size(h, NULL));
}

static kd_status row088(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(kd_loss_stats_size(h, &B.i64));
}

static kd_status row089(void)
{
    kd_loss *h = selftrain(KD_LOSS_MCC);
    CALL(kd_loss_local_stats(h, N, NULL));
}

static kd_status row090(void)
{
    kd_loss *h = kl();
    CALL(kd_loss_local_stats(h, N, B.stats));
}

static kd_status row091(void)
{
    kd_loss *h = mk(KD_LOSS_MCC);
    CALL(kd_loss_local_stats(h, N, B.stats));
}

static kd_status row092(void)
{
    kd_loss *h = selftrain(KD_LOSS_MCC);
    CALL(kd_loss_local_stats(h, -1, B.stats));
}

static kd_status row093(void)
{
    kd_loss *h = selftrain(KD_LOSS_CLASS_BALANCE);
    CALL(kd_loss_local_stats(h, INT64_MAX / 2, B.stats));
}

static kd_status row094(void)
{
    kd_loss *h = mk(KD_LOSS_CLASS_BALANCE);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, (const float *)B.stats, C);
    CALL(kd_loss_local_stats(h, 2, B.stats));
}

static kd_status row095(void)
{
    kd_loss *h = selftrain(KD_LOSS_CLASS_BALANCE);
    CALL(kd_loss_finish(h, N, B.stats, NULL));
}

static kd_status row096(void)
{
    kd_loss *h = kl();
    CALL(kd_loss_finish(h, N, B.stats, B.loss));
}

static kd_status row097(void)
{
    kd_loss *h = selftrain(KD_LOSS_CLASS_BALANCE);
    B.stats[C] = 2.5;
    CALL(kd_loss_finish(h, N, B.stats, B.loss));
}

static kd_status row098(void)
{
    kd_loss *h = selftrain(KD_LOSS_MCC);
    B.stats[C * C] = 0.0;
    B.stats[C * C + 1] = N;
    CALL(kd_loss_finish(h, N, B.stats, B.loss));
}

static kd_status row099(void)
{
    kd_loss *h = kl();
    CALL(LINEAR(h, N, B.hidden, B.weight, NULL));
}

static kd_status row100(void)
{
    kd_loss *h = mk(KD_LOSS_CROSS_ENTROPY);
    CALL(LINEAR(h, N, B.hidden, B.weight, B.loss));
}

static kd_status row101(void)
{
    kd_loss *h = mk(KD_LOSS_KL_DISTILL);
    CALL(LINEAR(h, N, B.hidden, B.weight, B.loss));
}

static kd_status row102(void)
{
    kd_loss *h = kl();
    CALL(LINEAR(h, -1, B.hidden, B.weight, B.loss));
}

static kd_status row103(void) { CALL(kd_ema_create(NULL, 2, ARRAYS, LENGTHS, NULL)); }

static kd_status row104(void) { CALL(kd_ema_create(&OUT_EMA, 2, NULL, LENGTHS, NULL)); }

static kd_status row105(void)
{
    const float *a[2] = {B.p0, NULL};
    CALL(kd_ema_create(&OUT_EMA, 2, a, LENGTHS, NULL));
}

static kd_status row106(void) { CALL(kd_ema_create(&OUT_EMA, 0, ARRAYS, LENGTHS, NULL)); }

static kd_status row107(void)
{
    int32_t k[2] = {KD_EMA_AVERAGE, 7};
    CALL(kd_ema_create(&OUT_EMA, 2, ARRAYS, LENGTHS, k));
}

static kd_status row108(void)
{
    int64_t l[2] = {P0, -1};
    CALL(kd_ema_create(&OUT_EMA, 2, ARRAYS, l, NULL));
}

static kd_status row109(void)
{
    int64_t l[2] = {INT64_MAX / 2 + 1, INT64_MAX / 2 + 1};
    CALL(kd_ema_create(&OUT_EMA, 2, ARRAYS, l, NULL));
}

static kd_status row110(void) { CALL(kd_ema_create_flat(&OUT_EMA, NULL, 3)); }

static kd_status row111(void) { CALL(kd_ema_create_flat(&OUT_EMA, B.p0, -3)); }

static kd_status row112(void) { CALL(kd_ema_set_float(NULL, KD_EMA_PARAM_DECAY, 0.5f)); }

static kd_status row113(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_set_float(e, KD_EMA_PARAM_DECAY, 1.5f));
}

static kd_status row114(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_set_float(e, KD_EMA_PARAM_WARMUP, 1.0f));
}

static kd_status row115(void) { CALL(kd_ema_set_int(NULL, KD_EMA_PARAM_WARMUP, 1)); }

static kd_status row116(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_set_int(e, KD_EMA_PARAM_WARMUP, 3));
}

static kd_status row117(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_set_int(e, KD_EMA_PARAM_THREADS, -1));
}

static kd_status row118(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_set_int(e, KD_EMA_PARAM_DECAY, 1));
}

static kd_status row119(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_get_float(e, KD_EMA_PARAM_DECAY, NULL));
}

static kd_status row120(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_get_float(e, 99, &B.f64));
}

static kd_status row121(void) { CALL(kd_ema_get_int(NULL, KD_EMA_PARAM_WARMUP, &B.i64)); }

static kd_status row122(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_get_int(e, KD_EMA_PARAM_DECAY, &B.i64));
}

static kd_status row123(void) { CALL(kd_ema_param_bounds(KD_EMA_PARAM_DECAY, &B.f64, NULL)); }

static kd_status row124(void) { CALL(kd_ema_param_bounds(0, &B.f64, &B.f64b)); }

static kd_status row125(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_update(e, NULL));
}

static kd_status row126(void)
{
    kd_ema *e = ema();
    const float *s[2] = {B.s0, NULL};
    CALL(kd_ema_update(e, s));
}

static kd_status row127(void)
{
    kd_ema *e = ema();
    const float *t;
    kd_ema_teacher(e, 0, &t, NULL);
    const float *s[2] = {B.s0, t};
    CALL(kd_ema_update(e, s));
}

static kd_status row128(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_update_flat(e, NULL));
}

static kd_status row129(void)
{
    kd_ema *e = ema();
    const float *t;
    kd_ema_teacher_flat(e, &t, NULL);
    CALL(kd_ema_update_flat(e, t + 1));
}

static kd_status row130(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_step(e, NULL));
}

static kd_status row131(void) { CALL(kd_ema_next_decay(NULL, &B.f64)); }

static kd_status row132(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_shape(e, NULL, NULL));
}

static kd_status row133(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_teacher(e, 0, NULL, &B.i64));
}

static kd_status row134(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_teacher(e, 2, &B.cptr, &B.i64));
}

static kd_status row135(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_teacher_flat(e, NULL, &B.i64));
}

static kd_status row136(void)
{
    kd_ema *e = ema();
    float *s[2] = {B.s0, NULL};
    CALL(kd_ema_copy_to(e, s));
}

static kd_status row137(void)
{
    kd_ema *e = ema();
    const float *t;
    kd_ema_teacher(e, 1, &t, NULL);
    float *s[2] = {(float *)t, B.s1};
    CALL(kd_ema_copy_to(e, s));
}

static kd_status row138(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_copy_to_flat(e, NULL));
}

static kd_status row139(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_swap(e, NULL));
}

static kd_status row140(void)
{
    kd_ema *e = ema();
    const float *t;
    kd_ema_teacher(e, 0, &t, NULL);
    float *s[2] = {(float *)t + 1, B.s1};
    CALL(kd_ema_swap(e, s));
}

static kd_status row141(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_swap_flat(e, NULL));
}

static kd_status row142(void) { CALL(kd_ema_reset(NULL, ARRAYS)); }

static kd_status row143(void)
{
    kd_ema *e = ema();
    const float *t;
    kd_ema_teacher(e, 0, &t, NULL);
    const float *s[2] = {t, B.s1};
    CALL(kd_ema_reset(e, s));
}

static kd_status row144(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_reset_flat(e, NULL));
}

static kd_status row145(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_save(e, NULL));
}

static kd_status row146(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_save(e, "/nonexistent-kdlib-dir/x.kdema"));
}

static kd_status row147(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_load(e, NULL));
}

static kd_status row148(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_load(e, "/nonexistent-kdlib-dir/x.kdema"));
}

static kd_status row149(void)
{
    kd_ema *e = ema();
    CALL(kd_ema_load(e, fm_file()));
}

static kd_status row150(void)
{
    kd_ema *e = ema();
    const char *p = ema_file();
    poke32(p, 8, 99);
    CALL(kd_ema_load(e, p));
}

static kd_status row151(void)
{
    kd_ema *e = ema();
    const char *p = ema_file();
    truncate_file(p, -5);
    CALL(kd_ema_load(e, p));
}

static kd_status row152(void)
{
    kd_ema *e = ema();
    const char *p = ema_file();
    flip(p, -10);
    CALL(kd_ema_load(e, p));
}

static kd_status row153(void)
{
    kd_ema *e = ema();
    kd_ema *o = NULL;
    int64_t l = 5;
    kd_ema_create_flat(&o, B.s0, l);
    kd_ema_save(o, tmp_path("other.kdema"));
    kd_ema_destroy(o);
    CALL(kd_ema_load(e, tmp_path("other.kdema")));
}

static kd_status row154(void) { CALL(kd_flexmatch_create(NULL, 10, C)); }

static kd_status row155(void)
{
    CALL(kd_flexmatch_create(&OUT_FM, KD_FLEXMATCH_MAX_SAMPLES + 1, C));
}

static kd_status row156(void) { CALL(kd_flexmatch_create(&OUT_FM, 10, 0)); }

static kd_status row157(void) { CALL(kd_flexmatch_reset(NULL)); }

static kd_status row158(void)
{
    CALL(kd_flexmatch_set_float(NULL, KD_FLEXMATCH_PARAM_THRESHOLD, 0.5f));
}

static kd_status row159(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_set_float(f, KD_FLEXMATCH_PARAM_THRESHOLD, NAN));
}

static kd_status row160(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_set_float(f, KD_FLEXMATCH_PARAM_MAPPING, 1.0f));
}

static kd_status row161(void) { CALL(kd_flexmatch_set_int(NULL, KD_FLEXMATCH_PARAM_WARMUP, 1)); }

static kd_status row162(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_set_int(f, KD_FLEXMATCH_PARAM_MAPPING, 3));
}

static kd_status row163(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_set_int(f, KD_FLEXMATCH_PARAM_WARMUP, 2));
}

static kd_status row164(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_set_int(f, KD_FLEXMATCH_PARAM_NUM_SAMPLES, 3));
}

static kd_status row165(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_get_float(f, KD_FLEXMATCH_PARAM_THRESHOLD, NULL));
}

static kd_status row166(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_get_float(f, KD_FLEXMATCH_PARAM_WARMUP, &B.f32));
}

static kd_status row167(void)
{
    CALL(kd_flexmatch_get_int(NULL, KD_FLEXMATCH_PARAM_WARMUP, &B.i64));
}

static kd_status row168(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_get_int(f, KD_FLEXMATCH_PARAM_THRESHOLD, &B.i64));
}

static kd_status row169(void)
{
    CALL(kd_flexmatch_param_bounds(KD_FLEXMATCH_PARAM_THRESHOLD, NULL, &B.f64));
}

static kd_status row170(void)
{
    CALL(kd_flexmatch_param_bounds(KD_FLEXMATCH_PARAM_NUM_CLASSES, &B.f64, &B.f64b));
}

static kd_status row171(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_update(f, N, B.idx, NULL, B.pred));
}

static kd_status row172(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_update(f, -1, B.idx, B.conf, B.pred));
}

static kd_status row173(void)
{
    kd_flexmatch *f = fm();
    B.idx[3] = FM_N;
    CALL(kd_flexmatch_update(f, N, B.idx, B.conf, B.pred));
}

static kd_status row174(void)
{
    kd_flexmatch *f = fm();
    B.pred[4] = -1;
    CALL(kd_flexmatch_update(f, N, B.idx, B.conf, B.pred));
}

static kd_status row175(void)
{
    kd_flexmatch *f = fm();
    B.conf[5] = NAN;
    CALL(kd_flexmatch_update(f, N, B.idx, B.conf, B.pred));
}

static kd_status row176(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_thresholds(f, NULL));
}

static kd_status row177(void) { CALL(kd_flexmatch_learning_effect(NULL, B.cthr)); }

static kd_status row178(void) { CALL(kd_flexmatch_counts(NULL, B.sigma, &B.i64)); }

static kd_status row179(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_predictions(f, NULL));
}

static kd_status row180(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_save(f, NULL));
}

static kd_status row181(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_save(f, "/nonexistent-kdlib-dir/x.kdfm"));
}

static kd_status row182(void) { CALL(kd_flexmatch_load(NULL, "x")); }

static kd_status row183(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_load(f, "/nonexistent-kdlib-dir/x.kdfm"));
}

static kd_status row184(void)
{
    kd_flexmatch *f = fm();
    CALL(kd_flexmatch_load(f, ema_file()));
}

static kd_status row185(void)
{
    kd_flexmatch *f = fm();
    const char *p = fm_file();
    poke32(p, 8, 99);
    CALL(kd_flexmatch_load(f, p));
}

static kd_status row186(void)
{
    kd_flexmatch *f = fm();
    const char *p = fm_file();
    truncate_file(p, -1);
    CALL(kd_flexmatch_load(f, p));
}

static kd_status row187(void)
{
    kd_flexmatch *f = fm();
    const char *p = fm_file();
    flip(p, -6);
    CALL(kd_flexmatch_load(f, p));
}

static kd_status row188(void)
{
    kd_flexmatch *f = NULL;
    kd_flexmatch_create(&f, FM_N + 1, C);
    track_fm(f);
    CALL(kd_flexmatch_load(f, fm_file()));
}

static kd_status row189(void)
{
    CALL(kd_select_pseudo_labels(N, C, NULL, LD, 0, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status tsa0(void)
{
    CALL(kd_tsa_threshold(KD_TSA_LINEAR, 0, 10, C, NULL, B.err, sizeof B.err));
}
static kd_status tsa1(void)
{
    CALL(kd_tsa_threshold(KD_TSA_LOG + 1, 0, 10, C, &B.f64, B.err, sizeof B.err));
}
static kd_status tsa2(void)
{
    CALL(kd_tsa_threshold(KD_TSA_EXP, 11, 10, C, &B.f64, B.err, sizeof B.err));
}
static kd_status tsa3(void)
{
    CALL(kd_tsa_mask(N, C, B.student, LD, NULL, -100, 0.5, NULL, &B.i64, B.err, sizeof B.err));
}
static kd_status tsa4(void)
{
    CALL(kd_tsa_mask(N, C, B.student, C - 1, NULL, -100, 0.5, B.mask, &B.i64, B.err, sizeof B.err));
}
static kd_status tsa5(void)
{
    CALL(kd_tsa_mask(N, C, B.student, LD, NULL, -100, 1.5, B.mask, &B.i64, B.err, sizeof B.err));
}
static kd_status tsa6(void)
{
    B.labels[3] = C;
    CALL(
        kd_tsa_mask(N, C, B.student, LD, B.labels, -100, 0.5, B.mask, &B.i64, B.err, sizeof B.err));
}
static kd_status tsa7(void)
{
    B.student[LD + 1] = NAN;
    CALL(kd_tsa_mask(N, C, B.student, LD, NULL, -100, 0.5, B.mask, &B.i64, B.err, sizeof B.err));
}
static kd_status tsa8(void)
{
    CALL(kd_tsa_mask(N, C, B.student, LD, NULL, -100, 0.5, B.student + 2, &B.i64, B.err,
                     sizeof B.err));
}

static kd_status row190(void)
{
    CALL(kd_select_pseudo_labels(-1, C, B.probs, LD, 0, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row191(void)
{
    CALL(kd_select_pseudo_labels(N, 0, B.probs, LD, 0, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row192(void)
{
    CALL(kd_select_pseudo_labels(N, C, B.probs, C - 1, 0, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row193(void)
{
    CALL(kd_select_pseudo_labels(INT64_MAX / 2, C, B.probs, LD, 0, 0.5f, NULL, 0, B.conf, B.plabels,
                                 B.mask, &B.i64, B.err, sizeof B.err));
}

static kd_status row194(void)
{
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 4, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row195(void)
{
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 0, 1.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row196(void)
{
    B.cthr[2] = -0.5f;
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 0, 0.5f, B.cthr, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row197(void)
{
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 0, 0.5f, NULL, -1, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row198(void)
{
    B.probs[LD + 1] = 1.5f;
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 0, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row199(void)
{
    B.probs[2 * LD] = NAN;
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 0, 0.5f, NULL, 0, B.conf, B.plabels, B.mask,
                                 &B.i64, B.err, sizeof B.err));
}

static kd_status row200(void)
{
    for (int j = 0; j < C; j++)
        B.student[LD + j] = -INFINITY;
    CALL(kd_select_pseudo_labels(N, C, B.student, LD, KD_SELECT_LOGITS, 0.5f, NULL, 0, B.conf,
                                 B.plabels, B.mask, &B.i64, B.err, sizeof B.err));
}

static kd_status row201(void)
{
    CALL(kd_label_quality(N, C, B.probs, LD, NULL, -100, 0, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row202(void)
{
    CALL(kd_label_quality(-2, C, B.probs, LD, B.labels, -100, 0, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row203(void)
{
    CALL(kd_label_quality(N, C, B.probs, LD, B.labels, -100, 3, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row204(void)
{
    B.labels[1] = C;
    CALL(kd_label_quality(N, C, B.probs, LD, B.labels, -100, 0, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row205(void)
{
    CALL(kd_label_quality(N, C, B.probs, LD, B.labels, 1, 0, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row206(void)
{
    B.probs[3] = -0.25f;
    CALL(kd_label_quality(N, C, B.probs, LD, B.labels, -100, 0, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row207(void)
{
    B.probs[3] = INFINITY;
    CALL(kd_label_quality(N, C, B.probs, LD, B.labels, -100, 0, B.scores, B.rank, &B.i64, B.err,
                          sizeof B.err));
}

static kd_status row208(void)
{
    CALL(kd_find_label_issues(N, C, NULL, LD, B.labels, -100, B.cthr, B.cc, B.sus, &B.i64, B.err,
                              sizeof B.err));
}

static kd_status row209(void)
{
    CALL(kd_find_label_issues(-1, C, B.probs, LD, B.labels, -100, B.cthr, B.cc, B.sus, &B.i64,
                              B.err, sizeof B.err));
}

static kd_status row210(void)
{
    B.labels[0] = 99;
    CALL(kd_find_label_issues(N, C, B.probs, LD, B.labels, -100, B.cthr, B.cc, B.sus, &B.i64, B.err,
                              sizeof B.err));
}

static kd_status row211(void)
{
    CALL(kd_find_label_issues(N, C, B.probs, LD, B.labels, 0, B.cthr, B.cc, B.sus, &B.i64, B.err,
                              sizeof B.err));
}

static kd_status row212(void)
{
    B.probs[7] = 3.0f;
    CALL(kd_find_label_issues(N, C, B.probs, LD, B.labels, -100, B.cthr, B.cc, B.sus, &B.i64, B.err,
                              sizeof B.err));
}

static kd_status row213(void)
{
    B.probs[7] = NAN;
    CALL(kd_find_label_issues(N, C, B.probs, LD, B.labels, -100, B.cthr, B.cc, B.sus, &B.i64, B.err,
                              sizeof B.err));
}

static kd_status row214(void)
{
    CALL(kd_soft_labels(N, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD, NULL,
                        NULL, LD, B.err, sizeof B.err));
}

static kd_status row215(void)
{
    CALL(kd_soft_labels(-1, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD, NULL,
                        B.out, LD, B.err, sizeof B.err));
}

static kd_status row216(void)
{
    CALL(kd_soft_labels(N, C, B.labels, -100, 0.7f, 2, B.probs, LD, NULL, B.out, LD, B.err,
                        sizeof B.err));
}

static kd_status row217(void)
{
    CALL(kd_soft_labels(N, C, B.labels, -100, 1.5f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD, NULL,
                        B.out, LD, B.err, sizeof B.err));
}

static kd_status row218(void)
{
    CALL(kd_soft_labels(N, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD,
                        B.pred, B.out, LD, B.err, sizeof B.err));
}

static kd_status row219(void)
{
    B.pred[2] = C;
    CALL(kd_soft_labels(N, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_ONEHOT, B.probs, LD, B.pred,
                        B.out, LD, B.err, sizeof B.err));
}

static kd_status row220(void)
{
    B.probs[LD + 1] = 1.25f;
    CALL(kd_soft_labels(N, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD, NULL,
                        B.out, LD, B.err, sizeof B.err));
}

static kd_status row221(void)
{
    B.probs[LD + 1] = NAN;
    CALL(kd_soft_labels(N, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD, NULL,
                        B.out, LD, B.err, sizeof B.err));
}

static kd_status row222(void)
{
    CALL(kd_soft_labels(N - 1, C, B.labels, -100, 0.7f, KD_SOFT_LABEL_PROBABILITIES, B.probs, LD,
                        NULL, B.probs + 1, LD, B.err, sizeof B.err));
}

static kd_status row223(void)
{
    const float *in[2] = {B.teacher, NULL};
    CALL(kd_ensemble_average(N, C, 2, in, LDS2, NULL, B.out, LD, B.err, sizeof B.err));
}

static kd_status row224(void)
{
    CALL(kd_ensemble_average(-1, C, 2, INS2, LDS2, NULL, B.out, LD, B.err, sizeof B.err));
}

static kd_status row225(void)
{
    CALL(kd_ensemble_average(N, C, 0, INS2, LDS2, NULL, B.out, LD, B.err, sizeof B.err));
}

static kd_status row226(void)
{
    float w[2] = {0.0f, 0.0f};
    CALL(kd_ensemble_average(N, C, 2, INS2, LDS2, w, B.out, LD, B.err, sizeof B.err));
}

static kd_status row227(void)
{
    B.teacher[LD + 2] = -INFINITY;
    CALL(kd_ensemble_average(N, C, 2, INS2, LDS2, NULL, B.out, LD, B.err, sizeof B.err));
}

static kd_status row228(void)
{
    CALL(kd_ensemble_average(N, C, 2, INS2, LDS2, NULL, B.probs + 1, LD, B.err, sizeof B.err));
}

/* ---- issue 16: aliasing of every output, sizes, busy handles ---- */

static kd_status row_fair_vector_other_kind(void)
{
    kd_loss *h = mk(KD_LOSS_CLASS_BALANCE);
    CALL(kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, B.cthr));
}

static kd_status row_fair_per_sample(void)
{
    kd_loss *h = mk(KD_LOSS_FAIRNESS);
    CALL(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, B.out, 0));
}

static kd_status row_fair_local_weight(void)
{
    kd_loss *h = fair();
    B.weights[2] = -1.0f;
    CALL(kd_loss_local_stats(h, N, B.stats));
}

static kd_status row_fair_local_over_weights(void)
{
    kd_loss *h = fair();
    CALL(kd_loss_local_stats(h, 1, (double *)(void *)B.weights));
}

/* FAIRNESS statistics of N rows: P, K (every row predicting class 1), N */
static void fair_stats(void)
{
    for (int j = 0; j < C; j++) {
        B.stats[j] = N / (double)C;
        B.stats[C + j] = j == 1 ? N : 0.0;
    }
    B.stats[2 * C] = N;
}

static kd_status row_fair_finish_vector(void)
{
    kd_loss *h = fair();
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, NULL);
    fair_stats();
    CALL(kd_loss_finish(h, N, B.stats, B.loss));
}

static kd_status row_fair_finish_negative(void)
{
    kd_loss *h = fair();
    fair_stats();
    B.stats[C + 2] = -1.0;
    CALL(kd_loss_finish(h, N, B.stats, B.loss));
}

static kd_status row_fair_finish_loss_in_vector(void)
{
    kd_loss *h = fair();
    fair_stats();
    CALL(kd_loss_finish(h, N, B.stats, B.cthr + 1));
}

static kd_status row_finish_loss_in_grad(void)
{
    kd_loss *h = selftrain(KD_LOSS_CLASS_BALANCE);
    ck_assert_int_eq(kd_loss_local_stats(h, N, B.stats), KD_OK);
    CALL(kd_loss_finish(h, N, B.stats, B.grad + 1));
}

static kd_status row_finish_grad_over_stats(void)
{
    kd_loss *h = selftrain(KD_LOSS_CLASS_BALANCE);
    ck_assert_int_eq(kd_loss_local_stats(h, N, B.stats), KD_OK);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, (float *)B.stats, C);
    CALL(kd_loss_finish(h, 1, B.stats, B.loss));
}

static kd_status row_linear_alias(void)
{
    kd_loss *h = kl();
    CALL(kd_linear_kl_distill(h, N, DH, B.hidden, DH, B.weight, DH, NULL, 0, NULL, 0, NULL, 0, NULL,
                              0, B.loss, NULL, 0, B.weight + 1, DH, NULL));
}

static kd_status row_linear_ld(void)
{
    kd_loss *h = kl();
    CALL(kd_linear_kl_distill(h, N, DH, B.hidden, DH - 1, B.weight, DH, NULL, 0, NULL, 0, NULL, 0,
                              NULL, 0, B.loss, NULL, 0, NULL, 0, NULL));
}

static kd_status row_linear_d(void)
{
    kd_loss *h = kl();
    CALL(kd_linear_kl_distill(h, N, 0, B.hidden, DH, B.weight, DH, NULL, 0, NULL, 0, NULL, 0, NULL,
                              0, B.loss, NULL, 0, NULL, 0, NULL));
}

static kd_status row_linear_nan(void)
{
    kd_loss *h = kl();
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    B.hidden[4] = NAN;
    CALL(LINEAR(h, N, B.hidden, B.weight, B.loss));
}

static kd_status row_select_alias(void)
{
    CALL(kd_select_pseudo_labels(N, C, B.probs, LD, 0, 0.5f, NULL, 0, B.probs + 1, B.plabels,
                                 B.mask, &B.i64, B.err, sizeof B.err));
}

static kd_status row_quality_alias(void)
{
    CALL(kd_label_quality(N, C, B.probs, LD, B.labels, -100, 0, (float *)B.labels, B.rank, &B.i64,
                          B.err, sizeof B.err));
}

static kd_status row_issues_alias(void)
{
    CALL(kd_find_label_issues(N, C, B.probs, LD, B.labels, -100, B.cthr, B.cc, (uint8_t *)B.cc,
                              &B.i64, B.err, sizeof B.err));
}

static kd_status row_ensemble_alias_lds(void)
{
    const float *in[2] = {B.teacher, B.probs};
    int64_t lds[2] = {LD, LD};
    memcpy(B.out, lds, sizeof lds);
    CALL(kd_ensemble_average(1, C, 2, in, (const int64_t *)(void *)B.out, NULL, B.out, LD, B.err,
                             sizeof B.err));
}

/* ---- issue 19: the cleanlab-compatible functions ---- */

#define CLP B.probs, LD, B.labels, -100
static kd_status cl_thr_null(void)
{
    CALL(kd_cleanlab_confident_thresholds(N, C, CLP, NULL, B.err, sizeof B.err));
}
static kd_status cl_thr_shape(void)
{
    CALL(kd_cleanlab_confident_thresholds(N, C, B.probs, C - 1, B.labels, -100, B.cldbl, B.err,
                                          sizeof B.err));
}
static kd_status cl_thr_label(void)
{
    B.labels[2] = C;
    CALL(kd_cleanlab_confident_thresholds(N, C, CLP, B.cldbl, B.err, sizeof B.err));
}
static kd_status cl_thr_ignore(void)
{
    CALL(kd_cleanlab_confident_thresholds(N, C, B.probs, LD, B.labels, 0, B.cldbl, B.err,
                                          sizeof B.err));
}
static kd_status cl_thr_range(void)
{
    B.probs[6] = 1.5f;
    CALL(kd_cleanlab_confident_thresholds(N, C, CLP, B.cldbl, B.err, sizeof B.err));
}
static kd_status cl_thr_nan(void)
{
    B.probs[6] = NAN;
    CALL(kd_cleanlab_confident_thresholds(N, C, CLP, B.cldbl, B.err, sizeof B.err));
}
static kd_status cl_thr_alias(void)
{
    CALL(kd_cleanlab_confident_thresholds(N, C, CLP, (double *)(void *)B.probs, B.err,
                                          sizeof B.err));
}
static kd_status cl_cj_null(void)
{
    CALL(kd_cleanlab_confident_joint(N, C, NULL, LD, B.labels, -100, 0, B.clcj, B.sus, &B.i64,
                                     B.err, sizeof B.err));
}
static kd_status cl_cj_flags(void)
{
    CALL(kd_cleanlab_confident_joint(N, C, CLP, KD_CLEANLAB_CONVERGE, B.clcj, B.sus, &B.i64, B.err,
                                     sizeof B.err));
}
static kd_status cl_cj_alias(void)
{
    CALL(kd_cleanlab_confident_joint(N, C, CLP, 0, B.clcj, (uint8_t *)(void *)B.labels, &B.i64,
                                     B.err, sizeof B.err));
}
static kd_status cl_joint_null(void)
{
    CALL(kd_cleanlab_estimate_joint(N, C, CLP, NULL, NULL, B.err, sizeof B.err));
}
static kd_status cl_joint_negative(void)
{
    for (int k = 0; k < C * C; k++)
        B.clcj[k] = k == 5 ? -1 : 1;
    CALL(kd_cleanlab_estimate_joint(N, C, CLP, B.clcj, B.cldbl, B.err, sizeof B.err));
}
static kd_status cl_joint_alias(void)
{
    CALL(kd_cleanlab_estimate_joint(N, C, CLP, B.clcj, (double *)(void *)(B.clcj + 1), B.err,
                                    sizeof B.err));
}
static kd_status cl_py_shape(void)
{
    CALL(kd_cleanlab_estimate_py_and_noise_matrices(-1, C, CLP, 3, B.stats, B.cldbl, NULL, NULL,
                                                    B.err, sizeof B.err));
}
static kd_status cl_py_flags(void)
{
    CALL(kd_cleanlab_estimate_py_and_noise_matrices(N, C, CLP, 4, B.stats, B.cldbl, NULL, NULL,
                                                    B.err, sizeof B.err));
}
static kd_status cl_py_alias(void)
{
    CALL(kd_cleanlab_estimate_py_and_noise_matrices(N, C, CLP, 3, B.cldbl + 2, B.cldbl, NULL, NULL,
                                                    B.err, sizeof B.err));
}
static kd_status cl_num_null(void)
{
    CALL(kd_cleanlab_num_label_issues(N, C, CLP, KD_CLEANLAB_OFF_DIAGONAL, NULL, NULL, B.err,
                                      sizeof B.err));
}
static kd_status cl_num_custom_null(void)
{
    CALL(kd_cleanlab_num_label_issues(N, C, CLP, KD_CLEANLAB_OFF_DIAGONAL_CUSTOM, NULL, &B.i64,
                                      B.err, sizeof B.err));
}
static kd_status cl_num_method(void)
{
    CALL(kd_cleanlab_num_label_issues(N, C, CLP, 3, NULL, &B.i64, B.err, sizeof B.err));
}
static kd_status cl_num_joint_unused(void)
{
    CALL(kd_cleanlab_num_label_issues(N, C, CLP, KD_CLEANLAB_OFF_DIAGONAL, B.clcj, &B.i64, B.err,
                                      sizeof B.err));
}
static kd_status cl_num_inf(void)
{
    B.probs[1] = INFINITY;
    CALL(kd_cleanlab_num_label_issues(N, C, CLP, KD_CLEANLAB_OFF_DIAGONAL, NULL, &B.i64, B.err,
                                      sizeof B.err));
}
#define CLF(f_, fr_, ntr_, mn_, rk_, adj_)                                                         \
    kd_cleanlab_find_label_issues(N, C, CLP, f_, fr_, ntr_, mn_, rk_, adj_, B.sus, B.rank, &B.i64, \
                                  B.err, sizeof B.err)
static kd_status cl_find_null(void)
{
    CALL(kd_cleanlab_find_label_issues(N, C, B.probs, LD, NULL, -100, 0, 1.0, NULL, 1, -1, 0, B.sus,
                                       B.rank, &B.i64, B.err, sizeof B.err));
}
static kd_status cl_find_filter(void) { CALL(CLF(7, 1.0, NULL, 1, -1, 0)); }
static kd_status cl_find_frac(void) { CALL(CLF(0, 1.5, NULL, 1, -1, 0)); }
static kd_status cl_find_min(void) { CALL(CLF(0, 1.0, NULL, -1, -1, 0)); }
static kd_status cl_find_ntr(void)
{
    B.sigma[1] = -1;
    CALL(CLF(0, 1.0, B.sigma, 1, -1, 0));
}
static kd_status cl_find_ntr_filter(void)
{
    for (int k = 0; k < C; k++)
        B.sigma[k] = 1;
    CALL(CLF(KD_CLEANLAB_CONFIDENT_LEARNING, 1.0, B.sigma, 1, -1, 0));
}
static kd_status cl_find_rank(void) { CALL(CLF(0, 1.0, NULL, 1, KD_LABEL_SCORE_MARGIN, 0)); }
static kd_status cl_find_adjust(void)
{
    CALL(CLF(0, 1.0, NULL, 1, KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY, 1));
}
static kd_status cl_find_alias(void)
{
    CALL(kd_cleanlab_find_label_issues(N, C, CLP, 0, 1.0, NULL, 1, 0, 0, B.sus, B.rank, B.rank + 2,
                                       B.err, sizeof B.err));
}
static kd_status cl_scores_null(void)
{
    CALL(kd_cleanlab_get_label_quality_scores(N, C, CLP, 0, 0, NULL, B.err, sizeof B.err));
}
static kd_status cl_scores_method(void)
{
    CALL(kd_cleanlab_get_label_quality_scores(N, C, CLP, KD_LABEL_SCORE_MARGIN, 0, B.cldbl, B.err,
                                              sizeof B.err));
}
static kd_status cl_scores_adjust(void)
{
    CALL(kd_cleanlab_get_label_quality_scores(N, C, CLP, 0, 2, B.cldbl, B.err, sizeof B.err));
}
static kd_status cl_scores_entropy_c1(void)
{
    CALL(kd_cleanlab_get_label_quality_scores(N, 1, CLP, KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY,
                                              0, B.cldbl, B.err, sizeof B.err));
}
static kd_status cl_scores_alias(void)
{
    CALL(kd_cleanlab_get_label_quality_scores(N, C, CLP, 0, 0, (double *)(void *)B.labels, B.err,
                                              sizeof B.err));
}
#undef CLF
#undef CLP
#define SELP(fl_, sus_, w_)                                                                        \
    kd_soft_labels_selective(N, C, B.labels, -100, w_, KD_SOFT_LABEL_PROBABILITIES, fl_, B.probs,  \
                             LD, sus_, B.out, LD, B.err, sizeof B.err)
static kd_status sel_null(void) { CALL(SELP(KD_SOFT_LABEL_SUSPECTS_ONLY, NULL, 0.7f)); }
static kd_status sel_shape(void)
{
    CALL(kd_soft_labels_selective(N, C, B.labels, -100, 0.7f, 0, 0, B.probs, C - 1, NULL, B.out, LD,
                                  B.err, sizeof B.err));
}
static kd_status sel_flags(void) { CALL(SELP(4, NULL, 0.7f)); }
static kd_status sel_suspect_unused(void) { CALL(SELP(0, B.sus, 0.7f)); }
static kd_status sel_suspect_byte(void)
{
    for (int i = 0; i < N; i++)
        B.sus[i] = 0;
    B.sus[3] = 2;
    CALL(SELP(KD_SOFT_LABEL_SUSPECTS_ONLY, B.sus, 0.7f));
}
static kd_status sel_weight(void) { CALL(SELP(KD_SOFT_LABEL_CONFIDENCE_WEIGHT, NULL, 1.5f)); }
static kd_status sel_nan(void)
{
    B.probs[2] = NAN;
    CALL(SELP(KD_SOFT_LABEL_CONFIDENCE_WEIGHT, NULL, 0.7f));
}
static kd_status sel_alias(void)
{
    for (int i = 0; i < N; i++)
        B.sus[i] = 0;
    CALL(kd_soft_labels_selective(N, C, B.labels, -100, 0.7f, 1, KD_SOFT_LABEL_SUSPECTS_ONLY,
                                  B.probs, LD, B.sus, (float *)(void *)B.sus, LD, B.err,
                                  sizeof B.err));
}
#undef SELP

/* a status and its name */
#define ST(s) s, #s
static const row ROWS[] = {
    {"kd_loss_create", "out is NULL", ST(KD_ERR_NULL_POINTER), row000},
    {"kd_loss_create", "unknown kind (0, 4, 999)", ST(KD_ERR_INVALID_ARGUMENT), row001},
    {"kd_loss_create", "num_classes < 1", ST(KD_ERR_INVALID_ARGUMENT), row002},
    {"kd_loss_create", "num_classes > 2^31 - 1 (2^31 itself)", ST(KD_ERR_INVALID_ARGUMENT), row003},
    {"kd_loss_set_int", "h is NULL", ST(KD_ERR_NULL_POINTER), row004},
    {"kd_loss_set_int", "unknown parameter", ST(KD_ERR_UNSUPPORTED), row005},
    {"kd_loss_set_int", "a real parameter (TEMPERATURE)", ST(KD_ERR_UNSUPPORTED), row006},
    {"kd_loss_set_int", "a read-only parameter (NUM_CLASSES, KIND)", ST(KD_ERR_UNSUPPORTED),
     row007},
    {"kd_loss_set_int", "a parameter of another kind (THRESHOLD_MODE on KL)",
     ST(KD_ERR_UNSUPPORTED), row008},
    {"kd_loss_set_int", "enum value out of range (REDUCTION = 3)", ST(KD_ERR_INVALID_ARGUMENT),
     row009},
    {"kd_loss_set_int", "a reduction the kind lacks (NONE on MCC)", ST(KD_ERR_INVALID_ARGUMENT),
     row010},
    {"kd_loss_set_int", "THREADS < 0 or > 4096", ST(KD_ERR_INVALID_ARGUMENT), row011},
    {"kd_loss_set_int", "IGNORE_INDEX outside int32", ST(KD_ERR_INVALID_ARGUMENT), row012},
    {"kd_loss_set_int", "a 0/1 flag set to 2 (CHECK_FINITE)", ST(KD_ERR_INVALID_ARGUMENT), row013},
    {"kd_loss_set_int", "UNLABELED_ROWS < -1", ST(KD_ERR_INVALID_ARGUMENT), row014},
    {"kd_loss_set_float", "h is NULL", ST(KD_ERR_NULL_POINTER), row015},
    {"kd_loss_set_float", "TEMPERATURE <= 0", ST(KD_ERR_INVALID_ARGUMENT), row016},
    {"kd_loss_set_float", "TEMPERATURE below the minimum 1e-6 (1e-7 on KL)",
     ST(KD_ERR_INVALID_ARGUMENT), row016a},
    {"kd_loss_set_float", "TEMPERATURE 1e-40, where 1/T overflows float (MCC)",
     ST(KD_ERR_INVALID_ARGUMENT), row016b},
    {"kd_loss_set_float", "NaN", ST(KD_ERR_INVALID_ARGUMENT), row017},
    {"kd_loss_set_float", "+Inf (SOFT_WEIGHT)", ST(KD_ERR_INVALID_ARGUMENT), row018},
    {"kd_loss_set_float", "a value in [0,1] outside it (ALPHA = 1.5)", ST(KD_ERR_INVALID_ARGUMENT),
     row019},
    {"kd_loss_set_float", "THRESHOLD outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT), row020},
    {"kd_loss_set_float", "an integer parameter (REDUCTION)", ST(KD_ERR_UNSUPPORTED), row021},
    {"kd_loss_set_float", "a parameter of another kind (THRESHOLD on KL)", ST(KD_ERR_UNSUPPORTED),
     row022},
    {"kd_loss_get_int", "h is NULL", ST(KD_ERR_NULL_POINTER), row023},
    {"kd_loss_get_int", "value is NULL", ST(KD_ERR_NULL_POINTER), row024},
    {"kd_loss_get_int", "unknown or real parameter", ST(KD_ERR_UNSUPPORTED), row025},
    {"kd_loss_get_float", "value is NULL", ST(KD_ERR_NULL_POINTER), row026},
    {"kd_loss_get_float", "unknown or integer parameter", ST(KD_ERR_UNSUPPORTED), row027},
    {"kd_loss_param_bounds", "lo, hi or is_open_low is NULL", ST(KD_ERR_NULL_POINTER), row028},
    {"kd_loss_param_bounds", "a parameter the kind lacks, or an unknown kind",
     ST(KD_ERR_UNSUPPORTED), row029},
    {"kd_loss_bind_matrix", "h is NULL", ST(KD_ERR_NULL_POINTER), row030},
    {"kd_loss_bind_matrix", "ld < C", ST(KD_ERR_SHAPE), row031},
    {"kd_loss_bind_matrix", "an output or vector role (GRAD_STUDENT, LABELS)",
     ST(KD_ERR_UNSUPPORTED), row032},
    {"kd_loss_bind_matrix", "a role of another kind (TARGET on KL)", ST(KD_ERR_UNSUPPORTED),
     row033},
    {"kd_loss_bind_teachers", "h is NULL", ST(KD_ERR_NULL_POINTER), row034},
    {"kd_loss_bind_teachers", "teachers or lds is NULL", ST(KD_ERR_NULL_POINTER), row035},
    {"kd_loss_bind_teachers", "teachers[k] is NULL", ST(KD_ERR_NULL_POINTER), row036},
    {"kd_loss_bind_teachers", "count < 0 or > 1024", ST(KD_ERR_INVALID_ARGUMENT), row037},
    {"kd_loss_bind_teachers", "a negative or NaN weight", ST(KD_ERR_INVALID_ARGUMENT), row038},
    {"kd_loss_bind_teachers", "weights summing to 0", ST(KD_ERR_INVALID_ARGUMENT), row039},
    {"kd_loss_bind_teachers", "lds[k] < C", ST(KD_ERR_SHAPE), row040},
    {"kd_loss_bind_teachers", "a kind without teachers (CLASS_BALANCE)", ST(KD_ERR_UNSUPPORTED),
     row041},
    {"kd_loss_bind_labels", "h is NULL", ST(KD_ERR_NULL_POINTER), row042},
    {"kd_loss_bind_labels", "a kind without labels (MCC)", ST(KD_ERR_UNSUPPORTED), row043},
    {"kd_loss_bind_labels64", "h is NULL", ST(KD_ERR_NULL_POINTER), row229},
    {"kd_loss_bind_labels64", "a kind without labels (MCC)", ST(KD_ERR_UNSUPPORTED), row230},
    {"kd_loss_bind_weights", "h is NULL", ST(KD_ERR_NULL_POINTER), row044},
    {"kd_loss_bind_weights", "CLASS_BALANCE, MCC, WORST_CASE", ST(KD_ERR_UNSUPPORTED), row045},
    {"kd_loss_bind_vector", "h is NULL", ST(KD_ERR_NULL_POINTER), row046},
    {"kd_loss_bind_vector", "CLASS_THRESHOLDS on a kind without thresholds (KL)",
     ST(KD_ERR_UNSUPPORTED), row047},
    {"kd_loss_bind_vector", "CLASS_PROBS or LABEL_HISTOGRAM on a kind other than FAIRNESS",
     ST(KD_ERR_UNSUPPORTED), row_fair_vector_other_kind},
    {"kd_loss_bind_output_labels", "h is NULL", ST(KD_ERR_NULL_POINTER), row048},
    {"kd_loss_bind_output_labels", "a role other than PSEUDO_LABELS, or a kind without it",
     ST(KD_ERR_UNSUPPORTED), row049},
    {"kd_loss_bind_output", "h is NULL", ST(KD_ERR_NULL_POINTER), row050},
    {"kd_loss_bind_output", "gradient ld < C", ST(KD_ERR_SHAPE), row051},
    {"kd_loss_bind_output", "an input role, or GRAD_STUDENT on WORST_CASE", ST(KD_ERR_UNSUPPORTED),
     row052},
    {"kd_loss_bind_output", "PER_SAMPLE on a batch kind (FAIRNESS)", ST(KD_ERR_UNSUPPORTED),
     row_fair_per_sample},
    {"kd_loss_stats_size", "h or count is NULL", ST(KD_ERR_NULL_POINTER), row087},
    {"kd_loss_stats_size", "a kind without batch statistics (KL)", ST(KD_ERR_UNSUPPORTED), row088},
    {"kd_loss_local_stats", "h or stats is NULL", ST(KD_ERR_NULL_POINTER), row089},
    {"kd_loss_local_stats", "not CLASS_BALANCE, MCC or FAIRNESS", ST(KD_ERR_UNSUPPORTED), row090},
    {"kd_loss_local_stats", "student not bound", ST(KD_ERR_MISSING_INPUT), row091},
    {"kd_loss_local_stats", "n < 0", ST(KD_ERR_INVALID_ARGUMENT), row092},
    {"kd_loss_local_stats", "n * ld overflows", ST(KD_ERR_SHAPE), row093},
    {"kd_loss_local_stats", "stats overlapping the student", ST(KD_ERR_ALIASING), row094},
    {"kd_loss_local_stats", "FAIRNESS: a negative, NaN or infinite weight",
     ST(KD_ERR_INVALID_ARGUMENT), row_fair_local_weight},
    {"kd_loss_local_stats", "stats overlapping the weights (FAIRNESS)", ST(KD_ERR_ALIASING),
     row_fair_local_over_weights},
    {"kd_loss_finish", "h, global_stats or loss is NULL", ST(KD_ERR_NULL_POINTER), row095},
    {"kd_loss_finish", "not CLASS_BALANCE, MCC or FAIRNESS", ST(KD_ERR_UNSUPPORTED), row096},
    {"kd_loss_finish", "FAIRNESS: a class vector (CLASS_PROBS, LABEL_HISTOGRAM) not bound",
     ST(KD_ERR_MISSING_INPUT), row_fair_finish_vector},
    {"kd_loss_finish", "the global count not an integer in [n, 2^53]", ST(KD_ERR_INVALID_ARGUMENT),
     row097},
    {"kd_loss_finish", "MCC: S <= 0 with N > 0", ST(KD_ERR_INVALID_ARGUMENT), row098},
    {"kd_loss_finish",
     "FAIRNESS: a P_c or K_c < 0, or the selected classes' P_c / K_c summing to 0",
     ST(KD_ERR_INVALID_ARGUMENT), row_fair_finish_negative},
    {"kd_loss_finish", "FAIRNESS: the loss inside a class vector", ST(KD_ERR_ALIASING),
     row_fair_finish_loss_in_vector},
    {"kd_loss_finish", "the loss inside the gradient", ST(KD_ERR_ALIASING),
     row_finish_loss_in_grad},
    {"kd_loss_finish", "the gradient overlapping global_stats", ST(KD_ERR_ALIASING),
     row_finish_grad_over_stats},
    {"kd_linear_kl_distill", "h, loss, hidden or weight is NULL", ST(KD_ERR_NULL_POINTER), row099},
    {"kd_linear_kl_distill", "h is not a KL_DISTILL handle", ST(KD_ERR_UNSUPPORTED), row100},
    {"kd_linear_kl_distill", "no teacher bound and no teacher_hidden", ST(KD_ERR_MISSING_INPUT),
     row101},
    {"kd_linear_kl_distill", "n < 0", ST(KD_ERR_INVALID_ARGUMENT), row102},
    {"kd_linear_kl_distill", "d < 1", ST(KD_ERR_INVALID_ARGUMENT), row_linear_d},
    {"kd_linear_kl_distill", "an ld smaller than its row length", ST(KD_ERR_SHAPE), row_linear_ld},
    {"kd_linear_kl_distill", "NaN/Inf input with CHECK_FINITE = 1", ST(KD_ERR_NOT_FINITE),
     row_linear_nan},
    {"kd_linear_kl_distill",
     "an output overlapping an input or another output (grad_weight over weight)",
     ST(KD_ERR_ALIASING), row_linear_alias},
    {"kd_ema_create", "out is NULL", ST(KD_ERR_NULL_POINTER), row103},
    {"kd_ema_create", "arrays or lengths is NULL", ST(KD_ERR_NULL_POINTER), row104},
    {"kd_ema_create", "arrays[i] NULL with lengths[i] > 0", ST(KD_ERR_NULL_POINTER), row105},
    {"kd_ema_create", "num_arrays < 1", ST(KD_ERR_INVALID_ARGUMENT), row106},
    {"kd_ema_create", "an unknown kinds[i]", ST(KD_ERR_INVALID_ARGUMENT), row107},
    {"kd_ema_create", "a negative lengths[i]", ST(KD_ERR_SHAPE), row108},
    {"kd_ema_create", "total size overflows", ST(KD_ERR_SHAPE), row109},
    {"kd_ema_create_flat", "out, or params with length > 0, is NULL", ST(KD_ERR_NULL_POINTER),
     row110},
    {"kd_ema_create_flat", "length < 0", ST(KD_ERR_SHAPE), row111},
    {"kd_ema_set_float", "ema is NULL", ST(KD_ERR_NULL_POINTER), row112},
    {"kd_ema_set_float", "DECAY outside [0, 1] or NaN", ST(KD_ERR_INVALID_ARGUMENT), row113},
    {"kd_ema_set_float", "an unknown or integer key", ST(KD_ERR_UNSUPPORTED), row114},
    {"kd_ema_set_int", "ema is NULL", ST(KD_ERR_NULL_POINTER), row115},
    {"kd_ema_set_int", "WARMUP not a KD_EMA_WARMUP_* value", ST(KD_ERR_INVALID_ARGUMENT), row116},
    {"kd_ema_set_int", "THREADS < 0 or > KD_EMA_MAX_THREADS", ST(KD_ERR_INVALID_ARGUMENT), row117},
    {"kd_ema_set_int", "an unknown or real key", ST(KD_ERR_UNSUPPORTED), row118},
    {"kd_ema_get_float", "ema or value is NULL", ST(KD_ERR_NULL_POINTER), row119},
    {"kd_ema_get_float", "an unknown or integer key", ST(KD_ERR_UNSUPPORTED), row120},
    {"kd_ema_get_int", "ema or value is NULL", ST(KD_ERR_NULL_POINTER), row121},
    {"kd_ema_get_int", "an unknown or real key", ST(KD_ERR_UNSUPPORTED), row122},
    {"kd_ema_param_bounds", "lower or upper is NULL", ST(KD_ERR_NULL_POINTER), row123},
    {"kd_ema_param_bounds", "an unknown key", ST(KD_ERR_UNSUPPORTED), row124},
    {"kd_ema_update", "ema or student_arrays is NULL", ST(KD_ERR_NULL_POINTER), row125},
    {"kd_ema_update", "student_arrays[i] NULL with a length > 0", ST(KD_ERR_NULL_POINTER), row126},
    {"kd_ema_update", "a student array overlapping the teacher storage", ST(KD_ERR_ALIASING),
     row127},
    {"kd_ema_update_flat", "student is NULL", ST(KD_ERR_NULL_POINTER), row128},
    {"kd_ema_update_flat", "student overlapping the teacher storage", ST(KD_ERR_ALIASING), row129},
    {"kd_ema_step", "ema or step is NULL", ST(KD_ERR_NULL_POINTER), row130},
    {"kd_ema_next_decay", "ema or decay is NULL", ST(KD_ERR_NULL_POINTER), row131},
    {"kd_ema_shape", "ema is NULL, or both outputs are NULL", ST(KD_ERR_NULL_POINTER), row132},
    {"kd_ema_teacher", "ema or data is NULL", ST(KD_ERR_NULL_POINTER), row133},
    {"kd_ema_teacher", "index outside [0, num_arrays)", ST(KD_ERR_INVALID_ARGUMENT), row134},
    {"kd_ema_teacher_flat", "ema or data is NULL", ST(KD_ERR_NULL_POINTER), row135},
    {"kd_ema_copy_to", "ema or student_arrays (or one with a length > 0) is NULL",
     ST(KD_ERR_NULL_POINTER), row136},
    {"kd_ema_copy_to", "a student array overlapping the teacher", ST(KD_ERR_ALIASING), row137},
    {"kd_ema_copy_to_flat", "student is NULL", ST(KD_ERR_NULL_POINTER), row138},
    {"kd_ema_swap", "ema or student_arrays is NULL", ST(KD_ERR_NULL_POINTER), row139},
    {"kd_ema_swap", "a student array overlapping the teacher", ST(KD_ERR_ALIASING), row140},
    {"kd_ema_swap_flat", "student is NULL", ST(KD_ERR_NULL_POINTER), row141},
    {"kd_ema_reset", "ema or student_arrays is NULL", ST(KD_ERR_NULL_POINTER), row142},
    {"kd_ema_reset", "a student array overlapping the teacher", ST(KD_ERR_ALIASING), row143},
    {"kd_ema_reset_flat", "student is NULL", ST(KD_ERR_NULL_POINTER), row144},
    {"kd_ema_save", "ema or path is NULL", ST(KD_ERR_NULL_POINTER), row145},
    {"kd_ema_save", "a directory that does not exist", ST(KD_ERR_IO), row146},
    {"kd_ema_load", "ema or path is NULL", ST(KD_ERR_NULL_POINTER), row147},
    {"kd_ema_load", "a file that does not exist", ST(KD_ERR_IO), row148},
    {"kd_ema_load", "not an EMA state file (a FlexMatch file)", ST(KD_ERR_VERSION), row149},
    {"kd_ema_load", "an unknown format version", ST(KD_ERR_VERSION), row150},
    {"kd_ema_load", "a truncated file", ST(KD_ERR_CORRUPT), row151},
    {"kd_ema_load", "a flipped bit (checksum mismatch)", ST(KD_ERR_CORRUPT), row152},
    {"kd_ema_load", "a valid file of another shape", ST(KD_ERR_MISMATCH), row153},
    {"kd_flexmatch_create", "out is NULL", ST(KD_ERR_NULL_POINTER), row154},
    {"kd_flexmatch_create", "num_samples outside [1, KD_FLEXMATCH_MAX_SAMPLES]",
     ST(KD_ERR_INVALID_ARGUMENT), row155},
    {"kd_flexmatch_create", "num_classes outside [1, KD_FLEXMATCH_MAX_CLASSES]",
     ST(KD_ERR_INVALID_ARGUMENT), row156},
    {"kd_flexmatch_reset", "fm is NULL", ST(KD_ERR_NULL_POINTER), row157},
    {"kd_flexmatch_set_float", "fm is NULL", ST(KD_ERR_NULL_POINTER), row158},
    {"kd_flexmatch_set_float", "THRESHOLD outside [0, 1] or NaN", ST(KD_ERR_INVALID_ARGUMENT),
     row159},
    {"kd_flexmatch_set_float", "an unknown, integer or read-only key", ST(KD_ERR_UNSUPPORTED),
     row160},
    {"kd_flexmatch_set_int", "fm is NULL", ST(KD_ERR_NULL_POINTER), row161},
    {"kd_flexmatch_set_int", "MAPPING not a KD_FLEXMATCH_MAPPING_* value",
     ST(KD_ERR_INVALID_ARGUMENT), row162},
    {"kd_flexmatch_set_int", "WARMUP or NON_STRICT not 0/1", ST(KD_ERR_INVALID_ARGUMENT), row163},
    {"kd_flexmatch_set_int", "a read-only key (NUM_SAMPLES, NUM_CLASSES), unknown or real key",
     ST(KD_ERR_UNSUPPORTED), row164},
    {"kd_flexmatch_get_float", "fm or value is NULL", ST(KD_ERR_NULL_POINTER), row165},
    {"kd_flexmatch_get_float", "an unknown or integer key", ST(KD_ERR_UNSUPPORTED), row166},
    {"kd_flexmatch_get_int", "fm or value is NULL", ST(KD_ERR_NULL_POINTER), row167},
    {"kd_flexmatch_get_int", "an unknown or real key", ST(KD_ERR_UNSUPPORTED), row168},
    {"kd_flexmatch_param_bounds", "lower or upper is NULL", ST(KD_ERR_NULL_POINTER), row169},
    {"kd_flexmatch_param_bounds", "an unknown or read-only key", ST(KD_ERR_UNSUPPORTED), row170},
    {"kd_flexmatch_update", "fm, or an array with n > 0, is NULL", ST(KD_ERR_NULL_POINTER), row171},
    {"kd_flexmatch_update", "n < 0", ST(KD_ERR_INVALID_ARGUMENT), row172},
    {"kd_flexmatch_update", "an index outside [0, N)", ST(KD_ERR_INVALID_ARGUMENT), row173},
    {"kd_flexmatch_update", "a prediction outside [0, C) (selected or not)",
     ST(KD_ERR_INVALID_ARGUMENT), row174},
    {"kd_flexmatch_update", "a NaN confidence", ST(KD_ERR_NOT_FINITE), row175},
    {"kd_flexmatch_thresholds", "fm or thresholds is NULL", ST(KD_ERR_NULL_POINTER), row176},
    {"kd_flexmatch_learning_effect", "fm or beta is NULL", ST(KD_ERR_NULL_POINTER), row177},
    {"kd_flexmatch_counts", "fm is NULL", ST(KD_ERR_NULL_POINTER), row178},
    {"kd_flexmatch_predictions", "fm or predictions is NULL", ST(KD_ERR_NULL_POINTER), row179},
    {"kd_flexmatch_save", "fm or path is NULL", ST(KD_ERR_NULL_POINTER), row180},
    {"kd_flexmatch_save", "a directory that does not exist", ST(KD_ERR_IO), row181},
    {"kd_flexmatch_load", "fm or path is NULL", ST(KD_ERR_NULL_POINTER), row182},
    {"kd_flexmatch_load", "a file that does not exist", ST(KD_ERR_IO), row183},
    {"kd_flexmatch_load", "not a FlexMatch state file (an EMA file)", ST(KD_ERR_VERSION), row184},
    {"kd_flexmatch_load", "an unknown format version", ST(KD_ERR_VERSION), row185},
    {"kd_flexmatch_load", "a truncated file", ST(KD_ERR_CORRUPT), row186},
    {"kd_flexmatch_load", "a flipped bit (checksum mismatch)", ST(KD_ERR_CORRUPT), row187},
    {"kd_flexmatch_load", "a valid file of another N or C", ST(KD_ERR_MISMATCH), row188},
    {"kd_threshold_create", "out is NULL", ST(KD_ERR_NULL_POINTER), thr1},
    {"kd_threshold_create", "an unknown algorithm", ST(KD_ERR_UNSUPPORTED), thr2},
    {"kd_threshold_create", "num_samples outside [1, KD_THRESHOLD_MAX_SAMPLES]",
     ST(KD_ERR_INVALID_ARGUMENT), thr3},
    {"kd_threshold_create", "num_classes outside [1, KD_THRESHOLD_MAX_CLASSES]",
     ST(KD_ERR_INVALID_ARGUMENT), thr4},
    {"kd_threshold_reset", "th is NULL", ST(KD_ERR_NULL_POINTER), thr5},
    {"kd_threshold_set_float", "th is NULL", ST(KD_ERR_NULL_POINTER), thr6},
    {"kd_threshold_set_float", "a value outside the parameter's bounds or NaN",
     ST(KD_ERR_INVALID_ARGUMENT), thr7},
    {"kd_threshold_set_float", "a key the algorithm lacks, an integer or a read-only key",
     ST(KD_ERR_UNSUPPORTED), thr8},
    {"kd_threshold_set_int", "a value outside the parameter's bounds", ST(KD_ERR_INVALID_ARGUMENT),
     thr9},
    {"kd_threshold_set_int",
     "a read-only (NUM_SAMPLES, NUM_CLASSES, ALGORITHM), unknown or real key",
     ST(KD_ERR_UNSUPPORTED), thr10},
    {"kd_threshold_get_float", "th or value is NULL", ST(KD_ERR_NULL_POINTER), thr11},
    {"kd_threshold_get_int", "an unknown or real key", ST(KD_ERR_UNSUPPORTED), thr12},
    {"kd_threshold_param_bounds", "a read-only key", ST(KD_ERR_UNSUPPORTED), thr13},
    {"kd_threshold_param_bounds", "an unknown algorithm", ST(KD_ERR_UNSUPPORTED), thr14},
    {"kd_threshold_param_bounds", "lower or upper is NULL", ST(KD_ERR_NULL_POINTER), thr15},
    {"kd_threshold_update", "th, or an array with n > 0, is NULL", ST(KD_ERR_NULL_POINTER), thr16},
    {"kd_threshold_update", "n < 0", ST(KD_ERR_INVALID_ARGUMENT), thr17},
    {"kd_threshold_update", "an index outside [0, N)", ST(KD_ERR_INVALID_ARGUMENT), thr18},
    {"kd_threshold_update", "a prediction outside [0, C)", ST(KD_ERR_INVALID_ARGUMENT), thr19},
    {"kd_threshold_update", "a NaN confidence", ST(KD_ERR_NOT_FINITE), thr20},
    {"kd_threshold_weights", "th, weights or an input with n > 0 is NULL", ST(KD_ERR_NULL_POINTER),
     thr21},
    {"kd_threshold_weights", "n < 0", ST(KD_ERR_INVALID_ARGUMENT), thr22},
    {"kd_threshold_weights", "a prediction outside [0, C)", ST(KD_ERR_INVALID_ARGUMENT), thr23},
    {"kd_threshold_weights", "a NaN confidence", ST(KD_ERR_NOT_FINITE), thr24},
    {"kd_threshold_get_floats", "th or out is NULL", ST(KD_ERR_NULL_POINTER), thr25},
    {"kd_threshold_get_floats", "count is not the state array's length",
     ST(KD_ERR_INVALID_ARGUMENT), thr26},
    {"kd_threshold_get_ints", "a state the algorithm lacks, or a float state",
     ST(KD_ERR_UNSUPPORTED), thr27},
    {"kd_threshold_save", "th or path is NULL", ST(KD_ERR_NULL_POINTER), thr28},
    {"kd_threshold_save", "a directory that does not exist", ST(KD_ERR_IO), thr29},
    {"kd_threshold_load", "a file that does not exist", ST(KD_ERR_IO), thr30},
    {"kd_threshold_load", "not a state file of the algorithm (an EMA file)", ST(KD_ERR_VERSION),
     thr31},
    {"kd_threshold_load", "a truncated file", ST(KD_ERR_CORRUPT), thr32},
    {"kd_threshold_load", "a valid file of another N or C", ST(KD_ERR_MISMATCH), thr33},
    {"kd_threshold_update_probs", "probs is NULL with n > 0", ST(KD_ERR_NULL_POINTER), thr34},
    {"kd_threshold_update_probs", "indices is NULL for FlexMatch", ST(KD_ERR_NULL_POINTER), thr35},
    {"kd_threshold_update_probs", "n < 0", ST(KD_ERR_INVALID_ARGUMENT), thr36},
    {"kd_threshold_update_probs", "c is not the handle's C (FreeMatch)",
     ST(KD_ERR_INVALID_ARGUMENT), thr37},
    {"kd_threshold_update_probs", "ld < c (SoftMatch)", ST(KD_ERR_INVALID_ARGUMENT), thr38},
    {"kd_threshold_update_probs", "an index outside [0, N)", ST(KD_ERR_INVALID_ARGUMENT), thr39},
    {"kd_threshold_update_probs", "a probability outside [0, 1] (FreeMatch)",
     ST(KD_ERR_INVALID_ARGUMENT), thr40},
    {"kd_threshold_update_probs", "a NaN probability (SoftMatch)", ST(KD_ERR_NOT_FINITE), thr41},
    {"kd_threshold_weights_probs", "weights is NULL with n > 0 (SoftMatch)",
     ST(KD_ERR_NULL_POINTER), thr42},
    {"kd_threshold_weights_probs", "weights inside probs (FreeMatch)", ST(KD_ERR_ALIASING), thr43},
    {"kd_threshold_weights_probs", "pseudo_labels overlapping weights", ST(KD_ERR_ALIASING), thr44},
    {"kd_threshold_weights", "weights overlapping predictions", ST(KD_ERR_ALIASING), thr45},
    {"kd_threshold_update", "FreeMatch (needs probability rows)", ST(KD_ERR_UNSUPPORTED), thr46},
    {"kd_threshold_weights", "SoftMatch with DIST_ALIGN = 1 (needs rows)", ST(KD_ERR_UNSUPPORTED),
     thr47},
    {"kd_threshold_set_float", "FreeMatch's QUANTILE outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT),
     thr48},
    {"kd_threshold_set_float", "a key SoftMatch lacks (THRESHOLD)", ST(KD_ERR_UNSUPPORTED), thr49},
    {"kd_threshold_get_floats", "a state FreeMatch lacks (CONF_MEAN)", ST(KD_ERR_UNSUPPORTED),
     thr50},
    {"kd_threshold_load", "a FreeMatch file into a SoftMatch handle", ST(KD_ERR_VERSION), thr51},
    {"kd_threshold_load", "a truncated SoftMatch file", ST(KD_ERR_CORRUPT), thr52},
    {"kd_threshold_update_labeled_probs", "SoftMatch (no labelled rows)", ST(KD_ERR_UNSUPPORTED),
     thr53},
    {"kd_threshold_update_labeled_probs", "probs is NULL with n > 0", ST(KD_ERR_NULL_POINTER),
     thr54},
    {"kd_threshold_update_labeled_probs", "an infinite probability", ST(KD_ERR_NOT_FINITE), thr55},
    {"kd_threshold_update_labeled_probs", "ld < c", ST(KD_ERR_INVALID_ARGUMENT), thr56},
    {"kd_threshold_update", "AdaMatch (needs probability rows)", ST(KD_ERR_UNSUPPORTED), thr57},
    {"kd_threshold_weights", "AdaMatch with DIST_ALIGN = 1 (needs rows)", ST(KD_ERR_UNSUPPORTED),
     thr58},
    {"kd_threshold_load", "a truncated AdaMatch file", ST(KD_ERR_CORRUPT), thr59},
    {"kd_threshold_load", "an AdaMatch file into a Dash handle", ST(KD_ERR_VERSION), thr63},
    {"kd_threshold_load", "a truncated Dash file", ST(KD_ERR_CORRUPT), thr64},
    {"kd_threshold_load", "a truncated DebiasPL file", ST(KD_ERR_CORRUPT), thr69},
    {"kd_threshold_weights", "Dash (the soft label's loss needs rows)", ST(KD_ERR_UNSUPPORTED),
     thr60},
    {"kd_threshold_weights", "DebiasPL (needs probability rows)", ST(KD_ERR_UNSUPPORTED), thr66},
    {"kd_threshold_update", "DebiasPL (needs probability rows)", ST(KD_ERR_UNSUPPORTED), thr65},
    {"kd_threshold_set_float", "Dash's GAMMA < 1", ST(KD_ERR_INVALID_ARGUMENT), thr61},
    {"kd_threshold_set_float", "DebiasPL's DEBIAS_TAU > 10", ST(KD_ERR_INVALID_ARGUMENT), thr67},
    {"kd_threshold_set_int", "Dash's PERIOD < 1", ST(KD_ERR_INVALID_ARGUMENT), thr62},
    {"kd_threshold_get_floats", "a state DebiasPL lacks (RHO)", ST(KD_ERR_UNSUPPORTED), thr68},
    {"kd_threshold_stats_size", "size is NULL", ST(KD_ERR_NULL_POINTER), thr70},
    {"kd_threshold_stats_size", "FlexMatch (per-sample state: gather the rows)",
     ST(KD_ERR_UNSUPPORTED), thr71},
    {"kd_threshold_local_stats", "SoftMatch with DIST_ALIGN (gather the rows)",
     ST(KD_ERR_UNSUPPORTED), thr72},
    {"kd_threshold_local_stats", "stats is NULL", ST(KD_ERR_NULL_POINTER), thr73},
    {"kd_threshold_local_stats", "a NaN probability", ST(KD_ERR_NOT_FINITE), thr74},
    {"kd_threshold_local_stats", "ld < c", ST(KD_ERR_INVALID_ARGUMENT), thr75},
    {"kd_threshold_local_stats", "stats overlapping probs", ST(KD_ERR_ALIASING), thr76},
    {"kd_threshold_local_labeled_stats", "FreeMatch (no labelled rows)", ST(KD_ERR_UNSUPPORTED),
     thr77},
    {"kd_threshold_local_labeled_stats", "an infinite probability (AdaMatch)",
     ST(KD_ERR_NOT_FINITE), thr83},
    {"kd_threshold_update_stats", "stats is NULL", ST(KD_ERR_NULL_POINTER), thr78},
    {"kd_threshold_update_stats", "a NaN in the buffer", ST(KD_ERR_NOT_FINITE), thr79},
    {"kd_threshold_update_stats", "a negative count", ST(KD_ERR_INVALID_ARGUMENT), thr80},
    {"kd_threshold_update_stats", "a column sum above the count (DebiasPL)",
     ST(KD_ERR_INVALID_ARGUMENT), thr81},
    {"kd_threshold_update_stats", "a histogram not summing to the count (FreeMatch)",
     ST(KD_ERR_INVALID_ARGUMENT), thr82},
    {"kd_select_pseudo_labels", "scores is NULL", ST(KD_ERR_NULL_POINTER), row189},
    {"kd_select_pseudo_labels", "n < 0", ST(KD_ERR_SHAPE), row190},
    {"kd_select_pseudo_labels", "c < 1 or c > INT32_MAX", ST(KD_ERR_SHAPE), row191},
    {"kd_select_pseudo_labels", "ld < c", ST(KD_ERR_SHAPE), row192},
    {"kd_select_pseudo_labels", "the extent (n - 1) * ld + c overflows", ST(KD_ERR_SHAPE), row193},
    {"kd_select_pseudo_labels", "unknown flag bits", ST(KD_ERR_INVALID_ARGUMENT), row194},
    {"kd_select_pseudo_labels", "threshold outside [0, 1] or NaN", ST(KD_ERR_INVALID_ARGUMENT),
     row195},
    {"kd_select_pseudo_labels", "a class threshold outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT),
     row196},
    {"kd_select_pseudo_labels", "top_k_per_class < 0", ST(KD_ERR_INVALID_ARGUMENT), row197},
    {"kd_select_pseudo_labels", "a probability outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT),
     row198},
    {"kd_select_pseudo_labels", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE), row199},
    {"kd_select_pseudo_labels", "logits: a NaN or +Inf logit, or a row without a finite one",
     ST(KD_ERR_NOT_FINITE), row200},
    {"kd_select_pseudo_labels",
     "an output overlapping an input or another output (confidence over scores)",
     ST(KD_ERR_ALIASING), row_select_alias},
    {"kd_tsa_threshold", "threshold is NULL", ST(KD_ERR_NULL_POINTER), tsa0},
    {"kd_tsa_threshold", "an unknown schedule", ST(KD_ERR_INVALID_ARGUMENT), tsa1},
    {"kd_tsa_threshold", "step > total_steps", ST(KD_ERR_INVALID_ARGUMENT), tsa2},
    {"kd_tsa_mask", "mask is NULL", ST(KD_ERR_NULL_POINTER), tsa3},
    {"kd_tsa_mask", "ld < c", ST(KD_ERR_SHAPE), tsa4},
    {"kd_tsa_mask", "threshold outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT), tsa5},
    {"kd_tsa_mask", "a label outside [0, C)", ST(KD_ERR_INVALID_ARGUMENT), tsa6},
    {"kd_tsa_mask", "a NaN logit", ST(KD_ERR_NOT_FINITE), tsa7},
    {"kd_tsa_mask", "mask inside logits", ST(KD_ERR_ALIASING), tsa8},
    {"kd_label_quality", "probs or labels is NULL", ST(KD_ERR_NULL_POINTER), row201},
    {"kd_label_quality", "n < 0, c < 1, ld < c or an overflowing extent", ST(KD_ERR_SHAPE), row202},
    {"kd_label_quality", "score_kind not a KD_LABEL_SCORE_* value", ST(KD_ERR_INVALID_ARGUMENT),
     row203},
    {"kd_label_quality", "a label outside [0, c) and not ignore_index", ST(KD_ERR_INVALID_ARGUMENT),
     row204},
    {"kd_label_quality", "ignore_index in [0, c)", ST(KD_ERR_INVALID_ARGUMENT), row205},
    {"kd_label_quality", "a probability outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT), row206},
    {"kd_label_quality", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE), row207},
    {"kd_label_quality", "an output overlapping an input or another output (scores over labels)",
     ST(KD_ERR_ALIASING), row_quality_alias},
    {"kd_find_label_issues", "probs or labels is NULL", ST(KD_ERR_NULL_POINTER), row208},
    {"kd_find_label_issues", "n < 0, c < 1, ld < c or an overflowing extent", ST(KD_ERR_SHAPE),
     row209},
    {"kd_find_label_issues", "a label outside [0, c) and not ignore_index",
     ST(KD_ERR_INVALID_ARGUMENT), row210},
    {"kd_find_label_issues", "ignore_index in [0, c)", ST(KD_ERR_INVALID_ARGUMENT), row211},
    {"kd_find_label_issues", "a probability outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT), row212},
    {"kd_find_label_issues", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE), row213},
    {"kd_find_label_issues", "an output overlapping another output (suspect over confident_class)",
     ST(KD_ERR_ALIASING), row_issues_alias},
    {"kd_soft_labels", "labels or out is NULL, or probs NULL where required",
     ST(KD_ERR_NULL_POINTER), row214},
    {"kd_soft_labels", "n < 0, c < 1, an ld < c or an overflowing extent", ST(KD_ERR_SHAPE),
     row215},
    {"kd_soft_labels", "mode not a KD_SOFT_LABEL_* value", ST(KD_ERR_INVALID_ARGUMENT), row216},
    {"kd_soft_labels", "label_weight outside [0, 1] or NaN", ST(KD_ERR_INVALID_ARGUMENT), row217},
    {"kd_soft_labels", "predictions given with PROBABILITIES", ST(KD_ERR_INVALID_ARGUMENT), row218},
    {"kd_soft_labels", "a label or prediction outside [0, c)", ST(KD_ERR_INVALID_ARGUMENT), row219},
    {"kd_soft_labels", "a probability outside [0, 1]", ST(KD_ERR_INVALID_ARGUMENT), row220},
    {"kd_soft_labels", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE), row221},
    {"kd_soft_labels", "out overlapping probs without being it", ST(KD_ERR_ALIASING), row222},
    {"kd_ensemble_average", "inputs, inputs[k] or out is NULL", ST(KD_ERR_NULL_POINTER), row223},
    {"kd_ensemble_average", "n < 0, c < 1, an ld < c or an overflowing extent", ST(KD_ERR_SHAPE),
     row224},
    {"kd_ensemble_average", "k < 1", ST(KD_ERR_INVALID_ARGUMENT), row225},
    {"kd_ensemble_average", "a negative or non-finite weight, or weights summing to 0",
     ST(KD_ERR_INVALID_ARGUMENT), row226},
    {"kd_ensemble_average", "a NaN or infinite input element", ST(KD_ERR_NOT_FINITE), row227},
    {"kd_ensemble_average", "out overlapping an input other than in place over inputs[0]",
     ST(KD_ERR_ALIASING), row228},
    {"kd_ensemble_average", "out overlapping the lds (or inputs, weights) array",
     ST(KD_ERR_ALIASING), row_ensemble_alias_lds},
    {"kd_cleanlab_confident_thresholds", "probs, labels or thresholds is NULL",
     ST(KD_ERR_NULL_POINTER), cl_thr_null},
    {"kd_cleanlab_confident_thresholds", "n < 0, c < 1, ld < c or an overflowing extent",
     ST(KD_ERR_SHAPE), cl_thr_shape},
    {"kd_cleanlab_confident_thresholds", "a label outside [0, c) and not ignore_index",
     ST(KD_ERR_INVALID_ARGUMENT), cl_thr_label},
    {"kd_cleanlab_confident_thresholds", "ignore_index in [0, c)", ST(KD_ERR_INVALID_ARGUMENT),
     cl_thr_ignore},
    {"kd_cleanlab_confident_thresholds", "a probability outside [0, 1]",
     ST(KD_ERR_INVALID_ARGUMENT), cl_thr_range},
    {"kd_cleanlab_confident_thresholds", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE),
     cl_thr_nan},
    {"kd_cleanlab_confident_thresholds", "thresholds overlapping probs or labels",
     ST(KD_ERR_ALIASING), cl_thr_alias},
    {"kd_cleanlab_confident_joint", "probs, labels or confident_joint is NULL",
     ST(KD_ERR_NULL_POINTER), cl_cj_null},
    {"kd_cleanlab_confident_joint", "flags other than 0 or KD_CLEANLAB_CALIBRATE",
     ST(KD_ERR_INVALID_ARGUMENT), cl_cj_flags},
    {"kd_cleanlab_confident_joint", "an output overlapping an input or another output",
     ST(KD_ERR_ALIASING), cl_cj_alias},
    {"kd_cleanlab_estimate_joint", "probs, labels or joint is NULL", ST(KD_ERR_NULL_POINTER),
     cl_joint_null},
    {"kd_cleanlab_estimate_joint", "a negative confident_joint entry", ST(KD_ERR_INVALID_ARGUMENT),
     cl_joint_negative},
    {"kd_cleanlab_estimate_joint", "joint overlapping confident_joint (or probs, labels)",
     ST(KD_ERR_ALIASING), cl_joint_alias},
    {"kd_cleanlab_estimate_py_and_noise_matrices", "n < 0, c < 1, ld < c or an overflowing extent",
     ST(KD_ERR_SHAPE), cl_py_shape},
    {"kd_cleanlab_estimate_py_and_noise_matrices",
     "flags not a combination of CALIBRATE and CONVERGE", ST(KD_ERR_INVALID_ARGUMENT), cl_py_flags},
    {"kd_cleanlab_estimate_py_and_noise_matrices",
     "an output overlapping an input or another output", ST(KD_ERR_ALIASING), cl_py_alias},
    {"kd_cleanlab_num_label_issues", "probs, labels or num_issues is NULL", ST(KD_ERR_NULL_POINTER),
     cl_num_null},
    {"kd_cleanlab_num_label_issues", "OFF_DIAGONAL_CUSTOM without confident_joint",
     ST(KD_ERR_NULL_POINTER), cl_num_custom_null},
    {"kd_cleanlab_num_label_issues", "estimation_method not a KD_CLEANLAB_OFF_DIAGONAL* value",
     ST(KD_ERR_INVALID_ARGUMENT), cl_num_method},
    {"kd_cleanlab_num_label_issues", "a confident_joint given to another method",
     ST(KD_ERR_INVALID_ARGUMENT), cl_num_joint_unused},
    {"kd_cleanlab_num_label_issues", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE),
     cl_num_inf},
    {"kd_cleanlab_find_label_issues", "probs or labels is NULL", ST(KD_ERR_NULL_POINTER),
     cl_find_null},
    {"kd_cleanlab_find_label_issues", "filter_by not a KD_CLEANLAB_* filter",
     ST(KD_ERR_INVALID_ARGUMENT), cl_find_filter},
    {"kd_cleanlab_find_label_issues", "frac_noise outside [0, 1] or NaN",
     ST(KD_ERR_INVALID_ARGUMENT), cl_find_frac},
    {"kd_cleanlab_find_label_issues", "min_examples_per_class < 0", ST(KD_ERR_INVALID_ARGUMENT),
     cl_find_min},
    {"kd_cleanlab_find_label_issues", "a negative num_to_remove_per_class entry",
     ST(KD_ERR_INVALID_ARGUMENT), cl_find_ntr},
    {"kd_cleanlab_find_label_issues",
     "num_to_remove_per_class with a filter other than the prune filters",
     ST(KD_ERR_INVALID_ARGUMENT), cl_find_ntr_filter},
    {"kd_cleanlab_find_label_issues", "rank_by not RANK_NONE or a cleanlab score",
     ST(KD_ERR_INVALID_ARGUMENT), cl_find_rank},
    {"kd_cleanlab_find_label_issues", "adjust_pred_probs with the entropy score or without rank_by",
     ST(KD_ERR_INVALID_ARGUMENT), cl_find_adjust},
    {"kd_cleanlab_find_label_issues", "an output overlapping an input or another output",
     ST(KD_ERR_ALIASING), cl_find_alias},
    {"kd_cleanlab_get_label_quality_scores", "probs, labels or scores is NULL",
     ST(KD_ERR_NULL_POINTER), cl_scores_null},
    {"kd_cleanlab_get_label_quality_scores", "method not a cleanlab score (MARGIN)",
     ST(KD_ERR_INVALID_ARGUMENT), cl_scores_method},
    {"kd_cleanlab_get_label_quality_scores", "adjust_pred_probs not 0 or 1",
     ST(KD_ERR_INVALID_ARGUMENT), cl_scores_adjust},
    {"kd_cleanlab_get_label_quality_scores", "the entropy score with c = 1",
     ST(KD_ERR_INVALID_ARGUMENT), cl_scores_entropy_c1},
    {"kd_cleanlab_get_label_quality_scores", "scores overlapping probs or labels",
     ST(KD_ERR_ALIASING), cl_scores_alias},
    {"kd_soft_labels_selective", "labels, probs, out, or suspect with SUSPECTS_ONLY, is NULL",
     ST(KD_ERR_NULL_POINTER), sel_null},
    {"kd_soft_labels_selective", "n < 0, c < 1, an ld < c or an overflowing extent",
     ST(KD_ERR_SHAPE), sel_shape},
    {"kd_soft_labels_selective",
     "flags with bits other than SUSPECTS_ONLY and CONFIDENCE_WEIGHT (or a bad mode)",
     ST(KD_ERR_INVALID_ARGUMENT), sel_flags},
    {"kd_soft_labels_selective", "suspect given without SUSPECTS_ONLY", ST(KD_ERR_INVALID_ARGUMENT),
     sel_suspect_unused},
    {"kd_soft_labels_selective", "a suspect byte other than 0 or 1", ST(KD_ERR_INVALID_ARGUMENT),
     sel_suspect_byte},
    {"kd_soft_labels_selective", "label_weight outside [0, 1] or NaN", ST(KD_ERR_INVALID_ARGUMENT),
     sel_weight},
    {"kd_soft_labels_selective", "a NaN or infinite probability", ST(KD_ERR_NOT_FINITE), sel_nan},
    {"kd_soft_labels_selective", "out overlapping suspect (or probs other than in place, labels)",
     ST(KD_ERR_ALIASING), sel_alias},
};

/* ---- the compute entry points: one table, each row run on every entry point
 * it names ---------------------------------------------------------------- */

enum { FWD = 1, FWD_BWD = 2, BWD = 4, ALL = FWD | FWD_BWD | BWD };
static const char *const ENTRY_NAMES[3] = {"kd_loss_forward", "kd_loss_forward_backward",
                                           "kd_loss_backward"};
static const unsigned ENTRY_BITS[3] = {FWD, FWD_BWD, BWD};

typedef struct {
    const char *input;
    unsigned entries; /* the entry points tested: FWD, FWD_BWD, BWD or a union */
    unsigned listed;  /* those of them listed in docs/errors.md (loss.h documents all) */
    kd_status status;
    const char *status_name;
    kd_loss *(*setup)(void); /* NULL: the handle is NULL */
    int64_t n;
    int null_buffer; /* loss (forward, forward_backward) or upstream (backward) is NULL */
} compute_row;

static kd_loss *no_student(void)
{
    kd_loss *h = kl();
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, NULL, 0);
    return h;
}

static kd_loss *no_teacher(void)
{
    kd_loss *h = kl();
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, NULL, 0);
    return h;
}

static kd_loss *no_grad(void)
{
    kd_loss *h = kl();
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0);
    return h;
}

static kd_loss *label_too_big(void)
{
    kd_loss *h = kl();
    B.labels[2] = C;
    kd_loss_bind_labels(h, B.labels);
    return h;
}

static kd_loss *label_negative(void)
{
    kd_loss *h = kl();
    B.labels[0] = -7;
    kd_loss_bind_labels(h, B.labels);
    return h;
}

static kd_loss *label64_beyond_int32(void)
{
    kd_loss *h = kl();
    B.labels64[1] = ((int64_t)1 << 32) + 1; /* would truncate to the valid class 1 */
    kd_loss_bind_labels64(h, B.labels64);
    return h;
}

static kd_loss *negative_weight(void)
{
    kd_loss *h = kl();
    B.weights[1] = -1.0f;
    kd_loss_bind_weights(h, B.weights);
    return h;
}

static kd_loss *nan_teacher_checked(void)
{
    kd_loss *h = kl();
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    B.teacher[5] = NAN;
    return h;
}

static kd_loss *inf_upstream_checked(void)
{
    kd_loss *h = kl();
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    B.up[0] = INFINITY;
    return h;
}

static kd_loss *per_sample_over_student(void)
{
    kd_loss *h = kl();
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, B.student + 1, 0);
    return h;
}

static kd_loss *bad_class_threshold(void)
{
    kd_loss *h = selftrain(KD_LOSS_PSEUDO_LABEL);
    B.cthr[1] = 1.5f;
    kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, B.cthr);
    return h;
}

static kd_loss *consistency_two_teachers(void)
{
    kd_loss *h = selftrain(KD_LOSS_CONSISTENCY);
    const float *t[2] = {B.teacher, B.probs};
    int64_t l[2] = {LD, LD};
    kd_loss_bind_teachers(h, 2, t, l, NULL);
    return h;
}

static kd_loss *class_balance_mean_above_1(void)
{
    kd_loss *h = selftrain(KD_LOSS_CLASS_BALANCE);
    kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, KD_INPUT_PROBABILITIES);
    for (int i = 0; i < N; i++)
        B.probs[i * LD] = 2.0f;
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, B.probs, LD);
    return h;
}

static kd_loss *grad_over_student(void)
{
    kd_loss *h = kl();
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.student + 1, LD);
    return h;
}

static kd_loss *mask_over_weights(void)
{
    kd_loss *h = selftrain(KD_LOSS_PSEUDO_LABEL);
    kd_loss_bind_weights(h, B.weights);
    kd_loss_bind_output(h, KD_ARG_MASK, B.weights, 0);
    return h;
}

static kd_loss *grad_over_labels(void)
{
    kd_loss *h = kl();
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, (float *)B.labels, C);
    return h;
}

static kd_loss *grad_over_weights(void)
{
    kd_loss *h = kl();
    kd_loss_bind_weights(h, B.weights);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.weights, C);
    return h;
}

static kd_loss *grad_over_upstream(void)
{
    kd_loss *h = kl();
    kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.up, C);
    return h;
}

static kd_loss *grad_at_loss(void)
{
    kd_loss *h = kl();
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.loss, C);
    return h;
}

static kd_loss *huge_workspace(void)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, 1), KD_OK);
    live_loss[n_loss++] = h;
    /* the last float of B: the 2^60-row range lies above the loss */
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, &B.f32, 1);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, &B.f32, 1);
    return h;
}

static kd_loss *fair_no_vector(void)
{
    kd_loss *h = fair();
    kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, NULL);
    return h;
}

static kd_loss *fair_bad_vector(void)
{
    kd_loss *h = fair();
    static float pm[C] = {0.25f, NAN, 0.25f, 0.25f};
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, pm);
    return h;
}

static kd_loss *fair_zero_target(void)
{
    kd_loss *h = fair();
    static const float lh[C] = {0};
    kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, lh);
    return h;
}

static kd_loss *grad_over_class_vector(void)
{
    kd_loss *h = fair();
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.cthr, C);
    return h;
}

static kd_loss *grad_over_teacher(void)
{
    kd_loss *h = kl();
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, B.teacher, LD);
    return h;
}

/* In each entry point's order of docs/errors.md; rows of one entry point with
 * the same text are one line there.  loss.h gives backward the errors of
 * forward and forward_backward those of both: `entries` tests them where they
 * apply, `listed` is what docs/errors.md lists today. */
static const compute_row COMPUTE[] = {
    {"h is NULL", ALL, ALL, ST(KD_ERR_NULL_POINTER), NULL, N, 0},
    {"loss is NULL", FWD | FWD_BWD, FWD | FWD_BWD, ST(KD_ERR_NULL_POINTER), kl, N, 1},
    {"upstream is NULL", BWD, BWD, ST(KD_ERR_NULL_POINTER), kl, N, 1},
    {"student not bound", ALL, FWD | FWD_BWD, ST(KD_ERR_MISSING_INPUT), no_student, N, 0},
    {"the kind's target (teacher) not bound", ALL, FWD | FWD_BWD, ST(KD_ERR_MISSING_INPUT),
     no_teacher, N, 0},
    {"no gradient output bound", FWD_BWD | BWD, BWD, ST(KD_ERR_MISSING_INPUT), no_grad, N, 0},
    {"n < 0", ALL, ALL, ST(KD_ERR_INVALID_ARGUMENT), kl, -1, 0},
    {"n < 0", ALL, ALL, ST(KD_ERR_INVALID_ARGUMENT), kl, -5, 0},
    {"n * ld overflows", ALL, FWD | FWD_BWD, ST(KD_ERR_SHAPE), kl, INT64_MAX / 2, 0},
    {"a label outside [0, C) and not ignore_index", ALL, ALL, ST(KD_ERR_INVALID_ARGUMENT),
     label_too_big, N, 0},
    {"a label outside [0, C) and not ignore_index", ALL, ALL, ST(KD_ERR_INVALID_ARGUMENT),
     label_negative, N, 0},
    {"an int64 label (kd_loss_bind_labels64) outside [0, C), e.g. beyond the int32 range", ALL, ALL,
     ST(KD_ERR_INVALID_ARGUMENT), label64_beyond_int32, N, 0},
    {"a negative, NaN or infinite weight", ALL, FWD | FWD_BWD, ST(KD_ERR_INVALID_ARGUMENT),
     negative_weight, N, 0},
    {"NaN/Inf input with CHECK_FINITE = 1", ALL, FWD | FWD_BWD, ST(KD_ERR_NOT_FINITE),
     nan_teacher_checked, N, 0},
    {"NaN/Inf upstream with CHECK_FINITE = 1", BWD, BWD, ST(KD_ERR_NOT_FINITE),
     inf_upstream_checked, N, 0},
    {"an output overlapping an input (per-sample vector over the student)", FWD | FWD_BWD,
     FWD | FWD_BWD, ST(KD_ERR_ALIASING), per_sample_over_student, N, 0},
    {"a class threshold outside [0, 1] or NaN (PSEUDO_LABEL)", ALL, FWD | FWD_BWD,
     ST(KD_ERR_INVALID_ARGUMENT), bad_class_threshold, N, 0},
    {"CONSISTENCY with more than one teacher", ALL, FWD | FWD_BWD, ST(KD_ERR_INVALID_ARGUMENT),
     consistency_two_teachers, N, 0},
    {"CLASS_BALANCE probabilities whose column mean is outside [0, 1]", ALL, FWD | FWD_BWD,
     ST(KD_ERR_INVALID_ARGUMENT), class_balance_mean_above_1, N, 0},
    {"FAIRNESS: a class vector (CLASS_PROBS, LABEL_HISTOGRAM) not bound", ALL, FWD | FWD_BWD,
     ST(KD_ERR_MISSING_INPUT), fair_no_vector, N, 0},
    {"FAIRNESS: a class-vector value negative, NaN or infinite", ALL, FWD | FWD_BWD,
     ST(KD_ERR_INVALID_ARGUMENT), fair_bad_vector, N, 0},
    {"FAIRNESS: CLASS_PROBS / LABEL_HISTOGRAM summing to 0 over the classes", ALL, FWD | FWD_BWD,
     ST(KD_ERR_INVALID_ARGUMENT), fair_zero_target, N, 0},
    {"the gradient overlapping the student without being it", FWD_BWD | BWD, FWD_BWD,
     ST(KD_ERR_ALIASING), grad_over_student, N - 1, 0},
    {"the gradient overlapping the teacher", FWD_BWD | BWD, BWD, ST(KD_ERR_ALIASING),
     grad_over_teacher, N, 0},
    {"the mask output over the weights (PSEUDO_LABEL)", FWD | FWD_BWD, FWD | FWD_BWD,
     ST(KD_ERR_ALIASING), mask_over_weights, N, 0},
    {"the gradient over the labels", FWD_BWD | BWD, FWD_BWD | BWD, ST(KD_ERR_ALIASING),
     grad_over_labels, 1, 0},
    {"the gradient over the weights", FWD_BWD | BWD, FWD_BWD | BWD, ST(KD_ERR_ALIASING),
     grad_over_weights, 1, 0},
    {"the gradient over a class vector (FAIRNESS)", FWD_BWD | BWD, FWD_BWD | BWD,
     ST(KD_ERR_ALIASING), grad_over_class_vector, 1, 0},
    {"the gradient over the upstream vector (NONE)", BWD, BWD, ST(KD_ERR_ALIASING),
     grad_over_upstream, 1, 0},
    {"the loss inside the gradient", FWD_BWD, FWD_BWD, ST(KD_ERR_ALIASING), grad_at_loss, 1, 0},
    {"a workspace that does not fit in size_t (n = 2^60 + 1, C = 1)", FWD, FWD,
     ST(KD_ERR_OUT_OF_MEMORY), huge_workspace, ((int64_t)1 << 60) + 1, 0},
};
#undef ST
#define N_COMPUTE (sizeof COMPUTE / sizeof COMPUTE[0])

/* The cases of the table: (row, entry point) for every entry point a row names. */
static struct {
    const compute_row *row;
    int entry;
} cases[3 * N_COMPUTE];
static int n_cases;

static void list_cases(void)
{
    n_cases = 0;
    for (size_t i = 0; i < N_COMPUTE; i++)
        for (int e = 0; e < 3; e++)
            if (COMPUTE[i].entries & ENTRY_BITS[e])
                cases[n_cases].row = &COMPUTE[i], cases[n_cases++].entry = e;
}

static kd_status run_case(const compute_row *r, int entry)
{
    kd_loss *h = r->setup ? r->setup() : NULL;
    float *buf = r->null_buffer ? NULL : entry == 2 ? B.up : B.loss;
    switch (entry) {
    case 0:
        CALL(kd_loss_forward(h, r->n, buf));
    case 1:
        CALL(kd_loss_forward_backward(h, r->n, buf));
    default:
        CALL(kd_loss_backward(h, r->n, buf));
    }
}

static void cleanup_row(void)
{
    for (int k = 0; k < n_loss; k++)
        kd_loss_destroy(live_loss[k]);
    for (int k = 0; k < n_ema; k++)
        kd_ema_destroy(live_ema[k]);
    for (int k = 0; k < n_fm; k++)
        kd_flexmatch_destroy(live_fm[k]);
    for (int k = 0; k < n_th; k++)
        kd_threshold_destroy(live_th[k]);
    n_loss = n_ema = n_fm = n_th = 0;
    if (OUT_LOSS != (kd_loss *)0x1 || OUT_EMA != (kd_ema *)0x1 || OUT_FM != (kd_flexmatch *)0x1 ||
        OUT_TH != (kd_threshold *)0x1)
        ck_abort_msg("a failed create wrote its out pointer");
}

static const char *verdict(kd_status got)
{
    return got == CHANGED_BUFFERS  ? "a changed caller buffer"
           : got == CHANGED_HANDLE ? "a changed handle"
                                   : kd_status_string(got);
}

START_TEST(every_row_returns_its_status_and_changes_nothing)
{
    const row *r = &ROWS[_i];
    fill();
    kd_status got = r->run();
    cleanup_row();
    ck_assert_msg(got == r->status, "%s, %s: expected %s, got %s", r->function, r->input,
                  r->status_name, verdict(got));
}
END_TEST

START_TEST(every_compute_case_returns_its_status_and_changes_nothing)
{
    const compute_row *r = cases[_i].row;
    int e = cases[_i].entry;
    fill();
    kd_status got = run_case(r, e);
    cleanup_row();
    ck_assert_msg(got == r->status, "%s, %s: expected %s, got %s", ENTRY_NAMES[e], r->input,
                  r->status_name, verdict(got));
}
END_TEST

/* The compute rows' sections of docs/errors.md, one per entry point. */
static void markdown_compute(FILE *f)
{
    for (int e = 0; e < 3; e++) {
        fprintf(f, "\n## `%s`\n\n| invalid input | status |\n|---|---|\n", ENTRY_NAMES[e]);
        const char *last = "";
        for (size_t i = 0; i < N_COMPUTE; i++) {
            const compute_row *r = &COMPUTE[i];
            if (!(r->listed & ENTRY_BITS[e]) || strcmp(r->input, last) == 0)
                continue;
            fprintf(f, "| %s | `%s` |\n", r->input, r->status_name);
            last = r->input;
        }
    }
}

/* the function after whose rows the compute entry points stand in the document */
#define COMPUTE_AFTER "kd_loss_bind_output"

static void markdown(FILE *f)
{
    fputs("<!-- Generated by `tests/test_error_matrix --markdown`; edit the table in\n"
          "     tests/test_error_matrix.c and regenerate. -->\n",
          f);
    fputs("# Bad-input matrix\n\n"
          "Every public function that returns a `kd_status`, each invalid input, and the\n"
          "status it returns.  On every one of these errors nothing is written: no output,\n"
          "no caller buffer, no `*out` handle pointer, and the handle's parameters and\n"
          "state are unchanged (only its error message, `kd_*_last_error()`, is set).\n"
          "`tests/test_error_matrix.c` checks each row with canaries: it snapshots every\n"
          "caller buffer and the observable state of every handle before the call and\n"
          "compares after it.  When one input breaks several rules the status is that of\n"
          "the first check; the rows below break one rule each.\n\n"
          "Functions without a status: `kd_loss_destroy`, `kd_ema_destroy`,\n"
          "`kd_threshold_destroy` and `kd_flexmatch_destroy` accept NULL (no-op);\n"
          "`kd_loss_last_error(NULL)`, `kd_ema_last_error(NULL)`,\n"
          "`kd_threshold_last_error(NULL)` and `kd_flexmatch_last_error(NULL)` return a\n"
          "message, never NULL; `kd_threshold_algorithm_name` returns NULL for an unknown\n"
          "algorithm; `kd_status_string` returns \"unknown status\" for unknown values;\n"
          "`kd_version_number`, `kd_version_string` and `kd_linear_default_chunk_rows`\n"
          "take no input that can be invalid.\n\n"
          "A loss handle used by two threads at once: every function that changes it\n"
          "(`kd_loss_bind_*`, `kd_loss_set_*`, `kd_loss_forward`, `kd_loss_backward`,\n"
          "`kd_loss_forward_backward`, `kd_loss_local_stats`, `kd_loss_finish`,\n"
          "`kd_linear_kl_distill`, `kd_loss_get_*`, `kd_loss_stats_size`) returns\n"
          "`KD_ERR_STATE` while another thread's call\n"
          "on the same handle runs, and writes nothing, not even the message\n"
          "(`tests/test_threads.c` holds a call inside the library to check it).\n",
          f);
    const char *last = "";
    for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        const row *r = &ROWS[i];
        if (strcmp(r->function, last) != 0) {
            if (strcmp(last, COMPUTE_AFTER) == 0)
                markdown_compute(f);
            fprintf(f, "\n## `%s`\n\n| invalid input | status |\n|---|---|\n", r->function);
            last = r->function;
        }
        fprintf(f, "| %s | `%s` |\n", r->input, r->status_name);
    }
}

START_TEST(errors_md_matches_the_table)
{
    char *want = NULL, have[1 << 16];
    size_t want_len = 0;
    FILE *m = open_memstream(&want, &want_len);
    markdown(m);
    fclose(m);
    FILE *f = fopen(KD_SOURCE_DIR "/docs/errors.md", "rb");
    ck_assert_msg(f != NULL, "cannot open docs/errors.md");
    size_t n = fread(have, 1, sizeof have, f);
    fclose(f);
    ck_assert_msg(n == want_len && memcmp(have, want, n) == 0,
                  "docs/errors.md differs from the table: regenerate it with "
                  "tests/test_error_matrix --markdown > docs/errors.md");
    free(want);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--markdown") == 0) {
        markdown(stdout);
        return 0;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kd-errmatrix-XXXXXX");
    if (!mkdtemp(tmpdir))
        return EXIT_FAILURE;
    Suite *s = suite_create("error_matrix");
    TCase *tc = tcase_create("rows");
    tcase_add_loop_test(tc, every_row_returns_its_status_and_changes_nothing, 0,
                        (int)(sizeof ROWS / sizeof ROWS[0]));
    list_cases();
    tcase_add_loop_test(tc, every_compute_case_returns_its_status_and_changes_nothing, 0, n_cases);
    tcase_add_test(tc, errors_md_matches_the_table);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
