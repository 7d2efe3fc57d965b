"""Character-level GPT on Tiny Shakespeare with the book's training loop (Chapter 6).

Two configurations, the published ones of nanoGPT (BENCHMARKS.md):

* ``--budget cpu``: 4 layers, 4 heads, 128 wide, context 64, batch 12,
  2000 iterations, dropout 0, lr 1e-3. nanoGPT: validation loss 1.886 in 95 s
  on 2 CPU cores, evaluation included.
* ``--budget gpu``: 6 layers, 6 heads, 384 wide, context 256, batch 64,
  5000 iterations, dropout 0.2, lr 1e-3. nanoGPT: 1.4697 on an A100.

Prints tokens/s, MFU, peak memory, the best validation loss and the wall time
(everything from data loading to the last evaluation).

    python benchmarks/train_char_gpt.py --budget cpu --threads 2

Measured on 2026-11-23 on an idle 2-core machine (the BENCHMARKS.md kind),
``--budget cpu --threads 2``: 0.80 M parameters, 13,717 tokens/s (nanoGPT
~15k: 0.91x), peak memory 374 MB (372), best validation loss 1.9029 (train
1.7946; nanoGPT 1.886 / 1.765), wall time 124.7 s of which 114.6 s training
(nanoGPT 95 s). Neither CPU target is met yet: 0.017 nats and 30 s short.
The gpu configuration has not been run (no GPU was lent to that session).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from llmbook import data, runtime
from llmbook.models import GPT, GPTConfig
from llmbook.tokenizers import CharTokenizer
from llmbook.train import TokenBatcher, TrainConfig, train

CONFIGS = {
    "cpu": dict(
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False),
        train=dict(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100, betas=(0.9, 0.99),
                   weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_steps=20, log_interval=10),
        reference="nanoGPT: val 1.886 (train 1.765) in 95 s on 2 cores, ~15k tokens/s, peak 372 MB",
    ),
    "gpu": dict(
        model=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
        train=dict(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, betas=(0.9, 0.99),
                   weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_steps=200, log_interval=10),
        reference="nanoGPT: val 1.4697 in about 3 min on one A100",
    ),
}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in kilobytes on Linux: the peak resident memory of the whole process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (e.g. 2 to compare with nanoGPT)")
    parser.add_argument("--steps", type=int, default=None, help="override the number of iterations")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = CONFIGS[args.budget]
    device = runtime.get_device()
    wall_start = time.perf_counter()

    text = data.load_text("tinyshakespeare.txt")
    tokenizer = CharTokenizer.train(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    split = int(0.9 * len(ids))
    batcher = TokenBatcher(ids[:split], ids[split:], block_size=chosen["model"]["block_size"])

    runtime.seed_everything(1337)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **chosen["model"]))
    train_settings = dict(chosen["train"], seed=1337, progress=sys.stderr.isatty())
    if args.steps:
        train_settings["max_steps"] = args.steps
    config = TrainConfig(**train_settings)
    runnable = torch.compile(model) if args.compile else model
    if args.compile:
        runnable.config = model.config  # train() reads block_size and flops_per_token from the model
        runnable.flops_per_token = model.flops_per_token
    result = train(runnable, batcher, config, device=device)
    wall = time.perf_counter() - wall_start

    history = result.history
    steady = history["tokens_per_second"][len(history["tokens_per_second"]) // 10 :]  # skip the warm-up steps
    figures = {
        "budget": args.budget,
        "device": runtime.describe(),
        "parameters": model.num_params(),
        "steps": result.steps,
        "tokens_per_second": sum(steady) / len(steady),
        "mfu": sum(history["mfu"][len(history["mfu"]) // 10 :]) / len(steady),
        "peak_memory_mb": peak_memory_mb(device),
        "best_val_loss": result.best_val_loss,
        "final_val_loss": history["val_loss"][-1],
        "final_train_loss": history["train_loss"][-1],
        "training_seconds": history["seconds"][-1],
        "wall_seconds": wall,
        "reference": chosen["reference"],
    }
    print(f"{runtime.describe()}")
    print(f"model: {figures['parameters'] / 1e6:.2f} M parameters, {result.steps} steps")
    print(f"tokens/s: {figures['tokens_per_second']:,.0f}   MFU: {100 * figures['mfu']:.2f}%   "
          f"peak memory: {figures['peak_memory_mb']:.0f} MB")
    print(f"validation loss: best {figures['best_val_loss']:.4f}, final {figures['final_val_loss']:.4f} "
          f"(train {figures['final_train_loss']:.4f})")
    print(f"wall time: {wall:.1f} s (training {figures['training_seconds']:.1f} s, the rest data and evaluation)")
    print(f"reference: {chosen['reference']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)
    return figures


if __name__ == "__main__":
    main()
