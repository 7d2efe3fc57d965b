"""Turning text into integer ids and back (Chapter 2: Core concepts; used from Chapter 5 on).

``CharTokenizer``: one id per Unicode character seen in training, any script.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CharTokenizer"]


class CharTokenizer:
    """One token per Unicode code point, with the vocabulary taken from a training text.

    >>> tok = CharTokenizer.train("hello 世界")
    >>> tok.decode(tok.encode("hello 世界"))
    'hello 世界'
    """

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer vocabulary has repeated characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        """The vocabulary of ``text``: its distinct characters in sorted order."""
        if not text:
            raise ValueError("cannot build a CharTokenizer from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as error:
            raise ValueError(
                f"character {error.args[0]!r} (U+{ord(error.args[0]):04X}) is not in this tokenizer's "
                f"{self.vocab_size}-character vocabulary; train it on text that contains it"
            ) from None

    def decode(self, ids) -> str:
        try:
            return "".join(self.chars[int(i)] for i in ids)
        except IndexError:
            bad = next(int(i) for i in ids if not 0 <= int(i) < self.vocab_size)
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"type": "char", "chars": self.chars}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if state.get("type") != "char":
            raise ValueError(f"{path} does not hold a CharTokenizer (type={state.get('type')!r})")
        return cls(state["chars"])
