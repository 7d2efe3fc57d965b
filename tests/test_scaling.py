"""Specifications of the scaling tools: fits, iso-FLOP optimum, memory arithmetic and measurement (Chapter 7)."""

import math

import numpy as np
import pytest
import torch

from llmbook import scaling
from llmbook.models import GPT, GPTConfig
from llmbook.scaling import GridRun, SavedTensorMeter, activation_bytes, checkpoint_blocks, fit_power_law, iso_flop


def test_power_law_fit_recovers_the_exponent_and_the_irreducible_loss_with_an_interval_around_them():
    rng = np.random.default_rng(0)
    n = np.geomspace(5e3, 2e5, 7)
    loss = 40 * n**-0.35 + 1.3
    noisy = loss * np.exp(rng.normal(0, 0.005, n.size))
    fit = fit_power_law(n, noisy, bootstrap=100)
    assert abs(fit.alpha - 0.35) < 0.08 and abs(fit.c - 1.3) < 0.1
    assert fit.alpha_low < 0.35 < fit.alpha_high and fit.alpha_high - fit.alpha_low < 0.4
    assert np.allclose(fit(n), loss, rtol=0.02)
    # Kaplan's form, without c, fitted to the same losses: a smaller exponent (the floor is in the power law)
    kaplan = fit_power_law(n, noisy, irreducible=False, bootstrap=100)
    assert 0.05 < kaplan.alpha < fit.alpha and kaplan.c == 0 and kaplan.alpha_low <= kaplan.alpha <= kaplan.alpha_high


def test_kaplan_form_is_exact_on_a_pure_power_law():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    fit = fit_power_law(n, 7 * n**-0.076, irreducible=False, bootstrap=0)
    assert math.isclose(fit.alpha, 0.076, rel_tol=1e-9) and math.isclose(fit.a, 7, rel_tol=1e-9)


@pytest.mark.parametrize(
    "x, y, irreducible, message",
    [
        ([1, 2, 3], [3, 2, 1], True, "needs at least 4 points, got 3"),
        ([1, 2, 3, 4], [3, 2, 0, 1], True, "must be finite and > 0"),
        ([1, 2, 3, 4], [3, 2, 1], False, "same length"),
    ],
)
def test_fit_refuses_what_it_cannot_fit(x, y, irreducible, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y, irreducible=irreducible)


def chinchilla_runs(E=1.7, A=400.0, a=0.34, B=410.0, b=0.28, flops=1e17):
    """Runs whose learning curves follow L(N, D) = E + A/N^a + B/D^b exactly, with 6N FLOPs per token,
    each up to ``flops``."""
    runs = []
    for n in np.geomspace(1e4, 1e7, 10):
        tokens = flops / (6 * n)
        curve = np.geomspace(1e3, tokens, 60)
        loss = E + A / n**a + B / curve**b
        runs.append(GridRun(1, 16, int(n), int(n), 6 * n, int(tokens), 1e-3, float(loss[-1]), 0.0,
                            curve.astype(int).tolist(), loss.tolist()))  # fmt: skip
    return runs, (E, A, a, B, b)


def test_iso_flop_finds_the_optimum_of_a_known_loss_surface():
    runs, (E, A, a, B, b) = chinchilla_runs()
    for flops in (1e13, 1e14, 1e15):
        result = iso_flop(runs, flops)
        # Hoffmann et al.'s closed form for this surface: N_opt = G (C/6)^(b/(a+b))
        G = (a * A / (b * B)) ** (1 / (a + b))
        expected = G * (flops / 6) ** (b / (a + b))
        assert result.interior
        assert abs(math.log(result.optimal_params / expected)) < 0.25, (flops, result.optimal_params, expected)
        assert math.isclose(result.optimal_tokens * 6 * result.optimal_params, flops, rel_tol=0.02)
    # a larger budget moves the optimum to a larger model
    optima = [iso_flop(runs, f).optimal_params for f in (1e13, 1e14, 1e15)]
    assert optima == sorted(optima)


def test_iso_flop_needs_three_models_that_reached_the_budget():
    runs, _ = chinchilla_runs(flops=1e12)
    with pytest.raises(ValueError, match="an iso-FLOP parabola needs 3"):
        iso_flop(runs, 1e17)


def test_the_arithmetic_of_gpt3():
    flops = scaling.training_flops(175e9, 300e9)
    assert math.isclose(flops, 3.15e23)
    assert math.isclose(scaling.gpu_days(flops, 312e12, 0.5), flops / (312e12 * 0.5 * 86400))
    assert sum(scaling.adamw_bytes_per_param().values()) == 16
    assert sum(scaling.adamw_bytes_per_param(mixed_precision=False).values()) == 16
    with pytest.raises(ValueError, match="mfu must be"):
        scaling.gpu_days(flops, 312e12, 40)


@pytest.mark.parametrize(
    "n_layer, n_head, n_embd, vocab, batch, seq",
    [(1, 2, 32, 65, 2, 64), (3, 2, 32, 65, 4, 32), (2, 4, 64, 101, 3, 48), (2, 1, 16, 65, 1, 64)],
)
def test_activation_formula_equals_the_bytes_autograd_saves(n_layer, n_head, n_embd, vocab, batch, seq):
    torch.manual_seed(0)
    config = GPTConfig(vocab, 64, n_layer, n_head, n_embd, bias=False)
    model = GPT(config)
    x = torch.randint(0, vocab, (batch, seq))
    y = torch.randint(0, vocab, (batch, seq))
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        _, loss = model(x, y)
    assert meter.current == meter.peak == activation_bytes(config, batch, seq)
    loss.backward()
    assert meter.current == 0  # backward freed everything it kept


def test_activation_checkpointing_lowers_the_peak_and_leaves_the_gradients_equal():
    config = GPTConfig(65, 64, 4, 2, 32, bias=False)
    x = torch.randint(0, 65, (4, 64), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 65, (4, 64), generator=torch.Generator().manual_seed(1))
    peaks, grads = {}, {}
    for enabled in (False, True):
        torch.manual_seed(0)
        model = checkpoint_blocks(GPT(config), enabled)
        with SavedTensorMeter(exclude=model.parameters()) as meter:
            _, loss = model(x, y)
            loss.backward()
        peaks[enabled] = meter.peak
        grads[enabled] = [p.grad for p in model.parameters()]
    assert peaks[False] == activation_bytes(config, 4, 64)
    assert peaks[True] < 0.5 * peaks[False], peaks
    assert max(float((a - b).abs().max()) for a, b in zip(grads[False], grads[True])) < 1e-6
    # switching it off again restores the plain blocks
    checkpoint_blocks(model, enabled=False)
    assert all(not hasattr(block, "_plain_forward") for block in model.blocks)


def test_a_grid_run_trains_and_counts_its_compute():
    ids = torch.arange(3000) % 17
    from llmbook.data import TokenBatcher

    batcher = TokenBatcher(ids[:2700], ids[2700:], block_size=16)
    config = scaling.grid_shape(1, 16, 17, 16)
    run = scaling.train_run(config, batcher, tokens=8 * 16 * 12, batch_size=8, evals=4, final_eval_batches=2)
    assert run.tokens == 8 * 16 * 12 and run.params == GPT(config).num_params(non_embedding=True)
    assert math.isclose(run.flops, run.flops_per_token * run.tokens)
    assert run.flops > run.flops_6nd  # the head and the attention are not in 6ND
    assert len(run.curve_tokens) == len(run.curve_loss) == 4 and run.curve_tokens[-1] == run.tokens
    assert run.val_loss < math.log(17)  # it learned something of the repeating sequence
    with pytest.raises(ValueError, match="not a multiple of head_dim"):
        scaling.grid_shape(1, 40, 17, 16, head_dim=16)
