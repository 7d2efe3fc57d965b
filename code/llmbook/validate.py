"""One way to check arguments, with one wording for each kind of mistake (used by every chapter's code).

Every public function and config of :mod:`llmbook` checks what it is given
with these helpers, so a bad value always produces a :class:`ValueError` (or
:class:`TypeError` for the wrong kind of object) whose message names the
argument, the value it got, and what to pass instead:

>>> positive_int(0, "batch_size")
Traceback (most recent call last):
...
ValueError: batch_size must be a whole number >= 1, got 0
>>> finite_float(float("nan"), "lr", low=0, low_inclusive=False, hint="typical values: 1e-4 to 1e-2")
Traceback (most recent call last):
...
ValueError: lr must be a finite number > 0, got nan (typical values: 1e-4 to 1e-2)
>>> token_ids(torch.tensor([[1, 5]]), vocab_size=4).shape
Traceback (most recent call last):
...
ValueError: idx contains token id 5, outside the vocabulary 0..3; encode the text with the tokenizer the model was built for (its vocab_size must match)
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch

__all__ = ["pad_id", "positive_int", "nonnegative_int", "finite_float", "probability", "token_ids", "one_of"]


def _with_hint(message: str, hint: str) -> str:
    return f"{message} ({hint})" if hint else message


def positive_int(value: Any, name: str, *, minimum: int = 1, hint: str = "") -> int:
    """``value`` as an ``int`` if it is a whole number >= ``minimum`` (booleans and floats are refused).

    >>> positive_int(3, "n_layer")
    3
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ValueError(_with_hint(f"{name} must be a whole number >= {minimum}, got {value!r}", hint))
    return int(value)


def nonnegative_int(value: Any, name: str, *, hint: str = "") -> int:
    """``value`` as an ``int`` if it is a whole number >= 0.

    >>> nonnegative_int(0, "warmup_steps")
    0
    """
    return positive_int(value, name, minimum=0, hint=hint)


def finite_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    hint: str = "",
) -> float:
    """``value`` as a ``float`` if it is a finite real number inside the given range.

    NaN and infinities are always refused: one of them in a learning rate or
    a weight decay turns every weight into NaN at the first step.

    >>> finite_float(0.1, "dropout", low=0, high=1, high_inclusive=False)
    0.1
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        if torch.is_tensor(value) and value.numel() == 1 and value.is_floating_point():
            value = value.item()
        else:
            raise ValueError(_with_hint(f"{name} must be a number, got {value!r}", hint))
    number = float(value)
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high:g}")
    wanted = f"a finite number {' and '.join(parts)}" if parts else "a finite number"
    out_of_range = (
        not math.isfinite(number)
        or (low is not None and (number < low if low_inclusive else number <= low))
        or (high is not None and (number > high if high_inclusive else number >= high))
    )
    if out_of_range:
        raise ValueError(_with_hint(f"{name} must be {wanted}, got {value!r}", hint))
    return number


def probability(value: Any, name: str, *, allow_one: bool = False, hint: str = "") -> float:
    """``value`` as a ``float`` in [0, 1) (or [0, 1] with ``allow_one``), e.g. a dropout rate.

    >>> probability(0.2, "dropout")
    0.2
    """
    return finite_float(value, name, low=0.0, high=1.0, high_inclusive=allow_one, hint=hint)


def one_of(value: Any, name: str, choices: tuple | list) -> Any:
    """``value`` if it is one of ``choices``.

    >>> one_of("val", "split", ("train", "val"))
    'val'
    """
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def token_ids(
    ids: Any,
    vocab_size: int,
    *,
    name: str = "idx",
    dims: int | tuple[int, ...] = 2,
    block_size: int | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Check a tensor of token ids and return it; every token-id check of the library goes through here.

    ``dims`` is the number of dimensions allowed (2 for a batch ``(B, T)``,
    1 for one sequence, or a tuple of both). ``block_size`` bounds the last
    dimension (a model's context length). ``ignore_index`` (e.g. ``-100`` for
    targets) is accepted besides ids in ``0..vocab_size-1``.

    >>> token_ids(torch.tensor([0, 3, 1]), vocab_size=4, dims=1).tolist()
    [0, 3, 1]
    """
    if is_compiling():  # inside torch.compile the checks would break the graph and wait for the GPU every step
        return ids
    if not torch.is_tensor(ids):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}; use torch.tensor(ids)")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}; convert with {name}.long()")
    allowed = (dims,) if isinstance(dims, int) else tuple(dims)
    if ids.dim() not in allowed:
        if 2 in allowed and ids.dim() == 1:
            fix = f"use {name}.unsqueeze(0) for a single sequence"
        elif 1 in allowed and ids.dim() == 2 and ids.shape[0] == 1:
            fix = f"use {name}[0] for the single sequence of the batch"
        else:
            fix = "reshape it to (batch, time)" if 2 in allowed else "pass one sequence of ids"
        shape = "(batch, time)" if allowed == (2,) else "(time,)" if allowed == (1,) else "(time,) or (batch, time)"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(ids.shape)}; {fix}")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}); pass at least one token id")
    if block_size is not None and ids.shape[-1] > block_size:
        raise ValueError(
            f"{name} has {ids.shape[-1]} positions but the model's block_size (context length) is {block_size}; "
            f"crop to the last {block_size} tokens with {name}[..., -{block_size}:]"
        )
    valid = (ids >= 0) & (ids < vocab_size)
    if ignore_index is not None:
        valid |= ids == ignore_index
    if not bool(valid.all()):
        bad = int(ids[~valid].flatten()[0])
        also = f", or {ignore_index} for positions the loss ignores" if ignore_index is not None else ""
        raise ValueError(
            f"{name} contains token id {bad}, outside the vocabulary 0..{vocab_size - 1}{also}; "
            "encode the text with the tokenizer the model was built for (its vocab_size must match)"
        )
    return ids


def class_ids(
    labels: Any, num_classes: int, *, batch_size: int, name: str = "labels", count_name: str = "num_classes"
) -> torch.Tensor:
    """Check the class labels of a batch (one integer in ``0..num_classes-1`` per sequence) and return them.

    ``count_name`` names the model's setting that ``num_classes`` comes from (e.g. ``n_segments``).

    >>> class_ids(torch.tensor([0, 2]), num_classes=3, batch_size=2).tolist()
    [0, 2]
    """
    if not torch.is_tensor(labels):
        raise TypeError(
            f"{name} must be a torch.Tensor of class ids, got {type(labels).__name__}; use torch.tensor(labels)"
        )
    if labels.shape != (batch_size,):
        raise ValueError(f"{name} must have shape ({batch_size},), one class per sequence, got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}; convert with {name}.long()")
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"{name} contain {int(labels[bad][0])}, outside 0..{num_classes - 1}: the model was built with "
            f"{count_name}={num_classes}"
        )
    return labels


def is_compiling() -> bool:
    """True while torch.compile traces the code (checks are made before compiling, in eager mode)."""
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(check()) if check is not None else False


def pad_id(value: Any, vocab_size: int) -> int | None:
    """A config's padding id: None (no padding) or an id inside the vocabulary.

    >>> pad_id(0, vocab_size=10)
    0
    """
    if value is None:
        return None
    value = nonnegative_int(value, "pad_id", hint="the padding token's id, or None for no padding")
    if value >= vocab_size:
        raise ValueError(
            f"pad_id {value} is outside the vocabulary 0..{vocab_size - 1}; "
            "use the tokenizer's padding id (or None for no padding)"
        )
    return value
