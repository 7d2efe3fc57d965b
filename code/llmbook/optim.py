"""What a training run is set to do: its settings, the optimizer and the learning-rate schedule (Chapter 6).

:class:`TrainConfig` holds every setting of :func:`llmbook.train.train` besides the model and the
data, each checked when the config is made; :func:`configure_optimizer` builds AdamW with weight
decay on matrices only; :func:`cosine_lr` and :func:`lr_at` give the learning rate of every step
(linear warm-up, then cosine decay). Kept apart from the loop so that each file reads in one go;
everything here is also importable from :mod:`llmbook.train`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmbook.validate import finite_float, nonnegative_int, positive_int

__all__ = ["TrainConfig", "cosine_lr", "lr_at", "configure_optimizer", "apply_hyperparameters"]


@dataclass
class TrainConfig:
    """Everything :func:`train` needs to know besides the model and the data.

    ``min_lr`` defaults to ``lr / 10``; ``lr_decay_steps`` (where the cosine
    reaches ``min_lr``) defaults to ``max_steps``. ``max_seconds`` stops
    training once that much training time (evaluation excluded) has passed,
    for comparisons at equal wall time. ``grad_clip=None`` turns clipping off
    (the gradient norm is still recorded). ``checkpoint_interval`` needs a
    ``checkpoint_dir``; with only a ``checkpoint_dir`` a checkpoint is written
    at the end, on Ctrl-C and at the time limit. ``compile=True`` runs the
    training and evaluation forward passes through :func:`torch.compile`.
    """

    max_steps: int
    batch_size: int
    lr: float = 1e-3
    min_lr: float | None = None
    warmup_steps: int = 0
    lr_decay_steps: int | None = None
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    grad_accum_steps: int = 1
    eval_interval: int = 100
    eval_steps: int = 20
    eval_batch_size: int | None = None
    log_interval: int = 10
    amp: bool = True
    compile: bool = False
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_interval: int | None = None
    max_seconds: float | None = None
    progress: bool = True
    live_plot: bool = False

    def __post_init__(self):
        problems = []

        def check(name: str, test, optional: bool = False, **options) -> None:
            value = getattr(self, name)
            if not (optional and value is None):
                try:
                    setattr(self, name, test(value, name, **options))
                except ValueError as error:
                    problems.append(str(error))

        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_interval", "eval_steps", "log_interval"):
            check(name, positive_int)
        for name in ("warmup_steps", "seed"):
            check(name, nonnegative_int)
        for name in ("amp", "compile", "progress", "live_plot"):
            check(name, _flag)
        check("lr", finite_float, low=0, low_inclusive=False, hint="typical values: 1e-4 to 1e-2")
        check("weight_decay", finite_float, low=0, hint="typical values: 0 to 0.1")
        check("betas", _betas)
        lr, warmup = self.lr if isinstance(self.lr, float) else None, self.warmup_steps
        check("min_lr", finite_float, True, low=0, high=lr, hint="between 0 and lr, or None for lr / 10")
        check(
            "lr_decay_steps",
            positive_int,
            True,
            minimum=max(1, warmup if isinstance(warmup, int) else 1),
            hint="at least warmup_steps, or None for max_steps",
        )
        check("grad_clip", finite_float, True, low=0, low_inclusive=False, hint="or None for no clipping")
        check("eval_batch_size", positive_int, True, hint="or None for batch_size")
        check("checkpoint_interval", positive_int, True, hint="or None")
        check("max_seconds", finite_float, True, low=0, low_inclusive=False, hint="or None for no time limit")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            problems.append(f"checkpoint_dir must be a folder path or None, got {self.checkpoint_dir!r}")
        if self.checkpoint_interval is not None and self.checkpoint_dir is None:
            problems.append(
                f"checkpoint_interval={self.checkpoint_interval} but checkpoint_dir is None, so nothing "
                "would be saved; set checkpoint_dir to a folder (or drop checkpoint_interval)"
            )
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))

    @property
    def resolved_min_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def resolved_decay_steps(self) -> int:
        return self.max_steps if self.lr_decay_steps is None else self.lr_decay_steps


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _betas(value: Any, name: str) -> tuple[float, float]:
    try:
        if isinstance(value, (str, bytes)) or len(value) != 2:
            raise ValueError
        return tuple(finite_float(b, name, low=0, high=1, high_inclusive=False) for b in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two finite numbers in [0, 1), got {value!r} (typical: (0.9, 0.95))") from None


def cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (counting from 0): linear
    warm-up, then cosine decay.

    During warm-up the rate climbs linearly,
    ``lr * (step + 1) / warmup_steps``, reaching ``lr`` at the last warm-up
    step. From ``warmup_steps`` to ``decay_steps`` it follows half a cosine
    from ``lr`` down to ``min_lr``, and stays at ``min_lr`` after that.

    >>> [round(cosine_lr(s, lr=1.0, min_lr=0.0, warmup_steps=2,
    ...                  decay_steps=6), 3) for s in range(8)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate :func:`train` uses at optimizer step ``step`` under ``config``."""
    return cosine_lr(
        step,
        lr=config.lr,
        min_lr=config.resolved_min_lr,
        warmup_steps=config.warmup_steps,
        decay_steps=config.resolved_decay_steps,
    )


def configure_optimizer(model: nn.Module, config: TrainConfig, device: torch.device | str | None = None):
    """AdamW with weight decay on matrices only, fused where this PyTorch
    supports it.

    Parameters with two or more dimensions (the weights of linear layers and
    the embedding tables) are decayed; vectors (biases, LayerNorm gains and
    shifts) are not, because shrinking a bias or a LayerNorm gain towards
    zero is not a useful prior. Embeddings are decayed on purpose: with
    weight tying the token embedding is also the output layer's matrix. The
    fused kernel (one kernel for all parameters; CUDA, and the CPU from
    PyTorch 2.4) is used when PyTorch accepts it for the parameters' device,
    the default implementation otherwise (``device`` is accepted for
    compatibility).
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older PyTorch, or a device without the fused kernel
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def apply_hyperparameters(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int) -> None:
    """Put ``config``'s learning rate for ``step``, betas and weight decay into the optimizer's groups."""
    for index, group in enumerate(optimizer.param_groups):
        group["lr"] = lr_at(step, config)
        group["betas"] = config.betas
        group["weight_decay"] = config.weight_decay if index == 0 else 0.0
