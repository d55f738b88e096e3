/* sbxd's side of the shim's network ops (shim_protocol.h: "connect"). */
#pragma once

#include "base/error.h"

/* Asks the shim of state_dir for a TCP connection to port inside its sandbox (127.0.0.1, else ::1), on a
 * connection of its own, waiting at most timeout_ms. Returns 0 with the socket (nonblocking, CLOEXEC,
 * TCP_NODELAY; connected, or in rare cases still connecting) in *ret_fd, caller closes; or a negative
 * errno with err filled: kind "connection_refused" (-ECONNREFUSED, HTTP 502) when nothing listens. */
int shim_connect_port(const char *state_dir, int port, int timeout_ms, int *ret_fd, sbx_error *err);
