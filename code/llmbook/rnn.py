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

__all__ = ["LSTMConfig", "LSTMLanguageModel", "LSTMClassifier", "lstm_num_params", "hidden_dim_for_params"]


@dataclass
class LSTMConfig:
    """Sizes of an :class:`LSTMLanguageModel`.

    ``block_size`` is not a limit of the LSTM itself (it reads any length); it
    is the longest training window and the context that
    :func:`llmbook.generate.generate` keeps when sampling, like GPT's.
    """

    vocab_size: int
    embed_dim: int
    hidden_dim: int
    num_layers: int = 1
    dropout: float = 0.0
    block_size: int = 256

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden_dim", "num_layers", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LSTMConfig.{name} must be a whole number >= 1, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LSTMConfig.dropout must be in [0, 1), got {self.dropout!r}")


def lstm_num_params(vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int) -> int:
    """Parameters of an :class:`LSTMLanguageModel`, by formula.

    Each LSTM layer has four gates, each with an input matrix, a recurrent
    matrix and (in PyTorch) two bias vectors: ``4 * (h * (in + h) + 2h)``,
    where ``in`` is ``embed_dim`` for the first layer and ``h`` after. Plus the
    embedding ``V * e`` and the output layer ``h * V + V``.

    >>> lstm_num_params(vocab_size=10, embed_dim=4, hidden_dim=8, num_layers=1)
    578
    """
    e, h, V = embed_dim, hidden_dim, vocab_size
    recurrent = 4 * (h * (e + h) + 2 * h) + (num_layers - 1) * 4 * (h * (h + h) + 2 * h)
    return V * e + recurrent + h * V + V


def hidden_dim_for_params(target_params: int, vocab_size: int, embed_dim: int, num_layers: int) -> int:
    """The hidden size whose :func:`lstm_num_params` comes closest to ``target_params``.

    Used to build an LSTM with as many parameters as a given GPT.
    """
    if target_params < lstm_num_params(vocab_size, embed_dim, 1, num_layers):
        raise ValueError(f"{target_params} parameters is too few for an LSTM with this vocabulary and embedding")
    best, best_gap = 1, math.inf
    hidden = 1
    while True:
        gap = lstm_num_params(vocab_size, embed_dim, hidden, num_layers) - target_params
        if abs(gap) < best_gap:
            best, best_gap = hidden, abs(gap)
        if gap > 0:
            return best
        hidden += 1


class LSTMLanguageModel(nn.Module):
    """Embedding, a stack of LSTM layers, and a linear layer to next-token logits.

    ``forward(idx, targets=None, state=None, return_state=False)``: ``idx``
    (B, T) token ids; returns ``(logits (B, T, V), loss)`` with the mean
    cross-entropy when ``targets`` (B, T) are given (``-100`` is ignored), and
    also the final ``(h, c)`` state when ``return_state=True`` (to continue a
    long text chunk by chunk).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        block_size: int = 256,
    ):
        super().__init__()
        self.config = LSTMConfig(vocab_size, embed_dim, hidden_dim, num_layers, dropout, block_size)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        # PyTorch applies dropout between stacked layers only; the outer dropouts are ours.
        self.lstm = nn.LSTM(
            embed_dim, hidden_dim, num_layers=num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.head = nn.Linear(hidden_dim, vocab_size)
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
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, time), got {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.config.vocab_size - 1}")
        x = self.dropout(self.embedding(idx))  # (B, T, e)
        outputs, new_state = self.lstm(x, state)  # (B, T, h); state: two (layers, B, h)
        logits = self.head(self.dropout(outputs))  # (B, T, V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        if return_state:
            return logits, loss, new_state
        return logits, loss

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

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_classes: int = 2,
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int | None = 0,
        bidirectional: bool = False,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.pad_id = pad_id
        self.num_classes = num_classes
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim * (2 if bidirectional else 1), num_classes)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, lengths: torch.Tensor | None = None):
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, time), got {tuple(idx.shape)}")
        if lengths is None:
            if self.pad_id is None:
                lengths = torch.full((idx.shape[0],), idx.shape[1])
            else:
                lengths = (idx != self.pad_id).sum(dim=1)
        lengths = torch.as_tensor(lengths).clamp(min=1).cpu()  # an all-padding row reads one pad token
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(idx), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (layers * directions, B, h)
        if self.lstm.bidirectional:
            last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2h): forward and backward reads
        else:
            last = h_n[-1]  # (B, h): the top layer after each sequence's last real token
        logits = self.head(self.dropout(last))  # (B, C)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
