/* DNS messages (dns.h): RFC 1035 §4.1 framing, bounds checked at every step. */
#include "dns/dns.h"

#include <stdbool.h>
#include <string.h>

static unsigned u16(const uint8_t *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

static bool label_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int dns_question(const uint8_t *p, size_t len, char *name, size_t size)
{
    if (len < DNS_HEADER_LEN || u16(p + 4) != 1 || size == 0)
        return -1;
    size_t off = DNS_HEADER_LEN, out = 0;
    for (;;) {
        if (off >= len)
            return -1;
        unsigned l = p[off++];
        if (l == 0)
            break;
        /* > 63 is a compression pointer or reserved: resolvers do not compress a question. */
        if (l > 63 || off + l > len || out + l + 1 >= size || out + l + 1 > DNS_NAME_MAX + 1)
            return -1;
        if (out)
            name[out++] = '.';
        for (unsigned i = 0; i < l; i++) {
            uint8_t c = p[off + i];
            if (!label_char(c))
                return -1;
            name[out++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        off += l;
    }
    name[out] = 0;
    if (off + 4 > len)
        return -1;
    return (int)(off + 4);
}

/* Skips a possibly compressed name; returns the offset after it or -1. */
static int skip_name(const uint8_t *p, size_t len, size_t off)
{
    for (;;) {
        if (off >= len)
            return -1;
        unsigned l = p[off];
        if ((l & 0xc0) == 0xc0)
            return off + 2 <= len ? (int)(off + 2) : -1;
        if (l > 63)
            return -1;
        off += 1 + l;
        if (l == 0)
            return (int)off;
    }
}

size_t dns_answer_a(const uint8_t *p, size_t len, struct dns_a *ret, size_t max)
{
    if (len < DNS_HEADER_LEN)
        return 0;
    unsigned qd = u16(p + 4), an = u16(p + 6);
    int off = DNS_HEADER_LEN;
    size_t n = 0;
    for (unsigned i = 0; i < qd && off >= 0; i++) {
        off = skip_name(p, len, (size_t)off);
        off = off >= 0 && (size_t)off + 4 <= len ? off + 4 : -1;
    }
    for (unsigned i = 0; i < an && off >= 0 && n < max; i++) {
        off = skip_name(p, len, (size_t)off);
        if (off < 0 || (size_t)off + 10 > len)
            break;
        const uint8_t *rr = p + off;
        unsigned type = u16(rr), klass = u16(rr + 2), rdlen = u16(rr + 8);
        uint32_t ttl = (uint32_t)rr[4] << 24 | (uint32_t)rr[5] << 16 | (uint32_t)rr[6] << 8 | rr[7];
        off += 10;
        if ((size_t)off + rdlen > len)
            break;
        if (type == 1 && klass == 1 && rdlen == 4) {
            size_t k = 0;
            while (k < n && memcmp(ret[k].addr, p + off, 4) != 0)
                k++;
            if (k == n) {
                memcpy(ret[n].addr, p + off, 4);
                ret[n++].ttl = ttl;
            } else if (ttl > ret[k].ttl) {
                ret[k].ttl = ttl;
            }
        }
        off += (int)rdlen;
    }
    return n;
}

void dns_make_nxdomain(uint8_t *q, size_t qlen)
{
    if (qlen < DNS_HEADER_LEN)
        return;
    q[2] = (uint8_t)(0x80 | (q[2] & 0x79)); /* QR; opcode and RD kept */
    q[3] = 0x80 | 3;                        /* RA, NXDOMAIN */
    memset(q + 6, 0, 6);                    /* no answer, authority or additional records */
}
