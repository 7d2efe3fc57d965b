"""Count-based n-gram language models (Chapter 1: From n-grams to large language models).

``NGramLM(n)`` estimates P(token | previous n-1 tokens) from counts, with
add-k smoothing or interpolated Kneser-Ney, and computes perplexity and
samples. Tokens are anything hashable and sortable: the characters of a
string, or a list of words.

Counting is vectorised with NumPy. Every m-gram (m = 1..n) gets an integer
code built from its prefix: ``code(w1..wm) = index(w1..w_{m-1}) * B + wm``,
where ``index`` is the position of the (m-1)-gram in the sorted table of
(m-1)-grams and ``B`` the number of token ids. Looking up a whole text is
then one ``np.searchsorted`` per order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import validate

__all__ = ["NGramLM", "BOS", "EOS"]

BOS = "<s>"  # begin of sequence: fills the context before the first token, never predicted
EOS = "</s>"  # end of sequence: predicted after the last token, part of the vocabulary


def _sorted_vocabulary(sequences: list[list]) -> list:
    """The distinct tokens in sorted order (BOS and EOS left out), with clear errors for odd tokens."""
    try:
        distinct = set().union(*map(set, sequences))
    except TypeError:
        bad = next(t for s in sequences for t in s if not _hashable(t))
        raise TypeError(
            f"tokens must be strings (or other hashable values), got {type(bad).__name__} {bad!r:.40}; "
            "for a list of sentences use fit_many"
        ) from None
    distinct -= {BOS, EOS}
    try:
        return sorted(distinct)
    except TypeError:
        kinds = sorted({type(t).__name__ for t in distinct})
        raise TypeError(
            f"tokens must all be of one kind to be sorted into a vocabulary, got a mix of {', '.join(kinds)}; "
            "convert them, e.g. with [str(t) for t in tokens]"
        ) from None


def _as_tokens(tokens, name: str):
    """``tokens`` as a str (kept) or a list of hashable tokens; clear errors for anything else."""
    if isinstance(tokens, str):
        return tokens
    if not isinstance(tokens, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a string or a list of tokens, got {type(tokens).__name__} {tokens!r:.40}")
    tokens = list(tokens)
    for token in tokens:
        if not _hashable(token):
            raise TypeError(f"{name} must hold tokens such as strings, got {type(token).__name__} {token!r:.40}")
    return tokens


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class NGramLM:
    """An n-gram language model: P(w_t | w_{t-n+1} .. w_{t-1}) from counts.

    ``smoothing="add-k"`` adds ``k`` to every count of the highest order;
    ``smoothing="kneser-ney"`` interpolates all orders with absolute discounting
    and continuation counts (Chen & Goodman's interpolated Kneser-Ney). With
    ``pad=True`` every sequence is preceded by n-1 ``<s>`` and followed by ``</s>``,
    so the model also learns how sequences begin and end.

    >>> lm = NGramLM(2, k=1.0).fit("abab")
    >>> lm.vocab
    ['</s>', 'a', 'b']
    >>> round(lm.prob("b", "a"), 3)  # (c(ab) + 1) / (c(a) + 3) = (2 + 1) / (2 + 3)
    0.6
    """

    def __init__(
        self,
        n: int,
        k: float = 1.0,
        smoothing: str = "add-k",
        discount: float | None = None,
        pad: bool = True,
    ):
        n = validate.positive_int(n, "n", hint="1 = unigram, 2 = bigram, ...")
        validate.one_of(smoothing, "smoothing", ("add-k", "kneser-ney"))
        k = validate.finite_float(
            k, "k", low=0.0, hint="the count added to every n-gram by add-k smoothing; 1 = Laplace"
        )
        if discount is not None:
            discount = validate.finite_float(
                discount,
                "discount",
                low=0.0,
                high=1.0,
                low_inclusive=False,
                high_inclusive=False,
                hint="the Kneser-Ney discount D; None estimates it",
            )
        if not isinstance(pad, bool):
            raise TypeError(f"pad must be True or False, got {pad!r}")
        self.n = n
        self.k = k
        self.smoothing = smoothing
        self.fixed_discount = discount
        self.pad = pad
        self._fitted = False

    # ------------------------------------------------------------------ fitting
    def fit(self, tokens: Sequence[Any]) -> NGramLM:
        """Count the n-grams of one token sequence (a string counts character by character)."""
        if not isinstance(tokens, (Sequence, np.ndarray)):
            raise TypeError(f"fit takes a string or a list of tokens, got {type(tokens).__name__} {tokens!r:.40}")
        return self.fit_many([tokens])

    def fit_many(self, sequences: Sequence[Sequence[Any]]) -> NGramLM:
        """Count the n-grams of several sequences (sentences, poems), each padded on its own."""
        if isinstance(sequences, str):
            raise ValueError("fit_many takes a list of sequences; for one string use fit(text)")
        try:
            sequences = list(sequences)
        except TypeError:
            raise TypeError(f"fit_many takes a list of token sequences, got {type(sequences).__name__}") from None
        for sequence in sequences:
            if not isinstance(sequence, (Sequence, np.ndarray)):
                raise TypeError(
                    f"each sequence must be a string or a list of tokens, got {type(sequence).__name__} {sequence!r:.40}"
                    "; to fit one sequence use fit(tokens)"
                )
        self._text_input = len(sequences) > 0 and all(isinstance(s, str) for s in sequences)
        sequences = [list(s) for s in sequences]
        if not sequences or sum(len(s) for s in sequences) == 0:
            raise ValueError("cannot fit an n-gram model on empty input: give it at least one token")
        vocab = _sorted_vocabulary(sequences)
        # Ids 0..V-1 are the tokens that can be predicted (EOS included when padding); id V is BOS.
        self.vocab = ([EOS] if self.pad else []) + vocab
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.bos_id = len(self.vocab)
        self.base = len(self.vocab) + 1  # B: the radix of the m-gram codes
        ids = self._encode_sequences(sequences)

        # tables[m] = sorted unique codes of the m-grams, counts[m] their counts (m = 0: the empty gram).
        # The tables hold every m-gram inside one padded sequence, those ending in BOS too: they
        # serve as contexts ("<s> <s>") but are left out of every probability below.
        self.tables = [np.zeros(1, dtype=np.int64)]
        self.counts = [np.array([len(ids)], dtype=np.int64)]
        suffix_maps = [None, None]  # suffix_maps[m][g] = index in tables[m-1] of the last m-1 tokens of m-gram g
        index = np.zeros(len(ids), dtype=np.int64)  # index of the (m-1)-gram ending at each position
        valid = np.ones(len(ids), dtype=bool)
        for m in range(1, self.n + 1):
            if m == 1:
                prefix, valid = np.zeros(len(ids), dtype=np.int64), ids >= 0
            else:  # the m-gram ending at t = the (m-1)-gram ending at t-1, then token t
                prefix = np.concatenate([[-1], index[:-1]])
                valid = np.concatenate([[False], valid[:-1]]) & (ids >= 0)
            codes = prefix * self.base + ids
            table, inverse, count = np.unique(codes[valid], return_inverse=True, return_counts=True)
            if m > 1:  # the suffix of the m-gram ending at t is the (m-1)-gram ending at t
                suffix = np.zeros(len(table), dtype=np.int64)
                suffix[inverse] = index[valid]
                suffix_maps.append(suffix)
            index = np.full(len(ids), -1, dtype=np.int64)
            index[valid] = inverse
            self.tables.append(table)
            self.counts.append(count.astype(np.int64))
        self._suffix_maps = suffix_maps
        self._prepare_statistics(suffix_maps)
        self._fitted = True
        return self

    def derive(
        self, n: int | None = None, smoothing: str | None = None, k: float | None = None, discount: float | None = None
    ) -> NGramLM:
        """A model of order <= n with other smoothing settings, from the same counts (no recounting).

        The counts of an n-gram model contain those of every lower order, so one fit of the
        highest order gives all of them: ``lm.derive(n=3, smoothing="add-k", k=0.1)``.
        """
        self._check_fitted()
        n = self.n if n is None else validate.positive_int(n, "n")
        if not 1 <= n <= self.n:
            raise ValueError(f"a derived model needs 1 <= n <= {self.n} (the order that was counted), got {n!r}")
        model = NGramLM(
            n,
            k=self.k if k is None else k,
            smoothing=self.smoothing if smoothing is None else smoothing,
            discount=self.fixed_discount if discount is None else discount,
            pad=self.pad,
        )
        # With padding the counts were taken with self.n - 1 BOS markers in front, more than n - 1;
        # the extra grams consist of BOS alone and are never predicted, so every probability
        # equals that of a model fitted directly with order n (a test checks this).
        for name in ("_text_input", "vocab", "token_to_id", "bos_id", "base"):
            setattr(model, name, getattr(self, name))
        model.tables, model.counts = self.tables[: n + 1], self.counts[: n + 1]
        model._suffix_maps = self._suffix_maps[: n + 1]
        model._prepare_statistics(model._suffix_maps)
        model._fitted = True
        return model

    def _encode_sequences(self, sequences) -> np.ndarray:
        """All sequences as one id array: [BOS]*(n-1) + ids (+ EOS) per sequence, -1 between sequences."""
        pieces = []
        for sequence in sequences:
            ids = [self.token_to_id[t] for t in sequence]
            if self.pad:
                ids = [self.bos_id] * (self.n - 1) + ids + [self.token_to_id[EOS]]
            pieces.append(np.asarray(ids, dtype=np.int64))
            pieces.append(np.array([-1], dtype=np.int64))
        return np.concatenate(pieces[:-1])

    def _prepare_statistics(self, suffix_maps: list) -> None:
        """Per order: the counts used for smoothing, context totals and distinct followers."""
        base = self.base
        # Kneser-Ney uses raw counts at the highest order and continuation counts below it:
        # N1+(. h w) = the number of distinct tokens seen just before the m-gram h w.
        self.kn_counts = [None] * (self.n + 1)
        self.kn_counts[self.n] = self.counts[self.n].astype(np.float64)
        for m in range(1, self.n):
            self.kn_counts[m] = np.bincount(suffix_maps[m + 1], minlength=len(self.tables[m])).astype(np.float64)
        self.context_total = [None] * (self.n + 1)  # sum over w of count(h w), per context h
        self.context_types = [None] * (self.n + 1)  # number of w with count(h w) > 0, per context h
        self.raw_context_total = [None] * (self.n + 1)  # the same sum with raw counts (add-k)
        self.discounts = [0.0] * (self.n + 1)
        for m in range(1, self.n + 1):
            event = self.tables[m] % base != self.bos_id  # m-grams ending in BOS are contexts only
            contexts = self.tables[m][event] // base
            counts = self.kn_counts[m][event]
            size = len(self.tables[m - 1])
            self.context_total[m] = np.bincount(contexts, weights=counts, minlength=size)
            self.context_types[m] = np.bincount(contexts, weights=(counts > 0).astype(np.float64), minlength=size)
            self.raw_context_total[m] = np.bincount(contexts, weights=self.counts[m][event], minlength=size)
            if self.fixed_discount is not None:
                self.discounts[m] = self.fixed_discount
            else:  # Ney's estimate D = n1 / (n1 + 2 n2), kept inside (0, 1)
                n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
                estimate = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
                self.discounts[m] = float(min(max(estimate, 0.05), 0.95))

    # ----------------------------------------------------------------- querying
    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("this NGramLM is not fitted yet: call .fit(tokens) first")

    @property
    def vocab_size(self) -> int:
        """The number of tokens the model can predict (``</s>`` included when padding)."""
        self._check_fitted()
        return len(self.vocab)

    def _lookup(self, m: int, prefix_index: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
        """Index of the m-gram (prefix, token) in tables[m], or -1 where unseen (or prefix is -1)."""
        table = self.tables[m]
        codes = prefix_index * self.base + token_ids
        position = np.searchsorted(table, codes)
        position = np.minimum(position, len(table) - 1)
        found = (table[position] == codes) & (prefix_index >= 0)
        return np.where(found, position, -1)

    def _context_ids(self, context) -> list[int]:
        """The last n-1 context tokens as ids (BOS-padded on the left; unknown tokens become -1)."""
        if self.n == 1:
            return []
        if context is None:
            context = []
        elif isinstance(context, str) and self._text_input:
            context = list(context)
        elif isinstance(context, str):
            context = [context]
        context = _as_tokens(context, "context")[-(self.n - 1) :]
        ids = [self.token_to_id.get(t, -1) if t != BOS else self.bos_id for t in context]
        fill = self.bos_id if self.pad else -1
        return [fill] * (self.n - 1 - len(ids)) + ids

    def distribution(self, context=()) -> np.ndarray:
        """P(w | context) for every w in ``self.vocab`` (a length-V array that sums to 1)."""
        self._check_fitted()
        context_index = self._context_indices(self._context_ids(context))
        vocab_ids = np.arange(len(self.vocab), dtype=np.int64)
        rows = [np.full(len(vocab_ids), index, dtype=np.int64) for index in context_index]
        return self._probabilities(rows, vocab_ids)

    def _context_indices(self, context_ids: list[int]) -> list[int]:
        """ctx[m] = index in tables[m-1] of the last m-1 context tokens, or -1 if unseen."""
        result = [0, 0]  # m = 0 unused; m = 1: the empty context
        for m in range(2, self.n + 1):
            tokens = context_ids[len(context_ids) - (m - 1) :]
            index = 0
            for order, token in enumerate(tokens, start=1):
                if token < 0:
                    index = -1
                    break
                index = int(self._lookup(order, np.array([index]), np.array([token]))[0])
                if index < 0:
                    break
            result.append(index)
        return result

    def _probabilities(self, context_rows: list[np.ndarray], token_ids: np.ndarray) -> np.ndarray:
        """P(token | context) for parallel arrays; context_rows[m] indexes
        tables[m-1] (or -1).
        """
        V = len(self.vocab)
        if self.smoothing == "add-k":
            context = context_rows[self.n]
            gram = self._lookup(self.n, context, token_ids)
            count = np.where(gram >= 0, self.counts[self.n][np.maximum(gram, 0)], 0).astype(np.float64)
            total = np.where(context >= 0, self.raw_context_total[self.n][np.maximum(context, 0)], 0.0)
            denominator = total + self.k * V
            with np.errstate(invalid="ignore", divide="ignore"):
                probability = (count + self.k) / denominator
            # An unseen context (or k = 0 with no counts) carries no
            # information: uniform.
            return np.where(denominator > 0, probability, 1.0 / V)
        # Interpolated Kneser-Ney, from the unigram level up.
        unigram_types = self.context_types[1][0]
        unigram_total = self.context_total[1][0]
        D = self.discounts[1]
        gram = self._lookup(1, np.zeros_like(token_ids), token_ids)
        count = np.where(gram >= 0, self.kn_counts[1][np.maximum(gram, 0)], 0.0)
        probability = (np.maximum(count - D, 0) + D * unigram_types / V) / unigram_total
        for m in range(2, self.n + 1):
            context = context_rows[m]
            D = self.discounts[m]
            safe = np.maximum(context, 0)
            total = np.where(context >= 0, self.context_total[m][safe], 0.0)
            types = np.where(context >= 0, self.context_types[m][safe], 0.0)
            gram = self._lookup(m, context, token_ids)
            count = np.where(gram >= 0, self.kn_counts[m][np.maximum(gram, 0)], 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                higher = (np.maximum(count - D, 0) + D * types * probability) / total
            probability = np.where(total > 0, higher, probability)  # unseen context: back off fully
        return probability

    def _token_id(self, token) -> int:
        if not _hashable(token):
            raise TypeError(
                f"a token must be a string (or another hashable value), got {type(token).__name__} {token!r:.40}"
            )
        if token == BOS:
            raise ValueError(f"{BOS} only fills the context before a sequence; the model never predicts it")
        if token not in self.token_to_id:
            raise ValueError(
                f"token {token!r} never appeared in the training data, so it is not in this model's "
                f"{len(self.vocab)}-token vocabulary; n-gram models cannot score unseen tokens "
                "(map rare tokens to an <unk> token before fitting, or fit on text that contains it)"
            )
        return self.token_to_id[token]

    def _ids(self, tokens) -> np.ndarray:
        """The ids of ``tokens``; a clear error for a token outside the vocabulary."""
        if isinstance(tokens, str) and self._text_input:  # vectorised: code points -> ids
            if not hasattr(self, "_char_table"):
                chars = [(ord(t), i) for t, i in self.token_to_id.items() if len(t) == 1]
                chars.sort()
                self._char_table = (np.array([c for c, _ in chars], dtype=np.int64), np.array([i for _, i in chars]))
            points = np.frombuffer(tokens.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
            known, ids = self._char_table
            position = np.minimum(np.searchsorted(known, points), len(known) - 1)
            bad = known[position] != points
            if bad.any():
                self._token_id(tokens[int(np.argmax(bad))])  # raises the error that names the token
            return ids[position]
        return np.array([self._token_id(t) for t in tokens], dtype=np.int64)

    def prob(self, token, context=()) -> float:
        """P(token | context); ``context`` is a sequence of tokens (only its last n-1 matter)."""
        self._check_fitted()
        return float(self.distribution(context)[self._token_id(token)])

    def log_probs(self, tokens: Sequence[Any]) -> np.ndarray:
        """ln P(w_t | history) for every token of ``tokens`` (and ``</s>`` at the end when padding)."""
        self._check_fitted()
        tokens = _as_tokens(tokens, "tokens")
        if len(tokens) == 0:
            raise ValueError("cannot score an empty sequence: give it at least one token")
        ids = self._ids(tokens)
        if self.pad:
            ids = np.concatenate([np.full(self.n - 1, self.bos_id), ids, [self.token_to_id[EOS]]])
        # context_rows[m][t] = index in tables[m-1] of the (m-1)-gram ending at t-1 (-1: unseen).
        context_rows = [None, np.zeros(len(ids), dtype=np.int64)]
        index = np.zeros(len(ids), dtype=np.int64)  # the 0-gram ending anywhere: index 0
        for j in range(1, self.n):
            prefix = np.concatenate([[-1], index[:-1]]) if j > 1 else index
            index = self._lookup(j, prefix, ids)  # the j-gram ending at t
            context_rows.append(np.concatenate([[-1], index[:-1]]))
        start = self.n - 1 if self.pad else 0  # with padding, the BOS positions are not predicted
        probability = self._probabilities([None] + [row[start:] for row in context_rows[1:]], ids[start:])
        return np.log(probability)

    def perplexity(self, tokens: Sequence[Any]) -> float:
        """exp of the average negative log-likelihood per predicted token (``</s>`` included when padding)."""
        return float(np.exp(-np.mean(self.log_probs(tokens))))

    def coverage(self, tokens: Sequence[Any], order: int | None = None) -> float:
        """The fraction of the ``order``-grams of ``tokens`` (default n) that occurred in training."""
        self._check_fitted()
        order = self._check_order(order)
        ids = np.array([self.token_to_id.get(t, -1) for t in _as_tokens(tokens, "tokens")], dtype=np.int64)
        if len(ids) < order:
            raise ValueError(f"need at least {order} tokens to count {order}-grams, got {len(ids)}")
        index = np.zeros(len(ids), dtype=np.int64)
        for j in range(1, order + 1):
            previous = np.concatenate([[-1], index[:-1]]) if j > 1 else np.zeros(len(ids), dtype=np.int64)
            index = np.where(ids >= 0, self._lookup(j, previous, np.maximum(ids, 0)), -1)
        return float(np.mean(index[order - 1 :] >= 0))

    def _check_order(self, order) -> int:
        order = self.n if order is None else validate.positive_int(order, "order")
        if order > self.n:
            raise ValueError(f"order must be between 1 and n = {self.n} (the order that was counted), got {order}")
        return order

    def counts_table(self, order: int | None = None) -> dict[tuple, int]:
        """The raw counts of the ``order``-grams as {(w1, ..., wm): count} (for small examples)."""
        self._check_fitted()
        order = self._check_order(order)
        names = self.vocab + [BOS]
        grams = [()]
        for m in range(1, order + 1):
            table = self.tables[m]
            grams = [grams[code // self.base] + (names[code % self.base],) for code in table]
        return {gram: int(c) for gram, c in zip(grams, self.counts[order])}

    def sample(
        self, max_tokens: int = 100, prompt=(), seed: int | None = None, generator=None, temperature: float = 1.0
    ):
        """Draw tokens one at a time from P(w | last n-1 tokens) until ``</s>`` or ``max_tokens``.

        ``generator`` is a ``numpy.random.Generator`` (or give ``seed``). Returns a string for a
        model fitted on a string, else a list of tokens; the prompt is not included.
        """
        self._check_fitted()
        validate.nonnegative_int(max_tokens, "max_tokens")
        temperature = validate.finite_float(
            temperature,
            "temperature",
            low=0.0,
            low_inclusive=False,
            hint="1 samples from the model; smaller values are greedier",
        )
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"generator must be a numpy.random.Generator, got {type(generator).__name__}; "
                "use numpy.random.default_rng(seed) or pass seed="
            )
        if seed is not None:
            validate.nonnegative_int(seed, "seed")
        rng = generator if generator is not None else np.random.default_rng(seed)
        history = list(_as_tokens(prompt, "prompt"))
        output = []
        for _ in range(max_tokens):
            p = self.distribution(history)
            if temperature != 1.0:  # p ** (1/T), renormalised, computed in logs so a tiny T does not give 0/0
                with np.errstate(divide="ignore"):
                    scaled = np.log(p) / temperature
                p = np.exp(scaled - scaled.max())
                p = p / p.sum()
            token = self.vocab[rng.choice(len(p), p=p)]
            if self.pad and token == EOS:
                break
            output.append(token)
            history.append(token)
        return "".join(output) if self._text_input else output

    def __repr__(self) -> str:
        state = f"vocab={len(self.vocab)}" if self._fitted else "not fitted"
        detail = f"k={self.k}" if self.smoothing == "add-k" else "kneser-ney"
        return f"NGramLM(n={self.n}, {detail}, {state})"
