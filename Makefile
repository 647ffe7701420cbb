# Quick start: `make demo` runs the offline demo end to end; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= $(shell nproc)
# GPU-tagged jobs run at most one per GPU; a machine without a GPU runs them on its cores.
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
GPU_SLOTS := $(if $(filter-out 0,$(GPUS)),$(GPUS),$(CORES))
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default \
	--resources gpu=$(GPU_SLOTS)
# Debian packages: the demo's offline data, and (for the tests) a local SLURM cluster and
# rsync (inputs staged to node-local scratch, docs/slurm.md §9).
DEMO_PACKAGES := wordnet-base dataset-fashion-mnist tuxpaint-stamps-default
TEST_PACKAGES := $(DEMO_PACKAGES) slurmctld slurmd slurm-client munge rsync
export HF_HUB_OFFLINE := 1

.PHONY: demo test setup test-setup system-packages report lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch's default build carries its CUDA libraries: .venv takes about 7 GB of disk.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]" || { \
	  echo "pip could not install the package into $(VENV) (it needs about 7 GB free;" \
	    "free here: $$(df -h --output=avail . | tail -1 | tr -d ' '))" >&2; exit 1; }
	touch $@

# Installs the Debian packages named in PACKAGES that are missing, when run as root.
system-packages:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages: $$missing (run as root or: sudo apt-get install $$missing)"; \
	  fi; \
	fi

setup: $(VENV)/.installed
	@$(MAKE) --no-print-directory system-packages PACKAGES="$(DEMO_PACKAGES)"

test-setup: $(VENV)/.installed
	@$(MAKE) --no-print-directory system-packages PACKAGES="$(TEST_PACKAGES)"

demo: setup
	$(SNAKEMAKE)
	$(SNAKEMAKE) --report results/report.html
	@cat results/demo/summary.md
	@echo "Demo finished: tables in results/tables/, plots in results/plots/, report in results/report.html"
	@echo "Score a folder of new images with the demo's ClusterMine detector (docs/deploy.md):"
	@echo "  $(BIN)/clustermine score results/demo-minilm/detectors/fmnist.clustermine.h5 resources/demo/digits-heldout"

report: setup
	$(SNAKEMAKE) --report results/report.html

test: test-setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs benchmarks/*/ .snakemake
