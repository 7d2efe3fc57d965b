"""Self-checking exercises for every chapter.

In a notebook: ``from llmbook.exercises import check`` then ``check("ch04.softmax")``.

Modules: ``core`` (registry and checks) and ``chNN`` (each chapter's checks).
The instructor's tools (student edition, grader, their command line) are a
separate package, :mod:`llmbook.instructor` (Appendix C), which this one
never imports.
"""

from .core import CheckFailed, Exercise, Result, all_exercises, check, exercise, expect, get, load_checks_file, run

__all__ = [
    "CheckFailed",
    "Exercise",
    "Result",
    "all_exercises",
    "check",
    "exercise",
    "expect",
    "get",
    "load_checks_file",
    "run",
]
