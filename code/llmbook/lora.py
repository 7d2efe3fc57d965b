"""Low-rank adaptation, written from scratch (Chapter 9: From a base model to an assistant).

LoRA (Hu et al., 2021) freezes a pre-trained weight W (out × in) and learns a
low-rank change of it: y = x Wᵀ + (α/r) · x Aᵀ Bᵀ with A (r × in) random and
B (out × r) zero, so the adapted model starts exactly where the base model is.
Only A and B train: r·(in + out) numbers instead of in·out. After training the
change folds into the weight, W' = W + (α/r)·B A (:func:`merge_lora`), and the
merged model is an ordinary model with the same outputs and no extra cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import validate

__all__ = ["LoRALinear", "add_lora", "merge_lora", "trainable_parameters", "optimizer_state_bytes"]

ATTENTION_PROJECTIONS = ("in_proj", "q_proj", "kv_proj", "out_proj")  # the attention's linear layers


class LoRALinear(nn.Module):
    """A frozen :class:`torch.nn.Linear` plus a trainable low-rank update (α/r)·B A.

    ``A`` (r, in) starts random (Kaiming-uniform, as :class:`torch.nn.Linear`
    initialises its weight), ``B`` (out, r) starts at zero: at step 0 the
    layer computes exactly what the base layer does.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps a torch.nn.Linear, got {type(base).__name__}")
        self.r = validate.positive_int(r, "r", hint="the rank of the update, e.g. 4, 8 or 16")
        self.alpha = validate.finite_float(alpha, "alpha", low=0.0, low_inclusive=False, hint="often 2·r")
        self.scaling = self.alpha / self.r
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device, dtype=base.weight.dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight W + (α/r)·B A (what :func:`merge_lora` stores)."""
        return self.base.weight + self.scaling * (self.B @ self.A)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the update as two thin products, (x Aᵀ) Bᵀ: never the full (out, in) matrix B A
        return self.base(x) + self.scaling * ((x @ self.A.T) @ self.B.T)

    def merged(self) -> nn.Linear:
        """An ordinary Linear with W' = W + (α/r)·B A and the same bias."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        layer = layer.to(device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.weight)
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, targets=ATTENTION_PROJECTIONS) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each Linear whose attribute name is in ``targets``
    (default: the attention projections) in a :class:`LoRALinear`. Returns the wrapped layers' names.

    A weight tied to another (GPT's head and token embedding) stays frozen with the rest."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, r=r, alpha=alpha))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise ValueError(f"no Linear layer named one of {tuple(targets)} in the model; pass targets=(...) by name")
    return wrapped


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` of ``model`` by its merged Linear (in place); returns ``model``."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Numbers that receive gradients (each tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in the optimizer's state tensors (AdamW: two moments per trained number, plus step counters)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    )
