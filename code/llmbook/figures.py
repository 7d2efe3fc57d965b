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
