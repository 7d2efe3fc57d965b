"""Checks for the exercises of Chapter 8: Applications."""

from __future__ import annotations

import torch

from .core import exercise, expect


def _tiny_gpt(seed: int = 0):
    from llmbook.models import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16)).eval()


# ------------------------------------------------------------------ top-p (nucleus) filtering


def _nucleus_without_shift(logits, p):  # drops the token that makes the mass cross p
    probs = torch.softmax(logits, -1)
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(-1) < p
    out = torch.full_like(logits, float("-inf"))
    out[order[keep]] = logits[order[keep]]
    return out


def _nucleus_unsorted(logits, p):  # accumulates in vocabulary order instead of most likely first
    probs = torch.softmax(logits, -1)
    keep = (probs.cumsum(-1) - probs) < p
    return logits.masked_fill(~keep, float("-inf"))


def _top_k_instead(logits, p):
    k = max(1, int(p * logits.numel()))
    kth = logits.topk(k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


@exercise(
    "ch08.top_p_filter",
    name="top_p_filter",
    title="Top-p (nucleus) filtering",
    wrong=[_nucleus_without_shift, _nucleus_unsorted, _top_k_instead],
)
def check_top_p_filter(top_p_filter):
    from llmbook.generate import filter_logits

    generator = torch.Generator().manual_seed(8)
    cases = [(torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0]), 0.5), (torch.tensor([0.0, 3.0, 1.0, 2.0]), 0.9)]
    cases += [(torch.randn(20, generator=generator) * 2, p) for p in (0.3, 0.7, 0.95)]
    for logits, p in cases:
        expected = filter_logits(logits[None], top_p=p)[0]
        got = top_p_filter(logits.clone(), p)
        expect(
            torch.is_tensor(got) and got.shape == logits.shape,
            f"top_p_filter(logits of shape {tuple(logits.shape)}, {p}) should return a tensor of the same shape, "
            f"got {got!r}",
        )
        kept, should = torch.isfinite(got), torch.isfinite(expected)
        expect(
            torch.equal(kept, should) and torch.allclose(got[kept], logits[kept]),
            f"for logits {[round(x, 2) for x in logits.tolist()]} and p={p} you keep tokens "
            f"{kept.nonzero().flatten().tolist()}; the nucleus is {should.nonzero().flatten().tolist()}. Sort the "
            "probabilities from the largest, and keep each token while the mass of the tokens ranked above it is "
            "still below p (so the token that crosses p is kept); leave kept logits unchanged.",
        )


# ------------------------------------------------------------------ the source's generate call, fixed


def _greedy_five(model, input_ids, max_length):
    from llmbook.generate import generate

    one = generate(model, input_ids, max_length - input_ids.shape[1], greedy=True)
    return one.repeat(5, 1)


def _too_long(model, input_ids, max_length):
    from llmbook.generate import generate

    return generate(model, input_ids, max_length, num_return_sequences=5, generator=torch.Generator().manual_seed(0))


@exercise(
    "ch08.five_continuations",
    name="five_continuations",
    title="Five different continuations, max_length counted as Hugging Face does",
    wrong=[_greedy_five, _too_long],
)
def check_five_continuations(five_continuations):
    model = _tiny_gpt(1)
    for prompt, max_length in ((torch.tensor([[1, 2, 3]]), 20), (torch.tensor([[4]]), 12)):
        got = five_continuations(model, prompt, max_length)
        expect(
            torch.is_tensor(got) and got.shape == (5, max_length),
            f"five_continuations(model, a prompt of {prompt.shape[1]} tokens, max_length={max_length}) returned "
            f"{tuple(got.shape) if torch.is_tensor(got) else got!r}; expected shape (5, {max_length}): max_length "
            "counts the prompt too, so generate max_length - prompt length new tokens",
        )
        expect(
            torch.equal(got[:, : prompt.shape[1]], prompt.expand(5, -1)),
            "each row should start with the prompt",
        )
        distinct = len({tuple(row) for row in got.tolist()})
        expect(
            distinct >= 4,
            f"only {distinct} of your 5 rows differ: greedy decoding gives the same row every time; sample "
            "(e.g. with top_p) or use beam search",
        )


# ------------------------------------------------------------------ greedy decoding with a KV cache


class _Recorder(torch.nn.Module):
    """Wraps a GPT and records the length of every input it is given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.lengths = model, model.config, []

    def new_kv_cache(self):
        return self.model.new_kv_cache()

    def forward(self, idx, targets=None, kv_cache=None):
        self.lengths.append(idx.shape[1])
        return self.model(idx, targets, kv_cache=kv_cache)


def _uncached_greedy(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        logits, _ = model(idx)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def _cache_refilled(model, idx, max_new_tokens):  # a cache, but the whole sequence fed again each step
    for _ in range(max_new_tokens):
        logits, _ = model(idx, kv_cache=model.new_kv_cache())
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@exercise(
    "ch08.greedy_cached",
    name="greedy_cached",
    title="Greedy decoding with a KV cache",
    wrong=[_uncached_greedy, _cache_refilled],
)
def check_greedy_cached(greedy_cached):
    from llmbook.generate import generate

    for seed, prompt, steps in ((2, torch.tensor([[1, 2, 3, 4]]), 12), (3, torch.tensor([[5], [6]]), 8)):
        model = _Recorder(_tiny_gpt(seed))
        with torch.no_grad():
            got = greedy_cached(model, prompt, steps)
        expected = generate(model.model, prompt, steps, greedy=True)
        expect(
            torch.is_tensor(got) and torch.equal(got, expected),
            f"greedy_cached(model, {prompt.tolist()}, {steps}) returned {got.tolist() if torch.is_tensor(got) else got}"
            f"; greedy decoding gives {expected.tolist()}. Feed the prompt once, then only the newest token, with "
            "the same cache every time.",
        )
        expect(
            model.lengths[:1] == [prompt.shape[1]] and all(n == 1 for n in model.lengths[1:]),
            f"your function fed the model inputs of lengths {model.lengths}: with a cache, only the first call "
            f"sees the whole prompt ({prompt.shape[1]} tokens), every later call one token",
        )


# ------------------------------------------------------------------ distinct-n


@exercise(
    "ch08.distinct_n",
    name="distinct_n",
    title="Distinct-n: the diversity of a set of samples",
    wrong=[
        lambda samples, n: len({tuple(s[i : i + n]) for s in samples for i in range(len(s) - n + 1)}),  # a count
        lambda samples, n: (
            sum(len({tuple(s[i : i + n]) for i in range(len(s) - n + 1)}) / (len(s) - n + 1) for s in samples)
            / len(samples)
        ),  # per sample, averaged: misses samples that repeat each other
        lambda samples, n: len({x for s in samples for x in s}) / sum(len(s) for s in samples),  # unigrams only
    ],
)
def check_distinct_n(distinct_n):
    from llmbook.generate import distinct_n as reference

    cases = [([[1, 2, 3, 4]], 2), ([[1, 2, 1, 2], [1, 2, 1, 2]], 2), ([[5, 6, 7], [5, 6, 8], [9, 9, 9]], 2)]
    cases += [([[1, 2, 3, 1, 2, 3, 1]], 3), ([[4, 4, 4, 4], [4, 4, 4, 5]], 1)]
    for samples, n in cases:
        got, expected = distinct_n(samples, n), reference(samples, n)
        expect(
            isinstance(got, (int, float)) and abs(got - expected) < 1e-9,
            f"distinct_n({samples}, {n}) returned {got!r}; expected {expected:.4g}: the number of different "
            f"{n}-grams over all samples together, divided by the number of {n}-grams of all samples",
        )


# ------------------------------------------------------------------ transfer: a KV cache's size for Llama 2 7B

_LLAMA_BYTES = 2 * 32 * 4096 * 4096 * 2  # k and v, layers, tokens, width, bytes per fp16 number


@exercise(
    "ch08.llama_cache_bytes",
    name="llama_cache_bytes",
    title="The KV cache of Llama 2 7B",
    wrong=[_LLAMA_BYTES // 2, _LLAMA_BYTES * 2, 2 * 32 * 4096 * 2, _LLAMA_BYTES // 32],
)
def check_llama_cache_bytes(llama_cache_bytes):
    expect(
        isinstance(llama_cache_bytes, (int, float)) and not isinstance(llama_cache_bytes, bool),
        f"llama_cache_bytes should be a number of bytes, got {type(llama_cache_bytes).__name__}",
    )
    expect(
        abs(llama_cache_bytes - _LLAMA_BYTES) < 1,
        f"llama_cache_bytes = {llama_cache_bytes} ({llama_cache_bytes / 2**30:.3g} GiB) is not right. Each "
        "layer keeps a key and a value vector (two numbers per width unit) for every token; count 32 layers, "
        "4,096 tokens, a width of 4,096 and 2 bytes per float16 number.",
    )


# ------------------------------------------------------------------ transfer: no repeated n-grams


def _ban_last_token(logits, tokens, n):
    out = logits.clone()
    if tokens:
        out[tokens[-1]] = float("-inf")
    return out


def _ban_every_seen_token(logits, tokens, n):
    out = logits.clone()
    out[list(set(tokens))] = float("-inf")
    return out


def _ban_off_by_one(logits, tokens, n):  # compares the last n tokens instead of the last n - 1
    out = logits.clone()
    prefix = tuple(tokens[len(tokens) - n :]) if n <= len(tokens) else None
    for i in range(len(tokens) - n):
        if tuple(tokens[i : i + n]) == prefix:
            out[tokens[i + n]] = float("-inf")
    return out


def _reference_ban(logits, tokens, n):
    out = logits.clone()
    if n == 1:
        out[list(set(tokens))] = float("-inf")
        return out
    prefix = tuple(tokens[len(tokens) - (n - 1) :])
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n - 1]) == prefix:
            out[tokens[i + n - 1]] = float("-inf")
    return out


@exercise(
    "ch08.ban_repeats",
    name="ban_repeats",
    title="No repeated n-grams",
    wrong=[_ban_last_token, _ban_every_seen_token, _ban_off_by_one],
)
def check_ban_repeats(ban_repeats):
    logits = torch.linspace(1.0, 0.0, 10)
    cases = [([1, 2, 3, 1, 2], 3), ([4, 4, 4], 2), ([1, 2, 3, 4], 3), ([7, 8, 7, 9, 7], 2), ([5, 6, 5], 1)]
    for tokens, n in cases:
        got = ban_repeats(logits.clone(), list(tokens), n)
        expected = _reference_ban(logits, tokens, n)
        banned = (~torch.isfinite(got)).nonzero().flatten().tolist() if torch.is_tensor(got) else got
        should = (~torch.isfinite(expected)).nonzero().flatten().tolist()
        expect(
            torch.is_tensor(got)
            and banned == should
            and torch.equal(got[torch.isfinite(got)], logits[~torch.isinf(expected)]),
            f"after tokens {tokens} with n={n} you ban {banned}; the tokens that would repeat an {n}-gram are "
            f"{should}. Look for earlier places where the last {n - 1} tokens occurred, and ban the token that "
            "followed each of them; leave the other logits unchanged.",
        )
