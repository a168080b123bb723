#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <omp.h>

kd_status kdi_fail(char *buf, kd_status status, const char *fmt, ...)
{
    if (buf) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, KDI_ERROR_SIZE, fmt, ap);
        va_end(ap);
    }
    return status;
}

void kdi_clear_error(char *buf)
{
    if (buf)
        buf[0] = '\0';
}

int kdi_resolve_threads(int32_t requested)
{
    if (requested > 0)
        return requested;
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
}

int kdi_mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return 0;
    if (a != 0 && b > INT64_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}
