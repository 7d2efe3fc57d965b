"""Grade a folder of submitted notebooks with the library's checks (every chapter; Appendix C).

``python -m llmbook.instructor grade SUBMISSIONS/ --out grades.csv``

Layout of ``SUBMISSIONS/`` (the student is named by a folder or a file name):

- ``SUBMISSIONS/<student>/<chapter notebook>.ipynb``: a folder per student, each
  holding notebooks named as in the book (``04_attention.ipynb``); the student
  is the folder's path below ``SUBMISSIONS``.
- ``SUBMISSIONS/<anything>/<student>.ipynb``: any other file name is the
  student's name; the chapter is recognised from the exercises it contains.

Each notebook is first read and validated here: one that is not JSON, not a
notebook, or of another format version scores 0 with the reason and the batch
goes on. A valid one runs in its own sandbox (:mod:`llmbook.instructor.sandbox`):
a temporary folder holding only its copy, a process whose environment names
no other path, output kept to its last few kilobytes, a wall-clock
``timeout``, and every process it started killed when it is done. The
library's checks run *here*, in the grader: they reach the student's values
and functions only through the sandbox's data channel, so nothing the
notebook does (patching ``check``, reloading modules, writing files) can
change a verdict. What still needs a container (a student who searches the
whole disk, or attacks the grader's own process) is listed in Appendix C.
"""

from __future__ import annotations

import builtins
import csv
import json
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from llmbook.exercises import core

from . import sandbox
from .notebooks import (
    NotebookError,
    _source,
    check_cell_sources,
    check_ids,
    exercise_id_for_label,
    exercise_labels,
    read_notebook,
)

__all__ = ["COLUMNS", "Row", "Submission", "find_submissions", "grade", "write_csv"]


@dataclass
class Row:
    """One line of the grades table: one student's result on one exercise."""

    student: str
    notebook: str
    exercise: str
    passed: int  # 1 or 0, so a spreadsheet can sum it
    message: str
    seconds: float  # time the check took (the notebook's timeout when it timed out)


COLUMNS = [f.name for f in fields(Row)]


@dataclass
class Submission:
    student: str
    path: Path
    original: Path | None
    exercise_ids: list[str]


def _exercise_ids(notebook: dict) -> list[str]:
    ids = []
    for label in exercise_labels(notebook):
        try:
            ids.append(exercise_id_for_label(label))
        except NotebookError:
            continue
    for exercise_id in check_ids(notebook):
        if exercise_id not in ids:
            ids.append(exercise_id)
    return ids


def _notebooks_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*.ipynb") if not any(part in {".ipynb_checkpoints", "_build"} for part in p.parts)
    )


def find_submissions(submissions: str | Path, originals: str | Path | None = None) -> list[Submission]:
    """The notebooks under ``submissions``, each with its student, original notebook and exercise ids."""
    root = Path(submissions)
    if not root.is_dir():
        raise FileNotFoundError(f"submissions folder {root} not found")
    by_name: dict[str, tuple[Path, list[str]]] = {}
    if originals is not None:
        originals = Path(originals)
        if not originals.exists():
            raise FileNotFoundError(
                f"original notebooks {originals} not found (--original: the book/ folder or the student edition)"
            )
        for path in [originals] if originals.is_file() else _notebooks_under(originals):
            by_name[path.name] = (path, _exercise_ids(read_notebook(path)))
    found = []
    for path in _notebooks_under(root):
        relative = path.relative_to(root)
        if path.name in by_name:
            student = str(relative.parent) if relative.parent != Path(".") else path.stem
            original, ids = by_name[path.name]
        else:
            student = path.stem
            try:
                own_ids = _exercise_ids(read_notebook(path))
            except NotebookError:
                own_ids = []
            matches = [(len(set(own_ids) & set(ids)), name) for name, (_, ids) in by_name.items()]
            best = max(matches, default=(0, None))
            if best[0] > 0:
                original, ids = by_name[best[1]]
            else:
                original, ids = None, own_ids
        found.append(Submission(student, path, original, list(ids)))
    return found


def _edited_checks(submission: Submission, notebook: dict) -> set[str]:
    if submission.original is None:
        return set()
    expected = check_cell_sources(read_notebook(submission.original))
    submitted = check_cell_sources(notebook)
    return {i for i in submission.exercise_ids if i in expected and sorted(expected[i]) != sorted(submitted.get(i, []))}


# --------------------------------------------------------------------------- the grader's end of a sandbox


class _OutputTail:
    """Drains the sandbox's stdout and stderr in a thread, keeping only the last ``keep`` bytes (memory stays bounded)."""

    def __init__(self, stream, keep: int = 16_384):
        self.keep, self.tail, self.total = keep, b"", 0
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        for chunk in iter(lambda: stream.read1(1 << 16), b""):
            self.total += len(chunk)
            self.tail = (self.tail + chunk)[-self.keep :]

    def last_line(self) -> str:
        lines = self.tail.decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"


class _StudentError(Exception):
    """An exception of the student's code, of a type the grader does not rebuild (its name is kept)."""


class _Sandbox:
    """One submission's supervisor and runner (:mod:`llmbook.instructor.sandbox`), seen from the grader."""

    def __init__(self, folder: Path, environment: dict[str, str]):
        request_read, self.requests = os.pipe()
        self.answers, answer_write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmbook.instructor.sandbox", "supervise", str(request_read), str(answer_write)],
            cwd=folder,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(request_read, answer_write),
            start_new_session=True,
        )
        os.close(request_read)
        os.close(answer_write)
        self.output = _OutputTail(self.process.stdout)
        self.runner_pid: int | None = None
        self.deadline: float | None = None  # of the current check
        self.timed_out = False
        self.failure: str | None = None  # why the sandbox cannot answer any more

    # framing -----------------------------------------------------------------------------------

    def send(self, request: Any, deadline: float) -> None:
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        data = sandbox._HEADER.pack(len(payload)) + payload
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [self.requests], [], left)[1]:
                raise sandbox.StudentTimeout("the notebook's process does not read the grader's requests")
            try:
                written = os.write(self.requests, view[: select.PIPE_BUF])
            except BrokenPipeError:
                raise sandbox.StudentCrashed(
                    "the notebook's process closed the channel (it exited or was killed)"
                ) from None
            view = view[written:]

    def receive(self, deadline: float | None) -> list:
        message = sandbox.load_answer(sandbox.read_message(self.answers, deadline, sandbox.MAX_ANSWER_BYTES))
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            raise sandbox.StudentCrashed("the notebook's process sent something that is not an answer")
        return message

    def start(self, deadline: float) -> None:
        message = self.receive(deadline)
        if message[0] != "hello" or not isinstance(message[1], int):
            raise sandbox.StudentCrashed("the notebook's process did not start properly")
        self.runner_pid = message[1]

    # the student's values and functions ---------------------------------------------------------

    def _ask(self, request: tuple) -> list:
        if self.failure is not None:
            raise sandbox.StudentCrashed(self.failure)
        deadline = self.deadline if self.deadline is not None else time.monotonic() + 60
        try:
            self.send(request, deadline)
            return self.receive(deadline)
        except sandbox.StudentTimeout:
            self.timed_out = True
            self._interrupt()
            raise
        except sandbox.StudentCrashed as error:
            self.failure = str(error)
            raise

    def _interrupt(self) -> None:
        """Interrupt a call that ran out of time; a process that ignores the interrupt is given up."""
        try:
            os.kill(self.runner_pid, signal.SIGINT)
            message = self.receive(time.monotonic() + 3)
            if message[0] in {"interrupted", "return", "raise"}:
                return
        except (sandbox.StudentTimeout, sandbox.StudentCrashed, ProcessLookupError, TypeError):
            pass
        self.failure = "not checked: the notebook's code kept running after a check timed out and ignored the interrupt"
        self.close()

    def get(self, name: str) -> Any:
        message = self._ask(("get", name))
        if message[0] == "missing":
            raise KeyError(name)
        if message[0] == "callable":
            return _RemoteFunction(self, int(message[1]), name)
        if message[0] == "value":
            return sandbox.decode(message[1])
        raise sandbox.StudentCrashed(f"unexpected answer {message[0]!r} to a question about {name!r}")

    def call(self, handle: int, name: str, args: tuple, kwargs: dict) -> Any:
        try:
            request = ("call", handle, args, kwargs)
            pickle.dumps(request)
        except Exception as error:  # noqa: BLE001 - a check passing something that cannot travel
            raise RuntimeError(f"the grader cannot send these arguments to {name}: {error}") from None
        message = self._ask(request)
        if message[0] == "return":
            for original, after in zip(args, sandbox.decode(message[2])):
                _update_in_place(original, after)
            after_kwargs = sandbox.decode(message[3])
            for key, original in kwargs.items():
                if isinstance(after_kwargs, dict) and key in after_kwargs:
                    _update_in_place(original, after_kwargs[key])
            return sandbox.decode(message[1])
        if message[0] == "raise":
            _, type_name, builtin, text, lineno, line = message
            error_type = getattr(builtins, str(type_name), None) if builtin else None
            error = None
            if isinstance(error_type, type) and issubclass(error_type, Exception):
                try:
                    error = error_type(text) if text else error_type()
                except Exception:  # noqa: BLE001 - exception types with other constructors
                    error = None
            if error is None:
                error = _StudentError(text)
            error.student_type = str(type_name)
            error.student_line = (lineno if isinstance(lineno, int) else None, str(line or ""))
            raise error
        if (
            message[0] == "interrupted"
        ):  # the notebook interrupted itself (the grader's own interrupts are handled in _ask)
            error = _StudentError("your code was interrupted")
            error.student_type, error.student_line = "KeyboardInterrupt", (None, "")
            raise error
        raise sandbox.StudentCrashed(f"unexpected answer {message[0]!r} to a call of {name}")

    def close(self) -> None:
        """Kill everything the submission started (the supervisor does it when its stdin closes)."""
        for fd in (self.requests, self.answers):
            try:
                os.close(fd)
            except OSError:
                pass
        self.requests = self.answers = -1
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the supervisor's own group (it may be gone already)
        except (ProcessLookupError, PermissionError):
            pass
        if self.runner_pid:
            try:
                os.killpg(self.runner_pid, signal.SIGKILL)  # if the notebook killed its supervisor
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait()
        self.output.thread.join(timeout=5)


class _RemoteFunction:
    """The student's function as a check sees it: calling it runs it in the sandbox."""

    def __init__(self, box: _Sandbox, handle: int, name: str):
        self._box, self._handle, self.__name__ = box, handle, name

    def __call__(self, *args, **kwargs):
        return self._box.call(self._handle, self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<your {self.__name__}>"


def _update_in_place(original: Any, after: Any) -> None:
    """Copy what the student's function did to an argument in place (e.g. clipping gradients) back into the check's copy."""
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")  # none of its values can exist unless imported
    if torch is not None and isinstance(original, torch.Tensor) and isinstance(after, torch.Tensor):
        if original.shape == after.shape and original.dtype == after.dtype:
            with torch.no_grad():
                original.copy_(after)
    elif np is not None and isinstance(original, np.ndarray) and isinstance(after, np.ndarray):
        if original.shape == after.shape and original.flags.writeable:
            original[...] = after
    elif isinstance(original, list) and isinstance(after, list):
        if len(original) == len(after):
            for item, changed in zip(original, after):
                _update_in_place(item, changed)
    elif isinstance(original, dict) and isinstance(after, dict):
        for key in original:
            if key in after:
                _update_in_place(original[key], after[key])


class _RemoteNamespace:
    """What :func:`llmbook.exercises.core.run` reads the student's answer from: the sandbox's variables."""

    def __init__(self, box: _Sandbox):
        self._box, self._cache = box, {}

    def __contains__(self, name: str) -> bool:
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __getitem__(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = self._box.get(name)
        return self._cache[name]


# --------------------------------------------------------------------------- grading one submission


def _sandbox_environment(folder: Path, budget: str) -> dict[str, str]:
    """Only what a notebook needs; HOME and TMPDIR are its own folder, and no variable names the instructor's folders."""
    import llmbook
    from llmbook.data import cache_dir

    keep = {
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "LD_LIBRARY_PATH",
    }
    environment = {
        k: v for k, v in os.environ.items() if k in keep or (k.startswith("LLMBOOK_") and k != "LLMBOOK_STRICT_CHECKS")
    }
    environment.update(
        HOME=str(folder),
        TMPDIR=str(folder),
        MPLBACKEND="Agg",
        LLMBOOK_BUDGET=budget,
        LLMBOOK_DATA_DIR=str(cache_dir()),  # the shared data cache (the data sets, not the instructor's files)
        PYTHONPATH=str(Path(llmbook.__file__).resolve().parents[1]),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    return environment


def _remove(folder: Path) -> None:
    def unlock(function, path, _):  # a folder the notebook made unreadable
        try:
            os.chmod(path, 0o700)
            os.chmod(os.path.dirname(path), 0o700)
            function(path)
        except OSError:
            pass

    shutil.rmtree(folder, onerror=unlock)


def _run_submission(submission: Submission, notebook: dict, settings: dict) -> dict:
    """Run the notebook in a sandbox, then every check of its chapter here; never raises."""
    folder = Path(tempfile.mkdtemp(prefix="llmbook-grade-"))
    results: dict[str, dict] = {}
    try:
        (folder / "notebook.ipynb").write_text(json.dumps(notebook), encoding="utf-8")  # its own copy, nothing else
        box = _Sandbox(folder, _sandbox_environment(folder, settings["budget"]))
        try:
            box.start(time.monotonic() + 60)
            cells = [
                (index, _source(cell))
                for index, cell in enumerate(notebook["cells"])
                if cell.get("cell_type") == "code"
            ]
            deadline = time.monotonic() + settings["timeout"]
            box.send(("cells", cells), deadline)
            running = None
            while True:
                message = box.receive(deadline)
                if message[0] == "cell":
                    running = message[1]
                elif message[0] == "ready":
                    break
                else:
                    raise sandbox.StudentCrashed("the notebook's process sent an unexpected message")
        except sandbox.StudentTimeout:
            where = f" (cell {running} was still running)" if running is not None else ""
            box.close()
            return {"status": "timeout", "detail": f"timed out after {settings['timeout']:g} s{where}"}
        except sandbox.StudentCrashed as error:
            box.close()
            where = f" while running cell {running}" if running is not None else " before running any cell"
            return {"status": "dead", "detail": f"{error}{where} (its last output: {box.output.last_line()})"}
        namespace = _RemoteNamespace(box)
        for exercise_id in submission.exercise_ids:
            box.timed_out, box.deadline = False, time.monotonic() + settings["check_timeout"]
            try:
                result = core.run(exercise_id, namespace=namespace)
                passed, message, seconds = result.passed, result.message, result.seconds
            except (sandbox.StudentCrashed, sandbox.StudentTimeout) as error:  # while reading the answer's name
                passed, message, seconds = False, str(error), 0.0
            if box.timed_out:
                passed, seconds = False, settings["check_timeout"]
                message = f"the check timed out after {settings['check_timeout']:g} s (does your code loop forever?)"
            elif box.failure is not None and not passed:
                passed, seconds = False, 0.0
                message = box.failure if box.failure.startswith("not checked") else f"not checked: {box.failure}"
            results[exercise_id] = {"passed": passed, "message": message, "seconds": seconds}
        box.close()
        return {"status": "ok", "results": results}
    except Exception as error:  # noqa: BLE001 - a grader bug must cost one submission, not the batch
        return {
            "status": "error",
            "detail": f"the grader failed on this notebook: {type(error).__name__}: {error}",
            "results": results,
        }
    finally:
        _remove(folder)


def _rows_for(submission: Submission, notebook: dict | None, outcome: dict, settings: dict) -> list[Row]:
    notebook_name = submission.path.name
    if outcome.get("status") == "unreadable":
        ids = submission.exercise_ids or [""]
        return [
            Row(submission.student, notebook_name, i, 0, f"notebook could not be read: {outcome['detail']}", 0.0)
            for i in ids
        ]
    if not submission.exercise_ids:
        return [Row(submission.student, notebook_name, "", 0, "no graded exercises found in this notebook", 0.0)]
    edited = _edited_checks(submission, notebook) if notebook is not None else set()
    rows = []
    for exercise_id in submission.exercise_ids:
        prefix = "check cell edited; graded with the library's check: " if exercise_id in edited else ""
        status = outcome.get("status")
        if status == "timeout":
            row = Row(submission.student, notebook_name, exercise_id, 0, outcome["detail"], float(settings["timeout"]))
        elif exercise_id in outcome.get("results", {}):
            entry = outcome["results"][exercise_id]
            row = Row(
                submission.student,
                notebook_name,
                exercise_id,
                int(bool(entry["passed"])),
                entry["message"],
                round(float(entry["seconds"]), 4),
            )
        else:
            row = Row(
                submission.student, notebook_name, exercise_id, 0, outcome.get("detail") or "the check did not run", 0.0
            )
        row.message = prefix + row.message
        rows.append(row)
    return rows


def _spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(rows: list[Row], out: str | Path) -> None:
    """Write ``rows`` as CSV with the header ``student,notebook,exercise,passed,message,seconds``.

    Text that a spreadsheet would read as a formula (a student named
    ``=HYPERLINK(...)``, a message quoting ``-1``) is written with a leading
    apostrophe, so it stays text.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows([_spreadsheet_safe(value) for value in astuple(row)] for row in rows)


def grade(
    submissions: str | Path,
    out: str | Path | None = None,
    *,
    originals: str | Path | None = None,
    timeout: float = 300,
    check_timeout: float = 60,
    jobs: int = 1,
    checks_files: list[str | Path] = (),
    budget: str = "smoke",
    progress=None,
) -> list[Row]:
    """Grade every notebook under ``submissions``; write ``out`` (CSV) when given; return the rows.

    ``originals`` is the folder of the notebooks as handed out (the book's
    ``book/`` or the student edition): it names the exercises of each chapter
    and is what check cells are compared with. ``timeout`` bounds each
    notebook's execution, ``check_timeout`` each check. ``jobs`` notebooks run
    at once. ``checks_files`` are extra Python files of ``@exercise`` checks
    (loaded here, in the grader). A submission that cannot be read, crashes,
    loops or misbehaves scores 0 with the reason; the batch always completes.
    """
    if timeout <= 0 or check_timeout <= 0 or jobs < 1:
        raise ValueError(
            f"timeout ({timeout}) and check_timeout ({check_timeout}) must be positive and jobs ({jobs}) at least 1"
        )
    found = find_submissions(submissions, originals)
    for path in checks_files:
        core.load_checks_file(path)
    for chapter in sorted({i.split(".")[0] for s in found for i in s.exercise_ids}):
        core.all_exercises(chapter)  # import every chapter's checks once, before the threads start
    settings = {"timeout": timeout, "check_timeout": check_timeout, "budget": budget}

    def one(submission: Submission) -> list[Row]:
        started = time.monotonic()
        try:
            notebook = read_notebook(submission.path)
        except NotebookError as error:
            notebook, outcome = (
                None,
                {"status": "unreadable", "detail": str(error).replace(str(submission.path), submission.path.name)},
            )
        else:
            outcome = (
                _run_submission(submission, notebook, settings)
                if submission.exercise_ids
                else {"status": "ok", "results": {}}
            )
        rows = _rows_for(submission, notebook, outcome, settings)
        if progress is not None:
            passed = sum(r.passed for r in rows)
            progress(
                f"{submission.student} / {submission.path.name}: {passed}/{len(rows)} passed ({time.monotonic() - started:.1f} s)"
            )
        return rows

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = [row for rows in pool.map(one, found) for row in rows]
    if out is not None:
        write_csv(rows, out)
    return rows
