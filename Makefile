# The README's two commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test lint format bench clean fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install only when the package definition changes.
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[cli,ml-dtypes,sklearn,serve,batch]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[dev]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[bench]"
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.sklearn_models
	$(BIN)/python -m benchmarks.torch_models
	$(BIN)/python -m benchmarks.boosters
	$(BIN)/python -m benchmarks.store
	$(BIN)/python -m benchmarks.store_s3
	$(BIN)/python -m benchmarks.loads --boosters --size-mb 1024
	$(BIN)/python -m benchmarks.verify
	$(BIN)/python -m benchmarks.keras_onnx
	$(BIN)/python -m benchmarks.scanners
	$(BIN)/python -m benchmarks.serve
	$(BIN)/python -m benchmarks.batch
	$(BIN)/python -m benchmarks.compression

# Long fuzzing runs (the test suite runs short derandomized ones). `make fuzz` runs every
# fuzzer below, FUZZ_SECONDS each, and fails when any of them found something.
FUZZ_SECONDS ?= 600
FUZZ_SEED ?= $(shell date +%s)
FUZZ_BATCH ?= 200
FUZZ_MINIMIZE ?= 20
FUZZ_OUT ?= build/fuzz

.PHONY: fuzz-gadgets
fuzz: $(VENV)/.installed-test
	status=0; \
	$(MAKE) --no-print-directory fuzz-gadgets || status=1; \
	$(MAKE) --no-print-directory fuzz-sklearn || status=1; \
	$(MAKE) --no-print-directory fuzz-legacy || status=1; \
	exit $$status

# Gadget fuzzer (tests/graph/_gadget_child.py): files whose object graph plants behaviour
# that runs when the model is used; draws batches of FUZZ_BATCH synthesized and FUZZ_BATCH
# mutated files (plus tests/graph/gadget_corpus.json) for FUZZ_SECONDS, then reduces the
# first FUZZ_MINIMIZE groups of findings. Report: $(FUZZ_OUT)/gadgets/report.txt.
fuzz-gadgets: $(VENV)/.installed-test
	OMP_NUM_THREADS=1 $(BIN)/python tests/graph/_gadget_child.py $(FUZZ_OUT)/gadgets \
		--seed $(FUZZ_SEED) --seconds $(FUZZ_SECONDS) --synth $(FUZZ_BATCH) \
		--mutate $(FUZZ_BATCH) --minimize $(FUZZ_MINIMIZE) --corpus tests/graph/gadget_corpus.json

# The store's concurrency tests at full size on a real S3 server (moto, loopback):
# 8 processes x 25 saves of one name (the default suite runs 8 x 5 on S3).
.PHONY: s3-stress
s3-stress: $(VENV)/.installed-test
	AMBER_S3_STRESS=1 $(BIN)/python -m pytest -q tests/store/test_concurrency.py -k s3

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis

# Structure-aware mutation fuzzer of scikit-learn models (tests/adapters/sklearn_fuzz.py):
# mutates the compiled members and owner fields of fitted models, loads each file and
# calls every prediction method in a forked child; crashes (signal deaths) go to
# $(FUZZ_OUT)/sklearn/crashes.jsonl with their files. Fails when a model crashed.
.PHONY: fuzz-sklearn
fuzz-sklearn: $(VENV)/.installed-test
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tests.adapters.sklearn_fuzz \
		--seconds $(or $(FUZZ_SECONDS),600) --seed $(or $(FUZZ_SEED),0) \
		--out $(or $(FUZZ_OUT),build/fuzz)/sklearn

# Pickle reader fuzzer (tests/legacy/test_fuzz.py): random and mutated pickles, each
# refused or converted exactly as pickle.loads reads it; FUZZ_EXAMPLES per property.
.PHONY: fuzz-legacy
fuzz-legacy: $(VENV)/.installed-test
	AMBER_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),20000) $(BIN)/python -m pytest -q \
		-p no:cacheprovider tests/legacy/test_fuzz.py
