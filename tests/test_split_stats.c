/* Split batch statistics (loss.h, docs/distributed.md): a batch cut into
 * shards ("ranks"), each computing kd_loss_local_stats, the buffers summed
 * by hand (what MPI_Allreduce(SUM) does), each finishing with
 * kd_loss_finish, gives the whole batch's loss and gradient rows.  Also the
 * FlexMatch all-gather rule of docs/labels.md. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdlib/flexmatch.h"
#include "kdtest.h"

enum { N = 37, C = 7, LD = 9 };

typedef enum { CB_LOGITS, CB_PROBS, MCC, FAIR } variant;
static const char *const variant_name[] = {"class balance (logits)", "class balance (probs)", "MCC",
                                           "fairness"};

/* FAIRNESS: a 0/1 mask over the N rows (rows 0 and 1 dropped, every shard
 * of at least 3 rows keeps some), its class vectors (label_hist 0 at class 4) */
static float fair_w[N];
static const float fair_pm[C] = {0.1f, 0.2f, 0.15f, 0.05f, 0.2f, 0.1f, 0.2f};
static const float fair_lh[C] = {0.2f, 0.1f, 0.15f, 0.25f, 0.0f, 0.1f, 0.2f};

/* Bind the student rows [off, off + n) of x and, for FAIRNESS, their weights. */
static void bind_rows(kd_loss *h, variant v, const float *x, int64_t off)
{
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, x + off * LD, LD), KD_OK);
    if (v == FAIR)
        ck_assert_int_eq(kd_loss_bind_weights(h, fair_w + off), KD_OK);
}

/* Shard sizes summing to N (0 ends a list): k = 1, 2, 3, 4, uneven, empty shards. */
static const int64_t splits[][5] = {
    {37}, {19, 18}, {1, 36}, {12, 12, 13}, {30, 0, 7}, {0, 37, 0}, {3, 10, 0, 24},
};
static const int split_count[] = {1, 2, 2, 3, 3, 3, 4};

static void make_input(float *x, variant v, uint64_t seed)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, x, N * LD, 2.0);
    if (v == CB_PROBS)
        for (int i = 0; i < N; i++) {
            float *row = x + i * LD;
            double m = -INFINITY, s = 0.0;
            for (int j = 0; j < C; j++)
                m = row[j] > m ? row[j] : m;
            for (int j = 0; j < C; j++)
                s += exp(row[j] - m);
            for (int j = 0; j < C; j++)
                row[j] = (float)(exp(row[j] - m) / s);
        }
}

static kd_loss *make_loss(variant v)
{
    kd_loss *h;
    if (v == FAIR) {
        for (int i = 0; i < N; i++)
            fair_w[i] = i < 2 || i % 3 == 1 ? 0.0f : 1.0f;
        ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_FAIRNESS, C), KD_OK);
        ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_CLASS_PROBS, fair_pm), KD_OK);
        ck_assert_int_eq(kd_loss_bind_vector(h, KD_ARG_LABEL_HISTOGRAM, fair_lh), KD_OK);
        return h;
    }
    ck_assert_int_eq(kd_loss_create(&h, v == MCC ? KD_LOSS_MCC : KD_LOSS_CLASS_BALANCE, C), KD_OK);
    if (v == MCC)
        ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.5), KD_OK);
    else
        ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_INPUT_TYPE,
                                         v == CB_PROBS ? KD_INPUT_PROBABILITIES : KD_INPUT_LOGITS),
                         KD_OK);
    return h;
}

static int64_t stats_size(const kd_loss *h)
{
    int64_t m = -1;
    ck_assert_int_eq(kd_loss_stats_size(h, &m), KD_OK);
    return m;
}

/* The whole batch on one handle: loss and gradient. */
static float whole_batch(variant v, const float *x, float *g)
{
    kd_loss *h = make_loss(v);
    float loss;
    bind_rows(h, v, x, 0);
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD), KD_OK);
    ck_assert_int_eq(kd_loss_forward_backward(h, N, &loss), KD_OK);
    kd_loss_destroy(h);
    return loss;
}

static double max_abs(const float *g)
{
    double m = 0.0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            m = fmax(m, fabs(g[i * LD + j]));
    return m;
}

static double max_diff(const float *a, const float *b)
{
    double m = 0.0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            m = fmax(m, fabs((double)a[i * LD + j] - b[i * LD + j]));
    return m;
}

/* Run one split.  shared = 0: one handle per shard (a rank each: finish
 * reuses the rows of its local_stats); shared = 1: one handle for every
 * shard, rebound in between (finish recomputes the rows). */
static void run_split(variant v, const float *x, int s, int shared, float *g, float *losses)
{
    const int k = split_count[s];
    kd_loss *hs[4];
    double *local[4], *global;
    int64_t off[5] = {0};
    for (int r = 0; r < k; r++)
        off[r + 1] = off[r] + splits[s][r];
    ck_assert_int_eq(off[k], N);
    for (int r = 0; r < k; r++)
        hs[r] = (shared && r > 0) ? hs[0] : make_loss(v);
    const int64_t m = stats_size(hs[0]);
    ck_assert_int_eq(m, v == MCC ? C * C + 2 : v == FAIR ? 2 * C + 1 : C + 1);
    global = calloc((size_t)m, sizeof(double));
    for (int r = 0; r < k; r++) {
        local[r] = malloc(sizeof(double) * (size_t)m);
        for (int64_t q = 0; q < m; q++)
            local[r][q] = NAN; /* every entry must be written */
        bind_rows(hs[r], v, x, off[r]);
        ck_assert_int_eq(kd_loss_local_stats(hs[r], splits[s][r], local[r]), KD_OK);
        ck_assert(local[r][m - 1] == (double)splits[s][r]);
        for (int64_t q = 0; q < m; q++) /* the all-reduce */
            global[q] += local[r][q];
    }
    for (int r = 0; r < k; r++) {
        bind_rows(hs[r], v, x, off[r]);
        ck_assert_int_eq(kd_loss_bind_output(hs[r], KD_ARG_GRAD_STUDENT, g + off[r] * LD, LD),
                         KD_OK);
        losses[r] = NAN;
        ck_assert_int_eq(kd_loss_finish(hs[r], splits[s][r], global, &losses[r]), KD_OK);
    }
    for (int r = 0; r < k; r++) {
        if (!(shared && r > 0))
            kd_loss_destroy(hs[r]);
        free(local[r]);
    }
    free(global);
}

START_TEST(shards_summed_and_finished_give_the_whole_batch_loss_and_gradient_rows)
{
    for (variant v = CB_LOGITS; v <= FAIR; v++) {
        float x[N * LD], gw[N * LD], gs[N * LD], losses[4];
        make_input(x, v, 100 + v);
        const float lw = whole_batch(v, x, gw);
        const double scale = max_abs(gw);
        ck_assert(scale > 0.0);
        for (int s = 0; s < (int)(sizeof split_count / sizeof *split_count); s++)
            for (int shared = 0; shared < 2; shared++) {
                for (int q = 0; q < N * LD; q++)
                    gs[q] = NAN;
                run_split(v, x, s, shared, gs, losses);
                for (int r = 0; r < split_count[s]; r++)
                    ck_assert_msg(kdt_close(losses[r], lw, 2e-6, 1e-7),
                                  "%s split %d rank %d: loss %.9g vs whole batch %.9g",
                                  variant_name[v], s, r, losses[r], lw);
                double d = max_diff(gs, gw);
                ck_assert_msg(d <= 2e-5 * scale,
                              "%s split %d shared %d: gradient off by %g (max %g)", variant_name[v],
                              s, shared, d, scale);
            }
    }
}
END_TEST

START_TEST(one_rank_with_the_whole_batch_is_bit_identical_to_forward_backward)
{
    for (variant v = CB_LOGITS; v <= FAIR; v++) {
        float x[N * LD], gw[N * LD], gs[N * LD], loss = NAN;
        make_input(x, v, 200 + v);
        const float lw = whole_batch(v, x, gw);
        kd_loss *h = make_loss(v);
        double st[C * C + 2];
        bind_rows(h, v, x, 0);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, gs, LD);
        memcpy(gs, gw, sizeof gs); /* padding columns equal */
        for (int q = 0; q < N * LD; q++)
            if (q % LD < C)
                gs[q] = NAN;
        ck_assert_int_eq(kd_loss_local_stats(h, N, st), KD_OK);
        ck_assert_int_eq(kd_loss_finish(h, N, st, &loss), KD_OK);
        ck_assert_msg(loss == lw, "%s: %.9g vs %.9g", variant_name[v], loss, lw);
        ck_assert(memcmp(gs, gw, sizeof gs) == 0);
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(finish_without_gradient_output_gives_the_loss_only)
{
    for (variant v = CB_LOGITS; v <= FAIR; v++) {
        float x[N * LD], gw[N * LD], loss = NAN;
        make_input(x, v, 300 + v);
        const float lw = whole_batch(v, x, gw);
        kd_loss *h = make_loss(v);
        double st[C * C + 2];
        bind_rows(h, v, x, 0);
        ck_assert_int_eq(kd_loss_local_stats(h, N, st), KD_OK);
        ck_assert_int_eq(kd_loss_finish(h, N, st, &loss), KD_OK);
        ck_assert(loss == lw);
        float l2 = NAN;
        ck_assert_int_eq(kd_loss_forward(h, N, &l2), KD_OK);
        ck_assert(l2 == lw);
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(finish_in_place_over_the_shard)
{
    for (variant v = CB_LOGITS; v <= FAIR; v++) {
        float x[N * LD], gw[N * LD], loss;
        make_input(x, v, 400 + v);
        const float lw = whole_batch(v, x, gw);
        kd_loss *a = make_loss(v), *b = make_loss(v);
        double sa[C * C + 2], sb[C * C + 2];
        const int64_t m = stats_size(a), na = 15;
        bind_rows(a, v, x, 0);
        bind_rows(b, v, x, na);
        kd_loss_bind_output(a, KD_ARG_GRAD_STUDENT, x, LD);
        kd_loss_bind_output(b, KD_ARG_GRAD_STUDENT, x + na * LD, LD);
        ck_assert_int_eq(kd_loss_local_stats(a, na, sa), KD_OK);
        ck_assert_int_eq(kd_loss_local_stats(b, N - na, sb), KD_OK);
        for (int64_t q = 0; q < m; q++)
            sa[q] = sb[q] = sa[q] + sb[q];
        ck_assert_int_eq(kd_loss_finish(a, na, sa, &loss), KD_OK);
        ck_assert(kdt_close(loss, lw, 2e-6, 1e-7));
        ck_assert_int_eq(kd_loss_finish(b, N - na, sb, &loss), KD_OK);
        ck_assert(kdt_close(loss, lw, 2e-6, 1e-7));
        ck_assert(max_diff(x, gw) <= 2e-5 * max_abs(gw));
        kd_loss_destroy(a);
        kd_loss_destroy(b);
    }
}
END_TEST

START_TEST(empty_global_batch_gives_zero_and_writes_nothing)
{
    for (variant v = CB_LOGITS; v <= FAIR; v++) {
        float x[LD] = {0}, g[LD], loss = 5.0f;
        for (int j = 0; j < LD; j++)
            g[j] = 7.0f;
        kd_loss *h = make_loss(v);
        double st[C * C + 2];
        kd_loss_bind_matrix(h, KD_ARG_STUDENT, x, LD);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
        ck_assert_int_eq(kd_loss_local_stats(h, 0, st), KD_OK);
        for (int64_t q = 0; q < stats_size(h); q++)
            ck_assert(st[q] == 0.0);
        ck_assert_int_eq(kd_loss_finish(h, 0, st, &loss), KD_OK);
        ck_assert(loss == 0.0f);
        for (int j = 0; j < LD; j++)
            ck_assert(g[j] == 7.0f);
        kd_loss_destroy(h);
    }
}
END_TEST

/* Every error leaves stats, the loss and the gradient as they were. */
static void expect_untouched(const double *st, int64_t m, float loss, const float *g)
{
    for (int64_t q = 0; q < m; q++)
        ck_assert(st[q] == 1234.5);
    ck_assert(loss == 9.0f);
    for (int q = 0; q < N * LD; q++)
        ck_assert(g[q] == 8.0f);
}

START_TEST(documented_errors_leave_every_output_untouched)
{
    enum { M = C * C + 2 };
    float x[N * LD], g[N * LD], loss = 9.0f;
    double st[M], good[M];
    make_input(x, MCC, 500);
    for (int q = 0; q < N * LD; q++)
        g[q] = 8.0f;
    for (int q = 0; q < M; q++)
        st[q] = 1234.5;
    int64_t count = -7;

    /* stats_size */
    kd_loss *kl;
    ck_assert_int_eq(kd_loss_create(&kl, KD_LOSS_KL_DISTILL, C), KD_OK);
    ck_assert_int_eq(kd_loss_stats_size(NULL, &count), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_stats_size(kl, &count), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(count, -7);
    /* wrong kind */
    kd_loss_bind_matrix(kl, KD_ARG_STUDENT, x, LD);
    ck_assert_int_eq(kd_loss_local_stats(kl, N, st), KD_ERR_UNSUPPORTED);
    ck_assert(strstr(kd_loss_last_error(kl), "local_stats") != NULL);
    ck_assert_int_eq(kd_loss_finish(kl, N, good, &loss), KD_ERR_UNSUPPORTED);
    kd_loss_destroy(kl);
    ck_assert_int_eq(kd_loss_local_stats(NULL, N, st), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_finish(NULL, N, good, &loss), KD_ERR_NULL_POINTER);

    for (variant v = CB_LOGITS; v <= FAIR; v++) {
        kd_loss *h = make_loss(v);
        const int64_t m = stats_size(h);
        ck_assert_int_eq(kd_loss_stats_size(h, NULL), KD_ERR_NULL_POINTER);
        /* missing student */
        ck_assert_int_eq(kd_loss_local_stats(h, N, st), KD_ERR_MISSING_INPUT);
        ck_assert_int_eq(kd_loss_finish(h, N, st, &loss), KD_ERR_MISSING_INPUT);
        make_input(x, v, 500 + v);
        bind_rows(h, v, x, 0);
        ck_assert_int_eq(kd_loss_local_stats(h, N, good), KD_OK);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
        /* NULL buffers, negative n */
        ck_assert_int_eq(kd_loss_local_stats(h, N, NULL), KD_ERR_NULL_POINTER);
        ck_assert_int_eq(kd_loss_finish(h, N, NULL, &loss), KD_ERR_NULL_POINTER);
        ck_assert_int_eq(kd_loss_finish(h, N, good, NULL), KD_ERR_NULL_POINTER);
        ck_assert_int_eq(kd_loss_local_stats(h, -1, st), KD_ERR_INVALID_ARGUMENT);
        ck_assert_int_eq(kd_loss_finish(h, -1, good, &loss), KD_ERR_INVALID_ARGUMENT);
        /* stats written over the student */
        ck_assert_int_eq(kd_loss_local_stats(h, N, (double *)(void *)(x + 4)), KD_ERR_ALIASING);
        /* global stats inside the gradient output */
        ck_assert_int_eq(kd_loss_finish(h, N, (const double *)(const void *)(g + 2), &loss),
                         KD_ERR_ALIASING);
        /* wrong sizes: a count below this rank's rows (e.g. the buffer was
         * not summed), not an integer, NaN */
        double bad[M];
        memcpy(bad, good, sizeof(double) * (size_t)m);
        bad[m - 1] = N - 1;
        ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
        ck_assert(strstr(kd_loss_last_error(h), "row count") != NULL);
        bad[m - 1] = N + 0.5;
        ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
        bad[m - 1] = NAN;
        ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
        bad[m - 1] = 1e300;
        ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
        memcpy(bad, good, sizeof(double) * (size_t)m);
        if (v == MCC) {
            bad[m - 2] = 0.0; /* S */
            ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
        } else if (v == FAIR) {
            bad[C] = -1.0; /* a negative histogram count */
            ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
            ck_assert(strstr(kd_loss_last_error(h), "negative") != NULL);
        } else {
            bad[0] = 2.0 * N; /* a column mean of 2 */
            ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_INVALID_ARGUMENT);
            ck_assert(strstr(kd_loss_last_error(h), "class 0") != NULL);
        }
        /* non-finite statistics under KD_PARAM_CHECK_FINITE */
        memcpy(bad, good, sizeof(double) * (size_t)m);
        bad[1] = INFINITY;
        kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 1);
        ck_assert_int_eq(kd_loss_finish(h, N, bad, &loss), KD_ERR_NOT_FINITE);
        x[LD + 1] = NAN;
        ck_assert_int_eq(kd_loss_local_stats(h, N, st), KD_ERR_NOT_FINITE);
        ck_assert_int_eq(kd_loss_finish(h, N, good, &loss), KD_ERR_NOT_FINITE);
        kd_loss_set_int(h, KD_PARAM_CHECK_FINITE, 0);
        make_input(x, v, 500 + v);
        /* gradient overlapping the student without being it */
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, x + 1, LD);
        ck_assert_int_eq(kd_loss_finish(h, N, good, &loss), KD_ERR_ALIASING);
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, LD);
        expect_untouched(st, M, loss, g);
        /* and the handle still works */
        ck_assert_int_eq(kd_loss_finish(h, N, good, &loss), KD_OK);
        ck_assert(isfinite(loss));
        loss = 9.0f;
        for (int q = 0; q < N * LD; q++)
            g[q] = 8.0f;
        kd_loss_destroy(h);
    }
}
END_TEST

/* FlexMatch (docs/labels.md, docs/distributed.md): each rank all-gathers the
 * (index, confidence, prediction) triples of every rank's batch in rank order
 * and applies the same kd_flexmatch_update: the replicas stay identical to
 * one process updating with the concatenated batch. */
START_TEST(flexmatch_all_gathered_updates_keep_replicas_equal_to_one_process)
{
    enum { NS = 50, NC = 4, R = 3, B = 8 };
    kd_flexmatch *single, *rank[R];
    ck_assert_int_eq(kd_flexmatch_create(&single, NS, NC), KD_OK);
    for (int r = 0; r < R; r++)
        ck_assert_int_eq(kd_flexmatch_create(&rank[r], NS, NC), KD_OK);
    kdt_rng rng;
    kdt_seed(&rng, 77);
    for (int step = 0; step < 20; step++) {
        int64_t idx[R * B];
        float conf[R * B];
        int32_t pred[R * B];
        /* the concatenation of the ranks' batches (rank r owns rows r*B..) */
        for (int k = 0; k < R * B; k++) {
            idx[k] = (int64_t)(kdt_uniform(&rng) * NS); /* repeats across ranks allowed */
            conf[k] = (float)(0.8 + 0.2 * kdt_uniform(&rng));
            pred[k] = (int32_t)(kdt_uniform(&rng) * NC);
        }
        float tau_single[NC], tau_rank[NC];
        ck_assert_int_eq(kd_flexmatch_thresholds(single, tau_single), KD_OK);
        for (int r = 0; r < R; r++) {
            ck_assert_int_eq(kd_flexmatch_thresholds(rank[r], tau_rank), KD_OK);
            ck_assert(memcmp(tau_single, tau_rank, sizeof tau_rank) == 0);
        }
        ck_assert_int_eq(kd_flexmatch_update(single, R * B, idx, conf, pred), KD_OK);
        for (int r = 0; r < R; r++) /* the all-gathered batch, in rank order */
            ck_assert_int_eq(kd_flexmatch_update(rank[r], R * B, idx, conf, pred), KD_OK);
    }
    int32_t ps[NS], pr[NS];
    int64_t cs[NC], cr[NC], us, ur;
    kd_flexmatch_predictions(single, ps);
    kd_flexmatch_counts(single, cs, &us);
    for (int r = 0; r < R; r++) {
        kd_flexmatch_predictions(rank[r], pr);
        kd_flexmatch_counts(rank[r], cr, &ur);
        ck_assert(memcmp(ps, pr, sizeof ps) == 0);
        ck_assert(memcmp(cs, cr, sizeof cs) == 0 && us == ur);
        kd_flexmatch_destroy(rank[r]);
    }
    kd_flexmatch_destroy(single);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("split_stats");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, shards_summed_and_finished_give_the_whole_batch_loss_and_gradient_rows);
    tcase_add_test(tc, one_rank_with_the_whole_batch_is_bit_identical_to_forward_backward);
    tcase_add_test(tc, finish_without_gradient_output_gives_the_loss_only);
    tcase_add_test(tc, finish_in_place_over_the_shard);
    tcase_add_test(tc, empty_global_batch_gives_zero_and_writes_nothing);
    tcase_add_test(tc, documented_errors_leave_every_output_untouched);
    tcase_add_test(tc, flexmatch_all_gathered_updates_keep_replicas_equal_to_one_process);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
