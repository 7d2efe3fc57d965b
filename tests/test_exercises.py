"""Every chapter's graded exercises follow the convention, their checks can fail, and the student edition hides the solutions.

The generic tests parametrize over whatever chapter notebooks exist in book/
(plus the grader's fixture chapter), so a new chapter is held to the
convention of CONTRIBUTING.md ("Exercises") as soon as it lands.
"""

from __future__ import annotations

import linecache
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmbook import attention, glove
from llmbook.exercises import CheckFailed, Result, all_exercises, check, exercise, expect, get, run
from llmbook.exercises.core import _REGISTRY, chapter_modules, load_checks_file
from llmbook.instructor.notebooks import (
    NotebookError,
    check_ids,
    exercise_cells,
    exercise_id_for_label,
    exercise_labels,
    label_for_exercise_id,
    read_notebook,
    solution_body_lines,
    strip_solution,
    student_edition,
    write_student_edition,
)

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
FIXTURES = ROOT / "tests" / "fixtures" / "exercises"
FIXTURE_NOTEBOOK = FIXTURES / "99_fixture.ipynb"
if not any(e.id.startswith("ch99.") for e in _REGISTRY.values()):
    load_checks_file(FIXTURES / "fixture_checks.py")


def _exercises_of(path: Path) -> list:
    try:
        return exercise_cells(read_notebook(path), str(path))
    except NotebookError:
        return []  # reported by test_notebook_exercise_structure_is_readable


# Chapters whose notebooks mention exercises or solutions at all; a malformed one must fail one test, not collection.
NOTEBOOKS = [
    p
    for p in sorted(BOOK.glob("*.ipynb"))
    if "{exercise" in p.read_text(encoding="utf-8") or "BEGIN SOLUTION" in p.read_text(encoding="utf-8")
] + [FIXTURE_NOTEBOOK]
EXERCISES = [(path, cells) for path in NOTEBOOKS for cells in _exercises_of(path)]


def _exercise_param(item):
    return item[1].exercise_id


def _exec_cell(source: str, label: str) -> dict:
    """Run one code cell alone, in a fresh namespace, as a notebook would (tracebacks show its lines)."""
    filename = f"<{label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(source, filename, "exec"), namespace)
    except NotImplementedError:
        pass  # a stub at the top level of a cell: the name is simply not defined
    return namespace


# --- the convention, for every chapter ------------------------------------------------------------


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_exercise_structure_is_readable(notebook):
    try:
        exercise_cells(read_notebook(notebook), str(notebook))
    except NotebookError as error:
        pytest.fail(str(error))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_label_has_a_registered_check(notebook):
    for cells in exercise_cells(read_notebook(notebook), str(notebook)):
        try:
            get(cells.exercise_id)
        except KeyError as error:
            pytest.fail(f"{notebook.name}: {{exercise}} {cells.label} has no check {cells.exercise_id!r}: {error}")


@pytest.mark.parametrize("chapter", chapter_modules() or ["(no chapter checks yet)"])
def test_every_registered_check_appears_in_a_chapter_notebook(chapter):
    if chapter.startswith("("):
        pytest.skip("no code/llmbook/exercises/chNN.py yet")
    labels = {cells.label for _, cells in EXERCISES}
    missing = [e.id for e in all_exercises(chapter) if label_for_exercise_id(e.id) not in labels]
    assert not missing, f"checks without an {{exercise}} (label ex-chNN-name) in any book/*.ipynb: {missing}"


@pytest.mark.parametrize("item", EXERCISES, ids=_exercise_param)
def test_each_exercise_has_a_solution_cell_with_markers_and_a_check_cell_after_it(item):
    notebook, cells = item
    assert cells.solution_cell is not None, (
        f"{notebook.name}: {cells.label} has no {{solution-start}}/{{solution-end}} pair"
    )
    assert solution_body_lines(cells.solution_source), (
        f"{notebook.name}: {cells.label}'s solution has no ### BEGIN/END SOLUTION block"
    )
    assert cells.check_cell is not None, f'{notebook.name}: no code cell calls check("{cells.exercise_id}")'
    assert cells.check_cell > cells.solution_cell, (
        f"{notebook.name}: the check of {cells.label} comes before its solution"
    )


@pytest.mark.parametrize("item", EXERCISES, ids=_exercise_param)
def test_reference_solution_passes_its_check(item):
    notebook, cells = item
    namespace = _exec_cell(cells.solution_source, f"{cells.exercise_id} solution")
    result = run(cells.exercise_id, namespace=namespace)
    assert result.passed, (
        f"{notebook.name}: the reference solution of {cells.exercise_id} fails its own check: {result.message}"
    )


@pytest.mark.parametrize("chapter", chapter_modules() + ["ch99"])
def test_every_plausible_wrong_answer_is_rejected_with_a_message(chapter):
    """Every registered check (with or without its notebook yet) rejects each of its `wrong` answers."""
    problems = []
    for ex in all_exercises(chapter):
        if not ex.wrong:
            problems.append(
                f"{ex.id} lists no plausible wrong answers (wrong=[...]): nothing proves its check can fail"
            )
        for wrong in ex.wrong:
            result = run(ex.id, wrong)
            if result.passed:
                problems.append(f"{ex.id} accepts the wrong answer {wrong!r}")
            elif result.unanswered or len(result.message) <= 10:
                problems.append(f"{ex.id}: unhelpful message for {wrong!r}: {result.message!r}")
            elif isinstance(wrong, (int, str)) and not isinstance(wrong, bool) and str(wrong) not in result.message:
                problems.append(
                    f"{ex.id}: the message for {wrong!r} should show the student's value: {result.message!r}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_student_edition_contains_no_solution_line(notebook):
    original = read_notebook(notebook)
    found = exercise_cells(original, str(notebook))
    solution_cells = {c.solution_cell for c in found}
    # Text that also appears outside the solutions (imports, prose, other cells) may legitimately stay:
    # a short solution line such as `labels = [` can be part of a longer line elsewhere.
    elsewhere = "\n".join(
        "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for index, cell in enumerate(original["cells"])
        if index not in solution_cells
    )
    student = student_edition(original, str(notebook))
    text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in student["cells"])
    for cells in found:
        for line in solution_body_lines(cells.solution_source):
            if line not in elsewhere:
                assert line not in text, (
                    f"{notebook.name}: the student edition shows solution line {line!r} of {cells.label}"
                )
    assert "### BEGIN SOLUTION" not in text and "{solution-start}" not in text and "{solution-end}" not in text
    assert check_ids(student) == check_ids(original), "the student edition must keep every check cell"
    assert all(not c.get("outputs") for c in student["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("item", EXERCISES, ids=_exercise_param)
def test_student_edition_stub_fails_its_check_with_the_stub_message(item):
    notebook, cells = item
    stub = strip_solution(cells.solution_source, f"{notebook.name} {cells.label}")
    result = run(cells.exercise_id, namespace=_exec_cell(stub, f"{cells.exercise_id} stub"))
    assert not result.passed and result.unanswered, f"{cells.exercise_id}: the stub gives {result.message!r}"
    assert "NotImplementedError" in result.message


# --- chapters 3 and 4: the checks reject the plausible mistakes and accept the library's answer ----
# The wrong answers are written here, apart from the checks' own `wrong=[...]` lists, and each must be
# rejected with a message that points at its mistake.


def _nonzero_loss(W, W_tilde, b, b_tilde, X, weight):
    X = torch.as_tensor(X, dtype=torch.float64)
    i, j = torch.nonzero(X, as_tuple=True)
    x = X[i, j]
    prediction = (W[i].double() * W_tilde[j].double()).sum(-1) + b[i].double() + b_tilde[j].double()
    return weight(x) * (prediction - torch.log(x)) ** 2


def _counts(tokens, window, **options):
    words = list(dict.fromkeys(tokens))
    X = glove.cooccurrence(list(tokens), glove.Vocab(words, [1] * len(words)), window=window, **options).tocoo()
    return {(words[i], words[j]): float(v) for i, j, v in zip(X.row, X.col, X.data)}


def _dot_product_analogy(vectors, words, a, b, c):  # forgets to normalise: long vectors win
    index = {w: k for k, w in enumerate(words)}
    scores = vectors @ (vectors[index[b]] - vectors[index[a]] + vectors[index[c]])
    scores[[index[a], index[b], index[c]]] = -np.inf
    return words[int(np.argmax(scores))]


def _analogy_keeping_the_question(vectors, words, a, b, c):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {w: k for k, w in enumerate(words)}
    return words[int(np.argmax(unit @ (unit[index[b]] - unit[index[a]] + unit[index[c]])))]


MISTAKES = [
    (
        "ch03.weighting",
        "no cap at 1",
        lambda x, x_max, alpha: (np.asarray(x) / x_max) ** alpha,
        "min(1, (x / x_max) ** alpha)",
    ),
    (
        "ch03.weighting",
        "alpha ignored",
        lambda x, x_max, alpha: np.minimum(1, np.asarray(x) / x_max),
        "alpha = 0.75 you return",
    ),
    ("ch03.weighting", "one weight for all", lambda x, x_max, alpha: 1.0, "one weight per count"),
    ("ch03.window_counts", "uniform weights", lambda t, w: _counts(t, w, weighting="uniform"), "add 1/d"),
    ("ch03.window_counts", "left context only", lambda t, w: _counts(t, w, symmetric=False), "lack the pairs"),
    ("ch03.window_counts", "window one too wide", lambda t, w: _counts(t, w + 1), "should not be there"),
    ("ch03.window_counts", "a list of pairs", lambda t, w: list(_counts(t, w).items()), "should return a dict"),
    (
        "ch03.glove_loss",
        "unweighted",
        lambda W, Wt, b, bt, X, x_max, a: _nonzero_loss(W, Wt, b, bt, X, lambda x: 1).sum(),
        "expected",
    ),
    (
        "ch03.glove_loss",
        "mean instead of sum",
        lambda W, Wt, b, bt, X, x_max, a: _nonzero_loss(
            W, Wt, b, bt, X, lambda x: glove.glove_weight(x, x_max, a)
        ).mean(),
        "J = sum over nonzero X_ij",
    ),
    (
        "ch03.glove_loss",
        "zeros of X kept",
        lambda W, Wt, b, bt, X, x_max, a: ((W @ Wt.T + b[:, None] + bt[None, :] - torch.log(X)) ** 2).sum(),
        "skip the zero entries",
    ),
    ("ch03.glove_loss", "returns nothing", lambda *args: None, "returned None"),
    ("ch03.solve_analogy", "a, b or c answered", _analogy_keeping_the_question, "exclude a, b and c"),
    ("ch03.solve_analogy", "dot product, not cosine", _dot_product_analogy, "cosine"),
    ("ch04.causal_mask", "the future, not the past", lambda T: torch.ones(T, T, dtype=torch.bool).triu(), "key j <= i"),
    (
        "ch04.causal_mask",
        "diagonal blocked",
        lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),
        "including the diagonal",
    ),
    ("ch04.causal_mask", "float mask", lambda T: torch.ones(T, T).tril(), "return a bool tensor"),
    ("ch04.causal_mask", "PyTorch's True = blocked", lambda T: ~attention.causal_mask(T), "True where key j <= i"),
    ("ch04.causal_mask", "a list", lambda T: attention.causal_mask(T).tolist(), "return a torch.Tensor"),
    ("ch04.split_heads", "no transpose", lambda x, h: x.view(x.shape[0], x.shape[1], h, -1), "expected (B, H, T, E/H)"),
    (
        "ch04.split_heads",
        "reshape straight to (B, H, T, E/H)",
        lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1),
        "wrong numbers",
    ),
    (
        "ch04.split_heads",
        "heads interleaved",
        lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2),
        "wrong numbers",
    ),
]


@pytest.mark.parametrize("exercise_id, mistake, answer, hint", MISTAKES, ids=[f"{m[0]}-{m[1]}" for m in MISTAKES])
def test_chapter_3_and_4_checks_reject_each_plausible_mistake_with_a_hint(exercise_id, mistake, answer, hint):
    result = run(exercise_id, answer)
    assert not result.passed, f"{exercise_id} accepts a wrong answer ({mistake})"
    assert not result.unanswered and hint in result.message, f"{exercise_id}, {mistake}: {result.message!r}"


LIBRARY_ANSWERS = {
    "ch03.weighting": lambda x, x_max, alpha: glove.glove_weight(torch.as_tensor(x), x_max, alpha).numpy(),
    "ch03.window_counts": lambda tokens, window: _counts(tokens, window),
    "ch03.glove_loss": lambda W, Wt, b, bt, X, x_max, alpha: _nonzero_loss(
        W, Wt, b, bt, X, lambda x: glove.glove_weight(x, x_max, alpha)
    ).sum(),
    "ch03.solve_analogy": lambda vectors, words, a, b, c: glove.analogy(
        vectors, glove.Vocab(list(words), [1] * len(words)), a, b, c
    ),
    "ch04.causal_mask": lambda T: attention.causal_mask(T),
    "ch04.split_heads": lambda x, h: attention.MultiHeadAttention(x.shape[-1], h).split_heads(x),
}


@pytest.mark.parametrize("exercise_id", sorted(LIBRARY_ANSWERS))
def test_chapter_3_and_4_checks_accept_the_librarys_answer(exercise_id):
    result = run(exercise_id, LIBRARY_ANSWERS[exercise_id])
    assert result.passed, f"{exercise_id} rejects the library's own answer: {result.message}"


def test_chapter_3_and_4_checks_use_the_library_as_their_reference(monkeypatch):
    """Break the library function a check relies on: the check must now reject the right answer."""
    monkeypatch.setattr("llmbook.exercises.ch04.causal_mask", lambda T: torch.ones(T, T, dtype=torch.bool))
    assert not run("ch04.causal_mask", lambda T: torch.ones(T, T, dtype=torch.bool).tril()).passed
    monkeypatch.setattr("llmbook.exercises.ch03.glove_weight", lambda x, x_max, alpha: torch.ones_like(x))
    assert not run("ch03.weighting", LIBRARY_ANSWERS["ch03.weighting"]).passed


# --- the machinery --------------------------------------------------------------------------------


def test_failing_check_message_names_the_students_wrong_value(capsys, monkeypatch):
    monkeypatch.delenv("LLMBOOK_STRICT_CHECKS", raising=False)
    result = run("ch99.square", lambda x: 2 * x)
    assert not result.passed and "returned 6" in result.message and "expected 9" in result.message
    check("ch99.square", lambda x: 2 * x)
    assert "❌" in capsys.readouterr().out


def test_check_finds_the_answer_in_the_callers_globals(capsys, monkeypatch):
    monkeypatch.delenv("LLMBOOK_STRICT_CHECKS", raising=False)
    namespace = {"check": check}
    exec("prediction = 8\ncheck('ch99.prediction')", namespace)
    assert "✅ correct" in capsys.readouterr().out


def test_strict_mode_turns_a_wrong_answer_into_an_error(monkeypatch):
    monkeypatch.setenv("LLMBOOK_STRICT_CHECKS", "1")
    with pytest.raises(CheckFailed, match="ch99.prediction"):
        check("ch99.prediction", 7)


def test_missing_name_and_stub_are_reported_as_unanswered_but_a_real_not_implemented_is_a_crash():
    missing = run("ch99.square", namespace={})
    assert missing.unanswered and "not defined yet" in missing.message

    def library_gap(x):
        raise NotImplementedError("complex numbers are not supported")

    crash = run("ch99.square", library_gap)
    assert not crash.unanswered and "complex numbers are not supported" in crash.message


def test_a_crashing_answer_reports_the_error_and_its_line():
    result = run("ch99.square", lambda x: x / 0)
    assert not result.passed and "ZeroDivisionError" in result.message and "line" in result.message
    assert isinstance(result, Result) and result.seconds >= 0


def test_loading_a_checks_file_again_replaces_its_checks():
    first = get("ch99.square")
    assert load_checks_file(FIXTURES / "fixture_checks.py") == ["ch99.prediction", "ch99.square"]
    assert get("ch99.square") is not first and run("ch99.square", lambda x: x * x).passed


def test_registering_an_id_twice_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        exercise("ch99.square", name="square", title="again")(lambda answer: None)


def test_unknown_exercise_lists_the_chapters_exercises():
    with pytest.raises(KeyError, match="ch99.square"):
        get("ch99.no_such_exercise")


def test_expect_raises_check_failed_with_the_message():
    with pytest.raises(CheckFailed, match="rows sum to 1.37"):
        expect(False, "your rows sum to 1.37; expected 1")


def test_labels_and_ids_map_both_ways():
    assert label_for_exercise_id("ch04.masked_softmax") == "ex-ch04-masked-softmax"
    assert exercise_id_for_label("ex-ch04-masked-softmax") == "ch04.masked_softmax"
    with pytest.raises(NotebookError, match="ex-chNN-short-name"):
        exercise_id_for_label("softmax-exercise")


def test_only_ex_labels_of_exercise_directives_are_graded():
    def markdown(source):
        return {"cell_type": "markdown", "source": source}

    notebook = {
        "cells": [
            markdown("```{exercise} An open question\nThink.\n```\n\n```{math}\n:label: eq-attention\na = b\n```"),
            markdown("```{exercise} Graded\n:label: ex-ch04-masked-softmax\n:class: tip\n\nWrite it.\n```"),
            markdown(":::{exercise}\n:nonumber:\n:label: ex-ch04-colon-fence\nText\n:::"),
            markdown("```{exercise} Another open question\n:label: q-ch04-open\n```"),
        ]
    }
    assert exercise_labels(notebook) == ["ex-ch04-masked-softmax", "ex-ch04-colon-fence"]


def test_stub_keeps_the_def_line_and_the_indentation():
    source = "import torch\n\ndef f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
    stub = strip_solution(source)
    assert stub == "import torch\n\ndef f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    compile(stub, "stub", "exec")


def test_top_level_stub_names_what_the_student_must_define():
    source = "### BEGIN SOLUTION\nprediction: int = 8\nspread = prediction - 1\nif spread == 7:\n    inner = 1\n### END SOLUTION"
    assert strip_solution(source) == "# YOUR CODE HERE: define `prediction`, `spread`\nraise NotImplementedError()"
    assert strip_solution("### BEGIN SOLUTION\ndef f(x):\n    return x\n### END SOLUTION").startswith(
        "# YOUR CODE HERE: define `f`"
    )


@pytest.mark.parametrize(
    "source, problem",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "without ### END SOLUTION"),
        ("x = 1\n### END SOLUTION\n", "without ### BEGIN SOLUTION"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "a second"),
    ],
)
def test_unbalanced_solution_markers_are_a_clear_error(source, problem):
    with pytest.raises(NotebookError, match=problem):
        strip_solution(source, "chapter 99, cell 3")


def test_a_solution_gate_must_wrap_exactly_one_code_cell():
    notebook = read_notebook(FIXTURE_NOTEBOOK)
    cells = notebook["cells"]
    start = next(i for i, c in enumerate(cells) if "{solution-start}" in "".join(c["source"]))
    cells.insert(
        start + 1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": "x = 1"}
    )
    with pytest.raises(NotebookError, match="wraps 2 code cells"):
        exercise_cells(notebook, "fixture")


def test_student_edition_marks_check_cells_read_only_and_cleans_metadata():
    original = read_notebook(FIXTURE_NOTEBOOK)
    original["metadata"]["jupytext"] = {"secret": True}
    student = student_edition(original)
    assert set(student["metadata"]) <= {"kernelspec", "language_info"}
    checks = [c for c in student["cells"] if "check(" in c["source"] and c["cell_type"] == "code"]
    assert checks and all(c["metadata"].get("editable") is False for c in checks)
    # jupytext merges {solution-start} into the {exercise} cell above it; the two {solution-end} cells go
    assert len(student["cells"]) == len(original["cells"]) - 2
    assert all("{exercise}" in c["source"] for c in student["cells"] if ":label: ex-ch99-" in c["source"])


def test_cli_writes_the_student_edition_and_refuses_to_overwrite_the_book(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(FIXTURE_NOTEBOOK, book)
    written = write_student_edition(book, tmp_path / "out")
    assert [p.name for p in written] == ["99_fixture.ipynb"]
    assert "raise NotImplementedError()" in (tmp_path / "out" / "99_fixture.ipynb").read_text()
    command = [sys.executable, "-m", "llmbook.instructor", "student-edition", str(book), str(book)]
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "must differ" in refused.stderr
    assert "result = x * x" in (book / "99_fixture.ipynb").read_text()


def _build_fixture_book(tmp_path: Path, hide: str) -> tuple[str, str]:
    """Build the fixture chapter with jupyter-book (no execution) and return its HTML."""
    book = tmp_path / f"book-{hide}"
    book.mkdir()
    shutil.copy(FIXTURE_NOTEBOOK, book / "chapter.ipynb")
    (book / "_toc.yml").write_text("format: jb-book\nroot: chapter\n")
    (book / "_config.yml").write_text(
        "title: Fixture\nexecute:\n  execute_notebooks: 'off'\nsphinx:\n  extra_extensions:\n"
        f"    - sphinx_exercise\n  local_extensions:\n    sphinx_solutions: {ROOT / '_ext'}\n"
    )
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    env = {**os.environ, "LLMBOOK_HIDE_SOLUTIONS": hide}
    built = subprocess.run([str(jupyter_book), "build", str(book), "-W", "-n"], capture_output=True, text=True, env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    html = (book / "_build" / "html" / "chapter.html").read_text()
    source = (book / "_build" / "html" / "_sources" / "chapter.ipynb").read_text()
    return html, source


@pytest.mark.skipif(
    shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None, reason="jupyter-book not installed"
)
def test_html_shows_solutions_in_a_dropdown_or_removes_them_entirely(tmp_path):
    shown, shown_source = _build_fixture_book(tmp_path, "0")
    assert 'class="solution dropdown admonition"' in shown and "result" in shown and 'id="ex-ch99-square"' in shown
    assert "result = x * x" in shown_source

    hidden, hidden_source = _build_fixture_book(tmp_path, "1")
    assert 'id="ex-ch99-square"' in hidden, "the exercise itself stays"
    assert 'class="solution' not in hidden
    assert '<span class="n">result</span>' not in hidden and "BEGIN SOLUTION" not in hidden
    assert "check" in hidden, "the check cells stay"
    assert "result = x * x" not in hidden_source and "raise NotImplementedError()" in hidden_source


# --- the instructor's tools are a separate package ----------------------------------------------------


def test_chapter_checks_and_library_modules_never_import_the_instructor_tools():
    import ast

    def imports_instructor(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(a.name.startswith("llmbook.instructor") for a in node.names):
                return True
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if (node.level == 0 and module.startswith("llmbook.instructor")) or (
                    node.level > 0 and module.startswith("instructor")
                ):
                    return True
                if module == "llmbook" and any(a.name == "instructor" for a in node.names):
                    return True
        return False

    library = ROOT / "code" / "llmbook"
    offenders = [
        str(path.relative_to(library))
        for path in sorted(library.rglob("*.py"))
        if "instructor" not in path.relative_to(library).parts and imports_instructor(path)
    ]
    assert not offenders, f"modules outside llmbook.instructor import it: {offenders}"
    probe = (
        "import sys, llmbook.exercises as e; e.all_exercises(); e.run('ch04.causal_mask', lambda T: None); "
        "print(sorted(m for m in sys.modules if m.startswith('llmbook.instructor') or m in ('IPython', 'sphinx')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "code")},
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "[]", f"importing every chapter's checks loaded {loaded.stdout.strip()}"


def test_the_instructor_extra_declares_every_package_the_instructor_tools_import():
    import ast

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["instructor"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in declared}
    # distribution name -> import name where they differ
    module_of = {"ipython": "IPython", "myst-nb": "myst_nb", "pyyaml": "yaml"}
    provided = {module_of.get(name, name) for name in names}
    imported = set()
    for path in (ROOT / "code" / "llmbook" / "instructor").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"llmbook", "__future__"}
    assert third_party and third_party <= provided, (
        f"imported but not declared in pyproject.toml: {sorted(third_party - provided)}"
    )


def test_instructor_cli_help_and_the_old_command_points_to_it():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "code")}
    shown = subprocess.run(
        [sys.executable, "-m", "llmbook.instructor", "--help"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and all(c in shown.stdout for c in ("student-edition", "grade", "list"))
    moved = subprocess.run(
        [sys.executable, "-m", "llmbook.exercises", "grade", "subs/"], capture_output=True, text=True, env=env
    )
    assert moved.returncode == 2 and "python -m llmbook.instructor grade subs/" in moved.stderr
