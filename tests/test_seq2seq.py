"""Specification of llmbook.seq2seq: the encoder–decoder with cross-attention (Chapter 8)."""

import torch

from llmbook.seq2seq import Seq2Seq, Seq2SeqConfig


def small(seed=0, **sizes):
    torch.manual_seed(seed)
    config = Seq2SeqConfig(**{"src_vocab_size": 12, "tgt_vocab_size": 12, "src_len": 6, "tgt_len": 7,
                              "n_layer": 1, "n_head": 2, "n_embd": 32, **sizes})  # fmt: skip
    return Seq2Seq(config).eval()


def test_decoder_is_causal_and_reads_the_source():
    model = small()
    src = torch.tensor([[3, 4, 5, 0, 0, 0]])
    tgt = torch.tensor([[1, 6, 7, 8]])
    with torch.no_grad():
        base, _ = model(torch.cat([src, tgt], 1))
        later, _ = model(torch.cat([src, torch.tensor([[1, 6, 9, 9]])], 1))
        other, _ = model(torch.cat([torch.tensor([[9, 4, 5, 0, 0, 0]]), tgt], 1))
    assert torch.allclose(base[:, :2], later[:, :2], atol=1e-6)  # a later target token changes no earlier logit
    assert not torch.allclose(base[:, 0], other[:, 0], atol=1e-4)  # the first target position reads the source
    _, weights = model.greedy(src, start_id=1, end_id=2, return_attention=True)
    assert weights.shape[:2] == (1, 2) and weights.shape[-1] == 6
    assert torch.allclose(weights.sum(-1), torch.ones(1), atol=1e-5)
    assert float(weights[..., 3:].abs().max()) == 0.0  # padding gets no cross-attention


def test_learns_to_copy_a_sequence_with_the_books_training_loop():
    from llmbook.applications import ClassificationBatcher  # any (x, y) batcher works with train()
    from llmbook.train import TrainConfig, train

    model = small(1, n_embd=48)
    generator = torch.Generator().manual_seed(0)
    digits = torch.randint(3, 12, (512, 4), generator=generator)
    src = torch.cat([digits, torch.zeros(512, 2, dtype=torch.long)], 1)
    tgt_in = torch.cat([torch.ones(512, 1, dtype=torch.long), digits], 1)  # start token 1
    tgt_out = torch.cat([digits, torch.full((512, 1), 2)], 1)  # end token 2
    x = torch.cat([src, tgt_in], 1)
    batcher = ClassificationBatcher(x, tgt_out, x[:64], tgt_out[:64])
    train(model, batcher, TrainConfig(max_steps=150, batch_size=64, lr=3e-3, warmup_steps=10, eval_interval=150,
                                      eval_steps=1, progress=False, weight_decay=0.0), device="cpu")  # fmt: skip
    out = model.greedy(src[:100], start_id=1, end_id=2)
    exact = (out[:, :5] == tgt_out[:100]).all(1).float().mean().item()
    assert exact > 0.9, exact


def _until_end(row, end_id=2):
    row = row.tolist()
    return row[: row.index(end_id) + 1] if end_id in row else row


def _log_prob(model, src, target):
    """The model's log-probability of ``target`` (ids after the start token, end included) for ``src``."""
    tgt_in = torch.tensor([[1, *target[:-1]]])
    with torch.no_grad():
        logits, _ = model(torch.cat([src, tgt_in], 1))
    return float(torch.log_softmax(logits[0].float(), -1)[torch.arange(len(target)), torch.tensor(target)].sum())


def test_beam_of_width_one_is_greedy_and_wider_beams_are_at_least_as_probable():
    model = small(3)
    src = torch.randint(3, 12, (16, 6), generator=torch.Generator().manual_seed(0))
    greedy = model.greedy(src, start_id=1, end_id=2)
    one = model.beam(src, start_id=1, end_id=2, beam_width=1)
    assert [_until_end(r) for r in greedy] == [_until_end(r) for r in one]
    wide = model.beam(src, start_id=1, end_id=2, beam_width=4)
    for row in range(16):
        g, b = _until_end(greedy[row]), _until_end(wide[row])
        if g[-1] != 2 or b[-1] != 2:
            continue  # compare finished targets only
        lg, lb = _log_prob(model, src[row : row + 1], g), _log_prob(model, src[row : row + 1], b)
        assert lb >= lg - 1e-4, (row, lg, lb)
    # exhaustive check on a tiny case: a beam as wide as the vocabulary finds the most probable target of
    # at most 2 tokens (after the end token 2 a target stops)
    tiny = small(4, tgt_vocab_size=4, tgt_len=3)
    s = src[:1]
    candidates = [[2]] + [[a, b] for a in range(4) if a != 2 for b in range(4)]
    best = max(candidates, key=lambda t: _log_prob(tiny, s, t))
    assert _until_end(tiny.beam(s, start_id=1, end_id=2, beam_width=4)[0]) == best
