# Quick start:  make run   (demo end to end)      make test   (the test suite)
# Each creates .venv on first use; a second call reuses it unless pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# one log line per node, unwrapped, when the output is not a terminal
export COLUMNS ?= 160

.PHONY: run test venv browser viz pictures clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch and torchvision first, from the releases that lie on this machine's disk
	$(BIN)/pip install --quiet "torch>=2.4,<=2.14.1" "torchvision>=0.19,<=0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The whole demo. The phantom dataset and the demo encoder are made once (skipped when they
# exist); the analysis (`kedro run`, the __default__ pipeline) writes a new version each time.
run: $(STAMP)
	$(BIN)/kedro run --pipelines demo_data,data_validation,study_design,encoder_training --only-missing-outputs
	$(BIN)/kedro run

# Debian's chromium for the kedro-viz browser test (Playwright cannot download its own here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest

viz: $(STAMP)
	$(BIN)/kedro viz run

# The README's pictures (docs/images/) from the latest `make run`, and kedro-viz screenshots.
pictures: $(STAMP) browser
	$(BIN)/python scripts/readme_pictures.py

clean-venv:
	rm -rf $(VENV)
