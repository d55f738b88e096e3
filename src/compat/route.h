/* Route patterns shared by the compatibility layers: literal text and "*", where each "*" stands for one
 * path segment. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Whether path matches pattern. The i-th "*" matches one segment of 1..max bytes, copied into params[i]
 * (max + 1 bytes each; a pattern with more "*" than n_params never matches). With trailing_slash a single
 * "/" after the whole pattern is accepted too ("/boxes/" for "/boxes"). */
bool compat_route_match(const char *pattern, const char *path, size_t max, bool trailing_slash,
                        char *const params[], size_t n_params);
