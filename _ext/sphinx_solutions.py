"""Sphinx extension: really hide the book's gated solutions (every chapter's exercises).

The chapters wrap each solution code cell in sphinx-exercise's gated directives
(``{solution-start}`` ... ``{solution-end}``, see CONTRIBUTING.md). With
``hide_solutions: true``, sphinx-exercise 1.2.1 drops the ``solution-start``
node but leaves ``solution-end`` behind, so the build crashes ("unknown node
type: solution_end_node"), and the cells between them would stay visible anyway.

This extension loads sphinx-exercise and, only when ``hide_solutions`` is true,
removes everything from each ``solution-start`` to its ``solution-end``: the
solution code cell, its outputs and the markers. With ``hide_solutions: false``
sphinx-exercise's own behaviour (a collapsed dropdown) is unchanged.

With hidden solutions it also replaces the notebooks that the HTML offers for
download (``_sources/*.ipynb``) by their student edition, so the solutions are
not one click away.

The environment variable ``LLMBOOK_HIDE_SOLUTIONS=1`` (or ``0``) overrides the
config, so one ``_config.yml`` builds both editions (``make book-student``).

It lives beside the book (``_ext/``), not in the library: a reader's install
does not need Sphinx. Use it in ``_config.yml``::

    sphinx:
      extra_extensions: [sphinx_exercise]
      local_extensions:
        sphinx_solutions: _ext
      config:
        hide_solutions: false   # true for the student HTML edition
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx_exercise.directive import SolutionStartDirective
from sphinx_exercise.nodes import solution_end_node

__all__ = ["setup"]


class hidden_solution_start(nodes.Element):
    """Where a hidden solution began; removed (with what follows) before writing."""


class HideableSolutionStart(SolutionStartDirective):
    """``solution-start`` that leaves a marker behind when solutions are hidden."""

    def run(self):
        produced = super().run()  # keeps sphinx-exercise's bookkeeping (gated-structure checks)
        if self.env.app.config.hide_solutions:
            return [hidden_solution_start()]
        return produced


class RemoveHiddenSolutions(SphinxTransform):
    """Delete each hidden solution: the marker, every sibling up to ``solution-end``, and that end."""

    default_priority = 5  # after sphinx-exercise checks the structure (1), before it merges (10)

    def apply(self, **kwargs: Any) -> None:
        if not self.config.hide_solutions:
            return
        for marker in list(self.document.findall(hidden_solution_start)):
            parent = marker.parent
            start = parent.index(marker)
            end = next(
                (
                    i
                    for i in range(start + 1, len(parent.children))
                    if isinstance(parent.children[i], solution_end_node)
                ),
                None,
            )
            if end is None:
                # sphinx-exercise's own structure check has already reported a missing solution-end.
                parent.remove(marker)
                continue
            del parent.children[start : end + 1]


def _hide_solutions_from_environment(app, config) -> None:
    value = os.environ.get("LLMBOOK_HIDE_SOLUTIONS", "").strip().lower()
    if value in {"1", "true", "yes"}:
        config.hide_solutions = True
    elif value in {"0", "false", "no"}:
        config.hide_solutions = False
    elif value:
        raise ValueError(f"LLMBOOK_HIDE_SOLUTIONS={value!r}: use 1 (hide the solutions) or 0 (show them)")


def _student_edition_downloads(app, exception) -> None:
    """Replace the downloadable notebooks by their student edition when the solutions are hidden."""
    if exception is not None or not app.config.hide_solutions or app.builder.format != "html":
        return
    from llmbook.instructor.notebooks import read_notebook, student_edition

    for path in Path(app.outdir, "_sources").rglob("*.ipynb"):
        student = student_edition(read_notebook(path), str(path))
        path.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def setup(app) -> dict[str, Any]:
    app.setup_extension("sphinx_exercise")
    app.connect("config-inited", _hide_solutions_from_environment)
    app.connect("build-finished", _student_edition_downloads)
    app.add_node(hidden_solution_start)
    app.add_directive("solution-start", HideableSolutionStart, override=True)
    app.add_transform(RemoveHiddenSolutions)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
