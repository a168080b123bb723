/* Internal: parameter tables of the stateful handles (kd_ema, kd_threshold).
 *
 * A handle family describes its parameters in one table of kdi_param_spec;
 * the entry points look a key up, check the call (known key, right type,
 * settable, inside the bounds, not NaN) and format every message the same
 * way:  "<function>: <PREFIX><NAME> = <value> is outside [<lo>, <hi>]". */
#ifndef KDI_PARAMS_H
#define KDI_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "kdlib/core.h"

enum { KDI_PT_INT = 1, KDI_PT_REAL = 2 };

typedef struct {
    int32_t key;
    const char *name; /* after the prefix: "DECAY" for KD_EMA_PARAM_DECAY */
    uint8_t type;     /* KDI_PT_INT or KDI_PT_REAL */
    uint8_t settable; /* 0: read only */
    double lower;     /* inclusive bounds of a settable parameter */
    double upper;
} kdi_param_spec;

typedef struct {
    const char *prefix;  /* "KD_EMA_PARAM_" */
    const char *setters; /* "kd_ema_set_int / kd_ema_set_float", for the messages */
    const kdi_param_spec *specs;
    size_t count;
} kdi_param_table;

/* The spec of key, or NULL. */
const kdi_param_spec *kdi_param_find(const kdi_param_table *t, int32_t key);

/* Check a get or set of key with the type `type` (KDI_PT_*); on failure write
 * the message to err (KDI_ERROR_SIZE) and return KD_ERR_UNSUPPORTED (unknown
 * key, other type, read-only key for a set).  *spec receives the spec. */
kd_status kdi_param_check(const kdi_param_table *t, char *err, const char *fn, int32_t key,
                          int type, int set, const kdi_param_spec **spec);

/* Bounds checks of a value for a settable spec: KD_ERR_INVALID_ARGUMENT with
 * the message naming the parameter, the value and the bounds. */
kd_status kdi_param_check_real(const kdi_param_table *t, const kdi_param_spec *s, char *err,
                               const char *fn, double value);
kd_status kdi_param_check_int(const kdi_param_table *t, const kdi_param_spec *s, char *err,
                              const char *fn, int64_t value);

/* kd_*_param_bounds(): KD_ERR_NULL_POINTER, KD_ERR_UNSUPPORTED (unknown or
 * read-only key) or KD_OK with the bounds. */
kd_status kdi_param_bounds(const kdi_param_table *t, int32_t key, double *lower, double *upper);

#endif
