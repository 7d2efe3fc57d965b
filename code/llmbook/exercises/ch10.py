"""Checks for the exercises of Chapter 10: Challenges and outlook."""

from __future__ import annotations

import math

import numpy as np
import torch

from .core import exercise, expect

# ------------------------------------------------------------------ training compute


# Chinchilla (Hoffmann et al. 2022): 70 billion parameters, 1.4 trillion tokens; an A100 at 40% of its
# 312 TFLOP/s bf16 peak.
CHINCHILLA_PARAMS, CHINCHILLA_TOKENS = 70e9, 1.4e12
A100_PEAK, UTILISATION = 312e12, 0.4


def _chinchilla_days(flops_per_param_token=6, params=CHINCHILLA_PARAMS, tokens=CHINCHILLA_TOKENS, rate=None):
    rate = A100_PEAK * UTILISATION if rate is None else rate
    return flops_per_param_token * params * tokens / rate / 86_400


@exercise(
    "ch10.chinchilla_a100_days",
    name="chinchilla_a100_days",
    title="Chinchilla's training on one A100",
    wrong=[
        _chinchilla_days(rate=A100_PEAK),  # the peak, not the sustained rate
        _chinchilla_days(2),  # the forward pass only
        _chinchilla_days() * 24,  # hours
        _chinchilla_days(tokens=300e9),  # GPT-3's tokens
        _chinchilla_days() * 86_400,  # seconds
    ],
)
def check_chinchilla_a100_days(chinchilla_a100_days):
    expected = _chinchilla_days()
    got = chinchilla_a100_days
    expect(
        isinstance(got, (int, float, np.floating)) and not isinstance(got, bool),
        f"chinchilla_a100_days should be a number of days, got {type(got).__name__}",
    )
    got = float(got)
    hints = [
        (expected * UTILISATION, "that is the time at the A100's peak: it sustains only 40% of it"),
        (expected / 3, "6 FLOPs per parameter per token count the backward pass too (2 forward, 4 backward)"),
        (expected * 24, "that is in hours; divide by 24"),
        (expected * 86_400, "that is in seconds; divide by 86,400"),
        (expected * 300e9 / CHINCHILLA_TOKENS, "Chinchilla saw 1.4 trillion tokens, not GPT-3's 300 billion"),
    ]
    hint = next((why for value, why in hints if math.isclose(got, value, rel_tol=0.02)), "")
    expect(
        math.isclose(got, expected, rel_tol=0.02),
        f"chinchilla_a100_days = {got:,.4g}; expected about {expected:,.0f}. "
        + (hint + ". " if hint else "")
        + "Training costs about 6 FLOPs per parameter per token; divide the total by the FLOPs one A100 "
        "sustains per second (312e12 x 0.4) and by 86,400 seconds per day.",
    )


# ------------------------------------------------------------------ WEAT effect size


def _weat_reference(X, Y, A, B):
    def unit(M):
        M = np.asarray(M, dtype=float)
        return M / np.linalg.norm(M, axis=1, keepdims=True)

    X, Y, A, B = map(unit, (X, Y, A, B))

    def s(W):
        return (W @ A.T).mean(1) - (W @ B.T).mean(1)

    sx, sy = s(X), s(Y)
    return (sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1)


def _wrong_weat_population_std(X, Y, A, B):
    from llmbook.challenges import _association, _unit_rows

    X, Y, A, B = (_unit_rows(v, "v") for v in (X, Y, A, B))
    sx, sy = _association(X, A, B), _association(Y, A, B)
    return float((sx.mean() - sy.mean()) / torch.cat([sx, sy]).std(unbiased=False))


def _wrong_weat_dot(X, Y, A, B):
    X, Y, A, B = (np.asarray(v, dtype=float) for v in (X, Y, A, B))
    sx = (X @ A.T).mean(1) - (X @ B.T).mean(1)
    sy = (Y @ A.T).mean(1) - (Y @ B.T).mean(1)
    return (sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1)


@exercise(
    "ch10.weat_effect_size",
    name="weat_effect_size",
    title="WEAT's effect size",
    wrong=[
        _wrong_weat_population_std,
        _wrong_weat_dot,  # dot products, not cosines
        lambda X, Y, A, B: -_weat_reference(X, Y, A, B),  # A and B swapped
        lambda X, Y, A, B: float(_weat_reference(X, Y, A, B) * np.sqrt(len(X) + len(Y))),
    ],
)
def check_weat_effect_size(weat_effect_size):
    rng = np.random.default_rng(10)
    for sizes in ((4, 4, 3, 3), (5, 3, 4, 6), (2, 2, 2, 2)):
        X, Y, A, B = (rng.normal(size=(n, 7)) * rng.uniform(0.5, 3, size=(n, 1)) for n in sizes)
        expected = float(_weat_reference(X, Y, A, B))
        got = weat_effect_size(X, Y, A, B)
        got = float(got) if isinstance(got, (torch.Tensor, np.floating, np.ndarray)) else got
        expect(
            isinstance(got, float) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9),
            f"weat_effect_size on sets of sizes {sizes} (vectors of different lengths) returned {got!r}; "
            f"expected {expected:.6f}. Use cosine similarity, s(w) = mean cos(w, A) - mean cos(w, B), and divide "
            "the difference of the means of s over X and over Y by the sample standard deviation (ddof=1) of s "
            "over all the targets X and Y together.",
        )


# ------------------------------------------------------------------ int8 per-channel quantization


@exercise(
    "ch10.quantize_int8",
    name="quantize_int8",
    title="Quantize a weight matrix to int8",
    wrong=[
        # one scale for the whole matrix
        lambda w: (
            torch.round(w / (w.abs().max() / 127)).to(torch.int8),
            (w.abs().max() / 127).expand(w.shape[0]),
        ),
        # scales per input column instead of per output row
        lambda w: (
            torch.round(w / (w.abs().amax(0) / 127)).to(torch.int8).T.contiguous().T,
            w.abs().amax(0) / 127,
        ),
        # truncation instead of rounding
        lambda w: (
            (w / (w.abs().amax(1, keepdim=True) / 127)).to(torch.int8),
            w.abs().amax(1) / 127,
        ),
        # 255 levels of an unsigned range used as if signed
        lambda w: (
            torch.clamp(torch.round(w / (w.abs().amax(1, keepdim=True) / 255)), -128, 127).to(torch.int8),
            w.abs().amax(1) / 255,
        ),
    ],
)
def check_quantize_int8(quantize_int8):
    from llmbook.challenges import quantize_per_channel

    gen = torch.Generator().manual_seed(10)
    for shape in ((6, 4), (32, 16), (3, 50)):
        w = torch.randn(shape, generator=gen) * torch.rand(shape[0], 1, generator=gen) * 3
        expected_q, expected_scale = quantize_per_channel(w)
        got = quantize_int8(w.clone())
        expect(
            isinstance(got, tuple) and len(got) == 2,
            f"quantize_int8 should return a pair (q, scale), got {type(got).__name__}",
        )
        q, scale = got
        expect(
            isinstance(q, torch.Tensor) and q.dtype == torch.int8 and q.shape == w.shape,
            f"q should be an int8 tensor of the weight's shape {tuple(w.shape)}, got "
            f"{getattr(q, 'dtype', type(q).__name__)} {tuple(getattr(q, 'shape', ()))}",
        )
        expect(
            isinstance(scale, torch.Tensor) and tuple(scale.shape) == (shape[0],),
            f"scale should hold one value per output row, shape ({shape[0]},); got {tuple(getattr(scale, 'shape', ()))}",
        )
        expect(
            torch.allclose(scale.float(), expected_scale, rtol=1e-5),
            f"for a {shape} weight your scales are {scale.float()[:3].tolist()}...; expected "
            f"{expected_scale[:3].tolist()}...: each row's largest |w| should map to 127.",
        )
        mismatched = int((q != expected_q).sum())
        expect(
            mismatched == 0,
            f"for a {shape} weight {mismatched} of {q.numel()} int8 values differ from round(w / scale) clamped "
            "to [-127, 127].",
        )


# ------------------------------------------------------------------ canary exposure


@exercise(
    "ch10.exposure",
    name="exposure",
    title="A canary's exposure",
    wrong=[
        lambda rank, n_candidates: math.log2(rank),
        lambda rank, n_candidates: math.log(n_candidates) - math.log(rank),  # nats, not bits
        lambda rank, n_candidates: math.log2(n_candidates) - math.log2(rank + 1),  # 0-based rank
        lambda rank, n_candidates: n_candidates / rank,
    ],
)
def check_exposure(exposure):
    for rank, n in ((1, 1024), (1, 10**5), (7, 10**4), (10**4, 10**4), (3, 10)):
        expected = math.log2(n) - math.log2(rank)
        got = exposure(rank, n)
        got = float(got) if isinstance(got, (torch.Tensor, np.floating)) else got
        expect(
            isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12),
            f"exposure(rank={rank}, n_candidates={n}) returned {got!r}; expected {expected:.4f} bits. Exposure "
            "is log2(n_candidates) - log2(rank), with rank 1 for the most likely candidate.",
        )


# ------------------------------------------------------------------ expected calibration error


def _ece_reference(confidences, correct, n_bins):
    from llmbook.challenges import calibration_bins

    return calibration_bins(confidences, correct, n_bins).ece


@exercise(
    "ch10.expected_calibration_error",
    name="expected_calibration_error",
    title="Expected calibration error",
    wrong=[
        # unweighted mean over bins
        lambda c, k, n_bins: float(
            np.nanmean(
                np.abs(
                    __import__("llmbook.challenges", fromlist=["x"]).calibration_bins(c, k, n_bins).accuracy
                    - __import__("llmbook.challenges", fromlist=["x"]).calibration_bins(c, k, n_bins).confidence
                )
            )
        ),
        # one bin: |mean accuracy - mean confidence|
        lambda c, k, n_bins: float(abs(np.mean(k) - np.mean(c))),
        # mean |correct - confidence| per prediction (that is not binned)
        lambda c, k, n_bins: float(np.mean(np.abs(np.asarray(k, float) - np.asarray(c)))),
    ],
)
def check_expected_calibration_error(expected_calibration_error):
    rng = np.random.default_rng(10)
    for n, n_bins, power in ((500, 10, 2.0), (200, 5, 0.5), (1000, 15, 1.0)):
        conf = rng.uniform(0.05, 1, n)
        correct = rng.uniform(0, 1, n) < conf**power
        expected = _ece_reference(conf, correct, n_bins)
        got = expected_calibration_error(conf, correct, n_bins)
        got = float(got) if isinstance(got, (torch.Tensor, np.floating)) else got
        expect(
            isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9),
            f"expected_calibration_error on {n} predictions with {n_bins} bins returned {got!r}; expected "
            f"{expected:.5f}. Cut [0, 1] into n_bins equal bins (a confidence on an edge goes to the lower bin), "
            "and sum over bins |accuracy - mean confidence| weighted by the share of predictions in the bin.",
        )
