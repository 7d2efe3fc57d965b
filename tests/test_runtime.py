"""Specification of llmbook.runtime: budgets, size tables, device choice, mixed precision, peak FLOP/s."""

import re

import pytest
import torch

from llmbook import runtime


@pytest.fixture
def no_env(monkeypatch):
    """Neither LLMBOOK_BUDGET nor LLMBOOK_DEVICE set."""
    monkeypatch.delenv("LLMBOOK_BUDGET", raising=False)
    monkeypatch.delenv("LLMBOOK_DEVICE", raising=False)


# --- budget() and pick() --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", " CPU ", "Smoke"])
def test_budget_reads_the_environment_case_and_space_insensitively(monkeypatch, name):
    monkeypatch.setenv("LLMBOOK_BUDGET", name)
    assert runtime.budget() == name.strip().lower()


@pytest.mark.parametrize("name", ["fast", "small", "smoke-test", "0"])
def test_unknown_budget_is_an_error_that_lists_the_budgets(monkeypatch, name):
    monkeypatch.setenv("LLMBOOK_BUDGET", name)
    with pytest.raises(runtime.BudgetError, match=r"smoke, cpu, gpu") as raised:
        runtime.budget()
    assert repr(name) in str(raised.value)
    assert isinstance(raised.value, ValueError)  # callers may catch ValueError


def test_default_budget_is_cpu_without_cuda_and_gpu_with_it(no_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.budget() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.budget() == "gpu"


def test_empty_budget_variable_means_the_default(no_env, monkeypatch):
    monkeypatch.setenv("LLMBOOK_BUDGET", "  ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.budget() == "cpu"


def test_pick_returns_the_entry_of_the_current_budget(monkeypatch):
    table = {"smoke": 1, "cpu": 10, "gpu": 100}
    for name, expected in table.items():
        monkeypatch.setenv("LLMBOOK_BUDGET", name)
        assert runtime.pick(table) == expected
    assert runtime.pick(table, "gpu") == 100  # an explicit name wins over the environment


def test_pick_names_the_missing_budget_and_the_ones_the_table_has(monkeypatch):
    monkeypatch.setenv("LLMBOOK_BUDGET", "gpu")
    with pytest.raises(runtime.BudgetError, match=r"'gpu'.*\['cpu', 'smoke'\]"):
        runtime.pick({"smoke": 1, "cpu": 2})


def test_pick_returns_the_same_object_not_a_copy(monkeypatch):
    monkeypatch.setenv("LLMBOOK_BUDGET", "smoke")
    sizes = {"n_layer": 1}
    assert runtime.pick({"smoke": sizes, "cpu": {}, "gpu": {}}) is sizes


# --- get_device() ------------------------------------------------------------------------------


def test_device_is_cpu_when_no_accelerator_is_present(no_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.get_device() == torch.device("cpu")


def test_device_prefers_cuda_then_mps(no_env, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_device() == torch.device("cuda")


def test_llmbook_device_overrides_the_automatic_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LLMBOOK_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")


def test_llmbook_device_accepts_an_existing_cuda_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LLMBOOK_DEVICE", "cuda:1")
    assert runtime.get_device() == torch.device("cuda", 1)


def test_llmbook_device_with_a_cuda_index_past_the_last_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LLMBOOK_DEVICE", "cuda:3")
    with pytest.raises(ValueError, match=r"1 CUDA GPU.*cuda:0"):
        runtime.get_device()


def test_llmbook_device_that_pytorch_does_not_know_is_an_error_that_lists_the_choices(monkeypatch):
    monkeypatch.setenv("LLMBOOK_DEVICE", "gpu0")
    with pytest.raises(ValueError, match=r"'gpu0'.*cpu, cuda, cuda:N or mps"):
        runtime.get_device()


def test_llmbook_device_cuda_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LLMBOOK_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"no CUDA GPU"):
        runtime.get_device()


def test_llmbook_device_mps_without_mps_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("LLMBOOK_DEVICE", "mps")
    with pytest.raises(ValueError, match=r"MPS is not available"):
        runtime.get_device()


# --- mixed precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "mps"])
def test_amp_dtype_is_full_precision_off_cuda(device):
    assert runtime.amp_dtype(device) is None


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)]
)
def test_amp_dtype_is_bf16_from_ampere_and_fp16_before(monkeypatch, capability, expected):
    """A T4 (compute capability 7.5) has no bf16; an A100 (8.0) and an H100 (9.0) do."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert runtime.amp_dtype("cuda") == expected
    assert runtime.amp_dtype("cuda:0") == expected


def test_autocast_is_a_no_op_on_cpu():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with runtime.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
        y = layer(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, layer(x), rtol=0, atol=0)


# --- peak_flops() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_name", "expected"),
    [
        ("Tesla T4", 65e12),
        ("NVIDIA A10G", 125e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
    ],
)
def test_peak_flops_of_a_gpu_comes_from_its_data_sheet(monkeypatch, device_name, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: device_name)
    assert runtime.peak_flops(torch.device("cuda")) == expected


def test_peak_flops_of_an_unknown_gpu_is_measured(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Future GPU 9000")
    monkeypatch.setattr(runtime, "measure_peak_flops", lambda device: 42e12)
    assert runtime.peak_flops(torch.device("cuda")) == 42e12


def test_peak_flops_of_the_cpu_is_a_measured_matmul_rate_cached_per_process(monkeypatch):
    runtime._MEASURED_PEAKS.clear()
    calls = []
    real_perf_counter = runtime.time.perf_counter
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: calls.append(1) or real_perf_counter())
    measured = runtime.peak_flops("cpu")
    assert 1e9 < measured < 1e13  # a few to a few hundred GFLOP/s per core, whatever the load
    timings = len(calls)
    assert runtime.measure_peak_flops("cpu") == measured and len(calls) == timings  # cached: no new timing
    runtime._MEASURED_PEAKS[("cpu", torch.get_num_threads())] = 123e9
    assert runtime.peak_flops("cpu") == 123e9


def test_eval_mode_turns_dropout_and_gradients_off_and_restores_the_mode():
    layer = torch.nn.Dropout(0.5)
    with runtime.eval_mode(layer):
        assert not layer.training and not torch.is_grad_enabled()
    assert layer.training and torch.is_grad_enabled()
    layer.eval()
    with pytest.raises(RuntimeError):
        with runtime.eval_mode(layer):
            raise RuntimeError("boom")
    assert not layer.training


# --- describe() and seed_everything() --------------------------------------------------------------


def test_describe_names_budget_device_torch_version_and_threads(monkeypatch):
    monkeypatch.setenv("LLMBOOK_BUDGET", "smoke")
    monkeypatch.setenv("LLMBOOK_DEVICE", "cpu")
    line = runtime.describe()
    assert line.startswith("budget: smoke | device: cpu | torch ")
    assert torch.__version__ in line
    assert re.search(rf"threads: {torch.get_num_threads()}$", line)


def test_describe_reports_a_bad_budget_instead_of_hiding_it(monkeypatch):
    monkeypatch.setenv("LLMBOOK_BUDGET", "huge")
    with pytest.raises(runtime.BudgetError):
        runtime.describe()


def test_seed_everything_makes_runs_repeat():
    import random

    import numpy as np

    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    runtime.seed_everything(123)
    first = draw()
    runtime.seed_everything(123)
    assert draw() == first
    runtime.seed_everything(124)
    assert draw() != first


BASE_MODULES = ("runtime", "data", "checkpoint", "validate")
CHAPTER_MODULES = ("ngram", "tokenizers", "glove", "attention", "models", "train", "optim", "generate", "rnn", "viz")


@pytest.mark.parametrize("base", BASE_MODULES)
def test_base_modules_import_no_chapter_module(base):
    """runtime, data, checkpoint and validate sit below the chapters: importing one loads no chapter's code."""
    import subprocess
    import sys

    code = f"import sys, llmbook.{base}; print(','.join(sorted(m for m in sys.modules if m.startswith('llmbook.'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    chapters = [name for name in loaded.split(",") if name.split(".")[1] in CHAPTER_MODULES or "exercises" in name]
    assert not chapters, f"importing llmbook.{base} also imports {chapters}"
