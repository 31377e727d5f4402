# M890: every target bootstraps the virtual environment itself (pinned in pyproject.toml).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= TINY
JOBS   ?= 2

.PHONY: help setup demo test test-fast sim verilog lint bench regs clean

help:
	@echo "make demo      set up, then run the Qwen demo on the Verilated M890 chip"
	@echo "               (DEMO_PROMPT=..., DEMO_TOKENS=20, DEMO_FMT=fp8, DEMO_PRESET=M890)"
	@echo "make test      set up, then run the whole regression (golden, pysim, Verilator)"
	@echo "make test-fast the tests that need no Verilator"
	@echo "make sim       the cocotb/Verilator regression including the long sweeps"
	@echo "make verilog   Verilog for PRESET=$(PRESET) into build/verilog/<preset>, linted"
	@echo "make lint      ruff, plus Verilator -Wall on every top of every preset"
	@echo "make bench     measured performance (MXU, VPU, DMA, overlap, sim speed) into build/bench/"
	@echo "make regs      regenerate firmware/regs.py and docs/regs.md from rtl/cmd/regs.py"
	@echo "make clean     remove build outputs (keeps .venv)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ref]'
	@touch $@

setup: $(STAMP)

DEMO_MODEL  ?= models/tiny-qwen3-bytes
DEMO_PROMPT ?= Return the 
DEMO_TOKENS ?= 20
DEMO_FMT    ?= fp8
DEMO_PRESET ?= M890

demo: $(STAMP)
	$(BIN)/m890 run --model $(DEMO_MODEL) --prompt '$(DEMO_PROMPT)' --tokens $(DEMO_TOKENS) \
	    --fmt $(DEMO_FMT) --preset $(DEMO_PRESET) --sim rtl

test: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -m "not slow" --durations=15

test-fast: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -m "not sim and not slow"

bench: $(STAMP)
	$(BIN)/python -m scripts.bench --preset $(or $(BENCH_PRESET),M890)

regs: $(STAMP)
	$(BIN)/python -m scripts.gen_regs

sim: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -m "sim or slow" --durations=15

verilog: $(STAMP)
	$(BIN)/m890 verilog --preset $(PRESET) -o build/verilog/$(PRESET) --lint

lint: $(STAMP)
	$(BIN)/ruff check .
	@for p in TINY M890 ZW810E FPGA_ECP5; do \
	    $(BIN)/m890 verilog --preset $$p -o build/verilog/$$p --lint || exit 1; done

clean:
	rm -rf build sim_build .pytest_cache
