#!/usr/bin/env bash
# The test command of the README (and of CI): set up, lint, run every test, then run the core
# tests a second time on numpy 1.26 (the numpy of the ROS distros).
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# One BLAS/OpenMP thread per process: node tests run several processes on 2 cores, and
# oversubscribed OpenMP threads spin (measured: 0.5 s instead of 11 ms per event step).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash tools/setup.sh --test --ros
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
bash tools/setup.sh --test --numpy1 --venv .venv-np126
.venv-np126/bin/python -c 'import numpy, cv2; print("numpy", numpy.__version__, "opencv", cv2.__version__)'
.venv-np126/bin/python -m pytest -q -m "not ros and not slow" "$@"
