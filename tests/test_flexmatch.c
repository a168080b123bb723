/* FlexMatch thresholds: tau_c against a double-precision reference for every
 * mapping with and without warm-up over random update sequences, the strict
 * and non-strict selection, parameters, errors that change nothing, and the
 * state file (round trip, corruption, truncation, shape mismatch). */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdlib/kdlib.h"
#include "kdtest.h"
#include "ref_labels.h"

/* ---- helpers ---------------------------------------------------------------- */

static char g_dir[256];

static void dir_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/kd_flexmatch_test.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void dir_teardown(void)
{
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(g_dir);
}

static void path_in_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", g_dir, name);
}

static unsigned char *read_all(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*size + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    return b;
}

static void write_all(const char *path, const unsigned char *b, long size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
}

/* CRC-32C (Castagnoli), bitwise: the test's own, to forge files whose
 * checksums are right but whose values are not. */
static uint32_t crc32c(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A snapshot of everything observable, to check "nothing changed". */
typedef struct {
    int32_t *pred;
    int64_t *sigma;
    int64_t unused;
    float *tau_c;
    float threshold;
    int64_t mapping, warmup, non_strict;
} snapshot;

static snapshot take(kd_flexmatch *h)
{
    snapshot s;
    int64_t n, c;
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NUM_SAMPLES, &n), KD_OK);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NUM_CLASSES, &c), KD_OK);
    s.pred = malloc((size_t)n * sizeof *s.pred);
    s.sigma = malloc((size_t)c * sizeof *s.sigma);
    s.tau_c = malloc((size_t)c * sizeof *s.tau_c);
    ck_assert_int_eq(kd_flexmatch_predictions(h, s.pred), KD_OK);
    ck_assert_int_eq(kd_flexmatch_counts(h, s.sigma, &s.unused), KD_OK);
    ck_assert_int_eq(kd_flexmatch_thresholds(h, s.tau_c), KD_OK);
    ck_assert_int_eq(kd_flexmatch_get_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, &s.threshold), KD_OK);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_MAPPING, &s.mapping), KD_OK);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_WARMUP, &s.warmup), KD_OK);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NON_STRICT, &s.non_strict), KD_OK);
    return s;
}

static void assert_same(kd_flexmatch *h, const snapshot *a)
{
    int64_t n, c;
    kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NUM_SAMPLES, &n);
    kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NUM_CLASSES, &c);
    snapshot b = take(h);
    ck_assert(memcmp(a->pred, b.pred, (size_t)n * sizeof *a->pred) == 0);
    ck_assert(memcmp(a->sigma, b.sigma, (size_t)c * sizeof *a->sigma) == 0);
    ck_assert(memcmp(a->tau_c, b.tau_c, (size_t)c * sizeof *a->tau_c) == 0);
    ck_assert_int_eq(a->unused, b.unused);
    ck_assert(a->threshold == b.threshold);
    ck_assert_int_eq(a->mapping, b.mapping);
    ck_assert_int_eq(a->warmup, b.warmup);
    ck_assert_int_eq(a->non_strict, b.non_strict);
    free(b.pred);
    free(b.sigma);
    free(b.tau_c);
}

static void release(snapshot *s)
{
    free(s->pred);
    free(s->sigma);
    free(s->tau_c);
}

/* Fill a handle with random confident predictions; returns nothing. */
static void random_updates(kd_flexmatch *h, kdt_rng *rng, int64_t n, int64_t c, int batches)
{
    int64_t idx[16];
    float conf[16];
    int32_t pred[16];
    for (int b = 0; b < batches; b++) {
        for (int k = 0; k < 16; k++) {
            idx[k] = (int64_t)(kdt_next(rng) % (uint64_t)n);
            conf[k] = (float)(0.8 + 0.2 * kdt_uniform(rng));
            pred[k] = (int32_t)(kdt_next(rng) % (uint64_t)c);
        }
        ck_assert_int_eq(kd_flexmatch_update(h, 16, idx, conf, pred), KD_OK);
    }
}

/* ---- thresholds ------------------------------------------------------------- */

static void check_against_reference(int mapping, int warmup, uint64_t seed)
{
    const int64_t n = 300, c = 7;
    const float tau = 0.9f;
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, n, c), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, tau), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_MAPPING, mapping), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_WARMUP, warmup), KD_OK);
    int32_t *ref = malloc((size_t)n * sizeof *ref);
    int32_t *got = malloc((size_t)n * sizeof *got);
    for (int64_t i = 0; i < n; i++)
        ref[i] = -1;
    kdt_rng rng;
    kdt_seed(&rng, seed);
    double ref_tau[7], ref_beta[7];
    float tau_c[7], beta[7];
    enum { B = 24 };
    int64_t idx[B];
    float conf[B];
    int32_t pred[B];
    for (int step = 0; step < 120; step++) {
        /* Skewed classes so that the counts differ; duplicates within a batch
         * happen (the later entry wins). */
        for (int k = 0; k < B; k++) {
            idx[k] = (int64_t)(kdt_next(&rng) % (uint64_t)n);
            conf[k] = (float)(0.7 + 0.3 * kdt_uniform(&rng));
            double u = kdt_uniform(&rng);
            pred[k] = (int32_t)((double)c * u * u);
        }
        if (step % 10 == 3)
            idx[B - 1] = idx[0]; /* a forced duplicate */
        ck_assert_int_eq(kd_flexmatch_update(h, B, idx, conf, pred), KD_OK);
        for (int k = 0; k < B; k++)
            if (conf[k] > tau)
                ref[idx[k]] = pred[k];
        ref_flexmatch_thresholds(ref, n, c, tau, mapping, warmup, ref_tau, ref_beta);
        ck_assert_int_eq(kd_flexmatch_thresholds(h, tau_c), KD_OK);
        ck_assert_int_eq(kd_flexmatch_learning_effect(h, beta), KD_OK);
        for (int j = 0; j < c; j++) {
            ck_assert_msg(kdt_close(tau_c[j], ref_tau[j], 1e-6, 1e-7),
                          "mapping %d warm-up %d step %d class %d: %.9g vs %.9g", mapping, warmup,
                          step, j, (double)tau_c[j], ref_tau[j]);
            ck_assert(kdt_close(beta[j], ref_beta[j], 1e-6, 1e-7));
            ck_assert(tau_c[j] >= 0.0f && tau_c[j] <= tau);
        }
        ck_assert_int_eq(kd_flexmatch_predictions(h, got), KD_OK);
        ck_assert(memcmp(got, ref, (size_t)n * sizeof *ref) == 0);
    }
    /* The counts agree with the predictions. */
    int64_t sigma[7], unused, total = 0;
    ck_assert_int_eq(kd_flexmatch_counts(h, sigma, &unused), KD_OK);
    for (int j = 0; j < c; j++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++)
            cnt += ref[i] == j;
        ck_assert_int_eq(sigma[j], cnt);
        total += cnt;
    }
    ck_assert_int_eq(unused, n - total);
    free(ref);
    free(got);
    kd_flexmatch_destroy(h);
}

START_TEST(thresholds_match_reference_linear_without_warmup) { check_against_reference(0, 0, 11); }
END_TEST
START_TEST(thresholds_match_reference_linear_with_warmup) { check_against_reference(0, 1, 12); }
END_TEST
START_TEST(thresholds_match_reference_concave_without_warmup) { check_against_reference(1, 0, 13); }
END_TEST
START_TEST(thresholds_match_reference_concave_with_warmup) { check_against_reference(1, 1, 14); }
END_TEST
START_TEST(thresholds_match_reference_convex_without_warmup) { check_against_reference(2, 0, 15); }
END_TEST
START_TEST(thresholds_match_reference_convex_with_warmup) { check_against_reference(2, 1, 16); }
END_TEST

START_TEST(thresholds_are_zero_while_nothing_is_predicted)
{
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, 10, 4), KD_OK);
    float t[4], b[4];
    for (int m = 0; m <= 2; m++)
        for (int w = 0; w <= 1; w++) {
            kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_MAPPING, m);
            kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_WARMUP, w);
            ck_assert_int_eq(kd_flexmatch_thresholds(h, t), KD_OK);
            ck_assert_int_eq(kd_flexmatch_learning_effect(h, b), KD_OK);
            for (int j = 0; j < 4; j++)
                ck_assert(t[j] == 0.0f && b[j] == 0.0f);
        }
    /* Below-threshold updates change nothing either. */
    int64_t idx[2] = {0, 1};
    float conf[2] = {0.5f, 0.94f};
    int32_t pred[2] = {1, 2};
    ck_assert_int_eq(kd_flexmatch_update(h, 2, idx, conf, pred), KD_OK);
    ck_assert_int_eq(kd_flexmatch_thresholds(h, t), KD_OK);
    for (int j = 0; j < 4; j++)
        ck_assert(t[j] == 0.0f);
    kd_flexmatch_destroy(h);
}
END_TEST

START_TEST(warmup_divides_by_the_unused_count_when_larger)
{
    /* N = 12, C = 3: 4 samples of class 0, 2 of class 1, 6 unused. */
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, 12, 3), KD_OK);
    int64_t idx[6] = {0, 1, 2, 3, 4, 5};
    float conf[6] = {1, 1, 1, 1, 1, 1};
    int32_t pred[6] = {0, 0, 0, 0, 1, 1};
    ck_assert_int_eq(kd_flexmatch_update(h, 6, idx, conf, pred), KD_OK);
    float b[3], t[3];
    ck_assert_int_eq(kd_flexmatch_learning_effect(h, b), KD_OK);
    ck_assert(b[0] == 1.0f && b[1] == 0.5f && b[2] == 0.0f);
    ck_assert_int_eq(kd_flexmatch_thresholds(h, t), KD_OK); /* convex, tau 0.95 */
    ck_assert(t[0] == 0.95f);
    ck_assert(kdt_close(t[1], 0.95 * 0.5 / 1.5, 1e-7, 0));
    ck_assert(t[2] == 0.0f);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_WARMUP, 1), KD_OK);
    ck_assert_int_eq(kd_flexmatch_learning_effect(h, b), KD_OK);
    ck_assert(kdt_close(b[0], 4.0 / 6.0, 1e-7, 0) && kdt_close(b[1], 2.0 / 6.0, 1e-7, 0));
    ck_assert_int_eq(
        kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_MAPPING, KD_FLEXMATCH_MAPPING_CONCAVE), KD_OK);
    ck_assert_int_eq(kd_flexmatch_thresholds(h, t), KD_OK);
    ck_assert(kdt_close(t[0], 0.95 * log(4.0 / 6.0 + 1.0) / log(2.0), 1e-7, 0));
    /* A sample re-predicted moves between classes. */
    int64_t i0 = 0;
    float one = 1.0f;
    int32_t p2 = 2;
    ck_assert_int_eq(kd_flexmatch_update(h, 1, &i0, &one, &p2), KD_OK);
    int64_t sigma[3], unused;
    ck_assert_int_eq(kd_flexmatch_counts(h, sigma, &unused), KD_OK);
    ck_assert(sigma[0] == 3 && sigma[1] == 2 && sigma[2] == 1 && unused == 6);
    /* Reset: back to no predictions, parameters kept. */
    ck_assert_int_eq(kd_flexmatch_reset(h), KD_OK);
    ck_assert_int_eq(kd_flexmatch_counts(h, sigma, &unused), KD_OK);
    ck_assert(sigma[0] == 0 && sigma[1] == 0 && sigma[2] == 0 && unused == 12);
    int64_t w;
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_WARMUP, &w), KD_OK);
    ck_assert_int_eq(w, 1);
    kd_flexmatch_destroy(h);
}
END_TEST

START_TEST(update_is_strict_by_default_and_non_strict_on_request)
{
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, 4, 2), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, 0.9f), KD_OK);
    int64_t idx[3] = {0, 1, 2};
    float conf[3] = {0.9f, nextafterf(0.9f, 1.0f), nextafterf(0.9f, 0.0f)};
    int32_t pred[3] = {1, 1, 1};
    int32_t got[4];
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_OK);
    ck_assert_int_eq(kd_flexmatch_predictions(h, got), KD_OK);
    ck_assert(got[0] == -1 && got[1] == 1 && got[2] == -1 && got[3] == -1);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_NON_STRICT, 1), KD_OK);
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_OK);
    ck_assert_int_eq(kd_flexmatch_predictions(h, got), KD_OK);
    ck_assert(got[0] == 1 && got[1] == 1 && got[2] == -1 && got[3] == -1);
    kd_flexmatch_destroy(h);
}
END_TEST

START_TEST(threshold_of_the_most_predicted_class_is_tau)
{
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, 100, 5), KD_OK);
    kdt_rng rng;
    kdt_seed(&rng, 5);
    random_updates(h, &rng, 100, 5, 40);
    int64_t sigma[5];
    ck_assert_int_eq(kd_flexmatch_counts(h, sigma, NULL), KD_OK);
    float t[5];
    ck_assert_int_eq(kd_flexmatch_thresholds(h, t), KD_OK);
    int64_t max = 0;
    for (int j = 0; j < 5; j++)
        max = sigma[j] > max ? sigma[j] : max;
    for (int j = 0; j < 5; j++)
        if (sigma[j] == max)
            ck_assert(t[j] == 0.95f);
        else
            ck_assert(t[j] < 0.95f);
    kd_flexmatch_destroy(h);
}
END_TEST

/* ---- api ------------------------------------------------------------------ */

START_TEST(pinned_enum_values)
{
    ck_assert_int_eq(KD_FLEXMATCH_PARAM_THRESHOLD, 1);
    ck_assert_int_eq(KD_FLEXMATCH_PARAM_MAPPING, 2);
    ck_assert_int_eq(KD_FLEXMATCH_PARAM_WARMUP, 3);
    ck_assert_int_eq(KD_FLEXMATCH_PARAM_NON_STRICT, 4);
    ck_assert_int_eq(KD_FLEXMATCH_PARAM_NUM_SAMPLES, 5);
    ck_assert_int_eq(KD_FLEXMATCH_PARAM_NUM_CLASSES, 6);
    ck_assert_int_eq(KD_FLEXMATCH_MAPPING_LINEAR, 0);
    ck_assert_int_eq(KD_FLEXMATCH_MAPPING_CONCAVE, 1);
    ck_assert_int_eq(KD_FLEXMATCH_MAPPING_CONVEX, 2);
}
END_TEST

START_TEST(create_rejects_bad_arguments_and_destroy_accepts_null)
{
    kd_flexmatch *h = (kd_flexmatch *)0x1;
    ck_assert_int_eq(kd_flexmatch_create(NULL, 10, 3), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_create(&h, 0, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(NULL), "num_samples = 0"));
    ck_assert_int_eq(kd_flexmatch_create(&h, -5, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_flexmatch_create(&h, KD_FLEXMATCH_MAX_SAMPLES + 1, 3),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_flexmatch_create(&h, 10, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(NULL), "num_classes = 0"));
    ck_assert_int_eq(kd_flexmatch_create(&h, 10, KD_FLEXMATCH_MAX_CLASSES + 1),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_eq(h, (kd_flexmatch *)0x1);
    ck_assert_int_eq(kd_flexmatch_create(&h, 10, 3), KD_OK);
    ck_assert_str_eq(kd_flexmatch_last_error(NULL), "");
    ck_assert_str_eq(kd_flexmatch_last_error(h), "");
    kd_flexmatch_destroy(h);
    kd_flexmatch_destroy(NULL);
}
END_TEST

START_TEST(parameters_have_defaults_and_are_validated_at_set_time)
{
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, 10, 3), KD_OK);
    float f;
    int64_t v;
    ck_assert_int_eq(kd_flexmatch_get_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, &f), KD_OK);
    ck_assert(f == 0.95f);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_MAPPING, &v), KD_OK);
    ck_assert_int_eq(v, KD_FLEXMATCH_MAPPING_CONVEX);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_WARMUP, &v), KD_OK);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NON_STRICT, &v), KD_OK);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NUM_SAMPLES, &v), KD_OK);
    ck_assert_int_eq(v, 10);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_NUM_CLASSES, &v), KD_OK);
    ck_assert_int_eq(v, 3);

    const float bad_f[] = {-0.01f, 1.01f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_f / sizeof *bad_f; i++) {
        ck_assert_int_eq(kd_flexmatch_set_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, bad_f[i]),
                         KD_ERR_INVALID_ARGUMENT);
        ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(h), "KD_FLEXMATCH_PARAM_THRESHOLD"));
    }
    ck_assert_int_eq(kd_flexmatch_get_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, &f), KD_OK);
    ck_assert(f == 0.95f);
    ck_assert_int_eq(kd_flexmatch_set_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, 0.0f), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_float(h, KD_FLEXMATCH_PARAM_THRESHOLD, 1.0f), KD_OK);

    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_MAPPING, 3),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(h), "KD_FLEXMATCH_PARAM_MAPPING = 3"));
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_MAPPING, -1),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_WARMUP, 2),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_NON_STRICT, -1),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_MAPPING, &v), KD_OK);
    ck_assert_int_eq(v, KD_FLEXMATCH_MAPPING_CONVEX);

    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_NUM_SAMPLES, 5),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_set_int(h, KD_FLEXMATCH_PARAM_THRESHOLD, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_set_float(h, KD_FLEXMATCH_PARAM_MAPPING, 1.0f),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_set_int(h, 999, 1), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_get_float(h, KD_FLEXMATCH_PARAM_WARMUP, &f), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_get_int(h, 999, &v), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_get_int(h, KD_FLEXMATCH_PARAM_WARMUP, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_set_int(NULL, KD_FLEXMATCH_PARAM_WARMUP, 1), KD_ERR_NULL_POINTER);

    double lo, hi;
    ck_assert_int_eq(kd_flexmatch_param_bounds(KD_FLEXMATCH_PARAM_THRESHOLD, &lo, &hi), KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0);
    ck_assert_int_eq(kd_flexmatch_param_bounds(KD_FLEXMATCH_PARAM_MAPPING, &lo, &hi), KD_OK);
    ck_assert(lo == 0.0 && hi == 2.0);
    ck_assert_int_eq(kd_flexmatch_param_bounds(KD_FLEXMATCH_PARAM_NUM_SAMPLES, &lo, &hi),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_flexmatch_param_bounds(KD_FLEXMATCH_PARAM_WARMUP, NULL, &hi),
                     KD_ERR_NULL_POINTER);
    kd_flexmatch_destroy(h);
}
END_TEST

START_TEST(bad_update_is_refused_whole_and_names_the_entry)
{
    kd_flexmatch *h;
    ck_assert_int_eq(kd_flexmatch_create(&h, 8, 3), KD_OK);
    kdt_rng rng;
    kdt_seed(&rng, 3);
    random_updates(h, &rng, 8, 3, 2);
    snapshot before = take(h);
    /* Entries 0 and 1 would be selected; entry 2 is bad. */
    int64_t idx[3] = {0, 1, 2};
    float conf[3] = {0.99f, 0.99f, 0.99f};
    int32_t pred[3] = {2, 2, 2};

    idx[2] = 8;
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(h), "indices[2] = 8"));
    assert_same(h, &before);
    idx[2] = -1;
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_ERR_INVALID_ARGUMENT);
    assert_same(h, &before);
    idx[2] = 2;

    pred[2] = 3;
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(h), "predictions[2] = 3"));
    assert_same(h, &before);
    pred[2] = -1;
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_ERR_INVALID_ARGUMENT);
    assert_same(h, &before);
    pred[2] = 2;

    conf[2] = NAN;
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, pred), KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(h), "confidences[2]"));
    assert_same(h, &before);
    conf[2] = 0.99f;

    ck_assert_int_eq(kd_flexmatch_update(h, -1, idx, conf, pred), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_flexmatch_update(h, 3, NULL, conf, pred), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(h), "indices"));
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, NULL, pred), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_update(h, 3, idx, conf, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_update(NULL, 3, idx, conf, pred), KD_ERR_NULL_POINTER);
    assert_same(h, &before);
    ck_assert_int_eq(kd_flexmatch_update(h, 0, NULL, NULL, NULL), KD_OK);
    ck_assert_str_eq(kd_flexmatch_last_error(h), "");
    assert_same(h, &before);

    ck_assert_int_eq(kd_flexmatch_thresholds(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_learning_effect(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_predictions(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_counts(NULL, NULL, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_reset(NULL), KD_ERR_NULL_POINTER);
    release(&before);
    kd_flexmatch_destroy(h);
}
END_TEST

/* ---- state file ------------------------------------------------------------ */

START_TEST(save_load_round_trip_restores_state_and_parameters)
{
    dir_setup();
    char path[512];
    path_in_dir(path, sizeof path, "fm.state");
    kd_flexmatch *a, *b;
    ck_assert_int_eq(kd_flexmatch_create(&a, 50, 4), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_float(a, KD_FLEXMATCH_PARAM_THRESHOLD, 0.85f), KD_OK);
    ck_assert_int_eq(
        kd_flexmatch_set_int(a, KD_FLEXMATCH_PARAM_MAPPING, KD_FLEXMATCH_MAPPING_CONCAVE), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_int(a, KD_FLEXMATCH_PARAM_WARMUP, 1), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_int(a, KD_FLEXMATCH_PARAM_NON_STRICT, 1), KD_OK);
    kdt_rng rng;
    kdt_seed(&rng, 21);
    random_updates(a, &rng, 50, 4, 3);
    ck_assert_int_eq(kd_flexmatch_save(a, path), KD_OK);
    snapshot sa = take(a);
    ck_assert_int_eq(kd_flexmatch_create(&b, 50, 4), KD_OK);
    random_updates(b, &rng, 50, 4, 1);
    ck_assert_int_eq(kd_flexmatch_load(b, path), KD_OK);
    ck_assert_str_eq(kd_flexmatch_last_error(b), "");
    assert_same(b, &sa);
    /* Both continue identically. */
    kdt_rng r1, r2;
    kdt_seed(&r1, 77);
    kdt_seed(&r2, 77);
    random_updates(a, &r1, 50, 4, 5);
    random_updates(b, &r2, 50, 4, 5);
    snapshot sa2 = take(a);
    assert_same(b, &sa2);
    release(&sa);
    release(&sa2);
    kd_flexmatch_destroy(a);
    kd_flexmatch_destroy(b);
    dir_teardown();
}
END_TEST

START_TEST(corrupt_truncated_and_foreign_files_change_nothing)
{
    dir_setup();
    char path[512], bad[512];
    path_in_dir(path, sizeof path, "fm.state");
    path_in_dir(bad, sizeof bad, "bad.state");
    kd_flexmatch *a, *b;
    ck_assert_int_eq(kd_flexmatch_create(&a, 40, 5), KD_OK);
    kdt_rng rng;
    kdt_seed(&rng, 8);
    random_updates(a, &rng, 40, 5, 4);
    ck_assert_int_eq(kd_flexmatch_save(a, path), KD_OK);
    long size;
    unsigned char *file = read_all(path, &size);
    ck_assert_int_eq(size, 44 + 40 + 40 * 4); /* format version 2: 40-byte meta */
    ck_assert(memcmp(file, "KDFLEXM\0", 8) == 0);

    ck_assert_int_eq(kd_flexmatch_create(&b, 40, 5), KD_OK);
    ck_assert_int_eq(kd_flexmatch_set_int(b, KD_FLEXMATCH_PARAM_MAPPING, 0), KD_OK);
    random_updates(b, &rng, 40, 5, 2);
    snapshot sb = take(b);

    /* Every bit flip is detected (header, meta, data, checksums). */
    unsigned char *copy = malloc((size_t)size);
    for (long pos = 0; pos < size; pos++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, file, (size_t)size);
            copy[pos] ^= (unsigned char)(1u << bit);
            write_all(bad, copy, size);
            kd_status st = kd_flexmatch_load(b, bad);
            ck_assert_msg(st == KD_ERR_CORRUPT || st == KD_ERR_VERSION,
                          "flip at byte %ld bit %d gave %d", pos, bit, (int)st);
            if (pos >= 8)
                ck_assert_msg(st == KD_ERR_CORRUPT || (pos >= 8 && pos < 12),
                              "flip at byte %ld gave %d", pos, (int)st);
        }
    assert_same(b, &sb);

    /* Every truncation, including the empty file. */
    for (long len = 0; len < size; len++) {
        write_all(bad, file, len);
        kd_status st = kd_flexmatch_load(b, bad);
        ck_assert_msg(st == KD_ERR_CORRUPT, "truncation to %ld bytes gave %d", len, (int)st);
    }
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(b), "bad.state"));
    assert_same(b, &sb);

    /* An extra byte. */
    memcpy(copy, file, (size_t)size);
    write_all(bad, copy, size);
    FILE *f = fopen(bad, "ab");
    fputc(0, f);
    fclose(f);
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_CORRUPT);
    assert_same(b, &sb);

    /* A prediction out of range, with every checksum right. */
    memcpy(copy, file, (size_t)size);
    unsigned char *data = copy + 36 + 40 + 4; /* header, meta, meta CRC */
    put_u32(data + 4 * 7, 5);                 /* sample 7 predicted as class C */
    put_u32(data + 40 * 4, crc32c(data, 40 * 4));
    write_all(bad, copy, size);
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(b), "sample 7"));
    assert_same(b, &sb);
    put_u32(data + 4 * 7, (uint32_t)-2);
    put_u32(data + 40 * 4, crc32c(data, 40 * 4));
    write_all(bad, copy, size);
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_CORRUPT);
    assert_same(b, &sb);

    /* An invalid parameter in the meta section, with every checksum right. */
    memcpy(copy, file, (size_t)size);
    put_u32(copy + 36 + 20, 7); /* mapping */
    put_u32(copy + 36 + 40, crc32c(copy + 36, 40));
    write_all(bad, copy, size);
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_CORRUPT);
    assert_same(b, &sb);

    /* A future format version, a foreign file, a missing file. */
    memcpy(copy, file, (size_t)size);
    put_u32(copy + 8, 3);
    put_u32(copy + 32, crc32c(copy, 32));
    write_all(bad, copy, size);
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_VERSION);
    write_all(bad, (const unsigned char *)"KDLIBEMA-not-a-flexmatch-state-file-at-all-", 44);
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_VERSION);
    path_in_dir(bad, sizeof bad, "missing.state");
    ck_assert_int_eq(kd_flexmatch_load(b, bad), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(b), "missing.state"));
    ck_assert_int_eq(kd_flexmatch_load(b, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_load(NULL, path), KD_ERR_NULL_POINTER);
    assert_same(b, &sb);

    /* The untouched file still loads. */
    ck_assert_int_eq(kd_flexmatch_load(b, path), KD_OK);
    snapshot sa = take(a);
    assert_same(b, &sa);

    release(&sa);
    release(&sb);
    free(copy);
    free(file);
    kd_flexmatch_destroy(a);
    kd_flexmatch_destroy(b);
    dir_teardown();
}
END_TEST

START_TEST(file_of_another_shape_is_refused_with_mismatch)
{
    dir_setup();
    char path[512];
    path_in_dir(path, sizeof path, "fm.state");
    kd_flexmatch *a, *b, *c;
    ck_assert_int_eq(kd_flexmatch_create(&a, 30, 4), KD_OK);
    kdt_rng rng;
    kdt_seed(&rng, 4);
    random_updates(a, &rng, 30, 4, 2);
    ck_assert_int_eq(kd_flexmatch_save(a, path), KD_OK);

    ck_assert_int_eq(kd_flexmatch_create(&b, 31, 4), KD_OK);
    snapshot sb = take(b);
    ck_assert_int_eq(kd_flexmatch_load(b, path), KD_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(b), "30 samples x 4 classes"));
    assert_same(b, &sb);

    ck_assert_int_eq(kd_flexmatch_create(&c, 30, 5), KD_OK);
    snapshot sc = take(c);
    ck_assert_int_eq(kd_flexmatch_load(c, path), KD_ERR_MISMATCH);
    assert_same(c, &sc);

    char dirpath[512];
    path_in_dir(dirpath, sizeof dirpath, "no-such-dir/fm.state");
    ck_assert_int_eq(kd_flexmatch_save(a, dirpath), KD_ERR_IO);
    ck_assert_int_eq(kd_flexmatch_save(a, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_flexmatch_save(NULL, path), KD_ERR_NULL_POINTER);

    release(&sb);
    release(&sc);
    kd_flexmatch_destroy(a);
    kd_flexmatch_destroy(b);
    kd_flexmatch_destroy(c);
    dir_teardown();
}
END_TEST

static Suite *flexmatch_suite(void)
{
    Suite *s = suite_create("flexmatch");
    TCase *tc = tcase_create("thresholds");
    tcase_add_test(tc, thresholds_match_reference_linear_without_warmup);
    tcase_add_test(tc, thresholds_match_reference_linear_with_warmup);
    tcase_add_test(tc, thresholds_match_reference_concave_without_warmup);
    tcase_add_test(tc, thresholds_match_reference_concave_with_warmup);
    tcase_add_test(tc, thresholds_match_reference_convex_without_warmup);
    tcase_add_test(tc, thresholds_match_reference_convex_with_warmup);
    tcase_add_test(tc, thresholds_are_zero_while_nothing_is_predicted);
    tcase_add_test(tc, warmup_divides_by_the_unused_count_when_larger);
    tcase_add_test(tc, update_is_strict_by_default_and_non_strict_on_request);
    tcase_add_test(tc, threshold_of_the_most_predicted_class_is_tau);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_test(tc, pinned_enum_values);
    tcase_add_test(tc, create_rejects_bad_arguments_and_destroy_accepts_null);
    tcase_add_test(tc, parameters_have_defaults_and_are_validated_at_set_time);
    tcase_add_test(tc, bad_update_is_refused_whole_and_names_the_entry);
    suite_add_tcase(s, tc);

    tc = tcase_create("statefile");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, save_load_round_trip_restores_state_and_parameters);
    tcase_add_test(tc, corrupt_truncated_and_foreign_files_change_nothing);
    tcase_add_test(tc, file_of_another_shape_is_refused_with_mismatch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(flexmatch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
