"""Character-level GPT on Tiny Shakespeare with the book's training loop (Chapter 6).

Two configurations, the published ones of nanoGPT (see benchmarks/README.md):

* ``--budget cpu``: 4 layers, 4 heads, 128 wide, context 64, batch 12,
  2000 iterations, dropout 0, lr 1e-3 (nanoGPT's README CPU line).
* ``--budget gpu``: 6 layers, 6 heads, 384 wide, context 256, batch 64,
  5000 iterations, dropout 0.2, lr 1e-3 (nanoGPT's shakespeare_char).

The model is the book's ``llmbook.models.GPT`` and the loop the book's
``llmbook.train.train``: this measures what the chapters run. For each seed it
prints and records:

* ``wall``: data loading, model building and training with its periodic
  evaluations (what nanoGPT's own run time covers);
* ``tokens/s``: all training tokens divided by all training time (the sum of
  the optimizer steps' times; evaluation excluded, warm-up steps included);
* ``MFU``: tokens/s x training FLOPs per token (``GPT.flops_per_token``)
  divided by a peak; two peaks are shown: ``runtime.peak_flops`` (a data-sheet
  figure on a GPU, an estimate on a CPU) and the FLOP/s of a large fp32 (CPU)
  or bf16 (GPU) matrix multiply measured in this process (the best that the
  machine's matrix library reaches here, so MFU against it is attainable);
* peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, the process's
  peak resident set (``ru_maxrss``) on the CPU;
* time to target: training seconds until the periodic validation estimate
  first reaches ``--target`` (default: 1.9075 on cpu, nanoGPT's mean; 1.47 on
  gpu), or "not reached";
* the final validation loss on ``--eval-batches`` random batches (default 200;
  a 20-batch estimate has a standard deviation of about 0.01), drawn from a
  generator of their own, after the wall clock has stopped.

With several ``--seeds`` the mean and standard deviation follow.

    python benchmarks/train_char_gpt.py --budget cpu --threads 2 --seeds 1337 1 2
    python benchmarks/train_char_gpt.py --budget gpu --compile

Figures measured with it are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import statistics
import sys
import time

import torch

from llmbook import data, runtime
from llmbook.models import GPT, GPTConfig
from llmbook.tokenizers import CharTokenizer
from llmbook.train import TokenBatcher, TrainConfig, evaluate, train

CONFIGS = {
    "cpu": dict(
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False),
        train=dict(
            max_steps=2000,
            batch_size=12,
            lr=1e-3,
            min_lr=1e-4,
            warmup_steps=100,
            betas=(0.9, 0.99),
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=250,
            eval_steps=20,
            log_interval=10,
        ),
        target=1.9075,
        reference="nanoGPT: val 1.9075 (mean of 3 seeds, 200 batches, SD 0.013) in 83.6 s wall on 2 idle cores",
    ),
    "gpu": dict(
        model=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
        train=dict(
            max_steps=5000,
            batch_size=64,
            lr=1e-3,
            min_lr=1e-4,
            warmup_steps=100,
            betas=(0.9, 0.99),
            weight_decay=0.1,
            grad_clip=1.0,
            eval_interval=250,
            eval_steps=200,
            log_interval=10,
        ),
        target=1.47,
        reference="nanoGPT: val 1.4697 in about 3 min on one A100",
    ),
}


def trainconfig_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def peak_source(device: torch.device) -> str:
    """Where ``runtime.peak_flops(device)`` comes from, in words, for the printed figures."""
    if device.type == "cuda" and any(key in torch.cuda.get_device_name(device) for key in runtime._GPU_PEAK_FLOPS):
        return "the GPU's data sheet (dense bf16, fp16 on a T4), via runtime.peak_flops"
    if hasattr(runtime, "measure_peak_flops"):
        return "a matrix multiply timed by runtime.measure_peak_flops"
    return "runtime.peak_flops's estimate: threads x 3 GHz x 32 fp32 FLOPs per cycle (two AVX2 FMA units)"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in kilobytes on Linux: the peak resident memory of the whole process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured_matmul_flops(device: torch.device, size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` square matrix multiplies on ``device``.

    fp32 on the CPU (bf16 there is slower than fp32 on most CPUs), bf16 on a
    GPU that has it, else fp16. 2·n³ FLOPs per multiply.
    """
    if device.type == "cuda":
        size = size or 8192
        dtype = runtime.amp_dtype(device) or torch.float32
    else:
        size = size or 1024
        dtype = torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: library initialisation, kernel selection
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class PinnedBatcher:
    """The book's TokenBatcher with its batches in pinned (page-locked) host memory.

    ``x.to("cuda", non_blocking=True)`` from pinned memory is a true
    asynchronous copy: the GPU need not wait for the host. On the CPU it is
    the plain batcher.
    """

    def __init__(self, batcher: TokenBatcher, pin: bool):
        self.batcher = batcher
        self.block_size = batcher.block_size
        self.pin = pin

    def get_batch(self, split, batch_size, generator=None):
        x, y = self.batcher.get_batch(split, batch_size, generator)
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y


def load_data(block_size: int):
    text = data.load_text("tinyshakespeare.txt")
    tokenizer = CharTokenizer.train(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    split = int(0.9 * len(ids))  # nanoGPT's split: the first 90% of the characters for training
    return tokenizer, TokenBatcher(ids[:split], ids[split:], block_size=block_size)


def time_to_target(history: dict, target: float) -> float | None:
    """Training seconds at the first periodic evaluation whose validation loss is <= ``target``."""
    for val, seconds in zip(history["val_loss"], history["seconds"]):
        if val <= target:
            return seconds
    return None


def run_one(args, chosen: dict, seed: int, device: torch.device) -> dict:
    wall_start = time.perf_counter()
    tokenizer, batcher = load_data(chosen["model"]["block_size"])
    runtime.seed_everything(seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **chosen["model"]))
    settings = dict(chosen["train"], seed=seed, progress=sys.stderr.isatty())
    if args.steps:
        settings["max_steps"] = args.steps
    if args.eval_steps:
        settings["eval_steps"] = args.eval_steps
    if args.max_seconds:
        settings["max_seconds"] = args.max_seconds
    fields = trainconfig_fields()
    # Options of the book's loop that newer versions of train.py have; used when present.
    compiled_by_loop = False
    if args.compile and "compile" in fields:
        settings["compile"] = True
        compiled_by_loop = True
    if "fused" in fields and args.fused is not None:
        settings["fused"] = args.fused
    if "amp" in fields:
        settings["amp"] = not args.no_amp
    config = TrainConfig(**settings)
    runnable = model
    if args.compile and not compiled_by_loop:
        runnable = torch.compile(model)
        runnable.config = model.config  # train() reads block_size and flops_per_token from the model
        runnable.flops_per_token = model.flops_per_token
    feeder = PinnedBatcher(batcher, pin=device.type == "cuda")
    if args.dry_run:  # everything resolved (data, model, options, device), nothing trained
        return {
            "seed": seed,
            "dry_run": True,
            "parameters": model.num_params(),
            "device": str(device),
            "train_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "betas"},
            "compile": "TrainConfig.compile" if compiled_by_loop else ("torch.compile" if args.compile else "off"),
            "amp": str(runtime.amp_dtype(device)) if device.type == "cuda" else "none (fp32 on the CPU)",
        }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = train(runnable, feeder, config, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - wall_start

    history = result.history
    block = chosen["model"]["block_size"]
    tokens = result.steps * config.batch_size * config.grad_accum_steps * block
    training_seconds = history["seconds"][-1]
    tokens_per_second = tokens / training_seconds
    flops_per_token = model.flops_per_token(context=block, training=True)

    # The steadier final estimate: many random validation batches from a generator of its own.
    eval_start = time.perf_counter()
    final = evaluate(
        model,
        batcher,
        args.eval_batches,
        config.eval_batch_size or config.batch_size,
        device,
        seed=10_000 + seed,
        splits=("val",),
    )["val"]
    eval_seconds = time.perf_counter() - eval_start
    target = args.target if args.target is not None else chosen["target"]
    return {
        "seed": seed,
        "steps": result.steps,
        "tokens": tokens,
        "training_seconds": training_seconds,
        "wall_seconds": wall,
        "tokens_per_second": tokens_per_second,
        "flops_per_token": flops_per_token,
        "peak_memory_mb": peak_memory_mb(device),
        "best_periodic_val": result.best_val_loss,
        "final_periodic_val": history["val_loss"][-1],
        "final_periodic_train": history["train_loss"][-1],
        "val_loss": final,
        "eval_batches": args.eval_batches,
        "eval_seconds": eval_seconds,
        "target": target,
        "time_to_target": time_to_target(history, target),
        "parameters": model.num_params(),
        "compiled": bool(args.compile),
        "options": {k: settings[k] for k in ("compile", "fused", "amp") if k in settings},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (e.g. 2 to compare with nanoGPT)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337], help="one run per seed (init and batches)")
    parser.add_argument("--steps", type=int, default=None, help="override the number of iterations")
    parser.add_argument("--eval-steps", type=int, default=None, help="override the batches of each periodic eval")
    parser.add_argument("--eval-batches", type=int, default=200, help="validation batches of the final estimate")
    parser.add_argument("--target", type=float, default=None, help="validation loss for time-to-target")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (GPU; CPU needs a C compiler)")
    parser.add_argument(
        "--fused",
        dest="fused",
        action="store_true",
        default=None,
        help="fused AdamW (when the book's TrainConfig has the option)",
    )
    parser.add_argument("--no-fused", dest="fused", action="store_false")
    parser.add_argument("--no-amp", action="store_true", help="fp32 even on a GPU with bf16/fp16")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop training after this many seconds of training (TrainConfig.max_seconds)",
    )
    parser.add_argument("--dry-run", action="store_true", help="load data and build the model; train nothing")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.eval_batches < 1:
        parser.error(f"--eval-batches must be >= 1, got {args.eval_batches}")

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = CONFIGS[args.budget]
    device = runtime.get_device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    print(runtime.describe(), flush=True)

    if args.dry_run:
        plan = [run_one(args, chosen, seed, device) for seed in args.seeds]
        for entry in plan:
            print(
                f"dry run, seed {entry['seed']}: {entry['parameters'] / 1e6:.2f} M parameters on {entry['device']}, "
                f"compile: {entry['compile']}, autocast: {entry['amp']}, "
                f"{entry['train_config']['max_steps']} steps of batch {entry['train_config']['batch_size']}"
            )
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"dry_run": True, "plan": plan}, handle, indent=1)
        return {"dry_run": True, "plan": plan}

    runs = []
    for seed in args.seeds:
        figures = run_one(args, chosen, seed, device)
        runs.append(figures)
        reached = figures["time_to_target"]
        print(
            f"seed {seed}: val {figures['val_loss']:.4f} ({figures['eval_batches']} batches; periodic "
            f"{figures['final_periodic_val']:.4f}, train {figures['final_periodic_train']:.4f}) | wall "
            f"{figures['wall_seconds']:.1f} s, training {figures['training_seconds']:.1f} s | "
            f"{figures['tokens_per_second']:,.0f} tokens/s | to {figures['target']}: "
            + (f"{reached:.1f} s" if reached is not None else "not reached"),
            flush=True,
        )

    peak_sheet = runtime.peak_flops(device)
    peak_measured = measured_matmul_flops(device)
    tokens_per_second = statistics.mean(r["tokens_per_second"] for r in runs)
    flops_per_token = runs[0]["flops_per_token"]
    losses = [r["val_loss"] for r in runs]
    summary = {
        "budget": args.budget,
        "device": runtime.describe(),
        "torch": torch.__version__,
        "parameters": runs[0]["parameters"],
        "seeds": args.seeds,
        "val_loss_mean": statistics.mean(losses),
        "val_loss_sd": statistics.stdev(losses) if len(losses) > 1 else float("nan"),
        "wall_seconds_mean": statistics.mean(r["wall_seconds"] for r in runs),
        "training_seconds_mean": statistics.mean(r["training_seconds"] for r in runs),
        "tokens_per_second": tokens_per_second,
        "peak_flops": peak_sheet,
        "peak_flops_source": peak_source(device),
        "mfu": tokens_per_second * flops_per_token / peak_sheet,
        "measured_matmul_flops": peak_measured,
        "mfu_vs_measured_matmul": tokens_per_second * flops_per_token / peak_measured,
        "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
        "runs": runs,
        "reference": chosen["reference"],
    }
    print(
        f"model: {summary['parameters'] / 1e6:.2f} M parameters, {runs[0]['steps']} steps, "
        f"{flops_per_token / 1e6:.2f} MFLOPs per training token"
    )
    print(f"tokens/s: {tokens_per_second:,.0f} (all training tokens / all training time)")
    print(
        f"MFU: {100 * summary['mfu']:.2f}% of {peak_sheet / 1e12:.3f} TFLOP/s ({summary['peak_flops_source']}); "
        f"{100 * summary['mfu_vs_measured_matmul']:.1f}% of {peak_measured / 1e12:.3f} TFLOP/s "
        "(a large matrix multiply measured here)"
    )
    print(f"peak memory: {summary['peak_memory_mb']:.0f} MB")
    sd = summary["val_loss_sd"]
    print(
        f"validation loss over {len(runs)} seed(s): mean {summary['val_loss_mean']:.4f}"
        + (f", SD {sd:.4f}" if len(runs) > 1 else "")
        + f" | wall {summary['wall_seconds_mean']:.1f} s per run (training {summary['training_seconds_mean']:.1f} s)"
    )
    print(f"reference: {chosen['reference']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)
    return summary


if __name__ == "__main__":
    main()
