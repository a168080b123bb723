/* EMA teacher handle (include/kdlib/ema.h, docs/ema.md). */
#include "kdlib/ema.h"

#include "core/error.h"
#include "core/params.h"
#include "core/statefile.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Version 1 stored the decay as f32 at meta offset 16 (then a reserved u32);
 * version 2 stores it as f64 there.  Both are read. */
#define KDI_EMA_FORMAT_VERSION 2u
#define KDI_EMA_META_FIXED 24u
/* Below this many elements per thread, another thread costs more than it saves. */
#define KDI_EMA_MIN_PER_THREAD ((int64_t)1 << 15)
#define KDI_EMA_ALIGN 64

static const char kdi_ema_magic[KDI_STATEFILE_MAGIC_SIZE] = {'K', 'D', 'L', 'I',
                                                             'B', 'E', 'M', 'A'};

struct kd_ema {
    int32_t num_arrays;
    int64_t total; /* sum of the lengths */
    int64_t
        *offsets;   /* num_arrays + 1 prefix sums: array i is teacher[offsets[i] .. offsets[i+1]) */
    int32_t *kinds; /* KD_EMA_AVERAGE / KD_EMA_COPY */
    float *teacher; /* total floats, KDI_EMA_ALIGN-aligned, never reallocated */
    int64_t step;
    double decay;
    int32_t warmup;
    int32_t threads;
    char err[KDI_ERROR_SIZE];
};

/* kd_ema_create has no handle to hold its message. */
static _Thread_local char kdi_ema_create_err[KDI_ERROR_SIZE];

enum { KDI_EMA_OP_UPDATE, KDI_EMA_OP_COPY_TO, KDI_EMA_OP_SWAP, KDI_EMA_OP_RESET };

/* One pass over all arrays: the student is either per-array pointers or one
 * flat buffer laid out like the teacher. */
typedef struct {
    int op;
    const float *const *arrays;
    const float *flat;
    float a, b; /* teacher = a * teacher + b * student */
} kdi_ema_job;

/* ---- kernels -------------------------------------------------------------- */

static void kdi_ema_average(float *restrict t, const float *restrict s, int64_t n, float a, float b)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        t[i] = a * t[i] + b * s[i];
}

static void kdi_ema_exchange(float *restrict t, float *restrict s, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float x = t[i];
        t[i] = s[i];
        s[i] = x;
    }
}

/* Apply the job to the elements [lo, hi) of the concatenated arrays. */
static void kdi_ema_run_range(const kd_ema *h, const kdi_ema_job *job, int64_t lo, int64_t hi)
{
    if (lo >= hi)
        return;
    /* Largest i with offsets[i] <= lo: the (non-empty) array that holds lo. */
    int32_t l = 0, r = h->num_arrays - 1;
    while (l < r) {
        int32_t m = l + (r - l + 1) / 2;
        if (h->offsets[m] <= lo)
            l = m;
        else
            r = m - 1;
    }
    for (int32_t i = l; i < h->num_arrays && h->offsets[i] < hi; i++) {
        int64_t begin = h->offsets[i] > lo ? h->offsets[i] : lo;
        int64_t end = h->offsets[i + 1] < hi ? h->offsets[i + 1] : hi;
        if (begin >= end)
            continue;
        int64_t n = end - begin;
        float *t = h->teacher + begin;
        /* Write operations received float *const *; the job stores them const. */
        float *s = job->flat ? (float *)job->flat + begin
                             : (float *)job->arrays[i] + (begin - h->offsets[i]);
        switch (job->op) {
        case KDI_EMA_OP_UPDATE:
            /* a_t = 0 (Mean Teacher's first update) is an exact copy, and
             * a_t = 1 a frozen teacher, even for -0.0, Inf and NaN values. */
            if (h->kinds[i] == KD_EMA_COPY || job->a == 0.0f)
                memcpy(t, s, (size_t)n * sizeof(float));
            else if (job->b != 0.0f)
                kdi_ema_average(t, s, n, job->a, job->b);
            break;
        case KDI_EMA_OP_COPY_TO:
            memcpy(s, t, (size_t)n * sizeof(float));
            break;
        case KDI_EMA_OP_SWAP:
            kdi_ema_exchange(t, s, n);
            break;
        default: /* KDI_EMA_OP_RESET */
            memcpy(t, s, (size_t)n * sizeof(float));
            break;
        }
    }
}

/* Split the concatenated arrays into one contiguous range per thread, so that
 * many small arrays (biases, norms) cost one parallel region, not one each.
 * Every element is computed by the same expression whatever the split, so the
 * result does not depend on the thread count. */
static void kdi_ema_run(const kd_ema *h, const kdi_ema_job *job)
{
    const int64_t total = h->total;
    int64_t nt = kdi_resolve_threads(h->threads);
    int64_t useful = total / KDI_EMA_MIN_PER_THREAD;
    if (nt > useful)
        nt = useful < 1 ? 1 : useful;
    if (nt <= 1) {
        kdi_ema_run_range(h, job, 0, total);
        return;
    }
    int64_t chunk = (total + nt - 1) / nt;
    chunk = (chunk + 15) & ~(int64_t)15; /* 64-byte boundaries between threads */
#pragma omp parallel num_threads((int)nt)
    {
        const int64_t me = omp_get_thread_num(), got = omp_get_num_threads();
        for (int64_t c = me; c < nt; c += got) {
            int64_t lo = c * chunk;
            int64_t hi = lo + chunk < total ? lo + chunk : total;
            kdi_ema_run_range(h, job, lo, hi);
        }
    }
}

/* ---- helpers -------------------------------------------------------------- */

static int kdi_ema_overlaps(const kd_ema *h, const float *p, int64_t n)
{
    if (n <= 0 || h->total <= 0)
        return 0;
    uintptr_t a0 = (uintptr_t)p, a1 = a0 + (uintptr_t)n * sizeof(float);
    uintptr_t t0 = (uintptr_t)h->teacher, t1 = t0 + (uintptr_t)h->total * sizeof(float);
    return a0 < t1 && t0 < a1;
}

/* Validate the student of a job before anything is touched.  name is the
 * argument's name for the message. */
static kd_status kdi_ema_check_student(kd_ema *h, const char *fn, const char *name,
                                       const float *const *arrays, const float *flat, int is_flat)
{
    if (is_flat) {
        if (!flat && h->total > 0)
            return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL (total length %lld)", fn,
                            name, (long long)h->total);
        if (kdi_ema_overlaps(h, flat, h->total))
            return kdi_fail(h->err, KD_ERR_ALIASING, "%s: %s = %p overlaps the teacher storage", fn,
                            name, (const void *)flat);
        return KD_OK;
    }
    if (!arrays)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn, name);
    for (int32_t i = 0; i < h->num_arrays; i++) {
        int64_t n = h->offsets[i + 1] - h->offsets[i];
        if (n > 0 && !arrays[i])
            return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s[%d] is NULL (length %lld)", fn,
                            name, (int)i, (long long)n);
        if (kdi_ema_overlaps(h, arrays[i], n))
            return kdi_fail(h->err, KD_ERR_ALIASING, "%s: %s[%d] = %p overlaps the teacher storage",
                            fn, name, (int)i, (const void *)arrays[i]);
    }
    return KD_OK;
}

static double kdi_ema_decay_at(double decay, int32_t warmup, int64_t t)
{
    double a = decay, td = (double)t, w;
    switch (warmup) {
    case KD_EMA_WARMUP_MEAN_TEACHER:
        w = 1.0 - 1.0 / (td + 1.0);
        break;
    case KD_EMA_WARMUP_TF:
        w = (1.0 + td) / (10.0 + td);
        break;
    default:
        return a;
    }
    return w < a ? w : a;
}

static kd_status kdi_ema_apply(kd_ema *h, const char *fn, const char *name, int op,
                               const float *const *arrays, const float *flat, int is_flat)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(h->err);
    kd_status st = kdi_ema_check_student(h, fn, name, arrays, flat, is_flat);
    if (st != KD_OK)
        return st;
    kdi_ema_job job = {op, arrays, flat, 1.0f, 0.0f};
    if (op == KDI_EMA_OP_UPDATE) {
        if (h->step == INT64_MAX)
            return kdi_fail(h->err, KD_ERR_STATE, "%s: step counter is at its maximum %lld", fn,
                            (long long)h->step);
        double a = kdi_ema_decay_at(h->decay, h->warmup, h->step);
        job.a = (float)a;
        job.b = (float)(1.0 - a);
    }
    kdi_ema_run(h, &job);
    if (op == KDI_EMA_OP_UPDATE)
        h->step++;
    else if (op == KDI_EMA_OP_RESET)
        h->step = 0;
    return KD_OK;
}

/* ---- life cycle ----------------------------------------------------------- */

kd_status kd_ema_create(kd_ema **out, int32_t num_arrays, const float *const *arrays,
                        const int64_t *lengths, const int32_t *kinds)
{
    char *err = kdi_ema_create_err;
    kdi_clear_error(err);
    if (!out)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "kd_ema_create: out is NULL");
    if (num_arrays < 1)
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                        "kd_ema_create: num_arrays = %d, must be >= 1", (int)num_arrays);
    if (!arrays)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "kd_ema_create: arrays is NULL");
    if (!lengths)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "kd_ema_create: lengths is NULL");
    /* Limit so that byte counts (and the padded allocation) fit int64 and size_t. */
    const int64_t limit =
        (int64_t)((SIZE_MAX / 8 < (uint64_t)INT64_MAX / 8) ? SIZE_MAX / 8
                                                           : (uint64_t)INT64_MAX / 8);
    int64_t total = 0;
    for (int32_t i = 0; i < num_arrays; i++) {
        if (lengths[i] < 0)
            return kdi_fail(err, KD_ERR_SHAPE, "kd_ema_create: lengths[%d] = %lld is negative",
                            (int)i, (long long)lengths[i]);
        if (lengths[i] > 0 && !arrays[i])
            return kdi_fail(err, KD_ERR_NULL_POINTER,
                            "kd_ema_create: arrays[%d] is NULL with lengths[%d] = %lld", (int)i,
                            (int)i, (long long)lengths[i]);
        if (kinds && kinds[i] != KD_EMA_AVERAGE && kinds[i] != KD_EMA_COPY)
            return kdi_fail(err, KD_ERR_INVALID_ARGUMENT,
                            "kd_ema_create: kinds[%d] = %d, must be KD_EMA_AVERAGE (0) or "
                            "KD_EMA_COPY (1)",
                            (int)i, (int)kinds[i]);
        if (lengths[i] > limit - total)
            return kdi_fail(err, KD_ERR_SHAPE,
                            "kd_ema_create: total length overflows at lengths[%d] = %lld", (int)i,
                            (long long)lengths[i]);
        total += lengths[i];
    }

    kd_ema *h = calloc(1, sizeof *h);
    size_t bytes =
        ((size_t)total * sizeof(float) + KDI_EMA_ALIGN - 1) / KDI_EMA_ALIGN * KDI_EMA_ALIGN;
    if (h) {
        h->offsets = malloc(((size_t)num_arrays + 1) * sizeof *h->offsets);
        h->kinds = malloc((size_t)num_arrays * sizeof *h->kinds);
        h->teacher = aligned_alloc(KDI_EMA_ALIGN, bytes ? bytes : KDI_EMA_ALIGN);
    }
    if (!h || !h->offsets || !h->kinds || !h->teacher) {
        kd_ema_destroy(h);
        return kdi_fail(err, KD_ERR_OUT_OF_MEMORY,
                        "kd_ema_create: out of memory for %lld floats in %d arrays",
                        (long long)total, (int)num_arrays);
    }
    h->num_arrays = num_arrays;
    h->total = total;
    h->offsets[0] = 0;
    for (int32_t i = 0; i < num_arrays; i++) {
        h->offsets[i + 1] = h->offsets[i] + lengths[i];
        h->kinds[i] = kinds ? kinds[i] : KD_EMA_AVERAGE;
        if (lengths[i] > 0)
            memcpy(h->teacher + h->offsets[i], arrays[i], (size_t)lengths[i] * sizeof(float));
    }
    h->step = 0;
    h->decay = KD_EMA_DEFAULT_DECAY;
    h->warmup = KD_EMA_WARMUP_NONE;
    h->threads = 1;
    *out = h;
    return KD_OK;
}

kd_status kd_ema_create_flat(kd_ema **out, const float *params, int64_t length)
{
    if (!out) {
        kdi_clear_error(kdi_ema_create_err);
        return kdi_fail(kdi_ema_create_err, KD_ERR_NULL_POINTER, "kd_ema_create_flat: out is NULL");
    }
    if (length < 0) {
        kdi_clear_error(kdi_ema_create_err);
        return kdi_fail(kdi_ema_create_err, KD_ERR_SHAPE,
                        "kd_ema_create_flat: length = %lld is negative", (long long)length);
    }
    if (length > 0 && !params) {
        kdi_clear_error(kdi_ema_create_err);
        return kdi_fail(kdi_ema_create_err, KD_ERR_NULL_POINTER,
                        "kd_ema_create_flat: params is NULL with length = %lld", (long long)length);
    }
    const float *arrays[1] = {params};
    return kd_ema_create(out, 1, arrays, &length, NULL);
}

void kd_ema_destroy(kd_ema *ema)
{
    if (!ema)
        return;
    free(ema->teacher);
    free(ema->kinds);
    free(ema->offsets);
    free(ema);
}

/* ---- parameters ----------------------------------------------------------- */

static const kdi_param_spec kdi_ema_specs[] = {
    {KD_EMA_PARAM_DECAY, "DECAY", KDI_PT_REAL, 1, 0.0, 1.0},
    {KD_EMA_PARAM_WARMUP, "WARMUP", KDI_PT_INT, 1, KD_EMA_WARMUP_NONE, KD_EMA_WARMUP_TF},
    {KD_EMA_PARAM_THREADS, "THREADS", KDI_PT_INT, 1, 0, KD_EMA_MAX_THREADS},
};
static const kdi_param_table kdi_ema_params = {
    "KD_EMA_PARAM_", "kd_ema_set_int / kd_ema_get_int, kd_ema_set_float / kd_ema_get_float",
    kdi_ema_specs, sizeof kdi_ema_specs / sizeof kdi_ema_specs[0]};

kd_status kd_ema_param_bounds(kd_ema_param param, double *lower, double *upper)
{
    return kdi_param_bounds(&kdi_ema_params, param, lower, upper);
}

kd_status kd_ema_set_float(kd_ema *ema, kd_ema_param param, double value)
{
    static const char fn[] = "kd_ema_set_float";
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(ema->err);
    const kdi_param_spec *s;
    kd_status st = kdi_param_check(&kdi_ema_params, ema->err, fn, param, KDI_PT_REAL, 1, &s);
    if (st == KD_OK)
        st = kdi_param_check_real(&kdi_ema_params, s, ema->err, fn, value);
    if (st == KD_OK)
        ema->decay = value; /* DECAY is the only real parameter */
    return st;
}

kd_status kd_ema_set_int(kd_ema *ema, kd_ema_param param, int64_t value)
{
    static const char fn[] = "kd_ema_set_int";
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(ema->err);
    const kdi_param_spec *s;
    kd_status st = kdi_param_check(&kdi_ema_params, ema->err, fn, param, KDI_PT_INT, 1, &s);
    if (st == KD_OK)
        st = kdi_param_check_int(&kdi_ema_params, s, ema->err, fn, value);
    if (st != KD_OK)
        return st;
    if (param == KD_EMA_PARAM_WARMUP)
        ema->warmup = (int32_t)value;
    else
        ema->threads = (int32_t)value;
    return KD_OK;
}

kd_status kd_ema_get_float(const kd_ema *ema, kd_ema_param param, double *value)
{
    static const char fn[] = "kd_ema_get_float";
    if (!ema)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(ema->err);
    kdi_clear_error(err);
    const kdi_param_spec *s;
    kd_status st = kdi_param_check(&kdi_ema_params, err, fn, param, KDI_PT_REAL, 0, &s);
    if (st != KD_OK)
        return st;
    if (!value)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s: value is NULL", fn);
    *value = ema->decay;
    return KD_OK;
}

kd_status kd_ema_get_int(const kd_ema *ema, kd_ema_param param, int64_t *value)
{
    static const char fn[] = "kd_ema_get_int";
    if (!ema)
        return KD_ERR_NULL_POINTER;
    char *err = kdi_err_of(ema->err);
    kdi_clear_error(err);
    const kdi_param_spec *s;
    kd_status st = kdi_param_check(&kdi_ema_params, err, fn, param, KDI_PT_INT, 0, &s);
    if (st != KD_OK)
        return st;
    if (!value)
        return kdi_fail(err, KD_ERR_NULL_POINTER, "%s: value is NULL", fn);
    *value = param == KD_EMA_PARAM_WARMUP ? ema->warmup : ema->threads;
    return KD_OK;
}

/* ---- update and access ---------------------------------------------------- */

kd_status kd_ema_update(kd_ema *ema, const float *const *student_arrays)
{
    return kdi_ema_apply(ema, "kd_ema_update", "student_arrays", KDI_EMA_OP_UPDATE, student_arrays,
                         NULL, 0);
}

kd_status kd_ema_update_flat(kd_ema *ema, const float *student)
{
    return kdi_ema_apply(ema, "kd_ema_update_flat", "student", KDI_EMA_OP_UPDATE, NULL, student, 1);
}

kd_status kd_ema_copy_to(kd_ema *ema, float *const *student_arrays)
{
    return kdi_ema_apply(ema, "kd_ema_copy_to", "student_arrays", KDI_EMA_OP_COPY_TO,
                         (const float *const *)student_arrays, NULL, 0);
}

kd_status kd_ema_copy_to_flat(kd_ema *ema, float *student)
{
    return kdi_ema_apply(ema, "kd_ema_copy_to_flat", "student", KDI_EMA_OP_COPY_TO, NULL, student,
                         1);
}

kd_status kd_ema_swap(kd_ema *ema, float *const *student_arrays)
{
    return kdi_ema_apply(ema, "kd_ema_swap", "student_arrays", KDI_EMA_OP_SWAP,
                         (const float *const *)student_arrays, NULL, 0);
}

kd_status kd_ema_swap_flat(kd_ema *ema, float *student)
{
    return kdi_ema_apply(ema, "kd_ema_swap_flat", "student", KDI_EMA_OP_SWAP, NULL, student, 1);
}

kd_status kd_ema_reset(kd_ema *ema, const float *const *student_arrays)
{
    return kdi_ema_apply(ema, "kd_ema_reset", "student_arrays", KDI_EMA_OP_RESET, student_arrays,
                         NULL, 0);
}

kd_status kd_ema_reset_flat(kd_ema *ema, const float *student)
{
    return kdi_ema_apply(ema, "kd_ema_reset_flat", "student", KDI_EMA_OP_RESET, NULL, student, 1);
}

kd_status kd_ema_step(const kd_ema *ema, int64_t *step)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(kdi_err_of(ema->err));
    if (!step)
        return kdi_fail(kdi_err_of(ema->err), KD_ERR_NULL_POINTER, "kd_ema_step: step is NULL");
    *step = ema->step;
    return KD_OK;
}

kd_status kd_ema_next_decay(const kd_ema *ema, double *decay)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(kdi_err_of(ema->err));
    if (!decay)
        return kdi_fail(kdi_err_of(ema->err), KD_ERR_NULL_POINTER,
                        "kd_ema_next_decay: decay is NULL");
    *decay = kdi_ema_decay_at(ema->decay, ema->warmup, ema->step);
    return KD_OK;
}

kd_status kd_ema_shape(const kd_ema *ema, int32_t *num_arrays, int64_t *total_length)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(kdi_err_of(ema->err));
    if (!num_arrays && !total_length)
        return kdi_fail(kdi_err_of(ema->err), KD_ERR_NULL_POINTER,
                        "kd_ema_shape: num_arrays and total_length are both NULL");
    if (num_arrays)
        *num_arrays = ema->num_arrays;
    if (total_length)
        *total_length = ema->total;
    return KD_OK;
}

kd_status kd_ema_teacher(const kd_ema *ema, int32_t index, const float **data, int64_t *length)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(kdi_err_of(ema->err));
    if (!data)
        return kdi_fail(kdi_err_of(ema->err), KD_ERR_NULL_POINTER, "kd_ema_teacher: data is NULL");
    if (index < 0 || index >= ema->num_arrays)
        return kdi_fail(kdi_err_of(ema->err), KD_ERR_INVALID_ARGUMENT,
                        "kd_ema_teacher: index = %d is outside [0, %d)", (int)index,
                        (int)ema->num_arrays);
    *data = ema->teacher + ema->offsets[index];
    if (length)
        *length = ema->offsets[index + 1] - ema->offsets[index];
    return KD_OK;
}

kd_status kd_ema_teacher_flat(const kd_ema *ema, const float **data, int64_t *length)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(kdi_err_of(ema->err));
    if (!data)
        return kdi_fail(kdi_err_of(ema->err), KD_ERR_NULL_POINTER,
                        "kd_ema_teacher_flat: data is NULL");
    *data = ema->teacher;
    if (length)
        *length = ema->total;
    return KD_OK;
}

const char *kd_ema_last_error(const kd_ema *ema) { return ema ? ema->err : kdi_ema_create_err; }

/* ---- state file ----------------------------------------------------------- */
/*
 * Meta section (little-endian, K = number of arrays):
 *    0  4  K                         u32
 *    4  4  warm-up schedule          u32
 *    8  8  step                      u64 (<= INT64_MAX)
 *   16  8  decay                     f64 (format version 2)
 *   16  4  decay                     f32, then a reserved u32 = 0 (version 1)
 *   24 8K  lengths                   u64 each
 * 24+8K 4K kinds                     u32 each
 * Data section: the teacher, sum(lengths) f32 values in array order.
 */

kd_status kd_ema_save(kd_ema *ema, const char *path)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(ema->err);
    if (!path)
        return kdi_fail(ema->err, KD_ERR_NULL_POINTER, "kd_ema_save: path is NULL");
    const int32_t k = ema->num_arrays;
    size_t msize = KDI_EMA_META_FIXED + (size_t)k * 12u;
    unsigned char *meta = malloc(msize);
    if (!meta)
        return kdi_fail(ema->err, KD_ERR_OUT_OF_MEMORY, "kd_ema_save: out of memory (%zu bytes)",
                        msize);
    kdi_le_put_u32(meta + 0, (uint32_t)k);
    kdi_le_put_u32(meta + 4, (uint32_t)ema->warmup);
    kdi_le_put_u64(meta + 8, (uint64_t)ema->step);
    kdi_le_put_f64(meta + 16, ema->decay);
    for (int32_t i = 0; i < k; i++) {
        kdi_le_put_u64(meta + KDI_EMA_META_FIXED + 8u * (size_t)i,
                       (uint64_t)(ema->offsets[i + 1] - ema->offsets[i]));
        kdi_le_put_u32(meta + KDI_EMA_META_FIXED + 8u * (size_t)k + 4u * (size_t)i,
                       (uint32_t)ema->kinds[i]);
    }
    kdi_statefile_chunk mchunk = {meta, msize, 1};
    kdi_statefile_chunk dchunk = {ema->teacher, (uint64_t)ema->total * sizeof(float), 4};
    char msg[KDI_ERROR_SIZE];
    kd_status st = kdi_statefile_write(path, kdi_ema_magic, KDI_EMA_FORMAT_VERSION, &mchunk, 1,
                                       &dchunk, 1, msg);
    free(meta);
    if (st != KD_OK)
        return kdi_fail(ema->err, st, "kd_ema_save: %s", msg);
    return KD_OK;
}

/* The decay of a meta section of either version, NaN when version 1's
 * reserved word is not 0. */
static double kdi_ema_meta_decay(const kdi_statefile_reader *r)
{
    const unsigned char *m = r->meta + 16;
    if (r->version >= 2)
        return kdi_le_get_f64(m);
    return kdi_le_get_u32(m + 4) == 0 ? (double)kdi_le_get_f32(m) : NAN;
}

/* Validate a meta section against the handle.  Structural problems are
 * KD_ERR_CORRUPT (the checksum passed, so the writer was not kdlib's), a
 * different model is KD_ERR_MISMATCH. */
static kd_status kdi_ema_check_meta(const void *handle, const kdi_statefile_reader *r, char *msg)
{
    const kd_ema *h = handle;
    const char *path = r->path;
    const unsigned char *m = r->meta;
    if (r->meta_size < KDI_EMA_META_FIXED)
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': meta section of %llu bytes is too short", path,
                        (unsigned long long)r->meta_size);
    uint32_t k = kdi_le_get_u32(m);
    if (r->meta_size != KDI_EMA_META_FIXED + 12u * (uint64_t)k)
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': meta section of %llu bytes for %u arrays", path,
                        (unsigned long long)r->meta_size, (unsigned)k);
    uint32_t warmup = kdi_le_get_u32(m + 4);
    uint64_t step = kdi_le_get_u64(m + 8);
    double decay = kdi_ema_meta_decay(r);
    if (warmup > KD_EMA_WARMUP_TF || step > (uint64_t)INT64_MAX || !(decay >= 0.0 && decay <= 1.0))
        return kdi_fail(msg, KD_ERR_CORRUPT,
                        "'%s': invalid values (warm-up %u, step %llu, decay %g)", path,
                        (unsigned)warmup, (unsigned long long)step, decay);
    uint64_t total = 0;
    for (uint32_t i = 0; i < k; i++) {
        uint64_t len = kdi_le_get_u64(m + KDI_EMA_META_FIXED + 8u * (uint64_t)i);
        uint32_t kind = kdi_le_get_u32(m + KDI_EMA_META_FIXED + 8u * (uint64_t)k + 4u * i);
        if (kind != KD_EMA_AVERAGE && kind != KD_EMA_COPY)
            return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': array %u has unknown kind %u", path,
                            (unsigned)i, (unsigned)kind);
        if (len > (uint64_t)INT64_MAX / 8 - total)
            return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': array %u has impossible length %llu", path,
                            (unsigned)i, (unsigned long long)len);
        total += len;
    }
    if (r->data_size != total * sizeof(float))
        return kdi_fail(msg, KD_ERR_CORRUPT, "'%s': data section of %llu bytes for %llu floats",
                        path, (unsigned long long)r->data_size, (unsigned long long)total);
    if (k != (uint32_t)h->num_arrays)
        return kdi_fail(msg, KD_ERR_MISMATCH, "'%s' holds %u arrays, the handle has %d", path,
                        (unsigned)k, (int)h->num_arrays);
    for (uint32_t i = 0; i < k; i++) {
        uint64_t len = kdi_le_get_u64(m + KDI_EMA_META_FIXED + 8u * (uint64_t)i);
        int64_t mine = h->offsets[i + 1] - h->offsets[i];
        if (len != (uint64_t)mine)
            return kdi_fail(msg, KD_ERR_MISMATCH,
                            "'%s': array %u has length %llu in the file, %lld in the handle", path,
                            (unsigned)i, (unsigned long long)len, (long long)mine);
    }
    for (uint32_t i = 0; i < k; i++) {
        uint32_t kind = kdi_le_get_u32(m + KDI_EMA_META_FIXED + 8u * (uint64_t)k + 4u * i);
        if (kind != (uint32_t)h->kinds[i])
            return kdi_fail(msg, KD_ERR_MISMATCH,
                            "'%s': array %u has kind %u in the file, %d in the handle", path,
                            (unsigned)i, (unsigned)kind, (int)h->kinds[i]);
    }
    return KD_OK;
}

static const kdi_statefile_kind kdi_ema_file = {kdi_ema_magic, KDI_EMA_FORMAT_VERSION,
                                                kdi_ema_check_meta};

kd_status kd_ema_load(kd_ema *ema, const char *path)
{
    if (!ema)
        return KD_ERR_NULL_POINTER;
    kdi_clear_error(ema->err);
    if (!path)
        return kdi_fail(ema->err, KD_ERR_NULL_POINTER, "kd_ema_load: path is NULL");
    char msg[KDI_ERROR_SIZE];
    /* Read into scratch first: the handle changes only once every byte is verified. */
    float *scratch = malloc(ema->total > 0 ? (size_t)ema->total * sizeof(float) : 1);
    if (!scratch)
        return kdi_fail(ema->err, KD_ERR_OUT_OF_MEMORY,
                        "kd_ema_load: out of memory for %lld floats", (long long)ema->total);
    kdi_statefile_reader r;
    const uint64_t own_meta = KDI_EMA_META_FIXED + 12u * (uint64_t)ema->num_arrays;
    kd_status st = kdi_statefile_load(&r, &kdi_ema_file, ema, path, own_meta, scratch,
                                      (uint64_t)ema->total * sizeof(float), 4, msg);
    if (st == KD_OK) {
        if (ema->total > 0)
            memcpy(ema->teacher, scratch, (size_t)ema->total * sizeof(float));
        ema->warmup = (int32_t)kdi_le_get_u32(r.meta + 4);
        ema->step = (int64_t)kdi_le_get_u64(r.meta + 8);
        ema->decay = kdi_ema_meta_decay(&r);
        kdi_statefile_close(&r);
    }
    free(scratch);
    if (st != KD_OK)
        return kdi_fail(ema->err, st, "kd_ema_load: %s", msg);
    return KD_OK;
}
