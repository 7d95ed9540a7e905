# Developer and CI entry points.  `make test` is what .ci/run runs; everything starts its own throwaway
# servers (bulkmig/demo/servers/), so nothing needs to be running beforehand.
#
# Everything runs in the project's own virtualenv (.venv, made by `make install` when missing), never in
# whatever the machine's python3 happens to have: what works here works after a clean `pip install`.

VENV ?= .venv
BOOTSTRAP_PYTHON ?= python3
PYTHON ?= $(VENV)/bin/python
# Test files run on this many processes (pytest-xdist, a file stays on one process: its module fixtures once).
TEST_JOBS ?= 2
ARGS ?=
PYTEST_ARGS ?=
# Quiet pip when CI runs it as root; older pips ignore variables they do not know.
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install lint test soak demo bench clean distclean

install:
	bash .ci/system-deps
	@test -x $(PYTHON) || $(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install -q -e '.[test]'

lint:
	$(PYTHON) -m ruff check bulkmig tests bench setup.py
	$(PYTHON) -m ruff format --check bulkmig tests bench setup.py

# pytest exits 5 when it collected nothing: a broken conftest or a wrong path must not pass as green.
test: install
	@$(MAKE) --no-print-directory lint
	@rc=0; $(PYTHON) -m pytest -q -ra --durations=40 -n $(TEST_JOBS) --dist loadfile tests $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; counting that as a failure" >&2; exit 1; fi; \
	exit $$rc

# Minutes of full-load-and-cdc under pgbench with faults injected (tests/soak); `make test` skips it.
SOAK_SECONDS ?= 300
soak: install
	BULKMIG_SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) -m pytest -q -rA -s tests/soak $(PYTEST_ARGS)

demo: install
	$(PYTHON) -m bulkmig.demo $(ARGS)

bench: install
	$(PYTHON) -m pip install -q -e '.[bench]'
	$(PYTHON) -m bench $(ARGS)
	$(PYTHON) -m bench.mysql_target
	$(PYTHON) -m bench.replay
	$(PYTHON) -m bench.mysql_replay
	$(PYTHON) -m bench.capture
	$(PYTHON) -m bench.scaleout

clean:
	rm -rf build dist .eggs *.egg-info .pytest_cache .ruff_cache .mypy_cache bulkmig-demo  # .venv stays: make distclean
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
