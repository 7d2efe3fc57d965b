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


@exercise(
    "ch02.next_token_pairs",
    name="next_token_pairs",
    title="Next-token (input, target) pairs",
    wrong=[
        lambda ids: (list(ids[1:]), list(ids[:-1])),  # swapped
        lambda ids: (list(ids), list(ids)),  # copies the input
        lambda ids: (list(ids[:-1]), list(ids[:-1])),
    ],
)
def check_next_token_pairs(next_token_pairs):
    for ids in ([5, 8, 2, 9], [1, 2], list(range(10, 0, -1))):
        inputs, targets = next_token_pairs(list(ids))
        inputs, targets = list(map(int, inputs)), list(map(int, targets))
        expect(
            inputs == ids[:-1] and targets == ids[1:],
            f"next_token_pairs({ids}) returned inputs {inputs} and targets {targets}; "
            f"expected inputs {ids[:-1]} and targets {ids[1:]} (the target at i is the token after position i)",
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
