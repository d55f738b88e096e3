"""Code contexts: persistent python, node and bash interpreters in a sandbox that run code cell by cell,
keeping variables, imports and the working directory between runs (docs/api.md, "Code contexts").

>>> with SandboxClient() as client, client.sandbox() as sb:            # doctest: +SKIP
...     ctx = sb.create_context("python")
...     ctx.run("import math\\nr = 2")
...     ex = ctx.run("print('area'); math.pi * r ** 2", on_stdout=print)
...     print(ex.text)                          # '12.566370614359172'
...     ex = ctx.run("display_file('/tmp/plot.png')")
...     png = ex.png                            # the image's bytes
...     ctx.interrupt()                         # from another thread: KeyboardInterrupt in the cell

A run's result is an :class:`Execution`: the last expression's value (``text``, and ``data`` with every
representation the value has, e.g. ``text/html``), the rich outputs the cell displayed (``outputs``: mime
bundles, images base64 as in Jupyter), its stdout and stderr, and ``error`` (name, value, traceback) when the
cell raised. A cell that raises is a normal result, not an exception; the SDK raises only for requests that
fail (an unknown context: ``NotFoundError``; a busy one: ``ConflictError``).
"""
from __future__ import annotations

import base64
import codecs
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from . import errors
from ._common import SSEParser, chunk_raw, drop_none, seg
from ._sync_http import iter_body

if TYPE_CHECKING:  # pragma: no cover
    from ._sync_http import SyncTransport
    from ._async_http import AsyncTransport

__all__ = ["AsyncCodeContext", "CodeContext", "ContextInfo", "Execution", "ExecutionError"]

# A display callback gets the mime bundle (``{"image/png": "<base64>", "text/plain": ...}``).
DisplayCallback = Callable[[Dict[str, Any]], Any]


@dataclass
class ExecutionError:
    """What a cell raised: ``name`` (``ValueError``, ``KeyboardInterrupt`` after an interrupt, in every
    language; ``CommandExecError`` for a bash cell whose status is not 0; ``ContextEnded`` when the
    interpreter itself exited), ``value`` (the message) and the ``traceback`` lines."""

    name: str
    value: str
    traceback: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.name}: {self.value}" if self.value else self.name


@dataclass
class Execution:
    """The result of one run."""

    execution_count: Optional[int]
    text: Optional[str]
    data: Dict[str, Any]
    outputs: List[Dict[str, Any]]
    stdout: str
    stderr: str
    error: Optional[ExecutionError]
    exit_code: Optional[int] = None
    duration_ms: int = 0
    timed_out: bool = False
    context_ended: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def images(self) -> List[bytes]:
        """Every PNG the run produced (displayed outputs, then the last value's), decoded."""
        out = []
        for b in self.outputs + ([self.data] if self.data else []):
            v = b.get("image/png")
            if isinstance(v, str):
                out.append(base64.b64decode(v))
        return out

    @property
    def png(self) -> Optional[bytes]:
        """The first PNG of :attr:`images`, or None."""
        imgs = self.images
        return imgs[0] if imgs else None

    def raise_error(self) -> "Execution":
        """Raises :class:`CellError` when the cell failed; returns self otherwise (for chaining)."""
        if self.error is not None:
            raise CellError(self)
        return self


class CellError(errors.SandboxError):
    """Raised by :meth:`Execution.raise_error`: the cell raised ``execution.error``."""

    default_code = "cell_error"

    def __init__(self, execution: Execution) -> None:
        super().__init__(str(execution.error), code="cell_error")
        self.execution = execution


@dataclass
class ContextInfo:
    id: str
    language: str
    cwd: str
    state: str  # idle | busy | ended
    created_at: Optional[str]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ContextInfo":
        return cls(id=d["id"], language=d.get("language", ""), cwd=d.get("cwd", ""), state=d.get("state", ""),
                   created_at=d.get("created_at"), raw=dict(d))


def context_body(language: str, cwd: Optional[str], env: Optional[Mapping[str, str]]) -> Dict[str, Any]:
    return drop_none({"language": language, "cwd": cwd, "env": dict(env) if env is not None else None})


def run_body(code: str, timeout: Optional[float]) -> Dict[str, Any]:
    if not isinstance(code, str):
        raise TypeError("code must be a str")
    return drop_none({"code": code, "timeout": timeout, "stream": True})


class _Collector:
    """Turns a run's SSE events into callbacks and the :class:`Execution`."""

    def __init__(self, on_stdout: Optional[Callable[[str], Any]], on_stderr: Optional[Callable[[str], Any]],
                 on_display: Optional[DisplayCallback]) -> None:
        self.cbs = (on_stdout, on_stderr)
        self.on_display = on_display
        self.dec = [codecs.getincrementaldecoder("utf-8")("replace") for _ in range(2)]
        self.text: List[List[str]] = [[], []]
        self.outputs: List[Dict[str, Any]] = []
        self.result: Optional[Execution] = None

    def event(self, name: str, data: str) -> List[Tuple[Optional[Callable[..., Any]], Any]]:
        """Handles one event; returns the callbacks to call (the async twin awaits coroutines)."""
        calls: List[Tuple[Optional[Callable[..., Any]], Any]] = []
        try:
            ev = json.loads(data)
        except ValueError as e:
            raise errors.StreamError(f"malformed event from the daemon: {data[:100]!r}") from e
        if name == "output":
            s = 1 if ev.get("stream") == "stderr" else 0
            text = self.dec[s].decode(chunk_raw(ev))
            if text:
                self.text[s].append(text)
                calls.append((self.cbs[s], text))
        elif name == "display":
            bundle = ev.get("data") or {}
            self.outputs.append(bundle)
            calls.append((self.on_display, bundle))
        elif name == "result":
            for s in range(2):
                tail = self.dec[s].decode(b"", final=True)
                if tail:
                    self.text[s].append(tail)
                    calls.append((self.cbs[s], tail))
            self.result = execution_from(ev, "".join(self.text[0]), "".join(self.text[1]), self.outputs)
        elif name == "error":
            raise errors.StreamError(str(ev.get("message") or ev))
        return calls

    def finish(self) -> Execution:
        if self.result is None:
            raise errors.StreamError("the run's stream ended before its result (the cell may still be running: "
                                     "interrupt the context or wait for it to be idle)")
        return self.result


def execution_from(d: Mapping[str, Any], stdout: str, stderr: str, outputs: List[Dict[str, Any]]) -> Execution:
    e = d.get("error")
    err = ExecutionError(str(e.get("name", "")), str(e.get("value", "")), list(e.get("traceback") or [])) if e else None
    return Execution(execution_count=d.get("execution_count"), text=d.get("text"), data=dict(d.get("data") or {}),
                     outputs=outputs, stdout=stdout, stderr=stderr, error=err, exit_code=d.get("exit_code"),
                     duration_ms=int(d.get("duration_ms") or 0), timed_out=bool(d.get("timed_out")),
                     context_ended=bool(d.get("context_ended")), raw=dict(d))


def _sync_sse_post(http: "SyncTransport", path: str, body: Mapping[str, Any]) -> Iterator[Tuple[str, str]]:
    """POSTs body and yields the answer's SSE events; a connection of its own (a run may take long)."""
    data = json.dumps(body).encode("utf-8")
    hdrs = http.cfg.base_headers()
    hdrs.update({"Content-Type": "application/json", "Accept": "text/event-stream",
                 "Content-Length": str(len(data))})
    c = http._new(None)
    try:
        c.request("POST", http.cfg.prefix + path, body=data, headers=hdrs)
        r = c.getresponse()
        if r.status >= 400:
            raise errors.error_from_response(r.status, r.read())
        parser = SSEParser()
        for chunk in iter_body(r):
            yield from parser.feed(chunk)
    finally:
        c.close()


class CodeContext:
    """A code context of a :class:`~sbx.Sandbox` (from ``sb.create_context`` or ``sb.get_context``);
    ``with`` deletes it at the end of the block."""

    def __init__(self, sandbox: Any, info: Mapping[str, Any]) -> None:
        self._sb = sandbox
        self.info = ContextInfo.from_json(info)

    def __repr__(self) -> str:
        return f"<CodeContext {self.id} {self.language} on {self._sb.id}>"

    def __enter__(self) -> "CodeContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.delete(missing_ok=True)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def language(self) -> str:
        return self.info.language

    @property
    def _path(self) -> str:
        return f"{self._sb._path}/contexts/{seg(self.id)}"

    def refresh(self) -> ContextInfo:
        self.info = ContextInfo.from_json(self._sb._http.request("GET", self._path).json())
        return self.info

    def run(self, code: str, *, timeout: Optional[float] = None, on_stdout: Optional[Callable[[str], Any]] = None,
            on_stderr: Optional[Callable[[str], Any]] = None,
            on_display: Optional[DisplayCallback] = None) -> Execution:
        """Runs ``code`` in the context and returns its :class:`Execution` when the cell ends; output is
        passed to the callbacks as it comes. ``timeout`` (seconds) interrupts the cell when it runs longer
        (``timed_out`` is then set); without it the run waits for as long as the cell takes.

        Raises:
            NotFoundError: no such context; ConflictError: it runs another cell (``context_busy``) or has
            ended (``context_ended``); NotRunningError: the sandbox is stopped.
        """
        col = _Collector(on_stdout, on_stderr, on_display)
        for name, data in _sync_sse_post(self._sb._http, self._path + "/run", run_body(code, timeout)):
            for cb, arg in col.event(name, data):
                if cb is not None:
                    cb(arg)
            if col.result is not None:
                break
        return col.finish()

    def interrupt(self) -> bool:
        """SIGINT to the context's interpreter and its children: the running cell ends with a
        ``KeyboardInterrupt`` error; the context and its state stay. Returns whether a cell was running."""
        return bool(self._sb._http.request("POST", self._path + "/interrupt").json().get("interrupted"))

    def delete(self, *, missing_ok: bool = False) -> None:
        """Ends the interpreter and forgets the context."""
        self._sb._http.request("DELETE", self._path, ok=(404,) if missing_ok else ())


class AsyncCodeContext:
    """The asyncio twin of :class:`CodeContext`."""

    def __init__(self, sandbox: Any, info: Mapping[str, Any]) -> None:
        self._sb = sandbox
        self.info = ContextInfo.from_json(info)

    def __repr__(self) -> str:
        return f"<AsyncCodeContext {self.id} {self.language} on {self._sb.id}>"

    async def __aenter__(self) -> "AsyncCodeContext":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.delete(missing_ok=True)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def language(self) -> str:
        return self.info.language

    @property
    def _path(self) -> str:
        return f"{self._sb._path}/contexts/{seg(self.id)}"

    async def refresh(self) -> ContextInfo:
        self.info = ContextInfo.from_json((await self._sb._http.request("GET", self._path)).json())
        return self.info

    async def run(self, code: str, *, timeout: Optional[float] = None,
                  on_stdout: Optional[Callable[[str], Any]] = None, on_stderr: Optional[Callable[[str], Any]] = None,
                  on_display: Optional[DisplayCallback] = None) -> Execution:
        """See :meth:`CodeContext.run`; callbacks may be coroutine functions."""
        import inspect
        http: "AsyncTransport" = self._sb._http
        data = json.dumps(run_body(code, timeout)).encode("utf-8")
        hdrs = http.cfg.base_headers()
        hdrs.update({"Content-Type": "application/json", "Accept": "text/event-stream"})
        c = await http.connect()
        try:
            r = await http.send(c, "POST", self._path + "/run", hdrs, data)
            if r.status >= 400:
                raise errors.error_from_response(r.status, await r.read())
            col = _Collector(on_stdout, on_stderr, on_display)
            parser = SSEParser()
            async for chunk in r.iter():
                for name, d in parser.feed(chunk):
                    for cb, arg in col.event(name, d):
                        if cb is not None:
                            res = cb(arg)
                            if inspect.isawaitable(res):
                                await res
                if col.result is not None:
                    break
            return col.finish()
        finally:
            c.close()

    async def interrupt(self) -> bool:
        """See :meth:`CodeContext.interrupt`."""
        return bool((await self._sb._http.request("POST", self._path + "/interrupt")).json().get("interrupted"))

    async def delete(self, *, missing_ok: bool = False) -> None:
        await self._sb._http.request("DELETE", self._path, ok=(404,) if missing_ok else ())
