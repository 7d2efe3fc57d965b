"""Specification of llmbook.glove (Chapter 3: Word vectors, GloVe)."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from llmbook import glove
from llmbook.exercises import all_exercises, run


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Training takes many tiny tensor operations; on a shared CPU (tests run in parallel) one thread is far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- vocabulary and counting


def test_vocab_keeps_words_above_min_count_most_frequent_first():
    vocab = glove.build_vocab([["b", "a", "b"], ["c", "a", "b"]], min_count=2)
    assert vocab.words == ["b", "a"]
    assert vocab.counts.tolist() == [3, 2]
    assert "c" not in vocab and vocab.id("a") == 1


def test_unknown_word_is_a_clear_key_error():
    vocab = glove.build_vocab("a b a b".split(), min_count=1)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vocab.id("zebra")
    with pytest.raises(KeyError, match="not in the vocabulary"):
        glove.nearest(np.eye(2), vocab, "zebra")


def test_empty_corpus_and_bad_window_are_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        glove.build_vocab([], min_count=1)
    vocab = glove.build_vocab("a b".split(), min_count=1)
    with pytest.raises(ValueError, match="at least two"):
        glove.cooccurrence([], vocab)
    with pytest.raises(ValueError, match="at least two"):
        glove.cooccurrence(["zzz", "yyy"], vocab)  # nothing left after dropping unknown words
    for window in (0, -3, 2.5):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            glove.cooccurrence(["a", "b"], vocab, window=window)
    with pytest.raises(ValueError, match="weighting"):
        glove.cooccurrence(["a", "b"], vocab, weighting="gaussian")


def test_cooccurrence_on_a_tiny_sentence_equals_hand_computed_one_over_distance_sums():
    tokens = "the cat saw the dog".split()
    vocab = glove.build_vocab(tokens, min_count=1)  # the, cat, dog, saw
    X = glove.cooccurrence(tokens, vocab, window=3).toarray()
    the, cat, saw, dog = (vocab.id(w) for w in ("the", "cat", "saw", "dog"))
    # positions: the0 cat1 saw2 the3 dog4
    assert X[cat, the] == pytest.approx(1 + 1 / 2)  # the0 (1 apart), the3 (2 apart)
    assert X[saw, the] == pytest.approx(1 / 2 + 1)  # the0 (2 apart), the3 (1 apart)
    assert X[the, the] == pytest.approx(2 * (1 / 3))  # the0 and the3, 3 apart, counted from both sides
    assert X[cat, dog] == pytest.approx(1 / 3)
    assert X[dog, the] == pytest.approx(1 + 1 / 4 * 0)  # the3 (1 apart); the0 is 4 apart, outside the window
    assert X[the, dog] == X[dog, the]
    np.testing.assert_allclose(X, X.T)  # symmetric window
    # the total mass: every pair d <= 3 apart adds 1/d on both sides
    expected_total = 2 * sum(1 / d for p in range(5) for d in range(1, 4) if p + d < 5)
    assert X.sum() == pytest.approx(expected_total)


def test_asymmetric_counts_only_the_left_context_and_uniform_weighting_counts_one():
    tokens = "a b c".split()
    vocab = glove.Vocab(["a", "b", "c"], [1, 1, 1])
    X = glove.cooccurrence(tokens, vocab, window=2, symmetric=False).toarray()
    np.testing.assert_allclose(X, [[0, 0, 0], [1, 0, 0], [0.5, 1, 0]])  # row: word, column: context on its left
    U = glove.cooccurrence(tokens, vocab, window=2, weighting="uniform").toarray()
    np.testing.assert_allclose(U, [[0, 1, 1], [1, 0, 1], [1, 1, 0]])


def test_window_stops_at_sentence_ends_only_when_asked():
    vocab = glove.Vocab(["a", "b"], [1, 1])
    across = glove.cooccurrence([["a"], ["b"]], vocab, window=5).toarray()
    within = glove.cooccurrence([["a"], ["b"]] * 2, vocab, window=5, cross_sentences=False)
    assert across[0, 1] == 1.0
    assert within.nnz == 0


def test_unknown_words_are_dropped_before_counting_distance():
    vocab = glove.Vocab(["a", "b"], [1, 1])
    X = glove.cooccurrence(["a", "rare", "b"], vocab, window=1).toarray()
    assert X[0, 1] == 1.0  # "rare" is removed, as Stanford's cooccur does, so a and b are neighbours


def test_cooccurrence_accepts_ids_and_words_alike():
    vocab = glove.Vocab(["x", "y", "z"], [3, 2, 1])
    from_words = glove.cooccurrence([["x", "y", "z", "x"]], vocab, window=2).toarray()
    from_ids = glove.cooccurrence(np.array([0, 1, 2, 0]), vocab, window=2).toarray()
    np.testing.assert_allclose(from_words, from_ids)


# --------------------------------------------------------------------------- model and loss


def test_weighting_function_is_capped_at_one_and_follows_the_power_law():
    x = torch.tensor([1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_allclose(glove.glove_weight(x, 100.0, 0.75), [0.01**0.75, 0.1**0.75, 1.0, 1.0], rtol=1e-6)


def test_loss_equals_the_formula_computed_by_hand_on_three_words():
    model = glove.GloVe(3, 2)
    with torch.no_grad():
        model.W.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model.W_tilde.copy_(torch.tensor([[0.5, 0.5], [1.0, -1.0], [0.0, 2.0]]))
        model.b.copy_(torch.tensor([0.1, 0.2, 0.3]))
        model.b_tilde.copy_(torch.tensor([0.0, -0.1, 0.4]))
    # three nonzero counts: X[0,1] = 2, X[1,2] = 50, X[2,0] = 200 (x_max = 100, alpha = 0.75)
    i, j, x = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), torch.tensor([2.0, 50.0, 200.0])
    by_hand = (
        (2 / 100) ** 0.75 * (1.0 * 1.0 + 0.0 * -1.0 + 0.1 - 0.1 - math.log(2)) ** 2
        + (50 / 100) ** 0.75 * (0.0 * 0.0 + 1.0 * 2.0 + 0.2 + 0.4 - math.log(50)) ** 2
        + 1.0 * (1.0 * 0.5 + 1.0 * 0.5 + 0.3 + 0.0 - math.log(200)) ** 2
    )
    assert model.loss(i, j, x, x_max=100.0, alpha=0.75).item() == pytest.approx(by_hand, rel=1e-6)


def test_loss_refuses_zero_counts():
    model = glove.GloVe(2, 2)
    with pytest.raises(ValueError, match="nonzero"):
        model.loss(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.0]))


def test_vectors_are_the_normalised_sum_of_word_and_context_vectors():
    model = glove.GloVe(4, 3)
    vectors = model.vectors()
    expected = (model.W + model.W_tilde).detach().numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="combine"):
        model.vectors(combine="mean")


def _planted_corpus(seed=0, sentences=1500):
    """Four topics of five words; each sentence mixes words of one topic with common filler words."""
    rng = np.random.default_rng(seed)
    topics = [[f"t{t}w{k}" for k in range(5)] for t in range(4)]
    fillers = ["the", "of", "and", "a"]
    corpus = []
    for _ in range(sentences):
        topic = topics[rng.integers(4)]
        words = [str(w) for w in rng.choice(topic, size=6)] + [str(w) for w in rng.choice(fillers, size=2)]
        rng.shuffle(words)
        corpus.append(words)
    return corpus, topics


@pytest.mark.parametrize("optimizer, lr", [("adagrad", 0.1), ("adam", 0.02)])
def test_training_lowers_the_loss_and_planted_neighbours_come_out_nearest(optimizer, lr):
    corpus, topics = _planted_corpus()
    vocab = glove.build_vocab(corpus, min_count=1)
    X = glove.cooccurrence(corpus, vocab, window=4, cross_sentences=False)
    model, result = glove.train_glove(
        X,
        n_embd=10,
        epochs=30,
        lr=lr,
        optimizer=optimizer,
        batch_size=64,
        x_max=10.0,
        seed=1,
        device="cpu",
        progress=False,
    )
    history = result.history
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert len(history["loss"]) == 30 and history["epoch"] == list(range(1, 31))
    assert result.stopped == "completed" and result.steps == 30 * math.ceil(X.nnz / 64)
    vectors = model.vectors()
    for topic in topics:
        for word in topic:
            neighbours = [w for w, _ in glove.nearest(vectors, vocab, word, k=4)]
            # the four nearest are the other words of its topic (filler words like "the" go with every topic)
            assert len(set(neighbours) & set(topic)) >= 3 and neighbours[0] in topic, (word, neighbours)


def test_training_is_reproducible_with_a_seed_and_respects_the_time_limit():
    corpus, _ = _planted_corpus(sentences=200)
    vocab = glove.build_vocab(corpus, min_count=1)
    X = glove.cooccurrence(corpus, vocab, window=3)
    first, _ = glove.train_glove(X, n_embd=4, epochs=3, batch_size=32, seed=7, device="cpu", progress=False)
    second, _ = glove.train_glove(X, n_embd=4, epochs=3, batch_size=32, seed=7, device="cpu", progress=False)
    np.testing.assert_array_equal(first.vectors(), second.vectors())
    _, result = glove.train_glove(
        X, n_embd=4, epochs=1000, batch_size=32, max_seconds=1e-9, device="cpu", progress=False
    )
    history = result.history
    assert result.stopped == "time limit" and "max_seconds" in result.message
    assert len(history["loss"]) == 1 and history["epoch"][0] < 1 and result.steps == 1  # stopped after one batch


def test_result_is_the_train_loops_result_type_with_its_history_keys():
    from llmbook.train import TrainResult

    corpus, _ = _planted_corpus(sentences=100)
    X = glove.cooccurrence(corpus, glove.build_vocab(corpus, min_count=1), window=3)
    model, result = glove.train_glove(X, n_embd=4, epochs=2, batch_size=50, lr=0.2, lr_schedule="linear",
                                      device="cpu", progress=False)  # fmt: skip
    assert isinstance(result, TrainResult) and result.stopped == "completed" and result.message == ""
    history = result.history
    for key in ("log_step", "loss", "lr", "seconds", "tokens_per_second", "epoch"):
        assert len(history[key]) == 2, key
    steps_per_epoch = math.ceil(X.nnz / 50)
    assert history["log_step"] == [steps_per_epoch, 2 * steps_per_epoch] and result.steps == 2 * steps_per_epoch
    # linear decay to zero: the rate of the last step of each epoch
    total = 2 * steps_per_epoch
    assert history["lr"] == pytest.approx([0.2 * (1 - (steps_per_epoch - 1) / total), 0.2 * (1 - (total - 1) / total)])
    assert 0 < history["seconds"][0] < history["seconds"][1]
    assert all(rate > 0 for rate in history["tokens_per_second"])  # pairs per second
    assert history["val_loss"] == [] and math.isnan(result.final_val_loss)  # GloVe has no validation split
    assert model.W.device.type == "cpu"


def test_device_defaults_to_the_runtimes_choice(monkeypatch):
    corpus, _ = _planted_corpus(sentences=50)
    X = glove.cooccurrence(corpus, glove.build_vocab(corpus, min_count=1), window=2)
    seen = []

    def fake_get_device():
        seen.append(True)
        return torch.device("cpu")

    monkeypatch.setattr(glove.runtime, "get_device", fake_get_device)
    model, _ = glove.train_glove(X, n_embd=2, epochs=1, progress=False)
    assert seen and model.W.device.type == "cpu"


def test_cpu_threads_apply_during_training_only():
    corpus, _ = _planted_corpus(sentences=50)
    X = glove.cooccurrence(corpus, glove.build_vocab(corpus, min_count=1), window=2)
    before = torch.get_num_threads()
    during = []
    glove.train_glove(X, n_embd=2, epochs=2, device="cpu", progress=False, cpu_threads=1,
                      callback=lambda epoch, model, history: during.append(torch.get_num_threads()))  # fmt: skip
    assert during == [1, 1] and torch.get_num_threads() == before


def test_callback_runs_after_every_epoch_with_the_linear_schedule():
    corpus, _ = _planted_corpus(sentences=100)
    X = glove.cooccurrence(corpus, glove.build_vocab(corpus, min_count=1), window=3)
    seen = []
    _, result = glove.train_glove(X, n_embd=4, epochs=3, batch_size=64, lr=0.5, lr_schedule="linear", device="cpu",
                                  progress=False,
                                  callback=lambda epoch, model, history: seen.append((epoch, len(history["loss"]))))  # fmt: skip
    assert seen == [(1, 1), (2, 2), (3, 3)]
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_train_glove_rejects_bad_arguments():
    X = glove.cooccurrence("a b a b".split(), glove.Vocab(["a", "b"], [2, 2]), window=1)
    with pytest.raises(ValueError, match="optimizer must be one of 'adagrad', 'adam', got 'sgd'"):
        glove.train_glove(X, n_embd=2, epochs=1, optimizer="sgd")
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1, got 0"):
        glove.train_glove(X, n_embd=2, epochs=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        glove.train_glove(X, n_embd=2, epochs=1, lr_schedule="cosine")
    with pytest.raises(TypeError, match="scipy.sparse"):
        glove.train_glove([[1, 2], [3, 4]], n_embd=2, epochs=1)
    bad = [dict(lr=0.0), dict(lr=float("nan")), dict(batch_size=2.5), dict(n_embd=0), dict(x_max=-1.0),
           dict(max_seconds=0), dict(max_seconds=float("inf")), dict(seed=-1), dict(cpu_threads=0)]  # fmt: skip
    for kwargs in bad:
        name, value = next(iter(kwargs.items()))
        with pytest.raises(ValueError, match=f"{name} must be .*got {value!r}"):
            glove.train_glove(X, **{"n_embd": 2, "epochs": 1, "progress": False, **kwargs})
    with pytest.raises(TypeError, match="time_limit"):  # the old name is gone: max_seconds, as in TrainConfig
        glove.train_glove(X, n_embd=2, epochs=1, time_limit=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_runs_on_the_gpu():
    corpus, topics = _planted_corpus(sentences=500)
    vocab = glove.build_vocab(corpus, min_count=1)
    X = glove.cooccurrence(corpus, vocab, window=4, cross_sentences=False)
    model, result = glove.train_glove(X, n_embd=8, epochs=20, lr=0.1, batch_size=64, progress=False)  # default device
    assert model.W.device.type == "cuda" and result.history["loss"][-1] < result.history["loss"][0]


# --------------------------------------------------------------------------- evaluation


def test_analogy_excludes_the_query_words():
    vocab = glove.Vocab(["a", "b", "c", "d", "e"], [1] * 5)
    # b - a + c lands exactly on c (a == b), the best non-query answer is d
    vectors = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1]], dtype=np.float32)
    assert glove.analogy(vectors, vocab, "a", "b", "c") == "d"
    assert glove.analogy(vectors, vocab, "a", "b", "c", k=2) == ["d", "e"]


def test_analogy_eval_agrees_with_gensim(tmp_path):
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    capitals = ["athens", "berlin", "paris", "rome", "madrid", "oslo"]
    countries = ["greece", "germany", "france", "italy", "spain", "norway"]
    words = capitals + countries + ["noise1", "noise2", "noise3"]
    vectors = rng.normal(size=(len(words), 16)).astype(np.float32)
    offset = rng.normal(size=16).astype(np.float32)
    for k in range(len(capitals) - 1):  # the last pair breaks the pattern
        vectors[words.index(countries[k])] = vectors[k] + offset + 0.3 * rng.normal(size=16)
    lines = [": capital-common-countries"]
    lines += [f"{a} {b} {c} {d}" for a, b in zip(capitals, countries) for c, d in zip(capitals, countries) if a != c]
    lines += [": other", "Athens Greece Cairo Egypt", "noise1 noise2 noise3 athens"]
    path = tmp_path / "questions.txt"
    path.write_text("\n".join(lines) + "\n")

    vocab = glove.Vocab(words, [1] * len(words))
    ours = glove.analogy_eval(vectors, vocab, path)
    keyed = KeyedVectors(16)
    keyed.add_vectors(words, vectors)
    _, sections = keyed.evaluate_word_analogies(str(path))
    theirs = {s["section"]: (len(s["correct"]), len(s["correct"]) + len(s["incorrect"])) for s in sections}
    assert ours.by_category["capital-common-countries"] == theirs["capital-common-countries"]
    assert ours.by_category["other"] == theirs["other"]
    assert ours.total == 32 and ours.covered == 31  # "cairo egypt" is not in the vocabulary
    assert 0 < ours.accuracy < 1


def test_spearman_is_the_rank_correlation_including_ties():
    # by hand: ties get the mean of the ranks they span, then Pearson's r of the ranks
    x, y = [1.0, 2.0, 2.0, 3.0], [10.0, 30.0, 20.0, 40.0]
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])
    assert glove.spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
    assert glove.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same length"):
        glove.spearman([1, 2, 3], [1, 2])
    assert math.isnan(glove.spearman([0.5, 0.5, 0.5], [1, 2, 3]))  # a constant list has no ranking


def test_similarity_eval_matches_scipy_spearmanr_and_reports_coverage(tmp_path):
    words = ["cat", "dog", "car", "truck", "apple"]
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    pairs = [
        ("cat", "dog", 8.5),
        ("car", "truck", 8.0),
        ("cat", "car", 2.0),
        ("dog", "apple", 1.0),
        ("apple", "truck", 1.5),
        ("Cat", "zebra", 7.0),
    ]
    path = tmp_path / "pairs.tsv"
    path.write_text("# a comment\n" + "\n".join(f"{a}\t{b}\t{s}" for a, b, s in pairs) + "\n")
    vocab = glove.Vocab(words, [1] * 5)
    result = glove.similarity_eval(vectors, vocab, path)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = [unit[words.index(a)] @ unit[words.index(b)] for a, b, _ in pairs[:5]]
    assert result.rho == pytest.approx(scipy.stats.spearmanr(cosines, [s for *_, s in pairs[:5]]).statistic)
    assert (result.covered, result.total) == (5, 6)


def test_vectors_with_the_wrong_shape_are_refused():
    vocab = glove.Vocab(["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        glove.nearest(np.zeros((3, 2)), vocab, "a")


# --------------------------------------------------------------------------- the real corpus


@pytest.fixture(scope="module")
def brown():
    from llmbook.data import load_brown_sentences

    sentences = load_brown_sentences()
    return sentences, glove.build_vocab(sentences, min_count=5)


def test_brown_vocabulary_and_evaluation_coverage_match_benchmarks_md(brown):
    sentences, vocab = brown
    assert sum(len(s) for s in sentences) == 1_013_319
    assert len(vocab) == 14_206
    coverage = glove.analogy_eval(np.eye(len(vocab), 4), vocab)
    assert (coverage.covered, coverage.total) == (6_304, 19_544)
    ws = glove.similarity_eval(np.eye(len(vocab), 4), vocab, "wordsim353.tsv")
    assert ws.total == 353 and 250 < ws.covered < 353


def test_glove_on_a_slice_of_brown_learns_something(brown):
    sentences, _ = brown
    part = sentences[:3000]
    vocab = glove.build_vocab(part, min_count=5)
    X = glove.cooccurrence(part, vocab, window=5)
    model, result = glove.train_glove(X, n_embd=16, epochs=4, lr=0.05, optimizer="adam", batch_size=32768, seed=0,
                                      device="cpu", progress=False)  # fmt: skip
    assert result.history["loss"][-1] < result.history["loss"][0]
    neighbours = [w for w, _ in glove.nearest(model.vectors(), vocab, "he", k=10)]
    assert "she" in neighbours or "it" in neighbours, neighbours


# --------------------------------------------------------------------------- exercises


def test_chapter_3_exercises_reject_every_wrong_answer():
    exercises = all_exercises("ch03")
    assert len(exercises) >= 6
    for ex in exercises:
        assert ex.wrong, ex.id
        for wrong in ex.wrong:
            assert not run(ex.id, wrong).passed, (ex.id, wrong)


def test_chapter_3_exercises_accept_the_library_answers():
    from llmbook.exercises import ch03

    assert run(
        "ch03.weighting", lambda x, x_max, alpha: glove.glove_weight(torch.as_tensor(x), x_max, alpha).numpy()
    ).passed
    assert run("ch03.window_counts", ch03._reference_window_counts).passed
    assert run("ch03.glove_loss", ch03._reference_loss).passed
    assert run("ch03.solve_analogy", ch03._reference_solve).passed

    def gradient_by_autograd(w, w_tilde, b, b_tilde, x, x_max, alpha):  # independent of GloVe.loss
        leaves = [torch.as_tensor(v, dtype=torch.float64).clone().requires_grad_() for v in (w, w_tilde, b, b_tilde)]
        w, w_tilde, b, b_tilde = leaves
        weight = min(1.0, (x / x_max) ** alpha)
        (weight * (w @ w_tilde + b + b_tilde - math.log(x)) ** 2).backward()
        return tuple(leaf.grad for leaf in leaves)

    def ppmi_with_loops(X):
        X = np.asarray(X, dtype=float)
        total, rows, columns = X.sum(), X.sum(1), X.sum(0)
        out = np.zeros_like(X)
        for i in range(X.shape[0]):
            for j in range(X.shape[1]):
                if X[i, j] > 0:
                    out[i, j] = max(0.0, math.log(X[i, j] * total / (rows[i] * columns[j])))
        return out

    assert run("ch03.glove_gradient", gradient_by_autograd).passed
    assert run("ch03.ppmi", ppmi_with_loops).passed


def test_chapter_3_gradient_check_uses_the_library_objective(monkeypatch):
    """The reference of ch03.glove_gradient is autograd through glove.GloVe.loss: break the loss, the check moves."""
    from llmbook.exercises import ch03

    def correct(w, w_tilde, b, b_tilde, x, x_max, alpha):
        g = 2 * min(1.0, (x / x_max) ** alpha) * (float(w @ w_tilde) + b + b_tilde - math.log(x))
        return g * w_tilde, g * w, g, g

    assert run("ch03.glove_gradient", correct).passed
    monkeypatch.setattr(ch03.GloVe, "loss", lambda self, i, j, x, x_max, alpha: (self(i, j) ** 2).sum())
    assert not run("ch03.glove_gradient", correct).passed
