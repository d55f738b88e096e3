/* The wire between the runtime (host side, in sbx-shim) and sbx-init (PID 1 inside a sandbox).
 *
 * One SOCK_SEQPACKET socket, at fd INIT_CTL_FD in sbx-init. Every message is one packet that starts
 * with a struct init_msg_header. Packets are little structs in host byte order: both ends are built
 * from the same tree and run on the same kernel.
 *
 *   init -> host  INIT_MSG_READY       once, when sbx-init is up and waiting for requests
 *   host -> init  INIT_MSG_EXEC        + 3 fds (stdin, stdout, stderr) as SCM_RIGHTS
 *   init -> host  INIT_MSG_EXEC_REPLY  answers each INIT_MSG_EXEC in order; on success carries the
 *                                      command's pidfd as SCM_RIGHTS
 *   init -> host  INIT_MSG_EXIT        a command started by INIT_MSG_EXEC has been reaped; orphans
 *                                      that were re-parented to init are reaped silently
 *
 * An EXEC_REPLY for a command is always sent before that command's EXIT. */
#pragma once

#include <stdint.h>

#define INIT_CTL_FD 3
#define INIT_MSG_MAX (1024u * 1024u) /* an EXEC packet (argv + env + cwd) is at most this big */
#define INIT_SOCKBUF (INIT_MSG_MAX + 64u * 1024u)

enum init_msg_type {
    INIT_MSG_READY = 1,
    INIT_MSG_EXEC = 2,
    INIT_MSG_EXEC_REPLY = 3,
    INIT_MSG_EXIT = 4,
};

struct init_msg_header {
    uint32_t type; /* enum init_msg_type */
    uint32_t len;  /* whole packet, header included */
};

#define INIT_EXEC_NEW_SESSION 0x1u /* setsid() in the child */
#define INIT_EXEC_CTTY 0x2u        /* with NEW_SESSION: make fd 0 (a terminal) the controlling tty */
#define INIT_EXEC_USER 0x4u        /* one more string after cwd: the user to run as (see init.c) */

/* Followed by argc NUL-terminated argv strings, envc NUL-terminated "K=V" strings and one
 * NUL-terminated cwd (empty = "/"), and with INIT_EXEC_USER one NUL-terminated user, back to back. argv[0]
 * without '/' is looked up in PATH from env (or /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
 * when env has none). */
struct init_msg_exec {
    struct init_msg_header h;
    uint32_t flags; /* INIT_EXEC_* */
    uint32_t argc;  /* >= 1 */
    uint32_t envc;
    uint32_t strings_len; /* bytes of strings after this struct */
};

struct init_msg_exec_reply {
    struct init_msg_header h;
    int32_t error;     /* 0, or the errno of the failed step (ENOENT, EACCES, ENOEXEC from execve) */
    int32_t pid;       /* pid inside the sandbox when error == 0 */
    char message[200]; /* NUL-terminated reason when error != 0, e.g. "execve /bin/nope: No such file" */
};

struct init_msg_exit {
    struct init_msg_header h;
    int32_t pid;
    int32_t status; /* as from waitpid() */
};

struct init_msg_ready {
    struct init_msg_header h;
    int32_t pid; /* getpid() of init inside: 1 */
};
