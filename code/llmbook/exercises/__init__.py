"""Self-checking exercises for every chapter, and the instructor's tools.

In a notebook: ``from llmbook.exercises import check`` then ``check("ch04.softmax")``.
Instructors: ``python -m llmbook.exercises student-edition book/ OUT/`` and
``python -m llmbook.exercises grade SUBMISSIONS/ --out grades.csv`` (Appendix C).

Modules: ``core`` (registry and checks), ``notebooks`` (exercises in a notebook,
the student edition), ``grader`` (grading submissions), ``sphinx_solutions``
(hiding solutions in the HTML book), ``chNN`` (each chapter's checks).
"""

from .core import CheckFailed, Exercise, Result, all_exercises, check, exercise, expect, get, load_checks_file, run

__all__ = ["CheckFailed", "Exercise", "Result", "all_exercises", "check", "exercise", "expect", "get", "load_checks_file", "run"]
