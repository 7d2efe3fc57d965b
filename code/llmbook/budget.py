"""How long each chapter takes on Colab's free T4 at the ``gpu`` budget, by arithmetic (every chapter).

No T4 is at hand to time the chapters, so this module computes it. A chapter's
``gpu``-budget runs are listed as :class:`Run` s: a training run costs its
model's training FLOPs per token (``flops_per_token``, forward + backward) times
the tokens it trains on, plus its evaluations (forward only, on both splits); a
run stopped by a wall-time budget (``max_seconds``) counts at that wall time; a
generation (:func:`decoding_run`) costs its forward passes plus the kernel
launches of each call, which dominate when tokens come one at a time.
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
    "decoding_run",
    "window_tokens",
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
# A forward call that generates one token (batch size 1 or a few rows) is bound by kernel launches, not by
# arithmetic: about a dozen launches per block, some 40 µs each in eager PyTorch, whatever the width.
CALL_SECONDS_PER_LAYER = 0.5e-3


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


def decoding_run(name: str, model: Any, calls: int, tokens: int) -> Run:
    """Generation: ``calls`` forward calls of ``model`` that read ``tokens`` positions in all (forward only).

    Each call also costs its launches, :data:`CALL_SECONDS_PER_LAYER` per block: at batch size 1 that,
    not the arithmetic, is what a decoding step takes on a GPU.

    >>> model = _gpt(vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=32)
    >>> decoding_run("greedy", model, calls=100, tokens=0).seconds_on_t4()
    0.1
    """
    calls = validate.nonnegative_int(calls, "calls")
    tokens = validate.nonnegative_int(tokens, "tokens")
    flops = model.flops_per_token(training=False) * tokens  # attention at the full context: an upper bound
    return Run(name, float(flops), calls * model.config.n_layer * CALL_SECONDS_PER_LAYER)


def window_tokens(prompt: int, new: int, window: int) -> int:
    """Positions an uncached generation reads: each of ``new`` steps runs the model on the last ``window``
    tokens (at most) of the prompt and what it has generated so far.

    >>> window_tokens(prompt=2, new=3, window=3)  # 2 + 3 + 3
    8
    """
    return sum(min(length, window) for length in range(prompt, prompt + new))


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


def _chapter_7(size: Mapping[str, Any]) -> list[Run]:
    from llmbook import scaling

    # The grid, the data sweep and their evaluations, as the chapter plans them (its own budget section).
    # The memory measurements, DDP, FSDP and gradient accumulation run on the CPU at every budget.
    return [Run("scaling grid and data sweep", scaling.planned_flops(dict(size), SHAKESPEARE_VOCAB))]


# Chapter 8's translation task: English number words (at most 8) to Chinese numerals (at most 9 characters
# and the end mark: 10 positions), a target vocabulary of 17 (padding, start, end and 14 characters).
NUMBER_WORDS, NUMERAL_POSITIONS, NUMERAL_VOCAB = 8, 10, 17
SENTIMENT_TEST_REVIEWS = 400  # applications.sentiment_split's test_size, as the chapter calls it


def _seq2seq_forward_flops(n_layer: int, d: int, source: int, target: int, vocab: int) -> int:
    """One example's forward pass through llmbook.seq2seq.Seq2Seq: the encoder's blocks (12·d² weights each)
    on the source, the decoder's (16·d²: cross-attention adds 4·d²) and the output layer on the target, and
    attention's q·kᵀ and weights·v (self-attention on both sides, cross-attention target × source)."""
    weights = 2 * (12 * n_layer * d * d * source + 16 * n_layer * d * d * target + vocab * d * target)
    attention = 4 * n_layer * d * (source * source + target * target + target * source)
    return weights + attention


def _chapter_8(size: Mapping[str, Any]) -> list[Run]:
    from llmbook import pretrained

    runs = []
    # Decoding with Chapter 6's character GPT (pretrained "char-gpt-shakespeare", trained in Chapter 6): the
    # prompt "ROMEO:\n" (7 characters), sample_chars new characters, no cache (each step reads the window).
    char = _gpt(vocab_size=SHAKESPEARE_VOCAB, **pretrained.sizes("char-gpt-shakespeare", "gpu")["gpt"])
    window, prompt, new = char.config.block_size, 7, size["sample_chars"]
    per_row = window_tokens(prompt, new, window)
    # greedy (1 row), beam search (beam_width rows), five samplers (`samples` rows each), cached vs uncached
    # greedy (the cached one reads each position once), five continuations of top-p (5 rows).
    rows = 1 + size["beam_width"] + 5 * size["samples"] + 1 + 5
    runs.append(decoding_run("decoding strategies", char, calls=10 * new, tokens=rows * per_row + prompt + new))
    # KV-cache timing: a random GPT of kv_model's sizes, from one token, uncached and cached, kv_repeats times.
    timing = _gpt(vocab_size=SHAKESPEARE_VOCAB, **size["kv_model"])
    lengths, repeats = size["kv_new_tokens"], size["kv_repeats"]
    uncached = sum(window_tokens(1, n, timing.config.block_size) for n in lengths)
    runs.append(
        decoding_run(
            "KV-cache timing",
            timing,
            calls=2 * repeats * sum(lengths),
            tokens=repeats * (uncached + sum(lengths)) + timing.config.block_size,
        )
    )
    # GPT-2 small (only where its weights download, as on Colab): 5 continuations, cached, 60 tokens in all.
    gpt2 = _gpt(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    runs.append(decoding_run("GPT-2 small writes", gpt2, calls=60, tokens=5 * 60))
    # Sentiment: a word-level GPT pre-trained on the reviews, then three GPT classifiers and an LSTM fine-tuned.
    sent = size["sentiment"]
    lm = _gpt(vocab_size=sent["vocab"], block_size=sent["max_tokens"], **sent["gpt"])
    steps = sent["pretrain_steps"]
    runs.append(training_run("sentiment: GPT pre-training", lm, steps, 32, steps, 4))
    tune = sent["finetune_steps"]
    runs.append(Run("sentiment: three GPT fine-tunings", 3 * training_run("", lm, tune, 32, tune, 2).flops))
    width = sent["gpt"]["n_embd"]  # the LSTM: embedding and hidden state of the GPT's width, 4 gates
    lstm_per_token = 2 * 4 * width * (width + width)
    runs.append(Run("sentiment: LSTM fine-tuning", 3 * lstm_per_token * tune * 32 * sent["max_tokens"]))
    test_tokens = 4 * SENTIMENT_TEST_REVIEWS * sent["max_tokens"]
    runs.append(Run("sentiment: test accuracy", lm.flops_per_token(training=False) * test_tokens))
    # Translation: a Seq2Seq trained on batches of number pairs, then greedy decoding of two test sets.
    tr = size["translation"]
    model = tr["model"]
    forward = _seq2seq_forward_flops(model["n_layer"], model["n_embd"], NUMBER_WORDS, NUMERAL_POSITIONS, NUMERAL_VOCAB)
    evaluations = 5 * 2 * 2 * tr["batch_size"]  # at 0 and every steps // 4, 2 batches, both splits
    runs.append(Run("translation: Seq2Seq", forward * (3 * tr["steps"] * tr["batch_size"] + evaluations)))
    # greedy decoding: one call per target position, each rerunning the whole example (an upper bound)
    runs.append(
        Run(
            "translation: exact match",
            forward * NUMERAL_POSITIONS * 2 * tr["test"],
            2 * NUMERAL_POSITIONS * 2 * model["n_layer"] * CALL_SECONDS_PER_LAYER,
        )
    )
    # beam search on both test sets: beam_width rows per number, one call per target position
    runs.append(
        Run(
            "translation: beam search",
            forward * NUMERAL_POSITIONS * tr["beam_width"] * 2 * tr["test"],
            NUMERAL_POSITIONS * 2 * model["n_layer"] * CALL_SECONDS_PER_LAYER,
        )
    )
    runs += _chapter_8_reading_and_in_context(size)
    return runs


QA_LENGTH = 44  # the chapter's QA_LEN: six sentences of six words, the question and the answer


def _chapter_8_reading_and_in_context(size: Mapping[str, Any]) -> list[Run]:
    """Chapter 8's question answering, induction-head and few-shot runs."""
    from llmbook.applications import QA_WORDS

    qa = size["qa"]
    reader = _gpt(vocab_size=len(QA_WORDS), block_size=QA_LENGTH, **qa["model"])
    runs = [
        training_run("question answering: GPT", reader, qa["steps"], qa["batch_size"], max(1, qa["steps"] // 4), 2),
        Run("question answering: test", reader.flops_per_token(training=False) * QA_LENGTH * 2 * qa["test"]),
    ]
    # The attention-only model: per token, 4·d² weights per layer and the unembedding (d·V), plus attention
    # over the context; training triples the forward pass. Each evaluation reads 256 + 32 sequences.
    ind = size["induction"]
    d, T, V = ind["n_embd"], ind["length"], ind["vocab"]
    forward = 2 * (2 * 4 * d * d + d * V) + 2 * 2 * 2 * d * T
    evaluations = ind["steps"] // ind["eval_interval"] + 2
    tokens = 3 * ind["steps"] * ind["batch_size"] * T + evaluations * (256 + 32) * T + 2048 * T
    runs.append(Run("induction heads: attention-only model", float(forward * tokens)))
    fs = size["fewshot"]
    learner = _gpt(vocab_size=fs["vocab"], block_size=2 * fs["pairs"], **fs["model"])
    runs.append(training_run("in-context learning: GPT", learner, fs["steps"], fs["batch_size"],
                             max(1, fs["steps"] // 4), 2))  # fmt: skip
    return runs


CHAT_VOCAB = 259  # 256 bytes and <|user|>, <|assistant|>, <|end|>


def _chapter_9(size: Mapping[str, Any]) -> list[Run]:
    from llmbook import assistant

    base_sizes = size["base"]
    base = _gpt(
        vocab_size=CHAT_VOCAB,
        bias=False,
        norm="rmsnorm",
        mlp="swiglu",
        positions="rope",
        **base_sizes["gpt"],
    )
    # The comparison of a GPT-2-style and a Llama-style GPT: each stopped by compare_seconds.
    runs = [
        timed_run(f"{name} for compare_seconds", size["compare_seconds"]) for name in ("GPT-2 style", "Llama style")
    ]
    # The byte-level base model (pretrained "byte-llama-base"): trained here first, from an empty cache.
    runs.append(
        training_run(
            "base model pre-training",
            base,
            base_sizes["steps"],
            base_sizes["batch_size"],
            base_sizes["eval_interval"],
            base_sizes["eval_steps"],
        )
    )
    sft = size["sft"]
    fine_tunings = [("supervised fine-tuning", sft["steps"]), ("LoRA fine-tuning", sft["steps"])]
    if size["prompt_loss_steps"]:
        fine_tunings.append(("fine-tuning with the prompt's loss", size["prompt_loss_steps"]))
    for name, steps in fine_tunings:  # rows padded to the block: an upper bound (LoRA's backward is cheaper)
        runs.append(training_run(name, base, steps, sft["batch_size"], max(1, steps // 5), 4))
    # DPO: per step the policy trains on the chosen and the rejected replies and the reference reads both;
    # every steps // 5 (and at 0) both read the validation pairs.
    dpo = size["dpo"]
    train_tokens = 2 * dpo["batch_size"] * base.config.block_size * dpo["steps"]
    val_tokens = 6 * 2 * 2 * dpo["val_pairs"] * base.config.block_size
    per_beta = base.flops_per_token() * train_tokens + base.flops_per_token(training=False) * (
        train_tokens + val_tokens
    )
    runs.append(Run(f"DPO ({len(size['betas'])} betas)", len(size["betas"]) * per_beta))
    # Exact match by greedy generation, without a cache, up to max_new_tokens per reply: the base model, the
    # fine-tuned one (seen tasks, held-out phrasing, held-out task), prompt loss, LoRA, each DPO policy, and
    # retrieval (2 questions per document, without and with the passage).
    seen = size["n_test"] * len(assistant.TRAINED_TASKS)
    evaluated = [seen, seen, seen, size["n_test"], seen, *[seen] * len(size["betas"]), *[2 * size["documents"]] * 2]
    if size["prompt_loss_steps"]:
        evaluated.append(seen)
    new, window = size["max_new_tokens"], base.config.block_size
    # one batch per prompt length: at most one per row, at most one per possible length of a prompt
    calls = sum(min(rows, window) * new for rows in evaluated)
    runs.append(decoding_run("exact-match generation", base, calls, sum(evaluated) * new * window))
    return runs


def _chapter_10(size: Mapping[str, Any]) -> list[Run]:
    # Chapter 6's GPT (trained there) is read, never trained: the chapter moves it to the CPU, where int8
    # kernels live, and evaluates it there. Counted here at the T4's rate anyway, as an upper bound of its
    # arithmetic: the float and int8 evaluations, latency_repeats timed batches each, calibration and the
    # probes' hidden states (one forward pass per window, every layer kept).
    from . import pretrained

    recipe = pretrained.sizes("char-gpt-shakespeare", "gpu")
    gpt = _gpt(vocab_size=SHAKESPEARE_VOCAB, **recipe["gpt"])
    context = gpt.config.block_size
    forward = gpt.flops_per_token(context, training=False)
    evaluations = 2 * (1 + size["latency_repeats"]) + 1  # float and int8, timed; calibration
    tokens = (evaluations * size["eval_windows"] + size["probe_windows"]) * context
    runs = [Run("evaluations of Chapter 6's GPT (float, int8, calibration, probes)", float(forward * tokens))]
    # Distillation: two students of the GPT's recipe (its steps, batch size, context) with the student's
    # shape, one alone, one with the teacher's forward pass on every batch; then both students and the
    # teacher on distill_windows validation windows.
    student = _gpt(vocab_size=SHAKESPEARE_VOCAB, **{**recipe["gpt"], **size["student"]})
    steps, batch = recipe["steps"], recipe["batch_size"]
    alone = training_run("student on the text alone", student, steps, batch, steps, 2)
    teacher = forward * steps * batch * context
    runs += [alone, Run("student with its teacher", alone.flops + teacher)]
    scored = size["distill_windows"] * context
    runs.append(
        Run("students and teacher scored", float((2 * student.flops_per_token(training=False) + forward) * scored))
    )
    # Attention against attribution: one forward and one backward pass per window (3 forward passes' worth).
    runs.append(Run("attention and gradient x input", float(3 * forward * size["attribution_windows"] * context)))
    # Canaries: a GPT trained on the planted text (65 characters and 9 more digits), then every possible
    # secret scored after the prefix "\nmy PIN is " (11 characters) in one forward pass each.
    canary = size["canary"]
    canary_gpt = _gpt(vocab_size=SHAKESPEARE_VOCAB + 9, bias=False, **canary["gpt"])
    runs.append(
        training_run("GPT with planted canaries", canary_gpt, canary["steps"], canary["batch_size"], canary["steps"], 4)
    )
    positions = 10 ** canary["digits"] * (11 + canary["digits"] - 1)
    runs.append(Run("every candidate secret scored", float(canary_gpt.flops_per_token(training=False) * positions)))
    return runs


# Chapters 1 and 2 train no model on the GPU (n-gram counts, BPE merges: CPU work at every budget), nor does
# Chapter 11 (two small checks against PyTorch and safetensors).
CHAPTER_RUNS: dict[int, Callable[[Mapping[str, Any]], list[Run]]] = {
    1: lambda size: [],
    2: lambda size: [],
    3: _chapter_3,
    4: _chapter_4,
    5: _chapter_5,
    6: _chapter_6,
    7: _chapter_7,
    8: _chapter_8,
    9: _chapter_9,
    10: _chapter_10,
    11: lambda size: [],
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
