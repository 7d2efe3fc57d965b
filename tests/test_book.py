"""The book as a reader gets it: notebooks stored cleanly, the HTML built with no warning, pages that work.

Two kinds of tests:

* Notebook hygiene (fast, run with the unit tests): every chapter starts with the Colab set-up cell,
  and notebooks are stored without outputs.
* ``@pytest.mark.book`` (the third step of ``make test``): build the whole book at the ``smoke`` budget
  with warnings as errors, serve the HTML on 127.0.0.1 and open every page in Debian's Chromium,
  driven by Playwright. The files the published book loads from CDNs (MathJax, Mermaid, require.js,
  the Jupyter widget manager) are served from the npm packages pinned in ``tests/browser/``; any
  other request that leaves the machine is blocked and fails the test.

  Besides loading without error, every page is checked for what a reader would see broken: Markdown
  tables or maths shown as source, equations, outputs and code wider than the text column, warnings
  in outputs, figure and diagram text under 9 px as displayed, and mentions of existing chapters
  that are not links. Each failure names the page, the element and the measured value.

The built book, its build log and a screenshot of chapter 4 are left in ``_build/test-book``
(``LLMBOOK_TEST_BOOK_DIR``). ``LLMBOOK_TEST_REUSE_BUILD=1`` reuses the last successful build there
(for work on the browser tests only).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
BROWSER_ASSETS = ROOT / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The repository's address: _config.yml's repository.url, the one setting (tests/test_colab.py checks the copies).
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"].removeprefix(
    "https://github.com/"
)
# The branch the launch buttons open: the Colab edition (make colab-branch).
LAUNCH_BRANCH = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["branch"]
ATTENTION_CHAPTER = os.environ.get("LLMBOOK_TEST_ATTENTION_CHAPTER", "book/04_attention")
# Another table of contents (to test this test on a scratch chapter); default: the book's own.
TOC = Path(os.environ.get("LLMBOOK_TEST_TOC") or ROOT / "_toc.yml")

COLAB_CELL = f"""\
# Colab only: install the book's library and turn on interactive widgets.
# Does nothing elsewhere.
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = (
        "llmbook[book] @ "
        "git+https://github.com/{REPOSITORY}"
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", package],
        check=True,
    )
    from google.colab import output

    output.enable_custom_widget_manager()"""


# --- the table of contents and the notebooks ------------------------------------------------------


def toc_files(toc_path: Path = TOC) -> list[str]:
    """Every document of the table of contents, in reading order, without suffix (``book/04_attention``)."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return [re.sub(r"\.(md|ipynb)$", "", file) for file in files]


def notebooks() -> list[Path]:
    return sorted((ROOT / "book").glob("*.ipynb"))


def cell_source(cell: dict) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def test_every_toc_entry_exists_exactly_once():
    files = toc_files()
    assert len(files) == len(set(files)), (
        f"listed twice in _toc.yml: {sorted({f for f in files if files.count(f) > 1})}"
    )
    missing = [file for file in files if not any((ROOT / f"{file}{suffix}").is_file() for suffix in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(toc_files())
    orphans = [path.name for path in notebooks() if f"book/{path.stem}" not in listed]
    assert not orphans, f"notebooks in book/ that _toc.yml does not list (they would never be built): {orphans}"


@pytest.mark.parametrize("path", notebooks(), ids=lambda path: path.name)
def test_notebook_starts_with_the_hidden_colab_setup_cell(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    first = cells[0]
    assert first["cell_type"] == "code", f"{path.name}: the first cell must be the Colab set-up code cell"
    assert cell_source(first).strip() == COLAB_CELL, (
        f"{path.name}: the first cell must be exactly the Colab set-up cell of CONTRIBUTING.md"
    )
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), f"{path.name}: tag the Colab cell remove-cell"


@pytest.mark.parametrize("path", notebooks(), ids=lambda path: path.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
        and "nbval-check-output" not in cell.get("metadata", {}).get("tags", [])
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or execution counts; strip them "
        "(jupyter nbconvert --clear-output --inplace, or jupytext --to ipynb from the .md source)"
    )
    assert "widgets" not in notebook.get("metadata", {}), f"{path.name}: stored widget state; strip it"


# --- building the book ------------------------------------------------------------------------------


def book_dir() -> Path:
    return Path(os.environ.get("LLMBOOK_TEST_BOOK_DIR") or ROOT / "_build" / "test-book")


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the book at the smoke budget, warnings as errors; the HTML folder."""
    out = book_dir()
    html = out / "_build" / "html"
    if os.environ.get("LLMBOOK_TEST_REUSE_BUILD") == "1" and "build succeeded" in _read(out / "build.log"):
        return html  # while working on the browser tests: reuse the last successful build
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)]
    if TOC != ROOT / "_toc.yml":
        command += ["--toc", str(TOC)]
    env = {**os.environ, "LLMBOOK_BUDGET": "smoke", "LLMBOOK_STRICT_CHECKS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    started = time.perf_counter()
    with open(out / "build.log", "w", encoding="utf-8") as log_file:  # follow it with tail -f while it builds
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    log = _read(out / "build.log")
    problems = [line for line in log.splitlines() if re.search(r"WARNING|ERROR|Traceback|CellExecutionError", line)]
    problems = [line for line in problems if "Kernel is running over TCP without encryption" not in line]
    if result.returncode != 0:
        tail = "\n".join(log.splitlines()[-15:])
        pytest.fail(
            f"jupyter-book build failed (exit {result.returncode}) after {seconds:.0f} s; full log in {out / 'build.log'}\n"
            + "\n".join(problems[:30])
            + "\n--- last lines ---\n"
            + tail
        )
    print(f"book built in {seconds:.0f} s at the smoke budget")
    return html


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


@pytest.mark.book
def test_book_builds_every_page_with_no_warning_and_no_execution_error(built_book):
    log = (book_dir() / "build.log").read_text(encoding="utf-8")
    assert "build succeeded" in log and "warning" not in log.split("build succeeded")[-1].split("\n")[0]
    missing = [file for file in toc_files() if not (built_book / f"{file}.html").is_file()]
    assert not missing, f"no HTML page for {missing}"
    reports = sorted((built_book / "reports").glob("**/*.log")) if (built_book / "reports").exists() else []
    assert not reports, f"notebook execution reports (errors) were written: {[r.name for r in reports]}"


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.book
def test_pinned_outputs_match_the_executed_build(built_book):
    """A cell tagged ``nbval-check-output`` keeps its output in the source; the build must print the same."""
    import nbformat

    executed = book_dir() / "_build" / "jupyter_execute"
    pinned = 0
    for source_path in sorted((ROOT / "book").glob("*.ipynb")):
        source = nbformat.read(source_path, as_version=4)
        tagged = [
            (i, c) for i, c in enumerate(source.cells) if "nbval-check-output" in c.get("metadata", {}).get("tags", [])
        ]
        if not tagged:
            continue
        ran = nbformat.read(executed / "book" / source_path.name, as_version=4)
        for index, cell in tagged:
            expected = _stream_text(cell)
            assert expected, f"{source_path.name} cell {index} is tagged nbval-check-output but stores no output"
            got = _stream_text(ran.cells[index])
            assert got == expected, f"{source_path.name} cell {index}: the build printed\n{got}\ninstead of\n{expected}"
            pinned += 1
    assert pinned >= 1, "no pinned output found (chapter 4's mask cell is tagged nbval-check-output)"


# --- serving the book and its CDN files locally -----------------------------------------------------


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The npm packages of tests/browser, installed with `npm ci` once per lock file."""
    lock = BROWSER_ASSETS / "package-lock.json"
    folder = BROWSER_ASSETS / "node_modules"
    stamp = folder / ".llmbook-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return folder
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "the browser test needs npm (Node.js) to install its local copies of the CDN files: apt-get install npm"
        )
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BROWSER_ASSETS,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {BROWSER_ASSETS} failed:\n{result.stdout}\n{result.stderr}")
    stamp.write_text(digest)
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def book_url(built_book):
    """The built HTML served on 127.0.0.1 (an ephemeral port)."""
    handler = functools.partial(QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


CDN_PREFIXES = ("https://cdn.jsdelivr.net/npm/", "https://unpkg.com/")


def npm_file_for(url: str, modules: Path) -> tuple[Path | None, str]:
    """The local file for a CDN URL of an npm package (``https://cdn.jsdelivr.net/npm/mermaid@11.12.0/dist/x.mjs``).

    Returns (path, "") or (None, why not). A URL naming another version than the one installed is refused:
    the test must see the very file the published book gets.
    """
    prefix = next((p for p in CDN_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        return None, "not an npm CDN URL"
    rest = unquote(urlsplit(url).path[len(urlsplit(prefix).path) :])
    parts = rest.split("/")
    count = 2 if parts[0].startswith("@") else 1
    spec, file_parts = "/".join(parts[:count]), parts[count:]
    name, _, version = spec.rpartition("@") if spec.count("@") > (1 if spec.startswith("@") else 0) else (spec, "", "")
    package = modules / name
    if not (package / "package.json").is_file():
        return None, f"npm package {name} is not in tests/browser/package.json"
    installed = json.loads((package / "package.json").read_text())["version"]
    if version and not (installed == version or installed.startswith(version + ".")):
        return None, f"{name}@{version} requested but tests/browser pins {installed}"
    path = package.joinpath(*file_parts) if file_parts and file_parts != [""] else None
    if path is None or not path.is_file():
        return None, f"{name}@{installed} has no file {'/'.join(file_parts)}"
    return path, ""


def content_type(path: Path) -> str:
    if path.suffix in (".js", ".mjs"):
        return "text/javascript; charset=utf-8"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Visit:
    """One page load: what went wrong while loading it."""

    def __init__(self):
        self.console_errors: list[str] = []
        self.failed_requests: list[str] = []
        self.blocked: list[str] = []


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the browser tests drive Debian's Chromium at {CHROMIUM}, which is missing: "
            "apt-get install -y chromium (as root); `make test` does this when it can"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def open_page(browser, book_url, node_modules):
    """``open_page("book/04_attention")`` -> (page, visit), the page loaded with maths, diagrams and widgets done."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    served_from_npm: set[str] = set()
    current: list[Visit] = []

    def route(route):
        url = route.request.url
        if url.startswith(book_url):
            return route.continue_()
        path, why = npm_file_for(url, node_modules)
        if path is None:
            current[-1].blocked.append(f"{url} ({why})")
            return route.abort("blockedbyclient")
        served_from_npm.add(url.split("?")[0])
        return route.fulfill(
            status=200,
            path=str(path),
            headers={"Content-Type": content_type(path), "Access-Control-Allow-Origin": "*"},
        )

    context.route("**/*", route)
    pages = []

    loaded: dict[str, tuple] = {}

    def open_(document: str):
        if document in loaded:  # each page is loaded once per session; tests share it
            return loaded[document]
        visit = Visit()
        current.append(visit)
        page = context.new_page()
        pages.append(page)
        page.on(
            "console",
            lambda message: (
                visit.console_errors.append(f"{message.text} ({message.location.get('url', '')})")
                if message.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: visit.console_errors.append(f"uncaught: {error}"))
        page.on(
            "requestfailed",
            lambda request: (
                None
                if (request.failure or "").endswith("ERR_BLOCKED_BY_CLIENT")
                else visit.failed_requests.append(f"{request.url}: {request.failure}")
            ),
        )
        page.on(
            "response",
            lambda response: (
                visit.failed_requests.append(f"{response.url}: HTTP {response.status}")
                if response.status >= 400
                else None
            ),
        )
        page.goto(f"{book_url}/{document}.html", wait_until="networkidle", timeout=60_000)

        def wait_for(condition: str, what: str):
            try:
                page.wait_for_function(condition, timeout=30_000)
            except PlaywrightTimeout:
                visit.console_errors.append(f"not done within 30 s: {what}")

        # MathJax typesets asynchronously after load; wait for it when the page uses it.
        wait_for(
            "() => !window.MathJax || !window.MathJax.version || window.MathJax.startup.promise",
            "MathJax did not start",
        )
        page.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")
        # Every visible Mermaid diagram has become an SVG, or failed (reported below by the console).
        wait_for(
            """() => [...document.querySelectorAll('.mermaid')].every(el =>
                   el.querySelector('svg') || el.hasAttribute('data-mermaid-deferred')
                   || el.hasAttribute('data-mermaid-render-failed'))""",
            "a Mermaid diagram was not drawn",
        )
        # Saved widget views are drawn by the widget manager (require.js + html-manager).
        wait_for(
            """() => document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length
                   <= document.querySelectorAll('.widget-subarea').length""",
            "saved ipywidgets were not drawn (is the widget state saved in the notebook's metadata?)",
        )
        page.wait_for_load_state("networkidle")
        loaded[document] = page, visit
        return page, visit

    open_.served_from_npm = served_from_npm
    yield open_
    for page in pages:
        page.close()
    context.close()


# --- what every page must do -------------------------------------------------------------------------


# Draft chapters (issues 14-17 open): built and executed like every page, but their page-layout defects
# (outputs and code wider than the column, figure text under 9 px) are still being fixed. Their layout
# checks are expected failures, strict=False so that a page that becomes clean passes; remove a chapter
# from this set when its issue closes.
DRAFT_LAYOUT = {"book/08_applications", "book/09_assistant"}


def layout_pages() -> list:
    """html_pages(), the draft chapters marked as expected failures of the layout checks."""
    return [
        pytest.param(page, marks=pytest.mark.xfail(reason="draft chapter: layout being fixed", strict=False))
        if page in DRAFT_LAYOUT
        else page
        for page in html_pages()
    ]


def html_pages() -> list[str]:
    return toc_files()


@pytest.mark.book
@pytest.mark.parametrize("document", html_pages())
def test_page_loads_with_no_console_error_no_failed_request_and_nothing_from_the_web(open_page, document):
    page, visit = open_page(document)
    assert page.title(), f"{document}: the page has no title"
    assert not visit.console_errors, f"{document}: console errors:\n" + "\n".join(visit.console_errors)
    assert not visit.failed_requests, f"{document}: failed requests:\n" + "\n".join(visit.failed_requests)
    assert not visit.blocked, (
        f"{document}: requests to the web that the test does not serve from tests/browser "
        "(add the npm package there, or stop loading it):\n" + "\n".join(visit.blocked)
    )
    failed_diagrams = page.locator(".mermaid[data-mermaid-render-failed]").count()
    assert failed_diagrams == 0, f"{document}: {failed_diagrams} Mermaid diagram(s) failed to render"
    unrendered_math = page.locator("mjx-container merror").count()
    assert unrendered_math == 0, f"{document}: {unrendered_math} formula(s) MathJax could not typeset"
    if (ROOT / f"{document}.ipynb").is_file():  # every chapter notebook opens in Colab from its page
        colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/{LAUNCH_BRANCH}/{document}.ipynb"
        assert page.locator(f"a[href='{colab}']").count() >= 1, f"{document}: no Colab launch link to {colab}"


@pytest.mark.book
def test_preface_formulas_are_typeset_by_mathjax(open_page):
    page, _ = open_page("book/00_preface")
    assert page.locator("mjx-container").count() >= 20  # the notation table
    assert page.locator("mjx-container[display='true']").count() >= 1  # the attention formula


def chapter(document: str) -> str:
    if document not in toc_files():
        pytest.skip(f"{document} is not in _toc.yml yet")
    return document


@pytest.mark.book
def test_attention_chapter_math_renders(open_page):
    page, _ = open_page(chapter(ATTENTION_CHAPTER))
    assert page.locator("mjx-container").count() >= 10
    assert page.locator("mjx-container[display='true'] mjx-mfrac").count() >= 1  # e.g. QK^T / sqrt(d_k)


@pytest.mark.book
def test_attention_chapter_mermaid_diagram_from_a_notebook_cell_renders(open_page):
    page, _ = open_page(chapter(ATTENTION_CHAPTER))
    diagrams = page.locator("pre.mermaid, div.mermaid")
    assert diagrams.count() >= 1, "chapter 4 has no Mermaid diagram ('where we are')"
    svg = diagrams.first.locator("svg")
    assert svg.count() == 1
    box = svg.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 20
    assert svg.locator("g.node, g[class*='node']").count() >= 2  # boxes were laid out, not just an empty svg


@pytest.mark.book
def test_attention_view_draws_and_responds_to_a_head_button(open_page):
    page, _ = open_page(chapter(ATTENTION_CHAPTER))
    views = page.locator(".llmbook-attention-view")
    assert views.count() >= 1, "chapter 4 shows no attention_view"
    view = views.first
    view.scroll_into_view_if_needed()

    def weights():
        return view.locator("svg.llmbook-attention-lines [data-weight]").evaluate_all(
            "lines => lines.map(line => line.getAttribute('data-weight'))"
        )

    before = weights()
    assert before, "the attention view drew no lines with data-weight"
    assert all(0.0 <= float(w) <= 1.0 for w in before)
    current = view.get_attribute("data-head")
    buttons = view.locator("button.llmbook-head")
    assert buttons.count() >= 2, "the attention view needs a button per head"
    other = next(
        buttons.nth(i).get_attribute("data-head")
        for i in range(buttons.count())
        if buttons.nth(i).get_attribute("data-head") != current
    )
    view.locator(f"button.llmbook-head[data-head='{other}']").click()
    page.wait_for_function("([el, head]) => el.getAttribute('data-head') === head", arg=[view.element_handle(), other])
    after = weights()
    assert after and after != before, "clicking another head did not change the drawn weights"


@pytest.mark.book
def test_attention_chapter_has_a_colab_launch_link(open_page):
    page, _ = open_page(chapter(ATTENTION_CHAPTER))
    links = page.locator("a[href*='colab.research.google.com']")
    assert links.count() >= 1, "no Colab launch button"
    expected = f"https://colab.research.google.com/github/{REPOSITORY}/blob/{LAUNCH_BRANCH}/{ATTENTION_CHAPTER}.ipynb"
    assert links.first.get_attribute("href") == expected


@pytest.mark.book
def test_attention_chapter_screenshot(open_page):
    page, _ = open_page(chapter(ATTENTION_CHAPTER))
    target = book_dir() / "chapter4.png"
    page.screenshot(path=str(target), full_page=True, timeout=180_000)  # a tall page on a loaded machine
    assert target.stat().st_size > 50_000


@pytest.mark.book
def test_saved_widgets_render_where_a_page_has_them(open_page, built_book):
    with_widgets = [
        file
        for file in toc_files()
        if "application/vnd.jupyter.widget-view+json" in (built_book / f"{file}.html").read_text(encoding="utf-8")
    ]
    if not with_widgets:
        pytest.skip("no page of the book embeds a saved widget yet")
    for document in with_widgets:
        page, visit = open_page(document)
        views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        drawn = page.locator(".widget-subarea").count()
        assert drawn >= views >= 1, f"{document}: {views} saved widget views but {drawn} drawn"
        assert not visit.console_errors, visit.console_errors


# --- numbers glued into the prose ----------------------------------------------------------------


def test_glue_hands_numpy_and_torch_scalars_to_myst_nb_as_python_numbers(monkeypatch):
    """``{glue:text}`name:.3f``` formats the value's text/plain; NumPy 2 writes np.float64(0.8) there."""
    import myst_nb
    import numpy as np
    import torch

    from llmbook import notebook

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    original = np.float64(0.8)
    assert notebook.glue("loss", original) is None  # nothing for the notebook to print after the cell
    notebook.glue("tokens", np.int64(7))
    notebook.glue("ratio", torch.tensor(2.5))
    notebook.glue("table", [1, 2])
    assert glued == {"loss": 0.8, "tokens": 7, "ratio": 2.5, "table": [1, 2]}
    assert type(glued["loss"]) is float and type(glued["tokens"]) is int
    assert format(glued["loss"], ".3f") == "0.800"


# --- what a reader sees broken (issue 11 §2) ----------------------------------------------------------
# Each check runs on every page and names the page, the element and the measured value.

# The text a reader reads: the article, without code, outputs printed as code, maths and diagrams.
_PROSE_SKIP = "pre, code, kbd, samp, script, style, textarea, svg, mjx-container, .mermaid, .llmbook-attention-view"

_PAGE_CELLS_JS = """
() => [...document.querySelectorAll('article.bd-article div.cell')].map((cell, index) => {
    const source = cell.querySelector('.cell_input pre');
    const first = source ? source.textContent.split('\\n').find(line => line.trim()) || '' : '';
    return {index, first: first.trim().slice(0, 60)};
})
"""


def _cell_name(cells: list[dict], index: int) -> str:
    """``code cell 12 ("Markdown(table)")``: the cell's place among the page's code cells and its first line."""
    first = cells[index]["first"] if 0 <= index < len(cells) else ""
    return f"code cell {index}" + (f' ("{first}")' if first else "")


@pytest.mark.book
@pytest.mark.parametrize("document", html_pages())
def test_page_shows_no_raw_markdown_table_and_no_unrendered_math(open_page, document):
    """Markdown a reader should never see as source: a table printed as pipes and dashes (a cell's
    ``IPython.display.Markdown`` output rendered as plain CommonMark, or a table in a ``print``), and
    ``$…$``, ``\\command`` or ``_{…}`` left as text, or prose swallowed into a formula (a ``$`` that
    closed in the wrong place: "whereN_{1+}(h,\\bullet)isthenumberof")."""
    page, _ = open_page(document)
    found = page.evaluate(
        """(skip) => {
        const found = [];
        const article = document.querySelector('article.bd-article');
        if (!article) return ['no article.bd-article on the page'];
        // A separator row, also after smart punctuation made "---" an em dash: |---|, | :---: |, |—|.
        const tableRow = /\\|\\s*:?(?:-{3,}|[\u2013\u2014]{1,3}-?):?\\s*\\|/;
        const dollars = /\\$\\$|\\$(?!\\d)[^\\s$][^$]*\\$/;  // "$x$" but not the price in "$5 and $x$"
        const command = /\\\\(frac|sum|prod|text|mathrm|mathbf|cdot|bullet|sqrt|log|exp|mid|le|ge|in|alpha|beta|gamma|theta|lambda|sigma|mu|top|left|right|begin|end|approx|times|infty)(?![a-zA-Z])|[A-Za-z)]\\s*[_^]\\{/;
        const where = el => {
            const cell = el.closest('div.cell');
            if (cell) return 'code cell ' + [...article.querySelectorAll('div.cell')].indexOf(cell) + ' output';
            const heading = [...article.querySelectorAll('h1, h2, h3, h4')]
                .filter(h => h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
            return 'the text' + (heading ? ' under "' + heading.textContent.replace(/#$/, '').trim() + '"' : '');
        };
        // Blocks of prose (and Markdown outputs), their text without code, maths and diagrams.
        for (const block of article.querySelectorAll('p, li, td, th, dt, dd, .caption, .admonition-title')) {
            if (block.closest(skip)) continue;
            if (block.querySelector('p, li')) continue;  // judged in its own paragraphs
            let text = '';
            const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT, {
                acceptNode: node => node.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
            while (walker.nextNode()) text += walker.currentNode.nodeValue;
            const excerpt = m => JSON.stringify(text.slice(Math.max(0, m.index - 30), m.index + 50).replace(/\\s+/g, ' '));
            let m;
            if ((m = tableRow.exec(text))) found.push(where(block) + ': a Markdown table shown as raw pipes: ' + excerpt(m));
            else if ((m = dollars.exec(text))) found.push(where(block) + ': unrendered $ maths: ' + excerpt(m));
            else if ((m = command.exec(text))) found.push(where(block) + ': unrendered TeX: ' + excerpt(m));
        }
        // Plain-text outputs that print a Markdown table.
        for (const pre of article.querySelectorAll('.cell_output pre')) {
            const m = tableRow.exec(pre.textContent);
            if (m) found.push(where(pre) + ': a Markdown table printed as text: '
                + JSON.stringify(pre.textContent.slice(0, 80).replace(/\\s+/g, ' ')));
        }
        // Formulas that swallowed prose: three plain words in a row outside \\text{...}.
        const items = window.MathJax && MathJax.startup && MathJax.startup.document
            ? MathJax.startup.document.getMathItemsWithin(article) : [];
        for (const item of items) {
            const tex = item.math.replace(/\\\\(text|mathrm|textrm|mbox|operatorname|textit|textbf)\\s*\\{[^}]*\\}/g, ' ')
                .replace(/\\\\[a-zA-Z]+/g, ' ');
            const m = /(^|[^a-zA-Z])([a-zA-Z]{2,}\\s+[a-zA-Z]{2,}\\s+[a-zA-Z]{2,})([^a-zA-Z]|$)/.exec(tex);
            if (m) found.push(where(item.typesetRoot || article) + ': prose typeset as a formula: '
                + JSON.stringify(item.math.slice(0, 80)));
        }
        return found;
    }""",
        _PROSE_SKIP,
    )
    assert not found, f"{document}: Markdown or maths shown as source:\n" + "\n".join(found)


_WIDTHS_JS = """
() => {
    const article = document.querySelector('article.bd-article');
    const style = getComputedStyle(article);
    const column = article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const closed = [...article.querySelectorAll('details:not([open])')];
    closed.forEach(d => d.open = true);  // collapsed code (hide-input) is read when opened
    const cells = [...article.querySelectorAll('div.cell')];
    const cellOf = el => cells.indexOf(el.closest('div.cell'));
    // Characters per line that fit in a code block, and the longest line of a block.
    const fits = pre => {
        const probe = document.createElement('span');
        probe.textContent = 'x'.repeat(100);
        pre.appendChild(probe);
        const perChar = probe.getBoundingClientRect().width / 100;
        probe.remove();
        const ps = getComputedStyle(pre);
        return Math.floor((pre.clientWidth - parseFloat(ps.paddingLeft) - parseFloat(ps.paddingRight)) / perChar);
    };
    const longest = pre => Math.max(0, ...pre.textContent.split('\\n').map(line => [...line].length));
    const equations = [...article.querySelectorAll('mjx-container[display="true"]')].map((eq, index) => {
        const math = eq.querySelector('mjx-math') || eq;
        const item = MathJax.startup.document.getMathItemsWithin(eq)[0];
        return {index, width: math.getBoundingClientRect().width, tex: (item ? item.math : eq.textContent).trim().slice(0, 50)};
    });
    const inputs = [...article.querySelectorAll('.cell_input pre')].map(pre => ({
        cell: cellOf(pre), width: pre.scrollWidth, clipped: pre.scrollWidth > pre.clientWidth + 1,
        fits: fits(pre), longest: longest(pre)}));
    const outputs = [...article.querySelectorAll('.cell_output > *')].map(output => {
        const boxes = [output, ...output.querySelectorAll('pre, table, .jp-RenderedHTMLCommon, .widget-subarea')];
        const pre = output.querySelector('pre');
        return {cell: cellOf(output),
                width: Math.max(...boxes.map(el => Math.max(el.scrollWidth, el.getBoundingClientRect().width))),
                clipped: boxes.some(el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1),
                fits: pre ? fits(pre) : null, longest: pre ? longest(pre) : null};
    });
    closed.forEach(d => d.open = false);
    return {column, equations, inputs, outputs};
}
"""


def _too_wide(item: dict, column: float) -> str:
    """`` is 912 px wide (lines of up to 104 characters, 80 fit), the text column 688 px``."""
    lines = f" (lines of up to {item['longest']} characters, {item['fits']} fit)" if item.get("fits") else ""
    return f" is {item['width']:.0f} px wide{lines}, the text column {column:.0f} px"


@pytest.mark.book
@pytest.mark.parametrize("document", layout_pages())
def test_page_has_no_display_equation_or_output_wider_than_the_text_column(open_page, document):
    """Display equations and cell outputs fit the text column; nothing is cut off or behind a scroll bar.

    The column is the width of the article's text (``article.bd-article`` less its padding) in a
    1280 px window. An equation is as wide as MathJax typeset it (``mjx-math``); an output as wide as
    its content (``scrollWidth`` of the output and of its ``pre``/tables/widgets), and it fails too when
    its content overflows its own box. Pictures are scaled into the column by the theme: their
    legibility is the figure-text check. ``show_source`` listings are outputs.
    """
    page, _ = open_page(document)
    cells = page.evaluate(_PAGE_CELLS_JS)
    measured = page.evaluate(_WIDTHS_JS)
    column = measured["column"]
    problems = [
        f"display equation {eq['index']} {json.dumps(eq['tex'])}" + _too_wide(eq, column)
        for eq in measured["equations"]
        if eq["width"] > column + 1
    ]
    problems += [
        f"{_cell_name(cells, item['cell'])} output" + _too_wide(item, column)
        for item in measured["outputs"]
        if item["width"] > column + 1 or item["clipped"]
    ]
    assert not problems, f"{document}: wider than the text column (cut off or behind a scroll bar):\n" + "\n".join(
        problems
    )


@pytest.mark.book
@pytest.mark.parametrize("document", layout_pages())
def test_page_has_no_code_cell_wider_than_the_text_column(open_page, document):
    """Every line of every code cell is visible without scrolling sideways (collapsed cells opened).

    The message gives the longest line and how many characters of the book's code font fit.
    """
    page, _ = open_page(document)
    cells = page.evaluate(_PAGE_CELLS_JS)
    measured = page.evaluate(_WIDTHS_JS)
    column = measured["column"]
    problems = [
        f"{_cell_name(cells, item['cell'])}" + _too_wide(item, column)
        for item in measured["inputs"]
        if item["clipped"] or item["width"] > column + 1
    ]
    assert not problems, f"{document}: code cells wider than the text column (behind a scroll bar):\n" + "\n".join(
        problems
    )


@pytest.mark.book
@pytest.mark.parametrize("document", html_pages())
def test_page_outputs_show_no_warning_on_stderr(open_page, document):
    """A warning printed by a cell (``UserWarning: enable_nested_tensor …``) reads as a fault in the book:
    the chapter fixes its cause or silences that one warning where it is expected. Progress bars,
    which also write to stderr, are not warnings."""
    page, _ = open_page(document)
    cells = page.evaluate(_PAGE_CELLS_JS)
    warnings = page.evaluate(
        """() => {
        const article = document.querySelector('article.bd-article');
        const cells = [...article.querySelectorAll('div.cell')];
        return [...article.querySelectorAll('.cell_output .output.stderr')]
            .map(output => ({cell: cells.indexOf(output.closest('div.cell')), text: output.textContent}))
            .filter(item => /\\b[A-Za-z]*Warning\\b|^WARNING|warnings\\.warn/m.test(item.text));
    }"""
    )
    problems = [
        f"{_cell_name(cells, item['cell'])} prints on stderr: "
        + next((line.strip() for line in item["text"].splitlines() if re.search(r"Warning|WARNING|warn", line)), "")[
            :160
        ]
        for item in warnings
    ]
    assert not problems, f"{document}: warnings in the outputs:\n" + "\n".join(problems)


SMALLEST_TEXT_PX = 9.0  # figure and diagram text shorter than this, as displayed, is hard to read


def _image_bytes(built_book: Path, src: str) -> tuple[bytes | None, str]:
    """(PNG bytes or None, a short name) of an <img src>: a file of the built HTML or a data: URL."""
    if src.startswith("data:"):
        header, _, data = src.partition(",")
        png = base64.b64decode(data) if header == "data:image/png;base64" else None
        return png, f"an inline {header[5:].split(';')[0]} image"
    path = built_book / unquote(urlsplit(src).path).lstrip("/")
    png = path.read_bytes() if path.is_file() and path.suffix == ".png" else None
    return png, path.name


@pytest.mark.book
@pytest.mark.parametrize("document", layout_pages())
def test_page_figure_and_diagram_text_is_at_least_9_px_as_displayed(open_page, built_book, document):
    """The smallest text of every figure and diagram, in screen pixels, as the page displays it.

    A matplotlib figure's PNG carries its smallest drawn font size and its dpi, stamped by
    ``llmbook.figures`` (a chapter calls ``figures.setup()`` once). Text is then
    ``points * dpi / 72`` pixels of the PNG, and the page shows the PNG scaled by
    ``displayed width / natural width`` (a 15-inch triptych in the 690 px column: about 0.45).
    An unstamped figure fails too: its text size cannot be checked. Mermaid diagrams are SVG in the
    page: each label's computed font size times the scale of the SVG to the screen. A picture
    displayed with another height/width ratio than its own (squashed) fails as well.
    """
    from llmbook.figures import read_font_record

    page, _ = open_page(document)
    cells = page.evaluate(_PAGE_CELLS_JS)
    shown = page.evaluate(
        """async () => {
        const article = document.querySelector('article.bd-article');
        const closed = [...article.querySelectorAll('details:not([open])')];
        closed.forEach(d => d.open = true);
        // Every picture decoded, so that its natural size is known (a failed one reads as 0 px wide).
        await Promise.all([...article.querySelectorAll('.cell_output img')].map(img => img.decode().catch(() => null)));
        const cells = [...article.querySelectorAll('div.cell')];
        const images = [...article.querySelectorAll('.cell_output img')].map(img => ({
            src: img.src, cell: cells.indexOf(img.closest('div.cell')),
            displayed: img.getBoundingClientRect().width, natural: img.naturalWidth,
            displayedHeight: img.getBoundingClientRect().height, naturalHeight: img.naturalHeight}));
        const diagrams = [...article.querySelectorAll('.mermaid svg')].map((svg, index) => {
            let smallest = null;
            for (const el of svg.querySelectorAll('text, foreignObject span, foreignObject div, foreignObject p')) {
                if (!el.textContent.trim() || (el.tagName !== 'text' && el.querySelector('span, div, p'))) continue;
                const anchor = el.tagName === 'text' ? el : el.closest('foreignObject');
                const matrix = anchor.getScreenCTM();
                if (!matrix) continue;
                const px = parseFloat(getComputedStyle(el).fontSize) * Math.hypot(matrix.a, matrix.b);
                if (smallest === null || px < smallest.px) smallest = {px, text: el.textContent.trim().slice(0, 40)};
            }
            return {index, smallest, cell: cells.indexOf(svg.closest('div.cell'))};
        });
        closed.forEach(d => d.open = false);
        return {images, diagrams};
    }"""
    )
    problems = []
    for number, image in enumerate(shown["images"]):
        where = f"figure {number} ({_cell_name(cells, image['cell'])})"
        png, name = _image_bytes(built_book, image["src"])
        record = read_font_record(png) if png is not None else None
        if record is None:
            problems.append(f"{where}: no font record in {name} (call llmbook.figures.setup() before plotting)")
            continue
        points, dpi = record
        if not image["natural"] or not image["displayed"]:
            problems.append(
                f"{where}: the picture is not displayed ({image['displayed']:.0f} of {image['natural']} px)"
            )
            continue
        shape, shown_shape = image["naturalHeight"] / image["natural"], image["displayedHeight"] / image["displayed"]
        if abs(shown_shape / shape - 1) > 0.02:  # a fixed height in the <img> style and a width scaled to the column
            problems.append(
                f"{where}: squashed, height/width {shown_shape:.3f} as displayed, {shape:.3f} in the picture"
            )
        px = points * dpi / 72 * image["displayed"] / image["natural"]
        if px < SMALLEST_TEXT_PX:
            problems.append(
                f"{where}: smallest text {px:.1f} px as displayed ({points:g} pt at {dpi:g} dpi, "
                f"shown at {image['displayed']:.0f} of {image['natural']} px)"
            )
    for diagram in shown["diagrams"]:
        smallest = diagram["smallest"]
        if smallest and smallest["px"] < SMALLEST_TEXT_PX:
            where = f"Mermaid diagram {diagram['index']}" + (
                f" ({_cell_name(cells, diagram['cell'])})" if diagram["cell"] >= 0 else ""
            )
            problems.append(f'{where}: label "{smallest["text"]}" is {smallest["px"]:.1f} px as displayed')
    assert not problems, f"{document}: text smaller than {SMALLEST_TEXT_PX:g} px:\n" + "\n".join(problems)


def chapter_numbers() -> dict[int, str]:
    """{4: "book/04_attention", ...}: the chapters of the table of contents, by their number."""
    numbers = {}
    for file in toc_files():
        match = re.fullmatch(r"book/(\d\d)_\w+", file)
        if match and int(match.group(1)) > 0:
            numbers[int(match.group(1))] = file
    return numbers


@pytest.mark.book
@pytest.mark.parametrize("document", html_pages())
def test_page_links_every_mention_of_an_existing_chapter(open_page, document):
    """ "Chapter 4" in the prose is a link to chapter 4 whenever chapter 4 is in the book.

    Counted: "Chapter N"/"chapter N"/"Chapters N" in the article's text outside links, headings, code,
    outputs, maths and diagrams, for every N of ``_toc.yml``, except a page's mentions of its own number.
    Chapters not yet written are plain text until they land (and then fail here until linked).
    """
    existing = chapter_numbers()
    page, _ = open_page(document)
    own = next((number for number, file in existing.items() if file == document), None)
    mentions = page.evaluate(
        """(skip) => {
        const article = document.querySelector('article.bd-article');
        const found = [];
        const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
            acceptNode: node => node.parentElement.closest(skip + ', a, .cell_output, h1, h2, h3, h4, h5, h6')
                ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
        while (walker.nextNode()) {
            const text = walker.currentNode.nodeValue;
            for (const m of text.matchAll(/\\b[Cc]hapters?\\s+(\\d+)/g)) {
                const context = (walker.currentNode.parentElement.closest('p, li, td, dd, h1, h2, h3, h4, div') || article)
                    .textContent.replace(/\\s+/g, ' ');
                const at = context.indexOf(m[0]);
                found.push({number: parseInt(m[1]), text: m[0],
                            excerpt: context.slice(Math.max(0, at - 40), at + 40)});
            }
        }
        return found;
    }""",
        _PROSE_SKIP,
    )
    unlinked = [
        f'"{item["text"]}" is not a link to {existing[item["number"]]}: …{item["excerpt"].strip()}…'
        for item in mentions
        if item["number"] in existing and item["number"] != own
    ]
    assert not unlinked, f"{document}: mentions of existing chapters that are plain text:\n" + "\n".join(unlinked)


# --- the figure-text record the browser check reads (llmbook.figures) ---------------------------------


def test_figure_record_is_the_smallest_text_drawn_in_the_png():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmbook import figures

    fig, (left, right, hidden) = plt.subplots(1, 3, figsize=(9, 3))
    left.plot([0, 1], [2, 3], label="a line")
    left.legend(fontsize=7.5)
    left.set_title("title", fontsize=14)
    right.text(0.5, 0.5, "never drawn", fontsize=3, visible=False)
    right.text(0.5, 0.2, "   ", fontsize=2)  # blank text is not drawn
    hidden.plot([0, 1])
    hidden.tick_params(labelsize=4)
    hidden.axis("off")  # its 4 pt tick labels are not drawn
    try:
        png, size = figures.png_with_font_record(fig, scale=2)
        assert figures.read_font_record(png) == (7.5, 2 * fig.dpi)
        width = int.from_bytes(png[16:20], "big")
        assert size == {"width": width // 2}
        assert 2 * 6 * fig.dpi <= width <= 2 * 9 * fig.dpi  # the tight box of a 9-inch figure
        hidden.axis("on")
        assert figures.smallest_font(fig) == 4.0
        hidden.axis("off")
        assert figures.read_font_record(figures.png_with_font_record(fig, scale=1)[0]) == (7.5, fig.dpi)
    finally:
        plt.close(fig)
    empty = plt.figure()
    assert figures.png_with_font_record(empty) is None  # IPython shows nothing for an empty figure
    plt.close(empty)


def test_figure_record_reader_tells_unstamped_and_foreign_files():
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmbook import figures

    fig, ax = plt.subplots()
    ax.imshow([[0, 1], [1, 0]])
    ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert figures.read_font_record(buffer.getvalue()) is None  # plain matplotlib PNG: no record
    stamped, _ = figures.png_with_font_record(fig)
    plt.close(fig)
    assert figures.read_font_record(stamped) == (float("inf"), 2 * fig.dpi)  # no text at all
    with pytest.raises(ValueError, match="not a PNG"):
        figures.read_font_record(b"GIF89a...")


def test_figures_setup_makes_ipython_send_stamped_retina_pngs():
    """In an IPython shell with the inline backend, as in the book's kernels: after ``figures.setup()``
    a figure (created after it, when pyplot loads its backend) is sent as a stamped, pixel-doubled PNG."""
    code = """
import base64, json, matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
from llmbook import figures
figures.setup()
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([1, 2], [3, 4], label="a")
ax.legend(fontsize=8)
data, metadata = shell.display_formatter.format(fig)
png = base64.b64decode(data["image/png"])
print(json.dumps({"mimes": sorted(data), "metadata": metadata, "record": figures.read_font_record(png),
                  "png_width": int.from_bytes(png[16:20], "big")}))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "code"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["mimes"] == ["image/png", "text/plain"]  # no second copy as SVG or PDF
    assert shown["record"] == [8.0, 200.0]
    assert shown["metadata"]["image/png"] == {"width": shown["png_width"] // 2}
    assert 400 <= shown["metadata"]["image/png"]["width"] <= 500  # 5 in at 100 dpi, tight box


# --- controls that work in the static page, and a book that needs no CDN (issue 13) ------------------

CONTROL_CHAPTERS = {  # chapter -> panels of llmbook.controls.explore it shows
    "book/01_ngrams": 1,
    "book/02_tokens": 1,
    "book/04_attention": 2,
    "book/06_training": 1,
}

_SHOWN_JS = """panel => {
    const output = panel.querySelector('.llmbook-controls-output');
    const image = output.querySelector('img');
    return {point: panel.getAttribute('data-point'), shown: image ? image.src : output.textContent};
}"""


def _move_every_control(page, document: str) -> list[str]:
    """Move each control of each llmbook.controls panel on the page once; what did not change what is shown."""
    problems = []
    panels = page.locator(".llmbook-controls")
    for number in range(panels.count()):
        panel = panels.nth(number)
        panel.scroll_into_view_if_needed()
        if panel.get_attribute("data-ready") != "1":
            problems.append(f"{document}: controls panel {number} did not start (no data-ready)")
            continue
        controls = panel.locator(".llmbook-control")
        if controls.count() == 0:
            problems.append(f"{document}: controls panel {number} has no control")
        for index in range(controls.count()):
            control = controls.nth(index)
            name = control.get_attribute("data-param")
            before = panel.evaluate(_SHOWN_JS)
            if control.evaluate("el => el.type") == "range":
                at_end = control.evaluate("el => el.value === el.max")
                control.focus()
                control.press("Home" if at_end else "End")
            else:
                options = control.locator("option")
                current = control.evaluate("el => el.selectedIndex")
                control.select_option(index=(current + 1) % options.count())
            after = panel.evaluate(_SHOWN_JS)
            if after["point"] == before["point"]:
                problems.append(f"{document}: panel {number}, moving '{name}' did not change the grid point")
            elif after["shown"] == before["shown"]:
                problems.append(
                    f"{document}: panel {number}, moving '{name}' (point {before['point']} -> {after['point']}) "
                    "did not change what is shown"
                )
    return problems


@pytest.mark.book
@pytest.mark.parametrize("document", sorted(CONTROL_CHAPTERS))
def test_every_control_changes_what_is_shown(open_page, document):
    """Chapters 1, 2, 4 and 6 have static controls (llmbook.controls): each slider and menu switches the output."""
    page, visit = open_page(chapter(document))
    panels = page.locator(".llmbook-controls").count()
    assert panels >= CONTROL_CHAPTERS[document], (
        f"{document}: {panels} controls panels, expected {CONTROL_CHAPTERS[document]}"
    )
    problems = _move_every_control(page, document)
    assert not problems, "\n".join(problems)
    assert not visit.console_errors, visit.console_errors


@pytest.fixture(scope="session")
def open_offline_page(browser, book_url):
    """``open_offline_page(document)`` -> (page, attempted): the page loaded with every request that
    leaves 127.0.0.1 aborted; ``attempted`` lists those requests (the book must make none)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    attempted: dict[str, list[str]] = {}
    current: list[str] = []

    def route(route):
        url = route.request.url
        if url.startswith(book_url):
            return route.continue_()
        attempted.setdefault(current[-1], []).append(url)
        return route.abort("blockedbyclient")

    context.route("**/*", route)
    pages = []

    def open_(document: str):
        current.append(document)
        page = context.new_page()
        pages.append(page)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(f"{book_url}/{document}.html", wait_until="networkidle", timeout=60_000)
        diagrams = page.locator(".mermaid")
        for index in range(diagrams.count()):  # a diagram is laid out once it has been on screen
            diagrams.nth(index).scroll_into_view_if_needed()
        for condition in (
            "() => !document.querySelector('.math') || (window.MathJax && MathJax.startup && MathJax.startup.promise)",
            """() => [...document.querySelectorAll('.mermaid')].every(el =>
                   el.querySelector('svg g.node') || el.hasAttribute('data-mermaid-render-failed'))""",
        ):
            try:
                page.wait_for_function(condition, timeout=30_000)
            except PlaywrightTimeout:
                errors.append(f"not done within 30 s: {condition[:80]}")
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        page.wait_for_load_state("networkidle")
        return page, attempted.get(document, []), errors

    yield open_
    for page in pages:
        page.close()
    context.close()


@pytest.mark.book
@pytest.mark.parametrize("document", html_pages())
def test_page_works_with_every_request_to_the_web_blocked(open_offline_page, document):
    """The book serves its own MathJax, Mermaid and widget manager (_ext/offline_assets.py): with no
    network at all, formulas are typeset, diagrams drawn, attention views and controls work, and the
    page does not even try to reach a CDN."""
    page, attempted, errors = open_offline_page(document)
    assert not attempted, f"{document}: requests that leave the machine (a CDN?):\n" + "\n".join(attempted)
    assert not errors, f"{document}: console errors with the network blocked:\n" + "\n".join(errors)
    state = page.evaluate(
        """() => ({
        math: document.querySelectorAll('.math').length,
        typeset: document.querySelectorAll('mjx-container').length,
        failedMath: document.querySelectorAll('mjx-container merror').length,
        diagrams: document.querySelectorAll('.mermaid').length,
        undrawn: [...document.querySelectorAll('.mermaid')].filter(el => !el.querySelector('svg g.node')).length,
        views: document.querySelectorAll('.llmbook-attention-view').length,
        viewsDrawn: [...document.querySelectorAll('.llmbook-attention-view')]
            .filter(v => v.querySelector('svg.llmbook-attention-lines [data-weight]')).length,
        scripts: [...document.querySelectorAll('script[src]')].map(s => s.src),
    })"""
    )
    if state["math"]:
        assert state["typeset"] >= state["math"] and state["failedMath"] == 0, (
            f"{document}: {state['math']} formulas, {state['typeset']} typeset by MathJax, {state['failedMath']} failed"
        )
    assert state["undrawn"] == 0, f"{document}: {state['undrawn']} of {state['diagrams']} Mermaid diagrams not drawn"
    assert state["viewsDrawn"] == state["views"], (
        f"{document}: {state['views'] - state['viewsDrawn']} of {state['views']} attention views drew nothing"
    )
    remote = [src for src in state["scripts"] if not src.startswith(page.url.split("/book/")[0])]
    assert not remote, f"{document}: scripts from outside the book: {remote}"
    problems = _move_every_control(page, document)
    assert not problems, "\n".join(problems)
    if document == ATTENTION_CHAPTER:
        assert state["views"] >= 1 and state["diagrams"] >= 1 and state["typeset"] >= 10
