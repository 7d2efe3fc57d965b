"""Reading the exercises out of chapter notebooks, and writing the student edition (every chapter).

A graded exercise in a chapter notebook is (CONTRIBUTING.md, "Exercises")::

    markdown  ```{exercise} Title
              :label: ex-ch04-masked-softmax
              ```
    markdown  ```{solution-start} ex-ch04-masked-softmax
              :class: dropdown
              ```
    code      def masked_softmax(scores, mask):
                  ### BEGIN SOLUTION
                  ...
                  ### END SOLUTION
    markdown  ```{solution-end}
              ```
    code      check("ch04.masked_softmax")

The solution lives only between nbgrader's markers; :func:`student_edition`
replaces it by a stub, so the book is the one source of truth.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "ExerciseCells",
    "NotebookError",
    "check_cell_sources",
    "check_ids",
    "exercise_cells",
    "exercise_id_for_label",
    "exercise_labels",
    "label_for_exercise_id",
    "read_notebook",
    "solution_body_lines",
    "strip_solution",
    "student_edition",
    "write_student_edition",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
STUB_LINES = ("# YOUR CODE HERE", "raise NotImplementedError()")

# An {exercise} directive's option lines (right after the directive line), where :label: may be.
_EXERCISE_OPTIONS = re.compile(
    r"^[ \t]*(?:`{3,}|:{3,})\{exercise(?:-start)?\}[^\n]*\n((?:[ \t]*:[\w-]+:[^\n]*(?:\n|$))*)", re.M
)
_LABEL_OPTION = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.M)
_SOLUTION_START = re.compile(r"^(`{3,}|:{3,})\{solution-start\}\s*(\S+)[^\n]*\n(?:\s*:[\w-]+:[^\n]*\n)*\s*\1\s*$", re.M)
_SOLUTION_END = re.compile(r"^(`{3,}|:{3,})\{solution-end\}[^\n]*\n?\s*\1\s*$", re.M)
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](ch\w+\.\w+)["']""")
_LABEL = re.compile(r"^ex-(ch\w+?)-([\w-]+)$")


class NotebookError(ValueError):
    """A notebook breaks the exercise convention of CONTRIBUTING.md; the message says where and how."""


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def read_notebook(path: str | Path) -> dict:
    """The notebook at ``path`` as a plain dict (nbformat 4 JSON), its structure checked.

    Raises :class:`NotebookError`, saying what is wrong, for a file that is
    not JSON, not a notebook, of another format version, or whose cells are
    not a list of cells.
    """
    path = Path(path)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise NotebookError(f"cannot read notebook {path}: {error}") from error
    if not isinstance(notebook, dict) or "cells" not in notebook:
        version = notebook.get("nbformat") if isinstance(notebook, dict) else None
        if version is not None and version != 4:
            raise NotebookError(
                f"{path} is a notebook of format version {version!r}; open it in Jupyter and save it (format 4)"
            )
        raise NotebookError(f"{path} is not a Jupyter notebook (no 'cells'): is it an .ipynb saved by Jupyter?")
    if notebook.get("nbformat", 4) != 4:
        raise NotebookError(
            f"{path} is a notebook of format version {notebook['nbformat']!r}; open it in Jupyter and save it (format 4)"
        )
    cells = notebook["cells"]
    if not isinstance(cells, list):
        raise NotebookError(f"{path}: 'cells' is a {type(cells).__name__}, not a list of cells; the file is damaged")
    for index, cell in enumerate(cells):
        source = cell.get("source", "") if isinstance(cell, dict) else None
        if (
            not isinstance(cell, dict)
            or cell.get("cell_type") not in {"code", "markdown", "raw"}
            or not (
                isinstance(source, str) or (isinstance(source, list) and all(isinstance(line, str) for line in source))
            )
        ):
            raise NotebookError(
                f"{path}: cell {index} is not a notebook cell (a dict with a cell_type of code, markdown or raw "
                "and a source of text); the file is damaged"
            )
    return notebook


def label_for_exercise_id(exercise_id: str) -> str:
    """``"ch04.masked_softmax"`` -> ``"ex-ch04-masked-softmax"`` (the `{exercise}` label)."""
    chapter, name = exercise_id.split(".", 1)
    return f"ex-{chapter}-{name.replace('_', '-')}"


def exercise_id_for_label(label: str) -> str:
    """``"ex-ch04-masked-softmax"`` -> ``"ch04.masked_softmax"`` (the registered check's id)."""
    match = _LABEL.match(label)
    if not match:
        raise NotebookError(f"exercise label {label!r} does not follow 'ex-chNN-short-name' (CONTRIBUTING.md)")
    return f"{match.group(1)}.{match.group(2).replace('-', '_')}"


def exercise_labels(notebook: dict) -> list[str]:
    """Labels ``ex-...`` of the graded `{exercise}` directives in the notebook's markdown, in order.

    An exercise without a label, or with a label not starting ``ex-``, is an
    ungraded open question.
    """
    labels = []
    for cell in notebook["cells"]:
        if cell.get("cell_type") == "markdown":
            for options in _EXERCISE_OPTIONS.findall(_source(cell)):
                labels += [label for label in _LABEL_OPTION.findall(options) if label.startswith("ex-")]
    return labels


def check_ids(notebook: dict) -> list[str]:
    """Exercise ids of the ``check("chNN.name")`` calls in the notebook's code cells, in order."""
    ids = []
    for cell in notebook["cells"]:
        if cell.get("cell_type") == "code":
            ids += _CHECK_CALL.findall(_source(cell))
    return ids


def check_cell_sources(notebook: dict) -> dict[str, list[str]]:
    """For each exercise id, the sources of the code cells that call ``check`` on it."""
    cells: dict[str, list[str]] = {}
    for cell in notebook["cells"]:
        if cell.get("cell_type") == "code":
            for exercise_id in _CHECK_CALL.findall(_source(cell)):
                cells.setdefault(exercise_id, []).append(_normalize(_source(cell)))
    return cells


def _normalize(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


@dataclass
class ExerciseCells:
    """Where one graded exercise lives in a notebook (cell indices)."""

    label: str
    exercise_id: str
    solution_cell: int | None  # the code cell between solution-start and solution-end
    check_cell: int | None  # the first code cell calling check(exercise_id)
    solution_source: str | None


def exercise_cells(notebook: dict, where: str = "notebook") -> list[ExerciseCells]:
    """Every `{exercise}` of ``notebook`` with its solution cell and check cell.

    Raises :class:`NotebookError` when a gated solution does not wrap exactly
    one code cell holding the nbgrader markers.
    """
    cells = notebook["cells"]
    solutions: dict[str, int] = {}
    open_label, open_at, inside = None, None, []
    for index, cell in enumerate(cells):
        source = _source(cell)
        if cell.get("cell_type") == "markdown":
            for match in _SOLUTION_START.finditer(source):
                open_label, open_at, inside = match.group(2), index, []
            if _SOLUTION_END.search(source) and open_label is not None:
                code = [i for i in inside if cells[i].get("cell_type") == "code"]
                if len(code) != 1:
                    raise NotebookError(
                        f"{where}: solution of {open_label} (cell {open_at}) wraps {len(code)} code cells; "
                        "it must wrap exactly one self-contained code cell"
                    )
                solutions[open_label] = code[0]
                open_label = None
        elif open_label is not None:
            inside.append(index)
    if open_label is not None:
        raise NotebookError(f"{where}: {{solution-start}} {open_label} (cell {open_at}) has no {{solution-end}}")

    checks: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            for exercise_id in _CHECK_CALL.findall(_source(cell)):
                checks.setdefault(exercise_id, index)

    found = []
    for label in exercise_labels(notebook):
        exercise_id = exercise_id_for_label(label)
        solution = solutions.get(label)
        found.append(
            ExerciseCells(
                label,
                exercise_id,
                solution,
                checks.get(exercise_id),
                _source(cells[solution]) if solution is not None else None,
            )
        )
    return found


_DEFINED_NAME = re.compile(r"^(?:def|class)\s+(\w+)|^(\w+)\s*(?::[^=]*)?=(?!=)")


def _stub(indent: str, block: list[str]) -> list[str]:
    """The stub for one solution block; at the top level of a cell it names what the student must define."""
    comment = STUB_LINES[0]
    if not indent:
        names = []
        for line in block:
            match = _DEFINED_NAME.match(line)  # only unindented lines: what the block defines
            name = match and (match.group(1) or match.group(2))
            if name and name not in names:
                names.append(name)
        if names:
            comment += ": define " + ", ".join(f"`{name}`" for name in names)
    return [f"{indent}{comment}\n", f"{indent}{STUB_LINES[1]}\n"]


def strip_solution(source: str, where: str = "cell") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block by a stub.

    The stub keeps the indentation of the BEGIN line (so a ``def`` line above it
    stays valid Python)::

        def f(x):                       def f(x):
            ### BEGIN SOLUTION              # YOUR CODE HERE
            return x + 1         ->         raise NotImplementedError()
            ### END SOLUTION

    At the top level of a cell the comment names what to define
    (``# YOUR CODE HERE: define `prediction```).
    """
    out, block, inside, indent = [], [], False, ""
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if inside:
                raise NotebookError(f"{where}, line {number}: a second {BEGIN_SOLUTION} before {END_SOLUTION}")
            inside, block = True, []
            indent = line[: len(line) - len(line.lstrip())]
        elif stripped == END_SOLUTION:
            if not inside:
                raise NotebookError(f"{where}, line {number}: {END_SOLUTION} without {BEGIN_SOLUTION}")
            inside = False
            out += _stub(indent, block)
        elif inside:
            block.append(line)
        else:
            out.append(line)
    if inside:
        raise NotebookError(f"{where}: {BEGIN_SOLUTION} without {END_SOLUTION}")
    return "".join(out).rstrip("\n")


def solution_body_lines(source: str) -> list[str]:
    """The non-blank lines between the solution markers (stripped): what a student must not see."""
    lines, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            inside = True
        elif stripped == END_SOLUTION:
            inside = False
        elif inside and stripped:
            lines.append(stripped)
    return lines


def _remove_gates(source: str) -> str:
    source = _SOLUTION_START.sub("", source)
    source = _SOLUTION_END.sub("", source)
    return re.sub(r"\n{3,}", "\n\n", source).strip()


def student_edition(notebook: dict, where: str = "notebook") -> dict:
    """A copy of ``notebook`` for students: solutions stubbed, gates removed, outputs and metadata cleaned.

    Check cells are kept, and marked read-only (``editable: false``) where the
    front end honours it (JupyterLab, Notebook 7, VS Code).
    """
    exercise_cells(notebook, where)  # validates the gated structure first
    student = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(student["cells"]):
        source = _source(cell)
        kind = cell.get("cell_type")
        tags = list(cell.get("metadata", {}).get("tags", []))
        cell["metadata"] = {"tags": tags} if tags else {}
        if kind == "markdown":
            if _SOLUTION_START.search(source) or _SOLUTION_END.search(source):
                source = _remove_gates(source)
                if not source:
                    continue
        elif kind == "code":
            if BEGIN_SOLUTION in source:
                source = strip_solution(source, f"{where}, cell {index}")
            if _CHECK_CALL.search(source):
                cell["metadata"].update({"editable": False, "deletable": False})
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["source"] = source
        cells.append(cell)
    student["cells"] = cells
    kept = {
        key: notebook.get("metadata", {})[key]
        for key in ("kernelspec", "language_info")
        if key in notebook.get("metadata", {})
    }
    if "language_info" in kept:
        kept["language_info"] = {"name": kept["language_info"].get("name", "python")}
    student["metadata"] = kept
    return student


def write_student_edition(source: str | Path, out: str | Path) -> list[Path]:
    """Write the student edition of a notebook, or of every notebook under a folder, into ``out``.

    Returns the written paths. Folder structure below ``source`` is kept;
    checkpoints and build folders are skipped.
    """
    source, out = Path(source), Path(out)
    if source.is_file():
        notebooks, root = [source], source.parent
    elif source.is_dir():
        notebooks = sorted(
            p for p in source.rglob("*.ipynb") if not any(part in {"_build", ".ipynb_checkpoints"} for part in p.parts)
        )
        root = source
    else:
        raise FileNotFoundError(f"{source} is neither a notebook nor a folder of notebooks")
    if not notebooks:
        raise NotebookError(f"no .ipynb notebooks under {source}")
    if out.resolve() == root.resolve():
        raise ValueError(f"the output folder must differ from {root}: the solutions would be overwritten")
    written = []
    for path in notebooks:
        target = out / path.relative_to(root)
        if target.resolve() == path.resolve():
            raise ValueError(f"refusing to overwrite the original {path}: choose another output folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        student = student_edition(read_notebook(path), str(path))
        target.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written
