# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up here.
# The distribution's optimised python3 first (scripts/python.sh says why).
PYTHON ?= $(shell scripts/python.sh)
VENV   ?= .venv
BIN     = $(VENV)/bin
PG_DIR ?= /tmp/nccid-pg-$(shell id -u)
PG_PORT ?= 55432
PG_URL  = postgres://postgres@127.0.0.1:$(PG_PORT)
OUT    ?= test-output

.PHONY: setup run test test-sqlite test-postgres lint bench clean system-deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The tests also drive the optional PyTorch extra (a CPU build, pinned in pyproject.toml).
$(BIN)/.installed-torch: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,torch]'
	touch $@

setup: $(BIN)/.installed

system-deps:
	scripts/system-deps.sh

run: setup
	$(BIN)/nccid run

lint: setup
	$(BIN)/ruff check src tests conftest.py tools bench

test: setup $(BIN)/.installed-torch system-deps lint test-sqlite test-postgres

test-sqlite:
	mkdir -p $(OUT)
	$(BIN)/python -m pytest -p no:randomly --junitxml=$(OUT)/sqlite.xml

# The database tests again, on a real PostgreSQL server started for the run.
test-postgres:
	scripts/pg-scratch.sh start $(PG_DIR) $(PG_PORT)
	DATABASE_URL=$(PG_URL)/nccid VAULT_DATABASE_URL=$(PG_URL)/nccid_vault \
	  $(BIN)/python -m pytest -m "django_db and not browser" --junitxml=$(OUT)/postgres.xml; \
	  status=$$?; scripts/pg-scratch.sh stop $(PG_DIR); exit $$status

bench: setup system-deps
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) var test-output .test-var
