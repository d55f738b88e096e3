/* LangSmith sandbox protocol: the control plane (boxes, snapshots) and the per-sandbox data plane
 * (execute, files, tunnel) of the LangSmith sandbox SDKs, served on sbxd's listener under /langsmith and
 * translated onto sbx's own model (docs/compat/langsmith.md). */
#pragma once

#include <stdbool.h>

struct daemon;
struct http_request;

/* Serves req when its path starts with /langsmith/ and returns true; false leaves req to the other
 * routers. Runs before the native API-key check: it authenticates X-Api-Key itself and answers in
 * LangSmith's error envelope. */
bool langsmith_dispatch(struct daemon *d, struct http_request *req);
