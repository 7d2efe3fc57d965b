"""How long each chapter takes on Colab's free T4 at the ``gpu`` budget, by arithmetic (every chapter).

No T4 is at hand to time the chapters, so this module computes it. A chapter's
``gpu``-budget runs are listed as :class:`Run` s: a training run costs its
model's training FLOPs per token (``flops_per_token``, forward + backward) times
the tokens it trains on, plus its evaluations (forward only, on both splits); a
run stopped by a wall-time budget (``max_seconds``) counts at that wall time.
The FLOPs are divided by 15% of the T4's 65 TFLOP/s fp16 peak: the small models
of this book rarely do better on a T4 (launch overheads, small matrices).

The test (tests/test_budget.py) holds every chapter to :data:`LIMIT_MINUTES`,
and each chapter glues the estimate into the sentence that describes its
budget::

    runs = budget.chapter_runs(6, gpu_sizes)
    glue("t4_minutes", budget.minutes_on_t4(runs))

Only the GPU arithmetic is counted: work that stays on the CPU at every budget
(n-gram counting, BPE merges, gensim's word2vec) is not; it takes what it takes
at the ``cpu`` budget, within that budget's limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from llmbook import runtime, validate

__all__ = [
    "LIMIT_MINUTES",
    "T4_PEAK_FLOPS",
    "UTILISATION",
    "Run",
    "chapter_runs",
    "minutes_on_t4",
    "seconds_on_t4",
    "t4_estimate",
    "timed_run",
    "training_run",
]

T4_PEAK_FLOPS = runtime._GPU_PEAK_FLOPS["T4"]  # 65e12, fp16 tensor cores (the T4 has no bf16)
UTILISATION = 0.15  # share of the peak the book's small models reach on a T4
LIMIT_MINUTES = 10  # every chapter at the gpu budget, on a T4, by this arithmetic

# Vocabularies the gpu-budget runs train on (measured on the registered data): Tiny Shakespeare has 65
# distinct characters; the first 10 files of the Tang poems (Chapter 6's tang_files=10) 6,000.
SHAKESPEARE_VOCAB = 65
TANG_VOCAB_10_FILES = 6000
# Characters of Tiny Shakespeare's validation split (the last 10% of 1,115,394).
VALIDATION_CHARS = 111_540


@dataclass(frozen=True)
class Run:
    """One run of a chapter: its FLOPs, or, for a run stopped by a wall-time budget, its seconds."""

    name: str
    flops: float = 0.0
    seconds: float = 0.0

    def seconds_on_t4(self, utilisation: float = UTILISATION) -> float:
        return self.flops / (T4_PEAK_FLOPS * utilisation) + self.seconds


def training_run(
    name: str,
    model: Any,
    steps: int,
    batch_size: int,
    eval_interval: int | None = None,
    eval_steps: int = 0,
    context: int | None = None,
) -> Run:
    """The FLOPs of training ``model`` (with a ``flops_per_token(context, training)`` method) for ``steps`` steps.

    Evaluations run at step 0 (the first logged point), every ``eval_interval``
    steps and at the end, each on ``eval_steps`` batches of the train and the
    validation split (forward only): an upper bound of what ``llmbook.train``
    does.
    """
    steps = validate.positive_int(steps, "steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    eval_steps = validate.nonnegative_int(eval_steps, "eval_steps")
    context = context or model.config.block_size
    tokens = steps * batch_size * context
    evaluations = 0
    if eval_interval and eval_steps:
        evaluations = math.ceil(steps / validate.positive_int(eval_interval, "eval_interval")) + 1
    eval_tokens = evaluations * eval_steps * batch_size * context * 2  # train and validation splits
    flops = model.flops_per_token(context) * tokens + model.flops_per_token(context, training=False) * eval_tokens
    return Run(name, float(flops))


def timed_run(name: str, seconds: float) -> Run:
    """A run stopped by a wall-time budget: it counts at that wall time, whatever the device."""
    return Run(name, 0.0, validate.finite_float(seconds, "seconds", low=0.0))


def seconds_on_t4(runs: list[Run], utilisation: float = UTILISATION) -> float:
    """Seconds the runs take on a T4 at ``utilisation`` of its fp16 peak (wall-time runs at their budget)."""
    utilisation = validate.finite_float(
        utilisation, "utilisation", low=0.0, low_inclusive=False, high=1.0, hint="a share of the peak such as 0.15"
    )
    return sum(run.seconds_on_t4(utilisation) for run in runs)


def minutes_on_t4(runs: list[Run], utilisation: float = UTILISATION) -> float:
    """:func:`seconds_on_t4` in minutes."""
    return seconds_on_t4(runs, utilisation) / 60


def t4_estimate(runs: list[Run], utilisation: float = UTILISATION) -> str:
    """The estimate in words, for a chapter's prose: "about 8.4 minutes", "about 20 seconds", "under a second".

    >>> t4_estimate([timed_run("a run stopped after 90 s", 90)])
    'about 1.5 minutes'
    >>> t4_estimate([])
    'under a second'
    """
    seconds = seconds_on_t4(runs, utilisation)
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} seconds"
    return f"about {seconds / 60:.1f} minutes"


# --- the chapters' gpu runs --------------------------------------------------------------------------------


def _on_meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A model built without memory (its sizes and flops_per_token are all the arithmetic needs)."""
    with torch.device("meta"):
        return build()


def _gpt(**config) -> torch.nn.Module:
    from llmbook.models import GPT, GPTConfig

    return _on_meta(lambda: GPT(GPTConfig(**config)))


def _bert(**config) -> torch.nn.Module:
    from llmbook.models import BERT, BERTConfig

    return _on_meta(lambda: BERT(BERTConfig(**config)))


def _chapter_3(size: Mapping[str, Any]) -> list[Run]:
    # Two GloVe runs (AdaGrad, then Adam), each stopped by max_seconds at the latest.
    return [timed_run(f"GloVe with {name}", size["max_seconds"]) for name in ("AdaGrad", "Adam")]


def _chapter_4(size: Mapping[str, Any]) -> list[Run]:
    head_dim, heads, repeats = 64, size["timing_heads"], size["timing_repeats"]
    # Explicit and fused attention, one warm-up and `repeats` timed calls each: q·kᵀ and weights·v.
    timing = sum(2 * (1 + repeats) * 4 * length * length * head_dim * heads for length in size["timing_lengths"])
    # One forward and backward pass through stacks of blocks (post-LN and pre-LN), batch 8 × 32 tokens.
    width, tokens = size["ln_width"], 8 * 32
    layer_norm = sum(2 * size["ln_seeds"] * depth * 6 * 12 * width * width * tokens for depth in size["ln_depths"])
    return [Run("attention timing", float(timing)), Run("post-LN and pre-LN gradients", float(layer_norm))]


def _chapter_5(size: Mapping[str, Any]) -> list[Run]:
    gpt = _gpt(
        vocab_size=SHAKESPEARE_VOCAB,
        block_size=size["block_size"],
        n_layer=size["n_layer"],
        n_head=size["n_head"],
        n_embd=size["n_embd"],
    )
    bert = _bert(vocab_size=SHAKESPEARE_VOCAB + 1, **size["bert"])
    every = dict(batch_size=size["batch_size"], eval_interval=size["eval_interval"], eval_steps=size["eval_steps"])
    return [
        training_run("GPT with the causal mask", gpt, size["steps"], **every),
        training_run("GPT without the causal mask", gpt, size["steps"], **every),
        training_run(
            "BERT (masked LM)",
            bert,
            size["bert_steps"],
            size["bert_batch_size"],
            size["eval_interval"],
            size["eval_steps"],
        ),
    ]


def _chapter_6(size: Mapping[str, Any]) -> list[Run]:
    gpt = _gpt(vocab_size=SHAKESPEARE_VOCAB, **size["gpt"])
    char_gpt = training_run(
        "character GPT",
        gpt,
        size["steps"],
        size["batch_size"],
        size["eval_interval"],
        size["eval_steps"],
    )
    # The 22-line teaching loop: a 1-layer, 32-wide GPT on the char GPT's batches, no evaluation.
    plain = _gpt(vocab_size=SHAKESPEARE_VOCAB, block_size=size["gpt"]["block_size"], n_layer=1, n_head=2, n_embd=32)
    tang = _gpt(vocab_size=TANG_VOCAB_10_FILES, bias=False, **size["tang_gpt"])
    tang_steps = size["tang_steps"]
    # The resume demonstration: three runs of a 1-layer, 32-wide GPT, batch 4 × 32 tokens (on the CPU).
    small = _gpt(vocab_size=SHAKESPEARE_VOCAB, block_size=32, n_layer=1, n_head=2, n_embd=32)
    resume = size["resume_steps"]
    return [
        char_gpt,
        # The LSTM trains for as long as the GPT took (max_seconds = the GPT's time): the GPT's cost again.
        Run("LSTM for the GPT's wall time", char_gpt.flops),
        training_run("plain training loop", plain, size["plain_steps"], size["batch_size"]),
        training_run(
            "GPT on Tang poems",
            tang,
            tang_steps,
            size["batch_size"],
            max(1, tang_steps // 4),
            size["eval_steps"],
        ),
        training_run("resume demonstration", small, 4 * resume, 4, resume, 2),
        # The perplexity table scores the validation split (about 111,000 characters) with the GPT and the LSTM
        # in half-overlapping windows: every character is read twice, forward only; the LSTM counted as the GPT.
        Run("perplexity table", 2 * 2 * gpt.flops_per_token(training=False) * VALIDATION_CHARS),
    ]


# Chapters 1 and 2 train no model on the GPU (n-gram counts, BPE merges: CPU work at every budget).
CHAPTER_RUNS: dict[int, Callable[[Mapping[str, Any]], list[Run]]] = {
    1: lambda size: [],
    2: lambda size: [],
    3: _chapter_3,
    4: _chapter_4,
    5: _chapter_5,
    6: _chapter_6,
}


def chapter_runs(chapter: int, size: Mapping[str, Any]) -> list[Run]:
    """The runs of ``chapter`` with its ``gpu`` sizes ``size`` (the chapter's SIZES["gpu"], merged as it merges them).

    >>> runs = chapter_runs(3, {"max_seconds": 60})
    >>> round(minutes_on_t4(runs), 1)
    2.0
    """
    if chapter not in CHAPTER_RUNS:
        raise KeyError(
            f"chapter {chapter!r} has no runs in llmbook.budget.CHAPTER_RUNS; add a function that lists its "
            f"gpu-budget runs (chapters with runs: {sorted(CHAPTER_RUNS)})"
        )
    return CHAPTER_RUNS[chapter](size)
