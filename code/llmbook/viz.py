"""Interactive views of attention weights (Chapter 4: Attention; used again in chapters 5 to 9).

:func:`attention_view` draws the weights of a model's heads as self-contained
HTML and JavaScript: no CDN, no require.js, nothing to install. It works the
same in JupyterLab, Colab, VS Code and the static HTML book. Pick a layer and a
head; hover over (or click) a token to see what it attends to, drawn as lines
whose opacity and width are the weights; or switch to a heat map.

:func:`bertviz_view` hands the same tensors to bertviz (``pip install bertviz``)
for its head and model views (those load d3 and jQuery from a CDN, so they
need a live notebook with internet access).
"""

from __future__ import annotations

import base64
import html
import json
import uuid
from collections.abc import Sequence

import numpy as np
import torch

from . import validate
from .controls import PANEL_START
from .validate import one_of

__all__ = [
    "AttentionView",
    "attention_view",
    "bertviz_view",
    "LiveLossPlot",
    "HeadScores",
    "head_scores",
    "plot_head_scores",
    "attention_grid",
]

DEFAULT_MAX_TOKENS = 64
HEAD_COLOURS = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939",
]  # fmt: skip


def _as_layers(attentions) -> np.ndarray:
    """Any accepted input -> float array (L, H, T_q, T_k); clear errors for everything else."""
    if isinstance(attentions, (torch.Tensor, np.ndarray)):
        attentions = [attentions]
    if not isinstance(attentions, (list, tuple)) or len(attentions) == 0:
        raise TypeError(
            "attentions must be a tensor (H, T, T) or a non-empty list (one per layer) of tensors "
            f"(1, H, T, T) or (H, T, T); got {type(attentions).__name__}"
        )
    layers = []
    for index, layer in enumerate(attentions):
        if isinstance(layer, torch.Tensor):
            array = layer.detach().float().cpu().numpy()
        else:
            try:
                array = np.asarray(layer, float)
            except (TypeError, ValueError):
                raise ValueError(
                    f"layer {index}: attention weights must be numbers (a tensor or array), got {layer!r:.60}"
                ) from None
        if array.ndim == 4:
            array = array[0]  # (B, H, T, T): the first sequence of the batch
        if array.ndim == 2:
            array = array[None]  # (T, T): one head
        if array.ndim != 3:
            raise ValueError(
                f"layer {index}: expected attention of shape (B, H, T_q, T_k), (H, T_q, T_k) or (T_q, T_k), "
                f"got {array.shape}"
            )
        if layers and array.shape != layers[0].shape:
            raise ValueError(
                f"layer {index} has shape (H, T_q, T_k) = {array.shape} but layer 0 has {layers[0].shape}: "
                "every layer needs the same heads and tokens"
            )
        layers.append(array)
    stacked = np.stack(layers)  # (L, H, T_q, T_k)
    if stacked.size == 0:
        raise ValueError(
            f"the attention weights are empty (shape (H, T_q, T_k) = {stacked.shape[1:]}); pass at least one token"
        )
    if not np.isfinite(stacked).all():
        bad = stacked[~np.isfinite(stacked)][0]
        raise ValueError(f"attention weights contain {bad} (a fully masked row?); the view needs finite weights")
    if stacked.min() < -1e-3 or stacked.max() > 1 + 1e-3:
        raise ValueError(
            f"attention weights must lie in [0, 1] (they are softmax outputs), got values in "
            f"[{stacked.min():.3g}, {stacked.max():.3g}]: did you pass the scores before the softmax?"
        )
    return np.clip(stacked, 0.0, 1.0)


def _check_tokens(tokens, n: int, side: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"{side} tokens must be a list of strings (one per position), got {type(tokens).__name__}")
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(
            f"{len(tokens)} {side} tokens but the attention has {n} {side} positions: pass one token per position"
        )
    return tokens


class AttentionView:
    """The HTML of one attention view; Jupyter shows it through :meth:`_repr_html_`."""

    def __init__(self, html_text: str, num_layers: int, num_heads: int, tokens: list[str], truncated_from: int | None):
        self.html = html_text
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.tokens = tokens
        self.truncated_from = truncated_from

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        cut = f", truncated from {self.truncated_from} tokens" if self.truncated_from else ""
        return (
            f"AttentionView({self.num_layers} layers, {self.num_heads} heads, {len(self.tokens)} tokens{cut}, "
            f"{len(self.html) / 1024:.1f} KiB of HTML)"
        )

    def save(self, path) -> None:
        """Write a stand-alone HTML page holding the view."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{self.html}</body></html>')


def attention_view(
    attentions,
    tokens: Sequence[str],
    layer: int = 0,
    head: int = 0,
    title: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    key_tokens: Sequence[str] | None = None,
    pin: int | str | None = "auto",
) -> AttentionView:
    """An interactive view of attention weights, as self-contained HTML and JavaScript.

    ``attentions``: a list (one per layer) of tensors (B, H, T_q, T_k) (the first
    sequence is shown), (H, T_q, T_k) or (T_q, T_k), or one such tensor.
    ``tokens``: the T_q query tokens (and keys too unless ``key_tokens`` is
    given, e.g. for cross-attention). ``layer``/``head``: the initial
    selection. Inputs longer than ``max_tokens`` are cut to their first
    ``max_tokens`` positions (the view says so) to keep the page small and fast.
    Weights are stored as bytes (0-255), about 1.4 bytes per weight.

    ``pin`` is the query token selected when the page loads, so a static page
    shows something: an index, ``None`` for none, or ``"auto"`` (the default):
    the query whose attention in the initial head is most concentrated (the
    first query of a causal view, which can only attend to itself, excluded).
    Line strength is scaled to each head's largest weight, so a head with
    evenly spread weights is still visible.
    """
    weights = _as_layers(attentions)  # (L, H, T_q, T_k)
    num_layers, num_heads, T_q, T_k = weights.shape
    query_tokens = _check_tokens(tokens, T_q, "query")
    key_tokens = query_tokens if key_tokens is None and T_q == T_k else key_tokens
    if key_tokens is None:
        raise ValueError(f"the attention has {T_q} queries and {T_k} keys: pass key_tokens for the {T_k} keys")
    key_tokens = _check_tokens(key_tokens, T_k, "key")
    for name, value, count in (("layer", layer, num_layers), ("head", head, num_heads)):
        validate.nonnegative_int(value, name, hint=f"0..{count - 1}")
        if value >= count:
            raise ValueError(f"{name}={value} but there are {count} {name}s (0..{count - 1})")
    max_tokens = validate.positive_int(max_tokens, "max_tokens")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string (or None), got {type(title).__name__} {title!r}")

    truncated_from = max(T_q, T_k) if max(T_q, T_k) > max_tokens else None
    weights = weights[:, :, :max_tokens, :max_tokens]
    query_tokens, key_tokens = query_tokens[:max_tokens], key_tokens[:max_tokens]
    T_q, T_k = weights.shape[2], weights.shape[3]

    as_bytes = np.rint(weights * 255).astype(np.uint8)  # (L, H, T_q, T_k), 0..255
    pinned = _initial_pin(pin, weights[layer, head])
    payload = {
        "layers": num_layers,
        "heads": num_heads,
        "tq": T_q,
        "tk": T_k,
        "layer": layer,
        "head": head,
        "pinned": pinned,
        "queries": query_tokens,
        "keys": key_tokens,
        "colours": HEAD_COLOURS,
        "weights": base64.b64encode(as_bytes.tobytes()).decode("ascii"),
    }
    # JSON inside <script>: escape <, > and & so no token can close the script tag.
    data_json = json.dumps(payload, ensure_ascii=True).replace("<", "\\u003c").replace(">", "\\u003e")
    data_json = data_json.replace("&", "\\u0026")
    uid = f"llmbook-attention-{uuid.uuid4().hex}"

    def buttons(kind: str, count: int, selected: int, label: str) -> str:
        items = "".join(
            f'<button type="button" class="llmbook-{kind}{" active" if i == selected else ""}" data-{kind}="{i}"'
            + (f' style="border-bottom:3px solid {HEAD_COLOURS[i % len(HEAD_COLOURS)]}"' if kind == "head" else "")
            + f">{i}</button>"
            for i in range(count)
        )
        return f'<div class="llmbook-row"><span class="llmbook-label">{label}</span>{items}</div>'

    def column(side: str, toks: list[str]) -> str:
        spans = "".join(
            f'<div class="llmbook-token" data-side="{side}" data-token-index="{i}" title="{html.escape(t)} ({i})">'
            f"{html.escape(t) if t.strip() else '&#9251;'}</div>"
            for i, t in enumerate(toks)
        )
        return f'<div class="llmbook-tokens llmbook-{side}s">{spans}</div>'

    note = (
        f'<div class="llmbook-note">Showing the first {max_tokens} of {truncated_from} tokens '
        f"(max_tokens={max_tokens}); weights to later tokens are not drawn.</div>"
        if truncated_from
        else ""
    )
    heading = f'<div class="llmbook-title">{html.escape(title)}</div>' if title else ""
    page = f"""<div id="{uid}" class="llmbook-attention-view" data-layer="{layer}" data-head="{head}" data-mode="lines">
<style>
#{uid} {{font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", sans-serif; font-size: 13px;
  color: #222; background: #fff; padding: 6px; border: 1px solid #ddd; border-radius: 6px; max-width: 100%;
  overflow-x: auto;}}
#{uid} .llmbook-title {{font-weight: 600; margin-bottom: 4px;}}
#{uid} .llmbook-row {{margin: 2px 0;}}
#{uid} .llmbook-label {{display: inline-block; width: 48px; color: #555;}}
#{uid} button {{font: inherit; margin: 1px; padding: 1px 7px; border: 1px solid #bbb; background: #f6f6f6;
  border-radius: 3px; cursor: pointer; color: #222;}}
#{uid} button.active {{background: #333; color: #fff;}}
#{uid} .llmbook-note {{color: #a05a00; margin: 3px 0;}}
#{uid} .llmbook-readout {{color: #444; min-height: 1.3em; margin: 3px 0;}}
#{uid} .llmbook-canvas {{display: flex; align-items: flex-start; margin-top: 4px;}}
#{uid} .llmbook-tokens {{display: flex; flex-direction: column;}}
#{uid} .llmbook-token {{height: 20px; line-height: 20px; padding: 0 5px; white-space: pre; cursor: pointer;
  border-radius: 3px; max-width: 160px; overflow: hidden; text-overflow: ellipsis;}}
#{uid} .llmbook-querys .llmbook-token {{text-align: right;}}
#{uid} .llmbook-token.selected {{background: #ffe08a;}}
#{uid} .llmbook-token:hover {{background: #eee;}}
#{uid}[data-mode="heatmap"] .llmbook-tokens {{display: none;}}
#{uid} svg text {{font-size: 11px; fill: #222;}}
</style>
{heading}{buttons("layer", num_layers, layer, "Layer")}{buttons("head", num_heads, head, "Head")}
<div class="llmbook-row"><span class="llmbook-label">View</span><button type="button" class="llmbook-mode" data-mode="lines">heat map</button></div>
{note}<div class="llmbook-readout">Hover over a token on the left to see what it attends to; click to pin it.</div>
<div class="llmbook-canvas">{column("query", query_tokens)}<svg class="llmbook-attention-lines" xmlns="http://www.w3.org/2000/svg" width="180" height="{20 * max(T_q, T_k)}"></svg>{column("key", key_tokens)}</div>
<script type="application/json" class="llmbook-attention-data">{data_json}</script>
<script>{_SCRIPT.replace("__UID__", uid)}</script>
</div>"""
    return AttentionView(page, num_layers, num_heads, query_tokens, truncated_from)


# The view's behaviour, after the start every inline panel shares (controls.PANEL_START). Everything lives inside one function call: no global names, so any number of
# views can share a page. The root is found by its unique id (document.currentScript first, since
# some front ends run the script before the output is attached to the document; retried briefly).
_SCRIPT = (
    PANEL_START
    + r"""    var data = JSON.parse(root.querySelector(".llmbook-attention-data").textContent);
    var raw = atob(data.weights), bytes = new Uint8Array(raw.length);
    for (var b = 0; b < raw.length; b++) { bytes[b] = raw.charCodeAt(b); }
    var svg = root.querySelector("svg.llmbook-attention-lines"), NS = "http://www.w3.org/2000/svg";
    var readout = root.querySelector(".llmbook-readout"), modeButton = root.querySelector(".llmbook-mode");
    var layer = data.layer, head = data.head, mode = "lines", pinned = data.pinned, hover = null, row = 20, width = 180;
    function weight(q, k) { return bytes[((layer * data.heads + head) * data.tq + q) * data.tk + k] / 255; }
    function headMax() {  // the largest weight of the current head: lines are drawn relative to it
      var top = 0;
      for (var q = 0; q < data.tq; q++) { for (var k = 0; k < data.tk; k++) { top = Math.max(top, weight(q, k)); } }
      return top > 0 ? top : 1;
    }
    function fitWidth() {  // use the box: the lines take what the two token columns leave
      var columns = root.querySelectorAll(".llmbook-tokens"), used = 24;
      for (var c = 0; c < columns.length; c++) { used += columns[c].offsetWidth; }
      width = Math.max(180, Math.min(520, root.clientWidth - used));
    }
    function colour() { return data.colours[head % data.colours.length]; }
    function el(name, attrs) {
      var node = document.createElementNS(NS, name);
      for (var a in attrs) { node.setAttribute(a, attrs[a]); }
      return node;
    }
    function label(q) { return "'" + data.queries[q] + "'"; }
    function short(text) { return text.length > 12 ? text.slice(0, 11) + "\u2026" : text; }
    function describe(q) {
      var best = [], k;
      for (k = 0; k < data.tk; k++) { best.push([weight(q, k), k]); }
      best.sort(function (x, y) { return y[0] - x[0]; });
      var parts = best.slice(0, 3).filter(function (p) { return p[0] > 0; }).map(function (p) {
        return "'" + data.keys[p[1]] + "' " + p[0].toFixed(2);
      });
      readout.textContent = "Layer " + layer + ", head " + head + ": " + label(q) + " (" + q + ") attends most to " +
        parts.join(", ");
    }
    function drawLines() {
      var focus = hover !== null ? hover : pinned, scale = headMax();
      fitWidth();
      svg.setAttribute("width", width);
      svg.setAttribute("height", row * Math.max(data.tq, data.tk));
      for (var q = 0; q < data.tq; q++) {
        if (focus !== null && q !== focus) { continue; }
        for (var k = 0; k < data.tk; k++) {
          var w = weight(q, k), strength = w / scale;  // 1 for the head's strongest weight
          if (w < 0.005) { continue; }
          svg.appendChild(el("line", {
            x1: 2, y1: q * row + row / 2, x2: width - 2, y2: k * row + row / 2,
            stroke: colour(), "stroke-opacity": (0.15 + 0.85 * strength).toFixed(3),
            "stroke-width": (focus !== null ? 1 + 4 * strength : 0.5 + 2 * strength).toFixed(2),
            "data-query": q, "data-key": k, "data-weight": w.toFixed(3)
          }));
        }
      }
      if (focus !== null) { describe(focus); }
    }
    function drawHeatmap() {
      var cell = Math.max(8, Math.min(22, Math.floor(560 / Math.max(data.tq, data.tk))));
      var left = 90, top = 70, q, k;
      svg.setAttribute("width", left + cell * data.tk + 4);
      svg.setAttribute("height", top + cell * data.tq + 4);
      for (q = 0; q < data.tq; q++) {
        var t = el("text", {x: left - 4, y: top + q * cell + cell * 0.7, "text-anchor": "end", "data-token-index": q});
        t.textContent = short(data.queries[q]);
        svg.appendChild(t);
      }
      for (k = 0; k < data.tk; k++) {
        var x = left + k * cell + cell * 0.7;
        var s = el("text", {x: x, y: top - 4, transform: "rotate(-60 " + x + " " + (top - 4) + ")", "data-key-index": k});
        s.textContent = short(data.keys[k]);
        svg.appendChild(s);
      }
      for (q = 0; q < data.tq; q++) {
        for (k = 0; k < data.tk; k++) {
          var w = weight(q, k);
          var r = el("rect", {x: left + k * cell, y: top + q * cell, width: cell - 1, height: cell - 1,
            fill: colour(), "fill-opacity": w.toFixed(3), stroke: "#eee", "data-query": q, "data-key": k,
            "data-weight": w.toFixed(3)});
          var tip = el("title", {});
          tip.textContent = data.queries[q] + " \u2192 " + data.keys[k] + ": " + w.toFixed(3);
          r.appendChild(tip);
          svg.appendChild(r);
        }
      }
    }
    function draw() {
      while (svg.firstChild) { svg.removeChild(svg.firstChild); }
      root.setAttribute("data-layer", layer);
      root.setAttribute("data-head", head);
      root.setAttribute("data-mode", mode);
      modeButton.setAttribute("data-mode", mode);
      modeButton.textContent = mode === "lines" ? "heat map" : "lines";
      var i, buttons = root.querySelectorAll("button.llmbook-layer");
      for (i = 0; i < buttons.length; i++) { buttons[i].classList.toggle("active", +buttons[i].getAttribute("data-layer") === layer); }
      buttons = root.querySelectorAll("button.llmbook-head");
      for (i = 0; i < buttons.length; i++) { buttons[i].classList.toggle("active", +buttons[i].getAttribute("data-head") === head); }
      var tokens = root.querySelectorAll(".llmbook-token");
      for (i = 0; i < tokens.length; i++) {
        var isPinned = tokens[i].getAttribute("data-side") === "query" && +tokens[i].getAttribute("data-token-index") === pinned;
        tokens[i].classList.toggle("selected", isPinned);
      }
      if (mode === "lines") { drawLines(); } else { drawHeatmap(); }
    }
    root.addEventListener("click", function (event) {
      var target = event.target.closest ? event.target.closest("button, .llmbook-token") : null;
      if (!target || !root.contains(target)) { return; }
      if (target.classList.contains("llmbook-layer")) { layer = +target.getAttribute("data-layer"); }
      else if (target.classList.contains("llmbook-head")) { head = +target.getAttribute("data-head"); }
      else if (target.classList.contains("llmbook-mode")) { mode = mode === "lines" ? "heatmap" : "lines"; }
      else if (target.getAttribute("data-side") === "query") {
        var q = +target.getAttribute("data-token-index");
        pinned = pinned === q ? null : q;
        hover = null;
        root.setAttribute("data-selected-token", pinned === null ? "" : pinned);
      } else { return; }
      draw();
    });
    var queryTokens = root.querySelectorAll('.llmbook-token[data-side="query"]');
    for (var i = 0; i < queryTokens.length; i++) {
      queryTokens[i].addEventListener("mouseenter", function () {
        hover = +this.getAttribute("data-token-index"); if (mode === "lines") { draw(); }
      });
      queryTokens[i].addEventListener("mouseleave", function () { hover = null; if (mode === "lines") { draw(); } });
    }
    root.setAttribute("data-selected-token", pinned === null ? "" : pinned);
    draw();
  }
  start();
})();
"""
)


def _initial_pin(pin, head_weights: np.ndarray) -> int | None:
    """The query index a view selects at load (see :func:`attention_view`'s ``pin``)."""
    T_q = head_weights.shape[0]
    if pin is None:
        return None
    if isinstance(pin, str):
        one_of(pin, "pin", ("auto",))
        peaks = head_weights.max(axis=-1)  # (T_q,): each query's largest weight
        candidates = range(1, T_q) if T_q > 1 else range(T_q)
        return int(max(candidates, key=lambda q: (peaks[q], -q)))
    pin = validate.nonnegative_int(pin, "pin", hint=f"a query index 0..{T_q - 1}, None or 'auto'")
    if pin >= T_q:
        raise ValueError(f"pin={pin} but the view shows {T_q} query tokens (0..{T_q - 1})")
    return pin


def bertviz_view(attentions, tokens: Sequence[str], view: str = "head"):
    """Show our attention tensors with bertviz's ``head_view`` or ``model_view``; returns its HTML object.

    ``attentions`` as for :func:`attention_view`. bertviz's views load d3 and
    jQuery from a CDN through require.js: they draw in a live notebook with
    internet access, not in the offline book (use :func:`attention_view` there).
    """
    try:
        from bertviz import head_view, model_view
    except ImportError as error:
        raise ImportError("bertviz_view needs bertviz: pip install bertviz (or use attention_view)") from error
    validate.one_of(view, "view", ("head", "model"))
    weights = _as_layers(attentions)  # (L, H, T, T)
    if weights.shape[2] != weights.shape[3]:
        raise ValueError(f"bertviz_view shows self-attention only (T_q = T_k); got {weights.shape[2:]} ")
    tokens = _check_tokens(tokens, weights.shape[2], "query")
    per_layer = [torch.from_numpy(layer).unsqueeze(0) for layer in weights]  # bertviz wants (1, H, T, T) per layer
    show = head_view if view == "head" else model_view
    return show(per_layer, tokens, html_action="return")


class LiveLossPlot:
    """The loss curves of a run, redrawn in place in a notebook as it trains (``TrainConfig(live_plot=True)``).

    The last drawing stays in the saved notebook.
    """

    def __init__(self):
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.plt = plt
        self.figure, self.axes = plt.subplots(figsize=(7, 3.5))
        self.handle = display(self.figure, display_id=True)

    def update(self, history: dict[str, list], title: str) -> None:
        axes = self.axes
        axes.clear()
        if history["log_step"]:
            axes.plot(history["log_step"], history["loss"], color="0.75", lw=1, label="mini-batch loss")
        axes.plot(history["step"], history["train_loss"], "o-", ms=3, label="train (eval)")
        axes.plot(history["step"], history["val_loss"], "o-", ms=3, label="validation")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("cross-entropy loss (nats/token)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper right")
        self.figure.tight_layout()
        self.handle.update(self.figure)

    def close(self) -> None:
        self.plt.close(self.figure)  # the display keeps the final picture; no second copy at cell end


# --------------------------------------------------------------------------- every head at once (Chapter 5)

SCORE_NAMES = ("previous", "first", "self", "next", "entropy")
SCORE_MEANINGS = {
    "previous": "mean weight on the previous token",
    "first": "mean weight on the first token",
    "self": "mean weight on the token itself",
    "next": "mean weight on the next token",
    "entropy": "mean entropy of a row over the largest it could be (1 = uniform over the visible keys)",
}


class HeadScores:
    """Per-head summary scores of attention weights: :func:`head_scores` returns one.

    Each score is an array (L, H), averaged over the query positions that have
    the neighbour it looks at (``previous`` and ``first`` skip query 0; ``next``
    skips the last query). ``entropy`` is each row's entropy divided by its
    largest possible value, the log of the number of keys the row can see (all
    of them; for causal weights, keys 0..q), so 1 means uniform attention and 0
    attention on one key. ``rows()`` gives the table as dicts; in a notebook it
    shows as an HTML table.
    """

    def __init__(self, scores: dict[str, np.ndarray], causal: bool):
        self.scores = scores
        self.causal = causal
        self.n_layer, self.n_head = scores["previous"].shape

    def __getitem__(self, name: str) -> np.ndarray:
        one_of(name, "score", SCORE_NAMES)
        return self.scores[name]

    def rows(self) -> list[dict]:
        """One dict per head: layer, head and every score (floats)."""
        return [
            {"layer": layer, "head": head, **{name: float(self.scores[name][layer, head]) for name in SCORE_NAMES}}
            for layer in range(self.n_layer)
            for head in range(self.n_head)
        ]

    def top(self, name: str) -> tuple[int, int]:
        """(layer, head) of the head with the highest ``name`` score (the lowest for ``entropy``)."""
        values = self[name]
        flat = values.argmin() if name == "entropy" else values.argmax()
        layer, head = np.unravel_index(int(flat), values.shape)
        return int(layer), int(head)

    def _repr_html_(self) -> str:
        best = {name: self.top(name) for name in SCORE_NAMES}
        header = "".join(f'<th title="{html.escape(SCORE_MEANINGS[n])}">{n}</th>' for n in SCORE_NAMES)
        body = []
        for row in self.rows():
            cells = []
            for name in SCORE_NAMES:
                strong = best[name] == (row["layer"], row["head"])
                value = f"{row[name]:.2f}"
                cells.append(f"<td>{'<b>' + value + '</b>' if strong else value}</td>")
            body.append(f"<tr><td>{row['layer']}</td><td>{row['head']}</td>{''.join(cells)}</tr>")
        return (
            '<table class="llmbook-head-scores"><thead><tr><th>layer</th><th>head</th>'
            f"{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "<p><small>Bold: the strongest head for each score (lowest entropy).</small></p>"
        )

    def __repr__(self) -> str:
        lines = ["layer head " + " ".join(f"{n:>8}" for n in SCORE_NAMES)]
        for row in self.rows():
            lines.append(f"{row['layer']:>5} {row['head']:>4} " + " ".join(f"{row[n]:8.3f}" for n in SCORE_NAMES))
        return "\n".join(lines)


def head_scores(attentions) -> HeadScores:
    """Scores of every head (see :class:`HeadScores`): what kind of head is it?

    ``attentions`` as for :func:`attention_view` (a list with one (1, H, T, T)
    or (H, T, T) tensor per layer, as ``model(idx, return_attention=True)``
    returns; the first sequence of a batch is used). Self-attention only
    (T_q = T_k), at least two tokens. Weights whose upper triangle is zero are
    treated as causal when the entropy is normalised.

    >>> import torch
    >>> prev = torch.zeros(1, 1, 4, 4)
    >>> prev[0, 0, 0, 0] = 1.0
    >>> prev[0, 0, torch.arange(1, 4), torch.arange(0, 3)] = 1.0
    >>> head_scores([prev])["previous"].item()
    1.0
    """
    weights = _as_layers(attentions)  # (L, H, T, T), validated
    _, _, T_q, T_k = weights.shape
    if T_q != T_k:
        raise ValueError(f"head_scores needs self-attention (as many queries as keys), got T_q={T_q}, T_k={T_k}")
    if T_q < 2:
        raise ValueError(f"head_scores needs at least 2 tokens (a previous token to look at), got {T_q}")
    T = T_q
    causal = bool(np.all(np.triu(weights, k=1) <= 1e-6))
    q = np.arange(1, T)
    scores = {
        "previous": weights[:, :, q, q - 1].mean(-1),
        "first": weights[:, :, q, 0].mean(-1),
        "self": weights[:, :, np.arange(T), np.arange(T)].mean(-1),
        "next": weights[:, :, np.arange(T - 1), np.arange(1, T)].mean(-1),
    }
    p = np.clip(weights, 1e-12, 1.0)
    row_entropy = -(weights * np.log(p)).sum(-1)  # (L, H, T)
    visible = np.arange(1, T + 1) if causal else np.full(T, T)  # keys each query can see
    rows = visible > 1  # a row with a single visible key has no choice to make
    scores["entropy"] = (row_entropy[:, :, rows] / np.log(visible[rows])).mean(-1)
    return HeadScores({name: np.asarray(value, dtype=float) for name, value in scores.items()}, causal)


def plot_head_scores(scores, names: Sequence[str] = ("previous", "first", "entropy"), title: str | None = None):
    """Draw :func:`head_scores` (or attentions, scored first) as one layer × head grid per score, values written in.

    Returns the matplotlib figure (at most 7 in wide, text of 10 pt or more).
    """
    import matplotlib.pyplot as plt

    if not isinstance(scores, HeadScores):
        scores = head_scores(scores)
    if isinstance(names, str) or not names:
        raise TypeError(f"names must be a non-empty list of score names from {SCORE_NAMES}, got {names!r}")
    for name in names:
        one_of(name, "score", SCORE_NAMES)
    L, H = scores.n_layer, scores.n_head
    width = min(7.0, 0.6 + len(names) * (0.55 * H + 0.5))
    figure, axes = plt.subplots(1, len(names), figsize=(width, 0.9 + 0.5 * L), squeeze=False)
    for axis, name in zip(axes[0], names):
        values = scores[name]
        axis.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        for layer in range(L):
            for head in range(H):
                value = values[layer, head]
                axis.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=10,
                          color="white" if value > 0.6 else "black")  # fmt: skip
        axis.set_xticks(range(H), [str(h) for h in range(H)], fontsize=10)
        axis.set_yticks(range(L), [str(layer) for layer in range(L)], fontsize=10)
        axis.set_xlabel("head", fontsize=10)
        axis.set_title(name, fontsize=11)
    axes[0][0].set_ylabel("layer", fontsize=10)
    if title:
        figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    return figure


def attention_grid(attentions, tokens: Sequence[str] | None = None, title: str | None = None, max_tokens: int = 24):
    """Every head at once: a static grid of small heat maps, one row per layer, one column per head.

    Each panel shows the weights of the first ``max_tokens`` tokens (query rows,
    key columns) and is titled with the head's previous-token score, so a
    reader can spot the kinds of heads before opening one in
    :func:`attention_view`. ``tokens`` (one string per position) label the
    first panel's axes when given. Returns the matplotlib figure (at most 7 in
    wide, text of 9 pt or more).
    """
    import matplotlib.pyplot as plt

    weights = _as_layers(attentions)
    L, H, T_q, T_k = weights.shape
    max_tokens = validate.positive_int(max_tokens, "max_tokens", hint="how many tokens each panel shows, e.g. 24")
    if tokens is not None:
        tokens = _check_tokens(tokens, T_q, "query")
    scores = head_scores(list(weights)) if T_q == T_k and T_q > 1 else None
    n = min(max_tokens, T_q, T_k)
    panel = min(1.6, 6.6 / H)
    figure, axes = plt.subplots(L, H, figsize=(0.4 + panel * H, 0.5 + (panel + 0.45) * L + 0.3 * (title is not None)),
                                squeeze=False)  # fmt: skip
    for layer in range(L):
        for head in range(H):
            axis = axes[layer][head]
            axis.imshow(weights[layer, head, :n, :n], cmap="Blues", vmin=0.0, aspect="equal")
            axis.set_xticks([])
            axis.set_yticks([])
            label = f"L{layer} H{head}"
            if scores is not None:
                label += f"\nprev {scores['previous'][layer, head]:.2f}"
            axis.set_title(label, fontsize=9)
    if tokens is not None and n <= 12:
        axes[0][0].set_xticks(range(n), [repr(t)[1:-1] for t in tokens[:n]], fontsize=9, rotation=90)
        axes[0][0].set_yticks(range(n), [repr(t)[1:-1] for t in tokens[:n]], fontsize=9)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure
