"""_ext/offline_assets.py: the book's browser libraries served from pinned npm packages instead of a CDN."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from sphinx.errors import ExtensionError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import offline_assets  # noqa: E402 - the extension lives in _ext/, outside the package

MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-mml-chtml.js"


def fake_vendor(root: Path, versions: dict[str, str], stamp: bool = True) -> Path:
    """A _vendor folder with a lock file and installed packages holding a few files each."""
    vendor = root / "_vendor"
    modules = vendor / "node_modules"
    files = {
        "mathjax": ["es5/tex-mml-chtml.js", "es5/tex-svg.js", "es5/output/chtml/fonts/woff-v2/a.woff", "es5/x.js.map"],
        "mermaid": ["dist/mermaid.esm.min.mjs", "dist/chunks/mermaid.esm.min/c.mjs", "dist/mermaid.js"],
        "requirejs": ["require.js"],
        "@jupyter-widgets/html-manager": [
            "dist/embed-amd.js",
            "dist/embed.js",
            "dist/f.woff2",
            "dist/embed-amd.js.map",
        ],
    }
    for name, version in versions.items():
        package = modules / name
        package.mkdir(parents=True)
        (package / "package.json").write_text(json.dumps({"name": name, "version": version}))
        (package / "LICENSE").write_text("licence")
        for file in files[name]:
            (package / file).parent.mkdir(parents=True, exist_ok=True)
            (package / file).write_text(f"// {name} {file}")
    lock = vendor / "package-lock.json"
    lock.write_text(json.dumps({"lockfileVersion": 3, "packages": versions}))
    if stamp:
        (modules / offline_assets.STAMP).write_text(hashlib.sha256(lock.read_bytes()).hexdigest())
    return vendor


PINNED = {"mathjax": "3.2.2", "mermaid": "11.12.0", "requirejs": "2.3.7", "@jupyter-widgets/html-manager": "1.0.6"}


def fake_app(srcdir: Path):
    config = SimpleNamespace(
        mathjax_path=MATHJAX,
        mermaid_version="11.12.0",
        mermaid_use_local="",
        nb_ipywidgets_js={
            "https://cdn.jsdelivr.net/npm/requirejs@2.3.7/require.js": {"integrity": "sha256-x"},
            "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js": {
                "data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"
            },
        },
    )
    return SimpleNamespace(srcdir=str(srcdir)), config


def test_cdn_urls_are_parsed_into_package_version_and_file():
    assert offline_assets.parse_cdn_url(MATHJAX) == ("mathjax", "3.2.2", "es5/tex-mml-chtml.js")
    assert offline_assets.parse_cdn_url(
        "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"
    ) == ("@jupyter-widgets/html-manager", "1.0.6", "dist/embed-amd.js")
    assert offline_assets.parse_cdn_url("https://cdn.jsdelivr.net/npm/mathjax/es5/tex-mml-chtml.js") is None
    assert offline_assets.parse_cdn_url("https://unpkg.com/mathjax@3.2.2/es5/tex-mml-chtml.js") is None


def test_config_points_at_local_copies_and_the_build_copies_what_the_scripts_load(tmp_path):
    fake_vendor(tmp_path, PINNED)
    app, config = fake_app(tmp_path)
    offline_assets._use_local_copies(app, config)
    assert config.mathjax_path == "vendor/mathjax@3.2.2/es5/tex-mml-chtml.js"
    assert config.mermaid_use_local == "vendor/mermaid@11.12.0/dist/mermaid.esm.min.mjs"
    assert config.nb_ipywidgets_js == {
        "vendor/requirejs@2.3.7/require.js": {"integrity": "sha256-x"},
        "vendor/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js": {"data-jupyter-widgets-cdn": "vendor/"},
    }
    static = tmp_path / "html" / "_static"
    app.offline_vendor.copy(static)
    copied = sorted(str(p.relative_to(static / "vendor")) for p in static.rglob("*") if p.is_file())
    assert copied == [
        "mathjax@3.2.2/LICENSE",
        "mathjax@3.2.2/es5/output/chtml/fonts/woff-v2/a.woff",
        "mathjax@3.2.2/es5/tex-mml-chtml.js",
        "mermaid@11.12.0/LICENSE",
        "mermaid@11.12.0/dist/chunks/mermaid.esm.min/c.mjs",
        "mermaid@11.12.0/dist/mermaid.esm.min.mjs",
    ]  # no other bundle, no source map; the widget manager only once a page loads it
    app.offline_vendor.loaded.add("@jupyter-widgets/html-manager")
    app.offline_vendor.copy(static)
    widget_folder = static / "vendor" / "@jupyter-widgets" / "html-manager@1.0.6"
    widget_files = sorted(p.name for p in widget_folder.rglob("*") if p.is_file())
    assert widget_files == ["LICENSE", "embed-amd.js", "f.woff2"]


def test_a_version_that_differs_from_the_pinned_one_stops_the_build(tmp_path):
    fake_vendor(tmp_path, {**PINNED, "mathjax": "3.2.1"})
    app, config = fake_app(tmp_path)
    with pytest.raises(
        ExtensionError, match=r"mathjax_path asks for mathjax@3.2.2 but _vendor/package.json pins 3.2.1"
    ):
        offline_assets._use_local_copies(app, config)


def test_an_unknown_package_or_a_url_without_version_is_refused(tmp_path):
    vendor = offline_assets.Vendor(fake_vendor(tmp_path, PINNED))
    with pytest.raises(ExtensionError, match=r"does not know: add it to _vendor/package.json"):
        vendor.local("https://cdn.jsdelivr.net/npm/d3@7.9.0/dist/d3.min.js", "d3")
    with pytest.raises(ExtensionError, match=r"not a jsDelivr npm URL with an exact version"):
        vendor.local("https://cdn.jsdelivr.net/npm/mathjax/es5/tex-mml-chtml.js", "mathjax_path")


def test_without_npm_the_book_keeps_the_cdn_and_says_so(tmp_path, monkeypatch):
    fake_vendor(tmp_path, PINNED, stamp=False)  # not installed yet
    monkeypatch.setattr(offline_assets.shutil, "which", lambda name: None)
    said = []
    monkeypatch.setattr(offline_assets, "logger", SimpleNamespace(info=said.append))
    monkeypatch.delenv("LLMBOOK_OFFLINE_ASSETS", raising=False)
    app, config = fake_app(tmp_path)
    offline_assets._use_local_copies(app, config)
    assert config.mathjax_path == MATHJAX and config.mermaid_use_local == "" and app.offline_vendor is None
    assert len(said) == 1 and "npm (Node.js) is not installed" in said[0] and "cdn.jsdelivr.net" in said[0]
    monkeypatch.setenv("LLMBOOK_OFFLINE_ASSETS", "required")
    with pytest.raises(ExtensionError, match=r"npm \(Node.js\) is not installed"):
        offline_assets._use_local_copies(*fake_app(tmp_path))


def test_the_book_config_and_the_vendored_packages_agree():
    """Every CDN URL of _config.yml names a package and version pinned in _vendor/package.json."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["sphinx"]["local_extensions"].get("offline_assets") == "_ext"
    settings = config["sphinx"]["config"]
    urls = [settings["mathjax_path"], *settings["nb_ipywidgets_js"]]
    urls.append(f"https://cdn.jsdelivr.net/npm/mermaid@{settings['mermaid_version']}/dist/mermaid.esm.min.mjs")
    pinned = json.loads((ROOT / "_vendor" / "package.json").read_text())["dependencies"]
    lock = json.loads((ROOT / "_vendor" / "package-lock.json").read_text())["packages"]
    for url in urls:
        name, version, _ = offline_assets.parse_cdn_url(url)
        assert pinned.get(name) == version, f"{url}: _vendor/package.json pins {name} {pinned.get(name)}"
        assert lock[f"node_modules/{name}"]["version"] == version
        assert name in offline_assets.RUNTIME_FILES
