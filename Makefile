# lmscope — every set-up step lives here, so a fresh machine needs only `make run` or `make test`.
# A second run reuses .venv (the stamp file below) and starts at once.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.lmscope-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lint run test test-fast browser-deps demo-models bench loadtest screenshots clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned: the CPU wheel on local disk. Anything unpinned would fetch a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the browser tests (never `playwright install`), at the path the tests and the bench
# use (a chromium elsewhere on PATH does not count: the tests would skip, or fail under CI=true).
CHROMIUM := /usr/bin/chromium
browser-deps:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) is still missing after apt-get install chromium" >&2; exit 1; }

# Style and layers: ruff, and import-linter's contracts in pyproject.toml (front ends -> model -> kernels).
lint: setup
	$(VENV)/bin/ruff check app model kernels bench tests
	$(VENV)/bin/lint-imports

run: setup
	$(VENV)/bin/lmscope app

test: setup browser-deps
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not browser and not slow"

demo-models: setup
	@# the real-English models (en-*) read WordNet and the fortunes where Debian installs them
	@test -f /usr/share/wordnet/data.noun -a -d /usr/share/games/fortunes || apt-get install -y wordnet-base fortunes fortunes-min
	$(VENV)/bin/lmscope demo-models --out assets/models

# Exits non-zero when any figure misses its target (`lmscope bench` returns 1). BENCH_ARGS=--full for the long run.
BENCH_ARGS ?=
bench: setup
	$(VENV)/bin/lmscope bench $(BENCH_ARGS)

# A screenshot of every page (docs/screenshots/*.png, 1400 wide, from the page top down to the figure shown, 256-colour PNG)
# taken by the browser tests on the demo models (assets/models).
screenshots: setup browser-deps
	LMSCOPE_SCREENSHOT_DIR=docs/screenshots OMP_NUM_THREADS=1 $(PY) -m pytest -m browser tests/app/test_browser_pages.py -q

# 20 concurrent sessions (chromium tabs) for 3 minutes against `lmscope app` while a training job runs
# (docs/reliability.md). LOADTEST_ARGS="--minutes 2 --tiny" for tiny models when assets/models is not there.
LOADTEST_ARGS ?=
loadtest: setup browser-deps
	$(PY) -m bench.loadtest $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
