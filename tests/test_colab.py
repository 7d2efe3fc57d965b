"""The Colab edition (llmbook.instructor.colab, `make colab`) and the one setting for the repository's address.

Fast tests (with the unit tests): the conversion of MyST to Markdown on small notebooks and on every chapter
of the table of contents; the repository address written once; the workflow runs only Makefile targets.

``@pytest.mark.book`` (third step of ``make test``, after tests/test_book.py has built the book at smoke):
the edition made from that build (or from the chapters executed here at smoke when there is none), checked
for MyST leftovers, then run as Colab would: a fresh virtual environment with Colab's usual packages and
without llmbook, the first cell installing llmbook from a wheel built here (LLMBOOK_COLAB_WHEEL), every
notebook executed at smoke. The environment is kept in _build/colab-venv (LLMBOOK_COLAB_VENV) between runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmbook.instructor.colab import (
    WHEEL_VARIABLE,
    ColabBook,
    ColabError,
    colab_edition,
    install_cell_source,
    myst_leftovers,
    pages_url,
    repository_slug,
    repository_url,
    toc_documents,
    write_colab_edition,
)

ROOT = Path(__file__).resolve().parents[1]
SITE = pages_url(ROOT)
# The table of contents the book tests build (tests/test_book.py's LLMBOOK_TEST_TOC), default the book's own.
TOC = Path(os.environ.get("LLMBOOK_TEST_TOC") or ROOT / "_toc.yml")
FAKE_PNG = b"\x89PNG fake"


def fake_render(sources):
    return [FAKE_PNG for _ in sources]


def cell(kind, source, **extra):
    base = {"cell_type": kind, "metadata": extra.pop("metadata", {}), "source": source}
    if kind == "code":
        base.update(outputs=extra.pop("outputs", []), execution_count=extra.pop("execution_count", None))
    return {**base, **extra}


def notebook(*cells):
    first = cell("code", "# Colab only", metadata={"tags": ["remove-cell"]})
    return {"cells": [first, *cells], "metadata": {"jupytext": {}}, "nbformat": 4, "nbformat_minor": 5}


def convert(nb, glue=None, document="book/04_attention"):
    book = ColabBook.read(ROOT)
    return colab_edition(nb, glue or {}, book, document, "# install", fake_render)


def glue_value(text):
    return {"data": {"text/plain": text}}


# --- the conversion ---------------------------------------------------------------------------------------


def test_glue_roles_are_replaced_by_their_values_with_the_format_spec():
    edition = convert(
        notebook(cell("markdown", "Loss {glue:text}`loss:.3f`, steps {glue:text}`steps`, {glue}`name`.")),
        {"loss": glue_value("2.718281"), "steps": glue_value("1200"), "name": glue_value("'ab'")},
    )
    assert edition["cells"][1]["source"] == "Loss 2.718, steps 1200, ab."


def test_a_missing_glue_value_is_an_error_naming_it():
    with pytest.raises(ColabError, match="'loss'.*not in the executed build"):
        convert(notebook(cell("markdown", "{glue:text}`loss:.2f`")))


def test_glue_values_left_in_a_notebook_executed_outside_the_build_are_used_and_removed():
    record = {
        "output_type": "display_data",
        "metadata": {"scrapbook": {"name": "loss", "mime_prefix": "application/papermill.record/"}},
        "data": {"application/papermill.record/text/plain": "0.5"},
    }
    shown = {"output_type": "stream", "name": "stdout", "text": "hi\n"}
    edition = convert(
        notebook(cell("code", "glue('loss', 0.5)", outputs=[record, shown]), cell("markdown", "{glue:text}`loss:.1f`"))
    )
    assert edition["cells"][1]["outputs"] == [shown]
    assert edition["cells"][2]["source"] == "0.5"


def test_exercises_become_numbered_headings_and_solutions_become_stubs_with_checks_kept():
    nb = notebook(
        cell(
            "markdown",
            "```{exercise} Causal mask\n:label: ex-ch04-causal-mask\n\nWrite `f(T)`.\n```\n\n```{solution-start} ex-ch04-causal-mask\n:class: dropdown\n```",
        ),
        cell(
            "code",
            "def f(T):\n    ### BEGIN SOLUTION\n    return T + 1\n    ### END SOLUTION",
            outputs=[{"output_type": "stream", "name": "stdout", "text": "2"}],
            execution_count=3,
        ),
        cell("markdown", "```{solution-end}\n```"),
        cell("code", 'check("ch04.causal_mask")', outputs=[{"output_type": "stream", "name": "stdout", "text": "ok"}]),
        cell("markdown", "```{exercise} Open question\n\nThink.\n```"),
    )
    cells = convert(nb)["cells"]
    assert cells[1]["source"] == '<a id="ex-ch04-causal-mask"></a>\n#### Exercise 4.1: Causal mask\n\nWrite `f(T)`.'
    assert "return T + 1" not in cells[2]["source"] and "raise NotImplementedError()" in cells[2]["source"]
    assert cells[2]["source"].startswith("def f(T):") and cells[2]["outputs"] == []
    assert cells[3]["source"] == 'check("ch04.causal_mask")', "the check cell stays"
    assert cells[3]["outputs"] == [], "the reference solution's verdict goes"
    assert cells[3]["metadata"]["editable"] is False
    assert cells[4]["source"] == "#### Exercise 4.2: Open question\n\nThink."
    assert len(cells) == 5, "the {solution-end} cell disappears"


def test_admonitions_become_quotes_and_nested_fences_survive():
    nb = notebook(
        cell(
            "markdown",
            "````{admonition} Common misconception: {glue:text}`x:.1f`\n:class: warning\n\nText with $a$.\n\n```python\nx = 1\n```\n````\n\n```{note}\nShort.\n```",
        )
    )
    source = convert(nb, {"x": glue_value("0.25")})["cells"][1]["source"]
    assert source.startswith("> **Common misconception: 0.2**\n>\n> Text with $a$.\n>\n> ```python\n> x = 1\n> ```")
    assert "> **Note**\n>\n> Short." in source


def test_mermaid_diagrams_become_png_attachments():
    edition = convert(notebook(cell("markdown", "Before\n\n```{mermaid}\nflowchart LR\n  a --> b\n```\nAfter")))
    md = edition["cells"][1]
    assert md["source"] == "Before\n\n![Diagram 1](attachment:diagram-1.png)\n\nAfter"
    assert md["attachments"]["diagram-1.png"]["image/png"] == "iVBORyBmYWtl"  # base64 of FAKE_PNG


def test_citations_and_cross_references_become_links_to_the_html_book():
    nb = notebook(
        cell(
            "markdown",
            "(my-target)=\n## Target\n\nSee {cite}`vaswani2017attention`, {doc}`Chapter 3 <03_glove>`, {doc}`03_glove`, "
            "{ref}`the shuffle <ch04-positions>` and {ref}`ex-ch04-causal-mask`.",
        )
    )
    source = convert(nb)["cells"][1]["source"]
    assert source.startswith('<a id="my-target"></a>\n## Target')
    assert f"[Vaswani et al., 2017]({SITE}book/bibliography.html" in source
    assert f"[Chapter 3]({SITE}book/03_glove.html)" in source
    assert f"]({SITE}book/03_glove.html)" in source.split("Chapter 3")[1]
    assert f"[the shuffle]({SITE}book/04_attention.html#ch04-positions)" in source
    assert re.search(rf"\[Exercise 4\.\d\]\({re.escape(SITE)}book/04_attention\.html#ex-ch04-causal-mask\)", source)


def test_unknown_syntax_is_refused_with_the_fix():
    with pytest.raises(ColabError, match=r"directive \{tabs\} has no Colab conversion.*colab.py"):
        convert(notebook(cell("markdown", "```{tabs}\nx\n```")))
    with pytest.raises(ColabError, match=r"citation 'nobody2099' is not in book/references.bib"):
        convert(notebook(cell("markdown", "{cite}`nobody2099`")))
    with pytest.raises(ColabError, match="first cell must be the Colab set-up cell"):
        colab_edition(
            {"cells": [cell("markdown", "# x")], "metadata": {}}, {}, ColabBook.read(ROOT), "book/x", "", fake_render
        )


def test_myst_leftovers_finds_each_kind():
    for text in ("{glue:text}`a`", "```{note}\nx\n```", ":label: ex-x", "(target)=", "{cite}`a`", "{{ name }}"):
        assert myst_leftovers(text), text
    assert myst_leftovers("Plain **Markdown** with $x$ and [a link](https://x.org) and `code`.") == []


def _glue_keys(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return set(re.findall(r"\{glue(?::\w*)?\}`([\w.-]+)", text))


@pytest.mark.parametrize(
    "document", [doc for doc, _ in toc_documents(ROOT / "_toc.yml") if (ROOT / f"{doc}.ipynb").is_file()]
)
def test_every_chapter_converts_without_myst_leftovers(document):
    """Every chapter of the table of contents (7-11 included once listed), with stand-in glue values."""
    path = ROOT / f"{document}.ipynb"
    source = json.loads(path.read_text(encoding="utf-8"))
    glue = {key: glue_value("1") for key in _glue_keys(path)}
    edition = colab_edition(source, glue, ColabBook.read(ROOT), document, "# install", fake_render)
    problems = [
        f"cell {index}: {leftover}"
        for index, c in enumerate(edition["cells"])
        if c["cell_type"] == "markdown"
        for leftover in myst_leftovers(c["source"])
    ]
    assert not problems, f"{document}: MyST-only syntax left in the Colab edition:\n" + "\n".join(problems[:10])
    assert not any("### BEGIN SOLUTION" in c["source"] for c in edition["cells"]), "a solution leaked"


def test_install_cell_pins_the_version_and_honours_the_wheel_variable():
    source = install_cell_source("https://github.com/o/r", "v1.2", "cpu")
    compile(source, "install", "exec")
    assert '"llmbook[book] @ git+https://github.com/o/r@v1.2"' in source
    assert WHEEL_VARIABLE in source


# --- one setting for the repository's address ----------------------------------------------------------------


ADDRESS = re.compile(
    r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+?)(?=[/\s\"'`)>@]|$)"
    r"|([\w-]+)\.github\.io/([\w.-]+?)(?=[/\s\"'`)>]|$)"
)


def _slug(match: re.Match) -> str:
    return match.group(1) or f"{match.group(2)}/{match.group(3)}"


def _literal_addresses():
    """Every github.com/OWNER/REPO (or OWNER.github.io/REPO) in the repository's prose, configuration, notebooks."""
    files = [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "pyproject.toml",
        *sorted((ROOT / "book").glob("*.md")),
    ]
    found = []
    for path in files:
        for match in ADDRESS.finditer(path.read_text(encoding="utf-8")):
            found.append((path.name, _slug(match)))
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        for match in ADDRESS.finditer("".join(first["source"])):
            found.append((path.name, _slug(match)))
    return found


def test_the_repository_address_is_one_setting_and_every_copy_agrees():
    slug = repository_slug(ROOT)
    assert repository_url(ROOT) == f"https://github.com/{slug}"
    found = _literal_addresses()
    assert {name for name, _ in found} >= {"README.md", "pyproject.toml", "01_ngrams.ipynb"}
    wrong = [(name, address) for name, address in found if address.lower() != slug.lower()]
    assert not wrong, f"these places name another repository than _config.yml's repository.url ({slug}): {wrong}"


def test_launch_buttons_open_the_colab_branch_that_the_workflow_pushes():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["branch"] == "colab"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8"))
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    for command in runs:
        if command.startswith("make "):
            assert command.split()[1] in targets, f"the workflow runs `{command}`, which the Makefile lacks"
        else:
            assert command.startswith("git "), f"every build step of the workflow is a Makefile target: {command}"
    assert any(r.startswith("make book") for r in runs) and any(r.startswith("make colab-branch") for r in runs)
    assert any("push" in r and r.rstrip().endswith(" colab") for r in runs), "the workflow pushes the branch colab"
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("actions/deploy-pages") for u in uses), "the HTML goes to GitHub Pages"


# --- the edition run as Colab would -------------------------------------------------------------------------

COLAB_PACKAGES = [
    "torch==2.13.0",
    "numpy",
    "matplotlib",
    "ipywidgets",
    "pandas",
    "scipy",
    "scikit-learn",
    "ipykernel",
    "nbclient",
]


def _test_book_build() -> Path | None:
    """The smoke build of tests/test_book.py when it succeeded after the last change to a chapter."""
    out = Path(os.environ.get("LLMBOOK_TEST_BOOK_DIR") or ROOT / "_build" / "test-book")
    log = out / "build.log"
    executed = out / "_build" / "jupyter_execute"
    if not log.is_file() or "build succeeded" not in log.read_text(errors="replace") or not executed.is_dir():
        return None
    newest = max(p.stat().st_mtime for p in (ROOT / "book").glob("*.ipynb"))
    return out / "_build" if log.stat().st_mtime > newest else None


def _execute_chapters_here(folder: Path) -> Path:
    """Every chapter executed at smoke in this interpreter (glue values stay in the outputs)."""
    import nbclient
    import nbformat

    env_budget = os.environ.get("LLMBOOK_BUDGET")
    os.environ["LLMBOOK_BUDGET"] = "smoke"
    try:
        for document, _ in toc_documents(TOC):
            path = ROOT / f"{document}.ipynb"
            if not path.is_file():
                continue
            nb = nbformat.read(path, as_version=4)
            nbclient.NotebookClient(
                nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "book")}}
            ).execute()
            target = folder / "jupyter_execute" / f"{document}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
    finally:
        if env_budget is None:
            os.environ.pop("LLMBOOK_BUDGET")
        else:
            os.environ["LLMBOOK_BUDGET"] = env_budget
    return folder


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    build = _test_book_build() or _execute_chapters_here(tmp_path_factory.mktemp("executed"))
    out = tmp_path_factory.mktemp("colab")
    html = build / "html"
    write_colab_edition(
        build / "jupyter_execute", out, ROOT, toc=TOC, html=html if html.is_dir() else None, budget="smoke"
    )
    return out


@pytest.mark.book
def test_the_edition_has_no_myst_only_syntax_and_no_solution(edition):
    notebooks = sorted(edition.rglob("*.ipynb"))
    chapters = [doc for doc, _ in toc_documents(TOC) if (ROOT / f"{doc}.ipynb").is_file()]
    assert [p.relative_to(edition).with_suffix("").as_posix() for p in notebooks] == sorted(chapters)
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        problems = [
            f"cell {i}: {leftover}"
            for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "markdown"
            for leftover in myst_leftovers(c["source"])
        ]
        assert not problems, f"{path.name}: MyST-only syntax in the Colab edition:\n" + "\n".join(problems[:10])
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any("### BEGIN SOLUTION" in c["source"] for c in code), f"{path.name}: a solution leaked"
        # many cells print nothing (assignments, stubbed solutions, cleared checks): a third is the floor
        assert 3 * sum(bool(c.get("outputs")) for c in code) >= len(code), (
            f"{path.name}: the build's outputs are missing"
        )
        # every Mermaid diagram of the source became an image attached to its cell
        source = json.loads((ROOT / "book" / path.name).read_text(encoding="utf-8"))
        diagrams = sum("".join(c["source"]).count("```{mermaid}") for c in source["cells"])
        attached = sum(len(c.get("attachments", {})) for c in nb["cells"])
        assert attached >= diagrams, f"{path.name}: {diagrams} Mermaid diagrams but {attached} attached images"


def _colab_env(**extra: str) -> dict[str, str]:
    """This process's environment without what points Python at this checkout (as in a Colab runtime)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMBOOK_STRICT_CHECKS", "VIRTUAL_ENV")}
    return {**env, **extra}


def _colab_venv() -> Path:
    """A virtual environment with Colab's usual packages and no llmbook (created once, then reused)."""
    venv = Path(os.environ.get("LLMBOOK_COLAB_VENV") or ROOT / "_build" / "colab-venv")
    python = venv / "bin" / "python"
    stamp = venv / "colab-packages.txt"
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == "\n".join(COLAB_PACKAGES)):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *COLAB_PACKAGES], capture_output=True, text=True
        )
        assert result.returncode == 0, f"installing Colab's packages failed:\n{result.stderr[-3000:]}"
        stamp.write_text("\n".join(COLAB_PACKAGES))
    # A fresh runtime: whatever an earlier run installed of llmbook goes.
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "-q", "-y", "llmbook"], capture_output=True, cwd="/", env=_colab_env()
    )
    probe = subprocess.run([str(python), "-c", "import llmbook"], capture_output=True, cwd="/", env=_colab_env())
    assert probe.returncode != 0, "the Colab environment must not hold llmbook before the first cell runs"
    return python


RUN_EDITION = r"""
import ast, json, re, sys, time
import nbclient, nbformat


def assigned(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


results = {}
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    # Like "Run all" followed by "Run after" at each error: every cell runs; the errors are judged below.
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True).execute()
    unanswered, errors, checks = set(), [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                name, value = output.get("ename"), output.get("evalue", "")
                missing = re.search(r"name '(\w+)' is not defined", value)
                # A stub, or a cell that needs what a stubbed cell would have defined: the student's part.
                if name == "NotImplementedError" or (name == "NameError" and missing and missing.group(1) in unanswered):
                    unanswered |= assigned(cell.source)
                else:
                    errors.append(f"cell {index}: {name}: {value}")
        if cell.source.startswith("check("):
            checks.append("".join(o.get("text", "") for o in cell.get("outputs", [])))
    results[path] = {"seconds": time.perf_counter() - start, "errors": errors, "checks": checks,
                     "unanswered": sorted(unanswered)}
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.book
def test_the_edition_runs_as_in_colab_from_a_wheel_at_smoke(edition, tmp_path):
    python = _colab_venv()
    # The wheel is built from a copy, so the build leaves nothing (build/, *.egg-info) in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "code", source / "code", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheel = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    (wheel_path,) = tmp_path.glob("llmbook-*.whl")
    env = _colab_env(**{WHEEL_VARIABLE: str(wheel_path), "LLMBOOK_BUDGET": "smoke"})
    env["PATH"] = f"{python.parent}:{env.get('PATH', '')}"
    notebooks = [str(p) for p in sorted(edition.rglob("*.ipynb"))]
    started = time.perf_counter()
    result = subprocess.run(
        [str(python), "-c", RUN_EDITION, *notebooks], capture_output=True, text=True, env=env, cwd=str(edition / "book")
    )
    assert result.returncode == 0, f"a Colab-edition notebook failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    results = json.loads(result.stdout.split("RESULTS", 1)[1])
    print(
        f"Colab edition executed in {time.perf_counter() - started:.0f} s:",
        {Path(k).name: round(v["seconds"]) for k, v in results.items()},
    )
    for path, outcome in results.items():
        assert not outcome["errors"], f"{path}: errors that no unanswered exercise explains: {outcome['errors']}"
        source = (ROOT / "book" / Path(path).name).read_text(encoding="utf-8")
        if "{exercise}" not in source:
            continue  # Chapter 11 and the FAQ have no graded exercises: nothing to check.
        assert outcome["checks"], f"{path}: no check cell ran"
        assert all(
            "not yet" in text or "not defined yet" in text or "not implemented" in text for text in outcome["checks"]
        ), f"{path}: a check passed on a stub (the solution leaked?) or printed nothing: {outcome['checks']}"
