#!/usr/bin/env bash
# Where one forward's device time goes (called by run.sh; runs on the GPU machine, nothing compiled there):
#
#   OUT=dir BIN=gpu-bin TP=dir/throughput.jsonl bash benches/gpu/profile.sh NAME "ENV=.. ENV=.." ARGS...
#
# cubecl times every kernel it launches when a cubecl.toml in the working directory asks for it. The
# throughput example (ARGS: --config and --runs) runs twice under that profiler, with one and with two timed
# repeats; the difference of the two logs is one warm forward (benches/gpu/profile.py), set against the
# unprofiled time of the same work in TP. What cuBLAS and the gaps between launches take is the rest.
# BACKEND and DTYPE (default cuda, bf16) let the script be tried on wgpu at a small config; GEMM_LABEL (default
# cublas) names the unprofiled rows in TP to compare with (run.sh relabels the rows of each switch it times).
set -uo pipefail
name=$1 envs=$2
shift 2
ROOT=$PWD
BINDIR=$(cd "$BIN" && pwd) || exit 1
PY=${PY:-python3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for r in 1 2; do
  printf '[profiling.logger]\nlevel = "basic"\nfile = "%s"\nappend = false\n' "$dir/r$r.log" > "$dir/cubecl.toml"
  # shellcheck disable=SC2086 # envs is a list of assignments
  (cd "$dir" && env $envs "$BINDIR/throughput" "$@" --random-weights --backend "${BACKEND:-cuda}" \
    --dtype "${DTYPE:-bf16}" --repeats $r --json) > "$dir/work.jsonl" || exit 1
done
# The raw logs too (gzipped): run 8's prefill and CLIP tables came back with every kernel at 0.00 ms, and
# without the logs the cause could not be told.
for r in 1 2; do gzip -c "$dir/r$r.log" > "$OUT/profile-$name-r$r.log.gz" 2>/dev/null; done
$PY "$ROOT/benches/gpu/profile.py" "$dir/r1.log" "$dir/r2.log" --from "$TP" --work "$dir/work.jsonl" \
  --gemm "${GEMM_LABEL:-cublas}" | tee "$OUT/profile-$name.md"
