"""Chapter 9's instruction data, response-only loss and DPO (llmbook.assistant)."""

import random

import pytest
import torch
import torch.nn.functional as F

from llmbook import assistant as A
from llmbook.models import GPT, GPTConfig
from llmbook.train import train_step

WORDS = ["cat", "horse", "ring", "tide", "apple", "moon"]


def test_template_and_special_tokens_are_single_ids_outside_the_bytes():
    tokenizer = A.chat_tokenizer()
    text = A.chat_text("Reverse the word cat.", response="tac")
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.special_tokens[A.USER] >= 256
    assert ids.count(tokenizer.special_tokens[A.ASSISTANT]) == 1 and ids[-1] == tokenizer.special_tokens[A.END]
    assert tokenizer.decode(ids) == text and len(ids) == len(text.encode()) - len(A.USER + A.ASSISTANT + A.END) + 3


@pytest.mark.parametrize("task", A.TASKS)
def test_every_task_answer_is_what_a_program_computes(task):
    examples = A.make_examples(task, 30, WORDS, random.Random(0), names=["Alran", "Bevin"])
    for example in examples:
        assert example.prompt.startswith(A.USER) and example.prompt.endswith(A.ASSISTANT)
        assert example.response == example.answer
        if task == "reverse":
            word = next(w for w in WORDS if w in example.prompt)
            assert example.answer == word[::-1]
        elif task == "add":
            a, b = (int(c) for c in example.prompt if c.isdigit())
            assert example.answer == str(a + b)
        elif task == "read":
            passage = example.prompt.split("\n")[1]
            assert example.answer in passage


@pytest.mark.parametrize("task", A.TASKS)
def test_every_true_answer_has_its_task_form_and_continued_text_has_none(task):
    examples = A.make_examples(task, 40, WORDS + ["ab"], random.Random(1), names=["Alran", "Bevin"])
    assert all(A.FORMS[task].fullmatch(e.answer) for e in examples)
    for continuation in ("the king of Rome, and", "cat and dog", "tac.", "", "Sure! It is", "Where does Alran live?"):
        assert not A.FORMS[task].fullmatch(A.answer_of(continuation)), continuation


def test_held_out_phrasing_never_appears_in_training_examples():
    rng = random.Random(0)
    for task in A.TRAINED_TASKS:
        held_out = A.TASKS[task]["phrasings"][-1].split("{")[0]
        train = A.make_examples(task, 50, WORDS, rng, names=["Alran"])
        test = A.make_examples(task, 5, WORDS, rng, held_out_phrasing=True, names=["Alran"])
        assert not any(held_out in e.prompt for e in train)
        assert all(held_out in e.prompt for e in test)


def test_chatty_replies_keep_their_answer_readable():
    rng = random.Random(0)
    examples = A.make_examples("upper", 200, WORDS, rng, chatty_fraction=0.5)
    chatty = [e for e in examples if e.response != e.answer]
    assert 60 < len(chatty) < 140
    assert all(A.answer_of(e.response) == e.answer for e in examples)


def test_sft_targets_mask_the_prompt_unless_asked_and_always_the_padding():
    tokenizer = A.chat_tokenizer()
    examples = A.make_examples("reverse", 2, WORDS, random.Random(0))
    batcher = A.SFTBatcher(examples, examples, tokenizer, block_size=64)
    rows = batcher.rows["train"]
    x, y = batcher.encode_rows(rows)
    for i, (ids, prompt_length) in enumerate(rows):
        counted = y[i][y[i] != -100].tolist()
        assert counted == ids[prompt_length:]  # the response and <|end|>, nothing of the prompt
        assert x[i, : len(ids) - 1].tolist() == ids[:-1]
    batcher.prompt_loss = True
    _, y_all = batcher.encode_rows(rows)
    for i, (ids, _) in enumerate(rows):
        assert y_all[i][y_all[i] != -100].tolist() == ids[1:]


def test_masked_prompt_tokens_get_no_gradient_through_train_step():
    torch.manual_seed(0)
    tokenizer = A.chat_tokenizer()
    model = GPT(GPTConfig(tokenizer.vocab_size, 64, 1, 2, 16))
    examples = A.make_examples("first", 4, WORDS, random.Random(0))
    batcher = A.SFTBatcher(examples, examples, tokenizer, block_size=64)
    x, y = batcher.encode_rows(batcher.rows["train"])
    logits = model(x)[0]
    valid = y != -100
    by_hand = F.cross_entropy(logits[valid], y[valid])
    torch.testing.assert_close(model(x, y)[1], by_hand)
    # two micro-batches give the gradient of one batch: each is weighted by its valid targets
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, optimizer, [(x[:1], y[:1]), (x[1:], y[1:])], amp=False)
    split = [p.grad.clone() for p in model.parameters()]
    train_step(model, optimizer, [(x, y)], amp=False)
    for a, p in zip(split, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-6)


def test_dpo_loss_matches_the_formula_and_its_extremes():
    pc, pr = torch.tensor([-2.0, -5.0]), torch.tensor([-4.0, -1.0])
    rc, rr = torch.tensor([-3.0, -3.0]), torch.tensor([-3.0, -3.0])
    loss, chosen, rejected = A.dpo_loss(pc, pr, rc, rr, beta=0.5)
    margins = 0.5 * ((pc - rc) - (pr - rr))
    torch.testing.assert_close(loss, -torch.log(torch.sigmoid(margins)).mean())
    torch.testing.assert_close(chosen - rejected, margins)
    same, _, _ = A.dpo_loss(rc, rr, rc, rr, beta=0.1)
    assert same.item() == pytest.approx(0.6931, abs=1e-4)  # policy = reference: -log σ(0) = ln 2
    with pytest.raises(ValueError, match="beta"):
        A.dpo_loss(pc, pr, rc, rr, beta=0.0)


def test_preference_pairs_prefer_the_concise_correct_answer():
    examples = A.make_examples("length", 100, WORDS, random.Random(0))
    pairs = A.preference_pairs(examples, seed=0)
    assert {p.kind for p in pairs} == {"chatty", "wrong"}
    for pair, example in zip(pairs, examples):
        assert pair.chosen == example.answer != pair.rejected
        if pair.kind == "chatty":
            assert A.answer_of(pair.rejected) == example.answer
        else:
            assert A.answer_of(pair.rejected) != example.answer


def test_dpo_moves_the_policy_toward_chosen_and_away_from_rejected():
    torch.manual_seed(0)
    tokenizer = A.chat_tokenizer()
    policy = GPT(GPTConfig(tokenizer.vocab_size, 96, 1, 2, 32))
    examples = A.make_examples("first", 40, WORDS, random.Random(0))
    pairs = A.preference_pairs(examples, seed=1)
    reference, history = A.train_dpo(policy, pairs, pairs[:16], tokenizer, beta=0.5, steps=25, lr=3e-3,
                                     eval_interval=25)  # fmt: skip
    assert history["loss"][0] == pytest.approx(0.6931, abs=1e-3) and history["margin"][0] == pytest.approx(0)
    assert history["accuracy"][-1] >= 0.9 and history["margin"][-1] > 0.5
    for chosen, rejected, margin in zip(history["chosen_reward"], history["rejected_reward"], history["margin"]):
        assert chosen - rejected == pytest.approx(margin, abs=1e-5)  # the margin is chosen minus rejected
    assert all(not p.requires_grad for p in reference.parameters())


def test_generate_responses_stop_at_end_and_evaluate_scores_exactly():
    tokenizer = A.chat_tokenizer()

    class Echo(torch.nn.Module):  # always answers "t", then <|end|>
        config = GPTConfig(tokenizer.vocab_size, 64, 1, 1, 8)

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            B, T = idx.shape
            logits = torch.zeros(B, T, tokenizer.vocab_size)
            last = idx[:, -1]
            logits[:, -1, ord("t")] = (last != ord("t")).float() * 10
            logits[:, -1, tokenizer.special_tokens[A.END]] = (last == ord("t")).float() * 10
            return logits, None

    examples = [A.Example("first", A.chat_text(f"What is the first letter of {w}?"), w[0], w[0]) for w in WORDS]
    scores = A.evaluate(Echo(), tokenizer, examples)
    assert scores["replies"] == ["t"] * len(WORDS)
    assert scores["exact"]["first"] == pytest.approx(sum(w[0] == "t" for w in WORDS) / len(WORDS))
    assert scores["form"]["first"] == scores["form_all"] == 1.0  # one letter: a first letter, right or wrong
    assert scores["concise_all"] == scores["exact_all"]
