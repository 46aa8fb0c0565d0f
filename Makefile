# ippbx developer commands. `make run` serves the demo PBX; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEBS := sip-tester:sipp wrk:wrk baresip:baresip rtpengine-daemon:rtpengine chromium:chromium \
  chromium-driver:chromedriver janus:janus gcc:gcc
# The compiled SIP stack and PBX call path (tools/build_native.py): checked whenever a
# module changes (the script says which it compiles and which their types come from, and
# rebuilds only where a digest differs).
NATIVE := src/ippbx/sip/_native/manifest.json

.PHONY: run test test-unit test-fast lint debs venv clean bench fuzz prompts native

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ippbx needs Python >= 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { echo "python3 -m venv failed: install Debian's python3-venv"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,native]'
	@touch $@

venv: $(STAMP)

# Debian packages the tests use (sipp from sip-tester, wrk, baresip) and ippbx runs
# (rtpengine from rtpengine-daemon, the media engine; janus, the conference mixer; gcc and
# Python's headers, which compile the SIP stack); installed only when missing.
debs:
	@missing=""; for pair in $(DEBS); do pkg=$${pair%%:*}; cmd=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	$(PYTHON) -c 'import os, sysconfig, sys; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# ippbx.sip and the PBX's call path compiled to C by mypyc, beside their source
# (ippbx/native.py loads them only while they match that source). `make run` goes on in
# Python where they cannot be built.
native: $(NATIVE)

$(NATIVE): $(STAMP) tools/build_native.py $(shell find src/ippbx -name "*.py")
	$(BIN)/python tools/build_native.py --if-stale
	@touch $@

run: $(STAMP) debs
	@$(MAKE) -s native || echo "ippbx: the SIP stack could not be compiled; it runs as Python"
	$(BIN)/ippbx serve --config examples/demo.toml

# Sandbox: the demo PBX plus simulated phones and a carrier placing calls (`ippbx demo`).
# Options through DEMO_ARGS, e.g. make demo DEMO_ARGS="--seed 7 --duration 60 -v".
.PHONY: demo
demo: $(STAMP)
	$(BIN)/ippbx demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools

# Every test on the compiled code, then the unit tests of what is compiled (the SIP stack,
# the PBX) on its Python source.
test: $(STAMP) debs lint native
	$(BIN)/pytest
	IPPBX_PURE=1 $(BIN)/pytest -q tests/unit/sip tests/unit/pbx tests/unit/test_native.py

# The fast tiers: the sans-IO unit tests alone (no sockets, ~30 s), and everything but
# the tests marked slow.
test-unit: $(STAMP) native
	$(BIN)/pytest -q tests/unit

test-fast: $(STAMP) debs native
	$(BIN)/pytest -q -m "not slow"

# The SIP stack fuzzed far longer than in `make test` (mutated RFC 4475 messages and
# arbitrary bytes, UDP and TCP): FUZZ_EXAMPLES per transport, about 4 s per thousand.
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SIP_PROPS_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/unit/sip/test_fuzz_stack.py tests/unit/sip/test_message_props.py tests/unit/pbx/test_early_dialog_fuzz.py

# The built-in voice prompts of src/ippbx/prompts/, made again from espeak-ng's voice
# (needs Debian's espeak-ng and sox; the script itself is stdlib only).
prompts:
	$(PYTHON) tools/make_prompts.py

bench: $(STAMP) debs
	@echo "see bench/README in BENCHMARKS.md for the scripts"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/ippbx/sip/_native src/ippbx/pbx/_native
