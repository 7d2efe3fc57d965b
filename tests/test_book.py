"""The book as a reader gets it: notebooks stored cleanly, the HTML built with no warning, pages that work.

Two kinds of tests:

* Notebook hygiene (fast, run with the unit tests): every chapter starts with the Colab set-up cell,
  and notebooks are stored without outputs.
* ``@pytest.mark.book`` (the third step of ``make test``): build the whole book at the ``smoke`` budget
  with warnings as errors, serve the HTML on 127.0.0.1 and open every page in Debian's Chromium,
  driven by Playwright. The files the published book loads from CDNs (MathJax, Mermaid, require.js,
  the Jupyter widget manager) are served from the npm packages pinned in ``tests/browser/``; any
  other request that leaves the machine is blocked and fails the test.

The built book, its build log and a screenshot of chapter 4 are left in ``_build/test-book``
(``LLMBOOK_TEST_BOOK_DIR``). ``LLMBOOK_TEST_REUSE_BUILD=1`` reuses the last successful build there
(for work on the browser tests only).
"""

from __future__ import annotations

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
REPOSITORY = "llmbook/llm-theory-to-practice"
ATTENTION_CHAPTER = os.environ.get("LLMBOOK_TEST_ATTENTION_CHAPTER", "book/04_attention")
# Another table of contents (to test this test on a scratch chapter); default: the book's own.
TOC = Path(os.environ.get("LLMBOOK_TEST_TOC") or ROOT / "_toc.yml")

COLAB_CELL = """\
# Colab only: install the book's library and turn on interactive widgets. Does nothing elsewhere.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llmbook[book] @ git+https://github.com/llmbook/llm-theory-to-practice"], check=True)
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
    assert len(files) == len(set(files)), f"listed twice in _toc.yml: {sorted({f for f in files if files.count(f) > 1})}"
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
        pytest.fail("the browser test needs npm (Node.js) to install its local copies of the CDN files: apt-get install npm")
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
            lambda message: visit.console_errors.append(f"{message.text} ({message.location.get('url', '')})")
            if message.type == "error"
            else None,
        )
        page.on("pageerror", lambda error: visit.console_errors.append(f"uncaught: {error}"))
        page.on(
            "requestfailed",
            lambda request: None
            if (request.failure or "").endswith("ERR_BLOCKED_BY_CLIENT")
            else visit.failed_requests.append(f"{request.url}: {request.failure}"),
        )
        page.on(
            "response",
            lambda response: visit.failed_requests.append(f"{response.url}: HTTP {response.status}")
            if response.status >= 400
            else None,
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
        colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/{document}.ipynb"
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
    expected = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/{ATTENTION_CHAPTER}.ipynb"
    assert links.first.get_attribute("href") == expected


@pytest.mark.book
def test_attention_chapter_screenshot(open_page):
    page, _ = open_page(chapter(ATTENTION_CHAPTER))
    target = book_dir() / "chapter4.png"
    page.screenshot(path=str(target), full_page=True)
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
    import numpy as np
    import torch

    import myst_nb

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
