"""Specifications of llmbook.tokenizers (Chapter 2)."""

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbook.data import load_text
from llmbook.tokenizers import STOP_WORDS, BPETokenizer, CharTokenizer, WordTokenizer, get_pair_counts, merge

MIXED = "Hello, world! 你好，世界。 naïve café 🙂👍🏽 e\u0301 tab\tnew\nline 12,345.67 don't"


@pytest.fixture(scope="module")
def shakespeare():
    return load_text("tinyshakespeare.txt")


@pytest.fixture(scope="module")
def bpe_1000(shakespeare):
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(shakespeare, 1000)
    return tokenizer, time.perf_counter() - start


# ----------------------------------------------------------------- characters
def test_char_tokenizer_round_trips_any_script_it_was_trained_on(tmp_path):
    tokenizer = CharTokenizer.train(MIXED)
    assert tokenizer.decode(tokenizer.encode(MIXED)) == MIXED
    assert tokenizer.vocab_size == len(set(MIXED))
    tokenizer.save(tmp_path / "char.json")
    assert CharTokenizer.load(tmp_path / "char.json").encode(MIXED) == tokenizer.encode(MIXED)
    with pytest.raises(ValueError, match="not in this tokenizer"):
        tokenizer.encode("Ω")


# ----------------------------------------------------------------- words
def test_word_tokenizer_normalises_lowercases_and_splits_punctuation():
    tokenizer = WordTokenizer()
    assert tokenizer.tokenize("The ＣＡＴ ﬁnds it, don't you?") == [
        "the",
        "cat",
        "finds",
        "it",
        ",",
        "don't",
        "you",
        "?",
    ]
    assert WordTokenizer(lowercase=False, normalization=None).tokenize("ＣＡＴ Cat") == ["ＣＡＴ", "Cat"]


def test_word_tokenizer_splits_chinese_into_characters_and_keeps_numbers_whole():
    assert WordTokenizer().tokenize("我爱自然语言处理 in 2024, 3.14!") == (
        ["我", "爱", "自", "然", "语", "言", "处", "理", "in", "2024", ",", "3.14", "!"]
    )


def test_stop_words_are_removed_only_on_request():
    text = "The cat is on the mat and it is not happy"
    kept = WordTokenizer().tokenize(text)
    dropped = WordTokenizer(remove_stop_words=True).tokenize(text)
    assert "the" in kept and "not" in kept
    assert dropped == ["cat", "mat", "happy"]  # note: "not" goes too, flipping the meaning
    assert "the" in STOP_WORDS and "cat" not in STOP_WORDS
    custom = WordTokenizer(remove_stop_words=True, stop_words={"cat"}).tokenize(text)
    assert "cat" not in custom and "the" in custom


def test_word_vocabulary_maps_rare_words_to_unk_and_saves(tmp_path):
    tokenizer = WordTokenizer.train("a a a b b c", vocab_size=3)
    assert tokenizer.words == ["<unk>", "a", "b"]
    assert tokenizer.encode("a c b z") == [1, 0, 2, 0]
    assert tokenizer.decode([1, 0, 2]) == "a <unk> b"
    tokenizer.save(tmp_path / "w.json")
    assert WordTokenizer.load(tmp_path / "w.json").words == tokenizer.words
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([7])
    with pytest.raises(ValueError, match="no words"):
        WordTokenizer.train("  ... ", keep_punctuation=False)


# ----------------------------------------------------------------- BPE helpers
def test_pair_counts_and_merge_match_their_docstring_examples():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlap


def test_first_merge_is_the_most_frequent_pair():
    text = "aaab aaab aaab xy"
    tokenizer = BPETokenizer.train(text, 257, special_tokens=[])
    counts = {}
    for chunk in ["aaab", " aaab", " aaab", " xy"]:
        get_pair_counts(list(chunk.encode()), counts)
    best = max(counts, key=counts.get)
    assert list(tokenizer.merges) == [best] == [(97, 97)]


# ----------------------------------------------------------------- BPE round trips
unicode_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)),  # any code point but lone surrogates
    max_size=200,
)


@pytest.fixture(scope="module")
def small_bpe(shakespeare):
    return BPETokenizer.train(shakespeare[:50_000] + "你好世界 🙂 naïve", 400)


@settings(max_examples=200, deadline=None)
@given(text=unicode_text)
def test_decode_inverts_encode_for_any_unicode_string(small_bpe, text):
    assert small_bpe.decode(small_bpe.encode(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "床前明月光，疑是地上霜。",
        "🙂👍🏽👨‍👩‍👧",
        "e\u0301 a\u0308 \u0915\u094d\u0937",
        "\x00\x01\x7f\u200b\r\n",
        "  spaces   ",
        "",
    ],
)
def test_round_trip_chinese_emoji_combining_marks_and_control_characters(small_bpe, text):
    assert small_bpe.decode(small_bpe.encode(text)) == text


def test_special_token_is_one_id_and_never_merged(small_bpe):
    eot = small_bpe.special_tokens["<|endoftext|>"]
    assert eot == small_bpe.vocab_size - 1
    ids = small_bpe.encode("the end<|endoftext|>The start")
    assert ids.count(eot) == 1
    before, after = ids[: ids.index(eot)], ids[ids.index(eot) + 1 :]
    assert small_bpe.decode(before) == "the end" and small_bpe.decode(after) == "The start"
    assert eot not in small_bpe.encode("<|endoftext|>", allowed_special="none")
    # no learned token contains any part of the special token's boundary
    trained = BPETokenizer.train(("hello<|endoftext|>" * 200), 300)
    assert all(b"<|" not in v and b"|>" not in v for v in trained.vocab.values())


# ----------------------------------------------------------------- BPE on Tiny Shakespeare
def test_training_on_tiny_shakespeare_meets_the_targets(shakespeare, bpe_1000):
    # Speed is measured by benchmarks/bpe_vs_hf.py, not asserted here (a loaded CI machine would fail it).
    tokenizer, _ = bpe_1000
    assert tokenizer.vocab_size == 1000
    ids = tokenizer.encode(shakespeare)
    tokens_per_byte = len(ids) / len(shakespeare.encode("utf-8"))
    assert tokenizer.decode(ids) == shakespeare
    assert tokens_per_byte <= 0.43


def test_compression_is_within_two_percent_of_hugging_face_tokenizers(shakespeare, bpe_1000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    ours, _ = bpe_1000
    peer = Tokenizer(models.BPE())
    peer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    peer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    peer.train_from_iterator([shakespeare], trainer)
    n_bytes = len(shakespeare.encode("utf-8"))
    ours_tpb = len(ours.encode(shakespeare)) / n_bytes
    peer_tpb = len(peer.encode(shakespeare).ids) / n_bytes
    assert abs(ours_tpb - peer_tpb) / peer_tpb <= 0.02, (ours_tpb, peer_tpb)


def test_more_merges_compress_better(shakespeare):
    text = shakespeare[:100_000]
    sizes = [len(BPETokenizer.train(text, v).encode(text)) for v in (300, 600, 1200)]
    assert sizes[0] > sizes[1] > sizes[2]


# ----------------------------------------------------------------- BPE files and errors
def test_save_load_round_trip(tmp_path, small_bpe):
    path = tmp_path / "bpe.json"
    small_bpe.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == small_bpe.merges and loaded.special_tokens == small_bpe.special_tokens
    assert loaded.encode(MIXED + "<|endoftext|>") == small_bpe.encode(MIXED + "<|endoftext|>")


def test_loading_a_corrupt_file_is_a_clear_error(tmp_path, small_bpe):
    path = tmp_path / "bpe.json"
    small_bpe.save(path)
    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match="corrupt"):
        BPETokenizer.load(path)
    state = {"type": "bpe", "pattern": "x", "merges": [[1, 999]], "special_tokens": []}
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="not defined"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({"type": "bpe", "merges": []}))
    with pytest.raises(ValueError, match="missing"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({"type": "char", "chars": ["a"]}))
    with pytest.raises(ValueError, match="does not hold a bpe"):
        BPETokenizer.load(path)
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "missing.json")


def test_bad_training_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="too small"):
        BPETokenizer.train("hello", 100)
    with pytest.raises(ValueError, match="empty"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        BPETokenizer.train("hello", 260).decode([5000])
