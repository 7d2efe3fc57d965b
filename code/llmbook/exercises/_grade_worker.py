"""Grade one submitted notebook in its own process (every chapter; used by :mod:`llmbook.exercises.grader`).

``python -m llmbook.exercises._grade_worker JOB.json`` executes the notebook
with nbclient (errors allowed, so one broken cell does not stop the rest), then
runs the library's checks *inside that kernel* against the names the notebook
defined, and writes ``{"status": ..., "results": {...}}`` to the job's
``result`` path. The notebook as a whole gets ``timeout`` seconds; each check
gets ``check_timeout`` seconds.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

# Run in the kernel before the checks: a fresh registry of the library's checks,
# whatever the notebook did to ``llmbook.exercises`` (e.g. redefining ``check``).
_SETUP = """
import importlib as __llmbook_importlib, json as __llmbook_json
import llmbook.exercises.core as __llmbook_core
__llmbook_importlib.reload(__llmbook_core)
import sys as __llmbook_sys
for __llmbook_chapter in {chapters!r}:
    __llmbook_name = "llmbook.exercises." + __llmbook_chapter
    try:
        if __llmbook_name in __llmbook_sys.modules:  # imported by the notebook: register again, afresh
            __llmbook_importlib.reload(__llmbook_sys.modules[__llmbook_name])
        else:
            __llmbook_importlib.import_module(__llmbook_name)
    except ModuleNotFoundError as __llmbook_error:
        if __llmbook_error.name != __llmbook_name:
            raise
for __llmbook_file in {checks_files!r}:
    __llmbook_core.load_checks_file(__llmbook_file)
"""

_RUN_ONE = """
__llmbook_result = __llmbook_core.run({exercise_id!r}, namespace=globals())
with open({result_file!r}, "a", encoding="utf-8") as __llmbook_out:
    __llmbook_out.write(__llmbook_json.dumps(dict(
        id=__llmbook_result.id, passed=bool(__llmbook_result.passed), message=str(__llmbook_result.message),
        seconds=float(__llmbook_result.seconds), unanswered=bool(__llmbook_result.unanswered))) + "\\n")
del __llmbook_result
"""


def _grade(job: dict) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    started = time.monotonic()
    try:
        notebook = nbformat.read(job["notebook"], as_version=4)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported, not raised
        return {"status": "unreadable", "detail": f"{type(error).__name__}: {error}"}
    code_cells = [(i, cell) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    client = NotebookClient(
        notebook,
        timeout=max(1, int(job["timeout"])),
        kernel_name=job["kernel_name"],
        allow_errors=True,
        interrupt_on_timeout=False,
        record_timing=False,
        shutdown_kernel="immediate",  # nothing to save: a graceful shutdown only waits on a busy kernel
        resources={"metadata": {"path": job["workdir"]}},
    )
    result_file = Path(job["result"]).with_suffix(".checks.jsonl")
    status, detail = "ok", ""
    with client.setup_kernel():
        Path(job["result"]).with_suffix(".kernel.pid").write_text(str(getattr(client.km.provisioner, "pid", "") or ""))
        deadline = time.monotonic() + job["timeout"]  # the student's code gets the whole timeout, kernel start aside
        for index, cell in code_cells:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = "timeout"
                break
            client.timeout = max(1, math.ceil(remaining))
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                status = "timeout"
                break
            except DeadKernelError:
                status, detail = "dead", f"the kernel died while running cell {index}"
                break
        executed_seconds = time.monotonic() - started
        results: dict[str, dict] = {}
        if status == "ok":
            client.interrupt_on_timeout = True  # a check that loops is interrupted; the next one still runs
            # ... and if the interrupt is ignored, nbclient moves on instead of waiting (the process backstop kills it).
            client.error_on_timeout = {"ename": "CheckTimeout", "evalue": "the check timed out", "traceback": []}
            setup = nbformat.v4.new_code_cell(
                _SETUP.format(chapters=sorted({i.split(".")[0] for i in job["ids"]}), checks_files=job["checks_files"])
            )
            client.timeout = max(60, int(job["check_timeout"]))  # importing a chapter's checks may import torch
            notebook.cells.append(setup)  # nbclient writes outputs through the cell's index
            client.execute_cell(setup, len(notebook.cells) - 1)
            setup_errors = [o for o in setup.outputs if o.get("output_type") == "error"]
            if setup_errors:
                status, detail = "setup", f"loading the checks failed: {setup_errors[0].get('ename')}: {setup_errors[0].get('evalue')}"
            else:
                client.timeout = max(1, int(job["check_timeout"]))
                for exercise_id in job["ids"]:
                    cell = nbformat.v4.new_code_cell(_RUN_ONE.format(exercise_id=exercise_id, result_file=str(result_file)))
                    notebook.cells.append(cell)
                    before = time.monotonic()
                    try:
                        client.execute_cell(cell, len(notebook.cells) - 1)
                    except DeadKernelError:
                        status, detail = "dead", f"the kernel died while checking {exercise_id}"
                        break
                    errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                    if time.monotonic() - before >= job["check_timeout"]:
                        results[exercise_id] = {
                            "passed": False,
                            "message": f"the check timed out after {job['check_timeout']:g} s (does your code loop forever?)",
                            "seconds": float(job["check_timeout"]),
                        }
                    elif errors:
                        results[exercise_id] = {
                            "passed": False,
                            "message": f"the check could not run: {errors[0].get('ename')}: {errors[0].get('evalue')}",
                            "seconds": time.monotonic() - before,
                        }
            if result_file.exists():
                for line in result_file.read_text(encoding="utf-8").splitlines():
                    entry = json.loads(line)
                    results.setdefault(entry.pop("id"), entry)
    return {"status": status, "detail": detail, "results": results, "executed_seconds": executed_seconds}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        outcome = _grade(job)
    except Exception as error:  # noqa: BLE001 - reported in the CSV, never stops the batch
        outcome = {"status": "error", "detail": f"{type(error).__name__}: {error}", "results": {}}
    Path(job["result"]).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
