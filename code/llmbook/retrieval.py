"""BM25 retrieval in a few lines (Chapter 9: From a base model to an assistant).

A question's words are looked up in a collection of short documents; the best
document goes into the prompt as the input of the chat template, and the
fine-tuned model answers from it. BM25 (Robertson and Zaragoza, 2009) scores a
document d for a query q as

    Σ over query terms t: idf(t) · f(t, d) · (k1 + 1) / (f(t, d) + k1 · (1 - b + b · |d| / avgdl))

with idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)): rare words count more,
repeated words count with diminishing returns, long documents are discounted.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from . import validate

__all__ = ["words_of", "BM25"]


def words_of(text: str) -> list[str]:
    """Lower-case words and numbers.

    >>> words_of("How many goats has Alran?")
    ['how', 'many', 'goats', 'has', 'alran']
    """
    return re.findall(r"[a-z0-9]+", text.lower())


class BM25:
    """An index of ``documents`` (strings) scored with BM25 (``k1``, ``b`` as in the formula above)."""

    def __init__(self, documents: list[str], k1: float = 1.5, b: float = 0.75):
        if not documents or not all(isinstance(d, str) for d in documents):
            raise ValueError("BM25 needs a non-empty list of documents (strings)")
        self.k1 = validate.finite_float(k1, "k1", low=0.0, hint="1.2 to 2.0 is usual")
        self.b = validate.finite_float(b, "b", low=0.0, high=1.0, hint="0.75 is usual")
        self.documents = list(documents)
        self.counts = [Counter(words_of(d)) for d in self.documents]
        self.lengths = [sum(c.values()) for c in self.counts]
        self.average_length = sum(self.lengths) / len(self.lengths)
        containing = Counter(word for counts in self.counts for word in counts)  # n(t): documents holding t
        N = len(self.documents)
        self.idf = {t: math.log(1 + (N - n + 0.5) / (n + 0.5)) for t, n in containing.items()}

    def scores(self, query: str) -> list[float]:
        """The BM25 score of every document for ``query``."""
        terms = words_of(query)
        result = []
        for counts, length in zip(self.counts, self.lengths):
            score = 0.0
            for t in terms:
                f = counts.get(t, 0)
                if f:
                    norm = self.k1 * (1 - self.b + self.b * length / self.average_length)
                    score += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            result.append(score)
        return result

    def search(self, query: str, k: int = 1) -> list[int]:
        """Indices of the ``k`` best documents for ``query``, best first."""
        k = validate.positive_int(k, "k")
        scores = self.scores(query)
        return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
