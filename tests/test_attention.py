"""Specification of llmbook.attention (Chapter 4), checked against PyTorch's own attention."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmbook.attention import (
    LearnedPositions,
    MultiHeadAttention,
    apply_rope,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)

TOL = 1e-5


def random_qkv(batch=(2, 3), T_q=5, T_k=7, d_k=8, d_v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, T_q, d_k, generator=g)
    k = torch.randn(*batch, T_k, d_k, generator=g)
    v = torch.randn(*batch, T_k, d_v, generator=g)
    return q, k, v


# --- scaled dot-product attention -------------------------------------------------------------


def test_explicit_attention_equals_pytorch_without_mask():
    q, k, v = random_qkv()
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=TOL, rtol=0)
    assert weights.shape == (2, 3, 5, 7)


def test_explicit_attention_equals_pytorch_with_a_boolean_mask():
    q, k, v = random_qkv()
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, 5, 7, generator=g) > 0.4
    mask[..., 0] = True  # every query may see at least one key
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=TOL, rtol=0)


def test_explicit_attention_with_causal_mask_equals_pytorch_is_causal():
    q, k, v = random_qkv(T_q=6, T_k=6)
    out, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=TOL, rtol=0)
    assert torch.all(weights.triu(diagonal=1) == 0)


def test_masked_positions_get_exactly_zero_weight_and_rows_sum_to_one():
    q, k, v = random_qkv()
    idx = torch.tensor([[4, 9, 2, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 0]])
    mask = padding_mask(idx, pad_id=0)  # (2, 1, 1, 7) broadcasts over (2, 3, 5, 7)
    _, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.equal(weights[0, ..., 3:], torch.zeros_like(weights[0, ..., 3:]))
    assert torch.equal(weights[1, ..., 6], torch.zeros_like(weights[1, ..., 6]))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5), atol=TOL, rtol=0)
    assert torch.all(weights[0, ..., :3] > 0)


def test_future_values_never_change_past_outputs_under_a_causal_mask():
    q, k, v = random_qkv(T_q=6, T_k=6)
    out, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    v2, k2 = v.clone(), k.clone()
    v2[..., 4:, :] += 100.0
    k2[..., 4:, :] -= 3.0
    out2, _ = scaled_dot_product_attention(q, k2, v2, mask=causal_mask(6))
    torch.testing.assert_close(out[..., :4, :], out2[..., :4, :], atol=0, rtol=0)


def test_scaling_by_sqrt_dk_is_what_makes_it_match():
    q, k, v = random_qkv(d_k=64)
    _, weights = scaled_dot_product_attention(q, k, v)
    manual = torch.softmax(q @ k.transpose(-2, -1) / 8.0, dim=-1)
    torch.testing.assert_close(weights, manual, atol=TOL, rtol=0)


def test_dropout_only_acts_in_training():
    q, k, v = random_qkv()
    a, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False)
    b, _ = scaled_dot_product_attention(q, k, v)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    _, dropped = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    assert (dropped == 0).float().mean() > 0.3


def test_a_fully_masked_row_is_a_clear_error():
    q, k, v = random_qkv(T_q=3, T_k=3)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="no key at all"):
        scaled_dot_product_attention(q, k, v, mask=mask)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((4, 8), (5, 7), (5, 6)), "same last dimension"),
        (((4, 8), (5, 8), (6, 6)), "same number of positions"),
        (((8,), (5, 8), (5, 6)), "at least 2 dimensions"),
    ],
)
def test_bad_shapes_are_clear_errors(shapes, message):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        scaled_dot_product_attention(q, k, v)


def test_mask_errors_name_the_problem():
    q, k, v = random_qkv(T_q=3, T_k=3)
    with pytest.raises(TypeError, match="bool"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool))


def test_causal_and_padding_masks_have_the_documented_shapes():
    assert causal_mask(3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert padding_mask(torch.tensor([[5, 7, 0]]), 0).shape == (1, 1, 1, 3)
    with pytest.raises(ValueError):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        padding_mask(torch.tensor([1, 2, 0]), 0)


# --- multi-head attention ---------------------------------------------------------------------


def paired_modules(E=16, H=4, bias=True, seed=0):
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(E, H, bias=bias, batch_first=True)
    if bias:  # PyTorch initialises the biases to zero; make them matter
        with torch.no_grad():
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
    ours = MultiHeadAttention(E, H, bias=bias).load_from_torch(theirs)
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("bias", [True, False])
def test_multihead_self_attention_equals_nn_multiheadattention(bias):
    ours, theirs = paired_modules(bias=bias)
    x = torch.randn(3, 9, 16)
    out, weights = ours(x, need_weights=True)
    ref, ref_weights = theirs(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=TOL, rtol=0)
    assert weights.shape == (3, 4, 9, 9)


def test_multihead_cross_attention_equals_nn_multiheadattention():
    ours, theirs = paired_modules()
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 8, 16)
    out, _ = ours(query, memory, memory)
    ref, _ = theirs(query, memory, memory)
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


def test_multihead_causal_and_padding_masks_equal_nn_multiheadattention():
    ours, theirs = paired_modules()
    x = torch.randn(2, 6, 16)
    idx = torch.tensor([[3, 4, 5, 6, 0, 0], [1, 2, 3, 4, 5, 6]])
    keep = padding_mask(idx, 0)
    out, _ = ours(x, mask=keep, is_causal=True)
    # PyTorch's key_padding_mask and boolean attn_mask mean the opposite: True = ignore.
    ref, _ = theirs(x, x, x, key_padding_mask=idx == 0, attn_mask=~causal_mask(6))
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


def test_fast_path_equals_explicit_path():
    ours, _ = paired_modules()
    x = torch.randn(2, 7, 16)
    idx = torch.tensor([[1] * 5 + [0] * 2, [1] * 7])
    for kwargs in ({}, {"is_causal": True}, {"mask": padding_mask(idx, 0)}, {"rope": True, "is_causal": True}):
        fast, none = ours(x, **kwargs)
        explicit, weights = ours(x, need_weights=True, **kwargs)
        assert none is None and weights is not None
        torch.testing.assert_close(fast, explicit, atol=TOL, rtol=0)


def test_batch_first_false_takes_time_major_input():
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 2).eval()
    ours = MultiHeadAttention(16, 2, batch_first=False).load_from_torch(theirs).eval()
    x = torch.randn(5, 3, 16)  # (T, B, E)
    torch.testing.assert_close(ours(x)[0], theirs(x, x, x)[0], atol=TOL, rtol=0)


def test_split_then_merge_heads_is_the_identity():
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 5, 12)
    heads = mha.split_heads(x)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])  # head 1 owns features 4..7
    assert torch.equal(mha.merge_heads(heads), x)


def test_multihead_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="embed_dim = 8"):
        mha(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="is_causal"):
        mha(torch.randn(1, 3, 8), torch.randn(1, 4, 8), is_causal=True)
    with pytest.raises(ValueError, match="no key at all"):
        mha(torch.randn(1, 3, 8), mask=torch.zeros(1, 1, 1, 3, dtype=torch.bool))


def test_gradients_flow_through_both_paths():
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 4, 8, requires_grad=True)
    mha(x, is_causal=True)[0].sum().backward()
    assert x.grad is not None and mha.in_proj.weight.grad.abs().sum() > 0


# --- positions --------------------------------------------------------------------------------


def test_sinusoidal_positions_match_the_formula():
    T, d = 50, 16
    table = sinusoidal_positions(T, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=TOL)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=TOL)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(4, 7)


def test_learned_positions_shapes_and_limit():
    positions = LearnedPositions(10, 6)
    assert positions(4).shape == (4, 6)
    assert positions(torch.tensor([[0, 3], [9, 1]])).shape == (2, 2, 6)
    with pytest.raises(ValueError, match="max_len=10"):
        positions(11)


def test_rope_preserves_norms():
    x = torch.randn(2, 3, 20, 8)
    torch.testing.assert_close(apply_rope(x).norm(dim=-1), x.norm(dim=-1), atol=1e-4, rtol=0)


def test_rope_position_zero_is_the_identity():
    x = torch.randn(1, 1, 1, 8)
    torch.testing.assert_close(apply_rope(x), x, atol=0, rtol=0)


def test_rope_dot_product_depends_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m, n):
        rotated_q = apply_rope(q.view(1, 1, 1, 8), positions=torch.tensor([m]))
        rotated_k = apply_rope(k.view(1, 1, 1, 8), positions=torch.tensor([n]))
        return (rotated_q * rotated_k).sum().item()

    for offset in (0, 1, 5, -3):
        scores = [score(m, m - offset) for m in (3, 10, 40, 100)]
        assert max(scores) - min(scores) < 1e-4, (offset, scores)
    assert abs(score(5, 0) - score(5, 4)) > 1e-3  # and it does depend on the offset


def test_rope_errors():
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(1, 1, 4, 5))
    with pytest.raises(ValueError, match="positions"):
        apply_rope(torch.randn(1, 1, 4, 6), positions=torch.arange(3))
