#!/usr/bin/env bash
# The Python package's tests: a venv of its own under target/ (never torch), the package
# installed with the README's command, then pytest (summaries, models, errors, threads,
# images and the example notebook).
set -euo pipefail
cd "$(dirname "$0")/.."
# The bindings' own Rust unit tests (the message translation), outside the default members.
cargo test --release -p vgg-python
venv=target/python-venv
python3 -m venv "$venv"
export PATH="$PWD/$venv/bin:$PATH"  # the build backend runs the venv's maturin
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet maturin numpy pytest nbclient nbformat ipykernel pillow onnxruntime
# The README's command, with the venv's maturin rather than a fresh isolated one.
"$venv/bin/pip" install --quiet --no-build-isolation ./bindings/python
"$venv/bin/python" -m pytest bindings/python/tests -q
