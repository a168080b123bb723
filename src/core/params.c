/* Parameter tables of the stateful handles (params.h). */
#include "core/params.h"

#include "core/error.h"

#include <math.h>

const kdi_param_spec *kdi_param_find(const kdi_param_table *t, int32_t key)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->specs[i].key == key)
            return &t->specs[i];
    return NULL;
}

kd_status kdi_param_check(const kdi_param_table *t, char *err, const char *fn, int32_t key,
                          int type, int set, const kdi_param_spec **spec)
{
    const kdi_param_spec *s = kdi_param_find(t, key);
    if (!s)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: param = %d is not a %s* parameter", fn,
                        (int)key, t->prefix);
    if (s->type != type)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: %s%s is %s parameter (%s)", fn, t->prefix,
                        s->name, s->type == KDI_PT_INT ? "an int" : "a real", t->setters);
    if (set && !s->settable)
        return kdi_fail(err, KD_ERR_UNSUPPORTED, "%s: %s%s is read only", fn, t->prefix, s->name);
    *spec = s;
    return KD_OK;
}

kd_status kdi_param_check_real(const kdi_param_table *t, const kdi_param_spec *s, char *err,
                               const char *fn, double value)
{
    if (value >= s->lower && value <= s->upper) /* also refuses NaN */
        return KD_OK;
    return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: %s%s = %.9g is outside [%g, %g]", fn,
                    t->prefix, s->name, value, s->lower, s->upper);
}

kd_status kdi_param_check_int(const kdi_param_table *t, const kdi_param_spec *s, char *err,
                              const char *fn, int64_t value)
{
    if ((double)value >= s->lower && (double)value <= s->upper)
        return KD_OK;
    return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "%s: %s%s = %lld is outside [%.0f, %.0f]", fn,
                    t->prefix, s->name, (long long)value, s->lower, s->upper);
}

kd_status kdi_param_bounds(const kdi_param_table *t, int32_t key, double *lower, double *upper)
{
    if (!lower || !upper)
        return KD_ERR_NULL_POINTER;
    const kdi_param_spec *s = kdi_param_find(t, key);
    if (!s || !s->settable)
        return KD_ERR_UNSUPPORTED;
    *lower = s->lower;
    *upper = s->upper;
    return KD_OK;
}
