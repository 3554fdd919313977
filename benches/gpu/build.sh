#!/usr/bin/env bash
# Builds what benches/gpu/run.sh runs on a lent GPU (nothing is compiled there): release binaries with
# --features cuda, stripped and packed into gpu-bin.tar.gz (the device tool carries at most 64 MiB).
set -euo pipefail
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
tar czf gpu-bin.tar.gz gpu-bin
ls -l gpu-bin gpu-bin.tar.gz
