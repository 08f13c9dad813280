# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_output

.PHONY: demo test test-fast venv clean bench docs screenshots

venv: $(STAMP)

# torch first, from the CPU wheel, pinned by constraints.txt so nothing pulls a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/segger segment src/segger/sample_data/xenium_lung --output $(DEMO_OUT) --device cpu
	$(VENV)/bin/segger qc $(DEMO_OUT) --reference-column cell_id

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	SEGGER_REQUIRE_EXTRAS=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

screenshots: $(STAMP)
	SEGGER_UPDATE_SCREENSHOTS=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/napari/test_napari_screenshots.py

# the documentation site into site/ (mkdocs-material + mkdocstrings); strict: any warning fails
$(VENV)/.docs-installed: $(STAMP) pyproject.toml
	$(PIP) install -q -c constraints.txt -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) benchmarks/quality.py --json benchmarks/quality.json --docs docs/benchmarks.md

clean:
	rm -rf $(VENV) $(DEMO_OUT)
