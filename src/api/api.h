/* The native /v1 API: routes HTTP requests to the sandbox registry, the shims and the file module. */
#pragma once

#include "base/error.h"

struct daemon;

/* Starts serving the API on host:port from d->loop. */
int api_start(struct daemon *d, const char *host, int port, sbx_error *err);
/* Stops listening and drops every connection (streams end; sandboxes are untouched). */
void api_stop(struct daemon *d);
/* Serves service URLs also in the host-header form http://{port}-{id}.<domain>/ (sbxd --service-domain);
 * NULL turns that form off. */
void api_service_set_domain(const char *domain);
/* The agent sessions' default command (sbxd --agent-command): words split on blanks, the stream-JSON flags
 * are appended (docs/api.md, Agent sessions). Returns 0, or -EINVAL for no word or too many. */
int api_agents_set_command(const char *cmd);
/* Ends sbxd's own streams on agent sessions (at shutdown; the sessions run on in their shims). */
void api_agents_close_all(void);
