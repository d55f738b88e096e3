/* Egress networking of a sandbox (network mode `egress`): one veth pair, made and configured through
 * rtnetlink directly. ip(8) costs ~4 ms a call here and this needs six; each netlink request is a few
 * microseconds of kernel work.
 *
 * Layout: the host end (a unique name, see runtime.h) gets the first address of the sandbox's /30 and
 * the sandbox end, `eth0`, the second, with a default route through the host end. Routed, not bridged:
 * every packet a sandbox sends passes the host's forward or input hook, where sbxd's nftables rules
 * decide (daemon/egress.c); sandboxes share no L2 segment, so one cannot ARP-spoof or reach another
 * without the host's rules seeing it.
 *
 * The peer is created straight into the sandbox's namespace (IFLA_NET_NS_FD), so it never exists in the
 * host's; its side is configured from a netlink socket opened inside that namespace (setns just for
 * socket(), as netops.c does for connections). When the namespace goes (the sandbox stops), the kernel
 * deletes both ends: nothing here needs undoing then. */
#include "runtime/runtime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"

#define NL_BUF 1024

struct nl_msg {
    union {
        struct nlmsghdr h;
        char buf[NL_BUF];
    };
};

static void *nl_tail(struct nl_msg *m)
{
    return m->buf + NLMSG_ALIGN(m->h.nlmsg_len);
}

static void nl_init(struct nl_msg *m, uint16_t type, uint16_t flags, const void *hdr, size_t hdr_len)
{
    memset(m, 0, sizeof(*m));
    m->h.nlmsg_type = type;
    m->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    m->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(hdr_len);
    memcpy(NLMSG_DATA(&m->h), hdr, hdr_len);
}

/* Every message here is far below NL_BUF; an overflow is a bug, not an input. */
static struct rtattr *nl_put(struct nl_msg *m, uint16_t type, const void *data, size_t len)
{
    size_t need = NLMSG_ALIGN(m->h.nlmsg_len) + RTA_SPACE(len);
    if (need > sizeof(m->buf))
        abort();
    struct rtattr *a = nl_tail(m);
    a->rta_type = type;
    a->rta_len = (uint16_t)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    m->h.nlmsg_len = (uint32_t)need;
    return a;
}

static void nl_put_str(struct nl_msg *m, uint16_t type, const char *s)
{
    nl_put(m, type, s, strlen(s) + 1);
}

static void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v)
{
    nl_put(m, type, &v, sizeof(v));
}

static struct rtattr *nl_nest_begin(struct nl_msg *m, uint16_t type)
{
    return nl_put(m, type, NULL, 0);
}

static void nl_nest_end(struct nl_msg *m, struct rtattr *nest)
{
    nest->rta_len = (uint16_t)((char *)nl_tail(m) - (char *)nest);
}

/* Sends m and waits for its acknowledgement: 0 or the kernel's negative errno. */
static int nl_transact(int fd, struct nl_msg *m)
{
    static uint32_t seq;
    m->h.nlmsg_seq = ++seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, m->buf, m->h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -errno;
    for (;;) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != m->h.nlmsg_seq)
                continue;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return e->error; /* 0 = the acknowledgement */
            }
        }
    }
}

static int nl_socket(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    return fd < 0 ? -errno : fd;
}

static int veth_create(int fd, const char *host_if, const char *peer_if, int netns_fd)
{
    struct nl_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    nl_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    nl_put_str(&m, IFLA_IFNAME, host_if);
    struct rtattr *linkinfo = nl_nest_begin(&m, IFLA_LINKINFO);
    nl_put_str(&m, IFLA_INFO_KIND, "veth");
    struct rtattr *data = nl_nest_begin(&m, IFLA_INFO_DATA);
    struct rtattr *peer = nl_nest_begin(&m, VETH_INFO_PEER);
    struct ifinfomsg peer_ifi = {.ifi_family = AF_UNSPEC};
    /* VETH_INFO_PEER carries an ifinfomsg, then the peer's own attributes. */
    memcpy(nl_tail(&m), &peer_ifi, sizeof(peer_ifi));
    m.h.nlmsg_len += NLMSG_ALIGN(sizeof(peer_ifi));
    nl_put_str(&m, IFLA_IFNAME, peer_if);
    nl_put_u32(&m, IFLA_NET_NS_FD, (uint32_t)netns_fd);
    nl_nest_end(&m, peer);
    nl_nest_end(&m, data);
    nl_nest_end(&m, linkinfo);
    return nl_transact(fd, &m);
}

static int link_delete(int fd, const char *name)
{
    struct nl_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    nl_init(&m, RTM_DELLINK, 0, &ifi, sizeof(ifi));
    nl_put_str(&m, IFLA_IFNAME, name);
    return nl_transact(fd, &m);
}

static int link_up(int fd, int ifindex)
{
    struct nl_msg m;
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    nl_init(&m, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    return nl_transact(fd, &m);
}

static int addr_add(int fd, int ifindex, struct in_addr addr, unsigned prefix)
{
    struct nl_msg m;
    struct ifaddrmsg ifa = {.ifa_family = AF_INET,
                            .ifa_prefixlen = (uint8_t)prefix,
                            .ifa_scope = RT_SCOPE_UNIVERSE,
                            .ifa_index = (uint32_t)ifindex};
    nl_init(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof(ifa));
    nl_put(&m, IFA_LOCAL, &addr, sizeof(addr));
    nl_put(&m, IFA_ADDRESS, &addr, sizeof(addr));
    return nl_transact(fd, &m);
}

static int route_default(int fd, int ifindex, struct in_addr gateway)
{
    struct nl_msg m;
    struct rtmsg rt = {.rtm_family = AF_INET,
                       .rtm_table = RT_TABLE_MAIN,
                       .rtm_protocol = RTPROT_BOOT,
                       .rtm_scope = RT_SCOPE_UNIVERSE,
                       .rtm_type = RTN_UNICAST};
    nl_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof(rt));
    nl_put(&m, RTA_GATEWAY, &gateway, sizeof(gateway));
    nl_put_u32(&m, RTA_OIF, (uint32_t)ifindex);
    return nl_transact(fd, &m);
}

/* No IPv6 on either end (not even a link-local address): sandboxes are offered IPv4 only, and an
 * interface without IPv6 has nothing for the firewall's IPv6 drop to catch. The sysctl is the namespace's
 * of the caller. A kernel without IPv6 has no such file: nothing to do. */
static int disable_ipv6(const char *ifname)
{
    char path[128];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    return write(fd, "1", 1) == 1 ? 0 : -errno;
}

/* The sandbox's side, from inside its namespace: eth0's address, eth0 up, the default route. The
 * caller is in the sandbox's namespace. */
static int configure_inside(const struct runtime_net_config *cfg, sbx_error *err)
{
    _cleanup_close_ int fd = nl_socket();
    if (fd < 0)
        return sbx_error_set(err, fd, "netlink socket in the sandbox: %s", strerror(-fd));
    int ifindex = (int)if_nametoindex(RUNTIME_NET_SANDBOX_IF);
    if (ifindex == 0)
        return sbx_error_set(err, -errno, "find %s in the sandbox: %m", RUNTIME_NET_SANDBOX_IF);
    int r;
    if ((r = disable_ipv6(RUNTIME_NET_SANDBOX_IF)) < 0)
        return sbx_error_set(err, r, "disable IPv6 on %s: %s", RUNTIME_NET_SANDBOX_IF, strerror(-r));
    if ((r = addr_add(fd, ifindex, cfg->sandbox_addr, cfg->prefix)) < 0)
        return sbx_error_set(err, r, "address of %s: %s", RUNTIME_NET_SANDBOX_IF, strerror(-r));
    if ((r = link_up(fd, ifindex)) < 0)
        return sbx_error_set(err, r, "bring %s up: %s", RUNTIME_NET_SANDBOX_IF, strerror(-r));
    if ((r = route_default(fd, ifindex, cfg->host_addr)) < 0)
        return sbx_error_set(err, r, "default route in the sandbox: %s", strerror(-r));
    return 0;
}

int runtime_net_attach(int sandbox_ns, int own_ns, const struct runtime_net_config *cfg, sbx_error *err)
{
    _cleanup_close_ int fd = nl_socket();
    if (fd < 0)
        return sbx_error_set(err, fd, "netlink socket: %s", strerror(-fd));
    int r = veth_create(fd, cfg->host_if, RUNTIME_NET_SANDBOX_IF, sandbox_ns);
    if (r < 0)
        return sbx_error_set(err, r, "create veth %s: %s", cfg->host_if, strerror(-r));
    int ifindex = (int)if_nametoindex(cfg->host_if);
    if (ifindex == 0) {
        r = sbx_error_set(err, -errno, "find %s: %m", cfg->host_if);
        goto undo;
    }
    if ((r = disable_ipv6(cfg->host_if)) < 0) {
        sbx_error_set(err, r, "disable IPv6 on %s: %s", cfg->host_if, strerror(-r));
        goto undo;
    }
    if ((r = addr_add(fd, ifindex, cfg->host_addr, cfg->prefix)) < 0) {
        sbx_error_set(err, r, "address of %s: %s", cfg->host_if, strerror(-r));
        goto undo;
    }
    if ((r = link_up(fd, ifindex)) < 0) {
        sbx_error_set(err, r, "bring %s up: %s", cfg->host_if, strerror(-r));
        goto undo;
    }
    if (setns(sandbox_ns, CLONE_NEWNET) < 0) {
        r = sbx_error_set(err, -errno, "enter the sandbox's network namespace: %m");
        goto undo;
    }
    r = configure_inside(cfg, err);
    if (setns(own_ns, CLONE_NEWNET) < 0) {
        /* Staying in the sandbox's namespace would make every later socket of ours one of its sockets. */
        log_error_errno(-errno, "setns back to our own network namespace: %m");
        abort();
    }
    if (r < 0)
        goto undo;
    return ifindex;

undo:
    (void)link_delete(fd, cfg->host_if); /* takes the peer with it */
    return r;
}
