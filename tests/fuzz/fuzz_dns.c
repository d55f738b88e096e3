/* libFuzzer harness for src/dns: the parsers sbxd runs on a sandbox's DNS queries and the upstream's
 * answers. Checks, beyond memory safety: a question's name is NUL-terminated within its buffer, holds
 * only what a policy can match on ([a-z0-9_-] and dots, never a leading, trailing or double dot), and
 * the offset it returns lies within the packet; answers give distinct addresses, at most the maximum. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[DNS_NAME_MAX + 2];
    memset(name, 'x', sizeof(name));
    int end = dns_question(data, size, name, sizeof(name));
    if (end >= 0) {
        if ((size_t)end > size || end < DNS_HEADER_LEN + 5)
            abort();
        size_t n = strnlen(name, sizeof(name));
        if (n == sizeof(name) || n > DNS_NAME_MAX)
            abort();
        for (size_t i = 0; i < n; i++) {
            char c = name[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                      (c == '.' && i > 0 && i + 1 < n && name[i - 1] != '.');
            if (!ok)
                abort();
        }
        uint8_t *copy = malloc((size_t)end);
        memcpy(copy, data, (size_t)end);
        dns_make_nxdomain(copy, (size_t)end);
        if ((copy[3] & 15) != 3 || copy[6] || copy[7])
            abort();
        free(copy);
    }
    struct dns_a a[8];
    size_t k = dns_answer_a(data, size, a, 8);
    if (k > 8)
        abort();
    for (size_t i = 0; i < k; i++)
        for (size_t j = i + 1; j < k; j++)
            if (memcmp(a[i].addr, a[j].addr, 4) == 0)
                abort();
    return 0;
}
