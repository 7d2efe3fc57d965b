"""Grade a folder of submitted notebooks with the library's checks (every chapter; Appendix C).

``python -m llmbook.exercises grade SUBMISSIONS/ --out grades.csv``

Layout of ``SUBMISSIONS/`` (the student is named by a folder or a file name):

- ``SUBMISSIONS/<student>/<chapter notebook>.ipynb``: a folder per student, each
  holding notebooks named as in the book (``04_attention.ipynb``); the student
  is the folder's path below ``SUBMISSIONS``.
- ``SUBMISSIONS/<anything>/<student>.ipynb``: any other file name is the
  student's name; the chapter is recognised from the exercises it contains.

Each notebook runs in its own process and kernel (nbclient, errors allowed)
with a wall-clock ``timeout``; then every exercise of its chapter is checked
*in that kernel* with the library's checks (never the notebook's own check
cells). A notebook that crashes, loops, or whose check cells were edited is
reported in the CSV and never stops the batch. Submitted code runs with your
permissions: grade in a container or a throw-away VM.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from .notebooks import NotebookError, check_cell_sources, check_ids, exercise_id_for_label, exercise_labels, read_notebook

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
            raise FileNotFoundError(f"original notebooks {originals} not found (--original: the book/ folder or the student edition)")
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


def _edited_checks(submission: Submission) -> set[str]:
    if submission.original is None:
        return set()
    expected = check_cell_sources(read_notebook(submission.original))
    try:
        submitted = check_cell_sources(read_notebook(submission.path))
    except NotebookError:
        return set()
    return {i for i in submission.exercise_ids if i in expected and sorted(expected[i]) != sorted(submitted.get(i, []))}


def _kill(pid_text: str) -> None:
    try:
        os.killpg(int(pid_text), signal.SIGKILL)
    except (ValueError, ProcessLookupError, PermissionError):
        pass


def _run_worker(submission: Submission, settings: dict) -> dict:
    """Execute and check one notebook in a separate process; never raises."""
    with tempfile.TemporaryDirectory(prefix="llmbook-grade-") as scratch:
        scratch = Path(scratch)
        workdir = scratch / "work"
        workdir.mkdir()
        job = {
            "notebook": str(submission.path.resolve()),
            "ids": submission.exercise_ids,
            "timeout": settings["timeout"],
            "check_timeout": settings["check_timeout"],
            "kernel_name": settings["kernel_name"],
            "checks_files": [str(Path(f).resolve()) for f in settings["checks_files"]],
            "workdir": str(workdir),
            "result": str(scratch / "result.json"),
        }
        (scratch / "job.json").write_text(json.dumps(job), encoding="utf-8")
        environment = dict(os.environ, LLMBOOK_BUDGET=settings["budget"], MPLBACKEND="Agg")
        environment.pop("LLMBOOK_STRICT_CHECKS", None)  # the submission's own check cells must not raise
        # The worker enforces the timeouts; this is the backstop for a kernel that ignores interrupts.
        backstop = settings["timeout"] + settings["check_timeout"] * (len(submission.exercise_ids) + 1) + 60
        process = subprocess.Popen(
            [sys.executable, "-m", "llmbook.exercises._grade_worker", str(scratch / "job.json")],
            cwd=workdir,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=backstop)
        except subprocess.TimeoutExpired:
            _kill(str(process.pid))
            kernel_pid = scratch / "result.kernel.pid"
            _kill(kernel_pid.read_text() if kernel_pid.exists() else "")
            process.communicate()
            return {"status": "timeout", "results": {}}
        result = scratch / "result.json"
        if not result.exists():
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return {"status": "error", "detail": f"the grading process failed: {tail[0]}", "results": {}}
        return json.loads(result.read_text(encoding="utf-8"))


def _rows_for(submission: Submission, outcome: dict, settings: dict) -> list[Row]:
    edited = _edited_checks(submission)
    notebook = submission.path.name
    if not submission.exercise_ids:
        return [Row(submission.student, notebook, "", 0, "no graded exercises found in this notebook", 0.0)]
    rows = []
    for exercise_id in submission.exercise_ids:
        prefix = "check cell edited; graded with the library's check: " if exercise_id in edited else ""
        status = outcome.get("status")
        if status == "timeout":
            row = Row(submission.student, notebook, exercise_id, 0, f"timed out after {settings['timeout']:g} s", float(settings["timeout"]))
        elif status == "unreadable":
            row = Row(submission.student, notebook, exercise_id, 0, f"notebook could not be read: {outcome.get('detail')}", 0.0)
        elif exercise_id in outcome.get("results", {}):
            entry = outcome["results"][exercise_id]
            row = Row(submission.student, notebook, exercise_id, int(bool(entry["passed"])), entry["message"], round(float(entry["seconds"]), 4))
        else:
            detail = outcome.get("detail") or "the check did not run"
            row = Row(submission.student, notebook, exercise_id, 0, detail, 0.0)
        row.message = prefix + row.message
        rows.append(row)
    return rows


def write_csv(rows: list[Row], out: str | Path) -> None:
    """Write ``rows`` as CSV with the header ``student,notebook,exercise,passed,message,seconds``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(astuple(row) for row in rows)


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
    kernel_name: str = "python3",
    progress=None,
) -> list[Row]:
    """Grade every notebook under ``submissions``; write ``out`` (CSV) when given; return the rows.

    ``originals`` is the folder of the notebooks as handed out (the book's
    ``book/`` or the student edition): it names the exercises of each chapter
    and is what check cells are compared with. ``timeout`` bounds each
    notebook's execution, ``check_timeout`` each check. ``jobs`` notebooks run
    at once. ``checks_files`` are extra Python files of ``@exercise`` checks.
    """
    if timeout <= 0 or check_timeout <= 0 or jobs < 1:
        raise ValueError("timeout and check_timeout must be positive and jobs at least 1")
    found = find_submissions(submissions, originals)
    settings = {
        "timeout": timeout,
        "check_timeout": check_timeout,
        "kernel_name": kernel_name,
        "checks_files": list(checks_files),
        "budget": budget,
    }

    def one(submission: Submission) -> list[Row]:
        started = time.monotonic()
        if not submission.exercise_ids:
            outcome = {"status": "ok", "results": {}}
        else:
            outcome = _run_worker(submission, settings)
        rows = _rows_for(submission, outcome, settings)
        if progress is not None:
            passed = sum(r.passed for r in rows)
            progress(f"{submission.student} / {submission.path.name}: {passed}/{len(rows)} passed ({time.monotonic() - started:.1f} s)")
        return rows

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = [row for rows in pool.map(one, found) for row in rows]
    if out is not None:
        write_csv(rows, out)
    return rows
