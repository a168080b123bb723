/* Every error status that include/kdlib/loss.h documents, produced on purpose:
 * the status, the handle message naming the argument, and (for the compute
 * calls) every output and input left exactly as it was, checked with canary
 * values. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "kdlib/threshold.h"
#include "kdtest.h"

/* The out-of-memory test asks for an impossible workspace: under
 * AddressSanitizer that must return NULL instead of aborting. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

#define N 4
#define C 5
#define LDS 7 /* student / teacher / target row stride */
#define LDG 6 /* gradient row stride */
#define CANARY 777.0f

/* Parameter names appear as their enum names (KD_PARAM_TEMPERATURE): the
 * word is looked for without regard to case. */
static int contains_nocase(const char *m, const char *word)
{
    const size_t n = strlen(word);
    for (; *m; m++) {
        size_t i = 0;
        while (i < n && m[i] && tolower((unsigned char)m[i]) == tolower((unsigned char)word[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static void assert_message_names(const kd_loss *h, const char *word)
{
    const char *m = kd_loss_last_error(h);
    ck_assert_msg(contains_nocase(m, word), "message \"%s\" does not name \"%s\"", m, word);
}

/* A configured KL handle with all inputs and outputs bound. */
typedef struct {
    kd_loss *h;
    float s[N * LDS], t[N * LDS], s0[N * LDS], t0[N * LDS];
    float g[N * LDG], per[N], loss[N], up[N];
    int32_t y[N];
    float w[N];
} fixture;

static void fixture_init(fixture *f, kd_loss_kind kind)
{
    kdt_rng r;
    kdt_seed(&r, 42);
    kdt_fill_normal(&r, f->s, N * LDS, 1.0);
    kdt_fill_normal(&r, f->t, N * LDS, 1.0);
    for (int i = 0; i < N; i++) {
        f->y[i] = i % C;
        f->w[i] = 1.0f;
        f->up[i] = 1.0f;
    }
    /* CE reads the "teacher" buffer as target probabilities */
    if (kind == KD_LOSS_CROSS_ENTROPY)
        for (int e = 0; e < N * LDS; e++)
            f->t[e] = 1.0f / C;
    memcpy(f->s0, f->s, sizeof f->s);
    memcpy(f->t0, f->t, sizeof f->t);
    ck_assert_int_eq(kd_loss_create(&f->h, kind, C), KD_OK);
    ck_assert_int_eq(kd_loss_bind_matrix(f->h, KD_ARG_STUDENT, f->s, LDS), KD_OK);
    ck_assert_int_eq(
        kd_loss_bind_matrix(f->h, kind == KD_LOSS_CROSS_ENTROPY ? KD_ARG_TARGET : KD_ARG_TEACHER,
                            f->t, LDS),
        KD_OK);
    ck_assert_int_eq(kd_loss_bind_labels(f->h, f->y), KD_OK);
    ck_assert_int_eq(kd_loss_bind_weights(f->h, f->w), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(f->h, KD_ARG_GRAD_STUDENT, f->g, LDG), KD_OK);
    ck_assert_int_eq(kd_loss_bind_output(f->h, KD_ARG_PER_SAMPLE, f->per, 0), KD_OK);
    if (kind != KD_LOSS_CROSS_ENTROPY)
        ck_assert_int_eq(kd_loss_set_float(f->h, KD_PARAM_ALPHA, 0.5), KD_OK);
    ck_assert_int_eq(kd_loss_set_int(f->h, KD_PARAM_REDUCTION, KD_REDUCTION_NONE), KD_OK);
}

static void fixture_canaries(fixture *f)
{
    for (int e = 0; e < N * LDG; e++)
        f->g[e] = CANARY;
    for (int i = 0; i < N; i++)
        f->per[i] = f->loss[i] = CANARY;
}

static void assert_untouched(const fixture *f, const char *what)
{
    for (int e = 0; e < N * LDG; e++)
        ck_assert_msg(f->g[e] == CANARY, "%s: gradient written", what);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(f->per[i] == CANARY, "%s: per-sample written", what);
        ck_assert_msg(f->loss[i] == CANARY, "%s: loss written", what);
    }
    ck_assert_msg(memcmp(f->s, f->s0, sizeof f->s) == 0, "%s: student changed", what);
    ck_assert_msg(memcmp(f->t, f->t0, sizeof f->t) == 0, "%s: teacher changed", what);
}

enum { FORWARD = 1, BACKWARD = 2, FUSED = 4, ALL = 7 };

static kd_status call(fixture *f, int mode, int64_t n)
{
    if (mode == FORWARD)
        return kd_loss_forward(f->h, n, f->loss);
    if (mode == BACKWARD)
        return kd_loss_backward(f->h, n, f->up);
    return kd_loss_forward_backward(f->h, n, f->loss);
}

/* Each of the modes fails with status, names word, and writes nothing. */
static void expect_failure(fixture *f, int modes, int64_t n, kd_status status, const char *word)
{
    static const char *names[] = {"", "forward", "backward", "", "forward_backward"};
    for (int mode = FORWARD; mode <= FUSED; mode <<= 1) {
        if (!(modes & mode))
            continue;
        fixture_canaries(f);
        kd_status st = call(f, mode, n);
        ck_assert_msg(st == status, "%s: status %d (%s), expected %d; message \"%s\"", names[mode],
                      (int)st, kd_status_string(st), (int)status, kd_loss_last_error(f->h));
        assert_message_names(f->h, word);
        assert_message_names(f->h, names[mode]);
        assert_untouched(f, names[mode]);
    }
}

static void expect_success(fixture *f)
{
    fixture_canaries(f);
    ck_assert_int_eq(kd_loss_forward_backward(f->h, N, f->loss), KD_OK);
    ck_assert_str_eq(kd_loss_last_error(f->h), "");
}

/* ---- handle life cycle and parameters ---- */

START_TEST(failed_create_leaves_a_message_until_the_next_create_or_destroy)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, 99, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kd_loss_last_error(NULL), "kd_loss_create: unknown loss kind 99");
    ck_assert_int_eq(kd_loss_create(&h, 4, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kd_loss_last_error(NULL), "kd_loss_create: unknown loss kind 4");
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_MCC, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kd_loss_last_error(NULL),
                     "kd_loss_create: num_classes = 0 outside [1, 2147483647]");
    ck_assert_int_eq(kd_loss_create(NULL, KD_LOSS_MCC, 3), KD_ERR_NULL_POINTER);
    ck_assert_str_eq(kd_loss_last_error(NULL), "kd_loss_create: out is NULL");
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_MCC, 3), KD_OK);
    ck_assert_str_eq(kd_loss_last_error(NULL), "invalid handle (NULL)");
    ck_assert_str_eq(kd_loss_last_error(h), "");
    ck_assert_int_eq(kd_loss_create(&h, 0, 3), KD_ERR_INVALID_ARGUMENT);
    kd_loss_destroy(h);
    ck_assert_str_eq(kd_loss_last_error(NULL), "invalid handle (NULL)");
}
END_TEST

START_TEST(create_rejects_null_out_unknown_kind_and_bad_class_count)
{
    kd_loss *h = (kd_loss *)&h;
    ck_assert_int_eq(kd_loss_create(NULL, KD_LOSS_CROSS_ENTROPY, 3), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_create(&h, 4, 3), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_LOGIT_MSE, -5), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_LOGIT_MSE, (int64_t)INT32_MAX * 4),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_eq(h, (kd_loss *)&h);
    kd_loss_destroy(NULL);
    ck_assert_ptr_nonnull(kd_loss_last_error(NULL));
}
END_TEST

START_TEST(temperature_at_or_below_zero_is_rejected_at_set_time)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL};
    for (int k = 0; k < 2; k++) {
        kd_loss *h;
        kd_loss_create(&h, kinds[k], 3);
        ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0), KD_OK);
        static const double bad[] = {0.0, -1.0, -0.0, NAN, INFINITY, -INFINITY};
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, bad[b]),
                             KD_ERR_INVALID_ARGUMENT);
            assert_message_names(h, "temperature");
        }
        double v;
        ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_TEMPERATURE, &v), KD_OK);
        ck_assert(v == 2.0); /* unchanged */
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(alpha_outside_0_1_is_rejected_and_leaves_both_weights)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_KL_DISTILL, KD_LOSS_LOGIT_MSE};
    for (int k = 0; k < 2; k++) {
        kd_loss *h;
        double v;
        kd_loss_create(&h, kinds[k], 3);
        ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.8), KD_OK);
        static const double bad[] = {-0.01, 1.01, 2.0, NAN, INFINITY};
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, bad[b]), KD_ERR_INVALID_ARGUMENT);
            assert_message_names(h, "alpha");
        }
        kd_loss_get_float(h, KD_PARAM_SOFT_WEIGHT, &v);
        ck_assert(v == 0.8);
        kd_loss_get_float(h, KD_PARAM_HARD_WEIGHT, &v);
        ck_assert(fabs(v - 0.2) < 1e-15);
        ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.0), KD_OK);
        ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 1.0), KD_OK);
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(every_out_of_range_parameter_is_rejected_and_named)
{
    struct {
        kd_loss_kind kind;
        kd_param p;
        int is_int;
        double v;
        const char *name;
    } cases[] = {
        {KD_LOSS_KL_DISTILL, KD_PARAM_REDUCTION, 1, 3, "reduction"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_REDUCTION, 1, -1, "reduction"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_SOFT_WEIGHT, 0, -0.5, "soft_weight"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_HARD_WEIGHT, 0, INFINITY, "hard_weight"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_T2_SCALING, 1, 2, "t2_scaling"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_DIVERGENCE, 1, 3, "divergence"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_JSD_BETA, 0, 1.5, "jsd_beta"},
        {KD_LOSS_KL_DISTILL, KD_PARAM_JSD_BETA, 0, -0.1, "jsd_beta"},
        {KD_LOSS_LOGIT_MSE, KD_PARAM_NORMALIZATION, 1, 2, "normalization"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_IGNORE_INDEX, 1, 3e9, "ignore_index"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_LABEL_SMOOTHING, 0, 1.1, "label_smoothing"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_LABEL_SMOOTHING, 0, NAN, "label_smoothing"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_SMOOTHING_MODE, 1, 2, "smoothing_mode"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_LABEL_WEIGHT, 0, -0.2, "label_weight"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_THREADS, 1, -1, "threads"},
        {KD_LOSS_CROSS_ENTROPY, KD_PARAM_CHECK_FINITE, 1, 2, "check_finite"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_loss *h;
        kd_loss_create(&h, cases[i].kind, 4);
        kd_status st = cases[i].is_int ? kd_loss_set_int(h, cases[i].p, (int64_t)cases[i].v)
                                       : kd_loss_set_float(h, cases[i].p, cases[i].v);
        ck_assert_msg(st == KD_ERR_INVALID_ARGUMENT, "%s: status %d", cases[i].name, (int)st);
        assert_message_names(h, cases[i].name);
        kd_loss_destroy(h);
    }
}
END_TEST

START_TEST(parameters_of_another_kind_wrong_type_read_only_or_unknown_are_unsupported)
{
    kd_loss *h;
    int64_t iv = 99;
    double dv = 99.0, lo = 7, hi = 7;
    int32_t open = 7;
    kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 4);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 2.0), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "temperature");
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DIVERGENCE, 1), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "divergence");
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_LABEL_WEIGHT, 0.5), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "label_weight");
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_SOFT_WEIGHT, 1), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "soft_weight");
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_REDUCTION, 1.0), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "reduction");
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_KIND, 1), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "read only");
    ck_assert_int_eq(kd_loss_set_int(h, 999, 1), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "999");
    ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_TEMPERATURE, &dv), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_SOFT_WEIGHT, &iv), KD_ERR_UNSUPPORTED);
    ck_assert(dv == 99.0 && iv == 99);
    ck_assert_int_eq(kd_loss_get_int(NULL, KD_PARAM_REDUCTION, &iv), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_SOFT_WEIGHT, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_get_float(NULL, KD_PARAM_SOFT_WEIGHT, &dv), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_set_float(NULL, KD_PARAM_SOFT_WEIGHT, 1.0), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_set_int(NULL, KD_PARAM_REDUCTION, 1), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_param_bounds(KD_LOSS_LOGIT_MSE, KD_PARAM_TEMPERATURE, &lo, &hi, &open),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_param_bounds(KD_LOSS_LOGIT_MSE, 999, &lo, &hi, &open),
                     KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_param_bounds(KD_LOSS_KL_DISTILL, KD_PARAM_ALPHA, NULL, &hi, &open),
                     KD_ERR_NULL_POINTER);
    ck_assert(lo == 7 && hi == 7 && open == 7);
    ck_assert_int_eq(kd_loss_param_bounds(KD_LOSS_KL_DISTILL, KD_PARAM_ALPHA, &lo, &hi, &open),
                     KD_OK);
    ck_assert(lo == 0.0 && hi == 1.0 && open == 0);
    kd_loss_destroy(h);
}
END_TEST

/* ---- bindings ---- */

START_TEST(binding_functions_reject_null_handle)
{
    float x[4] = {0};
    int32_t y[1] = {0};
    const float *tp[1] = {x};
    int64_t ld[1] = {4};
    ck_assert_int_eq(kd_loss_bind_matrix(NULL, KD_ARG_STUDENT, x, 4), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_bind_teachers(NULL, 1, tp, ld, NULL), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_bind_labels(NULL, y), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_bind_weights(NULL, x), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_bind_output(NULL, KD_ARG_GRAD_STUDENT, x, 4), KD_ERR_NULL_POINTER);
    float loss = CANARY;
    ck_assert_int_eq(kd_loss_forward(NULL, 1, &loss), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_backward(NULL, 1, &loss), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_forward_backward(NULL, 1, &loss), KD_ERR_NULL_POINTER);
    ck_assert(loss == CANARY);
}
END_TEST

START_TEST(stride_smaller_than_class_count_is_a_shape_error_and_keeps_the_old_binding)
{
    fixture f;
    fixture_init(&f, KD_LOSS_KL_DISTILL);
    float other[N * LDS];
    memcpy(other, f.s, sizeof other);
    ck_assert_int_eq(kd_loss_bind_matrix(f.h, KD_ARG_STUDENT, other, C - 1), KD_ERR_SHAPE);
    assert_message_names(f.h, "ld");
    ck_assert_int_eq(kd_loss_bind_matrix(f.h, KD_ARG_TEACHER, other, 0), KD_ERR_SHAPE);
    assert_message_names(f.h, "ld");
    ck_assert_int_eq(kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, other, C - 1), KD_ERR_SHAPE);
    assert_message_names(f.h, "ld");
    const float *tp[2] = {f.t, f.t};
    int64_t lds[2] = {LDS, C - 2};
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, NULL), KD_ERR_SHAPE);
    assert_message_names(f.h, "lds[1]");
    /* the previous bindings still work (and a success clears the message) */
    expect_success(&f);
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(roles_that_a_kind_does_not_have_are_unsupported)
{
    kd_loss *h;
    float x[8] = {0};
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 4);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TARGET, x, 4), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "role 3");
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_GRAD_STUDENT, x, 4), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "role 6");
    ck_assert_int_eq(kd_loss_bind_output(h, KD_ARG_STUDENT, x, 4), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "role 1");
    ck_assert_int_eq(kd_loss_bind_output(h, 42, x, 4), KD_ERR_UNSUPPORTED);
    assert_message_names(h, "role 42");
    kd_loss_destroy(h);
    kd_loss_create(&h, KD_LOSS_LOGIT_MSE, 4);
    ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TARGET, x, 4), KD_ERR_UNSUPPORTED);
    kd_loss_destroy(h);
    /* kd_loss_bind_teachers' KD_ERR_UNSUPPORTED (a kind without teachers) and
     * kd_loss_bind_labels' KD_ERR_UNSUPPORTED cannot occur for these three
     * kinds: all of them take teachers and labels. */
}
END_TEST

START_TEST(bind_teachers_rejects_null_arrays_bad_counts_and_bad_weights)
{
    fixture f;
    fixture_init(&f, KD_LOSS_KL_DISTILL);
    const float *tp[2] = {f.t, f.t}, *tnull[2] = {f.t, NULL};
    int64_t lds[2] = {LDS, LDS};
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, NULL, lds, NULL), KD_ERR_NULL_POINTER);
    assert_message_names(f.h, "teachers");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, NULL, NULL), KD_ERR_NULL_POINTER);
    assert_message_names(f.h, "lds");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tnull, lds, NULL), KD_ERR_NULL_POINTER);
    assert_message_names(f.h, "teachers[1]");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, -1, tp, lds, NULL), KD_ERR_INVALID_ARGUMENT);
    assert_message_names(f.h, "count");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 1025, tp, lds, NULL), KD_ERR_INVALID_ARGUMENT);
    assert_message_names(f.h, "count");
    float wneg[2] = {1.0f, -1.0f}, wzero[2] = {0.0f, 0.0f}, wnan[2] = {NAN, 1.0f},
          winf[2] = {1.0f, INFINITY};
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, wneg), KD_ERR_INVALID_ARGUMENT);
    assert_message_names(f.h, "weights[1]");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, wnan), KD_ERR_INVALID_ARGUMENT);
    assert_message_names(f.h, "weights[0]");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, winf), KD_ERR_INVALID_ARGUMENT);
    assert_message_names(f.h, "weights[1]");
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, wzero), KD_ERR_INVALID_ARGUMENT);
    assert_message_names(f.h, "weights");
    expect_success(&f); /* the single teacher bound before is still there */
    /* count = 0 unbinds: then the teacher is missing */
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 0, NULL, NULL, NULL), KD_OK);
    expect_failure(&f, ALL, N, KD_ERR_MISSING_INPUT, "teacher");
    kd_loss_destroy(f.h);
}
END_TEST

/* ---- compute calls ---- */

START_TEST(null_loss_or_upstream_pointer_is_rejected)
{
    fixture f;
    fixture_init(&f, KD_LOSS_KL_DISTILL);
    fixture_canaries(&f);
    ck_assert_int_eq(kd_loss_forward(f.h, N, NULL), KD_ERR_NULL_POINTER);
    assert_message_names(f.h, "loss");
    ck_assert_int_eq(kd_loss_forward_backward(f.h, N, NULL), KD_ERR_NULL_POINTER);
    assert_message_names(f.h, "loss");
    ck_assert_int_eq(kd_loss_backward(f.h, N, NULL), KD_ERR_NULL_POINTER);
    assert_message_names(f.h, "upstream");
    assert_untouched(&f, "null pointer");
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(missing_inputs_and_missing_gradient_output_are_reported)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,
                                         KD_LOSS_LOGIT_MSE};
    for (int k = 0; k < 3; k++) {
        fixture f;
        fixture_init(&f, kinds[k]);
        kd_loss_bind_matrix(f.h, KD_ARG_STUDENT, NULL, 0);
        expect_failure(&f, ALL, N, KD_ERR_MISSING_INPUT, "student");
        kd_loss_bind_matrix(f.h, KD_ARG_STUDENT, f.s, LDS);
        kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, NULL, 0);
        expect_failure(&f, BACKWARD | FUSED, N, KD_ERR_MISSING_INPUT, "gradient");
        kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, f.g, LDG);
        if (kinds[k] == KD_LOSS_CROSS_ENTROPY) {
            /* labels, target or teacher: at least one */
            kd_loss_bind_matrix(f.h, KD_ARG_TARGET, NULL, 0);
            kd_loss_bind_labels(f.h, NULL);
            expect_failure(&f, ALL, N, KD_ERR_MISSING_INPUT, "labels, target or teacher");
        } else {
            kd_loss_bind_matrix(f.h, KD_ARG_TEACHER, NULL, 0);
            expect_failure(&f, ALL, N, KD_ERR_MISSING_INPUT, "teacher");
        }
        kd_loss_destroy(f.h);
    }
}
END_TEST

START_TEST(cross_entropy_with_both_target_and_teacher_is_ambiguous)
{
    fixture f;
    fixture_init(&f, KD_LOSS_CROSS_ENTROPY);
    ck_assert_int_eq(kd_loss_bind_matrix(f.h, KD_ARG_TEACHER, f.t, LDS), KD_OK);
    expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "target");
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(negative_row_count_is_invalid)
{
    fixture f;
    fixture_init(&f, KD_LOSS_LOGIT_MSE);
    expect_failure(&f, ALL, -1, KD_ERR_INVALID_ARGUMENT, "n = -1");
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(labels_out_of_range_are_invalid_and_name_the_row)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,
                                         KD_LOSS_LOGIT_MSE};
    for (int k = 0; k < 3; k++) {
        fixture f;
        fixture_init(&f, kinds[k]);
        f.y[2] = C;
        expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "labels[2] = 5");
        f.y[2] = -1; /* negative and not the ignore index */
        expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "labels[2] = -1");
        kd_loss_set_int(f.h, KD_PARAM_IGNORE_INDEX, -1);
        f.y[3] = -100; /* -100 is no longer ignored */
        expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "labels[3] = -100");
        f.y[3] = 0;
        expect_success(&f);
        kd_loss_destroy(f.h);
    }
}
END_TEST

START_TEST(negative_or_non_finite_sample_weights_are_invalid)
{
    fixture f;
    fixture_init(&f, KD_LOSS_CROSS_ENTROPY);
    f.w[1] = -0.5f;
    expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "weights[1]");
    f.w[1] = NAN;
    expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "weights[1]");
    f.w[1] = INFINITY;
    expect_failure(&f, ALL, N, KD_ERR_INVALID_ARGUMENT, "weights[1]");
    f.w[1] = 0.0f;
    expect_success(&f);
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(row_extent_that_overflows_is_a_shape_error)
{
    fixture f;
    fixture_init(&f, KD_LOSS_KL_DISTILL);
    expect_failure(&f, ALL, INT64_MAX / 2, KD_ERR_SHAPE, "overflows");
    expect_failure(&f, ALL, INT64_MAX, KD_ERR_SHAPE, "student");
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(check_finite_rejects_nan_and_inf_inputs_and_writes_nothing)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,
                                         KD_LOSS_LOGIT_MSE};
    for (int k = 0; k < 3; k++) {
        fixture f;
        fixture_init(&f, kinds[k]);
        ck_assert_int_eq(kd_loss_set_int(f.h, KD_PARAM_CHECK_FINITE, 1), KD_OK);
        expect_success(&f);
        f.s[1 * LDS + 2] = f.s0[1 * LDS + 2] = NAN;
        expect_failure(&f, ALL, N, KD_ERR_NOT_FINITE, "student[1][2]");
        f.s[1 * LDS + 2] = f.s0[1 * LDS + 2] = INFINITY;
        expect_failure(&f, ALL, N, KD_ERR_NOT_FINITE, "student[1][2]");
        f.s[1 * LDS + 2] = f.s0[1 * LDS + 2] = -INFINITY;
        expect_failure(&f, ALL, N, KD_ERR_NOT_FINITE, "student[1][2]");
        f.s[1 * LDS + 2] = f.s0[1 * LDS + 2] = 0.5f;
        f.t[3 * LDS + 4] = f.t0[3 * LDS + 4] = -INFINITY;
        expect_failure(&f, ALL, N, KD_ERR_NOT_FINITE,
                       kinds[k] == KD_LOSS_CROSS_ENTROPY ? "target[3][4]" : "teacher[3][4]");
        f.t[3 * LDS + 4] = f.t0[3 * LDS + 4] = 0.2f;
        f.up[2] = NAN; /* reduction NONE: one upstream value per row */
        expect_failure(&f, BACKWARD, N, KD_ERR_NOT_FINITE, "upstream[2]");
        f.up[2] = 1.0f;
        /* the padding columns [C, LDS) are not data: NaN there is fine */
        f.s[LDS - 1] = f.s0[LDS - 1] = NAN;
        expect_success(&f);
        /* and by default (check off) NaN propagates instead */
        f.s[0] = f.s0[0] = NAN;
        kd_loss_set_int(f.h, KD_PARAM_CHECK_FINITE, 0);
        fixture_canaries(&f);
        ck_assert_int_eq(kd_loss_forward(f.h, N, f.loss), KD_OK);
        ck_assert(isnan(f.loss[0]) && isfinite(f.loss[1]));
        kd_loss_destroy(f.h);
    }
}
END_TEST

START_TEST(gradient_overlapping_an_input_other_than_in_place_is_aliasing)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,
                                         KD_LOSS_LOGIT_MSE};
    for (int k = 0; k < 3; k++) {
        fixture f;
        fixture_init(&f, kinds[k]);
        /* shifted by one element over the student */
        kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, f.s + 1, LDS);
        expect_failure(&f, BACKWARD | FUSED, N, KD_ERR_ALIASING, "student");
        /* same pointer, different ld: not the documented in-place form */
        kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, f.s, LDS + 1);
        expect_failure(&f, BACKWARD | FUSED, N, KD_ERR_ALIASING, "student");
        /* over the teacher or target */
        kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, f.t + LDS, LDS);
        expect_failure(&f, BACKWARD | FUSED, N, KD_ERR_ALIASING,
                       kinds[k] == KD_LOSS_CROSS_ENTROPY ? "target" : "teacher");
        /* forward does not write the gradient: no conflict */
        fixture_canaries(&f);
        ck_assert_int_eq(kd_loss_forward(f.h, N, f.loss), KD_OK);
        /* in place (same pointer, same ld) is allowed */
        kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, f.s, LDS);
        ck_assert_int_eq(kd_loss_forward_backward(f.h, N, f.loss), KD_OK);
        kd_loss_destroy(f.h);
    }
    /* a second teacher overlapping the gradient */
    fixture f;
    fixture_init(&f, KD_LOSS_LOGIT_MSE);
    float t2[N * LDS];
    memcpy(t2, f.t, sizeof t2);
    const float *tp[2] = {f.t, t2};
    int64_t lds[2] = {LDS, LDS};
    kd_loss_bind_teachers(f.h, 2, tp, lds, NULL);
    kd_loss_bind_output(f.h, KD_ARG_GRAD_STUDENT, t2 + 3, LDS);
    expect_failure(&f, BACKWARD | FUSED, N, KD_ERR_ALIASING, "teacher 1");
    kd_loss_destroy(f.h);
}
END_TEST

/* loss.h: "Any other overlap between an output and an input is refused with
 * KD_ERR_ALIASING" holds for the per-sample vector and the NONE loss vector
 * too, not only for the gradient. */
START_TEST(per_sample_output_overlapping_an_input_is_aliasing)
{
    fixture f;
    fixture_init(&f, KD_LOSS_KL_DISTILL);
    kd_loss_bind_output(f.h, KD_ARG_PER_SAMPLE, f.s + 2, 0);
    fixture_canaries(&f);
    ck_assert_int_eq(kd_loss_forward(f.h, N, f.loss), KD_ERR_ALIASING);
    ck_assert(memcmp(f.s, f.s0, sizeof f.s) == 0);
    kd_loss_bind_output(f.h, KD_ARG_PER_SAMPLE, NULL, 0);
    ck_assert_int_eq(kd_loss_forward(f.h, N, f.t + 1), KD_ERR_ALIASING);
    ck_assert(memcmp(f.t, f.t0, sizeof f.t) == 0);
    kd_loss_destroy(f.h);
}
END_TEST

START_TEST(impossible_workspace_is_out_of_memory_and_changes_nothing)
{
    /* C = 1, ld = 1: n = 2^50 rows pass the extent check, but the per-row
     * workspace (16 bytes a row) cannot be allocated.  No input is read
     * before the allocation (no labels, weights or finite check). */
    kd_loss *h;
    float s[2] = {1, 2}, t[2] = {0, 0}, loss = CANARY;
    kd_loss_create(&h, KD_LOSS_KL_DISTILL, 1);
    kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 1);
    kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 1);
    ck_assert_int_eq(kd_loss_forward(h, (int64_t)1 << 50, &loss), KD_ERR_OUT_OF_MEMORY);
    assert_message_names(h, "n = 1125899906842624");
    ck_assert(loss == CANARY && s[0] == 1 && s[1] == 2);
    /* the handle still works afterwards */
    ck_assert_int_eq(kd_loss_forward(h, 2, &loss), KD_OK);
    ck_assert(loss == 0.0f);
    kd_loss_destroy(h);
}
END_TEST

/* n = 2^60 + 1 rows of one class pass the extent check; their workspace of
 * 2 n doubles does not fit in size_t (it wrapped to 16 bytes, and the row
 * loop wrote past the heap block): KD_ERR_OUT_OF_MEMORY, nothing read or
 * written.  The student is a 1-float buffer (no row is ever read), placed
 * after the loss so that their ranges do not overlap. */
START_TEST(workspace_size_overflow_is_refused)
{
    static const kd_loss_kind kinds[] = {
        KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL,    KD_LOSS_LOGIT_MSE, KD_LOSS_PSEUDO_LABEL,
        KD_LOSS_CONSISTENCY,   KD_LOSS_CLASS_BALANCE, KD_LOSS_MCC,       KD_LOSS_WORST_CASE};
    const int64_t n = ((int64_t)1 << 60) + 1;
    int cases = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        float buf[3] = {CANARY, 0.5f, 0.25f}; /* loss, student, teacher */
        kd_loss *h;
        ck_assert_int_eq(kd_loss_create(&h, kinds[k], 1), KD_OK);
        if (kinds[k] == KD_LOSS_WORST_CASE) {
            /* the unlabeled batch stays empty: only n = 2^60 + 1 labeled rows */
            ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_UNLABELED_ROWS, 0), KD_OK);
            for (kd_arg r = KD_ARG_LABELED_MAIN; r <= KD_ARG_UNLABELED_ADV; r++)
                ck_assert_int_eq(kd_loss_bind_matrix(h, r, buf + 1, 1), KD_OK);
        } else {
            ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_STUDENT, buf + 1, 1), KD_OK);
        }
        if (kinds[k] == KD_LOSS_CROSS_ENTROPY)
            ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TARGET, buf + 1, 1), KD_OK);
        else if (kinds[k] != KD_LOSS_CLASS_BALANCE && kinds[k] != KD_LOSS_MCC &&
                 kinds[k] != KD_LOSS_WORST_CASE)
            ck_assert_int_eq(kd_loss_bind_matrix(h, KD_ARG_TEACHER, buf + 1, 1), KD_OK);
        kd_status st = kd_loss_forward(h, n, buf);
        ck_assert_msg(st == KD_ERR_OUT_OF_MEMORY || st == KD_ERR_SHAPE,
                      "kind %d: n = 2^60 + 1 gave %s", (int)kinds[k], kd_status_string(st));
        ck_assert(buf[0] == CANARY && buf[1] == 0.5f && buf[2] == 0.25f);
        ck_assert_str_ne(kd_loss_last_error(h), "");
        kd_loss_destroy(h);
        cases++;
    }
    ck_assert_int_eq(cases, 8);
}
END_TEST

/* loss.h: create refuses num_classes > 2^31 - 1 (2^31 itself included) and
 * accepts 2^31 - 1 (the handle allocates nothing per class). */
START_TEST(create_bounds_match_the_documentation)
{
    kd_loss *h = NULL;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, (int64_t)1 << 31),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(NULL), "[1, 2147483647]"));
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, ((int64_t)1 << 31) - 1), KD_OK);
    int64_t c = 0;
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_NUM_CLASSES, &c), KD_OK);
    ck_assert_int_eq(c, INT32_MAX);
    kd_loss_destroy(h);
}
END_TEST

/* Finite weights whose sum is large are normalised, not refused. */
START_TEST(large_finite_teacher_weights_are_accepted)
{
    fixture f;
    fixture_init(&f, KD_LOSS_KL_DISTILL);
    kd_loss_set_int(f.h, KD_PARAM_REDUCTION, KD_REDUCTION_MEAN);
    const float *tp[2] = {f.t, f.t};
    const int64_t lds[2] = {LDS, LDS};
    float ref, got;
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, NULL), KD_OK);
    ck_assert_int_eq(kd_loss_forward(f.h, N, &ref), KD_OK);
    const float big[2] = {1e30f, 1e30f}, max[2] = {3.4028235e38f, 3.4028235e38f};
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, big), KD_OK);
    ck_assert_int_eq(kd_loss_forward(f.h, N, &got), KD_OK);
    ck_assert(got == ref); /* {w, w} is {1/2, 1/2} */
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, max), KD_OK);
    ck_assert_int_eq(kd_loss_forward(f.h, N, &got), KD_OK);
    ck_assert(got == ref);
    const float inf[2] = {INFINITY, 1.0f};
    ck_assert_int_eq(kd_loss_bind_teachers(f.h, 2, tp, lds, inf), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(f.h), "weights[0]"));
    kd_loss_destroy(f.h);
}
END_TEST

/* Every failing call sets its message, the const ones included: an older
 * message is never left in place. */
START_TEST(failing_getters_set_their_message)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    int64_t iv;
    double dv;
    struct {
        const char *word;
        kd_status want;
        int which;
    } cases[] = {
        {"real number", KD_ERR_UNSUPPORTED, 0},        /* get_int of a real parameter */
        {"is not a KD_PARAM_", KD_ERR_UNSUPPORTED, 1}, /* get_int of an unknown one */
        {"value is NULL", KD_ERR_NULL_POINTER, 2},
        {"integer", KD_ERR_UNSUPPORTED, 3}, /* get_float of an int parameter */
        {"value is NULL", KD_ERR_NULL_POINTER, 4},
        {"batch statistics", KD_ERR_UNSUPPORTED, 5}, /* stats_size of KL */
        {"count is NULL", KD_ERR_NULL_POINTER, 6},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* an older message to overwrite */
        ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, -1.0), KD_ERR_INVALID_ARGUMENT);
        kd_status st;
        switch (cases[k].which) {
        case 0:
            st = kd_loss_get_int(h, KD_PARAM_TEMPERATURE, &iv);
            break;
        case 1:
            st = kd_loss_get_int(h, 9999, &iv);
            break;
        case 2:
            st = kd_loss_get_int(h, KD_PARAM_REDUCTION, NULL);
            break;
        case 3:
            st = kd_loss_get_float(h, KD_PARAM_REDUCTION, &dv);
            break;
        case 4:
            st = kd_loss_get_float(h, KD_PARAM_TEMPERATURE, NULL);
            break;
        case 5:
            st = kd_loss_stats_size(h, &iv);
            break;
        default:
            st = kd_loss_stats_size(h, NULL);
            break;
        }
        ck_assert_int_eq(st, cases[k].want);
        ck_assert_msg(strstr(kd_loss_last_error(h), cases[k].word) != NULL,
                      "case %zu: message \"%s\" (the older one left in place?)", k,
                      kd_loss_last_error(h));
    }
    /* and a successful call clears it */
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_REDUCTION, &iv), KD_OK);
    ck_assert_str_eq(kd_loss_last_error(h), "");
    kd_loss_destroy(h);
}
END_TEST

/* Every handle family words a refused parameter the same way:
 * "function: ENUM_NAME = value is outside [lo, hi]". */
START_TEST(every_handle_words_a_refused_parameter_the_same_way)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 1e-7), KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kd_loss_last_error(h),
                     "kd_loss_set_float: KD_PARAM_TEMPERATURE = 1e-07 is outside [1e-06, 1e+06]");
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_DIVERGENCE, 7), KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kd_loss_last_error(h),
                     "kd_loss_set_int: KD_PARAM_DIVERGENCE = 7 is outside [0, 2]");
    ck_assert_int_eq(kd_loss_set_int(h, 999, 1), KD_ERR_UNSUPPORTED);
    ck_assert_str_eq(kd_loss_last_error(h),
                     "kd_loss_set_int: param = 999 is not a KD_PARAM_* parameter");
    ck_assert_int_eq(kd_loss_bind_teachers(h, -1, NULL, NULL, NULL), KD_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strncmp(kd_loss_last_error(h), "kd_loss_bind_teachers: ", 23) == 0, "%s",
                  kd_loss_last_error(h));
    kd_loss_destroy(h);

    kd_threshold *th;
    ck_assert_int_eq(kd_threshold_create(&th, KD_THRESHOLD_FREEMATCH, 8, C), KD_OK);
    ck_assert_int_eq(kd_threshold_set_float(th, KD_THRESHOLD_PARAM_MOMENTUM, 2.0),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(kd_threshold_last_error(th),
                     "kd_threshold_set_float: KD_THRESHOLD_PARAM_MOMENTUM = 2 is outside [0, 1]");
    kd_threshold_destroy(th);
}
END_TEST

START_TEST(every_documented_status_has_a_distinct_string)
{
    static const kd_status used[] = {
        KD_ERR_NULL_POINTER,  KD_ERR_INVALID_ARGUMENT, KD_ERR_SHAPE,      KD_ERR_UNSUPPORTED,
        KD_ERR_MISSING_INPUT, KD_ERR_OUT_OF_MEMORY,    KD_ERR_NOT_FINITE, KD_ERR_ALIASING};
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++) {
        ck_assert_ptr_nonnull(kd_status_string(used[i]));
        ck_assert_str_ne(kd_status_string(used[i]), kd_status_string(KD_OK));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loss_errors");
    TCase *tc = tcase_create("loss_errors");
    tcase_add_test(tc, create_rejects_null_out_unknown_kind_and_bad_class_count);
    tcase_add_test(tc, failed_create_leaves_a_message_until_the_next_create_or_destroy);
    tcase_add_test(tc, temperature_at_or_below_zero_is_rejected_at_set_time);
    tcase_add_test(tc, alpha_outside_0_1_is_rejected_and_leaves_both_weights);
    tcase_add_test(tc, every_out_of_range_parameter_is_rejected_and_named);
    tcase_add_test(tc, parameters_of_another_kind_wrong_type_read_only_or_unknown_are_unsupported);
    tcase_add_test(tc, binding_functions_reject_null_handle);
    tcase_add_test(tc, stride_smaller_than_class_count_is_a_shape_error_and_keeps_the_old_binding);
    tcase_add_test(tc, roles_that_a_kind_does_not_have_are_unsupported);
    tcase_add_test(tc, bind_teachers_rejects_null_arrays_bad_counts_and_bad_weights);
    tcase_add_test(tc, null_loss_or_upstream_pointer_is_rejected);
    tcase_add_test(tc, missing_inputs_and_missing_gradient_output_are_reported);
    tcase_add_test(tc, cross_entropy_with_both_target_and_teacher_is_ambiguous);
    tcase_add_test(tc, negative_row_count_is_invalid);
    tcase_add_test(tc, labels_out_of_range_are_invalid_and_name_the_row);
    tcase_add_test(tc, negative_or_non_finite_sample_weights_are_invalid);
    tcase_add_test(tc, row_extent_that_overflows_is_a_shape_error);
    tcase_add_test(tc, check_finite_rejects_nan_and_inf_inputs_and_writes_nothing);
    tcase_add_test(tc, gradient_overlapping_an_input_other_than_in_place_is_aliasing);
    tcase_add_test(tc, impossible_workspace_is_out_of_memory_and_changes_nothing);
    tcase_add_test(tc, every_documented_status_has_a_distinct_string);
    tcase_add_test(tc, workspace_size_overflow_is_refused);
    tcase_add_test(tc, create_bounds_match_the_documentation);
    tcase_add_test(tc, large_finite_teacher_weights_are_accepted);
    tcase_add_test(tc, failing_getters_set_their_message);
    tcase_add_test(tc, every_handle_words_a_refused_parameter_the_same_way);
    suite_add_tcase(s, tc);
    tcase_add_test(tc, per_sample_output_overlapping_an_input_is_aliasing);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
