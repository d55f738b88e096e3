/* sbx-shim's network operations inside the sandbox's network namespace: the "connect" and "ports" ops
 * of shimclient/shim_protocol.h. Private to sbx-shim. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"

/* Opens the sandbox's network namespace (/proc/<init_pid>/ns/net) and the shim's own, once at start,
 * while sbx-init is known to be alive (so a recycled pid can never be hit later). Returns 0 or -errno. */
int shim_net_init(pid_t init_pid);

/* Opens a TCP connection to 127.0.0.1:port inside the sandbox's network namespace, or to [::1]:port when
 * nothing accepts on 127.0.0.1. Returns 0 with a nonblocking, CLOEXEC socket (connected, or in the rare
 * case of a full accept backlog still connecting) in *ret_fd; -ECONNREFUSED (kind "connection_refused")
 * when neither address accepts, or another negative errno, with err filled. */
int shim_net_connect(int port, int *ret_fd, sbx_error *err);

/* The TCP ports listening inside the sandbox, from /proc/<init_pid>/net/tcp and tcp6: a new array of
 * {"port":N,"address":"127.0.0.1"|"::"|...}, sorted by port, or NULL with err filled. */
json_t *shim_net_ports(pid_t init_pid, sbx_error *err);

/* Sends buf[0..len) on the unix socket sock with fd attached (SCM_RIGHTS) to its first byte, without
 * blocking. Returns the bytes sent (> 0; the caller queues the rest as usual) or -errno (nothing sent,
 * fd not passed). */
ssize_t shim_net_send_fd(int sock, const void *buf, size_t len, int fd);

/* {"op":"net_attach","host_if","host_addr","sandbox_addr","prefix"}: gives the sandbox its egress veth
 * pair (runtime_net_attach). Returns 0 with the host end's ifindex, or a negative errno with err filled. */
int shim_net_attach(json_t *req, int *ret_ifindex, sbx_error *err);
