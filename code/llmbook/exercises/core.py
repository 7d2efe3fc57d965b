"""The machinery of self-checking exercises (every chapter).

A chapter's checks live in ``llmbook.exercises.chNN`` and register themselves
with :func:`exercise`. In a notebook the student writes an answer (a function
or a value bound to a known name) and runs ``check("ch04.softmax")``, which
finds that name in the notebook, runs the hidden tests, and prints either that
the answer is right or what is wrong with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Exercise",
    "CheckFailed",
    "Result",
    "exercise",
    "expect",
    "check",
    "run",
    "get",
    "all_exercises",
    "chapter_modules",
    "load_checks_file",
]


class CheckFailed(AssertionError):
    """Raised by a check when the answer is wrong; the message is shown to the student."""


@dataclass
class Exercise:
    id: str  # "ch04.softmax": chapter module, then a short name
    name: str  # the notebook variable the check reads (a function, class or value)
    title: str
    check: Callable[[Any], None]  # raises CheckFailed with a helpful message
    wrong: list[Any] = field(default_factory=list)  # plausible wrong answers: each must fail (tests)


@dataclass
class Result:
    id: str
    passed: bool
    message: str
    seconds: float
    unanswered: bool = False  # the student has not written an answer yet (stub or missing name)

    def __str__(self) -> str:
        mark = "✅ correct" if self.passed else "❌ not yet"
        return f"{mark}: {self.message}"


_REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, *, name: str, title: str, wrong: list[Any] | None = None):
    """Register the decorated function as the check of exercise ``id``.

    The check receives the student's object (the notebook variable ``name``)
    and raises :class:`CheckFailed` (most simply through :func:`expect`) with a
    message that says what is wrong. ``wrong`` lists plausible wrong answers;
    the test suite proves that each of them is rejected.
    """

    def register(check_function: Callable[[Any], None]) -> Callable[[Any], None]:
        from_a_file = [ids for ids in _LOADED_FILES.values() if id in ids]
        existing = _REGISTRY.get(id)
        chapters_own = existing is not None and existing.check.__module__.startswith("llmbook.exercises.ch")
        if existing is not None and not (_LOADING and not chapters_own):
            # Outside a checks file, or over a chapter's own check: a mistake, not a reload.
            raise ValueError(f"exercise {id!r} is registered twice")
        for ids in from_a_file:  # a checks file loaded later replaces another file's check of the same id
            ids.remove(id)
        _REGISTRY[id] = Exercise(id, name, title, check_function, list(wrong or []))
        return check_function

    return register


def expect(condition: bool, message: str) -> None:
    """Fail the check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def _load_chapter(exercise_id: str) -> None:
    chapter = exercise_id.split(".", 1)[0]
    try:
        importlib.import_module(f"llmbook.exercises.{chapter}")
    except ModuleNotFoundError as error:
        if error.name != f"llmbook.exercises.{chapter}":
            raise


def get(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id`` (its chapter's checks are imported on first use)."""
    if exercise_id not in _REGISTRY:
        _load_chapter(exercise_id)
    if exercise_id not in _REGISTRY:
        known = ", ".join(sorted(e for e in _REGISTRY if e.split(".")[0] == exercise_id.split(".")[0])) or "none"
        raise KeyError(f"no exercise {exercise_id!r}; this chapter has: {known}")
    return _REGISTRY[exercise_id]


def chapter_modules() -> list[str]:
    """Names of the chapters that have checks (``["ch01", "ch04", ...]``): the ``chNN.py`` modules here."""
    return sorted(path.stem for path in Path(__file__).parent.glob("ch[0-9]*.py"))


def all_exercises(chapter: str | None = None) -> list[Exercise]:
    """Every registered exercise (of one chapter, e.g. ``"ch04"``), importing all chapter modules."""
    for module in chapter_modules():
        importlib.import_module(f"llmbook.exercises.{module}")
    return [e for e in _REGISTRY.values() if chapter is None or e.id.startswith(chapter + ".")]


_LOADED_FILES: dict[Path, list[str]] = {}
_LOADING = False  # True while load_checks_file runs a file


def load_checks_file(path: str | Path) -> list[str]:
    """Import a Python file of extra ``@exercise`` checks (an instructor's own); returns the ids it registered.

    The file imports ``from llmbook.exercises import exercise, expect`` like a
    chapter module; ids follow the ``chNN.name`` convention. Loading the same
    file again (a re-run notebook cell), or another file with the same ids (a
    copy), replaces those checks; a chapter's own checks are never replaced.
    """
    global _LOADING
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checks file {path} not found")
    for exercise_id in _LOADED_FILES.pop(path, []):
        _REGISTRY.pop(exercise_id, None)
    before = {exercise_id: ex.check for exercise_id, ex in _REGISTRY.items()}
    spec = importlib.util.spec_from_file_location(f"llmbook_extra_checks_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    _LOADING = True
    try:
        spec.loader.exec_module(module)
    finally:
        _LOADING = False
    _LOADED_FILES[path] = sorted(i for i, ex in _REGISTRY.items() if before.get(i) is not ex.check)
    return _LOADED_FILES[path]


_MISSING = object()


def _where(error: BaseException) -> tuple[int | None, str]:
    """Line number and text where ``error`` was raised (``student_line`` when it was raised in another process)."""
    if getattr(error, "student_line", None) is not None:
        return error.student_line
    last = traceback.extract_tb(error.__traceback__)[-1]
    return last.lineno, last.line or ""


def _crash_message(error: BaseException) -> str:
    lineno, line = _where(error)
    name = getattr(error, "student_type", type(error).__name__)
    return f"your code raised {name}: {error} (line {lineno}: {line!s})"


def run(exercise_id: str, answer: Any = _MISSING, namespace: dict | None = None) -> Result:
    """Run one check and return its :class:`Result` (never raises for a wrong answer)."""
    ex = get(exercise_id)
    start = time.perf_counter()
    if answer is _MISSING:
        namespace = namespace if namespace is not None else {}
        if ex.name not in namespace:
            return Result(
                ex.id,
                False,
                f"`{ex.name}` is not defined yet: write your answer in the exercise's cell "
                "(in place of `raise NotImplementedError()`), run that cell, then this one.",
                0.0,
                unanswered=True,
            )
        answer = namespace[ex.name]
    try:
        ex.check(answer)
    except CheckFailed as failure:
        return Result(ex.id, False, str(failure), time.perf_counter() - start)
    except NotImplementedError as error:
        line = _where(error)[1].strip()
        if line in {"raise NotImplementedError()", "raise NotImplementedError"} or (
            not line and not str(error)
        ):  # the stub
            return Result(
                ex.id,
                False,
                f"`{ex.name}` is not implemented yet: replace `raise NotImplementedError()` with your code, "
                "run that cell, then this one.",
                time.perf_counter() - start,
                unanswered=True,
            )
        return Result(ex.id, False, _crash_message(error), time.perf_counter() - start)
    except Exception as error:  # the student's code crashed: show where, briefly
        return Result(ex.id, False, _crash_message(error), time.perf_counter() - start)
    return Result(ex.id, True, f"{ex.title}: all checks passed.", time.perf_counter() - start)


def check(exercise_id: str, answer: Any = _MISSING) -> None:
    """Check the student's answer to ``exercise_id`` and print the verdict.

    With no ``answer``, the exercise's variable is looked up in the caller's
    (the notebook's) globals. When ``LLMBOOK_STRICT_CHECKS=1`` (the book build
    and the tests), a wrong answer raises, so a broken reference solution fails
    the build.
    """
    namespace = inspect.currentframe().f_back.f_globals if answer is _MISSING else None
    result = run(exercise_id, answer, namespace)
    print(result)
    if not result.passed and os.environ.get("LLMBOOK_STRICT_CHECKS") == "1":
        raise CheckFailed(f"{exercise_id}: {result.message}")
