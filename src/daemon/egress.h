/* Network mode `egress`: a sandbox's veth pair (made by its shim, runtime/net.c), the host-side
 * nftables rules that enforce its egress policy, and the DNS path that resolves names for it and pins
 * the addresses of allowed domains. See docs/design/network.md. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

struct daemon;
struct sandbox;

#define EGRESS_RULES_MAX 256 /* entries in each of allow and deny */

/* One entry of an allow or deny list: an IPv4 CIDR, or a domain (`example.com` exactly, or
 * `*.example.com`: any name below it, not the name itself). */
struct egress_rule {
    char *domain; /* NULL for a CIDR; lower case, no trailing dot, without the "*." of a wildcard */
    bool wildcard;
    uint32_t net; /* host byte order, host bits zero */
    unsigned prefix;
};

struct egress_policy {
    bool default_allow;
    struct egress_rule *allow, *deny;
    size_t n_allow, n_deny;
};

/* A sandbox's network when its mode is egress (sandbox->net; NULL = mode none). */
struct sandbox_net {
    struct egress_policy policy;
    int slot;         /* its /30 in the egress subnet while attached, 0 otherwise */
    char host_if[16]; /* the host end of its veth pair while attached */
    int host_ifindex;
};

/* Parses a create request's "network" ({"mode": "none"|"egress", "egress": {...}}). *ret is NULL for
 * mode none. */
int egress_parse_network(json_t *network, struct sandbox_net **ret, sbx_error *err);
/* Parses an egress policy ({"default": "deny"|"allow", "allow": [...], "deny": [...]}). */
int egress_parse_policy(json_t *j, struct egress_policy *ret, sbx_error *err);
void egress_policy_done(struct egress_policy *p);
struct sandbox_net *egress_net_free(struct sandbox_net *n);
/* The API's view ({"mode", "egress"?, "address"?}) and the store's (the same plus slot and host_if). */
json_t *egress_network_to_json(const struct sandbox_net *n);
json_t *egress_network_to_store(const struct sandbox_net *n);
/* Reads what egress_network_to_store wrote (NULL/none → *ret NULL). */
int egress_network_from_store(const char *json, struct sandbox_net **ret, sbx_error *err);

/* Start-up, before sandboxes are recovered: options (NULL for the defaults) and an empty slot table. Nothing
 * touches the host's firewall until the first egress sandbox (or a recovered one) needs it. */
int egress_init(struct daemon *d, const char *dns_upstream, const char *subnet, sbx_error *err);
/* After recovery: rebuilds sbxd's nftables table from the sandboxes that are up (or removes a stale one
 * when there are none) and starts the DNS path if needed. */
int egress_start(struct daemon *d, sbx_error *err);
/* Gives a sandbox that is up (shim started) its veth pair and rules. */
int egress_attach(struct daemon *d, struct sandbox *sb, sbx_error *err);
/* Its namespace is gone or going (stop, failure, delete): its rules go, its slot is freed. */
void egress_detach(struct daemon *d, struct sandbox *sb);
/* A recovered sandbox that is still up: its slot is taken again (rules follow in egress_start). */
void egress_recovered(struct daemon *d, struct sandbox *sb);
/* Replaces the policy of an egress sandbox (PATCH); live at once when it is up. Takes *policy. */
int egress_set_policy(struct daemon *d, struct sandbox *sb, struct egress_policy *policy, sbx_error *err);
/* At exit: the DNS path stops; the table stays while sandboxes remain (they outlive sbxd). */
void egress_done(struct daemon *d);
