"""Figures that stay legible where the reader sees them: the book's text column, about 690 px wide.

A chapter calls :func:`setup` once, after its imports. From then on every matplotlib figure the
notebook shows is

* drawn at 100 dpi and sent as a pixel-doubled ("retina") PNG, sharp on high-density screens and
  displayed at its natural size on the others;
* stamped with the size of its smallest drawn text: a PNG text chunk ``llmbook-smallest-font`` that
  reads ``"<points> pt at <dpi> dpi"``. The browser test of the book (``tests/test_book.py``) reads it
  back with :func:`read_font_record` and, with the size at which the page displays the image,
  computes how many screen pixels tall that text is. A figure scaled down into the column, or drawn
  with a small font, fails the test with its measured size.

Outside IPython (a script, the unit tests) :func:`setup` only sets the matplotlib defaults.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from contextlib import contextmanager

__all__ = ["DPI", "FONT_RECORD_KEY", "png_with_font_record", "read_font_record", "setup", "smallest_font"]

DPI = 100  # figure.dpi: a 6.9-inch-wide figure fills the ~690 px column at its natural size
FONT_RECORD_KEY = "llmbook-smallest-font"

# Defaults for every figure after setup(): matplotlib's sizes (10 pt ticks and labels, 12 pt titles)
# are legible at natural size; what makes text small in the book is scaling a wide figure down.
RC = {
    "figure.dpi": DPI,
    "savefig.dpi": "figure",
    "axes.formatter.useoffset": False,  # plain tick labels, no "+1e3" offset text
}


@contextmanager
def _recording_drawn_text(sizes: list[float]):
    """Record the font size (points) of every text matplotlib draws inside the block."""
    from matplotlib.text import Text

    original = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            sizes.append(float(self.get_fontsize()))
        return original(self, renderer)

    Text.draw = draw
    try:
        yield sizes
    finally:
        Text.draw = original


def smallest_font(figure) -> float | None:
    """The size in points of the smallest text drawn in ``figure`` (None when it draws no text)."""
    sizes: list[float] = []
    with _recording_drawn_text(sizes):
        figure.canvas.draw()
    return min(sizes) if sizes else None


def png_with_font_record(figure, scale: int = 2, bbox_inches: str | None = "tight") -> tuple[bytes, dict] | None:
    """``figure`` as PNG bytes at ``scale`` times its dpi, stamped with its smallest drawn font size.

    Returns (png, {"width": ...}): the display width in CSS pixels, 1/scale of the PNG's, as IPython's
    retina formatter does. (No height: the book's HTML writes both into the <img> style, and a fixed
    height would squash a figure that the page scales down into the column.) None for a figure with
    nothing in it.
    """
    if not figure.axes and not figure.lines and not figure.texts:
        return None
    from matplotlib.backend_bases import FigureCanvasBase

    if figure.canvas is None:
        FigureCanvasBase(figure)
    dpi = figure.dpi * scale
    sizes: list[float] = []
    buffer = io.BytesIO()
    with _recording_drawn_text(sizes):
        # Text drawn in this very call, so the record is measured in the picture that is sent.
        figure.canvas.print_figure(
            buffer,
            format="png",
            dpi=dpi,
            bbox_inches=bbox_inches,
            facecolor=figure.get_facecolor(),
            edgecolor=figure.get_edgecolor(),
            metadata={FONT_RECORD_KEY: "pending"},
        )
    record = f"{min(sizes):g} pt at {dpi:g} dpi" if sizes else f"no text at {dpi:g} dpi"
    png = _replace_text_chunk(buffer.getvalue(), FONT_RECORD_KEY, record)
    (width,) = struct.unpack(">I", png[16:20])
    return png, {"width": width // scale}


def _chunks(png: bytes):
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file (wrong signature)")
    position = 8
    while position + 8 <= len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        yield position, kind, png[position + 8 : position + 8 + length], position + 12 + length
        position += 12 + length


def _replace_text_chunk(png: bytes, key: str, value: str) -> bytes:
    """``png`` with the tEXt chunk ``key`` set to ``value`` (matplotlib wrote a placeholder)."""
    body = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    for start, kind, data, end in _chunks(png):
        if kind == b"tEXt" and data.split(b"\0", 1)[0] == key.encode("latin-1"):
            return png[:start] + chunk + png[end:]
    raise ValueError(f"the PNG has no {key!r} text chunk to fill in")


def read_font_record(png: bytes) -> tuple[float, float] | None:
    """(smallest font size in points, dpi) stamped by :func:`png_with_font_record`; None if unstamped.

    A stamped figure without any text gives (inf, dpi).
    """
    for _, kind, data, _ in _chunks(png):
        if kind == b"tEXt":
            key, _, value = data.partition(b"\0")
            if key == FONT_RECORD_KEY.encode("latin-1"):
                words = value.decode("latin-1").split()
                if words[:2] == ["no", "text"]:
                    return float("inf"), float(words[-2])
                return float(words[0]), float(words[3])
        if kind == b"IDAT":
            break  # matplotlib writes its text chunks before the image data
    return None


def _retina_formatter(figure):
    result = png_with_font_record(figure)
    if result is None:
        return None
    png, size = result
    return base64.b64encode(png).decode("ascii"), size


def setup() -> None:
    """Legible figure defaults for this notebook; in IPython, retina PNGs stamped with their smallest font."""
    import matplotlib

    matplotlib.rcParams.update(RC)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    # Load the backend now (pyplot loads it lazily, at the first figure): the inline backend registers its
    # own formatters when it loads, and ours must replace them, not be replaced.
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.switch_backend(matplotlib.get_backend())

    matplotlib.rcParams.update(RC)  # after the inline backend's own rc settings
    for mime, formatter in shell.display_formatter.formatters.items():
        if mime != "image/png":
            formatter.pop(Figure, None)
    shell.display_formatter.formatters["image/png"].for_type(Figure, _retina_formatter)


# --------------------------------------------------------------------------- Chapter 4's concept figures


def _grid(ax, left: float, top: float, values, cell: float = 0.28, cmap: str = "Blues", blocked=None, colours=None):
    """``values`` (rows x columns) as a grid of coloured squares whose top-left corner is at (left, top).

    ``blocked`` (same shape, bool): squares drawn grey with a cross (a masked score). ``colours`` (one colour
    per column) replaces the colour map. Returns (left, bottom, right, top) of the drawn grid.
    """
    import matplotlib
    import numpy as np
    from matplotlib.patches import Rectangle

    values = np.asarray(values, dtype=float)
    rows, columns = values.shape
    low, high = float(values.min()), float(values.max())
    scale = matplotlib.colormaps[cmap]
    for r in range(rows):
        for c in range(columns):
            x, y = left + c * cell, top - (r + 1) * cell
            if blocked is not None and blocked[r][c]:
                ax.add_patch(Rectangle((x, y), cell, cell, facecolor="0.85", edgecolor="white", lw=1))
                ax.plot([x + 0.2 * cell, x + 0.8 * cell], [y + 0.2 * cell, y + 0.8 * cell], color="0.55", lw=1)
                continue
            if colours is not None:
                colour = colours[c]
            else:
                colour = scale(0.15 + 0.8 * (values[r, c] - low) / (high - low if high > low else 1.0))
            ax.add_patch(Rectangle((x, y), cell, cell, facecolor=colour, edgecolor="white", lw=1))
    return left, top - rows * cell, left + columns * cell, top


def _arrow(ax, start, end, text: str | None = None, offset: float = 0.18, **text_options):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.2))
    if text:
        middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + offset)
        ax.text(*middle, text, ha="center", va="bottom", fontsize=10, color="0.2", **text_options)


def attention_flow(T: int = 4, d_k: int = 3, seed: int = 0):
    """Chapter 4's data-flow figure of one attention head, drawn from real numbers.

    Q, K and V (T x d_k each, random with ``seed``) -> scores Q Kᵀ / √d_k (T x T) -> causal mask (−∞
    above the diagonal) -> softmax (each row sums to 1) -> weights · V (T x d_k). Every grid shows the
    values the step computes, so the masked squares really are the ones the softmax gives zero weight.
    Returns the matplotlib Figure (6.9 x 3.3 inches: the book's text column at 100 dpi).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from . import validate

    T = validate.positive_int(T, "T", hint="the number of tokens, e.g. 4")
    d_k = validate.positive_int(d_k, "d_k", hint="the width of a query, e.g. 3")
    generator = np.random.default_rng(seed)
    q, k, v = (generator.normal(size=(T, d_k)) for _ in range(3))
    scores = q @ k.T / np.sqrt(d_k)
    allowed = np.tril(np.ones((T, T), dtype=bool))
    masked = np.where(allowed, scores, -np.inf)
    weights = np.exp(masked - masked.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    output = weights @ v

    figure, ax = plt.subplots(figsize=(6.9, 3.3))
    ax.set_xlim(0, 10.6)
    ax.set_ylim(0.1, 4.9)
    ax.set_axis_off()
    cell = min(0.3, 1.3 / max(T, d_k))

    def label(box, title, shape):
        x = (box[0] + box[2]) / 2
        ax.text(x, box[1] - 0.08, title, ha="center", va="top", fontsize=11, fontweight="bold")
        ax.text(x, box[1] - 0.4, shape, ha="center", va="top", fontsize=10, color="0.3", linespacing=1.1)

    # Q and K on the left, one above the other; the steps left to right
    q_box = _grid(ax, 0.2, 4.6, q, cell, "Purples")
    k_box = _grid(ax, 0.2, 2.3, k, cell, "Greens")
    top = 3.5
    s_box = _grid(ax, 2.5, top, scores, cell, "Oranges")
    m_box = _grid(ax, 4.75, top, np.where(allowed, scores, 0.0), cell, "Oranges", blocked=~allowed)
    w_box = _grid(ax, 7.0, top, weights, cell, "Blues", blocked=~allowed)
    o_box = _grid(ax, 9.35, top, output, cell, "Reds")
    middle_y = (s_box[1] + s_box[3]) / 2
    between = (w_box[2] + o_box[0]) / 2
    v_box = _grid(ax, between - d_k * cell / 2, 4.85, v, cell, "Greys")
    for box, title, shape in (
        (q_box, "Q", f"{T}×{d_k}"),
        (k_box, "K", f"{T}×{d_k}"),
        (s_box, "scores", f"QKᵀ/√d_k, {T}×{T}"),
        (m_box, "mask", "−∞ where\nforbidden"),
        (w_box, "softmax", "each row\nsums to 1"),
        (o_box, "output", f"{T}×{d_k}"),
    ):
        label(box, title, shape)
    _arrow(ax, (q_box[2] + 0.08, (q_box[1] + q_box[3]) / 2), (s_box[0] - 0.1, middle_y + 0.25))
    _arrow(ax, (k_box[2] + 0.08, (k_box[1] + k_box[3]) / 2), (s_box[0] - 0.1, middle_y - 0.25))
    _arrow(ax, (s_box[2] + 0.1, middle_y), (m_box[0] - 0.1, middle_y))
    _arrow(ax, (m_box[2] + 0.1, middle_y), (w_box[0] - 0.1, middle_y))
    _arrow(ax, (w_box[2] + 0.1, middle_y), (o_box[0] - 0.1, middle_y))
    _arrow(ax, (between, v_box[1] - 0.05), (between, middle_y + 0.05))
    ax.text(v_box[0] - 0.1, (v_box[1] + v_box[3]) / 2, f"V {T}×{d_k}", ha="right", va="center", fontsize=10)
    return figure


def head_split_merge(T: int = 4, n_embd: int = 8, n_head: int = 4):
    """Chapter 4's figure of multi-head attention's reshapes: split (B, T, E) into H heads, merge them back.

    Column c of the (T, E) input is coloured by the head that receives it (head h gets features
    h·E/H .. (h+1)·E/H − 1); the middle shows the (H, T, E/H) stack after ``view`` + ``transpose``, in
    which every head attends on its own; the right the merged (T, E) result before W_O.
    Returns the matplotlib Figure (6.9 x 3 inches).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from . import validate

    T = validate.positive_int(T, "T", hint="the number of tokens, e.g. 4")
    n_embd = validate.positive_int(n_embd, "n_embd", hint="the model width, e.g. 8")
    n_head = validate.positive_int(n_head, "n_head", hint="a divisor of n_embd, e.g. 4")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head}); e.g. n_embd=8, n_head=4")
    head_dim = n_embd // n_head
    palette = plt.get_cmap("tab10").colors
    column_colours = [palette[c // head_dim] for c in range(n_embd)]
    figure, ax = plt.subplots(figsize=(6.9, 2.6))
    ax.set_xlim(0, 11.1)
    ax.set_ylim(1.0, 3.6)
    ax.set_axis_off()
    cell = min(0.24, 1.9 / n_embd, 1.4 / T)
    gap = 0.25
    top = 3.0
    ones = np.ones((T, n_embd))

    def caption(box, title, lines):
        x = (box[0] + box[2]) / 2
        ax.text(x, box[3] + 0.1, title, ha="center", va="bottom", fontsize=11, fontweight="bold")
        ax.text(x, box[1] - 0.1, lines, ha="center", va="top", fontsize=10, color="0.2", linespacing=1.15)

    left_box = _grid(ax, 0.2, top, ones, cell, colours=column_colours)
    caption(left_box, "Q = x W_Q", f"(T, E)\n= ({T}, {n_embd})")
    heads_left = left_box[2] + 2.05
    boxes = []
    for h in range(n_head):
        boxes.append(
            _grid(
                ax,
                heads_left + h * (head_dim * cell + gap),
                top,
                ones[:, :head_dim],
                cell,
                colours=[palette[h]] * head_dim,
            )
        )
        ax.text(
            (boxes[-1][0] + boxes[-1][2]) / 2,
            top + 0.1,
            f"h{h + 1}",
            ha="center",
            va="bottom",
            fontsize=10,
            color=palette[h],
            fontweight="bold",
        )
    stack = (boxes[0][0], boxes[0][1], boxes[-1][2], boxes[0][3])
    ax.text(
        (stack[0] + stack[2]) / 2,
        stack[1] - 0.1,
        f"(H, T, E/H) = ({n_head}, {T}, {head_dim})\nattention in each head",
        ha="center",
        va="top",
        fontsize=10,
        color="0.2",
        linespacing=1.15,
    )
    right_box = _grid(ax, stack[2] + 2.15, top, ones, cell, colours=column_colours)
    caption(right_box, "merged", f"(T, E) = ({T}, {n_embd})\nthen · W_O")
    middle = (left_box[1] + left_box[3]) / 2
    _arrow(ax, (left_box[2] + 0.1, middle), (stack[0] - 0.1, middle), "split_heads", offset=0.08)
    ax.text(
        (left_box[2] + stack[0]) / 2,
        middle - 0.1,
        "view +\ntranspose",
        ha="center",
        va="top",
        fontsize=10,
        color="0.35",
        linespacing=1.1,
    )
    _arrow(ax, (stack[2] + 0.1, middle), (right_box[0] - 0.1, middle), "merge_heads", offset=0.08)
    ax.text(
        (stack[2] + right_box[0]) / 2,
        middle - 0.1,
        "transpose\n+ view",
        ha="center",
        va="top",
        fontsize=10,
        color="0.35",
        linespacing=1.1,
    )
    return figure


# --- the book's pipeline, with the current stage marked -------------------------------------------------------------

#: The stages of :func:`pipeline`, in order: (name, box label, the chapter that builds it).
PIPELINE_STAGES = (
    ("text", "text and\nn-grams", "Ch. 1"),
    ("tokens", "tokens\nand ids", "Ch. 2"),
    ("embeddings", "embeddings\n(vectors)", "Ch. 3"),
    ("attention", "attention", "Ch. 4"),
    ("transformer", "Transformer\n(GPT, BERT)", "Ch. 5"),
    ("training", "loss and\ntraining", "Ch. 6"),
    ("applications", "applications", "Ch. 7 on"),
)
PIPELINE_HIGHLIGHT = "#ffd54f"  # the stage of the chapter, as the Mermaid "where we are" diagrams had it
PIPELINE_OTHER = "#eceff1"


def pipeline(stage: str):
    """The book's whole pipeline as a row of boxes, with ``stage`` highlighted; returns a matplotlib Figure.

    The stages, left to right, and the chapter that builds each:

    ============== ==================================================== =========
    ``stage``      box                                                   chapter
    ============== ==================================================== =========
    ``"text"``     text, and the n-gram models that predict it           1
    ``"tokens"``   tokens and ids                                        2
    ``"embeddings"`` embeddings (vectors for tokens)                     3
    ``"attention"`` attention                                            4
    ``"transformer"`` the Transformer (GPT, BERT)                        5
    ``"training"`` the loss and training                                 6
    ``"applications"`` applications                                     7 on
    ============== ==================================================== =========

    The figure is 6.7 inches wide, 6.9 with the pad of a tight PNG (the text column at 100 dpi), with
    9-point text or larger. It is built without pyplot, so a notebook shows it once, as the cell's value. Each box is a patch whose gid is
    ``"stage-<name>"``; the highlighted one is filled with ``PIPELINE_HIGHLIGHT``.

    >>> from matplotlib.colors import to_rgba
    >>> fig = pipeline("tokens")
    >>> [p.get_gid() for p in fig.axes[0].patches if p.get_facecolor() == to_rgba(PIPELINE_HIGHLIGHT)]
    ['stage-tokens']
    """
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    names = [name for name, _, _ in PIPELINE_STAGES]
    if not isinstance(stage, str) or stage not in names:
        raise ValueError(f"stage must be one of {', '.join(repr(n) for n in names)}; got {stage!r}")
    figure = Figure(figsize=(6.7, 1.45), dpi=DPI)  # 6.9 in with the 0.1 in pad of a tight PNG
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, len(names))
    ax.set_ylim(0, 1.45)
    ax.axis("off")
    width, gap = 0.86, 0.14
    for index, (name, label, chapter) in enumerate(PIPELINE_STAGES):
        here = name == stage
        left = index + gap / 2
        box = FancyBboxPatch(
            (left, 0.42),
            width,
            0.78,
            boxstyle="round,pad=0,rounding_size=0.08",
            facecolor=to_rgba(PIPELINE_HIGHLIGHT if here else PIPELINE_OTHER),
            edgecolor="#e65100" if here else "#90a4ae",
            linewidth=2.2 if here else 1.0,
            gid=f"stage-{name}",
        )
        ax.add_patch(box)
        ax.text(
            left + width / 2,
            0.81,
            label,
            ha="center",
            va="center",
            fontsize=9,
            linespacing=1.15,
        )
        ax.text(
            left + width / 2,
            0.2,
            f"{chapter}: here" if here else chapter,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold" if here else "normal",
            color="#e65100" if here else "#37474f",
        )
        if index:
            ax.add_patch(
                FancyArrowPatch(
                    (left - gap - 0.005, 0.81),
                    (left + 0.005, 0.81),
                    arrowstyle="-|>",
                    mutation_scale=9,
                    color="#546e7a",
                    linewidth=1,
                )
            )
    return figure


def gpt_vs_bert(text: str = "to be or", masked: tuple[int, ...] = (3,)):
    """Concept figure of Chapter 5: GPT and BERT side by side, as the matplotlib figure it returns.

    Each half shows the input characters of ``text`` (bottom), the attention
    mask (which input each position may read: a filled square), and what is
    predicted at the top: the next character at every position for GPT (the
    causal mask is a lower triangle), only the hidden characters (positions
    ``masked``, shown as [M] in BERT's input) for BERT, whose mask is full.
    At most 7 in wide; no text under 10 pt.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    chars = list(text)
    T = len(chars)
    if not 2 <= T <= 10:
        raise ValueError(f"text must have 2 to 10 characters to stay legible, got {T} ({text!r})")
    for position in masked:
        if not 0 <= position < T:
            raise ValueError(f"masked position {position} is outside the text (0..{T - 1})")

    def shown(ch):
        return "␣" if ch == " " else ch

    figure, axes = plt.subplots(1, 2, figsize=(7.0, 4.3))
    halves = [
        ("GPT (decoder): left to right", True, "predicts the next character everywhere"),
        ("BERT (encoder): both sides", False, "predicts only the hidden characters"),
    ]
    for axis, (title, causal, caption) in zip(axes, halves):
        inputs = [("[M]" if (not causal and i in masked) else shown(c)) for i, c in enumerate(chars)]
        if causal:
            outputs = [shown(c) for c in chars[1:]] + ["?"]
        else:
            outputs = [shown(chars[i]) if i in masked else "" for i in range(T)]
        # the mask: column = the position that predicts (under its target), row = the input it may read
        # (input 0 at the bottom, next to the input row)
        for query in range(T):
            for key in range(T):
                allowed = key <= query if causal else True
                colour = "#1565c0" if allowed else "#eeeeee"
                axis.add_patch(Rectangle((query, key + 1.5), 0.9, 0.9, color=colour, lw=0))
        for key, token in enumerate(inputs):
            axis.text(-0.15, key + 1.95, token, ha="right", va="center", fontsize=10, color="0.35")
        for i, token in enumerate(inputs):
            axis.text(i + 0.45, 0.6, token, ha="center", va="center", fontsize=12 if len(token) == 1 else 10,
                      fontweight="bold" if token == "[M]" else "normal",
                      color="#c62828" if token == "[M]" else "black")  # fmt: skip
            if outputs[i]:
                axis.text(i + 0.45, T + 2.2, outputs[i], ha="center", va="center", fontsize=12, color="#2e7d32")
                axis.add_patch(FancyArrowPatch((i + 0.45, T + 1.45), (i + 0.45, T + 1.9), arrowstyle="-|>",
                                               mutation_scale=10, color="#2e7d32", lw=1))  # fmt: skip
        axis.text(-0.3, 0.6, "input", ha="right", va="center", fontsize=10)
        axis.text(-0.3, T + 2.2, "target", ha="right", va="center", fontsize=10, color="#2e7d32")
        axis.text(-1.2, 1.5 + T / 2, "may read", ha="right", va="center", fontsize=10, rotation=90)
        axis.set_title(title, fontsize=12)
        axis.text(T / 2, -0.5, caption, ha="center", va="center", fontsize=10)
        axis.set_xlim(-1.9, T + 0.1)
        axis.set_ylim(-0.9, T + 2.7)
        axis.set_aspect("equal")
        axis.axis("off")
    figure.text(0.5, 0.015, "blue square: the position of its column may read the input of its row (the attention mask)",
                ha="center", fontsize=10)  # fmt: skip
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return figure
