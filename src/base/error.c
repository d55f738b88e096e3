#include "base/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void vset(sbx_error *err, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int sbx_error_set(sbx_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->http = 0;
    err->kind[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vset(err, fmt, ap);
    va_end(ap);
    return code;
}

int sbx_error_setk(sbx_error *err, int code, const char *kind, int http, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->http = http;
    snprintf(err->kind, sizeof(err->kind), "%s", kind);
    va_list ap;
    va_start(ap, fmt);
    vset(err, fmt, ap);
    va_end(ap);
    return code;
}

int sbx_error_wrap(sbx_error *err, const char *fmt, ...)
{
    if (!err)
        return -EINVAL;
    char prefix[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[sizeof(err->msg)];
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    return err->code;
}

int sbx_error_http_status(const sbx_error *err)
{
    if (err->http)
        return err->http;
    switch (-err->code) {
    case ENOENT:
    case ESRCH:
        return 404;
    case EEXIST:
    case EBUSY:
    case ENOTEMPTY:
        return 409;
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case EXDEV:
    case ERANGE:
        return 400;
    case EACCES:
    case EPERM:
    case EROFS:
        return 403;
    case E2BIG:
    case EMSGSIZE:
    case EFBIG:
        return 413;
    case ENOSPC:
    case EDQUOT:
        return 507;
    case ETIMEDOUT:
        return 504;
    case EAGAIN:
        return 429;
    case ENOSYS:
    case EOPNOTSUPP:
        return 501;
    default:
        return 500;
    }
}

const char *sbx_error_kind(const sbx_error *err)
{
    if (err->kind[0])
        return err->kind;
    switch (sbx_error_http_status(err)) {
    case 400:
        return "invalid_argument";
    case 403:
        return "permission_denied";
    case 404:
        return "not_found";
    case 409:
        return "conflict";
    case 413:
        return "too_large";
    case 429:
        return "resource_exhausted";
    case 501:
        return "unimplemented";
    case 504:
        return "timeout";
    case 507:
        return "no_space";
    default:
        return "internal";
    }
}
