#!/usr/bin/env bash
# Install the peer ComSeg (PyPI `comseg`) in its OWN virtual environment, next to this script:
#   benchmarks/peers/.venv-comseg   (git-ignored)
# The benchmark (benchmarks/quality.py) runs benchmarks/peers/run_comseg.py with that venv's python
# in a child process; nothing of ComSeg is imported into the project's venv.
# Usage: bash benchmarks/peers/setup_comseg.sh [PYTHON]     (default: python3)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${1:-python3}"
VENV="$HERE/.venv-comseg"
COMSEG_VERSION="${COMSEG_VERSION:-1.8.5}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
# pyarrow: to read/write the parquet tables the benchmark exchanges with the child
"$VENV/bin/pip" install -q "comseg==${COMSEG_VERSION}" pyarrow
"$VENV/bin/python" -c "import comseg, sys; print('comseg', getattr(comseg, '__version__', '${COMSEG_VERSION}'), 'python', sys.version.split()[0])"
touch "$VENV/.installed"
