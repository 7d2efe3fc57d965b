"""Where a submitted notebook runs while it is graded (used by :mod:`llmbook.instructor.grader`).

Three processes take part, and only one of them ever runs the student's code:

* the **grader** (the instructor's process) holds the library's checks and
  decides every verdict. It never executes the student's code and never
  unpickles what the student's process sends: answers come back as data only
  (numbers, strings, lists, dicts, tensors and arrays), as JSON;
* the **supervisor** (``python -m llmbook.instructor.sandbox supervise``)
  becomes the "child subreaper" of everything the notebook starts, so a
  process that forks into the background is still its descendant; when the
  grader closes its stdin it kills every descendant and exits;
* the **runner** (``... sandbox run``) executes the notebook's code cells in
  an IPython shell, in a temporary folder that holds only the submission's
  copy, then answers the grader's requests: "what is ``square``?" (a value,
  or a handle to a function) and "call handle 3 with these arguments".

So a check calls the student's function through a proxy: the arguments go to
the runner, the function runs there, the result comes back as data. Whatever
the student's code patches (``check``, ``expect``, ``importlib.reload``, the
caller's frame), it patches in the runner, where no verdict is made.

Messages are length-prefixed: requests are pickles (grader -> runner: the
runner trusts the grader), answers are JSON (runner -> grader: never trusted;
:func:`decode` rebuilds only numbers, strings, containers, tensors and arrays
of plain dtypes).
"""

from __future__ import annotations

import base64
import builtins
import ctypes
import json
import math
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from typing import Any

__all__ = ["StudentCrashed", "StudentTimeout", "Untransferable", "decode", "encode", "read_message", "write_message"]

_HEADER = struct.Struct("!Q")
MAX_ANSWER_BYTES = 256 * 2**20  # one answer from the student's process; a bigger one is refused, not read
FILE_SIZE_LIMIT = 2**30  # bytes: the largest file a submission may write (RLIMIT_FSIZE)


class StudentCrashed(RuntimeError):
    """The student's process died, closed the grader's channel, or sent something unreadable."""


class StudentTimeout(RuntimeError):
    """The student's code did not answer within the check's time."""


# --------------------------------------------------------------------------- framing


def write_message(fd: int, payload: bytes) -> None:
    data = _HEADER.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    import select

    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StudentTimeout("no answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise StudentTimeout("no answer in time")
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise StudentCrashed("the notebook's process closed the channel (it exited or was killed)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, deadline: float | None = None, limit: int | None = None) -> bytes:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    if limit is not None and size > limit:
        raise StudentCrashed(
            f"the notebook's process sent {size} bytes, more than the {limit}-byte limit for one answer"
        )
    return _read_exactly(fd, size, deadline)


# --------------------------------------------------------------------------- answers as data (JSON)


class Untransferable:
    """Stands, in the grader, for a student's object that is not plain data (its type name and repr only)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


_MARK = "__llmbook__"
_TORCH_DTYPES = {
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "complex128",
}
_NUMPY_KINDS = set("biufc")


def _untransferable(value: Any) -> dict:
    try:
        text = repr(value)[:200]
    except Exception:  # noqa: BLE001 - a hostile __repr__
        text = f"<{type(value).__name__} object>"
    return {_MARK: "untransferable", "type": type(value).__name__[:100], "text": text}


def encode(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON-ready plain data (runs in the student's process; imports nothing new)."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {_MARK: "float", "text": repr(value)}
    if _depth > 30:
        return {_MARK: "untransferable", "type": kind.__name__, "text": "(nested too deeply)"}
    torch = sys.modules.get("torch")  # a tensor can only exist if the notebook imported torch
    numpy = sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        name = str(value.dtype).removeprefix("torch.")
        if name not in _TORCH_DTYPES or value.is_sparse:
            return _untransferable(value)
        plain = value.detach().to("cpu").contiguous()
        raw = plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
        return {
            _MARK: "tensor",
            "dtype": name,
            "shape": list(plain.shape),
            "data": base64.b64encode(raw).decode(),
            "requires_grad": bool(value.requires_grad),
        }
    if torch is not None and isinstance(value, torch.Size):
        return {_MARK: "size", "items": [int(v) for v in value]}
    if torch is not None and isinstance(value, torch.dtype):
        return {_MARK: "torch_dtype", "name": str(value).removeprefix("torch.")}
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.dtype.kind in _NUMPY_KINDS:
            raw = numpy.ascontiguousarray(value).tobytes()
            return {
                _MARK: "ndarray",
                "dtype": value.dtype.str,
                "shape": list(value.shape),
                "data": base64.b64encode(raw).decode(),
            }
        if value.dtype.kind in "US":
            return {_MARK: "ndarray_list", "dtype": value.dtype.str, "items": encode(value.tolist(), _depth + 1)}
        return _untransferable(value)
    if numpy is not None and isinstance(value, numpy.generic) and value.dtype.kind in _NUMPY_KINDS:
        return {_MARK: "npscalar", "dtype": value.dtype.str, "value": encode(value.item(), _depth + 1)}
    if kind is complex:
        return {_MARK: "complex", "real": encode(value.real), "imag": encode(value.imag)}
    if kind is bytes:
        return {_MARK: "bytes", "data": base64.b64encode(value).decode()}
    if kind is list:
        return [encode(v, _depth + 1) for v in value]
    if kind in (tuple, set, frozenset) or isinstance(value, tuple):  # a namedtuple arrives as a tuple
        return {_MARK: "set" if kind in (set, frozenset) else "tuple", "items": [encode(v, _depth + 1) for v in value]}
    if isinstance(value, dict):
        return {_MARK: "dict", "items": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in value.items()]}
    for plain in (bool, int, float, str):  # a subclass (e.g. a str whose __eq__ always says True): its plain value
        if isinstance(value, plain):
            return encode(plain(value), _depth)
    return _untransferable(value)


def _dtype(text: str, kinds: str):
    import numpy as np

    dtype = np.dtype(str(text))
    if dtype.kind not in kinds:
        raise StudentCrashed(f"unexpected array dtype {dtype}")
    return dtype


def decode(value: Any) -> Any:
    """The grader's copy of an :func:`encode`-d value: plain data only (runs in the grader)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    mark = value.get(_MARK)
    if mark == "tensor":
        import torch

        if value["dtype"] not in _TORCH_DTYPES:
            raise StudentCrashed(f"unexpected tensor dtype {value['dtype']!r}")
        dtype, shape = getattr(torch, value["dtype"]), [int(s) for s in value["shape"]]
        raw = bytearray(base64.b64decode(value["data"]))
        tensor = torch.frombuffer(raw, dtype=dtype).reshape(shape) if raw else torch.empty(shape, dtype=dtype)
        return tensor.clone().requires_grad_(bool(value.get("requires_grad")) and tensor.is_floating_point())
    if mark == "ndarray":
        import numpy as np

        raw = base64.b64decode(value["data"])
        return (
            np.frombuffer(raw, dtype=_dtype(value["dtype"], "biufc")).reshape([int(s) for s in value["shape"]]).copy()
        )
    if mark == "ndarray_list":
        import numpy as np

        return np.array(decode(value["items"]), dtype=_dtype(value["dtype"], "US"))
    if mark == "npscalar":
        return _dtype(value["dtype"], "biufc").type(decode(value["value"]))
    if mark == "float":
        return float(value["text"])
    if mark == "complex":
        return complex(decode(value["real"]), decode(value["imag"]))
    if mark == "bytes":
        return base64.b64decode(value["data"])
    if mark == "tuple":
        return tuple(decode(v) for v in value["items"])
    if mark == "set":
        return set(decode(v) for v in value["items"])
    if mark == "size":
        import torch

        return torch.Size([int(v) for v in value["items"]])
    if mark == "torch_dtype":
        import torch

        if value["name"] not in _TORCH_DTYPES:
            raise StudentCrashed(f"unexpected dtype {value['name']!r}")
        return getattr(torch, value["name"])
    if mark == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in value["items"]}
    if mark == "untransferable":
        return Untransferable(str(value["type"]), str(value["text"]))
    raise StudentCrashed("the notebook's process sent an unknown kind of value")


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key


def dump_answer(message: Any) -> bytes:
    return json.dumps(message, allow_nan=False).encode()


def load_answer(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise StudentCrashed(f"the notebook's process sent something that is not an answer ({error})") from None


# --------------------------------------------------------------------------- the runner (student's process)


def _is_callable_answer(value: Any) -> bool:
    """A function or class (called through a proxy), not a value; tensors and arrays are values."""
    data_types = tuple(
        getattr(module, name)
        for module, names in (
            (sys.modules.get("torch"), ("Tensor",)),
            (sys.modules.get("numpy"), ("ndarray", "generic")),
        )
        if module is not None
        for name in names
    )
    return callable(value) and not isinstance(value, data_types)


def _last_frame(error: BaseException) -> tuple[int | None, str]:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None, ""
    return frames[-1].lineno, frames[-1].line or ""


def _serve(request_fd: int, answer_fd: int) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no history database in the submission's folder
    shell = InteractiveShell.instance(config=config)
    handles: dict[int, Any] = {}

    def answer(message: Any) -> None:
        try:
            data = dump_answer(message)
        except (TypeError, ValueError) as error:  # cannot happen for encode()'s output; never leave the grader waiting
            data = dump_answer(
                ["raise", "TypeError", True, f"the grader could not read this answer: {error}", None, ""]
            )
        write_message(answer_fd, data)

    answer(["hello", os.getpid()])
    while True:
        try:
            request = pickle.loads(read_message(request_fd))
        except StudentCrashed:
            return  # the grader is done
        kind = request[0]
        if kind == "cells":
            for index, source in request[1]:
                answer(["cell", index])
                shell.run_cell(source, store_history=False)
            answer(["ready"])
        elif kind == "get":
            name = request[1]
            if name not in shell.user_ns:
                answer(["missing"])
            elif _is_callable_answer(shell.user_ns[name]):
                handles[len(handles)] = shell.user_ns[name]
                answer(["callable", len(handles) - 1])
            else:
                try:
                    value = encode(shell.user_ns[name])
                except Exception:  # noqa: BLE001 - an object that lies about its type: it arrives as its repr
                    value = _untransferable(shell.user_ns[name])
                answer(["value", value])
        elif kind == "call":
            _, handle, args, kwargs = request
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the grader interrupts a call that runs too long
            try:
                result = handles[handle](*args, **kwargs)
                message = ["return", encode(result), encode(list(args)), encode(kwargs)]
            except KeyboardInterrupt:
                message = ["interrupted"]
            except BaseException as error:  # noqa: BLE001 - the student's crash, reported to the grader
                lineno, line = _last_frame(error)
                name = type(error).__name__
                builtin = type(error).__module__ == "builtins" and getattr(builtins, name, None) is type(error)
                try:
                    text = str(error)[:2000]
                except Exception:  # noqa: BLE001 - a hostile __str__
                    text = ""
                message = ["raise", name[:100], builtin, text, lineno, line]
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            answer(message)


def _run(request_fd: int, answer_fd: int) -> int:
    import resource

    for fd in (request_fd, answer_fd):
        os.set_inheritable(fd, False)  # the notebook's own subprocesses do not get the channel
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only a running call may be interrupted
    _serve(request_fd, answer_fd)
    return 0


# --------------------------------------------------------------------------- the supervisor


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = [c for p in frontier for c in _children_of(p)]
        found += children
        frontier = children
    return found


def kill_descendants(pid: int | None = None, rounds: int = 50) -> int:
    """Stop, then kill, every descendant of ``pid`` (this process by default); returns how many were killed."""
    pid = os.getpid() if pid is None else pid
    killed = 0
    for _ in range(rounds):
        victims = _descendants(pid)
        if not victims:
            break
        for signal_number in (signal.SIGSTOP, signal.SIGKILL):  # stopped first, so none can fork meanwhile
            for victim in victims:
                try:
                    os.kill(victim, signal_number)
                except ProcessLookupError:
                    pass
        killed += len(victims)
        while True:  # reap the zombies that are ours (the orphans reparented to this subreaper)
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        time.sleep(0.01)
    return killed


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _supervise(request_fd: int, answer_fd: int) -> int:
    import subprocess

    _become_subreaper()
    runner = subprocess.Popen(
        [sys.executable, "-m", "llmbook.instructor.sandbox", "run", str(request_fd), str(answer_fd)],
        stdin=subprocess.DEVNULL,
        pass_fds=(request_fd, answer_fd),
        start_new_session=True,
    )
    os.close(request_fd)
    os.close(answer_fd)
    sys.stdin.buffer.read()  # until the grader closes our stdin (or dies)
    try:
        os.killpg(runner.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    kill_descendants()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, request_fd, answer_fd = argv[0], int(argv[1]), int(argv[2])
    if command == "supervise":
        return _supervise(request_fd, answer_fd)
    if command == "run":
        return _run(request_fd, answer_fd)
    raise SystemExit(f"unknown command {command!r}: use supervise or run")


if __name__ == "__main__":
    sys.exit(main())
