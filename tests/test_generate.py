"""Specification of llmbook.generate: sampling, greedy and beam search."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from llmbook.generate import beam_search, filter_logits, generate, sequence_log_likelihood
from llmbook.models import GPT, GPTConfig


class BigramTable(nn.Module):
    """A model whose next-token logits depend only on the last token: a fixed (V, V) table."""

    def __init__(self, table: torch.Tensor, block_size: int = 8):
        super().__init__()
        self.table = nn.Parameter(table.float(), requires_grad=False)
        self.config = SimpleNamespace(block_size=block_size)
        self.seen_lengths = []

    def forward(self, idx, targets=None):
        self.seen_lengths.append(idx.shape[1])
        return self.table[idx], None  # (B, T, V)


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16))


def test_greedy_is_deterministic_and_restores_training_mode():
    model = tiny_gpt().train()
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, 20, greedy=True)
    second = generate(model, prompt, 20, greedy=True)
    assert torch.equal(first, second) and first.shape == (1, 23)
    assert torch.equal(first[:, :3], prompt)
    assert model.training  # put back as it was
    assert all(p.grad is None for p in model.parameters())


def test_top_k_1_equals_greedy():
    model = tiny_gpt()
    prompt = torch.tensor([[4, 5]])
    greedy = generate(model, prompt, 15, greedy=True)
    sampled = generate(model, prompt, 15, top_k=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(greedy, sampled)


def test_low_temperature_approaches_greedy():
    model = tiny_gpt()
    prompt = torch.tensor([[7]])
    greedy = generate(model, prompt, 15, greedy=True)
    cold = generate(model, prompt, 15, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy, cold)
    hot = generate(model, prompt.repeat(8, 1), 15, temperature=5.0, generator=torch.Generator().manual_seed(0))
    assert (hot != greedy).any(dim=1).all()  # at high temperature every sample strays from greedy


def test_top_p_never_samples_outside_the_nucleus():
    # From every token: probabilities 0.5, 0.3, 0.15, 0.05 for tokens 0..3.
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    model = BigramTable(probs.log().repeat(4, 1))
    out = generate(
        model, torch.zeros(64, 1, dtype=torch.long), 20, top_p=0.7, generator=torch.Generator().manual_seed(0)
    )
    generated = out[:, 1:]
    assert set(generated.unique().tolist()) == {0, 1}  # 0.5 + 0.3 >= 0.7: the nucleus is {0, 1}
    out = generate(
        model, torch.zeros(64, 1, dtype=torch.long), 20, top_p=0.9, generator=torch.Generator().manual_seed(0)
    )
    assert set(out[:, 1:].unique().tolist()) == {0, 1, 2}
    # a top_p smaller than the top token's probability keeps exactly the top token
    assert filter_logits(probs.log()[None], top_p=0.1).isfinite().tolist() == [[True, False, False, False]]


def test_sampling_frequencies_follow_the_model():
    probs = torch.tensor([0.6, 0.3, 0.1])
    model = BigramTable(probs.log().repeat(3, 1))
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), 0, num_return_sequences=1)
    assert out.shape == (1, 1)
    samples = generate(model, torch.zeros(4000, 1, dtype=torch.long), 1, generator=torch.Generator().manual_seed(1))
    frequencies = torch.bincount(samples[:, 1], minlength=3) / 4000
    torch.testing.assert_close(frequencies, probs, atol=0.03, rtol=0)


def test_num_return_sequences_shape_and_generator_repeats():
    model = tiny_gpt()
    prompts = torch.tensor([[1, 2], [3, 4]])
    out = generate(model, prompts, 5, num_return_sequences=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 7)
    assert torch.equal(out[:3, :2], prompts[[0, 0, 0]]) and torch.equal(out[3:, :2], prompts[[1, 1, 1]])
    again = generate(model, prompts, 5, num_return_sequences=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    single = generate(model, torch.tensor([1, 2]), 4, num_return_sequences=2)
    assert single.shape == (2, 6)  # a 1-D prompt is one sequence


def test_context_is_cropped_to_block_size():
    model = BigramTable(torch.zeros(5, 5), block_size=4)
    generate(model, torch.zeros(1, 2, dtype=torch.long), 10)
    assert max(model.seen_lengths) == 4
    gpt = tiny_gpt()
    assert generate(gpt, torch.tensor([[1]]), 30, greedy=True).shape == (1, 31)  # beyond block_size 12


def crafted_model():
    """Greedy takes token 1 (p=0.6) but then faces a flat distribution; token 2 (p=0.4) leads to a sure thing."""
    V = 5
    table = torch.full((V, V), -1e9)
    table[0] = torch.tensor([0.0, 0.6, 0.4, 0.0, 0.0]).clamp(min=1e-9).log()
    table[1] = torch.tensor([0.0, 0.0, 0.0, 0.5, 0.5]).clamp(min=1e-9).log()
    table[2] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]).clamp(min=1e-9).log()
    table[3] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]).clamp(min=1e-9).log()
    table[4] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]).clamp(min=1e-9).log()
    return BigramTable(table)


def test_beam_search_finds_a_more_likely_sequence_than_greedy():
    model = crafted_model()
    prompt = torch.tensor([[0]])
    greedy = generate(model, prompt, 3, greedy=True)
    beam = beam_search(model, prompt, 3, beam_width=2)
    assert greedy[0, 1].item() == 1 and beam[0, 1].item() == 2
    greedy_ll, beam_ll = sequence_log_likelihood(model, torch.cat([greedy, beam]), prompt_length=1)
    assert beam_ll > greedy_ll
    assert beam_ll.item() == pytest.approx(torch.tensor(0.4).log().item(), abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_1_equals_greedy(seed):
    model = tiny_gpt(seed)
    prompt = torch.tensor([[3, 1, 4], [1, 5, 9]])
    torch.testing.assert_close(beam_search(model, prompt, 10, beam_width=1), generate(model, prompt, 10, greedy=True))


def test_wider_beams_never_find_less_likely_sequences_on_a_gpt():
    model = tiny_gpt(4)
    prompt = torch.tensor([[2, 7]])
    likelihoods = [
        sequence_log_likelihood(model, beam_search(model, prompt, 6, beam_width=w), 2).item() for w in (1, 3, 8)
    ]
    assert likelihoods[0] <= likelihoods[1] + 1e-5 <= likelihoods[2] + 2e-5


def test_beam_search_with_eos_stops_and_pads():
    model = crafted_model()
    # raw log-probability (length_penalty=0): 0 -> 2 -> eos (p = 0.4) beats 0 -> 1 -> eos (p = 0.3)
    out = beam_search(model, torch.tensor([[0]]), 5, beam_width=3, eos_id=3, length_penalty=0.0)
    assert out.tolist() == [[0, 2, 3, 3, 3, 3]]
    # per-token log-probability (length_penalty=1) prefers the longer 0 -> 1 -> 4 -> eos (log 0.3 / 3 > log 0.4 / 2)
    out = beam_search(model, torch.tensor([[0]]), 5, beam_width=3, eos_id=3, length_penalty=1.0)
    assert out.tolist() == [[0, 1, 4, 3, 3, 3]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=0.0), "greedy=True"),
        (dict(temperature=-1.0), "temperature must be a finite number > 0, got -1.0"),
        (dict(top_p=0.0), "top_p must be a finite number > 0 and <= 1, got 0.0"),
        (dict(top_p=1.5), "top_p must be a finite number > 0 and <= 1, got 1.5"),
        (dict(top_k=0), "top_k must be a whole number >= 1, got 0"),
        (dict(max_new_tokens=-1), "max_new_tokens must be a whole number >= 0, got -1"),
        (dict(num_return_sequences=0), "num_return_sequences"),
    ],
)
def test_invalid_arguments_are_clear_errors(kwargs, message):
    arguments = dict(max_new_tokens=3) | kwargs
    with pytest.raises(ValueError, match=message):
        generate(tiny_gpt(), torch.tensor([[1]]), **arguments)


def test_greedy_needs_no_temperature_and_bad_prompts_are_errors():
    assert generate(tiny_gpt(), torch.tensor([[1]]), 2, temperature=0.0, greedy=True).shape == (1, 3)
    with pytest.raises(ValueError, match="empty"):
        generate(tiny_gpt(), torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="integer token ids"):
        generate(tiny_gpt(), torch.zeros(1, 2), 2)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(tiny_gpt(), torch.tensor([[1]]), 2, beam_width=0)


# ------------------------------------------------------------------ Chapter 8: KV cache and sample measures


def test_kv_cache_forward_matches_the_full_forward_position_by_position():
    from llmbook.generate import kv_cache_bytes

    model = tiny_gpt().eval()
    idx = torch.randint(0, 23, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_kv_cache()
        first, _ = model(idx[:, :4], kv_cache=cache)  # a prompt of 4, then one token at a time
        steps = [first] + [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(4, 10)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    c = model.config
    assert kv_cache_bytes(cache) == 2 * c.n_layer * 3 * 10 * c.n_embd * 4  # 2 · L · B · T · d · fp32 bytes
    with pytest.raises(ValueError, match="block_size"):
        model(idx[:, :3], kv_cache=cache)  # 10 + 3 > 12


def test_cached_generation_equals_uncached_token_for_token_also_past_block_size():
    model = tiny_gpt(1)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    plain = generate(model, prompt, 25, greedy=True)  # 28 tokens > block_size 12: the window slides
    cached = generate(model, prompt, 25, greedy=True, kv_cache=True)
    assert torch.equal(plain, cached)
    sampled = [generate(model, prompt, 15, top_p=0.9, generator=torch.Generator().manual_seed(5), kv_cache=c)
               for c in (False, True)]  # fmt: skip
    assert torch.equal(*sampled)
    with pytest.raises(ValueError, match="new_kv_cache"):
        generate(BigramTable(torch.eye(4)), torch.tensor([[1]]), 3, kv_cache=True)


def test_diversity_and_repetition_measures():
    from llmbook.generate import distinct_n, repetition, self_loss

    assert distinct_n([[1, 2, 3, 4]], 2) == 1.0
    assert distinct_n(torch.tensor([[1, 2, 1, 2], [1, 2, 1, 2]]), 2) == pytest.approx(2 / 6)
    assert repetition([[7, 7, 7, 7, 7]], 2) == pytest.approx(3 / 4)
    assert repetition([[1, 2, 3, 4, 5]], 2) == 0.0
    model = tiny_gpt(2)
    prompt = torch.tensor([[1, 2]])
    greedy = generate(model, prompt, 10, greedy=True)
    sampled = generate(model, prompt, 10, temperature=2.0, num_return_sequences=8,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert self_loss(model, greedy, 2) < self_loss(model, sampled, 2)  # greedy text is the model's most likely
    with pytest.raises(ValueError, match="no 3-gram"):
        distinct_n([[1, 2]], 3)


def test_attention_with_a_cache_matches_full_causal_attention_with_rope_and_weights():
    from llmbook.attention import LayerKVCache, MultiHeadAttention

    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    for rope in (False, True):
        for need_weights in (False, True):
            full, _ = attention(x, is_causal=True, rope=rope)
            cache = LayerKVCache()
            parts = [attention(x[:, :3], is_causal=True, rope=rope, kv_cache=cache, need_weights=need_weights)[0]]
            parts += [
                attention(x[:, t : t + 2], is_causal=True, rope=rope, kv_cache=cache, need_weights=need_weights)[0]
                for t in (3, 5)
            ]  # two new positions at a time: the shifted causal mask matters
            assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5), (rope, need_weights)
            assert cache.length == 7
