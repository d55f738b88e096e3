"""Shared by the sync and async SDK tests."""
import os
import signal
import subprocess
import tempfile

from sbxtest import Daemon, force_cleanup, leftovers

N = 60
# Numbered lines on both streams, ~1.5 s in all: long enough to cut connections in the middle.
PRODUCER = f"for i in $(seq 1 {N}); do echo line-$i; echo err-$i >&2; sleep 0.025; done"
EXPECTED_OUT = "".join(f"line-{i}\n" for i in range(1, N + 1))
EXPECTED_ERR = "".join(f"err-{i}\n" for i in range(1, N + 1))
# Slower, for the restart tests: the daemon is killed and restarted while it still runs.
SLOW_N = 40
SLOW_PRODUCER = f"for i in $(seq 1 {SLOW_N}); do echo slow-$i; sleep 0.1; done"
SLOW_EXPECTED = "".join(f"slow-{i}\n" for i in range(1, SLOW_N + 1))


def check_contiguous(chunks, start=None):
    """Each chunk starts exactly where the previous chunk of its stream ended: nothing twice, no gap."""
    pos = dict(start or {"stdout": 0, "stderr": 0})
    for c in chunks:
        assert c.offset == pos[c.stream], (c.stream, c.offset, pos[c.stream])
        pos[c.stream] += len(c.raw)
    return pos


class RestartableDaemon:
    """A non-ephemeral sbxd on a data dir of its own that can be killed (-9) and restarted on the same
    port; close() cleans up like tests/e2e/test_crash_safety.py does."""

    def __init__(self, api_key):
        self.api_key = api_key
        self.data_dir = tempfile.mkdtemp(prefix="sbx-sdk-restart-", dir="/var/tmp")
        self.d = Daemon(api_key=api_key, ephemeral=False, data_dir=self.data_dir, extra_args=["--warm", "0"]).start()
        self.old = []

    @property
    def url(self):
        return self.d.url

    def kill9(self):
        self.d.stop(signal.SIGKILL)
        self.old.append(self.d)

    def restart(self):
        d2 = Daemon(api_key=self.api_key, ephemeral=False, data_dir=self.data_dir, extra_args=["--warm", "0"])
        d2.port = self.d.port
        self.d = d2.start()

    def close(self):
        for x in self.old + [self.d]:
            x.stop()
        try:
            # An ephemeral sbxd on the same dir recovers every sandbox left and destroys them on SIGTERM.
            Daemon(ephemeral=True, data_dir=self.data_dir, extra_args=["--warm", "0"]).start().stop()
        finally:
            left = leftovers(self.data_dir, [])
            left.pop("files", None)
            if left:
                force_cleanup(self.data_dir)
            else:
                subprocess.run(["rm", "-rf", "--one-file-system", self.data_dir], check=False)
        return left


def unused_port_url():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def local_tmp(name):
    d = tempfile.mkdtemp(prefix="sbx-sdk-")
    return os.path.join(d, name)
