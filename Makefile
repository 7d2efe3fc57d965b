# The book's three commands. Each creates .venv (and installs what it needs) if missing.
#   make book   build the HTML book with every chapter executed (cpu budget unless LLMBOOK_BUDGET is set)
#   make test   run the whole test suite (unit tests, notebooks at smoke budget, book build + browser)
#   make lab    open the chapters in JupyterLab

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The offline data mirror beside the repository, when there is one (tests and CI); otherwise data is downloaded.
export LLMBOOK_DATA_MIRROR ?= $(abspath $(wildcard ../shared/data))
# `make book HIDE_SOLUTIONS=1`: the exercises' solutions are left out of the HTML (_ext/sphinx_solutions.py).
export LLMBOOK_HIDE_SOLUTIONS ?= $(HIDE_SOLUTIONS)

.PHONY: book test lab install clean
SHELL := /bin/bash

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# A local CPU build of torch when none is installed; a range would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-dev.txt
	# bertviz declares heavy dependencies that head_view/model_view do not need.
	$(PY) -m pip install -q --no-deps bertviz
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=$${LLMBOOK_BUDGET:-cpu} $(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is built. Open it in a browser: file://$(CURDIR)/_build/html/index.html"

# Three steps: ruff (lint, and the formatting of code and book cells); unit tests and the docstring
# examples of the library (doctest); the book built at the smoke budget with warnings as errors, every
# notebook executed (a cell error fails the build), then opened in Chromium (tests/test_book.py, test_colab.py).
# Executing the notebooks once more with nbval would add minutes and catch nothing the build does not:
# `make test-notebooks` runs them alone, in parallel, for quick feedback while writing a chapter. Exit code 5 ("no tests
# collected", e.g. before the first notebook exists) is not a failure.
# Every step runs even when an earlier one fails; each prints its time, and the summary names the failed ones.
test: $(STAMP)
	@failed=""; \
	step() { \
		name=$$1; shift; start=$$(date +%s); echo "=== make test: $$name: $$*"; \
		"$$@"; rc=$$?; \
		echo "=== make test: $$name: exit $$rc after $$(( $$(date +%s) - start )) s"; \
		if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then failed="$$failed [$$name]"; fi; \
	}; \
	export LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=smoke; \
	step "0 lint and format" bash -c '$(PY) -m ruff check . && $(PY) -m ruff format --check .'; \
	step "1 unit tests and docstring examples" $(PY) -m pytest tests code/llmbook --doctest-modules -n 2 -m "not book"; \
	step "2a browser prerequisites" $(MAKE) --no-print-directory browser-prerequisites; \
	step "2 book build and browser" $(PY) -m pytest tests -m book; \
	echo "The test build of the book and a screenshot of chapter 4 are in _build/test-book/."; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make test: all steps passed"

# Every chapter notebook executed at the smoke budget, two at a time (the book build of `make test` does
# this too; this target is the quick check while writing a chapter).
.PHONY: test-notebooks
test-notebooks: $(STAMP)
	LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=smoke $(PY) -m pytest --nbval-lax book -n 2 --dist loadfile -p no:cacheprovider

# The browser tests drive Debian's Chromium (never a downloaded browser) and install their local
# copies of the book's CDN files with npm. Installed here when running as root; otherwise a message.
.PHONY: browser-prerequisites
browser-prerequisites:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing$$missing with apt-get (needed by the browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	else \
		echo "The browser tests (tests/test_book.py) need$$missing: run  sudo apt-get install -y$$missing  and then make test again." >&2; \
		exit 1; \
	fi

# Instructors (book/appendix_c_instructor.md): the two HTML editions side by side, and the student notebooks.
.PHONY: book-instructor book-student student-edition
book-instructor: $(STAMP)
	LLMBOOK_HIDE_SOLUTIONS=0 LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=$${LLMBOOK_BUDGET:-cpu} $(VENV)/bin/jupyter-book build . -W -n --keep-going --path-output _build/instructor
	@echo "Open _build/instructor/_build/html/index.html (solutions in collapsed dropdowns)."

book-student: $(STAMP)
	LLMBOOK_HIDE_SOLUTIONS=1 LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=$${LLMBOOK_BUDGET:-cpu} $(VENV)/bin/jupyter-book build . -W -n --keep-going --path-output _build/student
	@echo "Open _build/student/_build/html/index.html (no solutions)."

student-edition: $(STAMP)
	$(PY) -m llmbook.instructor student-edition book student-edition

# The Colab edition (book/appendix_c_instructor.md): after `make book`, from its executed notebooks, into
# _build/colab: glued values, outputs, student stubs, Mermaid as images, a first cell installing llmbook at
# this commit (llmbook/instructor/colab.py). COLAB_FROM: another build folder (e.g. _build/test-book/_build).
COLAB_FROM ?= _build
.PHONY: colab colab-branch
colab: $(STAMP) browser-prerequisites
	@test -d $(COLAB_FROM)/jupyter_execute || { echo "make colab: no executed book in $(COLAB_FROM)/jupyter_execute; run make book first" >&2; exit 1; }
	test -d tests/browser/node_modules || (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	rm -rf _build/colab
	$(PY) -m llmbook.instructor colab-edition $(COLAB_FROM)/jupyter_execute _build/colab --html $(COLAB_FROM)/html --budget $${LLMBOOK_BUDGET:-cpu}

# The edition as a one-commit history of its own in _build/colab; .github/workflows/book.yml pushes it to the
# branch `colab`, where every Colab launch button of the HTML book points (_config.yml repository.branch).
colab-branch: colab
	cd _build/colab && git init -q -b colab && git add -A && \
		git -c user.name="llmbook build" -c user.email="build@localhost" commit -q -m "Colab edition of $$(git -C $(CURDIR) rev-parse --short HEAD)" && \
		git log --oneline --stat -1 | tail -3

lab: $(STAMP)
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -q jupyterlab
	$(VENV)/bin/jupyter lab book/

clean:
	rm -rf _build
