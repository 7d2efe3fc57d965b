"""Specifications of data-parallel and sharded training with 2 real processes on gloo (Chapter 7).

Two runs of 2 processes each (DDP and FSDP) are shared by the tests below, so the whole file starts
PyTorch in 4 worker processes; every model is tiny and trains for 4 steps.
"""

import re
import shlex
from pathlib import Path

import pytest
import torch

from llmbook import checkpoint
from llmbook.distributed import ShardedBatcher, build_parser, launch, main
from llmbook.train import TokenBatcher, train_step

ROOT = Path(__file__).resolve().parents[1]
# one micro-batch is 2 ranks x 4 windows; an optimizer step is 2 micro-batches; the learning rate is constant
COMMON = "--steps 4 --grad-accum 2 --lr 1e-2 --min-lr 1e-2 --eval-interval 2 --eval-steps 2 --block-size 16".split()
COMMON += "--n-layer 2 --n-head 2 --n-embd 16 --checkpoint-interval 2".split()


def weights(path):
    return checkpoint.load_model(path).state_dict()


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """rank 0's results of a DDP and an FSDP run on 2 processes, and of one process with twice the batch."""
    folder = tmp_path_factory.mktemp("distributed")
    ddp = launch(
        ["--strategy", "ddp", "--batch-size", 4, *COMMON, "--checkpoint-dir", folder / "ddp", "--progress"], timeout=300
    )
    fsdp = launch(["--strategy", "fsdp", "--batch-size", 4, *COMMON, "--checkpoint-dir", folder / "fsdp"], timeout=300)
    single = main(["--strategy", "single", "--batch-size", "8", *COMMON, "--checkpoint-dir", str(folder / "single")])
    return dict(ddp=ddp, fsdp=fsdp, single=single, folder=folder)


def test_ddp_on_2_processes_with_batch_b_ends_with_the_weights_of_1_process_with_batch_2b(runs):
    assert runs["ddp"]["world_size"] == 2 and runs["ddp"]["backend"] == "gloo"
    assert runs["ddp"]["steps"] == runs["single"]["steps"] == 4
    difference = max_difference(weights(runs["ddp"]["checkpoint"]), weights(runs["single"]["checkpoint"]))
    assert difference < 1e-5, f"DDP and one process differ by {difference:.2e} after 4 steps"
    # the training moved the weights: the comparison is not between two untouched initialisations
    assert runs["single"]["history"]["val_loss"][-1] < runs["single"]["history"]["val_loss"][0] - 0.05


def test_rank_0_alone_saves_checkpoints_and_shows_progress(runs):
    for strategy in ("ddp", "fsdp"):
        saved = runs[strategy]["checkpoint_by_rank"]
        assert saved[0] == runs[strategy]["checkpoint"] and saved[1:] == [None], (strategy, saved)
    # the last step's folder and the pointer to it, no leftover of a second writer
    assert sorted(p.name for p in (runs["folder"] / "ddp").iterdir()) == ["latest", "step-000004"]
    output = runs["ddp"]["output_by_rank"]
    assert "ddp x2" in output[0] and "ddp x2" not in output[1], output


def test_fsdp_follows_ddp_and_holds_about_half_the_parameter_and_optimizer_bytes_per_rank(runs):
    ddp, fsdp = runs["ddp"], runs["fsdp"]
    for key in ("loss", "val_loss"):
        a, b = ddp["history"][key], fsdp["history"][key]
        assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (key, a, b)
    full = ddp["memory_per_rank"][0]
    assert full["parameters"] == 4 * ddp["params"] and full["optimizer"] == 2 * full["parameters"]  # fp32 AdamW
    for shard in fsdp["memory_per_rank"]:
        for kind in ("parameters", "gradients", "optimizer"):
            assert 0.4 < shard[kind] / full[kind] < 0.6, (kind, shard, full)
    for kind in ("parameters", "optimizer"):  # the shards together are the whole model, each number once
        assert sum(shard[kind] for shard in fsdp["memory_per_rank"]) == full[kind]
    difference = max_difference(weights(fsdp["checkpoint"]), weights(ddp["checkpoint"]))
    assert difference < 1e-5, f"FSDP's gathered checkpoint differs from DDP's by {difference:.2e}"


def test_a_checkpoint_written_by_2_ranks_resumes_in_1_process_as_if_never_stopped(runs, tmp_path):
    # The DDP run stopped at step 4; one process continues to step 6 ...
    six = ["--strategy", "single", "--batch-size", "8", *COMMON, "--steps", "6"]
    resumed = main([*six, "--resume", runs["ddp"]["checkpoint"], "--checkpoint-dir", str(tmp_path / "resumed")])
    # ... and ends where one process that never stopped ends
    straight = main([*six, "--checkpoint-dir", str(tmp_path / "straight")])
    assert resumed["steps"] == straight["steps"] == 6
    difference = max_difference(weights(resumed["checkpoint"]), weights(straight["checkpoint"]))
    assert difference < 1e-5, f"the resumed run differs from the uninterrupted one by {difference:.2e}"


def test_an_fsdp_resume_is_refused_with_a_clear_error(tmp_path):
    from llmbook.distributed import train_distributed

    with pytest.raises(ValueError, match="resume with strategy 'ddp'"):
        train_distributed(torch.nn.Linear(2, 2), None, None, "fsdp", torch.device("cpu"), resume=tmp_path)


def test_gradient_accumulation_k_by_b_equals_one_batch_of_k_times_b():
    from llmbook.models import GPT, GPTConfig

    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=False)
    x = torch.randint(0, 13, (12, 8), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 13, (12, 8), generator=torch.Generator().manual_seed(1))
    gradients = []
    for pieces in (1, 3):
        torch.manual_seed(0)
        model = GPT(config)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        batches = list(zip(x.chunk(pieces), y.chunk(pieces)))
        step = train_step(model, optimizer, batches, grad_clip=None)
        gradients.append(([p.grad.clone() for p in model.parameters()], step.loss))
    (one, loss_one), (three, loss_three) = gradients
    assert abs(loss_one - loss_three) < 1e-6
    assert max(float((a - b).abs().max()) for a, b in zip(one, three)) < 1e-6


def test_each_rank_reads_its_own_slice_of_the_batch_one_process_would_read():
    ids = torch.arange(500) % 37
    base = TokenBatcher(ids[:400], ids[400:], block_size=8)
    whole, _ = base.get_batch("train", 6, torch.Generator().manual_seed(3))
    parts = [
        ShardedBatcher(base, rank, 3).get_batch("train", 2, torch.Generator().manual_seed(3))[0] for rank in range(3)
    ]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(ValueError, match="rank must be between 0 and world_size - 1 = 1, got 2"):
        ShardedBatcher(base, 2, 2)


def test_the_entry_point_accepts_the_two_node_torchrun_command_of_appendix_d():
    from torch.distributed.run import get_args_parser

    text = (ROOT / "book" / "appendix_d_setup.md").read_text(encoding="utf-8")
    commands = re.findall(r"^torchrun .*?(?<!\\)$", text.replace("\\\n", " "), flags=re.M)
    commands = [c for c in commands if "--nnodes=2" in c]
    assert commands, "appendix D has no torchrun command for 2 nodes"
    for command in commands:
        parsed = get_args_parser().parse_args(shlex.split(command)[1:])
        assert (parsed.nnodes, parsed.nproc_per_node, parsed.rdzv_backend) == ("2", "8", "c10d")
        assert parsed.module and parsed.training_script == "llmbook.distributed"
        assert ":" in parsed.rdzv_endpoint
        ours = build_parser().parse_args(parsed.training_script_args)
        assert ours.strategy in ("ddp", "fsdp") and ours.steps > 0


def test_starting_ddp_without_torchrun_says_how_to_start_it(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(SystemExit, match="torchrun --standalone --nproc_per_node=2"):
        main(["--strategy", "ddp", "--steps", "1"])
