/* EMA teacher: update rule and warm-up schedules against a double-precision
 * reference, copied buffers, swap / copy-back / reset, parameters, errors,
 * and the crash-safe checksummed state file (round trip, documented layout,
 * every truncation, every bit flip, shape mismatch, a save killed mid-way). */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdlib/ema.h"
#include "kdtest.h"

/* ---- helpers ---------------------------------------------------------------- */

/* A scratch directory per test, removed (with every file in it) at the end. */
static char g_dir[256];

static void dir_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/kd_ema_test.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void dir_clear(void)
{
    DIR *d = opendir(g_dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static void dir_teardown(void)
{
    dir_clear();
    rmdir(g_dir);
}

static void path_in_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *path, const unsigned char *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    if (size)
        ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
}

/* Everything observable of a handle, to check that a failed call changed nothing. */
typedef struct {
    int64_t step, total;
    double decay;
    int64_t warmup, threads;
    float *teacher;
} snapshot;

static snapshot take_snapshot(kd_ema *h)
{
    snapshot s;
    const float *t;
    ck_assert_int_eq(kd_ema_step(h, &s.step), KD_OK);
    ck_assert_int_eq(kd_ema_get_float(h, KD_EMA_PARAM_DECAY, &s.decay), KD_OK);
    ck_assert_int_eq(kd_ema_get_int(h, KD_EMA_PARAM_WARMUP, &s.warmup), KD_OK);
    ck_assert_int_eq(kd_ema_get_int(h, KD_EMA_PARAM_THREADS, &s.threads), KD_OK);
    ck_assert_int_eq(kd_ema_teacher_flat(h, &t, &s.total), KD_OK);
    s.teacher = malloc((size_t)s.total * sizeof(float) + 1);
    memcpy(s.teacher, t, (size_t)s.total * sizeof(float));
    return s;
}

static void assert_unchanged(kd_ema *h, snapshot *s)
{
    snapshot now = take_snapshot(h);
    ck_assert_int_eq(now.step, s->step);
    ck_assert_int_eq(now.total, s->total);
    ck_assert(memcmp(&now.decay, &s->decay, sizeof(float)) == 0);
    ck_assert_int_eq(now.warmup, s->warmup);
    ck_assert_int_eq(now.threads, s->threads);
    ck_assert(memcmp(now.teacher, s->teacher, (size_t)s->total * sizeof(float)) == 0);
    free(now.teacher);
}

static void free_snapshot(snapshot *s) { free(s->teacher); }

/* Bitwise CRC-32C, written from the definition, to check the file independently. */
static uint32_t ref_crc32c(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The small model used by the file tests: a weight, a bias and a BatchNorm buffer. */
enum { SMALL_K = 3 };
static const int64_t small_len[SMALL_K] = {6, 3, 2};
static const int32_t small_kind[SMALL_K] = {KD_EMA_AVERAGE, KD_EMA_AVERAGE, KD_EMA_COPY};

static kd_ema *small_model(uint64_t seed, float *w, float *b, float *bn)
{
    kdt_rng r;
    kdt_seed(&r, seed);
    kdt_fill_normal(&r, w, 6, 1.0);
    kdt_fill_normal(&r, b, 3, 1.0);
    kdt_fill_normal(&r, bn, 2, 1.0);
    const float *arrays[SMALL_K] = {w, b, bn};
    kd_ema *h = NULL;
    ck_assert_int_eq(kd_ema_create(&h, SMALL_K, arrays, small_len, small_kind), KD_OK);
    return h;
}

/* A small saved file and a second handle of the same shape in a different state. */
static unsigned char *small_file(char *path, size_t pathlen, size_t *size, kd_ema **other)
{
    float w[6], b[3], bn[2];
    kd_ema *h = small_model(11, w, b, bn);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.9f), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_TF), KD_OK);
    const float *arrays[SMALL_K] = {w, b, bn};
    for (int s = 0; s < 3; s++) {
        w[0] += 1.0f;
        ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK);
    }
    path_in_dir(path, pathlen, "small.kdema");
    ck_assert_int_eq(kd_ema_save(h, path), KD_OK);
    kd_ema_destroy(h);

    float w2[6], b2[3], bn2[2];
    *other = small_model(12, w2, b2, bn2);
    const float *arrays2[SMALL_K] = {w2, b2, bn2};
    ck_assert_int_eq(kd_ema_set_float(*other, KD_EMA_PARAM_DECAY, 0.5f), KD_OK);
    ck_assert_int_eq(kd_ema_update(*other, arrays2), KD_OK);
    return read_file(path, size);
}

/* ---- update rule -------------------------------------------------------- */

static double ref_decay(double a, int warmup, int64_t t)
{
    double w;
    if (warmup == KD_EMA_WARMUP_MEAN_TEACHER)
        w = 1.0 - 1.0 / (double)(t + 1);
    else if (warmup == KD_EMA_WARMUP_TF)
        w = (1.0 + (double)t) / (10.0 + (double)t);
    else
        return a;
    return w < a ? w : a;
}

/* Many steps of a drifting student against theta' = a_t theta' + (1 - a_t) theta
 * in double precision, over arrays of different lengths (one empty). */
static void check_against_reference(int warmup, float decay, int steps, int32_t threads)
{
    enum { K = 4 };
    const int64_t len[K] = {1000, 37, 1, 0};
    const int32_t kind[K] = {KD_EMA_AVERAGE, KD_EMA_AVERAGE, KD_EMA_AVERAGE, KD_EMA_AVERAGE};
    int64_t total = 1038;
    float *s = malloc((size_t)total * sizeof(float));
    double *ref = malloc((size_t)total * sizeof(double));
    kdt_rng r;
    kdt_seed(&r, 1234u + (uint64_t)warmup);
    kdt_fill_normal(&r, s, (size_t)total, 1.0);
    const float *arrays[K] = {s, s + 1000, s + 1037, NULL};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create(&h, K, arrays, len, kind), KD_OK);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, decay), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, warmup), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_THREADS, threads), KD_OK);
    for (int64_t i = 0; i < total; i++)
        ref[i] = s[i];

    double worst = 0.0;
    for (int64_t t = 0; t < steps; t++) {
        for (int64_t i = 0; i < total; i++)
            s[i] += (float)(0.1 * kdt_normal(&r));
        double a = ref_decay((double)decay, warmup, t);
        double next;
        ck_assert_int_eq(kd_ema_next_decay(h, &next), KD_OK);
        ck_assert_double_eq(next, a);
        for (int64_t i = 0; i < total; i++)
            ref[i] = a * ref[i] + (1.0 - a) * (double)s[i];
        ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK);
        int64_t step;
        ck_assert_int_eq(kd_ema_step(h, &step), KD_OK);
        ck_assert_int_eq(step, t + 1);

        const float *teacher;
        int64_t n;
        ck_assert_int_eq(kd_ema_teacher_flat(h, &teacher, &n), KD_OK);
        ck_assert_int_eq(n, total);
        for (int64_t i = 0; i < total; i++) {
            double d = fabs((double)teacher[i] - ref[i]) / (1.0 + fabs(ref[i]));
            if (d > worst)
                worst = d;
        }
    }
    /* float32 rounding of a contracting recurrence: a few ulps of the values */
    ck_assert_msg(worst < 5e-6, "max relative error %g (warm-up %d)", worst, warmup);
    kd_ema_destroy(h);
    free(s);
    free(ref);
}

START_TEST(update_matches_double_reference_without_warmup)
{
    check_against_reference(KD_EMA_WARMUP_NONE, 0.97f, 400, 1);
}
END_TEST

START_TEST(update_matches_double_reference_with_mean_teacher_warmup)
{
    /* min(a, 1 - 1/(t+1)) reaches a = 0.97 at t = 33 */
    check_against_reference(KD_EMA_WARMUP_MEAN_TEACHER, 0.97f, 400, 1);
}
END_TEST

START_TEST(update_matches_double_reference_with_tf_warmup)
{
    /* min(a, (1+t)/(10+t)) reaches a = 0.97 at t = 290 */
    check_against_reference(KD_EMA_WARMUP_TF, 0.97f, 400, 2);
}
END_TEST

START_TEST(mean_teacher_first_update_copies_the_student)
{
    float s[5] = {1, 2, 3, 4, 5};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create_flat(&h, s, 5), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER), KD_OK);
    float s2[5] = {-7.25f, 1e30f, -0.0f, 3.3f, 1e-40f};
    ck_assert_int_eq(kd_ema_update_flat(h, s2), KD_OK);
    const float *t;
    ck_assert_int_eq(kd_ema_teacher_flat(h, &t, NULL), KD_OK);
    ck_assert(memcmp(t, s2, sizeof s2) == 0);
    double next;
    ck_assert_int_eq(kd_ema_next_decay(h, &next), KD_OK);
    ck_assert_float_eq(next, 0.5f);

    /* decay 1 freezes the teacher bit for bit */
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 1.0f), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_NONE), KD_OK);
    float s3[5] = {INFINITY, NAN, 1, 2, 3};
    ck_assert_int_eq(kd_ema_update_flat(h, s3), KD_OK);
    ck_assert(memcmp(t, s2, sizeof s2) == 0);
    kd_ema_destroy(h);
}
END_TEST

START_TEST(copy_buffers_are_copied_not_averaged)
{
    float w[4] = {1, 1, 1, 1}, mean[3] = {0, 0, 0};
    const float *arrays[2] = {w, mean};
    const int64_t len[2] = {4, 3};
    const int32_t kind[2] = {KD_EMA_AVERAGE, KD_EMA_COPY};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, len, kind), KD_OK);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.75f), KD_OK);
    for (int step = 1; step <= 3; step++) {
        for (int i = 0; i < 4; i++)
            w[i] = 5.0f;
        for (int i = 0; i < 3; i++)
            mean[i] = (float)(step * 10 + i) + 0.1f;
        ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK);
        const float *tw, *tm;
        ck_assert_int_eq(kd_ema_teacher(h, 0, &tw, NULL), KD_OK);
        ck_assert_int_eq(kd_ema_teacher(h, 1, &tm, NULL), KD_OK);
        ck_assert(memcmp(tm, mean, sizeof mean) == 0);
        double expect = 5.0 - 4.0 * pow(0.75, step);
        ck_assert(fabs(tw[0] - expect) < 1e-6);
    }
    kd_ema_destroy(h);
}
END_TEST

START_TEST(flat_and_array_variants_agree)
{
    enum { N = 70000 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    kdt_rng r;
    kdt_seed(&r, 5);
    kdt_fill_normal(&r, a, N, 1.0);
    const int64_t len[3] = {50000, 1, N - 50001};
    const int32_t kind[3] = {KD_EMA_AVERAGE, KD_EMA_COPY, KD_EMA_AVERAGE};
    const float *arrays[3] = {a, a + 50000, a + 50001};
    kd_ema *h1, *h2;
    ck_assert_int_eq(kd_ema_create(&h1, 3, arrays, len, kind), KD_OK);
    ck_assert_int_eq(kd_ema_create(&h2, 3, arrays, len, kind), KD_OK);
    for (int s = 0; s < 5; s++) {
        kdt_fill_normal(&r, a, N, 1.0);
        ck_assert_int_eq(kd_ema_update(h1, arrays), KD_OK);
        ck_assert_int_eq(kd_ema_update_flat(h2, a), KD_OK);
    }
    const float *t1, *t2;
    ck_assert_int_eq(kd_ema_teacher_flat(h1, &t1, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_teacher_flat(h2, &t2, NULL), KD_OK);
    ck_assert(memcmp(t1, t2, N * sizeof(float)) == 0);
    ck_assert(t1[50000] == a[50000]); /* the COPY array */

    /* a teacher array is the matching slice of the flat view */
    const float *t;
    int64_t n;
    ck_assert_int_eq(kd_ema_teacher(h1, 2, &t, &n), KD_OK);
    ck_assert_ptr_eq(t, t1 + 50001);
    ck_assert_int_eq(n, N - 50001);
    int32_t k;
    int64_t total;
    ck_assert_int_eq(kd_ema_shape(h1, &k, &total), KD_OK);
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(total, N);

    /* copy_to_flat gives the teacher */
    ck_assert_int_eq(kd_ema_copy_to_flat(h2, b), KD_OK);
    ck_assert(memcmp(b, t1, N * sizeof(float)) == 0);
    kd_ema_destroy(h1);
    kd_ema_destroy(h2);
    free(a);
    free(b);
}
END_TEST

START_TEST(result_does_not_depend_on_thread_count)
{
    enum { N = 300001 };
    float *s = malloc(N * sizeof(float)), *ref = malloc(N * sizeof(float));
    kdt_rng r;
    const int32_t counts[4] = {1, 2, 3, 0};
    for (int c = 0; c < 4; c++) {
        kdt_seed(&r, 77);
        kdt_fill_normal(&r, s, N, 1.0);
        const int64_t len[4] = {100000, 3, 199997, 1};
        const float *arrays[4] = {s, s + 100000, s + 100003, s + 300000};
        kd_ema *h;
        ck_assert_int_eq(kd_ema_create(&h, 4, arrays, len, NULL), KD_OK);
        ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_THREADS, counts[c]), KD_OK);
        ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_TF), KD_OK);
        for (int t = 0; t < 4; t++) {
            kdt_fill_normal(&r, s, N, 1.0);
            ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK);
        }
        const float *t;
        ck_assert_int_eq(kd_ema_teacher_flat(h, &t, NULL), KD_OK);
        if (c == 0)
            memcpy(ref, t, N * sizeof(float));
        else
            ck_assert_msg(memcmp(ref, t, N * sizeof(float)) == 0, "threads %d differ", counts[c]);
        kd_ema_destroy(h);
    }
    free(s);
    free(ref);
}
END_TEST

START_TEST(copy_to_swap_and_reset)
{
    float w[3] = {1, 2, 3}, bn[2] = {10, 20};
    const float *arrays[2] = {w, bn};
    float *warrays[2] = {w, bn};
    const int64_t len[2] = {3, 2};
    const int32_t kind[2] = {KD_EMA_AVERAGE, KD_EMA_COPY};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, len, kind), KD_OK);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.5f), KD_OK);
    w[0] = 3;
    w[1] = 4;
    w[2] = 5;
    bn[0] = 11;
    bn[1] = 21;
    ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK); /* teacher {2,3,4} {11,21} */

    /* swap exchanges both kinds, twice restores both sides */
    ck_assert_int_eq(kd_ema_swap(h, warrays), KD_OK);
    ck_assert(w[0] == 2 && w[1] == 3 && w[2] == 4 && bn[0] == 11 && bn[1] == 21);
    const float *t;
    ck_assert_int_eq(kd_ema_teacher(h, 0, &t, NULL), KD_OK);
    ck_assert(t[0] == 3 && t[1] == 4 && t[2] == 5);
    ck_assert_int_eq(kd_ema_swap(h, warrays), KD_OK);
    ck_assert(w[0] == 3 && w[1] == 4 && w[2] == 5);
    ck_assert(t[0] == 2 && t[1] == 3 && t[2] == 4);
    int64_t step;
    ck_assert_int_eq(kd_ema_step(h, &step), KD_OK);
    ck_assert_int_eq(step, 1);

    /* copy_to writes the teacher into the student and leaves the handle alone */
    snapshot before = take_snapshot(h);
    ck_assert_int_eq(kd_ema_copy_to(h, warrays), KD_OK);
    ck_assert(w[0] == 2 && w[1] == 3 && w[2] == 4);
    assert_unchanged(h, &before);
    free_snapshot(&before);

    /* swap_flat */
    float flat[5] = {0, 0, 0, 0, 0};
    ck_assert_int_eq(kd_ema_swap_flat(h, flat), KD_OK);
    ck_assert(flat[0] == 2 && flat[3] == 11 && t[0] == 0);
    ck_assert_int_eq(kd_ema_swap_flat(h, flat), KD_OK);

    /* reset: teacher = given arrays, step 0, parameters kept */
    float w2[3] = {7, 8, 9}, bn2[2] = {1, 1};
    const float *arrays2[2] = {w2, bn2};
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER), KD_OK);
    ck_assert_int_eq(kd_ema_reset(h, arrays2), KD_OK);
    ck_assert(t[0] == 7 && t[1] == 8 && t[2] == 9);
    ck_assert_int_eq(kd_ema_step(h, &step), KD_OK);
    ck_assert_int_eq(step, 0);
    double d;
    int64_t wu;
    ck_assert_int_eq(kd_ema_get_float(h, KD_EMA_PARAM_DECAY, &d), KD_OK);
    ck_assert_float_eq(d, 0.5f);
    ck_assert_int_eq(kd_ema_get_int(h, KD_EMA_PARAM_WARMUP, &wu), KD_OK);
    ck_assert_int_eq(wu, KD_EMA_WARMUP_MEAN_TEACHER);
    float flat2[5] = {4, 4, 4, 4, 4};
    ck_assert_int_eq(kd_ema_reset_flat(h, flat2), KD_OK);
    ck_assert(t[0] == 4 && t[2] == 4);
    kd_ema_destroy(h);
}
END_TEST

/* ---- parameters ------------------------------------------------------------ */

START_TEST(pinned_enum_values)
{
    ck_assert_int_eq(KD_EMA_AVERAGE, 0);
    ck_assert_int_eq(KD_EMA_COPY, 1);
    ck_assert_int_eq(KD_EMA_PARAM_DECAY, 1);
    ck_assert_int_eq(KD_EMA_PARAM_WARMUP, 2);
    ck_assert_int_eq(KD_EMA_PARAM_THREADS, 3);
    ck_assert_int_eq(KD_EMA_WARMUP_NONE, 0);
    ck_assert_int_eq(KD_EMA_WARMUP_MEAN_TEACHER, 1);
    ck_assert_int_eq(KD_EMA_WARMUP_TF, 2);
}
END_TEST

START_TEST(parameters_have_defaults_and_are_validated_at_set_time)
{
    float s[2] = {0, 0};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create_flat(&h, s, 2), KD_OK);
    double d;
    int64_t v;
    ck_assert_int_eq(kd_ema_get_float(h, KD_EMA_PARAM_DECAY, &d), KD_OK);
    ck_assert_double_eq(d, 0.999);
    ck_assert_int_eq(kd_ema_get_int(h, KD_EMA_PARAM_WARMUP, &v), KD_OK);
    ck_assert_int_eq(v, KD_EMA_WARMUP_NONE);
    ck_assert_int_eq(kd_ema_get_int(h, KD_EMA_PARAM_THREADS, &v), KD_OK);
    ck_assert_int_eq(v, 1);

    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 1.5f), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "KD_EMA_PARAM_DECAY"));
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "1.5"));
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, -0.01f), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, NAN), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_ema_get_float(h, KD_EMA_PARAM_DECAY, &d), KD_OK);
    ck_assert_double_eq(d, 0.999); /* old value kept */
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.0f), KD_OK);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 1.0f), KD_OK);

    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "KD_EMA_PARAM_WARMUP"));
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "3"));
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, -1), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_THREADS, -1), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "KD_EMA_PARAM_THREADS"));
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_THREADS, KD_EMA_MAX_THREADS + 1),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_ema_get_int(h, KD_EMA_PARAM_THREADS, &v), KD_OK);
    ck_assert_int_eq(v, 1);
    ck_assert_str_eq(kd_ema_last_error(h), ""); /* cleared by the successful call */

    /* wrong type, unknown key */
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_DECAY, 1), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "KD_EMA_PARAM_DECAY"));
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_THREADS, 1.0f), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_ema_set_float(h, 99, 1.0f), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "99"));
    ck_assert_int_eq(kd_ema_get_int(h, 0, &v), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_ema_get_float(h, KD_EMA_PARAM_DECAY, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_set_float(NULL, KD_EMA_PARAM_DECAY, 0.5f), KD_ERR_NULL_POINTER);

    double lo, hi;
    ck_assert_int_eq(kd_ema_param_bounds(KD_EMA_PARAM_DECAY, &lo, &hi), KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0);
    ck_assert_int_eq(kd_ema_param_bounds(KD_EMA_PARAM_WARMUP, &lo, &hi), KD_OK);
    ck_assert(lo == 0.0 && hi == 2.0);
    ck_assert_int_eq(kd_ema_param_bounds(KD_EMA_PARAM_THREADS, &lo, &hi), KD_OK);
    ck_assert(lo == 0.0 && hi == KD_EMA_MAX_THREADS);
    ck_assert_int_eq(kd_ema_param_bounds(42, &lo, &hi), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_ema_param_bounds(KD_EMA_PARAM_DECAY, NULL, &hi), KD_ERR_NULL_POINTER);
    kd_ema_destroy(h);
}
END_TEST

/* ---- argument errors ---------------------------------------------------- */

START_TEST(create_rejects_null_size_and_kind_errors)
{
    float a[4] = {1, 2, 3, 4};
    const float *arrays[2] = {a, a + 2};
    const float *with_null[2] = {a, NULL};
    const int64_t len[2] = {2, 2}, neg[2] = {2, -1}, zero_second[2] = {2, 0};
    const int32_t bad_kind[2] = {KD_EMA_AVERAGE, 5};
    kd_ema *h = (kd_ema *)0x1;

    ck_assert_int_eq(kd_ema_create(NULL, 2, arrays, len, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "out"));
    ck_assert_int_eq(kd_ema_create(&h, 0, arrays, len, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "num_arrays = 0"));
    ck_assert_int_eq(kd_ema_create(&h, -3, arrays, len, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_ema_create(&h, 2, NULL, len, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "arrays is NULL"));
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, NULL, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "lengths is NULL"));
    ck_assert_int_eq(kd_ema_create(&h, 2, with_null, len, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "arrays[1]"));
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, neg, NULL), KD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "lengths[1] = -1"));
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, len, bad_kind), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "kinds[1] = 5"));
    const int64_t huge[2] = {INT64_MAX / 2, INT64_MAX / 2};
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, huge, NULL), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_ema_create_flat(&h, NULL, 3), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "params"));
    ck_assert_int_eq(kd_ema_create_flat(&h, a, -2), KD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(NULL), "length = -2"));
    ck_assert_int_eq(kd_ema_create_flat(NULL, a, 2), KD_ERR_NULL_POINTER);
    ck_assert_ptr_eq(h, (kd_ema *)0x1); /* out untouched on every failure */

    /* an empty array may have a NULL pointer */
    ck_assert_int_eq(kd_ema_create(&h, 2, with_null, zero_second, NULL), KD_OK);
    ck_assert_str_eq(kd_ema_last_error(NULL), "");
    ck_assert_int_eq(kd_ema_update(h, with_null), KD_OK);
    kd_ema_destroy(h);
    kd_ema_destroy(NULL); /* no-op */
}
END_TEST

START_TEST(calls_reject_null_and_aliasing_and_change_nothing)
{
    float w[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    const float *arrays[2] = {w, b};
    const int64_t len[2] = {4, 2};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create(&h, 2, arrays, len, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.5f), KD_OK);
    ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK);
    snapshot before = take_snapshot(h);

    ck_assert_int_eq(kd_ema_update(NULL, arrays), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_update(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "student_arrays"));
    const float *half[2] = {w, NULL};
    ck_assert_int_eq(kd_ema_update(h, half), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "student_arrays[1]"));
    ck_assert_int_eq(kd_ema_update_flat(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "student"));
    ck_assert_int_eq(kd_ema_reset(h, half), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_reset_flat(h, NULL), KD_ERR_NULL_POINTER);
    assert_unchanged(h, &before);

    /* student arrays that overlap the teacher */
    const float *t;
    ck_assert_int_eq(kd_ema_teacher_flat(h, &t, NULL), KD_OK);
    const float *alias[2] = {w, t + 1};
    ck_assert_int_eq(kd_ema_update(h, alias), KD_ERR_ALIASING);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "student_arrays[1]"));
    ck_assert_int_eq(kd_ema_update_flat(h, t), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_ema_copy_to_flat(h, (float *)t + 3), KD_ERR_ALIASING);
    ck_assert_int_eq(kd_ema_swap(h, (float *const *)alias), KD_ERR_ALIASING);
    assert_unchanged(h, &before);

    /* the caller's buffers are not written when a later array is bad */
    float out_w[4] = {-1, -1, -1, -1};
    float *partial[2] = {out_w, NULL};
    ck_assert_int_eq(kd_ema_copy_to(h, partial), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "student_arrays[1]"));
    ck_assert_int_eq(kd_ema_swap(h, partial), KD_ERR_NULL_POINTER);
    for (int i = 0; i < 4; i++)
        ck_assert(out_w[i] == -1.0f);
    ck_assert_int_eq(kd_ema_copy_to(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_swap_flat(h, NULL), KD_ERR_NULL_POINTER);
    assert_unchanged(h, &before);

    /* accessors */
    int64_t n = -5;
    ck_assert_int_eq(kd_ema_teacher(h, 2, &t, &n), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "index = 2"));
    ck_assert_int_eq(kd_ema_teacher(h, -1, &t, &n), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(n, -5);
    ck_assert_int_eq(kd_ema_teacher(h, 0, NULL, &n), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "data"));
    ck_assert_int_eq(kd_ema_teacher_flat(h, NULL, &n), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_step(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_step(NULL, &n), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_next_decay(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_shape(h, NULL, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_save(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "path"));
    ck_assert_int_eq(kd_ema_load(h, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_save(NULL, "x"), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_ema_load(NULL, "x"), KD_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(kd_ema_last_error(NULL));
    assert_unchanged(h, &before);
    free_snapshot(&before);
    kd_ema_destroy(h);
}
END_TEST

/* ---- state file ---------------------------------------------------------- */

START_TEST(save_load_round_trip_is_bit_exact)
{
    dir_setup();
    enum { N = 1000 };
    float *w = malloc(N * sizeof(float));
    kdt_rng r;
    kdt_seed(&r, 99);
    kdt_fill_normal(&r, w, N, 3.0);
    float bn[4] = {-0.0f, 1e-42f, INFINITY, 3.0f};
    const float *arrays[3] = {w, NULL, bn};
    const int64_t len[3] = {N, 0, 4};
    const int32_t kind[3] = {KD_EMA_AVERAGE, KD_EMA_AVERAGE, KD_EMA_COPY};
    kd_ema *h, *g;
    ck_assert_int_eq(kd_ema_create(&h, 3, arrays, len, kind), KD_OK);
    ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.9937f), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(h, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER), KD_OK);
    for (int s = 0; s < 7; s++) {
        kdt_fill_normal(&r, w, N, 3.0);
        ck_assert_int_eq(kd_ema_update(h, arrays), KD_OK);
    }
    char path[512];
    path_in_dir(path, sizeof path, "state.kdema");
    ck_assert_int_eq(kd_ema_save(h, path), KD_OK);
    ck_assert_str_eq(kd_ema_last_error(h), "");

    /* a handle of the same shape with other values and parameters */
    float *w2 = calloc(N, sizeof(float));
    float bn2[4] = {0, 0, 0, 0};
    const float *arrays2[3] = {w2, NULL, bn2};
    ck_assert_int_eq(kd_ema_create(&g, 3, arrays2, len, kind), KD_OK);
    ck_assert_int_eq(kd_ema_set_int(g, KD_EMA_PARAM_THREADS, 2), KD_OK);
    const float *tg;
    ck_assert_int_eq(kd_ema_teacher_flat(g, &tg, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_load(g, path), KD_OK);

    snapshot a = take_snapshot(h), b = take_snapshot(g);
    ck_assert_int_eq(b.step, 7);
    ck_assert_int_eq(a.step, b.step);
    ck_assert(memcmp(&a.decay, &b.decay, sizeof(float)) == 0);
    ck_assert_int_eq(b.warmup, KD_EMA_WARMUP_MEAN_TEACHER);
    ck_assert_int_eq(b.threads, 2); /* not part of the state */
    ck_assert(memcmp(a.teacher, b.teacher, (N + 4) * sizeof(float)) == 0);
    const float *tg2;
    ck_assert_int_eq(kd_ema_teacher_flat(g, &tg2, NULL), KD_OK);
    ck_assert_ptr_eq(tg, tg2); /* teacher storage does not move */

    /* both continue identically */
    kdt_fill_normal(&r, w, N, 3.0);
    const float *arrays3[3] = {w, NULL, bn};
    ck_assert_int_eq(kd_ema_update(h, arrays3), KD_OK);
    ck_assert_int_eq(kd_ema_update(g, arrays3), KD_OK);
    free_snapshot(&a);
    free_snapshot(&b);
    a = take_snapshot(h);
    b = take_snapshot(g);
    ck_assert(memcmp(a.teacher, b.teacher, (N + 4) * sizeof(float)) == 0);

    /* saving again over an existing file replaces it */
    ck_assert_int_eq(kd_ema_save(h, path), KD_OK);
    ck_assert_int_eq(kd_ema_load(g, path), KD_OK);
    ck_assert_int_eq(kd_ema_step(g, &b.step), KD_OK);
    ck_assert_int_eq(b.step, 8);

    free_snapshot(&a);
    free_snapshot(&b);
    kd_ema_destroy(h);
    kd_ema_destroy(g);
    free(w);
    free(w2);
    dir_teardown();
}
END_TEST

START_TEST(file_layout_matches_the_documentation)
{
    dir_setup();
    ck_assert_uint_eq(ref_crc32c((const unsigned char *)"123456789", 9), 0xE3069283u);
    char path[512];
    size_t size;
    kd_ema *other;
    unsigned char *f = small_file(path, sizeof path, &size, &other);
    const uint64_t k = SMALL_K, total = 11;
    const uint64_t m = 24 + 12 * k, d = 4 * total;
    ck_assert_uint_eq(size, 44 + m + d);
    ck_assert(memcmp(f, "KDLIBEMA", 8) == 0);
    ck_assert_uint_eq(le32(f + 8), 2);  /* format version */
    ck_assert_uint_eq(le32(f + 12), 0); /* flags */
    ck_assert_uint_eq(le64(f + 16), m);
    ck_assert_uint_eq(le64(f + 24), d);
    ck_assert_uint_eq(le32(f + 32), ref_crc32c(f, 32));
    const unsigned char *meta = f + 36;
    ck_assert_uint_eq(le32(meta + m), ref_crc32c(meta, m));
    const unsigned char *data = meta + m + 4;
    ck_assert_uint_eq(le32(data + d), ref_crc32c(data, d));

    ck_assert_uint_eq(le32(meta + 0), k);
    ck_assert_uint_eq(le32(meta + 4), KD_EMA_WARMUP_TF);
    ck_assert_uint_eq(le64(meta + 8), 3); /* step */
    uint64_t bits = le64(meta + 16);      /* version 2: the decay as f64 */
    double decay;
    memcpy(&decay, &bits, 8);
    ck_assert_double_eq(decay, (double)0.9f);
    for (uint64_t i = 0; i < k; i++) {
        ck_assert_uint_eq(le64(meta + 24 + 8 * i), (uint64_t)small_len[i]);
        ck_assert_uint_eq(le32(meta + 24 + 8 * k + 4 * i), (uint32_t)small_kind[i]);
    }
    /* the data section is the teacher, float32 little-endian, in array order */
    kd_ema *h;
    float w[6], b[3], bn[2];
    h = small_model(1, w, b, bn);
    ck_assert_int_eq(kd_ema_load(h, path), KD_OK);
    const float *t;
    ck_assert_int_eq(kd_ema_teacher_flat(h, &t, NULL), KD_OK);
    for (uint64_t i = 0; i < total; i++) {
        uint32_t v = le32(data + 4 * i);
        float x;
        memcpy(&x, &v, 4);
        ck_assert(memcmp(&x, &t[i], 4) == 0);
    }
    kd_ema_destroy(h);
    kd_ema_destroy(other);
    free(f);
    dir_teardown();
}
END_TEST

START_TEST(every_truncation_is_detected_and_changes_nothing)
{
    dir_setup();
    char path[512], bad[512];
    size_t size;
    kd_ema *h;
    unsigned char *f = small_file(path, sizeof path, &size, &h);
    path_in_dir(bad, sizeof bad, "truncated.kdema");
    snapshot before = take_snapshot(h);
    for (size_t n = 0; n < size; n++) {
        write_file(bad, f, n);
        kd_status st = kd_ema_load(h, bad);
        ck_assert_msg(st == KD_ERR_CORRUPT, "length %zu of %zu: status %d (%s)", n, size, (int)st,
                      kd_ema_last_error(h));
        ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), bad));
        assert_unchanged(h, &before);
    }
    /* one byte too many */
    unsigned char *longer = malloc(size + 1);
    memcpy(longer, f, size);
    longer[size] = 0;
    write_file(bad, longer, size + 1);
    ck_assert_int_eq(kd_ema_load(h, bad), KD_ERR_CORRUPT);
    assert_unchanged(h, &before);
    /* and the complete file loads */
    write_file(bad, f, size);
    ck_assert_int_eq(kd_ema_load(h, bad), KD_OK);
    free(longer);
    free_snapshot(&before);
    kd_ema_destroy(h);
    free(f);
    dir_teardown();
}
END_TEST

START_TEST(every_bit_flip_is_detected_and_changes_nothing)
{
    dir_setup();
    char path[512], bad[512];
    size_t size;
    kd_ema *h;
    unsigned char *f = small_file(path, sizeof path, &size, &h);
    path_in_dir(bad, sizeof bad, "flipped.kdema");
    snapshot before = take_snapshot(h);
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            f[i] ^= (unsigned char)(1u << bit);
            write_file(bad, f, size);
            kd_status st = kd_ema_load(h, bad);
            /* magic and version are checked first and report KD_ERR_VERSION */
            kd_status want = i < 12 ? KD_ERR_VERSION : KD_ERR_CORRUPT;
            ck_assert_msg(st == want, "byte %zu bit %d: status %d (%s)", i, bit, (int)st,
                          kd_ema_last_error(h));
            assert_unchanged(h, &before);
            f[i] ^= (unsigned char)(1u << bit);
        }
    }
    free_snapshot(&before);
    kd_ema_destroy(h);
    free(f);
    dir_teardown();
}
END_TEST

START_TEST(file_of_another_shape_is_refused_with_mismatch)
{
    dir_setup();
    char path[512];
    size_t size;
    kd_ema *h;
    unsigned char *f = small_file(path, sizeof path, &size, &h);
    free(f);
    float a[16] = {0};
    kd_ema *g;

    /* different length of one array */
    const float *arrays[3] = {a, a + 6, a + 10};
    const int64_t len2[3] = {6, 4, 2};
    ck_assert_int_eq(kd_ema_create(&g, 3, arrays, len2, small_kind), KD_OK);
    snapshot before = take_snapshot(g);
    ck_assert_int_eq(kd_ema_load(g, path), KD_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(g), "array 1 has length 3"));
    assert_unchanged(g, &before);
    free_snapshot(&before);
    kd_ema_destroy(g);

    /* different number of arrays, same total */
    const int64_t len3[2] = {9, 2};
    const int32_t kind3[2] = {KD_EMA_AVERAGE, KD_EMA_COPY};
    ck_assert_int_eq(kd_ema_create(&g, 2, arrays, len3, kind3), KD_OK);
    ck_assert_int_eq(kd_ema_load(g, path), KD_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(g), "3 arrays"));
    kd_ema_destroy(g);

    /* same lengths, a buffer registered as averaged */
    ck_assert_int_eq(kd_ema_create(&g, 3, arrays, small_len, NULL), KD_OK);
    ck_assert_int_eq(kd_ema_load(g, path), KD_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(g), "kind"));
    kd_ema_destroy(g);

    /* the right shape loads */
    ck_assert_int_eq(kd_ema_create(&g, 3, arrays, small_len, small_kind), KD_OK);
    ck_assert_int_eq(kd_ema_load(g, path), KD_OK);
    kd_ema_destroy(g);
    kd_ema_destroy(h);
    dir_teardown();
}
END_TEST

START_TEST(foreign_files_and_unknown_versions_are_refused)
{
    dir_setup();
    char path[512], bad[512];
    size_t size;
    kd_ema *h;
    unsigned char *f = small_file(path, sizeof path, &size, &h);
    path_in_dir(bad, sizeof bad, "other");
    snapshot before = take_snapshot(h);

    const char *text = "this is not a kdlib state file, just some text that is long enough\n";
    write_file(bad, (const unsigned char *)text, strlen(text));
    ck_assert_int_eq(kd_ema_load(h, bad), KD_ERR_VERSION);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "magic"));
    write_file(bad, (const unsigned char *)"PK", 2); /* short and not a prefix of the magic */
    ck_assert_int_eq(kd_ema_load(h, bad), KD_ERR_VERSION);

    /* a future format version, with a valid header checksum */
    put_le32(f + 8, 3);
    put_le32(f + 32, ref_crc32c(f, 32));
    write_file(bad, f, size);
    ck_assert_int_eq(kd_ema_load(h, bad), KD_ERR_VERSION);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), "version 3"));
    put_le32(f + 8, 0);
    put_le32(f + 32, ref_crc32c(f, 32));
    write_file(bad, f, size);
    ck_assert_int_eq(kd_ema_load(h, bad), KD_ERR_VERSION);
    put_le32(f + 8, 1);
    put_le32(f + 32, ref_crc32c(f, 32));

    /* valid checksums around invalid values are still refused */
    unsigned char *meta = f + 36;
    uint64_t m = le64(f + 16);
    put_le32(meta + 4, 7); /* warm-up schedule 7 */
    put_le32(meta + m, ref_crc32c(meta, m));
    write_file(bad, f, size);
    ck_assert_int_eq(kd_ema_load(h, bad), KD_ERR_CORRUPT);
    assert_unchanged(h, &before);
    free_snapshot(&before);
    kd_ema_destroy(h);
    free(f);
    dir_teardown();
}
END_TEST

START_TEST(io_errors_name_the_path)
{
    dir_setup();
    float s[3] = {1, 2, 3};
    kd_ema *h;
    ck_assert_int_eq(kd_ema_create_flat(&h, s, 3), KD_OK);
    snapshot before = take_snapshot(h);
    char path[512];
    path_in_dir(path, sizeof path, "missing.kdema");
    ck_assert_int_eq(kd_ema_load(h, path), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), path));
    ck_assert_int_eq(kd_ema_load(h, g_dir), KD_ERR_IO); /* a directory */
    path_in_dir(path, sizeof path, "no/such/dir/state.kdema");
    ck_assert_int_eq(kd_ema_save(h, path), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_ema_last_error(h), path));
    ck_assert_int_eq(kd_ema_save(h, g_dir), KD_ERR_IO); /* cannot replace a directory */
    assert_unchanged(h, &before);
    /* a failed save leaves no temporary file behind */
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL)
        files += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    ck_assert_int_eq(files, 0);
    free_snapshot(&before);
    kd_ema_destroy(h);
    dir_teardown();
}
END_TEST

/* The deterministic student of step k of the kill test. */
static void killed_student(float *s, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < n; i++)
        s[i] = (float)((i % 1000) - 500) * 0.01f + 0.125f * (float)k;
}

static int temp_file_exists(void)
{
    DIR *d = opendir(g_dir);
    if (!d)
        return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp-"))
            found = 1;
    closedir(d);
    return found;
}

START_TEST(save_killed_mid_way_leaves_a_loadable_previous_file)
{
    dir_setup();
    enum { N = 1 << 22 }; /* 16 MiB of state: a save takes a while */
    float *s = malloc((size_t)N * sizeof(float));
    char path[512];
    path_in_dir(path, sizeof path, "big.kdema");
    int killed_mid_save = 0;

    for (int round = 0; round < 4; round++) {
        killed_student(s, N, 0);
        kd_ema *h;
        ck_assert_int_eq(kd_ema_create_flat(&h, s, N), KD_OK);
        ck_assert_int_eq(kd_ema_set_float(h, KD_EMA_PARAM_DECAY, 0.9f), KD_OK);
        ck_assert_int_eq(kd_ema_save(h, path), KD_OK); /* the previous file: step 0 */

        int pipefd[2];
        ck_assert_int_eq(pipe(pipefd), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(pipefd[0]);
            for (int64_t k = 1;; k++) {
                killed_student(s, N, k);
                if (kd_ema_update_flat(h, s) != KD_OK || kd_ema_save(h, path) != KD_OK)
                    _exit(3);
                if (k == 1 && write(pipefd[1], "x", 1) != 1)
                    _exit(4);
            }
        }
        close(pipefd[1]);
        char c;
        ck_assert_int_eq(read(pipefd[0], &c, 1), 1); /* one complete save done */
        close(pipefd[0]);
        /* Kill while a temporary file exists, i.e. during a save (bounded wait). */
        struct timespec pause = {0, 100000};
        for (int spin = 0; spin < 200000 && !temp_file_exists(); spin++)
            nanosleep(&pause, NULL);
        int mid = temp_file_exists();
        if (round % 2 == 1) { /* odd rounds: let the save get further first */
            struct timespec more = {0, 2000000L * round};
            nanosleep(&more, NULL);
        }
        kill(pid, SIGKILL);
        int wstatus;
        ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
        ck_assert(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
        killed_mid_save += mid && temp_file_exists();

        /* The file at path is complete and is one of the saved states. */
        kd_ema *g;
        ck_assert_int_eq(kd_ema_create_flat(&g, s, N), KD_OK);
        ck_assert_msg(kd_ema_load(g, path) == KD_OK, "round %d: %s", round, kd_ema_last_error(g));
        int64_t step;
        ck_assert_int_eq(kd_ema_step(g, &step), KD_OK);
        ck_assert_int_ge(step, 1);
        for (int64_t k = 1; k <= step; k++) {
            killed_student(s, N, k);
            ck_assert_int_eq(kd_ema_update_flat(h, s), KD_OK);
        }
        const float *th, *tg;
        ck_assert_int_eq(kd_ema_teacher_flat(h, &th, NULL), KD_OK);
        ck_assert_int_eq(kd_ema_teacher_flat(g, &tg, NULL), KD_OK);
        ck_assert_msg(memcmp(th, tg, (size_t)N * sizeof(float)) == 0, "round %d step %lld", round,
                      (long long)step);
        kd_ema_destroy(g);
        kd_ema_destroy(h);
        dir_clear(); /* the stale temporary file, and the state file */
    }
    ck_assert_msg(killed_mid_save >= 1, "no round was killed during a save");
    free(s);
    dir_teardown();
}
END_TEST

static Suite *ema_suite(void)
{
    Suite *s = suite_create("ema");
    TCase *tc = tcase_create("update");
    tcase_add_test(tc, update_matches_double_reference_without_warmup);
    tcase_add_test(tc, update_matches_double_reference_with_mean_teacher_warmup);
    tcase_add_test(tc, update_matches_double_reference_with_tf_warmup);
    tcase_add_test(tc, mean_teacher_first_update_copies_the_student);
    tcase_add_test(tc, copy_buffers_are_copied_not_averaged);
    tcase_add_test(tc, flat_and_array_variants_agree);
    tcase_add_test(tc, result_does_not_depend_on_thread_count);
    tcase_add_test(tc, copy_to_swap_and_reset);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_test(tc, pinned_enum_values);
    tcase_add_test(tc, parameters_have_defaults_and_are_validated_at_set_time);
    tcase_add_test(tc, create_rejects_null_size_and_kind_errors);
    tcase_add_test(tc, calls_reject_null_and_aliasing_and_change_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("statefile");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, save_load_round_trip_is_bit_exact);
    tcase_add_test(tc, file_layout_matches_the_documentation);
    tcase_add_test(tc, every_truncation_is_detected_and_changes_nothing);
    tcase_add_test(tc, every_bit_flip_is_detected_and_changes_nothing);
    tcase_add_test(tc, file_of_another_shape_is_refused_with_mismatch);
    tcase_add_test(tc, foreign_files_and_unknown_versions_are_refused);
    tcase_add_test(tc, io_errors_name_the_path);
    tcase_add_test(tc, save_killed_mid_way_leaves_a_loadable_previous_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ema_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
