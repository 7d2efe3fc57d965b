"""The one training loop of the book (Chapter 6: Training a language model; used from Chapter 5 on).

Every chapter that trains a model calls :func:`train`. It works with any
``nn.Module`` whose ``forward(idx, targets)`` returns ``(logits, loss, ...)``
and any batcher with ``get_batch(split, batch_size, generator) -> (x, y)``.

What one optimisation step does, in order:

1. ``grad_accum_steps`` micro-batches, each forward under mixed precision
   (:func:`llmbook.runtime.autocast`: bf16 on Ampere and newer GPUs, fp16 with
   a :class:`torch.amp.GradScaler` on older ones such as the T4, plain fp32 on
   the CPU), loss divided by ``grad_accum_steps``, backward;
2. a stop with a clear message if the loss is NaN or infinite (the weights are
   left as they were after the last good step);
3. gradient clipping to ``grad_clip`` (the pre-clip norm is recorded);
4. an AdamW step (weight decay on matrices only) and the learning rate of the
   next step from :func:`lr_at` (linear warm-up, then cosine decay to ``min_lr``).

Every ``eval_interval`` steps the mean loss over ``eval_steps`` batches of each
split is recorded; checkpoints (:func:`save_checkpoint`) are safetensors plus
JSON, written atomically, and ``train(..., resume=path)`` continues exactly
where the saved run stopped (bit for bit on the CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from llmbook import runtime

__all__ = [
    "TokenBatcher",
    "MaskedLMBatcher",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "cosine_lr",
    "lr_at",
    "configure_optimizer",
    "evaluate",
    "train",
    "save_checkpoint",
    "load_checkpoint",
]


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the message says why and what to try."""


# --------------------------------------------------------------------------- batches


def _as_token_tensor(ids: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(ids)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {tensor.dtype}")
    return tensor.long()


class TokenBatcher:
    """Random windows of a token stream for next-token prediction.

    ``get_batch(split, batch_size, generator)`` draws ``batch_size`` start
    positions with ``generator`` (so a saved generator state replays the same
    batches) and returns ``x`` (B, T) and ``y`` (B, T) where ``y`` is ``x``
    shifted one token to the left: ``y[b, t]`` is the token after ``x[b, t]``.

    >>> batcher = TokenBatcher(torch.arange(100), torch.arange(100, 120), block_size=4)
    >>> x, y = batcher.get_batch("train", 2, torch.Generator().manual_seed(0))
    >>> bool((y[:, :-1] == x[:, 1:]).all()) and bool((y == x + 1).all())
    True
    """

    def __init__(self, train_ids: Any, val_ids: Any, block_size: int):
        if int(block_size) < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.block_size = int(block_size)
        self.data = {"train": _as_token_tensor(train_ids, "train_ids"), "val": _as_token_tensor(val_ids, "val_ids")}
        for split, ids in self.data.items():
            if len(ids) <= self.block_size:
                raise ValueError(
                    f"the {split} split has {len(ids)} tokens, but a window of block_size={self.block_size} "
                    f"needs at least {self.block_size + 1} (inputs plus one target); "
                    "use more data, a smaller block_size, or a different train/validation split"
                )

    def _split(self, split: str) -> torch.Tensor:
        if split not in self.data:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self.data[split]

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        ids = self._split(split)
        starts = torch.randint(len(ids) - self.block_size, (batch_size,), generator=generator)
        offsets = torch.arange(self.block_size + 1)
        windows = ids[starts[:, None] + offsets]  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


class MaskedLMBatcher(TokenBatcher):
    """BERT-style masked-language-model batches from a token stream.

    Each position of a random window is selected with probability
    ``mask_prob`` (at least one per row). A selected position becomes
    ``mask_token_id`` 80% of the time, a random token 10%, and stays itself
    10%; its target is the original token. Every other target is ``-100``,
    the ``ignore_index`` of :func:`torch.nn.functional.cross_entropy`.
    ``special_ids`` (e.g. the mask token itself) are never drawn as random
    replacements.
    """

    ignore_index = -100

    def __init__(
        self,
        train_ids: Any,
        val_ids: Any,
        block_size: int,
        mask_token_id: int,
        vocab_size: int,
        mask_prob: float = 0.15,
        special_ids: Iterable[int] = (),
    ):
        super().__init__(train_ids, val_ids, block_size)
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary 0..{vocab_size - 1}")
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.mask_prob = float(mask_prob)
        excluded = set(int(i) for i in special_ids) | {self.mask_token_id}
        self.replacement_ids = torch.tensor([i for i in range(self.vocab_size) if i not in excluded])

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        ids = self._split(split)
        starts = torch.randint(len(ids) - self.block_size + 1, (batch_size,), generator=generator)
        original = ids[starts[:, None] + torch.arange(self.block_size)]  # (B, T)
        selected = torch.rand(original.shape, generator=generator) < self.mask_prob  # (B, T)
        # A row with nothing selected would contribute no loss; select one position there.
        forced = torch.randint(self.block_size, (batch_size,), generator=generator)
        empty_rows = ~selected.any(dim=1)
        selected[empty_rows, forced[empty_rows]] = True
        action = torch.rand(original.shape, generator=generator)  # < .8 mask, < .9 random, else keep
        random_tokens = self.replacement_ids[
            torch.randint(len(self.replacement_ids), original.shape, generator=generator)
        ]
        inputs = original.clone()
        inputs[selected & (action < 0.8)] = self.mask_token_id
        use_random = selected & (action >= 0.8) & (action < 0.9)
        inputs[use_random] = random_tokens[use_random]
        targets = torch.where(selected, original, torch.full_like(original, self.ignore_index))
        return inputs, targets


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Everything :func:`train` needs to know besides the model and the data.

    ``min_lr`` defaults to ``lr / 10``; ``lr_decay_steps`` (where the cosine
    reaches ``min_lr``) defaults to ``max_steps``. ``max_seconds`` stops
    training once that much training time (evaluation excluded) has passed,
    for comparisons at equal wall time. ``grad_clip=None`` turns clipping off
    (the gradient norm is still recorded).
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
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_interval: int | None = None
    max_seconds: float | None = None
    progress: bool = True
    live_plot: bool = False

    def __post_init__(self):
        problems = []
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_interval", "eval_steps", "log_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a whole number >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive number, got {self.lr!r} (typical values: 1e-4 to 1e-2)")
        elif self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            problems.append(f"min_lr must be between 0 and lr={self.lr}, got {self.min_lr!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            problems.append(f"warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}")
        if self.lr_decay_steps is not None and self.lr_decay_steps < max(1, self.warmup_steps):
            problems.append(
                f"lr_decay_steps ({self.lr_decay_steps}) must be at least warmup_steps ({self.warmup_steps}) and >= 1"
            )
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be positive or None (no clipping), got {self.grad_clip!r}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            problems.append(f"eval_batch_size must be >= 1 or None (same as batch_size), got {self.eval_batch_size!r}")
        if self.checkpoint_interval is not None and self.checkpoint_interval < 1:
            problems.append(f"checkpoint_interval must be >= 1 or None, got {self.checkpoint_interval!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"max_seconds must be positive or None, got {self.max_seconds!r}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))
        self.betas = tuple(float(b) for b in self.betas)

    @property
    def resolved_min_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def resolved_decay_steps(self) -> int:
        return self.max_steps if self.lr_decay_steps is None else self.lr_decay_steps

    @property
    def tokens_per_step_factor(self) -> int:
        """Sequences per optimizer step: ``batch_size * grad_accum_steps``."""
        return self.batch_size * self.grad_accum_steps


def cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (counting from 0): linear warm-up, then cosine decay.

    During warm-up the rate climbs linearly, ``lr * (step + 1) / warmup_steps``,
    reaching ``lr`` at the last warm-up step. From ``warmup_steps`` to
    ``decay_steps`` it follows half a cosine from ``lr`` down to ``min_lr``,
    and stays at ``min_lr`` after that.

    >>> [round(cosine_lr(s, lr=1.0, min_lr=0.0, warmup_steps=2, decay_steps=6), 3) for s in range(8)]
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
    """AdamW with weight decay on matrices only.

    Parameters with two or more dimensions (the weights of linear layers and
    the embedding tables) are decayed; vectors (biases, LayerNorm gains and
    shifts) are not, because shrinking a bias or a LayerNorm gain towards zero
    is not a useful prior. Embeddings are decayed on purpose: with weight
    tying the token embedding is also the output layer's matrix. On CUDA the
    fused kernel is used.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    device = torch.device(device) if device is not None else next(model.parameters()).device
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, **extra)


# --------------------------------------------------------------------------- evaluation


def _loss_of(output: Any) -> torch.Tensor:
    if isinstance(output, (tuple, list)) and len(output) >= 2:
        loss = output[1]
    elif isinstance(output, dict) and "loss" in output:
        loss = output["loss"]
    else:
        raise TypeError(
            "the model's forward(idx, targets) must return (logits, loss, ...); "
            f"got {type(output).__name__}"
        )
    if loss is None or not torch.is_tensor(loss):
        raise TypeError("the model returned no loss: call it with targets, and make forward compute the loss")
    return loss


@torch.no_grad()
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
    was_training = model.training
    model.eval()
    means = {}
    for split in splits:
        generator = torch.Generator().manual_seed(seed)
        total = 0.0
        for _ in range(eval_steps):
            x, y = batcher.get_batch(split, batch_size, generator)
            with runtime.autocast(device) if amp else contextlib.nullcontext():
                total += float(_loss_of(model(x.to(device), y.to(device))))
        means[split] = total / eval_steps
    model.train(was_training)
    return means


# --------------------------------------------------------------------------- checkpoints


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _capture_rng(generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random state a training run depends on: tensors (for safetensors) and plain values (JSON)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    if generator is not None:
        tensors["rng.batcher"] = generator.get_state()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    plain = {
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": _jsonable(random.getstate()),
    }
    return tensors, plain


def _restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    if generator is not None and "rng.batcher" in tensors:
        generator.set_state(tensors["rng.batcher"])
    kind, keys, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as named tensors plus a JSON index (no pickle)."""
    state_dict = optimizer.state_dict()
    tensors, index = {}, {}
    for param_id, param_state in state_dict["state"].items():
        entry = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value.detach().to("cpu").contiguous().clone()
                entry[key] = {"tensor": f"optimizer.{param_id}.{key}"}
            else:
                entry[key] = {"value": _jsonable(value)}
        index[str(param_id)] = entry
    return tensors, {"state": index, "param_groups": _jsonable(state_dict["param_groups"])}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], index: dict[str, Any]) -> dict[str, Any]:
    state = {}
    for param_id, entry in index["state"].items():
        state[int(param_id)] = {
            key: tensors[spec["tensor"]] if "tensor" in spec else spec["value"] for key, spec in entry.items()
        }
    groups = []
    for group in index["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    state: dict[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    scaler: Any = None,
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path``, atomically, with no pickle.

    ``path/model.safetensors`` holds the weights (shared tensors such as tied
    embeddings stored once), ``path/optimizer.safetensors`` the optimizer's
    tensors and the random-number-generator states, and ``path/state.json``
    everything else: ``state`` (step, config, history, ...), the optimizer's
    index and hyper-parameters, the scheduler and grad-scaler states, and the
    NumPy and Python RNG states. ``rng`` is a snapshot from an earlier moment
    (the training loop passes the state at the last step boundary); by default
    the states are captured now.

    The directory is written under a temporary name beside ``path`` and then
    renamed, so a crash never leaves a half-written checkpoint at ``path``.
    """
    from safetensors.torch import save_file, save_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng_tensors, rng_plain = rng if rng is not None else _capture_rng(generator)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_model(model, str(temporary / "model.safetensors"))
        tensors = {name: t.detach().cpu().contiguous() for name, t in rng_tensors.items()}
        meta: dict[str, Any] = {"format": "llmbook-checkpoint-1", "rng": rng_plain}
        if optimizer is not None:
            optimizer_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
            tensors.update(optimizer_tensors)
        if scheduler is not None:
            meta["scheduler"] = _jsonable(scheduler.state_dict())
        if scaler is not None:
            meta["scaler"] = _jsonable(scaler.state_dict())
        meta["state"] = _jsonable(state or {})
        save_file(tensors, str(temporary / "optimizer.safetensors"))
        (temporary / "state.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        # Swap the finished directory into place: the old one is moved aside first, then removed.
        previous = None
        if path.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, previous / "checkpoint")
        os.replace(temporary, path)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return path


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    generator: torch.Generator | None = None,
    scaler: Any = None,
    restore_rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects; return its ``state``.

    Only the objects passed are restored: ``load_checkpoint(path, model)``
    loads the weights alone. ``restore_rng`` also restores the global torch,
    NumPy and Python random states (and ``generator``'s), as resuming needs.
    """
    from safetensors.torch import load_file, load_model

    path = Path(path)
    if not (path / "state.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{path} is not a checkpoint directory (it needs model.safetensors and state.json); "
            "pass the directory that save_checkpoint or train(checkpoint_dir=...) wrote"
        )
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    device = next(model.parameters()).device
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=strict, device=str(device))
    tensors = load_file(str(path / "optimizer.safetensors"))
    if optimizer is not None:
        if "optimizer" not in meta:
            raise ValueError(f"{path} holds no optimizer state (it was saved without an optimizer)")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if restore_rng:
        _restore_rng(tensors, meta["rng"], generator)
    return meta["state"]


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` holds two kinds of lists. At evaluation points: ``step``,
    ``train_loss``, ``val_loss``, ``seconds`` (training time so far,
    evaluation excluded). At logging points: ``log_step``, ``loss`` (the
    mini-batch loss), ``lr``, ``grad_norm`` (before clipping),
    ``tokens_per_second`` and ``mfu`` (model-FLOPs utilisation, 0..1).
    ``stopped`` is ``"completed"``, ``"interrupted"``, ``"time limit"`` or
    ``"non-finite loss"``.
    """

    history: dict[str, list]
    best_val_loss: float
    elapsed_seconds: float
    steps: int
    stopped: str = "completed"
    message: str = ""
    checkpoint: str | None = None

    @property
    def final_val_loss(self) -> float:
        return self.history["val_loss"][-1] if self.history["val_loss"] else float("nan")


def _empty_history() -> dict[str, list]:
    keys = ["step", "train_loss", "val_loss", "seconds", "log_step", "loss", "lr", "grad_norm"]
    return {key: [] for key in keys + ["tokens_per_second", "mfu"]}


def _training_flops_per_token(model: nn.Module, block_size: int) -> float:
    """FLOPs of one forward and backward pass per token, the numerator of MFU.

    From ``model.flops_per_token(context, training=True)`` when the model has
    it (Chapter 5's GPT and BERT); otherwise the 6N rule: 6 FLOPs per
    parameter per token (2 forward, 4 backward).
    """
    if hasattr(model, "flops_per_token"):
        import inspect

        parameters = inspect.signature(model.flops_per_token).parameters
        kwargs = {}
        if "context" in parameters:
            kwargs["context"] = block_size
        if "training" in parameters:
            kwargs["training"] = True
        return float(model.flops_per_token(**kwargs))
    return 6.0 * sum(p.numel() for p in model.parameters())


def _model_block_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for owner in (config, model):
        value = getattr(owner, "block_size", None) if owner is not None else None
        if isinstance(value, int):
            return value
    return None


class _LivePlot:
    """A loss figure redrawn in place in a notebook; the last drawing stays in the saved notebook."""

    def __init__(self):
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.plt = plt
        self.figure, self.axes = plt.subplots(figsize=(7, 3.5))
        self.handle = display(self.figure, display_id=True)

    def update(self, history: dict[str, list], title: str) -> None:
        axes = self.axes
        axes.clear()
        if history["log_step"]:
            axes.plot(history["log_step"], history["loss"], color="0.75", lw=1, label="mini-batch loss")
        axes.plot(history["step"], history["train_loss"], "o-", ms=3, label="train (eval)")
        axes.plot(history["step"], history["val_loss"], "o-", ms=3, label="validation")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("cross-entropy loss (nats/token)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper right")
        self.figure.tight_layout()
        self.handle.update(self.figure)

    def close(self) -> None:
        self.plt.close(self.figure)  # the display keeps the final picture; no second copy at cell end


def _check_compatible(model: nn.Module, batcher: Any, config: TrainConfig) -> None:
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
        raise ValueError("the model has no trainable parameters")


def train(
    model: nn.Module,
    batcher: Any,
    config: TrainConfig,
    device: torch.device | str | None = None,
    resume: str | Path | None = None,
) -> TrainResult:
    """Train ``model`` on batches from ``batcher`` as ``config`` says; see the module docstring.

    ``resume`` is a checkpoint directory (or a ``checkpoint_dir`` holding
    ``latest``): weights, optimizer, schedule, random states, batch position
    and history are restored and training continues from the saved step up
    to ``config.max_steps``. Ctrl-C (KeyboardInterrupt) stops training
    gracefully: a checkpoint is saved when ``checkpoint_dir`` is set and the
    partial result is returned.
    """
    _check_compatible(model, batcher, config)
    device = torch.device(device) if device is not None else runtime.get_device()
    model.to(device)
    model.train()

    amp_dtype = runtime.amp_dtype(device) if config.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    optimizer = configure_optimizer(model, config, device)
    # LambdaLR multiplies each group's base lr (config.lr) by this factor.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, config) / config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    eval_batch_size = config.eval_batch_size or config.batch_size
    checkpoint_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None

    history = _empty_history()
    step = 0
    training_seconds = 0.0
    if resume is not None:
        resume = Path(resume)
        if (resume / "latest" / "state.json").is_file():
            resume = resume / "latest"
        saved = load_checkpoint(resume, model, optimizer, scheduler, generator=generator, scaler=scaler)
        step = int(saved["step"])
        history = {key: list(saved["history"].get(key, [])) for key in _empty_history()}
        training_seconds = float(saved.get("training_seconds", 0.0))
    else:
        torch.manual_seed(config.seed)  # dropout masks repeat from run to run

    flops_per_token = _training_flops_per_token(model, getattr(batcher, "block_size", 1))
    peak = runtime.peak_flops(device)
    live = _LivePlot() if config.live_plot else None
    from tqdm.auto import tqdm

    bar = tqdm(total=config.max_steps, initial=step, disable=not config.progress, desc="training", leave=True)

    def checkpoint_state(at_step: int) -> dict[str, Any]:
        return {
            "step": at_step,
            "config": dataclasses.asdict(config),
            "history": history,
            "training_seconds": training_seconds,
            "batcher": batcher.state_dict() if hasattr(batcher, "state_dict") else None,
        }

    def save(at_step: int, rng=None) -> str | None:
        if checkpoint_dir is None:
            return None
        target = checkpoint_dir / "latest"
        save_checkpoint(
            target, model, optimizer, scheduler, checkpoint_state(at_step), generator=generator, scaler=scaler, rng=rng
        )
        return str(target)

    def run_eval(at_step: int) -> None:
        losses = evaluate(model, batcher, config.eval_steps, eval_batch_size, device, seed=config.seed + 1,
                          amp=config.amp)
        history["step"].append(at_step)
        history["train_loss"].append(losses["train"])
        history["val_loss"].append(losses["val"])
        history["seconds"].append(training_seconds)
        bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}")
        if live is not None:
            live.update(history, f"step {at_step}: validation loss {losses['val']:.3f}")

    start = time.perf_counter()
    stopped, message, last_checkpoint = "completed", "", None
    last_good_loss = float("nan")
    # The random states at the end of the last finished step: what a checkpoint taken on Ctrl-C must hold.
    boundary_rng = _capture_rng(generator)
    if step == 0:
        run_eval(0)
    try:
        while step < config.max_steps:
            if config.max_seconds is not None and training_seconds >= config.max_seconds:
                stopped = "time limit"
                message = f"stopped at step {step} after {training_seconds:.1f} s of training (max_seconds)"
                break
            step_start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            tokens = 0
            for _ in range(config.grad_accum_steps):
                x, y = batcher.get_batch("train", config.batch_size, generator)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with runtime.autocast(device) if amp_dtype is not None else contextlib.nullcontext():
                    loss = _loss_of(model(x, y)) / config.grad_accum_steps
                scaler.scale(loss).backward()
                loss_sum += float(loss.detach())
                tokens += x.numel()
            if not math.isfinite(loss_sum):
                optimizer.zero_grad(set_to_none=True)
                stopped = "non-finite loss"
                message = (
                    f"the training loss became {loss_sum} at step {step + 1} (last good loss: {last_good_loss:.4f}). "
                    "The weights are those after the last good step"
                    + (" and the last checkpoint was kept" if checkpoint_dir is not None else "")
                    + ". Try a lower learning rate (lr), more warm-up steps, gradient clipping, "
                    "or check the data for bad token ids."
                )
                break
            scaler.unscale_(optimizer)
            max_norm = config.grad_clip if config.grad_clip is not None else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            if not math.isfinite(grad_norm) and not scaler.is_enabled():
                optimizer.zero_grad(set_to_none=True)
                stopped = "non-finite loss"
                message = (
                    f"the gradient norm became {grad_norm} at step {step + 1} (loss {loss_sum:.4f}, last good "
                    f"loss {last_good_loss:.4f}); the weights were not updated. Try a lower learning rate (lr), "
                    "gradient clipping, or check the data."
                )
                break
            scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
            scaler.update()
            current_lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - step_start
            training_seconds += seconds
            step += 1
            last_good_loss = loss_sum
            boundary_rng = _capture_rng(generator)  # evaluation below uses its own generator and no dropout
            bar.update(1)

            if step % config.log_interval == 0 or step == config.max_steps:
                tokens_per_second = tokens / max(seconds, 1e-9)
                history["log_step"].append(step)
                history["loss"].append(loss_sum)
                history["lr"].append(current_lr)
                history["grad_norm"].append(grad_norm)
                history["tokens_per_second"].append(tokens_per_second)
                history["mfu"].append(tokens_per_second * flops_per_token / peak)
            if step % config.eval_interval == 0 or step == config.max_steps:
                run_eval(step)
            if config.checkpoint_interval is not None and (
                step % config.checkpoint_interval == 0 or step == config.max_steps
            ):
                last_checkpoint = save(step)
    except KeyboardInterrupt:
        stopped = "interrupted"
        last_checkpoint = save(step, rng=boundary_rng) if step > 0 or resume else None
        message = f"training interrupted at step {step} of {config.max_steps}" + (
            f"; checkpoint saved to {last_checkpoint} (continue with train(..., resume={last_checkpoint!r}))"
            if last_checkpoint
            else "; set checkpoint_dir to keep a checkpoint when you interrupt"
        )
    finally:
        bar.close()
        if live is not None:
            live.close()

    if stopped == "time limit":
        if not history["step"] or history["step"][-1] != step:
            run_eval(step)
        last_checkpoint = save(step) or last_checkpoint
    if message:
        print(message)
    valid = [v for v in history["val_loss"] if math.isfinite(v)]
    return TrainResult(
        history=history,
        best_val_loss=min(valid) if valid else float("nan"),
        elapsed_seconds=time.perf_counter() - start,
        steps=step,
        stopped=stopped,
        message=message,
        checkpoint=last_checkpoint,
    )
