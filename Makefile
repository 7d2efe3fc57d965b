# The book's three commands. Each creates .venv (and installs what it needs) if missing.
#   make book   build the HTML book with every chapter executed (cpu budget unless LLMBOOK_BUDGET is set)
#   make test   run the whole test suite (unit tests, notebooks at smoke budget, book build + browser)
#   make lab    open the chapters in JupyterLab

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The offline data mirror beside the repository, when there is one (tests and CI); otherwise data is downloaded.
export LLMBOOK_DATA_MIRROR ?= $(abspath $(wildcard ../shared/data))
# `make book HIDE_SOLUTIONS=1`: the exercises' solutions are left out of the HTML (llmbook.exercises.sphinx_solutions).
export LLMBOOK_HIDE_SOLUTIONS ?= $(HIDE_SOLUTIONS)

.PHONY: book test lab install clean

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
	@echo "Open _build/html/index.html in a browser."

test: $(STAMP)
	LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=smoke $(PY) -m pytest tests -n 2 -m "not book"
	LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=smoke $(PY) -m pytest --nbval-lax book -n 2 --dist loadfile -p no:cacheprovider
	LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=smoke $(PY) -m pytest tests -m book

# Instructors (book/appendix_c_instructor.md): the two HTML editions side by side, and the student notebooks.
.PHONY: book-instructor book-student student-edition
book-instructor: $(STAMP)
	LLMBOOK_HIDE_SOLUTIONS=0 LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=$${LLMBOOK_BUDGET:-cpu} $(VENV)/bin/jupyter-book build . -W -n --keep-going --path-output _build/instructor
	@echo "Open _build/instructor/_build/html/index.html (solutions in collapsed dropdowns)."

book-student: $(STAMP)
	LLMBOOK_HIDE_SOLUTIONS=1 LLMBOOK_STRICT_CHECKS=1 LLMBOOK_BUDGET=$${LLMBOOK_BUDGET:-cpu} $(VENV)/bin/jupyter-book build . -W -n --keep-going --path-output _build/student
	@echo "Open _build/student/_build/html/index.html (no solutions)."

student-edition: $(STAMP)
	$(PY) -m llmbook.exercises student-edition book student-edition

lab: $(STAMP)
	$(PY) -m pip install -q jupyterlab
	$(VENV)/bin/jupyter lab book/

clean:
	rm -rf _build
