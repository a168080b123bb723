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

/* ---- filters and scores ----------------------------------------------------------- */

/* issues FILTER FRAC MIN HAS_NTR [NTR x c] RANK ADJ K IDX... */
START_TEST(find_label_issues_matches_cleanlab_for_every_filter)
{
    load_cases();
    int checked = 0, per_filter[7] = {0};
    FOR_EACH_INPUT(fc, in)
    {
        uint8_t *mask = malloc((size_t)in.n + 1);
        int64_t *ranked = malloc((size_t)(in.n + 1) * sizeof *ranked);
        for (int r = 0; r < fc->nrec; r++) {
            const fx_rec *rec = &fc->rec[r];
            if (strcmp(rec->key, "issues") != 0)
                continue;
            const double *v = rec->v;
            const int32_t filter = (int32_t)v[0];
            const double frac = v[1];
            const int64_t min_ex = (int64_t)v[2];
            int64_t ntr[16], *pntr = NULL;
            int64_t at = 3;
            if (v[at++] != 0) {
                for (int64_t k = 0; k < in.c; k++)
                    ntr[k] = (int64_t)v[at++];
                pntr = ntr;
            }
            const int32_t rank = (int32_t)v[at++], adj = (int32_t)v[at++];
            const int64_t want = (int64_t)v[at++];
            ck_assert_int_eq(rec->len, at + want);
            int64_t num = -1;
            char err[256];
            ck_assert_msg(kd_cleanlab_find_label_issues(in.n, in.c, in.p, in.ld, in.y, -100, filter,
                                                        frac, pntr, min_ex, rank, adj, mask, ranked,
                                                        &num, err, sizeof err) == KD_OK,
                          "%s", err);
            ck_assert_msg(num == want,
                          "case %s%s, filter %d frac %g min %lld ntr %d rank %d: %lld issues, "
                          "cleanlab %lld",
                          fc->name, ig_ ? " (ignored rows)" : "", (int)filter, frac,
                          (long long)min_ex, pntr != NULL, (int)rank, (long long)num,
                          (long long)want);
            /* ranked: cleanlab's order exactly; mask: the same set */
            int64_t in_mask = 0;
            for (int64_t k = 0; k < want; k++) {
                const int64_t row = in.map[(int64_t)v[at + k]];
                ck_assert_msg(ranked[k] == row || rank == KD_CLEANLAB_RANK_NONE,
                              "case %s, filter %d, rank %d: ranked[%lld] = %lld, cleanlab %lld",
                              fc->name, (int)filter, (int)rank, (long long)k, (long long)ranked[k],
                              (long long)row);
                ck_assert_msg(mask[row] == 1, "case %s, filter %d: row %lld is not an issue",
                              fc->name, (int)filter, (long long)v[at + k]);
                if (rank == KD_CLEANLAB_RANK_NONE)
                    ck_assert_int_eq(ranked[k], row); /* row order */
            }
            for (int64_t i = 0; i < in.n; i++)
                in_mask += mask[i];
            ck_assert_int_eq(in_mask, want);
            per_filter[filter]++;
            checked++;
        }
        free(mask);
        free(ranked);
    }
    for (int f = 0; f < 7; f++)
        ck_assert_int_ge(per_filter[f], 2 * 10);
    ck_assert_int_ge(checked, 1500);
}
END_TEST

START_TEST(quality_scores_match_cleanlab)
{
    load_cases();
    int checked = 0;
    FOR_EACH_INPUT(fc, in)
    {
        double *s = malloc((size_t)(in.n + 1) * sizeof *s);
        double *want = malloc((size_t)(in.n + 1) * sizeof *want);
        for (int r = 0; r < fc->nrec; r++) {
            const fx_rec *rec = &fc->rec[r];
            if (strcmp(rec->key, "scores") != 0)
                continue;
            ck_assert_int_eq(rec->len, 2 + fc->n);
            ck_assert_int_eq(kd_cleanlab_get_label_quality_scores(in.n, in.c, in.p, in.ld, in.y,
                                                                  -100, (int32_t)rec->v[0],
                                                                  (int32_t)rec->v[1], s, NULL, 0),
                             KD_OK);
            for (int64_t i = 0; i < fc->n; i++)
                want[i] = s[in.map[i]];
            assert_close_vec("scores", fc, ig_, want, rec->v + 2, fc->n, 1e-12);
            for (int64_t i = 0; i < in.n; i++)
                if (in.y[i] == -100)
                    ck_assert(isnan(s[i]));
            checked++;
        }
        free(s);
        free(want);
    }
    ck_assert_int_eq(checked, 2 * 5 * g_ncases); /* 3 methods, 2 with adjust_pred_probs */
}
END_TEST

/* ---- errors ------------------------------------------------------------------------ */

START_TEST(errors_write_nothing_and_name_the_argument)
{
    const float p[6] = {0.7f, 0.3f, 0.2f, 0.8f, 0.6f, 0.4f};
    const int32_t y[3] = {0, 1, 1};
    double d[8] = {7, 7, 7, 7, 7, 7, 7, 7};
    int64_t cj[4] = {7, 7, 7, 7}, num = 7, ranked[3] = {7, 7, 7};
    uint8_t mask[3] = {7, 7, 7};
    char err[256];
#define UNTOUCHED()                                                                                \
    do {                                                                                           \
        for (int k_ = 0; k_ < 8; k_++)                                                             \
            ck_assert(d[k_] == 7);                                                                 \
        ck_assert(cj[0] == 7 && cj[3] == 7 && num == 7 && ranked[0] == 7 && mask[0] == 7);         \
    } while (0)
    ck_assert_int_eq(kd_cleanlab_confident_thresholds(3, 2, NULL, 2, y, -100, d, err, sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert(strstr(err, "probs") != NULL);
    ck_assert_int_eq(kd_cleanlab_confident_thresholds(3, 2, p, 1, y, -100, d, err, sizeof err),
                     KD_ERR_SHAPE);
    ck_assert_int_eq(
        kd_cleanlab_confident_joint(3, 2, p, 2, y, -100, 4, cj, NULL, NULL, err, sizeof err),
        KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(err, "flags") != NULL);
    const int32_t bad[3] = {0, 2, 1};
    ck_assert_int_eq(kd_cleanlab_estimate_joint(3, 2, p, 2, bad, -100, NULL, d, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(err, "labels[1]") != NULL);
    const float pn[6] = {0.7f, 0.3f, NAN, 0.8f, 0.6f, 0.4f};
    ck_assert_int_eq(kd_cleanlab_estimate_py_and_noise_matrices(3, 2, pn, 2, y, -100, 3, d, d + 2,
                                                                NULL, NULL, err, sizeof err),
                     KD_ERR_NOT_FINITE);
    const int64_t negative[4] = {1, -1, 0, 1};
    ck_assert_int_eq(kd_cleanlab_num_label_issues(3, 2, p, 2, y, -100,
                                                  KD_CLEANLAB_OFF_DIAGONAL_CUSTOM, negative, &num,
                                                  err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(err, "confident_joint[0][1]") != NULL);
    ck_assert_int_eq(kd_cleanlab_num_label_issues(3, 2, p, 2, y, -100,
                                                  KD_CLEANLAB_OFF_DIAGONAL_CUSTOM, NULL, &num, err,
                                                  sizeof err),
                     KD_ERR_NULL_POINTER);
    ck_assert_int_eq(
        kd_cleanlab_num_label_issues(3, 2, p, 2, y, -100, 3, NULL, &num, err, sizeof err),
        KD_ERR_INVALID_ARGUMENT);
    const int64_t ntr[2] = {1, 1};
    struct {
        int32_t filter;
        double frac;
        const int64_t *ntr;
        int64_t min_ex;
        int32_t rank, adj;
        const char *word;
    } cases[] = {
        {7, 1.0, NULL, 1, -1, 0, "filter_by"},
        {0, 1.5, NULL, 1, -1, 0, "frac_noise"},
        {0, NAN, NULL, 1, -1, 0, "frac_noise"},
        {0, 1.0, NULL, -1, -1, 0, "min_examples_per_class"},
        {KD_CLEANLAB_CONFIDENT_LEARNING, 1.0, ntr, 1, -1, 0, "num_to_remove_per_class"},
        {0, 1.0, NULL, 1, KD_LABEL_SCORE_MARGIN, 0, "rank_by"},
        {0, 1.0, NULL, 1, -1, 1, "adjust_pred_probs"},
        {0, 1.0, NULL, 1, KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY, 1, "adjust_pred_probs"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ck_assert_int_eq(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, cases[k].filter,
                                                       cases[k].frac, cases[k].ntr, cases[k].min_ex,
                                                       cases[k].rank, cases[k].adj, mask, ranked,
                                                       &num, err, sizeof err),
                         KD_ERR_INVALID_ARGUMENT);
        ck_assert_msg(strstr(err, cases[k].word) != NULL, "%zu: %s", k, err);
    }
    const int64_t ntr_neg[2] = {1, -2};
    ck_assert_int_eq(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, 0, 1.0, ntr_neg, 1, -1, 0,
                                                   mask, ranked, &num, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(err, "num_to_remove_per_class[1]") != NULL);
    ck_assert_int_eq(kd_cleanlab_get_label_quality_scores(
                         3, 1, p, 1, (const int32_t[]){0, 0, 0}, -100,
                         KD_LABEL_SCORE_CONFIDENCE_WEIGHTED_ENTROPY, 0, d, err, sizeof err),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert(strstr(err, "c >= 2") != NULL);
    ck_assert_int_eq(
        kd_cleanlab_get_label_quality_scores(3, 2, p, 2, y, -100, 9, 0, d, err, sizeof err),
        KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(
        kd_cleanlab_get_label_quality_scores(3, 2, p, 2, y, -100, 0, 0, NULL, err, sizeof err),
        KD_ERR_NULL_POINTER);
    UNTOUCHED();
#undef UNTOUCHED
}
END_TEST

/* Every output against every input and every other output. */
START_TEST(outputs_overlapping_inputs_are_aliasing)
{
    double buf[64];
    float *p = (float *)buf; /* 3 x 2 probabilities at the start of buf */
    const float src[6] = {0.7f, 0.3f, 0.2f, 0.8f, 0.6f, 0.4f};
    memcpy(p, src, sizeof src);
    int32_t y[3] = {0, 1, 1};
    int64_t big[16], num;
    uint8_t mask[8];
    char err[256];
    ck_assert_int_eq(kd_cleanlab_confident_thresholds(3, 2, p, 2, y, -100, buf, err, sizeof err),
                     KD_ERR_ALIASING);
    ck_assert(strstr(err, "thresholds") != NULL && strstr(err, "probs") != NULL);
    ck_assert_int_eq(kd_cleanlab_confident_joint(3, 2, p, 2, y, -100, 0, big, mask,
                                                 (int64_t *)(void *)(big + 2), err, sizeof err),
                     KD_ERR_ALIASING);
    ck_assert_int_eq(
        kd_cleanlab_estimate_joint(3, 2, p, 2, y, -100, NULL, (double *)(void *)y, err, sizeof err),
        KD_ERR_ALIASING);
    ck_assert_int_eq(kd_cleanlab_estimate_py_and_noise_matrices(
                         3, 2, p, 2, y, -100, 3, buf + 10, buf + 11, NULL, NULL, err, sizeof err),
                     KD_ERR_ALIASING);
    ck_assert(strstr(err, "noise_matrix") != NULL && strstr(err, "py") != NULL);
    ck_assert_int_eq(kd_cleanlab_num_label_issues(3, 2, p, 2, y, -100,
                                                  KD_CLEANLAB_OFF_DIAGONAL_CUSTOM, big, big + 3,
                                                  err, sizeof err),
                     KD_ERR_ALIASING);
    ck_assert_int_eq(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, 0, 1.0, NULL, 1, 0, 0, mask,
                                                   big, (int64_t *)(void *)(big + 2), err,
                                                   sizeof err),
                     KD_ERR_ALIASING);
    ck_assert_int_eq(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, 0, 1.0, big, 1, 0, 0,
                                                   (uint8_t *)(void *)big, NULL, &num, err,
                                                   sizeof err),
                     KD_ERR_ALIASING);
    ck_assert_int_eq(
        kd_cleanlab_get_label_quality_scores(3, 2, p, 2, y, -100, 0, 0, buf + 1, err, sizeof err),
        KD_ERR_ALIASING);
    /* distinct buffers: fine */
    double d[3];
    ck_assert_int_eq(
        kd_cleanlab_get_label_quality_scores(3, 2, p, 2, y, -100, 0, 0, d, err, sizeof err), KD_OK);
    ck_assert(d[0] == (double)0.7f && d[1] == (double)0.8f);
}
END_TEST

/* n = 0 is valid: the joint is the identity clipped diagonal calibrated to
 * zero rows, no issues, py uniform. */
START_TEST(empty_input_is_valid)
{
    const float p[1] = {0};
    const int32_t y[1] = {0};
    int64_t cj[9], num = 7;
    double py[3], nm[9];
    ck_assert_int_eq(kd_cleanlab_confident_joint(0, 3, p, 3, y, -100, 0, cj, NULL, NULL, NULL, 0),
                     KD_OK);
    ck_assert(cj[0] == 1 && cj[1] == 0 && cj[4] == 1 && cj[8] == 1);
    ck_assert_int_eq(kd_cleanlab_confident_joint(0, 3, p, 3, y, -100, KD_CLEANLAB_CALIBRATE, cj,
                                                 NULL, NULL, NULL, 0),
                     KD_OK);
    for (int k = 0; k < 9; k++)
        ck_assert_int_eq(cj[k], 0);
    ck_assert_int_eq(kd_cleanlab_estimate_py_and_noise_matrices(0, 3, p, 3, y, -100, 3, py, nm,
                                                                NULL, NULL, NULL, 0),
                     KD_OK);
    for (int k = 0; k < 3; k++)
        ck_assert(fabs(py[k] - 1.0 / 3) < 1e-12);
    for (int32_t f = 0; f <= KD_CLEANLAB_LOW_SELF_CONFIDENCE; f++) {
        ck_assert_int_eq(kd_cleanlab_find_label_issues(0, 3, p, 3, y, -100, f, 1.0, NULL, 1, 0, 0,
                                                       NULL, NULL, &num, NULL, 0),
                         KD_OK);
        ck_assert_int_eq(num, 0);
    }
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

    tc = tcase_create("filters");
    tcase_add_test(tc, find_label_issues_matches_cleanlab_for_every_filter);
    tcase_add_test(tc, quality_scores_match_cleanlab);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, errors_write_nothing_and_name_the_argument);
    tcase_add_test(tc, outputs_overlapping_inputs_are_aliasing);
    tcase_add_test(tc, empty_input_is_valid);
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
