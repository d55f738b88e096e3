"""Registries for the TypeScript SDK's pull tests (sdk/typescript/test/snapshot_sources.test.ts), which have
no Python of their own: starts Debian's docker-registry on loopback the way tests/e2e/test_registry_pull.py
does (its Registry and TokenFront, imported), pushes images built with tests/imagebuild.py, puts a
rate-limiting proxy (tests/sdk_python/throttle.py) in front so a pull lasts long enough to report progress,
prints one JSON line describing it all, then keeps everything up until stdin closes (or SIGTERM/SIGINT).
Run it with /usr/bin/python3 (the e2e module imports pytest)."""
import json
import os
import signal
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TESTS, os.path.join(TESTS, "e2e"), os.path.join(TESTS, "sdk_python")]

import imagebuild as ib  # noqa: E402
from test_registry_pull import Registry, TokenFront  # noqa: E402
from throttle import Throttle  # noqa: E402

NOISE = 2 << 20  # bytes of random data in the app layer: what makes the download take time when throttled


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stop = []
    try:
        reg = Registry()
        stop.append(reg.stop)
        base = ib.busybox_layer().bytes()
        app = (ib.Layer().dir("app").file("app/hello", "hello from the registry\n")
               .file("app/noise", os.urandom(NOISE)).bytes())
        reg.push_image("sdk/app", "v1", [base, app], env=["PATH=/bin", "WHO=pulled"], workdir="/app")
        small = ib.Layer().file("etc/motd", "by digest\n").bytes()
        digest, _, _, _ = reg.push_image("sdk/small", "v1", [base, small])
        reg.push_image("sbx/tok", "v1", [base, ib.Layer().file("tok", "bearer\n").bytes()])
        private = Registry(htpasswd=True)
        stop.append(private.stop)
        private.push_image("sdk/private", "v1", [base, ib.Layer().file("private", "basic\n").bytes()])
        front = TokenFront(reg.host)
        stop.append(front.stop)
        slow = Throttle(reg.port, 2 << 20)  # 2 MiB/s
        stop.append(slow.close)
        print(json.dumps({
            "host": reg.host, "slow_host": slow.host, "private_host": private.host,
            "user": private.auth[0], "password": private.auth[1],
            "token_host": f"127.0.0.1:{front.port}", "token": front.token,
            "app_layers": ["sha256:" + ib.sha256(base), "sha256:" + ib.sha256(app)], "noise": NOISE,
            "small_digest": digest,
        }), flush=True)
        try:
            sys.stdin.read()  # until the test closes our stdin (or dies)
        except KeyboardInterrupt:
            pass
    finally:
        for f in reversed(stop):
            f()


if __name__ == "__main__":
    main()
