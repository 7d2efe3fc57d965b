"""llmbook.budget: every chapter's gpu budget fits Colab's free T4 in 10 minutes, by arithmetic, and says so."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from llmbook import budget, pretrained
from llmbook.instructor.colab import toc_documents
from llmbook.models import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [
    (document, number)
    for document, number in toc_documents(ROOT / "_toc.yml")
    if number is not None and (ROOT / f"{document}.ipynb").is_file()
]


def _cells(document):
    notebook = json.loads((ROOT / f"{document}.ipynb").read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c["source"])) for c in notebook["cells"]]


def gpu_sizes(document) -> dict:
    """The chapter's SIZES["gpu"], merged with the library's shared sizes as the chapter merges them."""
    for kind, source in _cells(document):
        if kind != "code" or "SIZES = {" not in source:
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SIZES":
                table = eval(compile(ast.Expression(node.value), document, "eval"), {"dict": dict})  # literals only
                # `**pretrained.sizes(name)` merges a model's sizes at the top (Chapter 6);
                # `"key": pretrained.sizes(name)` puts them under their own key (Chapter 9).
                shared = {}
                for key, name in re.findall(r'(?:"(\w+)":\s*)?pretrained\.sizes\("([\w-]+)"\)', source):
                    shared |= {key: pretrained.sizes(name, "gpu")} if key else pretrained.sizes(name, "gpu")
                return {**shared, **table["gpu"]}
    # A chapter without a SIZES table runs the same at every budget; it must then list no run.
    assert not budget.chapter_runs(int(Path(document).name[:2]), {}), (
        f"{document}: no SIZES table (CONTRIBUTING.md, 'A chapter notebook')"
    )
    return {}


@pytest.mark.parametrize(("document", "number"), CHAPTERS, ids=[d for d, _ in CHAPTERS])
def test_every_chapter_fits_a_t4_in_ten_minutes_at_the_gpu_budget(document, number):
    runs = budget.chapter_runs(number, gpu_sizes(document))
    minutes = budget.minutes_on_t4(runs)
    detail = ", ".join(f"{run.name} {run.seconds_on_t4() / 60:.1f} min" for run in runs)
    print(f"{document}: {minutes:.1f} min on a T4 at 15% of its peak ({detail})")
    assert minutes <= budget.LIMIT_MINUTES, (
        f"{document} needs {minutes:.1f} minutes on a T4 at 15% of its peak ({detail}); "
        f"shrink its gpu sizes to fit {budget.LIMIT_MINUTES}"
    )


@pytest.mark.parametrize(("document", "number"), CHAPTERS, ids=[d for d, _ in CHAPTERS])
def test_every_chapter_states_its_t4_estimate(document, number):
    cells = _cells(document)
    assert any(
        kind == "code"
        and re.search(rf"budget\.chapter_runs\(\s*{number}\s*,", source)
        and 'glue("t4_estimate"' in source
        for kind, source in cells
    ), f"{document}: no cell computes budget.chapter_runs({number}, ...) and glues t4_estimate"
    assert any(kind == "markdown" and "{glue:text}`t4_estimate`" in source for kind, source in cells), (
        f"{document}: no sentence states the T4 estimate ({{glue:text}}`t4_estimate`)"
    )


def test_a_training_run_counts_training_and_evaluation_flops():
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32))
    run = budget.training_run("gpt", model, steps=10, batch_size=4, eval_interval=5, eval_steps=3)
    train = model.flops_per_token() * 10 * 4 * 16
    evaluation = model.flops_per_token(training=False) * 3 * (3 * 4 * 16 * 2)  # at 0, 5, 10; both splits
    assert run.flops == train + evaluation
    assert budget.training_run("gpt", model, steps=10, batch_size=4).flops == train
    on_meta = budget._gpt(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    assert on_meta.flops_per_token() == model.flops_per_token()
    assert next(on_meta.parameters()).device == torch.device("meta")


def test_minutes_follow_the_t4_peak_and_wall_time_budgets_count_as_they_are():
    flops = budget.Run("compute", flops=budget.T4_PEAK_FLOPS * 0.15 * 60)  # one minute at 15%
    timed = budget.timed_run("stopped by its time limit", 120)
    assert budget.minutes_on_t4([flops]) == pytest.approx(1.0)
    assert budget.minutes_on_t4([flops], utilisation=0.30) == pytest.approx(0.5)
    assert budget.minutes_on_t4([flops, timed]) == pytest.approx(3.0)
    assert budget.minutes_on_t4([flops, timed], utilisation=0.30) == pytest.approx(2.5)
    assert budget.t4_estimate([flops, timed]) == "about 3.0 minutes"


def test_chapter_six_was_resized_from_about_13_minutes_at_30_percent():
    """The issue's arithmetic: the old gpu sizes (5000 GPT steps, 2000 BERT, 3000 Tang) need ~13 min even at 30%."""
    old = gpu_sizes("book/06_training") | {
        "steps": 5000,
        "eval_interval": 250,
        "eval_steps": 50,
        "bert_steps": 2000,
        "tang_steps": 3000,
    }
    assert 12.5 < budget.minutes_on_t4(budget.chapter_runs(6, old), utilisation=0.30) < 14.5
    assert budget.minutes_on_t4(budget.chapter_runs(6, gpu_sizes("book/06_training"))) <= budget.LIMIT_MINUTES


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "fast"])
def test_a_bad_utilisation_is_refused_with_its_value(bad):
    with pytest.raises((ValueError, TypeError), match="utilisation"):
        budget.seconds_on_t4([], utilisation=bad)


def test_a_chapter_without_runs_is_named_with_the_fix():
    with pytest.raises(KeyError, match="chapter 42 has no runs in llmbook.budget.CHAPTER_RUNS"):
        budget.chapter_runs(42, {})


def test_chapter_nine_counts_its_base_model_under_the_key_it_merges_it_at():
    sizes = gpu_sizes("book/09_assistant")
    assert sizes["base"] == pretrained.sizes("byte-llama-base", "gpu")
    runs = {run.name: run for run in budget.chapter_runs(9, sizes)}
    base = runs["base model pre-training"]
    config = sizes["base"]
    tokens = config["steps"] * config["batch_size"] * config["gpt"]["block_size"]
    assert base.flops > 6 * 3_000_000 * tokens  # a few million parameters, trained on every token
    # generation is counted per call as well as per FLOP
    assert runs["exact-match generation"].seconds > 0


def test_chapter_seven_counts_the_flops_it_plans_for_its_grid():
    from llmbook import scaling

    sizes = gpu_sizes("book/07_scaling")
    (run,) = budget.chapter_runs(7, sizes)
    assert run.flops == scaling.planned_flops(sizes, budget.SHAKESPEARE_VOCAB)
    # the meta-device arithmetic equals that of real models
    config = scaling.grid_shape(*sizes["shapes"][0], budget.SHAKESPEARE_VOCAB, sizes["block_size"])
    one = dict(sizes, shapes=[sizes["shapes"][0]] * 3, data_tokens=[0])
    real = GPT(config).flops_per_token(sizes["block_size"])
    window = max(sizes["batch_size"], 32) * sizes["block_size"]
    evals = (2 * sizes["evals"] * sizes["eval_steps"] + 2 + sizes["final_eval_batches"]) * window
    assert scaling.planned_flops(one, budget.SHAKESPEARE_VOCAB) == pytest.approx(
        5 * real * sizes["tokens"] + 3 * real * 2 * evals / 3
    )


def test_uncached_generation_reads_its_window_at_every_step():
    assert budget.window_tokens(prompt=1, new=4, window=100) == 1 + 2 + 3 + 4
    assert budget.window_tokens(prompt=5, new=3, window=4) == 3 * 4
    model = budget._gpt(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    run = budget.decoding_run("greedy", model, calls=10, tokens=40)
    assert run.flops == model.flops_per_token(training=False) * 40
    assert run.seconds == pytest.approx(10 * 2 * budget.CALL_SECONDS_PER_LAYER)
