"""Models shared across chapters: trained once by the book's own code, cached, reused (Chapters 8-11).

Later chapters reuse models trained earlier (Chapter 3's word vectors,
Chapter 6's character GPT) yet each chapter must run on its own, in Colab as
on a laptop. :func:`pretrained` returns such a model for the current budget
(:func:`llmbook.runtime.budget`): from the cache when an entry is there, else
it trains the model with the book's code (with a progress bar), stores it and
returns it. :func:`available` lists the names.

The cache folder is ``$LLMBOOK_CACHE_DIR``, else ``models/`` under the data
cache of :mod:`llmbook.data` (``~/.cache/llmbook/models``). An entry's key is
``<name>-<budget>-<hash>``, where the hash (sha256) covers the source of the
recipe, the source of every library module the recipe uses (followed through
their imports), the recipe's sizes at that budget and the registered sha256 of
its data files: change any of them and the old entry is no longer used.

An entry is a folder holding ``weights.safetensors`` and ``meta.json`` (the
configuration, the key, the training history and summary, metrics, and the
sha256 of the weights file); never a pickle. It is written under a temporary
name and renamed into place (``os.replace``), and a lock file makes a second
process wait for the first instead of training the same model twice. An entry
whose weights do not match their recorded sha256 (a half-copied or damaged
file) is reported, removed and trained again.

>>> sorted(available())
['byte-llama-base', 'char-gpt-shakespeare', 'glove-brown']
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmbook import data, runtime
from llmbook.train import TrainResult

__all__ = ["SIZES", "Pretrained", "available", "sizes", "cache_dir", "cache_key", "pretrained", "TRAININGS"]

FORMAT = "llmbook-pretrained-1"

# The sizes of each recipe at each budget: the one copy (chapters import them with sizes(name)).
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    # Chapter 3's GloVe run with AdaGrad (the paper's optimiser), on the Brown corpus.
    "glove-brown": {
        "smoke": dict(sentences=1500, min_count=3, window=10, n_embd=16, optimizer="adagrad", lr=0.4,
                      lr_schedule="linear", batch_size=2**14, x_max=10.0, epochs=2, max_seconds=1),
        "cpu": dict(sentences=None, min_count=5, window=10, n_embd=50, optimizer="adagrad", lr=0.4,
                    lr_schedule="linear", batch_size=2**14, x_max=10.0, epochs=4, max_seconds=35),
        "gpu": dict(sentences=None, min_count=5, window=10, n_embd=50, optimizer="adagrad", lr=0.4,
                    lr_schedule="linear", batch_size=2**14, x_max=10.0, epochs=10, max_seconds=120),
    },
    # Chapter 6's character GPT on Tiny Shakespeare (gpt, batch_size, steps, ...): the one copy of these sizes;
    # book/06_training.ipynb takes them from here with pretrained.sizes("char-gpt-shakespeare").
    "char-gpt-shakespeare": {
        "smoke": dict(gpt=dict(n_layer=1, n_head=2, n_embd=32, block_size=32, dropout=0.0),
                      batch_size=8, steps=60, lr=3e-3, warmup=10, eval_interval=20, eval_steps=4, log_interval=2),
        "cpu": dict(gpt=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
                    batch_size=16, steps=500, lr=2e-3, warmup=50, eval_interval=100, eval_steps=10, log_interval=5),
        "gpu": dict(gpt=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
                    batch_size=64, steps=1600, lr=1e-3, warmup=100, eval_interval=200, eval_steps=20,
                    log_interval=10),
    },
    # Chapter 9's byte-level base model: a Llama-style GPT (RMSNorm, SwiGLU, RoPE, grouped-query attention)
    # pre-trained on Tiny Shakespeare plus generated sentences with digits (llmbook.assistant.pretraining_text).
    "byte-llama-base": {
        "smoke": dict(gpt=dict(n_layer=1, n_head=2, n_kv_head=1, n_embd=32, block_size=128),
                      lines=400, batch_size=8, steps=40, lr=3e-3, warmup=5, eval_interval=20, eval_steps=2,
                      log_interval=5),
        "cpu": dict(gpt=dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, block_size=128),
                    lines=4000, batch_size=16, steps=300, lr=3e-3, warmup=20, eval_interval=100, eval_steps=5,
                    log_interval=10),
        "gpu": dict(gpt=dict(n_layer=6, n_head=8, n_kv_head=2, n_embd=256, block_size=128),
                    lines=20000, batch_size=64, steps=3000, lr=2e-3, warmup=100, eval_interval=250, eval_steps=20,
                    log_interval=10),
    },
}  # fmt: skip

# How many times each recipe has trained in this process (the tests check that a cache hit trains nothing).
TRAININGS: Counter = Counter()


@dataclass
class Pretrained:
    """A model from the registry, with what made it.

    ``model`` is the ``nn.Module`` (on :func:`llmbook.runtime.get_device`);
    ``tokenizer`` (a :class:`llmbook.tokenizers.CharTokenizer`) or ``vocab``
    and ``vectors`` (Chapter 3's :class:`llmbook.glove.Vocab` and the unit
    word vectors ``W + W~``) depending on the model; ``result`` the
    :class:`llmbook.train.TrainResult` of its training (history included);
    ``metrics`` what was measured right after training; ``sizes`` the recipe's
    sizes; ``key`` and ``path`` its cache entry; ``trained`` is True when this
    call trained it (False: loaded from the cache).
    """

    name: str
    budget: str
    key: str
    path: Path
    model: torch.nn.Module
    result: TrainResult
    sizes: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None
    vocab: Any = None
    vectors: np.ndarray | None = None
    trained: bool = False


# --------------------------------------------------------------------------- recipes
# A recipe's train(sizes) returns (model, extra, result, metrics): extra is JSON-able, what load needs
# besides the weights (e.g. the vocabulary). Its load(extra) returns an empty model of the right shape
# and the fields of Pretrained it fills.


def _glove_brown_train(size: dict[str, Any]):
    from llmbook import glove
    from llmbook.data import load_brown_sentences

    sentences = load_brown_sentences()
    if size["sentences"] is not None:
        sentences = sentences[: size["sentences"]]
    vocab = glove.build_vocab(sentences, min_count=size["min_count"])
    X = glove.cooccurrence(sentences, vocab, window=size["window"])
    model, result = glove.train_glove(
        X, n_embd=size["n_embd"], epochs=size["epochs"], lr=size["lr"], optimizer=size["optimizer"],
        lr_schedule=size["lr_schedule"], batch_size=size["batch_size"], x_max=size["x_max"], seed=0,
        max_seconds=size["max_seconds"], cpu_threads=1, progress=True,
    )  # fmt: skip
    metrics: dict[str, Any] = {
        "vocab_size": len(vocab),
        "nonzeros": int(X.nnz),
        "corpus_words": sum(map(len, sentences)),
    }
    try:
        vectors = model.vectors()
        metrics["analogy_accuracy"] = glove.analogy_eval(vectors, vocab).accuracy
        metrics["wordsim353_rho"] = glove.similarity_eval(vectors, vocab, "wordsim353.tsv").rho
    except ImportError:  # the evaluation files ship with gensim, an optional dependency
        pass
    extra = {"vocab_size": len(vocab), "n_embd": size["n_embd"], "words": vocab.words, "counts": vocab.counts.tolist()}
    return model, extra, result, metrics


def _glove_brown_load(extra: dict[str, Any]):
    from llmbook import glove

    vocab = glove.Vocab(extra["words"], np.array(extra["counts"], dtype=np.int64))
    model = glove.GloVe(extra["vocab_size"], extra["n_embd"])

    def fields(loaded):
        return {"vocab": vocab, "vectors": loaded.vectors()}

    return model, fields


def _train_gpt(config, ids: torch.Tensor, split: int, size: dict[str, Any]):
    """A GPT of ``config`` trained by the book's loop on ``ids`` (the first ``split`` for training, the rest
    for validation) with the sizes of a registry entry; returns (model, train_config, result)."""
    from llmbook.models import GPT
    from llmbook.train import TokenBatcher, TrainConfig, train

    batcher = TokenBatcher(ids[:split], ids[split:], block_size=size["gpt"]["block_size"])
    runtime.seed_everything(0)
    model = GPT(config)
    train_config = TrainConfig(
        max_steps=size["steps"], batch_size=size["batch_size"], lr=size["lr"], warmup_steps=size["warmup"],
        eval_interval=size["eval_interval"], eval_steps=size["eval_steps"], log_interval=size["log_interval"],
        betas=(0.9, 0.99), progress=True,
    )  # fmt: skip
    return model, train_config, train(model, batcher, train_config)


def _char_gpt_train(size: dict[str, Any]):
    from llmbook.data import load_text
    from llmbook.models import GPTConfig
    from llmbook.tokenizers import CharTokenizer

    text = load_text("tinyshakespeare.txt")
    tokenizer = CharTokenizer.train(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    split = int(0.9 * len(ids))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, bias=False, **size["gpt"])
    model, train_config, result = _train_gpt(config, ids, split, size)
    metrics = {"final_val_loss": result.final_val_loss, "best_val_loss": result.best_val_loss,
               "params": model.num_params(), "steps": result.steps}  # fmt: skip
    extra = {"gpt_config": dataclasses.asdict(config), "chars": tokenizer.chars,
             "train_config": dataclasses.asdict(train_config)}  # fmt: skip
    return model, extra, result, metrics


def _char_gpt_load(extra: dict[str, Any]):
    from llmbook.models import GPT, GPTConfig
    from llmbook.tokenizers import CharTokenizer

    model = GPT(GPTConfig(**extra["gpt_config"]))
    tokenizer = CharTokenizer(extra["chars"])
    return model, lambda loaded: {"tokenizer": tokenizer}


def _byte_llama_train(size: dict[str, Any]):
    from llmbook.assistant import chat_tokenizer, pretraining_text
    from llmbook.data import load_text
    from llmbook.models import GPTConfig

    tokenizer = chat_tokenizer()
    corpus = pretraining_text(load_text("tinyshakespeare.txt"), seed=0, lines=size["lines"])
    ids = torch.tensor(tokenizer.encode(corpus), dtype=torch.long)
    split = int(0.95 * len(ids))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, bias=False, norm="rmsnorm", mlp="swiglu", positions="rope",
                       **size["gpt"])  # fmt: skip
    model, _, result = _train_gpt(config, ids, split, size)
    metrics = {"final_val_loss": result.final_val_loss, "params": model.num_params(), "steps": result.steps,
               "tokens_per_second": result.tokens_per_second, "corpus_bytes": len(ids)}  # fmt: skip
    return model, {"gpt_config": dataclasses.asdict(config)}, result, metrics


def _byte_llama_load(extra: dict[str, Any]):
    from llmbook.assistant import chat_tokenizer
    from llmbook.models import GPT, GPTConfig

    return GPT(GPTConfig(**extra["gpt_config"])), lambda loaded: {"tokenizer": chat_tokenizer()}


@dataclass(frozen=True)
class _Recipe:
    description: str
    train: Callable
    load: Callable
    data: tuple[str, ...]  # names in llmbook.data.REGISTRY


_RECIPES: dict[str, _Recipe] = {
    "glove-brown": _Recipe(
        "Chapter 3's GloVe word vectors on the Brown corpus (AdaGrad, window 10): .vectors, .vocab, .model (GloVe)",
        _glove_brown_train, _glove_brown_load, ("brown.zip",),
    ),
    "char-gpt-shakespeare": _Recipe(
        "Chapter 6's character-level GPT on Tiny Shakespeare, trained by llmbook.train.train: "
        ".model (GPT), .tokenizer (CharTokenizer), .result (TrainResult with the history)",
        _char_gpt_train, _char_gpt_load, ("tinyshakespeare.txt",),
    ),
    "byte-llama-base": _Recipe(
        "Chapter 9's byte-level Llama-style base model (RMSNorm, SwiGLU, RoPE, GQA) on Tiny Shakespeare plus "
        "generated sentences with digits: .model (GPT), .tokenizer (bytes + <|user|>, <|assistant|>, <|end|>)",
        _byte_llama_train, _byte_llama_load, ("tinyshakespeare.txt",),
    ),
}  # fmt: skip


def available() -> dict[str, str]:
    """The names :func:`pretrained` knows, each with what it is."""
    return {name: recipe.description for name, recipe in _RECIPES.items()}


def _recipe(name: str) -> _Recipe:
    if name not in _RECIPES:
        raise ValueError(f"no pretrained model named {name!r}; available: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def sizes(name: str, budget: str | None = None) -> dict[str, Any]:
    """The sizes recipe ``name`` uses at ``budget`` (default: the current one), e.g. for a chapter's own run."""
    _recipe(name)
    return copy.deepcopy(runtime.pick(SIZES[name], _budget(budget)))  # a copy: editing it leaves the table alone


# --------------------------------------------------------------------------- keys and the cache


def cache_dir() -> Path:
    """``$LLMBOOK_CACHE_DIR``, else ``models/`` under :func:`llmbook.data.cache_dir`."""
    folder = os.environ.get("LLMBOOK_CACHE_DIR")
    return Path(folder).expanduser() if folder else data.cache_dir() / "models"


def _library_modules(functions: tuple[Callable, ...]) -> list[str]:
    """The llmbook modules the functions import, followed through those modules' own imports."""

    def imported(tree: ast.AST) -> set[str]:
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("llmbook.")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .attention import ...
                    base = "llmbook" + ("." + base if base else "")
                if base == "llmbook":  # from llmbook import glove, data
                    found |= {f"llmbook.{alias.name}" for alias in node.names}
                elif base.startswith("llmbook."):
                    found.add(base)
        return {name for name in found if importlib.util.find_spec(name) is not None}

    todo = set()
    for function in functions:
        todo |= imported(ast.parse(inspect.cleandoc("\n" + inspect.getsource(function))))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source = Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")
        todo |= imported(ast.parse(source)) - seen
    return sorted(seen)


def _code_and_data_hash(name: str, budget: str) -> str:
    recipe = _recipe(name)
    digest = hashlib.sha256()
    functions = (recipe.train, recipe.load, _train_gpt)  # _train_gpt: the loop the GPT recipes share
    for function in functions:
        digest.update(inspect.getsource(function).encode("utf-8"))
    for module in _library_modules(functions):
        digest.update(module.encode("utf-8"))
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    for dataset in recipe.data:
        digest.update(f"{dataset}:{data.REGISTRY[dataset].sha256}".encode())
    digest.update(json.dumps(runtime.pick(SIZES[name], budget), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _budget(budget: str | None) -> str:
    if budget is None:
        return runtime.budget()
    if budget not in runtime.BUDGETS:
        raise runtime.BudgetError(
            f"budget must be one of {', '.join(runtime.BUDGETS)} (or None: the current one), got {budget!r}"
        )
    return budget


def cache_key(name: str, budget: str | None = None) -> str:
    """``<name>-<budget>-<first 16 hex digits of the code-and-data hash>``: the folder name of the entry."""
    budget = _budget(budget)
    return f"{name}-{budget}-{_code_and_data_hash(name, budget)[:16]}"


class _Damaged(Exception):
    """A cache entry that cannot be used as it is."""


def _read_entry(path: Path, name: str, key: str) -> tuple[dict[str, Any], Path]:
    """The entry's metadata, after checking it is complete and its weights match their sha256."""
    meta_path, weights = path / "meta.json", path / "weights.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise _Damaged("meta.json or weights.safetensors is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _Damaged(f"meta.json is not valid JSON ({error})") from None
    if meta.get("format") != FORMAT or meta.get("key") != key or meta.get("name") != name:
        raise _Damaged(f"meta.json describes {meta.get('key')!r} (format {meta.get('format')!r}), not {key!r}")
    actual = data._sha256(weights)
    if actual != meta.get("weights_sha256"):
        raise _Damaged(
            f"weights.safetensors has sha256 {actual[:12]}…, but {str(meta.get('weights_sha256'))[:12]}… was recorded"
        )
    return meta, weights


def _load(name: str, budget: str, path: Path, meta: dict[str, Any], weights: Path, trained: bool) -> Pretrained:
    from safetensors.torch import load_model

    try:
        model, fields = _recipe(name).load(meta["extra"])
        summary = meta["summary"]
        result = TrainResult(history=meta["history"], best_val_loss=summary["best_val_loss"],
                             elapsed_seconds=summary["elapsed_seconds"], steps=summary["steps"],
                             stopped=summary["stopped"], message=summary["message"])  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:  # meta.json lacks a field or holds a wrong one
        raise _Damaged(f"meta.json is incomplete ({type(error).__name__}: {error})") from None
    try:
        load_model(model, str(weights), strict=True)
    except Exception as error:  # a file whose bytes match but does not fit the model: treat as damaged
        raise _Damaged(f"the weights do not load into the model ({error})") from None
    model.to(runtime.get_device())
    model.eval()
    return Pretrained(name=name, budget=budget, key=meta["key"], path=path, model=model, result=result,
                      sizes=meta["sizes"], metrics=meta["metrics"], trained=trained, **fields(model))  # fmt: skip


def _write_entry(folder: Path, path: Path, name: str, budget: str, key: str) -> None:
    """Train recipe ``name`` and write its entry at ``path`` atomically (a temporary folder, then os.replace)."""
    from safetensors.torch import save_model

    size = runtime.pick(SIZES[name], budget)
    # Two short lines: the message lands in a chapter's output, 76 columns wide.
    print(f"pretrained: no cached {name!r} at {budget!r}; training it now\n  cache key {key}")
    TRAININGS[name] += 1
    started = time.perf_counter()
    model, extra, result, metrics = _recipe(name).train(size)
    temporary = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=folder))
    try:
        weights = temporary / "weights.safetensors"
        save_model(model, str(weights))
        meta = {
            "format": FORMAT, "name": name, "budget": budget, "key": key,
            "code_and_data_sha256": _code_and_data_hash(name, budget),
            "sizes": size, "extra": extra, "metrics": metrics, "history": result.history,
            "summary": {"best_val_loss": result.best_val_loss, "elapsed_seconds": result.elapsed_seconds,
                        "steps": result.steps, "stopped": result.stopped, "message": result.message,
                        "wall_seconds": time.perf_counter() - started},
            "device": str(next(model.parameters()).device), "torch": torch.__version__,
            "weights_sha256": data._sha256(weights),
        }  # fmt: skip
        (temporary / "meta.json").write_text(json.dumps(meta, indent=1, default=float), encoding="utf-8")
        previous = None
        if path.exists():  # a damaged entry: move it aside, then swap the new one in
            previous = Path(tempfile.mkdtemp(prefix=f".{key}.old-", dir=folder))
            os.replace(path, previous / "entry")
        os.replace(temporary, path)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


@contextlib.contextmanager
def _locked(lock_path: Path):
    """Hold an inter-process lock on ``lock_path`` (filelock, which PyTorch installs); without it, no lock."""
    try:
        from filelock import FileLock
    except ImportError:  # the atomic rename still keeps entries whole; two processes may both train
        yield
        return
    with FileLock(str(lock_path)):
        yield


def pretrained(name: str, budget: str | None = None, *, retrain: bool = False) -> Pretrained:
    """The model ``name`` (see :func:`available`) trained at ``budget`` (default: the current budget).

    Loaded from the cache when a valid entry is there; otherwise trained now by
    the book's own code (a progress bar shows how far it is), stored, and
    returned. ``retrain=True`` trains a fresh one and replaces the entry.

    >>> vectors = pretrained("glove-brown")          # doctest: +SKIP
    >>> vectors.vectors.shape, len(vectors.vocab)   # doctest: +SKIP
    """
    _recipe(name)
    budget = _budget(budget)
    key = cache_key(name, budget)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / key
    with _locked(folder / f".{key}.lock"):
        if path.exists() and not retrain:
            try:
                meta, weights = _read_entry(path, name, key)
                return _load(name, budget, path, meta, weights, trained=False)
            except _Damaged as problem:
                print(f"pretrained: the cached entry {path} is damaged ({problem}); training it again")
        _write_entry(folder, path, name, budget, key)
        meta, weights = _read_entry(path, name, key)
        return _load(name, budget, path, meta, weights, trained=True)
