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


# ------------------------------------------------------------------ per-character perplexity of any tokenizer


@exercise(
    "ch06.char_perplexity",
    name="char_perplexity",
    title="Per-character perplexity from a per-token loss",
    wrong=[
        lambda loss, n_tokens, n_chars: math.exp(loss),  # per token, not per character
        lambda loss, n_tokens, n_chars: math.exp(loss) * n_tokens / n_chars,  # scales the perplexity
        lambda loss, n_tokens, n_chars: math.exp(loss * n_chars / n_tokens),  # ratio upside down
        lambda loss, n_tokens, n_chars: 2 ** (loss * n_tokens / n_chars),  # bits, but the loss is in nats
    ],
)
def check_char_perplexity(char_perplexity):
    for loss, n_tokens, n_chars in ((1.5, 1000, 1000), (3.2, 250, 1000), (4.0, 10_000, 42_000), (0.9, 7, 7)):
        expected = math.exp(loss * n_tokens / n_chars)
        got = char_perplexity(loss, n_tokens, n_chars)
        got = float(got) if torch.is_tensor(got) else got
        expect(
            isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6),
            f"char_perplexity({loss}, {n_tokens}, {n_chars}) returned {got!r}; expected {expected:.5g}. The text's "
            f"total negative log-likelihood is loss * n_tokens = {loss * n_tokens:.4g} nats whatever the tokens are; "
            "share it over the characters, then undo the logarithm.",
        )


# ------------------------------------------------------------------ diagnose a training log

_LOG_PROBLEMS = ("no warm-up", "clipping always", "diverged")


def _training_log(steps=60, warmup=10, peak=1e-3, clip_share=0.1, diverge=False, seed=0):
    """A log in the layout of train()'s history (log_step, lr, grad_norm, loss), with grad_clip 1.0."""
    generator = torch.Generator().manual_seed(seed)
    log = {"log_step": [], "lr": [], "grad_norm": [], "loss": [], "grad_clip": 1.0}
    clipped = set(torch.randperm(steps, generator=generator)[: round(clip_share * steps)].tolist())
    for step in range(steps):
        if step < warmup:
            lr = peak * (step + 1) / warmup
        else:
            lr = peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))
        noise = 0.05 * float(torch.randn(1, generator=generator))
        loss = 2.0 + 2.2 * math.exp(-step / 10) + noise  # falls fast, then a noisy plateau
        if diverge and step > steps // 2:
            loss = 2.0 + 0.3 * (step - steps // 2)
        log["log_step"].append(step)
        log["lr"].append(lr)
        log["grad_norm"].append(1.5 + 0.3 * noise if step in clipped else 0.4 + noise)
        log["loss"].append(loss)
    return log


_LOG_CASES = [
    (dict(), set()),
    (dict(warmup=0), {"no warm-up"}),
    (dict(clip_share=0.9), {"clipping always"}),
    (dict(diverge=True, seed=1), {"diverged"}),
    (dict(warmup=0, clip_share=0.8, seed=2), {"no warm-up", "clipping always"}),
    (dict(warmup=3, seed=3), set()),  # a short warm-up still starts below the peak
    (dict(clip_share=0.3, seed=4), set()),  # clipping now and then is normal
]


def _warmup_means_lr_starts_at_zero(log):
    found = set()
    if log["lr"][0] > 0:
        found.add("no warm-up")
    if sum(g > log["grad_clip"] for g in log["grad_norm"]) > len(log["grad_norm"]) / 2:
        found.add("clipping always")
    if log["loss"][-1] > log["loss"][0]:
        found.add("diverged")
    return found


def _any_clip_is_a_problem(log):
    found = set()
    if log["lr"][0] >= 0.99 * max(log["lr"]):
        found.add("no warm-up")
    if any(g > log["grad_clip"] for g in log["grad_norm"]):
        found.add("clipping always")
    if log["loss"][-1] > log["loss"][0]:
        found.add("diverged")
    return found


def _ignores_divergence(log):
    found = set()
    if log["lr"][0] >= 0.99 * max(log["lr"]):
        found.add("no warm-up")
    if sum(g > log["grad_clip"] for g in log["grad_norm"]) > len(log["grad_norm"]) / 2:
        found.add("clipping always")
    return found


def _compares_with_the_minimum(log):  # any bump above the best loss so far counts as divergence
    found = _ignores_divergence(log)
    if log["loss"][-1] > min(log["loss"]):
        found.add("diverged")
    return found


@exercise(
    "ch06.diagnose_log",
    name="diagnose_log",
    title="Diagnose a training log",
    wrong=[_warmup_means_lr_starts_at_zero, _any_clip_is_a_problem, _ignores_divergence, _compares_with_the_minimum],
)
def check_diagnose_log(diagnose_log):
    for settings, expected in _LOG_CASES:
        log = _training_log(**settings)
        got = diagnose_log({key: list(value) if isinstance(value, list) else value for key, value in log.items()})
        got_set = set(got) if isinstance(got, (set, list, tuple, frozenset)) else got
        described = (
            f"a log whose learning rate starts at {log['lr'][0]:.2g} (peak {max(log['lr']):.2g}), whose gradient "
            f"norm exceeds grad_clip = 1.0 on {sum(g > 1.0 for g in log['grad_norm'])} of {len(log['loss'])} "
            f"steps and whose loss goes from {log['loss'][0]:.2f} to {log['loss'][-1]:.2f}"
        )
        expect(
            got_set == expected,
            f"for {described} you returned {got!r}; expected {sorted(expected) or 'an empty set (a healthy run)'}. "
            "Warm-up means the first recorded rate is below the peak (a linear warm-up starts at peak / "
            "warmup_steps, not at 0); clipping is a problem when it acts on more than half of the steps; a run "
            "diverged when its last loss is above its first.",
        )
