/* cleanlab-compatible confident learning (kd_cleanlab_*, labels.h) against
 * golden outputs of the real cleanlab 2.9.0 (tests/data/cleanlab_fixtures.txt,
 * written by tests/data/cleanlab_make_fixtures.py): thresholds, confident
 * joint (raw and calibrated), off-diagonal rows, estimate_joint (computed and
 * custom), py / noise matrices (four flag combinations), num_label_issues,
 * every filter with frac_noise / min_examples_per_class /
 * num_to_remove_per_class and ranking, the quality scores.  Inputs: random
 * data and adversarial cases (ties, one-hot and uniform rows, empty classes,
 * n = 1, a class never confidently counted, values within 1e-6 of a
 * threshold).  Every case runs with a padded stride (NaN in the padding) and
 * again with ignored rows interleaved; errors write nothing. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"

/* ---- fixture loading ----------------------------------------------------------- */

typedef struct {
    char key[16];
    int64_t len;
    double *v;
} fx_rec;

typedef struct {
    char name[64];
    int64_t n, c;
    int32_t *labels;
    double *probs; /* n x c as written (float32 values) */
    int nrec;
    fx_rec *rec;
} fx_case;

static fx_case *g_cases;
static int g_ncases;

static void load_cases(void)
{
    if (g_cases)
        return;
    const char *path = KDT_DATA_DIR "/cleanlab_fixtures.txt";
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = 1 << 16;
    char *line = malloc(cap);
    int ccap = 32;
    g_cases = calloc((size_t)ccap, sizeof *g_cases);
    fx_case *cur = NULL;
    int rcap = 0;
    for (;;) {
        /* read one line of any length */
        size_t len = 0;
        int ch;
        while ((ch = fgetc(f)) != EOF && ch != '\n') {
            if (len + 2 > cap)
                line = realloc(line, cap *= 2);
            line[len++] = (char)ch;
        }
        line[len] = '\0';
        if (ch == EOF && len == 0)
            break;
        if (line[0] == '#' || len == 0)
            continue;
        char key[16] = {0};
        int used = 0;
        sscanf(line, "%15s%n", key, &used);
        if (strcmp(key, "case") == 0) {
            ck_assert(g_ncases < ccap);
            cur = &g_cases[g_ncases++];
            long long n, c;
            ck_assert(sscanf(line + used, "%63s %lld %lld", cur->name, &n, &c) == 3);
            cur->n = n;
            cur->c = c;
            rcap = 256;
            cur->rec = calloc((size_t)rcap, sizeof *cur->rec);
            continue;
        }
        if (strcmp(key, "end") == 0) {
            cur = NULL;
            continue;
        }
        ck_assert(cur != NULL);
        /* values */
        int64_t vcap = 64, nv = 0;
        double *v = malloc((size_t)vcap * sizeof *v);
        char *p = line + used, *e;
        for (;;) {
            double x = strtod(p, &e);
            if (e == p)
                break;
            if (nv == vcap)
                v = realloc(v, (size_t)(vcap *= 2) * sizeof *v);
            v[nv++] = x;
            p = e;
        }
        if (strcmp(key, "labels") == 0) {
            ck_assert_int_eq(nv, cur->n);
            cur->labels = malloc((size_t)(cur->n + 1) * sizeof *cur->labels);
            for (int64_t i = 0; i < nv; i++)
                cur->labels[i] = (int32_t)v[i];
            free(v);
        } else if (strcmp(key, "probs") == 0) {
            ck_assert_int_eq(nv, cur->n * cur->c);
            cur->probs = v;
        } else {
            ck_assert(cur->nrec < rcap);
            fx_rec *r = &cur->rec[cur->nrec++];
            snprintf(r->key, sizeof r->key, "%s", key);
            r->len = nv;
            r->v = v;
        }
    }
    free(line);
    fclose(f);
    ck_assert_int_ge(g_ncases, 18);
}

/* The inputs of a case as the tests pass them: stride ld = c + 2 with NaN
 * padding; with `ignored`, an ignored row (label -100, probabilities 0.5)
 * before every third row.  map[i] = row of fixture row i. */
typedef struct {
    int64_t n, c, ld;
    float *p;
    int32_t *y;
    int64_t *map;
} fx_input;

static fx_input make_input(const fx_case *fc, int ignored)
{
    fx_input in;
    in.c = fc->c;
    in.ld = fc->c + 2;
    in.n = fc->n + (ignored ? (fc->n + 2) / 3 : 0);
    in.p = malloc((size_t)(in.n * in.ld + 1) * sizeof *in.p);
    in.y = malloc((size_t)(in.n + 1) * sizeof *in.y);
    in.map = malloc((size_t)(fc->n + 1) * sizeof *in.map);
    int64_t r = 0;
    for (int64_t i = 0; i < fc->n; i++) {
        if (ignored && i % 3 == 0) {
            for (int64_t j = 0; j < in.ld; j++)
                in.p[r * in.ld + j] = j < in.c ? 0.5f : NAN;
            in.y[r++] = -100;
        }
        for (int64_t j = 0; j < in.ld; j++)
            in.p[r * in.ld + j] = j < in.c ? (float)fc->probs[i * in.c + j] : NAN;
        in.y[r] = fc->labels[i];
        in.map[i] = r++;
    }
    ck_assert_int_eq(r, in.n);
    return in;
}

static void free_input(fx_input *in)
{
    free(in->p);
    free(in->y);
    free(in->map);
}

#define FOR_EACH_INPUT(fc, in)                                                                     \
    for (int ci_ = 0; ci_ < g_ncases; ci_++)                                                       \
        for (int ig_ = 0; ig_ < 2; ig_++)                                                          \
            for (const fx_case *fc = &g_cases[ci_]; fc; fc = NULL)                                 \
                for (fx_input in = make_input(fc, ig_), *once_ = &in; once_;                       \
                     free_input(&in), once_ = NULL)

static void assert_close_vec(const char *what, const fx_case *fc, int ig, const double *got,
                             const double *want, int64_t len, double tol)
{
    for (int64_t k = 0; k < len; k++)
        ck_assert_msg(fabs(got[k] - want[k]) <= tol,
                      "%s, case %s%s: [%lld] = %.17g, cleanlab %.17g", what, fc->name,
                      ig ? " (ignored rows)" : "", (long long)k, got[k], want[k]);
}

static void assert_eq_i64(const char *what, const fx_case *fc, int ig, const int64_t *got,
                          const double *want, int64_t len)
{
    for (int64_t k = 0; k < len; k++)
        ck_assert_msg(got[k] == (int64_t)want[k], "%s, case %s%s: [%lld] = %lld, cleanlab %lld",
                      what, fc->name, ig ? " (ignored rows)" : "", (long long)k, (long long)got[k],
                      (long long)want[k]);
}

/* ---- confident joint and noise matrices ----------------------------------------- */

START_TEST(thresholds_match_cleanlab)
{
    load_cases();
    int checked = 0;
    FOR_EACH_INPUT(fc, in)
    {
        double t[16];
        char err[256];
        ck_assert_int_eq(kd_cleanlab_confident_thresholds(in.n, in.c, in.p, in.ld, in.y, -100, t,
                                                          err, sizeof err),
                         KD_OK);
        ck_assert_str_eq(err, "");
        for (int r = 0; r < fc->nrec; r++)
            if (strcmp(fc->rec[r].key, "thresholds") == 0) {
                /* same operations in the same order: bit-identical */
                assert_close_vec("thresholds", fc, ig_, t, fc->rec[r].v, in.c, 0.0);
                checked++;
            }
    }
    ck_assert_int_eq(checked, 2 * g_ncases);
}
END_TEST

START_TEST(confident_joint_and_off_diagonal_match_cleanlab)
{
    load_cases();
    int checked = 0;
    FOR_EACH_INPUT(fc, in)
    {
        int64_t cj[256], num;
        uint8_t *off = malloc((size_t)in.n + 1);
        for (int r = 0; r < fc->nrec; r++) {
            const fx_rec *rec = &fc->rec[r];
            if (strcmp(rec->key, "cj") == 0) {
                const int cal = (int)rec->v[0];
                ck_assert_int_eq(kd_cleanlab_confident_joint(in.n, in.c, in.p, in.ld, in.y, -100,
                                                             cal ? KD_CLEANLAB_CALIBRATE : 0, cj,
                                                             off, &num, NULL, 0),
                                 KD_OK);
                ck_assert_int_eq(rec->len, 1 + in.c * in.c);
                assert_eq_i64(cal ? "calibrated joint" : "confident joint", fc, ig_, cj, rec->v + 1,
                              in.c * in.c);
                checked++;
            } else if (strcmp(rec->key, "offdiag") == 0) {
                ck_assert_int_eq(kd_cleanlab_confident_joint(in.n, in.c, in.p, in.ld, in.y, -100, 0,
                                                             cj, off, &num, NULL, 0),
                                 KD_OK);
                ck_assert_int_eq(num, (int64_t)rec->v[0]);
                int64_t k = 0;
                for (int64_t i = 0; i < fc->n; i++) {
                    const int want = k < num && (int64_t)rec->v[1 + k] == i;
                    ck_assert_msg(off[in.map[i]] == want, "off-diagonal row %lld of %s",
                                  (long long)i, fc->name);
                    k += want;
                }
                for (int64_t i = 0; i < in.n; i++)
                    if (in.y[i] == -100)
                        ck_assert_int_eq(off[i], 0);
                checked++;
            }
        }
        free(off);
    }
    ck_assert_int_eq(checked, 6 * g_ncases);
}
END_TEST

START_TEST(estimate_joint_matches_cleanlab)
{
    load_cases();
    int checked = 0;
    FOR_EACH_INPUT(fc, in)
    {
        const int64_t cc = in.c * in.c;
        double joint[256];
        for (int r = 0; r < fc->nrec; r++) {
            const fx_rec *rec = &fc->rec[r];
            if (strcmp(rec->key, "joint") == 0) {
                ck_assert_int_eq(kd_cleanlab_estimate_joint(in.n, in.c, in.p, in.ld, in.y, -100,
                                                            NULL, joint, NULL, 0),
                                 KD_OK);
                assert_close_vec("estimate_joint", fc, ig_, joint, rec->v, cc, 1e-12);
                checked++;
            } else if (strcmp(rec->key, "customjoint") == 0) {
                int64_t custom[256];
                for (int64_t k = 0; k < cc; k++)
                    custom[k] = (int64_t)rec->v[k];
                ck_assert_int_eq(kd_cleanlab_estimate_joint(in.n, in.c, in.p, in.ld, in.y, -100,
                                                            custom, joint, NULL, 0),
                                 KD_OK);
                assert_close_vec("estimate_joint(custom)", fc, ig_, joint, rec->v + cc, cc, 1e-12);
                checked++;
            }
        }
    }
    ck_assert_int_eq(checked, 4 * g_ncases);
}
END_TEST

START_TEST(py_and_noise_matrices_match_cleanlab)
{
    load_cases();
    int checked = 0;
    FOR_EACH_INPUT(fc, in)
    {
        const int64_t c = in.c, cc = c * c;
        double py[16], nm[256], inv[256];
        int64_t cj[256];
        for (int r = 0; r < fc->nrec; r++) {
            const fx_rec *rec = &fc->rec[r];
            if (strcmp(rec->key, "latent") != 0)
                continue;
            const int flags = (int)rec->v[0];
            ck_assert_int_eq(rec->len, 1 + c + 3 * cc);
            ck_assert_int_eq(kd_cleanlab_estimate_py_and_noise_matrices(
                                 in.n, c, in.p, in.ld, in.y, -100, flags, py, nm, inv, cj, NULL, 0),
                             KD_OK);
            assert_close_vec("py", fc, ig_, py, rec->v + 1, c, 1e-6);
            assert_close_vec("noise_matrix", fc, ig_, nm, rec->v + 1 + c, cc, 1e-6);
            assert_close_vec("inv_noise_matrix", fc, ig_, inv, rec->v + 1 + c + cc, cc, 1e-6);
            assert_eq_i64("latent confident_joint", fc, ig_, cj, rec->v + 1 + c + 2 * cc, cc);
            checked++;
        }
    }
    ck_assert_int_eq(checked, 8 * g_ncases);
}
END_TEST

START_TEST(num_label_issues_matches_cleanlab)
{
    load_cases();
    int checked = 0;
    FOR_EACH_INPUT(fc, in)
    {
        int64_t num;
        for (int r = 0; r < fc->nrec; r++) {
            const fx_rec *rec = &fc->rec[r];
            if (strcmp(rec->key, "numissues") == 0) {
                ck_assert_int_eq(kd_cleanlab_num_label_issues(in.n, in.c, in.p, in.ld, in.y, -100,
                                                              (int32_t)rec->v[0], NULL, &num, NULL,
                                                              0),
                                 KD_OK);
                ck_assert_msg(num == (int64_t)rec->v[1],
                              "num_label_issues(%d) of %s: %lld, "
                              "cleanlab %lld",
                              (int)rec->v[0], fc->name, (long long)num, (long long)rec->v[1]);
                checked++;
            } else if (strcmp(rec->key, "numcustom") == 0) {
                int64_t custom[256];
                for (int64_t k = 0; k < in.c * in.c; k++)
                    custom[k] = (int64_t)rec->v[k];
                ck_assert_int_eq(kd_cleanlab_num_label_issues(in.n, in.c, in.p, in.ld, in.y, -100,
                                                              KD_CLEANLAB_OFF_DIAGONAL_CUSTOM,
                                                              custom, &num, NULL, 0),
                                 KD_OK);
                ck_assert_int_eq(num, (int64_t)rec->v[in.c * in.c]);
                checked++;
            }
        }
    }
    ck_assert_int_eq(checked, 6 * (g_ncases - 1)); /* cleanlab rejects n1_c3 (one class) */
}
END_TEST

/* A hand example of the tie rule: row 0 is confident in classes 0 and 1 and
 * its argmax is class 2 (not confident): cleanlab counts it as class 2. */
START_TEST(confident_joint_tie_rule_takes_the_argmax_of_all_classes)
{
    /* thresholds t = (0.2, 0.25, 0.8) */
    const float p[4 * 3] = {0.30f, 0.30f, 0.40f,  /* label 0 */
                            0.10f, 0.10f, 0.80f,  /* label 0: t0 = 0.2 */
                            0.05f, 0.25f, 0.70f,  /* label 1: t1 = 0.25 */
                            0.10f, 0.10f, 0.80f}; /* label 2: t2 = 0.8 */
    const int32_t y[4] = {0, 0, 1, 2};
    int64_t cj[9];
    uint8_t off[4];
    int64_t num;
    ck_assert_int_eq(kd_cleanlab_confident_joint(4, 3, p, 3, y, -100, 0, cj, off, &num, NULL, 0),
                     KD_OK);
    /* row 0: confident in 0 (0.30 >= 0.2) and 1 (0.30 >= 0.25), not 2 (0.4 < 0.8):
     * two confident classes -> argmax over all = class 2 (kd_find_label_issues,
     * the paper's rule, says class 0); row 1: only class 2 */
    ck_assert_int_eq(cj[0 * 3 + 2], 2); /* rows 0 and 1 */
    ck_assert_int_eq(off[0], 1);
    ck_assert_int_eq(cj[1 * 3 + 1], 1); /* row 2: only class 1 is confident */
    ck_assert_int_eq(cj[2 * 3 + 2], 1);
    ck_assert_int_eq(num, 2);
}
END_TEST

static Suite *cleanlab_suite(void)
{
    Suite *s = suite_create("cleanlab");
    TCase *tc = tcase_create("joint");
    tcase_add_test(tc, thresholds_match_cleanlab);
    tcase_add_test(tc, confident_joint_and_off_diagonal_match_cleanlab);
    tcase_add_test(tc, estimate_joint_matches_cleanlab);
    tcase_add_test(tc, py_and_noise_matrices_match_cleanlab);
    tcase_add_test(tc, num_label_issues_matches_cleanlab);
    tcase_add_test(tc, confident_joint_tie_rule_takes_the_argmax_of_all_classes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cleanlab_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
