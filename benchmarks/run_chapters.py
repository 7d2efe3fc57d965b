"""Run the book's chapters as plain Python scripts (no Jupyter), one process each, and time them.

Each ``book/NN_*.ipynb`` becomes ``OUT/NN_name.py``: its code cells in order,
except cells tagged ``remove-cell`` (the Colab installer) and IPython magics
(``%...``, ``!...``, commented out), behind a first line that installs
``chapter_shims`` (stand-ins for IPython and ipywidgets where they are
missing; ``plt.show()`` saves PNG files into OUT). Every chapter then runs
with ``LLMBOOK_BUDGET`` set (``gpu`` by default) and a time limit.

    python benchmarks/run_chapters.py --budget gpu --out /tmp/chapters
    python benchmarks/run_chapters.py --dry-run     # build and check the scripts, run nothing

``--dry-run`` builds every script, compiles it, and checks that every module
it imports can be found and that the data files the chapters load are in the
mirror; it exits non-zero when something is missing, naming it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
SKIPPED_TAGS = {"remove-cell", "skip-execution"}


def find_notebooks(book: Path, only: list[str] | None = None) -> list[Path]:
    notebooks = sorted(book.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(prefix) for prefix in only)]
    return notebooks


def notebook_source(path: Path) -> str:
    """The code cells of a notebook as one Python source, magics commented out."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for number, cell in enumerate(notebook["cells"]):
        if cell.get("cell_type") != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & SKIPPED_TAGS:
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = [
            ("# (magic) " + line if line.lstrip().startswith(("%", "!")) else line) for line in source.splitlines()
        ]
        parts.append(f"# --- cell {number} ---\n" + "\n".join(lines) + "\n")
    return "\n".join(parts)


def build_script(notebook: Path, out: Path) -> Path:
    stem = notebook.stem
    header = (
        f"# Built by benchmarks/run_chapters.py from book/{notebook.name}; do not edit.\n"
        "import sys as _sys\n"
        f"_sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "import chapter_shims as _chapter_shims\n"
        f"print('stand-ins for missing packages:', _chapter_shims.install({str(out)!r}, {stem!r}) or 'none', flush=True)\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    script = out / f"{stem}.py"
    script.write_text(header + "\n" + notebook_source(notebook), encoding="utf-8")
    return script


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module a source imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def data_files_used(source: str) -> set[str]:
    """The data sets the chapter's code loads through llmbook.data (file names of the registry)."""
    from llmbook import data

    used = set()
    for name in getattr(data, "REGISTRY", {}):
        if f'"{name}"' in source or f"'{name}'" in source:
            used.add(name)
    loaders = {
        "load_brown_sentences": "brown.zip",
        "load_brown_words": "brown.zip",
        "load_movie_reviews": "movie_reviews.zip",
        "load_text(": "tinyshakespeare.txt",
    }
    for call, name in loaders.items():
        if call in source:
            used.add(name)
    if "load_tang_poems" in source:
        used.add("chinese-poetry")
    return used


def check_script(script: Path) -> list[str]:
    """What would stop the script: syntax errors, modules that cannot be found, data not in the mirror."""
    problems = []
    source = script.read_text(encoding="utf-8")
    try:
        compile(source, str(script), "exec")
    except SyntaxError as error:
        return [f"syntax error at line {error.lineno}: {error.msg}"]
    stand_ins = {"IPython", "ipywidgets", "chapter_shims", "_chapter_shims"}
    for module in sorted(imported_modules(source) - stand_ins):
        if importlib.util.find_spec(module) is None:
            problems.append(f"module {module!r} is not installed")
    mirror = os.environ.get("LLMBOOK_DATA_MIRROR")
    for name in sorted(data_files_used(source)):
        cached = Path(os.environ.get("LLMBOOK_DATA_DIR") or Path.home() / ".cache" / "llmbook") / name
        if not ((mirror and (Path(mirror) / name).exists()) or cached.exists()):
            problems.append(f"data {name!r} is neither in LLMBOOK_DATA_MIRROR={mirror!r} nor in the cache")
    return problems


def run_script(script: Path, budget: str, timeout: float, log: Path) -> dict:
    env = dict(os.environ, LLMBOOK_BUDGET=budget, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "code"), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        try:
            process = subprocess.run(
                [sys.executable, str(script)],
                check=False,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(ROOT / "book"),
                timeout=timeout,
            )
            status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
        except subprocess.TimeoutExpired:
            status = f"stopped at the {timeout:.0f} s limit"
    seconds = time.perf_counter() - start
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    return {"status": status, "seconds": seconds, "log": str(log), "tail": tail}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="gpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--out", default="/tmp/llmbook-chapters", help="folder for the scripts, logs and figures")
    parser.add_argument("--only", nargs="*", default=None, help="chapter numbers, e.g. 05 06")
    parser.add_argument("--skip", nargs="*", default=[], help="chapter numbers not to run (e.g. 03)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed to each chapter")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds for all chapters together: a chapter that would start later is not run",
    )
    parser.add_argument("--dry-run", action="store_true", help="build and check the scripts; run nothing")
    parser.add_argument("--json", default=None, help="write the per-chapter results to this file")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notebooks = find_notebooks(ROOT / "book", args.only)
    if not notebooks:
        print(f"no chapter notebooks found in {ROOT / 'book'}", file=sys.stderr)
        return 1
    results, failed = {}, False
    start = time.perf_counter()
    for notebook in notebooks:
        script = build_script(notebook, out)
        chapter = notebook.name[:2]
        problems = check_script(script)
        if chapter in args.skip:
            results[notebook.stem] = {"status": "skipped (--skip)", "seconds": 0.0, "problems": problems}
        elif problems:
            results[notebook.stem] = {"status": "cannot run: " + "; ".join(problems), "seconds": 0.0}
            failed = True
        elif args.dry_run:
            results[notebook.stem] = {"status": "ready", "seconds": 0.0, "script": str(script)}
        else:
            left = None if args.deadline is None else args.deadline - (time.perf_counter() - start)
            if left is not None and left < 10:
                results[notebook.stem] = {"status": "not run (deadline)", "seconds": 0.0}
                continue
            timeout = args.timeout if left is None else min(args.timeout, left)
            results[notebook.stem] = run_script(script, args.budget, timeout, out / f"{notebook.stem}.log")
            failed |= results[notebook.stem]["status"] != "ok"
        entry = results[notebook.stem]
        print(f"{notebook.stem:24s} {entry['status']:40s} {entry['seconds']:7.1f} s", flush=True)
        if entry["status"].startswith(("failed", "stopped")):
            print("    " + "\n    ".join(entry["tail"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
