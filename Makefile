# The two commands a new user needs: `make run` and `make test`.
# Both install what is missing first (system packages, a virtualenv, the package).

PYTHON ?= python3

# Python keeps compiled modules in __pycache__ (ignored by git). Where the environment turns
# that off (PYTHONDONTWRITEBYTECODE), every server, agent and CLI process a test starts
# compiles the package again, and every pytest worker rewrites every test module.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ./souverain-data
PYTEST_ARGS ?=
TINY_IMAGE := build/tiny/tiny.qcow2

CONFORMANCE_ARGS ?=

.PHONY: conformance run test test-postgresql install system-packages lint format typecheck unit api e2e vm bench bench-quick bench-ceph clean tiny-image

run: install tiny-image
	SOUVERAIN_IMAGE__TINY_IMAGE=$(abspath $(TINY_IMAGE)) $(BIN)/souverain serve --data-dir $(DATA_DIR)

# Test modules run in parallel, each whole on one worker (module fixtures start once); most
# of the wait is on guests, servers and clients in subprocesses, so workers outnumber cores.
# Workers take modules in the order tests/conftest.py sorts them (the long ones first), not
# xdist's default (the modules with most tests first, which left single long tests to the end).
PYTEST_WORKERS ?= 4

PYTEST_RUN = $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30

# The tests that touch the database run on SQLite here and again on PostgreSQL in
# `make test-postgresql` (CI runs both): every test of tests/api and tests/security, and
# the ones of tests/platform that take a `backend`. The platform modules whose subject is
# PostgreSQL itself (migrations, a restart under load, multi-host state, KMS rotation
# races) run on it here, and are not run again there.
IN_MAKE_TEST_ON_POSTGRESQL = test_migrations or test_postgres or test_host_migration or test_kms_purge

test: install lint typecheck tiny-image
	TESTS_DATABASES=sqlite $(PYTEST_RUN) $(PYTEST_ARGS)

test-postgresql: install tiny-image
	TESTS_DATABASES=postgresql $(PYTEST_RUN) -k "postgresql and not ($(IN_MAKE_TEST_ON_POSTGRESQL))" tests/api tests/security tests/platform $(PYTEST_ARGS)

install: $(STAMP)

system-packages:
	./scripts/install-system-packages

$(STAMP): pyproject.toml scripts/system-packages.txt
	./scripts/install-system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	./scripts/expose-ceph-bindings $(VENV)
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests bench scripts/build-tiny-image scripts/conformance bench/network/run bench/billing/run bench/floor/run bench/scale/run bench/ceph/run
	$(BIN)/ruff format --check src tests bench scripts/build-tiny-image scripts/conformance bench/network/run bench/billing/run bench/floor/run bench/scale/run bench/ceph/run

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: install
	$(BIN)/mypy src

unit: install
	$(BIN)/pytest -q tests/unit

api: install
	$(BIN)/pytest -q tests/api

e2e: install tiny-image
	$(BIN)/pytest -q tests/e2e tests/platform

vm: install tiny-image
	$(BIN)/pytest -q tests/vm

bench: install
	$(BIN)/python bench/identity/run
	bench/s3/run
	bench/s3_huge/run
	bench/compute/run
	bench/scale/run
	bench/network/run
	bench/volume/run
	bench/billing/run
	bench/ceph/run

# Every storing service on Ceph beside Ceph's own tools (radosgw, rbd bench, rbd clone):
# private clusters started and removed by the bench; as root.
bench-ceph: install tiny-image
	bench/ceph/run

# The floors each hot path must hold (bench/floors.toml), from the quick benches: about
# 10 minutes, exits non-zero naming each broken floor. Not part of `make test`.
bench-quick: install
	$(BIN)/python bench/floor/run

# OpenStack's own conformance suite (Tempest, the interop guideline's 275 tests) against a
# fresh cloud; several minutes, not part of `make test`. CONFORMANCE_ARGS="--filter volume"
conformance: install tiny-image
	$(BIN)/python scripts/conformance $(CONFORMANCE_ARGS)

tiny-image: install
	./scripts/build-tiny-image --output $(TINY_IMAGE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
