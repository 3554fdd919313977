#!/usr/bin/env python3
"""benches/gpu/run.sh without a GPU: every step of every group, against stand-ins for the binaries.

run.sh only ever runs on a lent device, 15 minutes a session, and a broken line in it (a quote, a variable, a
step whose group STEPS does not list, a gate that never opens, a test filter that matches nothing) would be
found there and cost that time. Here the binaries it runs (`throughput`, `gemm_bench`, `host_probe`,
`backend_parity`, `fused_kernels`, `kernels`), the Python peers and `nvidia-smi` are stand-ins. Each checks
its call against the sources (the example's own flags, a config the example knows, test and bench filters
that name something in the test or bench file, `MMREASON_*` settings the crates read, a peer script that
exists), records it (program, settings, arguments), and prints what the real one prints in shape (JSON lines
with every field the tables read, test lines, criterion lines, a cubecl profiler log where a `cubecl.toml` asks
for one). Every step's shell runs with pipefail, so a command that never ran is not hidden behind `| tee`.
Then:

- every step of the default STEPS must have run and ended with status 0 (none skipped, none gated off);
- no two steps may share a name, and no stand-in may have refused its call;
- each of our throughput rows with a switch on must carry a label of its own (not the default's "cublas",
  not a setting), and each label must name one set of settings (the tables give each label a column);
- run.sh must say nothing of commands not found, syntax errors or unset variables;
- the tables run.sh writes at the end (table.md, gemm.md) and every profile table must be there.

    python3 benches/gpu/dry_run.py [--calls FILE] [--steps "GROUPS"]

`--calls FILE` keeps what ran, in order: each step's command line as `step` hands it to `timeout`, and each
stand-in's call. Two versions of run.sh that should do the same thing give the same file. `--steps` runs only
those groups, as `STEPS` does on the device, and prints how long each step took in the last run that had it
(benches/gpu/runs/*/steps.log), or for a new step the longest of past steps of its kind (its name's last word:
clip, mistral, kernels, parity…), or its limit: what a planned call should take, before the device's minutes
are spent finding out. Exits 1 on any failed check, naming it.
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One program for every stand-in (and the `timeout` that `step` runs each command under): it looks at the name
# it was called by. `refuse` records why a call is wrong; the dry run fails on any.
STAND_IN = r'''
import json, os, re, sys

name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
work = os.environ["DRY_RUN_WORK"]
known = json.load(open(os.environ["DRY_RUN_KNOWN"]))


def record(line):
    with open(os.environ["DRY_RUN_CALLS"], "a") as f:
        f.write(line.replace(work, "$WORK") + "\n")


def refuse(why):
    with open(os.environ["DRY_RUN_CALLS"] + ".refused", "a") as f:
        f.write(f"{name} {' '.join(args)}: {why}\n".replace(work, "$WORK"))
    sys.exit(3)


def compact(row):
    """A JSON line as serde_json writes it (no spaces: run.sh's `relabel` matches `"gemm":"cublas"`)."""
    return json.dumps(row, separators=(",", ":"))


def flags(allowed):
    """The `--flag value` pairs of `args` (a bool flag maps to True), refusing flags `allowed` lacks
    (allowed: flag -> whether it takes a value) and positionals (returned apart)."""
    out, positional, i = {}, [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if a not in allowed:
                refuse(f"{a} is not a flag of {name}")
            if allowed[a]:
                if i + 1 >= len(args):
                    refuse(f"{a} without a value")
                out[a] = args[i + 1]
                i += 1
            else:
                out[a] = True
        else:
            positional.append(a)
        i += 1
    return out, positional


if name == "timeout":
    # `step`'s `timeout -k 10 SECS COMMAND...`: the command as it will run, then the real timeout.
    record("step: " + " ".join(args[3:]))
    os.execvp(os.environ["DRY_RUN_TIMEOUT"], [os.environ["DRY_RUN_TIMEOUT"]] + args)

if name == "python3" and args and (args[0] in ("-c", "-") or not args[0].startswith("benches/peers/")):
    # The tables, the profile script, run.sh's one-liners: the real interpreter.
    os.execv(os.environ["DRY_RUN_PYTHON"], [os.environ["DRY_RUN_PYTHON"]] + args)

keep = ("MMREASON_", "CRITERION_HOME", "GEMM_LABEL", "BACKEND", "DTYPE")
settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(keep) and k != "MMREASON_FIXTURES")
record(" ".join([name] + settings + ["|"] + args))
for s in settings:
    if s.startswith("MMREASON_") and s.split("=")[0] not in known["settings"]:
        refuse(f"{s.split('=')[0]} is read nowhere in crates/ or examples/")

if name == "nvidia-smi":
    print("stand-in GPU, 0 MiB, 0")
    sys.exit(0)
if name == "python3":
    if not os.path.exists(args[0]):
        refuse(f"no peer script {args[0]}")
    opts, _ = flags({f: True for f in ("--preset", "--device", "--dtype", "--runs", "--repeats", "--shapes",
                                        "--iters")})
    if args[0].endswith("torch_gemm.py"):
        for shape in opts["--shapes"].split(","):
            m, k, n = (int(v) for v in shape.split("x"))
            print(compact({"m": m, "k": k, "n": n, "dtype": opts.get("--dtype"), "max_rel_diff": 0.0,
                              "linear_nt_impl": "torch", "linear_nt_tflops": 1.0}))
        sys.exit(0)
if name == "throughput" or name == "python3":
    torch = name == "python3"
    if torch:
        opts, _ = flags({f: True for f in ("--preset", "--device", "--dtype", "--runs", "--repeats")})
        config = opts["--preset"]
    else:
        opts, positional = flags(known["flags"]["throughput"])
        if positional:
            refuse(f"arguments {positional} the example does not take")
        config = opts.get("--config")
        if "--json" not in opts and os.environ.get("MMREASON_TIMELINE") != "1":
            refuse("a row without --json (table.py reads JSON lines only)")
    if config not in known["configs"]:
        refuse(f"config {config} is not one the example knows")
    runs = opts.get("--runs", "1x8x0")
    repeats = int(opts.get("--repeats", "1"))
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
            gemm = os.environ.get("MMREASON_GEMM", "cublas").replace("cubek:", "cubek-")
            row.update({"gemm": gemm, "cublas_order": "stream", "cublas_orders": {"stream": 1},
                        "dry_run_settings": [s for s in settings if s.startswith("MMREASON_")]})
        if config.startswith("clip"):
            row["images_s"] = 1000.0
        else:
            if p:
                row.update({"prefill_tok_s": 1000.0, "prefill_host_share": 0.5})
            if g:
                row.update({"decode_tok_s": 100.0, "decode_host_share": 0.5})
        print(compact(row) if torch or "--json" in opts else f"| stand-in timeline | {run} |")
elif name == "gemm_bench":
    opts, positional = flags(known["flags"]["gemm_bench"])
    if positional:
        refuse(f"arguments {positional} the example does not take")
    cubek = [c for c in opts.get("--cubek", "").split(",") if c]
    for shape in opts["--shapes"].split(","):
        m, k, n = (int(v) for v in shape.split("x"))
        print(compact({"m": m, "k": k, "n": n, "dtype": opts.get("--dtype"), "max_rel_diff": 0.0,
                          "linear_nt_impl": "cublas", "linear_nt_tflops": 1.0, "burn_tflops": 1.0,
                          "cubek": [{"name": c, "tflops": 1.0, "max_rel_diff": 0.0} for c in cubek]}))
elif name == "host_probe":
    opts, positional = flags(known["flags"]["host_probe"])
    if positional:
        refuse(f"arguments {positional} the example does not take")
    print("{}")
    print("| stand-in host probe |", file=sys.stderr)
elif name in ("backend_parity", "fused_kernels", "kernels"):
    if name == "kernels":
        _, filters = flags({"--bench": False, "--warm-up-time": True, "--measurement-time": True})
        # criterion's filter is a regular expression: each alternative must name a benchmark.
        filters = [alt for f in filters for alt in f.split("|")]
    else:
        _, filters = flags({"--include-ignored": False, "--nocapture": False, "--exact": False,
                            "--test-threads": True})
    source = known["sources"][name]
    for f in filters:
        # A benchmark's id may be put together (`format!("{name}_mma")`): there each word must be in the source.
        if f not in source and not (name == "kernels" and all(w in source for w in f.split("_"))):
            refuse(f"the filter {f} names nothing in {name}'s source: no test or bench would run")
    if name == "kernels":
        print("stand_in/kernel\n                        time:   [1.0 ms 1.0 ms 1.0 ms]")
    else:
        print("test stand_in ... ok\n\ntest result: ok. 1 passed; 0 failed")
else:
    refuse("no stand-in for this program")
'''

PROGRAMS = ["throughput", "gemm_bench", "host_probe", "backend_parity", "fused_kernels", "kernels"]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def example_flags(path):
    """The example's `--flags` from its clap `Args` (`#[arg(long…)]` fields), each with whether it takes a
    value (every type but `bool`)."""
    fields = re.findall(r"#\[arg\(long[^\]]*\)\]\s*(?:///[^\n]*\n\s*)*(\w+):\s*([\w<>]+)", read(path))
    return {"--" + field.replace("_", "-"): ty != "bool" for field, ty in fields}


def known_names():
    """What the stand-ins check calls against, read from the sources."""
    sources = glob.glob(os.path.join(ROOT, "crates", "**", "*.rs"), recursive=True)
    sources += glob.glob(os.path.join(ROOT, "examples", "*.rs")) + glob.glob(os.path.join(ROOT, "benches", "*.rs"))
    settings = set()
    for p in sources:
        with open(p, encoding="utf-8") as f:
            settings |= set(re.findall(r"MMREASON_[A-Z0-9_]+", f.read()))
    throughput = read("crates/model/src/throughput.rs")
    return {
        "settings": sorted(settings),
        "configs": sorted(set(re.findall(r'"([a-z0-9.-]+-\d+b)"', throughput))
                          | set(re.findall(r'CLIP_PRESET: &str = "([^"]+)"', throughput))),
        "flags": {p: example_flags(f"examples/{p}.rs") for p in ("throughput", "gemm_bench", "host_probe")},
        "sources": {
            "backend_parity": read("crates/model/tests/backend_parity.rs"),
            "fused_kernels": read("crates/model/tests/fused_kernels.rs"),
            "kernels": read("benches/kernels.rs"),
        },
    }


def labels(path):
    """Our throughput rows' labels against their settings: table.py puts each label in a column of its own, so a
    switch's row left with the default's label ("cublas") would stand in the default's column, a label that
    names two different sets of settings would mix them, and a setting taken for the label is a slip."""
    failures, named = [], {}
    rows = [json.loads(line) for line in open(path) if line.startswith("{")] if os.path.exists(path) else []
    for r in rows:
        if r.get("backend") == "torch":
            continue
        label, settings = r["gemm"], tuple(s for s in r["dry_run_settings"] if not s.startswith("MMREASON_GEMM="))
        if "=" in label:
            failures.append(f"a row of {r['config']} labelled {label}: a setting taken for the label")
        elif settings and label == "cublas":
            failures.append(f"a row of {r['config']} with {' '.join(settings)} kept the default's label")
        named.setdefault(label, set()).add(settings)
    for label, sets in sorted(named.items()):
        if len(sets) > 1:
            failures.append(f"the label {label} names different settings: {sorted(sets)}")
    return failures


def past_durations():
    """Seconds each step took in the runs recorded under benches/gpu/runs, the latest run's where several have
    it: name -> (seconds, run)."""
    found = []
    for path in glob.glob(os.path.join(ROOT, "benches", "gpu", "runs", "*", "**", "steps.log"), recursive=True):
        run = os.path.relpath(path, os.path.join(ROOT, "benches", "gpu", "runs")).split(os.sep)[0]
        number = int(m.group(1)) if (m := re.search(r"run(\d+)$", run)) else 0
        for line in open(path, encoding="utf-8"):
            if m := re.match(r"^== (\S+) rc=\S+ in (\d+)s$", line.strip()):
                found.append((number, path, m.group(1), int(m.group(2)), run))
    return {name: (secs, run) for _, _, name, secs, run in sorted(found)}


def estimate(started, limits):
    """A table of the steps a call would run and how long each took before (see the module's doc)."""
    past = past_durations()
    kinds = {}
    for name, (secs, _) in past.items():
        kinds.setdefault(name.rsplit("-", 1)[-1], []).append(secs)
    total, lines = 0, ["| step | seconds | from |", "|---|---|---|"]
    for name in started:
        kind = name.rsplit("-", 1)[-1]
        if name in past:
            secs, source = past[name][0], past[name][1]
        elif kind in kinds:
            seen = sorted(kinds[kind])
            secs = min(seen[len(seen) // 2], limits[name])
            source = f"new: the median of {len(seen)} past steps of its kind ({kind}), at most its limit"
        else:
            secs, source = limits[name], "new: its limit"
        total += secs
        lines.append(f"| {name} | {secs} | {source} |")
    lines.append(f"| **all {len(started)} steps** | **{total}** | |")
    return "\n".join(lines)


def main(argv):
    def value(flag):
        if flag not in argv:
            return None
        i = argv.index(flag)
        if i + 1 >= len(argv):
            sys.exit(f"dry_run: {flag} needs a value")
        return argv[i + 1]

    work = tempfile.mkdtemp(prefix="mmreason-dry-run-")
    try:
        return run(work, value("--calls"), value("--steps"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work, calls_out, steps):
    bin_dir, path_dir, out = (os.path.join(work, d) for d in ("bin", "path", "out"))
    for d in (bin_dir, path_dir, out):
        os.makedirs(d)
    known = os.path.join(work, "known.json")
    with open(known, "w") as f:
        json.dump(known_names(), f)
    # The stand-ins' wrapper passes its own path first: the program's argv[0].
    script = os.path.join(work, "stand_in.py")
    with open(script, "w") as f:
        f.write("import sys\nsys.argv = sys.argv[1:]\n" + STAND_IN)
    real_timeout = shutil.which("timeout")
    if not real_timeout:
        sys.exit("dry_run: run.sh needs coreutils' timeout")
    stand_ins = [(bin_dir, p) for p in PROGRAMS] + [(path_dir, p) for p in ("nvidia-smi", "python3", "timeout")]
    for d, name in stand_ins:
        exe = os.path.join(d, name)
        with open(exe, "w") as f:
            f.write(f'#!/usr/bin/env bash\nexec {shlex.quote(sys.executable)} {shlex.quote(script)} "$0" "$@"\n')
        os.chmod(exe, 0o755)
    calls = os.path.join(work, "calls.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMREASON_")}
    # What run.sh or profile.sh would take from the caller's environment.
    for k in ("STEPS", "BACKEND", "DTYPE", "GEMM_LABEL", "CRITERION_HOME", "TP", "PACK", "DEADLINE"):
        env.pop(k, None)
    env.update({
        "OUT": out, "BIN": bin_dir, "PY": os.path.join(path_dir, "python3"), "PACK": "0", "DEADLINE": "0",
        "PATH": path_dir + os.pathsep + env.get("PATH", ""),
        # Most steps pipe into `tee`, whose status would stand for a command that never ran.
        "SHELLOPTS": "pipefail",
        "DRY_RUN_WORK": work, "DRY_RUN_CALLS": calls, "DRY_RUN_KNOWN": known, "DRY_RUN_PYTHON": sys.executable,
        "DRY_RUN_TIMEOUT": real_timeout,
    })
    if steps:
        env["STEPS"] = steps
    try:
        proc = subprocess.run(["bash", "benches/gpu/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600, start_new_session=True)
    except subprocess.TimeoutExpired:
        print("dry_run: run.sh did not finish within 600 s (every stand-in returns at once)", file=sys.stderr)
        return 1
    failures = []
    if proc.returncode != 0:
        failures.append(f"run.sh exited with {proc.returncode}")
    steps_log = os.path.join(out, "steps.log")
    lines = open(steps_log).read().splitlines() if os.path.exists(steps_log) else []
    starts = [m.groups() for m in map(re.compile(r"^== (\S+) \(limit (\d+)s\)$").match, lines) if m]
    started = [name for name, _ in starts]
    limits = {name: int(secs) for name, secs in starts}
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
        if re.match(r"^== \S+ skipped", line) and not (steps and line.endswith("skipped (STEPS)")):
            failures.append(f"not run: {line[3:]}")
    # A line of run.sh that did nothing (a misspelt command or helper) says so only on stderr.
    for line in proc.stderr.splitlines():
        if re.search(r"command not found|syntax error|unbound variable|No such file", line):
            failures.append(f"run.sh said: {line}")
    if os.path.exists(calls + ".refused"):
        failures += [f"a stand-in refused: {line}" for line in open(calls + ".refused").read().splitlines()]
    groups = (steps or "gemm profile").split()
    tables = ["table.md"] + (["gemm.md"] if "gemm" in groups or "cubek" in groups else [])
    if "profile" in groups:
        tables += [f"profile-{p}.md" for p in ("clip", "prefill", "decode1", "decode32", "order-clip")]
    for table in tables:
        path = os.path.join(out, table)
        if not (os.path.exists(path) and os.path.getsize(path) > 0):
            failures.append(f"no {table}")
    failures += labels(os.path.join(out, "throughput.jsonl"))
    recorded = open(calls).read() if os.path.exists(calls) else ""
    if calls_out:
        with open(calls_out, "w") as f:
            f.write(recorded + "".join(f"{line}\n" for line in lines if "(limit" in line))
    runs = sum(1 for line in recorded.splitlines() if not line.startswith("step: "))
    print(f"dry_run: {len(started)} steps, {runs} calls of stand-ins")
    if steps:
        print(f"dry_run: what STEPS=\"{steps}\" would take on the device, by past runs:\n" + estimate(started, limits))
    if failures:
        for f in dict.fromkeys(failures):
            print(f"dry_run: {f}", file=sys.stderr)
        print("dry_run: run.sh's output:\n" + proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
