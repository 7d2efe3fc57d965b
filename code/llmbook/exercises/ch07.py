"""Checks for the exercises of Chapter 7: Scaling."""

from __future__ import annotations

import math

import numpy as np
import torch

from .core import exercise, expect


def _number(value) -> float | None:
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        return float(value)
    return None


# ------------------------------------------------------------------ training FLOPs of a configuration


def _kaplan_flops(n_layer, n_embd, context, n_tokens):
    return (6 * 12 * n_layer * n_embd**2 + 6 * n_layer * context * n_embd) * n_tokens


@exercise(
    "ch07.training_flops",
    name="training_flops",
    title="FLOPs of a configuration",
    wrong=[
        lambda n_layer, n_embd, context, n_tokens: 6 * 12 * n_layer * n_embd**2 * n_tokens,  # no attention
        lambda n_layer, n_embd, context, n_tokens: (
            (  # the book's attention term, not Kaplan's
                6 * 12 * n_layer * n_embd**2 + 12 * n_layer * context * n_embd
            )
            * n_tokens
        ),
        lambda n_layer, n_embd, context, n_tokens: (
            (  # the forward pass alone
                2 * 12 * n_layer * n_embd**2 + 2 * n_layer * context * n_embd
            )
            * n_tokens
        ),
        lambda n_layer, n_embd, context, n_tokens: 6 * 12 * n_layer * n_embd**2 + 6 * n_layer * context * n_embd,
        lambda n_layer, n_embd, context, n_tokens: (6 * 12 * n_layer * n_embd + 6 * n_layer * context) * n_tokens,
    ],
)
def check_training_flops(training_flops):
    for L, d, T, D in ((96, 12288, 2048, 300e9), (12, 768, 1024, 1e9), (2, 32, 64, 1e6), (4, 64, 4096, 1)):
        got = _number(training_flops(L, d, T, D))
        expected = _kaplan_flops(L, d, T, D)
        attention = 6 * L * T * d * D
        expect(
            got is not None and math.isclose(got, expected, rel_tol=1e-9),
            f"training_flops(n_layer={L}, n_embd={d}, context={T}, n_tokens={D:g}) returned {got!r}; expected "
            f"{expected:.4g}, of which attention is {attention:.4g}. Per token: 6 FLOPs per non-embedding "
            "parameter (N = 12·L·d²: 2 forward, 4 backward) plus Kaplan's attention term 6·L·T·d; then "
            "times the tokens.",
        )


# ------------------------------------------------------------------ bytes per parameter (transfer)


@exercise(
    "ch07.sgd_momentum_bytes",
    name="sgd_momentum_bytes",
    title="Bytes per parameter of another optimizer",
    wrong=[16, 8, 10, 14, 6],
)
def check_sgd_momentum_bytes(sgd_momentum_bytes):
    got = _number(sgd_momentum_bytes)
    expect(got is not None, f"sgd_momentum_bytes should be a number, got {type(sgd_momentum_bytes).__name__}")
    expect(
        got == 12,
        f"sgd_momentum_bytes = {got:g} is not right. Count like the chapter does for AdamW: 16-bit weights and "
        "gradients, a float32 master copy of the weights, and one float32 number per parameter for each "
        "state the optimizer keeps (SGD with momentum keeps one, Adam two).",
    )


# ------------------------------------------------------------------ activation bytes of one layer


@exercise(
    "ch07.layer_activation_bytes",
    name="layer_activation_bytes",
    title="Activation memory of one block",
    wrong=[
        lambda n_embd, n_head, batch_size, seq_len: 4 * 16 * n_embd * batch_size * seq_len,  # no stats, no heads
        lambda n_embd, n_head, batch_size, seq_len: (16 * n_embd + n_head + 4) * batch_size * seq_len,  # numbers
        lambda n_embd, n_head, batch_size, seq_len: 4 * (16 * n_embd + n_head * seq_len + 4) * batch_size * seq_len,
        lambda n_embd, n_head, batch_size, seq_len: 4 * (12 * n_embd + n_head + 4) * batch_size * seq_len,
    ],
)
def check_layer_activation_bytes(layer_activation_bytes):
    for d, h, b, t in ((768, 12, 8, 1024), (32, 2, 4, 64), (4096, 32, 1, 2048), (64, 1, 3, 5)):
        got = _number(layer_activation_bytes(d, h, b, t))
        expected = 4 * (16 * d + h + 4) * b * t
        expect(
            got == expected,
            f"layer_activation_bytes(n_embd={d}, n_head={h}, batch_size={b}, seq_len={t}) returned {got!r}; "
            f"expected {expected}. Per token a block keeps 16·d + H + 4 float32 numbers (4 bytes each): "
            "see the chapter's list of what each operation saves.",
        )


# ------------------------------------------------------------------ fit an exponent


def _losses(alpha=0.3, a=12.0):
    params = np.array([3e3, 1e4, 3e4, 1e5, 3e5])
    noise = np.array([0.01, -0.008, 0.004, 0.006, -0.01])
    return params, a * params**-alpha * np.exp(noise)


@exercise(
    "ch07.fit_exponent",
    name="fit_exponent",
    title="Fit Kaplan's exponent",
    wrong=[
        lambda params, losses: float(np.polyfit(np.log(params), np.log(losses), 1)[0]),  # the slope, negative
        lambda params, losses: -float(np.polyfit(np.log(params), losses, 1)[0]),  # loss, not log loss
        lambda params, losses: -float(np.polyfit(params, losses, 1)[0]),  # no logarithms at all
        lambda params, losses: float(np.log(losses[0] / losses[-1])),  # no division by the log of the N ratio
    ],
)
def check_fit_exponent(fit_exponent):
    for alpha in (0.3, 0.076, 0.5):
        params, losses = _losses(alpha)
        got = _number(fit_exponent(params, losses))
        expected = -np.polyfit(np.log(params), np.log(losses), 1)[0]
        expect(
            got is not None and abs(got - expected) < 1e-6,
            f"for losses made with alpha = {alpha} your fit_exponent returned {got!r}; the least-squares fit "
            f"gives {expected:.5f}. L = a·N^(-alpha) is a straight line in log L against log N with slope "
            "-alpha: fit that line and return minus its slope.",
        )


# ------------------------------------------------------------------ extrapolate (transfer)


@exercise(
    "ch07.extrapolate_loss",
    name="extrapolate_loss",
    title="Predict a bigger model's loss",
    wrong=[
        lambda params, losses, c, n_new: float(
            np.exp(np.polyval(np.polyfit(np.log(params), np.log(losses), 1), np.log(n_new)))
        ),  # ignores c
        lambda params, losses, c, n_new: float(losses[-1]),  # no extrapolation
        lambda params, losses, c, n_new: c,  # only the floor
        lambda params, losses, c, n_new: float(
            np.exp(np.polyval(np.polyfit(np.log(params), np.log(np.asarray(losses) - c), 1), np.log(n_new)))
        ),  # forgets to add c back
    ],
)
def check_extrapolate_loss(extrapolate_loss):
    params = np.array([3e3, 1e4, 3e4, 1e5])
    for a, alpha, c in ((20.0, 0.35, 1.2), (8.0, 0.2, 1.5)):
        losses = a * params**-alpha + c
        for n_new in (1e6, 3e5):
            got = _number(extrapolate_loss(params, losses, c, n_new))
            expected = a * n_new**-alpha + c
            expect(
                got is not None and math.isclose(got, expected, rel_tol=1e-6),
                f"extrapolate_loss(params, losses, c={c}, n_new={n_new:g}) returned {got!r}; expected "
                f"{expected:.5f}. Subtract the irreducible loss c, fit a straight line to log(L - c) against "
                "log N, evaluate it at log n_new, and add c back.",
            )


# ------------------------------------------------------------------ each rank its own rows (transfer: a DDP bug)


@exercise(
    "ch07.shard_rows",
    name="shard_rows",
    title="Each rank its own rows",
    wrong=[
        lambda batch, rank, world_size: batch,  # every rank trains on the whole batch: the classic bug
        lambda batch, rank, world_size: batch[: len(batch) // world_size],  # every rank the same rows
        lambda batch, rank, world_size: batch[rank : rank + len(batch) // world_size],  # overlapping
        lambda batch, rank, world_size: batch[rank * world_size : (rank + 1) * world_size],
    ],
)
def check_shard_rows(shard_rows):
    for n, world in ((8, 2), (12, 3), (16, 4), (6, 6), (24, 2)):
        batch = torch.arange(n * 3).reshape(n, 3)
        parts = [shard_rows(batch, rank, world) for rank in range(world)]
        expect(
            all(torch.is_tensor(p) and p.dim() == 2 and len(p) == n // world for p in parts),
            f"with a batch of {n} rows and world_size={world} every rank should get {n // world} rows; yours got "
            f"{[len(p) if torch.is_tensor(p) else type(p).__name__ for p in parts]}",
        )
        seen = sorted(int(row[0]) // 3 for p in parts for row in p)
        expect(
            seen == list(range(n)),
            f"with a batch of {n} rows and world_size={world} the ranks together got rows {seen}; every row should "
            "go to exactly one rank (no rank may repeat another's rows, none may be left out)",
        )
