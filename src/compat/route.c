/* Route patterns of the compatibility layers (route.h). */
#include "compat/route.h"

#include <string.h>

bool compat_route_match(const char *pattern, const char *path, size_t max, bool trailing_slash,
                        char *const params[], size_t n_params)
{
    size_t used = 0;
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n > max || used == n_params)
                return false;
            memcpy(params[used], path, n);
            params[used++][n] = 0;
            path += n;
            pattern++;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    return !*pattern && (!*path || (trailing_slash && strcmp(path, "/") == 0));
}
