"""Tasks, data and measures of Chapter 8: Applications.

Sentiment classification of the movie-review polarity data (Pang & Lee, 2,000
reviews): a fixed held-out split (:func:`sentiment_split`), a word vocabulary
(:class:`WordVocab`), batches of labelled sequences for the book's training
loop (:class:`ClassificationBatcher`), a classifier head on the book's GPT
(:class:`GPTClassifier`, fine-tuned whole or head only), accuracy with a 95%
Wilson interval (:func:`accuracy`, :func:`wilson_interval`).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .models import GPT

__all__ = [
    "sentiment_split",
    "words",
    "WordVocab",
    "ClassificationBatcher",
    "GPTClassifier",
    "wilson_interval",
    "accuracy",
]

_WORD = re.compile(r"[a-z0-9']+|[.,!?;:()\-]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``.

    >>> words("A fine, FINE film!")
    ['a', 'fine', ',', 'fine', 'film', '!']
    """
    return _WORD.findall(text.lower())


def sentiment_split(test_size: int = 400, seed: int = 0):
    """The movie reviews as ``(train, test)`` lists of ``(text, label)`` (1 = positive): a fixed shuffle
    (``seed``) and the last ``test_size`` reviews held out; both classes are balanced in each part."""
    from .data import load_movie_reviews

    reviews = load_movie_reviews()
    validate.positive_int(test_size, "test_size")
    if test_size >= len(reviews):
        raise ValueError(f"test_size={test_size} leaves no training review (there are {len(reviews)})")
    by_label = {0: [r for r in reviews if r[1] == 0], 1: [r for r in reviews if r[1] == 1]}
    train, test = [], []
    for label, group in by_label.items():
        group = sorted(group)
        random.Random(seed + label).shuffle(group)
        cut = len(group) - test_size // 2
        train += group[:cut]
        test += group[cut:]
    random.Random(seed).shuffle(train)
    random.Random(seed + 7).shuffle(test)
    return train, test


class WordVocab:
    """The ``max_size`` most frequent words of a corpus; id 0 pads, id 1 is an unknown word."""

    PAD, UNK = 0, 1

    def __init__(self, words_by_frequency: list[str]):
        self.itos = ["<pad>", "<unk>", *words_by_frequency]
        self.stoi = {word: i for i, word in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: list[str], max_size: int) -> WordVocab:
        validate.positive_int(max_size, "max_size")
        counts = Counter(word for text in texts for word in words(text))
        return cls([word for word, _ in counts.most_common(max_size - 2)])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(word, self.UNK) for word in words(text)]

    def encode_batch(self, texts: list[str], max_tokens: int, keep: str = "last") -> torch.Tensor:
        """(N, max_tokens) ids, each text cut to its first or last ``max_tokens`` words and padded (with 0)
        at the end, so that a causal model's real tokens never see padding."""
        validate.positive_int(max_tokens, "max_tokens")
        validate.one_of(keep, "keep", ("first", "last"))
        out = torch.zeros(len(texts), max_tokens, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            ids = ids[-max_tokens:] if keep == "last" else ids[:max_tokens]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


class ClassificationBatcher:
    """Random batches of labelled sequences for :func:`llmbook.train.train`: ``get_batch(split, batch_size,
    generator)`` returns ``x`` (B, T) and the labels ``y`` (B,); the "val" split is the held-out data."""

    def __init__(self, train_x, train_y, val_x, val_y):
        self.data = {"train": (train_x, train_y), "val": (val_x, val_y)}
        for split, (x, y) in self.data.items():
            if x.shape[0] != y.shape[0] or x.shape[0] == 0:
                raise ValueError(f"the {split} split has {x.shape[0]} sequences and {y.shape[0]} labels")
        self.block_size = train_x.shape[1]

    def get_batch(self, split: str, batch_size: int, generator=None):
        x, y = self.data[validate.one_of(split, "split", ("train", "val"))]
        rows = torch.randint(0, x.shape[0], (validate.positive_int(batch_size, "batch_size"),), generator=generator)
        return x[rows], y[rows]


class GPTClassifier(nn.Module):
    """A classifier on the book's GPT: the mean of the final hidden states over the real (non-padding)
    tokens, then a linear layer to ``num_classes`` scores. ``forward(idx, targets=None)`` returns
    ``(logits (B, C), loss)``. ``freeze_body()`` leaves only the head trainable (head-only fine-tuning)."""

    def __init__(self, gpt: GPT, num_classes: int = 2, pad_id: int = 0):
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"GPTClassifier wraps an llmbook GPT, got {type(gpt).__name__}")
        self.gpt = gpt
        self.config = gpt.config
        self.pad_id = validate.nonnegative_int(pad_id, "pad_id")
        self.num_classes = validate.positive_int(num_classes, "num_classes", minimum=2)
        self.head = nn.Linear(gpt.config.n_embd, num_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def freeze_body(self) -> GPTClassifier:
        for parameter in self.gpt.parameters():
            parameter.requires_grad_(False)
        return self

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, n_embd): the mean final hidden state over each sequence's real tokens."""
        gpt = self.gpt
        idx = validate.token_ids(idx, gpt.config.vocab_size, block_size=gpt.config.block_size).long()
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = gpt.dropout(gpt.token_embedding(idx) + gpt.position_embedding(positions))  # (B, T, d)
        for block in gpt.blocks:
            x, _ = block(x, is_causal=True)
        x = gpt.ln_f(x)
        real = (idx != self.pad_id).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * real).sum(1) / real.sum(1).clamp(min=1)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.head(self.features(idx))  # (B, C)
        loss = None
        if targets is not None:
            targets = validate.class_ids(targets, self.num_classes, batch_size=idx.shape[0], name="targets")
            loss = F.cross_entropy(logits.float(), targets.long())
        return logits, loss


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``correct / n`` (95% for z = 1.96).

    >>> [round(x, 3) for x in wilson_interval(80, 100)]
    [0.711, 0.867]
    """
    validate.positive_int(n, "n")
    validate.nonnegative_int(correct, "correct")
    if correct > n:
        raise ValueError(f"correct={correct} is more than n={n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 100) -> dict:
    """``{"accuracy", "low", "high", "correct", "n"}``: the share of ``x`` whose arg-max class is ``y``,
    with its 95% Wilson interval. ``model(x)`` returns class logits (or a tuple starting with them)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        out = model(x[start : start + batch_size].to(device))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        correct += int((logits.argmax(-1).cpu() == y[start : start + batch_size]).sum())
    model.train(was_training)
    low, high = wilson_interval(correct, x.shape[0])
    return {"accuracy": correct / x.shape[0], "low": low, "high": high, "correct": correct, "n": x.shape[0]}


# --------------------------------------------------------------------------- translation data: number words

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_ONES = (_ONES + "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_CN_DIGITS = "零一二三四五六七八九"


def _english_below_1000(n: int) -> list[str]:
    out = []
    if n >= 100:
        out += [_ONES[n // 100], "hundred"]
        n %= 100
        if n:
            out.append("and")
    if n >= 20:
        out.append(_TENS[n // 10])
        n %= 10
        if n:
            out.append(_ONES[n])
    elif n or not out:
        out.append(_ONES[n])
    return out


def number_to_english(n: int) -> str:
    """British English words for 0 <= n < 100,000, with "and" before the last part under a hundred.

    >>> number_to_english(4012)
    'four thousand and twelve'
    >>> number_to_english(72315)
    'seventy two thousand three hundred and fifteen'
    """
    n = validate.nonnegative_int(n, "n")
    if n >= 100_000:
        raise ValueError(f"n must be below 100,000, got {n}")
    if n < 1000:
        return " ".join(_english_below_1000(n))
    thousands, rest = divmod(n, 1000)
    out = [*_english_below_1000(thousands), "thousand"]
    if rest:
        if rest < 100:
            out.append("and")
        out += _english_below_1000(rest)
    return " ".join(out)


def number_to_chinese(n: int) -> str:
    """Chinese numerals for 0 <= n < 100,000 (万 千 百 十): one 零 for each run of zeros between non-zero
    digits, none at the end; a leading 一十 is written 十 (15 = 十五) but 一十 elsewhere (110 = 一百一十).

    >>> number_to_chinese(4012), number_to_chinese(15), number_to_chinese(10010), number_to_chinese(20000)
    ('四千零一十二', '十五', '一万零一十', '二万')
    """
    n = validate.nonnegative_int(n, "n")
    if n >= 100_000:
        raise ValueError(f"n must be below 100,000, got {n}")
    if n == 0:
        return "零"
    out, zero_pending = [], False
    for digit, unit in zip(f"{n:05d}", ("万", "千", "百", "十", "")):
        digit = int(digit)
        if digit == 0:
            zero_pending = bool(out)  # a zero after the first non-zero digit: one 零 if more digits follow
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        if not (digit == 1 and unit == "十" and not out):  # 十五, not 一十五, at the start
            out.append(_CN_DIGITS[digit])
        out.append(unit)
    return "".join(out)
