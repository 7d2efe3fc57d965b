"""Checks of Chapter 4's exercises (Attention, step by step: the math).

The references are the library's own code where it has one (``causal_mask``,
``MultiHeadAttention.split_heads``, ``scaled_dot_product_attention``) and
PyTorch's (``torch.softmax``) elsewhere.
"""

from __future__ import annotations

import math

import torch

from llmbook.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention

from .core import exercise, expect


def _as_tensor(value, what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), f"{what} returned a {type(value).__name__}; return a torch.Tensor")
    return value


@exercise(
    "ch04.softmax_with_temperature",
    name="softmax_with_temperature",
    title="Softmax with a temperature",
    wrong=[
        lambda scores, temperature: torch.softmax(scores, dim=-1),  # ignores the temperature
        lambda scores, temperature: torch.softmax(scores * temperature, dim=-1),  # multiplies instead of divides
        lambda scores, temperature: (
            torch.exp(scores / temperature) / torch.exp(scores / temperature).sum(-1, keepdim=True)
        ),  # overflows
        lambda scores, temperature: torch.softmax(scores / temperature, dim=0),  # wrong axis
    ],
)
def check_softmax_with_temperature(softmax_with_temperature):
    cases = [
        (torch.tensor([1.0, 2.0, 3.0]), 1.0),
        (torch.tensor([1.0, 2.0, 3.0]), 0.5),
        (torch.tensor([1.0, 2.0, 3.0]), 10.0),
        (torch.tensor([[0.0, 0.0], [5.0, -5.0]]), 2.0),
        (torch.tensor([1000.0, 999.0, 0.0]), 1.0),  # large scores: subtract the maximum first
        (torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)), 0.3),
    ]
    for scores, temperature in cases:
        got = _as_tensor(softmax_with_temperature(scores.clone(), temperature), "softmax_with_temperature")
        expected = torch.softmax(scores / temperature, dim=-1)
        expect(
            got.shape == expected.shape,
            f"for scores of shape {tuple(scores.shape)} you returned shape {tuple(got.shape)}",
        )
        expect(
            bool(torch.isfinite(got).all()),
            f"softmax_with_temperature({scores.tolist()}, {temperature}) contains nan or inf: {got.tolist()}; "
            "exp overflows for large scores, subtract each row's maximum first (it does not change the result)",
        )
        expect(
            torch.allclose(got, expected, atol=1e-5),
            f"softmax_with_temperature({scores.tolist()}, {temperature}) returned {got.tolist()}; expected "
            f"{expected.tolist()} (softmax of scores / temperature over the last dimension)",
        )


@exercise(
    "ch04.causal_mask",
    name="my_causal_mask",
    title="A causal mask",
    wrong=[
        lambda T: torch.ones(T, T, dtype=torch.bool).triu(),  # the future instead of the past
        lambda T: torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1),  # a token may not see itself
        lambda T: torch.ones(T, T).tril(),  # float, not bool
        lambda T: ~torch.ones(T, T, dtype=torch.bool).tril(),  # PyTorch's "True = blocked" convention
    ],
)
def check_causal_mask(my_causal_mask):
    for T in (1, 2, 5):
        got = _as_tensor(my_causal_mask(T), "my_causal_mask")
        expect(
            got.dtype == torch.bool,
            f"my_causal_mask({T}) has dtype {got.dtype}; return a bool tensor (True = may attend)",
        )
        expected = causal_mask(T)
        expect(
            got.shape == expected.shape and torch.equal(got, expected),
            f"my_causal_mask({T}) returned {got.int().tolist()}; expected {expected.int().tolist()} "
            "(row i = query i; True where key j <= i, including the diagonal)",
        )


@exercise(
    "ch04.split_heads",
    name="split_heads",
    title="Split the features into heads",
    wrong=[
        lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),  # right shape, features scrambled
        lambda x, h: x.reshape(x.shape[0], x.shape[1], h, x.shape[2] // h),  # forgot the transpose
        lambda x, h: x.reshape(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),  # interleaved heads
    ],
)
def check_split_heads(split_heads):
    g = torch.Generator().manual_seed(0)
    for B, T, E, H in ((2, 5, 12, 3), (1, 4, 8, 2), (3, 2, 6, 6)):
        x = torch.randn(B, T, E, generator=g)
        got = _as_tensor(split_heads(x.clone(), H), "split_heads")
        expected = MultiHeadAttention(E, H).split_heads(x)
        expect(
            tuple(got.shape) == (B, H, T, E // H),
            f"split_heads(x of shape {(B, T, E)}, num_heads={H}) returned shape {tuple(got.shape)}; "
            f"expected (B, H, T, E/H) = {(B, H, T, E // H)}",
        )
        expect(
            torch.equal(got, expected),
            f"split_heads has the right shape but the wrong numbers for x of shape {(B, T, E)}: head h must hold "
            f"features h*E/H .. (h+1)*E/H - 1 of every position (e.g. got[0, 1, 0] should be x[0, 0, {E // H}:{2 * E // H}]); "
            "view as (B, T, H, E/H) first, then swap T and H",
        )


_Q = [1.0, 0.0]
_KEYS = [[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]]


def _reference_weight_on_first_key():
    """The library's scaled_dot_product_attention on the exercise's query and keys (values: anything)."""
    q, k = torch.tensor([_Q]), torch.tensor(_KEYS)
    _, weights = scaled_dot_product_attention(q, k, torch.eye(len(_KEYS)))
    return float(weights[0, 0])


@exercise(
    "ch04.predict_weight",
    name="weight_on_first_key",
    title="Predict an attention weight",
    wrong=[
        float(torch.softmax(torch.tensor([2.0, 0.0, -2.0]), -1)[0]),  # forgot the 1/sqrt(d_k)
        float(torch.softmax(torch.tensor([1.0, 0.0, -1.0]), -1)[0]),  # divided by d_k
        1 / 3,  # uniform
        2 / math.sqrt(2),  # the score, not the weight
    ],
)
def check_predict_weight(weight_on_first_key):
    expect(
        isinstance(weight_on_first_key, (int, float)) and not isinstance(weight_on_first_key, bool),
        f"weight_on_first_key is a {type(weight_on_first_key).__name__}; set it to a number",
    )
    expected = _reference_weight_on_first_key()
    expect(
        abs(float(weight_on_first_key) - expected) < 5e-3,
        f"weight_on_first_key = {weight_on_first_key} is not right: compute the three scores q·k / √d_k, "
        "then their softmax, and take the first entry (to 2 decimals or better)",
    )


@exercise(
    "ch04.dot_product_variance",
    name="dot_product_variance",
    title="Measure the variance of q·k",
    wrong=[
        lambda d_k, samples=20_000: float(
            ((torch.randn(samples, d_k) * torch.randn(samples, d_k)).sum(-1) / math.sqrt(d_k)).var()
        ),  # already scaled
        lambda d_k, samples=20_000: float((torch.randn(samples, d_k) * torch.randn(samples, d_k)).sum(-1).std()),  # std
        lambda d_k, samples=20_000: float((torch.randn(samples, d_k) * torch.randn(samples, d_k)).var()),  # per term
    ],
)
def check_dot_product_variance(dot_product_variance):
    for d_k in (4, 64, 256):
        got = dot_product_variance(d_k)
        expect(
            isinstance(got, (int, float)) and not isinstance(got, bool),
            f"dot_product_variance({d_k}) returned a {type(got).__name__}; return a float",
        )
        expect(
            abs(float(got) - d_k) < 0.1 * d_k,
            f"dot_product_variance({d_k}) returned {float(got):.3g}; for q and k with independent standard normal "
            f"entries, q·k is a sum of {d_k} terms of variance 1, so expect about {d_k} (within 10%)",
        )


# --------------------------------------------------------------------------- padding-masked softmax


def _reference_masked_weights(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The library's attention weights for these scores: q = scores·√T_k against the identity keys gives
    q kᵀ / √T_k = scores. Rows whose every key is masked (the library refuses them) get zeros."""
    T_k = scores.shape[-1]
    mask = mask.expand(scores.shape)
    empty = ~mask.any(dim=-1, keepdim=True)
    _, weights = scaled_dot_product_attention(
        scores * math.sqrt(T_k), torch.eye(T_k, dtype=scores.dtype), torch.eye(T_k, dtype=scores.dtype), mask | empty
    )
    return weights.masked_fill(empty, 0.0)


def _masked_softmax_cases():
    g = torch.Generator().manual_seed(4)
    ids = torch.tensor([[7, 3, 9, 0, 0], [4, 0, 0, 0, 0], [5, 6, 2, 8, 1]])  # 0 = padding
    keys_ok = (ids != 0)[:, None, None, :]  # (B, 1, 1, T): a padding mask, as attention.padding_mask makes
    fully_padded = torch.zeros(1, 1, 1, 4, dtype=torch.bool)
    return [
        ("padding mask (B, 1, 1, T)", torch.randn(3, 2, 5, 5, generator=g) * 3, keys_ok),
        ("causal mask (T, T)", torch.randn(4, 4, generator=g), causal_mask(4)),
        ("large scores", torch.tensor([[1000.0, 999.0, 998.0]]), torch.tensor([[True, False, True]])),
        ("sequence that is all padding", torch.randn(1, 1, 2, 4, generator=g), fully_padded),
    ]


def _wrong_masked_softmax_multiply_after(scores, mask):  # zeroes the masked weights but does not renormalise
    return torch.softmax(scores, dim=-1) * mask


def _wrong_masked_softmax_fill_zero(scores, mask):  # a score of 0 still has weight exp(0)
    return torch.softmax(scores.masked_fill(~mask, 0.0), dim=-1)


def _wrong_masked_softmax_inverted(scores, mask):  # nn.MultiheadAttention's convention: True = blocked
    weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def _wrong_masked_softmax_nan_rows(scores, mask):  # right for every row that has a key; nan for the others
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


@exercise(
    "ch04.masked_softmax",
    name="masked_softmax",
    title="A padding-masked softmax",
    wrong=[
        _wrong_masked_softmax_multiply_after,
        _wrong_masked_softmax_fill_zero,
        _wrong_masked_softmax_inverted,
        _wrong_masked_softmax_nan_rows,
    ],
)
def check_masked_softmax(masked_softmax):
    for name, scores, mask in _masked_softmax_cases():
        got = _as_tensor(masked_softmax(scores.clone(), mask.clone()), "masked_softmax")
        expected = _reference_masked_weights(scores, mask)
        expect(
            got.shape == expected.shape,
            f"for a {name}, scores of shape {tuple(scores.shape)} and a mask of shape {tuple(mask.shape)}, you "
            f"returned shape {tuple(got.shape)}; expected {tuple(expected.shape)}",
        )
        expect(
            bool(torch.isfinite(got).all()),
            f"for a {name} your weights contain nan or inf ({got.flatten()[:6].tolist()} ...); a query with no "
            "allowed key (a sequence that is all padding) must get weights 0, not nan; exp of huge scores "
            "overflows unless you subtract the row maximum (torch.softmax does)",
        )
        leaked = got.masked_select(~mask.expand(scores.shape))
        expect(
            bool((leaked == 0).all()),
            f"for a {name} you give masked keys weights up to {leaked.abs().max().item():.3g}; a masked key "
            "must get exactly 0 (set its score to -inf before the softmax; True in the mask = may attend)",
        )
        worst = (got - expected).abs().max().item()
        expect(
            torch.allclose(got, expected, atol=1e-6),
            f"for a {name} your weights differ from the library's by up to {worst:.3g}: e.g. row "
            f"{got.reshape(-1, got.shape[-1])[0].tolist()}, expected "
            f"{expected.reshape(-1, expected.shape[-1])[0].tolist()}; the allowed weights of each row must "
            "sum to 1 (renormalise over the allowed keys only)",
        )


# --------------------------------------------------------------------------- a query matrix that finds the mat

SENTENCE = ["the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired"]
FEATURE_NAMES = ["animal", "object", "pronoun", "verb", "function", "state"]
HAND_BUILT = {  # Chapter 4's hand-built features of the running sentence (the notebook's ``hand_built``)
    "the": [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "cat": [1.0, 0.0, 0.0, 0.0, 0.0, 0.2],
    "sat": [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    "on": [0.0, 0.3, 0.0, 0.0, 1.0, 0.0],
    "mat": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    "because": [0.0, 0.0, 0.0, 0.0, 1.0, 0.3],
    "it": [0.8, 0.3, 1.0, 0.0, 0.0, 0.0],
    "was": [0.0, 0.0, 0.0, 1.0, 0.3, 0.5],
    "tired": [0.3, 0.0, 0.0, 0.0, 0.0, 1.0],
}


def _weights_of_it(W_Q: torch.Tensor) -> torch.Tensor:
    """The attention row of *it* with queries X W_Q, keys and values X (W_K = W_V = I), by the library."""
    X = torch.tensor([HAND_BUILT[w] for w in SENTENCE], dtype=W_Q.dtype)
    _, weights = scaled_dot_product_attention(X @ W_Q, X, X)
    return weights[SENTENCE.index("it")]


def _feature_map(source: str, target: str, strength: float) -> torch.Tensor:
    W = torch.zeros(6, 6)
    W[FEATURE_NAMES.index(source), FEATURE_NAMES.index(target)] = strength
    return W


@exercise(
    "ch04.query_for_mat",
    name="W_Q",
    title="A query matrix that makes 'it' find the mat",
    wrong=[
        torch.eye(6),  # queries = features: *it* matches itself best
        3 * torch.eye(6),  # the chapter's hand-built W_Q, sharper but still *it* on itself
        _feature_map("object", "pronoun", 20.0),  # transposed: x W_Q reads row "object", not row "pronoun"
        _feature_map("pronoun", "object", 1.0),  # the right direction, too weak to dominate
        _feature_map("pronoun", "animal", 20.0),  # the other reading: *it* finds the cat
    ],
)
def check_query_for_mat(W_Q):
    expect(isinstance(W_Q, torch.Tensor), f"W_Q is a {type(W_Q).__name__}; set it to a (6, 6) torch tensor")
    expect(tuple(W_Q.shape) == (6, 6), f"W_Q has shape {tuple(W_Q.shape)}; it maps 6 features to 6: shape (6, 6)")
    expect(bool(torch.isfinite(W_Q).all()), f"W_Q contains nan or inf: {W_Q.tolist()}")
    weights = _weights_of_it(W_Q.detach().float())
    on_mat, favourite = float(weights[SENTENCE.index("mat")]), int(weights.argmax())
    expect(
        on_mat >= 0.8,
        f"with your W_Q, *it* gives *mat* weight {on_mat:.3f} and its largest weight, "
        f"{float(weights[favourite]):.3f}, to *{SENTENCE[favourite]}* (position {favourite}); it should give "
        "*mat* at least 0.8. The query of *it* is x_it W_Q (row vector times matrix); its score with key j is "
        "that query dotted with x_j, divided by √6",
    )
