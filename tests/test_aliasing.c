/* loss.h, linear.h and labels.h: any overlap between an output and another
 * buffer of the call (input or output), other than a gradient written in
 * place over the input it differentiates, is refused with KD_ERR_ALIASING
 * and nothing is written.
 *
 * Table-driven: every scenario (entry point x kind x reduction x variant)
 * lists the buffers the call reads and writes; for every output X and every
 * other buffer Y of the scenario, X is bound two floats into Y (at Y itself
 * for one-element buffers) and the call must return KD_ERR_ALIASING with
 * every byte of the arena unchanged.  Each scenario also runs once with
 * disjoint buffers (KD_OK) and, where it has one, once in place (KD_OK). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdlib/labels.h"
#include "kdlib/linear.h"
#include "kdtest.h"

#define N 4
#define C 5
#define LD 7
#define D 3
#define LDH 4
#define DT 2
#define REGION 512 /* floats per slot: a buffer (at most 256 floats) and a gap */

enum {
    S_STUDENT,
    S_TEACHER,
    S_TEACHER2,
    S_TARGET,
    S_LABELS,
    S_WEIGHTS,
    S_THRESH,
    S_UPSTREAM,
    S_GRAD,
    S_GRAD_T,
    S_LOSS,
    S_PER,
    S_MASK,
    S_PL,
    S_STATS_IN,
    S_STATS_OUT,
    S_WC0,
    S_WC1,
    S_WC2,
    S_WC3,
    S_WCG0,
    S_WCG1,
    S_HID,
    S_W,
    S_B,
    S_TH,
    S_TW,
    S_TB,
    S_GH,
    S_GW,
    S_GB,
    S_PROBS,
    S_CONF,
    S_RANK,
    S_NUM,
    S_SUSPECT,
    S_PRED,
    S_OUT,
    S_PTRS,
    S_LDS,
    S_IN0,
    S_IN1,
    S_CPROBS,
    S_LHIST,
    S_COUNT
};

static const char *const SLOT_NAMES[S_COUNT] = {"student",
                                                "teacher",
                                                "teacher 2",
                                                "target",
                                                "labels",
                                                "weights",
                                                "class thresholds",
                                                "upstream",
                                                "grad",
                                                "grad_teacher",
                                                "loss",
                                                "per-sample",
                                                "mask",
                                                "pseudo-labels",
                                                "global_stats",
                                                "stats",
                                                "labeled_main",
                                                "labeled_adv",
                                                "unlabeled_main",
                                                "unlabeled_adv",
                                                "grad_labeled_adv",
                                                "grad_unlabeled_adv",
                                                "hidden",
                                                "weight",
                                                "bias",
                                                "teacher_hidden",
                                                "teacher_weight",
                                                "teacher_bias",
                                                "grad_hidden",
                                                "grad_weight",
                                                "grad_bias",
                                                "probs",
                                                "confidence/scores",
                                                "ranking",
                                                "num_*",
                                                "suspect",
                                                "predictions",
                                                "out",
                                                "inputs",
                                                "lds",
                                                "inputs[0]",
                                                "inputs[1]",
                                                "class probabilities",
                                                "label histogram"};

/* one-element buffers: the output is placed at the buffer itself */
static int is_small(int s)
{
    return s == S_LOSS || s == S_UPSTREAM || s == S_NUM || s == S_SUSPECT;
}

/* entry points */
enum {
    E_FWD,
    E_BWD,
    E_FB,
    E_LOCAL,
    E_FINISH,
    E_LINEAR,
    E_SELECT,
    E_QUALITY,
    E_ISSUES,
    E_SOFT,
    E_ENSEMBLE
};
static const char *const ENTRY_NAMES[] = {"forward",
                                          "backward",
                                          "forward_backward",
                                          "local_stats",
                                          "finish",
                                          "linear_kl_distill",
                                          "select_pseudo_labels",
                                          "label_quality",
                                          "find_label_issues",
                                          "soft_labels",
                                          "ensemble_average"};

typedef struct {
    int entry;
    kd_loss_kind kind; /* loss entries */
    int red;
    int variant;       /* KL: 2 teachers; linear: teacher linear layer; soft: predictions */
    int in[16], nin;   /* the buffers read */
    int out[16], nout; /* the buffers written */
    int in_place[2][2], nin_place; /* (output, input) pairs allowed exactly */
} scenario;

static double arena_d[S_COUNT * REGION / 2 + 64];
static float *const arena = (float *)arena_d;
static float *addr[S_COUNT];

static void fill_arena(void)
{
    kdt_rng r;
    kdt_seed(&r, 7);
    for (size_t e = 0; e < (sizeof arena_d) / (sizeof(float)); e++)
        arena[e] = 777.0f;
    for (int s = 0; s < S_COUNT; s++) {
        float *p = arena + (size_t)s * REGION;
        switch (s) {
        case S_LABELS:
        case S_PRED:
        case S_PL:
            for (int i = 0; i < 64; i++) {
                int32_t y = i % C;
                memcpy(p + i, &y, sizeof y);
            }
            break;
        case S_TARGET:
        case S_PROBS:
            for (int i = 0; i < 256; i++)
                p[i] = 1.0f / C;
            break;
        case S_WEIGHTS:
        case S_UPSTREAM:
        case S_MASK:
            for (int i = 0; i < 256; i++)
                p[i] = 1.0f;
            break;
        case S_THRESH:
        case S_CPROBS:
        case S_LHIST:
            for (int i = 0; i < 256; i++)
                p[i] = 0.5f;
            break;
        case S_LDS:
            for (int i = 0; i < 2; i++) {
                int64_t ld = LD;
                memcpy(p + 2 * i, &ld, sizeof ld);
            }
            break;
        case S_PTRS: {
            const float *q[2] = {addr[S_IN0], addr[S_IN1]};
            memcpy(p, q, sizeof q);
            break;
        }
        case S_STATS_IN:
            break; /* computed by kd_loss_local_stats in run() */
        default:
            kdt_fill_normal(&r, p, 256, 1.0);
        }
    }
}

static void default_addresses(void)
{
    for (int s = 0; s < S_COUNT; s++)
        addr[s] = arena + (size_t)s * REGION;
}

static kd_status run_loss(const scenario *sc, char *msg)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, sc->kind, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, sc->red), KD_OK);
    for (int k = 0; k < sc->nin; k++) {
        int s = sc->in[k];
        kd_status st = KD_OK;
        if (s == S_STUDENT)
            st = kd_loss_bind_matrix(h, KD_ARG_STUDENT, addr[s], LD);
        else if (s == S_TEACHER && !sc->variant)
            st = kd_loss_bind_matrix(h, KD_ARG_TEACHER, addr[s], LD);
        else if (s == S_TEACHER) {
            const float *t[2] = {addr[S_TEACHER], addr[S_TEACHER2]};
            const int64_t lds[2] = {LD, LD};
            st = kd_loss_bind_teachers(h, 2, t, lds, NULL);
        } else if (s == S_TARGET)
            st = kd_loss_bind_matrix(h, KD_ARG_TARGET, addr[s], LD);
        else if (s == S_LABELS)
            st = kd_loss_bind_labels(h, (const int32_t *)(void *)addr[s]);
        else if (s == S_WEIGHTS)
            st = kd_loss_bind_weights(h, addr[s]);
        else if (s == S_THRESH)
            st = kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, addr[s]);
        else if (s == S_CPROBS || s == S_LHIST)
            st = kd_loss_bind_vector(h, s == S_CPROBS ? KD_ARG_CLASS_PROBS : KD_ARG_LABEL_HISTOGRAM,
                                     addr[s]);
        else if (s >= S_WC0 && s <= S_WC3)
            st = kd_loss_bind_matrix(h, KD_ARG_LABELED_MAIN + (s - S_WC0), addr[s], LD);
        ck_assert_int_eq(st, KD_OK);
    }
    for (int k = 0; k < sc->nout; k++) {
        int s = sc->out[k];
        kd_status st = KD_OK;
        if (s == S_GRAD)
            st = kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, addr[s], LD);
        else if (s == S_GRAD_T)
            st = kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, addr[s], LD);
        else if (s == S_PER)
            st = kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, addr[s], 0);
        else if (s == S_MASK)
            st = kd_loss_bind_output(h, KD_ARG_MASK, addr[s], 0);
        else if (s == S_PL)
            st = kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, (int32_t *)(void *)addr[s]);
        else if (s == S_WCG0 || s == S_WCG1)
            st = kd_loss_bind_output(
                h, s == S_WCG0 ? KD_ARG_GRAD_LABELED_ADV : KD_ARG_GRAD_UNLABELED_ADV, addr[s], LD);
        ck_assert_int_eq(st, KD_OK);
    }
    double *stats_in = (double *)(void *)addr[S_STATS_IN];
    if (sc->entry == E_FINISH) {
        /* the summed statistics of one rank: its own local statistics,
         * computed into the (unmoved) statistics region before the snapshot */
        float *g = NULL;
        ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD), KD_OK);
        ck_assert_int_eq(kd_loss_local_stats(h, N, (double *)(void *)(arena + S_STATS_IN * REGION)),
                         KD_OK);
        for (int k = 0; k < sc->nout; k++)
            if (sc->out[k] == S_GRAD)
                ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, addr[S_GRAD], LD),
                                 KD_OK);
    }
    float *before = malloc(sizeof arena_d);
    memcpy(before, arena, sizeof arena_d);
    kd_status st;
    switch (sc->entry) {
    case E_FWD:
        st = kd_loss_forward(h, N, addr[S_LOSS]);
        break;
    case E_BWD:
        st = kd_loss_backward(h, N, addr[S_UPSTREAM]);
        break;
    case E_FB:
        st = kd_loss_forward_backward(h, N, addr[S_LOSS]);
        break;
    case E_LOCAL:
        st = kd_loss_local_stats(h, N, (double *)(void *)addr[S_STATS_OUT]);
        break;
    default:
        st = kd_loss_finish(h, N, stats_in, addr[S_LOSS]);
        break;
    }
    if (st != KD_OK)
        ck_assert_msg(memcmp(before, arena, sizeof arena_d) == 0, "%s wrote on error",
                      ENTRY_NAMES[sc->entry]);
    snprintf(msg, 256, "%s", kd_loss_last_error(h));
    free(before);
    kd_loss_destroy(h);
    return st;
}

static kd_status run_linear(const scenario *sc, char *msg)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, sc->red), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.5), KD_OK);
    kd_loss_bind_labels(h, (const int32_t *)(void *)addr[S_LABELS]);
    kd_loss_bind_weights(h, addr[S_WEIGHTS]);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, addr[S_PER], 0);
    if (!sc->variant)
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, addr[S_TEACHER], LD);
    float *before = malloc(sizeof arena_d);
    memcpy(before, arena, sizeof arena_d);
    const int tl = sc->variant;
    kd_status st = kd_linear_kl_distill(h, N, D, addr[S_HID], LDH, addr[S_W], LDH, addr[S_B],
                                        tl ? DT : 0, tl ? addr[S_TH] : NULL, DT,
                                        tl ? addr[S_TW] : NULL, DT, tl ? addr[S_TB] : NULL, 0,
                                        addr[S_LOSS], addr[S_GH], LDH, addr[S_GW], LDH, addr[S_GB]);
    if (st != KD_OK)
        ck_assert_msg(memcmp(before, arena, sizeof arena_d) == 0, "linear wrote on error");
    snprintf(msg, 256, "%s", kd_loss_last_error(h));
    free(before);
    kd_loss_destroy(h);
    return st;
}

static kd_status run_labels(const scenario *sc, char *msg)
{
    float *before = malloc(sizeof arena_d);
    memcpy(before, arena, sizeof arena_d);
    const int32_t *labels = (const int32_t *)(void *)addr[S_LABELS];
    int64_t *num = (int64_t *)(void *)addr[S_NUM];
    kd_status st;
    msg[0] = '\0';
    switch (sc->entry) {
    case E_SELECT:
        st = kd_select_pseudo_labels(N, C, addr[S_PROBS], LD, 0, 0.1f, addr[S_THRESH], 1,
                                     addr[S_CONF], (int32_t *)(void *)addr[S_PL], addr[S_MASK], num,
                                     msg, 256);
        break;
    case E_QUALITY:
        st = kd_label_quality(N, C, addr[S_PROBS], LD, labels, -100, 0, addr[S_CONF],
                              (int64_t *)(void *)addr[S_RANK], num, msg, 256);
        break;
    case E_ISSUES:
        st = kd_find_label_issues(N, C, addr[S_PROBS], LD, labels, -100, addr[S_THRESH],
                                  (int32_t *)(void *)addr[S_PL], (uint8_t *)(void *)addr[S_SUSPECT],
                                  num, msg, 256);
        break;
    case E_SOFT:
        st = kd_soft_labels(N, C, labels, -100, 0.7f,
                            sc->variant ? KD_SOFT_LABEL_ONEHOT : KD_SOFT_LABEL_PROBABILITIES,
                            sc->variant ? NULL : addr[S_PROBS], LD,
                            sc->variant ? (const int32_t *)(void *)addr[S_PRED] : NULL, addr[S_OUT],
                            LD, msg, 256);
        break;
    default:
        st = kd_ensemble_average(N, C, 2, (const float *const *)(void *)addr[S_PTRS],
                                 (const int64_t *)(void *)addr[S_LDS], addr[S_WEIGHTS], addr[S_OUT],
                                 LD, msg, 256);
    }
    if (st != KD_OK)
        ck_assert_msg(memcmp(before, arena, sizeof arena_d) == 0, "%s wrote on error",
                      ENTRY_NAMES[sc->entry]);
    free(before);
    return st;
}

static kd_status run(const scenario *sc, char *msg)
{
    if (sc->entry == E_LINEAR)
        return run_linear(sc, msg);
    if (sc->entry >= E_SELECT)
        return run_labels(sc, msg);
    return run_loss(sc, msg);
}

/* ---- the scenarios ---- */

static scenario scenarios[128];
static int nscenarios;

static scenario *add(int entry, kd_loss_kind kind, int red, int variant)
{
    scenario *sc = &scenarios[nscenarios++];
    memset(sc, 0, sizeof *sc);
    sc->entry = entry;
    sc->kind = kind;
    sc->red = red;
    sc->variant = variant;
    return sc;
}
static void in(scenario *sc, int s) { sc->in[sc->nin++] = s; }
static void out(scenario *sc, int s) { sc->out[sc->nout++] = s; }
static void in_place(scenario *sc, int o, int i)
{
    sc->in_place[sc->nin_place][0] = o;
    sc->in_place[sc->nin_place++][1] = i;
}

static void row_kind(kd_loss_kind kind, int variant)
{
    const int reds[2] = {KD_REDUCTION_MEAN, KD_REDUCTION_NONE};
    for (int r = 0; r < 2; r++)
        for (int e = E_FWD; e <= E_FB; e++) {
            scenario *sc = add(e, kind, reds[r], variant);
            in(sc, S_STUDENT);
            if (kind != KD_LOSS_ENTROPY) /* the student alone */
                in(sc, kind == KD_LOSS_CROSS_ENTROPY ? S_TARGET : S_TEACHER);
            if (variant)
                in(sc, S_TEACHER2);
            if (kind <= KD_LOSS_LOGIT_MSE)
                in(sc, S_LABELS);
            in(sc, S_WEIGHTS);
            const int thresholded = kind == KD_LOSS_PSEUDO_LABEL || kind == KD_LOSS_STRONG_WEAK;
            if (thresholded)
                in(sc, S_THRESH);
            if (e == E_BWD)
                in(sc, S_UPSTREAM);
            if (e != E_FWD) {
                out(sc, S_GRAD);
                in_place(sc, S_GRAD, S_STUDENT);
                if (kind == KD_LOSS_CONSISTENCY) {
                    out(sc, S_GRAD_T);
                    in_place(sc, S_GRAD_T, S_TEACHER);
                }
            }
            if (e != E_BWD) {
                out(sc, S_LOSS);
                out(sc, S_PER);
                if (thresholded) {
                    out(sc, S_MASK);
                    out(sc, S_PL);
                }
            }
        }
}

static void batch_kind(kd_loss_kind kind)
{
    for (int e = E_FWD; e <= E_FINISH; e++) {
        scenario *sc = add(e, kind, KD_REDUCTION_MEAN, 0);
        in(sc, S_STUDENT);
        if (kind == KD_LOSS_FAIRNESS) {
            in(sc, S_WEIGHTS);
            if (e != E_LOCAL) { /* the class vectors are read by the finish */
                in(sc, S_CPROBS);
                in(sc, S_LHIST);
            }
        }
        if (e == E_BWD)
            in(sc, S_UPSTREAM);
        if (e == E_FINISH)
            in(sc, S_STATS_IN);
        if (e == E_BWD || e == E_FB || e == E_FINISH) {
            out(sc, S_GRAD);
            in_place(sc, S_GRAD, S_STUDENT);
        }
        if (e == E_FWD || e == E_FB || e == E_FINISH)
            out(sc, S_LOSS);
        if (e == E_LOCAL)
            out(sc, S_STATS_OUT);
    }
}

static void build_scenarios(void)
{
    nscenarios = 0;
    row_kind(KD_LOSS_CROSS_ENTROPY, 0);
    row_kind(KD_LOSS_KL_DISTILL, 0);
    row_kind(KD_LOSS_KL_DISTILL, 1);
    row_kind(KD_LOSS_LOGIT_MSE, 0);
    row_kind(KD_LOSS_PSEUDO_LABEL, 0);
    row_kind(KD_LOSS_STRONG_WEAK, 0);
    row_kind(KD_LOSS_CONSISTENCY, 0);
    row_kind(KD_LOSS_ENTROPY, 0);
    batch_kind(KD_LOSS_CLASS_BALANCE);
    batch_kind(KD_LOSS_MCC);
    batch_kind(KD_LOSS_FAIRNESS);
    for (int e = E_FWD; e <= E_FB; e++) {
        scenario *sc = add(e, KD_LOSS_WORST_CASE, KD_REDUCTION_MEAN, 0);
        for (int s = S_WC0; s <= S_WC3; s++)
            in(sc, s);
        if (e == E_BWD)
            in(sc, S_UPSTREAM);
        if (e != E_FWD) {
            out(sc, S_WCG0);
            out(sc, S_WCG1);
            in_place(sc, S_WCG0, S_WC1);
            in_place(sc, S_WCG1, S_WC3);
        }
        if (e != E_BWD)
            out(sc, S_LOSS);
    }
    for (int r = 0; r < 2; r++)
        for (int v = 0; v < 2; v++) {
            scenario *sc =
                add(E_LINEAR, KD_LOSS_KL_DISTILL, r ? KD_REDUCTION_NONE : KD_REDUCTION_MEAN, v);
            const int ins[] = {S_HID, S_W, S_B, S_LABELS, S_WEIGHTS};
            for (int k = 0; k < 5; k++)
                in(sc, ins[k]);
            if (v) {
                in(sc, S_TH);
                in(sc, S_TW);
                in(sc, S_TB);
            } else {
                in(sc, S_TEACHER);
            }
            const int outs[] = {S_GH, S_GW, S_GB, S_LOSS, S_PER};
            for (int k = 0; k < 5; k++)
                out(sc, outs[k]);
            in_place(sc, S_GH, S_HID);
        }
    scenario *sc = add(E_SELECT, 0, 0, 0);
    in(sc, S_PROBS);
    in(sc, S_THRESH);
    out(sc, S_CONF);
    out(sc, S_PL);
    out(sc, S_MASK);
    out(sc, S_NUM);
    sc = add(E_QUALITY, 0, 0, 0);
    in(sc, S_PROBS);
    in(sc, S_LABELS);
    out(sc, S_CONF);
    out(sc, S_RANK);
    out(sc, S_NUM);
    sc = add(E_ISSUES, 0, 0, 0);
    in(sc, S_PROBS);
    in(sc, S_LABELS);
    out(sc, S_THRESH);
    out(sc, S_PL);
    out(sc, S_SUSPECT);
    out(sc, S_NUM);
    for (int v = 0; v < 2; v++) {
        sc = add(E_SOFT, 0, 0, v);
        in(sc, S_LABELS);
        in(sc, v ? S_PRED : S_PROBS);
        out(sc, S_OUT);
        if (!v)
            in_place(sc, S_OUT, S_PROBS);
    }
    sc = add(E_ENSEMBLE, 0, 0, 0);
    in(sc, S_IN0);
    in(sc, S_IN1);
    in(sc, S_PTRS);
    in(sc, S_LDS);
    in(sc, S_WEIGHTS);
    out(sc, S_OUT);
    in_place(sc, S_OUT, S_IN0);
}

static void describe(char *buf, size_t size, const scenario *sc, const char *what)
{
    snprintf(buf, size, "%s kind %d reduction %d variant %d: %s", ENTRY_NAMES[sc->entry],
             (int)sc->kind, sc->red, sc->variant, what);
}

/* Every scenario with disjoint buffers and in place: KD_OK. */
START_TEST(disjoint_buffers_and_in_place_are_accepted)
{
    build_scenarios();
    int cases = 0;
    char msg[256], what[512];
    for (int k = 0; k < nscenarios; k++) {
        const scenario *sc = &scenarios[k];
        default_addresses();
        fill_arena();
        describe(what, sizeof what, sc, "disjoint");
        ck_assert_msg(run(sc, msg) == KD_OK, "%s: %s", what, msg);
        cases++;
        for (int p = 0; p < sc->nin_place; p++) {
            default_addresses();
            addr[sc->in_place[p][0]] = addr[sc->in_place[p][1]];
            fill_arena();
            describe(what, sizeof what, sc, SLOT_NAMES[sc->in_place[p][0]]);
            ck_assert_msg(run(sc, msg) == KD_OK, "%s in place: %s", what, msg);
            cases++;
        }
    }
    printf("aliasing: %d scenarios, %d accepted cases (disjoint and in place)\n", nscenarios,
           cases);
}
END_TEST

START_TEST(every_output_over_every_other_buffer_is_refused)
{
    build_scenarios();
    int cases = 0, failed = 0, per_entry[E_ENSEMBLE + 1] = {0};
    char msg[256], what[512];
    for (int k = 0; k < nscenarios; k++) {
        const scenario *sc = &scenarios[k];
        for (int o = 0; o < sc->nout; o++) {
            const int x = sc->out[o];
            int others[32], nothers = 0;
            for (int i = 0; i < sc->nin; i++)
                others[nothers++] = sc->in[i];
            for (int i = 0; i < sc->nout; i++)
                if (sc->out[i] != x)
                    others[nothers++] = sc->out[i];
            for (int t = 0; t < nothers; t++) {
                const int y = others[t];
                default_addresses();
                /* ensemble weights: k = 2 floats */
                const int small = is_small(y) || (sc->entry == E_ENSEMBLE && y == S_WEIGHTS);
                addr[x] = addr[y] + (small ? 0 : 2);
                fill_arena();
                char pair[128];
                snprintf(pair, sizeof pair, "%s over %s", SLOT_NAMES[x], SLOT_NAMES[y]);
                describe(what, sizeof what, sc, pair);
                kd_status st = run(sc, msg);
                cases++;
                per_entry[sc->entry]++;
                if (st != KD_ERR_ALIASING) {
                    failed++;
                    printf("NOT REFUSED (%d): %s\n", (int)st, what);
                } else if (!strstr(msg, "overlaps")) {
                    failed++;
                    printf("NO MESSAGE: %s: \"%s\"\n", what, msg);
                }
            }
        }
    }
    printf("aliasing: %d refused-overlap cases, %d not refused\n", cases, failed);
    for (int e = 0; e <= E_ENSEMBLE; e++)
        printf("  %-22s %d\n", ENTRY_NAMES[e], per_entry[e]);
    ck_assert_int_eq(failed, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("aliasing");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, disjoint_buffers_and_in_place_are_accepted);
    tcase_add_test(tc, every_output_over_every_other_buffer_is_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
