/* KD_LOSS_CONSISTENCY: tllib Pi-model ConsistencyLoss, mask_i * D(p1_i, p2_i)
 * with D = squared L2 of probabilities, KL(p2 || p1) or JS, on logits or
 * probabilities, gradients to both inputs. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_selftrain.h"

enum { N = 23, C = 6, LD = 8 };

typedef struct {
    float a[N * LD], b[N * LD], w[N], ga[N * LD], gb[N * LD];
    double ad[N * C], bd[N * C], wd[N];
} data;

/* logits, or rows of probabilities (softmax of random logits) */
static void make(data *d, uint64_t seed, int logits)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, d->a, N * LD, 2.0);
    kdt_fill_normal(&r, d->b, N * LD, 2.0);
    for (int i = 0; i < N; i++)
        d->wd[i] = d->w[i] = (float)(i % 4 ? kdt_uniform(&r) : 0.0); /* a 0/1-ish mask */
    if (!logits)
        for (int i = 0; i < N; i++)
            for (int k = 0; k < 2; k++) {
                float *x = (k ? d->b : d->a) + i * LD;
                double z[C], lp[C];
                for (int j = 0; j < C; j++)
                    z[j] = x[j];
                rst_log_softmax(z, C, 1.0, lp);
                for (int j = 0; j < C; j++)
                    x[j] = (float)exp(lp[j]);
            }
    rst_to_double(d->a, LD, N, C, d->ad);
    rst_to_double(d->b, LD, N, C, d->bd);
}

static kd_loss *make_loss(data *d, int logits, int dist)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, logits ? KD_INPUT_LOGITS : KD_INPUT_PROBABILITIES), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DISTANCE, dist), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, d->a, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, d->b, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_weights(h, d->w), KD_OK);
    return h;
}

START_TEST(every_distance_input_type_and_reduction_matches_reference)
{
    for (int logits = 0; logits < 2; logits++)
        for (int dist = 0; dist < 3; dist++) {
            data d;
            make(&d, 20 + dist, logits);
            kd_loss *h = make_loss(&d, logits, dist);
            float loss[N], per[N];
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0), KD_OK);
            for (int red = 0; red < 3; red++) {
                double rper[N];
                double ref = rst_consistency(N, C, d.ad, d.bd, logits, dist, d.wd, red, rper);
                ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, red), KD_OK);
                ck_assert_int_eq(kd_loss_forward(h, N, loss), KD_OK);
                if (red < 2)
                    ck_assert_msg(kdt_close(loss[0], ref, 1e-5, 1e-6), "logits %d dist %d red %d: %g vs %g",
                                  logits, dist, red, loss[0], ref);
                for (int i = 0; i < N; i++)
                    ck_assert(kdt_close(per[i], rper[i], 1e-5, 1e-6));
            }
            kd_loss_destroy(h);
        }
}
END_TEST

typedef struct {
    data *d;
    int logits, dist, second;
} fd_ctx;

static double fd_fn(void *ctx, const double *x)
{
    fd_ctx *f = ctx;
    return f->second ? rst_consistency(N, C, f->d->ad, x, f->logits, f->dist, f->d->wd, 0, NULL)
                     : rst_consistency(N, C, x, f->d->bd, f->logits, f->dist, f->d->wd, 0, NULL);
}

START_TEST(gradients_to_both_inputs_match_finite_differences)
{
    for (int logits = 0; logits < 2; logits++)
        for (int dist = 0; dist < 3; dist++) {
            data d;
            make(&d, 30 + dist, logits);
            kd_loss *h = make_loss(&d, logits, dist);
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.ga, LD), KD_OK);
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, LD), KD_OK);
            float loss;
            ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
            double fd[N * C];
            fd_ctx f = {&d, logits, dist, 0};
            rst_fd_grad(fd_fn, &f, d.ad, N * C, 1e-7, fd);
            ck_assert_msg(kdt_max_abs_diff(d.ga, LD, fd, N, C) < 1e-5, "first: logits %d dist %d: %g",
                          logits, dist, kdt_max_abs_diff(d.ga, LD, fd, N, C));
            f.second = 1;
            rst_fd_grad(fd_fn, &f, d.bd, N * C, 1e-7, fd);
            ck_assert_msg(kdt_max_abs_diff(d.gb, LD, fd, N, C) < 1e-5, "second: logits %d dist %d: %g",
                          logits, dist, kdt_max_abs_diff(d.gb, LD, fd, N, C));
            /* NULL skips one gradient; backward scales by upstream */
            float gb1[N * LD], up = 3.0f;
            memcpy(gb1, d.gb, sizeof gb1);
            ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, NULL, 0), KD_OK);
            ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_OK);
            for (int i = 0; i < N; i++)
                for (int j = 0; j < C; j++)
                    ck_assert(kdt_close(d.gb[i * LD + j], 3.0 * gb1[i * LD + j], 1e-6, 1e-9));
            kd_loss_destroy(h);
        }
}
END_TEST

START_TEST(both_gradients_in_place)
{
    data d;
    make(&d, 40, 1);
    kd_loss *h = make_loss(&d, 1, KD_DISTANCE_JS);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.ga, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, LD), KD_OK);
    float l1, l2;
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l1), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, d.a, LD), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.b, LD), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_THREADS, 2), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &l2), KD_OK);
    ck_assert(l1 == l2);
    for (int i = 0; i < N; i++) {
        ck_assert(memcmp(d.a + i * LD, d.ga + i * LD, C * sizeof(float)) == 0);
        ck_assert(memcmp(d.b + i * LD, d.gb + i * LD, C * sizeof(float)) == 0);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(edge_shapes_extreme_logits_and_zero_probabilities)
{
    kd_loss *h;
    float loss, g1[2], g2[2];
    /* C = 1 logits: both softmaxes are 1, D = 0 */
    float a1[1] = {5.0f}, b1[1] = {-3.0f};
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 1), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, a1, 1);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, b1, 1);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
    /* N = 1, C = 2, opposite one-hots from +-1e4 logits */
    float a[2] = {1e4f, -1e4f}, b[2] = {-1e4f, 1e4f};
    const double expect[3] = {2.0, 2e4, log(2.0)};
    for (int dist = 0; dist < 3; dist++) {
        ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 2), KD_OK);
        kd_loss_set_int(h, KD_PARAM_DISTANCE, dist);
        kd_loss_bind_matrix(h, KD_ARG_STUDENT, a, 2);
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, b, 2);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g1, 2);
        kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, g2, 2);
        ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
        ck_assert_msg(kdt_close(loss, expect[dist], 1e-6, 0), "dist %d: %g", dist, loss);
        ck_assert(isfinite(g1[0]) && isfinite(g1[1]) && isfinite(g2[0]) && isfinite(g2[1]));
        kd_loss_destroy(h);
    }
    /* probabilities with zeros: 0 log 0 = 0 and a zero gradient there */
    float p1[3] = {0.5f, 0.5f, 0.0f}, p2[3] = {0.25f, 0.75f, 0.0f}, h1[3], h2[3];
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 3), KD_OK);
    kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, KD_INPUT_PROBABILITIES);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, p1, 3);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, p2, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, h1, 3);
    kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, h2, 3);
    for (int dist = 1; dist < 3; dist++) {
        kd_loss_set_int(h, KD_PARAM_DISTANCE, dist);
        ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
        double pd1[3] = {0.5, 0.5, 0}, pd2[3] = {0.25, 0.75, 0};
        ck_assert(kdt_close(loss, rst_consistency(1, 3, pd1, pd2, 0, dist, NULL, 0, NULL), 1e-6, 1e-7));
        ck_assert(h1[2] == 0.0f && h2[2] == 0.0f);
    }
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_propagates_and_check_finite_rejects)
{
    float a[2] = {NAN, 1.0f}, b[2] = {0.0f, 1.0f}, loss = 2.0f;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CONSISTENCY, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, a, 2);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, b, 2);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(isnan(loss));
    kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
    loss = 2.0f;
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_ERR_NOT_FINITE);
    ck_assert(loss == 2.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(documented_errors)
{
    data d;
    make(&d, 50, 1);
    kd_loss *h = make_loss(&d, 1, KD_DISTANCE_L2);
    float loss = 4.0f, up = 1.0f;
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DISTANCE, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE, 2), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_MASK, d.w, 0), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, C - 1), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_loss_backward(h, N, &up), KD_ERR_MISSING_INPUT);
    /* the second input's gradient over the student */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.a + 1, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_ALIASING);
    /* ... over the second input with another stride */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.b, LD + 1), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N - 2, &loss), KD_ERR_ALIASING);
    ck_assert(loss == 4.0f);
    /* two teachers */
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_TEACHER, d.gb, LD), KD_OK);
    const float *ts[2] = {d.b, d.b};
    int64_t lds[2] = {LD, LD};
    ck_assert_int_eq(kd_loss_bind_teachers(h, 2, ts, lds, NULL), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "exactly one"));
    ck_assert(loss == 4.0f);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("consistency");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, every_distance_input_type_and_reduction_matches_reference);
    tcase_add_test(tc, gradients_to_both_inputs_match_finite_differences);
    tcase_add_test(tc, both_gradients_in_place);
    tcase_add_test(tc, edge_shapes_extreme_logits_and_zero_probabilities);
    tcase_add_test(tc, nan_propagates_and_check_finite_rejects);
    tcase_add_test(tc, documented_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
