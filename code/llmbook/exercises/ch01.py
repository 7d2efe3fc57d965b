"""Checks of Chapter 1's exercises (From n-grams to large language models)."""

from __future__ import annotations

import math
from collections import Counter

from .core import exercise, expect


def _reference_bigram_counts(tokens):
    return dict(Counter(zip(tokens, tokens[1:])))


@exercise(
    "ch01.bigram_counts",
    name="bigram_counts",
    title="Count bigrams",
    wrong=[
        lambda tokens: dict(Counter(tokens)),  # unigrams
        lambda tokens: dict(Counter(zip(tokens, list(tokens[1:]) + list(tokens[:1])))),  # wraps around
        lambda tokens: {pair: 1 for pair in zip(tokens, tokens[1:])},  # presence, not counts
    ],
)
def check_bigram_counts(bigram_counts):
    cases = ["abab", "aaaa", "to be or not to be".split(), "a", "", "床前明月光，疑是地上霜"]
    for tokens in cases:
        got = bigram_counts(tokens)
        expected = _reference_bigram_counts(tokens)
        expect(isinstance(got, dict), f"bigram_counts({tokens!r}) returned a {type(got).__name__}; return a dict")
        got = {tuple(k): v for k, v in got.items()}
        expect(
            got == expected,
            f"bigram_counts({tokens!r}) returned {got}; expected {expected} "
            "(every adjacent pair (tokens[i], tokens[i+1]) counted, no wrap-around)",
        )


def _reference_perplexity(probabilities):
    return math.exp(-sum(math.log(p) for p in probabilities) / len(probabilities))


@exercise(
    "ch01.perplexity",
    name="perplexity",
    title="Perplexity from probabilities",
    wrong=[
        lambda ps: math.exp(-sum(math.log(p) for p in ps)),  # total, not mean
        lambda ps: sum(1 / p for p in ps) / len(ps),  # mean inverse probability
        lambda ps: 2 ** (-sum(math.log(p) for p in ps) / len(ps)),  # base mix-up
    ],
)
def check_perplexity(perplexity):
    cases = [[0.25] * 4, [0.5, 0.125], [1.0, 1.0], [0.9, 0.01, 0.3, 0.6, 0.05], [1 / 65] * 10]
    for probabilities in cases:
        got = perplexity(probabilities)
        expected = _reference_perplexity(probabilities)
        expect(
            isinstance(got, (int, float)) and math.isclose(float(got), expected, rel_tol=1e-6),
            f"perplexity({probabilities}) returned {got!r}; expected {expected:.6g} = exp(-mean(log p))",
        )


def _check_corpus(seed: int, words: int = 2400) -> tuple[str, str]:
    """A made-up language (Zipf-distributed words of syllables), split 80/20 into training and validation text."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "an", "el", "is", "or", "um"]
    vocabulary = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(120)]
    frequency = 1 / np.arange(1, len(vocabulary) + 1)
    text = " ".join(rng.choice(vocabulary, size=words, p=frequency / frequency.sum()))
    cut = int(0.8 * len(text))
    return text[:cut], text[cut:]


_K_GRID = [10 ** (e / 8) for e in range(-32, 9)]  # 1e-4 .. 10, 41 values
_K_TOLERANCE = 0.005  # within 0.5% of the best validation perplexity on the grid


def _validation_perplexity(train_text, valid_text, n, k):
    from ..ngram import NGramLM

    return NGramLM(n, k=k).fit(train_text).perplexity(valid_text)


def _k_by_training_perplexity(train_text, valid_text, n):  # plausible mistake: tuned on the training text
    return min(_K_GRID[::4], key=lambda k: _validation_perplexity(train_text, train_text, n, k))


def _k_with_the_worst_validation(train_text, valid_text, n):  # max instead of min
    return max(_K_GRID[::4], key=lambda k: _validation_perplexity(train_text, valid_text, n, k))


@exercise(
    "ch01.tune_k",
    name="tune_k",
    title="Tune add-k's k on validation text",
    wrong=[
        lambda train_text, valid_text, n: 1.0,  # Laplace, untuned
        lambda train_text, valid_text, n: 1e-4,  # "as little smoothing as possible"
        _k_by_training_perplexity,
        _k_with_the_worst_validation,
    ],
)
def check_tune_k(tune_k):
    for seed, n in [(0, 3), (1, 4)]:
        train_text, valid_text = _check_corpus(seed)
        got = tune_k(train_text, valid_text, n)
        expect(
            isinstance(got, (int, float)) and not isinstance(got, bool) and math.isfinite(got) and got > 0,
            f"tune_k(train_text, valid_text, n={n}) returned {got!r}; return k itself, a number > 0",
        )
        scores = {k: _validation_perplexity(train_text, valid_text, n, k) for k in _K_GRID}
        best_k = min(scores, key=scores.get)
        yours = _validation_perplexity(train_text, valid_text, n, float(got))
        expect(
            yours <= scores[best_k] * (1 + _K_TOLERANCE),
            f"for n = {n} your k = {got:.4g} gives validation perplexity {yours:.4f}, but k = {best_k:.3g} gives "
            f"{scores[best_k]:.4f} (a range within {100 * _K_TOLERANCE:g}% of it passes). Try k over several orders "
            "of magnitude and keep the one with the lowest perplexity on valid_text (never on train_text)",
        )


def _reference_unseen_fraction(train_tokens, valid_tokens, n):
    seen = {tuple(train_tokens[i : i + n]) for i in range(len(train_tokens) - n + 1)}
    grams = [tuple(valid_tokens[i : i + n]) for i in range(len(valid_tokens) - n + 1)]
    return sum(g not in seen for g in grams) / len(grams)


def _unique_types_fraction(train_tokens, valid_tokens, n):  # plausible mistake: types, not occurrences
    seen = {tuple(train_tokens[i : i + n]) for i in range(len(train_tokens) - n + 1)}
    grams = {tuple(valid_tokens[i : i + n]) for i in range(len(valid_tokens) - n + 1)}
    return sum(g not in seen for g in grams) / len(grams)


@exercise(
    "ch01.unseen_fraction",
    name="unseen_fraction",
    title="Fraction of unseen n-grams",
    wrong=[
        _unique_types_fraction,
        lambda tr, va, n: 1 - _reference_unseen_fraction(tr, va, n),  # the seen fraction
        lambda tr, va, n: _reference_unseen_fraction(tr, va, n - 1) if n > 1 else 0.0,  # off by one
    ],
)
def check_unseen_fraction(unseen_fraction):
    train = "the cat sat on the mat. the dog sat on the log."
    cases = [(train, "the cat sat on the log.", n) for n in (1, 2, 3, 5)]
    cases += [(train, "the the the dog", 2), ("aaaa", "aaab", 2), (train.split(), "the dog sat on a cat".split(), 2)]
    for train_tokens, valid_tokens, n in cases:
        got = unseen_fraction(train_tokens, valid_tokens, n)
        expected = _reference_unseen_fraction(train_tokens, valid_tokens, n)
        expect(
            isinstance(got, (int, float)) and math.isclose(float(got), expected, abs_tol=1e-9),
            f"unseen_fraction({train_tokens!r}, {valid_tokens!r}, n={n}) returned {got!r}; expected {expected:.4f} "
            "(count every n-gram occurrence of the validation tokens, repeats included)",
        )


def _reference_sample_next(counts, u):
    """Inverse-CDF sampling in integer arithmetic: the token whose interval [low, high) of [0, total) holds u * total."""
    total = sum(counts.values())
    edge = 0
    for token in sorted(counts):
        edge += counts[token]
        if u * total < edge:
            return token
    return max(counts)  # u = 1 - tiny: the last interval


def _sample_in_given_order(counts, u):  # plausible mistake: the dict's own order, not sorted
    total, edge = sum(counts.values()), 0.0
    for token, count in counts.items():
        edge += count / total
        if u < edge:
            return token
    return list(counts)[-1]


def _sample_closed_right(counts, u):  # plausible mistake: intervals (low, high], so u on an edge goes left
    total, edge = sum(counts.values()), 0.0
    for token in sorted(counts):
        edge += counts[token] / total
        if u <= edge:
            return token
    return max(counts)


def _sample_uniform(counts, u):  # plausible mistake: ignores the counts
    tokens = sorted(counts)
    return tokens[min(int(u * len(tokens)), len(tokens) - 1)]


@exercise(
    "ch01.sample_next",
    name="sample_next",
    title="Sample the next token from counts",
    wrong=[
        _sample_in_given_order,
        _sample_closed_right,
        _sample_uniform,
        lambda counts, u: max(counts, key=counts.get),  # always the most frequent (greedy)
    ],
)
def check_sample_next(sample_next):
    cases = [
        ({"b": 3, "a": 1}, [0.0, 0.2, 0.25, 0.5, 0.999]),
        ({"u": 61, "i": 2, "a": 1}, [0.0, 0.01, 0.02, 0.04, 0.05, 0.5, 0.9999]),
        ({"x": 5}, [0.0, 0.7]),
        ({"t": 1, " ": 2, "e": 1}, [0.0, 0.49, 0.5, 0.74, 0.75, 0.99]),
        ({"the": 2, "a": 5, "of": 1}, [0.1, 0.3, 0.7, 0.9]),
    ]
    for counts, us in cases:
        for u in us:
            got = sample_next(dict(counts), u)
            expected = _reference_sample_next(counts, u)
            expect(
                got == expected,
                f"sample_next({counts}, u={u}) returned {got!r}; expected {expected!r}. Lay the tokens out in sorted "
                "order on [0, 1), each over an interval as long as count / total, including its left end and "
                "excluding its right end, and return the token whose interval holds u",
            )
