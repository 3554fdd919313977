#!/usr/bin/env python3
"""Compiles the CUDA C++ of our cubecl kernels with NVRTC, as cubecl-cuda does on the device, without a GPU.

    MMREASON_CUDA_SOURCES=DIR cargo test -p mmreason-model --features wgpu,cuda --lib cuda_source
    python3 benches/gpu/nvrtc_check.py DIR [--arch sm_90a]

A kernel NVRTC rejects would otherwise be found only on a lent GPU, in the middle of its 15 minutes. NVRTC needs
no GPU: it ships in the `nvidia-cuda-nvrtc` wheels that torch installs (the reference venv has them) and in the
CUDA toolkit. The library and the headers (cuda_bf16.h, cccl) are looked for in `$NVRTC` / `$CUDA_INCLUDE`, then
in the `nvidia` Python package, then in `$CUDA_PATH` and /usr/local/cuda. The options are cubecl-cuda 0.10's
(`--gpu-architecture=sm_90a` for compute capability 9.0, the include paths, `-lineinfo`).

Prints one line per failing kernel with NVRTC's log, then a summary; exits 1 if any kernel fails, 2 if NVRTC or
the headers are not found or DIR holds no sources.
"""
import argparse
import ctypes
import glob
import os
import sys


def candidates():
    """(library, include dir) pairs to try, best first."""
    out = []
    if os.environ.get("NVRTC"):
        out.append((os.environ["NVRTC"], os.environ.get("CUDA_INCLUDE")))
    try:
        import nvidia  # the pip wheels' namespace package

        for root in nvidia.__path__:
            for lib in sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")), reverse=True):
                if "builtins" in lib:
                    continue
                out.append((lib, os.path.join(os.path.dirname(os.path.dirname(lib)), "include")))
    except ImportError:
        pass
    for root in [os.environ.get("CUDA_PATH"), "/usr/local/cuda"]:
        if root:
            for lib in sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")), reverse=True):
                if "builtins" not in lib:
                    out.append((lib, os.path.join(root, "include")))
    return [(lib, inc) for lib, inc in out if inc and os.path.exists(os.path.join(inc, "cuda_bf16.h"))]


def compile_one(nvrtc, source, name, options):
    """None when NVRTC compiles `source`, else its log."""
    prog = ctypes.c_void_p()
    rc = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, name, 0, None, None)
    if rc != 0:
        return f"nvrtcCreateProgram returned {rc}"
    try:
        opts = (ctypes.c_char_p * len(options))(*options)
        rc = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        if rc == 0:
            return None
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        return log.value.decode(errors="replace").strip() or f"nvrtcCompileProgram returned {rc}"
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="the .cu files written by the cuda_source test (MMREASON_CUDA_SOURCES)")
    ap.add_argument("--arch", default="sm_90a", help="NVRTC's --gpu-architecture (cubecl: sm_90a on an H100)")
    args = ap.parse_args()

    sources = sorted(glob.glob(os.path.join(args.dir, "*.cu")))
    if not sources:
        print(f"nvrtc_check: no .cu files in {args.dir}", file=sys.stderr)
        return 2
    found = candidates()
    if not found:
        print("nvrtc_check: no libnvrtc with CUDA headers found (set NVRTC and CUDA_INCLUDE)", file=sys.stderr)
        return 2
    lib, include = found[0]
    nvrtc = ctypes.CDLL(lib)
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    options = [f"--gpu-architecture={args.arch}".encode(), f"--include-path={include}".encode(), b"-lineinfo"]
    cccl = os.path.join(include, "cccl")
    if os.path.isdir(cccl):
        options.append(f"--include-path={cccl}".encode())

    failed = 0
    for path in sources:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            log = compile_one(nvrtc, f.read(), name.encode(), options)
        if log is not None:
            failed += 1
            print(f"FAIL {name}\n    " + "\n    ".join(log.splitlines()))
    print(
        f"nvrtc_check: {len(sources) - failed} of {len(sources)} kernels compile for {args.arch} "
        f"(NVRTC {major.value}.{minor.value}, {lib})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
