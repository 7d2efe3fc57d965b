"""Specification of llmbook.viz (Chapter 4): the attention view's HTML, its safety, size and inputs."""

import base64
import json
import re

import numpy as np
import pytest
import torch

from llmbook.attention import MultiHeadAttention
from llmbook.viz import attention_view, bertviz_view


def random_attention(layers=2, heads=3, T=5, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, heads, T, T, generator=g), dim=-1) for _ in range(layers)]


def payload(view):
    match = re.search(r'<script type="application/json" class="llmbook-attention-data">(.*?)</script>', view.html, re.S)
    assert match, "the view must carry its data in one JSON script"
    return json.loads(match.group(1))


def test_view_has_the_dom_hooks_the_browser_test_clicks():
    view = attention_view(random_attention(), ["the", "cat", "sat", "on", "mats"], layer=1, head=2, title="demo")
    page = view._repr_html_()
    root = re.search(r'<div id="(llmbook-attention-[0-9a-f]+)" class="llmbook-attention-view"([^>]*)>', page)
    assert root and 'data-layer="1"' in root.group(2) and 'data-head="2"' in root.group(2)
    assert len(re.findall(r'<button type="button" class="llmbook-layer[^"]*" data-layer="\d"', page)) == 2
    assert len(re.findall(r'<button type="button" class="llmbook-head[^"]*" data-head="\d"', page)) == 3
    assert page.count('class="llmbook-mode"') == 1
    assert page.count('<svg class="llmbook-attention-lines"') == 1
    assert page.count('data-token-index="4"') == 2  # once as a query, once as a key
    assert "data-weight" in page  # the script sets it on every line it draws
    assert "require(" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_two_views_on_one_page_have_different_ids_and_no_global_names():
    a = attention_view(random_attention(), list("abcde"))
    b = attention_view(random_attention(), list("abcde"))
    id_a = re.search(r'id="(llmbook-attention-[0-9a-f]+)"', a.html).group(1)
    id_b = re.search(r'id="(llmbook-attention-[0-9a-f]+)"', b.html).group(1)
    assert id_a != id_b
    script = re.search(r"<script>(.*)</script>", a.html, re.S).group(1).strip()
    assert script.startswith("(function () {") and script.endswith("})();")  # everything inside one closure


def test_weights_round_trip_as_bytes():
    attention = random_attention(layers=2, heads=3, T=5)
    data = payload(attention_view(attention, list("abcde")))
    stored = np.frombuffer(base64.b64decode(data["weights"]), dtype=np.uint8).reshape(2, 3, 5, 5) / 255
    expected = torch.stack([layer[0] for layer in attention]).numpy()
    assert np.abs(stored - expected).max() <= 0.5 / 255 + 1e-9


def test_token_text_is_escaped_and_cannot_close_the_script():
    evil = "<script>alert(1)</script>"
    view = attention_view(random_attention(T=3), [evil, "a&b", '"quoted"'])
    assert evil not in view.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in view.html  # shown as text in the token columns
    assert view.html.count("</script>") == 2  # the JSON data and the code, nothing from the tokens
    assert payload(view)["queries"][0] == evil  # the script still gets the exact text (set via textContent)


def test_chinese_tokens_survive():
    view = attention_view(random_attention(T=4), ["我", "爱", "自然", "语言"])
    assert payload(view)["queries"] == ["我", "爱", "自然", "语言"]
    assert "自然" in view.html


def test_html_size_is_small_and_long_inputs_are_truncated_with_a_note():
    small = attention_view(random_attention(layers=2, heads=4, T=16), [f"t{i}" for i in range(16)])
    assert len(small.html) < 30_000
    T = 500
    long_attention = [torch.softmax(torch.randn(1, 4, T, T), -1) for _ in range(2)]
    view = attention_view(long_attention, [f"w{i}" for i in range(T)], max_tokens=64)
    assert view.truncated_from == 500 and len(view.tokens) == 64
    assert "first 64 of 500 tokens" in view.html
    # 2 layers x 4 heads x 64 x 64 weights at ~1.34 bytes each, plus the fixed page
    assert len(view.html) < 2 * 4 * 64 * 64 * 1.4 + 40_000
    assert payload(view)["tq"] == 64


@pytest.mark.parametrize(
    "attention",
    [
        torch.softmax(torch.randn(3, 4, 4), -1),  # (H, T, T)
        [torch.softmax(torch.randn(3, 4, 4), -1)],  # list of (H, T, T)
        [torch.softmax(torch.randn(2, 3, 4, 4), -1)] * 2,  # list of (B, H, T, T): first sequence
        torch.softmax(torch.randn(4, 4), -1),  # one (T, T) matrix
        np.full((3, 4, 4), 0.25),  # numpy works too
    ],
)
def test_accepted_shapes(attention):
    view = attention_view(attention, list("abcd"))
    assert view.num_heads in (1, 3) and len(view.tokens) == 4


def test_cross_attention_needs_key_tokens():
    cross = torch.softmax(torch.randn(2, 3, 5), -1)
    with pytest.raises(ValueError, match="key_tokens"):
        attention_view(cross, list("abc"))
    view = attention_view(cross, list("abc"), key_tokens=list("vwxyz"))
    assert payload(view)["tk"] == 5


def test_clear_errors_for_mismatched_inputs():
    attention = random_attention(T=5)
    with pytest.raises(ValueError, match="4 query tokens but the attention has 5"):
        attention_view(attention, list("abcd"))
    with pytest.raises(ValueError, match="layer 1 has shape"):
        attention_view([attention[0], torch.softmax(torch.randn(1, 3, 6, 6), -1)], list("abcde"))
    with pytest.raises(ValueError, match="expected attention of shape"):
        attention_view([torch.rand(1, 1, 3, 5, 5)], list("abcde"))
    with pytest.raises(ValueError, match="head=7"):
        attention_view(attention, list("abcde"), head=7)
    with pytest.raises(ValueError, match="before the softmax"):
        attention_view(torch.randn(2, 5, 5) * 5, list("abcde"))
    with pytest.raises(TypeError, match="list of strings"):
        attention_view(attention, "abcde")
    with pytest.raises(TypeError):
        attention_view([], [])


def test_view_of_a_multihead_attention_module():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(1, 6, 16)
    _, weights = mha(x, is_causal=True, need_weights=True)
    view = attention_view([weights], "我 们 在 学 注 意".split())
    stored = np.frombuffer(base64.b64decode(payload(view)["weights"]), dtype=np.uint8).reshape(1, 4, 6, 6)
    assert np.all(np.triu(stored[0, 0], k=1) == 0)  # the causal mask is visible in the view


@pytest.mark.parametrize("kind", ["head", "model"])
def test_bertviz_adapter_returns_html_with_tokens_layers_and_heads(kind):
    pytest.importorskip("bertviz")
    tokens = ["[CLS]", "the", "cat", "sat", "[SEP]"]
    html_object = bertviz_view(random_attention(layers=3, heads=2, T=5), tokens, view=kind)
    page = html_object.data
    for token in tokens:
        assert json.dumps(token) in page
    params_text = re.search(r"const params = (\{.*?\}); // HACK", page, re.S).group(1)
    params = json.loads(params_text)
    attention = np.array(params["attention"][0]["attn"])
    assert attention.shape == (3, 2, 5, 5)


def test_bertviz_adapter_rejects_unknown_views():
    with pytest.raises(ValueError, match="view must be one of 'head', 'model', got"):
        bertviz_view(random_attention(), list("abcde"), view="neuron")


def test_view_draws_and_responds_to_clicks_in_a_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = "/usr/bin/chromium"
    if not __import__("os").path.exists(chromium):
        pytest.skip("no chromium at /usr/bin/chromium")
    attention = random_attention(layers=2, heads=4, T=6)
    tokens = ["<script>alert(1)</script>", "我", "爱", "自然", "语言", "!"]
    page_file = tmp_path / "views.html"
    views = attention_view(attention, tokens, pin=None).html + attention_view(attention, tokens, layer=1, head=3).html
    page_file.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{views}</body></html>')
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: problems.append("a token ran as script: " + dialog.message))
        page.goto(page_file.as_uri())
        first, second = page.locator(".llmbook-attention-view").nth(0), page.locator(".llmbook-attention-view").nth(1)
        assert first.locator("svg.llmbook-attention-lines line").count() > 0
        # The second view pins, at load, the query whose attention in head 3 of layer 1 is most concentrated.
        peaks = attention[1][0, 3].numpy().max(axis=-1)
        assert second.get_attribute("data-selected-token") == str(int(np.argmax(peaks[1:])) + 1)
        pinned_lines = second.locator("svg line").evaluate_all("lines => lines.map(l => +l.getAttribute('data-query'))")
        assert pinned_lines and set(pinned_lines) == {int(np.argmax(peaks[1:])) + 1}
        first.locator("button.llmbook-head[data-head='2']").click()
        assert first.get_attribute("data-head") == "2" and second.get_attribute("data-head") == "3"  # independent
        first.locator("button.llmbook-layer[data-layer='1']").click()
        assert first.get_attribute("data-layer") == "1"
        first.locator(".llmbook-token[data-side='query'][data-token-index='3']").click()
        page.mouse.move(0, 0)
        drawn = first.locator("svg line").evaluate_all("lines => lines.map(l => +l.getAttribute('data-weight'))")
        expected = attention[1][0, 2, 3]
        assert sum(drawn) == pytest.approx(float(expected[expected >= 0.005].sum()), abs=0.02)
        first.locator("button.llmbook-mode").click()
        assert first.get_attribute("data-mode") == "heatmap"
        assert first.locator("svg rect").count() == 36
        browser.close()
    assert problems == []


def test_the_view_pins_a_meaningful_query_at_load():
    attention = torch.zeros(1, 1, 4, 4)
    attention[0, 0] = torch.tensor(
        [[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.1, 0.8, 0.1, 0], [0.25, 0.25, 0.25, 0.25]]
    )  # query 2 is the most concentrated after query 0, which a causal view trivially gives weight 1
    tokens = ["a", "b", "c", "d"]
    assert payload(attention_view(attention, tokens))["pinned"] == 2
    assert payload(attention_view(attention, tokens, pin=3))["pinned"] == 3
    assert payload(attention_view(attention, tokens, pin=None))["pinned"] is None
    with pytest.raises(ValueError, match="pin=4"):
        attention_view(attention, tokens, pin=4)
    with pytest.raises(ValueError, match="'first'"):
        attention_view(attention, tokens, pin="first")


# --------------------------------------------------------------------------- head scores and the all-heads grid


def hand_made_heads(T=6):
    """Four heads of one layer, built by hand: previous-token, first-token, uniform (causal), self."""
    previous = torch.zeros(T, T)
    previous[0, 0] = 1.0
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    first = torch.zeros(T, T)
    first[:, 0] = 1.0
    uniform = torch.tril(torch.ones(T, T))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    itself = torch.eye(T)
    return torch.stack([previous, first, uniform, itself])[None]  # (1, 4, T, T)


def test_head_scores_on_hand_made_heads():
    from llmbook.viz import head_scores

    scores = head_scores([hand_made_heads()])
    assert scores.causal
    # at query 1 the previous token is the first one: each of those heads scores 1/5 on the other
    assert scores["previous"][0].tolist() == pytest.approx([1.0, 0.2, np.mean([1 / (q + 1) for q in range(1, 6)]), 0.0])
    assert scores["first"][0].tolist() == pytest.approx([0.2, 1.0, np.mean([1 / (q + 1) for q in range(1, 6)]), 0.0])
    assert scores["self"][0, 3] == pytest.approx(1.0) and scores["next"][0].max() == pytest.approx(0.0)
    entropy = scores["entropy"][0]
    assert entropy[2] == pytest.approx(1.0)  # uniform over the visible keys: the largest possible
    assert entropy[0] == pytest.approx(0.0, abs=1e-9) and entropy[1] == pytest.approx(0.0, abs=1e-9)
    assert scores.top("previous") == (0, 0) and scores.top("first") == (0, 1)
    assert scores.top("entropy") in {(0, 0), (0, 1), (0, 3)}  # the one-hot heads tie at 0
    rows = scores.rows()
    assert len(rows) == 4 and rows[0]["layer"] == 0 and rows[2]["head"] == 2
    assert "<table" in scores._repr_html_() and "<b>1.00</b>" in scores._repr_html_()


def test_head_scores_bidirectional_uniform_and_next_token_heads():
    from llmbook.viz import head_scores

    T = 5
    uniform = torch.full((T, T), 1 / T)
    following = torch.zeros(T, T)
    following[torch.arange(T - 1), torch.arange(1, T)] = 1.0
    following[T - 1, T - 1] = 1.0
    scores = head_scores([torch.stack([uniform, following])])
    assert not scores.causal  # the upper triangle holds weight
    assert scores["entropy"][0, 0] == pytest.approx(1.0)  # log T over log T
    assert scores["next"][0, 1] == pytest.approx(1.0) and scores["previous"][0, 1] == pytest.approx(0.0)
    assert scores["previous"][0, 0] == pytest.approx(1 / T)


def test_head_scores_agree_with_a_real_model_and_refuse_bad_input():
    from llmbook.models import GPT, GPTConfig
    from llmbook.viz import head_scores

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        _, _, attentions = model(torch.randint(0, 11, (1, 8)), return_attention=True)
    scores = head_scores(attentions)
    assert scores.causal and scores["previous"].shape == (2, 2)
    weights = torch.stack([a[0] for a in attentions])  # (L, H, T, T)
    by_hand = weights[:, :, torch.arange(1, 8), torch.arange(7)].mean(-1)
    assert np.allclose(scores["previous"], by_hand.numpy(), atol=1e-6)
    assert ((scores["entropy"] > 0) & (scores["entropy"] <= 1 + 1e-6)).all()
    with pytest.raises(ValueError, match="at least 2 tokens"):
        head_scores([torch.ones(1, 1, 1, 1)])
    with pytest.raises(ValueError, match="self-attention"):
        head_scores([torch.full((1, 2, 3), 0.5)])
    with pytest.raises(ValueError, match="before the softmax"):
        head_scores([torch.randn(2, 4, 4) * 5])
    with pytest.raises(ValueError, match="score"):
        scores["prev"]


def test_attention_grid_and_score_plot_are_legible_and_one_panel_per_head():
    import matplotlib

    matplotlib.use("Agg")
    from llmbook.figures import smallest_font
    from llmbook.viz import attention_grid, plot_head_scores

    attentions = random_attention(layers=2, heads=4, T=10)
    figure = attention_grid(attentions, list("abcdefghij"), title="all heads")
    assert len(figure.axes) == 8
    assert figure.get_size_inches()[0] <= 7.0 + 1e-9
    assert smallest_font(figure) >= 9
    figure = plot_head_scores(attentions)
    assert len(figure.axes) == 3 and figure.get_size_inches()[0] <= 7.0 + 1e-9
    assert smallest_font(figure) >= 9
    with pytest.raises(ValueError, match="score"):
        plot_head_scores(attentions, names=["nonsense"])
