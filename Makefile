# thinkalike-ml: one command to set up and run, one to set up and test (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: setup setup-test run test test-slow test-all lab docs readme export check-nbs bench lock clean-docs help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): settings.ini setup.py requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name thinkalike-ml --display-name "Python (thinkalike-ml)" >/dev/null
	@touch $(STAMP)

setup: $(STAMP)  ## make .venv with the pinned dependencies and the thinkalike-ml kernel (quick when done)

setup-test: setup  ## setup, plus Debian's chromium (docs-site browser test) and postgresql (MLflow on a database test)
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@# Debian puts initdb/pg_ctl in /usr/lib/postgresql/NN/bin (not on PATH); the test looks there and starts its own cluster
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

run: setup  ## set up, then run the whole lifecycle on the bundled default data and print where the report is
	$(BIN)/thinkalike-ml run $(ARGS)

test: setup  ## set up, then run the default checks: notebooks clean and exported, nbdev_test, fast tests and one small end-to-end run
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/nbdev_test --n_workers 2
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/pytest -q -m "not slow" tests $(PYTEST_ARGS)

test-slow: setup-test  ## the slow tier only: docs site and reports in Chromium, JupyterLab, MLflow servers (SQLite, PostgreSQL), repeated full runs
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/pytest -q -m slow tests $(PYTEST_ARGS)

test-all: test test-slow  ## every check: the default tier, then the slow tier

lab: setup  ## open JupyterLab on 127.0.0.1 with the project's kernel
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --notebook-dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

docs: setup  ## build the documentation site into _docs/ (offline)
	$(PY) tools/docsite.py build --out _docs

readme: setup  ## write README.md from nbs/index.ipynb
	$(PY) tools/readme.py

export: setup  ## after editing notebooks: export the library, clear outputs and clean the notebooks, rewrite README.md
	$(BIN)/jupyter nbconvert --log-level=WARN --clear-output --inplace nbs/*.ipynb
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(PY) tools/readme.py

bench: setup  ## run the benchmarks in bench/
	for b in bench/bench_*.py; do OMP_NUM_THREADS=1 $(PY) $$b || exit 1; done

lock:  ## refresh requirements.lock from the current .venv (after changing settings.ini requirements)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
