/*
 * error.c - names and messages for error codes, generated from the one
 * table in mproc/common.h.
 */
#define _GNU_SOURCE
#include "base.h"

#include <string.h>

const char *mp_strerror(int code)
{
    switch (code) {
#define MP__ERRNO_MSG(name, val, msg) \
    case (val):                       \
        return msg;
        MP_ERRNO_MAP(MP__ERRNO_MSG)
#undef MP__ERRNO_MSG
    default:
        break;
    }
    if (code >= 0)
        return "success";
    if (code > -4000) {
        const char *s = mp__errno_text(-code);
        if (s)
            return s;
    }
    return "unknown error";
}

const char *mp_err_name(int code)
{
    switch (code) {
#define MP__ERRNO_NAME(name, val, msg) \
    case (val):                        \
        return "MP_" #name;
        MP_ERRNO_MAP(MP__ERRNO_NAME)
#undef MP__ERRNO_NAME
    default:
        break;
    }
    if (code >= 0)
        return "OK";
    if (code > -4000) {
        const char *s = mp__errno_name(-code);
        if (s)
            return s;
    }
    return "MP_EUNKNOWN";
}

const char *mp_version_string(void)
{
#define MP__STR2(x) #x
#define MP__STR(x)  MP__STR2(x)
    return MP__STR(MP_VERSION_MAJOR) "." MP__STR(MP_VERSION_MINOR) "." MP__STR(MP_VERSION_PATCH);
#undef MP__STR
#undef MP__STR2
}
