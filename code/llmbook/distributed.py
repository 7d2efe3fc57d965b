"""The book's training loop on many processes: DDP and FSDP (Chapter 7: Scaling).

Run it with ``torchrun`` (one process per GPU, or several on a CPU)::

    torchrun --standalone --nproc_per_node=2 -m llmbook.distributed --strategy ddp --steps 100

Every process builds the same GPT from the same seed and runs the book's loop
(:func:`llmbook.train.train_step` inside :class:`llmbook.train._Loop`) on it, wrapped by

- ``--strategy ddp``: :class:`torch.nn.parallel.DistributedDataParallel`. Every rank holds the whole
  model and optimizer; after backward the gradients are averaged over the ranks (all-reduce), so every
  rank takes the same step;
- ``--strategy fsdp``: PyTorch's ``fully_shard`` (FSDP2). Every parameter, its gradient and its
  optimizer state are split into one shard per rank; a block's full weights are gathered just before
  it runs and freed after; gradients are reduce-scattered, so each rank updates only its shard;
- ``--strategy single``: no wrapper, no process group (the reference).

Each rank reads its own part of every batch (:class:`ShardedBatcher`: all ranks draw the same windows
with the same generator and rank r keeps its slice, so N ranks with batch b see exactly the windows
one process with batch N·b would). Rank 0 alone logs, writes the result and saves checkpoints, in the
book's format, with full (unsharded) tensors: a run on 2 ranks resumes on 1 with
``train(..., resume=...)``. The backend is gloo on the CPU and nccl on CUDA GPUs.

:func:`launch` starts such a run from Python (a notebook cell) and returns rank 0's result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmbook import runtime, validate

__all__ = ["ShardedBatcher", "build_parser", "main", "launch", "state_bytes", "wrap_model", "train_distributed"]

STRATEGIES = ("ddp", "fsdp", "single")


# --------------------------------------------------------------------------- data


class ShardedBatcher:
    """Rank ``rank``'s share of every batch of ``batcher``.

    ``get_batch(split, batch_size, generator)`` draws ``world_size * batch_size`` windows from the
    wrapped batcher with ``generator`` (the same seed on every rank, so the generators stay in step)
    and returns rows ``rank * batch_size`` to ``(rank + 1) * batch_size``. The ranks together see
    one batch of ``world_size * batch_size`` windows, each window exactly once, as
    :class:`torch.utils.data.DistributedSampler` does for a map-style data set.
    """

    def __init__(self, batcher: Any, rank: int, world_size: int):
        self.base = batcher
        self.world_size = validate.positive_int(world_size, "world_size")
        self.rank = validate.nonnegative_int(rank, "rank")
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be between 0 and world_size - 1 = {world_size - 1}, got {rank}")
        self.block_size = batcher.block_size

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        x, y = self.base.get_batch(split, batch_size * self.world_size, generator)
        rows = slice(self.rank * batch_size, (self.rank + 1) * batch_size)
        return x[rows], y[rows]


# --------------------------------------------------------------------------- wrapping


def _fsdp_extras(model: nn.Module) -> None:
    """Give an FSDP2 root the two methods :func:`llmbook.train.train_step` looks for: ``no_sync``
    (no reduce-scatter on the micro-batches before the last) and ``clip_grad_norm_`` (the norm over all
    shards of all ranks)."""

    @contextlib.contextmanager
    def no_sync():
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def clip_grad_norm_(max_norm: float) -> torch.Tensor:
        from torch.distributed.tensor import DTensor

        grads = [p.grad for p in model.parameters() if p.grad is not None]
        local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
        square = torch.stack([g.detach().float().pow(2).sum() for g in local]).sum()
        torch.distributed.all_reduce(square)  # each rank holds a different shard: sum the squares
        norm = square.sqrt()
        if math.isfinite(float(norm)) and float(norm) > max_norm:
            for g in local:
                g.mul_(max_norm / (float(norm) + 1e-6))
        return norm

    model.no_sync = no_sync
    model.clip_grad_norm_ = clip_grad_norm_


def wrap_model(model: nn.Module, strategy: str, device: torch.device) -> nn.Module:
    """``model`` on ``device`` wrapped for ``strategy``: DDP, FSDP2 (each
    block, then the root), or as it is."""
    validate.one_of(strategy, "strategy", STRATEGIES)
    model.to(device)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # one unit per block: its weights are gathered only while it runs
        for block in model.blocks:
            fully_shard(block)
        # the rest: embeddings (tied with the head) and the final LayerNorm
        fully_shard(model)
        _fsdp_extras(model)
    return model


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this rank holds of parameters, gradients and optimizer state, measured from its own
    tensors (under FSDP: its shards)."""
    params = list(model.parameters())
    optimizer_bytes = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.dim() > 0:  # the moments; not the step counter
                optimizer_bytes += _local(value).numel() * value.element_size()
    return {
        "parameters": sum(_local(p).numel() * p.element_size() for p in params),
        "gradients": sum(_local(p.grad).numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer": optimizer_bytes,
    }


# --------------------------------------------------------------------------- the loop


def _full_state_for_rank0(model: nn.Module, optimizer: torch.optim.Optimizer, strategy: str, plain: nn.Module):
    """(plain model, plain optimizer) holding the full weights and optimizer state on rank 0; None on others.
    Under FSDP every rank must call it (the shards are gathered)."""
    from llmbook.optim import configure_optimizer

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if strategy != "fsdp":
        return (model.module if strategy == "ddp" else model, optimizer) if rank == 0 else None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
    if rank != 0:
        return None
    plain.load_state_dict(weights)
    plain_optimizer = configure_optimizer(plain, _Config.current)
    set_optimizer_state_dict(plain, plain_optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True))
    return plain, plain_optimizer


class _Config:  # the TrainConfig of the run in progress (for the plain optimizer of an FSDP checkpoint)
    current: Any = None


def train_distributed(
    model: nn.Module, batcher: Any, config, strategy: str, device: torch.device, plain=None, resume=None
):
    """The book's loop (:class:`llmbook.train._Loop`) on ``model`` wrapped for ``strategy``.

    ``batcher`` is the whole data; each rank reads its share through :class:`ShardedBatcher`, and
    ``config.batch_size`` is the batch of one rank. Evaluation runs on every rank with the same batches
    (FSDP needs every rank in every forward pass); rank 0 alone shows progress and saves checkpoints.
    ``resume`` (a checkpoint or a run's folder, from any number of ranks) continues a run with ddp or
    single. Returns (TrainResult, wrapped model, optimizer).
    """
    if resume is not None and strategy == "fsdp":
        raise ValueError(
            f"resume={str(resume)!r} with strategy 'fsdp' is not supported: the checkpoint holds full tensors, "
            "which this loop loads only into an unsharded model; resume with strategy 'ddp' (any number of "
            "ranks) or in one process with llmbook.train.train(..., resume=...)"
        )

    from tqdm.auto import tqdm

    from llmbook.checkpoint import save_step, snapshot_rng
    from llmbook.train import _Loop, evaluate

    distributed = torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    _Config.current = config
    flops = runtime.training_flops_per_token(model, batcher.block_size)
    wrapped = wrap_model(model, strategy, device)

    class Loop(_Loop):
        def resume(self, path):
            wrapper, self.model = self.model, model  # the checkpoint's keys are those of the plain model
            try:
                super().resume(path)
            finally:
                self.model = wrapper

        def evaluate(self):
            batch_size = self.config.eval_batch_size or self.config.batch_size
            losses = evaluate(self.forward, batcher, self.config.eval_steps, batch_size, device, self.config.seed + 1)
            self.record(step=self.step, train_loss=losses["train"], val_loss=losses["val"], seconds=self.seconds)
            self.bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}")

        def save(self, rng=None):
            if self.config.checkpoint_dir is None:
                return
            full = _full_state_for_rank0(self.model, self.optimizer, strategy, plain)
            if full is not None:
                state = self.state()
                state["tokens"] = self.tokens * world
                objects = dict(optimizer=full[1], generator=self.generator, scaler=self.scaler, rng=rng)
                self.checkpoint = str(save_step(self.config.checkpoint_dir, self.step, full[0], state=state, **objects))
            if distributed:
                torch.distributed.barrier()  # nobody runs ahead of the checkpoint

    loop = Loop(wrapped, ShardedBatcher(batcher, rank, world), config, device)
    loop.peak_tokens_per_second = runtime.peak_flops(device) / flops
    if resume is not None:
        from llmbook.checkpoint import find_checkpoint

        loop.resume(find_checkpoint(resume))
    else:
        torch.manual_seed(config.seed)
    bar_off = not (config.progress and rank == 0)
    loop.bar = tqdm(total=config.max_steps, initial=loop.step, disable=bar_off, desc=f"{strategy} x{world}")
    start, loop.rng = time.perf_counter(), snapshot_rng(loop.generator)
    if loop.step == 0:
        loop.evaluate()
    while loop.step < config.max_steps and loop.stopped == "completed":
        loop.run_step()
    loop.bar.close()
    return loop.result(time.perf_counter() - start), wrapped, loop.optimizer


# --------------------------------------------------------------------------- the command line


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m llmbook.distributed`` (what ``torchrun ... -m llmbook.distributed`` passes on)."""
    parser = argparse.ArgumentParser(
        prog="python -m llmbook.distributed",
        description="Train the book's char-level GPT on Tiny Shakespeare on many processes (start with torchrun).",
    )
    add = parser.add_argument
    add("--strategy", choices=STRATEGIES, default="ddp", help="ddp: replicate; fsdp: shard; single: one process")
    add("--steps", type=int, default=100, help="optimizer steps")
    add("--batch-size", type=int, default=8, help="windows per rank per micro-batch")
    add("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    add("--lr", type=float, default=3e-3)
    add("--min-lr", type=float, default=None, help="end of the cosine (default lr / 10)")
    add("--warmup", type=int, default=0, help="warm-up steps")
    add("--n-layer", type=int, default=2)
    add("--n-head", type=int, default=2)
    add("--n-embd", type=int, default=32)
    add("--block-size", type=int, default=32)
    add("--eval-interval", type=int, default=50)
    add("--eval-steps", type=int, default=4)
    add("--seed", type=int, default=0)
    add("--checkpoint-dir", default=None, help="rank 0 saves here (full tensors, the book's format)")
    add("--checkpoint-interval", type=int, default=None)
    add("--resume", default=None, help="a checkpoint (or run folder) to continue, written by any number of ranks")
    add("--out", default=None, help="rank 0 writes its result here as JSON")
    add("--backend", choices=("auto", "gloo", "nccl"), default="auto", help="auto: nccl on CUDA, gloo on the CPU")
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add("--threads", type=int, default=None, help="torch threads per process (default: PyTorch's)")
    add("--progress", action="store_true", help="a progress bar on rank 0")
    return parser


def _device(choice: str) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but this PyTorch sees no CUDA GPU; use --device cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run the command line ``argv``; returns rank 0's result (None on the other ranks)."""
    from llmbook.data import TokenBatcher, load_text
    from llmbook.models import GPT, GPTConfig
    from llmbook.tokenizers import CharTokenizer
    from llmbook.train import TrainConfig

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.strategy != "single":
        if "RANK" not in os.environ:
            raise SystemExit(
                f"--strategy {args.strategy} needs the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR); "
                "start it with: torchrun --standalone --nproc_per_node=2 -m llmbook.distributed ..."
            )
        backend = args.backend if args.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend)
    elif world != 1:
        raise SystemExit(f"--strategy single runs one process, but WORLD_SIZE={world}; use ddp or fsdp")
    try:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        text = load_text("tinyshakespeare.txt")
        tokenizer = CharTokenizer.train(text)
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        split = int(0.9 * len(ids))
        batcher = TokenBatcher(ids[:split], ids[split:], block_size=args.block_size)
        gpt_config = GPTConfig(
            tokenizer.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd, bias=False
        )
        runtime.seed_everything(args.seed)  # the same initial weights on every rank
        model, plain = GPT(gpt_config), GPT(gpt_config)
        config = TrainConfig(
            max_steps=args.steps,
            batch_size=args.batch_size,
            grad_accum_steps=args.grad_accum,
            lr=args.lr,
            min_lr=args.min_lr,
            warmup_steps=args.warmup,
            eval_interval=args.eval_interval,
            eval_steps=args.eval_steps,
            eval_batch_size=args.batch_size * world,
            log_interval=1,
            seed=args.seed,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=args.checkpoint_interval,
            progress=args.progress,
        )
        result, wrapped, optimizer = train_distributed(
            model, batcher, config, args.strategy, device, plain, resume=args.resume
        )
        memory = state_bytes(wrapped, optimizer)
        memories, saved = [memory], [result.checkpoint]
        if torch.distributed.is_initialized():
            memories, saved = [None] * world, [None] * world
            torch.distributed.all_gather_object(memories, memory)
            torch.distributed.all_gather_object(saved, result.checkpoint)  # what each rank wrote
        if rank != 0:
            return None
        report = dict(
            strategy=args.strategy,
            world_size=world,
            backend=torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            device=str(device),
            args=vars(args),
            params=sum(p.numel() for p in plain.parameters()),
            steps=result.steps,
            seconds=result.training_seconds,
            tokens=result.tokens * world,
            tokens_per_second=result.tokens * world / max(result.training_seconds, 1e-9),
            final_val_loss=result.final_val_loss,
            history={k: result.history[k] for k in ("step", "val_loss", "train_loss", "log_step", "loss")},
            memory_per_rank=memories,
            checkpoint=result.checkpoint,
            checkpoint_by_rank=saved,
        )
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
        return report
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(args: list[str], nproc: int = 2, timeout: float = 600, threads: int = 1) -> dict[str, Any]:
    """Run ``python -m llmbook.distributed *args`` as ``nproc`` processes on this machine and return
    rank 0's result (a dict).

    Each process gets the environment ``torchrun --standalone --nproc_per_node=nproc`` would give it
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and ``threads`` CPU
    threads; starting them directly saves torchrun's own process (one import of PyTorch less). A failed
    run raises a RuntimeError with the end of the failing rank's error output. The result's
    ``output_by_rank`` holds what each process printed (only rank 0 shows progress).
    """
    validate.positive_int(nproc, "nproc")
    validate.positive_int(threads, "threads")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", "llmbook.distributed", *map(str, args), "--out", str(out)]
        library = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (library, os.environ.get("PYTHONPATH", "")) if p)
        base = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=str(threads), MASTER_ADDR="127.0.0.1")
        base.update(MASTER_PORT=str(_free_port()), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
        logs = [Path(folder) / f"rank{rank}.log" for rank in range(nproc)]
        processes = []
        for rank in range(nproc):
            env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
            with open(logs[rank], "w") as log:
                processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        try:
            codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in processes]
        except subprocess.TimeoutExpired:
            codes = None
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if codes is None or any(codes) or not out.is_file():
            failed = next((r for r, c in enumerate(codes or []) if c), 0)
            tail = "\n".join(logs[failed].read_text(errors="replace").strip().splitlines()[-25:])
            why = f"timed out after {timeout} s" if codes is None else f"exit codes {codes}"
            raise RuntimeError(f"{' '.join(command)} on {nproc} processes failed ({why}); rank {failed} said:\n{tail}")
        result = json.loads(out.read_text(encoding="utf-8"))
        result["output_by_rank"] = [log.read_text(errors="replace") for log in logs]
        return result


if __name__ == "__main__":
    main()
