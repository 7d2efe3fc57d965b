"""GPT and BERT built from the attention of Chapter 4 (Chapter 5: Building the Transformer).

* :class:`GPT` (decoder-only): token + learned position embeddings, ``n_layer``
  pre-LN blocks with *causal* self-attention, a final LayerNorm and a language
  -model head tied to the token embedding. Trained by next-token prediction.
* :class:`BERT` (encoder-only): token + position (+ segment) embeddings,
  post-LN blocks (as in the original BERT; ``norm_first=True`` gives pre-LN)
  with *bidirectional* self-attention and padding masks, a masked-LM head tied
  to the token embedding, and a classification head.

Both share :class:`MLP` and :class:`Block` and use
:class:`llmbook.attention.MultiHeadAttention` for attention: there is one
attention in the library. ``forward(idx, targets=None)`` returns
``(logits, loss)``, plus a list of per-layer (B, H, T, T) attention weights
with ``return_attention=True`` (for ``llmbook.viz.attention_view``).

Parameter counts and FLOPs have closed forms (:func:`gpt_num_params_formula`,
:meth:`GPT.flops_per_token`) that the tests check against the code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .attention import LayerKVCache, MultiHeadAttention, padding_mask
from .modern import GroupedQueryAttention, RMSNorm, SwiGLU, swiglu_hidden

__all__ = [
    "GPTConfig",
    "GPT",
    "BERTConfig",
    "BERT",
    "MLP",
    "Block",
    "gpt_num_params_formula",
]

IGNORE_INDEX = -100  # targets with this value do not count in the loss (PyTorch's default ignore_index)


# ---------------------------------------------------------------------------------------------
# Input checks shared by both models: a clear error instead of a cryptic index error deep inside.
# ---------------------------------------------------------------------------------------------


def _check_targets(targets: torch.Tensor, idx: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``targets`` as long ids after the checks (any integer dtype is accepted, as for ``idx``)."""
    validate.token_ids(targets, vocab_size, name="targets", dims=idx.dim(), ignore_index=IGNORE_INDEX)
    if targets.shape != idx.shape:
        raise ValueError(
            f"targets must have the same shape as idx {tuple(idx.shape)} (one target id per position), "
            f"got {tuple(targets.shape)}"
        )
    if not validate.is_compiling() and bool((targets == IGNORE_INDEX).all()):
        raise ValueError(
            f"every target is {IGNORE_INDEX} (ignored), so the loss would be 0/0 = nan; give at least one "
            "position a real target id (for masked language modelling: mask at least one token)"
        )
    return targets.long()


def _check_config_sizes(config, names: tuple[str, ...]) -> None:
    """The whole-number sizes, the divisibility of the width by the heads, the dropout and the flags."""
    for name in names:
        validate.positive_int(getattr(config, name), name)
    if config.n_embd % config.n_head != 0:
        raise ValueError(
            f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head}): "
            f"each head gets n_embd // n_head dimensions; try n_head={math.gcd(config.n_embd, config.n_head)}"
        )
    validate.probability(config.dropout, "dropout", hint="a fraction such as 0.1; 0 turns dropout off")
    for name in ("bias", "causal", "norm_first"):
        value = getattr(config, name, False)
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_model_config(config, expected: type) -> None:
    if not isinstance(config, expected):
        raise TypeError(
            f"{expected.__name__[:-6]} is built from a {expected.__name__}, got {type(config).__name__}; "
            f"use {expected.__name__[:-6]}({expected.__name__}(vocab_size=..., block_size=..., n_layer=..., "
            "n_head=..., n_embd=...))"
        )


def _check_hidden(x, n_embd: int) -> None:
    """Hidden states: a float tensor (..., n_embd)."""
    if not torch.is_tensor(x) or not x.dtype.is_floating_point:
        what = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a float tensor of vectors (B, T, n_embd), got {what}; embed token ids first")
    if x.dim() < 1 or x.shape[-1] != n_embd:
        raise ValueError(f"x must have shape (B, T, n_embd) with n_embd = {n_embd}, got {tuple(x.shape)}")


def _mask_as_bool(attention_mask, idx: torch.Tensor) -> torch.Tensor:
    """The (B, T) key mask as bool: True/1 = real token, False/0 = padding; other forms refused."""
    if not torch.is_tensor(attention_mask):
        raise TypeError(
            f"attention_mask must be a tensor of shape {tuple(idx.shape)} (1 at real tokens, 0 at padding), "
            f"got {type(attention_mask).__name__}; use torch.tensor(mask)"
        )
    if attention_mask.shape != idx.shape:
        raise ValueError(
            f"attention_mask must have the shape of idx {tuple(idx.shape)} (1 at real tokens, 0 at padding), "
            f"got {tuple(attention_mask.shape)}"
        )
    if attention_mask.dtype == torch.bool:
        return attention_mask
    odd = (attention_mask != 0) & (attention_mask != 1)
    if bool(odd.any()):
        value = attention_mask[odd].flatten()[0].item()
        if value < 0:
            raise ValueError(
                f"attention_mask holds {value:g}: that is the additive form (0 at real tokens, a large negative "
                "number at padding), which this model does not take; pass 1 at real tokens and 0 at padding, "
                "e.g. attention_mask == 0"
            )
        raise ValueError(f"attention_mask must hold only 0 (padding) and 1 (real token), got {value:g}")
    return attention_mask == 1


# ---------------------------------------------------------------------------------------------
# The two parts of every Transformer block.
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """The position-wise feed-forward network: d -> 4d -> GELU -> d, then
    dropout.

    Every position goes through the same two linear maps, independently:
    this is where most of a Transformer's parameters (8 d² of each block's
    12 d²) live.
    """

    def __init__(
        self,
        n_embd: int,
        dropout: float = 0.0,
        bias: bool = True,
        hidden: int | None = None,
        activation: str = "gelu",
    ):
        super().__init__()
        validate.positive_int(n_embd, "n_embd")
        validate.probability(dropout, "dropout")
        hidden = 4 * n_embd if hidden is None else validate.positive_int(hidden, "hidden")  # Chapter 9 sets it
        # "gelu": the exact GELU; "gelu_tanh": GPT-2's tanh approximation (Chapter 8 loads GPT-2's weights)
        self.activation = validate.one_of(activation, "activation", ("gelu", "gelu_tanh"))
        self.fc = nn.Linear(n_embd, hidden, bias=bias)  # expand
        self.proj = nn.Linear(hidden, n_embd, bias=bias)  # project back to the residual stream
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_hidden(x, self.fc.in_features)
        approximate = "tanh" if self.activation == "gelu_tanh" else "none"
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate=approximate)))  # (B,T,d)->(B,T,4d)->(B,T,d)


class Block(nn.Module):
    """One Transformer block: self-attention and an MLP, each with a
    residual connection and a LayerNorm.

    ``norm_first=True`` (pre-LN, GPT-2 and later): x + Attn(LN(x)), then
    x + MLP(LN(x)). ``norm_first=False`` (post-LN, the original Transformer
    and BERT): LN(x + Attn(x)), then LN(x + MLP(x)). ``is_causal`` forbids
    attending to later positions (a decoder); ``mask`` (bool, True = may
    attend) hides padding.

    Chapter 9's options (the defaults are GPT-2's block): ``norm="rmsnorm"``,
    ``mlp="swiglu"`` (width ``mlp_hidden``), ``rope=True`` (rotary positions
    in attention) and ``n_kv_head`` (grouped-query attention,
    :class:`llmbook.modern.GroupedQueryAttention`).
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = True,
        norm_first: bool = True,
        norm: str = "layernorm",
        mlp: str = "gelu",
        n_kv_head: int | None = None,
        rope: bool = False,
        mlp_hidden: int | None = None,
        activation: str = "gelu",
    ):
        super().__init__()
        validate.positive_int(n_embd, "n_embd")
        validate.probability(dropout, "dropout")
        self.norm_first = norm_first
        self.rope = rope
        self.ln_1 = _norm_layer(norm, n_embd, bias)
        if n_kv_head is None:
            self.attn = MultiHeadAttention(n_embd, n_head, dropout=dropout, bias=bias)
        else:
            self.attn = GroupedQueryAttention(n_embd, n_head, n_kv_head, dropout=dropout, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)  # on the attention's output, before the residual add
        self.ln_2 = _norm_layer(norm, n_embd, bias)
        if validate.one_of(mlp, "mlp", ("gelu", "swiglu")) == "gelu":
            self.mlp = MLP(n_embd, dropout=dropout, bias=bias, hidden=mlp_hidden, activation=activation)
        else:
            self.mlp = SwiGLU(n_embd, hidden=mlp_hidden, dropout=dropout, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        kv_cache: LayerKVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        _check_hidden(x, self.ln_1.normalized_shape[0])
        if self.norm_first:  # pre-LN: the residual stream x itself is never normalised
            attended, weights = self.attn(
                self.ln_1(x),
                mask=mask,
                is_causal=is_causal,
                need_weights=need_weights,
                rope=self.rope,
                kv_cache=kv_cache,
            )
            x = x + self.attn_dropout(attended)  # (B, T, d)
            x = x + self.mlp(self.ln_2(x))
        else:  # post-LN: normalise after each residual add
            attended, weights = self.attn(
                x, mask=mask, is_causal=is_causal, need_weights=need_weights, kv_cache=kv_cache
            )
            x = self.ln_1(x + self.attn_dropout(attended))
            x = self.ln_2(x + self.mlp(x))
        return x, weights


def _norm_layer(norm: str, n_embd: int, bias: bool) -> nn.Module:
    """LayerNorm (GPT-2, BERT) or RMSNorm (Llama; Chapter 9)."""
    if validate.one_of(norm, "norm", ("layernorm", "rmsnorm")) == "layernorm":
        return nn.LayerNorm(n_embd, bias=bias)
    return RMSNorm(n_embd)


def _init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) for every matrix and embedding, zero biases, LayerNorm (1, 0);
    the projections that write into the residual stream (attention out_proj and MLP proj) get
    std 0.02 / sqrt(2 n_layer), so the stream's variance does not grow with depth (2 adds per block)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    for name, parameter in model.named_parameters():
        if name.endswith("attn.out_proj.weight") or name.endswith("mlp.proj.weight"):
            nn.init.normal_(parameter, mean=0.0, std=residual_std)


# ---------------------------------------------------------------------------------------------
# GPT: decoder-only.
# ---------------------------------------------------------------------------------------------


@dataclass
class GPTConfig:
    """Sizes of a GPT. GPT-2 small: ``GPTConfig(50257, 1024, 12, 12, 768)``.

    ``causal=False`` removes the causal mask: the model can then see the token it
    is asked to predict. Chapter 5 uses it to show why a decoder needs the mask.

    Chapter 9's modern block: ``norm="rmsnorm"``, ``mlp="swiglu"``,
    ``positions="rope"`` and ``n_kv_head`` (key/value heads, a divisor of
    ``n_head``; None: plain multi-head attention) give a Llama-style decoder;
    ``mlp_hidden`` sets the MLP width (None: 4d for GELU, ≈8d/3 for SwiGLU).
    """

    vocab_size: int
    block_size: int  # the longest context (T) the model accepts
    n_layer: int
    n_head: int
    n_embd: int  # d, the width of the residual stream
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms
    causal: bool = True
    norm: str = "layernorm"  # or "rmsnorm" (Chapter 9)
    mlp: str = "gelu"  # or "swiglu"
    positions: str = "learned"  # or "rope": rotary, no position table
    n_kv_head: int | None = None  # grouped-query attention: key/value heads (None: as many as n_head)
    mlp_hidden: int | None = None  # the MLP's width (None: 4 n_embd for gelu, swiglu_hidden(n_embd) for swiglu)
    activation: str = "gelu"  # "gelu_tanh": GPT-2's tanh-approximated GELU (Chapter 8's converter)

    def __post_init__(self) -> None:
        _check_config_sizes(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        validate.one_of(self.norm, "norm", ("layernorm", "rmsnorm"))
        validate.one_of(self.mlp, "mlp", ("gelu", "swiglu"))
        validate.one_of(self.positions, "positions", ("learned", "rope"))
        validate.one_of(self.activation, "activation", ("gelu", "gelu_tanh"))
        if self.mlp_hidden is not None:
            validate.positive_int(self.mlp_hidden, "mlp_hidden")
        if self.n_kv_head is not None:
            validate.positive_int(self.n_kv_head, "n_kv_head")
            if self.n_head % self.n_kv_head != 0:
                divisors = [k for k in range(1, self.n_head + 1) if self.n_head % k == 0]
                raise ValueError(
                    f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head}): each key/value "
                    f"head serves a whole group of query heads; use one of {divisors} (or None)"
                )
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError(
                f"positions='rope' rotates pairs of features, so the head width n_embd // n_head must be even, "
                f"got {self.n_embd} // {self.n_head} = {self.n_embd // self.n_head}"
            )


def gpt_num_params_formula(config: GPTConfig, non_embedding: bool = False) -> int:
    """The closed form of :meth:`GPT.num_params` (the chapter derives each
    term).

    With biases (``bias=True``), per block: attention 4d² + 4d,
    MLP 8d² + 5d, two LayerNorms 4d, so 12d² + 13d; plus embeddings
    (V + T)·d and the final LayerNorm 2d. The head is tied to the token
    embedding: no extra parameters. Without biases: 12d² + 2d per block and
    d for the final LayerNorm. ``non_embedding=True`` leaves out the token
    and position embeddings (the N of scaling laws, Kaplan et al. 2020).
    """
    if not isinstance(config, GPTConfig):
        raise TypeError("gpt_num_params_formula takes a GPTConfig, " + f"got {type(config).__name__}")
    V, T, L, d = config.vocab_size, config.block_size, config.n_layer, config.n_embd
    if _is_gpt2_block(config):
        per_block = 12 * d * d + (13 * d if config.bias else 2 * d)
        final_norm = 2 * d if config.bias else d
        embeddings = 0 if non_embedding else (V + T) * d
        return embeddings + L * per_block + final_norm
    # Chapter 9's options: count each part (RMSNorm has a gain and no shift).
    kv = 2 * (config.n_kv_head or config.n_head) * (d // config.n_head)  # key and value widths together
    norm = d if config.norm == "rmsnorm" or not config.bias else 2 * d
    per_block = _block_matrix_weights(config) + 2 * norm
    if config.bias:
        hidden = _mlp_hidden(config)
        per_block += (d + kv + d) + (hidden * (2 if config.mlp == "swiglu" else 1) + d)
    positions = T * d if config.positions == "learned" else 0
    embeddings = 0 if non_embedding else V * d + positions
    return embeddings + L * per_block + norm


def _is_gpt2_block(config: GPTConfig) -> bool:
    return (config.norm, config.mlp, config.positions, config.n_kv_head, config.mlp_hidden) == (
        "layernorm", "gelu", "learned", None, None
    )  # fmt: skip


def _mlp_hidden(config: GPTConfig) -> int:
    if config.mlp_hidden is not None:
        return config.mlp_hidden
    return 4 * config.n_embd if config.mlp == "gelu" else swiglu_hidden(config.n_embd)


def _block_matrix_weights(config: GPTConfig) -> int:
    """The weights of one block's matrices: 12d² for GPT-2's block; fewer key/value weights with GQA,
    3·d·h for a SwiGLU of width h."""
    d = config.n_embd
    kv = 2 * (config.n_kv_head or config.n_head) * (d // config.n_head)
    attention = d * d + d * kv + d * d  # W_Q, W_K and W_V, W_O
    mlp = (3 if config.mlp == "swiglu" else 2) * d * _mlp_hidden(config)
    return attention + mlp


class GPT(nn.Module):
    """A decoder-only Transformer language model (GPT-2's architecture).

    ``forward(idx, targets=None, return_attention=False)`` with ``idx`` (B, T)
    token ids returns ``(logits (B, T, V), loss)``; ``loss`` is the mean
    next-token cross-entropy when ``targets`` (B, T) are given (positions with
    target -100 are ignored), else None. With ``return_attention=True`` a third
    item: a list of n_layer tensors (B, H, T, T) of attention weights.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        _check_model_config(config, GPTConfig)
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)  # (V, d)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)  # (T_max, d), learned
        if config.positions == "rope":  # rotary positions act inside attention: no table (Chapter 9)
            self.position_embedding = None
        self.dropout = nn.Dropout(config.dropout)
        modern = dict(
            norm=config.norm,
            mlp=config.mlp,
            n_kv_head=config.n_kv_head,
            rope=config.positions == "rope",
            mlp_hidden=config.mlp_hidden,
        )
        self.blocks = nn.ModuleList(
            Block(
                config.n_embd,
                config.n_head,
                config.dropout,
                config.bias,
                norm_first=True,
                activation=config.activation,
                **modern,
            )
            for _ in range(config.n_layer)
        )
        self.ln_f = _norm_layer(config.norm, config.n_embd, config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # weight tying: one (V, d) matrix reads and writes tokens
        _init_weights(self, config.n_layer)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        return_attention: bool = False,
        kv_cache: list[LayerKVCache] | None = None,
    ) -> tuple:
        config = self.config
        idx = validate.token_ids(idx, config.vocab_size, block_size=config.block_size).long()
        if targets is not None:
            targets = _check_targets(targets, idx, config.vocab_size)
        B, T = idx.shape
        past = self._check_kv_cache(kv_cache, T)  # 0 without a cache: positions held by the cache come first
        positions = torch.arange(past, past + T, device=idx.device)  # (T,)
        x = self.token_embedding(idx)  # (B, T, d)
        if self.position_embedding is not None:  # learned positions (rope: none, attention rotates q and k)
            x = x + self.position_embedding(positions)
        x = self.dropout(x)
        attentions = []
        for layer, block in enumerate(self.blocks):
            cache = None if kv_cache is None else kv_cache[layer]
            x, weights = block(x, is_causal=config.causal, need_weights=return_attention, kv_cache=cache)
            attentions.append(weights)
        x = self.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().view(B * T, -1), targets.reshape(B * T), ignore_index=IGNORE_INDEX
            )  # (B*T, V) against (B*T,)
        if return_attention:
            return logits, loss, attentions
        return logits, loss

    def new_kv_cache(self) -> list[LayerKVCache]:
        """An empty KV cache (one :class:`~llmbook.attention.LayerKVCache` per layer) for
        ``forward(idx, kv_cache=cache)``: each call appends idx's keys and values and
        attends to everything cached (Chapter 8)."""
        return [LayerKVCache() for _ in self.blocks]

    def _check_kv_cache(self, kv_cache, T: int) -> int:
        """The number of positions already in ``kv_cache`` (0 for None), after checking it fits."""
        if kv_cache is None:
            return 0
        if not isinstance(kv_cache, list) or len(kv_cache) != len(self.blocks):
            raise TypeError(
                f"kv_cache must be the list of {len(self.blocks)} LayerKVCache that model.new_kv_cache() returns, "
                f"got {type(kv_cache).__name__}"
            )
        if not self.config.causal:
            raise ValueError("a KV cache needs a causal model (causal=True): without the mask old keys would change")
        past = kv_cache[0].length
        if past + T > self.config.block_size:
            raise ValueError(
                f"the cache holds {past} positions and idx adds {T}: {past + T} is more than block_size="
                f"{self.config.block_size}; start a new cache with the last {self.config.block_size} tokens"
            )
        return past

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied head counted once); ``non_embedding=True`` leaves out
        the token and position embeddings, as in scaling laws."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields the tied matrix once
        if non_embedding:
            total -= self.token_embedding.weight.numel()
            if self.position_embedding is not None:
                total -= self.position_embedding.weight.numel()
        return total

    def flops_per_token(self, context: int | None = None, training: bool = True) -> int:
        """Floating-point operations to process one token at context ``context``.

        ``context`` defaults to ``block_size``.

        A matrix multiply costs 2 FLOPs (multiply + add) per weight per token. The
        weights a token is multiplied by are the blocks' 12·L·d² and the LM head's V·d
        (embedding look-ups, biases, LayerNorms and softmax are left out: they are
        small). Attention adds q·kᵀ and weights·v: 2·T·d each per layer. So

            forward  = 2·(12·L·d² + V·d) + 4·L·T·d
            training = 3 × forward = 6·(12·L·d² + V·d) + 12·L·T·d

        (the backward pass costs twice the forward: gradients for activations and
        for weights). ``training=False`` gives the forward pass alone.
        """
        config = self.config
        T = config.block_size if context is None else validate.positive_int(context, "context")
        L, d, V = config.n_layer, config.n_embd, config.vocab_size
        # _block_matrix_weights is 12·d² for GPT-2's block
        forward = 2 * (L * _block_matrix_weights(config) + V * d) + 4 * L * T * d
        return 3 * forward if training else forward

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


# ---------------------------------------------------------------------------------------------
# BERT: encoder-only.
# ---------------------------------------------------------------------------------------------


@dataclass
class BERTConfig:
    """Sizes of a BERT. BERT-base: ``BERTConfig(30522, 512, 12, 12, 768, n_segments=2)``.

    ``pad_id``: the id of the padding token; keys holding it are masked out of
    attention (None: no padding). ``norm_first=False`` is the original
    post-LN BERT; ``True`` gives pre-LN blocks (steadier for deep stacks).
    ``pooling``: ``"first"`` (the [CLS] token, as in BERT) or ``"mean"`` (the
    mean over real tokens) for the classification head of ``num_classes``.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.1
    bias: bool = True
    n_segments: int = 0  # 2 for sentence-pair tasks (segment A / B); 0: no segment embedding
    pad_id: int | None = None
    norm_first: bool = False
    num_classes: int = 2
    pooling: str = "first"

    def __post_init__(self) -> None:
        _check_config_sizes(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        validate.positive_int(
            self.num_classes, "num_classes", minimum=2, hint="a classifier needs at least two classes"
        )
        validate.nonnegative_int(self.n_segments, "n_segments", hint="2 for sentence pairs, 0 for none")
        validate.pad_id(self.pad_id, self.vocab_size)
        validate.one_of(self.pooling, "pooling", ("first", "mean"))


class BERT(nn.Module):
    """An encoder-only Transformer (BERT's architecture) with a masked-LM head and a classifier.

    ``forward(idx, targets=None, return_attention=False, segment_ids=None,
    attention_mask=None)`` returns ``(logits (B, T, V), loss)`` for masked
    language modelling: ``targets`` hold the original id at masked positions
    and -100 elsewhere. Attention is bidirectional: every position sees every
    real (non-padding) token. ``classify(idx, labels=None)`` returns
    ``(class_logits (B, num_classes), loss)``.

    Post-LN by default, as in Devlin et al. (2019), so the model is the one the
    paper describes; it trains well at BERT's depths with learning-rate warm-up.
    """

    def __init__(self, config: BERTConfig):
        super().__init__()
        _check_model_config(config, BERTConfig)
        self.config = config
        d = config.n_embd
        self.token_embedding = nn.Embedding(config.vocab_size, d)
        self.position_embedding = nn.Embedding(config.block_size, d)
        self.segment_embedding = nn.Embedding(config.n_segments, d) if config.n_segments else None
        self.ln_embedding = nn.LayerNorm(d, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(d, config.n_head, config.dropout, config.bias, norm_first=config.norm_first)
            for _ in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(d, bias=config.bias) if config.norm_first else nn.Identity()
        # Masked-LM head: a d x d transform, GELU, LayerNorm, then the tied (V, d) matrix plus a bias per token.
        self.mlm_transform = nn.Linear(d, d, bias=config.bias)
        self.mlm_norm = nn.LayerNorm(d, bias=config.bias)
        self.mlm_head = nn.Linear(d, config.vocab_size, bias=True)
        self.mlm_head.weight = self.token_embedding.weight  # weight tying
        # Classification head: pooler (d x d, tanh) then a linear map to the classes.
        self.pooler = nn.Linear(d, d, bias=config.bias)
        self.classifier = nn.Linear(d, config.num_classes, bias=True)
        _init_weights(self, config.n_layer)

    def _attention_mask(self, idx: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(B, 1, 1, T) bool, True at real tokens, from ``attention_mask`` (B, T) or from ``pad_id``.

        ``attention_mask`` has one documented form: True/1 at real tokens, False/0 at
        padding (bool, or an integer or float tensor of 0s and 1s, as Hugging Face's
        tokenizers return it). The *additive* form that some libraries pass to
        attention (0 at real tokens, -inf or -10000 at padding) is refused, since
        reading it as booleans would invert it.
        """
        if attention_mask is not None:
            real, why = _mask_as_bool(attention_mask, idx), "its attention_mask has no 1"
        elif self.config.pad_id is not None:
            real = padding_mask(idx, self.config.pad_id)[:, 0, 0, :]  # (B, T)
            why = f"it holds only pad_id={self.config.pad_id}"
        else:
            return None
        empty = ~real.any(dim=1)
        if bool(empty.any()):
            row = int(empty.nonzero()[0, 0])
            raise ValueError(
                f"sequence {row} of the batch is all padding ({why}); give every sequence at least one real token"
            )
        return real[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries

    def encode(
        self,
        idx: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, list, torch.Tensor | None]:
        """Contextual vectors (B, T, d) for every position, the attention
        weights, and the key mask.
        """
        config = self.config
        idx = validate.token_ids(idx, config.vocab_size, block_size=config.block_size).long()
        B, T = idx.shape
        mask = self._attention_mask(idx, attention_mask)
        positions = torch.arange(T, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)  # (B, T, d)
        if self.segment_embedding is not None:
            if segment_ids is None:
                segment_ids = torch.zeros_like(idx)
            if not torch.is_tensor(segment_ids) or segment_ids.shape != idx.shape:
                shape = tuple(segment_ids.shape) if torch.is_tensor(segment_ids) else type(segment_ids).__name__
                raise ValueError(
                    "segment_ids must be a tensor of the shape of idx "
                    f"{tuple(idx.shape)} (one segment per position), "
                    f"got {shape}"
                )
            validate.class_ids(
                segment_ids.flatten(),
                config.n_segments,
                batch_size=segment_ids.numel(),
                name="segment_ids",
                count_name="n_segments",
            )
            x = x + self.segment_embedding(segment_ids.long())
        elif segment_ids is not None:
            raise ValueError(
                "segment_ids given but the model has no segment embedding: " + "build it with n_segments=2"
            )
        x = self.dropout(self.ln_embedding(x))
        attentions = []
        for block in self.blocks:
            x, weights = block(x, mask=mask, is_causal=False, need_weights=return_attention)
            attentions.append(weights)
        return self.ln_f(x), attentions, mask

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        return_attention: bool = False,
        segment_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple:
        if targets is not None:
            validate.token_ids(idx, self.config.vocab_size, block_size=self.config.block_size)
            targets = _check_targets(targets, idx, self.config.vocab_size)
        hidden, attentions, _ = self.encode(idx, segment_ids, attention_mask, return_attention)
        logits = self.mlm_head(self.mlm_norm(F.gelu(self.mlm_transform(hidden))))  # (B, T, V)
        loss = None
        if targets is not None:
            B, T = idx.shape
            loss = F.cross_entropy(logits.float().view(B * T, -1), targets.reshape(B * T), ignore_index=IGNORE_INDEX)
        if return_attention:
            return logits, loss, attentions
        return logits, loss

    def classify(
        self,
        idx: torch.Tensor,
        labels: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits (B, num_classes) from the first token's vector or the mean over real tokens."""
        hidden, _, mask = self.encode(idx, segment_ids, attention_mask)
        if self.config.pooling == "first":
            pooled = hidden[:, 0]  # (B, d): the [CLS] position
        else:
            real = mask[:, 0, 0, :, None].to(hidden.dtype) if mask is not None else torch.ones_like(hidden[..., :1])
            pooled = (hidden * real).sum(dim=1) / real.sum(dim=1)  # (B, d): mean over real tokens only
        logits = self.classifier(self.dropout(torch.tanh(self.pooler(pooled))))
        loss = None
        if labels is not None:
            labels = validate.class_ids(labels, self.config.num_classes, batch_size=idx.shape[0]).long()
            loss = F.cross_entropy(logits.float(), labels)
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.token_embedding.weight.numel() + self.position_embedding.weight.numel()
            if self.segment_embedding is not None:
                total -= self.segment_embedding.weight.numel()
        return total

    def flops_per_token(self, context: int | None = None, training: bool = True) -> int:
        """As :meth:`GPT.flops_per_token`, plus the MLM transform (d²): 2·(12·L·d² + d² + V·d) + 4·L·T·d forward."""
        config = self.config
        T = config.block_size if context is None else validate.positive_int(context, "context")
        L, d, V = config.n_layer, config.n_embd, config.vocab_size
        forward = 2 * (12 * L * d * d + d * d + V * d) + 4 * L * T * d
        return 3 * forward if training else forward
