#!/usr/bin/env bash
# Builds what benches/gpu/run.sh runs on a lent GPU (nothing is compiled there): release binaries with
# --features cuda, stripped and packed into gpu-bin.tar.gz (the device tool carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
# First (minutes, not the release build's half hour): the CUDA C++ of every cubecl kernel of ours, written by
# cubecl-cuda's compiler here and compiled with NVRTC for sm_90a (no GPU needed; benches/gpu/nvrtc_check.py),
# so a kernel NVRTC rejects is found before a lent device's 15 minutes are spent on it. NVRTC comes from torch's
# wheels (NVRTC_PYTHON=/path/to/venv/bin/python) or a CUDA toolkit; without it only the C++ is checked.
# Before anything is built: every step of run.sh against stand-ins for the binaries (seconds).
python3 benches/gpu/dry_run.py
sources=$(mktemp -d)
trap 'rm -rf "$sources"' EXIT
# (The test needs a wgpu adapter: Mesa's lavapipe, as .ci/run installs.)
MMREASON_CUDA_SOURCES=$sources cargo test -p mmreason-model --features wgpu,cuda --lib \
  fused::cube::cuda_source::every_kernel_compiles_to_cuda_cpp -- --exact
rc=0
# ptxas's registers and spills per kernel go to target/ptxas.md (kernels that spill are named on the terminal).
mkdir -p target
"${NVRTC_PYTHON:-python3}" benches/gpu/nvrtc_check.py "$sources" --table target/ptxas.md || rc=$?
case $rc in
  0) ;;
  2) echo "build.sh: no NVRTC here (or not the headers of some kernels: see above), the kernels' CUDA C++ was generated but not all of it compiled" >&2 ;;
  *) exit 1 ;;
esac
cargo build --release --features cuda --example throughput --example gemm_bench --example host_probe
tests=$(cargo test --release -p mmreason-model --features cuda --test backend_parity --test fused_kernels --no-run --message-format=json)
exe() { python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == sys.argv[1]][-1])' "$1"; }
test_bin=$(echo "$tests" | exe backend_parity)
fused_bin=$(echo "$tests" | exe fused_kernels)
bench_bin=$(cargo bench --features cuda --bench kernels --no-run --message-format=json \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "kernels"][-1])')
rm -rf gpu-bin && mkdir gpu-bin
cp target/release/examples/throughput target/release/examples/gemm_bench target/release/examples/host_probe gpu-bin/
cp "$test_bin" gpu-bin/backend_parity
cp "$fused_bin" gpu-bin/fused_kernels
cp "$bench_bin" gpu-bin/kernels
strip gpu-bin/*
# Which source the binaries are: the commit, and whether the work tree had changes (a later session can tell
# whether a gpu-bin.tar.gz left on this machine is still current; run.sh prints it into device.txt).
{ git rev-parse HEAD; git status --porcelain --untracked-files=no | sed 's/^/changed: /'; } > gpu-bin/SOURCE
tar czf gpu-bin.tar.gz gpu-bin
ls -l gpu-bin gpu-bin.tar.gz
