"""Agent sessions: a coding agent (the Claude Code CLI in stream-JSON mode, or any program speaking its
protocol) running inside a sandbox, as a session you talk to (docs/api.md, "Agent sessions").

>>> with SandboxClient() as client, client.sandbox() as sb:            # doctest: +SKIP
...     s = sb.agent("list the files in /root", env={"ANTHROPIC_API_KEY": key})
...     for ev in s:                      # events until the first result
...         print(ev.type, ev.assistant_text)
...         if ev.is_result:
...             break
...     s.send("now count them")
...     print(s.result().data["result"])
...     s.kill()

Events are the agent's own JSON lines (``ev.data``), each with the byte range of the agent's stdout it
came from (``offset``, ``next_offset``). A session handle remembers where it stopped reading, so iterating
again, or another client's ``sb.attach_agent(id, from_offset=...)``, resumes exactly there; a dropped
connection is bridged by reconnecting from that offset.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from . import errors
from ._async_http import NETWORK_ERRORS as _ASYNC_NETWORK_ERRORS
from ._common import Backoff, SSEParser, drop_none, seg, with_query
from ._sync_http import NETWORK_ERRORS as _SYNC_NETWORK_ERRORS
from ._sync_http import iter_body

# A stream that ends with an error event (its sandbox went away) is retried like a dropped connection.
_SYNC_RETRY = _SYNC_NETWORK_ERRORS + (EOFError,)
_ASYNC_RETRY = _ASYNC_NETWORK_ERRORS + (EOFError,)

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncSandbox
    from .client import Sandbox

__all__ = ["AgentEvent", "AgentInfo", "AgentSession", "AsyncAgentSession", "agent_body"]


@dataclass
class AgentEvent:
    """One message of a session's stream.

    ``kind`` is ``"event"`` (a JSON line from the agent, in ``data``), ``"text"`` (a line that is not a
    JSON object, in ``text``) or ``"stderr"`` (a chunk of the agent's stderr, when asked for).
    """

    kind: str
    offset: int
    next_offset: int
    data: Dict[str, Any] = field(default_factory=dict)
    text: Optional[str] = None

    @property
    def type(self) -> Optional[str]:
        """The agent event's ``type``: ``system``, ``assistant``, ``user``, ``result``, ``control_response``."""
        return self.data.get("type")

    @property
    def subtype(self) -> Optional[str]:
        return self.data.get("subtype")

    @property
    def is_result(self) -> bool:
        """A ``result`` event ends a turn (``subtype`` ``success``, ``interrupted``, ``error_max_turns``...)."""
        return self.kind == "event" and self.type == "result"

    @property
    def assistant_text(self) -> Optional[str]:
        """The text blocks of an ``assistant`` message joined, else None."""
        if self.type != "assistant":
            return None
        content = (self.data.get("message") or {}).get("content") or []
        parts = [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
        return "".join(parts) if parts else None


@dataclass
class AgentInfo:
    """A session's status (docs/api.md, "Agent object"). ``env_keys`` names the session's env; values
    are never sent back."""

    id: str
    sandbox_id: str
    state: str
    busy: bool
    turns: int
    prompts: int
    model: Optional[str]
    permission_mode: Optional[str]
    exit_code: Optional[int]
    session_id: Optional[str]
    events_offset: Optional[int]
    last_event_at: Optional[str]
    env_keys: List[str]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "AgentInfo":
        def opt_int(v: Any) -> Optional[int]:
            return int(v) if v is not None else None

        return cls(id=str(d.get("id", "")), sandbox_id=str(d.get("sandbox_id", "")), state=str(d.get("state", "")),
                   busy=bool(d.get("busy")), turns=int(d.get("turns") or 0), prompts=int(d.get("prompts") or 0),
                   model=d.get("model"), permission_mode=d.get("permission_mode"),
                   exit_code=opt_int(d.get("exit_code")), session_id=d.get("session_id"),
                   events_offset=opt_int(d.get("events_offset")), last_event_at=d.get("last_event_at"),
                   env_keys=list(d.get("env_keys") or []), raw=d)


def agent_body(prompt: Optional[str], *, model: Optional[str] = None, system_prompt: Optional[str] = None,
               allowed_tools: Optional[Sequence[str]] = None, permission_mode: Optional[str] = None,
               max_turns: Optional[int] = None, cwd: Optional[str] = None,
               mcp_servers: Optional[Mapping[str, Any]] = None, resume: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None, command: Union[str, Sequence[str], None] = None) -> Dict[str, Any]:
    """The JSON body of ``POST .../agents``."""
    return drop_none({
        "prompt": prompt, "model": model, "system_prompt": system_prompt,
        "allowed_tools": list(allowed_tools) if allowed_tools is not None else None,
        "permission_mode": permission_mode, "max_turns": max_turns, "cwd": cwd,
        "mcp_servers": dict(mcp_servers) if mcp_servers is not None else None, "resume": resume,
        "env": dict(env) if env is not None else None,
        "command": command if isinstance(command, str) or command is None else list(command),
    })


class _State:
    """Where a handle resumes (the next_offset of the last message it delivered) and the exit it saw."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.exit: Optional[Dict[str, Any]] = None

    def on_sse(self, name: str, data: str) -> Optional[AgentEvent]:
        if name == "exit":
            self.exit = json.loads(data)
            return None
        if name == "error":
            raise EOFError(data)
        if name not in ("event", "text", "stderr"):
            return None
        m = json.loads(data)
        if name == "stderr":
            return AgentEvent("stderr", int(m.get("offset") or 0), int(m.get("offset") or 0), text=m.get("data"))
        off, nxt = int(m["offset"]), int(m["next_offset"])
        if nxt <= self.offset:
            return None  # already delivered (a resend after reconnecting)
        self.offset = nxt
        if name == "text":
            return AgentEvent("text", off, nxt, text=m.get("text"))
        return AgentEvent("event", off, nxt, data=m.get("event") or {})


def _stream_path(base: str, offset: int, stderr: bool) -> str:
    return with_query(base + "/stream", {"offset": offset, "stderr": "true" if stderr else None})


class AgentSession:
    """A session of a blocking :class:`~sbx.Sandbox` (``sb.agent(...)``, ``sb.attach_agent(id)``)."""

    def __init__(self, sandbox: "Sandbox", agent_id: str, *, from_offset: int = 0,
                 info: Optional[Dict[str, Any]] = None, stderr: bool = False) -> None:
        self._sb = sandbox
        self._id = agent_id
        self._state = _State(from_offset)
        self._info = info or {}
        self._stderr = stderr
        self._path = f"{sandbox._path}/agents/{seg(agent_id)}"

    def __repr__(self) -> str:
        return f"<AgentSession {self._id} offset={self._state.offset} done={self.done}>"

    @property
    def id(self) -> str:
        return self._id

    @property
    def offset(self) -> int:
        """Where this handle resumes reading (give it to ``attach_agent`` elsewhere)."""
        return self._state.offset

    @property
    def done(self) -> bool:
        """Whether this handle has seen the session's exit."""
        return self._state.exit is not None

    @property
    def exit_info(self) -> Optional[AgentInfo]:
        return AgentInfo.from_json(self._state.exit) if self._state.exit else None

    def __iter__(self) -> Iterator[AgentEvent]:
        return self.events()

    def events(self) -> Iterator[AgentEvent]:
        """Yields events from this handle's offset, live, until the session exits. Breaking out and
        iterating again continues where it stopped."""
        st = self._state
        backoff = Backoff(self._sb._client._cfg.retry_timeout)
        while st.exit is None:
            try:
                conn, r = self._sb._http.stream(_stream_path(self._path, st.offset, self._stderr),
                                                headers={"Accept": "text/event-stream"})
            except _SYNC_RETRY as e:
                self._pause(backoff, e)
                continue
            try:
                parser = SSEParser()
                for b in iter_body(r):
                    for name, data in parser.feed(b):
                        ev = st.on_sse(name, data)
                        if ev is not None:
                            backoff.reset()
                            yield ev
                    if st.exit is not None:
                        break
                if st.exit is None:
                    self._pause(backoff, EOFError("stream ended before the exit event"))
            except _SYNC_RETRY as e:
                self._pause(backoff, e)
            finally:
                conn.close()

    def _pause(self, backoff: Backoff, e: BaseException) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise errors.ConnectionError(f"events of agent session {self._id}: could not reconnect within "
                                         f"{backoff.budget} s: {type(e).__name__}: {e}") from e
        time.sleep(delay)

    def result(self) -> AgentEvent:
        """Reads until the next ``result`` event and returns it (the end of the current turn).

        Raises:
            ConflictError: the session exited before another result.
        """
        for ev in self.events():
            if ev.is_result:
                return ev
        raise errors.ConflictError(f"agent session {self._id} exited (code "
                                   f"{(self._state.exit or {}).get('exit_code')}) before a result")

    def wait(self) -> AgentInfo:
        """Reads until the session exits; returns its final status."""
        for _ in self.events():
            pass
        return AgentInfo.from_json(self._state.exit or {})

    def info(self) -> AgentInfo:
        d = self._sb._http.request("GET", self._path).json()
        self._info = d
        return AgentInfo.from_json(d)

    def send(self, prompt: str) -> int:
        """Sends a follow-up prompt (a user message); returns the stdout offset its events start at or after."""
        d = self._sb._http.request("POST", self._path + "/prompt", json_body={"prompt": prompt}, idempotent=False).json()
        return int(d.get("offset") or 0)

    def interrupt(self, method: str = "control") -> None:
        """Interrupts the current turn: ``"control"`` (an interrupt control request, the default) or
        ``"signal"`` (SIGINT). The agent answers with a result event."""
        self._sb._http.request("POST", self._path + "/interrupt", json_body={"method": method}, idempotent=False)

    def update(self, *, model: Optional[str] = None, permission_mode: Optional[str] = None) -> AgentInfo:
        """Changes the model and/or permission mode live (control requests set_model, set_permission_mode)."""
        d = self._sb._http.request("PATCH", self._path,
                                   json_body=drop_none({"model": model, "permission_mode": permission_mode})).json()
        return AgentInfo.from_json(d)

    def kill(self) -> None:
        """Kills the agent's process (SIGKILL); the session stays listed as exited."""
        self._sb._http.request("DELETE", self._path)


class AsyncAgentSession:
    """The asyncio twin of :class:`AgentSession` (``await sb.agent(...)``; ``async for ev in session``)."""

    def __init__(self, sandbox: "AsyncSandbox", agent_id: str, *, from_offset: int = 0,
                 info: Optional[Dict[str, Any]] = None, stderr: bool = False) -> None:
        self._sb = sandbox
        self._id = agent_id
        self._state = _State(from_offset)
        self._info = info or {}
        self._stderr = stderr
        self._path = f"{sandbox._path}/agents/{seg(agent_id)}"

    def __repr__(self) -> str:
        return f"<AsyncAgentSession {self._id} offset={self._state.offset} done={self.done}>"

    @property
    def id(self) -> str:
        return self._id

    @property
    def offset(self) -> int:
        return self._state.offset

    @property
    def done(self) -> bool:
        return self._state.exit is not None

    @property
    def exit_info(self) -> Optional[AgentInfo]:
        return AgentInfo.from_json(self._state.exit) if self._state.exit else None

    def __aiter__(self) -> AsyncIterator[AgentEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[AgentEvent]:
        st = self._state
        backoff = Backoff(self._sb._client._cfg.retry_timeout)
        while st.exit is None:
            try:
                r = await self._sb._http.stream(_stream_path(self._path, st.offset, self._stderr),
                                                headers={"Accept": "text/event-stream"})
            except _ASYNC_RETRY as e:
                await self._pause(backoff, e)
                continue
            try:
                parser = SSEParser()
                async for b in r.iter():
                    for name, data in parser.feed(b):
                        ev = st.on_sse(name, data)
                        if ev is not None:
                            backoff.reset()
                            yield ev
                    if st.exit is not None:
                        break
                if st.exit is None:
                    await self._pause(backoff, EOFError("stream ended before the exit event"))
            except _ASYNC_RETRY as e:
                await self._pause(backoff, e)
            finally:
                r.conn.close()

    async def _pause(self, backoff: Backoff, e: BaseException) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise errors.ConnectionError(f"events of agent session {self._id}: could not reconnect within "
                                         f"{backoff.budget} s: {type(e).__name__}: {e}") from e
        await asyncio.sleep(delay)

    async def result(self) -> AgentEvent:
        async for ev in self.events():
            if ev.is_result:
                return ev
        raise errors.ConflictError(f"agent session {self._id} exited (code "
                                   f"{(self._state.exit or {}).get('exit_code')}) before a result")

    async def wait(self) -> AgentInfo:
        async for _ in self.events():
            pass
        return AgentInfo.from_json(self._state.exit or {})

    async def info(self) -> AgentInfo:
        d = (await self._sb._http.request("GET", self._path)).json()
        self._info = d
        return AgentInfo.from_json(d)

    async def send(self, prompt: str) -> int:
        r = await self._sb._http.request("POST", self._path + "/prompt", json_body={"prompt": prompt},
                                         idempotent=False)
        return int(r.json().get("offset") or 0)

    async def interrupt(self, method: str = "control") -> None:
        await self._sb._http.request("POST", self._path + "/interrupt", json_body={"method": method},
                                     idempotent=False)

    async def update(self, *, model: Optional[str] = None, permission_mode: Optional[str] = None) -> AgentInfo:
        r = await self._sb._http.request("PATCH", self._path,
                                         json_body=drop_none({"model": model, "permission_mode": permission_mode}))
        return AgentInfo.from_json(r.json())

    async def kill(self) -> None:
        await self._sb._http.request("DELETE", self._path)

