"""The block today's open models use instead of GPT-2's (Chapter 9: From a base model to an assistant).

Four changes to GPT-2's block, each a small module here, each switched on by a
field of :class:`llmbook.models.GPTConfig` (so one config gives a Llama-style
decoder, and the default config is still GPT-2's):

* :class:`RMSNorm` (``norm="rmsnorm"``): divide by the root mean square, no
  mean subtracted and no shift; checked against :class:`torch.nn.RMSNorm`;
* :class:`SwiGLU` (``mlp="swiglu"``): a gated MLP, silu(x W_gate) * (x W_up),
  then W_down; :func:`swiglu_hidden` gives the width that keeps GPT-2's 8d²;
* rotary positions (``positions="rope"``): :func:`llmbook.attention.apply_rope`
  on queries and keys instead of a learned position table;
* :class:`GroupedQueryAttention` (``n_kv_head``): fewer key/value heads than
  query heads, each shared by a group of query heads; the KV cache shrinks by
  ``n_head / n_kv_head`` (:func:`kv_cache_bytes`). Checked against
  ``F.scaled_dot_product_attention(..., enable_gqa=True)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .attention import _check_float_tensor, _check_mask, apply_rope, causal_mask, scaled_dot_product_attention

__all__ = ["RMSNorm", "SwiGLU", "GroupedQueryAttention", "swiglu_hidden", "kv_cache_bytes"]


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) * weight (Zhang and Sennrich, 2019).

    LayerNorm subtracts the mean, divides by the standard deviation, then
    scales and shifts; RMSNorm only rescales each vector to a root mean square
    of one, then scales: one reduction instead of two and no bias. Same
    arguments and result as :class:`torch.nn.RMSNorm` (``eps`` default 1e-6 here).
    """

    def __init__(self, n_embd: int, eps: float = 1e-6):
        super().__init__()
        self.n_embd = validate.positive_int(n_embd, "n_embd")
        self.eps = validate.finite_float(eps, "eps", low=0.0, low_inclusive=False, hint="a small number such as 1e-6")
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.normalized_shape = (n_embd,)  # as LayerNorm, which Block reads for its input check

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_float_tensor(x, "x")
        if x.shape[-1] != self.n_embd:
            raise ValueError(f"RMSNorm({self.n_embd}) expects (..., {self.n_embd}), got {tuple(x.shape)}")
        rms = x.float().pow(2).mean(dim=-1, keepdim=True).add(self.eps).sqrt()  # (..., 1), in float32
        return (x.float() / rms).to(x.dtype) * self.weight


def swiglu_hidden(n_embd: int, multiple_of: int = 8) -> int:
    """The SwiGLU width with GPT-2's MLP parameters: 3·d·h ≈ 8·d², so h ≈ 8d/3, rounded up to ``multiple_of``.

    >>> swiglu_hidden(768)
    2048
    """
    n_embd = validate.positive_int(n_embd, "n_embd")
    multiple_of = validate.positive_int(multiple_of, "multiple_of")
    return multiple_of * math.ceil(8 * n_embd / 3 / multiple_of)


class SwiGLU(nn.Module):
    """The gated MLP of PaLM and Llama (Shazeer, 2020): proj(silu(gate(x)) * fc(x)), then dropout.

    Three matrices instead of two: ``gate`` and ``fc`` (d -> h) and ``proj``
    (h -> d). The gate decides, per hidden unit and per token, how much of
    ``fc(x)`` passes; with h = :func:`swiglu_hidden` (d) it has the parameters
    of GPT-2's d -> 4d -> d MLP.
    """

    def __init__(self, n_embd: int, hidden: int | None = None, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        validate.positive_int(n_embd, "n_embd")
        hidden = swiglu_hidden(n_embd) if hidden is None else validate.positive_int(hidden, "hidden")
        validate.probability(dropout, "dropout")
        self.gate = nn.Linear(n_embd, hidden, bias=bias)
        self.fc = nn.Linear(n_embd, hidden, bias=bias)
        self.proj = nn.Linear(hidden, n_embd, bias=bias)  # back to the residual stream
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_float_tensor(x, "x")
        if x.shape[-1] != self.fc.in_features:
            raise ValueError(f"SwiGLU expects (..., {self.fc.in_features}), got {tuple(x.shape)}")
        return self.dropout(self.proj(F.silu(self.gate(x)) * self.fc(x)))  # (B, T, d) -> (B, T, h) -> (B, T, d)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``num_kv_heads`` key/value heads shared by ``num_heads`` query heads.

    ``num_kv_heads == num_heads`` is ordinary multi-head attention,
    ``num_kv_heads == 1`` is multi-query attention (Shazeer, 2019), anything
    between is grouped-query attention (Ainslie et al., 2023): query head i
    reads key/value head ``i // (num_heads // num_kv_heads)``. The projections
    are ``q_proj`` (E -> E), ``kv_proj`` (E -> 2·num_kv_heads·head_dim) and
    ``out_proj`` (E -> E). ``forward`` has :class:`llmbook.attention.MultiHeadAttention`'s
    signature for self-attention and returns ``(output, weights or None)``.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        validate.positive_int(embed_dim, "embed_dim")
        validate.positive_int(num_heads, "num_heads")
        validate.positive_int(num_kv_heads, "num_kv_heads")
        validate.probability(dropout, "dropout")
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}): each head gets "
                "embed_dim // num_heads dimensions"
            )
        if num_heads % num_kv_heads != 0:
            divisors = [k for k in range(1, num_heads + 1) if num_heads % k == 0]
            raise ValueError(
                f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads}): each key/value "
                f"head serves a whole group of query heads; use one of {divisors}"
            )
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.kv_proj = nn.Linear(embed_dim, 2 * num_kv_heads * self.head_dim, bias=bias)  # W_K, W_V stacked
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def key_values(self, x: torch.Tensor, rope: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of ``x`` (B, T, E): each (B, num_kv_heads, T, head_dim), keys rotated when
        ``rope``. These two tensors per layer are what a KV cache stores during generation."""
        B, T, _ = x.shape
        k, v = self.kv_proj(x).view(B, T, 2, self.num_kv_heads, self.head_dim).unbind(dim=2)  # (B, T, Hkv, hd)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, Hkv, T, hd)
        return (apply_rope(k) if rope else k), v

    def forward(
        self,
        query: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        rope: bool = False,
        kv_cache=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if kv_cache is not None:
            raise ValueError(
                "grouped-query attention has no KV cache in this book (Chapter 8's cache serves "
                "MultiHeadAttention): generate with kv_cache=False, or set n_kv_head=None"
            )
        _check_float_tensor(query, "query")
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"query must have shape (B, T, E) with E = {self.embed_dim}, got {tuple(query.shape)}")
        B, T, _ = query.shape
        q = self.q_proj(query).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        if rope:
            q = apply_rope(q)
        k, v = self.key_values(query, rope=rope)  # (B, Hkv, T, hd) each
        dropout_p = self.dropout if self.training else 0.0
        if mask is not None:
            mask = _check_mask(mask, torch.Size((B, self.num_heads, T, T)))
        if need_weights:  # explicit path: copy each key/value head to the query heads of its group
            group = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, H, T, hd)
            if is_causal:
                causal = causal_mask(T, device=q.device)
                mask = causal if mask is None else (mask & causal)
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p, training=self.training)
        else:  # fast path: PyTorch shares the key/value heads itself, without copies
            weights = None
            if mask is not None and is_causal:
                mask, is_causal = mask & causal_mask(T, device=q.device), False
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=True
            )
        out = out.transpose(1, 2).reshape(B, T, self.embed_dim)  # (B, T, E): heads side by side
        return self.out_proj(out), weights


def kv_cache_bytes(
    n_layer: int, n_kv_head: int, head_dim: int, context: int, batch_size: int = 1, bytes_per_value: int = 2
) -> int:
    """Bytes a KV cache holds: keys and values (2) for every layer, key/value head, position and sequence.

    2 · n_layer · n_kv_head · head_dim · context · batch_size · bytes_per_value
    (2 bytes in float16/bfloat16, 4 in float32). Llama 2 70B (80 layers, 8 KV
    heads of 128, 4096 tokens, bf16): 1.34 GB per sequence; with 64 KV heads
    (no GQA) it would be 10.7 GB.

    >>> kv_cache_bytes(80, 8, 128, 4096)
    1342177280
    """
    for name, value in (("n_layer", n_layer), ("n_kv_head", n_kv_head), ("head_dim", head_dim),
                        ("context", context), ("batch_size", batch_size), ("bytes_per_value", bytes_per_value)):  # fmt: skip
        validate.positive_int(value, name)
    return 2 * n_layer * n_kv_head * head_dim * context * batch_size * bytes_per_value
