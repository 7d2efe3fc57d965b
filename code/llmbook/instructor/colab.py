"""The Colab edition of the book (every chapter; Appendix C: Instructor guide).

``make colab`` (``python -m llmbook.instructor colab-edition``) turns the chapter notebooks that the book
build executed (``_build/jupyter_execute/book/NN_name.ipynb`` and its ``.glue.json``) into notebooks that
Colab shows as the HTML book shows them:

* every ``{glue:text}`` (and ``{glue}``) role replaced by its value from that build;
* MyST-only syntax turned into Markdown that Colab renders: exercises as headings ("Exercise 4.2: Title"),
  admonitions as block quotes, Mermaid diagrams as PNG attachments rendered at build time (mermaid.js in
  Chromium), citations as author–year links to the HTML book's bibliography, ``{doc}``/``{ref}`` as links
  to the HTML book, ``(label)=`` targets as HTML anchors;
* the outputs of the executed build kept, so students see what to expect;
* solutions replaced by the student edition's stubs (:func:`~llmbook.instructor.notebooks.strip_solution`;
  the check cells stay, read-only, without the output the reference solution gave them);
* a first cell that installs ``llmbook`` at the commit the edition was built from.

The repository address is one setting, ``repository.url`` in ``_config.yml``; everything here derives from it
(:func:`repository_url`, :func:`pages_url`).
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import re
import subprocess
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

from .notebooks import _CHECK_CALL, _SOLUTION_END, _SOLUTION_START, BEGIN_SOLUTION, NotebookError, strip_solution

__all__ = [
    "ColabBook",
    "ColabError",
    "colab_edition",
    "install_cell_source",
    "myst_leftovers",
    "pages_url",
    "repository_slug",
    "repository_url",
    "write_colab_edition",
]

ROOT = Path(__file__).resolve().parents[3]
# The environment variable a test sets to a locally built wheel; it stands in for the repository install.
WHEEL_VARIABLE = "LLMBOOK_COLAB_WHEEL"


class ColabError(ValueError):
    """The book holds something the Colab edition cannot convert; the message says where and what to do."""


# --- the one setting: the repository address ---------------------------------------------------------------


def repository_url(root: str | Path = ROOT) -> str:
    """``repository.url`` of ``_config.yml``: the one place the repository's address is written."""
    import yaml

    config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8"))
    url = (config.get("repository") or {}).get("url", "")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url or ""):
        raise ColabError(
            f"_config.yml: repository.url is {url!r}; set it to the GitHub address https://github.com/OWNER/REPO"
        )
    return url


def repository_slug(root: str | Path = ROOT) -> str:
    """``OWNER/REPO`` of :func:`repository_url`."""
    return repository_url(root).removeprefix("https://github.com/")


def pages_url(root: str | Path = ROOT) -> str:
    """Where GitHub Pages publishes the HTML book: ``https://OWNER.github.io/REPO/``."""
    owner, repo = repository_slug(root).split("/")
    return f"https://{owner.lower()}.github.io/{repo}/"


def _git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def book_version(root: str | Path = ROOT) -> str:
    """The git tag at HEAD, else the commit id: what the install cell pins."""
    root = Path(root)
    return _git(root, "describe", "--tags", "--exact-match", "HEAD") or _git(root, "rev-parse", "HEAD") or "main"


def install_cell_source(url: str, version: str, budget: str) -> str:
    """The edition's first cell: install ``llmbook`` at ``version`` (or the wheel named by LLMBOOK_COLAB_WHEEL)."""
    return f'''\
# Colab edition, built from {url} at {version}
# (outputs from the `{budget}` budget). This cell installs the book's library at
# that version (Colab keeps its own PyTorch) and turns on interactive widgets.
import os
import subprocess
import sys

package = "llmbook[book] @ git+{url}@{version}"
wheel = os.environ.get("{WHEEL_VARIABLE}")  # a locally built wheel (tests)
if wheel:
    package = wheel + "[book]"
if wheel or "google.colab" in sys.modules:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", package],
        check=True,
    )
if "google.colab" in sys.modules:
    from google.colab import output

    output.enable_custom_widget_manager()'''


# --- the book: table of contents, labels, bibliography -----------------------------------------------------


def toc_documents(toc: str | Path) -> list[tuple[str, int | None]]:
    """Every document of ``_toc.yml`` in reading order, with its chapter number (None where unnumbered)."""
    import yaml

    data = yaml.safe_load(Path(toc).read_text(encoding="utf-8"))
    documents: list[tuple[str, int | None]] = [(data["root"], None)]
    number = 0
    for part in data.get("parts") or [{"chapters": data.get("chapters", [])}]:
        numbered = bool(part.get("numbered"))
        for entry in part.get("chapters") or []:
            if "file" in entry:
                if numbered:
                    number += 1
                documents.append((re.sub(r"\.(md|ipynb)$", "", entry["file"]), number if numbered else None))
    return documents


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<argument>.*)$")
_OPTION = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_ANCHOR = re.compile(r"^\((?P<label>[\w.:-]+)\)=[ \t]*$")
_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<title>.+?)[ \t]*$")


def _markdown_sources(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text(encoding="utf-8"))
        return [
            "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for cell in notebook["cells"]
            if cell["cell_type"] == "markdown"
        ]
    return [path.read_text(encoding="utf-8")]


def _plain(markdown: str) -> str:
    """Heading text without Markdown emphasis or roles (for a link's text)."""
    text = re.sub(r"\{[\w:-]+\}`([^`<]*?)(?:\s*<[^`]*>)?`", r"\1", markdown)
    return re.sub(r"[*_`]", "", text).strip()


@dataclass
class ColabBook:
    """What the edition needs to know about the whole book: pages, chapter numbers, labels, citations."""

    root: Path
    site: str  # the HTML book's address, ending in "/"
    chapters: dict[str, int | None] = field(default_factory=dict)  # "book/04_attention" -> 4
    titles: dict[str, str] = field(default_factory=dict)  # document -> its first heading
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (document, link text)
    citations: dict[str, str] = field(default_factory=dict)  # bibtex key -> "Vaswani et al., 2017"
    citation_ids: dict[str, str] = field(default_factory=dict)  # "Vaswani et al., 2017" -> "id34" in the HTML

    @classmethod
    def read(cls, root: str | Path = ROOT, toc: str | Path | None = None, html: str | Path | None = None):
        root = Path(root)
        book = cls(root=root, site=pages_url(root))
        for document, number in toc_documents(toc or root / "_toc.yml"):
            book.chapters[document] = number
            path = next(
                (root / f"{document}{s}" for s in (".ipynb", ".md") if (root / f"{document}{s}").is_file()), None
            )
            if path is None:
                continue
            exercise = 0
            for source in _markdown_sources(path):
                lines = source.splitlines()
                for index, line in enumerate(lines):
                    heading = _HEADING.match(line)
                    if heading and document not in book.titles:
                        book.titles[document] = _plain(heading.group("title"))
                    anchor = _ANCHOR.match(line)
                    if anchor:
                        following = next((_HEADING.match(x) for x in lines[index + 1 :] if x.strip()), None)
                        text = _plain(following.group("title")) if following else anchor.group("label")
                        book.labels[anchor.group("label")] = (document, text)
                    fence = _FENCE.match(line)
                    if fence and fence.group("name") in ("exercise", "exercise-start"):
                        options = _options(lines[index + 1 :])
                        if "nonumber" not in options:
                            exercise += 1
                        if "label" in options:
                            book.labels[options["label"]] = (document, f"Exercise {number}.{exercise}")
        book._read_bibliography(html)
        return book

    def _read_bibliography(self, html: str | Path | None) -> None:
        bib = self.root / "book" / "references.bib"
        if not bib.is_file():
            return
        from pybtex.database import parse_file

        spec = importlib.util.spec_from_file_location(
            "_bibliography_author_year", self.root / "_ext" / "bibliography_author_year.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        entries = parse_file(str(bib)).entries
        labels = {key: module.author_year_label(entry) for key, entry in entries.items()}
        # Two works with one label get a, b in the bibliography's order (author, year, title), as the HTML does.
        by_label: dict[str, list[str]] = {}
        for key, label in labels.items():
            by_label.setdefault(label, []).append(key)
        for label, keys in by_label.items():
            if len(keys) > 1:
                keys.sort(key=lambda k: str(entries[k].fields.get("title", "")).lower())
                for letter, key in zip("abcdefghijklmnopqrstuvwxyz", keys):
                    labels[key] = label + letter
        self.citations = labels
        page = Path(html) / "book" / "bibliography.html" if html else None
        if page and page.is_file():
            text = page.read_text(encoding="utf-8")
            for match in re.finditer(
                r'<div class="citation" id="([^"]+)"[^>]*>\s*<span class="label"><span class="fn-bracket">\[</span>(.*?)<span',
                text,
            ):
                self.citation_ids[unescape(match.group(2))] = match.group(1)

    def page(self, document: str) -> str:
        return f"{self.site}{document}.html"

    def resolve_doc(self, target: str, current: str) -> str:
        """``04_attention`` (relative to the current page) or ``/book/04_attention`` -> ``book/04_attention``."""
        target = re.sub(r"\.(md|ipynb)$", "", target)
        if target.startswith("/"):
            return target.lstrip("/")
        folder = current.rsplit("/", 1)[0] if "/" in current else ""
        return f"{folder}/{target}" if folder else target


def _options(lines: list[str]) -> dict[str, str]:
    options = {}
    for line in lines:
        match = _OPTION.match(line)
        if not match:
            break
        options[match.group("key")] = match.group("value").strip()
    return options


# --- Markdown: roles ----------------------------------------------------------------------------------------

_ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<content>[^`]*)`")
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


def _format_glue(glue: dict[str, dict], key_spec: str, where: str) -> str:
    from myst_nb.core.variables import format_plain_text

    key, _, spec = key_spec.partition(":")
    if key not in glue:
        raise ColabError(f"{where}: glue value {key!r} is not in the executed build; was the notebook executed?")
    data = glue[key].get("data", {})
    if "text/plain" not in data:
        raise ColabError(f"{where}: glue value {key!r} has no text/plain data to paste")
    text = data["text/plain"]
    text = "".join(text) if isinstance(text, list) else text
    return format_plain_text(text, spec or "s")


def convert_roles(text: str, book: ColabBook, document: str, glue: dict[str, dict], where: str) -> str:
    """Every MyST role of one Markdown text replaced by what Colab renders."""

    def replace(match: re.Match) -> str:
        name, content = match.group("name"), match.group("content")
        explicit = _EXPLICIT.match(content)
        if name in ("glue:text", "glue", "glue:", "glue:any", "glue:md"):
            return _format_glue(glue, content, where)
        if name.startswith("cite"):
            links = []
            for key in (k.strip() for k in content.split(",")):
                if key not in book.citations:
                    raise ColabError(f"{where}: citation {key!r} is not in book/references.bib")
                label = book.citations[key]
                anchor = book.citation_ids.get(label)
                url = book.page("book/bibliography") + (f"#{anchor}" if anchor else "")
                links.append(f"[{label}]({url})")
            joined = "; ".join(links)
            return f"({joined})" if name in ("cite:p", "cite:ps") else joined
        if name == "doc":
            text_, target = (explicit.group("text"), explicit.group("target")) if explicit else (None, content)
            resolved = book.resolve_doc(target.strip(), document)
            if resolved not in book.chapters:
                raise ColabError(f"{where}: {{doc}} target {target!r} is not a page of the table of contents")
            return f"[{text_ or book.titles.get(resolved, resolved)}]({book.page(resolved)})"
        if name in ("ref", "numref"):
            text_, label = (explicit.group("text"), explicit.group("target")) if explicit else (None, content)
            label = label.strip()
            if label not in book.labels:
                raise ColabError(
                    f"{where}: {{{name}}} target {label!r} is neither a (label)= target nor an exercise label"
                )
            target_document, default = book.labels[label]
            return f"[{text_ or default}]({book.page(target_document)}#{label})"
        if name in ("math", "eq"):
            return f"${content}$"
        if name in ("term", "abbr", "sup", "sub", "kbd", "code", "samp", "file", "guilabel"):
            return (
                f"`{content}`"
                if name in ("code", "samp", "file", "kbd")
                else (explicit.group("text") if explicit else content)
            )
        raise ColabError(
            f"{where}: the role {{{name}}} has no Colab conversion; add one in llmbook/instructor/colab.py"
        )

    return _ROLE.sub(replace, text)


# --- Markdown: directives -----------------------------------------------------------------------------------

ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "warning": "Warning",
    "caution": "Caution",
    "attention": "Attention",
    "danger": "Danger",
    "error": "Error",
    "seealso": "See also",
}


@dataclass
class _Context:
    book: ColabBook
    document: str
    glue: dict[str, dict]
    where: str
    diagrams: list[str]  # Mermaid sources, in order; the caller renders them
    exercise: int = 0


def _closing(fence: str, line: str) -> bool:
    stripped = line.strip()
    return stripped[:1] == fence[0] and set(stripped) == {fence[0]} and len(stripped) >= len(fence)


def convert_markdown(text: str, context: _Context) -> str:
    """One Markdown cell of the book as Markdown that Colab renders (roles and directives converted)."""
    lines, out, index = text.splitlines(), [], 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        anchor = _ANCHOR.match(line)
        if anchor:
            out.append(f'<a id="{anchor.group("label")}"></a>')
            index += 1
            continue
        if not fence:
            out.append(line)
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not _closing(fence.group("fence"), lines[end]):
            end += 1
        if end == len(lines):
            raise ColabError(
                f"{context.where}: the directive {{{fence.group('name')}}} has no closing {fence.group('fence')}"
            )
        body = lines[index + 1 : end]
        options = _options(body)
        body = body[len(options) :]
        while body and not body[0].strip():
            body = body[1:]
        out += _directive(fence.group("name"), fence.group("argument").strip(), options, body, context)
        index = end + 1
    return convert_roles("\n".join(out), context.book, context.document, context.glue, context.where).strip()


def _directive(name: str, argument: str, options: dict, body: list[str], context: _Context) -> list[str]:
    inner = convert_markdown("\n".join(body), context) if name != "mermaid" else ""
    if name in ("exercise", "exercise-start"):
        number = context.book.chapters.get(context.document)
        if "nonumber" in options:
            heading = f"#### Exercise: {argument}" if argument else "#### Exercise"
        else:
            context.exercise += 1
            prefix = f"Exercise {number}.{context.exercise}" if number else f"Exercise {context.exercise}"
            heading = f"#### {prefix}: {argument}" if argument else f"#### {prefix}"
        anchor = [f'<a id="{options["label"]}"></a>'] if "label" in options else []
        return [
            *anchor,
            convert_roles(heading, context.book, context.document, context.glue, context.where),
            "",
            inner,
            "",
        ]
    if name in ("solution-start", "solution-end", "exercise-end"):
        return []
    if name in ADMONITIONS or name in ("admonition", "dropdown"):
        title = argument or ADMONITIONS.get(name, "Note")
        title = convert_roles(title, context.book, context.document, context.glue, context.where)
        quoted = [f"> **{title}**", ">"] + [f"> {line}" if line.strip() else ">" for line in inner.splitlines()]
        return [*quoted, ""]
    if name == "mermaid":
        context.diagrams.append("\n".join(body))
        number = len(context.diagrams)
        return [f"![Diagram {number}](attachment:diagram-{number}.png)", ""]
    if name == "math":
        return ["$$", *body, "$$", ""]
    if name in ("code-block", "code"):
        return [f"```{argument}", *body, "```", ""]
    if name == "epigraph":
        return [f"> {line}" if line.strip() else ">" for line in inner.splitlines()] + [""]
    raise ColabError(
        f"{context.where}: the directive {{{name}}} has no Colab conversion; add one in llmbook/instructor/colab.py"
    )


# --- Mermaid diagrams as PNG, rendered by mermaid.js in Chromium ----------------------------------------------

MERMAID_CANDIDATES = (
    "tests/browser/node_modules/mermaid/dist/mermaid.min.js",
    "_build/html/_static/mermaid/mermaid.min.js",
)


def find_mermaid_js(root: Path = ROOT) -> Path:
    """The local mermaid.min.js (npm package of tests/browser, or the book's own copy)."""
    for candidate in MERMAID_CANDIDATES:
        if (root / candidate).is_file():
            return root / candidate
    found = (
        sorted((root / "_build" / "html" / "_static").rglob("mermaid*.min.js")) if (root / "_build").is_dir() else []
    )
    if found:
        return found[0]
    raise ColabError(
        "no local mermaid.min.js to render the diagrams: run `npm ci` in tests/browser "
        f"(looked for {', '.join(MERMAID_CANDIDATES)})"
    )


class MermaidRenderer:
    """PNG images of Mermaid diagrams, drawn by mermaid.js in one headless Chromium (no network).

    Use as a context manager; the browser starts at the first diagram and serves every notebook. Every
    Playwright call runs on one worker thread of its own: Playwright's sync API refuses a thread with a
    running asyncio loop (a Jupyter kernel, or a pytest session that already drives a browser).
    """

    def __init__(self, mermaid_js: Path | None = None, chromium: str = "/usr/bin/chromium", root: Path = ROOT):
        from concurrent.futures import ThreadPoolExecutor

        self.mermaid_js, self.chromium, self.root = mermaid_js, chromium, root
        self._playwright = self._browser = self._page = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mermaid")
        self.count = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._thread.submit(self._close).result()
        self._thread.shutdown()

    def _close(self):
        if self._browser is not None:
            self._browser.close()
            self._playwright.stop()
            self._browser = self._page = None

    def _start(self):
        from playwright.sync_api import sync_playwright

        mermaid_js = self.mermaid_js or find_mermaid_js(self.root)
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=self.chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = self._browser.new_page(viewport={"width": 900, "height": 600}, device_scale_factor=2)
        page.route("**/*", lambda route: route.abort())  # nothing leaves the machine
        page.set_content(
            "<!doctype html><html><body style='margin:0;background:white'><div id='out'></div></body></html>"
        )
        page.add_script_tag(content=Path(mermaid_js).read_text(encoding="utf-8"))
        page.evaluate("mermaid.initialize({startOnLoad: false, theme: 'default'})")
        self._page = page

    def __call__(self, sources: list[str]) -> list[bytes]:
        return self._thread.submit(self._render, sources).result()

    def _render(self, sources: list[str]) -> list[bytes]:
        images = []
        for source in sources:
            if self._page is None:
                self._start()
            self.count += 1
            svg = self._page.evaluate(
                "async ([id, text]) => (await mermaid.render(id, text)).svg", [f"diagram{self.count}", source]
            )
            self._page.evaluate(
                "svg => { const out = document.getElementById('out');"
                " out.innerHTML = svg; out.style.display = 'inline-block'; out.style.padding = '8px'; }",
                svg,
            )
            images.append(self._page.locator("#out").screenshot())
        return images


# --- the edition ---------------------------------------------------------------------------------------------


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _glue_outputs(notebook: dict) -> dict[str, dict]:
    """Glue values still in a notebook's outputs (a notebook executed outside the book build), removed from it."""
    glue = {}
    for cell in notebook["cells"]:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if not scrapbook:
                kept.append(output)
                continue
            prefix = scrapbook.get("mime_prefix", "")
            glue[scrapbook["name"]] = {"data": {k[len(prefix) :]: v for k, v in output.get("data", {}).items()}}
            if not prefix:
                kept.append(output)
        cell["outputs"] = kept
    return glue


def myst_leftovers(markdown: str) -> list[str]:
    """MyST-only syntax left in a Markdown text (roles, directives, :label: lines, (target)= anchors, glue)."""
    found = []
    for pattern, what in (
        (r"\{[\w:-]+\}`", "a role"),
        (r"(?m)^[ \t>]*(?:`{3,}|:{3,})\{[\w:-]+\}", "a directive"),
        (r"(?m)^[ \t>]*:[\w-]+:[ \t]", "an option line"),
        (r"(?m)^\([\w.:-]+\)=[ \t]*$", "a (target)= anchor"),
        (r"glue:", "glue"),
        (r"\{\{.*?\}\}", "a substitution"),
    ):
        for match in re.finditer(pattern, markdown):
            start = max(0, match.start() - 30)
            found.append(f"{what}: ...{markdown[start : match.end() + 30]!r}...")
    return found


def colab_edition(
    executed: dict,
    glue: dict[str, dict],
    book: ColabBook,
    document: str,
    install_source: str,
    render=None,
) -> dict:
    """The Colab edition of one executed chapter notebook (see the module docstring)."""
    notebook = copy.deepcopy(executed)
    glue = {**_glue_outputs(notebook), **glue}
    where = f"{document}.ipynb"
    cells, diagrams = [], []
    context = _Context(book, document, glue, where, diagrams)
    for index, cell in enumerate(notebook["cells"]):
        source, kind = _source(cell), cell.get("cell_type")
        tags = cell.get("metadata", {}).get("tags", [])
        if index == 0:
            if kind != "code" or "remove-cell" not in tags:
                raise ColabError(f"{where}: the first cell must be the Colab set-up cell (CONTRIBUTING.md)")
            cell.update(source=install_source, outputs=[], execution_count=None, metadata={})
            cells.append(cell)
            continue
        if kind == "markdown":
            if _SOLUTION_START.search(source) or _SOLUTION_END.search(source):
                source = _SOLUTION_END.sub("", _SOLUTION_START.sub("", source)).strip()
            first = len(diagrams)
            source = convert_markdown(source, context)
            if not source:
                continue
            attachments = {f"diagram-{n}.png": None for n in range(first + 1, len(diagrams) + 1)}
            if attachments:
                cell["attachments"] = attachments  # filled once the diagrams are rendered
            cell["source"] = source
        elif kind == "code":
            if BEGIN_SOLUTION in source:
                cell["source"] = strip_solution(source, f"{where}, cell {index}")
                cell["outputs"], cell["execution_count"] = [], None
            if _CHECK_CALL.search(source):
                # The check stays, read-only; its output (the reference solution's "correct") goes.
                cell.setdefault("metadata", {}).update({"editable": False, "deletable": False})
                cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    if diagrams:
        if render is None:
            with MermaidRenderer(root=book.root) as renderer:
                images = renderer(diagrams)
        else:
            images = render(diagrams)
        for cell in cells:
            for name in list(cell.get("attachments", {})):
                number = int(re.search(r"(\d+)", name).group(1))
                cell["attachments"][name] = {"image/png": base64.b64encode(images[number - 1]).decode("ascii")}
    notebook["cells"] = cells
    metadata = notebook.setdefault("metadata", {})
    metadata.pop("jupytext", None)
    metadata["colab"] = {"provenance": [], "toc_visible": True}
    return notebook


def write_colab_edition(
    executed_dir: str | Path,
    out: str | Path,
    root: str | Path = ROOT,
    toc: str | Path | None = None,
    html: str | Path | None = None,
    budget: str = "cpu",
    version: str | None = None,
) -> list[Path]:
    """Write the Colab edition of every chapter notebook of the table of contents into ``out``.

    ``executed_dir`` holds the executed notebooks (``book/NN_name.ipynb``, with ``.glue.json`` beside them as
    the book build leaves them in ``_build/jupyter_execute``). Returns the written paths.
    """
    root, executed_dir, out = Path(root), Path(executed_dir), Path(out)
    book = ColabBook.read(root, toc, html)
    url, version = repository_url(root), version or book_version(root)
    install = install_cell_source(url, version, budget)
    written = []
    with MermaidRenderer(root=root) as render:
        for document in book.chapters:
            written += _write_one(root, executed_dir, out, book, document, install, render)
    if not written:
        raise ColabError(f"no chapter notebooks in the table of contents of {root}")
    (out / "README.md").write_text(
        f"# Colab edition\n\nGenerated by `make colab` from {url} at {version} (outputs from the `{budget}` "
        f"budget); do not edit. Read the book at {pages_url(root)}; open a chapter in Colab from its page.\n",
        encoding="utf-8",
    )
    return written


def _write_one(root, executed_dir, out, book, document, install, render) -> list[Path]:
    if not (root / f"{document}.ipynb").is_file():
        return []  # a Markdown page
    path = executed_dir / f"{document}.ipynb"
    if not path.is_file():
        raise ColabError(f"{path} is missing: build the book first (make book), or pass the folder that holds it")
    executed = json.loads(path.read_text(encoding="utf-8"))
    glue_path = path.with_suffix(".glue.json")
    glue = json.loads(glue_path.read_text(encoding="utf-8")) if glue_path.is_file() else {}
    try:
        edition = colab_edition(executed, glue, book, document, install, render)
    except NotebookError as error:
        raise ColabError(str(error)) from error
    target = out / f"{document}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(edition, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [target]
