# rerankq: `make run` reranks an example job on this machine, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JOB ?= examples/pandas_en.jsonl
DEMO_MODEL := .models/tiny

.PHONY: install run test test-tf5 bench

$(BIN)/rerankq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/rerankq

# With RERANK_MODEL unset this builds a random-weight demo model (no download, scores mean nothing);
# set RERANK_MODEL=BAAI/bge-reranker-v2-m3 (or a local directory) for real rankings.
run: install
	@if [ -z "$$RERANK_MODEL" ]; then \
	  test -d $(DEMO_MODEL) || $(BIN)/rerankq build-test-model $(DEMO_MODEL); \
	  echo "RERANK_MODEL is unset: using the random-weight demo model $(DEMO_MODEL)"; \
	fi
	RERANK_MODEL=$${RERANK_MODEL:-$(DEMO_MODEL)} $(BIN)/rerankq run $(JOB) -o results.jsonl
	@head -n 3 results.jsonl

test: install
	$(BIN)/ruff check worker api migrations tests benchmarks
	$(BIN)/ruff format --check worker api migrations tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-tf5

# The engine's tests under transformers 5.x (the GPU image's version) in a venv of its own, kept
# between runs (installing it took 1m53s here; FlagEmbedding is not installed: its parity tests skip).
TF5 ?= /tmp/rerankq-tf5
test-tf5:
	test -x $(TF5)/bin/python || $(PYTHON) -m venv $(TF5)
	$(TF5)/bin/pip install -q torch==2.13.0 'transformers>=5,<6' 'sentence-transformers>=5' pydantic-settings celery redis sqlalchemy psycopg croniter numpy pytest hypothesis
	PYTHONPATH=$(CURDIR) $(TF5)/bin/pytest -q tests/unit/test_engine.py tests/unit/test_pairs.py

# Measurements behind the README's benchmark tables (about 50 minutes on 2 CPU cores; see benchmarks/).
bench: install
	$(BIN)/python -m benchmarks.engine --shapes base v2-m3 --dtypes fp32 bf16
	$(BIN)/python -m benchmarks.pipeline --pairs 20000
	$(BIN)/python -m benchmarks.bulk_writes --rows 20000
	$(BIN)/python -m benchmarks.forward_contention --pairs 5000
	$(BIN)/python -m benchmarks.knowledge_base --documents 200000 --queries 5 --workers 2
	$(BIN)/python -m benchmarks.sync_latency --requests 30
	$(BIN)/python -m benchmarks.sync_latency --requests 30 --task-pairs 64
	$(BIN)/python -m benchmarks.chaos --pairs 100000
