# sbx code-context driver for Python (docs/api.md, "Code contexts"). sbxd embeds this file and runs it as
# `python3 -u -c <this>` in the sandbox: one interpreter, one globals dict, kept between runs.
#
# Protocol (private to sbxd): a run is the cell's lines on stdin followed by the line "\x1e<token> <nonce>".
# Output goes to the real stdout/stderr; the driver ends a run with "\x1e<token> <nonce> R <json>\n" on
# stdout ({"count", "data"?: mime bundle of the last expression, "error"?: {name, value, traceback}}) and
# "\x1e<token> <nonce> E\n" on stderr. display() writes "\x1e<token> <nonce> D {"data": bundle}\n".
# A marker may start mid-line (after output without a newline): sbxd cuts it out wherever it starts, so
# the cell's output arrives byte-exact and each line as soon as it is written.
import ast, base64, builtins, inspect, io, json, linecache, os, signal, sys, traceback

_TOK = os.environ.pop("SBX_CONTEXT_TOKEN", "")
_MARK = "\x1e" + _TOK
_INPUT = sys.stdin
sys.stdin = open(os.devnull)
_TEXT_MAX = 1 << 20  # a text/plain repr longer than this is cut
_DATA_MAX = 12 << 20  # one display's encoded bundle (sbxd drops longer marker lines)
_state = {"nonce": "", "running": False}


def _on_sigint(signum, frame):
    # Between cells SIGINT does nothing: only a running cell is interrupted.
    if _state["running"]:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, _on_sigint)


def _write(fd, text):
    data = text.encode("utf-8", "replace")
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _flush():
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


def _marker(fd, kind, obj=None):
    _flush()
    line = _MARK + " " + _state["nonce"] + " " + kind
    if obj is not None:
        line += " " + json.dumps(obj, ensure_ascii=False, default=str)
    _write(fd, line + "\n")


_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
_EXT_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
             ".svg": "image/svg+xml", ".html": "text/html", ".htm": "text/html", ".json": "application/json",
             ".md": "text/markdown"}


def _enc(mime, v):
    # Binary values travel as base64 (as in Jupyter); JSON stays a value; text stays text.
    if isinstance(v, (bytes, bytearray)):
        if mime.startswith("text/") or mime == "image/svg+xml":
            return bytes(v).decode("utf-8", "replace")
        return base64.b64encode(bytes(v)).decode()
    if mime == "application/json" or mime.endswith("+json"):
        return v
    return v if isinstance(v, str) else str(v)


def _text(v):
    try:
        t = repr(v)
    except Exception as e:
        t = "<repr failed: %s>" % type(e).__name__
    return t if len(t) <= _TEXT_MAX else t[:_TEXT_MAX] + "..."


def _bundle(obj):
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and "/" in k for k in obj):
        return {k: _enc(k, v) for k, v in obj.items()}
    if isinstance(obj, (bytes, bytearray)):
        for magic, mime in _IMAGE_MAGIC:
            if bytes(obj[: len(magic)]) == magic:
                return {mime: _enc(mime, obj), "text/plain": "<%s, %d bytes>" % (mime, len(obj))}
        return {"text/plain": _text(obj)}
    b = {}
    mb = getattr(obj, "_repr_mimebundle_", None)
    if callable(mb) and not isinstance(obj, type):
        try:
            r = mb()
            d = r[0] if isinstance(r, tuple) else r
            if isinstance(d, dict):
                b.update({k: _enc(k, v) for k, v in d.items() if isinstance(k, str)})
        except Exception:
            pass
    for meth, mime in (("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg"), ("_repr_svg_", "image/svg+xml"),
                       ("_repr_html_", "text/html"), ("_repr_markdown_", "text/markdown"),
                       ("_repr_json_", "application/json"), ("_repr_latex_", "text/latex")):
        f = getattr(obj, meth, None)
        if mime in b or not callable(f) or isinstance(obj, type):
            continue
        try:
            v = f()
        except Exception:
            continue
        if isinstance(v, tuple):
            v = v[0]
        if v is not None:
            b[mime] = _enc(mime, v)
    b.setdefault("text/plain", _text(obj))
    return b


def display(*objs, **kw):
    """Shows each object as a rich output of the current run: a mime bundle dict ({"image/png": bytes}),
    PNG/JPEG/GIF bytes, an object with _repr_png_/_repr_html_/... methods, or anything (its repr)."""
    for obj in objs:
        b = _bundle(obj)
        if len(json.dumps(b, default=str)) > _DATA_MAX:
            print("display: output larger than %d bytes dropped" % _DATA_MAX, file=sys.stderr)
            continue
        _marker(1, "D", {"data": b})


def display_file(path, mime=None):
    """Shows a file the cell wrote (a saved figure, an HTML report): its type from mime or its extension."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read(_DATA_MAX + 1)
    if len(data) > _DATA_MAX:
        raise ValueError("display_file: %s is larger than %d bytes" % (path, _DATA_MAX))
    mime = mime or _EXT_MIME.get(os.path.splitext(path)[1].lower())
    if mime is None:
        for magic, m in _IMAGE_MAGIC:
            if data.startswith(magic):
                mime = m
    mime = mime or "text/plain"
    if mime == "application/json":
        display({mime: json.loads(data.decode("utf-8"))})
    else:
        display({mime: data})


builtins.display = display
builtins.display_file = display_file


def _show_figures():
    # matplotlib figures left open by the cell are shown as PNGs, as Jupyter's inline backend does.
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    try:
        for num in plt.get_fignums():
            buf = io.BytesIO()
            plt.figure(num).savefig(buf, format="png", bbox_inches="tight")
            display({"image/png": buf.getvalue()})
        plt.close("all")
    except Exception as e:
        print("display of matplotlib figures failed: %r" % (e,), file=sys.stderr)


def _error(e, name=None):
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    # The driver's own frames (its file is "<string>", from -c) are not the user's.
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != "<string>"])
    return {"name": name or type(e).__name__, "value": str(e),
            "traceback": [l.rstrip("\n") for l in te.format()]}


# Top-level `await` works as in IPython: such a cell compiles to a coroutine, run on one event loop that
# stays between cells (made when first needed, so cells that never await do not import asyncio).
_FLAGS = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
_loop = []


def _run(code):
    v = eval(code, _g)
    if code.co_flags & inspect.CO_COROUTINE:
        if not _loop:
            import asyncio
            _loop.append(asyncio.new_event_loop())
        v = _loop[0].run_until_complete(v)
    return v


_g = {"__name__": "__main__", "__builtins__": builtins}
_count = 0
while True:
    _lines, _end = [], None
    while True:
        _line = _INPUT.readline()
        if not _line:
            break
        if _line.startswith(_MARK + " "):
            _end = _line[len(_MARK) + 1:].strip()
            break
        _lines.append(_line)
    if _end is None:
        break
    _state["nonce"] = _end
    _count += 1
    _res = {"count": _count}
    _src = "".join(_lines)
    _name = "<cell-%d>" % _count
    linecache.cache[_name] = (len(_src), None, _src.splitlines(True), _name)
    try:
        try:
            _state["running"] = True
            _tree = ast.parse(_src, _name, "exec")
            _last = None
            if _tree.body and isinstance(_tree.body[-1], ast.Expr):
                _last = ast.Expression(_tree.body.pop().value)
            _run(compile(_tree, _name, "exec", flags=_FLAGS))
            if _last is not None:
                _v = _run(compile(_last, _name, "eval", flags=_FLAGS))
                _state["running"] = False
                if _v is not None:
                    _g["_"] = _v
                    _res["data"] = _bundle(_v)
        finally:
            _state["running"] = False
    except KeyboardInterrupt as e:
        _res["error"] = _error(e, "KeyboardInterrupt")
    except BaseException as e:  # SystemExit too: the context lives on
        _res["error"] = _error(e)
    try:
        _show_figures()
    except KeyboardInterrupt:
        pass
    _marker(2, "E")
    _marker(1, "R", _res)
