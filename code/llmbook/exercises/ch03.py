"""Checks for the exercises of Chapter 3: Word vectors (GloVe).

Each check compares the student's answer with the library's own code
(``glove_weight``, ``cooccurrence``, ``GloVe.loss`` and autograd through it, ``analogy``); the wrong
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


# --------------------------------------------------------------------------- 5. one pair's gradient, by hand


def _reference_gradient(w, w_tilde, b, b_tilde, x, x_max, alpha):
    """Autograd through the library's objective (``GloVe.loss``) for one pair: (dJ/dw, dJ/dw~, dJ/db, dJ/db~)."""
    model = GloVe(2, len(w)).double()
    with torch.no_grad():
        model.W[0], model.W_tilde[1], model.b[0], model.b_tilde[1] = w, w_tilde, b, b_tilde
    loss = model.loss(torch.tensor([0]), torch.tensor([1]), torch.tensor([float(x)], dtype=torch.float64), x_max, alpha)
    loss.backward()
    return model.W.grad[0], model.W_tilde.grad[1], model.b.grad[0], model.b_tilde.grad[1]


def _error(w, w_tilde, b, b_tilde, x):
    return float(torch.dot(torch.as_tensor(w), torch.as_tensor(w_tilde))) + b + b_tilde - math.log(x)


def _wrong_gradient_no_two(w, w_tilde, b, b_tilde, x, x_max=10.0, alpha=0.75):
    g = min(1.0, (x / x_max) ** alpha) * _error(w, w_tilde, b, b_tilde, x)  # forgot the 2 of the square
    return g * w_tilde, g * w, g, g


def _wrong_gradient_swapped(w, w_tilde, b, b_tilde, x, x_max=10.0, alpha=0.75):
    g = 2 * min(1.0, (x / x_max) ** alpha) * _error(w, w_tilde, b, b_tilde, x)
    return g * w, g * w_tilde, g, g  # dJ/dw is g times w~, not w


def _wrong_gradient_no_weight(w, w_tilde, b, b_tilde, x, x_max=10.0, alpha=0.75):
    g = 2 * _error(w, w_tilde, b, b_tilde, x)  # f(X_ij) left out
    return g * w_tilde, g * w, g, g


def _wrong_gradient_count_not_log(w, w_tilde, b, b_tilde, x, x_max=10.0, alpha=0.75):
    error = float(torch.dot(torch.as_tensor(w), torch.as_tensor(w_tilde))) + b + b_tilde - x
    g = 2 * min(1.0, (x / x_max) ** alpha) * error
    return g * w_tilde, g * w, g, g


def _as_vector(value, what: str, size: int) -> torch.Tensor:
    try:
        vector = torch.as_tensor(value, dtype=torch.float64).detach().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        expect(False, f"{what} is {value!r}; return a tensor or array")
    expect(vector.numel() == size, f"{what} has {vector.numel()} entries; expected {size}")
    return vector


@exercise(
    "ch03.glove_gradient",
    name="glove_gradient",
    title="One pair's gradient, by hand",
    wrong=[_wrong_gradient_no_two, _wrong_gradient_swapped, _wrong_gradient_no_weight, _wrong_gradient_count_not_log],
)
def check_glove_gradient(glove_gradient):
    generator = torch.Generator().manual_seed(5)
    for dim, x, x_max, alpha in [(3, 4.0, 10.0, 0.75), (5, 250.0, 100.0, 0.75), (2, 0.5, 10.0, 0.5)]:
        w = torch.randn(dim, generator=generator, dtype=torch.float64)
        w_tilde = torch.randn(dim, generator=generator, dtype=torch.float64)
        b, b_tilde = (float(torch.randn(1, generator=generator)) for _ in range(2))
        got = glove_gradient(w.clone(), w_tilde.clone(), b, b_tilde, x, x_max, alpha)
        expect(
            isinstance(got, (tuple, list)) and len(got) == 4,
            f"glove_gradient returned {type(got).__name__} {got!r:.80}; return four gradients "
            "(grad_w, grad_w_tilde, grad_b, grad_b_tilde)",
        )
        want = _reference_gradient(w, w_tilde, b, b_tilde, x, x_max, alpha)
        names = ("grad_w", "grad_w_tilde", "grad_b", "grad_b_tilde")
        for name, value, reference in zip(names, got, want):
            value = _as_vector(value, name, reference.numel())
            expect(
                torch.allclose(value, reference.reshape(-1), rtol=1e-4, atol=1e-8),
                f"for X_ij = {x} (x_max = {x_max}, alpha = {alpha}) your {name} is "
                f"{[round(v, 4) for v in value.tolist()]}; autograd through GloVe.loss gives "
                f"{[round(v, 4) for v in reference.reshape(-1).tolist()]}. With e = w.w~ + b + b~ - log X_ij, "
                "J_ij = f(X_ij) e**2, so dJ/de = 2 f(X_ij) e, and de/dw = w~, de/dw~ = w, de/db = de/db~ = 1",
            )


# --------------------------------------------------------------------------- 6. positive PMI


def _reference_ppmi(X):
    X = np.asarray(X, dtype=np.float64)
    rows, columns, total = X.sum(1, keepdims=True), X.sum(0, keepdims=True), X.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(X * total / (rows * columns))
    return np.where(X > 0, np.maximum(pmi, 0.0), 0.0)


def _wrong_ppmi_negative_kept(X):
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(X * X.sum() / (X.sum(1, keepdims=True) * X.sum(0, keepdims=True)))
    return np.where(X > 0, pmi, 0.0)


def _wrong_ppmi_no_total(X):
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(X / (X.sum(1, keepdims=True) * X.sum(0, keepdims=True)))
    return np.where(X > 0, np.maximum(pmi, 0.0), 0.0)


def _wrong_ppmi_row_sums_misaligned(X):  # X.sum(1) without keepdims divides column j by row sum j
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(X * X.sum() / (X.sum(1) * X.sum(0)))
    return np.where(X > 0, np.maximum(pmi, 0.0), 0.0)


def _wrong_ppmi_log2(X):
    return _reference_ppmi(X) / math.log(2)


@exercise(
    "ch03.ppmi",
    name="ppmi",
    title="Positive pointwise mutual information",
    wrong=[_wrong_ppmi_negative_kept, _wrong_ppmi_no_total, _wrong_ppmi_row_sums_misaligned, _wrong_ppmi_log2],
)
def check_ppmi(ppmi):
    tokens = "the cat sat on the mat the dog sat on the log".split()
    words = list(dict.fromkeys(tokens))
    counted = cooccurrence(tokens, Vocab(words, [tokens.count(w) for w in words]), window=2).toarray()
    generator = np.random.default_rng(7)
    sparse = generator.poisson(1.0, size=(6, 6)).astype(float)
    sparse = sparse + sparse.T
    cases = [
        ("the counts of 'the cat sat on the mat the dog sat on the log', window 2", counted),
        ("a random symmetric 6 x 6 count matrix", sparse),
    ]
    for name, X in cases:
        got = np.asarray(ppmi(X.copy()), dtype=np.float64)
        want = _reference_ppmi(X)
        expect(got.shape == want.shape, f"ppmi(X) of shape {X.shape} returned shape {got.shape}")
        expect(
            bool(np.all(np.isfinite(got))),
            f"for {name} your PPMI has {int((~np.isfinite(got)).sum())} nan or inf entries: where X_ij = 0, "
            "log 0 = -inf; set those entries to 0",
        )
        worst = np.unravel_index(np.argmax(np.abs(got - want)), want.shape)
        expect(
            np.allclose(got, want, atol=1e-6),
            f"for {name} your PPMI[{worst[0]}, {worst[1]}] = {got[worst]:.4f}, expected {want[worst]:.4f} "
            "(max(0, ln(X_ij * sum(X) / (row sum_i * column sum_j))), natural log, 0 where X_ij = 0)",
        )
