#!/usr/bin/env python3
"""benches/gpu/run.sh without a GPU: every step of every group, against stand-ins for the binaries.

run.sh only ever runs on a lent device, 15 minutes a session, and a broken line in it (a quote, a variable, a
step whose group STEPS does not list, a gate that never opens) would be found there and cost that time. Here
the binaries it runs (`throughput`, `gemm_bench`, `host_probe`, `backend_parity`, `fused_kernels`, `kernels`),
the Python peers and `nvidia-smi` are stand-ins: each records how it was called (program, the MMREASON_*
settings, arguments) and prints what the real one prints in shape (JSON lines with every field the tables
read, test lines, criterion lines, a cubecl profiler log where a `cubecl.toml` asks for one). Then:

- every step of the default STEPS must have run and ended with status 0 (none skipped, none gated off);
- no two steps may share a name;
- the tables run.sh writes at the end (table.md, gemm.md) and every profile table must be there.

    python3 benches/gpu/dry_run.py [--calls FILE]

`--calls FILE` keeps the calls, one per line, in the order they ran, then each step's name and time limit: two
versions of run.sh that should do the same thing give the same file. Exits 1 on any failed check, naming it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One program for every stand-in: it looks at the name it was called by.
STAND_IN = r'''
import json, os, re, subprocess, sys

name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
work = os.environ["DRY_RUN_WORK"]


def flag(f, default=None):
    return args[args.index(f) + 1] if f in args else default


if name == "python3" and args and (args[0] in ("-c", "-") or not args[0].startswith("benches/peers/")):
    # The tables, the profile script, run.sh's one-liners: the real interpreter.
    os.execv(os.environ["DRY_RUN_PYTHON"], [os.environ["DRY_RUN_PYTHON"]] + args)

keep = ("MMREASON_", "CRITERION_HOME", "GEMM_LABEL", "BACKEND", "DTYPE")
envs = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(keep) and k != "MMREASON_FIXTURES")
line = " ".join([name] + envs + ["|"] + args).replace(work, "$WORK")
with open(os.environ["DRY_RUN_CALLS"], "a") as f:
    f.write(line + "\n")

if name == "nvidia-smi":
    print("stand-in GPU, 0 MiB, 0")
elif name == "throughput" or (name == "python3" and args[0].endswith("torch_throughput.py")):
    torch = name == "python3"
    config = flag("--preset") if torch else flag("--config")
    runs = flag("--runs", "1x8x0")
    repeats = int(flag("--repeats", "1"))
    if os.path.exists("cubecl.toml"):
        # cubecl's profiler log: one line per launch, more launches with more repeats.
        log = re.search(r'file = "([^"]+)"', open("cubecl.toml").read()).group(1)
        with open(log, "w") as f:
            f.write("| 1.000ms | StandInKernel\n" * (3 * repeats))
    for run in runs.split(","):
        b, p, g = (int(v) for v in run.split("x"))
        row = {"config": config, "batch": b, "prompt_len": p, "gen_len": g,
               "backend": "torch" if torch else "cuda"}
        if not torch:
            row.update({"gemm": "cublas", "cublas_order": "stream", "cublas_orders": {"stream": 1}})
        if config.startswith("clip"):
            row["images_s"] = 1000.0
        else:
            if p:
                row.update({"prefill_tok_s": 1000.0, "prefill_host_share": 0.5})
            if g:
                row.update({"decode_tok_s": 100.0, "decode_host_share": 0.5})
        print(json.dumps(row) if torch or "--json" in args else f"| stand-in timeline | {run} |")
elif name == "gemm_bench" or (name == "python3" and args[0].endswith("torch_gemm.py")):
    cubek = [c for c in flag("--cubek", "").split(",") if c]
    for shape in flag("--shapes").split(","):
        m, k, n = (int(v) for v in shape.split("x"))
        row = {"m": m, "k": k, "n": n, "dtype": flag("--dtype"), "max_rel_diff": 0.0}
        if name == "gemm_bench":
            row.update({"linear_nt_impl": "cublas", "linear_nt_tflops": 1.0, "burn_tflops": 1.0,
                        "cubek": [{"name": c, "tflops": 1.0, "max_rel_diff": 0.0} for c in cubek]})
        else:
            row.update({"linear_nt_impl": "torch", "linear_nt_tflops": 1.0})
        print(json.dumps(row))
elif name == "host_probe":
    print("{}")
    print("| stand-in host probe |", file=sys.stderr)
elif name in ("backend_parity", "fused_kernels"):
    print("test stand_in ... ok\n\ntest result: ok. 1 passed; 0 failed")
elif name == "kernels":
    print("stand_in/kernel\n                        time:   [1.0 ms 1.0 ms 1.0 ms]")
else:
    sys.exit(f"dry_run: no stand-in for {name} {args}")
'''

PROGRAMS = ["throughput", "gemm_bench", "host_probe", "backend_parity", "fused_kernels", "kernels"]


def main(argv):
    calls_out = argv[argv.index("--calls") + 1] if "--calls" in argv else None
    work = tempfile.mkdtemp(prefix="mmreason-dry-run-")
    try:
        return run(work, calls_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work, calls_out):
    bin_dir, path_dir, out = (os.path.join(work, d) for d in ("bin", "path", "out"))
    for d in (bin_dir, path_dir, out):
        os.makedirs(d)
    script = os.path.join(work, "stand_in.py")
    with open(script, "w") as f:
        f.write(STAND_IN)
    for d, name in [(bin_dir, p) for p in PROGRAMS] + [(path_dir, "nvidia-smi"), (path_dir, "python3")]:
        exe = os.path.join(d, name)
        with open(exe, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} {script} \"$0\" \"$@\"\n")
        os.chmod(exe, 0o755)
    # `$0` of the wrapper is the stand-in's name; the program sees it as argv[1]: shift it into argv[0].
    with open(script) as f:
        body = f.read()
    # A stand-in that fails (a call it does not understand) is a failed check, whatever the step's status
    # (a pipeline without pipefail would hide it).
    guarded = "import sys\nsys.argv = sys.argv[1:]\ntry:\n" + "".join(
        f"    {line}\n" if line else "\n" for line in body.splitlines()) + (
        "except BaseException as e:\n"
        "    if not (isinstance(e, SystemExit) and e.code in (None, 0)):\n"
        "        with open(os.environ['DRY_RUN_CALLS'] + '.failed', 'a') as f:\n"
        "            f.write(f'{sys.argv}: {e!r}\\n')\n"
        "    raise\n")
    with open(script, "w") as f:
        f.write(guarded)
    calls = os.path.join(work, "calls.log")
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("MMREASON_")]:
        del env[k]
    env.update({
        "OUT": out, "BIN": bin_dir, "PY": os.path.join(path_dir, "python3"), "PACK": "0", "DEADLINE": "0",
        "PATH": path_dir + os.pathsep + env.get("PATH", ""), "DRY_RUN_WORK": work, "DRY_RUN_CALLS": calls,
        "DRY_RUN_PYTHON": sys.executable,
    })
    env.pop("STEPS", None)
    proc = subprocess.run(["bash", "benches/gpu/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    failures = []
    if proc.returncode != 0:
        failures.append(f"run.sh exited with {proc.returncode}")
    steps_log = os.path.join(out, "steps.log")
    lines = open(steps_log).read().splitlines() if os.path.exists(steps_log) else []
    started = [m.group(1) for m in map(re.compile(r"^== (\S+) \(limit \d+s\)$").match, lines) if m]
    ended = {m.group(1): m.group(2) for m in map(re.compile(r"^== (\S+) rc=(\S+) in \d+s$").match, lines) if m}
    if not started:
        failures.append("no step ran")
    for name in sorted({n for n in started if started.count(n) > 1}):
        failures.append(f"step {name} ran {started.count(name)} times: two steps share the name")
    for name in started:
        if ended.get(name) != "0":
            failures.append(f"step {name} ended with status {ended.get(name, '(none)')}")
    # What run.sh printed for steps that did not run ("skipped (STEPS)" goes to the terminal only).
    for line in proc.stdout.splitlines() + lines:
        if re.match(r"^== \S+ skipped", line):
            failures.append(f"not run: {line[3:]}")
    for table in ["table.md", "gemm.md"] + [f"profile-{p}.md" for p in
                                            ("clip", "prefill", "decode1", "decode32", "order-clip")]:
        path = os.path.join(out, table)
        if not (os.path.exists(path) and os.path.getsize(path) > 0):
            failures.append(f"no {table}")
    if os.path.exists(calls + ".failed"):
        failures += [f"a stand-in failed: {line}" for line in open(calls + ".failed").read().splitlines()]
    recorded = open(calls).read() if os.path.exists(calls) else ""
    if calls_out:
        with open(calls_out, "w") as f:
            f.write(recorded + "".join(f"{line}\n" for line in lines if "(limit" in line))
    print(f"dry_run: {len(started)} steps, {len(recorded.splitlines())} calls of stand-ins")
    if failures:
        for f in dict.fromkeys(failures):
            print(f"dry_run: {f}", file=sys.stderr)
        print("dry_run: run.sh's output:\n" + proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
