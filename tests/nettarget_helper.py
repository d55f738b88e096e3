"""Network targets for the JavaScript egress tests (sdk/typescript/test/network.test.ts,
tests/compat_e2b/network.test.mjs), which have no Python of their own: sets up tests/nettarget.py's
Target (a network namespace with TCP hello servers) and a Resolver (fake upstream DNS) answering `names` (argv: NAME=INDEX, INDEX into the target's addresses),
prints one JSON line {net, addrs, port, sbxd_args, probe}, then keeps them up until stdin closes (or
SIGTERM/SIGINT), and removes them. Needs root (ip netns)."""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nettarget import PROBE, Resolver, Target, egress_args  # noqa: E402


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Target() as t:
        names = {}
        for a in sys.argv[1:]:
            name, idx = a.split("=", 1)
            names[name] = t.addrs[int(idx)]
        with Resolver(names) as r:
            print(json.dumps({"net": t.net, "addrs": t.addrs, "port": t.PORT, "sbxd_args": egress_args(r),
                              "probe": PROBE}), flush=True)
            try:
                sys.stdin.read()  # until the test closes our stdin (or dies)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
