"""GPT-2's published weights in the book's own GPT (Chapter 8: Applications).

GPT-3's weights were never released (only an API); GPT-2's were. Hugging
Face's ``GPT2LMHeadModel`` is the architecture of :class:`llmbook.models.GPT`
with other names, three details aside that :func:`gpt2_config` and
:func:`convert_gpt2_state_dict` handle:

* its linear layers are ``Conv1D`` modules that store the weight as
  (in, out), the transpose of ``nn.Linear``'s (out, in);
* its MLP uses the tanh approximation of GELU (``activation="gelu_tanh"``);
* every linear layer and LayerNorm has a bias (``bias=True``).

:func:`load_gpt2` downloads (or reads from the local Hugging Face cache) a
checkpoint and returns the converted GPT and its tokenizer; it needs the
optional ``transformers`` package. The tests convert a randomly initialised
``GPT2LMHeadModel`` and compare logits.
"""

from __future__ import annotations

import re

import torch

from .models import GPT, GPTConfig

__all__ = ["gpt2_config", "convert_gpt2_state_dict", "from_gpt2", "load_gpt2"]

# Hugging Face name (after "transformer.h.N.") -> the book's name (after "blocks.N."), and whether the
# weight is a Conv1D (stored transposed).
_BLOCK_NAMES = {
    "ln_1.weight": ("ln_1.weight", False),
    "ln_1.bias": ("ln_1.bias", False),
    "attn.c_attn.weight": ("attn.in_proj.weight", True),  # W_Q, W_K, W_V stacked, as in_proj
    "attn.c_attn.bias": ("attn.in_proj.bias", False),
    "attn.c_proj.weight": ("attn.out_proj.weight", True),
    "attn.c_proj.bias": ("attn.out_proj.bias", False),
    "ln_2.weight": ("ln_2.weight", False),
    "ln_2.bias": ("ln_2.bias", False),
    "mlp.c_fc.weight": ("mlp.fc.weight", True),
    "mlp.c_fc.bias": ("mlp.fc.bias", False),
    "mlp.c_proj.weight": ("mlp.proj.weight", True),
    "mlp.c_proj.bias": ("mlp.proj.bias", False),
}
_TOP_NAMES = {
    "wte.weight": "token_embedding.weight",
    "wpe.weight": "position_embedding.weight",
    "ln_f.weight": "ln_f.weight",
    "ln_f.bias": "ln_f.bias",
}


def gpt2_config(hf_config) -> GPTConfig:
    """The :class:`GPTConfig` of a Hugging Face ``GPT2Config`` (GPT-2 small: 12 layers, 12 heads, 768 wide)."""
    activation = getattr(hf_config, "activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(
            f"the checkpoint uses activation_function={activation!r}; the book's GPT supports GPT-2's "
            "tanh-approximated GELU ('gelu_new' or 'gelu_pytorch_tanh') only"
        )
    if abs(getattr(hf_config, "layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
        raise ValueError(
            f"the checkpoint's layer_norm_epsilon is {hf_config.layer_norm_epsilon}; the book's LayerNorms use 1e-5"
        )
    return GPTConfig(
        vocab_size=hf_config.vocab_size,
        block_size=hf_config.n_positions,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        n_embd=hf_config.n_embd,
        dropout=0.0,
        bias=True,
        activation="gelu_tanh",
    )


def convert_gpt2_state_dict(state_dict: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """Rename (and transpose the ``Conv1D`` weights of) a GPT-2 state dict into the book's GPT names.

    The head ``lm_head.weight`` is tied to the token embedding in both models, so it is not copied;
    the causal-mask buffers some versions store (``attn.bias``, ``attn.masked_bias``) are skipped.
    Every parameter the book's GPT needs must be present: a missing one raises.
    """
    converted = {}
    for name, tensor in state_dict.items():
        short = name.removeprefix("transformer.")
        if short in _TOP_NAMES:
            converted[_TOP_NAMES[short]] = tensor
            continue
        match = re.fullmatch(r"h\.(\d+)\.(.+)", short)
        if match and match.group(2) in _BLOCK_NAMES:
            ours, transposed = _BLOCK_NAMES[match.group(2)]
            converted[f"blocks.{match.group(1)}.{ours}"] = tensor.t().contiguous() if transposed else tensor
    expected = set(_TOP_NAMES.values()) | {
        f"blocks.{i}.{ours}" for i in range(n_layer) for ours, _ in _BLOCK_NAMES.values()
    }
    missing = sorted(expected - set(converted))
    if missing:
        raise ValueError(
            f"the GPT-2 state dict lacks {len(missing)} tensors the book's GPT needs, e.g. {missing[:3]}; "
            "pass GPT2LMHeadModel(...).state_dict() of a model with the given n_layer"
        )
    return converted


def from_gpt2(hf_model) -> GPT:
    """The book's :class:`GPT` holding the weights of a Hugging Face ``GPT2LMHeadModel`` (same logits)."""
    config = gpt2_config(hf_model.config)
    model = GPT(config)
    weights = convert_gpt2_state_dict(hf_model.state_dict(), config.n_layer)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [name for name in missing if name != "lm_head.weight"]  # tied to token_embedding.weight
    if missing or unexpected:
        raise ValueError(f"conversion left missing={missing}, unexpected={unexpected}")
    return model.eval()


def load_gpt2(name: str = "gpt2", download: bool = True):
    """``(model, tokenizer)``: the book's GPT with the weights of the Hugging Face checkpoint ``name``
    (``"gpt2"`` is GPT-2 small, 124M parameters) and its byte-level BPE tokenizer.

    Needs ``pip install transformers``. ``download=False`` reads only the local Hugging Face cache
    (no network): it raises ``OSError`` when the weights are not there.
    """
    try:
        from transformers import GPT2LMHeadModel, GPT2TokenizerFast
    except ImportError as error:
        raise ImportError("load_gpt2 needs Hugging Face transformers: pip install transformers") from error
    tokenizer = GPT2TokenizerFast.from_pretrained(name, local_files_only=not download)
    hf_model = GPT2LMHeadModel.from_pretrained(name, local_files_only=not download)
    return from_gpt2(hf_model), tokenizer
