#!/usr/bin/env python3
"""Compiles the CUDA C++ of our cubecl kernels with NVRTC, as cubecl-cuda does on the device, without a GPU.

    MMREASON_CUDA_SOURCES=DIR cargo test -p mmreason-model --features wgpu,cuda --lib cuda_source
    python3 benches/gpu/nvrtc_check.py DIR [--arch sm_90a]

A kernel NVRTC rejects would otherwise be found only on a lent GPU, in the middle of its 15 minutes. NVRTC needs
no GPU: it ships in the `nvidia-cuda-nvrtc` wheels that torch installs (the reference venv has them) and in the
CUDA toolkit. The library and the headers (cuda_bf16.h, cccl) are looked for in `$NVRTC` / `$CUDA_INCLUDE`, then
in the `nvidia` Python package, then in `$CUDA_PATH` and /usr/local/cuda. The options are cubecl-cuda 0.10's
(`--gpu-architecture=sm_90a` for compute capability 9.0, the include paths, `-lineinfo`). Kernels on tensor
cores include `mma.h`, which in CUDA 13's wheels needs `crt/mma.h` from `nvidia-cuda-crt`: without a torch venv,
`pip install "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-cccl==13.*" "nvidia-cuda-crt==13.*"`.

Prints one line per failing kernel with NVRTC's log, then a summary; exits 1 if any kernel fails, 2 if NVRTC or
the headers are not found (also when the only failures are kernels whose `mma.h` cannot find `crt/mma.h`), 3 if
DIR holds no sources. With `--table FILE` it also writes what ptxas reports for
each kernel (`--ptxas-options=-v`: registers per unit, spills, stack, barriers) as a Markdown table: a kernel
that spills registers to local memory or holds so many that few units fit on an SM is slow before it runs.
With `--sass DIR` (and cuobjdump: `pip install "nvidia-cuda-cuobjdump==13.*"`) it also writes the SASS of the
kernels `--sass-filter` matches (the mma attention's by default) and `DIR/sass.md`, their static counts: what
ptxas made of the source (branches in the main loop, products and loads per loop) without a GPU.
"""
import argparse
import ctypes
import glob
import os
import re
import sys


def cuda_roots():
    """Where CUDA's pieces are looked for, best first: (root, its library directory) for each package of the
    `nvidia` pip wheels (`lib`), then `$CUDA_PATH` and /usr/local/cuda (`lib64`). Each root has `include` and
    may have `bin`."""
    out = []
    try:
        import nvidia  # the pip wheels' namespace package

        for top in nvidia.__path__:
            out += [(root, "lib") for root in sorted(glob.glob(os.path.join(top, "*")), reverse=True)]
    except ImportError:
        pass
    for root in [os.environ.get("CUDA_PATH"), "/usr/local/cuda"]:
        if root:
            out.append((root, "lib64"))
    return out


def candidates():
    """(library, include dir) pairs to try, best first."""
    out = []
    if os.environ.get("NVRTC"):
        out.append((os.environ["NVRTC"], os.environ.get("CUDA_INCLUDE")))
    for root, libdir in cuda_roots():
        for lib in sorted(glob.glob(os.path.join(root, libdir, "libnvrtc.so*")), reverse=True):
            if "builtins" not in lib:
                out.append((lib, os.path.join(root, "include")))
    return [(lib, inc) for lib, inc in out if inc and os.path.exists(os.path.join(inc, "cuda_bf16.h"))]


def compile_one(nvrtc, source, name, options, want_cubin=False):
    """(True, (log, ptx, cubin)) when NVRTC compiles `source` (the log holds ptxas's report with
    `--ptxas-options=-v`; the cubin only with `want_cubin` and a real architecture), else (False, log)."""
    prog = ctypes.c_void_p()
    rc = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, name, 0, None, None)
    if rc != 0:
        return False, f"nvrtcCreateProgram returned {rc}"
    try:
        opts = (ctypes.c_char_p * len(options))(*options)
        rc = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        log = log.value.decode(errors="replace").strip()
        if rc != 0:
            return False, log or f"nvrtcCompileProgram returned {rc}"
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        rc = nvrtc.nvrtcGetPTX(prog, ptx)
        if rc != 0:
            return False, f"nvrtcGetPTX returned {rc}"
        cubin = None
        if want_cubin:
            nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            if size.value and nvrtc.nvrtcGetCUBIN(prog, buf) == 0:
                cubin = buf.raw
        return True, (log, ptx.value.decode(errors="replace"), cubin)
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


# Sources the model compiles with NVRTC itself at run time (not through cubecl), with no options: the
# ordering kernels of `gemm::cuda` (`ORDERING_KERNELS`).
RUNTIME_COMPILED = {"mmreason_ordering.cu"}


def resources(log):
    """ptxas's figures for the one entry point of a kernel's log (`--ptxas-options=-v`), or None."""
    fields = {
        "registers": r"Used (\d+) registers",
        "barriers": r"used (\d+) barriers",
        "stack": r"(\d+) bytes stack frame",
        "spill_stores": r"(\d+) bytes spill stores",
        "spill_loads": r"(\d+) bytes spill loads",
    }
    out = {}
    for key, pattern in fields.items():
        m = re.search(pattern, log)
        if m:
            out[key] = int(m.group(1))
    return out if "registers" in out else None


def memory_ops(ptx):
    """Global loads and stores in the PTX (static counts), as (128-bit loads, other loads, 128-bit stores, other
    stores): the vectorised kernels should move their rows in 128-bit accesses (`ld.global.nc.v4.u32`)."""
    counts = [0, 0, 0, 0]
    # Qualifiers may hold `::` and capitals (`ld.global.nc.L1::no_allocate.v4.u32`).
    for op, shape in re.findall(r"\b(ld|st)\.global((?:\.[\w:]+)*)", ptx):
        parts = shape.split(".")
        bits = next((int(p[1:]) for p in reversed(parts) if re.fullmatch(r"[usfb]\d+", p)), 0)
        lanes = next((int(p[1:]) for p in parts if re.fullmatch(r"v\d", p)), 1)
        wide = bits * lanes >= 128
        counts[(0 if op == "ld" else 2) + (0 if wide else 1)] += 1
    return tuple(counts)


def cuobjdump():
    """cuobjdump from the `nvidia-cuda-cuobjdump` wheel or a CUDA toolkit, or None."""
    found = [path for root, _ in cuda_roots() for path in glob.glob(os.path.join(root, "bin", "cuobjdump"))]
    return found[0] if found else None


# One SASS instruction: `/*0a30*/  @!P1 BRA 0x1b40 ;` → (address, predicate, opcode, operands).
SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")


def sass_counts(sass):
    """Static counts of a kernel's SASS: every instruction, and in its main loop (the longest backward branch that
    holds tensor-core products) the instructions, branches, `mma.sync` (HMMA), `ldmatrix` (LDSM), exponentials
    (MUFU.EX2) and shared-memory barriers. Static, not executed: a loop body with two paths counts both."""
    ins = []
    for m in SASS_LINE.finditer(sass):
        ins.append((int(m.group(1), 16), m.group(3), m.group(4).strip()))
    loop = (0, -1)
    for i, (addr, op, args) in enumerate(ins):
        if op.startswith("BRA") and args.startswith("0x"):
            target = int(args.split()[0], 16)
            if target < addr:
                j = next(k for k, x in enumerate(ins) if x[0] >= target)
                has_mma = any(x[1].startswith("HMMA") for x in ins[j : i + 1])
                if has_mma and i - j > loop[1] - loop[0]:
                    loop = (j, i)
    body = ins[loop[0] : loop[1] + 1]

    def count(prefix, within):
        return sum(1 for _, op, _ in within if op.startswith(prefix))

    return {
        "instructions": len(ins),
        "loop": len(body),
        "loop_branches": count("BRA", body),
        "loop_hmma": count("HMMA", body),
        "loop_ldsm": count("LDSM", body),
        "loop_ex2": count("MUFU.EX2", body),
        "loop_barriers": count("BAR.SYNC", body),
    }


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def disassemble(dumper, cubin, out_dir, stem):
    """`stem.sass` in `out_dir` from the cubin, and its static counts."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([dumper, "-sass", f.name], capture_output=True, text=True, check=True).stdout
    write_atomic(os.path.join(out_dir, stem + ".sass"), sass)
    return sass_counts(sass)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="the .cu files written by the cuda_source test (MMREASON_CUDA_SOURCES)")
    ap.add_argument("--arch", default="sm_90a", help="NVRTC's --gpu-architecture (cubecl: sm_90a on an H100)")
    ap.add_argument("--table", help="write ptxas's registers, spills and stack per kernel here (Markdown)")
    ap.add_argument(
        "--sass",
        help="write each matching kernel's SASS (cuobjdump, from `pip install \"nvidia-cuda-cuobjdump==13.*\"`) "
        "into this directory, with a table of its static counts (sass.md)",
    )
    ap.add_argument("--sass-filter", default="mma_attention", help="a regular expression on the kernel's file name")
    args = ap.parse_args()

    sources = sorted(glob.glob(os.path.join(args.dir, "*.cu")))
    if not sources:
        # Not "NVRTC missing" (2): the generating test did not run (renamed, filtered out) — a failure.
        print(f"nvrtc_check: no .cu files in {args.dir}", file=sys.stderr)
        return 3
    found = candidates()
    if not found:
        print("nvrtc_check: no libnvrtc with CUDA headers found (set NVRTC and CUDA_INCLUDE)", file=sys.stderr)
        return 2
    lib, include = found[0]
    nvrtc = ctypes.CDLL(lib)
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    options = [f"--gpu-architecture={args.arch}".encode(), f"--include-path={include}".encode(), b"-lineinfo"]
    if args.table:
        # Not one of cubecl's options: it only makes ptxas report, the code is the same.
        options.append(b"--ptxas-options=-v")
    cccl = os.path.join(include, "cccl")
    if os.path.isdir(cccl):
        options.append(f"--include-path={cccl}".encode())

    dumper = cuobjdump() if args.sass else None
    if args.sass and not dumper:
        print("nvrtc_check: no cuobjdump found: --sass writes nothing", file=sys.stderr)
    if dumper:
        os.makedirs(args.sass, exist_ok=True)
    sass_rows = []
    failed = 0
    # Kernels that failed only because the tensor-core header's own include is missing (not a fault of theirs).
    no_crt = 0
    rows = []
    for path in sources:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            src = f.read()
        want = bool(dumper) and re.search(args.sass_filter, name) is not None
        ok, log = compile_one(nvrtc, src, name.encode(), options, want_cubin=want)
        if ok and want and log[2]:
            sass_rows.append((name[: -len(".cu")], disassemble(dumper, log[2], args.sass, name[: -len(".cu")])))
        if ok and name in RUNTIME_COMPILED:
            # Also as the model compiles it at run time: cudarc's `compile_ptx`, no options (NVRTC's default
            # virtual architecture; the driver finishes the PTX for the device when it loads it).
            bare_ok, bare_log = compile_one(nvrtc, src, name.encode(), [])
            if not bare_ok:
                ok, log = False, "without options: " + bare_log
        if not ok:
            failed += 1
            no_crt += 'cannot open source file "crt/mma.h"' in log
            print(f"FAIL {name}\n    " + "\n    ".join(log.splitlines()))
        elif args.table:
            rows.append((name[: -len(".cu")], resources(log[0]), memory_ops(log[1])))
    if args.table:
        lines = [
            f"ptxas for {args.arch} (NVRTC {major.value}.{minor.value}): per unit (thread); spills and stack in "
            "bytes; global loads and stores counted in the PTX (instructions, not executions), 128-bit or narrower",
            "",
            "| kernel | registers | spill stores | spill loads | stack | barriers | loads 128/other "
            "| stores 128/other |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r, (ldw, ldn, stw, stn) in rows:
            mem = f"| {ldw}/{ldn} | {stw}/{stn} |"
            if r is None:
                lines.append(f"| {name} | ? | | | | {mem}")
                continue
            lines.append(
                f"| {name} | {r['registers']} | {r.get('spill_stores', 0)} | {r.get('spill_loads', 0)} "
                f"| {r.get('stack', 0)} | {r.get('barriers', 0)} {mem}"
            )
        write_atomic(args.table, "\n".join(lines) + "\n")
        spilling = [name for name, r, _ in rows if r and (r.get("spill_stores", 0) or r.get("spill_loads", 0))]
        if spilling:
            print(f"nvrtc_check: {len(spilling)} kernels spill registers: {', '.join(spilling)}")
    if dumper:
        lines = [
            f"SASS for {args.arch} (NVRTC {major.value}.{minor.value}, cuobjdump): static counts; `loop` is the "
            "kernel's main loop (its longest backward branch holding tensor-core products), both paths of it",
            "",
            "| kernel | instructions | loop | loop branches | HMMA | LDSM | MUFU.EX2 | barriers |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, c in sass_rows:
            lines.append(
                f"| {name} | {c['instructions']} | {c['loop']} | {c['loop_branches']} | {c['loop_hmma']} "
                f"| {c['loop_ldsm']} | {c['loop_ex2']} | {c['loop_barriers']} |"
            )
        write_atomic(os.path.join(args.sass, "sass.md"), "\n".join(lines) + "\n")
    print(
        f"nvrtc_check: {len(sources) - failed} of {len(sources)} kernels compile for {args.arch} "
        f"(NVRTC {major.value}.{minor.value}, {lib})"
    )
    if no_crt:
        print(
            f"nvrtc_check: {no_crt} kernels on tensor cores need crt/mma.h, which these headers lack (CUDA 13's "
            'wheels ship it in nvidia-cuda-crt: pip install "nvidia-cuda-crt==13.*")'
        )
        if no_crt == failed:
            return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
