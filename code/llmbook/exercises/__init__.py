"""Self-checking exercises for every chapter, and the instructor's tools.

In a notebook: ``from llmbook.exercises import check`` then ``check("ch04.softmax")``.
Instructors: ``python -m llmbook.exercises student-edition book/ OUT/`` and
``python -m llmbook.exercises grade SUBMISSIONS/ --out grades.csv``.
"""

from .core import CheckFailed, Exercise, Result, all_exercises, check, exercise, expect, get, run

__all__ = ["CheckFailed", "Exercise", "Result", "all_exercises", "check", "exercise", "expect", "get", "run"]
