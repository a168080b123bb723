#define _DEFAULT_SOURCE
/* The threshold handle family (kdlib/threshold.h): the generic life cycle,
 * parameters, weights, state arrays and state files; the kd_flexmatch_*
 * layer against it; files of earlier versions (tests/data); the conventions
 * shared with kd_ema (double parameters, const getters, meta-size bound). */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdlib/ema.h"
#include "kdlib/flexmatch.h"
#include "kdlib/threshold.h"
#include "kdtest.h"

static char dir[256];

static void dir_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/kd_threshold_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void dir_teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *in_dir(const char *name)
{
    static char p[320];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static kd_threshold *flexmatch(int64_t n, int64_t c)
{
    kd_threshold *th = NULL;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_FLEXMATCH, n, c), KD_OK);
    return th;
}

/* ---- life cycle and parameters ------------------------------------------ */

START_TEST(create_refuses_unknown_algorithms_and_shapes_with_a_message)
{
    kd_threshold *th = (kd_threshold *)0x1;
    ck_assert_int_eq(kd_threshold_create(&th, 0, 10, 3), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(NULL), "algorithm = 0"));
    ck_assert_int_eq(kd_threshold_create(&th, 99, 10, 3), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_eq(th, (kd_threshold *)0x1); /* untouched */
    ck_assert_int_eq(kd_threshold_create(NULL, KD_THRESHOLD_FLEXMATCH, 10, 3), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(NULL), "kd_threshold_create: out"));
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_FLEXMATCH, 0, 3),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(NULL), "num_samples = 0"));
    ck_assert_int_eq(
        kd_threshold_create(&th, KD_THRESHOLD_FLEXMATCH, 10, KD_THRESHOLD_MAX_CLASSES + 1),
        KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_FLEXMATCH, 10, 3), KD_OK);
    ck_assert_str_eq(kd_threshold_last_error(NULL), "");
    ck_assert_str_eq(kd_threshold_last_error(th), "");
    kd_threshold_destroy(th);
    kd_threshold_destroy(NULL);
    ck_assert_str_eq(kd_threshold_algorithm_name(KD_THRESHOLD_FLEXMATCH), "flexmatch");
    ck_assert_ptr_null(kd_threshold_algorithm_name(0));
}
END_TEST

START_TEST(real_parameters_are_double_and_getters_take_const_handles)
{
    kd_threshold *th = flexmatch(10, 3);
    const kd_threshold *ro = th;
    double v = -1;
    int64_t i = -1;
    ck_assert_int_eq(kd_threshold_get_float(ro, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.95); /* exactly, not 0.95f */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 0.123456789012345),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_get_float(ro, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.123456789012345);
    ck_assert_int_eq(kd_threshold_get_int(ro, KD_THRESHOLD_PARAM_ALGORITHM, &i), KD_OK);
    ck_assert_int_eq(i, KD_THRESHOLD_FLEXMATCH);
    ck_assert_int_eq(kd_threshold_get_int(ro, KD_THRESHOLD_PARAM_NUM_SAMPLES, &i), KD_OK);
    ck_assert_int_eq(i, 10);
    ck_assert_int_eq(kd_threshold_get_int(ro, KD_THRESHOLD_PARAM_MAPPING, &i), KD_OK);
    ck_assert_int_eq(i, KD_THRESHOLD_MAPPING_CONVEX);

    /* refused: out of range, NaN, wrong type, read only, unknown; old value kept */
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 1.5),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(
        strstr(kd_threshold_last_error(th),
               "kd_threshold_set_float: KD_THRESHOLD_PARAM_THRESHOLD = 1.5 is outside [0, 1]"));
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, NAN),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, 1.0 + 1e-15),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_THRESHOLD, 1), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "is a real parameter"));
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_NUM_SAMPLES, 5),
                     KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "read only"));
    ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_MAPPING, 3),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "KD_THRESHOLD_PARAM_MAPPING = 3"));
    ck_assert_int_eq(kd_threshold_get_int(ro, 42, &i), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "param = 42"));
    ck_assert_int_eq(kd_threshold_get_float(ro, KD_THRESHOLD_PARAM_THRESHOLD, NULL),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_get_float(ro, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.123456789012345);
    ck_assert_str_eq(kd_threshold_last_error(th), "");

    double lo, hi;
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_FLEXMATCH, KD_THRESHOLD_PARAM_MAPPING, &lo, &hi),
        KD_OK);
    ck_assert(lo == 0 && hi == 2);
    ck_assert_int_eq(
        kd_threshold_param_bounds(KD_THRESHOLD_FLEXMATCH, KD_THRESHOLD_PARAM_NUM_CLASSES, &lo, &hi),
        KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_param_bounds(99, KD_THRESHOLD_PARAM_MAPPING, &lo, &hi),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_param_bounds(KD_THRESHOLD_FLEXMATCH, 1, NULL, &hi),
                     KD_ERR_NULL_POINTER);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- update, weights, state arrays -------------------------------------- */

static void random_batch(kdt_rng *r, int64_t n, int64_t N, int64_t C, int64_t *idx, float *conf,
                         int32_t *pred)
{
    for (int64_t k = 0; k < n; k++) {
        idx[k] = (int64_t)(kdt_uniform(r) * (double)N);
        conf[k] = (float)(0.5 + 0.5 * kdt_uniform(r));
        pred[k] = (int32_t)(kdt_uniform(r) * (double)C);
    }
}

START_TEST(the_flexmatch_layer_and_the_family_agree_bit_for_bit)
{
    enum { N = 300, C = 7, B = 32 };
    kd_flexmatch *fm;
    ck_assert_int_eq(kd_flexmatch_create(&fm, N, C), KD_OK);
    kd_threshold *th = flexmatch(N, C);
    /* the layer keeps its float default: the family takes it as a double */
    float tf;
    ck_assert_int_eq(kd_flexmatch_get_float(fm, KD_FLEXMATCH_PARAM_THRESHOLD, &tf), KD_OK);
    ck_assert_float_eq(tf, KD_FLEXMATCH_DEFAULT_THRESHOLD);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_THRESHOLD, (double)tf), KD_OK);
    for (int mode = 0; mode < 3; mode++) {
        ck_assert_int_eq(kd_flexmatch_set_int(fm, KD_FLEXMATCH_PARAM_MAPPING, mode), KD_OK);
        ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_MAPPING, mode), KD_OK);
        ck_assert_int_eq(kd_flexmatch_set_int(fm, KD_FLEXMATCH_PARAM_WARMUP, mode & 1), KD_OK);
        ck_assert_int_eq(kd_threshold_set_int(th, KD_THRESHOLD_PARAM_WARMUP, mode & 1), KD_OK);
        kdt_rng r;
        kdt_seed(&r, 11 + (uint64_t)mode);
        for (int step = 0; step < 40; step++) {
            int64_t idx[B];
            float conf[B], w[B];
            int32_t pred[B];
            random_batch(&r, B, N, C, idx, conf, pred);
            float tau_fm[C], tau_th[C], beta_fm[C], beta_th[C];
            ck_assert_int_eq(kd_flexmatch_thresholds(fm, tau_fm), KD_OK);
            ck_assert_int_eq(
                kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, C, tau_th), KD_OK);
            ck_assert(memcmp(tau_fm, tau_th, sizeof tau_fm) == 0);
            ck_assert_int_eq(kd_flexmatch_learning_effect(fm, beta_fm), KD_OK);
            ck_assert_int_eq(
                kd_threshold_get_floats(th, KD_THRESHOLD_STATE_LEARNING_EFFECT, C, beta_th), KD_OK);
            ck_assert(memcmp(beta_fm, beta_th, sizeof beta_fm) == 0);
            /* weights: confidence >= tau_c of the predicted class */
            ck_assert_int_eq(kd_threshold_weights(th, B, conf, pred, w), KD_OK);
            for (int k = 0; k < B; k++)
                ck_assert(w[k] == (conf[k] >= tau_th[pred[k]] ? 1.0f : 0.0f));
            ck_assert_int_eq(kd_flexmatch_update(fm, B, idx, conf, pred), KD_OK);
            ck_assert_int_eq(kd_threshold_update(th, B, idx, conf, pred), KD_OK);
        }
        int32_t p32[N];
        int64_t p64[N], s_fm[C], s_th[C], u_fm, u_th;
        ck_assert_int_eq(kd_flexmatch_predictions(fm, p32), KD_OK);
        ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_PREDICTIONS, N, p64), KD_OK);
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(p32[i], p64[i]);
        ck_assert_int_eq(kd_flexmatch_counts(fm, s_fm, &u_fm), KD_OK);
        ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_CLASS_COUNTS, C, s_th),
                         KD_OK);
        ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_UNUSED, 1, &u_th), KD_OK);
        ck_assert(memcmp(s_fm, s_th, sizeof s_fm) == 0 && u_fm == u_th);
        ck_assert_int_lt(u_th, N); /* the run did select samples */
        ck_assert_int_eq(kd_flexmatch_reset(fm), KD_OK);
        ck_assert_int_eq(kd_threshold_reset(th), KD_OK);
    }
    /* the layer's messages keep its names */
    ck_assert_int_eq(kd_flexmatch_set_float(fm, KD_FLEXMATCH_PARAM_THRESHOLD, 2.0f),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(fm),
                                 "kd_flexmatch_set_float: KD_FLEXMATCH_PARAM_THRESHOLD = 2"));
    ck_assert_int_eq(kd_flexmatch_update(fm, 1, (int64_t[]){N}, (float[]){1}, (int32_t[]){0}),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_flexmatch_last_error(fm), "kd_flexmatch_update: indices[0]"));
    kd_flexmatch_destroy(fm);
    kd_threshold_destroy(th);
}
END_TEST

START_TEST(weights_and_state_arrays_refuse_bad_calls_and_write_nothing)
{
    kd_threshold *th = flexmatch(8, 3);
    const float conf[2] = {0.9f, NAN};
    const int32_t pred[2] = {1, 2}, bad_pred[2] = {1, 3};
    float w[2] = {9, 9};
    ck_assert_int_eq(kd_threshold_weights(th, 2, conf, pred, w), KD_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "confidences[1] is NaN"));
    ck_assert_int_eq(kd_threshold_weights(th, 1, conf, bad_pred + 1, w), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "predictions[0] = 3"));
    ck_assert_int_eq(kd_threshold_weights(th, -1, conf, pred, w), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_threshold_weights(th, 1, conf, pred, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_weights(th, 1, NULL, pred, w), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_weights(NULL, 1, conf, pred, w), KD_ERR_NULL_POINTER);
    ck_assert(w[0] == 9 && w[1] == 9);
    ck_assert_int_eq(kd_threshold_weights(th, 0, NULL, NULL, NULL), KD_OK);
    /* nothing predicted yet: tau_c = 0, every weight 1 */
    ck_assert_int_eq(kd_threshold_weights(th, 1, conf, pred, w), KD_OK);
    ck_assert(w[0] == 1.0f && w[1] == 9);

    float f[4] = {9, 9, 9, 9};
    int64_t i[9];
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, 2, f),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "count = 2, state 1 has 3"));
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, 4, f),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert(f[0] == 9 && f[3] == 9);
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_PREDICTIONS, 8, f),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_LEARNING_EFFECT, 3, i),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_ints(th, 77, 3, i), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_PREDICTIONS, 8, NULL),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_PREDICTIONS, 8, i), KD_OK);
    ck_assert_int_eq(i[7], -1);
    kd_threshold_destroy(th);
}
END_TEST

/* ---- state files ---------------------------------------------------------- */

START_TEST(a_double_threshold_survives_save_and_load)
{
    dir_setup();
    kd_threshold *a = flexmatch(20, 4), *b = flexmatch(20, 4);
    ck_assert_int_eq(kd_threshold_set_float(a, KD_THRESHOLD_PARAM_THRESHOLD, 0.7000000000000001),
                     KD_OK);
    ck_assert_int_eq(kd_threshold_set_int(a, KD_THRESHOLD_PARAM_NON_STRICT, 1), KD_OK);
    ck_assert_int_eq(
        kd_threshold_update(a, 2, (int64_t[]){3, 4}, (float[]){0.9f, 0.1f}, (int32_t[]){2, 1}),
        KD_OK);
    ck_assert_int_eq(kd_threshold_save(a, in_dir("a.state")), KD_OK);
    ck_assert_int_eq(kd_threshold_load(b, in_dir("a.state")), KD_OK);
    double v;
    int64_t p[20], ns;
    ck_assert_int_eq(kd_threshold_get_float(b, KD_THRESHOLD_PARAM_THRESHOLD, &v), KD_OK);
    ck_assert(v == 0.7000000000000001);
    ck_assert_int_eq(kd_threshold_get_int(b, KD_THRESHOLD_PARAM_NON_STRICT, &ns), KD_OK);
    ck_assert_int_eq(ns, 1);
    ck_assert_int_eq(kd_threshold_get_ints(b, KD_THRESHOLD_STATE_PREDICTIONS, 20, p), KD_OK);
    ck_assert(p[3] == 2 && p[4] == -1);
    /* a file of another shape, a file of the EMA */
    kd_threshold *c = flexmatch(21, 4);
    ck_assert_int_eq(kd_threshold_load(c, in_dir("a.state")), KD_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(c), "kd_threshold_load: "));
    ck_assert_int_eq(kd_threshold_load(c, KDT_DATA_DIR "/ema_v1.kdstate"), KD_ERR_VERSION);
    ck_assert_int_eq(kd_threshold_save(c, NULL), KD_ERR_NULL_POINTER);
    kd_threshold_destroy(a);
    kd_threshold_destroy(b);
    kd_threshold_destroy(c);
    dir_teardown();
}
END_TEST

/* tests/data/flexmatch_v1.kdstate was written by kd_flexmatch_save of commit
 * 654ed29 (format version 1): N 8, C 3, threshold 0.7f, LINEAR, warm-up,
 * non-strict, after one update. */
START_TEST(files_of_format_version_1_still_load)
{
    kd_threshold *th = flexmatch(8, 3);
    ck_assert_int_eq(kd_threshold_load(th, KDT_DATA_DIR "/flexmatch_v1.kdstate"), KD_OK);
    const int64_t want[8] = {2, 0, -1, 2, -1, 1, -1, 2};
    int64_t p[8], m, w, s;
    ck_assert_int_eq(kd_threshold_get_ints(th, KD_THRESHOLD_STATE_PREDICTIONS, 8, p), KD_OK);
    ck_assert(memcmp(p, want, sizeof p) == 0);
    double tau;
    ck_assert_int_eq(kd_threshold_get_float(th, KD_THRESHOLD_PARAM_THRESHOLD, &tau), KD_OK);
    ck_assert(tau == (double)0.7f);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_MAPPING, &m), KD_OK);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_WARMUP, &w), KD_OK);
    ck_assert_int_eq(kd_threshold_get_int(th, KD_THRESHOLD_PARAM_NON_STRICT, &s), KD_OK);
    ck_assert(m == KD_THRESHOLD_MAPPING_LINEAR && w == 1 && s == 1);
    float t[3];
    ck_assert_int_eq(kd_threshold_get_floats(th, KD_THRESHOLD_STATE_CLASS_THRESHOLDS, 3, t), KD_OK);
    ck_assert_float_eq(t[0], 0.233333334f); /* printed by that commit */
    ck_assert_float_eq(t[2], 0.699999988f);
    kd_threshold_destroy(th);

    kd_flexmatch *fm;
    ck_assert_int_eq(kd_flexmatch_create(&fm, 8, 3), KD_OK);
    ck_assert_int_eq(kd_flexmatch_load(fm, KDT_DATA_DIR "/flexmatch_v1.kdstate"), KD_OK);
    kd_flexmatch_destroy(fm);

    /* EMA, written by the same commit: two arrays {3}, {2}, decay 0.5f,
     * Mean-Teacher warm-up, two updates */
    float a[3] = {0}, b[2] = {0};
    const float *arrays[2] = {a, b};
    kd_ema *e;
    ck_assert_int_eq(kd_ema_create(&e, 2, arrays, (int64_t[]){3, 2}, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_load(e, KDT_DATA_DIR "/ema_v1.kdstate"), KD_OK);
    const kd_ema *ro = e;
    double d;
    int64_t wu, step;
    ck_assert_int_eq(kd_ema_get_float(ro, KD_EMA_PARAM_DECAY, &d), KD_OK);
    ck_assert(d == 0.5);
    ck_assert_int_eq(kd_ema_get_int(ro, KD_EMA_PARAM_WARMUP, &wu), KD_OK);
    ck_assert_int_eq(wu, KD_EMA_WARMUP_MEAN_TEACHER);
    ck_assert_int_eq(kd_ema_step(ro, &step), KD_OK);
    ck_assert_int_eq(step, 2);
    const float *teacher;
    ck_assert_int_eq(kd_ema_teacher_flat(ro, &teacher, NULL), KD_OK);
    ck_assert(teacher[0] == 3 && teacher[1] == 2 && teacher[2] == 1 && teacher[3] == 0 &&
              teacher[4] == 1);
    kd_ema_destroy(e);
}
END_TEST

/* A header that claims a meta section of 1 GiB in a sparse file of that size
 * (checksums right): refused before anything is allocated. */
static void huge_meta_file(const char *path, const char *magic, uint32_t version)
{
    unsigned char h[36] = {0};
    memcpy(h, magic, 8);
    h[8] = (unsigned char)version;
    const uint64_t msize = (uint64_t)1 << 30;
    for (int i = 0; i < 8; i++)
        h[16 + i] = (unsigned char)(msize >> (8 * i));
    uint32_t crc = kdt_crc32c(h, 32);
    for (int i = 0; i < 4; i++)
        h[32 + i] = (unsigned char)(crc >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, h, sizeof h), (ssize_t)sizeof h);
    ck_assert_int_eq(ftruncate(fd, (off_t)(44 + msize)), 0);
    close(fd);
}

START_TEST(a_huge_meta_section_is_corrupt_before_any_allocation)
{
    dir_setup();
    huge_meta_file(in_dir("fm"), "KDFLEXM\0", 2);
    kd_threshold *th = flexmatch(8, 3);
    ck_assert_int_eq(kd_threshold_load(th, in_dir("fm")), KD_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(kd_threshold_last_error(th), "at most"));
    kd_threshold_destroy(th);
    huge_meta_file(in_dir("ema"), "KDLIBEMA", 2);
    float a[3] = {0};
    kd_ema *e;
    ck_assert_int_eq(kd_ema_create_flat(&e, a, 3), KD_OK);
    ck_assert_int_eq(kd_ema_load(e, in_dir("ema")), KD_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(e), "at most"));
    kd_ema_destroy(e);
    dir_teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threshold");
    TCase *t = tcase_create("family");
    tcase_add_test(t, create_refuses_unknown_algorithms_and_shapes_with_a_message);
    tcase_add_test(t, real_parameters_are_double_and_getters_take_const_handles);
    tcase_add_test(t, the_flexmatch_layer_and_the_family_agree_bit_for_bit);
    tcase_add_test(t, weights_and_state_arrays_refuse_bad_calls_and_write_nothing);
    suite_add_tcase(s, t);
    TCase *f = tcase_create("statefile");
    tcase_add_test(f, a_double_threshold_survives_save_and_load);
    tcase_add_test(f, files_of_format_version_1_still_load);
    tcase_add_test(f, a_huge_meta_section_is_corrupt_before_any_allocation);
    suite_add_tcase(s, f);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
