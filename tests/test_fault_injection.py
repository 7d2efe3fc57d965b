"""Kill real training processes with SIGKILL at random moments, saves included; every resume must end bit-identical.

One runner process imports torch once and forks a training process per attempt (forking saves the
seconds an import of torch takes, so 20 kills fit in a CI minute). Each training process trains a
tiny GPT (dropout on, one thread, a checkpoint every 3 steps) and resumes from ``checkpoint_dir``
when it holds a checkpoint. ``LLMBOOK_CHECKPOINT_PAUSE`` makes every stage of a save last a few
milliseconds, so most kills land inside a save: between writing the files, renaming the step
folder, replacing the ``latest`` pointer and deleting the old folder.
"""

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llmbook import checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (Linux or macOS)")

STEPS = 120
KILLS = 20

RUNNER = textwrap.dedent(
    """
    import os, sys
    import torch
    torch.set_num_threads(1)
    from llmbook.models import GPT, GPTConfig
    from llmbook.train import TokenBatcher, TrainConfig, train
    from llmbook import checkpoint, runtime
    import safetensors.torch, tqdm.auto  # imported once here, like torch, not in every training process
    runtime.measure_peak_flops("cpu")  # measured once here; the forked training processes inherit the figure
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # the first optimizer imports torch._dynamo: seconds

    def run(folder, steps, interval, pause):
        os.environ["LLMBOOK_CHECKPOINT_PAUSE"] = pause
        ids = (torch.arange(3000) * 7 + torch.arange(3000) // 5) % 13
        batcher = TokenBatcher(ids[:2700], ids[2700:], block_size=8)
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
        config = TrainConfig(max_steps=steps, batch_size=4, lr=3e-3, warmup_steps=5, eval_interval=50,
                             eval_steps=1, log_interval=10, amp=False, progress=False, seed=7,
                             checkpoint_dir=folder, checkpoint_interval=interval)
        try:
            checkpoint.find_checkpoint(folder)
            resume = folder
        except FileNotFoundError:
            resume = None
        print("ready", os.getpid(), flush=True)
        result = train(model, batcher, config, device="cpu", resume=resume)
        print("done", os.getpid(), result.steps, flush=True)

    print("runner", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            pid = os.fork()
            if pid == 0:
                sys.stdin.close()
                try:
                    run(args[0], int(args[1]), int(args[2]), args[3])
                finally:
                    sys.stdout.flush()
                    os._exit(0)
            print("started", pid, flush=True)
        elif command == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            print("reaped", args[0], status, flush=True)
    """
)


class Runner:
    def __init__(self, folder: Path):
        script = folder / "runner.py"
        script.write_text(RUNNER)
        code = str(Path(checkpoint.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        assert self.expect("runner") == []

    def expect(self, word: str, timeout: float = 120.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the runner ended while waiting for {word!r}")
            parts = line.split()
            if parts and parts[0] == word:
                return parts[1:]
        raise AssertionError(f"no {word!r} from the runner within {timeout} s")

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def start(self, folder: Path, pause: float, interval: int = 3) -> int:
        self.send(f"run {folder} {STEPS} {interval} {pause}")
        pid = int(self.expect("started")[0])
        assert int(self.expect("ready")[0]) == pid
        return pid

    def reap(self, pid: int) -> int:
        self.send(f"reap {pid}")
        return int(self.expect("reaped")[1])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = checkpoint.find_checkpoint(folder)
    assert path.name == f"step-{STEPS:06d}"
    return load_file(str(path / "model.safetensors"))


def test_sigkill_at_random_moments_never_loses_the_checkpoint_and_resuming_is_exact(tmp_path):
    runner = Runner(tmp_path)
    try:
        # The uninterrupted run.
        pid = runner.start(tmp_path / "straight", pause=0, interval=STEPS)
        runner.expect("done")
        assert runner.reap(pid) == 0
        expected = final_weights(tmp_path / "straight")

        # The same run, killed again and again; each attempt resumes from whatever the last one left. An attempt
        # that finishes before its kill completes its sequence (checked), and the next kill starts a new one.
        rng, kills, in_save, sequences, steps_seen = random.Random(1234), 0, 0, [tmp_path / "killed-0"], []
        while kills < KILLS:
            folder = sequences[-1]
            pid = runner.start(folder, pause=0.004)
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(pid, signal.SIGKILL)
            if runner.reap(pid) == 0:  # it had finished
                assert final_weights(folder).keys() == expected.keys()
                assert all(torch.equal(final_weights(folder)[k], v) for k, v in expected.items())
                sequences.append(tmp_path / f"killed-{len(sequences)}")
                steps_seen = []
                continue
            kills += 1
            leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.exists() else []
            steps = sorted(p.name for p in folder.glob("step-*")) if folder.exists() else []
            in_save += bool(leftovers) or len(steps) > 1
            if steps:  # a loadable latest checkpoint, every time, and never an older one than before
                path = checkpoint.find_checkpoint(folder)
                checkpoint.read_checkpoint(path)
                steps_seen.append(int(path.name.split("-")[1]))
                assert steps_seen == sorted(steps_seen), steps_seen
        print(f"{kills} kills, {in_save} of them inside a save, over {len(sequences)} training sequence(s)")
        assert in_save >= 3, f"only {in_save} of {KILLS} kills landed inside a save"

        pid = runner.start(sequences[-1], pause=0, interval=30)
        assert int(runner.expect("done")[1]) == STEPS
        assert runner.reap(pid) == 0
    finally:
        runner.close()
    resumed = final_weights(sequences[-1])
    assert resumed.keys() == expected.keys()
    for name in expected:
        assert torch.equal(resumed[name], expected[name]), name
