"""Chapter 5's concept figure (llmbook.figures.gpt_vs_bert): what it draws, and that it stays legible."""

import matplotlib
import pytest

matplotlib.use("Agg")

from llmbook import figures  # noqa: E402


def filled(axis):
    """The mask squares of one half: (column, row) -> drawn blue (allowed) rather than grey."""
    return {
        (round(p.get_x()), round(p.get_y() - 1.5)): p.get_facecolor()[2] - p.get_facecolor()[0] > 0.3
        for p in axis.patches
        if type(p).__name__ == "Rectangle"
    }


def test_gpt_half_is_causal_and_bert_half_is_full():
    figure = figures.gpt_vs_bert("to be", masked=(1,))
    gpt, bert = figure.axes
    T = 5
    gpt_squares = {key: value for key, value in filled(gpt).items()}
    assert len(gpt_squares) == T * T
    blue = {key for key, value in gpt_squares.items() if value}
    assert blue == {(query, key) for query in range(T) for key in range(query + 1)}  # lower triangle only
    assert all(filled(bert).values()) and len(filled(bert)) == T * T
    bert_text = [t.get_text() for t in bert.texts]
    assert "[M]" in bert_text and "o" in bert_text  # the hidden 'o' is BERT's one target
    gpt_text = [t.get_text() for t in gpt.texts]
    assert gpt_text.count("?") == 1  # the last position's next character is not in the window


def test_gpt_vs_bert_is_legible_and_refuses_bad_arguments():
    figure = figures.gpt_vs_bert()
    assert figure.get_size_inches()[0] <= 7.0
    assert figures.smallest_font(figure) >= 10  # 10 pt at 100 dpi: about 14 px on the page
    with pytest.raises(ValueError, match="2 to 10 characters"):
        figures.gpt_vs_bert("x")
    with pytest.raises(ValueError, match="outside the text"):
        figures.gpt_vs_bert("abc", masked=(5,))
