# Two commands: `make run` opens the app, `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: run test setup data bench clean screenshot dist

run: $(STAMP)
	$(VENV)/bin/robustlens

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

setup: $(STAMP)

# Installs into .venv without ever pulling CUDA packages. Where this machine's CPU torch wheel is
# available locally (pip's find-links), constraints.txt pins it; elsewhere torch comes from PyTorch's
# CPU index first. tools/check_no_cuda.py then fails fast if the resolver planned any CUDA package.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if $(PIP) download --no-deps --no-index -q -d $(VENV)/.probe "torch==2.13.0+cpu" >/dev/null 2>&1; then \
		echo "using the local CPU torch wheel (constraints.txt)"; \
		$(PIP) install -q --dry-run --ignore-installed --report $(VENV)/plan.json -c constraints.txt -e ".[dev]" && \
		$(PY) tools/check_no_cuda.py $(VENV)/plan.json && \
		$(PIP) install -q -c constraints.txt -e ".[dev]"; \
	else \
		$(PIP) install -q torch torchvision --index-url $(TORCH_CPU_INDEX) && \
		$(PIP) install -q --dry-run --report $(VENV)/plan.json -e ".[dev]" && \
		$(PY) tools/check_no_cuda.py $(VENV)/plan.json && \
		$(PIP) install -q -e ".[dev]"; \
	fi
	rm -rf $(VENV)/.probe
	touch $(STAMP)

# The full 60,000-image Fashion-MNIST (Debian's dataset-fashion-mnist), used for training when present.
data:
	@if command -v apt-get >/dev/null; then apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist); \
	else echo "apt-get not available: training uses the built-in 12,000-image subset"; fi

bench: $(STAMP)
	$(PIP) install -q -c constraints.txt -e ".[dev,bench]" || echo "adversarial-robustness-toolbox unavailable: its comparison is skipped"
	for f in bench/bench_*.py; do QT_QPA_PLATFORM=offscreen $(PY) $$f || exit 1; done

# The wheel (dist/robustlens-*.whl): every package and resource under src/, nothing from the checkout.
dist: $(STAMP)
	$(PIP) wheel -q --no-deps --no-build-isolation -w dist .

# Every picture under docs/ (tools/screenshots.py --list shows them); SHOTS=attacks for some of them.
screenshot: $(STAMP)
	$(PY) tools/screenshots.py $(SHOTS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info
