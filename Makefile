# The commands of the README: `make demo`, `make test` (everything) and `make test-fast` (no training).
# Both create .venv and install the package into it once (re-done when setup.py changes).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Trains, exports and benchmarks the demo model, and writes android_demo_assets/ from that same run.
demo: $(STAMP)
	$(PY) -m mfn_tf2.demo --android_assets

# Two pytest workers (pytest-xdist), one test file each at a time (a file's fixtures are built once),
# in the order of tests/conftest.py (longest files first).
XDIST := -n 2 --dist loadfile --no-loadscope-reorder

# Docstring examples run too (--doctest-modules over the package).
test: $(STAMP)
	$(PY) -m pytest -q $(XDIST) --doctest-modules mfn_tf2 tests

# The tests not marked slow (pytest.ini): no model is trained or exported.
test-fast: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow" --doctest-modules mfn_tf2 tests

clean:
	rm -rf demo_out .pytest_cache
