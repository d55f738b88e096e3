"""Agent sessions through the Python SDK (sync and asyncio) against a real sbxd, with
tests/helpers/fake_agent.py standing in for the Claude Code CLI: start, events, follow-ups, interrupt,
live configuration, attach with replay from an offset, a dropped connection bridged, kill, typed errors."""
import asyncio
import os
import time

import pytest

import sbx
from conftest import ADMIN_KEY, SOURCE
from sbx import errors

FAKE = os.path.join(SOURCE, "tests", "helpers", "fake_agent.py")
COMMAND = ["python3", "/root/fake_agent.py"]


def put_agent(sb):
    with open(FAKE, "rb") as f:
        sb.write("/root/fake_agent.py", f.read())


def test_agent_session_sync(sb):
    put_agent(sb)
    s = sb.agent("hello", command=COMMAND, model="m1", env={"ANTHROPIC_API_KEY": "sk-sdk-secret"})
    assert s.id.startswith("agt_")
    evs = []
    for ev in s:
        evs.append(ev)
        if ev.is_result:
            break
    assert [e.type for e in evs] == ["system", "assistant", "result"]
    assert evs[0].data["model"] == "m1" and evs[1].assistant_text == "echo: hello"
    assert s.offset == evs[-1].next_offset

    s.send("second")
    r = s.result()
    assert r.data["result"] == "echo: second"

    # Live configuration, then a turn that shows it.
    info = s.update(model="m2", permission_mode="plan")
    assert info.model == "m2" and info.permission_mode == "plan"
    s.send("config")
    assert '"model": "m2"' in s.result().data["result"]

    # Interrupt a long turn.
    s.send("slow")
    for ev in s:
        if ev.type == "assistant":
            break
    s.interrupt()
    assert s.result().subtype == "interrupted"

    # A second handle from an offset replays from there.
    other = sb.attach_agent(s.id, from_offset=evs[1].offset)
    first = next(iter(other))
    assert first.offset == evs[1].offset and first.assistant_text == "echo: hello"

    info = s.info()
    assert info.running and info.env_keys == ["ANTHROPIC_API_KEY"] and "sk-sdk-secret" not in str(info.raw)
    assert [a.id for a in sb.agents()] == [s.id]
    deadline = time.monotonic() + 10
    while s.info().turns < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.info().turns == 4

    s.kill()
    final = s.wait()
    assert final.state == "exited" and final.exit_code == 137
    with pytest.raises(errors.ConflictError):
        s.send("too late")


def test_agent_errors_sync(sb):
    with pytest.raises(errors.CommandNotFoundError):
        sb.agent("x", command=["/nonexistent/agent"])
    with pytest.raises(errors.NotFoundError):
        sb.attach_agent("agt_missing")
    with pytest.raises(errors.TooLargeError):
        sb.agent("x" * (256 * 1024 + 1), command=COMMAND)
    with pytest.raises(errors.InvalidArgumentError):
        sb.agent("x", command=COMMAND, cwd="relative")


def test_agent_stream_survives_dropped_connection(daemon, proxy):
    with sbx.SandboxClient(proxy.url, api_key=ADMIN_KEY, retry_timeout=10) as c:
        sb = c.create_sandbox()
        try:
            put_agent(sb)
            s = sb.agent("one", command=COMMAND)
            assert s.result().data["result"] == "echo: one"
            s.send("slow")
            it = iter(s)
            assert next(it).type == "assistant"
            proxy.drop()  # the stream's connection dies mid-turn
            s.interrupt()
            rest = []
            for ev in it:
                rest.append(ev)
                if ev.is_result:
                    break
            assert rest[-1].subtype == "interrupted"
            offsets = [e.offset for e in rest]
            assert offsets == sorted(set(offsets))  # nothing delivered twice
        finally:
            sb.delete(missing_ok=True)


def test_agent_session_async(daemon):
    async def main():
        async with sbx.AsyncSandboxClient(daemon.url, api_key=ADMIN_KEY) as ac:
            async with ac.sandbox() as sb:
                with open(FAKE, "rb") as f:
                    await sb.write("/root/fake_agent.py", f.read())
                s = await sb.agent("hi", command=COMMAND)
                r = await s.result()
                assert r.data["result"] == "echo: hi"
                await s.send("slow")
                async for ev in s:
                    if ev.type == "assistant":
                        break
                await s.interrupt(method="signal")
                assert (await s.result()).subtype == "interrupted"
                other = await sb.attach_agent(s.id)
                seen = []
                async for ev in other:
                    seen.append(ev.type)
                    if ev.is_result:
                        break
                assert seen == ["system", "assistant", "result"]
                assert [a.id for a in await sb.agents()] == [s.id]
                info = await s.update(model="m9")
                assert info.model == "m9"
                await s.kill()
                assert (await s.wait()).exit_code == 137
                with pytest.raises(errors.CommandNotFoundError):
                    await sb.agent("x", command="/nonexistent/agent")

    asyncio.run(asyncio.wait_for(main(), 120))
