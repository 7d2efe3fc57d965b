"""Text generation from any next-token model (Chapter 5; decoding strategies in Chapter 8).

:func:`generate` samples one token at a time (greedy, temperature, top-k,
top-p / nucleus) and :func:`beam_search` keeps the ``beam_width`` most likely
continuations. Both work with any model whose ``forward(idx)`` returns
``(logits, ...)`` (or just logits) of shape (B, T, V); when the model has a
``config.block_size``, the context is cropped to its last ``block_size``
tokens. The model is put in eval mode (and restored afterwards) and no
gradients are kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["generate", "beam_search", "filter_logits", "sequence_log_likelihood"]


def _as_batch(idx) -> torch.Tensor:
    if not isinstance(idx, torch.Tensor):
        raise ValueError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}; use torch.tensor([ids])")
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}; use idx.long()")
    if idx.dim() == 1:
        idx = idx[None, :]  # (T,) -> (1, T)
    if idx.dim() != 2 or idx.shape[0] == 0 or idx.shape[1] == 0:
        raise ValueError(
            f"idx must be a non-empty prompt of shape (batch, time) or (time,), got {tuple(idx.shape)}; "
            "start from at least one token (e.g. a newline)"
        )
    return idx.long()


def _next_token_logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """(B, V) logits for the token after ``idx``, the context cropped to the model's block_size."""
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    context = idx if block_size is None else idx[:, -block_size:]  # (B, <= block_size)
    output = model(context)
    logits = output[0] if isinstance(output, (tuple, list)) else output
    return logits[:, -1, :].float()  # (B, V): only the last position predicts the next token


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Divide ``logits`` (B, V) by ``temperature``, then set to -inf every token outside the top ``top_k``
    and outside the nucleus: the smallest set of most likely tokens whose probabilities add up to at
    least ``top_p``. Sampling from ``softmax`` of the result is top-k / top-p sampling.

    >>> filter_logits(torch.tensor([[2.0, 1.0, 0.0]]), top_k=2)
    tensor([[2., 1., -inf]])
    """
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
        outside = mass_before >= top_p  # the nucleus is full before this token: drop it (the top token is kept)
        outside = outside.scatter(-1, order, outside)  # back to vocabulary order
        logits = logits.masked_fill(outside, float("-inf"))
    return logits


def _check_sampling_arguments(max_new_tokens, temperature, top_k, top_p, num_return_sequences, greedy) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not greedy and not temperature > 0:
        raise ValueError(
            f"temperature must be > 0 when sampling, got {temperature}; for the most likely token every step "
            "use greedy=True (the limit of temperature -> 0)"
        )
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 keeps every token; None also does), got {top_p!r}")
    if not isinstance(num_return_sequences, int) or num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be an integer >= 1, got {num_return_sequences!r}")


class _EvalMode:
    """Eval mode and no gradients inside; the model's previous mode restored on exit."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.no_grad = torch.no_grad()
        self.no_grad.__enter__()
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        self.no_grad.__exit__(*exc)
        return False


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_return_sequences: int = 1,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend each prompt in ``idx`` ((B, T) or (T,)) by ``max_new_tokens`` tokens.

    Each step: logits of the next token, divided by ``temperature``, restricted
    to the ``top_k`` most likely and to the ``top_p`` nucleus, then sampled
    (with ``generator`` for repeatable draws), or the most likely token when
    ``greedy``. Each prompt is repeated ``num_return_sequences`` times, so the
    result is (B * num_return_sequences, T + max_new_tokens), prompts included.
    """
    _check_sampling_arguments(max_new_tokens, temperature, top_k, top_p, num_return_sequences, greedy)
    idx = _as_batch(idx)
    idx = idx.repeat_interleave(num_return_sequences, dim=0)  # (B*n, T): row b*n + i is sample i of prompt b
    with _EvalMode(model):
        for _ in range(max_new_tokens):
            logits = _next_token_logits(model, idx)  # (B*n, V)
            if greedy:
                next_token = logits.argmax(dim=-1, keepdim=True)  # (B*n, 1)
            else:
                probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
                next_token = torch.multinomial(probs, num_samples=1, generator=generator)  # (B*n, 1)
            idx = torch.cat([idx, next_token.to(idx.device)], dim=1)
    return idx


def sequence_log_likelihood(model: nn.Module, idx: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """log p(idx[:, prompt_length:] | prompt) under ``model``, one number per row (B,)."""
    idx = _as_batch(idx)
    total = torch.zeros(idx.shape[0])
    with _EvalMode(model):
        for t in range(prompt_length, idx.shape[1]):
            log_probs = torch.log_softmax(_next_token_logits(model, idx[:, :t]), dim=-1)  # (B, V)
            total += log_probs.gather(1, idx[:, t : t + 1]).squeeze(1).cpu()
    return total


def beam_search(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    beam_width: int = 4,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
) -> torch.Tensor:
    """The most likely continuation found by keeping the ``beam_width`` best partial sequences.

    Every step each kept sequence is extended by every token, and the
    ``beam_width`` extensions with the highest total log-probability survive.
    A sequence that emits ``eos_id`` is finished (it is padded with ``eos_id``
    and its score no longer changes). The winner maximises
    log p / length ** ``length_penalty``, where length counts generated tokens
    up to and including ``eos_id``; without ``eos_id`` all lengths are equal
    and the penalty changes nothing. ``beam_width=1`` is greedy decoding.
    Returns (B, T + max_new_tokens), one best sequence per prompt.
    """
    if not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    prompts = _as_batch(idx)
    return torch.cat([_beam_search_one(model, row[None], max_new_tokens, beam_width, length_penalty, eos_id) for row in prompts])


def _beam_search_one(model, prompt, max_new_tokens, beam_width, length_penalty, eos_id) -> torch.Tensor:
    beams = prompt.repeat(beam_width, 1)  # (W, T): all beams start as the prompt
    scores = torch.full((beam_width,), float("-inf"), device=prompt.device)
    scores[0] = 0.0  # only one distinct beam at the start, so the first step does not pick W copies
    lengths = torch.zeros(beam_width, device=prompt.device)
    finished = torch.zeros(beam_width, dtype=torch.bool, device=prompt.device)
    with _EvalMode(model):
        for _ in range(max_new_tokens):
            log_probs = torch.log_softmax(_next_token_logits(model, beams), dim=-1)  # (W, V)
            V = log_probs.shape[-1]
            if finished.any():  # a finished beam may only repeat eos, at no cost
                log_probs[finished] = float("-inf")
                log_probs[finished, eos_id] = 0.0
            candidates = (scores[:, None] + log_probs).view(-1)  # (W*V,): every beam times every token
            top_scores, flat = torch.topk(candidates, beam_width)
            parent, token = flat // V, flat % V  # which beam each survivor extends, and with which token
            beams = torch.cat([beams[parent], token[:, None]], dim=1)  # (W, T+1)
            lengths = lengths[parent] + (~finished[parent]).float()
            finished = finished[parent] | (token == eos_id) if eos_id is not None else finished[parent]
            scores = top_scores
            if eos_id is not None and finished.all():
                beams = torch.cat([beams, beams.new_full((beam_width, max_new_tokens - (beams.shape[1] - prompt.shape[1])), eos_id)], 1)
                break
    normalised = scores / lengths.clamp(min=1) ** length_penalty if max_new_tokens else scores
    return beams[normalised.argmax()][None]  # (1, T + max_new_tokens)
