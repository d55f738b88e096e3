/* OpenSandbox protocol: the lifecycle API and the per-sandbox execd API of the OpenSandbox SDKs, served
 * on sbxd's listener under /opensandbox and translated onto sbx's own model
 * (docs/compat/opensandbox.md). */
#pragma once

#include <stdbool.h>

struct daemon;
struct http_request;

/* Serves req when its path is /opensandbox or under it and returns true; false leaves req to the other
 * routers. Runs before the native API-key check: it authenticates OPEN-SANDBOX-API-KEY itself and answers
 * in OpenSandbox's {code, message} error envelope, echoing X-Request-ID. */
bool opensandbox_dispatch(struct daemon *d, struct http_request *req);
