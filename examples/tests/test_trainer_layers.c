/* Gradient checks of the trainer's layers: every backward pass against
 * central finite differences of L = sum(y * r) for a fixed random r, so that
 * dL/dy = r. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "layers.h"
#include "model.h"
#include "rng.h"

static tr_rng rng;

static float *random_vector(int64_t n, float scale)
{
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = scale * tr_rng_normal(&rng);
    return v;
}

static double dot(const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Compare analytic[i] with the central difference of objective() in v[i]. */
typedef double (*objective_fn)(void *ctx);
static void check_gradient_eps(const char *what, float *v, const float *analytic, int64_t n,
                               objective_fn f, void *ctx, float eps)
{
    for (int64_t i = 0; i < n; i += 1 + n / 40) {
        float saved = v[i];
        v[i] = saved + eps;
        double up = f(ctx);
        v[i] = saved - eps;
        double down = f(ctx);
        v[i] = saved;
        double numeric = (up - down) / (2.0 * eps);
        ck_assert_msg(fabs(numeric - analytic[i]) <= 2e-2 * fabs(numeric) + 2e-2,
                      "%s[%lld]: analytic %g, finite difference %g", what, (long long)i,
                      analytic[i], numeric);
    }
}

static void check_gradient(const char *what, float *v, const float *analytic, int64_t n,
                           objective_fn f, void *ctx)
{
    check_gradient_eps(what, v, analytic, n, f, ctx, 1e-2f);
}

/* ---- convolution ---- */
typedef struct {
    tr_conv c;
    int batch;
    float *x, *W, *b, *col, *y, *r;
} conv_case;

static double conv_objective(void *ctx)
{
    conv_case *t = ctx;
    tr_conv_forward(&t->c, t->batch, t->x, t->W, t->b, t->col, t->y);
    return dot(t->y, t->r, (int64_t)t->batch * t->c.h * t->c.w * t->c.cout);
}

START_TEST(shift_flip_moves_mirrors_and_fills)
{
    /* 2 x 3 image, pixel value = 10 * row + column */
    const float img[6] = {0, 1, 2, 10, 11, 12};
    float x[6];
    memcpy(x, img, sizeof x);
    ck_assert_int_eq(tr_shift_flip(x, 2, 3, 0, 0, 0, -1.0f), 0); /* identity */
    ck_assert_mem_eq(x, img, sizeof x);
    ck_assert_int_eq(tr_shift_flip(x, 2, 3, 0, 0, 1, -1.0f), 0); /* mirror */
    const float mirror[6] = {2, 1, 0, 12, 11, 10};
    ck_assert_mem_eq(x, mirror, sizeof x);
    memcpy(x, img, sizeof x);
    tr_shift_flip(x, 2, 3, 1, 0, 0, -1.0f); /* down by 1 */
    const float down[6] = {-1, -1, -1, 0, 1, 2};
    ck_assert_mem_eq(x, down, sizeof x);
    memcpy(x, img, sizeof x);
    tr_shift_flip(x, 2, 3, 0, -1, 0, -1.0f); /* left by 1 */
    const float left[6] = {1, 2, -1, 11, 12, -1};
    ck_assert_mem_eq(x, left, sizeof x);
    memcpy(x, img, sizeof x);
    tr_shift_flip(x, 2, 3, -1, 1, 1, -1.0f); /* up 1 and right 1, then mirrored */
    const float both[6] = {11, 10, -1, -1, -1, -1};
    ck_assert_mem_eq(x, both, sizeof x);
    float big[1];
    ck_assert_int_eq(tr_shift_flip(big, 65, 64, 0, 0, 0, 0.0f), -1); /* > 4,096 pixels */
}
END_TEST

START_TEST(conv_backward_matches_finite_differences)
{
    conv_case t = {.c = {.cin = 3, .cout = 4, .k = 3, .h = 5, .w = 6}, .batch = 2};
    int64_t nx = (int64_t)t.batch * t.c.h * t.c.w * t.c.cin;
    int64_t ny = (int64_t)t.batch * t.c.h * t.c.w * t.c.cout;
    int64_t nw = (int64_t)t.c.cout * 9 * t.c.cin, ncol = tr_conv_col_size(&t.c, t.batch);
    t.x = random_vector(nx, 1.0f);
    t.W = random_vector(nw, 0.5f);
    t.b = random_vector(t.c.cout, 0.5f);
    t.r = random_vector(ny, 1.0f);
    t.col = malloc((size_t)ncol * sizeof(float));
    t.y = malloc((size_t)ny * sizeof(float));
    float *dW = malloc((size_t)nw * sizeof(float)), *db = malloc((size_t)t.c.cout * sizeof(float));
    float *dx = malloc((size_t)nx * sizeof(float)), *dcol = malloc((size_t)ncol * sizeof(float));
    conv_objective(&t);
    tr_conv_backward(&t.c, t.batch, t.col, t.W, t.r, dW, db, dcol, dx);
    check_gradient("conv dx", t.x, dx, nx, conv_objective, &t);
    check_gradient("conv dW", t.W, dW, nw, conv_objective, &t);
    check_gradient("conv db", t.b, db, t.c.cout, conv_objective, &t);
    free(t.x), free(t.W), free(t.b), free(t.r), free(t.col), free(t.y);
    free(dW), free(db), free(dx), free(dcol);
}
END_TEST

/* ---- linear ---- */
typedef struct {
    int batch, in, out;
    float *x, *W, *b, *y, *r;
} linear_case;

static double linear_objective(void *ctx)
{
    linear_case *t = ctx;
    tr_linear_forward(t->batch, t->in, t->out, t->x, t->W, t->b, t->y);
    return dot(t->y, t->r, (int64_t)t->batch * t->out);
}

START_TEST(linear_backward_matches_finite_differences)
{
    linear_case t = {.batch = 3, .in = 7, .out = 5};
    t.x = random_vector(t.batch * t.in, 1.0f);
    t.W = random_vector(t.in * t.out, 0.5f);
    t.b = random_vector(t.out, 0.5f);
    t.r = random_vector(t.batch * t.out, 1.0f);
    t.y = malloc((size_t)(t.batch * t.out) * sizeof(float));
    float *dW = malloc((size_t)(t.in * t.out) * sizeof(float));
    float *db = malloc((size_t)t.out * sizeof(float));
    float *dx = malloc((size_t)(t.batch * t.in) * sizeof(float));
    linear_objective(&t);
    tr_linear_backward(t.batch, t.in, t.out, t.x, t.W, t.r, dW, db, dx);
    check_gradient("linear dx", t.x, dx, t.batch * t.in, linear_objective, &t);
    check_gradient("linear dW", t.W, dW, t.in * t.out, linear_objective, &t);
    check_gradient("linear db", t.b, db, t.out, linear_objective, &t);
    free(t.x), free(t.W), free(t.b), free(t.r), free(t.y), free(dW), free(db), free(dx);
}
END_TEST

/* ---- max-pool and ReLU ---- */
typedef struct {
    int batch, h, w, ch;
    float *x, *y, *r;
    int32_t *argmax;
    int relu;
} pointwise_case;

static double pointwise_objective(void *ctx)
{
    pointwise_case *t = ctx;
    int64_t n = (int64_t)t->batch * t->h * t->w * t->ch;
    if (t->relu) {
        memcpy(t->y, t->x, (size_t)n * sizeof(float));
        tr_relu_forward(n, t->y);
        return dot(t->y, t->r, n);
    }
    tr_maxpool_forward(t->batch, t->h, t->w, t->ch, t->x, t->y, t->argmax);
    return dot(t->y, t->r, n / 4);
}

START_TEST(maxpool_backward_matches_finite_differences)
{
    /* Well separated values: no ties and no argmax change within eps. */
    pointwise_case t = {.batch = 2, .h = 4, .w = 6, .ch = 3};
    int64_t n = (int64_t)t.batch * t.h * t.w * t.ch;
    t.x = malloc((size_t)n * sizeof(float));
    int32_t *perm = malloc((size_t)n * sizeof *perm);
    for (int64_t i = 0; i < n; i++)
        perm[i] = (int32_t)i;
    tr_rng_shuffle(&rng, perm, n);
    for (int64_t i = 0; i < n; i++)
        t.x[i] = 0.1f * (float)perm[i];
    t.y = malloc((size_t)(n / 4) * sizeof(float));
    t.r = random_vector(n / 4, 1.0f);
    t.argmax = malloc((size_t)(n / 4) * sizeof(int32_t));
    float *dx = malloc((size_t)n * sizeof(float));
    pointwise_objective(&t);
    tr_maxpool_backward(t.batch, t.h, t.w, t.ch, t.r, t.argmax, dx);
    check_gradient("maxpool dx", t.x, dx, n, pointwise_objective, &t);
    free(t.x), free(perm), free(t.y), free(t.r), free(t.argmax), free(dx);
}
END_TEST

START_TEST(relu_backward_matches_finite_differences)
{
    pointwise_case t = {.batch = 1, .h = 5, .w = 5, .ch = 2, .relu = 1};
    int64_t n = 50;
    t.x = random_vector(n, 1.0f);
    for (int64_t i = 0; i < n; i++) /* keep away from the kink at 0 */
        t.x[i] += t.x[i] >= 0 ? 0.1f : -0.1f;
    t.y = malloc((size_t)n * sizeof(float));
    t.r = random_vector(n, 1.0f);
    float *dy = malloc((size_t)n * sizeof(float));
    pointwise_objective(&t);
    memcpy(dy, t.r, (size_t)n * sizeof(float));
    tr_relu_backward(n, t.y, dy);
    check_gradient("relu dx", t.x, dy, n, pointwise_objective, &t);
    free(t.x), free(t.y), free(t.r), free(dy);
}
END_TEST

/* ---- the whole model ---- */
typedef struct {
    tr_model *m;
    float *x, *r;
    int batch;
} model_case;

static double model_objective(void *ctx)
{
    model_case *t = ctx;
    const float *logits = tr_model_forward(t->m, t->x, t->batch);
    return dot(logits, t->r, (int64_t)t->batch * t->m->classes);
}

START_TEST(model_backward_matches_finite_differences)
{
    char err[128];
    tr_model *m = tr_model_create("conv3-conv4-fc6", 8, 8, 5, 4, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    tr_model_init(m, &rng);
    for (int64_t i = 0; i < m->num_params; i++) /* non-zero biases too */
        m->params[i] += 0.05f * tr_rng_normal(&rng);
    model_case t = {.m = m, .batch = 3};
    t.x = random_vector(3 * 64, 1.0f);
    t.r = random_vector(3 * 5, 1.0f);
    model_objective(&t);
    tr_model_backward(m, t.r);
    float *grads = malloc((size_t)m->num_params * sizeof(float));
    memcpy(grads, m->grads, (size_t)m->num_params * sizeof(float));
    /* A small step: a weight of the first layer moves many pre-activations,
     * and none may cross a ReLU kink or change a pooling argmax. */
    check_gradient_eps("model params", m->params, grads, m->num_params, model_objective, &t, 1e-3f);
    free(grads), free(t.x), free(t.r);
    tr_model_destroy(m);
}
END_TEST

START_TEST(model_spec_errors_are_reported)
{
    char err[128];
    ck_assert_ptr_null(tr_model_create("conv8-pool", 28, 28, 10, 4, err, sizeof err));
    ck_assert_msg(strstr(err, "pool") != NULL, "%s", err);
    ck_assert_ptr_null(tr_model_create("conv8-conv8-conv8", 28, 28, 10, 4, err, sizeof err));
    ck_assert_msg(strstr(err, "cannot be pooled") != NULL, "%s", err);
    tr_model *m = tr_model_create("fc16", 28, 28, 10, 4, err, sizeof err);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->num_params, 784 * 16 + 16 + 16 * 10 + 10);
    tr_model_destroy(m);
}
END_TEST

int main(void)
{
    tr_rng_seed(&rng, 42, 0);
    Suite *s = suite_create("trainer_layers");
    TCase *tc = tcase_create("gradients");
    tcase_add_test(tc, conv_backward_matches_finite_differences);
    tcase_add_test(tc, linear_backward_matches_finite_differences);
    tcase_add_test(tc, maxpool_backward_matches_finite_differences);
    tcase_add_test(tc, relu_backward_matches_finite_differences);
    tcase_add_test(tc, model_backward_matches_finite_differences);
    tcase_add_test(tc, model_spec_errors_are_reported);
    tcase_add_test(tc, shift_flip_moves_mirrors_and_fills);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
