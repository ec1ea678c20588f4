# The two set-up commands: `make run` (the tiny RLHF pipeline end to end through kfp.local)
# and `make test` (the whole test suite). Both install what they need into .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install run test compile bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[qlora,tracking,cluster,test]"
	touch $@

run: install
	$(BIN)/rlhf run --output runs/latest

test: install
	$(BIN)/python -m pytest -q

# Regenerate the committed compiled pipelines and their kustomize copy (a test checks drift).
compile: install
	$(BIN)/rlhf compile --output pipelines/compiled --manifests manifests/base/pipelines

clean:
	rm -rf runs .pytest_cache
