#!/usr/bin/env python3
"""Where one forward's device time goes, kernel by kernel, from cubecl's own kernel profiler.

benches/gpu/run.sh runs the `throughput` example twice under cubecl's profiler (a `cubecl.toml` with
`[profiling.logger] level = "basic"` makes cubecl time every kernel it launches and log `| 1.23ms | Name`):
once with one timed repeat and once with two. Kernel compilation, autotuning and the random weights are the
same in both runs, so the launches the second log has beyond the first are exactly one timed forward (one CLIP
batch, one prefill, or one prompt + all decode steps); they are timed as the second log's last launches of each
kernel (its final forward), so no first launch, with its compilation, is counted. Products that go to cuBLAS are not cubecl kernels and do not show;
with `--wall-s` (the unprofiled time of the same work, from the same call) the table adds what lies outside
cubecl's kernels — cuBLAS, host synchronisations and launch gaps. `--from throughput.jsonl` takes that time
from the unprofiled row of the same work (the `throughput` JSON line the profiled runs printed names it).

    python3 benches/gpu/profile.py one.log two.log [--wall-s 0.176 | --from throughput.jsonl --work one.jsonl
                                                    [--gemm cublas-devorder]]
"""
import json
import re
import sys

LINE = re.compile(r"^\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(.+?)\s*$")
UNIT = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def kernels(path):
    """Seconds of each launch, in order, per kernel name (the first `|` field of the name: the kernel's type)."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue  # summary tables and anything else cubecl writes
            name = m.group(3).split("|")[0].strip()
            out.setdefault(name, []).append(float(m.group(1)) * UNIT[m.group(2)])
    return out


def one_forward(one, two):
    """(name, seconds, launches) of one warm forward: the launches the two-repeat log has beyond the one-repeat
    log, timed as the last that many of the two-repeat log (its final forward). Subtracting the two logs' totals
    instead (as before run 9) also subtracted their first launches, which include the kernels' compilation and
    differ between the runs (cubecl's cache): run 8's prefill and CLIP tables, a few launches per kernel, came
    out as 0.00 ms throughout."""
    rows = []
    for name in set(one) | set(two):
        n = len(two.get(name, [])) - len(one.get(name, []))
        if n > 0:
            rows.append((name, sum(two[name][-n:]), n))
    return rows


def option(argv, flag):
    if flag not in argv:
        return None, argv
    i = argv.index(flag)
    return argv[i + 1], argv[:i] + argv[i + 2:]


def wall_from(rows_path, work_path, gemm="cublas"):
    """Seconds of one unprofiled forward of the work named by the first JSON line of `work_path`, from the
    row of `rows_path` with the same config and shape and the gemm label `gemm` (`cublas`: the default path;
    run.sh relabels the rows of each switch it times, e.g. `cublas-devorder`)."""
    work = next(json.loads(l) for l in open(work_path) if l.startswith("{"))
    key = lambda r: (r["config"], r["batch"], r["prompt_len"], r["gen_len"], r.get("backend"))
    for line in open(rows_path):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if key(r) != key(work) or r.get("gemm") != gemm:
            continue
        if r.get("images_s"):
            return r["batch"] / r["images_s"]
        secs = r["batch"] * r["prompt_len"] / r["prefill_tok_s"] if r["prompt_len"] else 0.0
        if r["gen_len"]:
            secs += r["batch"] * r["gen_len"] / r["decode_tok_s"]
        return secs
    return None


def main(argv):
    wall, argv = option(argv, "--wall-s")
    wall = float(wall) if wall else None
    rows, argv = option(argv, "--from")
    work, argv = option(argv, "--work")
    gemm, argv = option(argv, "--gemm")
    if rows and work:
        wall = wall_from(rows, work, gemm or "cublas")
    if len(argv) != 2:
        sys.exit(__doc__)
    diff = one_forward(kernels(argv[0]), kernels(argv[1]))
    diff.sort(key=lambda r: -r[1])
    total = sum(s for _, s, _ in diff)
    launches = sum(n for _, _, n in diff)
    print("| kernel | launches | total ms | µs per launch | share of kernel time |")
    print("|---|---|---|---|---|")
    for name, secs, n in diff:
        share = 100 * secs / total if total else 0.0
        print(f"| {name} | {n} | {1e3 * secs:.2f} | {1e6 * secs / n:.1f} | {share:.1f} % |")
    print(f"| **all cubecl kernels** | {launches} | {1e3 * total:.2f} | | 100 % |")
    if wall:
        rest = wall - total
        print(f"\nUnprofiled time of the same work: {1e3 * wall:.2f} ms; outside cubecl's kernels (cuBLAS, "
              f"host synchronisations, launch gaps): {1e3 * rest:.2f} ms ({100 * rest / wall:.0f} %).")


if __name__ == "__main__":
    main(sys.argv[1:])
