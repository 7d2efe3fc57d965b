"""Chapter 4's concept figures (llmbook.figures.attention_flow, head_split_merge): legible and drawn from real numbers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from llmbook import figures  # noqa: E402


@pytest.mark.parametrize("draw", [figures.attention_flow, figures.head_split_merge])
def test_concept_figures_fit_the_column_with_legible_text(draw):
    figure = draw()
    try:
        width, height = figure.get_size_inches()
        assert width <= 6.9 and height <= 4  # the ~690 px column at 100 dpi: shown at natural size
        assert figures.smallest_font(figure) >= 10  # >= 13 px at 100 dpi, above the book's 9 px floor
    finally:
        plt.close(figure)


def test_attention_flow_draws_a_causal_mask_and_rows_that_sum_to_one():
    T = 5
    figure = figures.attention_flow(T=T, d_k=2, seed=3)
    try:
        crossed = [line for line in figure.axes[0].lines if line.get_color() == "0.55"]
        # the mask grid and the softmax grid each cross out the T(T-1)/2 squares above the diagonal
        assert len(crossed) == 2 * T * (T - 1) // 2
        labels = {text.get_text() for text in figure.axes[0].texts}
        assert {"Q", "K", "scores", "mask", "softmax", "output"} <= labels
    finally:
        plt.close(figure)


def test_head_split_merge_colours_each_head_s_columns_and_checks_its_sizes():
    figure = figures.head_split_merge(T=3, n_embd=6, n_head=3)
    try:
        labels = {text.get_text() for text in figure.axes[0].texts}
        assert {"h1", "h2", "h3", "(H, T, E/H) = (3, 3, 2)\nattention in each head"} <= labels
        colours = {tuple(np.round(p.get_facecolor(), 3)) for p in figure.axes[0].patches}
        assert len(colours) == 3  # one colour per head
    finally:
        plt.close(figure)
    with pytest.raises(ValueError, match="divisible"):
        figures.head_split_merge(n_embd=8, n_head=3)
    with pytest.raises((TypeError, ValueError), match="T"):
        figures.attention_flow(T=0)
