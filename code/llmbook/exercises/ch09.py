"""Checks for the exercises of Chapter 9: From a base model to an assistant."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import exercise, expect

# ------------------------------------------------------------------ RMSNorm


def _close(got, expected, atol=1e-5) -> bool:
    return torch.is_tensor(got) and got.shape == expected.shape and torch.allclose(got.float(), expected, atol=atol)


@exercise(
    "ch09.rms_norm",
    name="rms_norm",
    title="RMSNorm against nn.RMSNorm",
    wrong=[
        lambda x, weight, eps=1e-6: F.layer_norm(x, x.shape[-1:], weight, None, eps),  # subtracts the mean
        lambda x, weight, eps=1e-6: x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight,  # sum, not mean
        lambda x, weight, eps=1e-6: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps),  # forgets the gain
        lambda x, weight, eps=1e-6: x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight,  # wrong axis
    ],
)
def check_rms_norm(rms_norm):
    generator = torch.Generator().manual_seed(0)
    for shape in ((4, 8), (2, 3, 16)):
        x = torch.randn(*shape, generator=generator) * 3 + 1
        weight = torch.rand(shape[-1], generator=generator) + 0.5
        reference = torch.nn.RMSNorm(shape[-1], eps=1e-6)
        with torch.no_grad():
            reference.weight.copy_(weight)
            expected = reference(x)
        got = rms_norm(x, weight, 1e-6)
        expect(
            _close(got, expected),
            f"rms_norm(x of shape {tuple(shape)}, weight, 1e-6) differs from nn.RMSNorm: first row "
            f"{got[..., 0, :3].flatten().tolist() if torch.is_tensor(got) else got!r}…, expected "
            f"{expected[..., 0, :3].flatten().tolist()}…. Divide each vector by the square root of the mean of its "
            "squares (over the last dimension) plus eps, subtract nothing, then multiply by weight.",
        )


# ------------------------------------------------------------------ KV-cache bytes (transfer)

_MODELS = [
    # (n_layer, n_head, n_kv_head, n_embd, context, batch_size, bytes_per_value)
    (32, 32, 8, 4096, 8192, 1, 2),  # a Llama-3-8B-like model
    (32, 32, 32, 4096, 4096, 4, 2),  # no GQA, a batch of 4
    (40, 52, 1, 6656, 2048, 2, 4),  # multi-query attention, float32
    (2, 4, 2, 128, 128, 16, 4),  # this chapter's size
]


@exercise(
    "ch09.kv_cache_bytes",
    name="kv_cache_size",
    title="KV-cache bytes of any model",
    wrong=[
        lambda L, H, Hkv, d, T, B, nbytes: L * Hkv * (d // H) * T * B * nbytes,  # keys only
        lambda L, H, Hkv, d, T, B, nbytes: 2 * L * H * (d // H) * T * B * nbytes,  # as if no GQA
        lambda L, H, Hkv, d, T, B, nbytes: 2 * L * Hkv * d * T * B * nbytes,  # full width per KV head
        lambda L, H, Hkv, d, T, B, nbytes: 2 * L * Hkv * (d // H) * T * B,  # counts values, not bytes
    ],
)
def check_kv_cache_bytes(kv_cache_size):
    for L, H, Hkv, d, T, B, nbytes in _MODELS:
        expected = 2 * L * Hkv * (d // H) * T * B * nbytes
        got = kv_cache_size(L, H, Hkv, d, T, B, nbytes)
        expect(
            isinstance(got, (int, float)) and got == expected,
            f"kv_cache_size(n_layer={L}, n_head={H}, n_kv_head={Hkv}, n_embd={d}, context={T}, batch_size={B}, "
            f"bytes_per_value={nbytes}) returned {got!r}; expected {expected:,}. Every layer stores a key and a "
            "value vector of head_dim = n_embd // n_head numbers per key/value head, per position, per sequence.",
        )


# ------------------------------------------------------------------ multi-turn loss masks (transfer)

_USER, _ASSISTANT, _END = 256, 257, 258


def _expected_targets(ids):
    """-100 everywhere except where the next token belongs to an assistant's reply (its <|end|> included)."""
    targets, speaking = [], False
    for position in range(len(ids) - 1):
        if ids[position] == _ASSISTANT:
            speaking = True
        elif ids[position] in (_USER, _END):
            speaking = False
        targets.append(ids[position + 1] if speaking else -100)
    return targets


_CONVERSATIONS = [
    [_USER, 72, 105, _ASSISTANT, 111, 107, _END],
    [_USER, 65, _ASSISTANT, 66, 67, _END, _USER, 68, 69, _ASSISTANT, 70, _END],
    [_USER, 1, 2, 3, _ASSISTANT, 4, _END, _USER, 5, _ASSISTANT, 6, 7, 8, _END, _USER, 9, _ASSISTANT, _END],
]


@exercise(
    "ch09.assistant_targets",
    name="assistant_targets",
    title="Loss masks for a multi-turn conversation",
    wrong=[
        lambda ids, user_id, assistant_id, end_id: list(ids[1:]),  # trains on everything
        lambda ids, user_id, assistant_id, end_id: [  # masks only up to the first reply
            t if i >= ids.index(assistant_id) else -100 for i, t in enumerate(ids[1:])
        ],
        lambda ids, user_id, assistant_id, end_id: [  # forgets <|end|>
            -100 if t == end_id else t for t in _expected_targets(list(ids))
        ],
        lambda ids, user_id, assistant_id, end_id: _expected_targets(list(ids))[1:] + [-100],  # shifted one too far
    ],
)
def check_assistant_targets(assistant_targets):
    for ids in _CONVERSATIONS:
        expected = _expected_targets(ids)
        got = assistant_targets(list(ids), _USER, _ASSISTANT, _END)
        got = got.tolist() if torch.is_tensor(got) else got
        expect(
            isinstance(got, list) and [int(t) for t in got] == expected,
            f"assistant_targets({ids}, user_id={_USER}, assistant_id={_ASSISTANT}, end_id={_END}) returned {got!r}; "
            f"expected {expected}. Target t is ids[t + 1]; keep it only when that token is part of an assistant's "
            "reply (the tokens after <|assistant|> up to and including <|end|>), -100 everywhere else.",
        )


# ------------------------------------------------------------------ LoRA merge


@exercise(
    "ch09.lora_merge",
    name="lora_merge",
    title="Merge a LoRA adapter into its weight",
    wrong=[
        lambda W, A, B, alpha, r: W + B @ A,  # forgets the scaling
        lambda W, A, B, alpha, r: W + (alpha / r) * (A.T @ B.T),  # transposed
        lambda W, A, B, alpha, r: W + (r / alpha) * (B @ A),  # scaling upside down
        lambda W, A, B, alpha, r: (alpha / r) * (B @ A),  # loses W
    ],
)
def check_lora_merge(lora_merge):
    generator = torch.Generator().manual_seed(0)
    for out_features, in_features, r, alpha in ((6, 4, 2, 4.0), (3, 8, 1, 1.0), (5, 5, 4, 16.0)):
        W = torch.randn(out_features, in_features, generator=generator)
        A = torch.randn(r, in_features, generator=generator)
        B = torch.randn(out_features, r, generator=generator)
        x = torch.randn(7, in_features, generator=generator)
        adapted = x @ W.T + (alpha / r) * (x @ A.T) @ B.T  # what the LoRA layer computes
        got = lora_merge(W, A, B, alpha, r)
        expect(
            torch.is_tensor(got) and got.shape == W.shape and torch.allclose(x @ got.T, adapted, atol=1e-4),
            f"with lora_merge(W {tuple(W.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, alpha={alpha}, r={r}) as "
            "the weight, a Linear layer does not give the adapted layer's output x Wᵀ + (alpha/r)·x Aᵀ Bᵀ"
            + (f" (your result has shape {tuple(got.shape)})" if torch.is_tensor(got) else f" (got {got!r})"),
        )


# ------------------------------------------------------------------ the DPO loss


@exercise(
    "ch09.dpo_loss",
    name="my_dpo_loss",
    title="The DPO loss",
    wrong=[
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - pr)).mean(),  # no reference model
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * ((pc - rc) + (pr - rr))).mean(),  # sign of rejected
        lambda pc, pr, rc, rr, beta: -F.logsigmoid((pc - rc) - (pr - rr)).mean(),  # no beta
        lambda pc, pr, rc, rr, beta: F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean(),  # maximises the loss
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum(),  # sum, not mean
    ],
)
def check_dpo_loss(my_dpo_loss):
    generator = torch.Generator().manual_seed(0)
    for beta in (0.1, 0.5):
        pc, pr, rc, rr = (torch.randn(5, generator=generator) * 3 - 10 for _ in range(4))
        expected = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
        got = my_dpo_loss(pc, pr, rc, rr, beta)
        value = float(got) if torch.is_tensor(got) and got.numel() == 1 else got
        expect(
            isinstance(value, float) and math.isclose(value, float(expected), rel_tol=1e-5),
            f"my_dpo_loss(...) with beta={beta} returned {got!r}; expected {float(expected):.6f} (a scalar). "
            "The loss of a pair is -log σ(β·[(log π(chosen) - log π_ref(chosen)) - (log π(rejected) - "
            "log π_ref(rejected))]); average it over the pairs.",
        )
    same = torch.full((3,), -4.0)
    got = my_dpo_loss(same, same, same, same, 0.1)
    expect(
        torch.is_tensor(got) and math.isclose(float(got), math.log(2), rel_tol=1e-5),
        f"when the policy equals the reference, the loss must be ln 2 = 0.6931; got {got!r}",
    )
