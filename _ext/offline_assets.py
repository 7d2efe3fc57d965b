"""Sphinx extension: the book serves MathJax, Mermaid, require.js and the widget manager itself (no CDN).

_config.yml names each browser library by its jsDelivr URL with an exact version
(``mathjax_path``, ``mermaid_version``, the keys of ``nb_ipywidgets_js``). Where a CDN is slow or
blocked (some networks in China, a classroom without internet) those URLs would leave formulas,
diagrams and widgets blank, so this extension

1. installs the npm packages pinned in ``_vendor/package.json`` / ``package-lock.json`` into
   ``_vendor/node_modules`` (``npm ci``, once per lock file; a stamp file records which);
2. points the configuration at copies under ``_static/vendor/<package>@<version>/`` (the same
   layout as jsDelivr's ``/npm/<package>@<version>/``) after checking that the installed version is
   exactly the one the URL names;
3. copies the files those scripts load (the entry file and what it fetches at run time: MathJax's
   fonts and extensions, Mermaid's chunks, the widget manager's fonts; no source maps) into the
   HTML output when the build finishes.

Without npm (or when ``npm ci`` fails) the book keeps the CDN URLs and the build says so, loudly
but without a Sphinx warning, so that a reader's ``make book`` (warnings are errors) still
builds a book that works online. ``LLMBOOK_OFFLINE_ASSETS=required`` turns that into an error
(the browser test, which blocks every request that leaves the machine, fails either way).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.console import bold, red

logger = logging.getLogger(__name__)

CDN = "https://cdn.jsdelivr.net/npm/"
STATIC_FOLDER = "vendor"  # under _static
STAMP = ".llmbook-lock-sha256"

# What each package's entry script fetches at run time, relative to the package folder (besides the entry).
RUNTIME_FILES = {
    "mathjax": ["es5/*/**/*"],  # every component folder (fonts, TeX extensions, menu, a11y); not the other bundles
    "mermaid": ["dist/chunks/mermaid.esm.min/*"],
    "@jupyter-widgets/html-manager": ["dist/*"],
    "requirejs": [],
}
NEVER_COPIED = (".map", ".d.ts", ".ts", "/embed.js", "/libembed-amd.js")  # the widget manager's non-AMD builds
# Copied only when a page loads them (the widget manager is added to pages with saved widgets only).
ON_DEMAND = ("@jupyter-widgets/html-manager", "requirejs")


def parse_cdn_url(url: str) -> tuple[str, str, str] | None:
    """``https://cdn.jsdelivr.net/npm/@scope/name@1.2.3/dist/x.js`` -> ("@scope/name", "1.2.3", "dist/x.js")."""
    if not url.startswith(CDN):
        return None
    rest = urlsplit(url).path[len(urlsplit(CDN).path) :]
    parts = rest.split("/")
    count = 2 if parts[0].startswith("@") else 1
    spec, file = "/".join(parts[:count]), "/".join(parts[count:])
    name, at, version = spec.rpartition("@")
    if not at or not name or not version or not file:
        return None
    return name, version, file


class Vendor:
    """The npm packages of ``_vendor/``: installed, version-checked, and the files to copy."""

    def __init__(self, root: Path):
        self.root = root
        self.modules = root / "node_modules"
        self.used: dict[str, tuple[str, str]] = {}  # package -> (version, entry file)
        self.loaded: set[str] = set()  # the on-demand packages some page loads

    def install(self) -> str:
        """Run ``npm ci`` when the lock file changed; returns "" or why the packages are not available."""
        lock = self.root / "package-lock.json"
        if not lock.is_file():
            return f"{lock} is missing"
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
        stamp = self.modules / STAMP
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return ""
        npm = shutil.which("npm")
        if npm is None:
            return "npm (Node.js) is not installed: apt-get install npm, or see https://nodejs.org"
        logger.info(bold("offline assets: ") + f"npm ci in {self.root} (once per package-lock.json)")
        result = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return f"npm ci in {self.root} failed: {(result.stderr or result.stdout).strip()[-600:]}"
        stamp.write_text(digest)
        return ""

    def local(self, url: str, setting: str) -> str:
        """The _static path of the vendored copy of a jsDelivr URL (checked against the installed version)."""
        parsed = parse_cdn_url(url)
        if parsed is None:
            raise ExtensionError(
                f"offline assets: {setting} = {url!r} is not a jsDelivr npm URL with an exact version "
                f"({CDN}<package>@<version>/<file>); the book cannot serve it itself"
            )
        name, version, file = parsed
        if name not in RUNTIME_FILES:
            raise ExtensionError(
                f"offline assets: {setting} names the npm package {name}, which _ext/offline_assets.py does not "
                "know: add it to _vendor/package.json and to RUNTIME_FILES (the files it loads at run time)"
            )
        manifest = self.modules / name / "package.json"
        installed = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
        if installed != version:
            raise ExtensionError(
                f"offline assets: {setting} asks for {name}@{version} but _vendor/package.json pins "
                f"{installed or 'nothing'}: change one so they agree (then npm install --package-lock-only in _vendor)"
            )
        if not (self.modules / name / file).is_file():
            raise ExtensionError(f"offline assets: {name}@{version} has no file {file} ({setting} = {url!r})")
        self.used[name] = (version, file)
        return f"{STATIC_FOLDER}/{name}@{version}/{file}"

    def files(self, name: str) -> list[Path]:
        package = self.modules / name
        version, entry = self.used[name]
        found = {package / entry}
        for pattern in RUNTIME_FILES[name]:
            found.update(path for path in package.glob(pattern) if path.is_file())
        found.update(path for path in package.iterdir() if path.is_file() and path.name.upper().startswith("LICENSE"))
        return sorted(path for path in found if not path.as_posix().endswith(NEVER_COPIED))

    def copy(self, static: Path) -> int:
        copied = 0
        for name, (version, _) in self.used.items():
            if name in ON_DEMAND and name not in self.loaded:
                continue
            for source in self.files(name):
                target = static / STATIC_FOLDER / f"{name}@{version}" / source.relative_to(self.modules / name)
                if target.is_file() and target.stat().st_size == source.stat().st_size:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                copied += 1
        return copied


def _use_local_copies(app, config) -> None:
    vendor = Vendor(Path(app.srcdir) / "_vendor")
    app.offline_vendor = None
    why_not = vendor.install()
    if why_not:
        message = (
            f"offline assets: {why_not}. The book will load MathJax, Mermaid, require.js and the widget "
            "manager from cdn.jsdelivr.net: formulas, diagrams and widgets need an internet connection."
        )
        if os.environ.get("LLMBOOK_OFFLINE_ASSETS") == "required":
            raise ExtensionError(message)
        logger.info(red(bold(message)))
        return
    config.mathjax_path = vendor.local(config.mathjax_path, "mathjax_path")
    mermaid = f"{CDN}mermaid@{config.mermaid_version}/dist/mermaid.esm.min.mjs"
    config.mermaid_use_local = vendor.local(mermaid, "mermaid_version")
    widgets = {}
    for url, attributes in (getattr(config, "nb_ipywidgets_js", None) or {}).items():
        attributes = dict(attributes or {})
        if "data-jupyter-widgets-cdn" in attributes:  # set per page (relative to it) in _widget_cdn
            attributes["data-jupyter-widgets-cdn"] = STATIC_FOLDER + "/"
        widgets[vendor.local(url, "nb_ipywidgets_js")] = attributes
    config.nb_ipywidgets_js = widgets
    app.offline_vendor = vendor


def _widget_cdn(app, pagename, templatename, context, doctree) -> None:
    """The widget manager loads third-party widget modules from ``data-jupyter-widgets-cdn``: the vendored
    folder, as a URL relative to this page."""
    if getattr(app, "offline_vendor", None) is None or not context.get("script_files"):
        return
    from sphinx.builders.html._assets import _JavaScript

    folder = context["pathto"](f"_static/{STATIC_FOLDER}/", resource=True)
    scripts = context["script_files"]
    vendor = app.offline_vendor
    for index, script in enumerate(scripts):
        filename = str(getattr(script, "filename", "") or "")
        vendor.loaded.update(name for name in ON_DEMAND if f"{STATIC_FOLDER}/{name}@" in filename)
        attributes = getattr(script, "attributes", None) or {}
        if attributes.get("data-jupyter-widgets-cdn") == STATIC_FOLDER + "/":
            changed = {key: value for key, value in attributes.items() if key != "priority"}
            changed["data-jupyter-widgets-cdn"] = folder if folder.endswith("/") else folder + "/"
            scripts[index] = _JavaScript(str(script.filename), priority=script.priority, **changed)


def _copy(app, exception) -> None:
    vendor = getattr(app, "offline_vendor", None)
    if exception is not None or vendor is None or app.builder.format != "html":
        return
    copied = vendor.copy(Path(app.outdir) / "_static")
    packages = ", ".join(
        f"{name}@{version}"
        for name, (version, _) in sorted(vendor.used.items())
        if name not in ON_DEMAND or name in vendor.loaded
    )
    logger.info(bold("offline assets: ") + f"{packages} served from _static/{STATIC_FOLDER} ({copied} files copied)")


def setup(app) -> dict[str, Any]:
    # After the other extensions registered their settings and _config.yml's values are in.
    app.connect("config-inited", _use_local_copies, priority=900)
    app.connect("html-page-context", _widget_cdn, priority=800)
    app.connect("build-finished", _copy)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
