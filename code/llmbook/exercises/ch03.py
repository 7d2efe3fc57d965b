"""Checks for the exercises of Chapter 3: Word vectors (GloVe).

Each check compares the student's answer with the library's own code
(``glove_weight``, ``cooccurrence``, ``GloVe.loss``, ``analogy``); the wrong
answers listed with each check are the mistakes a student plausibly makes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from llmbook.glove import GloVe, Vocab, analogy, cooccurrence, glove_weight

from .core import exercise, expect

# --------------------------------------------------------------------------- 1. the weighting function f


def _reference_weight(x, x_max, alpha):
    """The library's f (``glove.glove_weight``) on a NumPy array of counts."""
    return glove_weight(torch.as_tensor(np.asarray(x, dtype=np.float64)), x_max, alpha).numpy()


def _wrong_weight_no_cap(x, x_max=100.0, alpha=0.75):
    return (np.asarray(x, dtype=np.float64) / x_max) ** alpha


def _wrong_weight_no_alpha(x, x_max=100.0, alpha=0.75):
    return np.minimum(1.0, np.asarray(x, dtype=np.float64) / x_max)


def _wrong_weight_inverted(x, x_max=100.0, alpha=0.75):
    return np.minimum(1.0, (x_max / np.asarray(x, dtype=np.float64)) ** alpha)


@exercise(
    "ch03.weighting",
    name="weighting",
    title="GloVe's weighting function f",
    wrong=[_wrong_weight_no_cap, _wrong_weight_no_alpha, _wrong_weight_inverted],
)
def check_weighting(weighting):
    for x_max, alpha in [(100.0, 0.75), (10.0, 0.75), (50.0, 0.5)]:
        x = np.array([0.5, 1.0, 5.0, x_max / 2, x_max, 3 * x_max])
        got = np.asarray(weighting(x, x_max, alpha), dtype=np.float64)
        want = _reference_weight(x, x_max, alpha)
        expect(
            got.shape == want.shape,
            f"weighting(x, ...) should return one weight per count: shape {want.shape}, got {got.shape}",
        )
        expect(
            np.allclose(got, want, rtol=1e-5),
            f"for x = {x.tolist()}, x_max = {x_max}, alpha = {alpha} you return {np.round(got, 4).tolist()}; "
            f"expected {np.round(want, 4).tolist()} (f(x) = min(1, (x / x_max) ** alpha))",
        )


# --------------------------------------------------------------------------- 2. counting with 1/distance


def _counts_as_dict(tokens, window, **options):
    """``glove.cooccurrence`` of one sentence as the exercise's dict {(word, context): weight}."""
    words = list(dict.fromkeys(tokens))
    X = cooccurrence(list(tokens), Vocab(words, [tokens.count(w) for w in words]), window=window, **options).tocoo()
    return {(words[i], words[j]): float(v) for i, j, v in zip(X.row, X.col, X.data)}


def _reference_window_counts(tokens, window):
    return _counts_as_dict(tokens, window)


def _wrong_counts_uniform(tokens, window):  # every neighbour counts 1, whatever its distance
    return _counts_as_dict(tokens, window, weighting="uniform")


def _wrong_counts_left_only(tokens, window):  # (word, context) counted, (context, word) forgotten
    return _counts_as_dict(tokens, window, symmetric=False)


def _wrong_counts_off_by_one(tokens, window):  # one word short of the window
    return _counts_as_dict(tokens, window - 1)


@exercise(
    "ch03.window_counts",
    name="window_counts",
    title="Co-occurrence counts with 1/distance weights",
    wrong=[_wrong_counts_uniform, _wrong_counts_left_only, _wrong_counts_off_by_one],
)
def check_window_counts(window_counts):
    cases = [("the cat sat on the mat".split(), 2), ("a b a b".split(), 3), ("我 爱 北京 天安门".split(), 2)]
    for tokens, window in cases:
        got = window_counts(list(tokens), window)
        expect(
            isinstance(got, dict),
            f"window_counts should return a dict {{(word, context): weight}}, got {type(got).__name__}",
        )
        want = _reference_window_counts(tokens, window)
        got = {pair: value for pair, value in got.items() if value != 0}
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        expect(not missing, f"for {tokens} with window {window} your counts lack the pairs {missing[:3]}")
        expect(
            not extra, f"for {tokens} with window {window} your counts have pairs that should not be there: {extra[:3]}"
        )
        for pair, value in want.items():
            expect(
                math.isclose(float(got[pair]), value, rel_tol=1e-6),
                f"for {tokens} with window {window}: X{pair} = {got[pair]}, expected {value:.4f} "
                "(add 1/d for each time the two words stand d apart, on either side)",
            )


# --------------------------------------------------------------------------- 3. the objective


def _reference_loss(W, W_tilde, b, b_tilde, X, x_max, alpha):
    """The library's objective (``GloVe.loss``) for the given parameters and a dense X, in float64."""
    model = GloVe(W.shape[0], W.shape[1]).double()
    with torch.no_grad():
        for parameter, value in ((model.W, W), (model.W_tilde, W_tilde), (model.b, b), (model.b_tilde, b_tilde)):
            parameter.copy_(value)
    X = torch.as_tensor(X, dtype=torch.float64)
    i, j = torch.nonzero(X, as_tuple=True)
    with torch.no_grad():
        return model.loss(i, j, X[i, j], x_max, alpha)


def _wrong_loss_seed_formula(W, W_tilde, b, b_tilde, X, x_max=100.0, alpha=0.75):
    # the formula of the source draft: sum C(i, j) * ||W_i - W_j||^2
    X = torch.as_tensor(X, dtype=torch.float64)
    distances = torch.cdist(W.double(), W.double()) ** 2
    return (X * distances).sum()


def _wrong_loss_no_weights(W, W_tilde, b, b_tilde, X, x_max=100.0, alpha=0.75):
    X = torch.as_tensor(X, dtype=torch.float64)
    i, j = torch.nonzero(X, as_tuple=True)
    prediction = (W[i].double() * W_tilde[j].double()).sum(-1) + b[i].double() + b_tilde[j].double()
    return ((prediction - torch.log(X[i, j])) ** 2).sum()


def _wrong_loss_counts_not_logs(W, W_tilde, b, b_tilde, X, x_max=100.0, alpha=0.75):
    X = torch.as_tensor(X, dtype=torch.float64)
    i, j = torch.nonzero(X, as_tuple=True)
    x = X[i, j]
    prediction = (W[i].double() * W_tilde[j].double()).sum(-1) + b[i].double() + b_tilde[j].double()
    f = torch.clamp((x / x_max) ** alpha, max=1.0)
    return (f * (prediction - x) ** 2).sum()


@exercise(
    "ch03.glove_loss",
    name="glove_loss",
    title="The GloVe objective J",
    wrong=[_wrong_loss_seed_formula, _wrong_loss_no_weights, _wrong_loss_counts_not_logs],
)
def check_glove_loss(glove_loss):
    generator = torch.Generator().manual_seed(3)
    for size, dim, x_max in [(3, 2, 100.0), (6, 4, 10.0)]:
        W, W_tilde = torch.randn(size, dim, generator=generator), torch.randn(size, dim, generator=generator)
        b, b_tilde = torch.randn(size, generator=generator), torch.randn(size, generator=generator)
        X = torch.rand(size, size, generator=generator) * 3 * x_max
        X[torch.rand(size, size, generator=generator) < 0.3] = 0.0  # some pairs never co-occur
        X[0, 0] = 0.0
        got = glove_loss(W, W_tilde, b, b_tilde, X.clone(), x_max, 0.75)
        expect(got is not None, "glove_loss returned None: return the loss (a number or a 0-d tensor)")
        got = float(got)
        want = float(_reference_loss(W, W_tilde, b, b_tilde, X, x_max, 0.75))
        expect(
            math.isfinite(got),
            f"your loss is {got}: skip the zero entries of X (log 0 is minus infinity; f(0) = 0 removes them)",
        )
        expect(
            math.isclose(got, want, rel_tol=1e-4),
            f"for a random {size}-word example (x_max = {x_max}) your loss is {got:.5f}, expected {want:.5f}; "
            "J = sum over nonzero X_ij of f(X_ij) * (w_i . w~_j + b_i + b~_j - log X_ij) ** 2",
        )


# --------------------------------------------------------------------------- 4. analogies


def _toy_analogy_space():
    words = ["man", "woman", "king", "queen", "boy", "girl", "apple", "paris"]
    generator = np.random.default_rng(0)
    base = {w: generator.normal(size=8) for w in ["man", "king", "boy", "apple", "paris"]}
    gender = generator.normal(size=8) * 0.8
    vectors = {
        "man": base["man"], "woman": base["man"] + gender,
        "king": base["king"], "queen": base["king"] + gender,
        "boy": base["boy"], "girl": base["boy"] + gender,
        "apple": base["apple"], "paris": base["paris"],
    }  # fmt: skip
    return np.stack([vectors[w] for w in words]), words


def _reference_solve(vectors, words, a, b, c):
    """The library's 3CosAdd (``glove.analogy``) with the exercise's arguments."""
    return analogy(vectors, Vocab(list(words), [1] * len(words)), a, b, c)


def _wrong_solve_keeps_queries(vectors, words, a, b, c):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {w: k for k, w in enumerate(words)}
    return words[int(np.argmax(unit @ (unit[index[b]] - unit[index[a]] + unit[index[c]])))]


def _wrong_solve_sign(vectors, words, a, b, c):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {w: k for k, w in enumerate(words)}
    scores = unit @ (unit[index[a]] - unit[index[b]] + unit[index[c]])
    for w in (a, b, c):
        scores[index[w]] = -np.inf
    return words[int(np.argmax(scores))]


@exercise(
    "ch03.solve_analogy",
    name="solve_analogy",
    title="Analogies by vector arithmetic (3CosAdd)",
    wrong=[_wrong_solve_keeps_queries, _wrong_solve_sign],
)
def check_solve_analogy(solve_analogy):
    vectors, words = _toy_analogy_space()
    for a, b, c in [
        ("man", "woman", "king"),
        ("man", "woman", "boy"),
        ("woman", "man", "queen"),
        ("king", "queen", "boy"),
    ]:
        got = solve_analogy(vectors.copy(), list(words), a, b, c)
        want = _reference_solve(vectors, words, a, b, c)
        expect(
            got not in (a, b, c),
            f"solve_analogy(…, {a!r}, {b!r}, {c!r}) answered {got!r}, one of the question's own words: exclude a, b and c",
        )
        expect(
            got == want,
            f"solve_analogy(…, {a!r}, {b!r}, {c!r}) answered {got!r}, expected {want!r} "
            "(the word closest to b - a + c by cosine similarity)",
        )
    # A long vector must not win just by being long: cosine, not dot product. 'apple' becomes a vector
    # 50 times longer than the others, pointing only partly along b - a + c (cosine about 0.3).
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    query = unit[words.index("woman")] - unit[words.index("man")] + unit[words.index("king")]
    query /= np.linalg.norm(query)
    aside = np.random.default_rng(1).normal(size=query.shape)
    aside -= (aside @ query) * query
    aside /= np.linalg.norm(aside)
    stretched = vectors.copy()
    stretched[words.index("apple")] = 50.0 * np.linalg.norm(vectors, axis=1).max() * (query + 3.0 * aside)
    want = _reference_solve(stretched, words, "man", "woman", "king")
    got = solve_analogy(stretched, list(words), "man", "woman", "king")
    expect(
        got == want,
        f"after giving 'apple' a very long vector that points only partly along b - a + c, your answer became "
        f"{got!r} instead of {want!r}: compare by cosine similarity (unit-length rows), not by dot product",
    )


# --------------------------------------------------------------------------- 5. predict the output


@exercise(
    "ch03.predict_count",
    name="predicted_count",
    title="Predict one co-occurrence count",
    wrong=[1.0, 2.0, 2.0 / 3.0, 0.5],
)
def check_predicted_count(predicted_count):
    # "the cat saw the dog", window 3, symmetric, 1/distance: X[cat, dog] = 1/3 (one pair, 3 apart)
    expect(
        isinstance(predicted_count, (int, float, np.floating)) and not isinstance(predicted_count, bool),
        f"predicted_count should be a number, got {type(predicted_count).__name__}",
    )
    expect(
        math.isclose(float(predicted_count), 1.0 / 3.0, rel_tol=1e-3),
        f"you predicted X[cat, dog] = {predicted_count}; count how far apart 'cat' and 'dog' stand and "
        "how many times they appear together within the window",
    )
