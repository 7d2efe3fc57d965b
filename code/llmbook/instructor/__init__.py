"""The instructor's tools: the student edition, the grader and their command line (Appendix C).

``python -m llmbook.instructor --help`` lists the commands. Install with the
``instructor`` extra (``pip install "llmbook[instructor]"``): the grader runs
submissions in an IPython shell. A reader's install does not need any of this;
the chapters' checks live in :mod:`llmbook.exercises`, which never imports
this package (nor does any chapter module).

Modules: ``notebooks`` (the exercises of a notebook, the student edition),
``grader`` (grading a folder of submissions into a CSV), ``sandbox`` (where a
submission runs while it is graded). The Sphinx extension that hides the
solutions in the HTML book is ``_ext/sphinx_solutions.py`` beside the book.
"""

from .notebooks import NotebookError, read_notebook, student_edition, write_student_edition

__all__ = ["NotebookError", "grade", "read_notebook", "student_edition", "write_student_edition"]


def grade(*args, **kwargs):
    """:func:`llmbook.instructor.grader.grade` (imported on first use: it needs the instructor extra)."""
    from .grader import grade as _grade

    return _grade(*args, **kwargs)
