"""Specification of llmbook.checkpoint: exact, verified, all-or-nothing checkpoints that are never lost."""

import json
import os

import pytest
import torch
from test_train import TinyLM, quiet, repeating_data

from llmbook import checkpoint as C
from llmbook import train as T
from llmbook.models import BERT, GPT, BERTConfig, GPTConfig
from llmbook.rnn import LSTMConfig, LSTMLanguageModel
from llmbook.train import TokenBatcher, TrainConfig, train


def trained(tmp_path, steps=3):
    """A TinyLM, its optimizer after one step, and a checkpoint of both at tmp_path/ck."""
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = T.configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1))
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    model(*batcher.get_batch("train", 2))[1].backward()
    optimizer.step()
    path = C.save_checkpoint(tmp_path / "ck", model, optimizer, state={"step": steps})
    return model, optimizer, path


def snapshot(model, optimizer=None):
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = (
        {}
        if optimizer is None
        else {
            i: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
            for i, s in enumerate(optimizer.state.values())
        }
    )
    return weights, moments


def assert_unchanged(model, optimizer, before):
    weights, moments = snapshot(model, optimizer)
    assert all(torch.equal(weights[k], before[0][k]) for k in weights)
    assert moments.keys() == before[1].keys()
    assert all(torch.equal(moments[i][k], before[1][i][k]) for i in moments for k in moments[i])


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = TinyLM()
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    train(model, batcher, quiet(max_steps=3, batch_size=2), device="cpu")
    optimizer = T.configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1))
    model(*batcher.get_batch("train", 2))[1].backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    T.save_checkpoint(tmp_path / "ck", model, optimizer, state={"step": 3, "note": "hi"}, generator=generator)
    expected_next = torch.rand(3)
    expected_batch = torch.randint(100, (3,), generator=generator)

    fresh = TinyLM()
    fresh_optimizer = T.configure_optimizer(fresh, TrainConfig(max_steps=1, batch_size=1))
    fresh_generator = torch.Generator()
    state = T.load_checkpoint(tmp_path / "ck", fresh, fresh_optimizer, generator=fresh_generator)
    assert state == {"step": 3, "note": "hi"}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    for pa, pb in zip(model.parameters(), fresh.parameters()):
        sa, sb = optimizer.state[pa], fresh_optimizer.state[pb]
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert torch.equal(torch.rand(3), expected_next)
    assert torch.equal(torch.randint(100, (3,), generator=fresh_generator), expected_batch)


def test_checkpoints_hold_no_pickle_and_tied_weights_survive(tmp_path):
    class Tied(TinyLM):
        def __init__(self):
            super().__init__()
            self.head.weight = self.embed.weight

    model = Tied()
    path = T.save_checkpoint(tmp_path / "ck", model)
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    for file in path.iterdir():
        assert b"\x80\x04" not in file.read_bytes()[:2]  # not a pickle stream
    fresh = Tied()
    T.load_checkpoint(path, fresh)
    assert torch.equal(fresh.embed.weight, model.embed.weight) and fresh.head.weight is fresh.embed.weight


def test_saving_over_an_existing_checkpoint_replaces_it_whole(tmp_path):
    model = TinyLM()
    T.save_checkpoint(tmp_path / "ck", model, state={"step": 1})
    with torch.no_grad():
        model.head.bias.fill_(7.0)
    T.save_checkpoint(tmp_path / "ck", model, state={"step": 2})
    fresh = TinyLM()
    assert T.load_checkpoint(tmp_path / "ck", fresh)["step"] == 2
    assert (fresh.head.bias == 7.0).all()
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary directories left behind


def test_loading_something_that_is_not_a_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a checkpoint"):
        T.load_checkpoint(tmp_path, TinyLM())


# ---------------------------------------------------------------- a training run's checkpoint folder


def test_save_step_keeps_the_newest_step_and_points_latest_at_it(tmp_path):
    model = TinyLM()
    for step in (5, 10, 15):
        C.save_step(tmp_path, step, model, state={"step": step})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000015"]
    assert (tmp_path / "latest").read_text().strip() == "step-000015"
    assert C.find_checkpoint(tmp_path) == tmp_path / "step-000015"
    assert C.load_checkpoint(tmp_path / "latest", TinyLM())["step"] == 15


@pytest.mark.parametrize("pointer", [None, "garbage\x00", "step-000099", "../elsewhere"])
def test_a_missing_or_bad_pointer_falls_back_to_the_newest_complete_step(tmp_path, pointer):
    model = TinyLM()
    C.save_step(tmp_path, 5, model, state={"step": 5}, keep=3)
    C.save_step(tmp_path, 10, model, state={"step": 10}, keep=3)
    (tmp_path / ".step-000015.tmp-x").mkdir()  # an interrupted save: not a complete checkpoint
    (tmp_path / "step-000020").mkdir()  # no manifest: not complete either
    if pointer is None:
        (tmp_path / "latest").unlink()
    else:
        (tmp_path / "latest").write_text(pointer)
    assert C.find_checkpoint(tmp_path) == tmp_path / "step-000010"


def test_a_crash_between_the_two_renames_of_an_overwrite_leaves_the_old_copy_findable(tmp_path):
    model = TinyLM()
    path = C.save_checkpoint(tmp_path / "ck", model, state={"step": 1})
    aside = tmp_path / ".ck.old-abc"
    aside.mkdir()
    os.replace(path, aside / "checkpoint")  # what save_checkpoint does first when it overwrites
    assert C.load_checkpoint(tmp_path / "ck", TinyLM())["step"] == 1


def test_training_resumes_from_the_checkpoint_folder_and_cleans_up_interrupted_saves(tmp_path):
    batcher = TokenBatcher(*repeating_data(), block_size=8)
    config = quiet(max_steps=6, batch_size=2, checkpoint_dir=str(tmp_path), checkpoint_interval=2)
    result = train(TinyLM(), batcher, config, device="cpu")
    assert result.checkpoint == str(tmp_path / "step-000006")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000006"]


# ---------------------------------------------------------------- model configuration and load_model


@pytest.mark.parametrize(
    "make",
    [
        lambda: GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8)),
        lambda: BERT(BERTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8)),
        lambda: LSTMLanguageModel(LSTMConfig(13, n_embd=6, hidden_dim=10, num_layers=1, block_size=8)),
    ],
    ids=["GPT", "BERT", "LSTM"],
)
def test_load_model_rebuilds_an_llmbook_model_from_the_checkpoint_alone(tmp_path, make):
    torch.manual_seed(0)
    model = make()
    C.save_checkpoint(tmp_path / "ck", model)
    rebuilt = C.load_model(tmp_path / "ck")
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------- damaged files and wrong models: clear errors


def rewrite_json(file, change):
    value = json.loads(file.read_text())
    change(value)
    file.write_text(json.dumps(value))


def reseal(path):
    """Recompute the manifest, as someone who edits a file on purpose would."""
    files = {n: {"bytes": (path / n).stat().st_size, "sha256": C._sha256(path / n)} for n in C.FILES}
    (path / "manifest.json").write_text(json.dumps({"format": C.FORMAT, "files": files}))


def flip_a_bit(file, where=0.6):
    data = bytearray(file.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    file.write_bytes(bytes(data))


DAMAGE = {
    "bit-flipped weights": (
        lambda p: flip_a_bit(p / "model.safetensors"),
        "model.safetensors does not match its sha256",
    ),
    "bit-flipped optimizer": (
        lambda p: flip_a_bit(p / "optimizer.safetensors"),
        "optimizer.safetensors does not match",
    ),
    "bit-flipped state": (lambda p: flip_a_bit(p / "state.json", 0.3), "state.json does not match its sha256"),
    "truncated weights": (
        lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:100]),
        "model.safetensors has 100 bytes, the manifest says",
    ),
    "missing optimizer file": (lambda p: (p / "optimizer.safetensors").unlink(), "optimizer.safetensors is missing"),
    "manifest not JSON": (lambda p: (p / "manifest.json").write_text("{oops"), "manifest.json is not valid JSON"),
    "manifest of another format": (
        lambda p: rewrite_json(p / "manifest.json", lambda m: m.update(format="llmbook-checkpoint-1")),
        "has format 'llmbook-checkpoint-1'",
    ),
    "manifest without a file": (
        lambda p: rewrite_json(p / "manifest.json", lambda m: m["files"].pop("state.json")),
        "manifest.json lists no state.json",
    ),
    "state without rng (resealed)": (
        lambda p: (rewrite_json(p / "state.json", lambda m: m.pop("rng")), reseal(p)),
        "state.json has no 'rng' entry",
    ),
    "weights not safetensors (resealed)": (
        lambda p: ((p / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not js}"), reseal(p)),
        "model.safetensors cannot be parsed",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_naming_the_file_and_nothing_is_loaded(tmp_path, damage):
    _, _, path = trained(tmp_path)
    break_it, message = DAMAGE[damage]
    break_it(path)
    model = TinyLM()
    optimizer = T.configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1))
    before = snapshot(model, optimizer)
    with pytest.raises(C.CheckpointError, match=message) as error:
        C.load_checkpoint(path, model, optimizer)
    assert str(path) in str(error.value) and ("older checkpoint" in str(error.value) or "save the" in str(error.value))
    assert_unchanged(model, optimizer, before)


WRONG_MODELS = {
    "wider model": (lambda: TinyLM(width=32), "shape"),
    "bigger vocabulary": (lambda: TinyLM(vocab_size=12), "another size"),
    "other architecture": (
        lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)),
        "does not fit this GPT",
    ),
}


@pytest.mark.parametrize("wrong", list(WRONG_MODELS))
def test_a_checkpoint_for_another_model_is_refused_and_the_model_keeps_its_weights(tmp_path, wrong):
    _, _, path = trained(tmp_path)
    make, message = WRONG_MODELS[wrong]
    model = make()
    optimizer = T.configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1))
    before = snapshot(model, optimizer)
    with pytest.raises(C.CheckpointError, match=message) as error:
        C.load_checkpoint(path, model, optimizer)
    assert "model.safetensors" in str(error.value)
    assert_unchanged(model, optimizer, before)


def test_an_optimizer_of_another_setup_is_refused_before_the_weights_change(tmp_path):
    _, _, path = trained(tmp_path)
    model = TinyLM()
    optimizer = torch.optim.AdamW(model.parameters())  # one group, not two
    before = snapshot(model, optimizer)
    with pytest.raises(C.CheckpointError, match="parameter groups of sizes"):
        C.load_checkpoint(path, model, optimizer)
    assert_unchanged(model, optimizer, before)


def test_loading_an_optimizer_from_a_weights_only_checkpoint_says_so(tmp_path):
    path = C.save_checkpoint(tmp_path / "ck", TinyLM())
    model = TinyLM()
    with pytest.raises(C.CheckpointError, match="holds no optimizer state"):
        C.load_checkpoint(path, model, T.configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1)))


def test_load_model_refuses_a_model_without_a_recorded_config(tmp_path):
    path = C.save_checkpoint(tmp_path / "ck", TinyLM())
    with pytest.raises(C.CheckpointError, match="records no model configuration"):
        C.load_model(path)


def test_load_model_builds_only_llmbook_classes(tmp_path):
    path = C.save_checkpoint(
        tmp_path / "ck", GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8))
    )
    rewrite_json(path / "state.json", lambda m: m["model"].update({"class": "os.system"}))
    reseal(path)
    with pytest.raises(C.CheckpointError, match="only builds llmbook's own classes"):
        C.load_model(path)


def test_a_missing_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        C.load_checkpoint(tmp_path / "nowhere", TinyLM())
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        train(
            TinyLM(),
            TokenBatcher(*repeating_data(), block_size=8),
            quiet(max_steps=1, batch_size=1),
            device="cpu",
            resume=tmp_path,
        )


def test_save_step_refuses_non_finite_weights_and_keeps_the_last_good_checkpoint(tmp_path):
    model = TinyLM()
    C.save_step(tmp_path, 1, model, state={"step": 1})
    with torch.no_grad():
        model.head.bias[3] = float("nan")
    with pytest.raises(C.CheckpointError, match="NaN or infinite values at step 2"):
        C.save_step(tmp_path, 2, model, state={"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000001"]
    assert C.load_checkpoint(tmp_path, TinyLM())["step"] == 1


def test_save_checkpoint_never_replaces_a_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="results exists and is not a checkpoint"):
        C.save_checkpoint(tmp_path / "results", TinyLM())
    assert (tmp_path / "results" / "notes.txt").read_text() == "keep me"
