"""Controls that work in a static page (chapters 1, 2, 4 and 6; Chapter 8 uses them for decoding).

:func:`explore` calls ``render(**params)`` once for every point of a small grid of
parameter values and returns an :class:`Explorer`: self-contained HTML and
JavaScript with one slider (numbers) or drop-down menu (anything else) per
parameter. Moving a control switches to the output computed for that point. The
outputs were computed in advance, so nothing runs when a reader moves a control:
no kernel, no server, no network. The same call works in JupyterLab, Colab,
VS Code and the HTML book.

``render`` may return

* a string: shown as preformatted text (escaped, so any text is safe);
* a Matplotlib figure: stored as a PNG (stamped by :mod:`llmbook.figures` for
  the book's figure-text check) and closed;
* an object with ``_repr_html_`` (``IPython.display.HTML``, an attention view's
  HTML is too big to repeat): inserted as HTML. Scripts inside it do not run.

>>> explorer = explore(lambda n: "x" * n, {"n": [1, 2, 3]}, labels={"n": "repeat"})
>>> explorer
Explorer(n: 3 values; 3 points, 3 distinct outputs, ... KiB of HTML)
>>> explore(lambda a, b: "", {"a": list(range(30)), "b": list(range(30))})
Traceback (most recent call last):
...
ValueError: the grid has 900 points (a: 30 values x b: 30 values), more than max_points=200; every point's output is stored in the page: use fewer values per parameter, or raise max_points if you mean it
"""

from __future__ import annotations

import base64
import html
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

from . import validate

__all__ = ["Explorer", "explore", "MAX_POINTS", "MAX_BYTES"]

MAX_POINTS = 200  # grid points per control panel
MAX_BYTES = 4 * 1024 * 1024  # HTML per control panel (all outputs together)


class Explorer:
    """The HTML of one control panel; Jupyter shows it through :meth:`_repr_html_`.

    ``points`` is the number of grid points, ``distinct`` the number of different
    outputs stored (equal outputs are stored once), ``nbytes`` the size of the HTML.
    """

    def __init__(self, html_text: str, grid: dict[str, list], points: int, distinct: int):
        self.html = html_text
        self.grid = grid
        self.points = points
        self.distinct = distinct

    @property
    def nbytes(self) -> int:
        return len(self.html.encode("utf-8"))

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        params = ", ".join(f"{name}: {len(values)} values" for name, values in self.grid.items())
        return (
            f"Explorer({params}; {self.points} points, {self.distinct} distinct outputs, "
            f"{self.nbytes / 1024:.1f} KiB of HTML)"
        )

    def save(self, path) -> None:
        """Write a stand-alone HTML page holding the controls."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{self.html}</body></html>')


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    return f"{float(value):g}"


def _check_grid(grid: Any) -> dict[str, list]:
    if not isinstance(grid, Mapping) or not grid:
        raise TypeError(
            "grid must be a non-empty dict {parameter name: list of values}, e.g. "
            f'{{"order": [1, 2, 3], "k": [0.01, 0.1, 1.0]}}; got {grid!r:.80}'
        )
    checked: dict[str, list] = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"grid keys must be the names of render's keyword arguments (identifiers), got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r:.80}")
        values = list(values)
        for value in values:
            if isinstance(value, Real) and not isinstance(value, bool):
                validate.finite_float(value, f"a value of grid[{name!r}]")
            elif not isinstance(value, (str, bool)) and value is not None:
                raise TypeError(
                    f"grid[{name!r}] holds {value!r:.60} ({type(value).__name__}); "
                    "use numbers, strings, booleans or None (labels for the controls)"
                )
        shown = [_format_value(v) for v in values]
        repeated = sorted({s for s in shown if shown.count(s) > 1})
        if repeated:
            raise ValueError(f"grid[{name!r}] lists {repeated[0]} more than once; give each value once")
        checked[name] = values
    return checked


def _render_output(result: Any, where: str, figure_scale: int) -> dict:
    """One output of ``render`` -> {"kind": "text" | "html" | "png", "data": ..., "width": ...}."""
    if isinstance(result, str):
        return {"kind": "text", "data": result}
    if hasattr(result, "savefig") and hasattr(result, "canvas"):  # a Matplotlib figure
        from . import figures

        try:
            stamped = figures.png_with_font_record(result, scale=figure_scale)
        finally:
            import matplotlib.pyplot as plt

            plt.close(result)
        if stamped is None:
            raise ValueError(f"render{where} returned an empty Matplotlib figure; draw something in it")
        png, size = stamped
        return {"kind": "png", "data": base64.b64encode(png).decode("ascii"), "width": size["width"]}
    if hasattr(result, "_repr_html_"):
        text = result._repr_html_()
        if not isinstance(text, str):
            raise TypeError(f"render{where} returned an object whose _repr_html_() gave {type(text).__name__}")
        return {"kind": "html", "data": text}
    raise TypeError(
        f"render{where} returned {type(result).__name__} {result!r:.60}; return a string (shown as text), "
        "a Matplotlib figure, or an object with _repr_html_ (e.g. IPython.display.HTML)"
    )


def _output_html(output: dict) -> str:
    """The initial content of the output box (the JavaScript replaces it when a control moves)."""
    if output["kind"] == "text":
        return f'<pre class="llmbook-controls-text">{html.escape(output["data"])}</pre>'
    if output["kind"] == "png":
        return (
            f'<img class="llmbook-controls-image" alt="figure" width="{output["width"]}" '
            f'src="data:image/png;base64,{output["data"]}">'
        )
    return f'<div class="llmbook-controls-html">{output["data"]}</div>'


def explore(
    render: Callable[..., Any],
    grid: Mapping[str, Sequence],
    *,
    labels: Mapping[str, str] | None = None,
    initial: Mapping[str, Any] | None = None,
    title: str | None = None,
    max_points: int = MAX_POINTS,
    max_bytes: int = MAX_BYTES,
    figure_scale: int = 1,
) -> Explorer:
    """Precompute ``render(**params)`` over ``grid`` and return controls that switch between the results.

    ``grid`` maps each keyword argument of ``render`` to the values a reader may pick
    (numbers get a slider, anything else a drop-down menu), ``labels`` the names the
    controls show, ``initial`` the point shown first (default: the first value of
    each parameter). Grids of more than ``max_points`` points, or outputs above
    ``max_bytes`` of HTML in all, are refused: every output is stored in the page.
    Figures are stored at ``figure_scale`` times their dpi (2 for sharp text on
    high-density screens, at four times the bytes).
    """
    if not callable(render):
        raise TypeError(f"render must be a function of the grid's parameters, got {type(render).__name__}")
    grid = _check_grid(grid)
    max_points = validate.positive_int(max_points, "max_points")
    max_bytes = validate.positive_int(max_bytes, "max_bytes")
    figure_scale = validate.positive_int(figure_scale, "figure_scale", hint="1 or 2")
    labels = dict(labels or {})
    unknown = sorted(set(labels) - set(grid))
    if unknown:
        raise ValueError(f"labels names {unknown[0]!r}, which is not a parameter of the grid ({', '.join(grid)})")
    for name, label in labels.items():
        if not isinstance(label, str):
            raise TypeError(f"labels[{name!r}] must be a string, got {type(label).__name__} {label!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string (or None), got {type(title).__name__} {title!r}")
    initial = dict(initial or {})
    unknown = sorted(set(initial) - set(grid))
    if unknown:
        raise ValueError(f"initial names {unknown[0]!r}, which is not a parameter of the grid ({', '.join(grid)})")
    start = []
    for name, values in grid.items():
        if name in initial:
            validate.one_of(initial[name], f"initial[{name!r}]", values)
            start.append(next(i for i, v in enumerate(values) if v == initial[name]))
        else:
            start.append(0)

    names = list(grid)
    sizes = [len(grid[name]) for name in names]
    points = math.prod(sizes)
    if points > max_points:
        shape = " x ".join(f"{name}: {size} values" for name, size in zip(names, sizes))
        raise ValueError(
            f"the grid has {points} points ({shape}), more than max_points={max_points}; every point's output "
            "is stored in the page: use fewer values per parameter, or raise max_points if you mean it"
        )

    outputs: list[dict] = []
    seen: dict[str, int] = {}
    index: list[int] = []  # flat point (row-major over names) -> output number
    total = 0
    for flat in range(points):
        rest, chosen = flat, []
        for size in reversed(sizes):
            chosen.append(rest % size)
            rest //= size
        chosen.reverse()
        params = {name: grid[name][i] for name, i in zip(names, chosen)}
        where = "(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
        output = _render_output(render(**params), where, figure_scale)
        key = json.dumps(output, sort_keys=True)
        if key not in seen:
            seen[key] = len(outputs)
            outputs.append(output)
            total += len(key)
            if total > max_bytes:
                raise ValueError(
                    f"the outputs reach {total / 1024:.0f} KiB after {flat + 1} of {points} points, more than "
                    f"max_bytes={max_bytes} ({max_bytes / 1024:.0f} KiB); every output is stored in the page: "
                    "use fewer values, smaller figures, or raise max_bytes if you mean it"
                )
        index.append(seen[key])

    first = 0
    for i, size in zip(start, sizes):
        first = first * size + i
    uid = f"llmbook-controls-{uuid.uuid4().hex}"
    payload = {"names": names, "sizes": sizes, "index": index, "outputs": outputs}
    # JSON inside <script>: escape <, > and & so no output can close the script tag.
    data_json = json.dumps(payload, ensure_ascii=True).replace("<", "\\u003c").replace(">", "\\u003e")
    data_json = data_json.replace("&", "\\u0026")

    rows = []
    for number, name in enumerate(names):
        values, chosen = grid[name], start[number]
        label = html.escape(labels.get(name, name))
        shown = [html.escape(_format_value(v)) for v in values]
        numeric = all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
        if numeric and len(values) > 1:
            ticks = json.dumps([_format_value(v) for v in values]).replace("<", "\\u003c")
            control = (
                f'<input type="range" class="llmbook-control" data-param="{name}" min="0" max="{len(values) - 1}" '
                f'step="1" value="{chosen}" data-values=\'{html.escape(ticks, quote=True)}\' '
                f'aria-label="{label}"><span class="llmbook-value">{shown[chosen]}</span>'
            )
        else:
            options = "".join(
                f'<option value="{i}"{" selected" if i == chosen else ""}>{text}</option>'
                for i, text in enumerate(shown)
            )
            control = f'<select class="llmbook-control" data-param="{name}" aria-label="{label}">{options}</select>'
        rows.append(f'<div class="llmbook-row"><span class="llmbook-label">{label}</span><span>{control}</span></div>')
    heading = f'<div class="llmbook-title">{html.escape(title)}</div>' if title else ""
    page = f"""<div id="{uid}" class="llmbook-controls" data-point="{first}">
<style>
#{uid} {{font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", sans-serif; font-size: 13px;
  color: #222; background: #fff; padding: 6px; border: 1px solid #ddd; border-radius: 6px; max-width: 100%;
  box-sizing: border-box; overflow-x: auto;}}
#{uid} .llmbook-title {{font-weight: 600; margin-bottom: 4px;}}
#{uid} .llmbook-rows {{display: grid; grid-template-columns: max-content auto; gap: 3px 10px; align-items: center;}}
#{uid} .llmbook-row {{display: contents;}}
#{uid} .llmbook-row > span:last-child {{display: flex; align-items: center; gap: 8px;}}
#{uid} .llmbook-label {{color: #555;}}
#{uid} input[type=range] {{width: 220px; max-width: 50%;}}
#{uid} select {{font: inherit;}}
#{uid} .llmbook-value {{font-variant-numeric: tabular-nums; min-width: 4em;}}
#{uid} .llmbook-controls-output {{margin-top: 6px;}}
#{uid} .llmbook-controls-output pre {{margin: 0; white-space: pre-wrap; word-break: break-word; background: #f8f8f8;
  padding: 6px; border-radius: 4px; font-size: 12.5px;}}
#{uid} .llmbook-controls-output img {{max-width: 100%; height: auto;}}
</style>
{heading}<div class="llmbook-rows">{"".join(rows)}</div>
<div class="llmbook-controls-output">{_output_html(outputs[index[first]])}</div>
<script type="application/json" class="llmbook-controls-data">{data_json}</script>
<script>{_SCRIPT.replace("__UID__", uid)}</script>
</div>"""
    if len(page.encode("utf-8")) > max_bytes:
        raise ValueError(
            f"the controls' HTML is {len(page.encode('utf-8')) / 1024:.0f} KiB, more than max_bytes={max_bytes} "
            f"({max_bytes / 1024:.0f} KiB): use fewer values, smaller figures, or raise max_bytes if you mean it"
        )
    return Explorer(page, grid, points, len(outputs))


# The start of every inline panel's script (these controls, viz.attention_view): one function call, no
# global names, so any number of panels can share a page. The root is found by its unique id
# (document.currentScript first, since some front ends run the script before the output is attached to
# the document; retried briefly) and marked ready once. The caller's code follows, then closes start().
PANEL_START = r"""
(function () {
  var uid = "__UID__", script = document.currentScript, tries = 0;
  function findRoot() {
    var root = script && script.parentNode && script.parentNode.id === uid ? script.parentNode : null;
    return root || document.getElementById(uid);
  }
  function start() {
    var root = findRoot();
    if (!root) { if (tries++ < 50) { setTimeout(start, 100); } return; }
    if (root.getAttribute("data-ready") === "1") { return; }
    root.setAttribute("data-ready", "1");
"""

_SCRIPT = (
    PANEL_START
    + r"""    var data = JSON.parse(root.querySelector(".llmbook-controls-data").textContent);
    var box = root.querySelector(".llmbook-controls-output");
    var controls = root.querySelectorAll(".llmbook-control");
    function show() {
      var flat = 0;
      for (var n = 0; n < data.names.length; n++) {
        var control = root.querySelector('.llmbook-control[data-param="' + data.names[n] + '"]');
        var i = Math.max(0, Math.min(data.sizes[n] - 1, parseInt(control.value, 10) || 0));
        if (control.type === "range") {
          control.nextSibling.textContent = JSON.parse(control.getAttribute("data-values"))[i];
        }
        flat = flat * data.sizes[n] + i;
      }
      root.setAttribute("data-point", flat);
      var output = data.outputs[data.index[flat]], node;
      if (output.kind === "text") {
        node = document.createElement("pre");
        node.className = "llmbook-controls-text";
        node.textContent = output.data;
      } else if (output.kind === "png") {
        node = document.createElement("img");
        node.className = "llmbook-controls-image";
        node.alt = "figure";
        node.width = output.width;
        node.src = "data:image/png;base64," + output.data;
      } else {
        node = document.createElement("div");
        node.className = "llmbook-controls-html";
        node.innerHTML = output.data;
      }
      box.replaceChildren(node);
    }
    for (var c = 0; c < controls.length; c++) {
      controls[c].addEventListener("input", show);
      controls[c].addEventListener("change", show);
    }
  }
  start();
})();
"""
)
