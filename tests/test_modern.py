"""Chapter 9's modern block (llmbook.modern and the GPTConfig options), checked against PyTorch."""

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmbook.models import GPT, GPTConfig, gpt_num_params_formula
from llmbook.modern import GroupedQueryAttention, RMSNorm, SwiGLU, kv_cache_bytes, swiglu_hidden

LLAMA = dict(norm="rmsnorm", mlp="swiglu", positions="rope", bias=False)


def test_rmsnorm_matches_torch_rmsnorm():
    torch.manual_seed(0)
    ours, theirs = RMSNorm(16, eps=1e-6), nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
    x = torch.randn(3, 5, 16) * 7
    torch.testing.assert_close(ours(x), theirs(x))


def test_rmsnorm_output_has_unit_root_mean_square_before_the_gain():
    x = torch.randn(4, 32) * 5 + 3
    y = RMSNorm(32)(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(4), rtol=1e-4, atol=1e-4)


def test_swiglu_is_silu_gate_times_up_then_down_and_keeps_gpt2_parameters():
    torch.manual_seed(0)
    mlp = SwiGLU(24)
    x = torch.randn(2, 3, 24)
    expected = mlp.proj(F.silu(x @ mlp.gate.weight.T) * (x @ mlp.fc.weight.T))
    torch.testing.assert_close(mlp(x), expected)
    h = swiglu_hidden(768)
    assert abs(3 * 768 * h - 8 * 768 * 768) / (8 * 768 * 768) < 0.01


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_grouped_query_attention_fast_and_explicit_paths_match_enable_gqa(n_kv_head):
    torch.manual_seed(0)
    attention = GroupedQueryAttention(32, 4, n_kv_head).eval()
    x = torch.randn(2, 7, 32)
    fast, none = attention(x, is_causal=True)
    explicit, weights = attention(x, is_causal=True, need_weights=True)
    assert none is None and weights.shape == (2, 4, 7, 7)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)
    # by hand: PyTorch's own grouped attention on our projections
    q = attention.q_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    k, v = attention.key_values(x)
    assert k.shape == v.shape == (2, n_kv_head, 7, 8)
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(fast, attention.out_proj(reference.transpose(1, 2).reshape(2, 7, 32)))


def test_grouped_query_attention_with_as_many_kv_heads_is_multi_head_attention():
    torch.manual_seed(0)
    ours = GroupedQueryAttention(16, 4, 4, bias=True).eval()
    theirs = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        w_q, w_k, w_v = theirs.in_proj_weight.chunk(3)
        b_q, b_k, b_v = theirs.in_proj_bias.chunk(3)
        ours.q_proj.weight.copy_(w_q), ours.q_proj.bias.copy_(b_q)
        # kv_proj's rows are (key head 0..H-1, value head 0..H-1) as view(B, T, 2, H, hd) reads them
        ours.kv_proj.weight.copy_(torch.cat([w_k, w_v])), ours.kv_proj.bias.copy_(torch.cat([b_k, b_v]))
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    x = torch.randn(2, 5, 16)
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1)  # PyTorch: True = blocked
    torch.testing.assert_close(ours(x, is_causal=True)[0], theirs(x, x, x, attn_mask=mask)[0], rtol=1e-5, atol=1e-5)


def test_default_config_is_still_gpt2_and_llama_config_builds_the_modern_parts():
    gpt2 = GPT(GPTConfig(50, 16, 2, 4, 32))
    assert gpt2.position_embedding is not None and isinstance(gpt2.blocks[0].ln_1, nn.LayerNorm)
    llama = GPT(GPTConfig(50, 16, 2, 4, 32, n_kv_head=2, **LLAMA))
    block = llama.blocks[0]
    assert llama.position_embedding is None and isinstance(block.ln_1, RMSNorm)
    assert isinstance(block.mlp, SwiGLU) and isinstance(block.attn, GroupedQueryAttention) and block.rope


@pytest.mark.parametrize(
    "options",
    [
        {},
        dict(bias=False),
        LLAMA,
        dict(LLAMA, n_kv_head=1),
        dict(LLAMA, n_kv_head=2, mlp_hidden=40),
        dict(norm="rmsnorm", n_kv_head=2, bias=True),
        dict(mlp="swiglu", bias=True),
        dict(positions="rope"),
    ],
)
def test_parameter_formula_and_flops_count_every_variant(options):
    config = GPTConfig(61, 16, 2, 4, 32, **options)
    model = GPT(config)
    assert model.num_params() == gpt_num_params_formula(config)
    assert model.num_params(non_embedding=True) == gpt_num_params_formula(config, non_embedding=True)
    matrices = sum(m.weight.numel() for m in model.blocks.modules() if isinstance(m, nn.Linear))
    L, d, V, T = 2, 32, 61, 16
    assert model.flops_per_token(training=False) == 2 * (matrices + V * d) + 4 * L * T * d


def test_rope_model_is_causal_and_sees_order_without_a_position_table():
    torch.manual_seed(0)
    model = GPT(GPTConfig(20, 12, 2, 4, 32, **LLAMA)).eval()
    idx = torch.randint(0, 20, (1, 10))
    changed = idx.clone()
    changed[0, 7] = (idx[0, 7] + 1) % 20
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
        torch.testing.assert_close(a[:, :7], b[:, :7])  # a later token never changes an earlier logit
        swapped = idx[:, [1, 0, *range(2, 10)]]
        assert not torch.allclose(model(swapped)[0][0, -1], a[0, -1])  # order matters
        explicit = model(idx, return_attention=True)[0]
    torch.testing.assert_close(a, explicit, rtol=1e-5, atol=1e-5)


def test_llama_style_model_trains_on_a_pattern():
    torch.manual_seed(0)
    model = GPT(GPTConfig(8, 16, 1, 2, 16, n_kv_head=1, **LLAMA))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    idx = torch.arange(16).remainder(8)[None].repeat(4, 1)
    for _ in range(60):
        loss = model(idx[:, :-1], idx[:, 1:])[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2


def test_kv_cache_bytes_formula_matches_the_tensors_a_forward_produces():
    torch.manual_seed(0)
    for n_kv_head in (4, 2, 1):
        model = GPT(GPTConfig(30, 24, 3, 4, 32, n_kv_head=n_kv_head, **LLAMA)).eval()
        x = torch.randn(2, 24, 32)
        measured = 0
        for block in model.blocks:
            k, v = block.attn.key_values(block.ln_1(x), rope=True)
            measured += k.numel() * k.element_size() + v.numel() * v.element_size()
        assert measured == kv_cache_bytes(3, n_kv_head, 8, 24, batch_size=2, bytes_per_value=4)
    assert kv_cache_bytes(80, 64, 128, 4096) == 8 * kv_cache_bytes(80, 8, 128, 4096)


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(n_kv_head=3), ["n_kv_head (3)", "[1, 2, 4]"]),
        (dict(norm="batchnorm"), ["norm", "'rmsnorm'"]),
        (dict(mlp="relu"), ["mlp", "'swiglu'"]),
        (dict(positions="sinusoidal"), ["positions", "'rope'"]),
        (dict(mlp_hidden=0), ["mlp_hidden"]),
    ],
)
def test_bad_modern_options_are_refused_with_the_fix(options, words):
    with pytest.raises(ValueError) as error:
        GPTConfig(50, 16, 1, 4, 32, **options)
    for word in words:
        assert word in str(error.value)


def test_config_round_trips_through_asdict_for_checkpoints():
    config = GPTConfig(50, 16, 1, 4, 32, n_kv_head=2, **LLAMA)
    assert GPTConfig(**dataclasses.asdict(config)) == config
