# The two README commands are `make demo` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_MODEL := var/models/demo
DEMO_IDS := reuters-42 reuters-873 reuters-1072

.PHONY: demo demo-serve test lint install serve clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/recs train --articles data/sample/reuters-sample.jsonl --out $(DEMO_MODEL) --k 20
	$(BIN)/recs related $(DEMO_IDS) --model $(DEMO_MODEL) --k 5
	$(BIN)/recs similarity reuters-42 reuters-232 --model $(DEMO_MODEL) --explain

test: $(VENV)/.installed
	@command -v redis-server >/dev/null || { echo "redis-server is needed by the tests: apt-get install redis-server"; exit 2; }
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

serve: $(VENV)/.installed
	$(BIN)/recs serve --model $(DEMO_MODEL)

# The widget demo: train the sample (and one sponsored story, pinned by the demo rules file),
# serve it without Redis, open the printed URL.
DEMO_PORT ?= 8000
demo-serve: $(VENV)/.installed
	$(BIN)/recs train --articles data/sample/reuters-sample.jsonl --articles data/sample/demo-sponsored.jsonl --out $(DEMO_MODEL) --k 20
	@echo "widget demo: http://127.0.0.1:$(DEMO_PORT)/demo  (Ctrl-C to stop)"
	RECS_RULES_FILE=data/sample/demo-rules.json $(BIN)/recs serve --model $(DEMO_MODEL) --port $(DEMO_PORT)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
