/* kd_linear_kl_distill (include/kdlib/linear.h): fused linear layer + KL
 * distillation, chunk by chunk.  Every result is compared with the
 * materialised computation: the full logits (double products rounded to
 * float) fed to kd_loss_forward_backward, and the gradient products taken in
 * double from its logit gradient.  The finite-difference test goes through
 * the double reference of tests/support/ref_losses.c instead. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_losses.h"

/* One problem: a student linear layer, a teacher (logits or linear layer) and
 * the loss options of a ref_case (labels, weights, reduction, ...). */
typedef struct {
    int64_t n, d, c, dt;
    float *hid, *w, *b; /* n x d (ldh), C x d (ldw), C or NULL */
    int64_t ldh, ldw;
    int teacher_linear;    /* 1: teacher from thid, tw, tb */
    float *thid, *tw, *tb; /* n x dt (ldth), C x dt (ldtw), C or NULL */
    int64_t ldth, ldtw;
    int n_teachers; /* teacher logits: 1 or 2 bound matrices */
    float *t[2];
    int64_t ldt;
    ref_case k; /* options; student and teachers filled in by the helpers */
} lin_case;

static lin_case make_case(ref_arena *a, uint64_t seed, int64_t n, int64_t d, int64_t c)
{
    lin_case lc;
    memset(&lc, 0, sizeof lc);
    lc.n = n;
    lc.d = d;
    lc.c = c;
    lc.dt = d + 2;
    lc.ldh = d + 3;
    lc.ldw = d + 1;
    lc.hid = ref_new_logits(a, seed, n, d, lc.ldh, 1.0, 0.0);
    lc.w = ref_new_logits(a, seed + 1, c, d, lc.ldw, 2.0 / sqrt((double)d), 0.0);
    lc.ldth = lc.dt + 1;
    lc.ldtw = lc.dt;
    lc.thid = ref_new_logits(a, seed + 2, n, lc.dt, lc.ldth, 1.0, 0.0);
    lc.tw = ref_new_logits(a, seed + 3, c, lc.dt, lc.ldtw, 3.0 / sqrt((double)lc.dt), 0.0);
    lc.n_teachers = 1;
    lc.ldt = c + 4;
    lc.t[0] = ref_new_logits(a, seed + 4, n, c, lc.ldt, 3.0, 0.5);
    lc.t[1] = ref_new_logits(a, seed + 5, n, c, lc.ldt, 2.0, -0.5);
    ref_case_init(&lc.k, REF_KL_DISTILL, n, c);
    lc.k.temperature = 2.0;
    return lc;
}

/* out (n x C, dense) = x w^T + b: products in double, as the double
 * reference (dense) and rounded to float (outf, may be NULL). */
static void logits_of(int64_t n, int64_t c, int64_t d, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *b, double *out, float *outf)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double s = b ? b[j] : 0.0;
            for (int64_t e = 0; e < d; e++)
                s += (double)x[i * ldx + e] * w[j * ldw + e];
            out[i * c + j] = s;
            if (outf)
                outf[i * c + j] = (float)s;
        }
}

/* The teacher logits as the loss sees them (n x C dense floats). */
static float *teacher_logits(const lin_case *lc)
{
    const int64_t n = lc->n, c = lc->c;
    float *t = malloc(((size_t)(n * c) + 1) * sizeof *t);
    double *td = malloc(((size_t)(n * c) + 1) * sizeof *td);
    if (lc->teacher_linear) {
        logits_of(n, c, lc->dt, lc->thid, lc->ldth, lc->tw, lc->ldtw, lc->tb, td, t);
    } else {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < c; j++)
                t[i * c + j] = lc->t[0][i * lc->ldt + j];
    }
    free(td);
    return t;
}

/* Materialised reference: loss (1 or n), per-sample (n), gradients in double
 * (grad_hidden n x d, grad_weight C x d, grad_bias C, dense). */
typedef struct {
    float *loss, *per_sample;
    double *gh, *gw, *gb;
} ref_out;

static void ref_out_free(ref_out *r)
{
    free(r->loss);
    free(r->per_sample);
    free(r->gh);
    free(r->gw);
    free(r->gb);
}

static ref_out materialise(const lin_case *lc)
{
    const int64_t n = lc->n, c = lc->c, d = lc->d;
    ref_out r;
    r.loss = calloc((size_t)n + 1, sizeof(float));
    r.per_sample = calloc((size_t)n + 1, sizeof(float));
    r.gh = calloc((size_t)(n * d) + 1, sizeof(double));
    r.gw = calloc((size_t)(c * d) + 1, sizeof(double));
    r.gb = calloc((size_t)c + 1, sizeof(double));
    float *s = malloc(((size_t)(n * c) + 1) * sizeof *s);
    double *sd = malloc(((size_t)(n * c) + 1) * sizeof *sd);
    float *g = malloc(((size_t)(n * c) + 1) * sizeof *g);
    logits_of(n, c, d, lc->hid, lc->ldh, lc->w, lc->ldw, lc->b, sd, s);
    float *t = lc->teacher_linear ? teacher_logits(lc) : NULL;

    ref_case k = lc->k;
    k.student = s;
    k.ld_student = c;
    if (lc->teacher_linear) {
        k.n_teachers = 1;
        k.teachers[0] = t;
        k.ld_teachers[0] = c;
    } else {
        k.n_teachers = lc->n_teachers;
        for (int e = 0; e < lc->n_teachers; e++) {
            k.teachers[e] = lc->t[e];
            k.ld_teachers[e] = lc->ldt;
        }
    }
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, c), KD_OK);
    ck_assert_int_eq(ref_configure(h, &k), KD_OK);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, c);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, r.per_sample, 0);
    ck_assert_int_eq(kd_loss_forward_backward(h, n, r.loss), KD_OK);
    kd_loss_destroy(h);

    for (int64_t i = 0; i < n; i++)
        for (int64_t e = 0; e < d; e++) {
            double acc = 0.0;
            for (int64_t j = 0; j < c; j++)
                acc += (double)g[i * c + j] * lc->w[j * lc->ldw + e];
            r.gh[i * d + e] = acc;
        }
    for (int64_t j = 0; j < c; j++) {
        for (int64_t e = 0; e < d; e++) {
            double acc = 0.0;
            for (int64_t i = 0; i < n; i++)
                acc += (double)g[i * c + j] * lc->hid[i * lc->ldh + e];
            r.gw[j * d + e] = acc;
        }
        double acc = 0.0;
        for (int64_t i = 0; i < n; i++)
            acc += g[i * c + j];
        r.gb[j] = acc;
    }
    free(s);
    free(sd);
    free(g);
    free(t);
    return r;
}

/* The fused call's outputs, with canary padding around them. */
typedef struct {
    float *loss, *per_sample, *gh, *gw, *gb;
    int64_t ldgh, ldgw;
} fused_out;

static const float canary = 12345.0f;

static fused_out fused_alloc(const lin_case *lc)
{
    fused_out f;
    f.ldgh = lc->d + 2;
    f.ldgw = lc->d + 1;
    size_t sh = (size_t)(lc->n * f.ldgh) + 1, sw = (size_t)(lc->c * f.ldgw) + 1;
    f.loss = malloc(((size_t)lc->n + 1) * sizeof(float));
    f.per_sample = malloc(((size_t)lc->n + 1) * sizeof(float));
    f.gh = malloc(sh * sizeof(float));
    f.gw = malloc(sw * sizeof(float));
    f.gb = malloc(((size_t)lc->c + 1) * sizeof(float));
    for (size_t e = 0; e < sh; e++)
        f.gh[e] = canary;
    for (size_t e = 0; e < sw; e++)
        f.gw[e] = NAN; /* overwritten, never accumulated: NaN would show */
    for (int64_t e = 0; e <= lc->c; e++)
        f.gb[e] = NAN;
    for (int64_t e = 0; e <= lc->n; e++)
        f.loss[e] = f.per_sample[e] = canary;
    return f;
}

static void fused_free(fused_out *f)
{
    free(f->loss);
    free(f->per_sample);
    free(f->gh);
    free(f->gw);
    free(f->gb);
}

/* A handle configured for the case (teacher logits bound unless linear). */
static kd_loss *fused_handle(const lin_case *lc)
{
    ref_case k = lc->k;
    k.student = NULL;
    k.n_teachers = lc->teacher_linear ? 0 : lc->n_teachers;
    for (int e = 0; e < k.n_teachers; e++) {
        k.teachers[e] = lc->t[e];
        k.ld_teachers[e] = lc->ldt;
    }
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, lc->c), KD_OK);
    ck_assert_int_eq(ref_configure(h, &k), KD_OK);
    return h;
}

static kd_status call(kd_loss *h, const lin_case *lc, int64_t chunk, fused_out *f, int grads)
{
    return kd_linear_kl_distill(
        h, lc->n, lc->d, lc->hid, lc->ldh, lc->w, lc->ldw, lc->b, lc->teacher_linear ? lc->dt : 0,
        lc->teacher_linear ? lc->thid : NULL, lc->ldth, lc->teacher_linear ? lc->tw : NULL,
        lc->ldtw, lc->teacher_linear ? lc->tb : NULL, chunk, f->loss, grads ? f->gh : NULL, f->ldgh,
        grads ? f->gw : NULL, f->ldgw, grads && lc->b ? f->gb : NULL);
}

static fused_out run_fused(const lin_case *lc, int64_t chunk)
{
    fused_out f = fused_alloc(lc);
    kd_loss *h = fused_handle(lc);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, f.per_sample, 0);
    kd_status st = call(h, lc, chunk, &f, 1);
    ck_assert_msg(st == KD_OK, "%s", kd_loss_last_error(h));
    kd_loss_destroy(h);
    return f;
}

/* max |a - r| <= tol * max |r| + floor over a strided float matrix, and the
 * padding columns [cols, ld) untouched (canary) when check_pad. */
static void expect_matrix(const char *what, const float *a, int64_t ld, const double *r,
                          int64_t rows, int64_t cols, double tol, int check_pad)
{
    double rmax = 0.0, dmax = 0.0;
    for (int64_t e = 0; e < rows * cols; e++)
        rmax = fmax(rmax, fabs(r[e]));
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++)
            dmax = fmax(dmax, fabs(a[i * ld + j] - r[i * cols + j]));
        if (check_pad)
            for (int64_t j = cols; j < ld; j++)
                ck_assert_msg(a[i * ld + j] == canary, "%s: padding of row %lld written", what,
                              (long long)i);
    }
    ck_assert_msg(dmax <= tol * rmax + 1e-7, "%s: max |diff| %.3g against max |ref| %.3g", what,
                  dmax, rmax);
}

/* The fused outputs against the materialised reference. */
static void expect_matches(const lin_case *lc, int64_t chunk, const char *label)
{
    char what[160];
    ref_out r = materialise(lc);
    fused_out f = run_fused(lc, chunk);
    const int64_t m = lc->k.reduction == REF_NONE ? lc->n : 1;
    const double scale = lc->k.reduction == REF_SUM ? (double)lc->n : 1.0;
    for (int64_t i = 0; i < m; i++)
        ck_assert_msg(fabs(f.loss[i] - r.loss[i]) <= 2e-5 * fabs(r.loss[i]) + 2e-6 * scale,
                      "%s chunk %lld: loss[%lld] = %.9g, materialised %.9g", label,
                      (long long)chunk, (long long)i, f.loss[i], r.loss[i]);
    for (int64_t i = 0; i < lc->n; i++)
        ck_assert_msg(fabs(f.per_sample[i] - r.per_sample[i]) <=
                          2e-5 * fabs(r.per_sample[i]) + 2e-6,
                      "%s chunk %lld: per_sample[%lld] = %.9g, materialised %.9g", label,
                      (long long)chunk, (long long)i, f.per_sample[i], r.per_sample[i]);
    snprintf(what, sizeof what, "%s chunk %lld grad_hidden", label, (long long)chunk);
    expect_matrix(what, f.gh, f.ldgh, r.gh, lc->n, lc->d, 4e-6, 1);
    snprintf(what, sizeof what, "%s chunk %lld grad_weight", label, (long long)chunk);
    expect_matrix(what, f.gw, f.ldgw, r.gw, lc->c, lc->d, 4e-6, 0);
    if (lc->b) {
        snprintf(what, sizeof what, "%s chunk %lld grad_bias", label, (long long)chunk);
        expect_matrix(what, f.gb, 1, r.gb, 1, lc->c, 4e-6, 0);
    }
    fused_free(&f);
    ref_out_free(&r);
}

/* Chunk sizes: the default, 1, uneven, and larger than n. */
static void expect_matches_all_chunks(const lin_case *lc, const char *label)
{
    const int64_t chunks[] = {0, 1, 3, lc->n > 4 ? lc->n / 2 + 1 : 2, lc->n + 7};
    for (size_t e = 0; e < sizeof chunks / sizeof *chunks; e++)
        expect_matches(lc, chunks[e], label);
}

START_TEST(matches_materialised_logits_for_shapes_chunks_and_reductions)
{
    static const int64_t shapes[][3] = {{7, 5, 11}, {13, 16, 37}, {33, 8, 100}, {20, 24, 257}};
    for (size_t s = 0; s < 4; s++)
        for (int red = REF_MEAN; red <= REF_NONE; red++) {
            ref_arena a = {0};
            lin_case lc = make_case(&a, 100 + s, shapes[s][0], shapes[s][1], shapes[s][2]);
            lc.k.reduction = red;
            char label[64];
            snprintf(label, sizeof label, "shape %zu red %d", s, red);
            expect_matches_all_chunks(&lc, label);
            ref_arena_free(&a);
        }
}
END_TEST

START_TEST(labels_with_ignored_rows_alpha_and_global_denominators)
{
    for (int norm = REF_NORMALIZE_BATCH; norm <= REF_NORMALIZE_VALID; norm++)
        for (int red = REF_MEAN; red <= REF_NONE; red++) {
            ref_arena a = {0};
            lin_case lc = make_case(&a, 200 + norm, 17, 12, 29);
            lc.k.labels = ref_new_labels(&a, 210, lc.n, lc.c, 0.3, -100);
            lc.k.soft_weight = 0.9; /* alpha = 0.9 */
            lc.k.hard_weight = 0.1;
            lc.k.temperature = 4.0;
            lc.k.normalization = norm;
            lc.k.reduction = red;
            char label[64];
            snprintf(label, sizeof label, "labels norm %d red %d", norm, red);
            expect_matches_all_chunks(&lc, label);
            ref_arena_free(&a);
        }
}
END_TEST

START_TEST(teacher_as_hidden_states_and_weight_with_biases)
{
    for (int red = REF_MEAN; red <= REF_NONE; red++) {
        ref_arena a = {0};
        lin_case lc = make_case(&a, 300, 19, 10, 41);
        lc.teacher_linear = 1;
        lc.b = ref_new_logits(&a, 301, 1, lc.c, lc.c, 0.5, 0.0);
        lc.tb = ref_new_logits(&a, 302, 1, lc.c, lc.c, 0.5, 0.0);
        lc.k.labels = ref_new_labels(&a, 303, lc.n, lc.c, 0.2, -100);
        lc.k.soft_weight = 0.5;
        lc.k.hard_weight = 0.5;
        lc.k.reduction = red;
        char label[64];
        snprintf(label, sizeof label, "teacher linear red %d", red);
        expect_matches_all_chunks(&lc, label);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(every_option_of_the_handle_applies)
{
    for (int opt = 0; opt < 7; opt++) {
        ref_arena a = {0};
        lin_case lc = make_case(&a, 400 + opt, 15, 9, 23);
        lc.k.labels = ref_new_labels(&a, 410 + opt, lc.n, lc.c, 0.25, -7);
        lc.k.ignore_index = -7;
        lc.k.hard_weight = 0.3;
        switch (opt) {
        case 0:
            lc.k.t2_scaling = 0;
            break;
        case 1:
            lc.k.divergence = REF_REVERSE_KL;
            break;
        case 2:
            lc.k.divergence = REF_JSD;
            lc.k.jsd_beta = 0.3;
            break;
        case 3:
            lc.k.label_smoothing = 0.1;
            break;
        case 4:
            lc.k.weights = ref_new_weights(&a, 420, lc.n);
            break;
        case 5:
            lc.n_teachers = 2;
            break; /* averaged in logit space */
        default:
            lc.k.labels = NULL;
            lc.b = ref_new_logits(&a, 430, 1, lc.c, lc.c, 1.0, 0.0);
            break;
        }
        char label[64];
        snprintf(label, sizeof label, "option %d", opt);
        expect_matches_all_chunks(&lc, label);
        ref_arena_free(&a);
    }
}
END_TEST

/* The double reference loss (upstream . loss) of the student logits
 * x w^T + b computed in double from the float inputs, the teacher logits
 * fixed as floats. */
static double objective(const lin_case *lc, const float *t, const double *up)
{
    const int64_t n = lc->n, c = lc->c;
    double *s = malloc(((size_t)(n * c) + 1) * sizeof *s);
    logits_of(n, c, lc->d, lc->hid, lc->ldh, lc->w, lc->ldw, lc->b, s, NULL);
    ref_case k = lc->k;
    k.n_teachers = 1;
    k.teachers[0] = t;
    k.ld_teachers[0] = c;
    k.student = NULL;
    double v = ref_objective(&k, s, up);
    free(s);
    return v;
}

/* Central difference of the objective in one float input: the step is
 * representable, and the quotient divides by the step actually taken. */
static double fd_at(lin_case *lc, float *x, const float *t, const double *up)
{
    const float x0 = *x;
    const float step = 1e-3f * fmaxf(1.0f, fabsf(x0));
    *x = x0 + step;
    double fp = objective(lc, t, up);
    float xp = *x;
    *x = x0 - step;
    double fm = objective(lc, t, up);
    float xm = *x;
    *x = x0;
    return (fp - fm) / ((double)xp - (double)xm);
}

START_TEST(gradients_match_finite_differences_of_the_double_reference)
{
    for (int red = REF_MEAN; red <= REF_NONE; red++) {
        ref_arena a = {0};
        lin_case lc = make_case(&a, 500 + red, 4, 3, 5);
        lc.teacher_linear = 1;
        lc.b = ref_new_logits(&a, 510, 1, lc.c, lc.c, 0.5, 0.0);
        lc.k.labels = ref_new_labels(&a, 511, lc.n, lc.c, 0.3, -100);
        lc.k.soft_weight = 0.7;
        lc.k.hard_weight = 0.3;
        lc.k.reduction = red;
        float *t = teacher_logits(&lc);
        double up[8];
        for (int e = 0; e < 8; e++)
            up[e] = 1.0;
        fused_out f = run_fused(&lc, 3);
        const float *outs[3] = {f.gh, f.gw, f.gb};
        const int64_t lds[3] = {f.ldgh, f.ldgw, 1};
        float *ins[3] = {lc.hid, lc.w, lc.b};
        const int64_t ldin[3] = {lc.ldh, lc.ldw, 1};
        const int64_t rows[3] = {lc.n, lc.c, 1}, cols[3] = {lc.d, lc.d, lc.c};
        const char *names[3] = {"grad_hidden", "grad_weight", "grad_bias"};
        for (int o = 0; o < 3; o++) {
            double gmax = 1e-6;
            for (int64_t i = 0; i < rows[o]; i++)
                for (int64_t j = 0; j < cols[o]; j++)
                    gmax = fmax(gmax, fabs(outs[o][i * lds[o] + j]));
            for (int64_t i = 0; i < rows[o]; i++)
                for (int64_t j = 0; j < cols[o]; j++) {
                    double fd = fd_at(&lc, ins[o] + i * ldin[o] + j, t, up);
                    double g = outs[o][i * lds[o] + j];
                    ck_assert_msg(fabs(fd - g) <= 2e-6 * gmax + 1e-5 * fabs(g),
                                  "red %d %s[%lld][%lld] = %.9g, finite differences %.9g", red,
                                  names[o], (long long)i, (long long)j, g, fd);
                }
        }
        fused_free(&f);
        free(t);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(threads_and_skipped_outputs_give_the_same_bits)
{
    ref_arena a = {0};
    lin_case lc = make_case(&a, 600, 23, 11, 31);
    lc.k.labels = ref_new_labels(&a, 601, lc.n, lc.c, 0.2, -100);
    lc.k.hard_weight = 0.4;
    lc.b = ref_new_logits(&a, 602, 1, lc.c, lc.c, 0.5, 0.0);
    fused_out base = run_fused(&lc, 5);
    const size_t sh = (size_t)(lc.n * base.ldgh), sw = (size_t)(lc.c * base.ldgw);
    for (int t = 2; t <= 3; t++) {
        fused_out f = fused_alloc(&lc);
        kd_loss *h = fused_handle(&lc);
        kd_loss_set_int(h, KD_PARAM_THREADS, t);
        ck_assert_int_eq(call(h, &lc, 5, &f, 1), KD_OK);
        ck_assert_msg(f.loss[0] == base.loss[0], "%d threads: loss differs", t);
        ck_assert(!memcmp(f.gh, base.gh, sh * sizeof(float)));
        ck_assert(!memcmp(f.gw, base.gw, sw * sizeof(float)));
        ck_assert(!memcmp(f.gb, base.gb, (size_t)lc.c * sizeof(float)));
        kd_loss_destroy(h);
        fused_free(&f);
    }
    /* forward only: the same loss, no output written */
    fused_out f = fused_alloc(&lc);
    kd_loss *h = fused_handle(&lc);
    ck_assert_int_eq(call(h, &lc, 5, &f, 0), KD_OK);
    ck_assert(f.loss[0] == base.loss[0]);
    ck_assert(f.gh[0] == canary && isnan(f.gw[0]));
    /* only grad_weight: the same bits as with every gradient */
    ck_assert_int_eq(kd_linear_kl_distill(h, lc.n, lc.d, lc.hid, lc.ldh, lc.w, lc.ldw, lc.b, 0,
                                          NULL, 0, NULL, 0, NULL, 5, f.loss, NULL, 0, f.gw, f.ldgw,
                                          NULL),
                     KD_OK);
    ck_assert(!memcmp(f.gw, base.gw, sw * sizeof(float)));
    ck_assert(f.gh[0] == canary);
    /* called again: grad_weight is overwritten, not accumulated */
    ck_assert_int_eq(call(h, &lc, 5, &f, 1), KD_OK);
    ck_assert_int_eq(call(h, &lc, 5, &f, 1), KD_OK);
    ck_assert(!memcmp(f.gw, base.gw, sw * sizeof(float)));
    ck_assert(!memcmp(f.gb, base.gb, (size_t)lc.c * sizeof(float)));
    kd_loss_destroy(h);
    fused_free(&f);
    fused_free(&base);
    ref_arena_free(&a);
}
END_TEST

START_TEST(grad_hidden_in_place_over_hidden)
{
    ref_arena a = {0};
    lin_case lc = make_case(&a, 700, 21, 6, 19);
    lc.k.labels = ref_new_labels(&a, 701, lc.n, lc.c, 0.2, -100);
    lc.k.hard_weight = 0.5;
    fused_out base = run_fused(&lc, 4);
    float *copy = malloc((size_t)(lc.n * lc.ldh) * sizeof *copy);
    memcpy(copy, lc.hid, (size_t)(lc.n * lc.ldh) * sizeof *copy);
    fused_out f = fused_alloc(&lc);
    kd_loss *h = fused_handle(&lc);
    float loss;
    ck_assert_int_eq(kd_linear_kl_distill(h, lc.n, lc.d, copy, lc.ldh, lc.w, lc.ldw, NULL, 0, NULL,
                                          0, NULL, 0, NULL, 4, &loss, copy, lc.ldh, f.gw, f.ldgw,
                                          NULL),
                     KD_OK);
    ck_assert(loss == base.loss[0]);
    ck_assert(!memcmp(f.gw, base.gw, (size_t)(lc.c * f.ldgw) * sizeof(float)));
    for (int64_t i = 0; i < lc.n; i++) {
        ck_assert(
            !memcmp(copy + i * lc.ldh, base.gh + i * base.ldgh, (size_t)lc.d * sizeof(float)));
        for (int64_t j = lc.d; j < lc.ldh; j++)
            ck_assert(isnan(copy[i * lc.ldh + j])); /* padding kept */
    }
    /* overlapping with another stride is refused */
    ck_assert_int_eq(kd_linear_kl_distill(h, lc.n, lc.d, copy, lc.ldh, lc.w, lc.ldw, NULL, 0, NULL,
                                          0, NULL, 0, NULL, 4, &loss, copy, lc.ldh + 1, NULL, 0,
                                          NULL),
                     KD_ERR_ALIASING);
    free(copy);
    kd_loss_destroy(h);
    fused_free(&f);
    fused_free(&base);
    ref_arena_free(&a);
}
END_TEST

START_TEST(empty_batch_gives_zero_loss_and_zero_gradients)
{
    ref_arena a = {0};
    lin_case lc = make_case(&a, 800, 3, 4, 6);
    lc.b = ref_new_logits(&a, 801, 1, lc.c, lc.c, 0.5, 0.0);
    lc.n = 0;
    fused_out f = fused_alloc(&lc);
    kd_loss *h = fused_handle(&lc);
    ck_assert_int_eq(call(h, &lc, 0, &f, 1), KD_OK);
    ck_assert(f.loss[0] == 0.0f);
    for (int64_t j = 0; j < lc.c; j++) {
        ck_assert(f.gb[j] == 0.0f);
        for (int64_t e = 0; e < lc.d; e++)
            ck_assert(f.gw[j * f.ldgw + e] == 0.0f);
    }
    kd_loss_destroy(h);
    fused_free(&f);
    ref_arena_free(&a);
}
END_TEST

START_TEST(default_chunk_is_eight_mebibytes_of_logits_and_at_least_256_rows)
{
    ck_assert_int_eq(kd_linear_default_chunk_rows(32000), 256);
    ck_assert_int_eq(kd_linear_default_chunk_rows(8192), 256);
    ck_assert_int_eq(kd_linear_default_chunk_rows(1000), 2097);
    ck_assert_int_eq(kd_linear_default_chunk_rows(1), 1 << 21);
    ck_assert_int_eq(kd_linear_default_chunk_rows((int64_t)1 << 40), 256);
    ck_assert_int_eq(kd_linear_default_chunk_rows(0), 256);
}
END_TEST

/* Every error leaves every output as it was. */
static void expect_error(kd_status got, kd_status want, const fused_out *f, const lin_case *lc,
                         const char *what)
{
    ck_assert_msg(got == want, "%s: got %s, want %s", what, kd_status_string(got),
                  kd_status_string(want));
    for (int64_t e = 0; e <= lc->n; e++)
        ck_assert_msg(f->loss[e] == canary && f->per_sample[e] == canary, "%s: loss written", what);
    for (int64_t e = 0; e < lc->n * f->ldgh; e++)
        ck_assert_msg(f->gh[e] == canary, "%s: grad_hidden written", what);
    for (int64_t e = 0; e < lc->c * f->ldgw; e++)
        ck_assert_msg(isnan(f->gw[e]), "%s: grad_weight written", what);
    for (int64_t e = 0; e < lc->c; e++)
        ck_assert_msg(isnan(f->gb[e]), "%s: grad_bias written", what);
}

START_TEST(bad_arguments_are_refused_with_outputs_untouched)
{
    ref_arena a = {0};
    lin_case lc = make_case(&a, 900, 6, 5, 7);
    lc.k.labels = ref_new_labels(&a, 901, lc.n, lc.c, 0.2, -100);
    lc.b = ref_new_logits(&a, 902, 1, lc.c, lc.c, 0.5, 0.0);
    fused_out f = fused_alloc(&lc);
    kd_loss *h = fused_handle(&lc);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, f.per_sample, 0);
    const int64_t n = lc.n, d = lc.d, ldh = lc.ldh, ldw = lc.ldw;
    float *H = lc.hid, *W = lc.w, *B = lc.b;

#define CALL(...) kd_linear_kl_distill(__VA_ARGS__)
#define GOOD_OUT f.loss, f.gh, f.ldgh, f.gw, f.ldgw, f.gb
    expect_error(CALL(NULL, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_NULL_POINTER, &f, &lc, "NULL handle");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, NULL, f.gh, f.ldgh,
                      f.gw, f.ldgw, f.gb),
                 KD_ERR_NULL_POINTER, &f, &lc, "NULL loss");
    expect_error(CALL(h, n, d, NULL, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_NULL_POINTER, &f, &lc, "NULL hidden");
    expect_error(CALL(h, n, d, H, ldh, NULL, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_NULL_POINTER, &f, &lc, "NULL weight");
    expect_error(CALL(h, -1, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "n < 0");
    expect_error(CALL(h, n, 0, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "d = 0");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, -1, GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "chunk < 0");
    expect_error(CALL(h, n, d, H, d - 1, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_SHAPE, &f, &lc, "ld_hidden < d");
    expect_error(CALL(h, n, d, H, ldh, W, d - 1, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_SHAPE, &f, &lc, "ld_weight < d");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, f.loss, f.gh, d - 1,
                      f.gw, f.ldgw, f.gb),
                 KD_ERR_SHAPE, &f, &lc, "ld_grad_hidden < d");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, f.loss, f.gh,
                      f.ldgh, f.gw, d - 1, f.gb),
                 KD_ERR_SHAPE, &f, &lc, "ld_grad_weight < d");
    expect_error(
        CALL(h, n, d, H, (int64_t)1 << 40, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
        KD_ERR_SHAPE, &f, &lc, "ld beyond the CBLAS int");
    /* teachers: both, none, half a teacher layer, a teacher bias alone */
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, lc.dt, lc.thid, lc.ldth, lc.tw, lc.ldtw, NULL, 0,
                      GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "teacher logits and teacher layer");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, B, 0, GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "teacher bias alone");
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, NULL, 0);
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_MISSING_INPUT, &f, &lc, "no teacher");
    expect_error(
        CALL(h, n, d, H, ldh, W, ldw, B, lc.dt, lc.thid, lc.ldth, NULL, lc.ldtw, NULL, 0, GOOD_OUT),
        KD_ERR_NULL_POINTER, &f, &lc, "teacher weight missing");
    expect_error(
        CALL(h, n, d, H, ldh, W, ldw, B, 0, lc.thid, lc.ldth, lc.tw, lc.ldtw, NULL, 0, GOOD_OUT),
        KD_ERR_INVALID_ARGUMENT, &f, &lc, "d_teacher = 0");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, lc.dt, lc.thid, lc.dt - 1, lc.tw, lc.ldtw, NULL,
                      0, GOOD_OUT),
                 KD_ERR_SHAPE, &f, &lc, "ld_teacher_hidden < d_teacher");
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, lc.t[0], lc.ldt);
    /* labels and weights, checked over all rows before the first chunk */
    int32_t bad_labels[6] = {0, 1, 2, 3, 4, 7};
    kd_loss_bind_labels(h, bad_labels);
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 1, GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "label out of range in the last chunk");
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "labels[5]"));
    kd_loss_bind_labels(h, lc.k.labels);
    float bad_w[6] = {1, 1, 1, 1, -1, 1};
    kd_loss_bind_weights(h, bad_w);
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 1, GOOD_OUT),
                 KD_ERR_INVALID_ARGUMENT, &f, &lc, "negative weight");
    kd_loss_bind_weights(h, NULL);
    /* non-finite input with the check on */
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    float keep = H[(n - 1) * ldh + 2];
    H[(n - 1) * ldh + 2] = NAN;
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 1, GOOD_OUT),
                 KD_ERR_NOT_FINITE, &f, &lc, "NaN hidden");
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "hidden[5][2]"));
    H[(n - 1) * ldh + 2] = keep;
    B[3] = INFINITY;
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 1, GOOD_OUT),
                 KD_ERR_NOT_FINITE, &f, &lc, "Inf bias");
    B[3] = 0.25f;
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 0);
    /* aliasing */
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, f.loss, f.gh,
                      f.ldgh, W, ldw, f.gb),
                 KD_ERR_ALIASING, &f, &lc, "grad_weight over weight");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, f.loss, f.gh,
                      f.ldgh, f.gw, f.ldgw, f.gh + 1),
                 KD_ERR_ALIASING, &f, &lc, "grad_bias inside grad_hidden");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, f.loss, f.gh,
                      f.ldgh, f.gw, f.ldgw, B),
                 KD_ERR_ALIASING, &f, &lc, "grad_bias over bias");
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, lc.t[0] + 1, f.gh,
                      f.ldgh, f.gw, f.ldgw, f.gb),
                 KD_ERR_ALIASING, &f, &lc, "loss over the teacher logits");
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, f.gb, 0);
    expect_error(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_ALIASING, &f, &lc, "per-sample output over grad_bias");
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, f.per_sample, 0);
    /* a handle of another kind */
    kd_loss *ce;
    kd_loss_create(&ce, KD_LOSS_CROSS_ENTROPY, lc.c);
    kd_loss_bind_labels(ce, lc.k.labels);
    expect_error(CALL(ce, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                 KD_ERR_UNSUPPORTED, &f, &lc, "cross-entropy handle");
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(ce), "KD_LOSS_KL_DISTILL"));
    kd_loss_destroy(ce);
    /* and the same handle still works afterwards */
    ck_assert_int_eq(CALL(h, n, d, H, ldh, W, ldw, B, 0, NULL, 0, NULL, 0, NULL, 0, GOOD_OUT),
                     KD_OK);
    ck_assert_str_eq(kd_loss_last_error(h), "");
#undef GOOD_OUT
#undef CALL
    kd_loss_destroy(h);
    fused_free(&f);
    ref_arena_free(&a);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("linear_distill");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, matches_materialised_logits_for_shapes_chunks_and_reductions);
    tcase_add_test(tc, labels_with_ignored_rows_alpha_and_global_denominators);
    tcase_add_test(tc, teacher_as_hidden_states_and_weight_with_biases);
    tcase_add_test(tc, every_option_of_the_handle_applies);
    tcase_add_test(tc, gradients_match_finite_differences_of_the_double_reference);
    tcase_add_test(tc, threads_and_skipped_outputs_give_the_same_bits);
    tcase_add_test(tc, grad_hidden_in_place_over_hidden);
    tcase_add_test(tc, empty_batch_gives_zero_loss_and_zero_gradients);
    tcase_add_test(tc, default_chunk_is_eight_mebibytes_of_logits_and_at_least_256_rows);
    tcase_add_test(tc, bad_arguments_are_refused_with_outputs_untouched);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
