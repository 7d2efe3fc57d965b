"""The key results of Chapters 1 and 2 at the smoke budget fall in the ranges the chapters state.

The ranges are read from the chapters' own ``EXPECTED`` tables (one copy), and the results are
recomputed here the way the chapters compute them, so a change in ``llmbook.ngram`` or
``llmbook.tokenizers`` that moves a result out of its stated range fails here, not only in the
notebook run.
"""

import json
from pathlib import Path

import pytest

from llmbook.data import load_tang_poems, load_text
from llmbook.ngram import NGramLM
from llmbook.tokenizers import STOP_WORDS, BPETokenizer, WordTokenizer

BOOK = Path(__file__).resolve().parents[1] / "book"


def expected_ranges(notebook: str, budget: str = "smoke") -> dict:
    """The chapter's EXPECTED[budget], by running the code cell that defines it (imports and SIZES only)."""
    cells = json.loads((BOOK / notebook).read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    (source,) = [s for s in sources if "EXPECTED = {" in s]
    from llmbook import runtime

    namespace: dict = {"runtime": runtime}  # imported by an earlier cell of the chapter
    exec(compile(source, f"{notebook}: EXPECTED", "exec"), namespace)
    return namespace["EXPECTED"][budget]


def inside(value, bounds) -> bool:
    low, high = bounds
    return low <= value <= high


def test_chapter_1_smoke_results_are_in_their_stated_ranges():
    expected = expected_ranges("01_ngrams.ipynb")
    text = load_text("tinyshakespeare.txt")
    split = int(0.9 * len(text))
    train, valid = text[:split][:60_000], text[split:][:8_000]
    valid = "".join(c for c in valid if c in set(train))
    top = NGramLM(6, smoothing="kneser-ney").fit(train)
    orders = range(1, 5)
    kn = {n: top.derive(n, smoothing="kneser-ney").perplexity(valid) for n in orders}
    add_k = {n: top.derive(n, smoothing="add-k", k=0.01).perplexity(valid) for n in orders}
    best_kn = min(kn, key=kn.get)
    measured = dict(
        best_kn_ppl=kn[best_kn],
        best_add_k_ppl=min(add_k.values()),
        best_kn_n=best_kn,
        unseen_5=100 * (1 - top.coverage(valid, 5)),
    )
    outside = {name: (value, expected[name]) for name, value in measured.items() if not inside(value, expected[name])}
    assert not outside, f"Chapter 1 results outside their smoke ranges (value, range): {outside}"
    assert measured["best_kn_ppl"] < measured["best_add_k_ppl"], "Kneser-Ney must beat add-k, as the chapter says"


def test_chapter_2_smoke_results_are_in_their_stated_ranges():
    tokenizers = pytest.importorskip("tokenizers")
    expected = expected_ranges("02_tokens.ipynb")
    english = load_text("tinyshakespeare.txt")[:60_000]
    words = WordTokenizer(keep_punctuation=False).tokenize(english)
    stop_share = 100 * sum(w in STOP_WORDS for w in words) / len(words)

    ours = BPETokenizer.train(english, vocab_size=1000)
    n_bytes = len(english.encode("utf-8"))
    ours_ids = ours.encode(english)
    peer = tokenizers.Tokenizer(tokenizers.models.BPE())
    peer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    peer.train_from_iterator([english], trainer)
    peer_ids = peer.encode(english).ids

    poems = ["\n".join(poem["paragraphs"]) for poem in load_tang_poems(1)[:300]]
    chinese = "\n\n".join(poems)
    zh_bpe_small = 1000 * len(BPETokenizer.train(chinese, 300).encode(chinese)) / len(chinese)

    measured = dict(
        stop_share=stop_share,
        ours_tokens_per_byte=len(ours_ids) / n_bytes,
        peer_ratio=len(ours_ids) / len(peer_ids),
        zh_bpe_small=zh_bpe_small,
    )
    outside = {name: (value, expected[name]) for name, value in measured.items() if not inside(value, expected[name])}
    assert not outside, f"Chapter 2 results outside their smoke ranges (value, range): {outside}"


def test_expected_ranges_cover_every_budget_and_are_ordered():
    for notebook in ("01_ngrams.ipynb", "02_tokens.ipynb"):
        for budget in ("smoke", "cpu", "gpu"):
            for name, (low, high) in expected_ranges(notebook, budget).items():
                assert low < high, f"{notebook} {budget} {name}: empty range [{low}, {high}]"
