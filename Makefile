# Two entry points: `make run` (whole pipeline, embedded defaults) and `make test`.
# Both create .venv and install the project on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m ecommerce.devstack

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Everything but the slow fault tests: for the edit-test loop (CI runs `make test`).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

# Needs a broker, Redis and a database: set KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and
# DATABASE_URL (PostgreSQL recommended), e.g. against `make run`'s services or compose.
bench: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bench_pipeline --orders 500 --concurrency 8

clean:
	rm -rf $(VENV) .run db.sqlite3*
