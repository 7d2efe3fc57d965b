"""Specification of llmbook.pretrained (models shared across chapters), at the smoke budget."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmbook import data, pretrained, runtime
from llmbook.train import TrainResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for the test, and the smoke budget."""
    folder = tmp_path / "models"
    monkeypatch.setenv("LLMBOOK_CACHE_DIR", str(folder))
    monkeypatch.setenv("LLMBOOK_BUDGET", "smoke")
    return folder


def _state(model):
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def _entries(folder):
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def test_available_names_each_model_and_unknown_names_are_clear_errors():
    names = pretrained.available()
    assert set(names) == {"glove-brown", "char-gpt-shakespeare", "byte-llama-base"}
    assert all("Chapter" in description for description in names.values())
    with pytest.raises(
        ValueError,
        match="no pretrained model named 'gpt-5'; available: byte-llama-base, char-gpt-shakespeare, glove-brown",
    ):
        pretrained.pretrained("gpt-5")
    with pytest.raises(runtime.BudgetError, match="budget must be one of smoke, cpu, gpu"):
        pretrained.cache_key("glove-brown", "laptop")


def test_cache_folder_is_the_variable_or_models_under_the_data_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMBOOK_CACHE_DIR", raising=False)
    monkeypatch.setenv("LLMBOOK_DATA_DIR", str(tmp_path / "data"))
    assert pretrained.cache_dir() == tmp_path / "data" / "models"
    monkeypatch.setenv("LLMBOOK_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert pretrained.cache_dir() == tmp_path / "elsewhere"


def test_chapter_6_takes_its_char_gpt_sizes_from_the_library():
    """One copy of the sizes: Chapter 6 merges pretrained.sizes() into its own table, which has no GPT sizes."""
    notebook = json.loads((ROOT / "book" / "06_training.ipynb").read_text(encoding="utf-8"))
    source = next("".join(c["source"]) for c in notebook["cells"] if "SIZES = {" in "".join(c["source"]))
    assert 'pretrained.sizes("char-gpt-shakespeare")' in source
    table = next(
        eval(ast.unparse(node.value), {"__builtins__": {}, "dict": dict})  # a literal table of dict(...) calls
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SIZES"
    )
    for budget in runtime.BUDGETS:
        assert not set(table[budget]) & set(pretrained.sizes("char-gpt-shakespeare", budget)), budget
    mine = pretrained.sizes("char-gpt-shakespeare", "smoke")
    mine["gpt"]["n_embd"] = 1  # a chapter editing its copy leaves the library's table (and the cache keys) alone
    assert pretrained.SIZES["char-gpt-shakespeare"]["smoke"]["gpt"]["n_embd"] == 32


def test_the_key_changes_with_the_budget_the_sizes_the_data_and_the_code(monkeypatch):
    key = pretrained.cache_key("glove-brown", "smoke")
    assert key.startswith("glove-brown-smoke-") and len(key.rsplit("-", 1)[1]) == 16
    assert pretrained.cache_key("glove-brown", "smoke") == key  # deterministic
    assert pretrained.cache_key("glove-brown", "cpu") != key
    assert pretrained.cache_key("char-gpt-shakespeare", "smoke") != key
    # another data file (a new registered sha256)
    brown = data.REGISTRY["brown.zip"]
    monkeypatch.setitem(
        data.REGISTRY, "brown.zip", data.Dataset(brown.name, brown.url, "0" * 64, brown.size, brown.licence)
    )
    assert pretrained.cache_key("glove-brown", "smoke") != key
    monkeypatch.setitem(data.REGISTRY, "brown.zip", brown)
    assert pretrained.cache_key("glove-brown", "smoke") == key
    # other sizes
    monkeypatch.setitem(
        pretrained.SIZES["glove-brown"], "smoke", {**pretrained.SIZES["glove-brown"]["smoke"], "n_embd": 17}
    )
    assert pretrained.cache_key("glove-brown", "smoke") != key


def test_the_hash_covers_the_library_modules_the_recipe_uses(monkeypatch):
    recipe = pretrained._RECIPES["char-gpt-shakespeare"]
    modules = pretrained._library_modules((recipe.train, recipe.load, pretrained._train_gpt))
    # models imports attention: followed through imports
    assert {"llmbook.models", "llmbook.attention", "llmbook.train", "llmbook.tokenizers", "llmbook.data"} <= set(
        modules
    )
    assert "llmbook.glove" not in modules
    key = pretrained.cache_key("char-gpt-shakespeare", "smoke")
    # a change in the source of a module the recipe uses (here: attention.py, read from its file) changes the key
    real_read_bytes = Path.read_bytes
    attention_file = Path(pretrained.importlib.util.find_spec("llmbook.attention").origin)

    def edited(self):
        content = real_read_bytes(self)
        return content + b"\n# edited\n" if self == attention_file else content

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert pretrained.cache_key("char-gpt-shakespeare", "smoke") != key


def test_glove_brown_miss_trains_and_writes_then_a_hit_loads_the_same_weights_without_training(cache):
    trainings = pretrained.TRAININGS["glove-brown"]
    first = pretrained.pretrained("glove-brown")
    assert first.trained and pretrained.TRAININGS["glove-brown"] == trainings + 1
    assert first.budget == "smoke" and first.key == pretrained.cache_key("glove-brown", "smoke")
    assert _entries(cache) == [first.key]  # no temporary folder left behind
    files = sorted(p.name for p in first.path.iterdir())
    assert files == ["meta.json", "weights.safetensors"]  # safetensors and JSON, no pickle
    meta = json.loads((first.path / "meta.json").read_text())
    assert meta["key"] == first.key and meta["sizes"] == pretrained.sizes("glove-brown", "smoke")
    assert len(meta["weights_sha256"]) == 64 and len(meta["code_and_data_sha256"]) == 64
    # what came back: Chapter 3's vectors at the smoke sizes
    size = pretrained.sizes("glove-brown", "smoke")
    assert first.vectors.shape == (len(first.vocab), size["n_embd"]) and len(first.vocab) > 500
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, rtol=1e-5)
    assert isinstance(first.result, TrainResult) and first.result.stopped in ("completed", "time limit")
    history = first.result.history
    assert 0 < history["epoch"][-1] <= size["epochs"] and history["loss"][-1] < history["loss"][0]
    assert first.metrics["vocab_size"] == len(first.vocab) and 0 <= first.metrics["analogy_accuracy"] <= 1

    second = pretrained.pretrained("glove-brown")
    assert not second.trained and pretrained.TRAININGS["glove-brown"] == trainings + 1  # nothing trained
    first_state, second_state = _state(first.model), _state(second.model)
    assert first_state.keys() == second_state.keys()
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert first.vocab.words == second.vocab.words and second.result.history == history
    assert second.metrics == first.metrics

    third = pretrained.pretrained("glove-brown", retrain=True)
    assert third.trained and pretrained.TRAININGS["glove-brown"] == trainings + 2 and _entries(cache) == [first.key]


@pytest.mark.parametrize(
    "damage", ["flip a byte of the weights", "truncate the weights", "cut meta.json short", "drop a field of meta.json"]
)
def test_a_damaged_entry_is_detected_and_trained_again(cache, capsys, damage):
    first = pretrained.pretrained("char-gpt-shakespeare")
    weights, meta = first.path / "weights.safetensors", first.path / "meta.json"
    if damage == "flip a byte of the weights":
        content = bytearray(weights.read_bytes())
        content[-5] ^= 0xFF
        weights.write_bytes(bytes(content))
    elif damage == "truncate the weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "cut meta.json short":
        meta.write_text(meta.read_text()[:100])
    else:
        content = json.loads(meta.read_text())
        del content["summary"]
        meta.write_text(json.dumps(content))
    capsys.readouterr()
    trainings = pretrained.TRAININGS["char-gpt-shakespeare"]
    again = pretrained.pretrained("char-gpt-shakespeare")
    printed = capsys.readouterr().out
    assert "is damaged" in printed and "training it again" in printed, printed
    assert again.trained and pretrained.TRAININGS["char-gpt-shakespeare"] == trainings + 1
    assert _entries(cache) == [first.key]
    hit = pretrained.pretrained("char-gpt-shakespeare")  # the new entry is whole
    assert not hit.trained
    assert all(torch.equal(a, b) for a, b in zip(_state(hit.model).values(), _state(again.model).values()))


def test_char_gpt_shakespeare_is_chapter_6s_model_trained_by_the_one_loop(cache):
    from llmbook.models import GPT
    from llmbook.tokenizers import CharTokenizer

    first = pretrained.pretrained("char-gpt-shakespeare")
    assert first.trained and isinstance(first.model, GPT) and isinstance(first.tokenizer, CharTokenizer)
    size = pretrained.sizes("char-gpt-shakespeare", "smoke")
    assert first.model.config.n_embd == size["gpt"]["n_embd"] and first.model.config.vocab_size == 65
    assert first.result.steps == size["steps"] and first.result.stopped == "completed"
    history = first.result.history
    for key in ("step", "val_loss", "log_step", "loss", "lr", "tokens_per_second"):
        assert history[key], key
    assert 2.3 < first.result.final_val_loss < 3.6  # Chapter 6's expected range at the smoke budget
    assert first.metrics["final_val_loss"] == first.result.final_val_loss
    assert first.tokenizer.decode(first.tokenizer.encode("ROMEO:")) == "ROMEO:"

    second = pretrained.pretrained("char-gpt-shakespeare")
    assert not second.trained
    assert all(torch.equal(a, b) for a, b in zip(_state(first.model).values(), _state(second.model).values()))
    # the tied head stays tied after loading
    assert second.model.lm_head.weight.data_ptr() == second.model.token_embedding.weight.data_ptr()
    x = torch.tensor([first.tokenizer.encode("ROMEO:\nBut soft")], device=runtime.get_device())
    with torch.no_grad():
        torch.testing.assert_close(first.model(x)[0], second.model(x)[0], rtol=0, atol=0)
    assert second.result.history["val_loss"] == history["val_loss"]


_RACER = """
import hashlib, json, sys, time
from pathlib import Path
from llmbook import pretrained
# start together: each announces itself, then waits for the other (training takes seconds, so the two overlap)
folder = pretrained.cache_dir()
(folder / f"ready-{sys.argv[1]}").touch()
while len(list(folder.glob("ready-*"))) < 2:
    time.sleep(0.01)
got = pretrained.pretrained("char-gpt-shakespeare")
weights = (got.path / "weights.safetensors").read_bytes()
print(json.dumps({"trained": got.trained, "sha": hashlib.sha256(weights).hexdigest(), "vocab": got.tokenizer.vocab_size}))
"""


def test_two_processes_racing_for_the_same_entry_do_not_corrupt_it(cache):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "code"), "OMP_NUM_THREADS": "1"}
    cache.mkdir(parents=True)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(k)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for k in range(2)
    ]
    outputs = [racer.communicate(timeout=600) for racer in racers]
    for racer, (_out, err) in zip(racers, outputs):
        assert racer.returncode == 0, err[-2000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(r["trained"] for r in reports) == [False, True]  # the second waited for the first, then loaded
    assert reports[0]["sha"] == reports[1]["sha"] and reports[0]["vocab"] == reports[1]["vocab"]
    key = pretrained.cache_key("char-gpt-shakespeare", "smoke")
    assert _entries(cache) == [key]
    meta = json.loads((cache / key / "meta.json").read_text())
    assert meta["weights_sha256"] == reports[0]["sha"]
    hit = pretrained.pretrained("char-gpt-shakespeare")
    assert not hit.trained and all(torch.isfinite(t).all() for t in _state(hit.model).values())


def test_a_failure_while_writing_leaves_no_entry_and_no_temporary_folder(cache, monkeypatch):
    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    with pytest.raises(OSError, match="No space left"):
        pretrained.pretrained("char-gpt-shakespeare")
    assert _entries(cache) == []
    monkeypatch.undo()
    monkeypatch.setenv("LLMBOOK_CACHE_DIR", str(cache))
    monkeypatch.setenv("LLMBOOK_BUDGET", "smoke")
    assert pretrained.pretrained("char-gpt-shakespeare").trained and len(_entries(cache)) == 1
