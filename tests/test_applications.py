"""Specification of llmbook.applications (Chapter 8): data split, vocabulary, GPT classifier, intervals."""

import math

import pytest
import torch

from llmbook.applications import (
    ClassificationBatcher,
    GPTClassifier,
    WordVocab,
    accuracy,
    sentiment_split,
    wilson_interval,
    words,
)
from llmbook.models import GPT, GPTConfig


def test_sentiment_split_is_fixed_balanced_and_disjoint():
    train, test = sentiment_split(test_size=400)
    assert len(train) == 1600 and len(test) == 400
    assert sum(label for _, label in test) == 200 and sum(label for _, label in train) == 800
    assert not {text for text, _ in train} & {text for text, _ in test}
    assert sentiment_split(test_size=400)[1] == test  # the same split every time


def test_vocab_encodes_last_words_and_pads_at_the_end():
    vocab = WordVocab.build(["a b b c", "b c d"], max_size=5)
    assert vocab.itos[:3] == ["<pad>", "<unk>", "b"] and len(vocab) == 5
    batch = vocab.encode_batch(["a b c d e", "b"], max_tokens=3)
    assert batch.tolist()[1] == [vocab.stoi["b"], 0, 0]
    assert batch.tolist()[0] == [vocab.stoi["c"], WordVocab.UNK, WordVocab.UNK]  # the last 3 words; d, e unknown
    assert words("It's GOOD, isn't it?") == ["it's", "good", ",", "isn't", "it", "?"]


def test_gpt_classifier_ignores_padding_and_freezes_the_body():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    model = GPTClassifier(gpt).eval()
    short = torch.tensor([[5, 6, 7, 0, 0, 0]])
    longer = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(model(short)[0], model(longer)[0], atol=1e-6)  # padding at the end changes nothing
    logits, loss = model(short.repeat(2, 1), torch.tensor([0, 1]))
    assert logits.shape == (2, 2) and math.isclose(loss.item(), math.log(2), abs_tol=0.05)
    model.freeze_body()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


def test_wilson_interval_and_accuracy():
    low, high = wilson_interval(80, 100)
    assert low == pytest.approx(0.7112, abs=1e-3) and high == pytest.approx(0.8666, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(
        1.0
    )

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.stack([torch.zeros(len(x)), torch.ones(len(x))], 1), None

    result = accuracy(Constant(), torch.zeros(10, 3), torch.tensor([1] * 7 + [0] * 3))
    assert result["accuracy"] == 0.7 and result["correct"] == 7 and result["low"] < 0.7 < result["high"]
    with pytest.raises(ValueError, match="correct=11"):
        wilson_interval(11, 10)


def test_classification_batcher_draws_rows_with_their_labels():
    x = torch.arange(12).view(6, 2)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    xb, yb = ClassificationBatcher(x, y, x, y).get_batch("train", 4, torch.Generator().manual_seed(0))
    assert xb.shape == (4, 2) and torch.equal(yb, (xb[:, 0] // 2) % 2)


def test_number_words_and_chinese_numerals():
    from llmbook.applications import number_to_chinese, number_to_english

    cases = {
        0: ("zero", "零"),
        7: ("seven", "七"),
        10: ("ten", "十"),
        15: ("fifteen", "十五"),
        20: ("twenty", "二十"),
        101: ("one hundred and one", "一百零一"),
        110: ("one hundred and ten", "一百一十"),
        1000: ("one thousand", "一千"),
        1005: ("one thousand and five", "一千零五"),
        4012: ("four thousand and twelve", "四千零一十二"),
        10010: ("ten thousand and ten", "一万零一十"),
        10100: ("ten thousand one hundred", "一万零一百"),
        15000: ("fifteen thousand", "一万五千"),
        70001: ("seventy thousand and one", "七万零一"),
        99999: ("ninety nine thousand nine hundred and ninety nine", "九万九千九百九十九"),
    }
    for n, (english, chinese) in cases.items():
        assert number_to_english(n) == english and number_to_chinese(n) == chinese, n
    assert len({number_to_chinese(n) for n in range(100_000)}) == 100_000  # one numeral per number
    assert len({number_to_english(n) for n in range(100_000)}) == 100_000
    with pytest.raises(ValueError, match="below 100,000"):
        number_to_chinese(100_000)
