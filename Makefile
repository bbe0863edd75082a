# freqlens developer entry points. `make demo` and `make test` work on a fresh clone: the first call
# creates .venv and installs freqlens with torch 2.13.0 (CPU build) and the dev tools.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= runs/demo
# Real datasets: $FREQLENS_DATA, else ../shared/data beside the checkout when it exists.
DATA   ?= $(firstword $(FREQLENS_DATA) $(wildcard ../shared/data))
# Extras installed with freqlens: dev tools, the sweep engines so that the Ray/submitit tests run in CI, the
# report/tracking extras so that the HTML, TensorBoard, Lightning and W&B tests run.
EXTRAS ?= dev,ray,slurm,sweeps,report,tracking
# The CPU demo (~4-5 min on 2 cores): quick figures from each paper; experiments needing absent data are skipped,
# so without data it still runs the synthetic linear-CNN and bottleneck figures.
DEMO   ?= pinson-fig2 pinson-fig3 pinson-fig4 pinson-figS4 cbn-fig4 cbn-fig2 decoder-upsampling decoder-depth

.PHONY: install demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/freqlens reproduce $(DEMO) --quick --out $(OUT) $(if $(DATA),--data $(DATA))
	@echo "figures, data.npz and summary.json are in $(OUT)/<experiment>/"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	cd benchmarks && for b in *.py; do case $$b in _*) continue;; esac; echo "== $$b"; ../$(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
