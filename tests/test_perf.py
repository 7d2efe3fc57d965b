"""The fast paths and the benchmark tooling: torch.compile, bf16 autocast and fused AdamW on the CPU,
the character GPT benchmark's figures, the chapters as plain Python, and ``gpu_check.sh --dry-run``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmbook.models import GPT, GPTConfig
from llmbook.train import TokenBatcher, TrainConfig, configure_optimizer, train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import chapter_shims  # noqa: E402 (benchmarks/ is put on the path just above)
import run_chapters  # noqa: E402
import train_char_gpt  # noqa: E402

TINY = {"vocab_size": 11, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0, "bias": False}


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**TINY))


def tiny_batch(seed: int = 0, batch: int = 4):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(TINY["vocab_size"], (batch, TINY["block_size"]), generator=generator)
    return x, torch.roll(x, -1, dims=1)


def repeating_batcher() -> TokenBatcher:
    """A learnable stream: 0 1 2 ... 10 0 1 2 ...; the loss can fall far below log(11)."""
    ids = torch.arange(3000) % TINY["vocab_size"]
    return TokenBatcher(ids[:2500], ids[2500:], block_size=TINY["block_size"])


# --------------------------------------------------------------------------- fast paths on the CPU


def _cpp_compiler() -> str | None:
    return next((shutil.which(name) for name in ("c++", "g++", "clang++") if shutil.which(name)), None)


@pytest.mark.skipif(
    _cpp_compiler() is None, reason="torch.compile's inductor back end needs a C++ compiler (none on PATH)"
)
def test_compiled_gpt_matches_eager_forward_and_gradients():
    torch._dynamo.reset()
    eager = tiny_model()
    compiled_copy = tiny_model()
    compiled = torch.compile(compiled_copy, backend="inductor")
    x, y = tiny_batch()
    _, loss_eager = eager(x, y)
    _, loss_compiled = compiled(x, y)
    assert torch.allclose(loss_eager, loss_compiled, atol=1e-5), (loss_eager, loss_compiled)
    loss_eager.backward()
    loss_compiled.backward()
    for (name, p), q in zip(eager.named_parameters(), compiled_copy.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.skipif(
    _cpp_compiler() is None, reason="torch.compile's inductor back end needs a C++ compiler (none on PATH)"
)
def test_the_book_loop_trains_a_compiled_model():
    torch._dynamo.reset()
    model = tiny_model()
    settings = {
        "max_steps": 30,
        "batch_size": 8,
        "lr": 3e-3,
        "warmup_steps": 5,
        "eval_interval": 30,
        "eval_steps": 2,
        "progress": False,
        "seed": 0,
    }
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if "compile" in fields:  # the loop compiles the model itself
        result = train(model, repeating_batcher(), TrainConfig(**settings, compile=True), device="cpu")
    else:
        runnable = torch.compile(model, backend="inductor")
        runnable.config = model.config
        result = train(runnable, repeating_batcher(), TrainConfig(**settings), device="cpu")
    first, last = result.history["val_loss"][0], result.history["val_loss"][-1]
    assert math.isfinite(last) and last < 0.7 * first, (first, last)


def test_bf16_autocast_on_the_cpu_stays_close_to_fp32_and_trains():
    model = tiny_model()
    x, y = tiny_batch()
    with torch.no_grad():
        _, loss32 = model(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits16, loss16 = model(x, y)
    assert logits16.dtype == torch.bfloat16  # the matrix multiplies ran in bf16
    assert loss16.dtype == torch.float32  # the loss is computed from float logits
    assert abs(float(loss16) - float(loss32)) < 0.02, (float(loss16), float(loss32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batcher, generator = repeating_batcher(), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        xb, yb = batcher.get_batch("train", 8, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(xb, yb)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], (losses[0], losses[-1])


def test_fused_adamw_on_the_cpu_takes_the_same_steps_as_the_reference():
    models = [tiny_model(), tiny_model()]
    config = TrainConfig(max_steps=1, batch_size=4, lr=1e-2, weight_decay=0.1)
    optimizers = []
    for model, fused in zip(models, (False, True)):
        groups = configure_optimizer(model, config, "cpu").param_groups
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups]
        optimizers.append(torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, foreach=False, fused=fused))
    for step in range(5):
        x, y = tiny_batch(step)
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            model(x, y)[1].backward()
            optimizer.step()
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert not torch.equal(models[0].token_embedding.weight, tiny_model().token_embedding.weight)  # they moved


def test_decay_applies_to_matrices_and_embeddings_only():
    model = tiny_model()
    decay, no_decay = configure_optimizer(model, TrainConfig(max_steps=1, batch_size=1), "cpu").param_groups[:2]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


def test_residual_projections_start_smaller_with_depth():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=8, n_head=4, n_embd=256))
    expected = 0.02 / math.sqrt(2 * 8)
    for block in model.blocks:
        assert abs(float(block.attn.out_proj.weight.detach().std()) - expected) < 0.1 * expected
        assert abs(float(block.mlp.proj.weight.detach().std()) - expected) < 0.1 * expected
        assert abs(float(block.mlp.fc.weight.detach().std()) - 0.02) < 0.002
    assert abs(float(model.token_embedding.weight.detach().std()) - 0.02) < 0.002


# --------------------------------------------------------------------------- the benchmark


def test_time_to_target_is_the_first_evaluation_at_or_below_it():
    history = {"val_loss": [4.0, 2.5, 1.9, 1.95, 1.8], "seconds": [0.0, 10.0, 20.0, 30.0, 40.0]}
    assert train_char_gpt.time_to_target(history, 1.9) == 20.0
    assert train_char_gpt.time_to_target(history, 1.85) == 40.0
    assert train_char_gpt.time_to_target(history, 1.0) is None


def test_benchmark_figures_are_consistent(tmp_path):
    out = tmp_path / "figures.json"
    summary = train_char_gpt.main(
        [
            "--steps",
            "12",
            "--eval-steps",
            "2",
            "--eval-batches",
            "3",
            "--seeds",
            "1",
            "2",
            "--threads",
            "1",
            "--target",
            "10",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["seeds"] == [1, 2]
    assert len(summary["runs"]) == 2
    for run in summary["runs"]:
        assert run["tokens"] == 12 * 12 * 64
        assert run["tokens_per_second"] == pytest.approx(run["tokens"] / run["training_seconds"])
        assert 0 < run["training_seconds"] < run["wall_seconds"]
        assert 2.5 < run["val_loss"] < 4.3  # barely trained: close to log(65) = 4.17
        assert run["time_to_target"] == 0.0  # the loss before training is already below 10
    assert summary["runs"][0]["val_loss"] != summary["runs"][1]["val_loss"]  # the seeds differ
    assert summary["val_loss_sd"] > 0
    flops = summary["runs"][0]["flops_per_token"]
    assert summary["mfu"] == pytest.approx(summary["tokens_per_second"] * flops / summary["peak_flops"])
    assert 0 < summary["mfu"] < 1 and 0 < summary["mfu_vs_measured_matmul"] < 1
    assert summary["peak_memory_mb"] > 50


def test_measured_matmul_flops_is_plausible():
    flops = train_char_gpt.measured_matmul_flops(torch.device("cpu"), size=256, repeats=3)
    assert 1e8 < flops < 1e14


# --------------------------------------------------------------------------- chapters as plain Python


def _write_notebook(path: Path, cells: list[dict]) -> None:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")


def test_notebook_source_keeps_code_cells_and_drops_the_colab_cell(tmp_path):
    notebook = tmp_path / "01_demo.ipynb"
    _write_notebook(
        notebook,
        [
            {"cell_type": "code", "metadata": {"tags": ["remove-cell"]}, "source": ["import google.colab\n"]},
            {"cell_type": "markdown", "metadata": {}, "source": ["# title"]},
            {"cell_type": "code", "metadata": {}, "source": ["x = 1\n", "%timeit x + 1\n"]},
            {"cell_type": "code", "metadata": {}, "source": "print(x + 1)"},
        ],
    )
    source = run_chapters.notebook_source(notebook)
    assert "google.colab" not in source and "# title" not in source
    assert "# (magic) %timeit x + 1" in source
    assert source.index("x = 1") < source.index("print(x + 1)")
    script = run_chapters.build_script(notebook, tmp_path / "out")
    assert run_chapters.check_script(script) == []
    result = run_chapters.run_script(script, "smoke", 120, tmp_path / "demo.log")
    assert result["status"] == "ok" and result["tail"][-1] == "2", result


def test_check_script_names_missing_modules_and_data(tmp_path, monkeypatch):
    notebook = tmp_path / "02_demo.ipynb"
    _write_notebook(
        notebook,
        [
            {
                "cell_type": "code",
                "metadata": {},
                "source": "import no_such_module_xyz\nfrom llmbook.data import load_text\nload_text('x')",
            }
        ],
    )
    monkeypatch.setenv("LLMBOOK_DATA_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setenv("LLMBOOK_DATA_DIR", str(tmp_path / "cache"))
    problems = run_chapters.check_script(run_chapters.build_script(notebook, tmp_path / "out"))
    assert any("no_such_module_xyz" in p for p in problems)
    assert any("tinyshakespeare.txt" in p for p in problems)


def test_widget_and_display_stand_ins(tmp_path):
    widgets = chapter_shims._ipywidgets_stub()
    calls = []
    controls = widgets.interactive(
        lambda query, temperature: calls.append((query, temperature)) or "drawn",
        query=widgets.Dropdown(options=[("a", 0), ("b", 1)], value=1),
        temperature=widgets.FloatLogSlider(value=0.5, base=10),
    )
    assert calls == [(1, 0.5)] and controls.value == "drawn"
    ipython = chapter_shims._ipython_stub(tmp_path)

    class View:
        def _repr_html_(self):
            return "<div>view</div>"

    ipython.display.display(View(), ipython.display.Markdown("**hi**"))
    assert (tmp_path / "display_001.html").read_text() == "<div>view</div>"


def test_a_chapter_runs_as_plain_python_at_smoke_budget(tmp_path):
    status = run_chapters.main(
        [
            "--budget",
            "smoke",
            "--only",
            "04",
            "--out",
            str(tmp_path),
            "--timeout",
            "300",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    results = json.loads((tmp_path / "r.json").read_text())
    assert status == 0, results
    assert list(results) == ["04_attention"] and results["04_attention"]["status"] == "ok"
    assert list(tmp_path.glob("04_attention_fig*.png")), "plt.show() should have saved the chapter's figures"


# --------------------------------------------------------------------------- the GPU day's command


def test_gpu_check_dry_run_resolves_every_step_without_training(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "check"), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "code"), os.environ.get("PYTHONPATH")]))
    process = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    for expected in (
        "== 1. device",
        "== 2. packages",
        "dry run, seed 1337",
        "== 4. chapters",
        "== 5. summary",
        "| torch |",
    ):
        assert expected in output, expected
    if shutil.which("nvidia-smi") is None:
        assert "nvidia-smi: not found" in output
    chapters = json.loads((tmp_path / "check" / "chapters.json").read_text())
    assert len(chapters) >= 6
    assert all(entry["status"] in ("ready", "skipped (--skip)") for entry in chapters.values()), chapters
    assert not (tmp_path / "check" / "benchmark.log").read_text().count("tokens/s")  # nothing trained


def test_every_prepared_wheel_is_known_to_gpu_check():
    """prepare_gpu_wheels.sh downloads exactly the packages gpu_check.sh knows how to look for."""
    import re

    prepare = (ROOT / "benchmarks" / "prepare_gpu_wheels.sh").read_text()
    check = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    pinned = re.findall(r"([A-Za-z][\w.-]*)==[\d.]+", prepare.split("PACKAGES=(")[1].split(")")[0])
    wheel_prefixes = {name.lower().replace("-", "_") for name in pinned}  # wheel files use underscores
    known = set(re.findall(r"\[(\w+)\]=", check.split("declare -A MODULE=(")[1].split(")")[0]))
    assert wheel_prefixes == known, wheel_prefixes ^ known
    assert "torch" not in wheel_prefixes  # the GPU machine brings its own


def test_the_gpt_compiles_to_one_graph_without_breaks():
    """The input checks step aside while torch.compile traces, so the whole forward is one graph (no host sync)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    idx = torch.randint(11, (2, 8))
    explanation = torch._dynamo.explain(model)(idx, idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
