/* E2B compatibility: the control plane REST API and envd (Connect RPC + /files) of E2B's SDKs, served on
 * sbxd's listener and translated onto sbx's own model (docs/compat/e2b.md). */
#pragma once

#include <stdbool.h>

struct daemon;
struct http_request;

/* Serves req when it is an E2B request (an E2b-Sandbox-Id header, a signed /files URL, or an E2B control
 * plane path such as /v2/sandboxes) and returns true; false leaves req to the native router. Runs before
 * the native API-key check: E2B requests carry their own credentials (X-API-Key, X-Access-Token). */
bool e2b_dispatch(struct daemon *d, struct http_request *req);

/* Service URLs' host form (api/service.c) for a sandbox created through E2B's API: whether req, addressed
 * to a port of sandbox_id, is authorized E2B's way, by the sandbox's trafficAccessToken in the
 * `e2b-traffic-access-token` header, or with no credential when that E2B create left its ports public
 * (network.allowPublicTraffic not false). Never true for a sandbox sbx's own API made without a token. */
bool e2b_service_authorized(struct daemon *d, struct http_request *req, const char *sandbox_id);
