"""Code contexts through the Python SDK (sync and asyncio) against a real sbxd: state between runs,
streamed output callbacks, values, rich outputs, errors, interrupt, list and delete."""
import asyncio
import struct
import threading
import time
import zlib

import pytest

import sbx
from conftest import ADMIN_KEY
from sbx import errors


def png_bytes():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x00\xff\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_python_context(sb):
    ctx = sb.create_context("python", cwd="/tmp", env={"WHO": "sdk"})
    assert isinstance(ctx, sbx.CodeContext) and ctx.language == "python" and ctx.info.cwd == "/tmp"
    out, err = [], []
    ex = ctx.run("import os, sys\nx = 40\nprint('hi', os.environ['WHO']); print('oops', file=sys.stderr)",
                 on_stdout=out.append, on_stderr=err.append)
    assert ex.ok and ex.stdout == "hi sdk\n" and ex.stderr == "oops\n" and ex.execution_count == 1, ex
    assert "".join(out) == "hi sdk\n" and "".join(err) == "oops\n"
    ex = ctx.run("x + 2")
    assert ex.text == "42" and ex.data == {"text/plain": "42"}
    assert ctx.run("os.getcwd()").text == "'/tmp'"
    sb.write("/tmp/g.png", png_bytes())
    shown = []
    ex = ctx.run("display_file('/tmp/g.png')\n{'k': 1}", on_display=shown.append)
    assert ex.png == png_bytes() and ex.images == [png_bytes()] and ex.text == "{'k': 1}"
    assert shown == ex.outputs and len(shown) == 1
    ex = ctx.run("raise KeyError('nope')")
    assert not ex.ok and ex.error.name == "KeyError" and "KeyError" in ex.error.traceback[-1], ex.error
    with pytest.raises(sbx.CellError) as ei:
        ex.raise_error()
    assert ei.value.execution is ex
    assert [c.id for c in sb.contexts()] == [ctx.id]
    assert sb.get_context(ctx.id).info.state == "idle"
    ctx.delete()
    ctx.delete(missing_ok=True)
    with pytest.raises(errors.NotFoundError):
        ctx.run("1")
    with pytest.raises(errors.NotFoundError):
        sb.get_context(ctx.id)


def test_interrupt_and_busy(sb):
    ctx = sb.create_context("node")
    ctx.run("var n = 1")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("ex", ctx.run("while (true) { n++ }")))
    t.start()
    deadline = time.monotonic() + 10
    while ctx.refresh().state != "busy" and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(errors.ConflictError) as ei:
        ctx.run("1")
    assert ei.value.code == "context_busy"
    assert ctx.interrupt() is True
    t.join(20)
    assert box["ex"].error.name == "KeyboardInterrupt"
    assert int(ctx.run("n").text) > 1  # the state survived the interrupt
    ex = ctx.run("while (true) {}", timeout=1)
    assert ex.timed_out and ex.error.name == "KeyboardInterrupt"


def test_bash_and_run_code(sb):
    ctx = sb.create_context("bash")
    assert ctx.run("cd /tmp; A=1").ok
    ex = ctx.run("echo $A $(pwd); exit 7")
    assert ex.stdout == "1 /tmp\n" and ex.context_ended and ex.error.name == "ContextEnded"
    with pytest.raises(errors.ConflictError) as ei:
        ctx.run("true")
    assert ei.value.code == "context_ended"
    assert sb.run_code("print(6 * 7)").stdout == "42\n"
    assert sb.run_code("[1, 2].map((x) => x * 2)", language="node").text == "[ 2, 4 ]"
    with pytest.raises(errors.InvalidArgumentError):
        sb.create_context("cobol")
    with sb.create_context("python") as c2:
        assert c2.run("1 + 1").text == "2"
    assert c2.id not in [c.id for c in sb.contexts()]  # deleted by the with block


def test_async_context(daemon):
    async def main():
        async with sbx.AsyncSandboxClient(daemon.url, api_key=ADMIN_KEY) as ac:
            async with await ac.create_sandbox() as asb:
                ctx = await asb.create_context("python")
                assert isinstance(ctx, sbx.AsyncCodeContext)
                got = []

                async def on_out(s):
                    got.append(s)

                ex = await ctx.run("y = [1, 2]\nprint('a')\nlen(y)", on_stdout=on_out)
                assert ex.text == "2" and "".join(got) == "a\n"
                assert (await ctx.run("y")).text == "[1, 2]"
                task = asyncio.ensure_future(ctx.run("import time\nwhile True: time.sleep(0.05)"))
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if (await ctx.refresh()).state == "busy":
                        break
                assert await ctx.interrupt() is True
                ex = await asyncio.wait_for(task, 20)
                assert ex.error.name == "KeyboardInterrupt"
                assert [c.id for c in await asb.contexts()] == [ctx.id]
                assert (await asb.get_context(ctx.id)).info.language == "python"
                assert (await asb.run_code("'x' * 3")).text == "'xxx'"
                async with await asb.create_context("bash") as c2:
                    assert (await c2.run("echo hi")).stdout == "hi\n"
                assert c2.id not in [c.id for c in await asb.contexts()]
                await ctx.delete()
                with pytest.raises(errors.NotFoundError):
                    await asb.get_context(ctx.id)

    asyncio.run(asyncio.wait_for(main(), 120))
