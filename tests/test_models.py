"""Specification of llmbook.models (Chapter 5): GPT and BERT."""

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from llmbook.models import BERT, GPT, BERTConfig, Block, GPTConfig, gpt_num_params_formula

SMALL = dict(vocab_size=61, block_size=16, n_layer=2, n_head=4, n_embd=32)


def small_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**SMALL, **overrides})).eval()


def small_bert(**overrides) -> BERT:
    torch.manual_seed(0)
    return BERT(BERTConfig(**{**SMALL, "dropout": 0.0, **overrides})).eval()


# ---------------------------------------------------------------- sizes: parameters and FLOPs


def test_gpt2_small_config_has_124M_parameters():
    config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    assert gpt_num_params_formula(config) == 124_439_808
    with torch.device("meta"):  # shapes only: no memory, no time spent initialising 124M numbers
        assert GPT(config).num_params() == 124_439_808


@pytest.mark.parametrize(
    "sizes",
    [
        dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
        dict(vocab_size=100, block_size=8, n_layer=1, n_head=1, n_embd=16),
        dict(vocab_size=300, block_size=32, n_layer=3, n_head=6, n_embd=48, bias=False),
        dict(vocab_size=7, block_size=256, n_layer=6, n_head=2, n_embd=64, dropout=0.2),
    ],
)
def test_num_params_matches_the_closed_form(sizes):
    config = GPTConfig(**sizes)
    model = GPT(config)
    counted = sum(p.numel() for p in model.parameters())
    assert model.num_params() == counted == gpt_num_params_formula(config)
    non_embedding = model.num_params(non_embedding=True)
    assert non_embedding == gpt_num_params_formula(config, non_embedding=True)
    assert non_embedding == counted - (config.vocab_size + config.block_size) * config.n_embd


@pytest.mark.parametrize("sizes", [dict(n_layer=1, n_embd=16, n_head=2), dict(n_layer=3, n_embd=32, n_head=4)])
def test_flops_per_token_equals_what_pytorch_counts(sizes):
    model = small_gpt(**sizes).train()
    B, T = 2, SMALL["block_size"]
    idx = torch.randint(0, SMALL["vocab_size"], (B, T))
    # The explicit attention path does q @ kᵀ and weights @ v as matmuls FlopCounterMode can see.
    with FlopCounterMode(display=False) as forward_counter:
        model(idx, return_attention=True)
    assert forward_counter.get_total_flops() == B * T * model.flops_per_token(training=False)
    with FlopCounterMode(display=False) as training_counter:
        _, loss, _ = model(idx, idx, return_attention=True)
        loss.backward()
    assert training_counter.get_total_flops() == B * T * model.flops_per_token(training=True)
    assert model.flops_per_token(training=True) == 3 * model.flops_per_token(training=False)


def test_flops_per_token_is_about_6N_plus_attention_for_gpt2_small():
    config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    with torch.device("meta"):
        model = GPT(config)
    matmul_weights = 12 * 12 * 768**2 + 50257 * 768
    assert model.flops_per_token() == 6 * matmul_weights + 12 * 12 * 1024 * 768
    assert model.flops_per_token() / (6 * model.num_params()) == pytest.approx(
        1.14, abs=0.01
    )  # attention adds ~14% at T = 1024


def test_bert_num_params_matches_the_closed_form():
    config = BERTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=4, n_embd=32, n_segments=2, num_classes=3)
    V, T, S, L, d, C = 61, 16, 2, 2, 32, 3
    formula = (V + T + S) * d + 2 * d + L * (12 * d * d + 13 * d) + (d * d + d + 2 * d + V) + (d * d + d + d * C + C)
    assert BERT(config).num_params() == formula


# ---------------------------------------------------------------- what the masks guarantee


def test_future_tokens_never_change_past_logits():
    model = small_gpt()
    generator = torch.Generator().manual_seed(1)
    idx = torch.randint(0, SMALL["vocab_size"], (3, 12), generator=generator)
    logits, _ = model(idx)
    for cut in (0, 5, 11):
        changed = idx.clone()
        changed[:, cut + 1 :] = torch.randint(0, SMALL["vocab_size"], changed[:, cut + 1 :].shape, generator=generator)
        changed_logits, _ = model(changed)
        torch.testing.assert_close(changed_logits[:, : cut + 1], logits[:, : cut + 1], rtol=0, atol=1e-5)


def test_gpt_without_the_causal_mask_does_see_the_future():
    model = small_gpt(causal=False)
    idx = torch.randint(0, SMALL["vocab_size"], (1, 10))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % SMALL["vocab_size"]
    assert not torch.allclose(model(idx)[0][:, 0], model(changed)[0][:, 0])


def test_bert_output_at_a_position_depends_on_later_tokens():
    model = small_bert()
    idx = torch.randint(0, SMALL["vocab_size"], (1, 10))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % SMALL["vocab_size"]
    assert (model(idx)[0][0, 0] - model(changed)[0][0, 0]).abs().max() > 1e-4


def test_gpt_attention_weights_are_causal_and_rows_sum_to_one():
    model = small_gpt()
    idx = torch.randint(0, SMALL["vocab_size"], (2, 9))
    _, _, attentions = model(idx, return_attention=True)
    assert len(attentions) == SMALL["n_layer"]
    for weights in attentions:
        assert weights.shape == (2, SMALL["n_head"], 9, 9)
        assert torch.all(weights.triu(diagonal=1) == 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, SMALL["n_head"], 9))


def test_bert_padding_does_not_change_outputs_at_real_positions():
    model = small_bert(pad_id=0)
    real = torch.randint(1, SMALL["vocab_size"], (1, 7))
    padded = torch.cat([real, torch.zeros(1, 5, dtype=torch.long)], dim=1)  # right padding
    logits_real, _, attentions_real = model(real, return_attention=True)
    logits_padded, _, attentions_padded = model(padded, return_attention=True)
    torch.testing.assert_close(logits_padded[:, :7], logits_real, rtol=0, atol=1e-5)
    assert torch.all(attentions_padded[0][..., 7:] == 0)  # no query attends to a padding key
    # the same through an explicit attention_mask, and for classification with mean pooling
    mean_model = small_bert(pooling="mean")
    mask = padded != 0
    torch.testing.assert_close(
        mean_model.classify(padded, attention_mask=mask)[0], mean_model.classify(real)[0], rtol=0, atol=1e-5
    )


# ---------------------------------------------------------------- fast path, weight tying, init


@pytest.mark.parametrize("make", [small_gpt, small_bert, lambda: small_bert(pad_id=0, norm_first=True)])
def test_fast_and_explicit_attention_paths_give_the_same_logits(make):
    model = make()
    idx = torch.randint(0, SMALL["vocab_size"], (2, 16))
    idx[1, 10:] = 0
    fast, _ = model(idx)
    explicit, _, _ = model(idx, return_attention=True)
    torch.testing.assert_close(fast, explicit, rtol=0, atol=1e-5)


def test_lm_head_is_tied_to_the_token_embedding():
    model = small_gpt()
    assert model.lm_head.weight is model.token_embedding.weight
    idx = torch.randint(0, SMALL["vocab_size"], (2, 8))
    _, loss = model(idx, idx)
    loss.backward()
    # the one matrix receives gradient both from the look-up and from the head
    assert model.token_embedding.weight.grad is not None
    bert = small_bert()
    assert bert.mlm_head.weight is bert.token_embedding.weight


def test_initial_loss_is_close_to_log_vocab_size():
    model = small_gpt(vocab_size=500)
    idx = torch.randint(0, 500, (8, 16))
    _, loss = model(idx, torch.randint(0, 500, (8, 16)))
    assert abs(loss.item() - math.log(500)) < 0.1


def test_residual_projections_get_a_smaller_init():
    model = small_gpt(n_layer=8, n_embd=64)
    expected = 0.02 / math.sqrt(2 * 8)
    assert model.blocks[0].attn.out_proj.weight.std().item() == pytest.approx(expected, rel=0.1)
    assert model.blocks[3].mlp.proj.weight.std().item() == pytest.approx(expected, rel=0.1)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_equals_pytorch_transformer_encoder_layer(norm_first):
    torch.manual_seed(0)
    d, h = 32, 4
    reference = nn.TransformerEncoderLayer(
        d, h, dim_feedforward=4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    ours = Block(d, h, dropout=0.0, norm_first=norm_first).eval()
    ours.attn.load_from_torch(reference.self_attn)
    ours.mlp.fc.load_state_dict(reference.linear1.state_dict())
    ours.mlp.proj.load_state_dict(reference.linear2.state_dict())
    ours.ln_1.load_state_dict(reference.norm1.state_dict())
    ours.ln_2.load_state_dict(reference.norm2.state_dict())
    x = torch.randn(2, 7, d)
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    torch.testing.assert_close(ours(x)[0], reference(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours(x, is_causal=True)[0], reference(x, src_mask=causal), rtol=1e-5, atol=1e-5)


def test_bert_masked_lm_loss_counts_only_masked_positions():
    model = small_bert()
    idx = torch.randint(0, SMALL["vocab_size"], (2, 8))
    targets = torch.full_like(idx, -100)
    targets[0, 3] = 5
    targets[1, 6] = 9
    logits, loss = model(idx, targets)
    expected = torch.nn.functional.cross_entropy(torch.stack([logits[0, 3], logits[1, 6]]), torch.tensor([5, 9]))
    torch.testing.assert_close(loss, expected)


def test_bert_classify_and_segments():
    model = small_bert(n_segments=2, num_classes=3)
    idx = torch.randint(0, SMALL["vocab_size"], (4, 10))
    segments = torch.zeros_like(idx)
    segments[:, 5:] = 1
    logits, loss = model.classify(idx, labels=torch.tensor([0, 1, 2, 0]), segment_ids=segments)
    assert logits.shape == (4, 3) and loss.item() > 0
    assert not torch.allclose(logits, model.classify(idx)[0])  # segments matter
    with pytest.raises(ValueError, match="segment_ids"):
        model.classify(idx, segment_ids=segments + 5)


def test_a_tiny_gpt_learns_a_repeating_sequence():
    model = small_gpt().train()
    pattern = torch.arange(10).repeat(4)[None, :17]  # 0 1 2 ... 9 0 1 ...
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        _, loss = model(pattern[:, :-1], pattern[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


# ---------------------------------------------------------------- bad input: clear errors


@pytest.mark.parametrize(
    "idx, message",
    [
        (torch.zeros(1, 17, dtype=torch.long), r"block_size.*crop to the last 16 tokens"),
        (torch.tensor([[1, 2, -1]]), r"token id -1, outside the vocabulary 0\.\.60"),
        (torch.tensor([[1, 2, 61]]), r"token id 61, outside the vocabulary"),
        (torch.zeros(0, 5, dtype=torch.long), r"empty"),
        (torch.zeros(2, 0, dtype=torch.long), r"empty"),
        (torch.zeros(1, 5), r"integer token ids.*\.long\(\)"),
        (torch.zeros(5, dtype=torch.long), r"\(batch, time\).*unsqueeze\(0\)"),
        (torch.zeros(1, 2, 3, dtype=torch.long), r"\(batch, time\)"),
    ],
)
@pytest.mark.parametrize("make", [small_gpt, small_bert])
def test_bad_input_is_a_clear_value_error(make, idx, message):
    with pytest.raises(ValueError, match=message):
        make()(idx)


@pytest.mark.parametrize("make", [small_gpt, small_bert])
def test_a_list_of_ids_is_a_clear_type_error(make):
    with pytest.raises(TypeError, match=r"torch.Tensor.*torch.tensor\(ids\)"):
        make()([[1, 2, 3]])


def test_bad_targets_and_configs_are_clear_errors():
    model = small_gpt()
    idx = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        model(idx, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="-100"):
        model(idx, torch.full((2, 4), 61))
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=3, n_embd=32)
    with pytest.raises(ValueError, match="vocab_size must be a whole number >= 1, got 0"):
        GPTConfig(vocab_size=0, block_size=8, n_layer=1, n_head=1, n_embd=32)
    with pytest.raises(ValueError, match="all padding"):
        small_bert(pad_id=0)(torch.zeros(1, 4, dtype=torch.long))
