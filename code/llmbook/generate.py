"""Text generation from any next-token model (Chapter 5; decoding strategies in Chapter 8).

:func:`generate` samples one token at a time (greedy, temperature, top-k,
top-p / nucleus) and :func:`beam_search` keeps the ``beam_width`` most likely
continuations. Both work with any model whose ``forward(idx)`` returns
``(logits, ...)`` (or just logits) of shape (B, T, V); when the model has a
``config.block_size``, the context is cropped to its last ``block_size``
tokens. The model is put in eval mode (and restored afterwards) and no
gradients are kept.

Chapter 8 adds ``generate(..., kv_cache=True)`` (keys and values of earlier
positions kept instead of recomputed, for a model with ``new_kv_cache()``
such as :class:`llmbook.models.GPT`) and measures of a set of samples:
:func:`distinct_n` (diversity), :func:`repetition` (loops inside one sample)
and :func:`self_loss` (the model's own loss on what it wrote).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import runtime, validate

__all__ = [
    "generate",
    "beam_search",
    "filter_logits",
    "sequence_log_likelihood",
    "distinct_n",
    "repetition",
    "self_loss",
    "kv_cache_bytes",
]


def _vocab_size(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "vocab_size", None)


def _as_batch(idx, model: nn.Module) -> torch.Tensor:
    """The prompt as (B, T) long ids, checked against the model's vocabulary when it has one."""
    if not torch.is_tensor(idx):
        raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}; use torch.tensor([ids])")
    vocab_size = _vocab_size(model)
    if vocab_size is None:  # a model without a config: only negative ids are known to be wrong
        vocab_size = int(idx.max()) + 1 if idx.numel() and not idx.dtype.is_floating_point else 1
    validate.token_ids(idx, vocab_size, dims=(1, 2))
    return (idx[None, :] if idx.dim() == 1 else idx).long()  # (T,) -> (1, T)


def _next_token_logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """(B, V) logits for the token after ``idx``, the context cropped to the model's block_size."""
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    context = idx if block_size is None else idx[:, -block_size:]  # (B, <= block_size)
    output = model(context)
    logits = output[0] if isinstance(output, (tuple, list)) else output
    if not torch.is_tensor(logits) or logits.dim() != 3 or logits.shape[:2] != context.shape:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(
            f"the model must return logits of shape (batch, time, vocab) = ({context.shape[0]}, {context.shape[1]}, V) "
            f"(or a tuple that starts with them), got {shape}"
        )
    last = logits[:, -1, :].float()  # (B, V): only the last position predicts the next token
    if bool(torch.isnan(last).any() | torch.isposinf(last).any()):
        bad = "nan" if bool(torch.isnan(last).any()) else "inf"
        raise ValueError(
            f"the model returned {bad} logits for the next token: its weights have diverged (a learning rate too "
            "high?) or it was loaded wrongly; check model(idx) on a short prompt"
        )
    return last


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Divide ``logits`` (B, V) by ``temperature``, then set to -inf every token outside the top ``top_k``
    and outside the nucleus: the smallest set of most likely tokens whose probabilities add up to at
    least ``top_p``. Sampling from ``softmax`` of the result is top-k / top-p sampling.

    >>> filter_logits(torch.tensor([[2.0, 1.0, 0.0]]), top_k=2)
    tensor([[2., 1., -inf]])

    A ``top_k`` of the vocabulary size or more keeps every token.
    """
    if not torch.is_tensor(logits) or not logits.dtype.is_floating_point or logits.dim() != 2:
        what = (
            f"shape {tuple(logits.shape)}, dtype {logits.dtype}" if torch.is_tensor(logits) else type(logits).__name__
        )
        raise ValueError(
            f"logits must be a float tensor of shape (batch, vocab), got {what}; for one row use logits[None]"
        )
    temperature, top_k, top_p = _check_filters(temperature, top_k, top_p)
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


def _check_filters(temperature, top_k, top_p) -> tuple:
    temperature = validate.finite_float(
        temperature,
        "temperature",
        low=0.0,
        low_inclusive=False,
        hint="1 samples from the model's distribution; for the most likely token every step use greedy=True",
    )
    if top_k is not None:
        top_k = validate.positive_int(top_k, "top_k", hint="or None for no limit")
    if top_p is not None:
        top_p = validate.finite_float(
            top_p, "top_p", low=0.0, high=1.0, low_inclusive=False, hint="1 or None keeps every token"
        )
    return temperature, top_k, top_p


def _check_sampling_arguments(max_new_tokens, temperature, top_k, top_p, num_return_sequences, greedy, generator):
    validate.nonnegative_int(max_new_tokens, "max_new_tokens")
    validate.positive_int(num_return_sequences, "num_return_sequences")
    if not isinstance(greedy, bool):
        raise TypeError(f"greedy must be True or False, got {greedy!r}")
    if greedy and num_return_sequences > 1:
        raise ValueError(
            f"greedy decoding with num_return_sequences={num_return_sequences} would return {num_return_sequences} "
            "identical rows (the most likely token is the same every time); sample (greedy=False) or use "
            "beam_search for several different continuations"
        )
    if not greedy:
        _check_filters(temperature, top_k, top_p)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, got {type(generator).__name__} {generator!r}; "
            "use torch.Generator().manual_seed(seed)"
        )


def _eval_mode(model: nn.Module):
    """:func:`llmbook.runtime.eval_mode` (no dropout, no gradients, mode restored) for a model checked first."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. a GPT), got {type(model).__name__}")
    return runtime.eval_mode(model)


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
    kv_cache: bool = False,
) -> torch.Tensor:
    """Extend each prompt in ``idx`` ((B, T) or (T,)) by ``max_new_tokens`` tokens.

    Each step: logits of the next token, divided by ``temperature``, restricted
    to the ``top_k`` most likely and to the ``top_p`` nucleus, then sampled
    (with ``generator`` for repeatable draws), or the most likely token when
    ``greedy``. Each prompt is repeated ``num_return_sequences`` times, so the
    result is (B * num_return_sequences, T + max_new_tokens), prompts included.

    ``kv_cache=True`` (Chapter 8) keeps every layer's keys and values: each
    step feeds only the newest token instead of the whole context. The tokens
    are the same as without it; when the context outgrows ``block_size`` the
    cache is rebuilt from the last ``block_size`` tokens, as the uncached
    model crops its context.
    """
    _check_sampling_arguments(max_new_tokens, temperature, top_k, top_p, num_return_sequences, greedy, generator)
    if not isinstance(kv_cache, bool):
        raise TypeError(f"kv_cache must be True or False, got {kv_cache!r}")
    if kv_cache and not callable(getattr(model, "new_kv_cache", None)):
        raise ValueError(
            f"kv_cache=True needs a model with a new_kv_cache() method (e.g. llmbook's GPT); "
            f"{type(model).__name__} has none: use kv_cache=False"
        )
    idx = _as_batch(idx, model)
    idx = idx.repeat_interleave(num_return_sequences, dim=0)  # (B*n, T): row b*n + i is sample i of prompt b
    cached = _CachedContext(model) if kv_cache else None
    with _eval_mode(model):
        for _ in range(max_new_tokens):
            logits = cached.next_token_logits(idx) if cached else _next_token_logits(model, idx)  # (B*n, V)
            if greedy:
                next_token = logits.argmax(dim=-1, keepdim=True)  # (B*n, 1)
            else:
                probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
                next_token = torch.multinomial(probs, num_samples=1, generator=generator)  # (B*n, 1)
            idx = torch.cat([idx, next_token.to(idx.device)], dim=1)
    return idx


class _CachedContext:
    """Next-token logits through a KV cache: only the tokens the cache has not seen go through the model."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.block_size = model.config.block_size
        self.cache = None
        self.seen = 0  # tokens of idx whose keys and values are in the cache

    def next_token_logits(self, idx: torch.Tensor) -> torch.Tensor:
        if self.cache is None or idx.shape[1] > self.block_size:  # first call, or the window slides: refill
            self.cache = self.model.new_kv_cache()
            context = idx[:, -self.block_size :]
        else:
            context = idx[:, self.seen :]  # the new token(s) only
        output = self.model(context, kv_cache=self.cache)
        self.seen = idx.shape[1]
        logits = output[0] if isinstance(output, (tuple, list)) else output
        return logits[:, -1, :].float()  # (B, V)


def kv_cache_bytes(cache: list) -> int:
    """Bytes held by the keys and values of a cache from ``model.new_kv_cache()``
    (formula: 2 · layers · tokens · n_embd · bytes per number, per sequence)."""
    return sum(layer.nbytes() for layer in cache)


def sequence_log_likelihood(model: nn.Module, idx: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """log p(idx[:, prompt_length:] | prompt) under ``model``, one number per row (B,)."""
    idx = _as_batch(idx, model)
    validate.positive_int(prompt_length, "prompt_length", hint="the prompt needs at least one token")
    if prompt_length > idx.shape[1]:
        raise ValueError(
            f"prompt_length={prompt_length} is longer than the sequences ({idx.shape[1]} tokens); "
            "it counts the prompt tokens at the start of idx"
        )
    total = torch.zeros(idx.shape[0])
    with _eval_mode(model):
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
    validate.positive_int(beam_width, "beam_width")
    validate.nonnegative_int(max_new_tokens, "max_new_tokens")
    length_penalty = validate.finite_float(
        length_penalty, "length_penalty", hint="1 divides by the length; 0 ignores it"
    )
    vocab_size = _vocab_size(model)
    if eos_id is not None:
        validate.nonnegative_int(eos_id, "eos_id", hint="the id of the end-of-sequence token, or None")
        if vocab_size is not None and eos_id >= vocab_size:
            raise ValueError(f"eos_id={eos_id} is outside the model's vocabulary 0..{vocab_size - 1}")
    prompts = _as_batch(idx, model)
    return torch.cat(
        [_beam_search_one(model, row[None], max_new_tokens, beam_width, length_penalty, eos_id) for row in prompts]
    )


def _beam_search_one(model, prompt, max_new_tokens, beam_width, length_penalty, eos_id) -> torch.Tensor:
    beams = prompt.repeat(beam_width, 1)  # (W, T): all beams start as the prompt
    scores = torch.full((beam_width,), float("-inf"), device=prompt.device)
    scores[0] = 0.0  # only one distinct beam at the start, so the first step does not pick W copies
    lengths = torch.zeros(beam_width, device=prompt.device)
    finished = torch.zeros(beam_width, dtype=torch.bool, device=prompt.device)
    with _eval_mode(model):
        for _ in range(max_new_tokens):
            log_probs = torch.log_softmax(_next_token_logits(model, beams), dim=-1)  # (W, V)
            V = log_probs.shape[-1]
            if eos_id is not None and eos_id >= V:
                raise ValueError(f"eos_id={eos_id} is outside the model's vocabulary 0..{V - 1}")
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
                beams = torch.cat(
                    [beams, beams.new_full((beam_width, max_new_tokens - (beams.shape[1] - prompt.shape[1])), eos_id)],
                    1,
                )
                break
    normalised = scores / lengths.clamp(min=1) ** length_penalty if max_new_tokens else scores
    return beams[normalised.argmax()][None]  # (1, T + max_new_tokens)


def _token_lists(samples) -> list[list[int]]:
    """Rows of a (N, T) tensor or a list of token lists, as lists of ints."""
    if torch.is_tensor(samples):
        if samples.dim() != 2:
            raise ValueError(f"samples must be a (N, T) tensor of token ids, got shape {tuple(samples.shape)}")
        return samples.tolist()
    if isinstance(samples, (list, tuple)) and all(isinstance(row, (list, tuple, str)) for row in samples):
        return [list(row) for row in samples]
    raise TypeError(f"samples must be a (N, T) tensor or a list of token lists, got {type(samples).__name__}")


def _ngrams(tokens: list, n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples, n: int = 2) -> float:
    """Diversity of a set of samples: distinct n-grams / all n-grams, counted over every sample together.

    1 means no n-gram occurs twice anywhere; near 0 means the samples repeat each other (or themselves).

    >>> distinct_n([[1, 2, 3], [1, 2, 4]], n=2)
    0.75
    """
    validate.positive_int(n, "n")
    grams = [gram for row in _token_lists(samples) for gram in _ngrams(row, n)]
    if not grams:
        raise ValueError(f"the samples hold no {n}-gram: each needs at least {n} tokens")
    return len(set(grams)) / len(grams)


def repetition(samples, n: int = 4) -> float:
    """Loops inside each sample: the fraction of its n-grams that already occurred earlier in the same
    sample, averaged over the samples (0: no n-gram repeats; near 1: one phrase over and over).

    >>> repetition([[1, 2, 1, 2, 1, 2]], n=2)
    0.6
    """
    validate.positive_int(n, "n")
    rates = []
    for row in _token_lists(samples):
        grams = _ngrams(row, n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    if not rates:
        raise ValueError(f"no sample holds an {n}-gram: each needs at least {n} tokens")
    return sum(rates) / len(rates)


def self_loss(model: nn.Module, samples: torch.Tensor, prompt_length: int) -> float:
    """The model's own mean loss (nats per token) on the tokens it generated after ``prompt_length``:
    low means text the model finds likely (greedy text is the lowest), high means surprising text."""
    samples = _as_batch(samples, model)
    new_tokens = samples.shape[1] - validate.positive_int(prompt_length, "prompt_length")
    if new_tokens < 1:
        raise ValueError(
            f"prompt_length={prompt_length} leaves no generated token in samples of length {samples.shape[1]}"
        )
    return float(-sequence_log_likelihood(model, samples, prompt_length).mean() / new_tokens)
