"""Specifications of the recurrent baselines (Chapter 6 language model, Chapter 8 classifier)."""

import math

import pytest
import torch

from llmbook.rnn import (
    LSTMClassifier,
    LSTMClassifierConfig,
    LSTMConfig,
    LSTMLanguageModel,
    hidden_dim_for_params,
    lstm_num_params,
)
from llmbook.train import TokenBatcher, TrainConfig, train


def test_language_model_shapes_and_loss_at_init_is_ln_vocab():
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=65, n_embd=32, hidden_dim=48, num_layers=2, dropout=0.1))
    idx = torch.randint(65, (4, 20))
    logits, loss = model(idx, idx)
    assert logits.shape == (4, 20, 65)
    assert loss.item() == pytest.approx(math.log(65), abs=0.05)
    logits, loss = model(idx)
    assert loss is None


def test_parameter_count_matches_the_formula_and_can_be_matched_to_a_target():
    for layers in (1, 3):
        model = LSTMLanguageModel(LSTMConfig(vocab_size=50, n_embd=16, hidden_dim=40, num_layers=layers))
        assert model.num_params() == lstm_num_params(50, 16, 40, layers)
        assert model.num_params(non_embedding=True) == model.num_params() - 50 * 16
    hidden = hidden_dim_for_params(800_000, vocab_size=65, n_embd=128, num_layers=2)
    assert abs(lstm_num_params(65, 128, hidden, 2) - 800_000) / 800_000 < 0.01


def test_past_outputs_do_not_depend_on_future_inputs():
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=30, n_embd=8, hidden_dim=16, num_layers=2)).eval()
    idx = torch.randint(30, (2, 12))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 30
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=0)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_state_carries_over_between_chunks():
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=30, n_embd=8, hidden_dim=16, num_layers=2)).eval()
    idx = torch.randint(30, (2, 12))
    whole, _ = model(idx)
    first, _, state = model(idx[:, :5], return_state=True)
    second, _ = model(idx[:, 5:], state=state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-5, atol=1e-6)


def test_it_learns_a_tiny_repeating_sequence_with_the_shared_training_loop():
    torch.manual_seed(0)
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 100)
    batcher = TokenBatcher(ids[:700], ids[700:], block_size=16)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=8, n_embd=16, hidden_dim=32, block_size=16))
    config = TrainConfig(max_steps=80, batch_size=8, lr=1e-2, eval_interval=40, eval_steps=2, progress=False)
    result = train(model, batcher, config, device="cpu")
    assert result.history["val_loss"][0] > 1.8
    assert result.final_val_loss < 0.1


def test_generate_works_with_the_lstm():
    from llmbook.generate import generate

    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=20, n_embd=8, hidden_dim=16, block_size=8))
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), max_new_tokens=12)
    assert out.shape == (1, 13) and int(out.max()) < 20


def test_bad_token_ids_are_rejected():
    model = LSTMLanguageModel(LSTMConfig(vocab_size=10, n_embd=4, hidden_dim=4))
    with pytest.raises(ValueError, match=r"token id 10, outside the vocabulary 0\.\.9"):
        model(torch.tensor([[3, 10]]))


def test_classifier_ignores_padding_at_the_end():
    torch.manual_seed(0)
    model = LSTMClassifier(LSTMClassifierConfig(vocab_size=20, n_embd=8, hidden_dim=16, num_classes=3, pad_id=0)).eval()
    short = torch.tensor([[5, 6, 7, 0, 0, 0]])
    unpadded = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(model(short)[0], model(unpadded)[0], rtol=1e-5, atol=1e-6)
    logits, loss = model(torch.tensor([[1, 2, 0], [3, 4, 5]]), torch.tensor([0, 2]))
    assert logits.shape == (2, 3) and loss.item() > 0


def test_classifier_learns_which_token_a_sequence_contains():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    idx = torch.randint(3, 20, (256, 10), generator=generator)
    labels = torch.randint(2, (256,), generator=generator)
    idx[labels == 1, torch.randint(10, (int(labels.sum()),), generator=generator)] = 1  # class 1 contains token 1
    idx[labels == 0] = torch.where(idx[labels == 0] == 1, 2, idx[labels == 0])
    model = LSTMClassifier(LSTMClassifierConfig(vocab_size=20, n_embd=16, hidden_dim=32, pad_id=0, bidirectional=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        model(idx, labels)[1].backward()
        optimizer.step()
    accuracy = (model.eval()(idx)[0].argmax(-1) == labels).float().mean()
    assert accuracy > 0.95
