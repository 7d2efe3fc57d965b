"""Attention and positional encodings, written out step by step (Chapter 4: Attention).

Everything a Transformer block needs besides the MLP:

* :func:`scaled_dot_product_attention`: softmax(q kᵀ / √d_k) v, the explicit
  version that also returns the attention weights;
* :func:`causal_mask` and :func:`padding_mask`: boolean masks, ``True`` where a
  query may attend to a key (PyTorch's convention for boolean ``attn_mask``);
* :class:`MultiHeadAttention`: h heads as reshapes of one projection, with a
  fast path (``torch.nn.functional.scaled_dot_product_attention``) when the
  weights are not needed and the explicit path when they are;
* :func:`sinusoidal_positions`, :class:`LearnedPositions` and
  :func:`apply_rope`: three ways to tell attention where each token is.

The tests (``tests/test_attention.py``) check each piece against PyTorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate

__all__ = [
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "MultiHeadAttention",
    "sinusoidal_positions",
    "LearnedPositions",
    "apply_rope",
    "LayerKVCache",
]


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> torch.Tensor:
    """``mask`` broadcast to ``scores_shape``; clear errors for a wrong dtype, shape or a fully masked row."""
    if not torch.is_tensor(mask):
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}; "
            "for a 0/1 tensor use mask.bool(), for an additive -inf mask use mask == 0"
        )
    try:
        mask = mask.expand(scores_shape)
    except RuntimeError as error:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores' shape "
            f"{tuple(scores_shape)} (..., T_q, T_k)"
        ) from error
    fully_masked = ~mask.any(dim=-1)  # (..., T_q): rows where no key is allowed
    if fully_masked.any():
        where = tuple(int(i) for i in fully_masked.nonzero()[0])
        raise ValueError(
            f"the mask allows no key at all for query row {where} (index into (..., T_q)); softmax over an "
            "empty set is undefined: let every query attend to at least one key (e.g. itself)"
        )
    return mask


def _check_float_tensor(x, name: str) -> None:
    """Queries, keys, values and hidden states are floating-point tensors."""
    if not torch.is_tensor(x):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; use torch.tensor(..., dtype=torch.float32)"
        )
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor of vectors, got dtype {x.dtype}; token ids go through an "
            f"embedding first (or use {name}.float())"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d_k) v, and the attention weights.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v); ``mask`` a
    bool tensor broadcastable to (..., T_q, T_k), True where the query may
    attend to the key. Masked keys get exactly zero weight. Returns
    ``(output (..., T_q, d_v), weights (..., T_q, T_k))``; each row of
    ``weights`` sums to one. Dropout (on the weights) only when
    ``training``.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_float_tensor(x, name)
    dropout_p = validate.probability(dropout_p, "dropout_p")
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(
            "q, k and v need at least 2 dimensions (..., T, d); "
            f"got shapes {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(
            f"q, k and v must have one dtype, got {q.dtype}, {k.dtype} and " + f"{v.dtype}; convert with .to(q.dtype)"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "q and k must have the same last dimension d_k to be "
            + f"multiplied: q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            "k and v must have the same number of positions T_k "
            "(one value per key): "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k)
    if mask is not None:
        mask = _check_mask(mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: exactly zero weight
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1
    if dropout_p > 0.0 and training:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return weights @ v, weights  # (..., T_q, d_v)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) bool, True on and below the diagonal: position i may attend to positions 0..i.

    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    T = validate.positive_int(T, "T", hint="the sequence length")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(idx: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, 1, 1, T) bool, True where the key is a real token (not
    ``pad_id``).

    It broadcasts over heads and query positions of (B, H, T_q, T_k) scores.
    >>> padding_mask(torch.tensor([[5, 7, 0]]), pad_id=0).flatten().tolist()
    [True, True, False]
    """
    if not torch.is_tensor(idx):
        raise TypeError(
            "padding_mask expects a torch.Tensor of token ids, " + f"got {type(idx).__name__}; use torch.tensor(ids)"
        )
    if idx.dim() != 2:
        raise ValueError("padding_mask expects token ids of shape (B, T), " + f"got {tuple(idx.shape)}")
    pad_id = validate.nonnegative_int(pad_id, "pad_id")
    return (idx != pad_id)[:, None, None, :]  # (B, 1, 1, T)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h scaled dot-product attentions side by side, as reshapes.

    The parameters are named like :class:`torch.nn.MultiheadAttention`'s so its
    weights can be copied in (:meth:`load_from_torch`): ``in_proj`` holds W_Q,
    W_K, W_V stacked (``in_proj.weight`` is (3E, E), like ``in_proj_weight``)
    and ``out_proj`` is W_O. Inputs are (B, T, E) with ``batch_first=True``
    (the default here, unlike PyTorch's), else (T, B, E).

    ``forward`` returns ``(output, weights)``: ``weights`` (B, H, T_q, T_k) per
    head when ``need_weights=True`` (explicit path), else None and the fused
    ``F.scaled_dot_product_attention`` runs (fast path). Both give the same output.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, batch_first: bool = True
    ):
        super().__init__()
        validate.positive_int(embed_dim, "embed_dim")
        validate.positive_int(num_heads, "num_heads")
        validate.probability(dropout, "dropout")
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}): each head gets "
                "embed_dim // num_heads dimensions"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)  # W_Q, W_K, W_V stacked
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_O

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, E) -> (B, H, T, E/H): each head sees its own slice of the
        features.
        """
        _check_float_tensor(x, "x")
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(
                "split_heads expects (B, T, E) with " + f"E = embed_dim = {self.embed_dim}, got {tuple(x.shape)}"
            )
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, head_dim)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        """(B, H, T, E/H) -> (B, T, E): the heads' outputs side by side again."""
        _check_float_tensor(x, "x")
        if x.dim() != 4:
            raise ValueError(f"merge_heads expects (B, H, T, E/H), got shape {tuple(x.shape)}")
        B, H, T, head_dim = x.shape
        return x.transpose(1, 2).reshape(B, T, H * head_dim)  # (B, T, E)

    def project(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
        """Q = query W_Qᵀ + b_Q, K = key W_Kᵀ + b_K, V = value W_Vᵀ + b_V, each (B, T, E)."""
        if query is key and key is value:  # self-attention: one matrix multiply
            return self.in_proj(query).chunk(3, dim=-1)
        w_q, w_k, w_v = self.in_proj.weight.chunk(3, dim=0)
        b_q, b_k, b_v = self.in_proj.bias.chunk(3) if self.in_proj.bias is not None else (None, None, None)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        rope: bool = False,
        kv_cache: LayerKVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (both default to
        ``query``: self-attention).

        ``mask``: bool, broadcastable to (B, H, T_q, T_k), True = may attend
        (e.g. :func:`padding_mask`). ``is_causal``: also forbid attending to
        later positions. ``rope``: rotate queries and keys by their positions
        (:func:`apply_rope`) before the dot products. ``kv_cache``: a
        :class:`LayerKVCache` (Chapter 8) holding the keys and values of the
        earlier positions; the new ones are appended to it and the queries are
        taken to be the last positions (self-attention only).
        """
        key = query if key is None else key
        value = key if value is None else value
        query, key, value = self._checked_inputs(query, key, value, mask)  # each (B, T, E)
        q, k, v = self.project(query, key, value)  # each (B, T, E)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # each (B, H, T, head_dim)
        past = 0 if kv_cache is None else kv_cache.length
        if rope:
            if past:  # the new positions continue after the cached ones
                positions = torch.arange(past, past + q.shape[-2], device=q.device)
                q, k = apply_rope(q, positions), apply_rope(k, positions)
            else:
                q, k = apply_rope(q), apply_rope(k)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, H, past + T, head_dim) each
        T_q, T_k = q.shape[-2], k.shape[-2]
        if is_causal and past and T_q != T_k:  # queries are the last T_q positions: a shifted causal mask
            shifted = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril(diagonal=T_k - T_q)
            mask = shifted if mask is None else (mask & shifted)
            is_causal = False
        if is_causal and T_q != T_k:
            raise ValueError("is_causal needs as many queries as keys, " + f"got T_q={T_q}, T_k={T_k}")
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:  # explicit path: the weights are needed, e.g. for a view of them
            if is_causal:
                causal = causal_mask(T_q, device=q.device)
                mask = causal if mask is None else (mask & causal)
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p, training=self.training)
        else:
            # fast path: PyTorch's fused kernels (flash / memory-efficient on
            # GPU), no weights kept
            weights = None
            if mask is None:
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal)
            else:
                if is_causal:
                    mask = mask & causal_mask(T_q, device=q.device)
                mask = _check_mask(mask, torch.Size((q.shape[0], self.num_heads, T_q, T_k)))
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        out = self.out_proj(self.merge_heads(out))  # (B, T_q, E)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (T_q, B, E)
        return out, weights

    def _checked_inputs(self, query, key, value, mask):
        """query, key and value as (B, T, E) after checking their shapes and the mask's dtype."""
        for name, x in (("query", query), ("key", key), ("value", value)):
            _check_float_tensor(x, name)
            if x.dim() != 3 or x.shape[-1] != self.embed_dim:
                layout = "(B, T, E)" if self.batch_first else "(T, B, E)"
                raise ValueError(
                    f"{name} must have shape {layout} with E = embed_dim = {self.embed_dim}, got {tuple(x.shape)}"
                )
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (T, B, E) -> (B, T, E)
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            raise ValueError(
                f"query, key and value must have the same batch size, got {query.shape[0]}, {key.shape[0]} "
                f"and {value.shape[0]}"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"key and value must have the same length T_k, got {key.shape[1]} and {value.shape[1]}")
        if mask is not None and (not torch.is_tensor(mask) or mask.dtype != torch.bool):
            _check_mask(mask, torch.Size())  # raises the error that names the dtype and the fix
        return query, key, value

    @torch.no_grad()
    def load_from_torch(self, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a :class:`torch.nn.MultiheadAttention` of the same size (for checks)."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"load_from_torch copies from a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.embed_dim != self.embed_dim or module.num_heads != self.num_heads:
            raise ValueError(
                f"sizes differ: ours embed_dim={self.embed_dim}, num_heads={self.num_heads}; "
                f"theirs embed_dim={module.embed_dim}, num_heads={module.num_heads}"
            )
        if module.in_proj_weight is None:
            raise ValueError("only nn.MultiheadAttention with equal query/key/value sizes (kdim = vdim = embed_dim)")
        self.in_proj.weight.copy_(module.in_proj_weight)
        self.out_proj.weight.copy_(module.out_proj.weight)
        if self.in_proj.bias is not None:
            if module.in_proj_bias is None:
                raise ValueError("ours has biases and theirs has none: build ours with bias=False")
            self.in_proj.bias.copy_(module.in_proj_bias)
            self.out_proj.bias.copy_(module.out_proj.bias)
        return self


def sinusoidal_positions(T: int, n_embd: int, base: float = 10000.0) -> torch.Tensor:
    """The (T, d) sinusoidal position table of "Attention Is All You Need"
    (d = ``n_embd``, the model width).

    PE[pos, 2i] = sin(pos / base^(2i/d)),
    PE[pos, 2i+1] = cos(pos / base^(2i/d)).
    """
    T = validate.positive_int(T, "T", hint="the number of positions")
    d = validate.positive_int(n_embd, "n_embd")
    if d % 2 != 0:
        raise ValueError("sinusoidal_positions needs an even width (sin/cos pairs), " + f"got n_embd={d}")
    base = validate.finite_float(base, "base", low=1.0, low_inclusive=False, hint="10000 in the original Transformer")
    positions = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    frequencies = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d/2,) = 1 / base^(2i/d)
    angles = positions * frequencies  # (T, d/2)
    table = torch.empty(T, d)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


class LearnedPositions(nn.Module):
    """One trained vector per position (as in GPT-2 and BERT): an embedding table of (max_len, n_embd)."""

    def __init__(self, max_len: int, n_embd: int):
        super().__init__()
        self.max_len = validate.positive_int(max_len, "max_len")
        self.embedding = nn.Embedding(max_len, validate.positive_int(n_embd, "n_embd"))
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, positions: int | torch.Tensor) -> torch.Tensor:
        """``forward(T)`` -> (T, d) for positions 0..T-1; ``forward(positions)`` -> positions.shape + (d,)."""
        if not torch.is_tensor(positions):
            T = validate.positive_int(positions, "positions", hint="a length T, or a tensor of positions")
            positions = torch.arange(T, device=self.embedding.weight.device)
        _check_positions(positions)
        outside = (positions < 0) | (positions >= self.max_len)
        if bool(outside.any()):
            raise ValueError(
                f"position {int(positions[outside][0])} is outside the learned table of positions "
                f"0..{self.max_len - 1} (max_len={self.max_len}): a learned encoding cannot extrapolate; "
                "use a shorter input or a larger max_len"
            )
        return self.embedding(positions)


def _check_positions(positions) -> None:
    if not torch.is_tensor(positions):
        raise TypeError(f"positions must be a tensor of integer positions, got {type(positions).__name__}")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise ValueError(
            f"positions must hold whole numbers (0, 1, 2, ...), got dtype {positions.dtype}; use positions.long()"
        )


def apply_rope(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021) of x
    (B, H, T, head_dim).

    Each pair of features (2i, 2i+1) of the vector at position m is rotated
    by the angle m·θ_i with θ_i = base^(-2i/head_dim). Rotations keep
    lengths, and the dot product of a rotated query at m and a rotated key
    at n depends only on m - n. ``positions``: (T,) integers (default
    0..T-1).
    """
    _check_float_tensor(x, "x")
    if x.dim() < 2:
        raise ValueError("apply_rope expects (..., T, head_dim), " + f"got shape {tuple(x.shape)}")
    base = validate.finite_float(base, "base", low=1.0, low_inclusive=False, hint="10000 in the RoPE paper")
    T, head_dim = x.shape[-2], x.shape[-1]
    if head_dim % 2 != 0:
        raise ValueError("apply_rope rotates pairs of features: head_dim must be even, " + f"got {head_dim}")
    if positions is None:
        positions = torch.arange(T, device=x.device)
    _check_positions(positions)
    if positions.dim() == 0 or positions.shape[-1] != T:
        raise ValueError(f"positions must have shape ({T},), one per position of x, " + f"got {tuple(positions.shape)}")
    theta = base ** (-torch.arange(0, head_dim, 2, device=x.device, dtype=torch.float32) / head_dim)  # (head_dim/2,)
    angles = positions.to(torch.float32)[..., None] * theta  # (T, head_dim/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., T, head_dim/2) each: the two coordinates of each pair
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (..., T, head_dim/2, 2)
    return rotated.flatten(-2)  # (..., T, head_dim): pairs interleaved back in place


class LayerKVCache:
    """The keys and values one attention layer has computed so far (Chapter 8: the KV cache).

    Generating token t+1 needs the keys and values of tokens 1..t at every
    layer; they do not change once computed (a causal model's position i only
    sees positions <= i), so :meth:`update` appends the new positions' keys
    and values (B, H, T_new, head_dim) and returns all of them. Memory per
    sequence: 2 (k and v) x positions x n_embd numbers per layer.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """The number of positions held."""
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` (B, H, T_new, head_dim) and return the keys and values of every position."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            if k.shape[:2] != self.k.shape[:2] or k.shape[-1] != self.k.shape[-1]:
                raise ValueError(
                    f"the cache holds keys of shape {tuple(self.k.shape)} (B, H, T, head_dim); the new keys "
                    f"{tuple(k.shape)} differ in batch, heads or head size: use a fresh cache for a new batch"
                )
            self.k, self.v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        if self.k is None:
            return 0
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()
