"""The grader scores every submission, whatever it does: right, wrong, looping, crashing or tampering with the checks.

The fixture chapter (tests/fixtures/exercises: "ch99", two exercises, its own
checks file) lets the grader be tested before any real chapter exists; a real
chapter's student edition is graded too (chapter 4, or the first chapter written).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from filelock import FileLock  # a dependency of torch

from llmbook.instructor.grader import COLUMNS, find_submissions, grade
from llmbook.instructor.notebooks import exercise_cells, read_notebook, student_edition

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "exercises"
FIXTURE_NOTEBOOK = FIXTURES / "99_fixture.ipynb"
FIXTURE_CHECKS = FIXTURES / "fixture_checks.py"


def _real_chapter() -> Path | None:
    """Chapter 4 when it exists, else the first chapter notebook with graded exercises."""
    candidates = sorted((ROOT / "book").glob("*.ipynb"), key=lambda p: (p.name != "04_attention.ipynb", p.name))
    return next((p for p in candidates if exercise_cells(read_notebook(p), str(p))), None)


REAL_CHAPTER = _real_chapter()
TIMEOUT = 6  # seconds per notebook: the looping submission must be cut off after this
CHECK_TIMEOUT = 4  # seconds per check: the answer that loops when called must be cut off after this


@functools.cache
def _load_hostile_class():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_class", FIXTURES / "hostile_class.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _submission(*args, **kwargs) -> dict:
    return _load_hostile_class().submission(*args, **kwargs)


def _grade_fixture_class(root: Path) -> float:
    submissions = root / "submissions"
    handout = student_edition(read_notebook(FIXTURE_NOTEBOOK))
    students = {
        "alice_correct": _submission(handout, "    return x * x\n", "prediction = 8"),
        "bob_wrong": _submission(handout, "    return 2 * x\n", "prediction = 7"),
        "carol_loops": _submission(handout, "    return x * x\n", "prediction = 8", first_cell="while True:\n    pass"),
        "dave_edits_check": _submission(
            handout, "    return 2 * x\n", "prediction = 8", first_cell="1 / 0", edit_check=True
        ),
        "erin_untouched": handout,
        "gina_loops_when_checked": _submission(handout, "    while True:\n        pass\n", "prediction = 8"),
    }
    for name, notebook in students.items():
        (submissions / name).mkdir(parents=True)
        (submissions / name / FIXTURE_NOTEBOOK.name).write_text(json.dumps(notebook))
    # A flat layout too: the file name is the student, the chapter is recognised from its exercises.
    (submissions / "flat").mkdir()
    (submissions / "flat" / "frank.ipynb").write_text(json.dumps(students["alice_correct"]))
    started = time.monotonic()
    grade(
        submissions,
        root / "grades.csv",
        originals=FIXTURES,
        timeout=TIMEOUT,
        check_timeout=CHECK_TIMEOUT,
        jobs=2,
        checks_files=[FIXTURE_CHECKS],
    )
    return time.monotonic() - started


@pytest.fixture(scope="session")
def fixture_grades(tmp_path_factory, worker_id):
    """Grade seven synthetic students once per test run (shared by pytest-xdist workers); the tests read the CSV."""
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    root = shared / "fixture-class"
    with FileLock(str(shared / "fixture-class.lock")):
        if not (root / "elapsed").exists():
            root.mkdir(exist_ok=True)
            (root / "elapsed").write_text(str(_grade_fixture_class(root)))
    with (root / "grades.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = {(row["student"], row["exercise"]): row for row in reader}
    return header, rows, float((root / "elapsed").read_text())


def test_csv_has_one_row_per_student_and_exercise_with_the_documented_columns(fixture_grades):
    header, rows, _ = fixture_grades
    assert header == COLUMNS == ["student", "notebook", "exercise", "passed", "message", "seconds"]
    students = {
        "alice_correct",
        "bob_wrong",
        "carol_loops",
        "dave_edits_check",
        "erin_untouched",
        "gina_loops_when_checked",
        "frank",
    }
    assert set(rows) == {(s, e) for s in students for e in ("ch99.square", "ch99.prediction")}
    assert {row["notebook"] for (student, _), row in rows.items() if student != "frank"} == {"99_fixture.ipynb"}


def test_correct_submission_passes_every_exercise(fixture_grades):
    _, rows, _ = fixture_grades
    for student in ("alice_correct", "frank"):
        assert rows[(student, "ch99.square")]["passed"] == "1"
        assert rows[(student, "ch99.prediction")]["passed"] == "1"


def test_wrong_submission_fails_with_messages_that_show_the_wrong_values(fixture_grades):
    _, rows, _ = fixture_grades
    assert rows[("bob_wrong", "ch99.square")]["passed"] == "0"
    assert "returned 6" in rows[("bob_wrong", "ch99.square")]["message"]
    assert "7" in rows[("bob_wrong", "ch99.prediction")]["message"]


def test_infinite_loop_times_out_and_fails_every_exercise_of_that_notebook(fixture_grades):
    _, rows, elapsed = fixture_grades
    for exercise in ("ch99.square", "ch99.prediction"):
        row = rows[("carol_loops", exercise)]
        assert row["passed"] == "0" and row["message"] == f"timed out after {TIMEOUT} s (cell 1 was still running)"
    assert elapsed < 60, f"grading seven tiny notebooks took {elapsed:.0f} s"


def test_edited_check_cell_is_reported_and_graded_with_the_librarys_check(fixture_grades):
    _, rows, _ = fixture_grades
    square = rows[("dave_edits_check", "ch99.square")]
    assert square["passed"] == "0", "the forged '✅ correct' must not count"
    assert square["message"].startswith("check cell edited") and "returned 6" in square["message"]
    prediction = rows[("dave_edits_check", "ch99.prediction")]
    assert prediction["passed"] == "1" and not prediction["message"].startswith("check cell edited")


def test_a_crashing_cell_does_not_stop_the_rest_of_the_notebook(fixture_grades):
    _, rows, _ = fixture_grades
    assert rows[("dave_edits_check", "ch99.prediction")]["passed"] == "1"  # its first cell raised ZeroDivisionError


def test_untouched_student_edition_fails_with_the_stub_messages(fixture_grades):
    _, rows, _ = fixture_grades
    assert "not implemented yet" in rows[("erin_untouched", "ch99.square")]["message"]
    assert "not defined yet" in rows[("erin_untouched", "ch99.prediction")]["message"]


def test_a_check_that_loops_is_interrupted_and_the_next_check_still_runs(fixture_grades):
    _, rows, _ = fixture_grades
    square = rows[("gina_loops_when_checked", "ch99.square")]
    assert square["passed"] == "0" and f"timed out after {CHECK_TIMEOUT}" in square["message"]
    assert rows[("gina_loops_when_checked", "ch99.prediction")]["passed"] == "1"


def test_submission_layouts_name_the_student(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "99_fixture.ipynb").write_text(FIXTURE_NOTEBOOK.read_text())
    (tmp_path / "bob.ipynb").write_text(FIXTURE_NOTEBOOK.read_text())
    found = {s.student: s for s in find_submissions(tmp_path, FIXTURES)}
    assert set(found) == {"alice", "bob"}
    assert found["bob"].original == FIXTURE_NOTEBOOK and found["bob"].exercise_ids == ["ch99.square", "ch99.prediction"]


def test_unreadable_notebook_is_scored_not_fatal(tmp_path):
    (tmp_path / "subs" / "hank").mkdir(parents=True)
    (tmp_path / "subs" / "hank" / FIXTURE_NOTEBOOK.name).write_text("{ not json")
    rows = grade(tmp_path / "subs", originals=FIXTURES, timeout=10, checks_files=[FIXTURE_CHECKS])
    assert [r.passed for r in rows] == [0, 0] and all("could not be read" in r.message for r in rows)


@pytest.mark.skipif(REAL_CHAPTER is None, reason="no chapter notebook with exercises in book/ yet")
def test_real_chapter_student_edition_fails_and_its_solutions_pass(tmp_path):
    original = read_notebook(REAL_CHAPTER)
    exercises = exercise_cells(original, str(REAL_CHAPTER))
    solution_cells = {c.solution_cell for c in exercises}
    # Only the exercise cells (self-contained by convention) and the check import keep this test fast.
    # Its check cells import the chapter's checks in the kernel first: the grader must load them afresh.
    keep = [
        cell
        for index, cell in enumerate(original["cells"])
        if cell["cell_type"] == "markdown" or index in solution_cells or "check(" in "".join(cell["source"])
    ]
    trimmed = dict(original, cells=[{**c, "source": "".join(c["source"])} for c in keep])
    trimmed["cells"].insert(
        0,
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": "from llmbook.exercises import check",
        },
    )
    (tmp_path / "subs" / "solved").mkdir(parents=True)
    (tmp_path / "subs" / "solved" / REAL_CHAPTER.name).write_text(json.dumps(trimmed))
    (tmp_path / "subs" / "untouched").mkdir(parents=True)
    (tmp_path / "subs" / "untouched" / REAL_CHAPTER.name).write_text(json.dumps(student_edition(trimmed)))
    rows = grade(tmp_path / "subs", originals=REAL_CHAPTER.parent, timeout=120, jobs=2)
    ids = [c.exercise_id for c in exercises]
    solved = {r.exercise: r for r in rows if r.student == "solved"}
    untouched = {r.exercise: r for r in rows if r.student == "untouched"}
    assert list(solved) == ids and list(untouched) == ids
    assert all(r.passed for r in solved.values()), [r.message for r in solved.values() if not r.passed]
    assert not any(r.passed for r in untouched.values())
    assert all("not implemented yet" in r.message or "not defined yet" in r.message for r in untouched.values())


# --- hostile submissions: each scores what it should, with its reason, and the batch completes ----------


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="session")
def hostile_grades(tmp_path_factory):
    """Grade the hostile class (tests/fixtures/exercises/hostile_class.py) in one run, two at a time."""
    import resource
    import uuid

    root = tmp_path_factory.mktemp("hostile-class")
    marker = f"llmbook-hostile-{uuid.uuid4().hex}"
    handout = student_edition(read_notebook(FIXTURE_NOTEBOOK))
    unchanged = _load_hostile_class().write_hostile_class(root, handout, FIXTURE_CHECKS, marker)
    import torch  # noqa: F401 - loaded first, so that the peak memory measured below is the grading's alone

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    rows = grade(
        root / "submissions",
        root / "grades.csv",
        originals=root / "instructor",
        timeout=TIMEOUT,
        check_timeout=CHECK_TIMEOUT,
        jobs=2,
        checks_files=[root / "instructor" / FIXTURE_CHECKS.name],
    )
    elapsed = time.monotonic() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    left_running = _processes_with(marker)
    for pid in left_running:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    by_key = {(r.student, r.exercise): r for r in rows}
    return {
        "root": root,
        "rows": by_key,
        "unchanged": unchanged,
        "elapsed": elapsed,
        "grown_mb": grown_mb,
        "left_running": left_running,
    }


def _scores(grades, student):
    rows = grades["rows"]
    return [rows[(student, e)].passed for e in ("ch99.square", "ch99.prediction")], [
        rows[(student, e)].message for e in ("ch99.square", "ch99.prediction")
    ]


@pytest.mark.parametrize(
    "student, reason",
    [
        ("malformed_cells_not_a_list", "'cells' is a dict, not a list of cells"),
        ("malformed_not_json", "cannot read notebook"),
        ("malformed_format_3", "format version 3"),
        ("malformed_cells_not_cells", "cell 0 is not a notebook cell"),
        ("malformed_empty_file", "cannot read notebook"),
    ],
)
def test_a_malformed_notebook_scores_0_with_its_reason(hostile_grades, student, reason):
    passed, messages = _scores(hostile_grades, student)
    assert passed == [0, 0]
    assert all(m.startswith("notebook could not be read") and reason in m for m in messages), messages
    assert all(str(hostile_grades["root"]) not in m for m in messages), (
        "the reason names the file, not the instructor's folders"
    )


@pytest.mark.parametrize("student", ["forges_results_file", "patches_runner_with_reload", "monkeypatches_check"])
def test_forged_results_and_patched_checks_do_not_change_the_grade(hostile_grades, student):
    passed, messages = _scores(hostile_grades, student)
    assert passed == [0, 0], messages
    assert "returned 6" in messages[0] and "7" in messages[1], messages


def test_answers_whose_eq_always_says_yes_are_graded_by_their_value(hostile_grades):
    passed, messages = _scores(hostile_grades, "answers_with_objects_that_lie")
    assert passed == [0, 0], messages
    assert "Anything object" in messages[0] and "7" in messages[1], messages


def test_a_submission_cannot_overwrite_another_students_notebook_or_delete_instructor_files(hostile_grades):
    root = hostile_grades["root"]
    for student, text in hostile_grades["unchanged"].items():
        assert (root / "submissions" / student / "99_fixture.ipynb").read_text() == text
    assert (root / "instructor" / FIXTURE_CHECKS.name).exists() and (root / "instructor" / "99_fixture.ipynb").exists()
    for student in ("victim_vera", "overwrites_other_students", "deletes_instructor_files"):
        assert _scores(hostile_grades, student)[0] == [1, 1], _scores(hostile_grades, student)


def test_huge_output_is_not_kept_and_the_notebook_is_still_graded(hostile_grades):
    assert _scores(hostile_grades, "prints_200_MB")[0] == [1, 1]
    assert hostile_grades["grown_mb"] < 120, f"the grader's peak memory grew by {hostile_grades['grown_mb']:.0f} MB"


def test_processes_a_submission_leaves_running_are_killed(hostile_grades):
    assert _scores(hostile_grades, "leaves_processes_running")[0] == [1, 1]
    assert hostile_grades["left_running"] == [], (
        "a child or a daemon (double fork, setsid) of the notebook survived grading"
    )


def test_a_check_that_loops_and_ignores_interrupts_is_cut_off_and_reported(hostile_grades):
    passed, messages = _scores(hostile_grades, "loops_ignoring_interrupts")
    assert passed == [0, 0]
    assert f"timed out after {CHECK_TIMEOUT}" in messages[0]
    assert messages[1].startswith("not checked") and "ignored the interrupt" in messages[1]


@pytest.mark.parametrize("student", ["exits_its_process", "closes_the_graders_channel"])
def test_a_notebook_that_kills_its_process_or_its_channel_scores_0_with_the_cell(hostile_grades, student):
    passed, messages = _scores(hostile_grades, student)
    assert passed == [0, 0] and all(
        "closed the channel (it exited or was killed) while running cell 1" in m for m in messages
    ), messages


def test_formula_like_names_are_text_in_the_csv(hostile_grades):
    with (hostile_grades["root"] / "grades.csv").open(newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")], "a cell a spreadsheet would run as a formula"
    for name in ("=SUM(A1:A9)", "+1+1", "-2+3", "@SUM(1+1)"):
        assert "'" + name in cells
    assert _scores(hostile_grades, "@SUM(1+1)")[0] == [1, 1]


def test_the_hostile_batch_completes_in_modest_time(hostile_grades):
    students = {student for student, _ in hostile_grades["rows"]}
    assert len(students) == 21 and (hostile_grades["root"] / "grades.csv").exists()
    assert hostile_grades["elapsed"] < 120, f"grading the hostile class took {hostile_grades['elapsed']:.0f} s"


# --- the data channel: what the student's process sends is rebuilt as plain data only -----------------


def test_answers_travel_as_plain_data_and_come_back_equal():
    import collections

    import numpy as np
    import torch

    from llmbook.instructor import sandbox

    Point = collections.namedtuple("Point", "x y")
    value = {
        "tensor": torch.randn(2, 3, requires_grad=True),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "mask": torch.ones(2, 2, dtype=torch.bool).tril(),
        "empty": torch.empty(0, 4),
        "array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "words": np.array(["a", "bc"]),
        "scalar": np.float64(0.25),
        (1, "pair"): [1, 2.5, None, True, "x", b"\x00\xff", 1 + 2j, float("nan"), float("-inf")],
        "set": {1, 2},
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "namedtuple": Point(1, 2),
        "str subclass": type("Shouty", (str,), {"__eq__": lambda self, other: True})("no"),
    }
    back = sandbox.decode(sandbox.load_answer(sandbox.dump_answer(sandbox.encode(value))))
    assert torch.equal(back["tensor"], value["tensor"].detach()) and back["tensor"].requires_grad
    assert (
        back["bf16"].dtype == torch.bfloat16
        and torch.equal(back["mask"], value["mask"])
        and back["empty"].shape == (0, 4)
    )
    assert (
        back["array"].dtype == np.int32
        and (back["array"] == value["array"]).all()
        and list(back["words"]) == ["a", "bc"]
    )
    assert type(back["scalar"]) is np.float64 and back["scalar"] == 0.25
    items = back[(1, "pair")]
    assert (
        items[:7] == [1, 2.5, None, True, "x", b"\x00\xff", 1 + 2j]
        and math.isnan(items[7])
        and items[8] == float("-inf")
    )
    assert back["set"] == {1, 2} and back["size"] == torch.Size([2, 3]) and back["dtype"] is torch.float16
    assert back["namedtuple"] == (1, 2) and type(back["namedtuple"]) is tuple
    assert type(back["str subclass"]) is str and back["str subclass"] != "yes", "a str subclass arrives as a plain str"


def test_anything_else_arrives_as_a_stand_in_and_unknown_data_is_refused():
    from llmbook.instructor import sandbox

    class Anything:
        def __eq__(self, other):
            return True

        def __repr__(self):
            return "<Anything>"

    back = sandbox.decode(sandbox.load_answer(sandbox.dump_answer(sandbox.encode([Anything(), len]))))
    assert isinstance(back[0], sandbox.Untransferable) and back[0] != 1 and repr(back[0]) == "<Anything>"
    for forged in (
        {"__llmbook__": "ndarray", "dtype": "|O", "shape": [1], "data": ""},  # object arrays would unpickle
        {"__llmbook__": "tensor", "dtype": "object", "shape": [1], "data": ""},
        {"__llmbook__": "pickle", "data": "gASV"},
    ):
        with pytest.raises(sandbox.StudentCrashed):
            sandbox.decode(forged)
    with pytest.raises(sandbox.StudentCrashed, match="not an answer"):
        sandbox.load_answer(b"\x80\x04\x95 a pickle")


def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe(tmp_path):
    from llmbook.instructor.grader import Row, write_csv

    write_csv(
        [Row("=1+1", "+x.ipynb", "ch99.square", 0, "-1 is not 9", 0.0), Row("@a", "b", "c", 1, "\tok", 1.5)],
        tmp_path / "g.csv",
    )
    with (tmp_path / "g.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[1] == ["'=1+1", "'+x.ipynb", "ch99.square", "0", "'-1 is not 9", "0.0"]
    assert rows[2] == ["'@a", "b", "c", "1", "'\tok", "1.5"]
