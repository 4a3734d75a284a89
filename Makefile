# Two commands matter: `make run` (replay mode, the main job) and `make test`.
# Both bootstrap: they create .venv, install the pinned dependencies and generate the gRPC code.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
GEN    := gen
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: setup check-python protos run test lint clean firmware-test container-test

setup: $(VENV)/.installed $(GEN)/.generated

# Any Python 3.11.x works (Debian 12's 3.11.2 included), with its venv module.
check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "make setup needs Python 3.11 (any 3.11.x) as '$(PYTHON)', which is not on PATH." >&2; \
		echo "Install it (Debian/Ubuntu: apt-get install python3.11 python3.11-venv) or name it: make setup PYTHON=/path/to/python3.11" >&2; \
		exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
		echo "make setup needs Python 3.11 (any 3.11.x); '$(PYTHON)' is $$($(PYTHON) -V 2>/dev/null || echo 'not runnable')." >&2; \
		echo "Name a 3.11 interpreter: make setup PYTHON=/path/to/python3.11" >&2; \
		exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "'$(PYTHON)' ($$($(PYTHON) -V 2>&1)) has no venv/ensurepip module: install python3.11-venv (Debian/Ubuntu)." >&2; \
		exit 1; }

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# gen/ holds the generated code, importable as trader.<service>.v1 (see protos/)
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "trader_generated.pth").write_text("$(CURDIR)/$(GEN)\n")' 
	touch $@

protos: $(GEN)/.generated

$(GEN)/.generated: $(VENV)/.installed $(PROTOS)
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(GEN) --pyi_out=$(GEN) \
		--grpc_python_out=$(GEN) $(PROTOS)
	find $(GEN)/trader -type d -exec touch {}/__init__.py \;
	touch $@

run: setup
	$(PY) -m gateway.launch

# pytest includes the offline validation of docker-compose.yml and deploy/k8s (tests/test_deploy.py).
test: setup firmware-test
	$(PY) -m pytest

# Host build of the firmware's protocol parser (plain C++, no Arduino), with sanitizers where the
# compiler can build and run them (tried on a tiny program first); otherwise without, and said so.
FW := firmware/trader_display
FW_BUILD := build/firmware
firmware-test:
	@mkdir -p $(FW_BUILD)
	@if ! command -v $(firstword $(CXX)) >/dev/null 2>&1; then \
		echo "SKIPPED firmware host tests: no C++ compiler ('$(CXX)'; install g++ or set CXX)"; exit 0; fi; \
	sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"; \
	printf 'int main() { int v[2] = {0, 1}; return v[1] - 1; }\n' > $(FW_BUILD)/sanitizer_probe.cpp; \
	if ! { $(CXX) $$sanitize $(FW_BUILD)/sanitizer_probe.cpp -o $(FW_BUILD)/sanitizer_probe \
			&& $(FW_BUILD)/sanitizer_probe; } > $(FW_BUILD)/sanitizer_probe.log 2>&1; then \
		echo "firmware host tests: '$(CXX)' cannot build and run a program with $$sanitize" \
			"(see $(FW_BUILD)/sanitizer_probe.log); SKIPPED the sanitizer checks, running the tests without them"; \
		sanitize=""; fi; \
	set -ex; \
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic $$sanitize -I $(FW) \
		$(FW)/protocol.cpp firmware/test/test_protocol.cpp -o $(FW_BUILD)/test_protocol; \
	$(CXX) -std=c++17 -Wall -Wextra -Werror -I $(FW) $(FW)/protocol.cpp firmware/test/reply_filter.cpp \
		-o $(FW_BUILD)/reply_filter; \
	$(FW_BUILD)/test_protocol

# Builds the image with podman from a local Debian base, starts docker-compose.yml with
# podman-compose and runs a cycle through grpcurl (deploy/container-test.sh). Prints SKIPPED and
# succeeds where this machine cannot run containers.
container-test: setup
	deploy/container-test.sh

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(GEN) var build
