"""Specifications of llmbook.ngram (Chapter 1)."""

import math

import numpy as np
import pytest

from llmbook.data import load_text
from llmbook.ngram import BOS, EOS, NGramLM

SMOOTHINGS = [dict(smoothing="add-k", k=1.0), dict(smoothing="add-k", k=0.01), dict(smoothing="kneser-ney")]


@pytest.fixture(scope="module")
def shakespeare():
    text = load_text("tinyshakespeare.txt")
    train, valid = text[:60_000], text[60_000:70_000]
    seen = set(train)
    return train, "".join(c for c in valid if c in seen)  # a character model cannot score unseen characters


def test_counts_of_a_tiny_example_are_the_bigrams_with_boundaries():
    lm = NGramLM(2).fit("abab")
    assert lm.vocab == [EOS, "a", "b"]
    assert lm.counts_table(2) == {(BOS, "a"): 1, ("a", "b"): 2, ("b", "a"): 1, ("b", EOS): 1}
    assert lm.counts_table(1) == {("a",): 2, ("b",): 2, (EOS,): 1, (BOS,): 1}


def test_add_one_bigram_probability_matches_the_formula():
    lm = NGramLM(2, k=1.0).fit("abab")
    assert lm.prob("b", "a") == pytest.approx((2 + 1) / (2 + 3))
    assert lm.prob("a", "a") == pytest.approx((0 + 1) / (2 + 3))
    assert lm.prob(EOS, "b") == pytest.approx((1 + 1) / (2 + 3))


@pytest.mark.parametrize("options", SMOOTHINGS)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_probabilities_sum_to_one_for_seen_and_unseen_contexts(options, n, shakespeare):
    train, _ = shakespeare
    lm = NGramLM(n, **options).fit(train[:20_000])
    contexts = ["", "the ", "ROMEO", "zzzz", "qX!j", "\n\n", "First Citizen:\nBefore we proceed any"]
    for context in contexts:
        distribution = lm.distribution(context)
        assert distribution.shape == (lm.vocab_size,)
        assert np.all(distribution > 0) or (options.get("k") == 0)
        assert distribution.sum() == pytest.approx(1.0, abs=1e-9), context
        assert sum(lm.prob(t, context) for t in lm.vocab) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("options", SMOOTHINGS)
def test_word_level_probabilities_sum_to_one(options):
    sentences = [s.split() for s in ["the cat sat on the mat", "the dog sat on the log", "a cat saw a dog"]]
    lm = NGramLM(3, **options).fit_many(sentences)
    for context in [(), ("the",), ("on", "the"), ("a", "mat"), ("never", "seen")]:
        assert lm.distribution(context).sum() == pytest.approx(1.0, abs=1e-12)


def test_uniform_model_perplexity_equals_vocabulary_size():
    lm = NGramLM(1).fit("abcd")  # a, b, c, d and </s>: each counted once
    assert lm.vocab_size == 5
    assert lm.perplexity("dcba") == pytest.approx(5.0)
    huge_k = NGramLM(1, k=1e12).fit("aaaaaaaaab")
    assert huge_k.perplexity("ab") == pytest.approx(huge_k.vocab_size, rel=1e-6)


@pytest.mark.parametrize("smoothing", ["add-k", "kneser-ney"])
def test_higher_orders_lower_training_perplexity(smoothing, shakespeare):
    train, _ = shakespeare
    perplexities = [NGramLM(n, k=0.01, smoothing=smoothing).fit(train).perplexity(train) for n in range(1, 6)]
    assert all(a > b for a, b in zip(perplexities, perplexities[1:])), perplexities
    assert 20 < perplexities[0] < 35  # a character unigram model of English


def test_kneser_ney_beats_add_k_on_held_out_text(shakespeare):
    train, valid = shakespeare
    add_k = NGramLM(4, k=1.0).fit(train).perplexity(valid)
    kneser_ney = NGramLM(4, smoothing="kneser-ney").fit(train).perplexity(valid)
    assert kneser_ney < add_k


def test_perplexity_is_exp_of_mean_negative_log_likelihood():
    lm = NGramLM(2, k=0.5).fit("hello world")
    text = "low"
    manual = [lm.prob("l", ""), lm.prob("o", "l"), lm.prob("w", "o"), lm.prob(EOS, "w")]
    assert lm.perplexity(text) == pytest.approx(math.exp(-np.mean(np.log(manual))))


def test_context_longer_than_n_minus_one_uses_only_its_tail():
    lm = NGramLM(3, smoothing="kneser-ney").fit("the cat sat on the mat")
    assert lm.prob("t", "xyz the ca") == pytest.approx(lm.prob("t", "ca"))


def test_sampling_is_reproducible_and_uses_the_vocabulary(shakespeare):
    train, _ = shakespeare
    lm = NGramLM(4, smoothing="kneser-ney").fit(train)
    first, again = lm.sample(200, prompt="ROMEO:", seed=3), lm.sample(200, prompt="ROMEO:", seed=3)
    assert first == again and isinstance(first, str)
    assert set(first) <= set(lm.vocab)
    assert lm.sample(200, seed=4, generator=np.random.default_rng(9)) == lm.sample(
        200, generator=np.random.default_rng(9)
    )
    words = NGramLM(2).fit_many([["a", "b"], ["a", "c"]]).sample(10, seed=0)
    assert isinstance(words, list) and EOS not in words


def test_coverage_of_unseen_ngrams_falls_with_n(shakespeare):
    train, valid = shakespeare
    lm = NGramLM(6).fit(train)
    coverage = [lm.coverage(valid, order) for order in range(1, 7)]
    assert coverage[0] > 0.99 and coverage[-1] < coverage[2] < coverage[0]


@pytest.mark.parametrize("smoothing", ["add-k", "kneser-ney"])
def test_derived_lower_order_model_equals_a_direct_fit(smoothing, shakespeare):
    train, valid = shakespeare
    big = NGramLM(6, smoothing="kneser-ney").fit(train)
    for n in (1, 2, 4):
        direct = NGramLM(n, smoothing=smoothing, k=0.1).fit(train)
        derived = big.derive(n, smoothing=smoothing, k=0.1)
        assert derived.perplexity(valid) == pytest.approx(direct.perplexity(valid), rel=1e-12)
        assert np.allclose(derived.distribution("the "), direct.distribution("the "), atol=1e-15)
    with pytest.raises(ValueError, match="1 <= n <= 6"):
        big.derive(7)


def test_words_fit_many_scores_sentences():
    lm = NGramLM(2, smoothing="kneser-ney").fit_many([["a", "b"], ["a", "c"]])
    assert lm.vocab == [EOS, "a", "b", "c"]
    assert lm.prob("a", [BOS]) == pytest.approx(lm.prob("a"))  # an empty context is the start
    assert 1 < lm.perplexity(["a", "b"]) < lm.vocab_size


@pytest.mark.parametrize("bad_n", [0, -1, 2.5, "3", True])
def test_bad_n_is_a_clear_error(bad_n):
    with pytest.raises(ValueError, match=r"n must be a whole number >= 1, got"):
        NGramLM(bad_n)


def test_empty_input_unseen_tokens_and_unfitted_models_are_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        NGramLM(2).fit("")
    with pytest.raises(ValueError, match="empty"):
        NGramLM(2).fit_many([[], []])
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2).prob("a")
    lm = NGramLM(2).fit("abc")
    with pytest.raises(ValueError, match="never appeared"):
        lm.prob("z", "a")
    with pytest.raises(ValueError, match="never appeared"):
        lm.perplexity("abz")
    with pytest.raises(ValueError, match="empty"):
        lm.perplexity("")
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(2, smoothing="good-turing")
    with pytest.raises(ValueError, match="k must be"):
        NGramLM(2, k=-1)


def test_chapter_scale_fit_gives_kneser_ney_below_add_k_at_every_order():
    text = load_text("tinyshakespeare.txt")
    top = NGramLM(6, smoothing="kneser-ney").fit(text[:-100_000])
    for n in range(2, 7):
        add_k = top.derive(n, smoothing="add-k", k=0.01).perplexity(text[-100_000:])
        kneser_ney = top.derive(n, smoothing="kneser-ney").perplexity(text[-100_000:])
        assert 1 < kneser_ney < add_k, (n, kneser_ney, add_k)


def test_a_string_and_its_list_of_characters_score_the_same(shakespeare):
    train, valid = shakespeare
    lm = NGramLM(3, smoothing="kneser-ney").fit(train)
    assert lm.perplexity(valid[:2000]) == pytest.approx(lm.perplexity(list(valid[:2000])), rel=1e-12)
