/* Scope-bound cleanup helpers (systemd macro-fundamental.h, crun utils.h). */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                              \
    static inline void func##p(type *p)                                                                      \
    {                                                                                                        \
        if (*p)                                                                                              \
            func(*p);                                                                                        \
    }

static inline void freep(void *p)
{
    free(*(void **)p);
}

static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

static inline void fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

static inline void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)

/* Hand ownership out of a cleanup variable: the variable is reset to its empty value. */
#define TAKE_GENERIC(var, type, nullvalue)                                                                   \
    ({                                                                                                       \
        type *_pvar_ = &(var);                                                                               \
        type _var_ = *_pvar_;                                                                                \
        type _nullvalue_ = nullvalue;                                                                        \
        *_pvar_ = _nullvalue_;                                                                               \
        _var_;                                                                                               \
    })
#define TAKE_PTR(p) TAKE_GENERIC(p, __typeof__(p), NULL)
#define TAKE_FD(fd) TAKE_GENERIC(fd, int, -1)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Retry a blocking call on EINTR. */
#define RETRY_EINTR(expr)                                                                                    \
    ({                                                                                                       \
        __typeof__(expr) _r_;                                                                                \
        do                                                                                                   \
            _r_ = (expr);                                                                                    \
        while (_r_ < 0 && errno == EINTR);                                                                   \
        _r_;                                                                                                 \
    })
