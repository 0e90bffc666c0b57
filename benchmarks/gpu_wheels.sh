#!/usr/bin/env bash
# The Python packages benchmarks/gpu_check.py needs on the GPU machine beyond its own (docs/gpu.md).
#
#   bash benchmarks/gpu_wheels.sh fetch [DIR]          # here, with network: DIR (default .whl)
#   bash benchmarks/gpu_wheels.sh install [DIR] [SITE] # there, offline: into SITE (/tmp/site)
#
# fetch downloads the cp312 manylinux x86_64 wheels of the packages below (no dependencies:
# torch, numpy, scipy, pytest, hypothesis, tqdm and matplotlib are on the machine), and makes
# DIR ignored by git (.git/info/exclude, unless it is already ignored or outside the checkout)
# so that a device call can take it with `carry`.
# deepwave's wheel is 100 MB (one 363 MB shared library, 252 MB of CPU code and 102 MB of CUDA
# kernels, deflated), over the 64 MiB a device call may carry.  So its library is taken out
# of the wheel and compressed with xz (40 MB; -6 compresses it as well as -9, in less memory);
# the wheel without it is 1.3 MB, 41.5 MB in all.  install pip-installs the wheels into SITE and
# puts the library back with Python's lzma (no xz needed there), checking its SHA-256.  fetch
# takes about 6 minutes of CPU (xz); its checks: every wheel present, the total under 60 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(array-api-compat==1.16.0 array-api-strict==2.6.1 deepwave==0.1.0)
LIB=deepwave/libdeepwave_C.so
cmd=${1:-}
dir=${2:-.whl}

case "$cmd" in
fetch)
    mkdir -p "$dir"
    if [[ "$dir" != /* ]] && ! git check-ignore -q "$dir"; then  # a folder in the checkout
        echo "/$dir/" >>"$(git rev-parse --git-path info/exclude)"
    fi
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$dir" "${PACKAGES[@]}"
    wheel=$(ls "$dir"/deepwave-*.whl)
    if unzip -l "$wheel" "$LIB" >/dev/null 2>&1; then
        tmp=$(mktemp -d)
        unzip -q "$wheel" "$LIB" -d "$tmp"
        xz -6 -T0 -c "$tmp/$LIB" >"$dir/libdeepwave_C.so.xz"
        sha256sum "$tmp/$LIB" | cut -d' ' -f1 >"$dir/libdeepwave_C.so.sha256"
        rm -rf "$tmp"
        python3 - "$wheel" "$LIB" <<'EOF'
import shutil, sys, zipfile
wheel, lib = sys.argv[1:]
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(wheel + ".tmp", "w",
                                                   zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if item.filename != lib:
            dst.writestr(item, src.read(item.filename))
shutil.move(wheel + ".tmp", wheel)
EOF
    fi
    for p in "${PACKAGES[@]}"; do
        name=${p%%==*}
        ls "$dir"/"${name//-/_}"-"${p##*==}"-*.whl >/dev/null
    done
    test -s "$dir/libdeepwave_C.so.xz"
    ls -l "$dir"
    total=$(du -cb "$dir"/* | tail -1 | cut -f1)
    echo "total $((total / 1024 / 1024)) MiB in $dir"
    if [ "$total" -gt $((60 * 1024 * 1024)) ]; then
        echo "over 60 MiB: a device call carries at most 64 MiB with the working tree" >&2
        exit 1
    fi
    ;;
install)
    site=${3:-/tmp/site}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$dir"/*.whl
    python3 - "$dir" "$site/$LIB" <<'EOF'
import hashlib, lzma, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
with lzma.open(src / "libdeepwave_C.so.xz") as f, open(dst, "wb") as g:
    shutil.copyfileobj(f, g, 1 << 24)
want = (src / "libdeepwave_C.so.sha256").read_text().split()[0]
got = hashlib.sha256(dst.read_bytes()).hexdigest()
if got != want:
    sys.exit(f"{dst}: sha256 {got}, expected {want}")
print(f"installed into {dst.parents[1]}; deepwave library restored ({dst.stat().st_size >> 20} MiB)")
EOF
    ;;
*)
    echo "usage: $0 fetch [DIR] | install [DIR] [SITE]" >&2
    exit 2
    ;;
esac
