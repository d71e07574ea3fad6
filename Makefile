# The two commands of the README: `make up` (run walvus) and `make test` (run the tests).
# Both install what they need first: a virtualenv with the pinned packages, and Kafka's jars.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install up test lint bench clean

# requirements-clients.lock: the client libraries the tests drive (langchain-milvus, llama-index),
# and requirements-test.lock: the tests' S3 server (moto), both installed with --no-deps (the lock
# files say why).
$(BIN)/walvus: pyproject.toml requirements.lock requirements-clients.lock requirements-test.lock
	command -v java >/dev/null && command -v mvn >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -r requirements-clients.lock
	$(BIN)/pip install -q --no-deps -r requirements-test.lock
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -c "from walvus.kafka import resolve_jars, DEFAULT_CACHE_DIR; print('kafka jars:', resolve_jars(DEFAULT_CACHE_DIR))"
	touch $(BIN)/walvus

install: $(BIN)/walvus

up: install
	$(BIN)/walvus up

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/pip install -q -r requirements-bench.lock
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.fulltext

clean:
	rm -rf $(VENV) .walvus
