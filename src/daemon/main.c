/* sbxd: the sandbox daemon. Parses options, opens the state, re-attaches to surviving sandboxes and
 * serves the HTTP API from one epoll loop until SIGTERM/SIGINT. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/console.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/checkpoint.h"
#include "daemon/egress.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "http/http.h"
#include "loop/loop.h"
#include "runtime/runtime.h"
#include "api/keys.h"
#include "daemon/lifecycle.h"
#include "daemon/volume.h"
#include "daemon/warm.h"
#include "store/store.h"

#define SBX_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "Usage: sbxd --listen HOST:PORT --data-dir DIR [options]\n"
               "\n"
               "  --listen HOST:PORT     address to serve the API on (default 127.0.0.1:7070)\n"
               "  --data-dir DIR         state directory (default /var/lib/sbx)\n"
               "  --ephemeral            destroy every sandbox when sbxd exits on SIGTERM/SIGINT\n"
               "  --max-sandboxes N      limit on live sandboxes (default 256)\n"
               "  --warm N               sandboxes kept created ahead of demand (default 2, 0 = none)\n"
               "  --max-image-mb N       largest image tarball POST /v1/snapshots accepts (default 8192)\n"
               "  --max-layer-mb N       largest unpacked content of one image layer (default 16384)\n"
               "  --pull-stall-seconds N a registry pull slower than 1 KiB/s for N s fails (default 60,\n"
               "                         1..3600)\n"
               "  --service-domain D     also serve service URLs as http://PORT-ID.D (host-header form)\n"
               "  --dns-upstream IP[:P]  resolver that egress sandboxes' queries go to (default: the first\n"
               "                         IPv4 nameserver of /etc/resolv.conf; none: nothing resolves)\n"
               "  --egress-subnet CIDR   addresses of egress sandboxes, /16 to /28 (default 10.231.0.0/16);\n"
               "                         names the nftables table inet sbx<hex of its top 24 bits>\n"
               "  --console-dir DIR      the built web console, served at /console/ (default: console/\n"
               "                         beside sbxd's bin/ directory, i.e. build/console)\n"
               "  --agent-command CMD    agent sessions' program, words split on blanks (default claude);\n"
               "                         the stream-JSON flags are appended (docs/api.md)\n"
               "  --log-level LEVEL      error, warning, notice, info (default) or debug\n"
               "  --log-format FORMAT    text (default) or json: one JSON object per line\n"
               "                         (also SBX_LOG_FORMAT; --log-json is --log-format json)\n"
               "  --version, --help\n"
               "\n"
               "The admin API key is read from SBX_API_KEY. Without one, sbxd only listens on loopback.\n");
}

static int parse_listen(const char *s, char **ret_host, int *ret_port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || colon[1] == '\0')
        return -EINVAL;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    *ret_host = xstrndup(h, hlen);
    *ret_port = (int)port;
    return 0;
}

static bool host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static int parse_log_level(const char *s)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", LOG_ERR},
                  {"warning", LOG_WARNING},
                  {"notice", LOG_NOTICE},
                  {"info", LOG_INFO},
                  {"debug", LOG_DEBUG}};
    for (size_t i = 0; i < ELEMENTSOF(levels); i++)
        if (strcmp(s, levels[i].name) == 0)
            return levels[i].level;
    return -EINVAL;
}

/* sbx-shim and sbx-init are installed next to sbxd. */
static char *sibling_binary(const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return NULL;
    self[n] = '\0';
    return xasprintf("%s/%s", dirname(self), name);
}

static void on_stop_signal(struct loop *loop, int signo)
{
    log_notice("received signal %d, shutting down", signo);
    loop_stop(loop);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"ephemeral", no_argument, NULL, 'e'},
        {"max-sandboxes", required_argument, NULL, 'm'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-json", no_argument, NULL, 'J'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"warm", required_argument, NULL, 'W'},
        {"log-format", required_argument, NULL, 'F'},
        {"max-image-mb", required_argument, NULL, 'I'},
        {"max-layer-mb", required_argument, NULL, 'Y'},
        {"service-domain", required_argument, NULL, 'S'},
        {"dns-upstream", required_argument, NULL, 'N'},
        {"egress-subnet", required_argument, NULL, 'E'},
        {"pull-stall-seconds", required_argument, NULL, 'P'},
        {"agent-command", required_argument, NULL, 'A'},
        {"console-dir", required_argument, NULL, 'C'},
        {},
    };
    /* Descriptors inherited from whoever started us (beyond stdio) would otherwise live on in every
     * shim and keep their other ends waiting for EOF. */
    (void)close_range(3, ~0u, 0);
    const char *listen = "127.0.0.1:7070", *data_dir = "/var/lib/sbx";
    struct daemon d = {.max_sandboxes = 256};
    unsigned warm = 2;
    const char *dns_upstream = NULL, *egress_subnet = NULL;
    struct snapshot_limits snap_limits = {
        .max_image_bytes = 8192ULL << 20,
        .max_layer_bytes = 16384ULL << 20,
        .max_entries = 1000000,
        .pull_stall_s = 60,
    };
    int c;
    log_set_ident("sbxd");
    const char *log_format = getenv("SBX_LOG_FORMAT"); /* the flag, parsed below, wins */
    if (log_format && *log_format) {
        if (log_format_from_string(log_format) < 0) {
            fprintf(stderr, "sbxd: SBX_LOG_FORMAT must be text or json, got `%s`\n", log_format);
            return 2;
        }
        log_set_format(log_format_from_string(log_format));
    }
    while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'S':
            api_service_set_domain(optarg);
            break;
        case 'A':
            if (api_agents_set_command(optarg) < 0) {
                fprintf(stderr, "sbxd: --agent-command needs 1 to 64 words\n");
                return 2;
            }
            break;
        case 'C':
            api_console_set_dir(optarg);
            break;
        case 'N':
            dns_upstream = optarg;
            break;
        case 'E':
            egress_subnet = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'e':
            d.ephemeral = true;
            break;
        case 'W': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 64) {
                fprintf(stderr, "sbxd: --warm must be 0..64\n");
                return 2;
            }
            warm = (unsigned)v;
            break;
        }
        case 'I':
        case 'Y': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end || v < 1 || v > (1LL << 24)) {
                fprintf(stderr, "sbxd: --%s must be 1..16777216\n",
                        c == 'I' ? "max-image-mb" : "max-layer-mb");
                return 2;
            }
            *(c == 'I' ? &snap_limits.max_image_bytes : &snap_limits.max_layer_bytes) = (uint64_t)v << 20;
            break;
        }
        case 'P': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 3600) {
                fprintf(stderr, "sbxd: --pull-stall-seconds must be 1..3600\n");
                return 2;
            }
            snap_limits.pull_stall_s = v;
            break;
        }
        case 'm': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "sbxd: --max-sandboxes must be 1..100000\n");
                return 2;
            }
            d.max_sandboxes = (size_t)v;
            break;
        }
        case 'L': {
            int level = parse_log_level(optarg);
            if (level < 0) {
                fprintf(stderr, "sbxd: unknown log level `%s`\n", optarg);
                return 2;
            }
            log_set_level(level);
            break;
        }
        case 'J':
            log_set_json(1);
            break;
        case 'F':
            if (log_format_from_string(optarg) < 0) {
                fprintf(stderr, "sbxd: --log-format must be text or json, got `%s`\n", optarg);
                return 2;
            }
            log_set_format(log_format_from_string(optarg));
            break;
        case 'V':
            printf("sbxd %s\n", SBX_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    _cleanup_free_ char *host = NULL;
    int port;
    if (parse_listen(listen, &host, &port) < 0) {
        fprintf(stderr, "sbxd: --listen must be HOST:PORT, got `%s`\n", listen);
        return 2;
    }
    const char *key = getenv("SBX_API_KEY");
    d.api_key = key && *key ? xstrdup(key) : NULL;
    if (!d.api_key && !host_is_loopback(host)) {
        log_error("refusing to listen on `%s` without an API key: set SBX_API_KEY", host);
        return 1;
    }
    if (geteuid() != 0) {
        log_error("sbxd must run as root (it creates namespaces, mounts and cgroups)");
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    int r = mkdir_p(data_dir, 0700);
    if (r < 0) {
        log_error_errno(r, "create data dir `%s`: %m", data_dir);
        return 1;
    }
    char real[PATH_MAX];
    if (!realpath(data_dir, real)) {
        log_error_errno(-errno, "resolve `%s`: %m", data_dir);
        return 1;
    }
    d.data_dir = xstrdup(real);
    d.sandboxes_dir = xasprintf("%s/sandboxes", d.data_dir);
    d.seccomp_path = xasprintf("%s/seccomp.bpf", d.data_dir);
    d.shim_path = sibling_binary("sbx-shim");
    d.init_path = sibling_binary("sbx-init");
    if (!d.shim_path || access(d.shim_path, X_OK) < 0 || access(d.init_path, R_OK) < 0) {
        log_error("sbx-shim and sbx-init must be installed next to sbxd");
        return 1;
    }
    if ((r = mkdir_p(d.sandboxes_dir, 0700)) < 0) {
        log_error_errno(r, "create `%s`: %m", d.sandboxes_dir);
        return 1;
    }

    /* One daemon per data dir: the lock is held for the life of the process. */
    _cleanup_free_ char *lock_path = xasprintf("%s/sbxd.lock", d.data_dir);
    _cleanup_close_ int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        log_error_errno(-errno, "lock `%s` (is another sbxd using this data dir?): %m", lock_path);
        return 1;
    }

    sbx_error err = {0};
    _cleanup_free_ char *db_path = xasprintf("%s/sbx.db", d.data_dir);
    if (store_open(db_path, &d.store, &err) < 0 || keys_load(&d, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    /* The seccomp profile is compiled once per daemon start; every sandbox loads the raw BPF. */
    if (runtime_seccomp_export(d.seccomp_path, &err) < 0) {
        log_error("seccomp: %s", err.msg);
        return 1;
    }

    if (loop_new(&d.loop) < 0) {
        log_error("create event loop: out of resources");
        return 1;
    }
    loop_signal(d.loop, SIGTERM, on_stop_signal);
    loop_signal(d.loop, SIGINT, on_stop_signal);

    if (snapshot_init(&d, &snap_limits, &err) < 0) {
        log_error("snapshots: %s", err.msg);
        return 1;
    }
    if (volume_init(&d, &err) < 0) {
        log_error("volumes: %s", err.msg);
        return 1;
    }
    if (egress_init(&d, dns_upstream, egress_subnet, &err) < 0) {
        log_error("egress: %s", err.msg);
        return 1;
    }
    if (sandbox_recover_all(&d, &err) < 0)
        log_warning("recover sandboxes: %s, ignoring", err.msg);
    /* After recovery: the firewall rules of the sandboxes still up come back in one transaction. */
    if (egress_start(&d, &err) < 0)
        log_warning("egress: %s; egress sandboxes have no network until restarted", err.msg);
    if (checkpoint_init(&d, &err) < 0) {
        log_error("checkpoints: %s", err.msg);
        return 1;
    }

    if (api_start(&d, host, port, &err) < 0) {
        log_error("listen on %s: %s", listen, err.msg);
        return 1;
    }
    log_notice("sbxd %s listening on %s (data dir %s%s, %zu sandboxes recovered, warm pool %u)", SBX_VERSION,
               listen, d.data_dir, d.ephemeral ? ", ephemeral" : "", d.n_sandboxes, warm);
    warm_start(&d, warm);
    lifecycle_start(&d);

    loop_run(d.loop);

    api_stop(&d);
    lifecycle_stop(&d);
    sandbox_create_abort_all(&d); /* half-built sandboxes: nobody has their id yet */
    checkpoint_done(&d);          /* after the creates: a fork waits for its own */
    warm_stop(&d);                /* warm sandboxes belong to nobody: never kept */
    if (d.ephemeral) {
        log_notice("ephemeral: destroying %zu sandboxes", d.n_sandboxes);
        sandbox_delete_all(&d);
    }
    egress_done(&d); /* its table goes with the last egress sandbox; kept sandboxes keep their rules */
    volume_done(&d); /* all unmounted when ephemeral; those a kept sandbox mounts stay mounted */
    /* Kept sandboxes run on under their shims; drop our references only. */
    while (d.sandboxes) {
        struct sandbox *sb = d.sandboxes;
        d.sandboxes = sb->next;
        sandbox_unref(sb);
    }
    snapshot_done(&d); /* imports in progress are killed; the next start marks them failed */
    loop_free(d.loop);
    keys_free(&d);
    store_close(d.store);
    free(d.data_dir);
    free(d.sandboxes_dir);
    free(d.seccomp_path);
    free(d.shim_path);
    free(d.init_path);
    free(d.api_key);
    log_notice("stopped");
    return 0;
}
