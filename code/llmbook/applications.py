"""Tasks, data and measures of Chapter 8: Applications.

Sentiment classification of the movie-review polarity data (Pang & Lee, 2,000
reviews): a fixed held-out split (:func:`sentiment_split`), a word vocabulary
(:class:`WordVocab`), batches of labelled sequences for the book's training
loop (:class:`ClassificationBatcher`), a classifier head on the book's GPT
(:class:`GPTClassifier`, fine-tuned whole or head only), accuracy with a 95%
Wilson interval (:func:`accuracy`, :func:`wilson_interval`).

Translation data: English number words and Chinese numerals for 0 <= n < 100,000
(:func:`number_to_english`, :func:`number_to_chinese`).

Question answering on generated stories (:func:`make_story`, :func:`encode_qa`,
:func:`qa_exact_match`): a GPT reads "Q: question story A:" and answers.

Induction heads (Olsson et al. 2022): sequences with a repeated random segment
(:func:`repeated_segment_batch`), a 2-layer attention-only Transformer whose
heads can be ablated (:class:`AttentionOnly`), per-head previous-token,
duplicate-token, prefix-matching and copying scores (:func:`head_scores`).
In-context learning of a rule: which of a family of rules is in force, to
infer from k examples (:class:`RuleTaskBatcher`, :func:`few_shot_accuracy`).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .attention import apply_rope
from .models import GPT

__all__ = [
    "sentiment_split",
    "words",
    "WordVocab",
    "ClassificationBatcher",
    "GPTClassifier",
    "wilson_interval",
    "accuracy",
    "number_to_english",
    "number_to_chinese",
    "QA_PEOPLE",
    "QA_PLACES",
    "QA_OBJECTS",
    "QA_WORDS",
    "make_story",
    "qa_examples",
    "encode_qa",
    "qa_exact_match",
    "repeated_segment_batch",
    "AttentionOnlyConfig",
    "AttentionOnly",
    "segment_losses",
    "head_scores",
    "train_repeats",
    "RuleTaskBatcher",
    "few_shot_accuracy",
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


# --------------------------------------------------------------------------- question answering: generated stories

QA_PEOPLE = ("mary", "john", "sandra", "daniel", "emma", "omar")
QA_PLACES = ("kitchen", "garden", "office", "hallway", "bedroom", "cellar")
QA_OBJECTS = ("apple", "football", "book", "key", "lamp", "coin")
_QA_MOVES = ("went to the", "is in the", "moved to the", "travelled to the")
_QA_TAKES = ("picked up the", "put down the")
QA_WORDS = ("<pad>", "Q:", "A:", ".", "?", "where", "is", *QA_PEOPLE, *QA_PLACES, *QA_OBJECTS)
QA_WORDS = tuple(dict.fromkeys(QA_WORDS + tuple(" ".join(_QA_MOVES + _QA_TAKES).split())))


def make_story(rng: random.Random, sentences: tuple[int, int] = (3, 6)) -> tuple[str, str, str]:
    """One story, a question about it and the answer, as ``(story, question, answer)``.

    Each sentence (six words) puts one person in one place ("mary went to the kitchen .") or has one
    person handle an object ("john picked up the key ."); every person, place and object occurs at most
    once in a story, and at least one sentence puts a person in a place. The question, "where is <person> ?",
    asks about one of those sentences drawn at random; its answer is a place. The other sentences are
    distractors: other people in other places, and objects.

    >>> make_story(random.Random(0))[2] in QA_PLACES
    True
    """
    low, high = sentences
    validate.positive_int(low, "sentences[0]")
    validate.positive_int(high, "sentences[1]", minimum=low)
    if high > len(QA_PEOPLE):
        raise ValueError(f"sentences allows up to {high} sentences; a story has at most {len(QA_PEOPLE)} people")
    n = rng.randint(low, high)
    people = rng.sample(QA_PEOPLE, n)
    places = rng.sample(QA_PLACES, n)
    objects = rng.sample(QA_OBJECTS, n)
    facts, lines = [], []
    for i, (person, place, thing) in enumerate(zip(people, places, objects)):
        if i == 0 or rng.random() < 0.6:  # the first stays a location (shuffled below): one question at least
            lines.append(f"{person} {rng.choice(_QA_MOVES)} {place} .")
            facts.append((f"where is {person} ?", place))
        else:
            lines.append(f"{person} {rng.choice(_QA_TAKES)} {thing} .")
    rng.shuffle(lines)
    question, answer = rng.choice(facts)
    return " ".join(lines), question, answer


def qa_examples(n: int, seed: int, sentences: tuple[int, int] = (3, 6)) -> list[tuple[str, str, str]]:
    """``n`` stories from :func:`make_story` with a fixed ``seed`` (different seeds: different stories)."""
    rng = random.Random(validate.nonnegative_int(seed, "seed"))
    return [make_story(rng, sentences) for _ in range(validate.positive_int(n, "n"))]


def encode_qa(examples, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, where)`` for a GPT that reads the question, then the story, and answers after "A:":
    ``x`` (N, length) the ids of "Q: question story A: answer" padded with 0 at the end, ``y`` (N, length) -100 except at the "A:"
    position, whose target is the answer, and ``where`` (N,) that position."""
    validate.positive_int(length, "length")
    index = {word: i for i, word in enumerate(QA_WORDS)}
    x = torch.zeros(len(examples), length, dtype=torch.long)
    y = torch.full((len(examples), length), -100, dtype=torch.long)
    where = torch.zeros(len(examples), dtype=torch.long)
    for row, (story, question, answer) in enumerate(examples):
        ids = [index[w] for w in f"Q: {question} {story} A: {answer}".split()]
        if len(ids) > length:
            raise ValueError(f"example {row} has {len(ids)} words, more than length={length}; raise length")
        x[row, : len(ids)] = torch.tensor(ids)
        where[row] = len(ids) - 2  # the "A:" token, which predicts the answer
        y[row, where[row]] = ids[-1]
    return x, y, where


@torch.no_grad()
def qa_exact_match(model: nn.Module, x: torch.Tensor, y: torch.Tensor, where: torch.Tensor, batch_size: int = 256):
    """The share of examples whose most likely next word at the "A:" position is the answer."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    right = 0
    for start in range(0, x.shape[0], batch_size):
        rows = torch.arange(start, min(start + batch_size, x.shape[0]))
        logits = model(x[rows].to(device))[0][torch.arange(len(rows)), where[rows].to(device)].cpu()
        right += int((logits.argmax(-1) == y[rows, where[rows]]).sum())
    model.train(was_training)
    return right / x.shape[0]


# --------------------------------------------------------------------------- induction heads (Olsson et al. 2022)


def repeated_segment_batch(batch_size: int, length: int, vocab_size: int, segment: int, generator=None):
    """Random tokens (B, length) in which a random segment of ``segment`` tokens occurs twice, the copy at a
    random later offset (so no fixed distance predicts it). Returns ``(x, first, repeat)``: ``first`` and
    ``repeat`` (B, length - 1) mark the positions t whose next token x[t + 1] is inside the first occurrence
    (after its first token) and inside the copy (after its first token): the copy is predictable, the first
    occurrence is not."""
    B = validate.positive_int(batch_size, "batch_size")
    T = validate.positive_int(length, "length")
    V = validate.positive_int(vocab_size, "vocab_size", minimum=2)
    L = validate.positive_int(segment, "segment", minimum=2)
    if 2 * L > T:
        raise ValueError(f"segment={L} cannot occur twice in length={T}; use segment <= {T // 2}")
    x = torch.randint(0, V, (B, T), generator=generator)
    first = torch.zeros(B, T - 1, dtype=torch.bool)
    repeat = torch.zeros(B, T - 1, dtype=torch.bool)
    for row in range(B):
        a = int(torch.randint(0, T - 2 * L + 1, (1,), generator=generator))
        b = int(torch.randint(a + L, T - L + 1, (1,), generator=generator))
        x[row, b : b + L] = x[row, a : a + L]
        first[row, a : a + L - 1] = True
        repeat[row, b : b + L - 1] = True
    return x, first, repeat


@dataclass
class AttentionOnlyConfig:
    """Sizes of an :class:`AttentionOnly` Transformer: vocabulary, context, layers, heads, width."""

    vocab_size: int
    block_size: int
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    positions: str = "learned"  # or "rope": no position in the residual stream, only relative offsets

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            validate.positive_int(getattr(self, name), name)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        validate.one_of(self.positions, "positions", ("learned", "rope"))
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"positions='rope' needs an even head width, got {self.n_embd} // {self.n_head}")


class AttentionOnly(nn.Module):
    """A decoder with attention layers only (no MLP, no LayerNorm), the model of Olsson et al.'s analysis:
    token and learned position embeddings, ``n_layer`` causal multi-head attention layers added to the
    residual stream, an unembedding. ``forward(idx, targets=None, ablate=(), return_attention=False)``;
    ``ablate`` is a set of ``(layer, head)`` whose output is zeroed before the output projection."""

    def __init__(self, config: AttentionOnlyConfig):
        super().__init__()
        if not isinstance(config, AttentionOnlyConfig):
            raise TypeError(f"AttentionOnly is built from an AttentionOnlyConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.n_embd)
        self.position_embedding = nn.Embedding(c.block_size, c.n_embd) if c.positions == "learned" else None
        self.qkv = nn.ModuleList(nn.Linear(c.n_embd, 3 * c.n_embd, bias=False) for _ in range(c.n_layer))
        self.out = nn.ModuleList(nn.Linear(c.n_embd, c.n_embd, bias=False) for _ in range(c.n_layer))
        self.unembed = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        # PyTorch's default initialisation (embeddings N(0, 1), linear layers U(±1/√d)): attention scores of
        # order 1 from the start, so that attention patterns can form (a 0.02 init leaves them flat for long)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, ablate=(), return_attention=False):
        c = self.config
        idx = validate.token_ids(idx, c.vocab_size, block_size=c.block_size).long()
        for layer, head in ablate:
            if not (0 <= layer < c.n_layer and 0 <= head < c.n_head):
                raise ValueError(f"ablate names (layer, head) = ({layer}, {head}); the model has {c.n_layer} "
                                 f"layers of {c.n_head} heads, numbered from 0")  # fmt: skip
        B, T = idx.shape
        H, dh = c.n_head, c.n_embd // c.n_head
        x = self.token_embedding(idx)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(T, device=idx.device))
        causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
        attentions = []
        for layer in range(c.n_layer):
            q, k, v = self.qkv[layer](x).view(B, T, 3, H, dh).permute(2, 0, 3, 1, 4)  # each (B, H, T, dh)
            if c.positions == "rope":
                q, k = apply_rope(q), apply_rope(k)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(dh)
            weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)  # (B, H, T, T)
            heads = weights @ v  # (B, H, T, dh)
            for ablated_layer, head in ablate:
                if ablated_layer == layer:
                    heads = heads.clone()
                    heads[:, head] = 0.0
            x = x + self.out[layer](heads.transpose(1, 2).reshape(B, T, c.n_embd))
            attentions.append(weights)
        logits = self.unembed(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.long().flatten(), ignore_index=-100)
        if return_attention:
            return logits, loss, attentions
        return logits, loss


def segment_losses(model: nn.Module, x: torch.Tensor, first: torch.Tensor, repeat: torch.Tensor, ablate=()):
    """``(first, repeat)``: the model's mean loss (nats) on the first occurrence and on the copy of
    :func:`repeated_segment_batch`'s segments (``ablate`` as in :meth:`AttentionOnly.forward`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(x.to(device), ablate=ablate)[0][:, :-1].float().cpu()
    model.train(was_training)
    losses = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none").view(first.shape)
    return float(losses[first].mean()), float(losses[repeat].mean())


@torch.no_grad()
def head_scores(model: AttentionOnly, half: int = 20, batch_size: int = 64, generator=None) -> dict[str, torch.Tensor]:
    """Per-head scores (each (n_layer, n_head)) on sequences of ``half`` distinct random tokens repeated once:

    - ``previous``: the mean attention from each position to the one before it;
    - ``duplicate``: the mean attention from a token of the second half to its own first occurrence;
    - ``prefix``: prefix matching, the mean attention from a token of the second half to the position just
      after that token's first occurrence (an induction head's pattern);
    - ``copying``: the share of tokens that the head's output, read directly by the unembedding, makes the
      most likely next token when the head attends to that token (W_U W_O W_V W_E's diagonal wins its column).
    """
    c = model.config
    half = validate.positive_int(half, "half", minimum=2)
    if 2 * half > c.block_size or half > c.vocab_size:
        raise ValueError(f"half={half}: two copies must fit in block_size={c.block_size} and the tokens be "
                         f"distinct among vocab_size={c.vocab_size}")  # fmt: skip
    device = next(model.parameters()).device
    first = torch.stack([torch.randperm(c.vocab_size, generator=generator)[:half] for _ in range(batch_size)])
    x = torch.cat([first, first], 1).to(device)
    was_training = model.training
    model.eval()
    _, _, attentions = model(x, return_attention=True)
    model.train(was_training)
    weights = torch.stack(attentions).float()  # (L, B, H, T, T)
    T = 2 * half
    rows = torch.arange(1, T, device=device)
    previous = weights[..., rows, rows - 1].mean((1, 3))
    second = torch.arange(half, T, device=device)
    prefix = weights[..., second, second - half + 1].mean((1, 3))
    duplicate = weights[..., second, second - half].mean((1, 3))
    dh = c.n_embd // c.n_head
    copying = torch.zeros(c.n_layer, c.n_head)
    embedding = model.token_embedding.weight  # (V, d)
    for layer in range(c.n_layer):
        w_v = model.qkv[layer].weight[2 * c.n_embd :]  # (d, d): rows are the heads' value features
        for head in range(c.n_head):
            part = slice(head * dh, (head + 1) * dh)
            moved = embedding @ w_v[part].T @ model.out[layer].weight[:, part].T  # (V, d): token j's output
            logits = model.unembed(moved)  # (V source, V logits)
            copying[layer, head] = (logits.argmax(-1) == torch.arange(c.vocab_size, device=device)).float().mean()
    return {"previous": previous.cpu(), "duplicate": duplicate.cpu(), "prefix": prefix.cpu(), "copying": copying}


def train_repeats(model: AttentionOnly, steps: int, segment: int, batch_size: int = 32, lr: float = 1e-3,
                  eval_interval: int = 50, seed: int = 0) -> list[dict]:  # fmt: skip
    """Train ``model`` (AdamW, constant ``lr``) on :func:`repeated_segment_batch` sequences of its whole
    context, next-token loss everywhere. Every ``eval_interval`` steps (and at the end) record the step,
    the loss on first occurrences and on copies (one fixed batch of 256 sequences) and the heads' largest
    prefix-matching score. Returns those records."""
    c = model.config
    steps = validate.positive_int(steps, "steps")
    eval_interval = validate.positive_int(eval_interval, "eval_interval")
    generator = torch.Generator().manual_seed(seed)
    probe = repeated_segment_batch(256, c.block_size, c.vocab_size, segment, torch.Generator().manual_seed(seed + 1))
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=validate.finite_float(lr, "lr", low=0, low_inclusive=False))
    history = []

    def record(step):
        first, repeat = segment_losses(model, *probe)
        prefix = head_scores(model, half=min(c.block_size // 2, c.vocab_size, 20), batch_size=32,
                             generator=torch.Generator().manual_seed(seed + 2))["prefix"]  # fmt: skip
        history.append({"step": step, "first": first, "repeat": repeat, "prefix": float(prefix.max())})

    model.train()
    for step in range(steps):
        if step % eval_interval == 0:
            record(step)
        x, _, _ = repeated_segment_batch(batch_size, c.block_size, c.vocab_size, segment, generator)
        x = x.to(device)
        _, loss = model(x, _shifted(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    record(steps)
    return history


def _shifted(x: torch.Tensor) -> torch.Tensor:
    """Next-token targets for ``x``: x shifted left by one, the last position ignored (-100)."""
    y = torch.full_like(x, -100)
    y[:, :-1] = x[:, 1:]
    return y


# --------------------------------------------------------------------------- few-shot: a rule inferred in context


class RuleTaskBatcher:
    """Sequences ``x1 y1 x2 y2 ... xK yK`` over ``vocab_size`` tokens where ``y = rule(x)`` for one rule per
    sequence, drawn from a fixed family of ``rules`` random permutations of the vocabulary (the family is
    fixed by ``seed``; a model learns it in training). The pairs tell which rule is in force, and every ``x``
    of a sequence is different, so no ``y`` can be copied from an earlier pair: the rule must be inferred
    and applied. ``get_batch(split, batch_size, generator)`` returns ``x`` (B, 2K) and targets (B, 2K): at
    each ``x_i``'s position, ``y_i``; elsewhere -100. The prediction of ``y_{k+1}`` has seen ``k`` examples."""

    def __init__(self, vocab_size: int, pairs: int, rules: int = 4, seed: int = 0):
        self.vocab_size = validate.positive_int(vocab_size, "vocab_size", minimum=2)
        self.pairs = validate.positive_int(pairs, "pairs")
        if self.pairs > self.vocab_size:
            raise ValueError(f"pairs={pairs} distinct x need vocab_size >= pairs, got vocab_size={vocab_size}")
        generator = torch.Generator().manual_seed(validate.nonnegative_int(seed, "seed"))
        count = validate.positive_int(rules, "rules")
        self.rules = torch.stack([torch.randperm(self.vocab_size, generator=generator) for _ in range(count)])
        self.block_size = 2 * self.pairs

    def get_batch(self, split: str, batch_size: int, generator=None):
        validate.one_of(split, "split", ("train", "val"))
        B, V, K = validate.positive_int(batch_size, "batch_size"), self.vocab_size, self.pairs
        xs = torch.stack([torch.randperm(V, generator=generator)[:K] for _ in range(B)])  # (B, K)
        rule = torch.randint(0, len(self.rules), (B,), generator=generator)
        ys = self.rules[rule[:, None], xs]  # (B, K)
        x = torch.stack([xs, ys], 2).view(B, 2 * K)
        y = torch.full_like(x, -100)
        y[:, 0::2] = ys
        return x, y


@torch.no_grad()
def few_shot_accuracy(model: nn.Module, batcher, n: int = 2000, seed: int = 0) -> list[float]:
    """Accuracy of ``model`` on ``y_{k+1}`` after ``k`` examples, for k = 0 .. pairs - 1, on ``n`` fresh
    sequences of ``batcher`` (a :class:`RuleTaskBatcher`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x, y = batcher.get_batch("val", validate.positive_int(n, "n"), torch.Generator().manual_seed(seed))
    logits = model(x.to(device))[0][:, 0::2].cpu()  # (n, K): the predictions of y_1 .. y_K
    model.train(was_training)
    return (logits.argmax(-1) == y[:, 0::2]).float().mean(0).tolist()
