/*
 * kdlib core: export macro, version, status codes.
 *
 * Every kdlib function returns a kd_status (0 = KD_OK) and hands results back
 * through out pointers.  On failure no output and no caller buffer is changed.
 * Handles additionally keep a human-readable message naming the argument and
 * the value that failed (see kd_loss_last_error(), kd_ema_last_error()).
 *
 * Thread safety: the functions in this header are pure and may be called from
 * any thread at any time.
 */
#ifndef KDLIB_CORE_H
#define KDLIB_CORE_H

#include <stdint.h>

#if defined(_WIN32)
#if defined(KD_BUILDING_LIBRARY)
#define KD_API __declspec(dllexport)
#else
#define KD_API
#endif
#elif defined(KD_BUILDING_LIBRARY) && defined(__GNUC__)
#define KD_API __attribute__((visibility("default")))
#else
#define KD_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the headers (KD_VERSION_MAJOR/MINOR/PATCH/NUMBER/STRING), generated
 * from CMakeLists.txt.  Compare with kd_version_number() to check that the
 * library loaded at run time is the one the headers describe. */
#include "kdlib/version.h"

/* Status codes.  The numeric values are pinned: they are never renumbered or
 * reused, new codes get new numbers.  kd_status is a fixed-width integer so
 * that bindings can declare it exactly (int32). */
typedef int32_t kd_status;
enum {
    KD_OK = 0,
    KD_ERR_NULL_POINTER = 1,     /* a required pointer argument is NULL */
    KD_ERR_INVALID_ARGUMENT = 2, /* a value is out of its documented range */
    KD_ERR_SHAPE = 3,            /* sizes or strides are inconsistent (ld < C, N*C overflow, ...) */
    KD_ERR_UNSUPPORTED = 4,      /* parameter or argument role not used by this kind of object */
    KD_ERR_MISSING_INPUT = 5,    /* an input the computation needs was not bound */
    KD_ERR_OUT_OF_MEMORY = 6,    /* allocation failed; nothing was changed */
    KD_ERR_NOT_FINITE = 7,       /* NaN/Inf found while KD_PARAM_CHECK_FINITE is on */
    KD_ERR_ALIASING = 8,         /* an output overlaps an input in an unsupported way */
    KD_ERR_IO = 9,               /* a file could not be opened, read, written or renamed */
    KD_ERR_CORRUPT = 10,         /* a state file is truncated or fails its checksum */
    KD_ERR_VERSION = 11,         /* a state file has an unknown magic or format version */
    KD_ERR_MISMATCH = 12,        /* a state file describes a different shape than the handle */
    KD_ERR_STATE = 13            /* the call is not valid in the object's current state */
};

/* A short constant English description of a status ("invalid argument").
 * Unknown values give "unknown status".  Never returns NULL. */
KD_API const char *kd_status_string(kd_status status);

/* Version of the library that is running: KD_VERSION_NUMBER it was built with,
 * and the same as "MAJOR.MINOR.PATCH". */
KD_API int32_t kd_version_number(void);
KD_API const char *kd_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* KDLIB_CORE_H */
