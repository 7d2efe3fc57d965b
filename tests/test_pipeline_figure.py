"""Specifications of llmbook.figures.pipeline: the book's pipeline with the current stage marked."""

import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from llmbook import figures

STAGES = [name for name, _, _ in figures.PIPELINE_STAGES]


def boxes(figure):
    return {p.get_gid(): p for p in figure.axes[0].patches if (p.get_gid() or "").startswith("stage-")}


def test_every_chapter_one_to_six_has_its_own_stage():
    chapters = [chapter for _, _, chapter in figures.PIPELINE_STAGES]
    assert chapters[:6] == [f"Ch. {n}" for n in range(1, 7)]
    assert STAGES == ["text", "tokens", "embeddings", "attention", "transformer", "training", "applications"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_asked_stage_and_only_it_is_highlighted(stage):
    figure = figures.pipeline(stage)
    assert isinstance(figure, Figure)
    drawn = boxes(figure)
    assert sorted(drawn) == sorted(f"stage-{name}" for name in STAGES)
    highlighted = [gid for gid, box in drawn.items() if box.get_facecolor() == to_rgba(figures.PIPELINE_HIGHLIGHT)]
    assert highlighted == [f"stage-{stage}"]
    # the boxes run left to right in the book's order
    lefts = [drawn[f"stage-{name}"].get_x() for name in STAGES]
    assert lefts == sorted(lefts)


def test_the_figure_fits_the_text_column_with_legible_text():
    figure = figures.pipeline("tokens")
    assert figure.get_figwidth() <= 6.7 + 1e-9
    png, size = figures.png_with_font_record(figure)
    points, dpi = figures.read_font_record(png)
    assert points >= 9
    assert size["width"] <= 690


@pytest.mark.parametrize("bad", ["Tokens", "chapter 2", 2, None, ""])
def test_an_unknown_stage_names_the_value_and_lists_the_valid_ones(bad):
    with pytest.raises(ValueError) as error:
        figures.pipeline(bad)
    message = str(error.value)
    assert repr(bad) in message
    for name in STAGES:
        assert repr(name) in message
