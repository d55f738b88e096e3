"""Network mode egress through the SDK, sync and asyncio: create with a policy (each accepted form), read it
back from the sandbox, change it on a live sandbox, and check what the sandbox can really reach. The
targets are TCP servers in a network namespace on this machine and sbxd's upstream DNS is a fake resolver
(tests/nettarget.py); the sbxd here is one of its own, started with egress arguments (its own subnet,
hence its own nftables table), separate from the session daemon of the other SDK tests."""
import asyncio
import functools
import ipaddress
import json

import pytest

import sbx
from conftest import ADMIN_KEY
from nettarget import PROBE, Resolver, Target, egress_args
from sbx import EgressPolicy, Network, errors
from sbxtest import Daemon

PORT = Target.PORT


def arun(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 120))
    return wrapper


@pytest.fixture(scope="module")
def target():
    with Target() as t:
        yield t


@pytest.fixture(scope="module")
def resolver(target):
    with Resolver({"one.test": target.addrs[0], "two.test": target.addrs[1]}) as r:
        yield r


@pytest.fixture(scope="module")
def net_daemon(resolver):
    with Daemon(api_key=ADMIN_KEY, extra_args=["--warm", "2", *egress_args(resolver)]) as d:
        yield d
        assert d.stop() == 0, f"sbxd did not exit cleanly: {d.read_log()}"


@pytest.fixture
def net_client(net_daemon):
    with sbx.SandboxClient(net_daemon.url, api_key=ADMIN_KEY, retry_timeout=10) as c:
        yield c


def subnet(daemon):
    return ipaddress.ip_network(daemon.extra_args[daemon.extra_args.index("--egress-subnet") + 1])


def hello(addr):
    return f"hello from {addr}"


def refused(res):
    # Denied connections fail at once (ICMP admin-prohibited), never by the probe's 3 s timeout.
    return res.startswith("connect:") and res != "connect: timeout"


def probe_args(*targets):
    return ["python3", "-c", PROBE, *targets]


def probe(sb, *targets):
    """What each "host:port" gives from inside the sandbox, through the SDK's run()."""
    r = sb.run(probe_args(*targets), timeout=60)
    assert r.exit_code == 0, r
    return json.loads(r.stdout)


async def aprobe(sb, *targets):
    r = await sb.run(probe_args(*targets), timeout=60)
    assert r.exit_code == 0, r
    return json.loads(r.stdout)


# --- sync ---------------------------------------------------------------------------------------------


def test_default_network_is_none(net_client):
    with net_client.sandbox() as sb:
        assert sb.network == Network("none")
        assert sb.network.egress is None and sb.network.address is None
        assert sb.run("ls /sys/class/net").stdout.split() == ["lo"]
        # The mode is fixed at create: a policy cannot be given to a sandbox without egress.
        with pytest.raises(errors.InvalidArgumentError):
            sb.update(egress=EgressPolicy(default="allow"))
        assert sb.refresh().network.mode == "none"


def test_create_with_policy_then_update_it(net_client, net_daemon, target, resolver):
    a0, a1 = target.addrs
    t0, t1, one, two = f"{a0}:{PORT}", f"{a1}:{PORT}", f"one.test:{PORT}", f"two.test:{PORT}"
    with net_client.sandbox(network=EgressPolicy(allow=[a0])) as sb:
        n = sb.network
        assert n.mode == "egress"
        assert n.egress == EgressPolicy("deny", [a0], [])
        assert ipaddress.ip_address(n.address) in subnet(net_daemon)
        assert sb.raw["network"]["egress"] == {"default": "deny", "allow": [a0], "deny": []}
        assert net_client.get_sandbox(sb.id).network == n
        assert [s.network for s in net_client.list_sandboxes() if s.id == sb.id] == [n]
        assert sb.run("ls /sys/class/net").stdout.split() == ["eth0", "lo"]

        res = probe(sb, t0, t1, one)
        assert res[t0] == hello(a0)
        assert refused(res[t1]), res
        assert res[one].startswith("resolve:"), res       # no name is allowed: sbxd answers NXDOMAIN

        # Sandbox.update(egress=...) replaces the whole policy, at once: a0 is now denied (deny wins
        # over the default), two.test is allowed by name and reached through sbxd's DNS.
        asked = len(resolver.asked)
        got = sb.update(egress=EgressPolicy(allow=["two.test"], deny=[a0]))
        assert got is sb
        assert sb.network.egress == EgressPolicy("deny", ["two.test"], [a0])
        assert sb.network.address == n.address                      # same sandbox, same address
        res = probe(sb, t0, two, one)
        assert refused(res[t0]), res
        assert res[two] == hello(a1)
        assert res[one].startswith("resolve:"), res
        assert resolver.asked[asked:] == ["two.test"]               # one.test never left sbxd

        # SandboxClient.update_sandbox with a dict in the API's form: default allow with one deny.
        other = net_client.update_sandbox(sb.id, egress={"default": "allow", "deny": [f"{a1}/32"]})
        assert other.network.egress == EgressPolicy("allow", [], [a1])   # sbxd writes a /32 as the address
        assert sb.refresh().network.egress == other.network.egress
        res = probe(sb, t0, t1, one)
        assert res[t0] == hello(a0) and res[one] == hello(a0)
        assert refused(res[t1]), res

        # Lifecycle fields and the policy change together in one PATCH.
        sb.update(idle_ttl_seconds=321, egress=EgressPolicy())
        assert sb.idle_ttl_seconds == 321 and sb.network.egress == EgressPolicy()
        res = probe(sb, t0, t1)
        assert refused(res[t0]) and refused(res[t1]), res


def test_network_forms(net_client, target):
    a0, a1 = target.addrs
    t0, t1 = f"{a0}:{PORT}", f"{a1}:{PORT}"
    # "egress": the default policy, deny everything.
    with net_client.sandbox(network="egress") as sb:
        assert sb.network.mode == "egress" and sb.network.egress == EgressPolicy("deny")
        res = probe(sb, t0, t1)
        assert refused(res[t0]) and refused(res[t1]), res
    # A Network (its egress may be a dict), and a dict in the API's form.
    for network in (Network("egress", {"default": "allow"}),
                    {"mode": "egress", "egress": {"default": "allow"}}):
        with net_client.sandbox(network=network) as sb:
            assert sb.network.egress == EgressPolicy("allow")
            res = probe(sb, t0, t1)
            assert res == {t0: hello(a0), t1: hello(a1)}, network
    # "none" explicitly.
    with net_client.sandbox(network="none", name="sdk-net-none") as sb:
        assert sb.network == Network("none")

    # Caught before any request: a string where a list belongs, a policy without mode egress, unknown fields.
    for bad in ({"egress": {"allow": [a0]}}, {"mode": "none", "egress": {}}, {"mode": "egress", "policy": {}},
                "bridge", 42, Network("none", EgressPolicy())):
        with pytest.raises(ValueError):
            net_client.create_sandbox(network=bad)
    with pytest.raises(ValueError):
        EgressPolicy(allow="pypi.org")
    with pytest.raises(ValueError):
        EgressPolicy(default="open")
    with pytest.raises(ValueError):
        net_client.update_sandbox("whatever", egress={"allow": [a0], "alow": []})
    # sbxd's own checks: IPv6 and malformed entries are 400.
    for entry in ("::1", "10.0.0.0/33", "not a domain!"):
        with pytest.raises(errors.InvalidArgumentError):
            net_client.create_sandbox(network=EgressPolicy(allow=[entry]))
    with net_client.sandbox(network="egress") as sb:
        with pytest.raises(errors.InvalidArgumentError):
            sb.update(egress=EgressPolicy(deny=["fe80::1"]))
        assert sb.refresh().network.egress == EgressPolicy()   # a refused update changes nothing


def test_policy_kept_across_stop_start_and_fork(net_client, target):
    a0, a1 = target.addrs
    t0, t1 = f"{a0}:{PORT}", f"{a1}:{PORT}"
    policy = EgressPolicy(allow=[f"{target.net}.0/24"], deny=[a1])
    with net_client.sandbox(network=policy) as sb:
        sb.stop()
        assert sb.network.mode == "egress" and sb.network.egress == policy
        assert sb.network.address is None                      # an address only while it runs
        sb.start()
        assert sb.network.egress == policy and sb.network.address
        res = probe(sb, t0, t1)
        assert res[t0] == hello(a0) and refused(res[t1]), res

        (fork,) = sb.fork()
        with fork:
            assert fork.network.egress == policy
            assert fork.network.address and fork.network.address != sb.network.address
            res = probe(fork, t0, t1)
            assert res[t0] == hello(a0) and refused(res[t1]), res
            # Policies are per sandbox: changing the fork's leaves the original's alone.
            fork.update(egress=EgressPolicy())
            assert refused(probe(fork, t0)[t0])
            assert probe(sb, t0)[t0] == hello(a0)


# --- asyncio ------------------------------------------------------------------------------------------


@arun
async def test_network_async(net_daemon, target):
    a0, a1 = target.addrs
    t0, t1, two = f"{a0}:{PORT}", f"{a1}:{PORT}", f"two.test:{PORT}"
    async with sbx.AsyncSandboxClient(net_daemon.url, api_key=ADMIN_KEY, transport="sse") as ac:
        async with ac.sandbox(network=EgressPolicy(allow=[a1])) as sb:
            assert sb.network.mode == "egress" and sb.network.egress == EgressPolicy(allow=[a1])
            assert ipaddress.ip_address(sb.network.address) in subnet(net_daemon)
            assert (await ac.get_sandbox(sb.id)).network == sb.network
            res = await aprobe(sb, t0, t1)
            assert res[t1] == hello(a1) and refused(res[t0]), res

            got = await sb.update(egress={"allow": ["two.test", a0]})
            assert got is sb and sb.network.egress == EgressPolicy("deny", ["two.test", a0])
            res = await aprobe(sb, t0, two)
            assert res == {t0: hello(a0), two: hello(a1)}, res

            updated = await ac.update_sandbox(sb.id, egress=EgressPolicy())
            assert updated.network.egress == EgressPolicy()
            res = await aprobe(sb, t0, t1)
            assert refused(res[t0]) and refused(res[t1]), res

        async with ac.sandbox() as plain:
            assert plain.network == Network("none")
            with pytest.raises(errors.InvalidArgumentError):
                await plain.update(egress=EgressPolicy())
