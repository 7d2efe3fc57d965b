"""Chapter 4's newer checks (masked softmax, a W_Q that finds the mat): independent answers pass, their
references are the library's attention, and the check's copy of the hand-built features is the chapter's."""

import json
import re
from pathlib import Path

import torch

from llmbook.exercises import all_exercises, ch04, run

BOOK = Path(__file__).resolve().parents[1] / "book"


def test_chapter_4_has_enough_graded_exercises():
    assert len(all_exercises("ch04")) >= 5


def test_masked_softmax_accepts_an_independent_answer_and_rejects_a_leak():
    def by_loops(scores, mask):
        mask = mask.expand(scores.shape)
        out = torch.zeros_like(scores)
        flat_scores, flat_mask, flat_out = (t.reshape(-1, scores.shape[-1]) for t in (scores, mask, out))
        for row in range(flat_scores.shape[0]):
            allowed = flat_mask[row]
            if allowed.any():
                values = flat_scores[row][allowed]
                exp = torch.exp(values - values.max())
                flat_out[row][allowed] = exp / exp.sum()
        return flat_out.reshape(scores.shape)

    assert run("ch04.masked_softmax", by_loops).passed
    # -1e4 instead of -inf: zero weights wherever a row has a real key, but a row of padding only becomes uniform
    result = run("ch04.masked_softmax", lambda s, m: torch.softmax(s.masked_fill(~m, -1e4), -1))
    assert not result.passed and "all padding" in result.message and "0.25" in result.message


def test_masked_softmax_check_follows_the_librarys_attention(monkeypatch):
    def reference(scores, mask):
        return torch.nan_to_num(torch.softmax(scores.masked_fill(~mask, float("-inf")), -1), nan=0.0)

    assert run("ch04.masked_softmax", reference).passed
    monkeypatch.setattr(ch04, "scaled_dot_product_attention", lambda q, k, v, mask: (None, mask.float()))
    assert not run("ch04.masked_softmax", reference).passed


def test_query_for_mat_accepts_other_constructions_and_names_the_favourite_word():
    W = torch.zeros(6, 6)
    W[2] = torch.tensor([-10.0, 20.0, -10.0, 0.0, 0.0, 0.0])  # toward objects, away from animals and pronouns
    assert run("ch04.query_for_mat", W).passed
    result = run("ch04.query_for_mat", torch.eye(6))
    assert not result.passed and "*it* (position 7)" in result.message
    assert "shape (6, 6)" in run("ch04.query_for_mat", torch.eye(5)).message


def test_the_checks_hand_built_features_are_the_chapters():
    notebook = json.loads((BOOK / "04_attention.ipynb").read_text(encoding="utf-8"))
    source = next("".join(cell["source"]) for cell in notebook["cells"] if "hand_built = {" in "".join(cell["source"]))
    namespace: dict = {}
    exec(source[: source.index("# (T, 6): one row per token")], namespace)
    assert namespace["hand_built"] == ch04.HAND_BUILT
    assert namespace["words"] == ch04.SENTENCE
    assert namespace["feature_names"] == ch04.FEATURE_NAMES
    assert re.search(r"W_Q\[2, 1\] = 20\.0", json.dumps(notebook))  # the solution the chapter shows
