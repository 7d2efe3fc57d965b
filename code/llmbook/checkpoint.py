"""Checkpoints that resume exactly and are never lost (Chapter 6; used by :func:`llmbook.train.train`).

A checkpoint is a directory with no pickle in it:

- ``model.safetensors``: the weights (tied tensors stored once);
- ``optimizer.safetensors``: the optimizer's tensors and the random-number-generator states;
- ``state.json``: everything else: the caller's ``state`` (step, config, history, ...), the optimizer's
  index and hyper-parameters, the scheduler and grad-scaler states, the NumPy and Python RNG states,
  and the model's class and configuration when it has a dataclass ``config`` (so :func:`load_model`
  can rebuild it from the checkpoint alone);
- ``manifest.json``, written last: the format and the size and sha256 of each file above.

:func:`save_checkpoint` writes the directory under a temporary name and renames it into place.
A training run keeps its checkpoints in ``checkpoint_dir`` as ``step-000123/`` directories plus a
small ``latest`` file naming the newest one (:func:`save_step`): the pointer is replaced atomically
with :func:`os.replace` only after the new directory is complete, and older directories are deleted
only after that, so at every instant ``checkpoint_dir`` holds a loadable latest checkpoint.
:func:`find_checkpoint` follows the pointer and, if it is missing or damaged, falls back to the
newest complete step directory.

Loading is all or nothing: every file is read and checked against the manifest, and every tensor
against the model and optimizer, before anything is assigned. Each error is a
:class:`CheckpointError` (or :class:`FileNotFoundError`) that names the file and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "save_step",
    "find_checkpoint",
    "load_checkpoint",
    "load_model",
    "read_checkpoint",
    "capture_rng",
    "snapshot_rng",
    "rng_record",
    "jsonable",
]

FORMAT = "llmbook-checkpoint-2"
FILES = ("model.safetensors", "optimizer.safetensors", "state.json")
MANIFEST = "manifest.json"
POINTER = "latest"
_STEP_DIR = re.compile(r"step-(\d+)")
_KEEP_GROUP_KEYS = ("fused", "foreach", "capturable", "differentiable", "maximize")  # how, not what: current wins


class CheckpointError(ValueError):
    """A checkpoint is damaged or does not fit the model; the message names the file and the fix."""


# --------------------------------------------------------------------------- random states and JSON


def jsonable(value: Any) -> Any:
    """``value`` with tensors, arrays, NumPy numbers, tuples and paths turned into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray) or torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def snapshot_rng(generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], tuple, tuple]:
    """Every random state a training run depends on, as copies in their raw form (cheap: taken after every step).

    :func:`rng_record` turns a snapshot into the form a checkpoint stores.
    """
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    if generator is not None:
        tensors["rng.batcher"] = generator.get_state()
    return tensors, np.random.get_state(), random.getstate()


def rng_record(
    snapshot: tuple[dict[str, torch.Tensor], tuple, tuple],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A :func:`snapshot_rng` as a checkpoint stores it: tensors (for safetensors) and plain values (JSON)."""
    tensors, numpy_state, python_state = snapshot
    kind, keys, position, has_gauss, cached = numpy_state
    plain = {
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": jsonable(python_state),
    }
    return tensors, plain


def capture_rng(generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random state a training run depends on, now: tensors (for safetensors) and plain values (JSON)."""
    return rng_record(snapshot_rng(generator))


def _restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    if generator is not None and "rng.batcher" in tensors:
        generator.set_state(tensors["rng.batcher"])
    kind, keys, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as named tensors plus a JSON index (no pickle)."""
    state_dict = optimizer.state_dict()
    tensors, index = {}, {}
    for param_id, param_state in state_dict["state"].items():
        entry = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value.detach().to("cpu").contiguous().clone()
                entry[key] = {"tensor": f"optimizer.{param_id}.{key}"}
            else:
                entry[key] = {"value": jsonable(value)}
        index[str(param_id)] = entry
    return tensors, {"state": index, "param_groups": jsonable(state_dict["param_groups"])}


def _model_record(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        return None
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
        "config": jsonable(dataclasses.asdict(config)),
    }


# --------------------------------------------------------------------------- saving


def _pause(stage: str) -> None:
    """Test hook: ``LLMBOOK_CHECKPOINT_PAUSE=seconds`` sleeps at each stage of a save (fault-injection tests)."""
    seconds = os.environ.get("LLMBOOK_CHECKPOINT_PAUSE")
    if seconds:
        time.sleep(float(seconds))


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(descriptor)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_checkpoint_files(folder: Path, model, optimizer, scheduler, state, generator, scaler, rng) -> None:
    from safetensors.torch import save_file, save_model

    rng_tensors, rng_plain = rng if rng is not None else capture_rng(generator)
    save_model(model, str(folder / "model.safetensors"))
    _pause("model written")
    tensors = {name: t.detach().cpu().contiguous() for name, t in rng_tensors.items()}
    meta: dict[str, Any] = {"format": FORMAT, "rng": rng_plain, "model": _model_record(model)}
    if optimizer is not None:
        optimizer_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
        tensors.update(optimizer_tensors)
    if scheduler is not None:
        meta["scheduler"] = jsonable(scheduler.state_dict())
    if scaler is not None:
        meta["scaler"] = jsonable(scaler.state_dict())
    meta["state"] = jsonable(state or {})
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "state.json").write_text(json.dumps(meta, indent=1, allow_nan=True), encoding="utf-8")
    _pause("state written")
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in FILES}
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files}, indent=1), encoding="utf-8")
    for name in (*FILES, MANIFEST):
        _fsync(folder / name)
    _fsync(folder)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    state: dict[str, Any] | None = None,
    *,
    generator: torch.Generator | None = None,
    scaler: Any = None,
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` (see the module docstring); return ``path``.

    Only the objects passed are saved. ``rng`` is a snapshot from
    :func:`capture_rng` taken earlier (the training loop passes the states at
    the last step boundary); by default the states are captured now. The
    directory is written under a temporary name beside ``path`` and renamed
    into place. Replacing an existing ``path`` takes two renames (old copy
    aside, new copy in); a crash between them leaves the old copy in a
    ``.NAME.old-*`` folder beside ``path``, which :func:`find_checkpoint`
    finds. Training runs use :func:`save_step`, which needs no such swap.
    """
    path = Path(path)
    if path.exists() and not (path / MANIFEST).is_file():
        raise FileExistsError(
            f"{path} exists and is not a checkpoint; save_checkpoint replaces only checkpoints: "
            "choose a new folder name (or delete that folder yourself)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        _write_checkpoint_files(temporary, model, optimizer, scheduler, state, generator, scaler, rng)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    previous = None
    if path.exists():
        previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, previous / "checkpoint")
    os.replace(temporary, path)  # from here on the new copy is the checkpoint: never delete it
    _fsync(path.parent)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return path


def save_step(
    checkpoint_dir: str | Path, step: int, model: nn.Module, *args: Any, keep: int = 1, **kwargs: Any
) -> Path:
    """Save the checkpoint of ``step`` as ``checkpoint_dir/step-NNNNNN`` and point ``latest`` at it.

    The arguments after ``model`` are those of :func:`save_checkpoint`. Order
    of work: the step directory is written completely (temporary name, then
    rename), the ``latest`` pointer is replaced atomically, and only then are
    older step directories (beyond the newest ``keep``) and leftovers of
    interrupted saves deleted. Weights with a NaN or an infinity are refused
    (:class:`CheckpointError`): they never replace the last good checkpoint.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        raise CheckpointError(
            f"the weights hold NaN or infinite values at step {step}; nothing was written to {checkpoint_dir}, "
            "so its latest checkpoint stays the last good one; lower the learning rate (lr) and resume from it"
        )
    name = f"step-{int(step):06d}"
    path = checkpoint_dir / name
    if not (path / MANIFEST).is_file():  # the same step saved twice (e.g. Ctrl-C right after resuming): keep it
        save_checkpoint(path, model, *args, **kwargs)
    _pause("step directory in place")
    pointer = checkpoint_dir / f".{POINTER}.tmp-{os.getpid()}"
    pointer.write_text(name + "\n", encoding="utf-8")
    _fsync(pointer)
    os.replace(pointer, checkpoint_dir / POINTER)
    _fsync(checkpoint_dir)
    _pause("pointer replaced")
    steps = sorted(_step_dirs(checkpoint_dir), key=lambda p: _step_number(p), reverse=True)
    doomed = [p for p in steps if p.name != name][max(0, keep - 1) :]
    doomed += [p for p in checkpoint_dir.iterdir() if p.name.startswith((".step-", f".{POINTER}.tmp-"))]
    for old in doomed:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return path


def _step_number(path: Path) -> int:
    return int(_STEP_DIR.fullmatch(path.name).group(1))


def _step_dirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if _STEP_DIR.fullmatch(p.name) and (p / MANIFEST).is_file()]


# --------------------------------------------------------------------------- finding and reading


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory that ``path`` stands for.

    ``path`` may be a checkpoint directory, a training run's
    ``checkpoint_dir`` (its ``latest`` pointer is followed; if the pointer is
    missing or names no complete checkpoint, the newest complete
    ``step-*`` directory is used), or the ``latest`` pointer file itself.
    """
    path = Path(path)
    if path.is_file() and path.name == POINTER:
        path = path.parent
    if (path / MANIFEST).is_file():
        return path
    if path.is_dir():
        pointer = path / POINTER
        if pointer.is_file():
            try:
                target = path / pointer.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                target = None
            if target is not None and _STEP_DIR.fullmatch(target.name) and (target / MANIFEST).is_file():
                return target
        steps = _step_dirs(path)
        if steps:
            return max(steps, key=_step_number)
    elif not path.exists():  # a crash between save_checkpoint's two renames left the old copy aside
        aside = sorted(path.parent.glob(f".{path.name}.old-*/checkpoint")) if path.parent.is_dir() else []
        if aside and (aside[-1] / MANIFEST).is_file():
            return aside[-1]
    raise FileNotFoundError(
        f"{path} is not a checkpoint: it has no {MANIFEST}, no '{POINTER}' pointer and no complete step-* directory; "
        "pass the directory that save_checkpoint wrote or the checkpoint_dir of a training run"
    )


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint read into memory and verified against its manifest (see :func:`read_checkpoint`)."""

    path: Path
    meta: dict[str, Any]
    weights: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]

    @property
    def state(self) -> dict[str, Any]:
        return self.meta.get("state", {})


def _damaged(file: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{file} {problem}: the checkpoint {file.parent} is damaged; resume from an older checkpoint "
        "(delete this step directory and its run falls back to the newest complete one) or train again"
    )


def _read_json(file: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(file, f"is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise _damaged(file, f"holds a JSON {type(value).__name__}, not an object")
    return value


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read every file of the checkpoint at ``path`` and verify sizes and sha256 sums; assign nothing."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    folder = find_checkpoint(path)
    manifest = _read_json(folder / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise CheckpointError(
            f"{folder / MANIFEST} has format {manifest.get('format')!r}, but this llmbook reads {FORMAT!r}; "
            "save the checkpoint again with this version of llmbook"
        )
    contents = {}
    for name in FILES:
        file = folder / name
        expected = manifest.get("files", {}).get(name)
        if expected is None:
            raise _damaged(folder / MANIFEST, f"lists no {name}")
        if not file.is_file():
            raise _damaged(file, "is missing")
        data = file.read_bytes()
        if len(data) != expected.get("bytes"):
            raise _damaged(file, f"has {len(data):,} bytes, the manifest says {expected.get('bytes'):,} (truncated?)")
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise _damaged(file, "does not match its sha256 in the manifest (bit rot or an edited file)")
        contents[name] = data
    try:
        weights = load_safetensors(contents["model.safetensors"])
        tensors = load_safetensors(contents["optimizer.safetensors"])
    except SafetensorError as error:
        raise _damaged(folder / "model.safetensors", f"cannot be parsed ({error})") from None
    meta = _read_json(folder / "state.json")
    for key in ("rng", "state"):
        if key not in meta:
            raise _damaged(folder / "state.json", f"has no '{key}' entry")
    return Checkpoint(folder, meta, weights, tensors)


# --------------------------------------------------------------------------- loading


def _model_plan(checkpoint: Checkpoint, model: nn.Module, strict: bool) -> dict[str, torch.Tensor]:
    """The full state dict to assign to ``model``, after checking names and shapes; raises before any change."""
    file = checkpoint.path / "model.safetensors"
    own = model.state_dict()
    saved = checkpoint.weights
    by_storage: dict[int, str] = {}
    for name, tensor in own.items():
        if name in saved:
            by_storage.setdefault(tensor.data_ptr(), name)
    plan, missing = {}, []
    for name, tensor in own.items():
        source = name if name in saved else by_storage.get(tensor.data_ptr())  # tied weights are stored once
        if source is None:
            missing.append(name)
            continue
        if tuple(saved[source].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{file} holds {source} with shape {tuple(saved[source].shape)}, but the model's {name} has shape "
                f"{tuple(tensor.shape)}: the checkpoint belongs to a model of another size; build the model with "
                "the checkpoint's configuration (llmbook.checkpoint.load_model(path) does that)"
            )
        plan[name] = saved[source]
    unexpected = sorted(n for n in saved if n not in own)
    if strict and (missing or unexpected):
        record = checkpoint.meta.get("model") or {}
        raise CheckpointError(
            f"{file} does not fit this {type(model).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            + (f" (it was saved from a {record['class']})" if record.get("class") else "")
            + "; load it into the kind of model that saved it, or pass strict=False to load the common part"
        )
    return plan


def _optimizer_plan(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state dict to load, after checking groups, sizes and shapes; raises before any change."""
    file = checkpoint.path / "state.json"
    if "optimizer" not in checkpoint.meta:
        raise CheckpointError(
            f"{file} holds no optimizer state (it was saved without an optimizer); load the model only"
        )
    index = checkpoint.meta["optimizer"]
    groups = [dict(g) for g in index["param_groups"]]
    current = optimizer.param_groups
    sizes = [len(g["params"]) for g in groups]
    if sizes != [len(g["params"]) for g in current]:
        raise CheckpointError(
            f"{file} holds an optimizer with parameter groups of sizes {sizes}, this one has "
            f"{[len(g['params']) for g in current]}: the checkpoint belongs to another model or optimizer setup"
        )
    parameters = [p for g in current for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    state = {}
    for param_id, entry in index["state"].items():
        values = {}
        for key, spec in entry.items():
            if "tensor" in spec:
                if spec["tensor"] not in checkpoint.tensors:
                    raise _damaged(checkpoint.path / "optimizer.safetensors", f"lacks the tensor {spec['tensor']}")
                values[key] = checkpoint.tensors[spec["tensor"]]
            else:
                values[key] = spec["value"]
        parameter = parameters[ids.index(int(param_id))]
        for key, value in values.items():
            if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != tuple(parameter.shape):
                raise CheckpointError(
                    f"{checkpoint.path / 'optimizer.safetensors'}: the optimizer's {key} for parameter {param_id} "
                    f"has shape {tuple(value.shape)}, the parameter has {tuple(parameter.shape)}; "
                    "the checkpoint belongs to another model"
                )
        state[int(param_id)] = values
    for saved_group, group in zip(groups, current):
        if "betas" in saved_group:
            saved_group["betas"] = tuple(saved_group["betas"])
        for key in _KEEP_GROUP_KEYS:
            if key in group:
                saved_group[key] = group[key]
    return {"state": state, "param_groups": groups}


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    generator: torch.Generator | None = None,
    scaler: Any = None,
    restore_rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into the given objects and return its ``state``; all or nothing.

    ``path`` is anything :func:`find_checkpoint` accepts. Only the objects
    passed are restored: ``load_checkpoint(path, model)`` loads the weights
    alone. ``restore_rng`` also restores the global torch, NumPy and Python
    random states (and ``generator``'s), as resuming needs. Every file and
    tensor is checked before the first assignment, so a failed load leaves
    the model and the optimizer as they were.
    """
    checkpoint = read_checkpoint(path)
    weights = _model_plan(checkpoint, model, strict)
    optimizer_state = _optimizer_plan(checkpoint, optimizer) if optimizer is not None else None
    meta, state_file = checkpoint.meta, checkpoint.path / "state.json"
    if scheduler is not None and "scheduler" not in meta:
        raise CheckpointError(f"{state_file} holds no scheduler state; load without the scheduler")
    if restore_rng and "rng.torch" not in checkpoint.tensors:
        raise _damaged(checkpoint.path / "optimizer.safetensors", "lacks the random-number-generator state")
    model.load_state_dict(weights, strict=False)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if scheduler is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if restore_rng:
        _restore_rng(checkpoint.tensors, meta["rng"], generator)
    return checkpoint.state


def _llmbook_class(dotted: str, file: Path) -> type:
    module_name, _, name = dotted.rpartition(".")
    if not (module_name == "llmbook" or module_name.startswith("llmbook.")) or not name.isidentifier():
        raise CheckpointError(
            f"{file} names the class {dotted!r}; load_model only builds llmbook's own classes "
            "(build other models yourself and call load_checkpoint(path, model))"
        )
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise CheckpointError(f"{file} names the class {dotted!r}, which this llmbook lacks ({error})") from None


def load_model(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model saved at ``path`` from its recorded class and configuration, with its weights.

    Works for llmbook's models with a dataclass ``config`` (GPT, BERT,
    LSTMLanguageModel). Nothing is unpickled: the class is imported by name,
    and only names inside ``llmbook`` are accepted.
    """
    checkpoint = read_checkpoint(path)
    file = checkpoint.path / "state.json"
    record = checkpoint.meta.get("model")
    if not record:
        raise CheckpointError(
            f"{file} records no model configuration (the model had no dataclass `config`); "
            "build the model yourself and call load_checkpoint(path, model)"
        )
    model_class = _llmbook_class(record["class"], file)
    config_class = _llmbook_class(record["config_class"], file)
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)) or not dataclasses.is_dataclass(
        config_class
    ):
        raise CheckpointError(f"{file} names {record['class']} / {record['config_class']}, not a model and its config")
    config = config_class(**record["config"])
    first = next(iter(inspect.signature(model_class).parameters), None)
    model = model_class(config) if first == "config" else model_class(**dataclasses.asdict(config))
    model.load_state_dict(_model_plan(checkpoint, model, strict=True))
    return model.to(device)
