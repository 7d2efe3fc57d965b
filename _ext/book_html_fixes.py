"""Sphinx extension: small fixes to the book's HTML (loaded by _config.yml, `sphinx.local_extensions`).

Each fix removes an error a reader's browser would otherwise report (tests/test_book.py fails on
any console error):

* sphinx-thebe adds its inline configuration once per reading pass, so a page could declare
  ``const THEBE_JS_URL`` twice ("Identifier 'THEBE_JS_URL' has already been declared").
  Each page's scripts are de-duplicated.
* Pages with saved ipywidgets load the widget manager (@jupyter-widgets/html-manager 1.x, an AMD
  module) from a CDN. It finds its font files relative to its module URL, which require.js
  resolves against the *page* unless told where the module lives: the fonts then 404. A
  ``require.config`` before it points the module at the folder it is loaded from (the CDN's, or
  the book's own copy under ``_static/vendor``).
* The same widget manager typesets widget labels with MathJax 2's ``MathJax.Hub.Queue``; the book
  loads MathJax 3, which has no ``Hub``. A small adapter maps it onto ``MathJax.typesetPromise``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sphinx.builders.html._assets import _JavaScript

# From a CDN, or from the book's own copy (_static/vendor/..., _ext/offline_assets.py).
_WIDGET_MANAGER = re.compile(r"^(?P<dist>(?:https?://.+/|.*/)?@jupyter-widgets/html-manager@[^/]+/dist)/embed-amd\.js$")

_WIDGET_MANAGER_SETUP = """\
require.config({paths: {"@jupyter-widgets/html-manager/dist": %s}});
document.addEventListener("DOMContentLoaded", function () {
  var mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub) { return; }
  mathjax.Hub = {Queue: function () {
    Array.prototype.forEach.call(arguments, function (job) {
      if (Array.isArray(job) && job[0] === "Typeset" && mathjax.typesetPromise) {
        mathjax.startup.promise.then(function () { return mathjax.typesetPromise(job[2] ? [job[2]] : undefined); });
      }
    });
  }};
});"""


def _script_key(script: Any) -> tuple:
    """What makes two script tags the same: file (None and "" both mean inline), priority, attributes."""
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    priority = getattr(script, "priority", 500)
    return (str(filename), priority, tuple(sorted((key, str(value)) for key, value in attributes.items())))


def _fix_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    fixed = []
    for script in scripts:
        key = _script_key(script)
        if key in seen:
            continue
        seen.add(key)
        match = _WIDGET_MANAGER.match(str(getattr(script, "filename", "") or ""))
        if match:
            dist = match.group("dist")
            if "://" not in dist:  # the book's own copy: a URL relative to this page
                dist = context["pathto"](dist, resource=True)
            body = _WIDGET_MANAGER_SETUP % json.dumps(dist)
            fixed.append(_JavaScript(None, priority=getattr(script, "priority", 500), body=body))
        fixed.append(script)
    scripts[:] = fixed


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _fix_scripts, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
