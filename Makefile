# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install the package into it once (re-done when setup.py changes).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m mfn_tf2.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf demo_out .pytest_cache
