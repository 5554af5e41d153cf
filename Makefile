# Set-up, main job and tests.  `make main` and `make test` do their own set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := PIP_CONSTRAINT=$(CURDIR)/requirements/constraints.txt $(VENV)/bin/pip
STAMP := $(VENV)/.aamn-setup-stamp
SETUP_INPUTS := setup.py requirements/constraints.txt tools/install_detectron2.py Makefile

.PHONY: setup browser main test clean-venv

setup: $(STAMP)

# Idempotent: re-runs only when one of SETUP_INPUTS changed (a second `make setup` takes seconds).
$(STAMP): $(SETUP_INPUTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel "setuptools>=77,<81"
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	PIP_CONSTRAINT=$(CURDIR)/requirements/constraints.txt $(PY) tools/install_detectron2.py
	$(PIP) install -q -e ".[dev]"
	# the DAVIS evaluation's Jaccard and F (tests/test_jf.py checks aamn.evaluation.jf against
	# them): its sdist builds with the venv's Cython and numpy
	$(PIP) install -q --no-build-isolation --no-deps davisinteractive==1.0.4
	$(PY) -c "import aamn, detectron2, torch; print('aamn set-up OK: torch', torch.__version__, '| detectron2', detectron2.__version__)"
	touch $(STAMP)

# The main job: synthetic benchmark -> flow -> detector -> proposals -> AAMN -> evaluation -> drawings.
main: setup
	$(PY) tools/run_main_job.py

# Debian's chromium and chromium-driver for the browser test (tests/test_web_demo.py).  As root
# they are installed; as another user, the command to install them is printed and the browser
# test is skipped (pytest names the reason in its summary).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; \
	else \
	  echo "note: the browser test needs Debian's chromium and chromium-driver; install them" \
	    "with: sudo apt-get install chromium chromium-driver (until then it is skipped)"; \
	fi

# The test suite (CI runs exactly this through .ci/run).
test: setup browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rs -n 2 tests

clean-venv:
	rm -rf $(VENV)
