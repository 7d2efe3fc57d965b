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


# --------------------------------------------------------------------------- distillation


def test_distillation_loss_matches_pytorchs_cross_entropy_and_kl_div():
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, 11, generator=gen, requires_grad=True)
    teacher = torch.randn(3, 5, 11, generator=gen, requires_grad=True)
    targets = torch.randint(0, 11, (3, 5), generator=gen)
    targets[0, :2] = -100  # ignored positions count in neither term
    keep = targets.flatten() != -100
    s, t, y = student.reshape(-1, 11)[keep], teacher.reshape(-1, 11)[keep], targets.flatten()[keep]
    for temperature, alpha in ((1.0, 0.5), (2.0, 0.3), (4.0, 1.0), (2.0, 0.0)):
        kl = F.kl_div(
            F.log_softmax(s / temperature, -1),
            F.log_softmax(t / temperature, -1),
            reduction="batchmean",
            log_target=True,
        )
        reference = (1 - alpha) * F.cross_entropy(s, y) + alpha * temperature**2 * kl
        got = challenges.distillation_loss(student, teacher, targets, temperature, alpha)
        torch.testing.assert_close(got, reference)
    # the teacher is a fixed target: no gradient flows into its logits
    challenges.distillation_loss(student, teacher, targets).backward()
    assert teacher.grad is None and student.grad is not None
    # a student equal to the teacher pays nothing for the soft term
    same = challenges.distillation_loss(teacher.detach(), teacher.detach(), targets, 3.0, 1.0)
    assert abs(float(same)) < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(alpha=1.5), "alpha"),
    ],
)
def test_distillation_loss_refuses_bad_settings(kwargs, match):
    logits = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match=match):
        challenges.distillation_loss(logits, logits, torch.zeros(2, 3, dtype=torch.long), **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        challenges.distillation_loss(logits, torch.zeros(2, 3, 6), torch.zeros(2, 3, dtype=torch.long))


def test_a_distilled_student_moves_towards_its_teacher_in_the_books_loop_and_leaves_it_alone():
    from llmbook.data import TokenBatcher
    from llmbook.train import TrainConfig, train

    torch.manual_seed(0)
    teacher = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=16))
    student = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    wrapper = challenges.DistillationStudent(student, teacher, temperature=2.0, alpha=1.0)
    assert sum(p.numel() for p in wrapper.parameters()) == student.num_params()  # the optimizer sees the student only
    ids = torch.randint(0, 8, (600,), generator=torch.Generator().manual_seed(1))
    batcher = TokenBatcher(ids[:500], ids[500:], block_size=8)
    x, _ = batcher.get_batch("val", 16, torch.Generator().manual_seed(2))

    def gap():  # KL(teacher || student) on a fixed batch
        with torch.no_grad():
            p = F.log_softmax(teacher(x)[0], -1)
            return float((p.exp() * (p - F.log_softmax(student(x)[0], -1))).sum(-1).mean())

    start = gap()
    result = train(
        wrapper,
        batcher,
        TrainConfig(max_steps=40, batch_size=16, lr=1e-2, progress=False, eval_interval=40, eval_steps=2),
        device="cpu",
    )
    assert gap() < 0.5 * start
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the teacher is untouched
    # in evaluation mode the wrapper reports the student's plain cross-entropy
    y = torch.randint(0, 8, x.shape)
    wrapper.eval()
    torch.testing.assert_close(wrapper(x, y)[1], student(x, y)[1])
    assert result.history["val_loss"]
    with pytest.raises(ValueError, match="vocab_size"):
        challenges.DistillationStudent(
            student, GPT(GPTConfig(vocab_size=9, block_size=8, n_layer=1, n_head=1, n_embd=8))
        )


# --------------------------------------------------------------------------- attention and attribution


def _gradient_x_input_by_hand(model, idx):
    """The same attribution from a forward pass written out here, with the embeddings as the leaf."""
    x = model.token_embedding(idx).detach().requires_grad_(True)
    h = x + model.position_embedding(torch.arange(idx.shape[1]))
    for block in model.blocks:
        h, _ = block(h, is_causal=True)
    log_probs = F.log_softmax(model.lm_head(model.ln_f(h))[:, -1], -1)
    score = log_probs.gather(1, log_probs.argmax(-1, keepdim=True)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return (grad * x).sum(-1).abs()


def test_gradient_x_input_matches_autograd_on_the_forward_pass_written_out():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.1))
    idx = torch.randint(1, 20, (3, 12))
    model.train()
    got = challenges.gradient_x_input(model, idx)
    assert model.training  # the mode is restored
    model.eval()
    torch.testing.assert_close(got, _gradient_x_input_by_hand(model, idx))
    assert all(p.grad is None for p in model.parameters())  # no parameter gradient is left behind
    # an input whose embedding is zero contributes nothing, whatever its gradient
    with torch.no_grad():
        model.token_embedding.weight[0] = 0.0
    idx[:, 3] = 0
    assert (challenges.gradient_x_input(model, idx)[:, 3] == 0).all()
    # an explicit target: the attribution of that token's log-probability
    target = torch.tensor([5, 6, 7])
    assert challenges.gradient_x_input(model, idx, target).shape == (3, 12)
    with pytest.raises(ValueError, match="one token id per row"):
        challenges.gradient_x_input(model, idx, torch.tensor([1, 2]))


def test_attention_from_last_is_the_models_own_last_row_of_weights():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=12, n_layer=3, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 20, (2, 9))
    weights = challenges.attention_from_last(model, idx)
    assert weights.shape == (2, 3, 2, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 2))
    with torch.no_grad():
        attentions = model(idx, return_attention=True)[2]
    for layer in range(3):
        torch.testing.assert_close(weights[:, layer], attentions[layer][:, :, -1])
    with pytest.raises(TypeError, match="GPT"):
        challenges.attention_from_last(torch.nn.Linear(2, 2), idx)


# --------------------------------------------------------------------------- canaries


def test_plant_canaries_inserts_each_line_as_often_as_asked_at_line_starts():
    text = "".join(f"line {i}\n" for i in range(50))
    planted = challenges.plant_canaries(text, {"my PIN is 1234": 5, "my PIN is 9876": 1, "my PIN is 5555": 0}, seed=3)
    lines = planted.splitlines()
    assert lines.count("my PIN is 1234") == 5 and lines.count("my PIN is 9876") == 1
    assert "5555" not in planted
    assert [line for line in lines if not line.startswith("my PIN")] == text.splitlines()  # the text is intact
    assert planted != challenges.plant_canaries(text, {"my PIN is 1234": 5, "my PIN is 9876": 1}, seed=4)
    with pytest.raises(ValueError, match="line break"):
        challenges.plant_canaries(text, {"two\nlines": 1})
    with pytest.raises(ValueError, match="do not fit"):
        challenges.plant_canaries("a\nb\n", {"x": 5})


def test_candidate_log_likelihoods_equal_token_by_token_scoring():
    from llmbook.generate import sequence_log_likelihood

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, block_size=10, n_layer=2, n_head=2, n_embd=16)).eval()
    prefix = torch.tensor([3, 1, 4, 1])
    candidates = torch.randint(0, 12, (37, 5))
    got = challenges.candidate_log_likelihoods(model, prefix, candidates, batch_size=8)
    full = torch.cat([prefix.expand(37, 4), candidates], dim=1)
    torch.testing.assert_close(got, sequence_log_likelihood(model, full, prompt_length=4), rtol=1e-5, atol=1e-5)
    # the probabilities of all continuations of one token sum to 1
    every = torch.arange(12)[:, None]
    assert torch.logsumexp(challenges.candidate_log_likelihoods(model, prefix, every), 0).abs() < 1e-5
    with pytest.raises(ValueError, match="block_size"):
        challenges.candidate_log_likelihoods(model, torch.arange(8), candidates)


def test_canary_rank_counts_the_candidates_strictly_more_likely():
    scores = torch.tensor([-3.0, -1.0, -2.0, -1.0, -5.0])
    assert [challenges.canary_rank(scores, i) for i in range(5)] == [4, 1, 3, 1, 5]
    assert challenges.exposure(challenges.canary_rank(scores, 1), 5) == pytest.approx(math.log2(5))
    with pytest.raises(ValueError, match="outside"):
        challenges.canary_rank(scores, 5)
