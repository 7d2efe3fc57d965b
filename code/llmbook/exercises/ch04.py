"""Checks of Chapter 4's exercises (Attention, step by step: the math).

The references are the library's own code where it has one (``causal_mask``,
``MultiHeadAttention.split_heads``) and PyTorch's (``torch.softmax``) elsewhere.
"""

from __future__ import annotations

import math

import torch

from llmbook.attention import MultiHeadAttention, causal_mask

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
    scores = torch.tensor([sum(a * b for a, b in zip(_Q, k)) for k in _KEYS]) / math.sqrt(len(_Q))
    return float(torch.softmax(scores, -1)[0])


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
