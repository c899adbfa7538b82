#!/usr/bin/env bash
# Create .venv with the pinned dependencies. Idempotent: a no-op (well under a second) when pyproject.toml and
# constraints.txt have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "setup: Python 3.11 is required (tensorflow 2.15 + nncf 2.19); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade "pip>=24"
  # --pre: tflite-micro publishes pre-release wheels only; constraints.txt pins every other package exactly.
  .venv/bin/python -m pip install --quiet --pre -c constraints.txt -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
