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


def test_stories_have_one_answer_and_encode_for_a_gpt():
    import random

    from llmbook.applications import QA_PLACES, QA_WORDS, encode_qa, make_story, qa_examples

    examples = qa_examples(200, seed=0)
    assert examples == qa_examples(200, seed=0) and examples != qa_examples(200, seed=1)
    objects = 0
    for story, question, answer in examples:
        sentences = [s.split() for s in story.split(" .") if s.strip()]
        assert 3 <= len(sentences) <= 6 and all(len(s) == 5 for s in sentences)  # six words with the "."
        person = question.split()[2]
        holding = [s for s in sentences if person in s]
        assert len(holding) == 1 and holding[0][0] == person  # the person asked about occurs once
        assert answer == holding[0][-1] and answer in QA_PLACES
        objects += sum(s[-1] not in QA_PLACES for s in sentences)
    assert objects > 50  # object sentences are among the distractors
    x, y, where = encode_qa(examples[:5], length=43)
    for row in range(5):
        assert QA_WORDS[x[row, 0]] == "Q:" and QA_WORDS[x[row, 1]] == "where"  # the question comes first
        assert QA_WORDS[x[row, where[row]]] == "A:" and QA_WORDS[y[row, where[row]]] == examples[row][2]
        assert (y[row] != -100).sum() == 1 and x[row, where[row] + 1] == y[row, where[row]]
    with pytest.raises(ValueError, match="raise length"):
        encode_qa(examples[:1], length=5)
    with pytest.raises(ValueError, match="at most 6 people"):
        make_story(random.Random(0), (3, 7))


def test_qa_exact_match_scores_an_oracle_and_a_constant_guess():
    from llmbook.applications import QA_PLACES, QA_WORDS, encode_qa, qa_exact_match, qa_examples

    x, y, where = encode_qa(qa_examples(300, seed=2), length=43)
    V = len(QA_WORDS)

    class Peek(torch.nn.Module):  # reads the next token (which a causal model cannot see): always right
        def __init__(self, constant=None):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.constant = constant

        def forward(self, idx):
            nxt = torch.roll(idx, -1, 1) if self.constant is None else torch.full_like(idx, self.constant)
            return torch.nn.functional.one_hot(nxt, V).float(), None

    assert qa_exact_match(Peek(), x, y, where, batch_size=64) == 1.0
    kitchen = QA_WORDS.index("kitchen")
    share = float((y[torch.arange(300), where] == kitchen).float().mean())
    assert qa_exact_match(Peek(kitchen), x, y, where) == pytest.approx(share) and share < 0.3
    assert len(QA_PLACES) == 6


def test_repeated_segments_copy_a_segment_at_a_random_offset():
    from llmbook.applications import repeated_segment_batch

    x, first, repeat = repeated_segment_batch(64, 40, 30, 8, torch.Generator().manual_seed(0))
    assert x.shape == (64, 40) and first.shape == repeat.shape == (64, 39)
    assert (first.sum(1) == 7).all() and (repeat.sum(1) == 7).all() and not (first & repeat).any()
    offsets = set()
    for row in range(64):
        a = int(first[row].nonzero()[0])
        b = int(repeat[row].nonzero()[0])
        assert torch.equal(x[row, a : a + 8], x[row, b : b + 8]) and b >= a + 8
        offsets.add(b - a)
    assert len(offsets) > 5  # no fixed period
    with pytest.raises(ValueError, match="cannot occur twice"):
        repeated_segment_batch(2, 10, 30, 6)


def _attention_only(seed=0, **sizes):
    from llmbook.applications import AttentionOnly, AttentionOnlyConfig

    torch.manual_seed(seed)
    return AttentionOnly(AttentionOnlyConfig(**{"vocab_size": 20, "block_size": 16, "n_layer": 2, "n_head": 2,
                                                "n_embd": 16, **sizes}))  # fmt: skip


def test_attention_only_matches_pytorch_attention_and_ablates_heads():
    model = _attention_only().eval()
    idx = torch.randint(0, 20, (3, 16), generator=torch.Generator().manual_seed(1))
    # reference: the same weights through torch's scaled_dot_product_attention
    x = model.token_embedding(idx) + model.position_embedding(torch.arange(16))
    for layer in range(2):
        q, k, v = model.qkv[layer](x).view(3, 16, 3, 2, 8).permute(2, 0, 3, 1, 4)
        heads = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + model.out[layer](heads.transpose(1, 2).reshape(3, 16, 16))
    with torch.no_grad():
        logits, _, attentions = model(idx, return_attention=True)
        assert torch.allclose(logits, model.unembed(x), atol=1e-5)
        assert torch.allclose(attentions[0].sum(-1), torch.ones(3, 2, 16), atol=1e-5)
        assert float(attentions[1].triu(1).abs().max()) == 0.0  # causal
        # every head ablated: the logits are the direct path, embedding to unembedding
        silent = model(idx, ablate=[(layer, head) for layer in range(2) for head in range(2)])[0]
        direct = model.unembed(model.token_embedding(idx) + model.position_embedding(torch.arange(16)))
        assert torch.allclose(silent, direct, atol=1e-6)
        one = model(idx, ablate=[(1, 0)])[0]
        assert not torch.allclose(one, logits, atol=1e-6) and not torch.allclose(one, silent, atol=1e-6)
    with pytest.raises(ValueError, match="numbered from 0"):
        model(idx, ablate=[(2, 0)])


def test_head_scores_find_a_hand_built_previous_token_head_and_a_copying_head():
    from llmbook.applications import head_scores

    model = _attention_only(n_layer=1, n_head=1, n_embd=48, vocab_size=16, block_size=32)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # tokens in dims 0..15, positions in dims 16..47 (one-hot)
        model.token_embedding.weight[:, :16] = torch.eye(16)
        model.position_embedding.weight[:, 16:] = torch.eye(32)
        w = model.qkv[0].weight  # rows 0..47 queries, 48..95 keys, 96..143 values
        for i in range(1, 32):  # the query of position i matches the key of position i - 1
            w[16 + i - 1, 16 + i] = 300.0
            w[48 + 16 + i - 1, 16 + i - 1] = 1.0
        w[96 : 96 + 16, :16] = torch.eye(16)  # the value is the token
        model.out[0].weight[:16, :16] = torch.eye(16)
        model.unembed.weight[:, :16] = torch.eye(16)
    scores = head_scores(model, half=12, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert scores["previous"][0, 0] > 0.99 and scores["prefix"][0, 0] < 0.05
    assert scores["copying"][0, 0] == 1.0  # the head writes the token it reads


def test_a_two_layer_attention_only_model_starts_to_use_the_repeat():
    # the whole induction head forms later (the chapter asserts it at the cpu budget); within 300 steps the
    # copy is already easier than the first occurrence, which only looking back can explain
    from llmbook.applications import repeated_segment_batch, segment_losses, train_repeats

    model = _attention_only(seed=0, vocab_size=32, block_size=32, n_head=2, n_embd=32, positions="rope")
    history = train_repeats(model, steps=300, segment=10, batch_size=32, lr=1e-2, eval_interval=150)
    assert [h["step"] for h in history] == [0, 150, 300]
    assert abs(history[0]["repeat"] - history[0]["first"]) < 0.1  # untrained: no difference
    x, first, repeat = repeated_segment_batch(256, 32, 32, 10, torch.Generator().manual_seed(9))
    first_loss, repeat_loss = segment_losses(model, x, first, repeat)
    assert first_loss > 0.95 * math.log(32) and repeat_loss < first_loss - 0.1, (first_loss, repeat_loss)


def test_rule_task_hides_a_rule_and_few_shot_accuracy_measures_it():
    from llmbook.applications import RuleTaskBatcher, few_shot_accuracy

    batcher = RuleTaskBatcher(vocab_size=10, pairs=5, rules=3, seed=0)
    assert torch.equal(batcher.rules, RuleTaskBatcher(10, 5, 3, seed=0).rules)  # the family is fixed by the seed
    assert all(sorted(rule.tolist()) == list(range(10)) for rule in batcher.rules)  # permutations
    x, y = batcher.get_batch("train", 60, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (60, 10) and (y[:, 1::2] == -100).all()
    xs, ys = x[:, 0::2], x[:, 1::2]
    assert torch.equal(y[:, 0::2], ys)
    used = set()
    for row in range(60):  # one rule of the family maps every x of the row to its y
        fits = [r for r, rule in enumerate(batcher.rules) if torch.equal(rule[xs[row]], ys[row])]
        assert fits
        used.update(fits)
        assert len(set(xs[row].tolist())) == 5  # every query is new
    assert used == {0, 1, 2}
    rules = batcher.rules

    class Solver(torch.nn.Module):  # picks the first rule that fits the pairs seen so far
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            logits = torch.zeros(*idx.shape, 10)
            for b in range(idx.shape[0]):
                for i in range(0, idx.shape[1], 2):
                    seen = idx[b, :i]
                    fit = [r for r in rules if torch.equal(r[seen[0::2]], seen[1::2])]
                    logits[b, i, fit[0][idx[b, i]]] = 1.0
            return logits, None

    accuracy = few_shot_accuracy(Solver(), batcher, n=300)
    assert len(accuracy) == 5 and accuracy[-1] == 1.0 and accuracy[0] < 0.7 < accuracy[1] <= accuracy[2]
    with pytest.raises(ValueError, match="vocab_size >= pairs"):
        RuleTaskBatcher(4, 5)
