/* KD_LOSS_FAIRNESS: FreeMatch's self-adaptive fairness (USB entropy_loss),
 * sum_c normalize(pm / lh)_c log(normalize(mean(p) / hist)_c + 1e-12) over
 * the selected rows, a batch loss with the gradient through the batch mean. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_losses.h"
#include "ref_selftrain.h"

enum { N = 37, C = 11, LD = 13 };

typedef struct {
    float x[N * LD], w[N], pm[C], lh[C];
    double xd[N * C];
} problem;

/* logits N(0, 2) with NaN padding, a 0/1 mask (about 60% kept, row 0
 * dropped), p_model a positive distribution, label_hist with class 3 at 0 */
static void make(problem *p, uint64_t seed)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, p->x, N * LD, 2.0);
    for (int i = 0; i < N; i++)
        for (int j = C; j < LD; j++)
            p->x[i * LD + j] = NAN;
    for (int i = 0; i < N; i++)
        p->w[i] = kdt_uniform(&r) < 0.6 ? 1.0f : 0.0f;
    p->w[0] = 0.0f;
    p->w[1] = 1.0f;
    double s = 0.0;
    for (int j = 0; j < C; j++) {
        p->pm[j] = (float)(0.2 + kdt_uniform(&r));
        s += p->pm[j];
        p->lh[j] = (float)(0.05 + 0.2 * kdt_uniform(&r));
    }
    for (int j = 0; j < C; j++)
        p->pm[j] = (float)(p->pm[j] / s);
    p->lh[3] = 0.0f;
    rst_to_double(p->x, LD, N, C, p->xd);
}

static kd_loss *make_loss(const problem *p, int64_t c, const float *x, int64_t ld)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_FAIRNESS, c), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, x, ld), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_WEIGHTS, p->w), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, p->pm), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, p->lh), KD_OK);
    return h;
}

static double max_abs(const double *g, int64_t m)
{
    double a = 0.0;
    for (int64_t k = 0; k < m; k++)
        a = fmax(a, fabs(g[k]));
    return a;
}

/* forward_backward on h (student p->x, the weights w, g bound as the
 * gradient) against the double reference */
static void expect_reference(kd_loss *h, const problem *p, const float *w, float *g)
{
    double rg[N * C];
    const double ref = ref_fairness(N, C, p->xd, w, p->pm, p->lh, rg);
    float loss = NAN;
    kd_loss_bind_weights(h, w);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
    ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-7), "%.9g vs %.12g", loss, ref);
    ck_assert_double_le(kdt_max_abs_diff(g, LD, rg, N, C), 1e-5 * fmax(1e-6, max_abs(rg, N * C)));
}

typedef struct {
    const problem *p;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    const problem *p = ((fd_ctx *)ctx)->p;
    return ref_fairness(N, C, x, p->w, p->pm, p->lh, NULL);
}

START_TEST(loss_and_gradient_match_reference_and_finite_differences)
{
    problem p;
    make(&p, 70);
    float g[N * LD], loss, up = 0.75f;
    double rg[N * C], fd[N * C];
    const double ref = ref_fairness(N, C, p.xd, p.w, p.pm, p.lh, rg);
    ck_assert(ref < 0.0);
    /* the reference gradient against its own finite differences (the
     * argmax histogram is piecewise constant: no tie within the step) */
    fd_ctx f = {&p};
    rst_fd_grad(fd_fn, &f, p.xd, N * C, 1e-6, fd);
    double d = 0.0;
    for (int k = 0; k < N * C; k++)
        d = fmax(d, fabs(fd[k] - rg[k]));
    ck_assert_msg(d < 1e-7 * fmax(1.0, max_abs(rg, N * C)), "reference vs FD: %g", d);

    kd_loss *h = make_loss(&p, C, p.x, LD);
    for (int k = 0; k < N * LD; k++)
        g[k] = 99.0f;
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
    ck_assert_msg(kdt_close(loss, ref, 1e-5, 1e-7), "%.9g vs %.12g", loss, ref);
    const double gmax = max_abs(rg, N * C);
    ck_assert(gmax > 0.0);
    ck_assert_double_lt(kdt_max_abs_diff(g, LD, rg, N, C), 1e-5 * gmax);
    for (int i = 0; i < N; i++)
        for (int j = C; j < LD; j++)
            ck_assert(g[i * LD + j] == 99.0f); /* padding never written */
    for (int j = 0; j < C; j++)
        ck_assert(g[j] == 0.0f); /* row 0 is dropped */
    /* the kernel's own finite differences (float steps) */
    float xs[N * LD];
    memcpy(xs, p.x, sizeof xs);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, xs, LD);
    for (int i = 1; i < 6; i++)
        for (int j = 0; j < C; j++) {
            float lp, lm, x0 = xs[i * LD + j];
            xs[i * LD + j] = x0 + 1e-2f;
            kd_loss_forward(h, N, &lp);
            xs[i * LD + j] = x0 - 1e-2f;
            kd_loss_forward(h, N, &lm);
            xs[i * LD + j] = x0;
            /* float losses: a few ulps of the loss over the step of noise */
            const double fdk = ((double)lp - lm) / 2e-2, noise = 8.0 * 1.2e-7 * fabs(loss) / 2e-2;
            ck_assert_msg(fabs(fdk - g[i * LD + j]) <=
                              2e-3 * gmax + 2e-2 * fabs(g[i * LD + j]) + noise,
                          "kernel FD [%d][%d]: %g vs %g (max %g)", i, j, fdk, g[i * LD + j], gmax);
        }
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, p.x, LD);
    /* backward with an upstream value, forward == fused */
    float gb[N * LD];
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gb, LD);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
    for (int k = 0; k < N * C; k++)
        rg[k] *= 0.75;
    ck_assert_double_lt(kdt_max_abs_diff(gb, LD, rg, N, C), 1e-5 * gmax);
    float l2 = NAN;
    ck_assert_int_eq(kd_loss_forward(h, N, &l2), KD_OK);
    ck_assert(l2 == loss);
    /* reductions other than MEAN and the per-sample output are refused */
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM),
                     KD_ERR_INVALID_ARGUMENT);
    float ps[N];
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, ps, 0), KD_ERR_UNSUPPORTED);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(threads_in_place_and_weights_unbound)
{
    problem p;
    make(&p, 71);
    float g1[N * LD], g2[N * LD], l1, l2;
    kd_loss *h = make_loss(&p, C, p.x, LD);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, LD);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l1), KD_OK);
    for (int t = 2; t <= 3; t++) {
        memcpy(g2, g1, sizeof g2);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < C; j++)
                g2[i * LD + j] = NAN;
        kd_loss_set_int(h, KD_PARAM_THREADS, t);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g2, LD);
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &l2), KD_OK);
        ck_assert(l1 == l2);
        ck_assert(memcmp(g1, g2, sizeof g1) == 0);
    }
    kd_loss_set_int(h, KD_PARAM_THREADS, 1);
    /* in place: the gradient over the student */
    float xs[N * LD];
    memcpy(xs, p.x, sizeof xs);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, xs, LD);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, xs, LD);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l2), KD_OK);
    ck_assert(l1 == l2);
    for (int i = 0; i < N; i++)
        ck_assert(memcmp(xs + i * LD, g1 + i * LD, sizeof(float) * C) == 0);
    /* no weights: every row selected */
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, p.x, LD);
    expect_reference(h, &p, NULL, g1);
    kd_loss_destroy(h);
}
END_TEST

/* A weight w counts the row w times: weight 2 equals the row repeated. */
START_TEST(weights_count_rows_that_many_times)
{
    problem p;
    make(&p, 72);
    for (int i = 0; i < N; i++)
        p.w[i] = (float)(i % 4) * 0.5f; /* 0, 0.5, 1, 1.5 */
    float g[N * LD];
    kd_loss *h = make_loss(&p, C, p.x, LD);
    expect_reference(h, &p, p.w, g);
    /* rows 0..9 with weight 2 against rows 0..9 twice with weight 1 */
    float w2[10], x2[20 * LD], w1[20];
    for (int i = 0; i < 10; i++) {
        w2[i] = 2.0f;
        memcpy(x2 + i * LD, p.x + i * LD, sizeof(float) * LD);
        memcpy(x2 + (i + 10) * LD, p.x + i * LD, sizeof(float) * LD);
    }
    for (int i = 0; i < 20; i++)
        w1[i] = 1.0f;
    float la, lb;
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0);
    kd_loss_bind_weights(h, w2);
    ck_assert_int_eq(kd_loss_forward(h, 10, &la), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, x2, LD);
    kd_loss_bind_weights(h, w1);
    ck_assert_int_eq(kd_loss_forward(h, 20, &lb), KD_OK);
    ck_assert(kdt_close(la, lb, 1e-6, 1e-8));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(no_selected_row_gives_zero_and_a_zero_gradient)
{
    problem p;
    make(&p, 73);
    for (int i = 0; i < N; i++)
        p.w[i] = 0.0f;
    p.x[5 * LD + 2] = NAN; /* dropped rows are not read */
    p.x[6 * LD] = INFINITY;
    float g[N * LD], loss = 5.0f;
    for (int k = 0; k < N * LD; k++)
        g[k] = 3.0f;
    kd_loss *h = make_loss(&p, C, p.x, LD);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < LD; j++)
            ck_assert(g[i * LD + j] == (j < C ? 0.0f : 3.0f));
    /* n = 0 */
    loss = 5.0f;
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    /* a dropped non-finite row next to selected rows changes nothing */
    make(&p, 73);
    float l_ref, l_bad;
    p.w[5] = 0.0f;
    ck_assert_int_eq(kd_loss_forward(h, N, &l_ref), KD_OK);
    p.x[5 * LD + 1] = NAN;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l_bad), KD_OK);
    ck_assert(l_ref == l_bad);
    for (int j = 0; j < C; j++)
        ck_assert(g[5 * LD + j] == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(one_class_and_zero_histogram_entries)
{
    problem p;
    make(&p, 74);
    /* C = 1: q = m = 1, loss log(1 + 1e-12), no gradient */
    float x1[3] = {2.0f, -7.0f, 1.0f}, g1[3], loss;
    kd_loss *h = make_loss(&p, 1, x1, 1);
    kd_loss_bind_weights(h, NULL);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, 1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 3, &loss), KD_OK);
    ck_assert(loss == (float)log(1.0 + 1e-12));
    ck_assert(g1[0] == 0.0f && g1[1] == 0.0f && g1[2] == 0.0f);
    kd_loss_destroy(h);
    /* label_hist 0 for every class but two: q has two nonzero classes; a
     * class never predicted contributes log(1e-12) to the reference */
    for (int j = 0; j < C; j++)
        p.lh[j] = j == 2 || j == 7 ? 0.25f : 0.0f;
    float g[N * LD];
    h = make_loss(&p, C, p.x, LD);
    expect_reference(h, &p, p.w, g);
    /* one selected row: only its predicted class has m > 0, the others
     * give q log(1e-12) */
    for (int i = 0; i < N; i++)
        p.w[i] = i == 4 ? 1.0f : 0.0f;
    expect_reference(h, &p, p.w, g);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(extreme_logits)
{
    problem p;
    make(&p, 75);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) {
            p.x[i * LD + j] = (float)(1e4 * ((i * 7 + j * 3) % 5 - 2) / 2.0);
            p.xd[i * C + j] = p.x[i * LD + j];
        }
    float g[N * LD];
    kd_loss *h = make_loss(&p, C, p.x, LD);
    expect_reference(h, &p, p.w, g);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            ck_assert(isfinite(g[i * LD + j]));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(non_finite_logits)
{
    problem p;
    make(&p, 76);
    float g[N * LD], loss;
    kd_loss *h = make_loss(&p, C, p.x, LD);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
    /* a selected row with NaN or +Inf: NaN as PyTorch */
    for (int bad = 0; bad < 2; bad++) {
        make(&p, 76);
        p.x[1 * LD + 4] = bad ? INFINITY : NAN;
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
        ck_assert(isnan(loss));
    }
    /* -Inf is a class of probability 0 */
    make(&p, 76);
    p.x[1 * LD + 4] = -INFINITY;
    p.xd[1 * C + 4] = -INFINITY;
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
    ck_assert(kdt_close(loss, ref_fairness(N, C, p.xd, p.w, p.pm, p.lh, NULL), 1e-5, 1e-7));
    /* KD_PARAM_CHECK_FINITE: refused, nothing written */
    make(&p, 76);
    p.x[1 * LD + 4] = NAN;
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    for (int k = 0; k < N * LD; k++)
        g[k] = 4.0f;
    loss = 9.0f;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_NOT_FINITE);
    ck_assert(strstr(kd_loss_last_error(h), "student[1][4]") != NULL);
    ck_assert(loss == 9.0f && g[0] == 4.0f && g[LD + 4] == 4.0f);
    float up = NAN;
    make(&p, 76);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_ERR_NOT_FINITE);
    kd_loss_destroy(h);
}
END_TEST

/* Every documented error, each leaving the outputs untouched. */
START_TEST(documented_errors)
{
    problem p;
    make(&p, 77);
    float g[N * LD], loss = 9.0f, up = 1.0f;
    for (int k = 0; k < N * LD; k++)
        g[k] = 8.0f;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_FAIRNESS, C), KD_OK);
    /* roles and parameters of other kinds */
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, p.x, LD), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_labels(h, NULL), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_THRESHOLDS, p.pm), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, 1), KD_ERR_UNSUPPORTED);
    kd_loss *ce;
    ck_assert_int_eq(kd_loss_create(&ce, KD_LOSS_ENTROPY, C), KD_OK);
    ck_assert_int_eq(kd_loss_bind_vector(ce, KD_ARG_CLASS_PROBS, p.pm), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_vector(ce, KD_ARG_LABEL_HISTOGRAM, p.lh), KD_ERR_UNSUPPORTED);
    kd_loss_destroy(ce);
    /* missing inputs */
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, p.x, LD);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert(strstr(kd_loss_last_error(h), "KD_ARG_CLASS_PROBS") != NULL);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, p.pm);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_MISSING_INPUT);
    ck_assert(strstr(kd_loss_last_error(h), "KD_ARG_LABEL_HISTOGRAM") != NULL);
    kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, p.lh);
    kd_loss_bind_weights(h, p.w);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_ERR_MISSING_INPUT); /* no gradient */
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
    /* NULL pointers, n < 0 */
    ck_assert_int_eq(kd_loss_forward(h, N, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_backward(h, N, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_forward(NULL, N, &loss), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_bind_vector(NULL, KD_ARG_CLASS_PROBS, p.pm), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_forward(h, -1, &loss), KD_ERR_INVALID_ARGUMENT);
    /* weights: negative, NaN */
    p.w[3] = -1.0f;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(kd_loss_last_error(h), "weights[3]") != NULL);
    p.w[3] = NAN;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    p.w[3] = 1.0f;
    /* class vectors: negative, NaN, Inf, and a zero normaliser */
    const float bad_values[3] = {-0.5f, NAN, INFINITY};
    for (int b = 0; b < 3; b++) {
        float save = p.pm[2];
        p.pm[2] = bad_values[b];
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
        ck_assert(strstr(kd_loss_last_error(h), "class_probs[2]") != NULL);
        p.pm[2] = save;
        save = p.lh[5];
        p.lh[5] = bad_values[b];
        ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
        ck_assert(strstr(kd_loss_last_error(h), "label_histogram[5]") != NULL);
        p.lh[5] = save;
    }
    float lh0[C] = {0}, pm0[C];
    for (int j = 0; j < C; j++)
        pm0[j] = j == 3 ? 1.0f : 0.0f; /* mass only where label_hist is 0 */
    kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, lh0);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(kd_loss_last_error(h), "sums to 0") != NULL);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, pm0);
    kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, p.lh);
    ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, p.pm);
    /* aliasing: the gradient over the weights or a class vector, the loss
     * inside the label histogram */
    float buf[N * LD + 64];
    memcpy(buf, p.w, sizeof p.w);
    kd_loss_bind_weights(h, buf);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, buf, LD);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    ck_assert(strstr(kd_loss_last_error(h), "weights") != NULL);
    kd_loss_bind_weights(h, p.w);
    memcpy(buf, p.pm, sizeof p.pm);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, buf);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    ck_assert(strstr(kd_loss_last_error(h), "class probabilities") != NULL);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, p.pm);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
    ck_assert_int_eq(kd_loss_forward(h, N, p.lh + 1), KD_ERR_ALIASING);
    ck_assert(strstr(kd_loss_last_error(h), "label histogram") != NULL);
    ck_assert(loss == 9.0f);
    for (int k = 0; k < N * LD; k++)
        ck_assert(g[k] == 8.0f);
    /* still works */
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
    ck_assert(isfinite(loss));
    kd_loss_destroy(h);
}
END_TEST

/* The split API's fairness-specific checks (test_split_stats covers the
 * shards and the shared ones). */
START_TEST(split_statistics_layout_and_checks)
{
    problem p;
    make(&p, 78);
    kd_loss *h = make_loss(&p, C, p.x, LD);
    int64_t m = 0;
    ck_assert_int_eq(kd_loss_stats_size(h, &m), KD_OK);
    ck_assert_int_eq(m, 2 * C + 1);
    double st[2 * C + 1], bad[2 * C + 1];
    /* local statistics need no class vectors */
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, NULL);
    ck_assert_int_eq(kd_loss_local_stats(h, N, st), KD_OK);
    double kept = 0.0, hist = 0.0, mass = 0.0;
    for (int i = 0; i < N; i++)
        kept += p.w[i];
    for (int j = 0; j < C; j++) {
        hist += st[C + j];
        mass += st[j];
        ck_assert(st[C + j] == floor(st[C + j]));
    }
    ck_assert(hist == kept && fabs(mass - kept) < 1e-5 && st[2 * C] == N);
    float loss = 9.0f;
    ck_assert_int_eq(kd_loss_finish(h, N, st, &loss), KD_ERR_MISSING_INPUT);
    kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, p.pm);
    /* negative sums, or P_c / K_c summing to 0 */
    memcpy(bad, st, sizeof st);
    bad[C + 2] = -1.0;
    ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(kd_loss_last_error(h), "negative") != NULL);
    memcpy(bad, st, sizeof st);
    for (int j = 0; j < C; j++)
        bad[j] = 0.0;
    ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(kd_loss_last_error(h), "sum to 0") != NULL);
    ck_assert(loss == 9.0f);
    /* the weights are checked by local_stats too */
    p.w[2] = -1.0f;
    ck_assert_int_eq(kd_loss_local_stats(h, N, bad), KD_ERR_INVALID_ARGUMENT);
    p.w[2] = 1.0f;
    /* stats over the weights */
    ck_assert_int_eq(kd_loss_local_stats(h, 2, (double *)(void *)p.w), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_loss_finish(h, N, st, &loss), KD_OK);
    ck_assert(isfinite(loss));
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fairness");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, loss_and_gradient_match_reference_and_finite_differences);
    tcase_add_test(tc, threads_in_place_and_weights_unbound);
    tcase_add_test(tc, weights_count_rows_that_many_times);
    tcase_add_test(tc, no_selected_row_gives_zero_and_a_zero_gradient);
    tcase_add_test(tc, one_class_and_zero_histogram_entries);
    tcase_add_test(tc, extreme_logits);
    tcase_add_test(tc, non_finite_logits);
    tcase_add_test(tc, documented_errors);
    tcase_add_test(tc, split_statistics_layout_and_checks);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
