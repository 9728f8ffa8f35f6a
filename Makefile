# Each target creates the virtual environment (.venv) when it is missing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: install demo test test-slow example lo-to bench bench-nve
install: $(VENV)/.installed

demo: install  ## the main job: NVT of ethanol in a time-varying field with the shipped model, IR spectrum
	$(PY) simulations/ethanol_ir.py

test: install  ## the test suite (what CI runs), on two workers
	$(PY) -m pytest -q -n 2

test-slow: install  ## the tests kept out of `make test` for time: multi-device runs on 4 forced CPU devices, CLI train/predict end to end
	$(PY) -m pytest -q -m slow

example: install  ## the README quickstart: NVT of ethanol in a time-varying field
	$(PY) simulations/quickstart.py

lo-to: install  ## LO-TO splitting of NaCl: rigid-ion force constants + Z*, eps_inf from becs-eps + phonopy NAC
	$(PY) simulations/lo_to_splitting.py

bench: install  ## benchmarks; write benchmarks/results/
	$(PY) benchmarks/bench_md_step.py
	$(PY) benchmarks/bench_field_response.py
	$(PY) benchmarks/harmonic_ir_vs_xtb.py
	$(PY) benchmarks/becs_eps_accuracy.py

bench-nve: install  ## long-run stability: 1 ns NVE of ethanol with the shipped model, float32 and float64 (hours on 2 cores)
	$(PY) benchmarks/nve_stability.py
