"""Every data set the book uses: download once, verify, cache.

Used by every chapter. :func:`fetch` returns the path of a verified local copy:
it looks in the cache (``LLMBOOK_DATA_DIR``, default ``~/.cache/llmbook``),
then in an offline mirror folder (``LLMBOOK_DATA_MIRROR``, used by the tests),
then downloads from the canonical URL. Every file is checked against its
sha256 before use, and written into the cache atomically, so an interrupted
download never leaves a half file behind. Anything that goes wrong raises a
:class:`DataError` that says which file, what happened and what to do.

The training batchers live here too: :class:`TokenBatcher` cuts random
next-token windows from a token stream and :class:`MaskedLMBatcher` makes
BERT's masked-token batches (Chapters 5 and 6; ``llmbook.train`` re-exports both).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from llmbook.validate import finite_float, nonnegative_int, one_of, positive_int

__all__ = [
    "DataError",
    "Dataset",
    "REGISTRY",
    "cache_dir",
    "fetch",
    "load_text",
    "load_brown_words",
    "load_brown_sentences",
    "load_movie_reviews",
    "load_tang_poems",
    "TokenBatcher",
    "MaskedLMBatcher",
]


class DataError(RuntimeError):
    """A data set could not be provided; the message says which file and what to do."""


@dataclass(frozen=True)
class Dataset:
    name: str  # also the file name inside the cache and the mirror
    url: str
    sha256: str
    size: int  # bytes
    licence: str


_POETRY = (
    "https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/"
    "99ebbef7e1345c0985c44b9fd96a3f9e776f117b/%E5%85%A8%E5%94%90%E8%AF%97/"
)
_POETRY_FILES = {
    "poet.tang.0.json": (408405, "4f88f429938082523cdc72a1612bd7a7c3e3f7a33f8192c61ae51340efc3c92d"),
    "poet.tang.1000.json": (477519, "6e703b8d8dcedbd6110f6d48d043665ca2131db2035a5bfcef5e59a19aeb6d75"),
    "poet.tang.2000.json": (417948, "ec28efa7e2ae9cdbbba09f0ed186e32ccae47a325ad1e5816b7ad56071c1665a"),
    "poet.tang.3000.json": (453811, "9e4ba2323752b6b9fbdba875cdbc6a26636fe0cabc85fd066370d4915952001f"),
    "poet.tang.4000.json": (488655, "b8a7946c879b9658a6c667a4c55f776fae7e5e00a17789ab06b274c1429afc66"),
    "poet.tang.5000.json": (467225, "a0306e6962cff01639ad9a00b042a201b8dec1f30fa5d768a7b112589887861e"),
    "poet.tang.6000.json": (470031, "982a21d2b15922b406911f1c825785054314c686da86b2155d7aebb362d22771"),
    "poet.tang.7000.json": (474558, "a6fb69d7b4343c904dc56ae5aae34facc2478d196b51c37ceba9d1e2f171b342"),
    "poet.tang.8000.json": (574248, "ac3848e95b02736168003863795de4474838c2d6a71a24ca2a4a280ea5177773"),
    "poet.tang.9000.json": (476882, "b99d6596e3a1fe1a661652383083f92d196b8baf4e461d087081d5e1e1b7a51f"),
}

REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "tinyshakespeare.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            1115394,
            "public domain text (Shakespeare)",
        ),
        Dataset(
            "brown.zip",
            "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/brown.zip",
            "9b275f9b3b95d7bd66ccfb7cd259f445a13bbe5d1f4107aba09fd3e8364bafa6",
            3314357,
            "Brown Corpus, non-commercial use",
        ),
        Dataset(
            "movie_reviews.zip",
            "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/movie_reviews.zip",
            "a41211ae685019137410268134db6a1a14428c89b671eb83056151a878539008",
            4004848,
            "Pang & Lee polarity v2.0; no licence stated (README: distributed with NLTK with permission from the authors)",
        ),
        *[
            Dataset(f"chinese-poetry/{file}", _POETRY + file, sha, size, "MIT (chinese-poetry)")
            for file, (size, sha) in _POETRY_FILES.items()
        ],
        Dataset(
            "chinese-poetry/tangshi300.json",
            _POETRY + "%E5%94%90%E8%AF%97%E4%B8%89%E7%99%BE%E9%A6%96.json",
            "d77a145f7470da2ed2f79515944563c062ffc43fceda07f195a36ead66b7e5c7",
            190787,
            "MIT (chinese-poetry)",
        ),
    ]
}


def cache_dir() -> Path:
    """Where verified copies live: ``LLMBOOK_DATA_DIR`` or ``~/.cache/llmbook``."""
    return Path(os.environ.get("LLMBOOK_DATA_DIR") or Path.home() / ".cache" / "llmbook").expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# A file verified once in this process is not hashed again unless it changed.
_verified: dict[Path, tuple[int, float]] = {}


def _check(path: Path, dataset: Dataset, where: str, fix: str) -> None:
    """Raise a DataError unless ``path`` holds exactly ``dataset``'s bytes."""
    stat = path.stat()
    if _verified.get(path) == (stat.st_size, stat.st_mtime):
        return
    if stat.st_size != dataset.size:
        raise DataError(
            f"{dataset.name} in {where} ({path}) has {stat.st_size:,} bytes, expected {dataset.size:,} "
            f"(truncated or not the right file): {fix}"
        )
    actual = _sha256(path)
    if actual != dataset.sha256:
        raise DataError(
            f"sha256 mismatch for {dataset.name} in {where} ({path}): expected {dataset.sha256[:12]}…, "
            f"got {actual[:12]}…: {fix}"
        )
    _verified[path] = (stat.st_size, stat.st_mtime)


def _atomic_copy_into(target: Path, write, verify=None) -> None:
    """Create ``target`` by calling ``write(handle)`` on a temporary file in the same folder, then renaming.

    ``verify(path)``, if given, checks the temporary file before the rename, so a file that
    fails verification never appears under ``target``'s name, not even for a moment.
    Whatever goes wrong (including KeyboardInterrupt), the temporary file is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    try:
        with handle:
            write(handle)
        if verify is not None:
            verify(Path(handle.name))
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _download(dataset: Dataset, handle) -> None:
    from tqdm.auto import tqdm

    try:
        with urllib.request.urlopen(dataset.url, timeout=60) as response:
            with tqdm(total=dataset.size, unit="B", unit_scale=True, desc=f"downloading {dataset.name}") as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    handle.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        mirror = os.environ.get("LLMBOOK_DATA_MIRROR")
        where = (
            f"LLMBOOK_DATA_MIRROR={mirror} does not hold {dataset.name}; "
            if mirror
            else "no mirror is set (LLMBOOK_DATA_MIRROR); "
        )
        raise DataError(
            f"could not download {dataset.name} from {dataset.url} ({error}); {where}"
            f"if this machine is offline, download that URL elsewhere and put the file at "
            f"{cache_dir() / dataset.name}, or set LLMBOOK_DATA_MIRROR to a folder that holds {dataset.name}."
        ) from error


def fetch(name: str) -> Path:
    """The path of a verified local copy of the data set ``name`` (see :data:`REGISTRY`)."""
    if name not in REGISTRY:
        raise DataError(f"unknown data set {name!r}; the book knows: {', '.join(sorted(REGISTRY))}")
    dataset = REGISTRY[name]
    target = cache_dir() / name
    if target.exists():
        _check(target, dataset, "the cache", f"delete {target} and run again to fetch a fresh copy")
        return target
    mirror = os.environ.get("LLMBOOK_DATA_MIRROR")
    if mirror:
        source = Path(mirror).expanduser() / name
        if source.exists():
            _check(source, dataset, "the mirror LLMBOOK_DATA_MIRROR", "replace it with the file from " + dataset.url)
            with open(source, "rb") as src:
                _atomic_copy_into(target, lambda handle: shutil.copyfileobj(src, handle))
            return target
    # The download is verified before it takes the cache's name: bytes that fail never stay behind.
    _atomic_copy_into(
        target,
        lambda handle: _download(dataset, handle),
        verify=lambda path: _check(
            path,
            dataset,
            "the download",
            f"the server sent other bytes; try again later or fetch {dataset.url} by hand",
        ),
    )
    return target


def load_text(name: str) -> str:
    """The data set ``name`` decoded as UTF-8 text (e.g. ``load_text("tinyshakespeare.txt")``)."""
    return fetch(name).read_text(encoding="utf-8")


_HAS_WORD = re.compile(r"[^\W_]")  # a letter or digit in any script


def load_brown_sentences() -> list[list[str]]:
    """The Brown corpus as sentences of lowercased words (POS tags dropped).

    Each ``word/TAG`` token is reduced to its lowercased word; tokens with no
    letter or digit (punctuation) are dropped. About 57k sentences, 1.0M words.
    """
    sentences = []
    with zipfile.ZipFile(fetch("brown.zip")) as archive:
        names = sorted(n for n in archive.namelist() if re.fullmatch(r"brown/c[a-r]\d\d", n))
        for member in names:
            for line in io.TextIOWrapper(archive.open(member), encoding="utf-8"):
                words = []
                for token in line.split():
                    word = token.rsplit("/", 1)[0].lower()
                    if _HAS_WORD.search(word):
                        words.append(word)
                if words:
                    sentences.append(words)
    return sentences


def load_brown_words() -> list[str]:
    """The Brown corpus as one list of lowercased words (see :func:`load_brown_sentences`)."""
    return [word for sentence in load_brown_sentences() for word in sentence]


def load_movie_reviews() -> list[tuple[str, int]]:
    """The 2,000 movie reviews of Pang & Lee as (text, label) with label 1 = positive, 0 = negative."""
    reviews = []
    with zipfile.ZipFile(fetch("movie_reviews.zip")) as archive:
        for member in sorted(archive.namelist()):
            match = re.fullmatch(r"movie_reviews/(pos|neg)/[^/]+\.txt", member)
            if match:
                text = archive.read(member).decode("utf-8")
                reviews.append((text, 1 if match.group(1) == "pos" else 0))
    return reviews


def load_tang_poems(files: int = 10) -> list[dict]:
    """Tang poems (Traditional script) from the Complete Tang Poems: dicts with author, title, paragraphs.

    ``files`` of the ten 1,000-poem files are read (1 to 10).
    """
    names = list(_POETRY_FILES)
    if not 1 <= files <= len(names):
        raise ValueError(f"files must be between 1 and {len(names)}, got {files}")
    poems = []
    for file in names[:files]:
        poems.extend(json.loads(fetch(f"chinese-poetry/{file}").read_text(encoding="utf-8")))
    return poems


# --------------------------------------------------------------------------- training batches


def _as_token_tensor(ids, name: str):
    tensor = torch.as_tensor(ids)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {tuple(tensor.shape)}; flatten it")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {tensor.dtype}; convert with .long()")
    if len(tensor) and int(tensor.min()) < 0:
        raise ValueError(f"{name} contains the negative token id {int(tensor.min())}; token ids start at 0")
    return tensor.long()


class TokenBatcher:
    """Random windows of a token stream for next-token prediction (Chapter 6's batches).

    ``get_batch(split, batch_size, generator)`` draws ``batch_size`` start
    positions with ``generator`` (so a saved generator state replays the same
    batches) and returns ``x`` (B, T) and ``y`` (B, T) where ``y`` is ``x``
    shifted one token to the left: ``y[b, t]`` is the token after ``x[b, t]``.

    >>> batcher = TokenBatcher(torch.arange(100), torch.arange(100, 120), block_size=4)
    >>> x, y = batcher.get_batch("train", 2, torch.Generator().manual_seed(0))
    >>> bool((y[:, :-1] == x[:, 1:]).all()) and bool((y == x + 1).all())
    True
    """

    def __init__(self, train_ids, val_ids, block_size: int):
        self.block_size = positive_int(block_size, "block_size")
        self.data = {"train": _as_token_tensor(train_ids, "train_ids"), "val": _as_token_tensor(val_ids, "val_ids")}
        for split, ids in self.data.items():
            if len(ids) <= self.block_size:
                raise ValueError(
                    f"the {split} split has {len(ids)} tokens, but a window of block_size={self.block_size} "
                    f"needs at least {self.block_size + 1} (inputs plus one target); "
                    "use more data, a smaller block_size, or a different train/validation split"
                )

    def _split(self, split: str):
        return self.data[one_of(split, "split", ("train", "val"))]

    def get_batch(self, split: str, batch_size: int, generator=None):
        ids = self._split(split)
        starts = torch.randint(
            len(ids) - self.block_size, (positive_int(batch_size, "batch_size"),), generator=generator
        )
        offsets = torch.arange(self.block_size + 1)
        windows = ids[starts[:, None] + offsets]  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


class MaskedLMBatcher(TokenBatcher):
    """BERT-style masked-language-model batches from a token stream (Chapters 5 and 6).

    Each position of a random window is selected with probability
    ``mask_prob`` (at least one per row). A selected position becomes
    ``mask_token_id`` 80% of the time, a random token 10%, and stays itself
    10%; its target is the original token. Every other target is ``-100``,
    the ``ignore_index`` of :func:`torch.nn.functional.cross_entropy`.
    ``special_ids`` (e.g. the mask token itself) are never drawn as random
    replacements.
    """

    ignore_index = -100

    def __init__(
        self,
        train_ids,
        val_ids,
        block_size: int,
        mask_token_id: int,
        vocab_size: int,
        mask_prob: float = 0.15,
        special_ids=(),
    ):
        super().__init__(train_ids, val_ids, block_size)
        self.vocab_size = positive_int(vocab_size, "vocab_size", minimum=2)
        self.mask_prob = finite_float(mask_prob, "mask_prob", low=0, high=1, low_inclusive=False, hint="BERT uses 0.15")
        mask_token_id = nonnegative_int(mask_token_id, "mask_token_id")
        if mask_token_id >= self.vocab_size:
            raise ValueError(
                f"mask_token_id {mask_token_id} is outside the vocabulary 0..{self.vocab_size - 1}; "
                "give the mask token an id below vocab_size (e.g. vocab_size = number of tokens + 1)"
            )
        self.mask_token_id = mask_token_id
        excluded = set(int(i) for i in special_ids) | {self.mask_token_id}
        self.replacement_ids = torch.tensor([i for i in range(self.vocab_size) if i not in excluded])

    def get_batch(self, split: str, batch_size: int, generator=None):
        ids = self._split(split)
        batch_size = positive_int(batch_size, "batch_size")
        starts = torch.randint(len(ids) - self.block_size + 1, (batch_size,), generator=generator)
        original = ids[starts[:, None] + torch.arange(self.block_size)]  # (B, T)
        selected = torch.rand(original.shape, generator=generator) < self.mask_prob  # (B, T)
        # A row with nothing selected would contribute no loss; select one position there.
        forced = torch.randint(self.block_size, (batch_size,), generator=generator)
        empty_rows = ~selected.any(dim=1)
        selected[empty_rows, forced[empty_rows]] = True
        action = torch.rand(original.shape, generator=generator)  # < .8 mask, < .9 random, else keep
        random_tokens = self.replacement_ids[
            torch.randint(len(self.replacement_ids), original.shape, generator=generator)
        ]
        inputs = original.clone()
        inputs[selected & (action < 0.8)] = self.mask_token_id
        use_random = selected & (action >= 0.8) & (action < 0.9)
        inputs[use_random] = random_tokens[use_random]
        targets = torch.where(selected, original, torch.full_like(original, self.ignore_index))
        return inputs, targets
