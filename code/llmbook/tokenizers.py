"""Turning text into integer ids and back (Chapter 2: Core concepts; used from Chapter 5 on).

``CharTokenizer``: one id per Unicode character seen in training, any script.
``WordTokenizer``: Unicode normalisation, lowercasing, a regex word splitter, optional stop words.
``BPETokenizer``: byte-level byte-pair encoding with GPT-2-style pre-tokenization and special tokens.
"""

from __future__ import annotations

import heapq
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from numbers import Integral
from pathlib import Path

import numpy as np
import torch

from . import validate

__all__ = [
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "STOP_WORDS",
    "GPT2_STYLE_PATTERN",
    "get_pair_counts",
    "merge",
]


def _check_text(text, where: str) -> str:
    if not isinstance(text, str):
        raise TypeError(
            f"{where} expects a str, got {type(text).__name__}"
            + ("; decode bytes first with text.decode('utf-8')" if isinstance(text, bytes) else "")
        )
    return text


def _ids_to_decode(ids, vocab_size: int) -> list[int]:
    """``ids`` (a list, NumPy array or tensor of token ids) as a list of ints, each checked against the vocabulary.

    Negative ids are refused rather than read Python's way (-1 = the last entry), so a
    target of -100 ("ignore this position") cannot print as a word.
    """
    if isinstance(ids, Iterator):  # a generator of ids: read it once
        ids = list(ids)
    if not (torch.is_tensor(ids) or isinstance(ids, (np.ndarray, list, tuple, range))):  # sets have no order
        fix = (
            "to turn text into ids use encode" if isinstance(ids, (str, bytes)) else "pass the ids in order, as a list"
        )
        raise TypeError(
            f"decode expects a sequence of token ids (a list, array or 1-D tensor), got {type(ids).__name__} "
            f"{ids!r:.60}; {fix}"
        )
    if not torch.is_tensor(ids):
        if len(ids) == 0:
            return []
        if (
            isinstance(ids, (list, tuple))
            and all(type(i) is int for i in ids)
            and 0 <= min(ids)
            and max(ids) < vocab_size
        ):
            return list(ids)  # the common case, checked without building a tensor
        try:
            ids = torch.as_tensor(np.asarray(ids))
        except (TypeError, ValueError, RuntimeError, OverflowError):
            if all(type(i) is int for i in ids):  # ints too large for any tensor
                raise ValueError(
                    f"ids contain a token id outside the vocabulary 0..{vocab_size - 1}: {max(ids)}"
                ) from None
            raise TypeError(f"decode expects whole-number token ids, got {list(ids)!r:.80}") from None
    if ids.numel() == 0:
        return []
    try:
        validate.token_ids(ids, vocab_size, name="ids", dims=1)
    except ValueError as error:
        if ids.dim() == 1 and not ids.dtype.is_floating_point and bool((ids < 0).any()):
            raise ValueError(
                f"{error}; negative ids such as -100 mark ignored targets, not tokens: drop them "
                "before decoding, e.g. ids[ids >= 0]"
            ) from None
        raise
    return ids.tolist()


class CharTokenizer:
    """One token per Unicode code point, with the vocabulary taken from a training text.

    >>> tok = CharTokenizer.train("hello 世界")
    >>> tok.decode(tok.encode("hello 世界"))
    'hello 世界'
    """

    def __init__(self, chars: list[str]):
        if isinstance(chars, (str, bytes)) or not isinstance(chars, (list, tuple)):
            raise TypeError(
                f"chars must be a list of single characters, got {type(chars).__name__}; "
                "for the characters of a text use CharTokenizer.train(text)"
            )
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(
                    f"chars must be single characters, got {c!r}; CharTokenizer has one token per character"
                )
        repeated = [c for c, n in Counter(chars).items() if n > 1]
        if repeated:
            raise ValueError(
                f"CharTokenizer vocabulary has repeated characters {repeated[:10]}: each character needs exactly "
                "one id; remove the duplicates (CharTokenizer.train(text) does)"
            )
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct characters in sorted order."""
        _check_text(text, "CharTokenizer.train")
        if not text:
            raise ValueError("cannot build a CharTokenizer from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        _check_text(text, "CharTokenizer.encode")
        try:
            return [self.stoi[c] for c in text]
        except KeyError as error:
            raise ValueError(
                f"character {error.args[0]!r} (U+{ord(error.args[0]):04X}) is not in this tokenizer's "
                f"{self.vocab_size}-character vocabulary; train it on text that contains it"
            ) from None

    def decode(self, ids) -> str:
        chars = self.chars
        return "".join(chars[i] for i in _ids_to_decode(ids, self.vocab_size))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"type": "char", "chars": self.chars}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        state = _read_state(path, "char", ["chars"])
        try:
            return cls(state["chars"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a consistent CharTokenizer file: {error}") from None


# --------------------------------------------------------------------------- words
# A small English stop-word list (function words that carry little topic information).
STOP_WORDS = frozenset(
    """a an the and or but if then else so of at by for with about against between into through during
    before after above below to from up down in out on off over under again further once here there when
    where why how all any both each few more most other some such no nor not only own same than too very
    can will just should now i me my myself we our ours ourselves you your yours yourself yourselves he him
    his himself she her hers herself it its itself they them their theirs themselves what which who whom
    this that these those am is are was were be been being have has had having do does did doing would could
    shall may might must""".split()
)

# Words (letters with inner apostrophes), numbers, single CJK ideographs, or one other symbol.
# Chinese is written without spaces; one character per token is the simplest honest split
# (a real Chinese word segmenter such as jieba would group characters into words).
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD_PATTERN = re.compile(
    rf"[{_CJK}]|(?:(?![{_CJK}])[^\W\d_])+(?:['’](?:(?![{_CJK}])[^\W\d_])+)*|\d+(?:[.,]\d+)*|[^\w\s]"
)


class WordTokenizer:
    """Normalise, split into words, optionally drop stop words; ids for a vocabulary of words.

    >>> WordTokenizer(remove_stop_words=True).tokenize("The Ｃａｔ sat on the mat.")
    ['cat', 'sat', 'mat', '.']
    >>> WordTokenizer().tokenize("我爱 NLP!")
    ['我', '爱', 'nlp', '!']
    """

    UNK = "<unk>"

    def __init__(
        self,
        lowercase: bool = True,
        normalization: str | None = "NFKC",
        remove_stop_words: bool = False,
        stop_words=None,
        keep_punctuation: bool = True,
    ):
        validate.one_of(normalization, "normalization", (None, "NFC", "NFD", "NFKC", "NFKD"))
        if isinstance(stop_words, (str, bytes)):
            raise TypeError(
                f"stop_words must be a collection of words, got the string {stop_words!r}, which would be read as "
                f"its characters; use stop_words={[stop_words]!r}"
            )
        for name, value in (
            ("lowercase", lowercase),
            ("remove_stop_words", remove_stop_words),
            ("keep_punctuation", keep_punctuation),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        self.lowercase = lowercase
        self.normalization = normalization
        self.remove_stop_words = remove_stop_words
        self.stop_words = frozenset(STOP_WORDS if stop_words is None else stop_words)
        self.keep_punctuation = keep_punctuation
        self.words: list[str] = []
        self.stoi: dict[str, int] = {}

    def normalize(self, text: str) -> str:
        """Unicode normalisation (NFKC folds full-width letters, ligatures, superscripts) and lowercasing."""
        if self.normalization:
            text = unicodedata.normalize(self.normalization, text)
        return text.lower() if self.lowercase else text

    def tokenize(self, text: str) -> list[str]:
        """The words of ``text`` after normalisation (stop words dropped if
        asked).
        """
        if not isinstance(text, str):
            raise TypeError("WordTokenizer.tokenize expects a str, " + f"got {type(text).__name__}")
        words = WORD_PATTERN.findall(self.normalize(text))
        if not self.keep_punctuation:
            words = [w for w in words if w[0].isalnum()]
        if self.remove_stop_words:
            words = [w for w in words if w.lower() not in self.stop_words]
        return words

    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, min_count: int = 1, **options) -> WordTokenizer:
        """A vocabulary of the most frequent words of ``text`` (``<unk>`` takes id 0 and every other word)."""
        tokenizer = cls(**options)
        if vocab_size is not None:
            validate.positive_int(vocab_size, "vocab_size", minimum=2, hint="<unk> and at least one word")
        validate.positive_int(min_count, "min_count", hint="1 keeps every word seen")
        counts = Counter(tokenizer.tokenize(text))
        if not counts:
            raise ValueError("cannot build a WordTokenizer vocabulary from text with no words")
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if not ranked:
            raise ValueError(
                f"min_count={min_count} leaves no word in the vocabulary (the most frequent word occurs "
                f"{max(counts.values())} times), so every word would encode as <unk>; lower min_count"
            )
        if vocab_size is not None:
            ranked = ranked[: vocab_size - 1]
        tokenizer.words = [cls.UNK] + ranked
        tokenizer.stoi = {w: i for i, w in enumerate(tokenizer.words)}
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        if not self.words:
            raise RuntimeError("this WordTokenizer has no vocabulary yet: use WordTokenizer.train(text)")
        return [self.stoi.get(w, 0) for w in self.tokenize(text)]

    def decode(self, ids) -> str:
        """Words joined by spaces: word tokenization loses the original spacing (and unknown words)."""
        if not self.words:
            raise RuntimeError("this WordTokenizer has no vocabulary yet: use WordTokenizer.train(text)")
        words = self.words
        return " ".join(words[i] for i in _ids_to_decode(ids, self.vocab_size))

    def save(self, path: str | Path) -> None:
        state = {
            "type": "word",
            "lowercase": self.lowercase,
            "normalization": self.normalization,
            "remove_stop_words": self.remove_stop_words,
            "stop_words": sorted(self.stop_words),
            "keep_punctuation": self.keep_punctuation,
            "words": self.words,
        }
        Path(path).write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        state = _read_state(path, "word", ["words", "lowercase", "normalization"])
        words = state["words"]
        try:
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise ValueError(f"words must be a list of strings, got {words!r:.60}")
            repeated = [w for w, n in Counter(words).items() if n > 1]
            if repeated:
                raise ValueError(f"the vocabulary repeats {repeated[:10]}")
            tokenizer = cls(
                state["lowercase"],
                state["normalization"],
                state.get("remove_stop_words", False),
                state.get("stop_words"),
                state.get("keep_punctuation", True),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{path} is not a consistent WordTokenizer file: {error}; save the tokenizer again"
            ) from None
        tokenizer.words = list(words)
        tokenizer.stoi = {w: i for i, w in enumerate(tokenizer.words)}
        return tokenizer


def _read_state(path: str | Path, kind: str, keys: list[str]) -> dict:
    """The JSON state of a saved tokenizer, with clear errors for missing, corrupt or foreign files."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no tokenizer file at {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory; give the path of the tokenizer's .json file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not a valid tokenizer file (corrupt JSON: {error}); save the tokenizer again"
        ) from None
    if not isinstance(state, dict) or state.get("type") != kind:
        found = state.get("type") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} does not hold a {kind} tokenizer (type={found!r})")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{path} is missing {', '.join(missing)}: the file is incomplete; save the tokenizer again")
    return state


# --------------------------------------------------------------------------- bytes
# GPT-2-style pre-tokenization written for the standard library's `re` (which lacks \p{L}):
# [^\W\d_] is "a letter in any script", \d "a digit in any script", (?:[^\s\w]|_) "anything else".
# English contractions split off; a word keeps one leading space; runs of spaces stay apart from
# the word that follows them. Merges never cross these chunk boundaries.
GPT2_STYLE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""


# Patterns written for (and tested with) the standard library's `re`: they run in linear time on any text.
# Any other pattern (a user's, or one read from a tokenizer file) runs on the `regex` package with a time
# bound, since a pattern with nested repeats such as (?:a|a)+$ can backtrack for hours on a short text.
_TRUSTED_PATTERNS = frozenset({GPT2_STYLE_PATTERN})
PATTERN_SECONDS = 1.0  # time bound for an untrusted pattern: this many seconds, plus 20 µs per character


class _Pattern:
    """A pre-tokenization pattern with clear errors: invalid, capturing groups, text it drops, or too slow."""

    def __init__(self, pattern: str):
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"pattern must be a non-empty regular expression (a str), got {pattern!r}")
        self.pattern = pattern
        self.trusted = pattern in _TRUSTED_PATTERNS
        if self.trusted:
            engine, errors = re, (re.error,)
        else:
            try:
                import regex as engine
            except ImportError:  # pragma: no cover - regex is a dependency of llmbook
                raise ImportError(
                    "a custom BPE pattern runs with a time bound on the `regex` package: pip install regex"
                ) from None
            errors = (engine.error, re.error)
        try:
            self.compiled = engine.compile(pattern)
        except errors as error:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {error}") from None
        if self.compiled.groups:
            raise ValueError(
                f"pattern {pattern!r} has {self.compiled.groups} capturing group(s), which would make findall return "
                "the groups instead of the chunks; write each group as (?:...)"
            )

    def split(self, text: str) -> list[str]:
        """The chunks of ``text``; every character must land in a chunk (else it would vanish from the ids)."""
        if self.trusted:
            chunks = self.compiled.findall(text)
        else:
            limit = PATTERN_SECONDS + 2e-5 * len(text)
            try:
                chunks = self.compiled.findall(text, timeout=limit)
            except TimeoutError:
                raise ValueError(
                    f"the tokenizer's pattern {self.pattern!r} ran for more than {limit:.1f} s on a text of "
                    f"{len(text)} characters and was stopped: it backtracks catastrophically (nested repeats such "
                    "as (?:a|a)+ or (?:a+)+b); use a pattern without nested repeats, such as "
                    "llmbook.tokenizers.GPT2_STYLE_PATTERN"
                ) from None
        if sum(map(len, chunks)) != len(text):
            position = 0
            for match in self.compiled.finditer(text):
                if match.start() > position:
                    break
                position = max(position, match.end())
            raise ValueError(
                f"pattern {self.pattern!r} does not cover the text: character {text[position]!r} at position "
                f"{position} matches none of its alternatives, so it would be dropped from the encoding; end the "
                r"pattern with an alternative that matches anything, e.g. |\s+|."
            )
        return chunks


def _check_special_tokens(special_tokens) -> list[str]:
    if isinstance(special_tokens, (str, bytes)):
        raise TypeError(
            f"special_tokens must be a list of strings, got the string {special_tokens!r}, which would become "
            f"{len(special_tokens)} one-character tokens; use special_tokens=[{special_tokens!r}]"
        )
    try:
        special_tokens = list(special_tokens)
    except TypeError:
        raise TypeError(f"special_tokens must be a list of strings, got {type(special_tokens).__name__}") from None
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special tokens must be non-empty strings, got {token!r}")
    repeated = [t for t, n in Counter(special_tokens).items() if n > 1]
    if repeated:
        raise ValueError(f"special token {repeated[0]!r} is listed twice; list each special token once")
    return special_tokens


def get_pair_counts(ids, counts=None) -> dict:
    """Counts of adjacent pairs:
    ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``.
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids, pair, new_id) -> list[int]:
    """Replace every ``pair`` in ``ids`` by ``new_id``:
    ``merge([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]``.
    """
    first, second = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _number_of_merges(text: str, vocab_size: int, special_tokens: list[str]) -> int:
    """How many merges BPETokenizer.train learns for ``vocab_size``; clear errors for impossible requests."""
    _check_text(text, "BPETokenizer.train")
    if not text:
        raise ValueError("cannot train a BPE tokenizer on empty text")
    validate.positive_int(vocab_size, "vocab_size", hint="256 byte tokens + merges + special tokens")
    num_merges = vocab_size - 256 - len(special_tokens)
    if num_merges < 0:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the 256 byte tokens and {len(special_tokens)} "
            f"special tokens alone need {256 + len(special_tokens)}"
        )
    return num_merges


def _chunk_counts(text: str, special_tokens: list[str], pattern) -> Counter:
    """How often each chunk of ``text`` occurs: cut at special tokens (never merged across), then by ``pattern``."""
    pieces = [text]
    if special_tokens:
        splitter = re.compile("|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True)))
        pieces = splitter.split(text)
    counts = Counter()
    for piece in pieces:
        counts.update(pattern.split(piece))
    return counts


class BPETokenizer:
    """Byte-level byte-pair encoding (as in GPT-2): any Unicode text, no unknown tokens.

    Ids 0..255 are the bytes; each learned merge adds one id; special tokens such as
    ``<|endoftext|>`` come last and are always encoded as one id, never merged with anything.

    >>> tok = BPETokenizer.train("low lower lowest " * 20, vocab_size=263, special_tokens=[])
    >>> [tok.token_bytes(i) for i in tok.encode(" lowest")]
    [b' lowest']
    >>> tok.decode(tok.encode("naïve 世界 🙂"))
    'naïve 世界 🙂'
    """

    def __init__(self, merges=(), special_tokens=(), pattern: str = GPT2_STYLE_PATTERN):
        self._pattern = _Pattern(pattern)
        self.pattern = pattern
        special_tokens = _check_special_tokens(special_tokens)
        self.merges: dict[tuple[int, int], int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for pair in merges:
            if not (
                isinstance(pair, (list, tuple))
                and len(pair) == 2
                and all(isinstance(x, Integral) and not isinstance(x, bool) for x in pair)
            ):
                raise ValueError(f"each merge must be a pair of token ids (a, b), got {pair!r}")
            a, b = int(pair[0]), int(pair[1])
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merge ({a}, {b}) uses an id that is not defined before it")
            new_id = len(self.vocab)
            self.merges[(a, b)] = new_id
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.special_tokens: dict[str, int] = {}
        for token in special_tokens:  # distinct, non-empty strings (checked above)
            self.special_tokens[token] = len(self.vocab) + len(self.special_tokens)
        self.special_ids = {i: t for t, i in self.special_tokens.items()}
        self._special_regex = (
            re.compile("(" + "|".join(re.escape(t) for t in sorted(self.special_tokens, key=len, reverse=True)) + ")")
            if self.special_tokens
            else None
        )
        self._cache: dict[str, list[int]] = {}

    # ---------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens=("<|endoftext|>",),
        pattern: str = GPT2_STYLE_PATTERN,
        verbose: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from
        ``text``.

        The text is cut into chunks by ``pattern`` (and at special tokens);
        identical chunks are counted once with their frequency. Each step
        merges the most frequent adjacent pair (ties: the smallest pair of
        ids) and updates the pair counts only in the chunks that contain it,
        so a merge costs time proportional to where it occurs, not to the
        text.
        """
        special_tokens = _check_special_tokens(special_tokens)
        num_merges = _number_of_merges(text, vocab_size, special_tokens)
        chunk_counts = _chunk_counts(text, special_tokens, _Pattern(pattern))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # unique chunks as byte ids
        frequencies = list(chunk_counts.values())

        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks that contain it
        for index, (word, frequency) in enumerate(zip(words, frequencies)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += frequency
                where[pair].add(index)
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)

        merges = []
        next_id = 256
        while len(merges) < num_merges and heap:
            negative_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -negative_count:
                # stale heap entry: the count changed after it was pushed
                continue
            if -negative_count < 1:
                break
            merges.append(pair)
            changed = set()
            for index in where.pop(pair):
                word, frequency = words[index], frequencies[index]
                for old in zip(word, word[1:]):  # remove the old word's pairs ...
                    pair_counts[old] -= frequency
                    changed.add(old)
                new_word = merge(word, pair, next_id)
                words[index] = new_word
                for new in zip(new_word, new_word[1:]):  # ... and add the new word's
                    pair_counts[new] += frequency
                    where[new].add(index)
                    changed.add(new)
            pair_counts.pop(pair, None)
            changed.discard(pair)
            for changed_pair in changed:
                count = pair_counts[changed_pair]
                if count > 0:
                    heapq.heappush(heap, (-count, changed_pair))
                else:
                    del pair_counts[changed_pair]
                    where.pop(changed_pair, None)
            if verbose and len(merges) <= 20:
                print(f"merge {len(merges)}: {pair} -> {next_id} " + f"(count {-negative_count})")
            next_id += 1
        return cls(merges, special_tokens, pattern)

    # ---------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (a special token: its UTF-8 text)."""
        if torch.is_tensor(token_id) and token_id.numel() == 1 and not token_id.dtype.is_floating_point:
            token_id = token_id.item()
        if isinstance(token_id, bool) or not isinstance(token_id, Integral):
            raise TypeError(f"token_id must be one whole-number token id, got {token_id!r}")
        token_id = int(token_id)
        if token_id in self.vocab:
            return self.vocab[token_id]
        if token_id in self.special_ids:
            return self.special_ids[token_id].encode("utf-8")
        raise ValueError(f"token id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")

    def token_str(self, token_id: int) -> str:
        """A readable form of a token (bytes that are not valid UTF-8 on their own become \\xNN)."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def _encode_chunk(self, chunk: str) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk.encode("utf-8"))
        merges = self.merges
        while len(ids) >= 2:
            # the adjacent pair learned earliest (lowest new id) is merged first, as in training
            best = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, 1 << 62))
            if best not in merges:
                break
            ids = merge(ids, best, merges[best])
        if len(self._cache) < 1_000_000:
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as plain text."""
        _check_text(text, "BPETokenizer.encode_ordinary")
        ids = []
        for chunk in self._pattern.split(text):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def encode(self, text: str, allowed_special: str | set = "all") -> list[int]:
        """Token ids of ``text``; special tokens (``allowed_special``: "all", "none" or a set) become one id."""
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.encode expects a str, got {type(text).__name__}")
        if isinstance(allowed_special, str) and allowed_special not in ("all", "none"):
            raise ValueError(
                f"allowed_special must be 'all', 'none' or a set of special tokens, got the string {allowed_special!r}; "
                f"for one token write allowed_special={{{allowed_special!r}}}"
            )
        if allowed_special == "none" or self._special_regex is None:
            return self.encode_ordinary(text)
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"{sorted(unknown)} are not special tokens of this tokenizer ({list(self.special_tokens)})"
            )
        ids = []
        for i, piece in enumerate(self._special_regex.split(text)):
            if i % 2 == 1 and piece in allowed:  # odd pieces are the separators: special tokens
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def decode(self, ids, errors: str = "replace") -> str:
        """The text of ``ids``; byte sequences that are not valid UTF-8 (a cut token list) become U+FFFD."""
        validate.one_of(errors, "errors", ("replace", "strict", "ignore", "backslashreplace"))
        vocab, special = self.vocab, self.special_ids  # every id is checked: it is in one of the two
        pieces = [vocab.get(i) or special[i].encode("utf-8") for i in _ids_to_decode(ids, self.vocab_size)]
        return b"".join(pieces).decode("utf-8", errors=errors)

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path) -> None:
        """A JSON file with the pattern, the merges in order and the special tokens."""
        state = {
            "type": "bpe",
            "version": 1,
            "pattern": self.pattern,
            "merges": [list(p) for p in self.merges],
            "special_tokens": list(self.special_tokens),
        }
        Path(path).write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        state = _read_state(path, "bpe", ["pattern", "merges", "special_tokens"])
        merges = state["merges"]
        if not isinstance(merges, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(isinstance(x, int) for x in m) for m in merges
        ):
            raise ValueError(
                f"{path} has malformed merges (expected a list of [id, id] pairs); save the tokenizer again"
            )
        try:
            return cls(merges, state["special_tokens"], state["pattern"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path} is not a consistent BPE tokenizer file: {error}") from None

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special={list(self.special_tokens)})"
