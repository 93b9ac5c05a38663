# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo check test docs figures bench clean redis-tools browser java screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[all,test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/banditkit demo

# The Redis suites start their own redis-server processes (kill -9, AOF, a 3-master cluster) beside the
# machine's Redis on 127.0.0.1:6379; install the binaries when a fresh machine lacks them.
redis-tools:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq redis-server redis-tools)

# The dashboard's tests drive Debian's chromium headless (Playwright through executable_path: it never downloads
# a browser); install it when a fresh machine lacks it. The tests fail, not skip, when it cannot start.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The dashboard's screenshots in docs/img/ (docs/dashboard.md shows them), taken by its browser tests: the
# figures of docs/figures.py named dashboard-*.
screenshots: $(STAMP) browser
	$(BIN)/python docs/figures.py dashboard-experiment dashboard-experiments dashboard-admin

# Static checks: lint, formatting, types (configured in pyproject.toml). `make test` runs them first.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Spark's tests (tests/ope/test_spark.py, pyspark from the `spark` extra) start a local JVM: Java 17 or later.
java:
	@java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || \
		(apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless)

test: check redis-tools browser java
	$(BIN)/python -m pytest -q

# The documentation site into site/ (open site/index.html; no network needed to build or read it). Strict: a
# broken link or anchor, a missing reference or a docstring griffe cannot parse fails. `make test` builds it
# too (tests/test_docs_site.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# The images docs/ shows, made by the code in docs/figures.py (simulation regret plots, with the numbers the
# pages quote in docs/runs/): every one takes several minutes, `make figures ONLY="tutorial_regret drifting"`
# makes those named. Commit the images it changes with the change that changed them.
figures: $(STAMP)
	$(BIN)/python docs/figures.py $(ONLY)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_policies.py

clean:
	rm -rf $(VENV) site .pytest_cache .hypothesis .mypy_cache .ruff_cache build *.egg-info
