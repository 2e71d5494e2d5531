# Two entry points: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install what they need.
# The demo loads into $MEDKG_GRAPH, else the embedded graph in $MEDKG_HOME (default: the user data dir),
# so that `.venv/bin/medkg kg ...` answers from it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
DEMO ?= runs/demo
INSTALLED := $(VENV)/.installed
PARSER := tests/cypher/node_modules/.installed
CHROMIUM := $(VENV)/.chromium

.PHONY: demo test clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(PARSER): tests/cypher/package.json tests/cypher/package-lock.json
	npm ci --prefix tests/cypher --no-audit --no-fund --loglevel=error
	touch $@

# Headless Chromium renders the `medkg explain` viewer page in tests/test_explain.py (Debian's package, as root).
$(CHROMIUM): | $(INSTALLED)
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	touch $@

# The main job: graph, extraction, embeddings, both aligners, evaluation, report (runs/demo/index.html).
# Stages whose inputs have not changed are skipped; DEMO_ARGS passes more, e.g. DEMO_ARGS="--from train --budget-minutes 30".
demo: $(INSTALLED)
	$(BIN)/medkg demo --data-dir $(DATA) --out $(DEMO) $(DEMO_ARGS)

test: $(INSTALLED) $(PARSER) $(CHROMIUM)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO) .pytest_cache
