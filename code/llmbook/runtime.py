"""Where the code runs and how big each chapter's experiments are.

Used by every chapter: :func:`get_device` picks the accelerator, :func:`budget`
picks the size of every experiment (``smoke`` for tests, ``cpu`` for a laptop,
``gpu`` for a Colab T4 or better), :func:`autocast` turns on mixed precision
where the hardware supports it, :func:`peak_flops` gives the denominator
of model-FLOPs utilisation (MFU) and :func:`eval_mode` runs a model in
evaluation mode for a moment.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "BUDGETS",
    "BudgetError",
    "get_device",
    "seed_everything",
    "budget",
    "pick",
    "amp_dtype",
    "autocast",
    "peak_flops",
    "measure_peak_flops",
    "eval_mode",
    "training_flops_per_token",
    "stop_after_step_on_ctrl_c",
    "describe",
]

BUDGETS = ("smoke", "cpu", "gpu")

T = TypeVar("T")


class BudgetError(ValueError):
    """An unknown budget name, or a size table that lacks the current budget."""


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    The environment variable ``LLMBOOK_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``) overrides the choice, e.g. to run a GPU machine's chapter on the CPU.
    """
    requested = os.environ.get("LLMBOOK_DEVICE", "").strip()
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as error:
            raise ValueError(
                f"LLMBOOK_DEVICE={requested!r} is not a device PyTorch knows; "
                "use cpu, cuda, cuda:N or mps, or unset it to pick automatically"
            ) from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"LLMBOOK_DEVICE={requested!r} but this PyTorch sees no CUDA GPU; unset it or use cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"LLMBOOK_DEVICE={requested!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"numbered from 0; use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"LLMBOOK_DEVICE={requested!r} but MPS is not available here; unset it or use cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so that a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too


def budget() -> str:
    """The size of every experiment: ``"smoke"``, ``"cpu"`` or ``"gpu"``.

    ``LLMBOOK_BUDGET`` overrides; otherwise ``gpu`` when a CUDA GPU is present,
    else ``cpu``. ``smoke`` is what the tests use: seconds per chapter.
    """
    requested = os.environ.get("LLMBOOK_BUDGET", "").strip().lower()
    if requested:
        if requested not in BUDGETS:
            raise BudgetError(
                f"LLMBOOK_BUDGET={requested!r} is not a budget; choose one of {', '.join(BUDGETS)} "
                "(or unset it: gpu when CUDA is present, else cpu)"
            )
        return requested
    return "gpu" if torch.cuda.is_available() else "cpu"


def pick(table: Mapping[str, T], name: str | None = None) -> T:
    """The entry of a per-budget size table for the current budget.

    >>> pick({"smoke": 1, "cpu": 10, "gpu": 100}, "cpu")
    10
    """
    name = budget() if name is None else name
    if name not in table:
        raise BudgetError(f"this size table has no entry for budget {name!r}; it has {sorted(table)}")
    return table[name]


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The low-precision dtype autocast should use on ``device``, or None
    for full fp32.

    bf16 on GPUs that support it (Ampere and newer), fp16 on older GPUs such
    as Colab's T4 (which then need loss scaling), none on CPU and MPS.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _ = torch.cuda.get_device_capability(index)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """A mixed-precision context for ``device``: bf16 or fp16 on CUDA, nothing elsewhere."""
    device = torch.device(device)
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# Peak dense (no sparsity) tensor-core throughput in FLOP/s, bf16 where the chip
# has it, fp16 otherwise. Sources: NVIDIA data sheets (T4, A10, A100, L4, L40S, H100, H200).
# The first key contained in the device name wins, so longer names come before their prefixes
# ("H100 PCIe" before "H100", "A100" before "A10", "L40S" before "L4").
_GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10": 125e12,
    "T4": 65e12,  # fp16; the T4 has no bf16
}


def peak_flops(device: torch.device | str | None = None) -> float:
    """Peak dense FLOP/s of ``device``, the denominator of MFU.

    For a known GPU the data-sheet figure for bf16 (fp16 on the T4) tensor
    cores. For the CPU, Apple's MPS and an unknown GPU there is no data sheet
    to trust, so the peak is *measured*: :func:`measure_peak_flops` times a
    large matrix multiply (fp32 on the CPU and MPS, bf16 on a GPU), the
    best case of dense arithmetic on that hardware with the current threads.
    """
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in _GPU_PEAK_FLOPS.items():
            if key in name:
                return flops
    return measure_peak_flops(device)


_MEASURED_PEAKS: dict[tuple[str, int], float] = {}


def measure_peak_flops(device: torch.device | str | None = None, size: int | None = None, repeats: int = 3) -> float:
    """FLOP/s of the fastest of ``repeats`` timed ``size`` x ``size`` matrix multiplies on ``device``.

    A matrix multiply of two n x n matrices takes 2 n^3 FLOPs (a multiply and
    an add per term). fp32 on the CPU and MPS, bf16 on CUDA; ``size`` defaults
    to 1024 on the CPU and 4096 elsewhere. The result is cached per process,
    device and thread count: measuring takes a fraction of a second on two CPU
    cores (where it finds roughly 300 GFLOP/s). On a busy machine the
    measurement, like every timing, comes out low.
    """
    device = torch.device(device) if device is not None else get_device()
    key = (str(device), torch.get_num_threads())
    if key not in _MEASURED_PEAKS:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        size = size or (1024 if device.type == "cpu" else 4096)
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator).to(device, dtype)
        b = torch.randn(size, size, generator=generator).to(device, dtype)
        best = float("inf")
        for _ in range(repeats + 1):  # the first call warms up caches and kernels
            _synchronize(device)
            start = time.perf_counter()
            a @ b
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
        _MEASURED_PEAKS[key] = 2.0 * size**3 / best
    return _MEASURED_PEAKS[key]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Run ``model`` in evaluation mode (no dropout) without gradients, then restore its previous mode.

    >>> layer = torch.nn.Dropout(0.5)
    >>> with eval_mode(layer):
    ...     layer.training
    False
    >>> layer.training
    True
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def training_flops_per_token(model: torch.nn.Module, context: int) -> float:
    """FLOPs of one forward and backward pass per token with ``context`` tokens of context: MFU's numerator.

    From ``model.flops_per_token(context, training=True)`` when the model has
    it (Chapter 5's GPT and BERT); otherwise the 6N rule: 6 FLOPs per
    parameter per token (2 forward, 4 backward).
    """
    if hasattr(model, "flops_per_token"):
        import inspect

        parameters = inspect.signature(model.flops_per_token).parameters
        kwargs = {"context": context} if "context" in parameters else {}
        if "training" in parameters:
            kwargs["training"] = True
        return float(model.flops_per_token(**kwargs))
    return 6.0 * sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def stop_after_step_on_ctrl_c():
    """Turn the first Ctrl-C (SIGINT) into a request: yields a :class:`threading.Event` that it sets.

    A training loop checks the event between steps, so it stops at a step
    boundary, never half-way through an optimizer update. A second Ctrl-C
    raises :class:`KeyboardInterrupt` as usual. Outside the main thread
    (where signals cannot be caught) the event is never set.
    """
    import signal
    import threading

    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.getsignal(signal.SIGINT)

    def request_stop(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def describe() -> str:
    """One line for the top of a chapter: budget, device and library versions."""
    device = get_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"budget: {budget()} | device: {name} | torch {torch.__version__} | threads: {torch.get_num_threads()}"
