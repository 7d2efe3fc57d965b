"""Specification of llmbook.data: verified, cached, atomic data sets, and clear errors when that fails.

No test touches the network: downloads go through a fake ``urlopen`` that serves the mirror's bytes.
"""

import io
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from llmbook import data

SMALL = "chinese-poetry/tangshi300.json"  # 190 kB, in a sub-folder: exercises folder creation too
MIRROR = Path(os.environ.get("LLMBOOK_DATA_MIRROR", "/nonexistent"))

needs_mirror = pytest.mark.skipif(
    not (MIRROR / SMALL).is_file(), reason="needs the offline data mirror (LLMBOOK_DATA_MIRROR, set by conftest.py)"
)


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden temporary files included, as sorted relative paths."""
    if not folder.exists():
        return []
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns: a readable, closable context manager."""


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv("LLMBOOK_DATA_MIRROR", raising=False)


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """An empty mirror folder that a test fills; LLMBOOK_DATA_MIRROR points at it."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv("LLMBOOK_DATA_MIRROR", str(folder))
    return folder


def serve(monkeypatch, payload: bytes, fail_after: int | None = None, error: BaseException | None = None):
    """Make urlopen serve ``payload``; optionally raise ``error`` once ``fail_after`` bytes were read."""
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        if fail_after is None:
            return FakeResponse(payload)

        class Interrupted(FakeResponse):
            def read(self, size=-1):
                if self.tell() >= fail_after:
                    raise error
                return super().read(min(size, fail_after - self.tell()))

        return Interrupted(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


# --- names --------------------------------------------------------------------------------------


def test_unknown_name_is_an_error_that_lists_every_known_name(data_cache):
    with pytest.raises(data.DataError, match=r"unknown data set 'shakespeare.txt'") as raised:
        data.fetch("shakespeare.txt")
    for name in data.REGISTRY:
        assert name in str(raised.value)
    assert files_in(data_cache) == []


def test_registry_matches_the_mirror_s_sources_table():
    sources = MIRROR / "SOURCES.md"
    if not sources.is_file():
        pytest.skip("needs the offline data mirror")
    table = sources.read_text(encoding="utf-8")
    for dataset in data.REGISTRY.values():
        assert f"| {dataset.name} | {dataset.url} | {dataset.size} | {dataset.sha256} |" in table


def test_cache_dir_follows_llmbook_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMBOOK_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("LLMBOOK_DATA_DIR")
    assert data.cache_dir() == Path.home() / ".cache" / "llmbook"


# --- mirror and cache ---------------------------------------------------------------------------


@needs_mirror
def test_fetch_copies_a_verified_file_from_the_mirror_into_the_cache(data_cache):
    path = data.fetch(SMALL)
    assert path == data_cache / SMALL
    assert path.read_bytes() == (MIRROR / SMALL).read_bytes()
    assert files_in(data_cache) == [SMALL]  # no temporary file left beside it


@needs_mirror
def test_second_fetch_uses_the_cache_without_mirror_or_network(data_cache, monkeypatch):
    first = data.fetch(SMALL)
    modified = first.stat().st_mtime_ns
    monkeypatch.delenv("LLMBOOK_DATA_MIRROR")

    def no_network(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert data.fetch(SMALL) == first
    assert first.stat().st_mtime_ns == modified  # not rewritten


@needs_mirror
def test_corrupted_cached_file_is_an_error_that_says_to_delete_it(data_cache):
    path = data.fetch(SMALL)
    corrupted = bytearray(path.read_bytes())
    corrupted[100] ^= 0xFF  # same size, one byte different
    path.write_bytes(bytes(corrupted))
    with pytest.raises(data.DataError, match=r"sha256 mismatch.*the cache.*delete") as raised:
        data.fetch(SMALL)
    assert str(path) in str(raised.value)


@needs_mirror
def test_truncated_cached_file_is_an_error_that_gives_both_sizes(data_cache):
    path = data.fetch(SMALL)
    path.write_bytes(path.read_bytes()[:1000])
    expected = data.REGISTRY[SMALL].size
    with pytest.raises(data.DataError, match=rf"1,000 bytes, expected {expected:,}.*truncated.*delete"):
        data.fetch(SMALL)


@needs_mirror
def test_deleting_a_bad_cached_file_and_fetching_again_repairs_it(data_cache):
    path = data.fetch(SMALL)
    path.write_bytes(b"garbage")
    with pytest.raises(data.DataError):
        data.fetch(SMALL)
    path.unlink()  # what the error message tells the reader to do
    assert data.fetch(SMALL).read_bytes() == (MIRROR / SMALL).read_bytes()


def test_wrong_checksum_in_the_mirror_is_an_error_and_nothing_is_cached(data_cache, fake_mirror):
    dataset = data.REGISTRY[SMALL]
    (fake_mirror / SMALL).parent.mkdir(parents=True)
    (fake_mirror / SMALL).write_bytes(b"x" * dataset.size)  # right size, wrong bytes
    with pytest.raises(data.DataError, match=r"sha256 mismatch.*mirror.*replace it with the file from https://"):
        data.fetch(SMALL)
    assert files_in(data_cache) == []


def test_truncated_file_in_the_mirror_is_an_error(data_cache, fake_mirror):
    (fake_mirror / "tinyshakespeare.txt").write_text("First Citizen:\n")
    with pytest.raises(data.DataError, match=r"tinyshakespeare.txt in the mirror.*15 bytes, expected 1,115,394"):
        data.fetch("tinyshakespeare.txt")
    assert files_in(data_cache) == []


@needs_mirror
def test_interrupted_copy_from_the_mirror_leaves_no_partial_file(data_cache, monkeypatch):
    def copy_half_then_fail(source, target):
        target.write(source.read(1000))
        raise KeyboardInterrupt  # the reader pressed Ctrl-C mid-copy

    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        data.fetch(SMALL)
    assert files_in(data_cache) == []
    monkeypatch.undo()
    monkeypatch.setenv("LLMBOOK_DATA_DIR", str(data_cache))
    monkeypatch.setenv("LLMBOOK_DATA_MIRROR", str(MIRROR))
    assert data.fetch(SMALL).stat().st_size == data.REGISTRY[SMALL].size  # and the next try works


# --- downloads ----------------------------------------------------------------------------------


def test_no_network_and_no_mirror_is_an_error_naming_the_url_and_where_to_put_the_file(
    data_cache, no_mirror, monkeypatch
):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(data.DataError) as raised:
        data.fetch(SMALL)
    message = str(raised.value)
    assert data.REGISTRY[SMALL].url in message
    assert str(data_cache / SMALL) in message
    assert "LLMBOOK_DATA_MIRROR" in message
    assert "name resolution" in message
    assert files_in(data_cache) == []


def test_a_mirror_without_the_file_falls_back_to_downloading_and_says_so_on_failure(
    data_cache, fake_mirror, monkeypatch
):
    def offline(url, timeout=None):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(data.DataError, match=rf"LLMBOOK_DATA_MIRROR={fake_mirror} does not hold {SMALL}"):
        data.fetch(SMALL)


@needs_mirror
def test_download_fetches_the_canonical_url_verifies_and_caches(data_cache, no_mirror, monkeypatch):
    payload = (MIRROR / SMALL).read_bytes()
    requested = serve(monkeypatch, payload)
    path = data.fetch(SMALL)
    assert requested == [data.REGISTRY[SMALL].url]
    assert path.read_bytes() == payload
    assert files_in(data_cache) == [SMALL]
    data.fetch(SMALL)
    assert len(requested) == 1  # the second call is served by the cache


@needs_mirror
def test_download_with_wrong_bytes_is_an_error_and_leaves_no_file(data_cache, no_mirror, monkeypatch):
    payload = bytearray((MIRROR / SMALL).read_bytes())
    payload[-10] ^= 0x01  # e.g. a proxy that rewrote one byte
    serve(monkeypatch, bytes(payload))
    with pytest.raises(data.DataError, match=r"sha256 mismatch.*the download.*server sent other bytes"):
        data.fetch(SMALL)
    assert files_in(data_cache) == []


def test_download_of_an_error_page_is_an_error_and_leaves_no_file(data_cache, no_mirror, monkeypatch):
    serve(monkeypatch, b"<html>502 Bad Gateway</html>")
    with pytest.raises(data.DataError, match=r"the download.*bytes, expected"):
        data.fetch(SMALL)
    assert files_in(data_cache) == []


@needs_mirror
@pytest.mark.parametrize("error", [ConnectionResetError("connection reset by peer"), TimeoutError("timed out")])
def test_interrupted_download_is_a_data_error_and_leaves_no_partial_file(data_cache, no_mirror, monkeypatch, error):
    serve(monkeypatch, (MIRROR / SMALL).read_bytes(), fail_after=70_000, error=error)
    with pytest.raises(data.DataError, match=r"could not download"):
        data.fetch(SMALL)
    assert files_in(data_cache) == []


@needs_mirror
def test_download_interrupted_by_the_reader_leaves_no_partial_file(data_cache, no_mirror, monkeypatch):
    serve(monkeypatch, (MIRROR / SMALL).read_bytes(), fail_after=70_000, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        data.fetch(SMALL)
    assert files_in(data_cache) == []


# --- loaders ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the loader tests, so each file is copied from the mirror once."""
    if not MIRROR.is_dir():
        pytest.skip("needs the offline data mirror")
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("LLMBOOK_DATA_DIR")
    os.environ["LLMBOOK_DATA_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["LLMBOOK_DATA_DIR"]
    else:
        os.environ["LLMBOOK_DATA_DIR"] = previous


def test_load_text_returns_tiny_shakespeare(shared_cache):
    text = data.load_text("tinyshakespeare.txt")
    assert len(text) == 1_115_394  # ASCII: one character per byte
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_brown_has_1013319_lowercased_words_in_57159_sentences(shared_cache):
    sentences = data.load_brown_sentences()
    words = data.load_brown_words()
    assert len(sentences) == 57_159
    assert len(words) == 1_013_319
    assert words == [word for sentence in sentences for word in sentence]
    assert sentences[0][:4] == ["the", "fulton", "county", "grand"]
    assert all(word == word.lower() for word in words[:10_000])
    assert "the" in words[:10] and "." not in words  # punctuation dropped, tags dropped
    assert not any("/" in word and word.rsplit("/", 1)[1].isupper() for word in words[:10_000])


def test_movie_reviews_are_1000_positive_and_1000_negative(shared_cache):
    reviews = data.load_movie_reviews()
    assert len(reviews) == 2_000
    assert sorted({label for _, label in reviews}) == [0, 1]
    assert sum(label for _, label in reviews) == 1_000
    assert all(isinstance(text, str) and len(text) > 50 for text, _ in reviews)  # the shortest has 91 characters


def test_tang_poems_have_author_title_and_lines_in_chinese(shared_cache):
    one_file = data.load_tang_poems(1)
    assert len(one_file) == 1_000
    for poem in one_file[:50]:
        assert {"author", "title", "paragraphs"} <= set(poem)
        assert poem["paragraphs"] and all(isinstance(line, str) for line in poem["paragraphs"])
    first_line = one_file[0]["paragraphs"][0]
    assert any("\u4e00" <= char <= "\u9fff" for char in first_line)
    assert 10_000 <= len(data.load_tang_poems()) <= 10_010  # ten files of about 1,000 poems


@pytest.mark.parametrize("files", [0, 11, -1])
def test_tang_poems_file_count_out_of_range_is_an_error(files):
    with pytest.raises(ValueError, match=r"between 1 and 10"):
        data.load_tang_poems(files)


# --- training batchers (TokenBatcher, MaskedLMBatcher) ---------------------------------------------


def test_token_batcher_targets_are_inputs_shifted_by_one():
    ids = torch.arange(1000)
    batcher = data.TokenBatcher(ids[:900], ids[900:], block_size=16)
    x, y = batcher.get_batch("train", 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y, x + 1)
    assert int(x.max()) < 900
    xv, _ = batcher.get_batch("val", 4, torch.Generator().manual_seed(0))
    assert int(xv.min()) >= 900


def test_token_batcher_is_reproducible_from_the_generator_state():
    batcher = data.TokenBatcher(torch.arange(500), torch.arange(50), block_size=4)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = batcher.get_batch("train", 5, generator)[0]
    generator.set_state(state)
    assert torch.equal(first, batcher.get_batch("train", 5, generator)[0])


def test_token_batcher_rejects_data_shorter_than_a_window():
    with pytest.raises(ValueError, match="val split has 4 tokens"):
        data.TokenBatcher(torch.arange(100), torch.arange(4), block_size=8)
    with pytest.raises(ValueError, match="train split has 0 tokens"):
        data.TokenBatcher(torch.tensor([], dtype=torch.long), torch.arange(100), block_size=8)
    with pytest.raises(ValueError, match="split must be"):
        data.TokenBatcher(torch.arange(100), torch.arange(100), 8).get_batch("test", 2)


def test_masked_lm_batcher_follows_the_80_10_10_rule():
    vocab, mask_id = 50, 0
    ids = torch.randint(1, vocab, (20_000,), generator=torch.Generator().manual_seed(0))
    batcher = data.MaskedLMBatcher(ids, ids[:1000], block_size=64, mask_token_id=mask_id, vocab_size=vocab)
    generator = torch.Generator().manual_seed(1)
    inputs, targets = batcher.get_batch("train", 256, generator)
    selected = targets != -100
    fraction = selected.float().mean().item()
    assert 0.14 < fraction < 0.16
    # Unselected positions are untouched; the loss ignores them.
    original = torch.where(selected, targets, inputs)
    masked = (inputs == mask_id) & selected
    kept = (inputs == original) & selected
    replaced = selected & ~masked & ~kept
    n = selected.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    # A random replacement equals the original 1 time in 49: "kept" is a little above 10%.
    assert abs(kept.sum().item() / n - (0.1 + 0.1 / 49)) < 0.02
    assert abs(replaced.sum().item() / n - 0.1 * 48 / 49) < 0.02
    assert not (inputs[~selected] == mask_id).any()


def test_masked_lm_batcher_selects_at_least_one_position_per_row():
    ids = torch.arange(2, 300) % 40 + 2
    batcher = data.MaskedLMBatcher(ids, ids, block_size=4, mask_token_id=1, vocab_size=42, mask_prob=0.01)
    _, targets = batcher.get_batch("train", 64, torch.Generator().manual_seed(0))
    assert ((targets != -100).sum(dim=1) >= 1).all()


def test_batchers_stay_importable_from_llmbook_train():
    from llmbook.train import MaskedLMBatcher, TokenBatcher

    assert TokenBatcher is data.TokenBatcher and MaskedLMBatcher is data.MaskedLMBatcher


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: data.TokenBatcher(torch.arange(100), torch.arange(100), block_size=0), "block_size must be"),
        (lambda: data.TokenBatcher(torch.arange(100.0), torch.arange(100), block_size=4), "integer token ids"),
        (lambda: data.TokenBatcher(torch.arange(-5, 95), torch.arange(100), block_size=4), "negative token id -5"),
        (lambda: data.TokenBatcher(torch.ones(10, 10), torch.arange(100), block_size=4), "1-D sequence"),
        (
            lambda: data.MaskedLMBatcher(
                torch.arange(100), torch.arange(100), 4, mask_token_id=0, vocab_size=100, mask_prob=float("nan")
            ),
            "mask_prob must be a finite number",
        ),
        (
            lambda: data.MaskedLMBatcher(torch.arange(100), torch.arange(100), 4, mask_token_id=100, vocab_size=100),
            "mask_token_id 100 is outside",
        ),
        (
            lambda: data.TokenBatcher(torch.arange(100), torch.arange(100), 4).get_batch("train", 0),
            "batch_size must be",
        ),
    ],
)
def test_batchers_reject_bad_arguments_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()
