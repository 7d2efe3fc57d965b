"""The instructor's commands (every chapter; Appendix C: Instructor guide).

    python -m llmbook.instructor student-edition book/ OUT/
    python -m llmbook.instructor grade SUBMISSIONS/ --out grades.csv [--original book/]
    python -m llmbook.instructor list [book/]
    python -m llmbook.instructor colab-edition _build/jupyter_execute _build/colab [--html _build/html]

Needs the ``instructor`` extra: ``pip install "llmbook[instructor]"``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from llmbook.exercises import get

from .grader import grade
from .notebooks import NotebookError, exercise_cells, read_notebook, write_student_edition


def _student_edition(args: argparse.Namespace) -> int:
    written = write_student_edition(args.book, args.out)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} student notebooks in {args.out}: solutions replaced by stubs, outputs cleared.")
    return 0


def _grade(args: argparse.Namespace) -> int:
    original = args.original
    if original is None and Path("book").is_dir():
        original = Path("book")
    rows = grade(
        args.submissions,
        args.out,
        originals=original,
        timeout=args.timeout,
        check_timeout=args.check_timeout,
        jobs=args.jobs,
        checks_files=args.checks,
        budget=args.budget,
        progress=lambda line: print(line, flush=True),
    )
    scores: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        scores[row.student].append(row.passed)
    print(f"\n{'student':<30} passed")
    for student, passed in sorted(scores.items()):
        print(f"{student:<30} {sum(passed)}/{len(passed)}")
    print(f"\n{len(rows)} rows written to {args.out}")
    return 0


def _colab_edition(args: argparse.Namespace) -> int:
    from .colab import ColabError, write_colab_edition

    try:
        written = write_colab_edition(
            args.executed, args.out, toc=args.toc, html=args.html, budget=args.budget, version=args.version
        )
    except ColabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} Colab notebooks in {args.out}: glue values, outputs and student stubs in place.")
    return 0


def _list(args: argparse.Namespace) -> int:
    book = Path(args.book)
    notebooks = [book] if book.is_file() else sorted(book.glob("*.ipynb"))
    for path in notebooks:
        try:
            found = exercise_cells(read_notebook(path), str(path))
        except NotebookError as error:
            print(f"{path.name}: {error}")
            continue
        if not found:
            continue
        print(path.name)
        for cells in found:
            try:
                title = get(cells.exercise_id).title
            except KeyError:
                title = "(no registered check!)"
            print(f"  {cells.exercise_id:<32} {title}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmbook.instructor", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    student = commands.add_parser("student-edition", help="write the notebooks with every solution replaced by a stub")
    student.add_argument("book", help="a chapter notebook, or the folder of them (book/)")
    student.add_argument("out", help="output folder (must differ from the book folder)")
    student.set_defaults(run=_student_edition)

    grader = commands.add_parser("grade", help="run the library's checks on submitted notebooks, write a CSV")
    grader.add_argument("submissions", help="folder of submissions: STUDENT/NN_chapter.ipynb or .../STUDENT.ipynb")
    grader.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    grader.add_argument("--original", help="the notebooks as handed out (default: ./book if present)")
    grader.add_argument("--timeout", type=float, default=600, help="seconds to execute one notebook (default 600)")
    grader.add_argument("--check-timeout", type=float, default=60, help="seconds for one check (default 60)")
    grader.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    grader.add_argument(
        "--checks", action="append", default=[], help="extra Python file of @exercise checks (repeatable)"
    )
    grader.add_argument(
        "--budget",
        default="smoke",
        choices=["smoke", "cpu", "gpu"],
        help="LLMBOOK_BUDGET for the submissions (default smoke)",
    )
    grader.set_defaults(run=_grade)

    listing = commands.add_parser("list", help="list each chapter's graded exercises and their checks")
    listing.add_argument("book", nargs="?", default="book")
    listing.set_defaults(run=_list)

    colab = commands.add_parser("colab-edition", help="write the Colab edition from the executed book build")
    colab.add_argument("executed", help="the build's executed notebooks (_build/jupyter_execute)")
    colab.add_argument("out", help="output folder (_build/colab)")
    colab.add_argument("--html", help="the built HTML book, for the bibliography's anchors (_build/html)")
    colab.add_argument("--toc", help="another table of contents (default: _toc.yml)")
    colab.add_argument("--budget", default="cpu", help="the budget the build ran at (named in the first cell)")
    colab.add_argument("--version", help="git tag or commit to install (default: HEAD's tag, else its commit)")
    colab.set_defaults(run=_colab_edition)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, NotebookError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
