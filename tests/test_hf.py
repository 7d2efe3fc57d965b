"""Specification of llmbook.hf: a Hugging Face GPT-2 checkpoint in the book's GPT (Chapter 8)."""

import pytest
import torch

from llmbook.generate import generate
from llmbook.hf import convert_gpt2_state_dict, from_gpt2, gpt2_config

transformers = pytest.importorskip("transformers")  # a test-only dependency (requirements-dev.txt)


def random_gpt2(seed=0, **sizes):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        **{"vocab_size": 97, "n_positions": 40, "n_layer": 3, "n_head": 4, "n_embd": 32, **sizes}
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm shifts, so a bias mapped wrongly shows
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def test_converted_gpt2_gives_the_same_logits_to_1e_5():
    hf = random_gpt2()
    ours = from_gpt2(hf)
    assert ours.config.activation == "gelu_tanh" and ours.config.bias
    idx = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        got, _ = ours(idx)
    assert (got - expected).abs().max().item() < 1e-5
    assert ours.num_params() == sum(p.numel() for p in hf.parameters())  # tied heads counted once in both


def test_the_exact_gelu_would_not_match():
    hf = random_gpt2(1)
    ours = from_gpt2(hf)
    x = 30 * torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(2))  # pre-activations of order 1
    with torch.no_grad():
        expected = hf.transformer.h[0].mlp(x)
        assert (ours.blocks[0].mlp(x) - expected).abs().max().item() < 1e-6
        ours.blocks[0].mlp.activation = "gelu"
        difference = (ours.blocks[0].mlp(x) - expected).abs().max().item()
    assert difference > 1e-5  # the converter must pick the tanh GELU


def test_greedy_generation_matches_hugging_face():
    hf = random_gpt2(2)
    ours = from_gpt2(hf)
    prompt = torch.tensor([[5, 6, 7]])
    theirs = hf.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(generate(ours, prompt, 12, greedy=True, kv_cache=True), theirs)


def test_conversion_refuses_an_incomplete_state_dict_and_other_activations():
    hf = random_gpt2(3)
    state = hf.state_dict()
    del state["transformer.h.1.mlp.c_fc.weight"]
    with pytest.raises(ValueError, match="lacks 1 tensors"):
        convert_gpt2_state_dict(state, n_layer=3)
    with pytest.raises(ValueError, match="activation_function='relu'"):
        gpt2_config(transformers.GPT2Config(activation_function="relu"))
