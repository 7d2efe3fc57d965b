"""Recurrent baselines (Chapter 6: Training a language model; Chapter 8: Applications).

Before the Transformer, language models were recurrent networks: an LSTM
(Hochreiter & Schmidhuber, 1997) reads one token at a time and carries a
fixed-size state forward. :class:`LSTMLanguageModel` has the same interface
as the book's GPT (``forward(idx, targets) -> (logits, loss)``,
``num_params()``, ``config.block_size``), so :func:`llmbook.train.train` and
:func:`llmbook.generate.generate` work with it unchanged; Chapter 6 races it
against a GPT of equal size. :class:`LSTMClassifier` (embedding, LSTM, linear)
is the sentiment baseline of Chapter 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import validate

__all__ = [
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMClassifierConfig",
    "LSTMClassifier",
    "lstm_num_params",
    "hidden_dim_for_params",
]


@dataclass
class LSTMConfig:
    """Sizes of an :class:`LSTMLanguageModel`: ``LSTMLanguageModel(LSTMConfig(65, n_embd=64, hidden_dim=256))``.

    ``n_embd`` is the width of the token vectors (the name GPT's config uses),
    ``hidden_dim`` the size of the LSTM's state. ``block_size`` is not a limit
    of the LSTM itself (it reads any length); it is the longest training window
    and the context that :func:`llmbook.generate.generate` keeps when sampling,
    like GPT's.
    """

    vocab_size: int
    n_embd: int
    hidden_dim: int
    num_layers: int = 1
    dropout: float = 0.0
    block_size: int = 256

    def __post_init__(self):
        for name in ("vocab_size", "n_embd", "hidden_dim", "num_layers", "block_size"):
            validate.positive_int(getattr(self, name), name)
        validate.probability(self.dropout, "dropout", hint="a fraction such as 0.1; 0 turns dropout off")


@dataclass
class LSTMClassifierConfig:
    """Sizes of an :class:`LSTMClassifier` (``pad_id``: the padding token, skipped; None: no padding)."""

    vocab_size: int
    n_embd: int
    hidden_dim: int
    num_classes: int = 2
    num_layers: int = 1
    dropout: float = 0.0
    pad_id: int | None = 0
    bidirectional: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "n_embd", "hidden_dim", "num_layers"):
            validate.positive_int(getattr(self, name), name)
        validate.positive_int(
            self.num_classes, "num_classes", minimum=2, hint="a classifier needs at least two classes"
        )
        validate.probability(self.dropout, "dropout", hint="a fraction such as 0.1; 0 turns dropout off")
        validate.pad_id(self.pad_id, self.vocab_size)
        if not isinstance(self.bidirectional, bool):
            raise TypeError(f"bidirectional must be True or False, got {self.bidirectional!r}")


def _check_config(config, expected: type, model: str, extra: tuple = (), options: dict | None = None) -> None:
    if not isinstance(config, expected) or extra or options:
        given = ", ".join([repr(config), *map(repr, extra), *(f"{k}={v!r}" for k, v in (options or {}).items())])
        raise TypeError(
            f"{model} is built from one {expected.__name__}, got ({given}); "
            f"use {model}({expected.__name__}(vocab_size=..., n_embd=..., hidden_dim=...))"
        )


def lstm_num_params(vocab_size: int, n_embd: int, hidden_dim: int, num_layers: int) -> int:
    """Parameters of an :class:`LSTMLanguageModel`, by formula.

    Each LSTM layer has four gates, each with an input matrix, a recurrent
    matrix and (in PyTorch) two bias vectors: ``4 * (h * (in + h) + 2h)``,
    where ``in`` is ``n_embd`` for the first layer and ``h`` after. Plus the
    embedding ``V * e`` and the output layer ``h * V + V``.

    >>> lstm_num_params(vocab_size=10, n_embd=4, hidden_dim=8, num_layers=1)
    578
    """
    e, h, V = n_embd, hidden_dim, vocab_size
    recurrent = 4 * (h * (e + h) + 2 * h) + (num_layers - 1) * 4 * (h * (h + h) + 2 * h)
    return V * e + recurrent + h * V + V


def hidden_dim_for_params(target_params: int, vocab_size: int, n_embd: int, num_layers: int) -> int:
    """The hidden size whose :func:`lstm_num_params` comes closest to ``target_params``.

    Used to build an LSTM with as many parameters as a given GPT.
    """
    for value, name in (
        (target_params, "target_params"),
        (vocab_size, "vocab_size"),
        (n_embd, "n_embd"),
        (num_layers, "num_layers"),
    ):
        validate.positive_int(value, name)
    smallest = lstm_num_params(vocab_size, n_embd, 1, num_layers)
    if target_params < smallest:
        raise ValueError(
            f"target_params={target_params} is too few for an LSTM with vocab_size={vocab_size} and "
            f"n_embd={n_embd}: even hidden_dim=1 needs {smallest}; lower n_embd or aim higher"
        )
    # lstm_num_params is a quadratic a·h² + b·h + c in the hidden size h: solve it, then take the closer
    # of the two whole numbers around the root (the smaller one on a tie).
    a = 4 + 8 * (num_layers - 1)
    b = 4 * n_embd + 8 + 8 * (num_layers - 1) + vocab_size
    c = vocab_size * n_embd + vocab_size - target_params
    root = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    candidates = sorted({max(1, math.floor(root) + offset) for offset in (-1, 0, 1, 2)})
    return min(candidates, key=lambda h: abs(lstm_num_params(vocab_size, n_embd, h, num_layers) - target_params))


class LSTMLanguageModel(nn.Module):
    """Embedding, a stack of LSTM layers, and a linear layer to next-token logits.

    ``forward(idx, targets=None, state=None, return_state=False)``: ``idx``
    (B, T) token ids; returns ``(logits (B, T, V), loss)`` with the mean
    cross-entropy when ``targets`` (B, T) are given (``-100`` is ignored), and
    also the final ``(h, c)`` state when ``return_state=True`` (to continue a
    long text chunk by chunk).
    """

    def __init__(self, config: LSTMConfig, *extra, **options):
        super().__init__()
        _check_config(
            config, LSTMConfig, "LSTMLanguageModel", extra, options
        )  # e.g. the old (vocab_size, embed_dim, ...)
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        # PyTorch applies dropout between stacked layers only; the outer dropouts are ours.
        self.lstm = nn.LSTM(
            config.n_embd,
            config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_dim, config.vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.embedding.weight, std=0.1)
        for name, parameter in self.lstm.named_parameters():
            if "bias" in name:
                nn.init.zeros_(parameter)
                # Forget-gate bias 1 (the second quarter in PyTorch's i, f, g, o order): remember by default.
                hidden = self.config.hidden_dim
                with torch.no_grad():
                    parameter[hidden : 2 * hidden].fill_(0.5)  # two biases per gate: 0.5 + 0.5 = 1
        # A small output layer: logits near 0 at the start, so the first loss is close to ln V.
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state=None, return_state: bool = False):
        idx = validate.token_ids(idx, self.config.vocab_size).long()
        if targets is not None:
            targets = validate.token_ids(targets, self.config.vocab_size, name="targets", ignore_index=-100).long()
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        if state is not None:
            self._check_state(state, idx.shape[0])
        x = self.dropout(self.embedding(idx))  # (B, T, e)
        outputs, new_state = self.lstm(x, state)  # (B, T, h); state: two (layers, B, h)
        logits = self.head(self.dropout(outputs))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        if return_state:
            return logits, loss, new_state
        return logits, loss

    def _check_state(self, state, batch_size: int) -> None:
        """``state`` must be the ``(h, c)`` pair a previous call returned, each (num_layers, B, hidden_dim)."""
        if not isinstance(state, (tuple, list)) or len(state) != 2 or not all(torch.is_tensor(s) for s in state):
            raise TypeError(
                f"state must be the (h, c) pair of tensors returned with return_state=True, got "
                f"{type(state).__name__}" + (f" of {len(state)} items" if isinstance(state, (tuple, list)) else "")
            )
        expected = (self.config.num_layers, batch_size, self.config.hidden_dim)
        for name, tensor in zip("hc", state):
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"state {name} must have shape (num_layers, batch, hidden_dim) = {expected}, got "
                    f"{tuple(tensor.shape)}; pass the state this model returned for a batch of the same size"
                )

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (without the input embedding table when ``non_embedding``)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.embedding.weight.numel() if non_embedding else total

    def flops_per_token(self, context: int | None = None, training: bool = True) -> int:
        """Matrix-multiply FLOPs per token: 2 per weight forward (embedding look-up excluded), x3 for training."""
        forward = 2 * (self.num_params() - self.embedding.weight.numel())
        return 3 * forward if training else forward


class LSTMClassifier(nn.Module):
    """Embedding, LSTM, linear: a sequence classifier (the sentiment baseline of Chapter 8).

    The class scores are computed from the LSTM state after the last real
    token of each sequence: padding (``pad_id``) at the end is skipped by
    packing the sequences. ``forward(idx, targets=None, lengths=None)``
    returns ``(logits (B, num_classes), loss)``.
    """

    def __init__(self, config: LSTMClassifierConfig, *extra, **options):
        super().__init__()
        _check_config(config, LSTMClassifierConfig, "LSTMClassifier", extra, options)
        self.config = config
        self.pad_id = config.pad_id
        self.num_classes = config.num_classes
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd, padding_idx=config.pad_id)
        self.lstm = nn.LSTM(
            config.n_embd,
            config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_dim * (2 if config.bidirectional else 1), config.num_classes)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, lengths: torch.Tensor | None = None):
        idx = validate.token_ids(idx, self.config.vocab_size).long()
        B, T = idx.shape
        if lengths is None:
            if self.pad_id is None:
                lengths = torch.full((B,), T)
            else:
                lengths = (idx != self.pad_id).sum(dim=1)
        else:
            lengths = torch.as_tensor(lengths)
            if lengths.shape != (B,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
                raise ValueError(
                    f"lengths must be {B} whole numbers, one per sequence, got {lengths.dtype} of shape "
                    f"{tuple(lengths.shape)}"
                )
            outside = (lengths < 1) | (lengths > T)
            if bool(outside.any()):
                raise ValueError(
                    f"lengths contain {int(lengths[outside][0])}, outside 1..{T} (the number of positions of idx)"
                )
        lengths = lengths.clamp(min=1).cpu()  # an all-padding row reads one pad token
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(idx), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (layers * directions, B, h)
        if self.lstm.bidirectional:
            last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2h): forward and backward reads
        else:
            last = h_n[-1]  # (B, h): the top layer after each sequence's last real token
        logits = self.head(self.dropout(last))  # (B, C)
        loss = None
        if targets is not None:
            targets = validate.class_ids(targets, self.num_classes, batch_size=B, name="targets").long()
            loss = F.cross_entropy(logits, targets)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
