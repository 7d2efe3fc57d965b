"""Chapter 3: Word vectors (GloVe).

Global vectors for word representation (Pennington, Socher and Manning, 2014)
built from scratch: a vocabulary, a distance-weighted co-occurrence matrix
counted with NumPy, the GloVe model and its weighted least-squares loss,
a vectorised PyTorch training loop (AdaGrad as in the paper, or Adam) on
:func:`llmbook.runtime.get_device` with the knob names and the result type of
the book's one training loop (:class:`llmbook.train.TrainResult`), and the
standard evaluations: nearest neighbours, analogies (3CosAdd) and
word-similarity correlation (Spearman's rho, from SciPy).

The objective, for every nonzero count X_ij of word j in the context of word i::

    J = sum_ij f(X_ij) * (w_i . w~_j + b_i + b~_j - log X_ij) ** 2
    f(x) = min(1, (x / x_max) ** alpha)

The paper uses x_max = 100 and alpha = 0.75; Stanford's demo script uses
x_max = 10, which suits small corpora such as Brown (this module's default).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.stats
import torch
from torch import nn

from llmbook import runtime
from llmbook.train import TrainResult
from llmbook.validate import finite_float, nonnegative_int, one_of, positive_int

__all__ = [
    "Vocab",
    "build_vocab",
    "cooccurrence",
    "glove_weight",
    "GloVe",
    "train_glove",
    "glove_epoch",
    "glove_step",
    "normalize_rows",
    "nearest",
    "analogy",
    "AnalogyResult",
    "analogy_eval",
    "spearman",
    "SimilarityResult",
    "similarity_eval",
    "eval_file",
    "align_keyed_vectors",
    "train_word2vec",
    "pca_2d",
]


# --------------------------------------------------------------------------- vocabulary


@dataclass
class Vocab:
    """Words with their corpus counts, most frequent first; ``index`` maps a word to its row."""

    words: list[str]
    counts: np.ndarray  # (V,) int64, same order as words
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if len(self.words) != len(self.counts):
            raise ValueError(
                f"Vocab has {len(self.words)} words but {len(self.counts)} counts; pass one count per word"
            )
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("Vocab words must be unique; remove the duplicates")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        head = ", ".join(self.words[:5])
        return f"Vocab({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    def id(self, word: str) -> int:
        """The row of ``word``; a clear KeyError when it is not in the vocabulary."""
        try:
            return self.index[word]
        except KeyError:
            raise KeyError(
                f"{word!r} is not in the vocabulary ({len(self)} words, e.g. {', '.join(self.words[:3])}); "
                "check the spelling (words are lowercased) or lower min_count"
            ) from None

    def encode(self, words: Iterable[str]) -> np.ndarray:
        """Word ids of ``words``, with -1 for words outside the vocabulary."""
        get = self.index.get
        return np.fromiter((get(w, -1) for w in words), dtype=np.int64)


def _flatten(sentences_or_words) -> Iterable[str]:
    for item in sentences_or_words:
        if isinstance(item, str):
            yield item
        else:
            yield from item


def build_vocab(
    words: Iterable[str] | Iterable[Sequence[str]], min_count: int = 5, max_size: int | None = None
) -> Vocab:
    """The vocabulary of ``words`` (a list of words, or of sentences): words seen at least ``min_count`` times.

    Most frequent first, ties in alphabetical order, so the result does not
    depend on the order of the corpus.

    >>> build_vocab("the cat saw the dog the end".split(), min_count=2)
    Vocab(1 words: the)
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    counts = Counter(_flatten(words))
    if not counts:
        raise ValueError("the corpus is empty: build_vocab needs at least one word")
    kept = sorted(((c, w) for w, c in counts.items() if c >= min_count), key=lambda cw: (-cw[0], cw[1]))
    if max_size is not None:
        kept = kept[:max_size]
    if not kept:
        raise ValueError(
            f"no word occurs at least min_count={min_count} times (the most frequent occurs "
            f"{max(counts.values())} times); lower min_count or use a larger corpus"
        )
    return Vocab([w for _, w in kept], np.array([c for c, _ in kept], dtype=np.int64))


# --------------------------------------------------------------------------- co-occurrence


def _to_id_stream(sentences_or_ids, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """(ids, sentence_of_each_token) with out-of-vocabulary tokens removed."""
    if isinstance(sentences_or_ids, np.ndarray) or torch.is_tensor(sentences_or_ids):
        ids = np.asarray(sentences_or_ids, dtype=np.int64).reshape(-1)
        sentence = np.zeros(len(ids), dtype=np.int64)
    else:
        items = list(sentences_or_ids)
        if items and isinstance(items[0], str):  # one stream of words
            ids = vocab.encode(items)
            sentence = np.zeros(len(ids), dtype=np.int64)
        elif items and isinstance(items[0], (int, np.integer)):  # one stream of ids
            ids = np.asarray(items, dtype=np.int64)
            sentence = np.zeros(len(ids), dtype=np.int64)
        else:  # sentences, of words or of ids
            parts = [
                vocab.encode(s) if len(s) and isinstance(s[0], str) else np.asarray(s, dtype=np.int64).reshape(-1)
                for s in items
            ]
            lengths = np.array([len(p) for p in parts], dtype=np.int64)
            ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            sentence = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    if len(ids) and (ids.max() >= len(vocab) or ids.min() < -1):
        raise ValueError(
            f"word ids must lie in [0, {len(vocab)}) (or be -1 for unknown words); got {ids.min()}..{ids.max()}"
        )
    known = ids >= 0  # Stanford's cooccur skips unknown words entirely: they do not count toward distance
    return ids[known], sentence[known]


def cooccurrence(
    sentences_or_ids,
    vocab: Vocab,
    window: int = 10,
    symmetric: bool = True,
    weighting: str = "harmonic",
    cross_sentences: bool = True,
) -> scipy.sparse.csr_matrix:
    """The (V, V) co-occurrence matrix X: X[i, j] sums 1/distance over every
    time j appears near i.

    ``sentences_or_ids``: a list of sentences (lists of words or of ids),
    one stream of words, or a 1-D array of ids. Words outside ``vocab`` are
    dropped first (as Stanford's ``cooccur`` does), so they do not count
    toward distance. ``weighting="harmonic"`` adds 1/d for a pair d words
    apart (GloVe's choice), ``"uniform"`` adds 1. ``symmetric=True`` counts
    context on both sides (X is symmetric); ``False`` counts only the words
    to the left of each word. ``cross_sentences=True`` treats the corpus as
    one stream, like Stanford's tool; ``False`` stops the window at sentence
    ends.

    Vectorised: one pass per offset d = 1..window over the whole corpus.

    >>> v = Vocab(["a", "b"], [2, 1])
    >>> cooccurrence(["a", "b", "a"], v, window=2).toarray()
    array([[1., 2.],
           [2., 0.]])
    """
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
        raise ValueError("window must be a positive integer (words on each side), " + f"got {window!r}")
    if weighting not in ("harmonic", "uniform"):
        raise ValueError("weighting must be 'harmonic' (1/distance) or 'uniform', " + f"got {weighting!r}")
    ids, sentence = _to_id_stream(sentences_or_ids, vocab)
    if len(ids) < 2:
        raise ValueError(
            f"the corpus has {len(ids)} in-vocabulary word(s); "
            "co-occurrence needs at least two "
            "(is the corpus empty, or is min_count too high?)"
        )
    size = len(vocab)
    total = scipy.sparse.csr_matrix((size, size), dtype=np.float64)
    for distance in range(1, window + 1):
        if distance >= len(ids):
            break
        later, earlier = ids[distance:], ids[:-distance]  # each (N - d,): word and its context d to the left
        if not cross_sentences:
            same = sentence[distance:] == sentence[:-distance]
            later, earlier = later[same], earlier[same]
        weight = 1.0 / distance if weighting == "harmonic" else 1.0
        values = np.full(len(later), weight)
        # coo -> csr sums the repeated (i, j) pairs
        total = total + scipy.sparse.coo_matrix((values, (later, earlier)), shape=(size, size)).tocsr()
    if symmetric:
        total = total + total.T
    total = total.tocsr()
    total.sum_duplicates()
    total.eliminate_zeros()
    return total


# --------------------------------------------------------------------------- model and loss


def glove_weight(x: torch.Tensor, x_max: float = 10.0, alpha: float = 0.75) -> torch.Tensor:
    """GloVe's weighting f(x) = min(1, (x / x_max) ** alpha): rare pairs count less, frequent pairs are capped at 1."""
    if x_max <= 0:
        raise ValueError(f"x_max must be positive, got {x_max}")
    return torch.clamp(torch.pow(x / x_max, alpha), max=1.0)


class GloVe(nn.Module):
    """Word vectors W, context vectors W~ and their biases b, b~; predicts
    log X_ij as w_i . w~_j + b_i + b~_j.
    """

    def __init__(self, vocab_size: int, n_embd: int, generator: torch.Generator | None = None):
        super().__init__()
        vocab_size = positive_int(vocab_size, "vocab_size")
        n_embd = positive_int(n_embd, "n_embd", hint="the length of each word vector, e.g. 50")
        self.vocab_size, self.n_embd = vocab_size, n_embd

        def uniform(*shape):  # Stanford's initialisation: uniform in [-0.5, 0.5) / n_embd
            return (torch.rand(*shape, generator=generator) - 0.5) / n_embd

        self.W = nn.Parameter(uniform(vocab_size, n_embd))
        self.W_tilde = nn.Parameter(uniform(vocab_size, n_embd))
        self.b = nn.Parameter(uniform(vocab_size))
        self.b_tilde = nn.Parameter(uniform(vocab_size))

    def forward(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Predicted log co-occurrence per pair (i[k], j[k]): shape (B,)."""
        return (self.W[i] * self.W_tilde[j]).sum(-1) + self.b[i] + self.b_tilde[j]

    def loss(
        self, i: torch.Tensor, j: torch.Tensor, x: torch.Tensor, x_max: float = 10.0, alpha: float = 0.75
    ) -> torch.Tensor:
        """J over the given nonzero entries:
        sum f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2.
        """
        if torch.any(x <= 0):
            raise ValueError("GloVe's loss is defined on nonzero counts only " + "(log X_ij); drop the zeros first")
        difference = self(i, j) - torch.log(x)
        return (glove_weight(x, x_max, alpha) * difference.square()).sum()

    @torch.no_grad()
    def vectors(self, combine: str = "sum", normalize: bool = True) -> np.ndarray:
        """The word vectors as a (V, n_embd) NumPy array: W + W~ (the
        paper's choice) or W alone, unit length rows.
        """
        if combine == "sum":
            vectors = self.W + self.W_tilde
        elif combine == "W":
            vectors = self.W.clone()
        else:
            raise ValueError(f"combine must be 'sum' (W + W~) or 'W', got {combine!r}")
        vectors = vectors.float().cpu().numpy()
        return normalize_rows(vectors) if normalize else vectors


def _as_triples(X) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    if scipy.sparse.issparse(X):
        coo = X.tocoo()
        if coo.shape[0] != coo.shape[1]:
            raise ValueError(f"the co-occurrence matrix must be square (V, V), got shape {coo.shape}")
        keep = coo.data != 0
        return coo.row[keep], coo.col[keep], coo.data[keep], coo.shape[0]
    if isinstance(X, tuple) and len(X) in (3, 4):
        i, j, x = (np.asarray(a) for a in X[:3])
        size = int(X[3]) if len(X) == 4 else int(max(i.max(), j.max())) + 1
        keep = x != 0
        return i[keep], j[keep], x[keep], size
    raise TypeError(
        f"X must be a scipy.sparse matrix from cooccurrence(...) or a tuple (i, j, x[, vocab_size]); got {type(X).__name__}"
    )


def train_glove(
    X,
    n_embd: int = 100,
    epochs: int = 25,
    lr: float = 0.05,
    optimizer: str = "adagrad",
    batch_size: int = 2**14,
    lr_schedule: str = "constant",
    x_max: float = 10.0,
    alpha: float = 0.75,
    device: str | torch.device | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
    cpu_threads: int | None = None,
    callback=None,
) -> tuple[GloVe, TrainResult]:
    """Fit a :class:`GloVe` model to the co-occurrence matrix ``X``; returns
    ``(model, result)``.

    The knobs have the names of :class:`llmbook.train.TrainConfig` (``lr``,
    ``batch_size``, ``seed``, ``max_seconds``, ``progress``) and ``result``
    is the same :class:`llmbook.train.TrainResult` that
    :func:`llmbook.train.train` returns; ``device`` defaults to
    :func:`llmbook.runtime.get_device` (a GPU when there is one). Each epoch
    visits every nonzero X_ij once, in shuffled mini-batches of
    ``batch_size`` pairs (all on ``device``: tensors, no Python loop per
    pair). ``optimizer="adagrad"`` follows the paper (which used lr 0.05
    with one pair per update; with mini-batches of 16k pairs lr 0.3-0.4
    worked best on Brown); ``"adam"`` is the modern default (lr 0.02 on
    Brown). ``lr_schedule="linear"`` lowers the learning rate linearly to
    zero over the planned ``epochs``. ``max_seconds`` (training time,
    checked after every mini-batch) stops training, possibly mid-epoch;
    ``result.stopped`` is then ``"time limit"``, else ``"completed"``.
    ``cpu_threads`` sets torch's thread count while training on the CPU
    (restored afterwards): a mini-batch is a few dozen small operations, and
    on a shared CPU one thread is often the fastest.

    ``result.history`` has one entry per epoch (and one for the partial
    epoch a time limit interrupts) under the keys of
    :func:`llmbook.train.train` that apply: ``log_step`` (optimizer steps so
    far), ``loss`` (the epoch's mean of f(X_ij)(...)^2 per nonzero, i.e. J
    over the nonzeros), ``lr`` (the learning rate of the epoch's last step),
    ``seconds`` (training time so far) and ``tokens_per_second`` (here:
    co-occurrence pairs per second during the epoch); plus ``epoch`` (epochs
    done, fractional when stopped mid-epoch). GloVe has no validation split,
    so ``val_loss`` stays empty and ``result.final_val_loss`` is NaN.
    ``callback(epoch, model, history)``, if given, runs after every epoch
    (e.g. to evaluate); its time is not counted.
    """
    epochs, batch_size, n_embd, lr, x_max, alpha, max_seconds, cpu_threads, seed = _checked_settings(
        epochs, batch_size, n_embd, lr, x_max, alpha, max_seconds, cpu_threads, seed, optimizer, lr_schedule
    )
    rows, cols, counts, size = _as_triples(X)
    if len(counts) == 0:
        raise ValueError("the co-occurrence matrix has no nonzero entries: " + "nothing to train on")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("co-occurrence counts must be finite and non-negative; " + "count with glove.cooccurrence")
    device = torch.device(device) if device is not None else runtime.get_device()
    generator = torch.Generator().manual_seed(seed)
    model = GloVe(size, n_embd, generator=generator).to(device)
    x = torch.as_tensor(counts, dtype=torch.float32, device=device)
    # i, j, log X_ij and f(X_ij) of every nonzero, on the device; the
    # weights never change
    pairs = (
        torch.as_tensor(rows, dtype=torch.int64, device=device),
        torch.as_tensor(cols, dtype=torch.int64, device=device),
        torch.log(x),
        glove_weight(x, x_max, alpha),
    )
    steps_per_epoch = math.ceil(len(counts) / batch_size)
    opt, scheduler = _glove_optimizer(model, optimizer, lr, lr_schedule, epochs * steps_per_epoch)
    # On a GPU the shuffles are drawn there; elsewhere on the CPU (then
    # moved), which also works for MPS.
    shuffle = torch.Generator(device=device).manual_seed(seed + 1) if device.type == "cuda" else generator
    keys = ("log_step", "loss", "lr", "seconds", "tokens_per_second", "epoch", "val_loss")
    history: dict[str, list] = {key: [] for key in keys}
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress, desc="GloVe", leave=True)
    threads = torch.get_num_threads()
    if cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(cpu_threads)
    began, seconds, step, stopped = time.perf_counter(), 0.0, 0, "completed"  # seconds: callbacks excluded
    try:
        for epoch in range(1, epochs + 1):
            epoch_start = time.perf_counter()
            deadline = None if max_seconds is None else epoch_start + max_seconds - seconds
            order = torch.randperm(len(counts), generator=shuffle, device=shuffle.device).to(device)
            loss_sum, pairs_done, steps, last_lr = glove_epoch(
                model, opt, pairs, order, batch_size, scheduler, deadline, bar
            )
            mean_loss = loss_sum.item() / pairs_done  # .item() waits for a GPU to finish the epoch
            epoch_seconds = time.perf_counter() - epoch_start
            seconds, step = seconds + epoch_seconds, step + steps
            if max_seconds is not None and seconds >= max_seconds and (epoch < epochs or pairs_done < len(counts)):
                stopped = "time limit"
            history["log_step"].append(step)
            history["loss"].append(mean_loss)
            history["lr"].append(last_lr)
            history["seconds"].append(seconds)
            history["tokens_per_second"].append(pairs_done / max(epoch_seconds, 1e-9))
            history["epoch"].append(epoch - 1 + pairs_done / len(counts))  # fractional when stopped mid-epoch
            bar.set_postfix(epoch=f"{history['epoch'][-1]:.2f}", loss=f"{mean_loss:.4f}")
            if callback is not None:
                callback(epoch, model, history)
            if stopped != "completed":
                break
    finally:
        bar.close()
        torch.set_num_threads(threads)
    message = ""
    if stopped == "time limit":
        message = (
            f"stopped after {history['epoch'][-1]:.2f} of {epochs} epochs: "
            + f"{seconds:.1f} s of training (max_seconds)"
        )
    return model, TrainResult(
        history=history,
        best_val_loss=float("nan"),
        elapsed_seconds=time.perf_counter() - began,
        steps=step,
        stopped=stopped,
        message=message,
    )


def glove_step(model: GloVe, optimizer: torch.optim.Optimizer, i, j, log_x, weight) -> torch.Tensor:
    """One update of GloVe on a mini-batch of nonzero pairs (i, j); returns the batch's J (a detached scalar).

    ``log_x`` holds log X_ij and ``weight`` holds f(X_ij) for the same pairs.
    """
    difference = model(i, j) - log_x  # (B,): w_i . w~_j + b_i + b~_j - log X_ij
    loss = (weight * difference.square()).sum()  # J restricted to this batch
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def glove_epoch(model, optimizer, pairs, order, batch_size, scheduler=None, deadline=None, bar=None):
    """One pass over the nonzero X_ij in the shuffled ``order``, ``batch_size`` pairs per update.

    ``pairs`` = (i, j, log X_ij, f(X_ij)), each a tensor over all nonzeros. The
    pass stops early once ``time.perf_counter()`` reaches ``deadline``. Returns
    (sum of J over the visited pairs, pairs visited, updates, learning rate of
    the last update).
    """
    i_all, j_all, log_x_all, f_all = pairs
    loss_sum = torch.zeros((), device=log_x_all.device)
    pairs_done = steps = 0
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]  # (B,) indices into the nonzeros
        lr = optimizer.param_groups[0]["lr"]
        loss_sum += glove_step(model, optimizer, i_all[batch], j_all[batch], log_x_all[batch], f_all[batch])
        if scheduler is not None:
            scheduler.step()
        pairs_done, steps = pairs_done + len(batch), steps + 1
        if bar is not None:
            bar.update(1)
        if deadline is not None and time.perf_counter() >= deadline:
            break
    return loss_sum, pairs_done, steps, lr


def _checked_settings(
    epochs, batch_size, n_embd, lr, x_max, alpha, max_seconds, cpu_threads, seed, optimizer, lr_schedule
):
    """train_glove's numeric settings, each checked (llmbook.validate), in the order given."""
    one_of(optimizer, "optimizer", ("adagrad", "adam"))
    one_of(lr_schedule, "lr_schedule", ("constant", "linear"))
    return (
        positive_int(epochs, "epochs"),
        positive_int(batch_size, "batch_size"),
        positive_int(n_embd, "n_embd"),
        finite_float(lr, "lr", low=0, low_inclusive=False, hint="AdaGrad: about 0.05-0.4, Adam: about 0.02"),
        finite_float(x_max, "x_max", low=0, low_inclusive=False, hint="10 for small corpora, 100 in the paper"),
        finite_float(alpha, "alpha", low=0, hint="the paper uses 0.75"),
        None
        if max_seconds is None
        else finite_float(max_seconds, "max_seconds", low=0, low_inclusive=False, hint="or None for no limit"),
        None
        if cpu_threads is None
        else positive_int(cpu_threads, "cpu_threads", hint="or None to keep torch's thread count"),
        nonnegative_int(seed, "seed"),
    )


def _glove_optimizer(model: GloVe, optimizer: str, lr: float, lr_schedule: str, total_steps: int):
    """AdaGrad as Stanford's code (squared-gradient sums start at 1, which damps the first steps) or Adam."""
    if optimizer == "adagrad":
        opt = torch.optim.Adagrad(model.parameters(), lr=lr, initial_accumulator_value=1.0)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = None
    if lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / total_steps))
    return opt, scheduler


# --------------------------------------------------------------------------- evaluation


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _check_shapes(vectors: np.ndarray, vocab: Vocab) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(vocab):
        raise ValueError(f"vectors must have shape (len(vocab), n_embd) = ({len(vocab)}, n_embd); got {vectors.shape}")
    return vectors


def nearest(vectors: np.ndarray, vocab: Vocab, word: str, k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` words most similar to ``word`` by cosine similarity (the word itself left out)."""
    vectors = normalize_rows(_check_shapes(vectors, vocab))
    row = vocab.id(word)
    similarity = vectors @ vectors[row]  # (V,)
    similarity[row] = -np.inf
    top = np.argsort(-similarity)[:k]
    return [(vocab.words[t], float(similarity[t])) for t in top]


def analogy(vectors: np.ndarray, vocab: Vocab, a: str, b: str, c: str, k: int = 1) -> list[str] | str:
    """3CosAdd: the word d with b - a + c closest to d ("a is to b as c is
    to d"), never a, b or c.

    Returns the best word, or the ``k`` best when k > 1.
    """
    vectors = normalize_rows(_check_shapes(vectors, vocab))
    ia, ib, ic = vocab.id(a), vocab.id(b), vocab.id(c)
    query = vectors[ib] - vectors[ia] + vectors[ic]
    # (V,) cosine up to the query's length, which does not change the
    # ranking
    scores = vectors @ query
    scores[[ia, ib, ic]] = -np.inf
    top = np.argsort(-scores)[:k]
    words = [vocab.words[t] for t in top]
    return words[0] if k == 1 else words


def eval_file(name: str) -> Path:
    """Path of an evaluation file shipped with gensim: ``questions-words.txt``, ``wordsim353.tsv``, ``simlex999.txt``."""
    from gensim.test.utils import datapath

    path = Path(datapath(name))
    if not path.exists():
        raise FileNotFoundError(f"{name} is not among gensim's test data ({path.parent}); is gensim >= 4 installed?")
    return path


@dataclass
class AnalogyResult:
    """Analogy accuracy over the covered questions, overall and per category."""

    correct: int
    covered: int
    total: int
    by_category: dict[str, tuple[int, int]]  # category -> (correct, covered)

    @property
    def accuracy(self) -> float:
        return self.correct / self.covered if self.covered else 0.0

    def category_accuracy(self) -> dict[str, float]:
        return {name: (c / n if n else 0.0) for name, (c, n) in self.by_category.items()}


def analogy_eval(
    vectors: np.ndarray, vocab: Vocab, path: str | Path | None = None, batch_size: int = 1024
) -> AnalogyResult:
    """Accuracy of 3CosAdd on an analogy file (default gensim's ``questions-words.txt``, 19,544 questions).

    Lowercased; a question counts as covered when its four words are in the
    vocabulary; uncovered questions are skipped (as gensim does). Accuracy is
    correct / covered.
    """
    vectors = normalize_rows(_check_shapes(vectors, vocab))
    path = Path(path) if path is not None else eval_file("questions-words.txt")
    categories: list[str] = []
    question_category: list[int] = []
    questions: list[list[int]] = []
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            categories.append(line[1:].strip())
            continue
        words = line.lower().split()
        if len(words) != 4:
            continue
        if not categories:
            categories.append("uncategorised")
        total += 1
        ids = [vocab.index.get(w, -1) for w in words]
        if min(ids) >= 0:
            questions.append(ids)
            question_category.append(len(categories) - 1)
    by_category = {name: [0, 0] for name in categories}
    correct = 0
    if questions:
        q = np.array(questions, dtype=np.int64)  # (Q, 4): a, b, c, expected d
        q_category = np.array(question_category)
        hits = np.zeros(len(q), dtype=bool)
        for begin in range(0, len(q), batch_size):
            block = q[begin : begin + batch_size]
            query = vectors[block[:, 1]] - vectors[block[:, 0]] + vectors[block[:, 2]]  # (B, n_embd)
            scores = query @ vectors.T  # (B, V)
            rows = np.arange(len(block))[:, None]
            scores[rows, block[:, :3]] = -np.inf  # never answer with a query word
            hits[begin : begin + len(block)] = scores.argmax(axis=1) == block[:, 3]
        correct = int(hits.sum())
        for index, name in enumerate(categories):
            in_category = q_category == index
            by_category[name] = [int(hits[in_category].sum()), int(in_category.sum())]
    return AnalogyResult(correct, len(questions), total, {k: (v[0], v[1]) for k, v in by_category.items()})


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank): ``scipy.stats.spearmanr(x, y)``'s statistic.

    A thin wrapper that checks its input, so that a mismatch is an error rather than a silent NaN. When
    either sequence is constant there is no ranking to correlate: NaN, without SciPy's warning.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"spearman needs two 1-D sequences of the same length >= 2, got shapes {x.shape}, {y.shape}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(x, y).statistic)


@dataclass
class SimilarityResult:
    """Spearman's rho between cosine similarity and human scores, on the covered pairs."""

    rho: float
    covered: int
    total: int

    @property
    def coverage(self) -> float:
        return self.covered / self.total if self.total else 0.0


def similarity_eval(vectors: np.ndarray, vocab: Vocab, path: str | Path) -> SimilarityResult:
    """Word-similarity evaluation on a file of ``word1<TAB>word2<TAB>score`` lines (``#`` comments).

    Pass a path, or a gensim file name: ``"wordsim353.tsv"`` or ``"simlex999.txt"``.
    Pairs with a word outside the vocabulary are skipped (as gensim does).
    """
    vectors = normalize_rows(_check_shapes(vectors, vocab))
    path = Path(path)
    if not path.exists() and path.name == str(path):
        path = eval_file(str(path))
    model_scores, human_scores, total = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"{path.name}: expected 'word1<TAB>word2<TAB>score', got {line!r}")
        total += 1
        first, second = vocab.index.get(parts[0].lower(), -1), vocab.index.get(parts[1].lower(), -1)
        if first < 0 or second < 0:
            continue
        model_scores.append(float(vectors[first] @ vectors[second]))
        human_scores.append(float(parts[2]))
    if len(model_scores) < 2:
        return SimilarityResult(float("nan"), len(model_scores), total)
    return SimilarityResult(spearman(model_scores, human_scores), len(model_scores), total)


# --------------------------------------------------------------------------- word2vec baseline and plots


def align_keyed_vectors(keyed_vectors, vocab: Vocab) -> np.ndarray:
    """Rows of a gensim ``KeyedVectors`` put in ``vocab``'s order (zeros for missing words), for our evaluations."""
    out = np.zeros((len(vocab), keyed_vectors.vector_size), dtype=np.float32)
    for row, word in enumerate(vocab.words):
        index = keyed_vectors.key_to_index.get(word)
        if index is not None:
            out[row] = keyed_vectors.vectors[index]
    return out


def train_word2vec(
    sentences: list[list[str]],
    vocab: Vocab,
    n_embd: int = 100,
    window: int = 10,
    epochs: int = 5,
    negative: int = 5,
    sg: int = 1,
    workers: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """gensim's word2vec (skip-gram by default) on the same sentences; returns (vectors in vocab order, seconds)."""
    from gensim.models import Word2Vec

    min_count = int(vocab.counts.min())
    start = time.perf_counter()
    model = Word2Vec(
        sentences,
        vector_size=n_embd,
        window=window,
        min_count=min_count,
        sg=sg,
        negative=negative,
        workers=workers,
        epochs=epochs,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    return align_keyed_vectors(model.wv, vocab), seconds


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their two principal components: (n, n_embd) -> (n, 2)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)  # components: (k, n_embd)
    return centred @ components[:2].T
