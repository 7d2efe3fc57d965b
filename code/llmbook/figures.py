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
