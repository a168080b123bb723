/* Test support for the kd_threshold algorithms' state files: a table of
 * loads that must fail, each with its status and a part of its message,
 * and leave the handle exactly as it was.  Header only (uses Check and
 * libkd, unlike kdtest.c). */
#ifndef KDT_THRESHOLD_H
#define KDT_THRESHOLD_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdtest.h"

#include "kdlib/kdlib.h"

typedef struct {
    const char *file;
    kd_status want;
    const char *msg; /* a part of the message ("" for any) */
} kdt_failed_load;

/* The state of th as nfloats floats (the test's own snapshot). */
typedef void (*kdt_snapshot)(const kd_threshold *th, int64_t c, float *out);

/* Loads every file (path(file)) into th: each fails as listed, and afterwards
 * th's state is `before` (nfloats floats, by snap) and its parameter param is
 * still value.  buf: nfloats floats of scratch. */
static inline void kdt_failed_loads_change_nothing(kd_threshold *th, int64_t c,
                                                   const kdt_failed_load *fails, size_t nfails,
                                                   const char *(*path)(const char *),
                                                   kdt_snapshot snap, const float *before,
                                                   float *buf, size_t nfloats,
                                                   kd_threshold_param param, double value)
{
    for (size_t t = 0; t < nfails; t++) {
        const kd_status st = kd_threshold_load(th, path(fails[t].file));
        ck_assert_msg(st == fails[t].want, "%s: status %d (%s)", fails[t].file, (int)st,
                      kd_threshold_last_error(th));
        ck_assert_msg(strstr(kd_threshold_last_error(th), fails[t].msg) != NULL, "%s: '%s'",
                      fails[t].file, kd_threshold_last_error(th));
        snap(th, c, buf);
        ck_assert(memcmp(before, buf, nfloats * sizeof *buf) == 0);
        double v;
        ck_assert_int_eq(kd_threshold_get_float(th, param, &v), KD_OK);
        ck_assert(v == value);
    }
}

/* Save th to path, then overwrite the f64 number `index` of the file's data
 * section with value (valid checksums, an invalid state value). */
static inline void kdt_save_corrupted(const kd_threshold *th, const char *path, size_t index,
                                      double value)
{
    ck_assert_int_eq(kd_threshold_save(th, path), KD_OK);
    ck_assert_int_eq(kdt_statefile_set_data_f64(path, index, value), 0);
}

/* A temporary directory per test of a state-file test case: defines
 * in_dir(name) (a path in it) and the Check fixture dir_setup / dir_teardown
 * (tcase_add_checked_fixture), the directory named after prefix. */
#define KDT_STATE_DIR(prefix)                                                                      \
    static char kdt_state_dir_[256];                                                               \
    static const char *in_dir(const char *name) { return kdt_path(kdt_state_dir_, name); }         \
    static void dir_setup(void)                                                                    \
    {                                                                                              \
        ck_assert_int_eq(kdt_tmpdir(kdt_state_dir_, sizeof kdt_state_dir_, prefix), 0);            \
    }                                                                                              \
    static void dir_teardown(void) { ck_assert_int_eq(kdt_rmdir(kdt_state_dir_), 0); }

/* n softmax rows with stride ld: row k is softmax(z_k), z_kj = scale N(0, 1)
 * + bias[j] (bias NULL: 0; c <= 64), drawn row by row; z (NULL, or n * c
 * doubles) receives the logits; the padding columns take 5 (never read). */
static inline void kdt_softmax_rows(kdt_rng *g, int64_t n, int64_t c, int64_t ld, double scale,
                                    const double *bias, double *z, float *out)
{
    double row[64];
    ck_assert(c <= 64);
    for (int64_t k = 0; k < n; k++) {
        double *zk = z ? z + k * c : row, mx = -1e300, s = 0.0;
        for (int64_t j = 0; j < c; j++) {
            zk[j] = scale * kdt_normal(g) + (bias ? bias[j] : 0.0);
            mx = fmax(mx, zk[j]);
        }
        for (int64_t j = 0; j < c; j++)
            s += exp(zk[j] - mx);
        for (int64_t j = 0; j < c; j++)
            out[k * ld + j] = (float)(exp(zk[j] - mx) / s);
        for (int64_t j = c; j < ld; j++)
            out[k * ld + j] = 5.0f;
    }
}

/* Run the suite: the exit status of a test program. */
static inline int kdt_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
