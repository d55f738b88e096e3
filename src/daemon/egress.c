/* Network mode `egress` (egress.h; docs/design/network.md).
 *
 * Addressing: the egress subnet (--egress-subnet, default 10.231.0.0/16) is cut into /30s ("slots");
 * slot s gives the host end base + 4s + 1 and the sandbox base + 4s + 2. Slots are handed out round-robin, so
 * an address freed by a sandbox that stopped is not reused at once (its old veth may take the kernel a moment
 * to remove).
 *
 * Enforcement lives in one nftables table, `inet sbx<hex>` (<hex>: the subnet's top 24 bits, so
 * `inet sbx0ae700` for the default 10.231.0.0/16), owned by sbxd and made through libnftables (no nft(8)
 * process):
 *   - every packet from a sandbox interface ("sbx<hex>*") is looked up by its input interface in the verdict
 *     map `ifaces` and jumps to that sandbox's chain `s<slot>`; an interface not in the map is dropped;
 *   - the chain: spoofed source → drop; deny entries → reject; allow entries that name an always-denied
 *     address specifically → accept; the host's own addresses (fib type local), link-local and metadata
 *     (169.254.0.0/16), the egress subnet (other sandboxes), loopback, multicast → reject; allow CIDRs →
 *     accept; addresses pinned by the DNS path for allowed domains (set `pin<slot>`, with timeouts) →
 *     accept; then the default: reject, or accept for anything but private ranges (RFC 1918, CGNAT,
 *     198.18/15), which need an allow entry or an allowed domain even when the default is allow;
 *   - nothing new may enter a sandbox interface, from the host or anywhere else: replies only;
 *   - IPv6 from sandboxes is dropped (they get no IPv6 address);
 *   - UDP port 53 from a sandbox, to any address, is redirected to sbxd's resolver (below); the resolver's
 *     port is closed to everything else;
 *   - traffic leaving the host is masqueraded.
 * At start the table is rebuilt from the sandboxes that are up, in one transaction with the removal of
 * the old one, so no packet ever sees a half-made policy.
 *
 * DNS: sbxd answers the sandboxes' queries itself. A name a deny entry matches → NXDOMAIN; a name an
 * allow entry matches → forwarded to the upstream resolver, and the A records of the answer are added
 * to the sandbox's pin set for their TTL (at least PIN_MIN_S) before the answer is passed on, so the
 * connection that follows is allowed; any other name → forwarded when the default is allow, NXDOMAIN
 * when it is deny (so a deny-by-default sandbox cannot use DNS as a channel out). */
#include "daemon/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/random.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "dns/dns.h"
#include "files/files.h"
#include "loop/loop.h"

#define DEFAULT_SUBNET "10.231.0.0/16"
#define SUBNET_PREFIX_MIN 16
#define SUBNET_PREFIX_MAX 28
#define SLOT_PREFIX 30
#define SLOTS_MAX (1u << (SLOT_PREFIX - SUBNET_PREFIX_MIN)) /* /30s in the largest subnet */
#define DOMAIN_MAX 253
#define PIN_MIN_S 300
#define PIN_MAX_S 86400
#define DNS_PACKET_MAX 4096
#define DNS_PENDING_MAX 1024
#define DNS_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define REJECT "reject with icmpx type admin-prohibited"

struct dns_pending {
    bool used;
    uint16_t upstream_id, client_id;
    char sandbox[SBX_ID_MAX + 1];
    bool pin;
    struct sockaddr_in client;
    struct in_pktinfo local; /* where the query arrived: the answer leaves from there */
    usec_t deadline;
};

struct egress_state {
    struct daemon *d;
    struct nft_ctx *nft;
    bool table; /* sbxd's table exists */
    /* The egress subnet (--egress-subnet) and the names derived from it, so that two sbxd on one host
     * with different subnets (tests, staging) keep out of each other's way: table `inet sbx<hex>`,
     * host interfaces `sbx<hex><random>`, where <hex> is the subnet's top 24 bits. */
    uint32_t base;
    unsigned prefix, slots; /* slot 0 is never used */
    char table_name[16], if_prefix[10];
    uint8_t slot_map[SLOTS_MAX / 8];
    unsigned next_slot;
    struct sockaddr_in upstream;
    int dns_fd, up_fd; /* the sandboxes' resolver; the socket to the upstream one */
    struct loop_io dns_io, up_io;
    uint16_t dns_port;
    struct dns_pending pending[DNS_PENDING_MAX];
};

/* --- policy ------------------------------------------------------------------------------------- */

static bool label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A domain name in lower case: labels of [a-z0-9-_]{1,63} separated by dots. */
static bool domain_valid(const char *s)
{
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > DOMAIN_MAX)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (!label_char(*p) || ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

static int parse_cidr(const char *s, uint32_t *ret_net, unsigned *ret_prefix)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, s, alen);
    addr[alen] = 0;
    struct in_addr in;
    if (inet_pton(AF_INET, addr, &in) != 1)
        return -EINVAL;
    unsigned long prefix = 32;
    if (slash) {
        char *end;
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (!slash[1] || *end || errno || prefix > 32)
            return -EINVAL;
    }
    uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
    *ret_net = ntohl(in.s_addr) & mask;
    *ret_prefix = (unsigned)prefix;
    return 0;
}

static int parse_rule(const char *s, struct egress_rule *r, sbx_error *err)
{
    *r = (struct egress_rule){0};
    if (strchr(s, ':'))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`%s`: IPv6 is not supported (sandboxes get IPv4 only)", s);
    if (parse_cidr(s, &r->net, &r->prefix) == 0)
        return 0;
    const char *name = s;
    if (strncmp(name, "*.", 2) == 0) {
        r->wildcard = true;
        name += 2;
    }
    _cleanup_free_ char *lower = xstrdup(name);
    size_t len = strlen(lower);
    if (len && lower[len - 1] == '.')
        lower[--len] = 0;
    for (char *p = lower; *p; p++)
        *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    if (!domain_valid(lower) || strspn(lower, "0123456789.") == len)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`%s` is neither an IPv4 CIDR (a.b.c.d[/n]) nor a domain (example.com, "
                              "*.example.com)",
                              s);
    r->domain = TAKE_PTR(lower);
    return 0;
}

static void rules_free(struct egress_rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rules[i].domain);
    free(rules);
}

static int parse_list(json_t *j, const char *what, struct egress_rule **ret, size_t *ret_n, sbx_error *err)
{
    *ret = NULL;
    *ret_n = 0;
    if (!j)
        return 0;
    if (!json_is_array(j))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`egress.%s` must be an array of strings", what);
    size_t n = json_array_size(j);
    if (n > EGRESS_RULES_MAX)
        return sbx_error_setk(err, -E2BIG, "invalid_argument", 400, "`egress.%s` has more than %d entries",
                              what, EGRESS_RULES_MAX);
    struct egress_rule *rules = xcalloc(n ? n : 1, sizeof(*rules));
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(j, i));
        int r;
        if (!s) {
            r = sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                               "`egress.%s` must be an array of strings", what);
        } else {
            r = parse_rule(s, &rules[i], err);
        }
        if (r < 0) {
            rules_free(rules, i);
            return r;
        }
    }
    *ret = rules;
    *ret_n = n;
    return 0;
}

void egress_policy_done(struct egress_policy *p)
{
    rules_free(p->allow, p->n_allow);
    rules_free(p->deny, p->n_deny);
    *p = (struct egress_policy){0};
}

int egress_parse_policy(json_t *j, struct egress_policy *ret, sbx_error *err)
{
    *ret = (struct egress_policy){0};
    if (!j)
        return 0; /* deny by default, nothing allowed */
    if (!json_is_object(j))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`egress` must be an object");
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "default") != 0 && strcmp(key, "allow") != 0 && strcmp(key, "deny") != 0)
            return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                                  "unknown field `egress.%s` (default, allow, deny)", key);
    }
    json_t *def = json_object_get(j, "default");
    if (def) {
        const char *s = json_string_value(def);
        if (!s || (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0))
            return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                                  "`egress.default` must be \"allow\" or \"deny\"");
        ret->default_allow = strcmp(s, "allow") == 0;
    }
    int r = parse_list(json_object_get(j, "allow"), "allow", &ret->allow, &ret->n_allow, err);
    if (r >= 0)
        r = parse_list(json_object_get(j, "deny"), "deny", &ret->deny, &ret->n_deny, err);
    if (r < 0)
        egress_policy_done(ret);
    return r;
}

struct sandbox_net *egress_net_free(struct sandbox_net *n)
{
    if (n) {
        egress_policy_done(&n->policy);
        free(n);
    }
    return NULL;
}

int egress_parse_network(json_t *network, struct sandbox_net **ret, sbx_error *err)
{
    *ret = NULL;
    if (!network || json_is_null(network))
        return 0;
    if (!json_is_object(network))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`network` must be an object");
    const char *key;
    json_t *v;
    json_object_foreach(network, key, v)
    {
        if (strcmp(key, "mode") != 0 && strcmp(key, "egress") != 0)
            return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                                  "unknown field `network.%s` (mode, egress)", key);
    }
    json_t *jm = json_object_get(network, "mode");
    const char *mode = jm ? json_string_value(jm) : "none";
    if (!mode || (strcmp(mode, "none") != 0 && strcmp(mode, "egress") != 0))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`network.mode` must be \"none\" or \"egress\"");
    json_t *je = json_object_get(network, "egress");
    if (strcmp(mode, "none") == 0) {
        if (je)
            return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                                  "`network.egress` needs `network.mode` \"egress\"");
        return 0;
    }
    struct sandbox_net *n = xcalloc(1, sizeof(*n));
    int r = egress_parse_policy(je, &n->policy, err);
    if (r < 0) {
        free(n);
        return r;
    }
    *ret = n;
    return 0;
}

static char *rule_string(const struct egress_rule *r)
{
    if (r->domain)
        return xasprintf("%s%s", r->wildcard ? "*." : "", r->domain);
    struct in_addr in = {.s_addr = htonl(r->net)};
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in, a, sizeof(a));
    return r->prefix == 32 ? xstrdup(a) : xasprintf("%s/%u", a, r->prefix);
}

static json_t *rules_json(const struct egress_rule *rules, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char *s = rule_string(&rules[i]);
        json_array_append_new(a, json_string(s));
        free(s);
    }
    return a;
}

static json_t *policy_json(const struct egress_policy *p)
{
    return json_pack("{s:s, s:o, s:o}", "default", p->default_allow ? "allow" : "deny", "allow",
                     rules_json(p->allow, p->n_allow), "deny", rules_json(p->deny, p->n_deny));
}

/* The subnet, fixed at egress_init; the serializers below have no daemon at hand. */
static uint32_t subnet_base;

static struct in_addr slot_addr(int slot, unsigned host)
{
    return (struct in_addr){.s_addr = htonl(subnet_base + 4u * (uint32_t)slot + host)};
}

json_t *egress_network_to_json(const struct sandbox_net *n)
{
    if (!n)
        return json_pack("{s:s}", "mode", "none");
    json_t *o = json_pack("{s:s, s:o}", "mode", "egress", "egress", policy_json(&n->policy));
    if (n->slot) {
        char a[INET_ADDRSTRLEN];
        struct in_addr in = slot_addr(n->slot, 2);
        inet_ntop(AF_INET, &in, a, sizeof(a));
        json_object_set_new(o, "address", json_string(a));
    }
    return o;
}

json_t *egress_network_to_store(const struct sandbox_net *n)
{
    json_t *o = egress_network_to_json(n);
    if (n && n->slot) {
        json_object_set_new(o, "slot", json_integer(n->slot));
        json_object_set_new(o, "host_if", json_string(n->host_if));
    }
    return o;
}

int egress_network_from_store(const char *s, struct sandbox_net **ret, sbx_error *err)
{
    *ret = NULL;
    if (!s || !*s)
        return 0;
    json_auto_t *j = json_loads(s, 0, NULL);
    if (!j)
        return sbx_error_set(err, -EINVAL, "stored network is not JSON");
    /* Read before the keys are deleted: json_object_get lends references the deletion frees. */
    json_int_t slot = json_integer_value(json_object_get(j, "slot"));
    _cleanup_free_ char *host_if = xstrdup(json_string_value(json_object_get(j, "host_if")) ?: "");
    json_object_del(j, "slot");
    json_object_del(j, "host_if");
    json_object_del(j, "address");
    struct sandbox_net *n;
    int r = egress_parse_network(j, &n, err);
    if (r < 0 || !n)
        return r;
    if (slot > 0 && slot < SLOTS_MAX && *host_if && strlen(host_if) < sizeof(n->host_if)) {
        n->slot = (int)slot;
        snprintf(n->host_if, sizeof(n->host_if), "%s", host_if);
    }
    *ret = n;
    return 0;
}

/* --- nftables ----------------------------------------------------------------------------------- */

/* Errors that another nftables user (another sbxd, nft(8)) changing the ruleset at the same moment can
 * cause: the transaction is tried again. */
static bool nft_error_is_transient(const char *msg)
{
    static const char *const transient[] = {"Interrupted system call", "Device or resource busy",
                                            "Resource temporarily unavailable", "No buffer space available"};
    for (size_t i = 0; msg && i < ELEMENTSOF(transient); i++)
        if (strstr(msg, transient[i]))
            return true;
    return false;
}

static int nft_run(struct egress_state *e, const char *cmd, sbx_error *err)
{
    _cleanup_free_ char *msg = NULL;
    for (int attempt = 0;; attempt++) {
        if (nft_run_cmd_from_buffer(e->nft, cmd) == 0)
            return 0;
        free(msg); /* the buffer is read once per run: libnftables rewinds it when it is read */
        const char *buf = nft_ctx_get_error_buffer(e->nft);
        msg = xstrdup(buf && *buf ? buf : "unknown error");
        if (attempt == 4 || !nft_error_is_transient(msg))
            break;
        log_debug("nft: transient failure (%s), trying again", msg);
        usleep(1000u << attempt);
    }
    log_debug("nft failed: %s\n--- commands:\n%s", msg, cmd);
    char *nl = strchr(msg, '\n');
    if (nl)
        *nl = 0;
    return sbx_error_set(err, -EIO, "nftables: %s", msg);
}

/* An allow entry lifts the always-denied protection only for what it names specifically: an address
 * (/32), or a range inside 169.254.0.0/16. "0.0.0.0/0" does not open the metadata service. */
static bool names_protected(const struct egress_rule *r)
{
    return !r->domain && (r->prefix == 32 || (r->prefix >= 16 && (r->net & 0xffff0000u) == 0xa9fe0000u));
}

static bool names_unprotected(const struct egress_rule *r)
{
    return !names_protected(r);
}

static bool contains(const struct egress_rule *outer, const struct egress_rule *inner)
{
    if (outer->prefix > inner->prefix)
        return false;
    uint32_t mask = outer->prefix ? ~0u << (32 - outer->prefix) : 0;
    return (inner->net & mask) == outer->net;
}

/* "{ a, b/n, ... }" of the CIDR entries that pass `want`, without entries inside others (an anonymous
 * interval set refuses overlaps); empty when none. */
static void cidr_set(struct sbx_buf *b, const struct egress_rule *rules, size_t n,
                     bool (*want)(const struct egress_rule *r))
{
    size_t start = b->len;
    for (size_t i = 0; i < n; i++) {
        const struct egress_rule *r = &rules[i];
        if (r->domain || (want && !want(r)))
            continue;
        bool covered = false;
        for (size_t k = 0; k < n && !covered; k++)
            covered = k != i && !rules[k].domain && (!want || want(&rules[k])) && contains(&rules[k], r) &&
                      (rules[k].prefix != r->prefix || rules[k].net != r->net || k < i);
        if (covered)
            continue;
        char *s = rule_string(r);
        sbx_buf_appendf(b, "%s%s", b->len == start ? "{ " : ", ", s);
        free(s);
    }
    if (b->len > start)
        sbx_buf_appendf(b, " }");
}

/* The rules of a sandbox's chain s<slot>, appended as "add rule" commands. */
static void chain_rules(struct egress_state *e, struct sbx_buf *b, const struct sandbox_net *n)
{
    char addr[INET_ADDRSTRLEN];
    struct in_addr in = slot_addr(n->slot, 2);
    inet_ntop(AF_INET, &in, addr, sizeof(addr));
    int s = n->slot;
    const char *t = e->table_name;
    sbx_buf_appendf(b, "add rule inet %s s%d ip saddr != %s drop\n", t, s, addr);
    struct sbx_buf set = SBX_BUF_INIT;
    cidr_set(&set, n->policy.deny, n->policy.n_deny, NULL);
    if (set.len)
        sbx_buf_appendf(b, "add rule inet %s s%d ip daddr %s " REJECT "\n", t, s, sbx_buf_cstr(&set));
    sbx_buf_reset(&set);
    cidr_set(&set, n->policy.allow, n->policy.n_allow, names_protected);
    if (set.len)
        sbx_buf_appendf(b, "add rule inet %s s%d ip daddr %s accept\n", t, s, sbx_buf_cstr(&set));
    sbx_buf_appendf(b, "add rule inet %s s%d fib daddr type local " REJECT "\n", t, s);
    sbx_buf_appendf(b, "add rule inet %s s%d ip daddr @protected " REJECT "\n", t, s);
    sbx_buf_reset(&set);
    cidr_set(&set, n->policy.allow, n->policy.n_allow, names_unprotected);
    if (set.len)
        sbx_buf_appendf(b, "add rule inet %s s%d ip daddr %s accept\n", t, s, sbx_buf_cstr(&set));
    sbx_buf_appendf(b, "add rule inet %s s%d ip daddr @pin%d accept\n", t, s, s);
    /* "Allow by default" means the internet: private ranges (the host's LAN, a cloud VPC) take an allow
     * entry or a domain that resolves there, so a name cannot be rebound to an internal address either. */
    if (n->policy.default_allow)
        sbx_buf_appendf(b, "add rule inet %s s%d ip daddr @private " REJECT "\n", t, s);
    sbx_buf_appendf(b, "add rule inet %s s%d %s\n", t, s, n->policy.default_allow ? "accept" : REJECT);
    sbx_buf_done(&set);
}

static void sandbox_objects(struct egress_state *e, struct sbx_buf *b, const struct sandbox_net *n)
{
    const char *t = e->table_name;
    sbx_buf_appendf(b, "add chain inet %s s%d\n", t, n->slot);
    sbx_buf_appendf(b, "add set inet %s pin%d { type ipv4_addr; flags timeout; }\n", t, n->slot);
    chain_rules(e, b, n);
    sbx_buf_appendf(b, "add element inet %s ifaces { \"%s\" : jump s%d }\n", t, n->host_if, n->slot);
}

/* The whole table, replacing any earlier one in the same transaction. "@IF" in the template stands for
 * the interface pattern, "@T" for the table. */
static void base_table(struct egress_state *e, struct sbx_buf *b, uint16_t dns_port)
{
    char subnet[INET_ADDRSTRLEN];
    struct in_addr in = {.s_addr = htonl(e->base)};
    inet_ntop(AF_INET, &in, subnet, sizeof(subnet));
    _cleanup_free_ char *ifs = xasprintf("\"%s*\"", e->if_prefix);
    _cleanup_free_ char *net = xasprintf("%s/%u", subnet, e->prefix);
    char port[8];
    snprintf(port, sizeof(port), "%u", dns_port);
    static const char template[] =
        "add table inet @T\ndelete table inet @T\n"
        "table inet @T {\n"
        "  map ifaces { type ifname : verdict; }\n"
        "  set protected { type ipv4_addr; flags interval; elements = { 0.0.0.0/8, @NET, 127.0.0.0/8, "
        "169.254.0.0/16, 224.0.0.0/3 } }\n"
        "  set private { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 100.64.0.0/10, "
        "172.16.0.0/12, "
        "192.168.0.0/16, 198.18.0.0/15 } }\n"
        "  chain pre_nat { type nat hook prerouting priority dstnat; policy accept;\n"
        "    iifname @IF udp dport 53 redirect to :@PORT\n  }\n"
        "  chain post_nat { type nat hook postrouting priority srcnat; policy accept;\n"
        "    ip saddr @NET oifname != @IF masquerade\n  }\n"
        "  chain forward { type filter hook forward priority filter; policy accept;\n"
        "    oifname @IF ct state established,related accept\n"
        "    oifname @IF drop\n"
        "    iifname @IF meta nfproto ipv6 drop\n"
        "    iifname @IF ct state established,related accept\n"
        "    iifname @IF iifname vmap @ifaces\n"
        "    iifname @IF drop\n  }\n"
        "  chain input { type filter hook input priority filter; policy accept;\n"
        "    iifname @IF meta nfproto ipv6 drop\n"
        "    iifname @IF ct state established,related accept\n"
        "    iifname @IF udp dport @PORT ct status dnat accept\n"
        "    iifname @IF iifname vmap @ifaces\n"
        "    iifname @IF drop\n"
        "    udp dport @PORT drop\n  }\n"
        "  chain output { type filter hook output priority filter; policy accept;\n"
        "    oifname @IF ct state established,related accept\n"
        "    oifname @IF meta l4proto icmp accept\n"
        "    oifname @IF tcp flags rst accept\n"
        "    oifname @IF drop\n  }\n"
        "}\n";
    static const char *const keys[] = {"@T", "@NET", "@IF", "@PORT"};
    const char *values[] = {e->table_name, net, ifs, port};
    for (const char *p = template; *p;) {
        size_t k = 0;
        while (k < ELEMENTSOF(keys) && strncmp(p, keys[k], strlen(keys[k])) != 0)
            k++;
        if (k < ELEMENTSOF(keys)) {
            sbx_buf_append(b, values[k], strlen(values[k]));
            p += strlen(keys[k]);
        } else {
            sbx_buf_append(b, p, 1);
            p++;
        }
    }
}

/* --- slots -------------------------------------------------------------------------------------- */

static bool slot_used(struct egress_state *e, unsigned s)
{
    return e->slot_map[s / 8] & (1u << (s % 8));
}

static void slot_set(struct egress_state *e, unsigned s, bool used)
{
    if (used)
        e->slot_map[s / 8] |= (uint8_t)(1u << (s % 8));
    else
        e->slot_map[s / 8] &= (uint8_t) ~(1u << (s % 8));
}

static int slot_alloc(struct egress_state *e)
{
    for (unsigned i = 0; i < e->slots; i++) {
        unsigned s = (e->next_slot + i) % e->slots;
        if (s == 0 || slot_used(e, s))
            continue;
        slot_set(e, s, true);
        e->next_slot = s + 1;
        return (int)s;
    }
    return -ENOSPC;
}

/* --- DNS ---------------------------------------------------------------------------------------- */

static bool domain_matches(const struct egress_rule *r, const char *name)
{
    if (!r->domain)
        return false;
    if (!r->wildcard)
        return strcmp(name, r->domain) == 0;
    size_t n = strlen(name), d = strlen(r->domain);
    return n > d + 1 && name[n - d - 1] == '.' && strcmp(name + n - d, r->domain) == 0;
}

enum dns_verdict { DNS_REFUSE, DNS_FORWARD, DNS_PIN };

static enum dns_verdict dns_decide(const struct egress_policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_deny; i++)
        if (domain_matches(&p->deny[i], name))
            return DNS_REFUSE;
    for (size_t i = 0; i < p->n_allow; i++)
        if (domain_matches(&p->allow[i], name))
            return DNS_PIN;
    return p->default_allow ? DNS_FORWARD : DNS_REFUSE;
}

#define PIN_ADDRS_MAX 64 /* A records of one answer that are pinned */

/* Pins addresses with fresh timeouts: "add" alone leaves an existing element's timeout as it was (an
 * address resolved again just before its pin ends would lose it), so the transaction adds (a no-op for
 * those present), deletes (now all present) and adds again. */
static int pin_addrs(struct egress_state *e, int slot, const struct dns_a *pins, size_t n, sbx_error *err)
{
    _cleanup_(sbx_buf_done) struct sbx_buf with = SBX_BUF_INIT, bare = SBX_BUF_INIT, cmd = SBX_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *a = pins[i].addr;
        uint32_t t = pins[i].ttl < PIN_MIN_S ? PIN_MIN_S : pins[i].ttl > PIN_MAX_S ? PIN_MAX_S : pins[i].ttl;
        sbx_buf_appendf(&with, "%s%u.%u.%u.%u timeout %us", i ? ", " : "", a[0], a[1], a[2], a[3], t);
        sbx_buf_appendf(&bare, "%s%u.%u.%u.%u", i ? ", " : "", a[0], a[1], a[2], a[3]);
    }
    const char *t = e->table_name;
    sbx_buf_appendf(&cmd, "add element inet %s pin%d { %s }\n", t, slot, sbx_buf_cstr(&with));
    sbx_buf_appendf(&cmd, "delete element inet %s pin%d { %s }\n", t, slot, sbx_buf_cstr(&bare));
    sbx_buf_appendf(&cmd, "add element inet %s pin%d { %s }\n", t, slot, sbx_buf_cstr(&with));
    return nft_run(e, sbx_buf_cstr(&cmd), err);
}

static void dns_send(struct egress_state *e, const uint8_t *buf, size_t len, const struct sockaddr_in *to,
                     const struct in_pktinfo *from)
{
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } control = {0};
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = sizeof(*to),
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof(control.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi = {.ipi_ifindex = from->ipi_ifindex, .ipi_spec_dst = from->ipi_addr};
    memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
    if (sendmsg(e->dns_fd, &mh, MSG_DONTWAIT) < 0)
        log_debug_errno(-errno, "dns: answer a sandbox: %m");
}

/* NXDOMAIN for a query (its header and question kept, nothing else). */
static void dns_refuse(struct egress_state *e, uint8_t *q, int qend, const struct sockaddr_in *to,
                       const struct in_pktinfo *from)
{
    dns_make_nxdomain(q, (size_t)qend);
    dns_send(e, q, (size_t)qend, to, from);
}

static struct sandbox *sandbox_by_ifindex(struct daemon *d, int ifindex)
{
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (sb->net && sb->net->slot && sb->net->host_ifindex == ifindex)
            return sb;
    return NULL;
}

static void dns_expire(struct egress_state *e, usec_t now)
{
    for (size_t i = 0; i < DNS_PENDING_MAX; i++)
        if (e->pending[i].used && e->pending[i].deadline < now)
            e->pending[i].used = false;
}

static void on_dns_query(struct loop_io *io, uint32_t revents)
{
    struct egress_state *e = container_of(io, struct egress_state, dns_io);
    struct daemon *d = e->d;
    (void)revents;
    for (int budget = 64; budget > 0; budget--) {
        uint8_t buf[DNS_PACKET_MAX];
        struct sockaddr_in from;
        union {
            char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr mh = {.msg_name = &from,
                            .msg_namelen = sizeof(from),
                            .msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.buf,
                            .msg_controllen = sizeof(control.buf)};
        ssize_t n = recvmsg(e->dns_fd, &mh, MSG_DONTWAIT);
        if (n < 0)
            return;
        struct in_pktinfo pi = {0};
        bool have_pi = false;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
                memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
                have_pi = true;
            }
        /* Only sandboxes may ask, each through its own interface (nftables closes the port to others). */
        struct sandbox *sb = have_pi ? sandbox_by_ifindex(d, pi.ipi_ifindex) : NULL;
        char name[DOMAIN_MAX + 2];
        int qend = dns_question(buf, (size_t)n, name, sizeof(name));
        if (!sb || qend < 0 || (buf[2] & 0x80))
            continue;
        enum dns_verdict v = dns_decide(&sb->net->policy, name);
        if (v == DNS_REFUSE || e->up_fd < 0) {
            log_debug("dns: sandbox %s: `%s` refused", sb->id, name);
            dns_refuse(e, buf, qend, &from, &pi);
            continue;
        }
        usec_t now = now_usec(CLOCK_MONOTONIC);
        dns_expire(e, now);
        struct dns_pending *p = NULL;
        for (size_t i = 0; i < DNS_PENDING_MAX && !p; i++)
            if (!e->pending[i].used)
                p = &e->pending[i];
        if (!p)
            continue; /* full: the client retries */
        uint16_t id;
        bool clash;
        do {
            /* Random ids: an off-path host cannot guess them to slip an answer in. */
            if (getrandom(&id, sizeof(id), 0) != sizeof(id))
                id = (uint16_t)now;
            clash = false;
            for (size_t i = 0; i < DNS_PENDING_MAX && !clash; i++)
                clash = e->pending[i].used && e->pending[i].upstream_id == id;
        } while (clash);
        *p = (struct dns_pending){.used = true,
                                  .upstream_id = id,
                                  .client_id = (uint16_t)(buf[0] << 8 | buf[1]),
                                  .pin = v == DNS_PIN,
                                  .client = from,
                                  .local = pi,
                                  .deadline = now + DNS_TIMEOUT_USEC};
        snprintf(p->sandbox, sizeof(p->sandbox), "%s", sb->id);
        buf[0] = (uint8_t)(id >> 8);
        buf[1] = (uint8_t)id;
        if (send(e->up_fd, buf, (size_t)n, MSG_DONTWAIT) < 0) {
            log_debug_errno(-errno, "dns: forward to the upstream resolver: %m");
            p->used = false;
        }
    }
}

static void on_dns_answer(struct loop_io *io, uint32_t revents)
{
    struct egress_state *e = container_of(io, struct egress_state, up_io);
    struct daemon *d = e->d;
    (void)revents;
    for (int budget = 64; budget > 0; budget--) {
        uint8_t buf[DNS_PACKET_MAX];
        ssize_t n = recv(e->up_fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0)
            return;
        if (n < 12)
            continue;
        uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
        struct dns_pending *p = NULL;
        for (size_t i = 0; i < DNS_PENDING_MAX && !p; i++)
            if (e->pending[i].used && e->pending[i].upstream_id == id)
                p = &e->pending[i];
        if (!p)
            continue;
        p->used = false;
        struct sandbox *sb = sandbox_lookup(d, p->sandbox, NULL);
        if (!sb || !sb->net || !sb->net->slot) {
            if (sb)
                sandbox_unref(sb);
            continue;
        }
        /* Pinned before the answer is passed on: the connection that follows it is allowed. */
        if (p->pin) {
            struct dns_a pins[PIN_ADDRS_MAX];
            size_t np = dns_answer_a(buf, (size_t)n, pins, PIN_ADDRS_MAX);
            sbx_error err = {0};
            if (np > 0 && pin_addrs(e, sb->net->slot, pins, np, &err) < 0)
                log_warning("sandbox %s: pin resolved addresses: %s", sb->id, err.msg);
        }
        buf[0] = (uint8_t)(p->client_id >> 8);
        buf[1] = (uint8_t)p->client_id;
        dns_send(e, buf, (size_t)n, &p->client, &p->local);
        sandbox_unref(sb);
    }
}

static int upstream_from_resolv_conf(struct sockaddr_in *ret)
{
    _cleanup_fclose_ FILE *f = fopen("/etc/resolv.conf", "re");
    if (!f)
        return -errno;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        char addr[64];
        if (sscanf(line, " nameserver %63s", addr) == 1 && inet_pton(AF_INET, addr, &ret->sin_addr) == 1) {
            ret->sin_family = AF_INET;
            ret->sin_port = htons(53);
            return 0;
        }
    }
    return -ENOENT;
}

static int dns_start(struct daemon *d, struct egress_state *e, sbx_error *err)
{
    if (e->dns_fd >= 0)
        return 0;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sbx_error_set(err, -errno, "dns socket: %m");
    int one = 1;
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t sl = sizeof(any);
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&any, sizeof(any)) < 0 ||
        getsockname(fd, (struct sockaddr *)&any, &sl) < 0) {
        int r = sbx_error_set(err, -errno, "dns socket: %m");
        close(fd);
        return r;
    }
    /* No upstream (no IPv4 nameserver in resolv.conf, no --dns-upstream): sandboxes still get their
     * network, and every query an answer of NXDOMAIN rather than a timeout. */
    int up = -1;
    if (e->upstream.sin_family == AF_INET &&
        ((up = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
         connect(up, (struct sockaddr *)&e->upstream, sizeof(e->upstream)) < 0)) {
        int r = sbx_error_set(err, -errno, "connect to the upstream resolver: %m");
        close(fd);
        if (up >= 0)
            close(up);
        return r;
    }
    e->dns_fd = fd;
    e->up_fd = up;
    e->dns_port = ntohs(any.sin_port);
    loop_io_start(d->loop, &e->dns_io, fd, EPOLLIN, on_dns_query);
    if (up >= 0)
        loop_io_start(d->loop, &e->up_io, up, EPOLLIN, on_dns_answer);
    return 0;
}

/* --- life --------------------------------------------------------------------------------------- */

int egress_init(struct daemon *d, const char *dns_upstream, const char *subnet, sbx_error *err)
{
    struct egress_rule net;
    if (parse_cidr(subnet ? subnet : DEFAULT_SUBNET, &net.net, &net.prefix) < 0 ||
        net.prefix < SUBNET_PREFIX_MIN || net.prefix > SUBNET_PREFIX_MAX)
        return sbx_error_set(err, -EINVAL, "--egress-subnet must be an IPv4 CIDR with a prefix of /%d to /%d",
                             SUBNET_PREFIX_MIN, SUBNET_PREFIX_MAX);
    struct egress_state *e = xcalloc(1, sizeof(*e));
    e->d = d;
    e->dns_fd = e->up_fd = -1;
    e->next_slot = 1;
    e->base = subnet_base = net.net;
    e->prefix = net.prefix;
    e->slots = 1u << (SLOT_PREFIX - net.prefix);
    snprintf(e->table_name, sizeof(e->table_name), "sbx%06x", net.net >> 8);
    snprintf(e->if_prefix, sizeof(e->if_prefix), "sbx%06x", net.net >> 8);
    if (dns_upstream && strcmp(dns_upstream, "none") == 0) {
        log_info("--dns-upstream none: egress sandboxes resolve nothing (addresses still work)");
    } else if (dns_upstream) {
        char host[64];
        unsigned port = 53;
        const char *colon = strrchr(dns_upstream, ':');
        size_t hl = colon ? (size_t)(colon - dns_upstream) : strlen(dns_upstream);
        if (hl >= sizeof(host) || (colon && sscanf(colon + 1, "%u", &port) != 1) || port == 0 ||
            port > 65535) {
            free(e);
            return sbx_error_set(err, -EINVAL, "--dns-upstream must be IPV4[:PORT]");
        }
        memcpy(host, dns_upstream, hl);
        host[hl] = 0;
        e->upstream.sin_family = AF_INET;
        e->upstream.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &e->upstream.sin_addr) != 1) {
            free(e);
            return sbx_error_set(err, -EINVAL, "--dns-upstream must be IPV4[:PORT]");
        }
    } else if (upstream_from_resolv_conf(&e->upstream) < 0) {
        log_info("no IPv4 nameserver in /etc/resolv.conf and no --dns-upstream: egress sandboxes resolve "
                 "nothing (addresses still work)");
    }
    d->egress = e;
    return 0;
}

static int ensure_nft(struct egress_state *e, sbx_error *err)
{
    if (e->nft)
        return 0;
    e->nft = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!e->nft)
        return sbx_error_set(err, -ENOMEM, "nftables context");
    nft_ctx_buffer_output(e->nft);
    nft_ctx_buffer_error(e->nft);
    return 0;
}

static int write_sysctl(const char *path, const char *value)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0)
        return -errno;
    return 0;
}

/* The table and the resolver, made on first need; at start (rebuild) with every sandbox that is up. */
static int ensure_table(struct daemon *d, struct egress_state *e, bool rebuild, sbx_error *err)
{
    if (e->table && !rebuild)
        return 0;
    int r;
    if ((r = ensure_nft(e, err)) < 0 || (r = dns_start(d, e, err)) < 0)
        return r;
    if ((r = write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")) < 0)
        return sbx_error_set(err, r, "enable IPv4 forwarding: %s", strerror(-r));
    _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
    base_table(e, &b, e->dns_port);
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (sb->net && sb->net->slot)
            sandbox_objects(e, &b, sb->net);
    if ((r = nft_run(e, sbx_buf_cstr(&b), err)) < 0)
        return r;
    e->table = true;
    return 0;
}

int egress_start(struct daemon *d, sbx_error *err)
{
    struct egress_state *e = d->egress;
    bool any = false;
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        any |= sb->net && sb->net->slot;
    log_debug("egress: %s",
              any ? "rebuilding the table of the sandboxes that are up" : "no egress sandbox is up");
    if (any)
        return ensure_table(d, e, true, err);
    /* None: a table left by an earlier run goes (it would drop nothing, but it is not ours to keep). */
    if (ensure_nft(e, err) < 0)
        return err->code;
    sbx_error ignored = {0};
    _cleanup_free_ char *cmd =
        xasprintf("add table inet %s\ndelete table inet %s\n", e->table_name, e->table_name);
    (void)nft_run(e, cmd, &ignored);
    return 0;
}

void egress_recovered(struct daemon *d, struct sandbox *sb)
{
    struct egress_state *e = d->egress;
    if (!sb->net || !sb->net->slot)
        return;
    if (slot_used(e, (unsigned)sb->net->slot)) { /* two rows with one slot: only a corrupt store */
        sb->net->slot = 0;
        return;
    }
    slot_set(e, (unsigned)sb->net->slot, true);
    sb->net->host_ifindex = (int)if_nametoindex(sb->net->host_if);
    if (e->next_slot <= (unsigned)sb->net->slot)
        e->next_slot = (unsigned)sb->net->slot + 1;
}

/* The sandbox's resolver is the host end of its veth: an image's resolv.conf (or the host's, naming a
 * loopback resolver like 127.0.0.53 that the sandbox's own loopback does not have) would not work.
 * Written through the files layer: the rootfs may hold what earlier commands left (symlinks included).
 * Any UDP port 53 query is redirected to sbxd anyway; this only makes the usual one work. */
static void write_resolv_conf(struct sandbox *sb, const char *nameserver)
{
    if (sb->rootfs_fd < 0)
        return;
    _cleanup_free_ char *text = xasprintf("# written by sbx: queries go through the sandbox's egress policy\n"
                                          "nameserver %s\n",
                                          nameserver);
    struct files_writer w;
    sbx_error err = {0};
    if (files_writer_open(sb->rootfs_fd, "/etc/resolv.conf", 0644, sb->uid_base, sb->uid_base, &w, &err) < 0)
        goto fail;
    if (files_writer_write(&w, text, strlen(text), &err) < 0) {
        files_writer_abort(&w);
        goto fail;
    }
    if (files_writer_commit(&w, &err) < 0)
        goto fail;
    return;
fail:
    /* A read-only /etc (the host snapshot's): queries to its nameserver are redirected all the same. */
    log_info("sandbox %s: write /etc/resolv.conf: %s", sb->id, err.msg);
}

int egress_attach(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    struct egress_state *e = d->egress;
    struct sandbox_net *n = sb->net;
    if (!n)
        return 0;
    if (n->slot)
        egress_detach(d, sb);
    int r = ensure_table(d, e, false, err);
    if (r < 0)
        return r;
    int slot = slot_alloc(e);
    if (slot < 0)
        return sbx_error_setk(err, -ENOSPC, "resource_exhausted", 429, "no egress address left (%u in use)",
                              e->slots - 1);
    char host[INET_ADDRSTRLEN], inside[INET_ADDRSTRLEN];
    struct in_addr h = slot_addr(slot, 1), s = slot_addr(slot, 2);
    inet_ntop(AF_INET, &h, host, sizeof(host));
    inet_ntop(AF_INET, &s, inside, sizeof(inside));
    json_auto_t *resp = NULL;
    for (int attempt = 0;; attempt++) {
        char suffix[SBX_ID_MAX + 1];
        id_generate(suffix, sizeof(suffix), "");
        snprintf(n->host_if, sizeof(n->host_if), "%s%.6s", e->if_prefix, suffix);
        json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:i}", "op", "net_attach", "host_if", n->host_if,
                                "host_addr", host, "sandbox_addr", inside, "prefix", SLOT_PREFIX);
        r = sandbox_shim_call_unchecked(sb, req, &resp, err);
        json_decref(req);
        if (r != -EEXIST || attempt == 2)
            break;
    }
    if (r < 0) {
        slot_set(e, (unsigned)slot, false);
        return r;
    }
    n->slot = slot;
    n->host_ifindex = (int)json_integer_value(json_object_get(resp, "ifindex"));
    _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
    sandbox_objects(e, &b, n);
    if ((r = nft_run(e, sbx_buf_cstr(&b), err)) < 0) {
        /* No rule names its interface: the forward and input chains drop all it sends. */
        slot_set(e, (unsigned)slot, false);
        n->slot = 0;
        return r;
    }
    write_resolv_conf(sb, host);
    log_debug("sandbox %s: egress via %s (%s)", sb->id, n->host_if, inside);
    return 0;
}

void egress_detach(struct daemon *d, struct sandbox *sb)
{
    struct egress_state *e = d->egress;
    struct sandbox_net *n = sb->net;
    if (!n || !n->slot)
        return;
    if (e->table) {
        const char *t = e->table_name;
        _cleanup_free_ char *cmd = xasprintf("delete element inet %s ifaces { \"%s\" }\n"
                                             "delete chain inet %s s%d\ndelete set inet %s pin%d\n",
                                             t, n->host_if, t, n->slot, t, n->slot);
        sbx_error err = {0};
        if (nft_run(e, cmd, &err) < 0)
            log_warning("sandbox %s: remove its egress rules: %s", sb->id, err.msg);
    }
    slot_set(e, (unsigned)n->slot, false);
    n->slot = 0;
    n->host_ifindex = 0;
    n->host_if[0] = 0;
}

int egress_set_policy(struct daemon *d, struct sandbox *sb, struct egress_policy *policy, sbx_error *err)
{
    struct egress_state *e = d->egress;
    struct sandbox_net *n = sb->net;
    if (!n)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "sandbox `%s` has network mode none: its egress policy cannot be set", sb->id);
    struct egress_policy old = n->policy;
    n->policy = *policy;
    *policy = (struct egress_policy){0};
    if (n->slot && e->table) {
        _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
        /* One transaction: the old rules hold until the new ones replace them. Pins go with the old
         * policy; allowed names are pinned again when next resolved. */
        sbx_buf_appendf(&b, "flush chain inet %s s%d\nflush set inet %s pin%d\n", e->table_name, n->slot,
                        e->table_name, n->slot);
        chain_rules(e, &b, n);
        int r = nft_run(e, sbx_buf_cstr(&b), err);
        if (r < 0) {
            egress_policy_done(&n->policy);
            n->policy = old;
            return r;
        }
    }
    egress_policy_done(&old);
    return 0;
}

void egress_done(struct daemon *d)
{
    struct egress_state *e = d->egress;
    if (!e)
        return;
    if (e->dns_fd >= 0) {
        loop_io_stop(d->loop, &e->dns_io);
        if (e->up_fd >= 0)
            loop_io_stop(d->loop, &e->up_io);
        close(e->dns_fd);
        if (e->up_fd >= 0)
            close(e->up_fd);
    }
    bool any = false;
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        any |= sb->net && sb->net->slot;
    if (e->table && !any) {
        sbx_error ignored = {0};
        _cleanup_free_ char *cmd = xasprintf("delete table inet %s\n", e->table_name);
        (void)nft_run(e, cmd, &ignored);
    }
    if (e->nft)
        nft_ctx_free(e->nft);
    free(e);
    d->egress = NULL;
}
