"""Mischievous inputs to every public function of the model, tokenizer and generation code.

Each case must raise a clear error: the expected type (``ValueError`` for a bad
value, ``TypeError`` for the wrong kind of object) with a message that names the
bad value, never a raw exception from deep inside torch, NumPy or ``json``, and
never a silently wrong result. ``CASES`` is a plain list so that a script can
replay it against another version of the library and count the outcomes.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from llmbook import attention as A
from llmbook import generate as G
from llmbook import models as M
from llmbook import ngram as N
from llmbook import notebook as NB
from llmbook import rnn as R
from llmbook import tokenizers as TK
from llmbook import viz as V

IDS = torch.tensor([[1, 2, 3]])
INF = float("inf")
NAN = float("nan")


# ------------------------------------------------------------------------------------ builders
def gpt():
    torch.manual_seed(0)
    return M.GPT(M.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))


def bert(**options):
    torch.manual_seed(0)
    return M.BERT(M.BERTConfig(11, 8, 1, 2, 8, dropout=0.0, **options))


def lstm_config(**options):
    return R.LSTMConfig(**{"vocab_size": 11, "n_embd": 4, "hidden_dim": 6, **options})


def lstm_lm(**options):
    torch.manual_seed(0)
    return R.LSTMLanguageModel(lstm_config(**options))


def lstm_classifier(**options):
    torch.manual_seed(0)
    return R.LSTMClassifier(R.LSTMClassifierConfig(**{"vocab_size": 11, "n_embd": 4, "hidden_dim": 6, **options}))


def mha():
    torch.manual_seed(0)
    return A.MultiHeadAttention(8, 2)


def file_with(text: str) -> str:
    path = Path(tempfile.mkdtemp()) / "tokenizer.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


def char_tokenizer():
    return TK.CharTokenizer.train("abc")


def word_tokenizer():
    return TK.WordTokenizer.train("a b c a")


def bigram():
    return N.NGramLM(2).fit("abcab")


class NaNModel(torch.nn.Module):
    """A model whose weights have gone NaN (as after a diverged run)."""

    def forward(self, idx):
        return torch.full((*idx.shape, 5), NAN), None


def weights(T=3):
    return torch.softmax(torch.randn(1, 2, T, T), dim=-1)


# ------------------------------------------------------------------------------------ the cases
# (id, call, expected exception type, text the message must contain: the bad value)
CASES = [
    # GPT / BERT configs and models
    ("gpt-config-zero-layers", lambda: M.GPTConfig(11, 8, 0, 2, 8), ValueError, "got 0"),
    ("gpt-config-float-width", lambda: M.GPTConfig(11, 8, 1, 2, 8.0), ValueError, "8.0"),
    ("gpt-config-bool-heads", lambda: M.GPTConfig(11, 8, 1, True, 8), ValueError, "True"),
    ("gpt-config-nan-dropout", lambda: M.GPTConfig(11, 8, 1, 2, 8, dropout=NAN), ValueError, "nan"),
    ("gpt-config-dropout-one", lambda: M.GPTConfig(11, 8, 1, 2, 8, dropout=1.0), ValueError, "1.0"),
    ("gpt-config-causal-string", lambda: M.GPTConfig(11, 8, 1, 2, 8, causal="no"), TypeError, "'no'"),
    ("gpt-config-heads-not-dividing", lambda: M.GPTConfig(11, 8, 1, 3, 8), ValueError, "n_head (3)"),
    ("gpt-from-dict", lambda: M.GPT({"vocab_size": 11}), TypeError, "dict"),
    ("bert-config-pooling", lambda: M.BERTConfig(11, 8, 1, 2, 8, pooling="max"), ValueError, "'max'"),
    ("bert-config-negative-pad", lambda: M.BERTConfig(11, 8, 1, 2, 8, pad_id=-1), ValueError, "-1"),
    ("bert-config-pad-outside", lambda: M.BERTConfig(11, 8, 1, 2, 8, pad_id=11), ValueError, "11"),
    ("bert-config-negative-segments", lambda: M.BERTConfig(11, 8, 1, 2, 8, n_segments=-2), ValueError, "-2"),
    ("bert-config-one-class", lambda: M.BERTConfig(11, 8, 1, 2, 8, num_classes=1), ValueError, "got 1"),
    ("gpt-float-ids", lambda: gpt()(IDS.float()), ValueError, "float32"),
    ("gpt-id-past-vocab", lambda: gpt()(torch.tensor([[1, 11]])), ValueError, "11"),
    ("gpt-negative-id", lambda: gpt()(torch.tensor([[-1, 2]])), ValueError, "-1"),
    ("gpt-list-ids", lambda: gpt()([[1, 2]]), TypeError, "list"),
    ("gpt-too-long", lambda: gpt()(torch.zeros(1, 9, dtype=torch.long)), ValueError, "9"),
    ("gpt-targets-bad-id", lambda: gpt()(IDS, torch.tensor([[1, 2, -5]])), ValueError, "-5"),
    ("gpt-targets-shape", lambda: gpt()(IDS, torch.tensor([[1, 2]])), ValueError, "(1, 2)"),
    ("gpt-targets-float", lambda: gpt()(IDS, IDS.float()), ValueError, "float32"),
    ("gpt-targets-all-ignored", lambda: gpt()(IDS, torch.full((1, 3), -100)), ValueError, "-100"),
    ("gpt-formula-from-dict", lambda: M.gpt_num_params_formula({"vocab_size": 11}), TypeError, "dict"),
    ("gpt-flops-zero-context", lambda: gpt().flops_per_token(context=0), ValueError, "got 0"),
    (
        "bert-additive-mask-inf",
        lambda: bert()(IDS, attention_mask=torch.tensor([[0.0, 0.0, -INF]])),
        ValueError,
        "-inf",
    ),
    (
        "bert-additive-mask-10000",
        lambda: bert()(IDS, attention_mask=torch.tensor([[0.0, -10000.0, 0.0]])),
        ValueError,
        "-10000",
    ),
    ("bert-mask-value-2", lambda: bert()(IDS, attention_mask=torch.tensor([[1, 2, 1]])), ValueError, "2"),
    ("bert-mask-shape", lambda: bert()(IDS, attention_mask=torch.ones(1, 4)), ValueError, "(1, 4)"),
    ("bert-mask-all-padding", lambda: bert()(IDS, attention_mask=torch.zeros(1, 3)), ValueError, "sequence 0"),
    ("bert-mask-list", lambda: bert()(IDS, attention_mask=[[1, 1, 1]]), TypeError, "list"),
    ("bert-segment-too-large", lambda: bert(n_segments=2)(IDS, segment_ids=torch.tensor([[0, 1, 2]])), ValueError, "2"),
    (
        "bert-segment-without-embedding",
        lambda: bert()(IDS, segment_ids=torch.zeros(1, 3, dtype=torch.long)),
        ValueError,
        "n_segments",
    ),
    ("bert-label-outside", lambda: bert().classify(IDS, labels=torch.tensor([5])), ValueError, "5"),
    ("bert-label-float", lambda: bert().classify(IDS, labels=torch.tensor([0.0])), ValueError, "float32"),
    ("mlp-dropout", lambda: M.MLP(8, dropout=1.5), ValueError, "1.5"),
    ("mlp-wrong-width", lambda: M.MLP(8)(torch.randn(1, 3, 4)), ValueError, "(1, 3, 4)"),
    ("block-int-input", lambda: M.Block(8, 2)(torch.ones(1, 3, 8, dtype=torch.long)), TypeError, "int64"),
    ("block-zero-width", lambda: M.Block(0, 2), ValueError, "got 0"),
    # attention
    ("mha-zero-heads", lambda: A.MultiHeadAttention(8, 0), ValueError, "got 0"),
    ("mha-heads-not-dividing", lambda: A.MultiHeadAttention(8, 3), ValueError, "num_heads (3)"),
    ("mha-negative-dropout", lambda: A.MultiHeadAttention(8, 2, dropout=-0.1), ValueError, "-0.1"),
    ("mha-batch-first-string", lambda: A.MultiHeadAttention(8, 2, batch_first="no"), TypeError, "'no'"),
    ("mha-list-input", lambda: mha()([[0.0] * 8]), TypeError, "list"),
    (
        "mha-float-mask-causal",
        lambda: mha()(torch.randn(1, 3, 8), mask=torch.ones(3, 3), is_causal=True),
        TypeError,
        "float32",
    ),
    ("mha-batch-mismatch", lambda: mha()(torch.randn(1, 3, 8), torch.randn(2, 3, 8)), ValueError, "2"),
    ("mha-int-input", lambda: mha()(torch.ones(1, 3, 8, dtype=torch.long)), TypeError, "int64"),
    ("split-heads-wrong-width", lambda: mha().split_heads(torch.randn(1, 3, 6)), ValueError, "(1, 3, 6)"),
    ("merge-heads-3d", lambda: A.MultiHeadAttention.merge_heads(torch.randn(1, 3, 8)), ValueError, "(1, 3, 8)"),
    ("mha-load-from-linear", lambda: mha().load_from_torch(torch.nn.Linear(8, 8)), TypeError, "Linear"),
    (
        "sdpa-dropout",
        lambda: A.scaled_dot_product_attention(*torch.randn(3, 1, 2, 4), dropout_p=2.0, training=True),
        ValueError,
        "2.0",
    ),
    (
        "sdpa-mixed-dtypes",
        lambda: A.scaled_dot_product_attention(
            torch.randn(1, 2, 4), torch.randn(1, 2, 4).double(), torch.randn(1, 2, 4)
        ),
        TypeError,
        "float64",
    ),
    ("sdpa-list", lambda: A.scaled_dot_product_attention([[1.0]], [[1.0]], [[1.0]]), TypeError, "list"),
    ("causal-mask-float", lambda: A.causal_mask(2.5), ValueError, "2.5"),
    ("causal-mask-zero", lambda: A.causal_mask(0), ValueError, "got 0"),
    ("padding-mask-list", lambda: A.padding_mask([[1, 2]], 0), TypeError, "list"),
    ("sinusoidal-negative-base", lambda: A.sinusoidal_positions(4, 6, base=-1.0), ValueError, "-1"),
    ("sinusoidal-odd-width", lambda: A.sinusoidal_positions(4, 7), ValueError, "7"),
    ("sinusoidal-float-length", lambda: A.sinusoidal_positions(2.5, 6), ValueError, "2.5"),
    ("learned-negative-position", lambda: A.LearnedPositions(4, 6)(torch.tensor([0, -2, 1])), ValueError, "-2"),
    ("learned-float-positions", lambda: A.LearnedPositions(4, 6)(torch.tensor([0.5])), ValueError, "float32"),
    ("learned-zero-length", lambda: A.LearnedPositions(0, 6), ValueError, "got 0"),
    ("rope-zero-base", lambda: A.apply_rope(torch.randn(1, 1, 3, 4), base=0.0), ValueError, "0.0"),
    (
        "rope-float-positions",
        lambda: A.apply_rope(torch.randn(1, 1, 3, 4), torch.tensor([0.0, 1.5, 2.0])),
        ValueError,
        "float32",
    ),
    # recurrent models
    ("lstm-config-zero-hidden", lambda: lstm_config(hidden_dim=0), ValueError, "got 0"),
    ("lstm-config-nan-dropout", lambda: lstm_config(dropout=NAN), ValueError, "nan"),
    ("lstm-config-bool-layers", lambda: lstm_config(num_layers=True), ValueError, "True"),
    ("lstm-id-past-vocab", lambda: lstm_lm()(torch.tensor([[1, 11]])), ValueError, "11"),
    ("lstm-negative-id", lambda: lstm_lm()(torch.tensor([[-3, 1]])), ValueError, "-3"),
    ("lstm-float-ids", lambda: lstm_lm()(IDS.float()), ValueError, "float32"),
    ("lstm-target-past-vocab", lambda: lstm_lm()(IDS, torch.tensor([[1, 20, 2]])), ValueError, "20"),
    (
        "lstm-state-wrong-layers",
        lambda: lstm_lm()(IDS, state=(torch.zeros(2, 1, 6), torch.zeros(2, 1, 6))),
        ValueError,
        "(2, 1, 6)",
    ),
    ("lstm-state-not-pair", lambda: lstm_lm()(IDS, state=torch.zeros(1, 1, 6)), TypeError, "Tensor"),
    ("lstm-from-ints", lambda: R.LSTMLanguageModel(11, 4, 6), TypeError, "(11, 4, 6)"),
    (
        "lstm-hidden-for-huge-target-is-fast",
        lambda: R.hidden_dim_for_params(10**18, 11, 4, 1) and R.hidden_dim_for_params(-5, 11, 4, 1),
        ValueError,
        "-5",
    ),
    ("lstm-hidden-for-too-few", lambda: R.hidden_dim_for_params(10, 11, 4, 1), ValueError, "10"),
    ("classifier-one-class", lambda: lstm_classifier(num_classes=1), ValueError, "got 1"),
    ("classifier-pad-outside", lambda: lstm_classifier(pad_id=11), ValueError, "11"),
    ("classifier-target-outside", lambda: lstm_classifier()(IDS, torch.tensor([2])), ValueError, "2"),
    ("classifier-length-too-long", lambda: lstm_classifier()(IDS, lengths=torch.tensor([5])), ValueError, "5"),
    ("classifier-id-past-vocab", lambda: lstm_classifier()(torch.tensor([[1, 12]])), ValueError, "12"),
    # tokenizers
    ("char-repeated", lambda: TK.CharTokenizer(["a", "b", "a"]), ValueError, "'a'"),
    ("char-not-a-character", lambda: TK.CharTokenizer(["ab", "c"]), ValueError, "'ab'"),
    (
        "char-load-corrupt",
        lambda: TK.CharTokenizer.load(file_with('{"type": "char", "chars": [')),
        ValueError,
        "corrupt",
    ),
    ("char-load-no-chars", lambda: TK.CharTokenizer.load(file_with('{"type": "char"}')), ValueError, "chars"),
    ("char-decode-negative", lambda: char_tokenizer().decode([-1]), ValueError, "-1"),
    ("char-decode-ignore-index", lambda: char_tokenizer().decode(torch.tensor([0, -100])), ValueError, "-100"),
    ("char-decode-float", lambda: char_tokenizer().decode([1.7]), ValueError, "float"),
    ("char-decode-string", lambda: char_tokenizer().decode("ab"), TypeError, "str"),
    ("char-decode-set", lambda: char_tokenizer().decode({0, 1}), TypeError, "set"),
    ("char-decode-huge-id", lambda: char_tokenizer().decode([10**30]), ValueError, str(10**30)),
    ("char-decode-2d-array", lambda: char_tokenizer().decode(np.array([[0, 1]])), ValueError, "(1, 2)"),
    ("char-encode-int", lambda: char_tokenizer().encode(123), TypeError, "int"),
    ("word-decode-negative", lambda: word_tokenizer().decode([-100]), ValueError, "-100"),
    ("word-stop-words-string", lambda: TK.WordTokenizer(stop_words="the"), TypeError, "'the'"),
    ("word-vocab-size-one", lambda: TK.WordTokenizer.train("a b", vocab_size=1), ValueError, "got 1"),
    ("word-min-count-zero", lambda: TK.WordTokenizer.train("a b", min_count=0), ValueError, "got 0"),
    ("word-min-count-too-high", lambda: TK.WordTokenizer.train("a b a", min_count=5), ValueError, "min_count=5"),
    ("word-normalization", lambda: TK.WordTokenizer(normalization="nfkc"), ValueError, "'nfkc'"),
    (
        "word-load-truncated",
        lambda: TK.WordTokenizer.load(file_with('{"type": "word", "words": ["<u')),
        ValueError,
        "corrupt",
    ),
    ("bpe-special-string", lambda: TK.BPETokenizer(special_tokens="<eot>"), TypeError, "'<eot>'"),
    (
        "bpe-train-special-string",
        lambda: TK.BPETokenizer.train("abab", 300, special_tokens="<eot>"),
        TypeError,
        "'<eot>'",
    ),
    (
        "bpe-special-twice",
        lambda: TK.BPETokenizer.train("abab", 300, special_tokens=["<e>", "<e>"]),
        ValueError,
        "'<e>'",
    ),
    ("bpe-pattern-drops-text", lambda: TK.BPETokenizer(pattern="x").encode("abab"), ValueError, "'x'"),
    ("bpe-pattern-groups", lambda: TK.BPETokenizer(pattern="(a)|(b)"), ValueError, "(a)|(b)"),
    ("bpe-pattern-invalid", lambda: TK.BPETokenizer(pattern="(a"), ValueError, "(a"),
    ("bpe-pattern-capture-group", lambda: TK.BPETokenizer(pattern=r"(a+)+$"), ValueError, "(a+)+$"),
    (
        "bpe-pattern-hangs",
        lambda: TK.BPETokenizer(pattern=r"(?:a|a)+$|.").encode("a" * 40 + "!"),
        ValueError,
        "(?:a|a)+$|.",
    ),
    ("bpe-decode-negative", lambda: TK.BPETokenizer().decode([-1]), ValueError, "-1"),
    ("bpe-decode-outside", lambda: TK.BPETokenizer().decode([256]), ValueError, "256"),
    ("bpe-decode-float", lambda: TK.BPETokenizer().decode([65.5]), ValueError, "float"),
    (
        "bpe-allowed-special-string",
        lambda: TK.BPETokenizer(special_tokens=["<e>"]).encode("x", allowed_special="<e>"),
        ValueError,
        "'<e>'",
    ),
    ("bpe-train-vocab-float", lambda: TK.BPETokenizer.train("abc", vocab_size=300.0), ValueError, "300.0"),
    ("bpe-merge-triple", lambda: TK.BPETokenizer(merges=[(1, 2, 3)]), ValueError, "(1, 2, 3)"),
    (
        "bpe-load-merges-string",
        lambda: TK.BPETokenizer.load(
            file_with(json.dumps({"type": "bpe", "pattern": "a", "merges": "12", "special_tokens": []}))
        ),
        ValueError,
        "merges",
    ),
    (
        "bpe-load-char-file",
        lambda: TK.BPETokenizer.load(file_with('{"type": "char", "chars": ["a"]}')),
        ValueError,
        "'char'",
    ),
    (
        "bpe-load-special-string",
        lambda: TK.BPETokenizer.load(
            file_with(json.dumps({"type": "bpe", "pattern": ".", "merges": [], "special_tokens": "<eot>"}))
        ),
        ValueError,
        "'<eot>'",
    ),
    ("bpe-encode-bytes", lambda: TK.BPETokenizer().encode(b"abc"), TypeError, "bytes"),
    # generation
    (
        "greedy-several-sequences",
        lambda: G.generate(gpt(), IDS, 2, greedy=True, num_return_sequences=2),
        ValueError,
        "num_return_sequences=2",
    ),
    ("temperature-inf", lambda: G.generate(gpt(), IDS, 2, temperature=INF), ValueError, "inf"),
    ("temperature-zero", lambda: G.generate(gpt(), IDS, 2, temperature=0), ValueError, "got 0"),
    ("temperature-negative", lambda: G.generate(gpt(), IDS, 2, temperature=-1.0), ValueError, "-1.0"),
    ("top-p-above-one", lambda: G.generate(gpt(), IDS, 2, top_p=1.5), ValueError, "1.5"),
    ("top-p-zero", lambda: G.generate(gpt(), IDS, 2, top_p=0.0), ValueError, "0.0"),
    ("top-p-nan", lambda: G.generate(gpt(), IDS, 2, top_p=NAN), ValueError, "nan"),
    ("top-k-bool", lambda: G.generate(gpt(), IDS, 2, top_k=True), ValueError, "True"),
    ("top-k-zero", lambda: G.generate(gpt(), IDS, 2, top_k=0), ValueError, "got 0"),
    ("max-new-negative", lambda: G.generate(gpt(), IDS, -1), ValueError, "-1"),
    ("max-new-float", lambda: G.generate(gpt(), IDS, 2.0), ValueError, "2.0"),
    ("prompt-past-vocab", lambda: G.generate(gpt(), torch.tensor([[1, 50]]), 2), ValueError, "50"),
    ("prompt-list", lambda: G.generate(gpt(), [1, 2], 2), TypeError, "list"),
    ("prompt-3d", lambda: G.generate(gpt(), torch.ones(1, 1, 2, dtype=torch.long), 2), ValueError, "(1, 1, 2)"),
    ("generate-without-model", lambda: G.generate(None, IDS, 2), TypeError, "NoneType"),
    ("generator-string", lambda: G.generate(gpt(), IDS, 2, generator="seed"), TypeError, "str"),
    ("nan-logits", lambda: G.generate(NaNModel(), IDS, 2), ValueError, "nan"),
    ("filter-1d-logits", lambda: G.filter_logits(torch.randn(5), top_k=2), ValueError, "(5,)"),
    ("filter-temperature-zero", lambda: G.filter_logits(torch.randn(1, 5), temperature=0.0), ValueError, "0.0"),
    ("beam-negative-eos", lambda: G.beam_search(gpt(), IDS, 2, eos_id=-1), ValueError, "-1"),
    ("beam-eos-outside", lambda: G.beam_search(gpt(), IDS, 2, eos_id=11), ValueError, "11"),
    ("beam-nan-penalty", lambda: G.beam_search(gpt(), IDS, 2, length_penalty=NAN), ValueError, "nan"),
    ("beam-zero-width", lambda: G.beam_search(gpt(), IDS, 2, beam_width=0), ValueError, "got 0"),
    ("loglik-prompt-too-long", lambda: G.sequence_log_likelihood(gpt(), IDS, prompt_length=5), ValueError, "5"),
    ("loglik-prompt-zero", lambda: G.sequence_log_likelihood(gpt(), IDS, prompt_length=0), ValueError, "got 0"),
    # n-grams
    ("ngram-zero-order", lambda: N.NGramLM(0), ValueError, "got 0"),
    ("ngram-bool-order", lambda: N.NGramLM(True), ValueError, "True"),
    ("ngram-inf-k", lambda: N.NGramLM(2, k=INF), ValueError, "inf"),
    ("ngram-string-k", lambda: N.NGramLM(2, k="1"), ValueError, "'1'"),
    ("ngram-discount", lambda: N.NGramLM(2, smoothing="kneser-ney", discount=1.5), ValueError, "1.5"),
    ("ngram-smoothing", lambda: N.NGramLM(2, smoothing="laplace"), ValueError, "'laplace'"),
    ("ngram-fit-int", lambda: N.NGramLM(2).fit(5), TypeError, "int"),
    ("ngram-fit-many-int", lambda: N.NGramLM(2).fit_many(["ab", 3]), TypeError, "int"),
    ("ngram-fit-unsortable", lambda: N.NGramLM(2).fit(["a", 1]), TypeError, "int"),
    ("ngram-fit-unhashable", lambda: N.NGramLM(2).fit([["a"], ["b"]]), TypeError, "list"),
    ("ngram-sample-float-max", lambda: bigram().sample(max_tokens=2.5), ValueError, "2.5"),
    ("ngram-sample-nan-temperature", lambda: bigram().sample(temperature=NAN), ValueError, "nan"),
    ("ngram-derive-bool", lambda: bigram().derive(n=True), ValueError, "True"),
    ("ngram-coverage-order", lambda: bigram().coverage("ab", order=0), ValueError, "got 0"),
    ("ngram-counts-order", lambda: bigram().counts_table(order=3), ValueError, "3"),
    ("ngram-prob-int-context", lambda: bigram().prob("a", context=5), TypeError, "int"),
    ("ngram-perplexity-int", lambda: bigram().perplexity(5), TypeError, "int"),
    ("ngram-log-probs-unhashable", lambda: N.NGramLM(2).fit(["a", "b"]).log_probs(["a", ["b"]]), TypeError, "list"),
    ("ngram-sample-int-prompt", lambda: bigram().sample(prompt=5), TypeError, "int"),
    ("ngram-sample-string-seed", lambda: bigram().sample(seed="x"), ValueError, "'x'"),
    ("ngram-prob-unknown", lambda: bigram().prob("z", "a"), ValueError, "'z'"),
    # attention views and notebook helpers
    ("view-float-layer", lambda: V.attention_view(weights(), list("abc"), layer=1.5), ValueError, "1.5"),
    ("view-negative-head", lambda: V.attention_view(weights(), list("abc"), head=-1), ValueError, "-1"),
    ("view-string-weights", lambda: V.attention_view([["a"]], ["a"]), ValueError, "'a'"),
    ("view-tokens-string", lambda: V.attention_view(weights(), "abc"), TypeError, "str"),
    ("view-zero-max-tokens", lambda: V.attention_view(weights(), list("abc"), max_tokens=0), ValueError, "got 0"),
    ("view-title-int", lambda: V.attention_view(weights(), list("abc"), title=5), TypeError, "int"),
    ("view-empty-weights", lambda: V.attention_view(torch.zeros(1, 1, 0, 0), []), ValueError, "(1, 0, 0)"),
    ("view-nan-weights", lambda: V.attention_view(torch.full((1, 1, 2, 2), NAN), ["a", "b"]), ValueError, "nan"),
    ("show-source-builtin", lambda: NB.show_source(len), TypeError, "len"),
]


@pytest.mark.parametrize("call, error, needle", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input_raises_a_clear_error(call, error, needle):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert needle in message, f"the message does not name the bad value {needle!r}: {message}"
    assert type(raised.value) in (ValueError, TypeError), type(raised.value)


def test_there_are_many_cases_with_distinct_names():
    names = [case[0] for case in CASES]
    assert len(names) == len(set(names)) and len(names) >= 40


# ------------------------------------------------------------------------------------ right answers the checks must not block
def test_bert_accepts_bool_and_0_1_masks_alike():
    model = bert().eval()
    mask = torch.tensor([[1, 1, 0]])
    expected, _ = model(IDS, attention_mask=mask.bool())
    for form in (mask, mask.float(), mask.to(torch.int32)):
        got, _ = model(IDS, attention_mask=form)
        torch.testing.assert_close(got, expected)


def test_a_cold_ngram_sample_is_the_most_likely_path_not_a_nan_error():
    lm = bigram()
    cold = lm.sample(max_tokens=6, temperature=1e-9, seed=0)
    assert cold == lm.sample(max_tokens=6, temperature=1e-9, seed=1)  # no randomness left
    assert set(cold) <= set("abc")


def test_top_k_larger_than_the_vocabulary_keeps_every_token():
    logits = torch.randn(2, 5)
    torch.testing.assert_close(G.filter_logits(logits, top_k=50), logits)


def test_empty_id_lists_decode_to_empty_text():
    assert char_tokenizer().decode([]) == ""
    assert word_tokenizer().decode([]) == ""
    assert TK.BPETokenizer().decode([]) == ""


def test_decode_accepts_numpy_tensor_and_generator_ids():
    tok = char_tokenizer()
    assert tok.decode(np.array([0, 1, 2])) == tok.decode(torch.tensor([0, 1, 2])) == "abc"
    assert tok.decode(i for i in [2, 1]) == TK.BPETokenizer().decode(iter([99, 98])) == "cb"


def test_the_book_pattern_still_runs_under_the_time_bound():
    tok = TK.BPETokenizer()
    text = "Hello, world! It's 2024.   Done\n" * 2000
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_any_integer_dtype_of_ids_targets_and_labels_gives_the_same_result(dtype):
    expected = gpt()(IDS, IDS)
    got = gpt()(IDS.to(dtype), IDS.to(dtype))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(lstm_lm()(IDS.to(dtype), IDS.to(dtype)), lstm_lm()(IDS, IDS))
    torch.testing.assert_close(
        bert().classify(IDS.to(dtype), torch.tensor([1], dtype=dtype)), bert().classify(IDS, torch.tensor([1]))
    )
    torch.testing.assert_close(
        lstm_classifier()(IDS.to(dtype), torch.tensor([1], dtype=dtype)), lstm_classifier()(IDS, torch.tensor([1]))
    )


def test_ngram_models_fit_arrays_and_iterables_of_sequences():
    assert N.NGramLM(2).fit(np.array(["a", "b"])).vocab == N.NGramLM(2).fit(["a", "b"]).vocab
    assert N.NGramLM(2).fit_many(s for s in ["ab", "ba"]).vocab == ["</s>", "a", "b"]


def test_greedy_single_sequence_still_works():
    out = G.generate(gpt(), IDS, 3, greedy=True)
    assert out.shape == (1, 6) and math.isfinite(float(out.sum()))
