#!/usr/bin/env bash
# Runs the SIMD kernels' unit tests on an emulated Sapphire Rapids CPU (AVX-512, AVX512_BF16,
# AVX512_VNNI, AVX-VNNI): `bash tools/isa-emulation/run.sh` from the repository root.
# Needs python3 (3.11, for the bochscpu-python wheel), a C compiler, objdump and PyPI; the
# venv lives in $VGG_EMULATION_VENV (default: ~/.cache/vgg-isa-emulation). The first run builds
# everything once more (~6 min on 2 cores); the checks take under 2 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${VGG_EMULATION_VENV:-$HOME/.cache/vgg-isa-emulation}
python=${PYTHON:-python3}
# find_spec, not import: the extension loads only under the shim below.
if ! "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("bochscpu") is None)' 2>/dev/null; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet bochscpu-python==0.4.0
fi
extension=$("$venv/bin/python" -c 'import glob, importlib.util as u
print(*glob.glob(u.find_spec("bochscpu").submodule_search_locations[0] + "/_bochscpu*.so"))')
shim="$venv/bochscpu_shim.so"
cc -shared -fPIC -O2 -o "$shim" "$here/bochscpu_shim.c" -ldl
# Bochs raises #UD on an EVEX gather whose index register is zmm16-31, which LLVM uses in the
# AVX-512 lane code (pointer gathers); `prefer-no-gather` makes LLVM load those lanes one by
# one instead (rustc warns that it does not know the flag; LLVM does). A build of its own
# (target/isa-emulation), as the flag changes every crate.
target="$here/../../target/isa-emulation"
CARGO_TARGET_DIR="$target" RUSTFLAGS="-C target-feature=+prefer-no-gather,+prefer-no-scatter" \
    cargo build --release --quiet -p vgg-isa-emulation
BOCHSCPU_SO="$extension" LD_PRELOAD="$shim" "$venv/bin/python" "$here/emulate.py" "$target/release/libvgg_isa_emulation.so"
