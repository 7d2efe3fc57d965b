"""Small helpers for the chapters' notebooks (every chapter).

They work the same in the HTML build (where myst-nb is present), in Colab,
JupyterLab and VS Code (where it is not).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

__all__ = ["show_source", "glue"]


def show_source(obj: Any):
    """Show the library's own source of ``obj`` (a function, class or method), highlighted.

    The chapters use this instead of copying code: what the reader sees is
    exactly what runs. The library is formatted at 120 columns, the book's
    text column fits 76, so when ruff is installed the listing is reformatted
    at 76 columns for the page: the code is the same, only its line breaks
    differ (comments and docstrings are not rewrapped). Without ruff (e.g. in
    Colab), or if it fails, the source is shown as it is in the file.
    """
    from IPython.display import Code

    try:
        source = inspect.getsource(obj)
    except TypeError:
        raise TypeError(
            f"show_source shows Python source; {obj!r} is a {type(obj).__name__} with none (a built-in or "
            "C function, or an instance): pass a function, class or method of llmbook"
        ) from None
    except OSError as error:
        raise ValueError(f"no source found for {obj!r}: {error}") from None
    if source.startswith((" ", "\t")):  # a method: dedent it
        source = inspect.cleandoc("\n" + source) + "\n"
    return Code(reflow(source).rstrip("\n"), language="python")


LISTING_WIDTH = 76


def reflow(source: str, width: int = LISTING_WIDTH) -> str:
    """``source`` reformatted by ruff at ``width`` columns; unchanged if ruff is missing or fails."""
    command = [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", str(width)]
    try:
        result = subprocess.run(
            [*command, "--stdin-filename", "listing.py", "-"],
            input=source,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return _wrap_prose(source, width)
    formatted = result.stdout if result.returncode == 0 and result.stdout.strip() else source
    return _wrap_prose(formatted, width)


def _wrap_prose(source: str, width: int) -> str:
    """Lines of comments and docstrings longer than ``width`` rewrapped at ``width`` (ruff leaves them
    alone): a trailing comment moves onto its own line above its code; the code is unchanged."""
    import io
    import textwrap
    import tokenize

    lines = source.splitlines()
    comments: dict[int, int] = {}  # row (1-based) -> column where its comment starts
    docstring_rows: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.start[1]
            elif token.type == tokenize.STRING and token.string.lstrip("rbuRBU").startswith(('"""', "'''")):
                docstring_rows.update(range(token.start[0], token.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source
    wrapped = []
    for row, line in enumerate(lines, start=1):
        indent = line[: len(line) - len(line.lstrip())]
        if len(line) <= width:
            wrapped.append(line)
        elif row in comments:
            code, comment = line[: comments[row]].rstrip(), line[comments[row] :].lstrip("#").strip()
            prefix = indent + "# "
            wrapped += textwrap.wrap(comment, width, initial_indent=prefix, subsequent_indent=prefix) or [prefix]
            if code.strip():
                wrapped.append(code)
        elif row in docstring_rows and not line.strip().startswith(('"""', "'''")):
            wrapped += textwrap.wrap(line.strip(), width, initial_indent=indent, subsequent_indent=indent)
        elif row in docstring_rows:  # the opening line: keep the quotes on it
            wrapped += textwrap.wrap(line.strip(), width, initial_indent=indent, subsequent_indent=indent)
        else:
            wrapped.append(line)
    return "\n".join(wrapped) + ("\n" if source.endswith("\n") else "")


def glue(name: str, value: Any, display: bool = False) -> None:
    """Make ``value`` available to the prose as ``{glue:}`name``` in the HTML book.

    Returns nothing, so a ``glue(...)`` on a cell's last line adds no stray
    number to the page. Outside the book build (Colab, JupyterLab) myst-nb may
    be missing; then this does nothing.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"glue needs a non-empty string name, got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, _as_python_scalar(value), display=display)


def _as_python_scalar(value: Any) -> Any:
    """NumPy scalars and 0-d tensors as Python numbers, so ``{glue:text}`name:.3f``` can format them.

    (NumPy 2 writes ``np.float64(0.8)`` as their text, which the format spec cannot parse.)
    """
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value
