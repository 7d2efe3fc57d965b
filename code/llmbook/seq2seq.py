"""An encoder–decoder Transformer assembled from the parts of Chapters 4–5 (Chapter 8: translation).

The encoder is a stack of :class:`llmbook.models.Block` with bidirectional
self-attention over the source (padding masked). Each decoder layer
(:class:`DecoderBlock`) has causal self-attention over the target so far,
then **cross-attention**: queries from the target, keys and values from the
encoder's output (:class:`llmbook.attention.MultiHeadAttention` with
``key=value=memory``), then the MLP; pre-LN throughout.

``Seq2Seq.forward(x, targets=None)`` takes ``x`` = source ids (B, S) and
target-input ids (B, T) side by side, ``torch.cat([src, tgt_in], 1)``, so that
the book's training loop (which moves one tensor ``x`` and one ``y``) trains it
unchanged; ``targets`` (B, T) are the target ids shifted by one (-100 ignored).
:meth:`Seq2Seq.greedy` decodes and can return the cross-attention weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .attention import MultiHeadAttention
from .models import MLP, Block, _init_weights

__all__ = ["Seq2SeqConfig", "DecoderBlock", "Seq2Seq"]


@dataclass
class Seq2SeqConfig:
    """Sizes of a :class:`Seq2Seq`: source and target vocabularies and lengths, layers, heads, width."""

    src_vocab_size: int
    tgt_vocab_size: int
    src_len: int  # every source is padded to this length
    tgt_len: int  # the longest target input (start token included)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    pad_id: int = 0  # padding in both vocabularies

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "src_len", "tgt_len", "n_layer", "n_head", "n_embd"):
            validate.positive_int(getattr(self, name), name)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        validate.probability(self.dropout, "dropout")
        validate.pad_id(self.pad_id, min(self.src_vocab_size, self.tgt_vocab_size))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder's output, MLP; each pre-LN with a residual."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.self_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.cross_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout)
        self.ln_3 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout=dropout)

    def forward(self, x, memory, memory_mask=None, need_weights: bool = False):
        h = self.ln_1(x)
        x = x + self.self_attn(h, is_causal=True)[0]
        attended, weights = self.cross_attn(self.ln_2(x), memory, memory, mask=memory_mask, need_weights=need_weights)
        x = x + attended  # (B, T, d): each target position read the source
        return x + self.mlp(self.ln_3(x)), weights  # weights: (B, H, T, S) or None


class Seq2Seq(nn.Module):
    """Encoder–decoder Transformer (the original Transformer's layout, pre-LN). See the module docstring."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"Seq2Seq is built from a Seq2SeqConfig, got {type(config).__name__}")
        self.config = c = config
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.n_embd)
        self.src_positions = nn.Embedding(c.src_len, c.n_embd)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.n_embd)
        self.tgt_positions = nn.Embedding(c.tgt_len, c.n_embd)
        self.encoder = nn.ModuleList(Block(c.n_embd, c.n_head, c.dropout) for _ in range(c.n_layer))
        self.ln_memory = nn.LayerNorm(c.n_embd)
        self.decoder = nn.ModuleList(DecoderBlock(c.n_embd, c.n_head, c.dropout) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.tgt_vocab_size, bias=False)
        _init_weights(self, 2 * c.n_layer)

    def encode(self, src: torch.Tensor):
        """(memory (B, S, d), key mask (B, 1, 1, S) True at real source tokens)."""
        c = self.config
        src = validate.token_ids(src, c.src_vocab_size, name="src", block_size=c.src_len).long()
        mask = (src != c.pad_id)[:, None, None, :]
        mask = mask | ~mask.any(-1, keepdim=True)  # an all-padding source attends to everything (no empty row)
        x = self.src_embedding(src) + self.src_positions(torch.arange(src.shape[1], device=src.device))
        for block in self.encoder:
            x, _ = block(x, mask=mask)
        return self.ln_memory(x), mask

    def decode(self, tgt: torch.Tensor, memory, memory_mask, need_weights: bool = False):
        """(logits (B, T, V), per-layer cross-attention weights) for the target inputs ``tgt`` (B, T)."""
        c = self.config
        tgt = validate.token_ids(tgt, c.tgt_vocab_size, name="tgt", block_size=c.tgt_len).long()
        x = self.tgt_embedding(tgt) + self.tgt_positions(torch.arange(tgt.shape[1], device=tgt.device))
        weights = []
        for block in self.decoder:
            x, w = block(x, memory, memory_mask, need_weights=need_weights)
            weights.append(w)
        return self.head(self.ln_f(x)), weights

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        S = self.config.src_len
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] <= S:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be torch.cat([src (B, {S}), tgt_in (B, T)], 1) with T >= 1, got {shape}")
        memory, mask = self.encode(x[:, :S])
        logits, _ = self.decode(x[:, S:], memory, mask)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.long().flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, start_id: int, end_id: int, return_attention: bool = False):
        """Greedy decoding from ``start_id`` until every row has produced ``end_id`` (or ``tgt_len`` tokens).

        Returns the generated ids (B, <= tgt_len) without the start token, and with ``return_attention``
        the last layer's cross-attention (B, H, T, S) of the final pass."""
        was_training = self.training
        self.eval()
        memory, mask = self.encode(src)
        out = torch.full((src.shape[0], 1), start_id, dtype=torch.long, device=src.device)
        weights = None
        for _ in range(self.config.tgt_len):
            logits, weights = self.decode(out, memory, mask, need_weights=return_attention)
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], 1)
            if bool((out == end_id).any(1).all()) or out.shape[1] == self.config.tgt_len:
                break
        self.train(was_training)
        if return_attention:
            logits, weights = self.decode(out[:, :-1], memory, mask, need_weights=True)
            return out[:, 1:], weights[-1]
        return out[:, 1:]

    @torch.no_grad()
    def beam(self, src: torch.Tensor, start_id: int, end_id: int, beam_width: int = 4):
        """Beam search: keep the ``beam_width`` most probable partial targets of each source, extend each by
        every token, keep the best ``beam_width`` again; a target that has produced ``end_id`` is finished
        (it is extended only by padding, at no cost). Returns, like :meth:`greedy`, the ids (B, <= tgt_len - 1)
        of each source's most probable target (sum of log-probabilities) without the start token; with
        ``beam_width=1`` it is greedy decoding."""
        c = self.config
        W = validate.positive_int(beam_width, "beam_width")
        if W > c.tgt_vocab_size:
            raise ValueError(f"beam_width={W} is more than the {c.tgt_vocab_size} target tokens; use fewer beams")
        was_training = self.training
        self.eval()
        memory, mask = self.encode(src)
        B = src.shape[0]
        memory, mask = memory.repeat_interleave(W, 0), mask.repeat_interleave(W, 0)
        seqs = torch.full((B * W, 1), start_id, dtype=torch.long, device=src.device)
        scores = torch.full((B, W), float("-inf"), device=src.device)
        scores[:, 0] = 0.0  # one live beam at the start: the others would duplicate it
        done = torch.zeros(B * W, dtype=torch.bool, device=src.device)
        for _ in range(c.tgt_len - 1):
            logits, _ = self.decode(seqs, memory, mask)
            logp = F.log_softmax(logits[:, -1].float(), -1)  # (B·W, V)
            logp[done] = float("-inf")
            logp[done, c.pad_id] = 0.0  # a finished target only pads
            total = (scores.view(-1, 1) + logp).view(B, W * c.tgt_vocab_size)
            scores, index = total.topk(W, dim=1)  # (B, W)
            rows = (torch.arange(B, device=src.device)[:, None] * W + index // c.tgt_vocab_size).view(-1)
            tokens = (index % c.tgt_vocab_size).view(-1, 1)
            seqs = torch.cat([seqs[rows], tokens], 1)
            done = done[rows] | (tokens.view(-1) == end_id)
            if bool(done.all()):
                break
        self.train(was_training)
        best = scores.argmax(1)
        return seqs.view(B, W, -1)[torch.arange(B, device=src.device), best, 1:]
