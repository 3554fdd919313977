#!/usr/bin/env bash
# One prepared run on a lent NVIDIA GPU: nothing is compiled here. Build on the workstation first:
#
#   benches/gpu/build.sh            # release binaries with --features cuda → gpu-bin/ (git-ignored)
#
# then run this from the repository root on the GPU machine (the device tool carries gpu-bin/):
#
#   OUT=/some/dir bash benches/gpu/run.sh
#
# It runs, each step under its own time limit so one slow step cannot eat the whole lease:
#   1. the backend parity tests on CUDA (f32, bf16, f16; every model path) — PARITY lines → parity.log (every
#      variant of our kernels against burn's composition, fused_kernels.log, runs late: group `fused`)
#   2. the GEMM microbenchmark (burn's matmul; cuBLAS on burn's stream (the default since run 8), ordered on the
#      host, on the device and half on the device (=wait), called on cubecl's device thread or the caller's;
#      PyTorch's F.linear; same shapes) → gemm.jsonl,
#      and the table → gemm.md (benches/gpu/gemm_table.py); what a host wait costs cubecl → host_probe.md
#   3. throughput: mmreason with cuBLAS and the fused kernels, with burn's composed element-wise chains instead
#      (MMREASON_FUSED=off), with burn's matmul (MMREASON_GEMM=burn), and PyTorch + transformers on
#      the same shapes (Mistral-7B and Llama-2-7B prefill b8×512 and b32×256, decode b1 and b32 with 128 new
#      tokens; CLIP ViT-L/14-336 at batch 32) → throughput.jsonl, and the ratio table → table.md
#   3b. the defaults of run 8 one at a time against what they replaced: cuBLAS ordered on the host
#      (MMREASON_CUBLAS_ORDER=host, gemm "cublas-host"; the default is cuBLAS on burn's own stream); the
#      three-pass softmax ("cublas-softmax-passes"),
#      the chunked decode attention ("cublas-decode-chunked") and the composed CLIP attention ("cublas-composed")
#      further down, in their groups
#   4. cuBLAS ordered with burn's stream on the device (MMREASON_CUBLAS_ORDER=device), half on the device
#      (=wait), and called on the caller's thread (MMREASON_CUBLAS_THREAD=caller, the default before run 7): the
#      parity tests, the Mistral and CLIP throughput again → parity-order.log, parity-wait.log, throughput.jsonl
#      (gemm "cublas-devorder", "cublas-wait", "cublas-caller")
#   5. where each forward's device time goes: the throughput example under cubecl's kernel profiler (CLIP b32,
#      Mistral prefill b8×512, decode b1 and b32), one table per work → profile-*.md (benches/gpu/profile.py)
#   6. cubek's flash attention kernels instead of the composed attention (MMREASON_ATTENTION=flash, flash2,
#      flash8: tensor-core tiles, 4/2/8 warps per cube): parity (parity-flash.log), then Mistral prefill and
#      CLIP → throughput.jsonl (gemm "cublas-flash…")
#   6b. our prefill attention kernel (tensor-core tiles, online softmax, grouped heads and the cache read in
#      place, no cuBLAS call) for the decoder too (MMREASON_ATTENTION=own; by default only CLIP takes it):
#      parity (parity-own.log), then Mistral prefill → throughput.jsonl (gemm "cublas-own"); CLIP with the
#      composed attention instead (MMREASON_ATTENTION=composed, "cublas-composed"), and over keys padded to
#      whole 16-byte rows (MMREASON_ATTENTION=padded: parity-padded.log, "cublas-padded")
#   6c. the mma prefill attention (FlashAttention-2's forward pass in CUDA C++ of ours through NVRTC: scores,
#      probabilities and output in registers; both towers' default since run 9, so its rows here repeat the
#      default's; MMREASON_ATTENTION=mma, both towers): its kernel test against the
#      composition (mma_kernels.log; with 8 warps per cube: mma_w8_kernels.log), then, if it passed, Mistral
#      prefill and CLIP → throughput.jsonl (gemm "cublas-mma", "cublas-mma-w8"); and the few-row product in CUDA
#      C++ of ours (MMREASON_GEMV=cuda: gemv_kernels.log, parity-gemv.log, decode b1 → "cublas-gemv-cuda",
#      "cublas-gemv-cuda:16")
#   6d. group "tune": the untimed candidates, each behind its kernel test — the mma attention's lean block loop
#      first (MMREASON_MMA_LEAN=1: lean_kernels.log, parity-lean.log, the kernel alone in lean_bench.log), the
#      norms in registers (MMREASON_NORM=regs: regs_kernels.log, parity-regs.log), two m-tiles per warp
#      (MMREASON_MMA_ROWS=32: rows32_kernels.log, rows32_bench.log), CLIP's attention over views of its
#      projection (MMREASON_QKV_VIEWS=1: qkv_kernels.log, parity-qkv.log) — in that order, so that a deadline
#      cuts the alternatives to the lean loop first; group "retune" (run 10's "tune"): each default
#      since run 9 against what it replaced (MMREASON_NORM=cube|rows, MMREASON_ATTENTION=own for CLIP,
#      MMREASON_DECODE_ATTN=ilp) and the mma knobs run 10 timed and left off (MMREASON_MMA_CUBES=5, MMREASON_MMA_STAGES=2),
#      behind the fused kernels' CUDA test (retune_kernels.log, stages_kernels.log)
#   6e. group "timeline": one more forward of Mistral's prefill (b8×512, b32×256) and of CLIP (b32) timed step by
#      step with CUDA events on burn's stream, cuBLAS and our NVRTC kernels included (MMREASON_TIMELINE=1),
#      behind its CUDA test (timeline_test.log) → timeline-prefill.md, timeline-clip.md
#   7. cubek's matmul kernels by strategy (MMREASON_GEMM=cubek:NAME, on burn's stream: no cuBLAS
#      synchronisations): every strategy against the CPU (cubek_kernels.log), the tensor-core ones timed at the
#      prefill and decode shapes (gemm-cubek.jsonl), then Mistral with the fastest at each shape
#      (gemm "cubek-NAME"); and cuBLAS without the 32 MiB workspace (MMREASON_CUBLAS_WORKSPACE_MIB=0, gemm
#      "cublas-nows") for what the workspace changed
#   8. the kernel benches (criterion: GEMM, attention prefill/decode, KV-cache append, RMSNorm, RoPE, SiLU·mul at
#      Mistral-7B shapes, bf16) → kernels.log
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
# PACK=1 (the default): at the end, everything under $OUT goes into $OUT/all.tar.gz and nothing else stays
# there. The device tool brings back only a few files per call (run 7 lost the first call's throughput.jsonl,
# parity.log and profiles that way); one archive always comes back. The tables are on the terminal as well.
pack() {
  [ "${PACK:-1}" = 1 ] || return 0
  local tmp
  tmp=$(mktemp -d) && tar czf "$tmp/all.tar.gz" -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv "$tmp/all.tar.gz" "$OUT/" && rmdir "$tmp"
}
trap pack EXIT
BIN=${BIN:-gpu-bin}
if [ -f "$BIN.tar.gz" ] && [ ! -d "$BIN" ]; then tar xzf "$BIN.tar.gz"; fi
export MMREASON_FIXTURES=$PWD/tests/fixtures
PY=${PY:-python3}
# cuBLAS from CUDA's lib64 or from the nvidia-* wheels PyTorch installs.
NV=$($PY -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0] if hasattr(nvidia, "__path__") else nvidia.__file__))' 2>/dev/null)
for d in /usr/local/cuda/lib64 $(ls -d "$NV"/nvidia/*/lib* 2>/dev/null); do LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}; done
export LD_LIBRARY_PATH
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "binaries of $(cat "$BIN/SOURCE" 2>/dev/null || echo 'an unknown commit')"; $PY -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'; } 2>&1 | tee "$OUT/device.txt"

# STEPS selects groups (default: all): parity gemm mistral stream order own clip timeline mma tune retune profile cubek flash
# softmax decode unfused gemvbase gemv small burn llama fused kernels (they run in this order, whatever STEPS
# lists)
STEPS=${STEPS:-parity gemm mistral stream order own clip timeline mma tune retune profile cubek flash softmax decode unfused gemvbase gemv small burn llama fused kernels}
# DEADLINE (seconds from the start of this script, 0 = none) caps every step's limit and skips steps that would
# start with under 15 s left: an outer `timeout` would not stop a running step (each `timeout` below puts its
# step in a process group of its own), so a call's time limit has to be kept here.
DEADLINE=${DEADLINE:-0}
step() { # name seconds command...
  local name=$1 secs=$2; shift 2
  case " $STEPS " in *" ${name%%-*} "*) ;; *) echo "== $name skipped (STEPS)"; last_rc=skipped; return;; esac
  if [ "$DEADLINE" -gt 0 ]; then
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 15 ]; then echo "== $name skipped (deadline)" | tee -a "$OUT/steps.log"; last_rc=skipped; return; fi
    if [ "$secs" -gt "$left" ]; then secs=$left; fi
  fi
  local t0=$SECONDS
  echo "== $name (limit ${secs}s)" | tee -a "$OUT/steps.log"
  timeout -k 10 "$secs" "$@"; local rc=$?
  echo "== $name rc=$rc in $((SECONDS - t0))s" | tee -a "$OUT/steps.log"
  last_rc=$rc
}
# The exit status of the last step that ran (a kernel test gates the steps that time its kernel).
last_rc=skipped

# cuBLAS calls run on cubecl's device thread by default (MMREASON_CUBLAS_THREAD=device, new since run 6 and
# untimed): if a small product does not come back through cuBLAS that way within 40 s while it does on the
# caller's thread, every step below keeps the calls on the caller's thread, and steps.log says so.
# Rows of a switched-on variant are told apart by relabelling the default's GEMM name in a JSON field:
# `relabel gemm cublas-wait` (throughput lines), `relabel linear_nt_impl cublas-wait` (gemm_bench lines).
# Exported for the `bash -c` of each step.
relabel() { sed "s/\"$1\":\"cublas\"/\"$1\":\"$2\"/"; }
export -f relabel
smoke() { # NAME ENV=VALUE...: succeeds if a small product runs in cuBLAS (no fallback warning) within 40 s and
  # agrees with burn's matmul (smoke-NAME.log keeps what it printed)
  local name=$1; shift
  timeout -k 5 40 env "$@" "$BIN/gemm_bench" --backend cuda --dtype bf16 --shapes 256x256x256 --iters 2 \
    > "$OUT/smoke-$name.log" 2>&1 || return 1
  grep -q "cuBLAS not used" "$OUT/smoke-$name.log" && return 1
  $PY -c 'import json, sys; r = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]; sys.exit(0 if r and r[0]["max_rel_diff"] < 1e-2 else 1)' "$OUT/smoke-$name.log"
}
if smoke device MMREASON_CUBLAS_THREAD=device; then
  :
elif smoke caller MMREASON_CUBLAS_THREAD=caller; then
  export MMREASON_CUBLAS_THREAD=caller
  echo "== cuBLAS on cubecl's device thread failed a small product: MMREASON_CUBLAS_THREAD=caller for every step" | tee -a "$OUT/steps.log"
else
  echo "== a small cuBLAS product failed on both threads (smoke-*.log): the cuBLAS figures below are suspect" | tee -a "$OUT/steps.log"
fi

step parity 120 bash -c "$BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity.log | grep -E 'PARITY|test |panicked|error|ordered|declined' "
# The same products six ways in one call: cuBLAS on burn's stream (the default), ordered on the host
# (MMREASON_CUBLAS_ORDER=host), on the device (=device), half on the device (=wait: no spinning kernel), the
# host order with the call on the caller's thread as before run 7 (MMREASON_CUBLAS_THREAD=caller), and
# PyTorch's F.linear.
# 64×4096×4096 is ≈ 3 µs of tensor-core work, so its time per call is mostly what a product costs beyond its
# kernel; gemm.md puts the microseconds per call over PyTorch's in a column.
GEMM_SHAPES=8192x8192x8192,4096x4096x14336,4096x4096x6144,4096x14336x4096,32x4096x14336,8x4096x14336,64x4096x4096
step gemm-bf16 60 bash -c "$BIN/gemm_bench --backend cuda --dtype bf16 --shapes $GEMM_SHAPES --iters 10 | tee $OUT/gemm.jsonl"
step gemm-host 60 bash -c "MMREASON_CUBLAS_ORDER=host $BIN/gemm_bench --backend cuda --dtype bf16 --shapes $GEMM_SHAPES --iters 10 | relabel linear_nt_impl cublas-host | tee -a $OUT/gemm.jsonl"
step gemm-devorder 60 bash -c "MMREASON_CUBLAS_ORDER=device $BIN/gemm_bench --backend cuda --dtype bf16 --shapes $GEMM_SHAPES --iters 10 | relabel linear_nt_impl cublas-devorder | tee -a $OUT/gemm.jsonl"
step gemm-wait 60 bash -c "MMREASON_CUBLAS_ORDER=wait $BIN/gemm_bench --backend cuda --dtype bf16 --shapes $GEMM_SHAPES --iters 10 | relabel linear_nt_impl cublas-wait | tee -a $OUT/gemm.jsonl"
step gemm-caller 60 bash -c "MMREASON_CUBLAS_ORDER=host MMREASON_CUBLAS_THREAD=caller $BIN/gemm_bench --backend cuda --dtype bf16 --shapes $GEMM_SHAPES --iters 10 | relabel linear_nt_impl cublas-caller | tee -a $OUT/gemm.jsonl"
step gemm-torch 60 bash -c "$PY benches/peers/torch_gemm.py --shapes $GEMM_SHAPES --dtype bfloat16 --iters 10 | tee -a $OUT/gemm.jsonl"
# The mechanism behind MMREASON_CUBLAS_THREAD on this host: what a busy spell of 0–3 ms on the caller's thread
# or on cubecl's device thread costs the round trip after it (host_probe.jsonl, host_probe.md).
step gemm-probe 30 bash -c "$BIN/host_probe --backend cuda > $OUT/host_probe.jsonl 2> $OUT/host_probe.md; rc=\$?; cat $OUT/host_probe.md; exit \$rc"
step gemm-f32 30 bash -c "$BIN/gemm_bench --backend cuda --dtype f32 --shapes 4096x4096x4096 --iters 5 | tee -a $OUT/gemm.jsonl"
RUNS=8x512x0,32x256x0,1x128x128,32x128x128
TP="$OUT/throughput.jsonl"
# The fused kernels' tests FILTERS (a space-separated list) with a switch's VAR=value settings, their output in
# $OUT/LOG: the step's status is the tests' (pipefail), which gates the steps that time those kernels. On the
# terminal: each test's line, and any "mmreason: … declined, the default path instead" (a CUDA kernel of ours
# that would not load or launch: the default path ran in its place).
kernel_test() { # NAME SECONDS LOG FILTERS VAR=value...
  local name=$1 secs=$2 log=$3 filters=$4; shift 4
  step "$name" "$secs" bash -c "set -o pipefail; $* $BIN/fused_kernels $filters --include-ignored --nocapture 2>&1 | tee $OUT/$log | grep -E 'test |panicked|error|declined' "
}
# Our throughput rows with a switch on: NAME (the step), LABEL (the default GEMM's name relabelled, the tables'
# column for the switch), then the switch's VAR=value settings. Mistral over RUNS (100 s), Mistral's prefill
# b8×512 and b32×256 (60 s), its decode b1 and b32 (80 s), CLIP's batch of 32 (40 s).
ours() { # NAME SECONDS LABEL CONFIG RUNS REPEATS VAR=value...
  local name=$1 secs=$2 label=$3 config=$4 runs=$5 repeats=$6; shift 6
  step "$name" "$secs" bash -c "$* $BIN/throughput --config $config --random-weights --backend cuda --dtype bf16 --runs $runs --repeats $repeats --json | relabel gemm $label | tee -a $TP"
}
mistral_row() { ours "$1" 100 "$2" mistral-7b "$RUNS" 2 "${@:3}"; } # NAME LABEL VAR=value...
prefill_row() { ours "$1" 60 "$2" mistral-7b 8x512x0,32x256x0 2 "${@:3}"; }
decode_row() { ours "$1" 80 "$2" mistral-7b 1x128x128,32x128x128 2 "${@:3}"; }
clip_row() { ours "$1" 40 "$2" clip-vit-l-336 32x0x0 3 "${@:3}"; }
step mistral-cublas 100 bash -c "$BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs $RUNS --repeats 2 --json | tee -a $TP"
step mistral-torch 90 bash -c "$PY benches/peers/torch_throughput.py --preset mistral-7b --device cuda --dtype bfloat16 --runs $RUNS --repeats 2 | tee -a $TP"
# What the stream order (the default since run 8: cuBLAS on burn's own stream, cubecl-cuda patched to say which,
# vendor/README.md) gained over the host order, in the same call; the default rows above must count their
# products under "stream" (table.py flags a host-order fallback).
mistral_row stream-host-mistral cublas-host MMREASON_CUBLAS_ORDER=host
clip_row stream-host-clip cublas-host MMREASON_CUBLAS_ORDER=host
# cuBLAS ordered on the device (no host synchronisation per product): correctness first, then the figures.
step order-parity 120 bash -c "MMREASON_CUBLAS_ORDER=device $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-order.log | grep -E 'PARITY|test |panicked|error|ordered' "
mistral_row order-mistral cublas-devorder MMREASON_CUBLAS_ORDER=device
clip_row order-clip cublas-devorder MMREASON_CUBLAS_ORDER=device
# Our prefill attention (group "own"; by default CLIP's attention only): the model parity tests with it for the
# decoder too, then Mistral prefill with it; CLIP with the composed attention instead.
step own-parity 120 bash -c "MMREASON_ATTENTION=own $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-own.log | grep -E 'PARITY|test |panicked|error' "
prefill_row own-mistral cublas-own MMREASON_ATTENTION=own
clip_row own-composed-clip cublas-composed MMREASON_ATTENTION=composed
# The composed attention over keys padded to whole 16-byte rows (577 → 584 positions: cuBLAS's aligned kernels;
# MMREASON_ATTENTION=padded): the vision parity tests, then CLIP.
step own-padded-parity 60 bash -c "MMREASON_ATTENTION=padded $BIN/backend_parity vision --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-padded.log | grep -E 'PARITY|test |panicked|error|ordered' "
clip_row own-padded-clip cublas-padded MMREASON_ATTENTION=padded
# CLIP's baselines (ours with the defaults, PyTorch) before the mma group, so that a failing kernel there cannot
# cost them their time.
step clip-cublas 40 bash -c "$BIN/throughput --config clip-vit-l-336 --random-weights --backend cuda --dtype bf16 --runs 32x0x0 --repeats 3 --json | tee -a $TP"
step clip-torch 40 bash -c "$PY benches/peers/torch_throughput.py --preset clip-vit-l-336 --device cuda --dtype bfloat16 --runs 32x0x0 --repeats 3 | tee -a $TP"
# The mma prefill attention (group "mma", MMREASON_ATTENTION=mma for both towers): its kernel test against the
# composition (heads of 64 and 128, every case must run through it), and only if that passes, the figures. The
# model parity tests cannot check it: the fixtures' heads (4 and 8) are sizes it declines.
gated() { # NAME GATE_RC: runs the step after it only when the kernel test passed (its pipeline's status:
  # `set -o pipefail` in the test's command, or grep's would stand for it)
  case "$2" in
    0) return 0;;
    skipped) return 1;;
  esac
  echo "== $1 skipped: its kernel test did not pass (rc=$2)" | tee -a "$OUT/steps.log"; return 1
}
# Where one forward's device time goes, every kernel included (group "timeline", new after run 10, untimed):
# CUDA events on burn's stream between the models' steps (MMREASON_TIMELINE=1, crate::timeline), recorded in
# one more forward after the timed ones; cuBLAS's products, the mma attention and the gaps show, which cubecl's
# profiler (group "profile") leaves out. Behind its CUDA test (one interval per marked step, the marked
# forward's numbers those of an unmarked one).
step timeline-test 60 bash -c "set -o pipefail; $BIN/backend_parity timeline --include-ignored --nocapture 2>&1 | tee $OUT/timeline_test.log | grep -E 'test |panicked|error' "
timeline_rc=$last_rc
gated timeline-prefill "$timeline_rc" && step timeline-prefill 60 bash -c "MMREASON_TIMELINE=1 $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 8x512x0,32x256x0 --repeats 2 | tee $OUT/timeline-prefill.md"
gated timeline-clip "$timeline_rc" && step timeline-clip 40 bash -c "MMREASON_TIMELINE=1 $BIN/throughput --config clip-vit-l-336 --random-weights --backend cuda --dtype bf16 --runs 32x0x0 --repeats 3 | tee $OUT/timeline-clip.md"
kernel_test mma-kernels 90 mma_kernels.log "mma_attention"
mma_rc=$last_rc
gated mma-mistral "$mma_rc" && prefill_row mma-mistral cublas-mma MMREASON_ATTENTION=mma
gated mma-clip "$mma_rc" && clip_row mma-clip cublas-mma MMREASON_ATTENTION=mma
# Our CUDA C++ few-row product (MMREASON_GEMV=cuda[:UNROLL], same group): its kernel test against the CPU, the
# model parity tests with it (the fixtures' decode steps take it: hidden sizes of 16 and 32), then decode b1 with
# 8 and 16 weight loads in flight per unit against the cubecl kernel (the mistral rows above).
kernel_test mma-gemv-kernels 60 gemv_kernels.log "cuda_gemv"
gemv_rc=$last_rc
gated mma-gemv-parity "$gemv_rc" && step mma-gemv-parity 120 bash -c "MMREASON_GEMV=cuda $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-gemv.log | grep -E 'PARITY|test |panicked|error|declined' "
for g in cuda cuda:16; do
  gated mma-gemv-$g "$gemv_rc" && step mma-gemv-$g 60 bash -c "MMREASON_GEMV=$g $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 1x128x128 --repeats 2 --json | relabel gemm cublas-gemv-$g | tee -a $TP"
done
# The split decode attention (MMREASON_DECODE_ATTN=split, same group; flash-decoding: one cube per sequence, kv
# head and split of the keys for all the kv head's query heads, the splits joined by a second kernel): the fused
# kernels' test on CUDA (its decode cases run every decode kernel: 1–3 splits, 2 and 4 query heads per kv
# head), the model parity tests with it, and only if both pass, decode b1 and b32 against the ILP kernel (the
# mistral rows above).
kernel_test mma-split-kernels 90 split_kernels.log "fused_kernels_on_cuda" MMREASON_DECODE_ATTN=split
split_rc=$last_rc
gated mma-split-parity "$split_rc" && step mma-split-parity 120 bash -c "set -o pipefail; MMREASON_DECODE_ATTN=split $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-split.log | grep -E 'PARITY|test |panicked|error' "
# (Unchanged when the parity step was skipped: the kernel test's status.)
split_rc=$last_rc
# Its own choice of splits (one per 256 keys: 1 here, so 8 cubes at batch 1), then 8 splits per kv head.
for a in split split:8; do
  gated mma-decode-$a "$split_rc" && decode_row mma-decode-$a cublas-decode-$a MMREASON_DECODE_ATTN=$a
done
# Cubes of 8 warps (128 query rows per K/V tile; MMREASON_MMA_WARPS=8, compiled by NVRTC on the spot): its own
# kernel test, then the figures.
kernel_test mma-w8-kernels 90 mma_w8_kernels.log "mma_attention" MMREASON_MMA_WARPS=8
w8_rc=$last_rc
gated mma-w8-mistral "$w8_rc" && step mma-w8-mistral 60 bash -c "MMREASON_ATTENTION=mma MMREASON_MMA_WARPS=8 $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 8x512x0 --repeats 2 --json | relabel gemm cublas-mma-w8 | tee -a $TP"
gated mma-w8-clip "$w8_rc" && clip_row mma-w8-clip cublas-mma-w8 MMREASON_ATTENTION=mma MMREASON_MMA_WARPS=8
# Group "tune": candidates not yet timed, each behind its kernel test (`gated`), against the default rows of
# the `mistral` and `clip` groups in the same call. Group "retune" (after it) re-times run 10's decisions.
# The mma attention's lean block loop (MMREASON_MMA_LEAN=1; new in the seventeenth session, untimed): a key
# block every row of a warp sees whole runs without a condition per n-tile or key, the scale folded into each
# probability's FMA, fixed-count tile copies — ptxas's SASS here has ≈ 420 instructions per such block per warp
# at CLIP's shape (≈ 1,200 in the default, where a branch around each n-tile of Q·Kᵀ leaves every ldmatrix's
# latency exposed) and ≈ 600 at Mistral's (≈ 1,400). Its kernel test, the model parity tests at heads of 64 and
# 128 (the mma kernel inside both towers), the kernel alone at CLIP's and Mistral's prefill shapes against the
# default in one criterion call (lean_bench.log), then CLIP (alone and over views of its projection) and
# Mistral prefill.
kernel_test tune-lean-kernels 60 lean_kernels.log "mma_attention qkv_views" MMREASON_MMA_LEAN=1
lean_rc=$last_rc
gated tune-lean-parity "$lean_rc" && step tune-lean-parity 60 bash -c "set -o pipefail; MMREASON_MMA_LEAN=1 $BIN/backend_parity heads_of --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-lean.log | grep -E 'PARITY|test |panicked|error|declined' "
lean_rc=$last_rc
gated tune-lean-bench "$lean_rc" && step tune-lean-bench 90 bash -c "set -o pipefail; for l in 0 1; do echo \"lean \$l\"; CRITERION_HOME=$OUT/criterion-lean\$l MMREASON_MMA_LEAN=\$l MMREASON_BENCH_BACKEND=cuda $BIN/kernels --bench 'clip_mma|prefill_mma' --warm-up-time 1 --measurement-time 2 || exit 1; done 2>&1 | tee $OUT/lean_bench.log | grep -E 'lean|time:'"
gated tune-lean-clip "$lean_rc" && clip_row tune-lean-clip cublas-mma-lean MMREASON_MMA_LEAN=1
gated tune-lean-mistral "$lean_rc" && prefill_row tune-lean-mistral cublas-mma-lean MMREASON_MMA_LEAN=1
# And at heads of 128 with registers for 3 cubes per SM instead of 2 (MMREASON_MMA_CUBES=3; ptxas here: 168
# registers, 8 bytes spilled, against 194 and none): 12 warps per SM to hide latency instead of 8.
gated tune-lean-cubes3-mistral "$lean_rc" && prefill_row tune-lean-cubes3-mistral cublas-mma-lean-cubes3 MMREASON_MMA_LEAN=1 MMREASON_MMA_CUBES=3
gated tune-lean-qkv-clip "$lean_rc" && clip_row tune-lean-qkv-clip cublas-mma-lean-qkv-views MMREASON_MMA_LEAN=1 MMREASON_QKV_VIEWS=1
# The norms with each row read once, held in registers (MMREASON_NORM=regs; new after run 10): the fused
# kernels' CUDA test with it (every norm case, the 1,203-row ones in the plane layout, the 2,100-wide ones over
# more lanes), the model parity tests with it, then prefill and CLIP against the plane layout (the default rows
# above). Since the seventeenth session Mistral's 4,096-wide rows take it too (128 lanes of 4 vectors per row,
# reduced in shared memory), where before they kept the re-reading kernel.
kernel_test tune-regs-kernels 60 regs_kernels.log "fused_kernels_on_cuda" MMREASON_NORM=regs
regs_rc=$last_rc
gated tune-regs-parity "$regs_rc" && step tune-regs-parity 60 bash -c "set -o pipefail; MMREASON_NORM=regs $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-regs.log | grep -E 'test |panicked|error' "
regs_rc=$last_rc
gated tune-regs-mistral "$regs_rc" && prefill_row tune-regs-mistral cublas-norm-regs MMREASON_NORM=regs
gated tune-regs-clip "$regs_rc" && clip_row tune-regs-clip cublas-norm-regs MMREASON_NORM=regs
# Two m-tiles of 16 query rows per warp in the mma attention (MMREASON_MMA_ROWS=32: each K/V fragment loaded
# from shared memory serves both, half the ldmatrix traffic per query row; at heads of 128 with key blocks of
# 32; new after run 10, untimed, compiled by NVRTC on the spot): its kernel test, then the kernel alone at
# CLIP's and Mistral's prefill shapes against the default in one criterion call (rows32_bench.log), then CLIP
# and Mistral prefill against the default rows.
kernel_test tune-rows32-kernels 60 rows32_kernels.log "mma_attention" MMREASON_MMA_ROWS=32
rows32_rc=$last_rc
gated tune-rows32-bench "$rows32_rc" && step tune-rows32-bench 90 bash -c "set -o pipefail; for r in 16 32; do echo \"rows per warp \$r\"; CRITERION_HOME=$OUT/criterion-rows\$r MMREASON_MMA_ROWS=\$r MMREASON_BENCH_BACKEND=cuda $BIN/kernels --bench 'clip_mma|prefill_mma' --warm-up-time 1 --measurement-time 2 || exit 1; done 2>&1 | tee $OUT/rows32_bench.log | grep -E 'rows per warp|time:'"
gated tune-rows32-clip "$rows32_rc" && clip_row tune-rows32-clip cublas-mma-rows32 MMREASON_MMA_ROWS=32
gated tune-rows32-mistral "$rows32_rc" && prefill_row tune-rows32-mistral cublas-mma-rows32 MMREASON_MMA_ROWS=32
# The vision tower's attention reading q, k and v from its projection in place, the query and value biases
# folded into the mma kernel (MMREASON_QKV_VIEWS=1: no QkvBiasHeadsKernel pass, 1.9 ms of CLIP's ≈ 31 in run
# 10's profile; new after run 10, untimed): its kernel test against the composition on the CPU
# with 16 and 32 rows per warp (qkv_kernels.log), the tower at heads of 64 against the CPU with it
# (parity-qkv.log: the parity fixtures' CLIP has heads of 8, which the mma kernel does not take), then CLIP,
# alone and with 32 rows per warp.
step tune-qkv-kernels 60 bash -c "set -o pipefail; for r in 16 32; do echo \"rows per warp \$r\"; MMREASON_QKV_VIEWS=1 MMREASON_MMA_ROWS=\$r $BIN/fused_kernels qkv_views --include-ignored --nocapture || exit 1; done 2>&1 | tee $OUT/qkv_kernels.log | grep -E 'rows per warp|test |panicked|error|declined' "
qkv_rc=$last_rc
gated tune-qkv-parity "$qkv_rc" && step tune-qkv-parity 60 bash -c "set -o pipefail; MMREASON_QKV_VIEWS=1 $BIN/backend_parity heads_of_64 --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-qkv.log | grep -E 'PARITY|test |panicked|error|declined' "
qkv_rc=$last_rc
gated tune-qkv-clip "$qkv_rc" && clip_row tune-qkv-clip cublas-qkv-views MMREASON_QKV_VIEWS=1
[ "$rows32_rc" = 0 ] && gated tune-qkv-rows32-clip "$qkv_rc" && clip_row tune-qkv-rows32-clip cublas-qkv-views-rows32 MMREASON_QKV_VIEWS=1 MMREASON_MMA_ROWS=32
# Group "retune" (run 10's group "tune"): the defaults since run 9 against what they replaced, in one call. The fused kernels'
# test on CUDA first (its norms over 1,203 rows run the plane-per-row layout, which the model parity fixtures, a
# few hundred rows at most, never reach); only if it passes: the norms one cube per row as before
# (MMREASON_NORM=cube, "cublas-norm-cube") and 8 rows per cube reduced in shared memory (=rows), the vision
# tower's attention as our cubecl kernel (MMREASON_ATTENTION=own, the default before run 9), decode with the ILP
# attention (MMREASON_DECODE_ATTN=ilp), and the mma attention's register budget for 5 cubes per SM
# instead of 4 at heads of 64 (MMREASON_MMA_CUBES, compiled by NVRTC on the spot: 96 registers instead of 128, with
# 132 bytes of spills by ptxas here; 6 cubes spill 412).
kernel_test retune-kernels 90 retune_kernels.log "fused_kernels_on_cuda mma_attention"
retune_rc=$last_rc
for n in cube rows; do
  gated retune-norm-$n-mistral "$retune_rc" && prefill_row retune-norm-$n-mistral cublas-norm-$n MMREASON_NORM=$n
  gated retune-norm-$n-clip "$retune_rc" && clip_row retune-norm-$n-clip cublas-norm-$n MMREASON_NORM=$n
done
gated retune-own-clip "$retune_rc" && clip_row retune-own-clip cublas-own MMREASON_ATTENTION=own
gated retune-ilp-decode "$retune_rc" && decode_row retune-ilp-decode cublas-decode-ilp MMREASON_DECODE_ATTN=ilp
for c in 5; do
  gated retune-cubes$c-clip "$retune_rc" && clip_row retune-cubes$c-clip cublas-mma-cubes$c MMREASON_MMA_CUBES=$c
done
# Two stages of K/V tiles in the mma attention at heads of 64 (MMREASON_MMA_STAGES=2: block j + 2's copies in
# flight during block j; ptxas here: 128 registers, 32 bytes spilled): its kernel test, then CLIP.
kernel_test retune-stages-kernels 60 stages_kernels.log "mma_attention" MMREASON_MMA_STAGES=2
stages_rc=$last_rc
gated retune-stages-clip "$stages_rc" && clip_row retune-stages-clip cublas-mma-stages2 MMREASON_MMA_STAGES=2
# Where each forward's device time goes (cubecl's kernel profiler; benches/gpu/profile.sh).
PROF="env OUT=$OUT BIN=$BIN TP=$TP PY=$PY bash benches/gpu/profile.sh"
step profile-clip 60 $PROF clip "" --config clip-vit-l-336 --runs 32x0x0
step profile-prefill 60 $PROF prefill "" --config mistral-7b --runs 8x512x0
step profile-decode1 60 $PROF decode1 "" --config mistral-7b --runs 1x128x128
step profile-decode32 60 $PROF decode32 "" --config mistral-7b --runs 32x128x128
# With the device order, the spin kernel that waits for each product shows the cuBLAS time among the kernels.
step profile-orderclip 60 env GEMM_LABEL=cublas-devorder $PROF order-clip "MMREASON_CUBLAS_ORDER=device" --config clip-vit-l-336 --runs 32x0x0
# After the baseline, CLIP and the profiles (so a short call still has those):
# Half the device order (cuBLAS's stream waits on the device, the host waits for cuBLAS; no spinning kernel):
# the fallback if the device order is wrong or stalls.
step order-wait-parity 120 bash -c "MMREASON_CUBLAS_ORDER=wait $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-wait.log | grep -E 'PARITY|test |panicked|error|ordered' "
mistral_row order-wait-mistral cublas-wait MMREASON_CUBLAS_ORDER=wait
clip_row order-wait-clip cublas-wait MMREASON_CUBLAS_ORDER=wait
# The host order with the cuBLAS call on the caller's thread (the default until this run): what the device
# thread changed.
mistral_row order-caller-mistral cublas-caller MMREASON_CUBLAS_ORDER=host MMREASON_CUBLAS_THREAD=caller
clip_row order-caller-clip cublas-caller MMREASON_CUBLAS_ORDER=host MMREASON_CUBLAS_THREAD=caller
# cubek's matmul strategies (MMREASON_GEMM=cubek:NAME): correctness of every one (f32/f16, awkward shapes),
# then the tensor-core ones at the prefill MLP, q/k/v and decode b8/b32 shapes (bf16; --cubek adds them to
# each gemm_bench line), then Mistral with the fastest correct one for prefill and for decode b32.
step cubek-kernels 120 bash -c "$BIN/fused_kernels cubek --include-ignored --nocapture 2>&1 | tee $OUT/cubek_kernels.log | grep -E 'test |panicked|ran on|wrong|not used' "
CUBEK=simple_cmma,simple_mma,simple_multi_mma,ordered_mma,double_mma,double_spec_mma,specialized_mma,tma_mma,tma_multi_mma,specialized_tma_cmma,specialized_tma_mma
step cubek-gemm 150 bash -c "$BIN/gemm_bench --backend cuda --dtype bf16 --shapes 4096x4096x14336,4096x4096x6144,32x4096x14336,8x4096x14336 --cubek $CUBEK --iters 5 | tee $OUT/gemm-cubek.jsonl"
cubek_best() { # m: the strategy with the least total time over every gemm-cubek.jsonl shape with that m, among
  # those that ran on all of them within 1e-2 of burn's result
  $PY - "$OUT/gemm-cubek.jsonl" "$1" <<'PYEOF' 2>/dev/null
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rows = [r for r in rows if r["m"] == int(sys.argv[2])]
total = {}
for r in rows:
    for c in r.get("cubek", []):
        ok = c["tflops"] and c["max_rel_diff"] is not None and c["max_rel_diff"] < 1e-2
        t = 2 * r["m"] * r["k"] * r["n"] / (c["tflops"] * 1e12) if ok else float("inf")
        total[c["name"]] = total.get(c["name"], 0.0) + t
best = min(((t, n) for n, t in total.items() if t != float("inf")), default=(0, ""))
print(best[1])
PYEOF
}
case " $STEPS " in *" cubek "*)
  if [ -s "$OUT/gemm-cubek.jsonl" ]; then
    for pair in prefill:4096:8x512x0,32x256x0 decode:32:32x128x128; do
      IFS=: read -r what m runs <<<"$pair"
      best=$(cubek_best "$m")
      echo "== cubek fastest at m=$m: ${best:-none}" | tee -a "$OUT/steps.log"
      [ -n "$best" ] && step cubek-$what 80 bash -c "MMREASON_GEMM=cubek:$best $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs $runs --repeats 2 --json | tee -a $TP"
    done
  fi;;
esac
# What the cuBLAS workspace (32 MiB on Hopper, as PyTorch sets it) changed: the same products and work without.
step cubek-nows-gemm 40 bash -c "MMREASON_CUBLAS_WORKSPACE_MIB=0 $BIN/gemm_bench --backend cuda --dtype bf16 --shapes 4096x4096x14336,32x4096x14336 --iters 10 | relabel linear_nt_impl cublas-nows | tee -a $OUT/gemm.jsonl"
step cubek-nows-mistral 80 bash -c "MMREASON_CUBLAS_WORKSPACE_MIB=0 $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 8x512x0,32x128x128 --repeats 2 --json | relabel gemm cublas-nows | tee -a $TP"
# cubek's flash attention (prefill without padding, the CLIP tower; bf16/f16 only): correctness — the kernels
# against the composition at head sizes 64 and 128 (the model fixtures' heads of 4-8 and short prompts are
# below what the tensor-core kernel takes; the unit kernel does take them) — then figures. CLIP's 577 positions
# run on operands padded to whole stages (with a head column masking the padded keys).
step flash-kernels 120 bash -c "$BIN/fused_kernels flash_attention --include-ignored --nocapture 2>&1 | tee $OUT/flash_kernels.log | grep -E 'test |panicked|error|ran|not used' "
step flash-parity 120 bash -c "MMREASON_ATTENTION=flash-unit $BIN/backend_parity --include-ignored --test-threads 1 --nocapture 2>&1 | tee $OUT/parity-flash.log | grep -E 'PARITY|test |panicked|error|flash' "
for f in flash flash2 flash8 flash-unit; do
  prefill_row flash-$f-mistral cublas-$f MMREASON_ATTENTION=$f
  clip_row flash-$f-clip cublas-$f MMREASON_ATTENTION=$f
done
step unfused-mistral 80 bash -c "MMREASON_FUSED=off $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 8x512x0,1x128x128 --repeats 2 --json | relabel gemm cublas-unfused | tee -a $TP"
step unfused-clip 30 bash -c "MMREASON_FUSED=off $BIN/throughput --config clip-vit-l-336 --random-weights --backend cuda --dtype bf16 --runs 32x0x0 --repeats 2 --json | relabel gemm cublas-unfused | tee -a $TP"
# The skinny product kernel (decode at small batch) off, and taking the batch-32 decode products too.
step gemvbase-off 60 bash -c "MMREASON_GEMV_MAX_M=0 $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 1x128x128 --repeats 2 --json | relabel gemm cublas-nogemv | tee -a $TP"
step gemvbase-32 60 bash -c "MMREASON_GEMV_MAX_M=32 $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 32x128x128 --repeats 2 --json | relabel gemm cublas-gemv32 | tee -a $TP"
# The three-pass attention softmax (MMREASON_SOFTMAX=passes; the default since run 8 reads each row once, in
# registers) on prefill and CLIP.
prefill_row softmax-mistral cublas-softmax-passes MMREASON_SOFTMAX=passes
clip_row softmax-clip cublas-softmax-passes MMREASON_SOFTMAX=passes
# The chunked decode attention kernel (MMREASON_DECODE_ATTN=chunked; the default since run 8 has more loads in
# flight) on decode b1 and b32.
decode_row decode-chunked cublas-decode-chunked MMREASON_DECODE_ATTN=chunked
# The few-row kernel with one plane per column (MMREASON_GEMV=plane:UNROLL:COLUMNS) against the shared-memory
# reduction (the default, in the mistral rows above) on decode b1; the kernels step times each on one product.
for g in plane:4:8 plane:8:8 plane:2:16; do
  step gemv-$g 60 bash -c "MMREASON_GEMV=$g $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 1x128x128 --repeats 2 --json | relabel gemm cublas-gemv-$g | tee -a $TP"
done
# The multi-row kernel (MMREASON_GEMV_MULTI=ROWS:COLUMNS) for the batch-32 decode products instead of cuBLAS.
for g in 8:4 16:2 4:4; do
  step gemv-multi-$g 60 bash -c "MMREASON_GEMV_MULTI=$g $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 32x128x128 --repeats 2 --json | relabel gemm cublas-multi-$g | tee -a $TP"
done
step small-mistral 60 bash -c "MMREASON_CUBLAS_MIN_WORK=16777216 $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 1x128x128,32x128x128 --repeats 2 --json | relabel gemm cublas-min16M | tee -a $TP"
step burn-mistral 90 bash -c "MMREASON_GEMM=burn $BIN/throughput --config mistral-7b --random-weights --backend cuda --dtype bf16 --runs 8x512x0,1x128x32 --repeats 1 --json | tee -a $TP"
step burn-clip 30 bash -c "MMREASON_GEMM=burn $BIN/throughput --config clip-vit-l-336 --random-weights --backend cuda --dtype bf16 --runs 32x0x0 --repeats 2 --json | tee -a $TP"
step llama-cublas 80 bash -c "$BIN/throughput --config llama-2-7b --random-weights --backend cuda --dtype bf16 --runs $RUNS --repeats 2 --json | tee -a $TP"
step llama-torch 70 bash -c "$PY benches/peers/torch_throughput.py --preset llama-2-7b --device cuda --dtype bfloat16 --runs $RUNS --repeats 2 | tee -a $TP"
# Our kernels against burn's composition on CUDA, every variant (only ours: run 7, with cubek's matmul and flash
# tests beside it, NVRTC compiling every variant of the three did not finish in 120 s; the cubek and flash steps
# run theirs). Its own group, late: the model parity steps (parity, order, own) check the default variants
# inside the models, and NVRTC compiling all the others can take minutes of a call.
step fused-kernels 180 bash -c "$BIN/fused_kernels fused_kernels_on_cuda --include-ignored --nocapture 2>&1 | tee $OUT/fused_kernels.log | grep -E 'test |panicked|error' "
if [ -s "$TP" ]; then $PY benches/gpu/table.py "$TP" | tee "$OUT/table.md"; fi
if [ -s "$OUT/gemm.jsonl" ]; then $PY benches/gpu/gemm_table.py "$OUT/gemm.jsonl" $(ls "$OUT"/gemm-*.jsonl 2>/dev/null) | tee "$OUT/gemm.md"; fi
step kernels 300 bash -c "CRITERION_HOME=$OUT/criterion MMREASON_BENCH_BACKEND=cuda $BIN/kernels --bench --warm-up-time 1 --measurement-time 2 2>&1 | tee $OUT/kernels.log | grep -E '^[a-z_0-9]+/|time:'"
