/* Service URLs: signed, expiring URLs that sbxd proxies (HTTP/1.1 and WebSocket) to a TCP port inside a
 * sandbox's network namespace, and the listing of the ports listening there. docs/api.md "Service URLs"
 * has the contract, docs/security.md the claims. Private to the API module. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "http/http.h"

struct api_ctx;
struct daemon;
struct sandbox;

/* POST /v1/sandboxes/{id}/ports/{port}/url (the port is c->command_id) and GET /v1/sandboxes/{id}/ports. */
void api_service_url(struct api_ctx *c);
void api_ports_list(struct api_ctx *c);

/* GET /v1/sandboxes/{id}/tunnel: a WebSocket carrying yamux streams to TCP ports inside (tunnel.c). */
void api_tunnel(struct api_ctx *c);

/* Serves req when it is addressed to a service URL (path /s/{id}/{port}/..., or Host {port}-{id}.<domain>
 * with a domain configured) and returns true; false leaves req untouched for the API router. Runs before
 * API authentication: the service token is the only credential these requests need. */
bool api_service_dispatch(struct daemon *d, struct http_request *req);

/* A service link to port of sb valid ttl_s seconds, as POST .../ports/{port}/url answers it ({"url",
 * "path_url", "host_url"?, "token", "expires_at", "port", "sandbox_id"}); host is the request's Host. The
 * compat layers' service-URL routes answer from it. NULL on error. */
json_t *api_service_link(struct daemon *d, const struct sandbox *sb, int port, int64_t ttl_s,
                         const char *host, sbx_error *err);

/* HMAC-SHA256 of msg under sbxd's service secret (<data_dir>/service.key, made at first use): for other
 * credentials that must need no storage, such as E2B's per-sandbox envd access token. */
int api_service_mac(struct daemon *d, const char *msg, unsigned char ret[32], sbx_error *err);

/* The domain of the host-header form (sbxd --service-domain); NULL turns that form off. Copied. */
void api_service_set_domain(const char *domain);
/* That domain (lower case), NULL when the host form is off. Borrowed. */
const char *api_service_domain(void);

/* The splice between a client connection taken over from the HTTP server and a socket inside the sandbox
 * (proxy.c). head (taken) is written to the sandbox first, then t->in; t->out goes to the client first.
 * close_after: rewrite the first final response head to carry `Connection: close` and end the connection
 * after it (the path form, whose requests each need their path rewritten). Takes ownership of t's
 * contents and of upstream_fd; holds a reference on sb and counts as an attached client while open. */
void api_proxy_start(struct daemon *d, struct sandbox *sb, struct http_takeover *t, int upstream_fd,
                     struct sbx_buf *head, bool close_after);
/* Closes every proxied connection (daemon shutdown). */
void api_proxy_close_all(void);
/* Proxied connections open now. */
unsigned api_proxy_count(void);
