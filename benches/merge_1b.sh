#!/usr/bin/env bash
# Merge time and peak RSS on a random ~1B-parameter bf16 Llama-shaped trio (base + two "fine-tunes"):
# mmreason vs mergekit 0.1.4 on the same configs, same machine, same run, same shard size (1 GB).
#
#   bash benches/merge_1b.sh [WORK_DIR]      # needs /work/venv with torch, transformers, mergekit (scripts/)
set -euo pipefail
W=${1:-/work/bench}
PY=${PY:-/work/venv/bin/python}
MK=${MK:-/work/venv/bin/mergekit-yaml}
cd "$(dirname "$0")/.."
mkdir -p "$W"
for s in 0 1 2; do
  [ -f "$W/m$s/model.safetensors" ] || "$PY" benches/peers/make_random_llama.py "$W/m$s" --seed "$s"
done
cargo build --release --example merge >/dev/null 2>&1
for method in task_arithmetic ties; do
  cat > "$W/$method.yml" <<YML
merge_method: $method
base_model: $W/m0
models:
  - model: $W/m1
    parameters: {weight: 0.5, density: 0.5}
  - model: $W/m2
    parameters: {weight: 0.5, density: 0.5}
dtype: float32
out_dtype: bfloat16
YML
done
cat > "$W/sparse_task_vector.yml" <<YML
merge_method: sparse_task_vector
base_model: $W/m0
models:
  - model: $W/m1
    parameters: {weight: 0.5, density: 0.1}
parameters: {topk_scope: global}
out_dtype: bfloat16
YML
measure() { # label, command...
  local label=$1; shift
  rm -rf "$W/out"
  /usr/bin/time -v "$@" > "$W/$label.log" 2>&1 || { echo "$label failed, see $W/$label.log"; tail -5 "$W/$label.log"; return 1; }
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$W/$label.log" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$W/$label.log" | awk '{print $NF}')
  printf "%-34s wall %8s   peak RSS %7.0f MB\n" "$label" "$wall" "$((rss / 1024))"
}
echo "machine: $(nproc) cores; inputs: 3 x $(du -sh "$W/m0" | cut -f1) bf16"
for method in task_arithmetic ties; do
  measure "mmreason $method" target/release/examples/merge --config "$W/$method.yml" --out "$W/out" --force \
    --max-shard-bytes 1000000000 --json
  measure "mergekit $method" "$MK" "$W/$method.yml" "$W/out" --no-copy-tokenizer --no-write-model-card \
    --out-shard-size 1B --quiet
done
measure "mmreason sparse_task_vector global" target/release/examples/merge --config "$W/sparse_task_vector.yml" \
  --out "$W/out" --force --max-shard-bytes 1000000000 --json
