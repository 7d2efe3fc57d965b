"""Chapter 10's tools (llmbook.challenges), checked against direct computations and PyTorch."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmbook import challenges
from llmbook.models import GPT, GPTConfig


def test_training_flops_and_days_match_gpt3():
    flops = challenges.training_flops(175e9, 300e9)
    assert flops == pytest.approx(3.15e23)
    # Patterson et al. 2021: 10,000 V100s for 14.8 days, i.e. about 24.6 TFLOP/s sustained per GPU.
    assert challenges.accelerator_days(flops, 24.6e12) / 10_000 == pytest.approx(14.8, rel=0.01)
    with pytest.raises(ValueError, match="positive"):
        challenges.training_flops(0, 1)
    with pytest.raises(ValueError, match="flops_per_second"):
        challenges.accelerator_days(1.0, 0.0)


def _weat_by_hand(X, Y, A, B):
    def cos(u, v):
        return float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))

    def s(w):
        return np.mean([cos(w, a) for a in A]) - np.mean([cos(w, b) for b in B])

    sx, sy = [s(x) for x in X], [s(y) for y in Y]
    return (np.mean(sx) - np.mean(sy)) / np.std(sx + sy, ddof=1), sum(sx) - sum(sy)


def test_weat_effect_size_matches_the_formula_computed_by_hand():
    rng = np.random.default_rng(0)
    X, Y, A, B = (rng.normal(size=(n, 6)) for n in (4, 5, 3, 4))
    effect, statistic = _weat_by_hand(X, Y, A, B)
    assert challenges.weat_effect_size(X, Y, A, B) == pytest.approx(effect, rel=1e-9)
    result = challenges.weat_test(X, Y, A, B, permutations=200)
    assert result.statistic == pytest.approx(statistic, rel=1e-9)
    assert 0 < result.p_value <= 1


def test_weat_finds_a_planted_association_and_not_a_random_one():
    rng = np.random.default_rng(1)
    direction = rng.normal(size=20)
    A = rng.normal(size=(8, 20)) + 2 * direction
    B = rng.normal(size=(8, 20)) - 2 * direction
    X = rng.normal(size=(8, 20)) + 2 * direction
    Y = rng.normal(size=(8, 20)) - 2 * direction
    planted = challenges.weat_test(X, Y, A, B, permutations=2000)
    assert planted.effect_size > 1.5 and planted.p_value < 0.01
    # swapping the targets flips the sign
    assert challenges.weat_effect_size(Y, X, A, B) == pytest.approx(-planted.effect_size)
    null = challenges.weat_test(rng.normal(size=(8, 20)), rng.normal(size=(8, 20)), A, B, permutations=2000)
    assert abs(null.effect_size) < 1.5 and null.p_value > 0.01


def test_weat_refuses_bad_sets():
    good = np.ones((3, 4))
    with pytest.raises(ValueError, match="zero vector"):
        challenges.weat_effect_size(np.zeros((3, 4)), good + 1, good, good * 2)
    with pytest.raises(ValueError, match="same width"):
        challenges.weat_effect_size(good, good, good, np.ones((3, 5)))


def test_quantize_per_channel_is_symmetric_int8_with_row_scales():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    w[3] = 0.0  # an all-zero row keeps a usable scale
    q, scale = challenges.quantize_per_channel(w)
    assert q.dtype == torch.int8 and scale.shape == (16,)
    assert q.abs().max() == 127 and q[3].abs().max() == 0
    expected = torch.clamp(torch.round(w / scale[:, None]), -127, 127)
    assert torch.equal(q.float(), expected)
    error = (q.float() * scale[:, None] - w).abs()
    assert (error <= scale[:, None] / 2 + 1e-7).all()  # at most half a step in each row
    with pytest.raises(ValueError, match="2-d floating-point"):
        challenges.quantize_per_channel(torch.ones(3))


def test_int8_linear_agrees_with_pytorchs_int8_weight_only_kernel_and_dequantized_matmul():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 24)
    layer = challenges.Int8Linear(linear)
    x = torch.randn(2, 5, 48)
    layer.use_kernel = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning may come out of this path
        fast = layer(x)
    layer.use_kernel = False
    slow = layer(x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    reference = F.linear(x, layer.q.float() * layer.scale[:, None], linear.bias)
    torch.testing.assert_close(slow, reference)
    assert (fast - linear(x)).abs().max() < 0.05  # close to the float layer


def test_quantized_gpt_keeps_its_logits_and_shrinks():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    quantized = challenges.quantize_linear_layers(model)
    assert not any(isinstance(m, challenges.Int8Linear) for m in model.modules())  # original untouched
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert sum(isinstance(m, challenges.Int8Linear) for m in quantized.modules()) == n_linear
    idx = torch.randint(0, 30, (2, 16))
    with torch.no_grad():
        a, b = model(idx)[0], quantized(idx)[0]
    assert (a - b).abs().max() < 0.05
    assert challenges.model_bytes(quantized) < challenges.model_bytes(model)


def test_calibration_bins_against_a_direct_computation():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 1000)
    correct = rng.uniform(0, 1, 1000) < conf**2  # overconfident on purpose
    result = challenges.calibration_bins(conf, correct, n_bins=5)
    ece = 0.0
    for low, high in zip(np.linspace(0, 1, 6)[:-1], np.linspace(0, 1, 6)[1:]):
        inside = (conf > low) & (conf <= high) if low > 0 else (conf >= 0) & (conf <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert result.ece == pytest.approx(ece, rel=1e-9)
    assert result.counts.sum() == 1000
    assert challenges.calibration_bins([0.9, 0.9], [1, 1], 10).ece == pytest.approx(0.1)
    perfect = challenges.calibration_bins([1.0, 1.0], [1, 1], 10)
    assert perfect.ece == 0 and np.isnan(perfect.accuracy[0])
    with pytest.raises(ValueError, match="probabilities"):
        challenges.calibration_bins([1.5], [1])


def test_hidden_states_end_in_the_models_logits_and_the_logit_lens_reads_them():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=3, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 20, (2, 8))
    states = challenges.hidden_states(model, idx)
    assert len(states) == 4 and states[0].shape == (2, 8, 16)
    lens = challenges.logit_lens(model, states)
    with torch.no_grad():
        logits, _ = model(idx)
    torch.testing.assert_close(lens[-1], logits)
    with pytest.raises(TypeError, match="GPT"):
        challenges.hidden_states(torch.nn.Linear(2, 2), idx)


def test_linear_probe_reads_a_linear_property_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 10, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    accuracy = challenges.linear_probe(x[:400], y[:400], x[400:], y[400:])
    assert accuracy > 0.9
    noise = torch.randint(0, 2, (600,), generator=gen)
    assert challenges.linear_probe(x[:400], noise[:400], x[400:], noise[400:]) < 0.65


def test_exposure():
    assert challenges.exposure(1, 1024) == 10.0
    assert challenges.exposure(1024, 1024) == 0.0
    assert challenges.exposure(4, 1024) == pytest.approx(8.0)
    assert math.isclose(challenges.exposure(3, 10), math.log2(10 / 3))
    with pytest.raises(ValueError, match="larger than"):
        challenges.exposure(11, 10)


def test_minhash_estimates_the_jaccard_similarity():
    base = "the quality of mercy is not strained, it droppeth as the gentle rain from heaven"
    variants = [
        base,
        base.replace("gentle", "gentile"),
        base[:40],
        "an entirely different line of verse, nothing shared",
    ]
    sets = [challenges.shingles(t, 5) for t in variants]
    signatures = challenges.minhash_signatures(sets, num_perm=256)
    assert signatures.shape == (4, 256)
    for j in range(1, 4):
        exact = challenges.jaccard(sets[0], sets[j])
        estimate = float((signatures[0] == signatures[j]).mean())
        assert abs(estimate - exact) < 0.1, (j, exact, estimate)
    assert (signatures[0] == challenges.minhash_signatures([sets[0]], num_perm=256)[0]).all()  # deterministic
    assert challenges.jaccard(set(), set()) == 1.0
    assert challenges.shingles("abc", 5) == {"abc"}
    with pytest.raises(ValueError, match="empty"):
        challenges.minhash_signatures([set()])
