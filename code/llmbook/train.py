"""The one training loop of the book (Chapter 6: Training a language model; used from Chapter 5 on).

Every chapter that trains a model calls :func:`train`. It works with any
``nn.Module`` whose ``forward(idx, targets)`` returns ``(logits, loss, ...)``
and any batcher with ``get_batch(split, batch_size, generator) -> (x, y)``
(:class:`llmbook.data.TokenBatcher`, :class:`llmbook.data.MaskedLMBatcher`).

One optimisation step is :func:`train_step`: ``grad_accum_steps`` micro-batches
forward under mixed precision (:func:`llmbook.runtime.autocast`: bf16 on Ampere
and newer GPUs, fp16 with a :class:`torch.amp.GradScaler` on older ones such as
the T4, plain fp32 on the CPU) and backward, a refusal to step if the loss or
the gradient is not finite, gradient clipping to ``grad_clip`` (the pre-clip
norm is recorded) and an AdamW step (weight decay on matrices only). The
learning rate of each step comes from :func:`lr_at` (linear warm-up, then
cosine decay to ``min_lr``).

Around it :func:`train` evaluates, logs, draws and saves checkpoints
(:mod:`llmbook.checkpoint`) from which ``train(..., resume=path)`` continues
exactly where the saved run stopped (bit for bit on the CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmbook import runtime
from llmbook.checkpoint import (
    CheckpointError,
    find_checkpoint,
    jsonable,
    load_checkpoint,
    rng_record,
    save_checkpoint,
    save_step,
    snapshot_rng,
)
from llmbook.data import MaskedLMBatcher, TokenBatcher  # their home is llmbook.data; kept importable from here
from llmbook.optim import TrainConfig, apply_hyperparameters, configure_optimizer, cosine_lr, lr_at  # ditto
from llmbook.viz import LiveLossPlot

__all__ = [
    "TokenBatcher",
    "MaskedLMBatcher",
    "TrainConfig",
    "TrainResult",
    "StepResult",
    "cosine_lr",
    "lr_at",
    "configure_optimizer",
    "train_step",
    "evaluate",
    "train",
    "save_checkpoint",
    "load_checkpoint",
]

IGNORE_INDEX = -100  # targets with this value do not count (cross_entropy's ignore_index)


# --------------------------------------------------------------------------- one step


def _loss_of(output: Any) -> torch.Tensor:
    if isinstance(output, (tuple, list)) and len(output) >= 2:
        loss = output[1]
    elif isinstance(output, dict) and "loss" in output:
        loss = output["loss"]
    else:
        raise TypeError(
            f"the model's forward(idx, targets) must return (logits, loss, ...); got {type(output).__name__}"
        )
    if loss is None or not torch.is_tensor(loss):
        raise TypeError("the model returned no loss: call it with targets, and make forward compute the loss")
    return loss


@dataclass
class StepResult:
    """What one :func:`train_step` did: the mean loss over valid targets, the pre-clip gradient norm, ..."""

    loss: float
    grad_norm: float
    lr: float
    tokens: int
    finite: bool = True  # False: the loss or the gradient was NaN or infinite and no step was taken


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    amp: bool = True,
) -> StepResult:
    """One optimizer step on the micro-batches ``batches`` = [(x, y), ...]:
    forward, backward, clip, step.

    Each micro-batch's mean loss is weighted by its share of the valid
    targets (those != -100), so the gradient is that of the mean over the
    targets of all micro-batches together, as if they were one batch. A
    model with ``no_sync`` (DDP, FSDP) exchanges gradients only on the last
    micro-batch. No weight changes if the loss or the gradient norm is not
    finite.
    """
    counts = [(y != IGNORE_INDEX).sum() for _, y in batches]
    total = sum(counts)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for i, ((x, y), count) in enumerate(zip(batches, counts)):
        last = i == len(batches) - 1
        with model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext():
            with runtime.autocast(x.device) if amp else contextlib.nullcontext():
                loss = _loss_of(model(x, y)) * (count / total)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        loss_sum = loss_sum + loss.detach()
    loss_value, lr = float(loss_sum), optimizer.param_groups[0]["lr"]
    tokens = sum(x.numel() for x, _ in batches)
    if not math.isfinite(loss_value):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_value, math.nan, lr, tokens, finite=False)
    if scaler is not None:
        scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip is not None else math.inf
    if hasattr(model, "clip_grad_norm_"):  # FSDP computes the norm across its shards
        grad_norm = float(model.clip_grad_norm_(max_norm))
    else:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    if not math.isfinite(grad_norm) and not (scaler is not None and scaler.is_enabled()):
        optimizer.zero_grad(set_to_none=True)  # (with fp16 loss scaling, scaler.step skips such a step itself)
        return StepResult(loss_value, grad_norm, lr, tokens, finite=False)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return StepResult(loss_value, grad_norm, lr, tokens)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: nn.Module,
    batcher: Any,
    eval_steps: int,
    batch_size: int,
    device: torch.device | str | None = None,
    seed: int = 1,
    splits: Iterable[str] = ("train", "val"),
    amp: bool = True,
) -> dict[str, float]:
    """Mean loss over ``eval_steps`` batches of each split, in eval mode (no dropout).

    The batches come from a fresh generator seeded with ``seed``, so every
    evaluation of a run looks at the same batches (a smoother curve) and the
    training generator is left untouched.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    means = {}
    with runtime.eval_mode(model):
        for split in splits:
            generator = torch.Generator().manual_seed(seed)
            total = 0.0
            for _ in range(eval_steps):
                x, y = batcher.get_batch(split, batch_size, generator)
                with runtime.autocast(device) if amp else contextlib.nullcontext():
                    total += float(_loss_of(model(x.to(device), y.to(device))))
            means[split] = total / eval_steps
    return means


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` holds two kinds of lists. At evaluation points: ``step``,
    ``train_loss``, ``val_loss``, ``seconds`` (training time so far,
    evaluation excluded). At logging points: ``log_step``, ``loss`` (the
    mini-batch loss), ``lr``, ``grad_norm`` (before clipping), and
    ``tokens_per_second`` and ``mfu`` (model-FLOPs utilisation, 0..1), both
    from all tokens so far over all training time so far. ``tokens_per_second``
    and ``mfu`` of the result are those of the whole run (after a resume: of
    all its parts). ``stopped`` is ``"completed"``, ``"interrupted"``,
    ``"time limit"``, ``"non-finite loss"`` or ``"non-finite weights"``.
    """

    history: dict[str, list]
    best_val_loss: float
    elapsed_seconds: float
    steps: int
    stopped: str = "completed"
    message: str = ""
    checkpoint: str | None = None
    training_seconds: float = 0.0
    tokens: int = 0
    tokens_per_second: float = math.nan
    mfu: float = math.nan

    @property
    def final_val_loss(self) -> float:
        return self.history["val_loss"][-1] if self.history["val_loss"] else float("nan")


HISTORY_KEYS = tuple("step train_loss val_loss seconds log_step loss lr grad_norm tokens_per_second mfu".split())


def _model_block_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for owner in (config, model):
        value = getattr(owner, "block_size", None) if owner is not None else None
        if isinstance(value, int):
            return value
    return None


def _check_compatible(model: nn.Module, batcher: Any, config: TrainConfig) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be a TrainConfig, got {type(config).__name__}; use TrainConfig(max_steps=..., batch_size=...)"
        )
    if not hasattr(batcher, "get_batch"):
        raise TypeError(f"the batcher must have get_batch(split, batch_size, generator); got {type(batcher).__name__}")
    model_block = _model_block_size(model)
    data_block = getattr(batcher, "block_size", None)
    if model_block is not None and isinstance(data_block, int) and data_block > model_block:
        raise ValueError(
            f"the batcher's block_size ({data_block}) is larger than the model's block_size ({model_block}): "
            "the model has no positions for the extra tokens; use a smaller block_size in the batcher "
            "or build the model with a larger one"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters; set requires_grad=True on what should learn")


_NOT_HYPERPARAMETERS = ("progress", "live_plot", "checkpoint_dir", "checkpoint_interval")  # not printed on resume


class _Loop:
    """One call of :func:`train`: what it trains with and what a checkpoint of it holds, all as attributes."""

    def __init__(self, model: nn.Module, batcher: Any, config: TrainConfig, device: torch.device):
        self.model, self.batcher, self.config, self.device = model, batcher, config, device
        self.optimizer = configure_optimizer(model, config, device)
        fp16 = config.amp and runtime.amp_dtype(device) == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)  # loss scaling for fp16 only
        self.generator = torch.Generator().manual_seed(config.seed)  # draws the training batches
        self.forward = torch.compile(model) if config.compile else model
        self.history = {key: [] for key in HISTORY_KEYS}
        self.step, self.seconds, self.tokens, self.last_loss = 0, 0.0, 0, math.nan  # seconds: training time only
        self.stopped, self.message, self.checkpoint, self.live, self.bar = "completed", "", None, None, None
        self.rng = None  # the random states after the last finished step (what a Ctrl-C checkpoint stores)
        flops = runtime.training_flops_per_token(model, getattr(batcher, "block_size", 1))
        self.peak_tokens_per_second = runtime.peak_flops(device) / flops

    def resume(self, path: Path) -> None:
        """Restore from a checkpoint. The new config wins; the settings that changed are printed."""
        saved = load_checkpoint(path, self.model, self.optimizer, generator=self.generator, scaler=self.scaler)
        self.step, self.seconds = int(saved["step"]), float(saved.get("training_seconds", 0.0))
        self.tokens = int(saved.get("tokens", 0))
        self.history = {key: list(saved.get("history", {}).get(key, [])) for key in HISTORY_KEYS}
        if saved.get("batcher") is not None and hasattr(self.batcher, "load_state_dict"):
            self.batcher.load_state_dict(saved["batcher"])
        old, new = saved.get("config", {}), jsonable(dataclasses.asdict(self.config))
        changed = [
            f"{k} {old[k]!r} -> {new[k]!r}"
            for k in new
            if k not in _NOT_HYPERPARAMETERS and old.get(k, new[k]) != new[k]
        ]
        if changed:
            # one changed setting per line, so that the lines stay short
            print(f"resuming at step {self.step}; changed since the checkpoint (new values apply):")
            for change in changed:
                print(f"  {change}")

    def state(self) -> dict[str, Any]:
        batcher = self.batcher.state_dict() if hasattr(self.batcher, "state_dict") else None
        run = dict(step=self.step, history=self.history, training_seconds=self.seconds, tokens=self.tokens)
        return dict(run, config=dataclasses.asdict(self.config), batcher=batcher)

    def stop(self, why: str, message: str) -> None:
        self.stopped, self.message = why, message

    def run_step(self) -> None:
        """One optimizer step with its bookkeeping: time, tokens, log, evaluation, checkpoint."""
        config, device = self.config, self.device
        if config.max_seconds is not None and self.seconds >= config.max_seconds:
            return self.stop("time limit", f"stopped at step {self.step} after {self.seconds:.1f} s of training")
        start = time.perf_counter()
        batches = [
            self.batcher.get_batch("train", config.batch_size, self.generator) for _ in range(config.grad_accum_steps)
        ]
        batches = [(x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in batches]
        apply_hyperparameters(self.optimizer, config, self.step)
        result = train_step(
            self.forward, self.optimizer, batches, scaler=self.scaler, grad_clip=config.grad_clip, amp=config.amp
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if not result.finite:
            return self.stop("non-finite loss", self.nonfinite_message(result))
        self.seconds += time.perf_counter() - start
        self.step, self.tokens, self.last_loss = self.step + 1, self.tokens + result.tokens, result.loss
        self.rng = snapshot_rng(self.generator)  # the random states after the last finished step
        self.bar.update(1)
        last = self.step == config.max_steps
        if last or self.step % config.log_interval == 0:
            self.log(result)
        if last or self.step % config.eval_interval == 0:
            self.evaluate()
        if last or (config.checkpoint_interval and self.step % config.checkpoint_interval == 0):
            self.save()

    def record(self, **values: float) -> None:
        for key, value in values.items():
            self.history[key].append(value)

    def log(self, result: StepResult) -> None:
        rate = self.tokens / max(self.seconds, 1e-9)  # tokens per second: all tokens over all training time
        mfu = rate / self.peak_tokens_per_second
        self.record(log_step=self.step, loss=result.loss, lr=result.lr, grad_norm=result.grad_norm, mfu=mfu)
        self.record(tokens_per_second=rate)

    def evaluate(self) -> None:
        config = self.config
        batch_size = config.eval_batch_size or config.batch_size
        losses = evaluate(
            self.forward, self.batcher, config.eval_steps, batch_size, self.device, config.seed + 1, amp=config.amp
        )
        self.record(step=self.step, train_loss=losses["train"], val_loss=losses["val"], seconds=self.seconds)
        self.bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}")
        if self.live is not None:
            self.live.update(self.history, f"step {self.step}: validation loss {losses['val']:.3f}")

    def save(self, rng=None) -> None:
        """Save in ``checkpoint_dir`` (with ``rng``, the random states to store); non-finite weights stop the run."""
        if self.config.checkpoint_dir is not None:
            objects = dict(optimizer=self.optimizer, generator=self.generator, scaler=self.scaler, rng=rng)
            try:
                path = save_step(self.config.checkpoint_dir, self.step, self.model, state=self.state(), **objects)
                self.checkpoint = str(path)
            except CheckpointError as error:
                self.stop("non-finite weights", f"{error} (the last good one: {self.checkpoint})")

    def nonfinite_message(self, result: StepResult) -> str:
        what = (
            f"loss became {result.loss}"
            if not math.isfinite(result.loss)
            else f"gradient norm became {result.grad_norm}"
        )
        kept = f" and the last checkpoint ({self.checkpoint}) was kept" if self.checkpoint else ""
        return (
            f"the training {what} at step {self.step + 1} (last good loss: {self.last_loss:.4f}). The weights are "
            f"those after the last good step{kept}. Try a lower learning rate (lr), more warm-up steps, gradient "
            "clipping, or check the data for bad token ids (or a batch whose targets are all -100)."
        )

    def interrupted(self, save: bool) -> None:
        self.stopped = "interrupted"
        if save:
            self.save(rng=rng_record(self.rng))
        self.message = f"training interrupted at step {self.step} of {self.config.max_steps}; " + (
            f"checkpoint saved to {self.checkpoint} (continue with train(..., resume={self.checkpoint!r}))"
            if self.checkpoint
            else "set checkpoint_dir to keep a checkpoint when you interrupt"
        )

    def result(self, elapsed: float) -> TrainResult:
        best = min((v for v in self.history["val_loss"] if math.isfinite(v)), default=math.nan)
        rate = self.tokens / self.seconds if self.seconds > 0 else math.nan
        run = (self.history, best, elapsed, self.step, self.stopped, self.message, self.checkpoint, self.seconds)
        return TrainResult(*run, self.tokens, rate, rate / self.peak_tokens_per_second)


def train(
    model: nn.Module,
    batcher: Any,
    config: TrainConfig,
    device: torch.device | str | None = None,
    resume: str | Path | None = None,
) -> TrainResult:
    """Train ``model`` on batches from ``batcher`` as ``config`` says, one :func:`train_step` at a time.

    ``resume`` is a checkpoint directory or a run's ``checkpoint_dir``:
    weights, optimizer, random states, batch position and history are
    restored and training continues from the saved step up to
    ``config.max_steps``. The new ``config`` wins: the learning-rate
    schedule, betas and weight decay come from it, and the settings that
    differ from the saved run are printed. Ctrl-C stops training after the
    current step: a checkpoint is saved when ``checkpoint_dir`` is set and
    the partial result is returned.
    """
    _check_compatible(model, batcher, config)
    device = torch.device(device) if device is not None else runtime.get_device()
    model.to(device).train()
    loop = _Loop(model, batcher, config, device)
    if resume is not None:
        loop.resume(find_checkpoint(resume))
    else:
        torch.manual_seed(config.seed)  # dropout masks repeat from run to run
    from tqdm.auto import tqdm

    loop.live = LiveLossPlot() if config.live_plot else None
    loop.bar = tqdm(total=config.max_steps, initial=loop.step, disable=not config.progress, desc="training")
    start, loop.rng = time.perf_counter(), snapshot_rng(loop.generator)  # after resuming and seeding
    if loop.step == 0:
        loop.evaluate()
    try:
        with runtime.stop_after_step_on_ctrl_c() as ctrl_c:
            while loop.step < config.max_steps and loop.stopped == "completed":
                if ctrl_c.is_set():
                    raise KeyboardInterrupt
                loop.run_step()
    except KeyboardInterrupt:
        loop.interrupted(save=loop.step > 0 or resume is not None)
    finally:
        if loop.stopped == "time limit":  # a planned stop: the bar ends full (green), not red at 1%
            loop.bar.total = loop.bar.n
        loop.bar.close()
        if loop.live is not None:
            loop.live.close()
    if loop.stopped == "time limit":
        if not loop.history["step"] or loop.history["step"][-1] != loop.step:
            loop.evaluate()
        loop.save()
    if loop.message:
        print(loop.message)
    return loop.result(time.perf_counter() - start)
