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
