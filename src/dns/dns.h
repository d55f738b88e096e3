/* The DNS wire format, as much as sbxd's resolver for egress sandboxes needs (daemon/egress.c): the
 * question of a query and the A records of an answer. Pure functions over untrusted bytes (a sandbox's
 * queries, the upstream's answers), fuzzed by tests/fuzz/fuzz_dns.c. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_LEN 12
#define DNS_NAME_MAX 253 /* a name in text form, without the final dot */

/* The single question of a query: its name in lower case without the final dot into name (size bytes,
 * at least DNS_NAME_MAX + 2). Returns the offset after the question, or -1 for anything but one
 * well-formed question whose labels are host-name characters ([A-Za-z0-9_-]): a label holding a dot, a
 * NUL or other bytes would read as another name in text than on the wire, and a policy decided on the
 * text would not be the one the upstream resolver applies. */
int dns_question(const uint8_t *p, size_t len, char *name, size_t size);

/* One distinct A record of an answer and its TTL in seconds (the largest, if repeated). */
struct dns_a {
    uint8_t addr[4];
    uint32_t ttl;
};

/* The distinct A records of an answer's answer section, at most max of them; returns how many. Stops at
 * the first malformed record. */
size_t dns_answer_a(const uint8_t *p, size_t len, struct dns_a *ret, size_t max);

/* Rewrites a query of qlen bytes (qlen = dns_question's return) into its NXDOMAIN answer in place: the
 * header and the question kept, no records. */
void dns_make_nxdomain(uint8_t *q, size_t qlen);
