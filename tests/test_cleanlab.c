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

/* ---- edge cases and the documented errors of every function ------------------------- */

/* One call of kd_cleanlab_* function `f` (0..6, header order) with the
 * outputs of `o`; `drop` = 1 passes NULL for the function's required output. */
typedef struct {
    double d[3][64];
    int64_t cj[64], num, ranked[16];
    uint8_t mask[16];
} cl_outputs;

static const char *const CL_NAMES[7] = {
    "kd_cleanlab_confident_thresholds",    "kd_cleanlab_confident_joint",
    "kd_cleanlab_estimate_joint",          "kd_cleanlab_estimate_py_and_noise_matrices",
    "kd_cleanlab_num_label_issues",        "kd_cleanlab_find_label_issues",
    "kd_cleanlab_get_label_quality_scores"};

static kd_status cl_call(int f, int64_t n, int64_t c, const float *p, int64_t ld, const int32_t *y,
                         int32_t ig, cl_outputs *o, int drop, char *err, size_t err_size)
{
    switch (f) {
    case 0:
        return kd_cleanlab_confident_thresholds(n, c, p, ld, y, ig, drop ? NULL : o->d[0], err,
                                                err_size);
    case 1:
        return kd_cleanlab_confident_joint(n, c, p, ld, y, ig, KD_CLEANLAB_CALIBRATE,
                                           drop ? NULL : o->cj, o->mask, &o->num, err, err_size);
    case 2:
        return kd_cleanlab_estimate_joint(n, c, p, ld, y, ig, NULL, drop ? NULL : o->d[0], err,
                                          err_size);
    case 3:
        return kd_cleanlab_estimate_py_and_noise_matrices(
            n, c, p, ld, y, ig, KD_CLEANLAB_CALIBRATE | KD_CLEANLAB_CONVERGE, o->d[0], o->d[1],
            o->d[2], o->cj, err, err_size);
    case 4:
        return kd_cleanlab_num_label_issues(n, c, p, ld, y, ig, KD_CLEANLAB_OFF_DIAGONAL, NULL,
                                            drop ? NULL : &o->num, err, err_size);
    case 5:
        return kd_cleanlab_find_label_issues(n, c, p, ld, y, ig, KD_CLEANLAB_PRUNE_BY_NOISE_RATE,
                                             1.0, NULL, 1, KD_LABEL_SCORE_SELF_CONFIDENCE, 0,
                                             o->mask, o->ranked, &o->num, err, err_size);
    default:
        return kd_cleanlab_get_label_quality_scores(n, c, p, ld, y, ig,
                                                    KD_LABEL_SCORE_NORMALIZED_MARGIN, 0,
                                                    drop ? NULL : o->d[0], err, err_size);
    }
}

static void cl_outputs_fill(cl_outputs *o) { memset(o, 0x5a, sizeof *o); }

static int cl_outputs_untouched(const cl_outputs *o)
{
    cl_outputs ref;
    cl_outputs_fill(&ref);
    return memcmp(o, &ref, sizeof ref) == 0;
}

START_TEST(every_function_rejects_each_bad_input_and_writes_nothing)
{
    enum { RN = 4, RC = 3, RLD = 4 };
    static const float good[RN * RLD] = {0.7f, 0.2f, 0.1f, 0.0f, 0.1f, 0.8f, 0.1f, 0.0f,
                                         0.2f, 0.2f, 0.6f, 0.0f, 0.5f, 0.4f, 0.1f, 0.0f};
    static const int32_t goody[RN] = {0, 1, 2, 1};
    struct {
        const char *what;
        int64_t n, c, ld;
        int null_probs, null_labels, bad_row, bad_col;
        float bad_value;
        int32_t bad_label, ignore;
        kd_status want;
        const char *word;
    } rows[] = {
        {"probs NULL", RN, RC, RLD, 1, 0, -1, 0, 0, -1, -100, KD_ERR_NULL_POINTER, "probs"},
        {"labels NULL", RN, RC, RLD, 0, 1, -1, 0, 0, -1, -100, KD_ERR_NULL_POINTER, "labels"},
        {"n < 0", -1, RC, RLD, 0, 0, -1, 0, 0, -1, -100, KD_ERR_SHAPE, "n"},
        {"c = 0", RN, 0, RLD, 0, 0, -1, 0, 0, -1, -100, KD_ERR_SHAPE, "c"},
        {"ld < c", RN, RC, RC - 1, 0, 0, -1, 0, 0, -1, -100, KD_ERR_SHAPE, "ld"},
        {"label = c", RN, RC, RLD, 0, 0, -1, 0, 0, RC, -100, KD_ERR_INVALID_ARGUMENT, "labels[2]"},
        {"label = -1", RN, RC, RLD, 0, 0, -1, 0, 0, -1 - 1000, -100, KD_ERR_INVALID_ARGUMENT,
         "labels[2]"},
        {"ignore_index in [0, c)", RN, RC, RLD, 0, 0, -1, 0, 0, -1, 1, KD_ERR_INVALID_ARGUMENT,
         "ignore_index"},
        {"NaN", RN, RC, RLD, 0, 0, 2, 1, NAN, -1, -100, KD_ERR_NOT_FINITE, "probs"},
        {"+Inf", RN, RC, RLD, 0, 0, 3, 0, INFINITY, -1, -100, KD_ERR_NOT_FINITE, "probs"},
        {"-Inf", RN, RC, RLD, 0, 0, 0, 2, -INFINITY, -1, -100, KD_ERR_NOT_FINITE, "probs"},
        {"1.5", RN, RC, RLD, 0, 0, 1, 1, 1.5f, -1, -100, KD_ERR_INVALID_ARGUMENT, "probs"},
        {"-0.25", RN, RC, RLD, 0, 0, 1, 0, -0.25f, -1, -100, KD_ERR_INVALID_ARGUMENT, "probs"},
    };
    int checked = 0;
    for (int f = 0; f < 7; f++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            float p[RN * RLD];
            int32_t y[RN];
            memcpy(p, good, sizeof p);
            memcpy(y, goody, sizeof y);
            if (rows[r].bad_row >= 0)
                p[rows[r].bad_row * RLD + rows[r].bad_col] = rows[r].bad_value;
            if (rows[r].bad_label != -1)
                y[2] = rows[r].bad_label == -1 - 1000 ? -1 : rows[r].bad_label;
            cl_outputs o;
            cl_outputs_fill(&o);
            char err[256];
            const kd_status st =
                cl_call(f, rows[r].n, rows[r].c, rows[r].null_probs ? NULL : p, rows[r].ld,
                        rows[r].null_labels ? NULL : y, rows[r].ignore, &o, 0, err, sizeof err);
            ck_assert_msg(st == rows[r].want, "%s, %s: status %d, want %d (%s)", CL_NAMES[f],
                          rows[r].what, (int)st, (int)rows[r].want, err);
            ck_assert_msg(strstr(err, CL_NAMES[f]) != NULL && strstr(err, rows[r].word) != NULL,
                          "%s, %s: message \"%s\" lacks \"%s\"", CL_NAMES[f], rows[r].what, err,
                          rows[r].word);
            ck_assert_msg(cl_outputs_untouched(&o), "%s, %s: an output was written", CL_NAMES[f],
                          rows[r].what);
            checked++;
        }
    /* the required output of each function (find_label_issues has none) */
    for (int f = 0; f < 7; f++) {
        if (f == 3 || f == 5)
            continue;
        cl_outputs o;
        cl_outputs_fill(&o);
        char err[256];
        ck_assert_msg(cl_call(f, RN, RC, good, RLD, goody, -100, &o, 1, err, sizeof err) ==
                          KD_ERR_NULL_POINTER,
                      "%s: required output NULL", CL_NAMES[f]);
        ck_assert(strstr(err, CL_NAMES[f]) != NULL);
        ck_assert(cl_outputs_untouched(&o));
        checked++;
    }
    /* and the good inputs pass everywhere (the table's rows are the only fault) */
    for (int f = 0; f < 7; f++) {
        cl_outputs o;
        char err[256];
        ck_assert_int_eq(cl_call(f, RN, RC, good, RLD, goody, -100, &o, 0, err, sizeof err), KD_OK);
        ck_assert_str_eq(err, "");
    }
    ck_assert_int_eq(checked, 7 * 13 + 5);
}
END_TEST

/* A single class (c = 1): cleanlab refuses it in most functions (at least
 * two classes); kdlib computes the same formulas, which give no issue. */
START_TEST(one_class_gives_no_issues)
{
    const float p[4] = {1.0f, 0.8f, 0.6f, 1.0f};
    const int32_t y[4] = {0, 0, 0, 0};
    double t, py, nm, inv, joint, s[4];
    int64_t cj, num = 7;
    uint8_t mask[4];
    int64_t ranked[4];
    ck_assert_int_eq(kd_cleanlab_confident_thresholds(4, 1, p, 1, y, -100, &t, NULL, 0), KD_OK);
    ck_assert(t == ((1.0 + (double)0.8f) + ((double)0.6f + 1.0)) / 4);
    /* rows 1 and 2 are below t0 - 1e-6: not counted */
    ck_assert_int_eq(kd_cleanlab_confident_joint(4, 1, p, 1, y, -100, 0, &cj, mask, &num, NULL, 0),
                     KD_OK);
    ck_assert_int_eq(cj, 2);
    ck_assert_int_eq(num, 0);
    ck_assert_int_eq(kd_cleanlab_confident_joint(4, 1, p, 1, y, -100, KD_CLEANLAB_CALIBRATE, &cj,
                                                 NULL, NULL, NULL, 0),
                     KD_OK);
    ck_assert_int_eq(cj, 4);
    ck_assert_int_eq(kd_cleanlab_estimate_joint(4, 1, p, 1, y, -100, NULL, &joint, NULL, 0), KD_OK);
    ck_assert(joint == 1.0);
    ck_assert_int_eq(kd_cleanlab_estimate_py_and_noise_matrices(4, 1, p, 1, y, -100, 3, &py, &nm,
                                                                &inv, &cj, NULL, 0),
                     KD_OK);
    ck_assert(py == 1.0 && nm == 1.0 && inv == 1.0 && cj == 4);
    for (int32_t m = 0; m <= KD_CLEANLAB_OFF_DIAGONAL_CALIBRATED; m++) {
        ck_assert_int_eq(kd_cleanlab_num_label_issues(4, 1, p, 1, y, -100, m, NULL, &num, NULL, 0),
                         KD_OK);
        ck_assert_int_eq(num, 0);
    }
    for (int32_t f = 0; f <= KD_CLEANLAB_LOW_SELF_CONFIDENCE; f++) {
        num = 7;
        ck_assert_int_eq(kd_cleanlab_find_label_issues(4, 1, p, 1, y, -100, f, 1.0, NULL, 1,
                                                       KD_LABEL_SCORE_SELF_CONFIDENCE, 0, mask,
                                                       ranked, &num, NULL, 0),
                         KD_OK);
        ck_assert_int_eq(num, 0);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(mask[i], 0);
    }
    ck_assert_int_eq(kd_cleanlab_get_label_quality_scores(
                         4, 1, p, 1, y, -100, KD_LABEL_SCORE_NORMALIZED_MARGIN, 1, s, NULL, 0),
                     KD_OK);
    for (int i = 0; i < 4; i++) /* adjusted row is (p - t + t) / p = 1; margin (1 - 0 + 1) / 2 */
        ck_assert(s[i] == 1.0);
    ck_assert_int_eq(kd_cleanlab_get_label_quality_scores(
                         4, 1, p, 1, y, -100, KD_LABEL_SCORE_SELF_CONFIDENCE, 0, s, NULL, 0),
                     KD_OK);
    ck_assert(s[1] == (double)0.8f);
}
END_TEST

/* n = 0 with every function, and rows that are all ignored (the same as
 * n = 0 for the labelled part). */
START_TEST(no_labelled_rows_is_valid_everywhere)
{
    const float p[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    const int32_t y[3] = {-100, -100, -100};
    for (int64_t n = 0; n <= 3; n += 3)
        for (int f = 0; f < 7; f++) {
            cl_outputs o;
            cl_outputs_fill(&o);
            char err[256];
            ck_assert_msg(cl_call(f, n, 2, p, 2, y, -100, &o, 0, err, sizeof err) == KD_OK,
                          "%s n = %lld: %s", CL_NAMES[f], (long long)n, err);
            if (f == 0)
                ck_assert(o.d[0][0] == 2.0 && o.d[0][1] == 2.0); /* cleanlab's BIG_VALUE */
            if (f == 4 || f == 5)
                ck_assert_int_eq(o.num, 0);
            if (f == 6 && n == 3)
                ck_assert(isnan(o.d[0][0]) && isnan(o.d[0][2]));
            if (f == 6 && n == 0)
                ck_assert(cl_outputs_untouched(&o));
        }
}
END_TEST

/* ranked: only the first num_issues entries are written; the mask and the
 * count agree; rank_by none is row order. */
START_TEST(ranked_is_written_up_to_num_issues_only)
{
    load_cases();
    const fx_case *fc = &g_cases[0];
    fx_input in = make_input(fc, 0);
    int64_t *ranked = malloc((size_t)in.n * sizeof *ranked);
    for (int32_t f = 0; f <= KD_CLEANLAB_LOW_SELF_CONFIDENCE; f++)
        for (int32_t rank = -1; rank <= 3; rank++) {
            if (rank == 2)
                continue;
            for (int64_t i = 0; i < in.n; i++)
                ranked[i] = -7;
            int64_t num = -1;
            ck_assert_int_eq(kd_cleanlab_find_label_issues(in.n, in.c, in.p, in.ld, in.y, -100, f,
                                                           1.0, NULL, 1, rank, 0, NULL, ranked,
                                                           &num, NULL, 0),
                             KD_OK);
            ck_assert(num > 0 && num < in.n);
            for (int64_t i = 0; i < in.n; i++)
                ck_assert(i < num ? ranked[i] >= 0 && ranked[i] < in.n : ranked[i] == -7);
            if (rank == -1)
                for (int64_t i = 1; i < num; i++)
                    ck_assert(ranked[i - 1] < ranked[i]);
        }
    free(ranked);
    free_input(&in);
}
END_TEST

/* The fixture keeps its adversarial cases (a case that vanished would make
 * the loops above check less without failing). */
START_TEST(fixture_holds_the_adversarial_cases)
{
    load_cases();
    static const char *const want[] = {"n1_c3",
                                       "ties_grid_n16_c3",
                                       "uniform_n12_c4",
                                       "empty_classes_n80_c6",
                                       "near_threshold_n6_c2",
                                       "unnormalized_n120_c3"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        int found = 0;
        for (int i = 0; i < g_ncases; i++)
            found |= strcmp(g_cases[i].name, want[k]) == 0;
        ck_assert_msg(found, "fixture case %s missing", want[k]);
    }
    /* frac_noise = 0 and min_examples_per_class larger than every class */
    int frac0 = 0, min_big = 0;
    for (int i = 0; i < g_ncases; i++)
        for (int r = 0; r < g_cases[i].nrec; r++)
            if (strcmp(g_cases[i].rec[r].key, "issues") == 0) {
                frac0 += g_cases[i].rec[r].v[1] == 0.0;
                min_big += g_cases[i].rec[r].v[2] == 1000.0;
            }
    ck_assert_int_ge(frac0, 3 * 10);
    ck_assert_int_ge(min_big, 3 * 10);
}
END_TEST

/* More overlaps: each pair names both buffers. */
START_TEST(every_output_pair_is_checked_for_aliasing)
{
    double buf[128];
    float *p = (float *)buf;
    const float src[6] = {0.7f, 0.3f, 0.2f, 0.8f, 0.6f, 0.4f};
    memcpy(p, src, sizeof src);
    int32_t y[3] = {0, 1, 1};
    int64_t big[32], ntr[2] = {1, 1};
    char err[256];
#define ALIAS(call, a, b)                                                                          \
    do {                                                                                           \
        ck_assert_int_eq(call, KD_ERR_ALIASING);                                                   \
        ck_assert_msg(strstr(err, a) != NULL && strstr(err, b) != NULL, "%s", err);                \
    } while (0)
    ALIAS(kd_cleanlab_confident_joint(3, 2, p, 2, y, -100, 0, big, (uint8_t *)(void *)y, NULL, err,
                                      sizeof err),
          "off_diagonal", "labels");
    ALIAS(kd_cleanlab_confident_joint(3, 2, p, 2, y, -100, 0, (int64_t *)(void *)buf, NULL, NULL,
                                      err, sizeof err),
          "confident_joint", "probs");
    ALIAS(kd_cleanlab_estimate_joint(3, 2, p, 2, y, -100, big, (double *)(void *)(big + 1), err,
                                     sizeof err),
          "joint", "confident_joint");
    ALIAS(kd_cleanlab_estimate_py_and_noise_matrices(3, 2, p, 2, y, -100, 3, buf + 20, NULL,
                                                     buf + 21, NULL, err, sizeof err),
          "inv_noise_matrix", "py");
    ALIAS(kd_cleanlab_estimate_py_and_noise_matrices(3, 2, p, 2, y, -100, 3, NULL, buf + 20, NULL,
                                                     (int64_t *)(void *)(buf + 22), err,
                                                     sizeof err),
          "confident_joint", "noise_matrix");
    ALIAS(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, 0, 1.0, NULL, 1, -1, 0,
                                        (uint8_t *)(void *)p, NULL, NULL, err, sizeof err),
          "issues", "probs");
    ALIAS(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, 0, 1.0, ntr, 1, -1, 0, NULL,
                                        (int64_t *)(void *)ntr, NULL, err, sizeof err),
          "ranked", "num_to_remove_per_class");
    ALIAS(kd_cleanlab_find_label_issues(3, 2, p, 2, y, -100, 0, 1.0, NULL, 1, -1, 0, NULL, big,
                                        big + 1, err, sizeof err),
          "num_issues", "ranked");
    ALIAS(kd_cleanlab_get_label_quality_scores(3, 2, p, 2, y, -100, 0, 0, (double *)(void *)y, err,
                                               sizeof err),
          "scores", "labels");
    ALIAS(kd_cleanlab_num_label_issues(3, 2, p, 2, y, -100, KD_CLEANLAB_OFF_DIAGONAL, NULL,
                                       (int64_t *)(void *)y, err, sizeof err),
          "num_issues", "labels");
#undef ALIAS
    /* the inputs stay as they were */
    ck_assert(memcmp(p, src, sizeof src) == 0 && y[0] == 0 && y[1] == 1 && y[2] == 1);
}
END_TEST

/* The issue sets are selections of the lowest keys (ties by row index):
 * large inputs with many ties, laid out sorted, reversed and organ-pipe,
 * against a full sort of (score, row). */
static int cmp_score_row(const void *a, const void *b)
{
    const double *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

START_TEST(issue_sets_equal_a_full_sort_with_ties_and_adversarial_orders)
{
    const int64_t n = 6000, c = 3;
    float *p = malloc((size_t)(n * c) * sizeof *p);
    int32_t *y = malloc((size_t)n * sizeof *y);
    uint8_t *mask = malloc((size_t)n);
    double *s = malloc((size_t)n * sizeof *s), *pairs = malloc((size_t)(2 * n) * sizeof *pairs);
    for (int layout = 0; layout < 3; layout++) {
        for (int64_t i = 0; i < n; i++) {
            /* self-confidence on a 0.05 grid: ~20 values, hundreds of ties each */
            int64_t r = layout == 0 ? i : layout == 1 ? n - 1 - i : (i < n / 2 ? i : n - 1 - i) * 2;
            const float conf = (float)(r % 20) * 0.05f;
            y[i] = (int32_t)(i % c);
            for (int64_t j = 0; j < c; j++)
                p[i * c + j] = j == y[i] ? conf : (1.0f - conf) / 2;
        }
        int64_t want, num;
        ck_assert_int_eq(kd_cleanlab_num_label_issues(n, c, p, c, y, -100, KD_CLEANLAB_OFF_DIAGONAL,
                                                      NULL, &want, NULL, 0),
                         KD_OK);
        ck_assert(want > 100 && want < n - 100);
        ck_assert_int_eq(kd_cleanlab_find_label_issues(n, c, p, c, y, -100,
                                                       KD_CLEANLAB_LOW_SELF_CONFIDENCE, 1.0, NULL,
                                                       1, -1, 0, mask, NULL, &num, NULL, 0),
                         KD_OK);
        ck_assert_int_eq(num, want);
        ck_assert_int_eq(kd_cleanlab_get_label_quality_scores(
                             n, c, p, c, y, -100, KD_LABEL_SCORE_SELF_CONFIDENCE, 0, s, NULL, 0),
                         KD_OK);
        for (int64_t i = 0; i < n; i++) {
            pairs[2 * i] = s[i];
            pairs[2 * i + 1] = (double)i;
        }
        qsort(pairs, (size_t)n, 2 * sizeof *pairs, cmp_score_row);
        for (int64_t r = 0; r < n; r++)
            ck_assert_msg(mask[(int64_t)pairs[2 * r + 1]] == (r < want), "layout %d, rank %lld",
                          layout, (long long)r);
    }
    free(p);
    free(y);
    free(mask);
    free(s);
    free(pairs);
}
END_TEST

/* ---- soft labels chosen by confidence: kd_soft_labels_selective ------------------- */

static void ref_selective(int64_t n, int64_t c, const int32_t *y, float lw, int32_t mode,
                          int32_t flags, const float *p, int64_t ld, const uint8_t *sus, float *q)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = p + i * ld;
        int64_t pred = 0;
        for (int64_t j = 1; j < c; j++)
            if (row[j] > row[pred])
                pred = j;
        float w;
        if (y[i] == -100)
            w = 0.0f;
        else if ((flags & KD_SOFT_LABEL_SUSPECTS_ONLY) && !sus[i])
            w = 1.0f;
        else if (flags & KD_SOFT_LABEL_CONFIDENCE_WEIGHT)
            w = lw + (1.0f - lw) * row[y[i]];
        else
            w = lw;
        for (int64_t j = 0; j < c; j++) {
            const float x = mode == KD_SOFT_LABEL_ONEHOT ? (float)(j == pred) : row[j];
            q[i * c + j] = w * (float)(j == y[i]) + (1.0f - w) * x;
        }
    }
}

/* Every flag combination and mode, on the cleanlab issues of a fixture case
 * (with ignored rows), against the formula; flags = 0 is kd_soft_labels. */
START_TEST(selective_soft_labels_match_the_formula)
{
    load_cases();
    const fx_case *fc = &g_cases[1]; /* rand_n500_c5 */
    fx_input in = make_input(fc, 1);
    const int64_t n = in.n, c = in.c;
    uint8_t *sus = malloc((size_t)n);
    float *q = malloc((size_t)(n * c) * sizeof *q), *ref = malloc((size_t)(n * c) * sizeof *ref);
    int64_t num;
    ck_assert_int_eq(kd_cleanlab_find_label_issues(n, c, in.p, in.ld, in.y, -100, KD_CLEANLAB_BOTH,
                                                   1.0, NULL, 1, -1, 0, sus, NULL, &num, NULL, 0),
                     KD_OK);
    ck_assert(num > 10);
    int changed_rows = 0;
    for (int32_t mode = 0; mode <= 1; mode++)
        for (int32_t flags = 0; flags <= 3; flags++) {
            char err[256];
            const uint8_t *s = (flags & KD_SOFT_LABEL_SUSPECTS_ONLY) ? sus : NULL;
            ck_assert_msg(kd_soft_labels_selective(n, c, in.y, -100, 0.7f, mode, flags, in.p, in.ld,
                                                   s, q, c, err, sizeof err) == KD_OK,
                          "%s", err);
            ref_selective(n, c, in.y, 0.7f, mode, flags, in.p, in.ld, sus, ref);
            ck_assert(memcmp(q, ref, (size_t)(n * c) * sizeof *q) == 0);
            if (flags == 0) {
                ck_assert_int_eq(kd_soft_labels(n, c, in.y, -100, 0.7f, mode, in.p, in.ld, NULL,
                                                ref, c, NULL, 0),
                                 KD_OK);
                ck_assert(memcmp(q, ref, (size_t)(n * c) * sizeof *q) == 0);
            }
            if (flags & KD_SOFT_LABEL_SUSPECTS_ONLY)
                for (int64_t i = 0; i < n; i++)
                    if (in.y[i] != -100 && !sus[i]) /* hard given label */
                        for (int64_t j = 0; j < c; j++)
                            ck_assert(q[i * c + j] == (float)(j == in.y[i]));
            if (flags == KD_SOFT_LABEL_CONFIDENCE_WEIGHT)
                for (int64_t i = 0; i < n; i++)
                    if (in.y[i] != -100) {
                        /* the given label's weight is >= 0.7, more for confident rows */
                        const float w = 0.7f + 0.3f * in.p[i * in.ld + in.y[i]];
                        ck_assert(w >= 0.7f);
                        changed_rows += w > 0.9f;
                    }
        }
    ck_assert_int_gt(changed_rows, 20);
    free(sus);
    free(q);
    free(ref);
    free_input(&in);
}
END_TEST

START_TEST(selective_soft_labels_hand_example_and_in_place)
{
    /* row 0: label 0, p = (0.2, 0.8): a suspect; row 1: label 1, p = (0.4, 0.6) */
    float p[4] = {0.2f, 0.8f, 0.4f, 0.6f};
    const int32_t y[2] = {0, 1};
    const uint8_t sus[2] = {1, 0};
    float q[4];
    ck_assert_int_eq(kd_soft_labels_selective(2, 2, y, -100, 0.7f, KD_SOFT_LABEL_ONEHOT,
                                              KD_SOFT_LABEL_SUSPECTS_ONLY, p, 2, sus, q, 2, NULL,
                                              0),
                     KD_OK);
    ck_assert(q[0] == 0.7f && q[1] == 1.0f - 0.7f && q[2] == 0.0f && q[3] == 1.0f);
    /* confidence weight, no floor: w_0 = 0.2, w_1 = 0.6 */
    ck_assert_int_eq(kd_soft_labels_selective(2, 2, y, -100, 0.0f, KD_SOFT_LABEL_PROBABILITIES,
                                              KD_SOFT_LABEL_CONFIDENCE_WEIGHT, p, 2, NULL, q, 2,
                                              NULL, 0),
                     KD_OK);
    const float r0 = 1.0f - 0.2f, r1 = 1.0f - 0.6f;
    ck_assert(q[0] == 0.2f + r0 * 0.2f && q[1] == r0 * 0.8f);
    ck_assert(q[2] == r1 * 0.4f && q[3] == 0.6f + r1 * 0.6f);
    /* in place over probs gives the same */
    ck_assert_int_eq(kd_soft_labels_selective(2, 2, y, -100, 0.0f, KD_SOFT_LABEL_PROBABILITIES,
                                              KD_SOFT_LABEL_CONFIDENCE_WEIGHT, p, 2, NULL, p, 2,
                                              NULL, 0),
                     KD_OK);
    ck_assert(memcmp(p, q, sizeof q) == 0);
}
END_TEST

START_TEST(selective_soft_labels_errors_write_nothing)
{
    const float p[4] = {0.2f, 0.8f, 0.4f, 0.6f};
    const float pn[4] = {0.2f, NAN, 0.4f, 0.6f};
    const int32_t y[2] = {0, 1};
    const uint8_t sus[2] = {1, 0}, bad[2] = {1, 2};
    float q[4] = {7, 7, 7, 7};
    char err[256];
#define SEL(w_, m_, f_, p_, s_, q_)                                                                \
    kd_soft_labels_selective(2, 2, y, -100, w_, m_, f_, p_, 2, s_, q_, 2, err, sizeof err)
    struct {
        kd_status st;
        const char *word;
    } want[8] = {{KD_ERR_INVALID_ARGUMENT, "mode"},         {KD_ERR_INVALID_ARGUMENT, "flags"},
                 {KD_ERR_NULL_POINTER, "suspect"},          {KD_ERR_INVALID_ARGUMENT, "suspect"},
                 {KD_ERR_INVALID_ARGUMENT, "suspect[1]"},   {KD_ERR_NULL_POINTER, "probs"},
                 {KD_ERR_INVALID_ARGUMENT, "label_weight"}, {KD_ERR_NOT_FINITE, "probs"}};
    for (int k = 0; k < 8; k++) {
        kd_status st;
        switch (k) {
        case 0:
            st = SEL(0.7f, 2, 0, p, NULL, q);
            break;
        case 1:
            st = SEL(0.7f, 0, 4, p, NULL, q);
            break;
        case 2:
            st = SEL(0.7f, 0, KD_SOFT_LABEL_SUSPECTS_ONLY, p, NULL, q);
            break;
        case 3:
            st = SEL(0.7f, 0, 0, p, sus, q);
            break;
        case 4:
            st = SEL(0.7f, 0, KD_SOFT_LABEL_SUSPECTS_ONLY, p, bad, q);
            break;
        case 5:
            st = SEL(0.7f, 0, 0, NULL, NULL, q);
            break;
        case 6:
            st = SEL(NAN, 0, 0, p, NULL, q);
            break;
        default:
            st = SEL(0.7f, 1, 2, pn, NULL, q);
            break;
        }
        ck_assert_msg(st == want[k].st, "%d: status %d (%s)", k, (int)st, err);
        ck_assert_msg(strstr(err, "kd_soft_labels_selective") && strstr(err, want[k].word),
                      "%d: %s", k, err);
    }
    /* out overlapping the suspect mask or probs (other than in place) */
    float buf[8] = {0.2f, 0.8f, 0.4f, 0.6f, 0, 0, 0, 0};
    ck_assert_int_eq(SEL(0.7f, 0, 0, buf, NULL, buf + 1), KD_ERR_ALIASING);
    ck_assert_int_eq(SEL(0.7f, 0, KD_SOFT_LABEL_SUSPECTS_ONLY, p, (const uint8_t *)(void *)q, q),
                     KD_ERR_ALIASING);
    ck_assert(strstr(err, "suspect") != NULL);
#undef SEL
    for (int k = 0; k < 4; k++)
        ck_assert(q[k] == 7);
    ck_assert(buf[5] == 0 && buf[1] == 0.8f);
}
END_TEST

/* Fuzz findings (fuzz/fuzz_api.c, the cleanlab area): counts beyond int64
 * in the prune counts.  min_examples_per_class = INT64_MAX made the kept
 * counts (double) overflow the int64 cast (undefined; clang's
 * -fsanitize=float-cast-overflow stops there); num_to_remove_per_class =
 * INT64_MAX made the kept count INT64_MIN and "rows - kept" overflow, which
 * in practice wrapped to "remove none".  Now a count beyond int64 is
 * INT64_MIN as NumPy's astype(int) gives on x86, and a negative kept count
 * removes every row of its class, as any removal count above the class size
 * does. */
START_TEST(prune_counts_beyond_int64_are_defined)
{
    /* 3 rows per class; rows 2 and 5 have the other class as their argmax */
    static const float p[12] = {0.9f, 0.1f, 0.8f, 0.2f, 0.4f,  0.6f,
                                0.3f, 0.7f, 0.1f, 0.9f, 0.65f, 0.35f};
    static const int32_t y[6] = {0, 0, 0, 1, 1, 1};
    uint8_t a[6], b[6];
    int64_t num = -1;
    for (int32_t f = KD_CLEANLAB_PRUNE_BY_NOISE_RATE; f <= KD_CLEANLAB_BOTH; f++) {
        num = -1;
        ck_assert_int_eq(kd_cleanlab_find_label_issues(6, 2, p, 2, y, -100, f, 0.5, NULL, INT64_MAX,
                                                       -1, 0, a, NULL, &num, NULL, 0),
                         KD_OK);
        ck_assert_int_eq(num, 0); /* no class has more rows than that */
    }
    const int64_t huge[2] = {INT64_MAX, INT64_MAX}, big[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    ck_assert_int_eq(kd_cleanlab_find_label_issues(6, 2, p, 2, y, -100, KD_CLEANLAB_PRUNE_BY_CLASS,
                                                   1.0, big, 1, -1, 0, a, NULL, &num, NULL, 0),
                     KD_OK);
    ck_assert_int_eq(num, 2); /* every row removed, then the rows whose label is the argmax kept */
    ck_assert(a[2] == 1 && a[5] == 1);
    num = -1;
    ck_assert_int_eq(kd_cleanlab_find_label_issues(6, 2, p, 2, y, -100, KD_CLEANLAB_PRUNE_BY_CLASS,
                                                   1.0, huge, 1, -1, 0, b, NULL, &num, NULL, 0),
                     KD_OK);
    ck_assert_int_eq(num, 2);
    ck_assert(memcmp(a, b, sizeof a) == 0);
}
END_TEST

/* Fuzz finding: a caller's confident joint whose row sum passes INT64_MAX
 * (entries >= 0 are valid) overflowed the int64 row total in the
 * calibration (undefined; in practice it wrapped to a negative total and
 * the row took the whole joint).  Now the total goes on in double: row 0
 * of {INT64_MAX, INT64_MAX; 1, 1} is two halves, like row 1. */
START_TEST(caller_joint_rows_beyond_int64_calibrate)
{
    static const float p[4] = {0.9f, 0.1f, 0.2f, 0.8f};
    static const int32_t y[2] = {0, 1};
    const int64_t cj[4] = {INT64_MAX, INT64_MAX, 1, 1};
    double joint[4];
    ck_assert_int_eq(kd_cleanlab_estimate_joint(2, 2, p, 2, y, -100, cj, joint, NULL, 0), KD_OK);
    /* each row (0.5, 0.5), rounded preserving its total 1: ties go up at the
     * higher index */
    ck_assert(joint[0] == 0.0 && joint[1] == 0.5 && joint[2] == 0.0 && joint[3] == 0.5);
    int64_t num = -1;
    ck_assert_int_eq(kd_cleanlab_num_label_issues(
                         2, 2, p, 2, y, -100, KD_CLEANLAB_OFF_DIAGONAL_CUSTOM, cj, &num, NULL, 0),
                     KD_OK);
    ck_assert_int_eq(num, 1); /* rint((1 - 0.5) * 2) */
}
END_TEST

/* Found by reading the rounding loop the fuzz area reaches, then a random
 * search: num_to_remove_per_class around 1e16 makes the prune counts of
 * _prune_by_count ~1e16 with fractions, whose rounded row sums past 2^53
 * can lose every +-1 of round_preserving_row_totals: the loop (NumPy's
 * too) never ended.  It now stops once a step brings the sums no closer
 * (Check's 4 s timeout fails this test without the fix). */
START_TEST(huge_num_to_remove_per_class_terminates)
{
    static const float p[55] = {
        0.875f, 0.75f,  0.5f,   0.75f,  0.25f,  0.5f,   0,      0,      0.125f, 0.75f,  0.625f,
        0.125f, 0,      0,      0.875f, 0,      0.25f,  0.375f, 0.25f,  0.125f, 0.5f,   0.5f,
        0.625f, 0.875f, 0,      0.625f, 0.5f,   0,      0.25f,  0.375f, 0.625f, 0.125f, 0.125f,
        0.125f, 0.875f, 0.375f, 0.625f, 0,      0.5f,   0.75f,  0.75f,  0.125f, 0.875f, 0.875f,
        0.125f, 0.75f,  0.875f, 0.375f, 0.125f, 0.125f, 0.625f, 0.625f, 0.75f,  0.25f,  0.5f};
    static const int32_t y[11] = {3, 2, 0, 0, 2, 1, 3, 4, 3, 0, 2};
    static const int64_t ntr[5] = {26207970593221505, 625948040107178, 17534230531908165,
                                   3403935778608738, 11306260121664086};
    uint8_t iss[11];
    for (int32_t f = KD_CLEANLAB_PRUNE_BY_NOISE_RATE; f <= KD_CLEANLAB_BOTH; f++) {
        int64_t num = -1;
        ck_assert_int_eq(kd_cleanlab_find_label_issues(11, 5, p, 5, y, -100, f, 1.0, ntr, 1, -1, 0,
                                                       iss, NULL, &num, NULL, 0),
                         KD_OK);
        ck_assert(num >= 0 && num <= 11);
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
    tcase_add_test(tc, every_function_rejects_each_bad_input_and_writes_nothing);
    tcase_add_test(tc, one_class_gives_no_issues);
    tcase_add_test(tc, no_labelled_rows_is_valid_everywhere);
    tcase_add_test(tc, ranked_is_written_up_to_num_issues_only);
    tcase_add_test(tc, fixture_holds_the_adversarial_cases);
    tcase_add_test(tc, every_output_pair_is_checked_for_aliasing);
    tcase_add_test(tc, issue_sets_equal_a_full_sort_with_ties_and_adversarial_orders);
    tcase_add_test(tc, prune_counts_beyond_int64_are_defined);
    tcase_add_test(tc, caller_joint_rows_beyond_int64_calibrate);
    tcase_add_test(tc, huge_num_to_remove_per_class_terminates);
    suite_add_tcase(s, tc);

    tc = tcase_create("soft_labels");
    tcase_add_test(tc, selective_soft_labels_match_the_formula);
    tcase_add_test(tc, selective_soft_labels_hand_example_and_in_place);
    tcase_add_test(tc, selective_soft_labels_errors_write_nothing);
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
