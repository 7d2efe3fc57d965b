"""Specifications of the training loop, batchers and checkpoints (Chapter 6)."""

import contextlib
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmbook import train as T
from llmbook.train import TokenBatcher, TrainConfig, lr_at, train


class TinyLM(nn.Module):
    """A small next-token model with every kind of parameter the optimizer sorts: matrices, biases, LayerNorm."""

    def __init__(self, vocab_size=11, width=16, block_size=8, dropout=0.1):
        super().__init__()
        self.block_size = block_size
        self.embed = nn.Embedding(vocab_size, width)
        self.norm = nn.LayerNorm(width)
        self.hidden = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, idx, targets=None):
        h = self.drop(torch.relu(self.hidden(self.norm(self.embed(idx)))))
        logits = self.head(h)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss


def repeating_data(n=600, period=11):
    ids = torch.arange(n) % period
    return ids[: int(0.9 * n)], ids[int(0.9 * n) :]


def quiet(**kwargs):
    defaults = dict(progress=False, eval_interval=5, eval_steps=2, log_interval=1, amp=False)
    defaults.update(kwargs)
    return TrainConfig(**defaults)


# ---------------------------------------------------------------- schedule and optimizer


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    config = TrainConfig(max_steps=100, batch_size=1, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert lr_at(0, config) == pytest.approx(1e-4)
    assert lr_at(4, config) == pytest.approx(5e-4)
    assert lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(55, config) == pytest.approx(5.5e-4)  # half way through the cosine: the mean of lr and min_lr
    assert lr_at(100, config) == pytest.approx(1e-4)
    assert lr_at(500, config) == pytest.approx(1e-4)
    rates = [lr_at(s, config) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_min_lr_defaults_to_a_tenth_of_lr():
    assert lr_at(10**6, TrainConfig(max_steps=10, batch_size=1, lr=3e-3)) == pytest.approx(3e-4)


def test_weight_decay_applies_to_matrices_only():
    model = TinyLM()
    optimizer = T.configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1, weight_decay=0.1), "cpu")
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"])
    assert {id(p) for p in plain["params"]} == {
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.hidden.bias),
        id(model.head.bias),
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(batch_size=0), "batch_size must be"),
        (dict(lr=0.0), "lr must be a finite number > 0, got 0.0"),
        (dict(lr=-1e-3), "lr must be a finite number > 0"),
        (dict(max_steps=0), "max_steps must be"),
        (dict(grad_accum_steps=0), "grad_accum_steps"),
        (dict(min_lr=1.0), "min_lr must be"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(warmup_steps=50, lr_decay_steps=10), "lr_decay_steps"),
    ],
)
def test_bad_config_values_are_rejected_with_a_reason(bad, message):
    values = dict(max_steps=10, batch_size=2)
    values.update(bad)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_a_batcher_window_longer_than_the_model_context_is_rejected():
    model = TinyLM(block_size=8)
    batcher = TokenBatcher(*repeating_data(), block_size=16)
    with pytest.raises(ValueError, match="larger than the model's block_size"):
        train(model, batcher, quiet(max_steps=1, batch_size=2), device="cpu")


# ---------------------------------------------------------------- the loop


def test_training_learns_a_repeating_sequence_and_records_history():
    torch.manual_seed(0)
    model = TinyLM(dropout=0.0)
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    result = train(model, batcher, quiet(max_steps=60, batch_size=8, lr=1e-2, warmup_steps=5), device="cpu")
    history = result.history
    assert history["val_loss"][0] == pytest.approx(math.log(11), abs=0.5)
    assert history["val_loss"][-1] < 0.3 and result.best_val_loss == min(history["val_loss"])
    assert history["step"] == list(range(0, 61, 5))
    assert len(history["loss"]) == len(history["lr"]) == len(history["grad_norm"]) == 60
    assert history["lr"][0] == pytest.approx(2e-3) and history["lr"][4] == pytest.approx(1e-2)
    assert all(t > 0 for t in history["tokens_per_second"]) and all(0 < m < 1 for m in history["mfu"])
    assert result.stopped == "completed" and result.steps == 60


def test_gradient_clipping_bounds_the_update_and_reports_the_pre_clip_norm():
    torch.manual_seed(0)
    model = TinyLM(dropout=0.0)
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, batcher, quiet(max_steps=1, batch_size=4, grad_clip=1e-3, lr=1e-3), device="cpu")
    assert result.history["grad_norm"][0] > 1e-2  # reported before clipping
    change = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert change > 0


def test_gradient_accumulation_matches_one_big_batch():
    """Two micro-batches of 4 give the same update as one batch of 8 made of the same windows."""

    class FixedBatcher:
        block_size = 8

        def __init__(self):
            gen = torch.Generator().manual_seed(0)
            self.x = torch.randint(11, (8, 8), generator=gen)
            self.y = torch.randint(11, (8, 8), generator=gen)
            self.calls = 0

        def get_batch(self, split, batch_size, generator=None):
            if batch_size == 8:
                return self.x, self.y
            half = self.calls % 2
            self.calls += 1
            return self.x[half * 4 : half * 4 + 4], self.y[half * 4 : half * 4 + 4]

    torch.manual_seed(0)
    a = TinyLM(dropout=0.0)
    b = TinyLM(dropout=0.0)
    b.load_state_dict(a.state_dict())
    train(a, FixedBatcher(), quiet(max_steps=1, batch_size=8, eval_steps=1), device="cpu")
    train(b, FixedBatcher(), quiet(max_steps=1, batch_size=4, grad_accum_steps=2, eval_steps=1), device="cpu")
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_a_nan_loss_stops_training_with_a_clear_message_and_keeps_good_weights(tmp_path):
    class Fragile(TinyLM):
        """Its loss turns NaN on the 7th training step, as after a blow-up."""

        training_calls = 0

        def forward(self, idx, targets=None):
            logits, loss = super().forward(idx, targets)
            if self.training:
                self.training_calls += 1
                if self.training_calls == 7:
                    loss = loss * float("nan")
            return logits, loss

    torch.manual_seed(0)
    model = Fragile()
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    config = quiet(max_steps=20, batch_size=4, checkpoint_dir=str(tmp_path), checkpoint_interval=5)
    result = train(model, batcher, config, device="cpu")
    assert result.stopped == "non-finite loss" and result.steps == 6
    assert "step 7" in result.message and "lower learning rate" in result.message
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert T.load_checkpoint(tmp_path, TinyLM())["step"] == 5


def run_resumable(steps, tmp_path=None, resume=None, decay_steps=None, seed=0):
    torch.manual_seed(123)
    model = TinyLM(dropout=0.2)  # dropout makes the test depend on the global RNG state too
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    config = quiet(
        max_steps=steps,
        batch_size=4,
        lr=3e-3,
        warmup_steps=3,
        lr_decay_steps=decay_steps,
        checkpoint_dir=str(tmp_path) if tmp_path else None,
        checkpoint_interval=steps if tmp_path else None,
        seed=seed,
    )
    return model, train(model, batcher, config, device="cpu", resume=resume)


def test_resume_continues_bit_for_bit(tmp_path):
    n = 10
    straight_model, straight = run_resumable(2 * n)
    # First half with the full run's schedule, saved; then fresh objects resume from the checkpoint.
    _, first = run_resumable(n, tmp_path=tmp_path, decay_steps=2 * n)
    assert first.checkpoint is not None
    torch.manual_seed(999)  # disturb the global RNG: resuming must restore it
    resumed_model, resumed = run_resumable(2 * n, resume=first.checkpoint)
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed.history["loss"] == straight.history["loss"]
    assert resumed.history["val_loss"] == straight.history["val_loss"]
    assert resumed.history["lr"] == straight.history["lr"]


def test_keyboard_interrupt_saves_a_checkpoint_and_returns_the_partial_run(tmp_path):
    class InterruptingBatcher(TokenBatcher):
        calls = 0

        def get_batch(self, split, batch_size, generator=None):
            if split == "train":
                InterruptingBatcher.calls += 1
                if InterruptingBatcher.calls == 10:  # 2 for the evaluation at step 0, then steps 1..7
                    raise KeyboardInterrupt
            return super().get_batch(split, batch_size, generator)

    torch.manual_seed(123)
    model = TinyLM(dropout=0.2)
    config = quiet(max_steps=20, batch_size=4, lr=3e-3, warmup_steps=3, checkpoint_dir=str(tmp_path), eval_interval=100)
    result = train(model, InterruptingBatcher(*repeating_data(), block_size=8), config, device="cpu")
    assert result.stopped == "interrupted" and result.steps == 7
    assert "resume=" in result.message
    # Resuming from the interrupt checkpoint ends exactly where an uninterrupted run ends.
    straight_model, straight = run_resumable(20)
    resumed_model, resumed = run_resumable(20, resume=tmp_path)
    for a, b in zip(straight_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert resumed.history["loss"] == straight.history["loss"]


def test_a_real_ctrl_c_stops_at_the_next_step_boundary_and_the_checkpoint_resumes_exactly(tmp_path):
    class SigintBatcher(TokenBatcher):
        calls = 0

        def get_batch(self, split, batch_size, generator=None):
            if split == "train":
                SigintBatcher.calls += 1
                if SigintBatcher.calls == 10:  # 2 for the evaluation at step 0; in the middle of step 8
                    os.kill(os.getpid(), signal.SIGINT)
            return super().get_batch(split, batch_size, generator)

    handler = signal.getsignal(signal.SIGINT)
    torch.manual_seed(123)
    model = TinyLM(dropout=0.2)
    config = quiet(max_steps=20, batch_size=4, lr=3e-3, warmup_steps=3, checkpoint_dir=str(tmp_path), eval_interval=100)
    result = train(model, SigintBatcher(*repeating_data(), block_size=8), config, device="cpu")
    assert result.stopped == "interrupted" and result.steps == 8  # the step under way was finished
    assert signal.getsignal(signal.SIGINT) is handler
    straight_model, straight = run_resumable(20)
    resumed_model, resumed = run_resumable(20, resume=tmp_path)
    for a, b in zip(straight_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert resumed.history["loss"] == straight.history["loss"]


def test_fused_and_plain_adamw_take_the_same_step():
    torch.manual_seed(0)
    a, b = TinyLM(dropout=0.0), TinyLM(dropout=0.0)
    b.load_state_dict(a.state_dict())
    fused = T.configure_optimizer(a, TrainConfig(max_steps=1, batch_size=1), "cpu")
    plain = torch.optim.AdamW(
        [
            dict(g, params=list(m))
            for g, m in zip(
                fused.param_groups,
                ([p for p in b.parameters() if p.dim() >= 2], [p for p in b.parameters() if p.dim() < 2]),
            )
        ]
    )
    for g in plain.param_groups:
        g.update(fused=None, foreach=False)
    batch = TokenBatcher(*repeating_data(), block_size=8).get_batch("train", 4, torch.Generator().manual_seed(0))
    for model, optimizer in ((a, fused), (b, plain)):
        for _ in range(3):
            T.train_step(model, optimizer, [batch])
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_time_limit_stops_early_and_evaluates_the_last_step():
    model = TinyLM()
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    result = train(model, batcher, quiet(max_steps=10**6, batch_size=2, max_seconds=0.2), device="cpu")
    assert result.stopped == "time limit" and 0 < result.steps < 10**6
    assert result.history["step"][-1] == result.steps


# ---------------------------------------------------------------- train_step


def test_train_step_weights_micro_batches_by_their_valid_targets_like_one_big_batch():
    """Two micro-batches with 3 and 9 valid targets give the gradient of the mean over all 12 (PyTorch reference)."""
    torch.manual_seed(0)
    model = TinyLM(dropout=0.0)
    x = torch.randint(11, (4, 8))
    y = torch.randint(11, (4, 8))
    y[:2] = -100
    y[0, :3] = torch.tensor([1, 2, 3])  # micro-batch 1: 3 valid targets
    y[2:, 5:] = -100  # micro-batch 2: 10 valid targets
    reference = TinyLM(dropout=0.0)
    reference.load_state_dict(model.state_dict())
    logits, _ = reference(x)
    F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100).backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    result = T.train_step(model, optimizer, [(x[:2], y[:2]), (x[2:], y[2:])], amp=False)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():
        expected = F.cross_entropy(reference(x)[0].flatten(0, 1), y.flatten(), ignore_index=-100)
    assert result.loss == pytest.approx(expected.item(), rel=1e-5) and result.tokens == 32 and result.finite


def test_train_step_syncs_gradients_only_on_the_last_micro_batch():
    class FakeDDP(TinyLM):
        def __init__(self):
            super().__init__(dropout=0.0)
            self.synced = []
            self.inside = False

        @contextlib.contextmanager
        def no_sync(self):
            self.inside = True
            yield
            self.inside = False

        def forward(self, idx, targets=None):
            self.synced.append(not self.inside)
            return super().forward(idx, targets)

    model = FakeDDP()
    batches = [TokenBatcher(*repeating_data(), block_size=8).get_batch("train", 2) for _ in range(4)]
    T.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batches)
    assert model.synced == [False, False, False, True]


def test_train_step_refuses_to_step_on_a_non_finite_loss():
    model = TinyLM(dropout=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = TokenBatcher(*repeating_data(), block_size=8).get_batch("train", 2)
    with torch.no_grad():
        model.head.bias[0] = float("inf")
        before[-1][0] = float("inf")
    result = T.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), [(x, y)])
    assert not result.finite and not math.isfinite(result.loss)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_configure_optimizer_uses_the_fused_kernel_where_pytorch_has_it():
    optimizer = T.configure_optimizer(TinyLM(), TrainConfig(max_steps=1, batch_size=1), "cpu")
    torch_version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    assert optimizer.defaults.get("fused") is (True if torch_version >= (2, 4) else None) or torch_version < (2, 4)


def test_compile_wraps_the_forward_and_checkpoints_keep_plain_names(tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = TinyLM()
    config = quiet(max_steps=2, batch_size=2, compile=True, checkpoint_dir=str(tmp_path))
    train(model, TokenBatcher(*repeating_data(), block_size=8), config, device="cpu")
    assert compiled == [model]
    T.load_checkpoint(tmp_path, TinyLM())


# ---------------------------------------------------------------- throughput


def test_tokens_per_second_is_all_tokens_over_all_training_time():
    model = TinyLM()
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    result = train(model, batcher, quiet(max_steps=12, batch_size=4, grad_accum_steps=2, log_interval=4), device="cpu")
    assert result.tokens == 12 * 4 * 2 * 8
    assert result.tokens_per_second == pytest.approx(result.tokens / result.training_seconds)
    assert result.history["tokens_per_second"][-1] == pytest.approx(result.tokens_per_second)
    assert result.training_seconds <= result.elapsed_seconds
    assert 0 < result.mfu < 1


# ---------------------------------------------------------------- resuming with other settings


def test_resuming_with_other_settings_uses_the_new_ones_and_says_which_changed(tmp_path, capsys):
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    train(TinyLM(), batcher, quiet(max_steps=4, batch_size=2, lr=1e-3, checkpoint_dir=str(tmp_path)), device="cpu")
    capsys.readouterr()
    result = train(
        TinyLM(),
        batcher,
        quiet(max_steps=8, batch_size=2, lr=5e-3, min_lr=5e-3, weight_decay=0.0),
        device="cpu",
        resume=tmp_path,
    )
    printed = capsys.readouterr().out
    assert "resuming at step 4; changed since the checkpoint (new values apply):\n" in printed
    assert "\n  lr 0.001 -> 0.005\n" in printed and "\n  max_steps 4 -> 8\n" in printed
    assert max(len(line) for line in printed.splitlines()) <= 76, printed
    assert "weight_decay 0.1 -> 0.0" in printed and "seed" not in printed
    assert result.history["lr"][4:] == pytest.approx([5e-3] * 4)


# ---------------------------------------------------------------- bad inputs: clear errors, nothing silent

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(lr=NAN), "lr must be a finite number > 0, got nan"),
        (dict(lr=INF), "lr must be a finite number > 0, got inf"),
        (dict(lr="1e-3"), "lr must be a number, got '1e-3'"),
        (dict(min_lr=NAN), "min_lr must be a finite number"),
        (dict(weight_decay=NAN), "weight_decay must be a finite number >= 0, got nan"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
        (dict(betas=(NAN, 0.95)), r"betas must be two finite numbers in \[0, 1\), got \(nan, 0.95\)"),
        (dict(betas=(0.9, 1.0)), "betas must be two finite numbers"),
        (dict(betas=0.9), "betas must be two finite numbers"),
        (dict(grad_clip=INF), "grad_clip must be a finite number > 0, got inf"),
        (dict(grad_clip=NAN), "grad_clip must be a finite number > 0, got nan"),
        (dict(max_seconds=NAN), "max_seconds must be a finite number > 0, got nan"),
        (dict(max_seconds=-1.0), "max_seconds must be a finite number > 0"),
        (dict(batch_size=2.5), "batch_size must be a whole number >= 1, got 2.5"),
        (dict(max_steps=True), "max_steps must be a whole number >= 1, got True"),
        (dict(warmup_steps=-1), "warmup_steps must be a whole number >= 0, got -1"),
        (dict(eval_batch_size=0), "eval_batch_size must be a whole number >= 1"),
        (dict(checkpoint_interval=5), "checkpoint_interval=5 but checkpoint_dir is None"),
        (dict(checkpoint_dir=3), "checkpoint_dir must be a folder path"),
        (dict(amp="yes"), "amp must be True or False, got 'yes'"),
        (dict(compile=1), "compile must be True or False"),
        (dict(seed=-3), "seed must be a whole number >= 0"),
    ],
)
def test_non_finite_and_wrongly_typed_settings_are_rejected_by_name(bad, message):
    values = dict(max_steps=10, batch_size=2)
    values.update(bad)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_train_rejects_a_model_or_config_of_the_wrong_kind():
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    with pytest.raises(TypeError, match="config must be a TrainConfig, got dict"):
        train(TinyLM(), batcher, dict(max_steps=1, batch_size=1), device="cpu")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        train(lambda x: x, batcher, quiet(max_steps=1, batch_size=1), device="cpu")
    with pytest.raises(TypeError, match="must have get_batch"):
        train(TinyLM(), [1, 2, 3], quiet(max_steps=1, batch_size=1), device="cpu")


def test_non_finite_weights_are_never_written_over_the_last_good_checkpoint(tmp_path):
    class Corrupting(TinyLM):
        """During its 3rd training step a weight becomes infinite while the loss stays finite."""

        def __init__(self):
            super().__init__(dropout=0.0)
            self.spare = nn.Parameter(torch.zeros(2, 2))  # not used by the loss
            self.calls = 0

        def forward(self, idx, targets=None):
            if self.training:
                self.calls += 1
                if self.calls == 3:
                    with torch.no_grad():
                        self.spare.fill_(float("inf"))
            return super().forward(idx, targets)

    batcher = TokenBatcher(*repeating_data(), block_size=8)
    config = quiet(max_steps=8, batch_size=2, checkpoint_dir=str(tmp_path), checkpoint_interval=2)
    result = train(Corrupting(), batcher, config, device="cpu")
    assert result.stopped == "non-finite weights" and result.steps == 4
    assert "step 4" in result.message and "step-000002" in result.message
    assert result.checkpoint == str(tmp_path / "step-000002")
    fresh = Corrupting()
    assert T.load_checkpoint(tmp_path, fresh)["step"] == 2
    assert all(torch.isfinite(p).all() for p in fresh.parameters())
