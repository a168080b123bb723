#include "kdlib/core.h"

#define KDI_STR2(x) #x
#define KDI_STR(x) KDI_STR2(x)

const char *kd_status_string(kd_status status)
{
    switch (status) {
    case KD_OK:
        return "ok";
    case KD_ERR_NULL_POINTER:
        return "null pointer";
    case KD_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case KD_ERR_SHAPE:
        return "inconsistent shape or stride";
    case KD_ERR_UNSUPPORTED:
        return "not supported by this kind of object";
    case KD_ERR_MISSING_INPUT:
        return "required input not bound";
    case KD_ERR_OUT_OF_MEMORY:
        return "out of memory";
    case KD_ERR_NOT_FINITE:
        return "non-finite value in input";
    case KD_ERR_ALIASING:
        return "output overlaps an input";
    case KD_ERR_IO:
        return "input/output error";
    case KD_ERR_CORRUPT:
        return "corrupt or truncated file";
    case KD_ERR_VERSION:
        return "unknown file format or version";
    case KD_ERR_MISMATCH:
        return "file does not match this object";
    case KD_ERR_STATE:
        return "invalid in the current state";
    default:
        return "unknown status";
    }
}

int32_t kd_version_number(void) { return KD_VERSION_NUMBER; }

const char *kd_version_string(void)
{
    return KDI_STR(KD_VERSION_MAJOR) "." KDI_STR(KD_VERSION_MINOR) "." KDI_STR(KD_VERSION_PATCH);
}
