# Two commands matter: `make run` (replay mode, the main job) and `make test`.
# Both bootstrap: they create .venv, install the pinned dependencies and generate the gRPC code.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
GEN    := gen
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: setup protos run test lint clean firmware-test

setup: $(VENV)/.installed $(GEN)/.generated

$(VENV)/.installed: pyproject.toml constraints.txt
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

test: setup firmware-test
	$(PY) -m pytest

# Host build of the firmware's protocol parser (plain C++, no Arduino), with sanitizers.
FW := firmware/trader_display
firmware-test:
	mkdir -p build/firmware
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -fsanitize=address,undefined -I $(FW) \
		$(FW)/protocol.cpp firmware/test/test_protocol.cpp -o build/firmware/test_protocol
	$(CXX) -std=c++17 -Wall -Wextra -Werror -I $(FW) $(FW)/protocol.cpp firmware/test/reply_filter.cpp \
		-o build/firmware/reply_filter
	build/firmware/test_protocol

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(GEN) var build
