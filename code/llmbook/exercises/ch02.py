"""Checks of Chapter 2's exercises (Tokens, embeddings, self-supervision)."""

from __future__ import annotations

import torch

from ..tokenizers import merge as _reference_merge  # the library's own BPE merge is the reference
from .core import exercise, expect


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return list(ids[:i]) + [new_id] + list(ids[i + 2 :])
    return list(ids)


def _merge_overlapping(ids, pair, new_id):  # replaces at every position, even overlapping ones
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif i > 0 and (ids[i - 1], ids[i]) == tuple(pair):
            continue
        else:
            out.append(ids[i])
    return out


@exercise(
    "ch02.merge_pair",
    name="merge_pair",
    title="Apply one BPE merge",
    wrong=[
        _merge_first_only,
        _merge_overlapping,
        lambda ids, pair, new_id: [i for i in ids if i not in pair] + [new_id],
    ],
)
def check_merge_pair(merge_pair):
    cases = [
        ([1, 2, 3, 1, 2], (1, 2), 4),
        ([1, 1, 1], (1, 1), 9),
        ([1, 1, 1, 1], (1, 1), 9),
        ([], (1, 2), 3),
        ([5], (5, 5), 6),
        ([7, 8, 7, 8, 8, 7], (8, 7), 300),
    ]
    for ids, pair, new_id in cases:
        got = merge_pair(list(ids), pair, new_id)
        expected = _reference_merge(ids, pair, new_id)
        expect(
            list(got) == expected,
            f"merge_pair({ids}, {pair}, {new_id}) returned {list(got)}; expected {expected} "
            "(scan left to right; after a merge, continue after the merged pair)",
        )


@exercise(
    "ch02.one_hot_embed",
    name="one_hot_embed",
    title="Embedding lookup as a one-hot product",
    wrong=[
        lambda ids, W: W[: len(ids)],
        lambda ids, W: torch.nn.functional.one_hot(torch.as_tensor(ids), W.shape[0]).float() @ W + 1,
        lambda ids, W: W[torch.as_tensor(ids)].sum(0, keepdim=True).expand(len(ids), -1),
    ],
)
def check_one_hot_embed(one_hot_embed):
    generator = torch.Generator().manual_seed(0)
    for vocab_size, dim, ids in [(5, 3, [0, 4, 2, 2]), (10, 4, [9]), (7, 2, [3, 1, 0, 6, 5])]:
        W = torch.randn(vocab_size, dim, generator=generator)
        got = one_hot_embed(list(ids), W)
        expect(isinstance(got, torch.Tensor), f"one_hot_embed returned a {type(got).__name__}; return a tensor")
        expect(
            tuple(got.shape) == (len(ids), dim),
            f"for {len(ids)} ids and W of shape {tuple(W.shape)} your result has shape {tuple(got.shape)}; expected {(len(ids), dim)}",
        )
        expect(
            torch.allclose(got.float(), W[torch.tensor(ids)], atol=1e-6),
            f"one_hot_embed({ids}, W) does not equal the rows W[{ids}] (nn.Embedding's lookup)",
        )


_ONE_WORD_A_LINE = r"[^\n]+|\n"  # each line is one chunk; a newline chunk is one byte, so it has no pair


def _reference_train_bpe(word_counts, num_merges):
    """The library's merges for ``word_counts``: each word a chunk, counted as often as it occurs."""
    from ..tokenizers import BPETokenizer

    text = "\n".join(word for word, count in word_counts.items() for _ in range(count))
    if not text.replace("\n", ""):
        return []
    tokenizer = BPETokenizer.train(text, 256 + num_merges, special_tokens=[], pattern=_ONE_WORD_A_LINE)
    return [tuple(pair) for pair in tokenizer.merges]


def _bpe_words(word_counts, num_merges, weighted=True, smallest_on_ties=True, recount=True):
    """BPE over words; the switches turn on plausible mistakes."""
    words = {word: list(word.encode("utf-8")) for word in word_counts}
    merges, first_counts = [], None
    for new_id in range(256, 256 + num_merges):
        counts = {}
        for word, ids in words.items():
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + (word_counts[word] if weighted else 1)
        if not recount:
            first_counts = first_counts or counts
            ranked = sorted(first_counts, key=lambda p: (-first_counts[p], p))
            return ranked[:num_merges]
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p)) if smallest_on_ties else max(counts, key=counts.get)
        merges.append(pair)
        words = {word: _reference_merge(ids, pair, new_id) for word, ids in words.items()}
    return merges


def _bpe_across_words(word_counts, num_merges):  # plausible mistake: all words glued into one sequence
    return _bpe_words({"".join(w * c for w, c in word_counts.items()): 1}, num_merges) if word_counts else []


@exercise(
    "ch02.train_bpe",
    name="train_bpe",
    title="Train BPE on counted words",
    wrong=[
        lambda word_counts, num_merges: _bpe_words(word_counts, num_merges, weighted=False),
        lambda word_counts, num_merges: _bpe_words(word_counts, num_merges, smallest_on_ties=False),
        lambda word_counts, num_merges: _bpe_words(word_counts, num_merges, recount=False),
        _bpe_across_words,
    ],
)
def check_train_bpe(train_bpe):
    cases = [
        ({"ba": 1, "ab": 1}, 1),  # a tie: the smallest pair, (97, 98), wins
        ({"cat": 4, "cats": 2, "hat": 3, "that": 5, "chat": 1}, 6),
        ({" the": 10, " then": 3, " other": 4, "the": 2}, 6),
        ({"aaaa": 1}, 5),  # only two merges are possible: (a, a), then (aa, aa)
        ({"你好": 3, "你们": 2, "好的": 1}, 4),
        ({"x": 7}, 2),  # no pair at all
        ({}, 3),
    ]
    for word_counts, num_merges in cases:
        got = train_bpe(dict(word_counts), num_merges)
        expect(
            isinstance(got, (list, tuple)),
            f"train_bpe({word_counts}, {num_merges}) returned a {type(got).__name__}; return the list of merged pairs",
        )
        got = [tuple(int(x) for x in pair) for pair in got]
        expected = _reference_train_bpe(word_counts, num_merges)
        expect(
            got == expected,
            f"train_bpe({word_counts}, {num_merges}) returned {got}; BPETokenizer.train learns {expected} on these "
            "words (count pairs inside each word only, each weighted by the word's count; recount after every merge; "
            "ties: the smallest pair; new ids 256, 257, ...; stop when no pair is left)",
        )


def _decode_each_token(ids, vocab):  # plausible mistake: a character split across tokens becomes U+FFFD
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


@exercise(
    "ch02.decode_tokens",
    name="decode_tokens",
    title="Decode byte-level tokens",
    wrong=[
        _decode_each_token,
        lambda ids, vocab: "".join(vocab[i].decode("utf-8", errors="ignore") for i in ids),
        lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("latin-1"),
        lambda ids, vocab: "".join(chr(i) for i in ids),
    ],
)
def check_decode_tokens(decode_tokens):
    from ..tokenizers import BPETokenizer

    english = BPETokenizer.train("the cat sat on the mat; the hat is not a cat. " * 5, 300, special_tokens=[])
    chinese = BPETokenizer.train("床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。" * 5, 300, special_tokens=[])
    for tokenizer, text in [
        (english, "the cat sat"),
        (english, "床前明月光"),
        (english, "naïve café 🙂👍🏽"),
        (chinese, "明月光 🙂 cat"),
        (chinese, ""),
    ]:
        ids = tokenizer.encode(text)
        got = decode_tokens(list(ids), dict(tokenizer.vocab))
        expect(
            got == text,
            f"decode_tokens(ids, vocab) returned {got!r} for the {len(ids)} ids {ids[:12]}{'...' if len(ids) > 12 else ''}"
            f" of {text!r}; expected {text!r} (join the bytes of all tokens first, then decode them as UTF-8: one "
            "character may be split across tokens)",
        )


def _reference_mask(ids, positions, mask_id):
    inputs = [mask_id if i in positions else t for i, t in enumerate(ids)]
    labels = [t if i in positions else -100 for i, t in enumerate(ids)]
    return inputs, labels


@exercise(
    "ch02.mask_tokens",
    name="mask_tokens",
    title="Masked-token (input, label) pairs",
    wrong=[
        lambda ids, positions, mask_id: ([mask_id if i in positions else t for i, t in enumerate(ids)], list(ids)),
        lambda ids, positions, mask_id: (
            [mask_id if i in positions else t for i, t in enumerate(ids)],
            [mask_id if i in positions else -100 for i, t in enumerate(ids)],
        ),
        lambda ids, positions, mask_id: (list(ids), [t if i in positions else -100 for i, t in enumerate(ids)]),
    ],
)
def check_mask_tokens(mask_tokens):
    for ids, positions, mask_id in [([5, 8, 2, 9], {1}, 0), ([3, 3, 3, 3, 3], {0, 4}, 99), ([1, 2, 3], set(), 7)]:
        inputs, labels = mask_tokens(list(ids), set(positions), mask_id)
        inputs, labels = list(map(int, inputs)), list(map(int, labels))
        expected_inputs, expected_labels = _reference_mask(ids, positions, mask_id)
        expect(
            inputs == expected_inputs,
            f"mask_tokens({ids}, {positions}, {mask_id}) gave inputs {inputs}; expected {expected_inputs}",
        )
        expect(
            labels == expected_labels,
            f"mask_tokens({ids}, {positions}, {mask_id}) gave labels {labels}; expected {expected_labels} "
            "(the original token where masked, -100 elsewhere so the loss ignores it)",
        )


@exercise("ch02.bytes_of_nihao", name="bytes_of_nihao", title="Predict a byte count", wrong=[2, 4, 3, "6"])
def check_bytes_of_nihao(bytes_of_nihao):
    expect(isinstance(bytes_of_nihao, int), f"your answer is {bytes_of_nihao!r}; write a whole number")
    expect(
        bytes_of_nihao == len("你好".encode()),
        f"your answer {bytes_of_nihao} is not right: how many bytes does UTF-8 use for one CJK character?",
    )
