/* Split threshold statistics (threshold.h, docs/labels.md, docs/distributed.md):
 * a batch cut into shards ("ranks"), each computing kd_threshold_local_stats
 * (and, for AdaMatch, kd_threshold_local_labeled_stats), the buffers summed
 * by hand (what all_reduce(SUM) does) and applied with
 * kd_threshold_update_stats, gives every state array and the next weights of
 * one handle updated with the whole batch by kd_threshold_update_probs.
 *
 * Bit-identical when the arithmetic is the same sums: with one rank, and with
 * any split when the rows are multiples of 2^-10 (every sum exact in double);
 * there the state files (the double state) are compared byte for byte too.
 * Otherwise (random float rows over several ranks; SoftMatch's variances,
 * which come from shifted sums instead of two passes) within TOL. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/threshold.h"
#include "kdt_threshold.h"
#include "kdtest.h"

enum { N = 37, NL = 11, C = 7, LD = 9, STEPS = 4, MAX_STATS = 3 + 3 * C, MAX_STATE = 19 };
#define TOL 1e-6

/* Shard sizes summing to N (0 ends a list): k = 1, 2, 3, 4, uneven, empty shards. */
static const int64_t splits[][5] = {
    {37}, {19, 18}, {1, 36}, {12, 12, 13}, {30, 0, 7}, {0, 37, 0}, {3, 10, 0, 24},
};
static const int split_count[] = {1, 2, 2, 3, 3, 3, 4};
enum { NSPLITS = sizeof split_count / sizeof split_count[0] };

typedef struct {
    const char *name;
    kd_threshold_algorithm algo;
    int exact; /* the split's arithmetic is update_probs's sums */
    kd_threshold_param p1;
    double v1;
    kd_threshold_param p2;
    double v2;
} config;

/* p = 0: none; an int parameter when v is whole and the key is int. */
static const config configs[] = {
    {"freematch", KD_THRESHOLD_FREEMATCH, 1, 0, 0, 0, 0},
    {"freematch clip", KD_THRESHOLD_FREEMATCH, 1, KD_THRESHOLD_PARAM_CLIP, 0.3,
     KD_THRESHOLD_PARAM_MOMENTUM, 0.6},
    {"softmatch", KD_THRESHOLD_SOFTMATCH, 0, KD_THRESHOLD_PARAM_DIST_ALIGN, 0,
     KD_THRESHOLD_PARAM_MOMENTUM, 0.5},
    {"softmatch per class", KD_THRESHOLD_SOFTMATCH, 0, KD_THRESHOLD_PARAM_DIST_ALIGN, 0,
     KD_THRESHOLD_PARAM_PER_CLASS, 1},
    {"adamatch", KD_THRESHOLD_ADAMATCH, 1, KD_THRESHOLD_PARAM_MOMENTUM, 0.7, 0, 0},
    {"adamatch no align", KD_THRESHOLD_ADAMATCH, 1, KD_THRESHOLD_PARAM_DIST_ALIGN, 0,
     KD_THRESHOLD_PARAM_THRESHOLD, 0.5},
    {"dash", KD_THRESHOLD_DASH, 1, KD_THRESHOLD_PARAM_PERIOD, 2, 0, 0},
    {"debiaspl", KD_THRESHOLD_DEBIASPL, 1, KD_THRESHOLD_PARAM_MOMENTUM, 0.8,
     KD_THRESHOLD_PARAM_THRESHOLD, 0.4},
};
enum { NCONFIGS = sizeof configs / sizeof configs[0] };

static void set_param(kd_threshold *t, kd_threshold_param p, double v)
{
    if (!p)
        return;
    int64_t iv;
    if (kd_threshold_get_int(t, p, &iv) == KD_OK)
        ck_assert_int_eq(kd_threshold_set_int(t, p, (int64_t)v), KD_OK);
    else
        ck_assert_int_eq(kd_threshold_set_float(t, p, v), KD_OK);
}

static kd_threshold *make(const config *cf)
{
    kd_threshold *t = NULL;
    ck_assert_int_eq(kd_threshold_create(&t, cf->algo, N, C), KD_OK);
    set_param(t, cf->p1, cf->v1);
    set_param(t, cf->p2, cf->v2);
    return t;
}

/* n rows of stride LD: softmax rows, or (dyadic) multiples of 2^-10 in [0, 1]. */
static void make_rows(float *x, int64_t n, int dyadic, uint64_t seed)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        float *row = x + i * LD;
        double z[C], m = -INFINITY, s = 0.0;
        for (int j = 0; j < C; j++) {
            z[j] = 2.0 * kdt_normal(&r);
            m = z[j] > m ? z[j] : m;
        }
        for (int j = 0; j < C; j++)
            s += exp(z[j] - m);
        for (int j = 0; j < C; j++)
            row[j] = (float)(exp(z[j] - m) / s);
        if (dyadic)
            for (int j = 0; j < C; j++)
                row[j] = (float)(floor(row[j] * 1024.0) / 1024.0);
        row[C] = row[C + 1] = -7.0f; /* padding, never read */
    }
}

static int close_enough(double a, double b, int exact)
{
    return exact ? a == b || (isnan(a) && isnan(b)) : fabs(a - b) <= TOL * (1.0 + fabs(a));
}

KDT_STATE_DIR("kdt-threshold-split")

/* The state files of a and b, byte for byte: the double state, not only its
 * float32 copies. */
static void assert_same_file(const kd_threshold *a, const kd_threshold *b, const char *what)
{
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s", in_dir("a.state"));
    snprintf(pb, sizeof pb, "%s", in_dir("b.state"));
    ck_assert_int_eq(kd_threshold_save(a, pa), KD_OK);
    ck_assert_int_eq(kd_threshold_save(b, pb), KD_OK);
    size_t na = 0, nb = 0;
    unsigned char *fa = kdt_read_file(pa, &na), *fb = kdt_read_file(pb, &nb);
    ck_assert_ptr_nonnull(fa);
    ck_assert_ptr_nonnull(fb);
    ck_assert_msg(na == nb && memcmp(fa, fb, na) == 0, "%s: the state files differ", what);
    free(fa);
    free(fb);
}

/* Every float and int state array of ref equals split's (exactly, and then
 * the state files too, or within TOL). */
static void assert_same_state(const kd_threshold *ref, const kd_threshold *split, int exact,
                              const char *what)
{
    if (exact)
        assert_same_file(ref, split, what);
    for (kd_threshold_state s = 1; s <= MAX_STATE; s++) {
        const int64_t lens[2] = {1, C};
        for (int l = 0; l < 2; l++) {
            float a[C], b[C];
            int64_t ia[C], ib[C];
            if (kd_threshold_get_floats(ref, s, lens[l], a) == KD_OK) {
                ck_assert_int_eq(kd_threshold_get_floats(split, s, lens[l], b), KD_OK);
                for (int64_t j = 0; j < lens[l]; j++)
                    ck_assert_msg(close_enough(a[j], b[j], exact),
                                  "%s: state %d[%lld]: whole batch %.9g, split %.9g", what, (int)s,
                                  (long long)j, a[j], b[j]);
            }
            if (kd_threshold_get_ints(ref, s, lens[l], ia) == KD_OK) {
                ck_assert_int_eq(kd_threshold_get_ints(split, s, lens[l], ib), KD_OK);
                for (int64_t j = 0; j < lens[l]; j++)
                    ck_assert_msg(ia[j] == ib[j], "%s: int state %d[%lld]: %lld vs %lld", what,
                                  (int)s, (long long)j, (long long)ia[j], (long long)ib[j]);
            }
        }
    }
}

static void assert_same_weights(const kd_threshold *ref, const kd_threshold *split,
                                const float *rows, int exact, const char *what)
{
    float wa[N], wb[N];
    int32_t la[N], lb[N];
    ck_assert_int_eq(kd_threshold_weights_probs(ref, N, C, rows, LD, wa, la), KD_OK);
    ck_assert_int_eq(kd_threshold_weights_probs(split, N, C, rows, LD, wb, lb), KD_OK);
    for (int k = 0; k < N; k++) {
        ck_assert_msg(close_enough(wa[k], wb[k], exact), "%s: weight %d: %.9g vs %.9g", what, k,
                      wa[k], wb[k]);
        ck_assert_msg(la[k] == lb[k], "%s: pseudo-label %d: %d vs %d", what, k, la[k], lb[k]);
    }
}

/* One step of the split protocol over the shards of split sp. */
static void split_step(kd_threshold *t, int sp, const float *rows, const float *lab, int labeled)
{
    int64_t size;
    ck_assert_int_eq(kd_threshold_stats_size(t, &size), KD_OK);
    ck_assert_int_le(size, MAX_STATS);
    double total[MAX_STATS] = {0}, local[MAX_STATS];
    int64_t off = 0;
    const int k = split_count[sp];
    for (int r = 0; r < k; r++) {
        const int64_t n = splits[sp][r];
        const int64_t l0 = r * NL / k, l1 = (r + 1) * NL / k;
        for (int64_t i = 0; i < MAX_STATS; i++)
            local[i] = NAN; /* every element must be written */
        ck_assert_int_eq(kd_threshold_local_stats(t, n, C, rows + off * LD, LD, local), KD_OK);
        if (labeled)
            ck_assert_int_eq(
                kd_threshold_local_labeled_stats(t, l1 - l0, C, lab + l0 * LD, LD, local), KD_OK);
        for (int64_t i = 0; i < size; i++)
            total[i] += local[i];
        off += n;
    }
    ck_assert_int_eq(off, N);
    ck_assert_int_eq(kd_threshold_update_stats(t, total), KD_OK);
    ck_assert_str_eq(kd_threshold_last_error(t), "");
}

static void run_config(const config *cf, int dyadic)
{
    const int labeled = cf->algo == KD_THRESHOLD_ADAMATCH;
    static float rows[STEPS + 1][N * LD], lab[STEPS][NL * LD];
    for (int s = 0; s <= STEPS; s++)
        make_rows(rows[s], N, dyadic, 100 + (uint64_t)s);
    for (int s = 0; s < STEPS; s++)
        make_rows(lab[s], NL, dyadic, 200 + (uint64_t)s);
    for (int sp = 0; sp < NSPLITS; sp++) {
        kd_threshold *ref = make(cf), *split = make(cf);
        const int exact = cf->exact && (dyadic || split_count[sp] == 1);
        char what[128];
        for (int s = 0; s < STEPS; s++) {
            if (labeled)
                ck_assert_int_eq(kd_threshold_update_labeled_probs(ref, NL, C, lab[s], LD), KD_OK);
            ck_assert_int_eq(kd_threshold_update_probs(ref, N, C, rows[s], LD, NULL), KD_OK);
            split_step(split, sp, rows[s], lab[s], labeled);
            snprintf(what, sizeof what, "%s, %s rows, split %d, step %d", cf->name,
                     dyadic ? "dyadic" : "float", sp, s);
            assert_same_state(ref, split, exact, what);
            assert_same_weights(ref, split, rows[s + 1], exact, what);
        }
        kd_threshold_destroy(ref);
        kd_threshold_destroy(split);
    }
}

START_TEST(split_statistics_give_the_whole_batch_state_and_weights)
{
    for (int i = 0; i < NCONFIGS; i++) {
        run_config(&configs[i], 1);
        run_config(&configs[i], 0);
    }
}
END_TEST

START_TEST(stats_sizes_per_algorithm)
{
    const int64_t want[NCONFIGS] = {2 + 2 * C, 2 + 2 * C, 3 + 3 * C, 3 + 3 * C,
                                    3 + 2 * C, 3 + 2 * C, 1,         1 + C};
    for (int i = 0; i < NCONFIGS; i++) {
        kd_threshold *t = make(&configs[i]);
        int64_t size = -1;
        ck_assert_int_eq(kd_threshold_stats_size(t, &size), KD_OK);
        ck_assert_int_eq(size, want[i]);
        kd_threshold_destroy(t);
    }
}
END_TEST

START_TEST(empty_total_batch_changes_nothing)
{
    for (int i = 0; i < NCONFIGS; i++) {
        kd_threshold *t = make(&configs[i]), *fresh = make(&configs[i]);
        double stats[MAX_STATS];
        ck_assert_int_eq(kd_threshold_local_stats(t, 0, C, NULL, C, stats), KD_OK);
        if (configs[i].algo == KD_THRESHOLD_ADAMATCH)
            ck_assert_int_eq(kd_threshold_local_labeled_stats(t, 0, C, NULL, C, stats), KD_OK);
        ck_assert_int_eq(kd_threshold_update_stats(t, stats), KD_OK);
        assert_same_state(fresh, t, 1, configs[i].name);
        kd_threshold_destroy(t);
        kd_threshold_destroy(fresh);
    }
}
END_TEST

/* Configurations without additive statistics: every entry point refuses. */
START_TEST(configurations_without_additive_statistics_refuse_and_say_gather)
{
    static const config refusing[] = {
        {"flexmatch", KD_THRESHOLD_FLEXMATCH, 0, 0, 0, 0, 0},
        {"freematch quantile", KD_THRESHOLD_FREEMATCH, 0, KD_THRESHOLD_PARAM_USE_QUANTILE, 1, 0, 0},
        {"softmatch aligned", KD_THRESHOLD_SOFTMATCH, 0, 0, 0, 0, 0},
    };
    float rows[N * LD];
    make_rows(rows, N, 0, 5);
    for (size_t i = 0; i < sizeof refusing / sizeof refusing[0]; i++) {
        kd_threshold *t = make(&refusing[i]), *fresh = make(&refusing[i]);
        int64_t size = 42;
        double stats[MAX_STATS] = {0};
        ck_assert_int_eq(kd_threshold_stats_size(t, &size), KD_ERR_UNSUPPORTED);
        ck_assert_int_eq(size, 42);
        ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(t), "kd_threshold_update_probs"));
        ck_assert_int_eq(kd_threshold_local_stats(t, N, C, rows, LD, stats), KD_ERR_UNSUPPORTED);
        ck_assert_double_eq(stats[0], 0.0);
        ck_assert_int_eq(kd_threshold_local_labeled_stats(t, N, C, rows, LD, stats),
                         KD_ERR_UNSUPPORTED);
        ck_assert_int_eq(kd_threshold_update_stats(t, stats), KD_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(t), "gather"));
        assert_same_state(fresh, t, 1, refusing[i].name);
        kd_threshold_destroy(t);
        kd_threshold_destroy(fresh);
    }
}
END_TEST

/* A buffer of the statistics of rows (AdaMatch: also labelled rows). */
static int64_t stats_of(kd_threshold *t, const float *rows, double *stats)
{
    int64_t size;
    ck_assert_int_eq(kd_threshold_stats_size(t, &size), KD_OK);
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, rows, LD, stats), KD_OK);
    kd_threshold_algorithm a;
    int64_t ai;
    ck_assert_int_eq(kd_threshold_get_int(t, KD_THRESHOLD_PARAM_ALGORITHM, &ai), KD_OK);
    a = (kd_threshold_algorithm)ai;
    if (a == KD_THRESHOLD_ADAMATCH)
        ck_assert_int_eq(kd_threshold_local_labeled_stats(t, NL, C, rows, LD, stats), KD_OK);
    return size;
}

/* update_stats with stats[i] = v fails with st and changes nothing. */
static void assert_refused(const config *cf, const float *rows, int64_t i, double v, kd_status st)
{
    kd_threshold *t = make(cf), *fresh = make(cf);
    double stats[MAX_STATS];
    stats_of(t, rows, stats);
    stats[i] = v;
    ck_assert_msg(kd_threshold_update_stats(t, stats) == st, "%s: stats[%lld] = %g: %s", cf->name,
                  (long long)i, v, kd_threshold_last_error(t));
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(t), "kd_threshold_update_stats: "));
    assert_same_state(fresh, t, 1, cf->name);
    kd_threshold_destroy(t);
    kd_threshold_destroy(fresh);
}

START_TEST(invalid_summed_buffers_are_refused_and_change_nothing)
{
    float rows[N * LD];
    make_rows(rows, N, 0, 9);
    for (int c = 0; c < NCONFIGS; c++) {
        const config *cf = &configs[c];
        kd_threshold *t = make(cf);
        double stats[MAX_STATS];
        const int64_t size = stats_of(t, rows, stats);
        kd_threshold_destroy(t);
        for (int64_t i = 0; i < size; i++) {
            assert_refused(cf, rows, i, NAN, KD_ERR_NOT_FINITE);
            assert_refused(cf, rows, i, INFINITY, KD_ERR_NOT_FINITE);
            assert_refused(cf, rows, i, -1.0, KD_ERR_INVALID_ARGUMENT);
        }
        assert_refused(cf, rows, 0, 2.5, KD_ERR_INVALID_ARGUMENT);   /* not a whole count */
        assert_refused(cf, rows, 0, 1e300, KD_ERR_INVALID_ARGUMENT); /* > 2^53 */
        if (size > 1)
            assert_refused(cf, rows, 1, stats[0] + 1.0, KD_ERR_INVALID_ARGUMENT); /* sum > n */
    }
    /* FreeMatch: a histogram that does not sum to n; SoftMatch: a class sum
     * above its count; AdaMatch: labelled n not whole, labelled sum above it */
    assert_refused(&configs[0], rows, 2 + C, 100.0, KD_ERR_INVALID_ARGUMENT);
    assert_refused(&configs[2], rows, 3, 1000.0, KD_ERR_INVALID_ARGUMENT);
    assert_refused(&configs[2], rows, 3 + C, 30.0, KD_ERR_INVALID_ARGUMENT);
    assert_refused(&configs[4], rows, 1 + C, 0.5, KD_ERR_INVALID_ARGUMENT);
    assert_refused(&configs[4], rows, 2 + C, 100.0, KD_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(documented_argument_errors_leave_the_buffer_and_handle_untouched)
{
    float rows[N * LD];
    make_rows(rows, N, 0, 11);
    kd_threshold *t = make(&configs[0]), *fresh = make(&configs[0]);
    double stats[MAX_STATS];
    for (int i = 0; i < MAX_STATS; i++)
        stats[i] = 7.0;
    int64_t size;
    ck_assert_int_eq(kd_threshold_stats_size(NULL, &size), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_stats_size(t, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_local_stats(NULL, N, C, rows, LD, stats), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, rows, LD, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_local_stats(t, 0, C, rows, LD, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, NULL, LD, stats), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_local_stats(t, -1, C, rows, LD, stats), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C + 1, rows, LD, stats),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, rows, C - 1, stats),
                     KD_ERR_INVALID_ARGUMENT);
    _Alignas(double) float bad[N * LD];
    memcpy(bad, rows, sizeof bad);
    bad[3 * LD + 2] = NAN;
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, bad, LD, stats), KD_ERR_NOT_FINITE);
    bad[3 * LD + 2] = 1.5f;
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, bad, LD, stats), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(t), "probs[3][2]"));
    /* stats overlapping the rows */
    bad[3 * LD + 2] = rows[3 * LD + 2];
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, bad, LD, (double *)(void *)(bad + 8)),
                     KD_ERR_ALIASING);
    ck_assert_int_eq(kd_threshold_local_labeled_stats(t, N, C, rows, LD, stats),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_local_labeled_stats(NULL, N, C, rows, LD, stats),
                     KD_ERR_NULL_POINTER);
    for (int i = 0; i < MAX_STATS; i++)
        ck_assert_double_eq(stats[i], 7.0);
    ck_assert_int_eq(kd_threshold_update_stats(NULL, stats), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_update_stats(t, NULL), KD_ERR_NULL_POINTER);
    assert_same_state(fresh, t, 1, "errors");
    /* a success clears the message */
    ck_assert_int_eq(kd_threshold_local_stats(t, N, C, rows, LD, stats), KD_OK);
    ck_assert_str_eq(kd_threshold_last_error(t), "");
    kd_threshold_destroy(t);
    kd_threshold_destroy(fresh);

    /* AdaMatch: labelled rows are validated too; local_stats zeroes their part */
    kd_threshold *a = make(&configs[4]);
    for (int i = 0; i < MAX_STATS; i++)
        stats[i] = 7.0;
    ck_assert_int_eq(kd_threshold_local_stats(a, N, C, rows, LD, stats), KD_OK);
    for (int i = 1 + C; i < 3 + 2 * C; i++)
        ck_assert_double_eq(stats[i], 0.0);
    bad[3 * LD + 2] = NAN;
    ck_assert_int_eq(kd_threshold_local_labeled_stats(a, N, C, bad, LD, stats), KD_ERR_NOT_FINITE);
    ck_assert_double_eq(stats[1 + C], 0.0);
    kd_threshold_destroy(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threshold_split");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, split_statistics_give_the_whole_batch_state_and_weights);
    tcase_add_test(tc, stats_sizes_per_algorithm);
    tcase_add_test(tc, empty_total_batch_changes_nothing);
    tcase_add_test(tc, configurations_without_additive_statistics_refuse_and_say_gather);
    tcase_add_test(tc, invalid_summed_buffers_are_refused_and_change_nothing);
    tcase_add_test(tc, documented_argument_errors_leave_the_buffer_and_handle_untouched);
    suite_add_tcase(s, tc);
    return kdt_run_suite(s);
}
