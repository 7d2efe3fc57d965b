"""llmbook.controls: precomputed outputs switched by sliders and menus in a static page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from llmbook import controls, figures


def payload(explorer) -> dict:
    found = re.search(r'<script type="application/json" class="llmbook-controls-data">(.*?)</script>', explorer.html)
    assert found, "no data script in the controls' HTML"
    return json.loads(found.group(1))


def test_every_grid_point_has_its_own_output_in_row_major_order():
    calls = []

    def render(order, k):
        calls.append((order, k))
        return f"order={order} k={k}"

    grid = {"order": [1, 2, 3, 4], "k": [0.01, 0.1, 1.0]}
    explorer = controls.explore(render, grid)
    data = payload(explorer)
    assert data["names"] == ["order", "k"] and data["sizes"] == [4, 3]
    assert len(calls) == explorer.points == 12 == len(data["index"])
    for flat, (order, k) in enumerate((o, k) for o in grid["order"] for k in grid["k"]):
        output = data["outputs"][data["index"][flat]]
        assert output == {"kind": "text", "data": f"order={order} k={k}"}
    assert explorer.distinct == 12
    assert "12 points, 12 distinct outputs" in repr(explorer)


def test_equal_outputs_are_stored_once():
    explorer = controls.explore(lambda a, b: f"a={a}", {"a": [1, 2], "b": ["x", "y", "z"]})
    data = payload(explorer)
    assert explorer.points == 6 and explorer.distinct == 2 and len(data["outputs"]) == 2
    assert data["index"] == [0, 0, 0, 1, 1, 1]


def test_text_labels_title_and_values_are_escaped():
    evil = '</script><script>alert(1)</script> & <b>bold</b> "quoted"'
    explorer = controls.explore(
        lambda choice: evil + choice,
        {"choice": ["<i>", "&amp;"]},
        labels={"choice": "<u>label</u>"},
        title="<h1>title</h1>",
    )
    page = explorer.html
    # Only the panel's own two scripts: no output can open or close a script element.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<b>bold</b>" not in page and "<u>label</u>" not in page and "<h1>" not in page and "<i>" not in page
    assert "&lt;u&gt;label&lt;/u&gt;" in page and "&lt;h1&gt;title&lt;/h1&gt;" in page
    assert '<option value="0" selected>&lt;i&gt;</option>' in page and "&amp;amp;" in page
    # The text survives the round trip through the JSON exactly.
    assert payload(explorer)["outputs"][0]["data"] == evil + "<i>"
    # The initial output is shown escaped.
    assert '<pre class="llmbook-controls-text">&lt;/script&gt;&lt;script&gt;alert(1)' in page


def test_numbers_get_sliders_other_values_menus_and_initial_sets_the_start():
    explorer = controls.explore(
        lambda n, mode: f"{mode} {n}", {"n": [1, 2, 4, 8], "mode": ["greedy", "sample"]}, initial={"n": 4}
    )
    page = explorer.html
    assert re.search(
        r'<input type="range" class="llmbook-control" data-param="n" min="0" max="3" step="1" value="2"', page
    )
    assert '<select class="llmbook-control" data-param="mode"' in page
    assert 'data-point="4"' in page  # n index 2, mode index 0: 2 * 2 + 0
    assert '<pre class="llmbook-controls-text">greedy 4</pre>' in page


def test_two_panels_have_different_ids():
    first = controls.explore(lambda a: str(a), {"a": [1, 2]})
    second = controls.explore(lambda a: str(a), {"a": [1, 2]})
    ids = [re.search(r'<div id="(llmbook-controls-[0-9a-f]+)"', e.html).group(1) for e in (first, second)]
    assert ids[0] != ids[1]
    for explorer, uid in zip((first, second), ids):
        assert f'"{uid}"' in explorer.html.split("<script>")[1]  # the script looks for its own panel


def test_figures_become_stamped_pngs_and_are_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def render(slope):
        fig, ax = plt.subplots(figsize=(4, 2.5))
        ax.plot([0, 1], [0, slope])
        ax.set_title(f"slope {slope}", fontsize=11)
        return fig

    before = len(plt.get_fignums())
    explorer = controls.explore(render, {"slope": [1.0, 2.0]})
    assert len(plt.get_fignums()) == before
    outputs = payload(explorer)["outputs"]
    assert [o["kind"] for o in outputs] == ["png", "png"] and outputs[0]["data"] != outputs[1]["data"]
    png = base64.b64decode(outputs[0]["data"])
    smallest, dpi = figures.read_font_record(png)
    assert dpi == plt.rcParams["figure.dpi"] and 5 <= smallest <= 11
    assert outputs[0]["width"] == int.from_bytes(png[16:20], "big")  # scale 1: natural size
    assert '<img class="llmbook-controls-image"' in explorer.html


def test_html_outputs_are_inserted_as_html():
    from IPython.display import HTML

    explorer = controls.explore(lambda n: HTML(f"<b>{n}</b>"), {"n": [1, 2]})
    assert payload(explorer)["outputs"][1] == {"kind": "html", "data": "<b>2</b>"}
    assert '<div class="llmbook-controls-html"><b>1</b></div>' in explorer.html


def test_save_writes_a_page(tmp_path: Path):
    explorer = controls.explore(lambda n: str(n), {"n": [1, 2]})
    explorer.save(tmp_path / "panel.html")
    assert explorer.html in (tmp_path / "panel.html").read_text(encoding="utf-8")
    assert explorer.nbytes == len(explorer.html.encode("utf-8"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(grid=[1, 2]), TypeError, r"grid must be a non-empty dict"),
        (dict(grid={}), TypeError, r"grid must be a non-empty dict"),
        (dict(grid={"n": []}), ValueError, r"grid\['n'\] must be a non-empty list of values, got \[\]"),
        (dict(grid={"n": "abc"}), ValueError, r"grid\['n'\] must be a non-empty list"),
        (dict(grid={"not a name": [1]}), ValueError, r"identifiers\), got 'not a name'"),
        (dict(grid={"n": [1.0, float("nan")]}), ValueError, r"a value of grid\['n'\] must be a finite number, got nan"),
        (dict(grid={"n": [[1, 2]]}), TypeError, r"grid\['n'\] holds \[1, 2\] \(list\)"),
        (dict(grid={"n": [1, 2, 1]}), ValueError, r"grid\['n'\] lists 1 more than once"),
        (dict(labels={"m": "M"}), ValueError, r"labels names 'm', which is not a parameter of the grid \(n\)"),
        (dict(labels={"n": 3}), TypeError, r"labels\['n'\] must be a string, got int 3"),
        (dict(initial={"n": 5}), ValueError, r"initial\['n'\] must be one of 1, 2, 3, got 5"),
        (dict(initial={"m": 1}), ValueError, r"initial names 'm'"),
        (dict(title=3), TypeError, r"title must be a string"),
        (dict(max_points=0), ValueError, r"max_points must be a whole number >= 1, got 0"),
        (dict(max_points=2), ValueError, r"the grid has 3 points \(n: 3 values\), more than max_points=2"),
        (dict(max_bytes=10), ValueError, r"more than max_bytes=10"),
        (dict(figure_scale=1.5), ValueError, r"figure_scale must be a whole number >= 1, got 1.5 \(1 or 2\)"),
        (dict(render=None), TypeError, r"render must be a function"),
        (dict(render=lambda n: n), TypeError, r"render\(n=1\) returned int 1; return a string"),
    ],
)
def test_bad_inputs_give_clear_errors(kwargs, error, message):
    arguments = dict(render=lambda n: f"n={n}", grid={"n": [1, 2, 3]})
    arguments.update(kwargs)
    render, grid = arguments.pop("render"), arguments.pop("grid")
    with pytest.raises(error, match=message):
        controls.explore(render, grid, **arguments)


def test_a_huge_grid_is_refused_before_anything_is_computed():
    calls = []
    with pytest.raises(ValueError, match=r"the grid has 1000 points \(a: 10 values x b: 10 values x c: 10 values\)"):
        controls.explore(lambda a, b, c: calls.append(1) or "", {name: list(range(10)) for name in "abc"})
    assert not calls


def test_an_error_in_render_names_the_point():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError, match=r"render\(n=2\) returned an empty Matplotlib figure"):
        controls.explore(lambda n: "ok" if n == 1 else plt.figure(), {"n": [1, 2]})


@pytest.mark.book
def test_controls_switch_outputs_in_chromium_without_a_network():
    """The saved panel in Debian's Chromium, every request blocked: each control changes what is shown."""
    from playwright.sync_api import sync_playwright

    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.fail("this test drives Debian's Chromium at /usr/bin/chromium: apt-get install -y chromium")
    first = controls.explore(lambda n, mode: f"<{mode}> {n}", {"n": [1, 2, 3], "mode": ["a", "b"]})
    second = controls.explore(lambda n: f"second {n}", {"n": [10, 20]})
    document = f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{first.html}{second.html}</body></html>'
    requests = []

    def drive():  # on a thread of its own: the book tests may already drive a browser from an asyncio loop
        with sync_playwright() as playwright:
            _drive(playwright)

    def _drive(playwright):
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.route("**/*", lambda route: (requests.append(route.request.url), route.abort()))
        page.set_content(document)
        panels = page.locator(".llmbook-controls")
        assert panels.count() == 2
        first_panel, second_panel = panels.nth(0), panels.nth(1)
        assert first_panel.locator("pre").inner_text() == "<a> 1"
        slider = first_panel.locator("input[type=range]")
        slider.focus()
        page.keyboard.press("End")
        assert first_panel.locator("pre").inner_text() == "<a> 3"
        assert first_panel.locator(".llmbook-value").inner_text() == "3"
        first_panel.locator("select").select_option("1")
        assert first_panel.locator("pre").inner_text() == "<b> 3"
        assert first_panel.get_attribute("data-point") == "5"
        assert second_panel.locator("pre").inner_text() == "second 10"  # the other panel did not move
        browser.close()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(drive).result()
    assert not requests, requests
