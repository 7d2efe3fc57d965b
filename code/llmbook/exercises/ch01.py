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


@exercise(
    "ch01.add_one_prediction", name="p_a_given_a", title="Predict an add-one probability", wrong=[0, 0.25, 1 / 3, 0.5]
)
def check_add_one_prediction(p_a_given_a):
    expect(isinstance(p_a_given_a, (int, float)), f"your answer is {p_a_given_a!r}; write a number")
    expect(
        math.isclose(float(p_a_given_a), 0.2, rel_tol=1e-9),
        f"your answer {p_a_given_a} is not right. Count c(a a) and c(a) in '<s> a b a b </s>', "
        "then use (c(a a) + k) / (c(a) + k V) with k = 1 and V = 3 (a, b, </s>)",
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


@exercise("ch01.gpt3_parameters", name="gpt3_parameters", title="GPT-3's size", wrong=[17.5e9, 1.5e9, 175e6, 175])
def check_gpt3_parameters(gpt3_parameters):
    expect(
        isinstance(gpt3_parameters, (int, float)), f"your answer is {gpt3_parameters!r}; write a number such as 1.5e9"
    )
    expect(
        math.isclose(float(gpt3_parameters), 175e9, rel_tol=0.01),
        f"your answer {gpt3_parameters:,.0f} is not GPT-3's parameter count. Write the number itself "
        "(not in billions): 175亿 is 17.5 billion, which is not the figure in Brown et al. (2020)",
    )
