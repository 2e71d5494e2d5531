# Two entry points: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install what they need.
# The demo loads into $MEDKG_GRAPH, else the embedded graph in $MEDKG_HOME (default: the user data dir),
# so that `.venv/bin/medkg kg ...` answers from it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
OUT ?= out
INSTALLED := $(VENV)/.installed
PARSER := tests/cypher/node_modules/.installed

.PHONY: demo test clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(PARSER): tests/cypher/package.json tests/cypher/package-lock.json
	npm ci --prefix tests/cypher --no-audit --no-fund --loglevel=error
	touch $@

demo: $(INSTALLED)
	$(BIN)/medkg kg build --source open --data-dir $(DATA) --out $(OUT)/open-kg
	$(BIN)/medkg kg load $(OUT)/open-kg
	$(BIN)/medkg kg load $(OUT)/open-kg --quiet
	$(BIN)/medkg kg info
	$(BIN)/medkg kg lookup "pleural efusion" --limit 5
	$(BIN)/medkg kg neighbors RADLEX:RID34539 --rel IS_A LOCATED_AT --depth 2 --limit 15
	$(BIN)/medkg kg query "MATCH (f:Concept)-[r:LOCATED_AT]->(a:Concept) WHERE r.source = \$$src RETURN f.name AS finding, a.name AS anatomy, r.support AS reports ORDER BY reports DESC LIMIT \$$n" --param src=IUXRAY --param n=8

test: $(INSTALLED) $(PARSER)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(OUT) .pytest_cache
