# noisescope: the two commands a fresh clone needs, plus benchmarks.
#   make demo   set up .venv if missing, train on digits, record traces, open the viewer
#   make test   set up .venv if missing, run the whole test suite (browser tests included)
#   make bench  set up .venv if missing, run the benchmarks, print ratio tables
#   make lint   ruff and mypy;  make fuzz  thousands of damaged traces and a crash campaign (docs/reliability.md)

VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.noisescope-installed
# The CPU build of torch where there is no CUDA GPU: a CUDA build is gigabytes.
HAS_CUDA    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_CPU   ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP         := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench venv browser clean-venv fuzz lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) (first run only)"
	@test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(HAS_CUDA),yes)
	$(PIP) "torch>=2.2,<2.15"
else
	@# torch alone from the CPU index (its dependencies come from PyPI in the next step);
	@# offline mirrors with a local CPU wheel work too, the index failing fast.
	$(PIP) --no-deps --retries 1 --timeout 15 "$(TORCH_CPU)" --extra-index-url $(TORCH_INDEX) 2>&1 \
	  | grep -v -e "Retrying" -e "is ignored" || true
	@$(PY) -c "import importlib.metadata as m; m.version('torch')" 2>/dev/null \
	  || { echo "could not install $(TORCH_CPU) from $(TORCH_INDEX)"; exit 1; }
endif
	$(PIP) -e ".[test,diffusers]"
	@# k-diffusion, the reference of the sigma-space samplers' tests: without its dependencies (its package
	@# __init__ imports clip, kornia, wandb, torchvision); the tests load k_diffusion/sampling.py alone
	$(PIP) --no-deps "k-diffusion==0.1.1.post1"
	@touch $(STAMP)

# Debian's chromium for the browser tests (needs root and apt; skipped quietly otherwise).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: browser tests will be skipped"; \
	  else echo "chromium not found: browser tests will be skipped (install Debian's chromium package)"; fi; }

demo: $(STAMP)
	$(VENV)/bin/noisescope demo --out runs/demo

test: $(STAMP) browser
	$(PY) -m pytest

# ruff and mypy (configured in pyproject.toml); CI runs it after the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check tracer viewer benchmarks tests
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m benchmarks

# Thousands of damaged traces against inspect, check, recover and the reader, then the crash
# campaign (kills, full disk, live readers); docs/reliability.md. FUZZ_SEED replays a run.
FUZZ_COUNT ?= 3000
FUZZ_RUNS  ?= 3
fuzz: $(STAMP)
	$(PY) -m tests.fuzz --count $(FUZZ_COUNT) --workers 2 $(if $(FUZZ_SEED),--seed $(FUZZ_SEED)); \
	  status=$$?; $(PY) -m tests.fuzz.crash --runs $(FUZZ_RUNS) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED)) || status=1; exit $$status

clean-venv:
	rm -rf $(VENV)
