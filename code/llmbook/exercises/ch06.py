"""Checks for the exercises of Chapter 6: Training a language model."""

from __future__ import annotations

import math

import torch

from .core import exercise, expect

# ------------------------------------------------------------------ warm-up + cosine schedule

_SCHEDULES = [
    dict(max_lr=1e-3, min_lr=1e-4, warmup_steps=10, decay_steps=100),
    dict(max_lr=6e-4, min_lr=0.0, warmup_steps=0, decay_steps=50),
    dict(max_lr=1.0, min_lr=0.1, warmup_steps=5, decay_steps=5),
]


@exercise(
    "ch06.warmup_cosine_lr",
    name="warmup_cosine_lr",
    title="Warm-up plus cosine learning-rate schedule",
    wrong=[
        # no warm-up at all
        lambda step, max_lr, min_lr, warmup_steps, decay_steps: (
            min_lr + 0.5 * (1 + math.cos(math.pi * min(step, decay_steps) / decay_steps)) * (max_lr - min_lr)
        ),
        # warm-up that starts at 0 (step / warmup_steps): the first step does nothing
        lambda step, max_lr, min_lr, warmup_steps, decay_steps: (
            max_lr * step / warmup_steps
            if step < warmup_steps
            else min_lr
            + 0.5
            * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))))
            * (max_lr - min_lr)
        ),
        # linear decay instead of cosine
        lambda step, max_lr, min_lr, warmup_steps, decay_steps: (
            max_lr * (step + 1) / warmup_steps
            if step < warmup_steps
            else max_lr - min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps)) * (max_lr - min_lr)
        ),
        # cosine that decays to 0, not to min_lr
        lambda step, max_lr, min_lr, warmup_steps, decay_steps: (
            max_lr * (step + 1) / warmup_steps
            if step < warmup_steps
            else 0.5
            * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))))
            * max_lr
        ),
    ],
)
def check_warmup_cosine_lr(warmup_cosine_lr):
    from llmbook.train import cosine_lr

    for case in _SCHEDULES:
        for step in sorted({0, 1, case["warmup_steps"] - 1, case["warmup_steps"], 7, 30, 49, 75, 99, 100, 250}):
            if step < 0:
                continue
            expected = cosine_lr(
                step,
                lr=case["max_lr"],
                min_lr=case["min_lr"],
                warmup_steps=case["warmup_steps"],
                decay_steps=case["decay_steps"],
            )
            got = warmup_cosine_lr(step, case["max_lr"], case["min_lr"], case["warmup_steps"], case["decay_steps"])
            expect(
                isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12),
                f"warmup_cosine_lr({step}, max_lr={case['max_lr']}, min_lr={case['min_lr']}, "
                f"warmup_steps={case['warmup_steps']}, decay_steps={case['decay_steps']}) returned {got!r}; "
                f"expected {expected:.6g}. Remember: warm-up gives max_lr * (step + 1) / warmup_steps, so the "
                "first step already moves; after warm-up, half a cosine from max_lr to min_lr over "
                "decay_steps - warmup_steps steps; min_lr after decay_steps.",
            )


# ------------------------------------------------------------------ perplexity from a loss


@exercise(
    "ch06.perplexity",
    name="perplexity",
    title="Perplexity from the mean cross-entropy",
    wrong=[
        lambda loss: 2.0**loss,  # bits, but the loss is in nats
        lambda loss: 1.0 / loss,
        lambda loss: math.log(loss),
        lambda loss: loss,
    ],
)
def check_perplexity(perplexity):
    for loss in (0.0, 1.0, math.log(65), 1.47, 2.5):
        got = perplexity(loss)
        got = float(got) if torch.is_tensor(got) else got
        expected = math.exp(loss)
        expect(
            isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6),
            f"perplexity({loss:.4g}) returned {got!r}; expected {expected:.4g}. The loss is a mean negative "
            "log-likelihood in nats (natural logarithm): undo the logarithm with the matching exponential.",
        )
    got = perplexity(torch.tensor(1.0))
    expect(
        math.isclose(float(got), math.e, rel_tol=1e-6),
        f"perplexity(torch.tensor(1.0)) returned {got!r}; it should accept a loss tensor too (use torch.exp or "
        "float(loss))",
    )


# ------------------------------------------------------------------ tokens per optimizer step


@exercise(
    "ch06.tokens_per_step",
    name="tokens_per_step",
    title="Tokens per step with accumulation",
    wrong=[
        lambda batch_size, block_size, grad_accum_steps: batch_size * block_size,  # ignores accumulation
        lambda batch_size, block_size, grad_accum_steps: batch_size * (block_size + 1) * grad_accum_steps,
        lambda batch_size, block_size, grad_accum_steps: batch_size * block_size // grad_accum_steps,
        lambda batch_size, block_size, grad_accum_steps: batch_size * grad_accum_steps,  # sequences, not tokens
    ],
)
def check_tokens_per_step(tokens_per_step):
    for batch_size, block_size, accumulation in ((12, 64, 1), (64, 256, 1), (12, 64, 4), (8, 1024, 5), (1, 1, 3)):
        expected = batch_size * block_size * accumulation
        got = tokens_per_step(batch_size, block_size, accumulation)
        expect(
            got == expected,
            f"tokens_per_step({batch_size}, {block_size}, {accumulation}) returned {got!r}; expected {expected}. "
            "Each micro-batch holds batch_size windows of block_size input positions, and each position is one "
            "predicted token (the extra token of a window is only a target); an optimizer step sums the "
            "gradients of grad_accum_steps micro-batches.",
        )


# ------------------------------------------------------------------ predict the loss at initialisation


@exercise(
    "ch06.init_loss",
    name="init_loss",
    title="Predict the loss of an untrained model",
    wrong=[65.0, 1 / 65, math.log2(65), 0.0, math.log(64)],
)
def check_init_loss(init_loss):
    expected = math.log(65)
    expect(
        isinstance(init_loss, (int, float)) and not isinstance(init_loss, bool),
        f"init_loss should be a number, got {type(init_loss).__name__}",
    )
    expect(
        abs(init_loss - expected) < 0.01,
        f"init_loss = {init_loss:.4g} is not right. An untrained model gives every one of the 65 characters about "
        "the same probability; the cross-entropy is minus the log (natural log: the loss is in nats) of the "
        "probability of the correct character.",
    )


# ------------------------------------------------------------------ gradient clipping by global norm


def _clip_cases():
    generator = torch.Generator().manual_seed(6)
    big = [torch.randn(3, 4, generator=generator) * 5, torch.randn(7, generator=generator) * 5]
    small = [torch.randn(2, 2, generator=generator) * 0.01, torch.randn(5, generator=generator) * 0.01]
    one = [torch.tensor([3.0, 4.0])]
    return [(big, 1.0), (small, 1.0), (one, 1.0), (one, 10.0)]


def _per_tensor_clip(grads, max_norm):
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    for g in grads:
        norm = g.norm()
        if norm > max_norm:
            g.mul_(max_norm / norm)
    return float(total)


def _always_rescale(grads, max_norm):
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    for g in grads:
        g.mul_(max_norm / total)
    return float(total)


def _clamp_elementwise(grads, max_norm):
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    for g in grads:
        g.clamp_(-max_norm, max_norm)
    return float(total)


def _returns_post_clip_norm(grads, max_norm):
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / float(total))
    for g in grads:
        g.mul_(scale)
    return float(total) * scale


@exercise(
    "ch06.clip_by_global_norm",
    name="clip_by_global_norm",
    title="Gradient clipping by the global norm",
    wrong=[_per_tensor_clip, _always_rescale, _clamp_elementwise, _returns_post_clip_norm],
)
def check_clip_by_global_norm(clip_by_global_norm):
    for grads, max_norm in _clip_cases():
        ours = [g.clone() for g in grads]
        theirs = [g.clone() for g in grads]
        reference_params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
        for parameter, gradient in zip(reference_params, ours):
            parameter.grad = gradient
        expected_norm = float(torch.nn.utils.clip_grad_norm_(reference_params, max_norm))
        got_norm = clip_by_global_norm(theirs, max_norm)
        got_norm = float(got_norm) if torch.is_tensor(got_norm) else got_norm
        shapes = [tuple(g.shape) for g in grads]
        expect(
            isinstance(got_norm, (int, float)) and math.isclose(got_norm, expected_norm, rel_tol=1e-5),
            f"for gradients of shapes {shapes} and max_norm={max_norm} you returned {got_norm!r}; expected the "
            f"norm before clipping, {expected_norm:.5g}: the square root of the sum of the squares of every "
            "entry of every gradient.",
        )
        for index, (got, expected) in enumerate(zip(theirs, ours)):
            expect(
                torch.allclose(got, expected, rtol=1e-5, atol=1e-7),
                f"for gradients of shapes {shapes} and max_norm={max_norm}, gradient {index} after clipping is "
                f"{got.flatten()[:4].tolist()}..., expected {expected.flatten()[:4].tolist()}.... Scale all "
                "gradients by the same factor max_norm / total_norm, in place, and only when the total norm "
                "exceeds max_norm.",
            )
