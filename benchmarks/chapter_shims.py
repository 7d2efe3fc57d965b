"""What a chapter's notebook code needs from Jupyter, for running it as a plain Python script.

:func:`install` is called at the top of every script that ``run_chapters.py``
builds from a notebook. Where IPython or ipywidgets are installed they are
used as they are; where they are missing (a bare GPU machine) small stand-ins
take their place:

* ``IPython.display``: ``display(obj)`` prints the object's text form (an
  HTML attention view is written to a file instead); ``Markdown``, ``HTML``,
  ``Code`` hold their text.
* ``ipywidgets``: ``interactive(f, **controls)`` calls ``f`` once with each
  control's initial ``value``, which is what a saved notebook shows; the
  controls (sliders, drop-downs) hold their keyword arguments.

``plt.show()`` saves the current figures as PNG files in the output folder
and closes them (the Agg back end has no window).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path


class _Text:
    """Markdown, HTML or Code: text that Jupyter would render."""

    def __init__(self, data: str = "", *args, **kwargs):
        self.data = data if isinstance(data, str) else str(data)

    def __repr__(self) -> str:
        return self.data


def _display_function(output_dir: Path):
    counter = {"n": 0}

    def display(*objects, **kwargs):
        for obj in objects:
            html = getattr(obj, "_repr_html_", None)
            if callable(html) and not isinstance(obj, _Text):
                counter["n"] += 1
                path = output_dir / f"display_{counter['n']:03d}.html"
                path.write_text(html() or "", encoding="utf-8")
                print(f"[display: {type(obj).__name__} written to {path}]")
            else:
                print(repr(obj))

    return display


def _ipython_stub(output_dir: Path) -> types.ModuleType:
    package = types.ModuleType("IPython")
    package.__path__ = []  # a package, so "from IPython.display import x" works
    display_module = types.ModuleType("IPython.display")
    display_module.display = _display_function(output_dir)
    for name in ("Markdown", "HTML", "Code", "Latex", "Math", "SVG", "JSON"):
        setattr(display_module, name, type(name, (_Text,), {}))
    display_module.clear_output = lambda *args, **kwargs: None
    package.display = display_module
    package.get_ipython = lambda: None
    return package


class _Control:
    """A slider, drop-down or box: keeps its keyword arguments; ``value`` is the initial value."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self.value = kwargs.get("value")
        self.children = kwargs.get("children", args[0] if args else ())

    def observe(self, *args, **kwargs):
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (no Jupyter: a static stand-in) value={self.value!r}>"


def _interactive(function, **controls):
    """Call ``function`` once with the controls' initial values, as a saved notebook shows it."""
    values = {name: (control.value if isinstance(control, _Control) else control) for name, control in controls.items()}
    result = _Control(value=function(**values))
    result.kwargs = values
    return result


def _ipywidgets_stub() -> types.ModuleType:
    module = types.ModuleType("ipywidgets")
    module.interactive = _interactive
    module.interact = lambda function=None, **controls: _interactive(function, **controls)

    def __getattr__(name):  # IntSlider, Dropdown, FloatLogSlider, HBox, Output, ...
        if name.startswith("__"):
            raise AttributeError(name)
        control = type(name, (_Control,), {})
        setattr(module, name, control)
        return control

    module.__getattr__ = __getattr__
    return module


def _save_figures_on_show(output_dir: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counter = {"n": 0}

    def show(*args, **kwargs):
        for number in plt.get_fignums():
            counter["n"] += 1
            plt.figure(number).savefig(output_dir / f"{stem}_fig{counter['n']:03d}.png", dpi=80)
        plt.close("all")

    plt.show = show


def install(output_dir: str | os.PathLike, stem: str) -> list[str]:
    """Put the stand-ins in place where the real packages are missing; return what was stubbed."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stubbed = []
    if importlib.util.find_spec("IPython") is None:
        package = _ipython_stub(output_dir)
        sys.modules["IPython"] = package
        sys.modules["IPython.display"] = package.display
        stubbed.append("IPython")
    if importlib.util.find_spec("ipywidgets") is None:
        sys.modules["ipywidgets"] = _ipywidgets_stub()
        stubbed.append("ipywidgets")
    if importlib.util.find_spec("matplotlib") is not None:
        _save_figures_on_show(output_dir, stem)
    return stubbed
