/* The web console (web/, docs/console.md): sbxd serves its built static files at /console/ on the API's
 * own listener (same origin, so the console calls /v1 without CORS), and lets a browser's WebSocket carry
 * an API key in Sec-WebSocket-Protocol (browsers cannot set headers on a WebSocket). Private to the API
 * module. */
#pragma once

#include <stdbool.h>

#include "http/http.h"

/* Where the built console lives (sbxd --console-dir); NULL restores the default, <sbxd's dir>/../console
 * (build/console next to build/bin/sbxd). Copied. */
void api_console_set_dir(const char *dir);

/* Serves req when its path is /console or under /console/ and returns true; false leaves req untouched.
 * Needs no API key: the files are public, everything they show comes from /v1 with the user's key. */
bool api_console_dispatch(struct http_request *req);

/* The API key a browser WebSocket offers as the subprotocol "sbx.key.<base64url(key)>" next to "sbx", or
 * NULL when req is not such an upgrade. When one is found, "Sec-WebSocket-Protocol: sbx" is added to the
 * response (a browser fails an upgrade whose answer selects none of its protocols). The key is owned by
 * the request. Keys never travel in URLs, which end up in logs and histories. */
const char *api_console_ws_key(struct http_request *req);
