/* KD_LOSS_CROSS_ENTROPY: soft-target cross-entropy against the double
 * reference of tests/support/ref_losses.c, for every target source and
 * option.  Each ref_verify() call checks MEAN, SUM and NONE, forward /
 * backward / fused, in place, strided rows, and 1/2/3 threads (see
 * ref_losses.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_losses.h"

/* A CE case with random student logits of stride c + 3 (NaN padding). */
static ref_case ce_case(ref_arena *a, uint64_t seed, int64_t n, int64_t c)
{
    ref_case k;
    ref_case_init(&k, REF_CROSS_ENTROPY, n, c);
    k.student = ref_new_logits(a, seed, n, c, c + 3, 2.0, 0.0);
    k.ld_student = c + 3;
    return k;
}

static void with_teacher(ref_arena *a, ref_case *k, uint64_t seed, double scale)
{
    k->n_teachers = 1;
    k->teachers[0] = ref_new_logits(a, seed, k->n, k->c, k->c + 5, scale, 0.0);
    k->ld_teachers[0] = k->c + 5;
}

START_TEST(hard_labels_match_reference)
{
    static const int64_t shapes[][2] = {{7, 5}, {13, 37}, {4, 2}, {3, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        ref_arena a = {0};
        ref_case k = ce_case(&a, 10 + s, shapes[s][0], shapes[s][1]);
        k.labels = ref_new_labels(&a, 20 + s, k.n, k.c, 0.0, -100);
        verify(&k, s < 3 ? REF_VERIFY_KERNEL_FD : 0);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(hard_label_value_is_log_sum_exp_minus_true_logit)
{
    /* s = (0, log 3): softmax = (1/4, 3/4); CE(s, 1) = -log(3/4). */
    float s[2] = {0.0f, (float)log(3.0)}, loss = 0.0f, g[2];
    int32_t y = 1;
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 2), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_labels(h, &y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, -log(0.75), 1e-6, 1e-7));
    ck_assert(kdt_close(g[0], 0.25, 1e-6, 1e-7)); /* softmax - onehot */
    ck_assert(kdt_close(g[1], -0.25, 1e-6, 1e-7));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(ignored_rows_give_zero_and_do_not_count_in_the_mean)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 31, 9, 6);
    k.labels = ref_new_labels(&a, 32, k.n, k.c, 0.4, -100);
    verify(&k, REF_VERIFY_KERNEL_FD);
    /* a custom ignore index, also one that is a valid class */
    k.ignore_index = -1;
    k.labels = ref_new_labels(&a, 33, k.n, k.c, 0.4, -1);
    verify(&k, 0);
    k.ignore_index = 2;
    k.labels = ref_new_labels(&a, 34, k.n, k.c, 0.4, 2);
    verify(&k, 0);
    ref_arena_free(&a);
}
END_TEST

START_TEST(label_smoothing_uniform_gives_eps_over_c_to_every_class)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 41, 8, 7);
    k.labels = ref_new_labels(&a, 42, k.n, k.c, 0.3, -100);
    k.label_smoothing = 0.1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.label_smoothing = 1.0;
    verify(&k, 0);
    ref_arena_free(&a);
}
END_TEST

START_TEST(label_smoothing_others_gives_eps_over_c_minus_1_to_wrong_classes)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 51, 8, 7);
    k.labels = ref_new_labels(&a, 52, k.n, k.c, 0.3, -100);
    k.label_smoothing = 0.2;
    k.smoothing_mode = REF_SMOOTHING_OTHERS;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);

    /* the two modes differ by exactly the target they build: C = 3, eps = 0.3,
     * s = 0: uniform q = (0.8, 0.1, 0.1), others q = (0.7, 0.15, 0.15); with a
     * uniform softmax both losses are log 3, the gradients p - q differ. */
    float s[3] = {0, 0, 0}, g[3], loss;
    int32_t y = 0;
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 3);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3);
    kd_loss_bind_labels(h, &y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    kd_loss_set_float(h, KD_PARAM_LABEL_SMOOTHING, 0.3);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, log(3.0), 1e-6, 1e-7));
    ck_assert(kdt_close(g[0], 1.0 / 3 - 0.8, 1e-6, 1e-7));
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_SMOOTHING_MODE, KD_SMOOTHING_OTHERS), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(g[0], 1.0 / 3 - 0.7, 1e-6, 1e-7));
    ck_assert(kdt_close(g[1], 1.0 / 3 - 0.15, 1e-6, 1e-7));
    kd_loss_destroy(h);
}
END_TEST

START_TEST(probability_target_matches_reference)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 61, 7, 9);
    k.target = ref_new_probabilities(&a, 62, k.n, k.c, k.c + 4);
    k.ld_target = k.c + 4;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(unnormalised_probability_target_gradient_scales_softmax_by_its_sum)
{
    /* PyTorch computes -sum q log softmax(s) for any q; its gradient is
     * softmax(s) * sum(q) - q. */
    ref_arena a = {0};
    ref_case k = ce_case(&a, 71, 6, 5);
    float *q = ref_new_logits(&a, 72, k.n, k.c, k.c + 1, 0.0, 0.0);
    kdt_rng r;
    kdt_seed(&r, 73);
    for (int64_t i = 0; i < k.n; i++)
        for (int64_t j = 0; j < k.c; j++)
            q[i * (k.c + 1) + j] = (float)(kdt_uniform(&r) * 0.8); /* rows sum to ~2 */
    k.target = q;
    k.ld_target = k.c + 1;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(teacher_target_is_softmax_of_teacher_over_temperature)
{
    static const double temps[] = {1.0, 2.5, 0.5, 8.0};
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        ref_arena a = {0};
        ref_case k = ce_case(&a, 81 + t, 7, 6);
        with_teacher(&a, &k, 91 + t, 3.0);
        k.temperature = temps[t];
        verify(&k, REF_VERIFY_KERNEL_FD);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(several_teachers_are_averaged_in_logit_space)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 101, 6, 5);
    k.n_teachers = 3;
    for (int t = 0; t < 3; t++) {
        k.teachers[t] = ref_new_logits(&a, 102 + t, k.n, k.c, k.c + 1 + t, 2.0, 0.0);
        k.ld_teachers[t] = k.c + 1 + t;
    }
    k.temperature = 2.0;
    verify(&k, REF_VERIFY_KERNEL_FD);
    static const float w[3] = {0.5f, 0.0f, 2.0f};
    k.teacher_weights = w;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(soft_label_mixing_blends_onehot_and_soft_target_by_label_weight)
{
    static const double weights[] = {0.7, 0.3, 0.0, 1.0};
    for (size_t w = 0; w < sizeof weights / sizeof weights[0]; w++) {
        ref_arena a = {0};
        ref_case k = ce_case(&a, 111 + w, 8, 6);
        k.labels = ref_new_labels(&a, 121 + w, k.n, k.c, 0.25, -100);
        k.label_weight = weights[w];
        /* with target probabilities */
        k.target = ref_new_probabilities(&a, 131 + w, k.n, k.c, k.c + 2);
        k.ld_target = k.c + 2;
        verify(&k, REF_VERIFY_KERNEL_FD);
        /* with a teacher at temperature 3 */
        k.target = NULL;
        with_teacher(&a, &k, 141 + w, 2.0);
        k.temperature = 3.0;
        verify(&k, REF_VERIFY_KERNEL_FD);
        /* the one-hot part is the smoothed one (KD_PARAM_LABEL_SMOOTHING) */
        k.label_smoothing = 0.2;
        verify(&k, 0);
        ref_arena_free(&a);
    }
}
END_TEST

START_TEST(per_sample_weights_scale_rows_but_not_the_mean_denominator)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 151, 9, 5);
    k.labels = ref_new_labels(&a, 152, k.n, k.c, 0.3, -100);
    k.weights = ref_new_weights(&a, 153, k.n);
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.labels = NULL;
    with_teacher(&a, &k, 154, 1.0);
    verify(&k, REF_VERIFY_KERNEL_FD);

    /* weights (0, 1): loss = l_1 / 2 for MEAN, not l_1 / 1 */
    float s[4] = {1, 2, 3, 4}, w[2] = {0, 1}, loss, l1;
    int32_t y[2] = {0, 0};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 2);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 2);
    kd_loss_bind_labels(h, y);
    kd_loss_bind_weights(h, w);
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s + 2, 2);
    kd_loss_bind_weights(h, NULL);
    ck_assert_int_eq(kd_loss_forward(h, 1, &l1), KD_OK);
    ck_assert(kdt_close(loss, l1 / 2, 1e-6, 0));
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(single_row_and_two_classes)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 161, 1, 2);
    k.labels = ref_new_labels(&a, 162, 1, 2, 0.0, -100);
    verify(&k, REF_VERIFY_KERNEL_FD);
    k.label_smoothing = 0.3;
    k.smoothing_mode = REF_SMOOTHING_OTHERS;
    verify(&k, REF_VERIFY_KERNEL_FD);
    ref_arena_free(&a);
}
END_TEST

START_TEST(one_class_gives_zero_loss_and_zero_gradient)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 171, 5, 1);
    k.labels = ref_new_labels(&a, 172, 5, 1, 0.0, -100);
    verify(&k, 0);
    k.label_smoothing = 0.5;
    k.smoothing_mode = REF_SMOOTHING_OTHERS;
    verify(&k, 0);
    k.labels = NULL;
    with_teacher(&a, &k, 173, 1.0);
    verify(&k, 0);
    float s[2] = {3.0f, -7.0f}, g[2] = {9, 9}, loss = 9;
    int32_t y[2] = {0, 0};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 1);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 1);
    kd_loss_bind_labels(h, y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 2, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 0.0f && g[1] == 0.0f);
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(logits_of_magnitude_1e4_give_finite_correct_results)
{
    ref_arena a = {0};
    ref_case k = ce_case(&a, 181, 6, 8);
    /* rows mixing +-1e4 with O(1) offsets: several near-max entries per row */
    float *s = (float *)k.student;
    for (int64_t i = 0; i < k.n; i++)
        for (int64_t j = 0; j < k.c; j++)
            s[i * k.ld_student + j] += (j % 3 == 0) ? 1e4f : (j % 3 == 1 ? -1e4f : 0.0f);
    k.labels = ref_new_labels(&a, 182, k.n, k.c, 0.0, -100);
    verify(&k, REF_VERIFY_EXTREME);
    k.label_smoothing = 0.1;
    verify(&k, REF_VERIFY_EXTREME);
    k.labels = NULL;
    with_teacher(&a, &k, 183, 1e4);
    k.temperature = 4.0;
    verify(&k, REF_VERIFY_EXTREME);
    /* and a few exact values: the loss of the wrong class is 2e4 */
    float x[2] = {1e4f, -1e4f}, g[2], loss;
    int32_t y = 1;
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 2);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, x, 2);
    kd_loss_bind_labels(h, &y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 2);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(loss == 2e4f);
    ck_assert(g[0] == 1.0f && g[1] == -1.0f);
    kd_loss_destroy(h);
    ref_arena_free(&a);
}
END_TEST

START_TEST(all_rows_ignored_give_zero_loss_and_zero_gradient)
{
    float s[6] = {1, 2, 3, 4, 5, 6}, g[6], per[2] = {7, 7}, loss[2];
    int32_t y[2] = {-100, -100};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 3);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3);
    kd_loss_bind_labels(h, y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
    for (int red = KD_REDUCTION_MEAN; red <= KD_REDUCTION_NONE; red++) {
        for (int e = 0; e < 6; e++)
            g[e] = 9.0f;
        loss[0] = loss[1] = 9.0f;
        kd_loss_set_int(h, KD_PARAM_REDUCTION, red);
        ck_assert_int_eq(kd_loss_forward_backward(h, 2, loss), KD_OK);
        ck_assert(loss[0] == 0.0f);
        if (red == KD_REDUCTION_NONE)
            ck_assert(loss[1] == 0.0f);
        ck_assert(per[0] == 0.0f && per[1] == 0.0f);
        for (int e = 0; e < 6; e++)
            ck_assert(g[e] == 0.0f);
    }
    kd_loss_destroy(h);
}
END_TEST

START_TEST(empty_batch_gives_zero_loss)
{
    float s[1] = {NAN}, g[1] = {5.0f}, loss = 9.0f;
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 4);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 4);
    kd_loss_bind_matrix(h, KD_ARG_TARGET, s, 4);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 4);
    ck_assert_int_eq(kd_loss_forward_backward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f && g[0] == 5.0f);
    kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
    loss = 9.0f;
    ck_assert_int_eq(kd_loss_forward(h, 0, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

START_TEST(nan_and_inf_propagate_to_their_row_by_default)
{
    float s[9] = {0.5f, 1.0f, -1.0f, 0.2f, NAN, 0.3f, INFINITY, 0.0f, 1.0f};
    float g[9], per[3], loss;
    int32_t y[3] = {0, 2, 1};
    kd_loss *h;
    kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, 3);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3);
    kd_loss_bind_labels(h, y);
    kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3);
    kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
    ck_assert_int_eq(kd_loss_forward_backward(h, 3, &loss), KD_OK);
    ck_assert(isnan(loss));
    ck_assert(isfinite(per[0]) && isnan(per[1]) && isnan(per[2])); /* +Inf logit gives NaN */
    for (int j = 0; j < 3; j++)
        ck_assert(isfinite(g[j]) && isnan(g[3 + j]) && isnan(g[6 + j]));

    /* -Inf on a class with zero target is a valid logit: softmax 0 there */
    float t[3] = {-INFINITY, 0.0f, 0.0f};
    int32_t y1 = 1;
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, t, 3);
    kd_loss_bind_labels(h, &y1);
    ck_assert_int_eq(kd_loss_forward_backward(h, 1, &loss), KD_OK);
    ck_assert(kdt_close(loss, log(2.0), 1e-6, 0));
    ck_assert(g[0] == 0.0f && kdt_close(g[1], -0.5, 1e-6, 0));
    /* ... but with label smoothing that class has target mass: +Inf loss as PyTorch */
    kd_loss_set_float(h, KD_PARAM_LABEL_SMOOTHING, 0.1);
    ck_assert_int_eq(kd_loss_forward(h, 1, &loss), KD_OK);
    ck_assert(isinf(loss) && loss > 0);
    kd_loss_destroy(h);
}
END_TEST

/* -sum_j q_j log softmax(s)_j in double over the q_j != 0 (0 log p = 0), q =
 * lw onehot(y) + (1 - lw) softmax(t / T) (lw = 0 without a label); g = p sum q - q */
static double ce_ref_row(const float *s, const float *t, int64_t c, double inv_t, int32_t y,
                         double lw, double *g)
{
    double ms = -INFINITY, mt = -INFINITY, ss = 0.0, st = 0.0, sq = 0.0, loss = 0.0;
    for (int64_t j = 0; j < c; j++) {
        ms = s[j] > ms ? s[j] : ms;
        mt = t[j] > mt ? t[j] : mt;
    }
    for (int64_t j = 0; j < c; j++) {
        ss += exp(s[j] - ms);
        st += exp((t[j] - mt) * inv_t);
    }
    const double w = y >= 0 ? lw : 0.0;
    for (int64_t j = 0; j < c; j++) {
        const double q = (j == y ? w : 0.0) + (1.0 - w) * exp((t[j] - mt) * inv_t) / st;
        if (q != 0.0)
            loss -= q * ((s[j] - ms) - log(ss));
        g[j] = -q;
        sq += q;
    }
    for (int64_t j = 0; j < c; j++)
        g[j] += exp(s[j] - ms) / ss * sq;
    return loss;
}

/* Random logits with one -Inf student logit per row where the teacher's
 * softmax is exactly 0 (teacher logit -1e4): that class adds nothing, in
 * short rows and long ones, with a separate gradient and in place; with
 * label weight 1 the teacher has no weight and a -Inf logit anywhere but the
 * label adds nothing either, while a teacher giving that class mass makes
 * the loss +Inf. */
START_TEST(minus_inf_student_under_a_zero_target_adds_nothing)
{
    static const int64_t cs[] = {4, 100, 300, 9000};
    enum { N = 17 };
    kdt_rng rng;
    kdt_seed(&rng, 77);
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int64_t c = cs[ci];
        const size_t nc = (size_t)(N * c);
        float *s = malloc(nc * sizeof *s), *t = malloc(nc * sizeof *t), *g = malloc(nc * sizeof *g);
        float *sc = malloc(nc * sizeof *sc), per[N], loss;
        double *gr = malloc(nc * sizeof *gr), ref[N];
        int32_t y[N];
        for (int lw1 = 0; lw1 < 2; lw1++) {
            kdt_fill_normal(&rng, s, nc, 3.0);
            kdt_fill_normal(&rng, t, nc, 3.0);
            double mean = 0.0;
            for (int i = 0; i < N; i++) {
                const int64_t k = (i * 7 + 1) % c;
                y[i] = (int32_t)((k + 1) % c);
                s[i * c + k] = -INFINITY;
                if (!lw1) /* label weight 1: the teacher may give k mass, it has no weight */
                    t[i * c + k] = -1e4f;
                ref[i] = ce_ref_row(s + i * c, t + i * c, c, 0.5, lw1 ? y[i] : -1, 1.0, gr + i * c);
                mean += ref[i] / N;
            }
            for (int in_place = 0; in_place < 2; in_place++) {
                memcpy(sc, s, nc * sizeof *s);
                kd_loss *h;
                ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, c), KD_OK);
                kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0);
                if (lw1) {
                    kd_loss_set_float(h, KD_PARAM_LABEL_WEIGHT, 1.0);
                    kd_loss_bind_labels(h, y);
                }
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, sc, c);
                kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, in_place ? sc : g, c);
                kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
                ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
                const float *gg = in_place ? sc : g;
                ck_assert_msg(kdt_close(loss, mean, 1e-5, 1e-6),
                              "c %ld lw1 %d in place %d: loss %g / %g", (long)c, lw1, in_place,
                              loss, mean);
                for (int i = 0; i < N; i++)
                    ck_assert_msg(kdt_close(per[i], ref[i], 1e-5, 1e-6), "c %ld row %d: %g / %g",
                                  (long)c, i, per[i], ref[i]);
                for (size_t j = 0; j < nc; j++)
                    ck_assert_msg(fabs(gg[j] - gr[j] / N) < 1e-6, "c %ld lw1 %d: g[%zu] = %g / %g",
                                  (long)c, lw1, j, gg[j], gr[j] / N);
                kd_loss_destroy(h);
            }
        }
        /* a teacher giving the -Inf class mass: +Inf */
        kd_loss *h;
        ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_CROSS_ENTROPY, c), KD_OK);
        for (int i = 0; i < N; i++)
            t[i * c + (i * 7 + 1) % c] = 0.0f;
        kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, c);
        ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
        ck_assert(isinf(loss) && loss > 0);
        kd_loss_destroy(h);
        free(s);
        free(t);
        free(g);
        free(sc);
        free(gr);
    }
}
END_TEST

/* Issue 16 point 9: in a confident row (p_y = 0.99996) the gradient at the
 * argmax, p_y - q_y, was a difference of two numbers near 1 (relative error
 * 1e-3), and the loss -log p_y came from the float log of 1 + 4e-5.  CE with
 * labels, CE with a teacher target at T = 1 (q_y = 0.99992) and pseudo-label
 * (teacher = student, threshold 0.5), short rows (C = 10) and row kernels
 * (C = 300), out of place and in place, forward and fused; against a
 * long-double reference. */
static void confident_reference(const float *s, const float *t, int32_t y, int64_t c,
                                long double *loss, long double *g)
{
    long double ms = s[0], mt = t ? t[0] : 0.0L, zs = 0.0L, zt = 0.0L;
    for (int64_t j = 1; j < c; j++) {
        ms = fmaxl(ms, s[j]);
        if (t)
            mt = fmaxl(mt, t[j]);
    }
    for (int64_t j = 0; j < c; j++) {
        zs += expl(s[j] - ms);
        if (t)
            zt += expl(t[j] - mt);
    }
    *loss = 0.0L;
    for (int64_t j = 0; j < c; j++) {
        const long double q = t ? expl(t[j] - mt) / zt : (j == y ? 1.0L : 0.0L);
        const long double lp = s[j] - ms - logl(zs);
        *loss -= q * lp;
        g[j] = expl(lp) - q;
    }
}

START_TEST(confident_rows_keep_the_gradient_at_the_argmax_and_the_small_loss)
{
    static const int64_t widths[] = {10, 300};
    enum { N = 4, CMAX = 300 };
    kdt_rng r;
    kdt_seed(&r, 1619);
    int cases = 0;
    for (size_t w = 0; w < 2; w++)
        for (int what = 0; what < 3; what++) /* CE labels, CE teacher, pseudo-label */
            for (int in_place = 0; in_place < 2; in_place++) {
                const int64_t c = widths[w];
                float s[N * CMAX], t[N * CMAX], g[N * CMAX], per[N], per2[N], loss;
                int32_t y[N];
                kdt_fill_normal(&r, s, (size_t)(N * c), 0.3);
                for (int i = 0; i < N; i++) {
                    y[i] = (int32_t)(kdt_next(&r) % (uint64_t)c);
                    s[i * c + y[i]] = logf((float)(c - 1) / 4e-5f); /* 1 - p_y ~ 4e-5 */
                    for (int64_t j = 0; j < c; j++)
                        t[i * c + j] = s[i * c + j] - (j == y[i] ? 0.7f : 0.0f);
                }
                const float *tt = what == 1 ? t : NULL;
                long double rl[N], rg[N * CMAX];
                for (int i = 0; i < N; i++)
                    confident_reference(s + i * c, tt ? tt + i * c : NULL, y[i], c, &rl[i],
                                        rg + i * c);
                float *gb = in_place ? s : g;
                float s0[N * CMAX];
                memcpy(s0, s, sizeof s0);
                kd_loss *h;
                kd_loss_create(&h, what == 2 ? KD_LOSS_PSEUDO_LABEL : KD_LOSS_CROSS_ENTROPY, c);
                kd_loss_set_int(h, KD_PARAM_REDUCTION, KD_REDUCTION_SUM);
                kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, c);
                if (what == 0)
                    kd_loss_bind_labels(h, y);
                else
                    kd_loss_bind_matrix(h, KD_ARG_TEACHER, what == 1 ? t : s0, c);
                if (what == 2)
                    kd_loss_set_float(h, KD_PARAM_THRESHOLD, 0.5);
                kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per2, 0);
                ck_assert_int_eq(kd_loss_forward(h, N, &loss), KD_OK);
                kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gb, c);
                kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, per, 0);
                ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
                for (int i = 0; i < N; i++) {
                    ck_assert_msg(per[i] == per2[i], "forward and fused differ");
                    ck_assert_msg(fabsl(per[i] - rl[i]) <= 1e-5L * rl[i],
                                  "C %lld kind %d in place %d row %d: loss %.9g, reference %.12Lg",
                                  (long long)c, what, in_place, i, per[i], rl[i]);
                    for (int64_t j = 0; j < c; j++) {
                        const long double e = rg[i * c + j];
                        ck_assert_msg(
                            fabsl(gb[i * c + j] - e) <= 1e-5L * fabsl(e) + 1e-12L,
                            "C %lld kind %d in place %d row %d: g[%lld] = %.9g, reference %.12Lg",
                            (long long)c, what, in_place, i, (long long)j, gb[i * c + j], e);
                    }
                    cases++;
                }
                kd_loss_destroy(h);
            }
    ck_assert_int_eq(cases, 2 * 3 * 2 * N);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cross_entropy");
    TCase *tc = tcase_create("cross_entropy");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, hard_labels_match_reference);
    tcase_add_test(tc, hard_label_value_is_log_sum_exp_minus_true_logit);
    tcase_add_test(tc, ignored_rows_give_zero_and_do_not_count_in_the_mean);
    tcase_add_test(tc, label_smoothing_uniform_gives_eps_over_c_to_every_class);
    tcase_add_test(tc, label_smoothing_others_gives_eps_over_c_minus_1_to_wrong_classes);
    tcase_add_test(tc, probability_target_matches_reference);
    tcase_add_test(tc, unnormalised_probability_target_gradient_scales_softmax_by_its_sum);
    tcase_add_test(tc, teacher_target_is_softmax_of_teacher_over_temperature);
    tcase_add_test(tc, several_teachers_are_averaged_in_logit_space);
    tcase_add_test(tc, soft_label_mixing_blends_onehot_and_soft_target_by_label_weight);
    tcase_add_test(tc, per_sample_weights_scale_rows_but_not_the_mean_denominator);
    tcase_add_test(tc, single_row_and_two_classes);
    tcase_add_test(tc, one_class_gives_zero_loss_and_zero_gradient);
    tcase_add_test(tc, logits_of_magnitude_1e4_give_finite_correct_results);
    tcase_add_test(tc, all_rows_ignored_give_zero_loss_and_zero_gradient);
    tcase_add_test(tc, empty_batch_gives_zero_loss);
    tcase_add_test(tc, nan_and_inf_propagate_to_their_row_by_default);
    tcase_add_test(tc, minus_inf_student_under_a_zero_target_adds_nothing);
    tcase_add_test(tc, confident_rows_keep_the_gradient_at_the_argmax_and_the_small_loss);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
