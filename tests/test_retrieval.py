"""BM25 (llmbook.retrieval) against the formula computed by hand, and on the chapter's collection."""

import math

import pytest

from llmbook.assistant import fact, person_names, read_question
from llmbook.retrieval import BM25, words_of


def test_bm25_score_matches_the_formula_by_hand():
    documents = ["the cat sat", "the dog sat on the dog", "a bird"]
    index = BM25(documents, k1=1.2, b=0.75)
    average = (3 + 6 + 2) / 3
    idf_dog = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    idf_sat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    norm = 1.2 * (1 - 0.75 + 0.75 * 6 / average)
    expected = idf_dog * 2 * 2.2 / (2 + norm) + idf_sat * 1 * 2.2 / (1 + norm)
    assert index.scores("dog sat")[1] == pytest.approx(expected)
    assert index.scores("dog sat")[2] == 0.0
    assert index.search("dog sat") == [1]


def test_rare_words_count_more_than_common_ones():
    index = BM25(["red fox", "red hen", "red cow", "blue fox"])
    assert index.idf["blue"] > index.idf["fox"] > index.idf["red"]


def test_bm25_finds_the_document_about_the_person_asked_about():
    names = person_names(3)[:60]
    documents = [fact(name, "Holt", 2 + i % 8) for i, name in enumerate(names)]
    index = BM25(documents)
    hits = sum(index.search(read_question(name, kind)[0])[0] == i for i, name in enumerate(names) for kind in
               ("town", "goats"))  # fmt: skip
    assert hits == 2 * len(names)


def test_words_are_lower_case_words_and_numbers():
    assert words_of("Alran keeps 7 goats.") == ["alran", "keeps", "7", "goats"]


def test_bad_index_arguments_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        BM25([])
    with pytest.raises(ValueError, match="b"):
        BM25(["a"], b=2.0)
