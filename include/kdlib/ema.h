/*
 * kdlib EMA teacher: an exponential moving average of the student's parameters
 * (Mean Teacher, self-ensembling, EMA distillation), with a crash-safe state file.
 *
 * Usage (see docs/ema.md for a full training loop):
 *
 *     kd_ema *ema;
 *     kd_ema_create(&ema, num_arrays, student_arrays, lengths, NULL);
 *     kd_ema_set_float(ema, KD_EMA_PARAM_DECAY, 0.999f);
 *     kd_ema_set_int(ema, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER);
 *     for (each step) {
 *         optimizer_step(student_arrays);
 *         kd_ema_update(ema, student_arrays);
 *     }
 *     kd_ema_save(ema, "teacher.kdema");
 *     kd_ema_destroy(ema);
 *
 * The handle owns the teacher: one float32 copy of every registered array,
 * stored contiguously in registration order.  The student arrays stay the
 * caller's; they are read (update, reset), or written (copy_to, swap) only
 * during the call that receives them, and are never retained.
 *
 * Update rule, for every array marked KD_EMA_AVERAGE:
 *
 *     teacher = a_t * teacher + (1 - a_t) * student       (element-wise, float32)
 *
 * with a_t the decay of the update number t (t = number of earlier updates,
 * 0 at the first one):
 *
 *     KD_EMA_WARMUP_NONE          a_t = a
 *     KD_EMA_WARMUP_MEAN_TEACHER  a_t = min(a, 1 - 1/(t + 1))    (0 at t = 0: the first update copies)
 *     KD_EMA_WARMUP_TF            a_t = min(a, (1 + t)/(10 + t))  (TensorFlow's ExponentialMovingAverage
 *                                                                 with num_updates = t)
 *
 * a_t is computed in double precision and rounded once to float32 (a_t and
 * 1 - a_t separately).  An update with a_t = 0 is an exact copy of the
 * student and one with a_t = 1 leaves the teacher as it is (bit for bit, also
 * for -0.0, Inf and NaN).  Arrays marked KD_EMA_COPY (BatchNorm running
 * statistics, step counters kept as floats, ...) are copied verbatim.
 *
 * Errors: every function returns a kd_status (see core.h).  On failure the
 * handle's state (teacher values, step, parameters) and every caller buffer and
 * output pointer are left exactly as they were; only the message returned by
 * kd_ema_last_error() changes.  Each successful call clears that message.
 *
 * Thread safety: a handle must be used by one thread at a time (this includes
 * the read-only functions, which update the error message).  Distinct handles
 * are independent.  Inside kd_ema_update / copy_to / swap / reset the handle
 * itself may use KD_EMA_PARAM_THREADS OpenMP threads.
 *
 * Pointer stability: the teacher storage is allocated by kd_ema_create and
 * never moves; pointers from kd_ema_teacher() stay valid (and see every later
 * update, swap, reset and load) until kd_ema_destroy().
 */
#ifndef KDLIB_EMA_H
#define KDLIB_EMA_H

#include <stdint.h>

#include "kdlib/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle. */
typedef struct kd_ema kd_ema;

/* Kind of a registered array (kinds argument of kd_ema_create).  Pinned values. */
enum {
    KD_EMA_AVERAGE = 0, /* exponential moving average (the default) */
    KD_EMA_COPY = 1     /* copied verbatim at every update (BatchNorm running mean/var) */
};

/* Parameter keys of kd_ema_set_float / kd_ema_set_int.  Pinned values; new
 * parameters get new numbers.
 *
 * KD_EMA_PARAM_DECAY    real, a in [0, 1], default 0.999.  0 makes the teacher
 *                       follow the student; 1 freezes it.  Kept in double; the
 *                       update applies a_t and 1 - a_t rounded to float.
 * KD_EMA_PARAM_WARMUP   int, one of KD_EMA_WARMUP_*, default KD_EMA_WARMUP_NONE.
 * KD_EMA_PARAM_THREADS  int, >= 0, default 1; 0 = all cores (omp_get_num_procs()).
 *                       The result does not depend on the thread count.
 */
typedef int32_t kd_ema_param;
enum { KD_EMA_PARAM_DECAY = 1, KD_EMA_PARAM_WARMUP = 2, KD_EMA_PARAM_THREADS = 3 };

/* Warm-up schedules (values of KD_EMA_PARAM_WARMUP).  Pinned values. */
enum {
    KD_EMA_WARMUP_NONE = 0,
    KD_EMA_WARMUP_MEAN_TEACHER = 1, /* a_t = min(a, 1 - 1/(t + 1)) */
    KD_EMA_WARMUP_TF = 2            /* a_t = min(a, (1 + t)/(10 + t)) */
};

#define KD_EMA_DEFAULT_DECAY 0.999
#define KD_EMA_MAX_THREADS 4096

/* ---- life cycle ---------------------------------------------------------- */

/* kd_ema_create():
 * Create a teacher over num_arrays student arrays; the teacher starts as an
 * exact copy of them and the step counter at 0.
 *   out         receives the new handle (untouched on failure).
 *   num_arrays  >= 1.
 *   arrays      num_arrays pointers; arrays[i] holds lengths[i] floats.
 *               arrays[i] may be NULL only when lengths[i] == 0.
 *   lengths     num_arrays element counts, each >= 0.
 *   kinds       NULL (all KD_EMA_AVERAGE) or num_arrays values KD_EMA_AVERAGE /
 *               KD_EMA_COPY.
 * Returns KD_OK; KD_ERR_NULL_POINTER (out, arrays, lengths or an arrays[i]
 * with lengths[i] > 0 is NULL); KD_ERR_INVALID_ARGUMENT (num_arrays < 1, an
 * unknown kinds[i]); KD_ERR_SHAPE (negative lengths[i], total size overflows);
 * KD_ERR_OUT_OF_MEMORY.  As there is no handle on failure, the message goes
 * to kd_ema_last_error(NULL) (per thread). */
KD_API kd_status kd_ema_create(kd_ema **out, int32_t num_arrays, const float *const *arrays,
                               const int64_t *lengths, const int32_t *kinds);

/* kd_ema_create_flat():
 * Convenience: one averaged array of `length` floats (a flattened parameter
 * vector).  Same as kd_ema_create(out, 1, &params, &length, NULL).
 * Returns as kd_ema_create. */
KD_API kd_status kd_ema_create_flat(kd_ema **out, const float *params, int64_t length);

/* kd_ema_destroy():
 * Free the handle and its teacher storage.  Accepts NULL (no-op). */
KD_API void kd_ema_destroy(kd_ema *ema);

/* ---- parameters ---------------------------------------------------------- */

/* kd_ema_set_float() / kd_ema_set_int():
 * Set a parameter, validated now: an invalid value is refused and the old one
 * kept.  Takes effect at the next update.  Real parameters (double): DECAY.
 * Int parameters: WARMUP, THREADS.
 * Returns KD_OK; KD_ERR_NULL_POINTER (ema); KD_ERR_UNSUPPORTED (unknown key,
 * or a key of the other type); KD_ERR_INVALID_ARGUMENT (value out of range or
 * NaN; the message names the parameter and the value). */
KD_API kd_status kd_ema_set_float(kd_ema *ema, kd_ema_param param, double value);
KD_API kd_status kd_ema_set_int(kd_ema *ema, kd_ema_param param, int64_t value);

/* kd_ema_get_float() / kd_ema_get_int():
 * Read a parameter into *value.
 * Returns KD_OK; KD_ERR_NULL_POINTER (ema, value); KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_ema_get_float(const kd_ema *ema, kd_ema_param param, double *value);
KD_API kd_status kd_ema_get_int(const kd_ema *ema, kd_ema_param param, int64_t *value);

/* kd_ema_param_bounds():
 * Inclusive bounds of a parameter (for int parameters: integral values in
 * double).  Pure; any thread.
 * Returns KD_OK; KD_ERR_NULL_POINTER (lower, upper); KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_ema_param_bounds(kd_ema_param param, double *lower, double *upper);

/* ---- update -------------------------------------------------------------- */

/* kd_ema_update():
 * One EMA step from the student's current values, then step += 1.
 *   student_arrays  num_arrays pointers with the lengths given at create
 *                   (NULL allowed for empty arrays).  They must not overlap the
 *                   teacher storage (KD_ERR_ALIASING).
 * No allocation; memory-bound, vectorised and split over KD_EMA_PARAM_THREADS
 * threads (small states use fewer).  Results are bit-identical for any thread
 * count.  Non-finite student values propagate into the teacher unchecked.
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_ALIASING; KD_ERR_STATE (the step
 * counter is at INT64_MAX). */
KD_API kd_status kd_ema_update(kd_ema *ema, const float *const *student_arrays);

/* kd_ema_update_flat():
 * Same, with the student given as one buffer holding all registered arrays
 * back to back in registration order (kd_ema_shape()'s total_length floats).
 * Works on any handle, however it was created. */
KD_API kd_status kd_ema_update_flat(kd_ema *ema, const float *student);

/* kd_ema_step():
 * *step = number of updates since create / reset (restored by load).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_ema_step(const kd_ema *ema, int64_t *step);

/* kd_ema_next_decay():
 * *decay = a_t that the next kd_ema_update will use (after warm-up), in
 * double (the update multiplies by (float)a_t and (float)(1 - a_t)).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_ema_next_decay(const kd_ema *ema, double *decay);

/* ---- access -------------------------------------------------------------- */

/* kd_ema_shape():
 * *num_arrays = number of registered arrays, *total_length = sum of their
 * lengths.  Either output may be NULL (skipped), not both.
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_ema_shape(const kd_ema *ema, int32_t *num_arrays, int64_t *total_length);

/* kd_ema_teacher():
 * Read access to teacher array `index` (0 <= index < num_arrays): *data
 * points into the handle's storage (stable until destroy, see above; do not
 * write through it), *length = its length.  length may be NULL.
 * Returns KD_OK; KD_ERR_NULL_POINTER (ema, data); KD_ERR_INVALID_ARGUMENT
 * (index out of range). */
KD_API kd_status kd_ema_teacher(const kd_ema *ema, int32_t index, const float **data,
                                int64_t *length);

/* kd_ema_teacher_flat():
 * The whole teacher as one buffer (arrays back to back in registration
 * order), *length = total length (length may be NULL).
 * Returns KD_OK; KD_ERR_NULL_POINTER. */
KD_API kd_status kd_ema_teacher_flat(const kd_ema *ema, const float **data, int64_t *length);

/* kd_ema_copy_to():
 * Copy the teacher into the student arrays (all kinds), e.g. to evaluate or
 * export the averaged model.  The handle is not changed.
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_ALIASING (a student array
 * overlaps the teacher storage). */
KD_API kd_status kd_ema_copy_to(kd_ema *ema, float *const *student_arrays);
KD_API kd_status kd_ema_copy_to_flat(kd_ema *ema, float *student);

/* kd_ema_swap():
 * Exchange teacher and student values (all kinds).  Calling it twice
 * restores both.  Typical use: swap, evaluate the student model (now holding
 * the teacher weights), swap back.  The step counter is not changed.
 * Student arrays must not overlap the teacher (checked) or each other (not
 * checked: overlapping student arrays give unspecified values).
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_ALIASING. */
KD_API kd_status kd_ema_swap(kd_ema *ema, float *const *student_arrays);
KD_API kd_status kd_ema_swap_flat(kd_ema *ema, float *student);

/* kd_ema_reset():
 * Re-initialise the teacher as an exact copy of the given arrays and set the
 * step counter to 0.  Parameters (decay, warm-up, threads) are kept.
 * Returns KD_OK; KD_ERR_NULL_POINTER; KD_ERR_ALIASING. */
KD_API kd_status kd_ema_reset(kd_ema *ema, const float *const *student_arrays);
KD_API kd_status kd_ema_reset_flat(kd_ema *ema, const float *student);

/* ---- state file ---------------------------------------------------------- */

/* kd_ema_save():
 * Write the whole state (shape, kinds, step, decay, warm-up, teacher values)
 * to `path` in the versioned, CRC-32C-checksummed little-endian format of
 * docs/ema.md (format version 2; version 1 files of kdlib 0.x are still
 * read).  The file is written as "<path>.tmp-XXXXXX" in the same
 * directory, fsync'ed, renamed over `path`, and the directory fsync'ed: if the
 * process or machine dies during the save, `path` holds either the previous
 * file or the new one, complete (a stale temporary file may remain).  The
 * thread count is not saved.  The handle is not changed.
 * Returns KD_OK; KD_ERR_NULL_POINTER (ema, path); KD_ERR_IO (the message has
 * the path and the system's reason); KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_ema_save(kd_ema *ema, const char *path);

/* kd_ema_load():
 * Restore a state written by kd_ema_save into a handle created over the same
 * model shape: teacher values, step counter, decay and warm-up are replaced
 * (the thread count is kept).  The whole file, checksums included, is
 * validated before the handle is touched; on any failure nothing changes.
 * Needs temporary memory of the teacher's size.
 * Returns KD_OK; KD_ERR_NULL_POINTER (ema, path); KD_ERR_IO (cannot open or
 * read); KD_ERR_VERSION (not an EMA state file, or a format version this
 * library does not know); KD_ERR_CORRUPT (truncated, extended, checksum
 * mismatch, invalid values, or a meta section larger than 16 MiB and than
 * this handle's own, refused before anything is allocated); KD_ERR_MISMATCH (a valid file for a different
 * number of arrays, lengths or kinds: the message names the first
 * difference); KD_ERR_OUT_OF_MEMORY. */
KD_API kd_status kd_ema_load(kd_ema *ema, const char *path);

/* ---- errors -------------------------------------------------------------- */

/* kd_ema_last_error():
 * Message of the last failed call on this handle, naming the function, the
 * argument and the value that failed ("" after a successful call).  Valid
 * until the next call on the handle.  With NULL: the message of the last
 * kd_ema_create / kd_ema_create_flat call of the calling thread ("" if it
 * succeeded).  Never returns NULL. */
KD_API const char *kd_ema_last_error(const kd_ema *ema);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_EMA_H */
