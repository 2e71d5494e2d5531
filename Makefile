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

demo: $(INSTALLED)
	$(BIN)/medkg kg build --source open --data-dir $(DATA) --out $(OUT)/open-kg
	$(BIN)/medkg kg load $(OUT)/open-kg
	$(BIN)/medkg kg load $(OUT)/open-kg --quiet
	$(BIN)/medkg kg info
	$(BIN)/medkg kg lookup "pleural efusion" --limit 5
	$(BIN)/medkg kg neighbors RADLEX:RID34539 --rel IS_A LOCATED_AT --depth 2 --limit 15
	$(BIN)/medkg kg query "MATCH (f:Concept)-[r:LOCATED_AT]->(a:Concept) WHERE r.source = \$$src RETURN f.name AS finding, a.name AS anatomy, r.support AS reports ORDER BY reports DESC LIMIT \$$n" --param src=IUXRAY --param n=8
	MEDKG_DATA_DIR=$(DATA) $(BIN)/medkg extract index $(OUT)/open-kg
	MEDKG_DATA_DIR=$(DATA) $(BIN)/medkg extract run $(DATA)/iu-xray/NLMCXR_reports.tgz --kg $(OUT)/open-kg --out $(OUT)/iu-mentions.jsonl --workers 2 --link
	MEDKG_DATA_DIR=$(DATA) $(BIN)/medkg extract labels $(DATA)/iu-xray/NLMCXR_reports.tgz --kg $(OUT)/open-kg --label-set chestxray14 --out $(OUT)/iu-chestxray14.csv --workers 2
	$(BIN)/medkg kg query "MATCH (r:Report)-[m:MENTIONS]->(c:Concept) WHERE m.assertion = \$$a AND m.section <> \$$s AND c.\`group\` = \$$g RETURN c.name AS finding, count(DISTINCT r) AS reports ORDER BY reports DESC LIMIT 8" --param a=present --param s=INDICATION --param g=DISO
	$(BIN)/medkg embed knowledge --kg $(OUT)/open-kg --out $(OUT)/knowledge-encoder --steps 150 --batch-size 32 --lr 1e-4
	$(BIN)/medkg embed text "fluid in the pleural space" "enlarged heart" "collapsed lung" --kg $(OUT)/open-kg --encoder $(OUT)/knowledge-encoder --limit 3
	$(BIN)/medkg embed train --kg $(OUT)/open-kg --model rotate --text-encoder $(OUT)/knowledge-encoder --epochs 40 --out $(OUT)/kge
	$(BIN)/medkg embed eval $(OUT)/kge
	$(BIN)/medkg embed export $(OUT)/kge --graph
	$(BIN)/medkg kg similar RADLEX:RID34539 --limit 8

test: $(INSTALLED) $(PARSER) $(CHROMIUM)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(OUT) .pytest_cache
