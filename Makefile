# The two commands of the README. Each does its own setup first (idempotent).
.PHONY: run test test-truth test-matrix setup setup-scaleout

run:
	bash scripts/setup.sh
	.venv/bin/python app.py

# two pytest workers (pytest-xdist), a file each at a time, one torch thread each: most
# tests wait on a subprocess, a browser or a socket, so two at once on 2 cores took the
# suite from ~20 to ~12.5 minutes. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
test:
	bash scripts/setup.sh --dev
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile

setup:
	bash scripts/setup.sh --dev

# held-out learning targets (minutes of CPU training each). One torch thread: the tiny
# models train faster on one than on two here, and the recipes were measured that way
# (float sums in another order give a slightly different model, and RL amplifies it).
test-truth:
	bash scripts/setup.sh --dev
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m truth

# the architecture grid: fifteen tiny real-family models x the 18 method/regime combinations
# (each saved, reloaded, merged, chatted with); seconds per run land in bench/results/matrix_times.json
test-matrix:
	bash scripts/setup.sh --dev
	OMP_NUM_THREADS=1 STUDIO_MATRIX_TIMES=bench/results/matrix_times.json .venv/bin/python -m pytest -q -p no:cacheprovider -m matrix tests/test_arch_matrix.py

# the GPU path measured (#26): on a GPU machine, with the wheels it lacks (bench/gpu_wheels.sh,
# run where pip reaches the registry); JSON in bench/results/gpu_check.json. --cpu: toy sizes
.PHONY: gpu-check gpu-wheels
gpu-check:
	python bench/gpu_check.py --wheels bench/wheels --out $${OUT:-bench/results}/gpu_check.json

gpu-wheels:
	bash bench/gpu_wheels.sh bench/wheels

setup-scaleout:
	bash scripts/setup_scaleout.sh
