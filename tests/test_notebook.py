"""llmbook.notebook.show_source: listings reflowed for the book's text column."""

import ast
import subprocess
import sys
import textwrap

import pytest

from llmbook import notebook


def _has_ruff() -> bool:
    try:
        command = [sys.executable, "-m", "ruff", "--version"]
        return subprocess.run(command, capture_output=True, check=False).returncode == 0
    except OSError:
        return False


LONG = textwrap.dedent(
    """
    def scaled(values, factor, offset, clip_low, clip_high, keep_sign=True, name="listing"):
        return [min(max(v * factor + offset, clip_low), clip_high) for v in values if keep_sign or v >= 0]
    """
).lstrip()


@pytest.mark.skipif(not _has_ruff(), reason="ruff is not installed")
def test_reflow_fits_76_columns_and_keeps_the_code():
    assert max(len(line) for line in LONG.splitlines()) > 76
    out = notebook.reflow(LONG)
    assert max(len(line) for line in out.splitlines()) <= 76
    assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(LONG))


@pytest.mark.skipif(not _has_ruff(), reason="ruff is not installed")
def test_show_source_of_a_method_is_dedented_and_reflowed():
    from llmbook.models import GPT

    text = notebook.show_source(GPT.forward).data
    assert text.startswith("def forward(")
    code_lines = [line for line in text.splitlines() if not line.lstrip().startswith(("#", '"', 'f"', "'"))]
    assert all(len(line) <= 76 for line in code_lines), [line for line in code_lines if len(line) > 76]
    ast.parse(text)


def test_reflow_falls_back_to_the_source_when_ruff_fails(monkeypatch):
    monkeypatch.setattr(notebook.sys, "executable", "/nonexistent/python")
    assert notebook.reflow(LONG) == LONG
    broken = "def f(:\n    pass\n"  # ruff cannot format a syntax error
    monkeypatch.undo()
    assert notebook.reflow(broken) == broken


def test_show_source_rejects_a_builtin():
    with pytest.raises(TypeError, match="pass a function, class or method"):
        notebook.show_source(len)
