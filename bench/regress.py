#!/usr/bin/python3
"""The microbenchmark regression check that CI runs (meson suite 'bench').

Runs build/bench/moat_bench briefly, prints Google Benchmark's own
comparison against the baseline kept in the repo (compare.py from Debian's
libbenchmark-tools), and fails only when a benchmark got slower by more
than --engine-threshold (default 1.5x) for the engine paths (BM_Engine_*)
or --threshold (default 2x) for the rest: a brief run on a shared 2-core
machine moves by tens of percent, a real regression on the hot path moves
by more.

Each time is first divided by how much slower this machine is today than
the baseline's: the larger of BM_Reference_MulXorChain's ratio (a chain of
multiplies, not moat's code: the core clock) and the median ratio of the
whole suite (which also catches cache and memory contention from
neighbours on a shared host). A real regression moves a few benchmarks,
not the median.

A slowdown must also add more than --min-cycles (default 10) cycles per
packet: the smallest benchmarks take 4-10 cycles, and code alignment alone
moves those by 2x between builds.

The suite runs in --runs separate processes and each benchmark's fastest
run counts (noise only ever adds time). Separate processes, not just
repetitions: on the shared VMs this runs on, some benchmarks land in a
slow mode for a whole process (~1.6x, depending on where the heap and
stacks were placed), and stay there for every repetition.

  bench/regress.py build/bench/moat_bench bench/baseline.json
  bench/regress.py build/bench/moat_bench bench/baseline.json --update
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REFERENCE = "BM_Reference_MulXorChain"
COMPARE = "/usr/share/benchmark/compare.py"


def run_bench(exe, out, min_time, runs):
    """Runs the suite `runs` times; writes one JSON whose times are the
    fastest of the runs for each benchmark (the first run's layout)."""
    results = []
    for i in range(runs):
        path = f"{out}.{i}"
        cmd = [exe, f"--benchmark_min_time={min_time}",
               "--benchmark_out_format=json", f"--benchmark_out={path}"]
        # The console output is not needed; the JSON is.
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            results.append(json.load(f))
    merged = results[0]
    for b in merged["benchmarks"]:
        for other in results[1:]:
            for o in other["benchmarks"]:
                if o["name"] == b["name"] and "error_occurred" not in o and o["cpu_time"] < b["cpu_time"]:
                    for k in ("cpu_time", "real_time", "iterations", "items_per_second",
                              "cycles/pkt"):
                        if k in o:
                            b[k] = o[k]
    with open(out, "w") as f:
        json.dump(merged, f, indent=1)


def fastest(path):
    """name -> (fastest cpu_time in ns, its cycles/pkt), iterations only."""
    with open(path) as f:
        data = json.load(f)
    best = {}
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration" or "error_occurred" in b:
            continue
        name = b.get("run_name", b["name"])
        t = (b["cpu_time"], b.get("cycles/pkt", 0.0))
        best[name] = min(best.get(name, t), t)
    return best, data.get("context", {})


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_exe")
    ap.add_argument("baseline")
    ap.add_argument("--threshold", type=float, default=2.0,
                    help="fail when normalized time grows by more than this factor")
    ap.add_argument("--engine-threshold", type=float, default=1.5,
                    help="the same for the engine paths (BM_Engine_*), where a 1.5x "
                         "slowdown is what a user would see in the packet rate")
    ap.add_argument("--min-cycles", type=float, default=10.0,
                    help="ignore slowdowns smaller than this many cycles per packet")
    ap.add_argument("--min-time", default="0.05")
    ap.add_argument("--runs", type=int, default=3, help="separate processes to take the best of")
    ap.add_argument("--update", action="store_true",
                    help="record this run as the new baseline instead of checking")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        current = os.path.join(tmp, "current.json")
        run_bench(args.bench_exe, current, args.min_time, args.runs)
        with open(current) as f:
            errors = [b["name"] for b in json.load(f)["benchmarks"] if "error_occurred" in b]
        if errors:
            print("benchmarks reported errors (wrong results, not slowness):", ", ".join(errors))
            return 1
        if args.update:
            with open(current) as src, open(args.baseline, "w") as dst:
                dst.write(src.read())
            print(f"baseline written to {args.baseline}")
            return 0
        if not os.path.exists(args.baseline):
            print(f"no baseline at {args.baseline}; record one with --update")
            return 1

        # Google Benchmark's own side-by-side table (informational).
        if os.path.exists(COMPARE):
            subprocess.run([sys.executable, COMPARE, "--no-color", "--no-utest",
                            "benchmarks", args.baseline, current], check=False)

        base, base_ctx = fastest(args.baseline)
        cur, _ = fastest(current)
    if REFERENCE not in base or REFERENCE not in cur:
        print(f"{REFERENCE} missing from a run; cannot normalize")
        return 1
    ref_scale = cur[REFERENCE][0] / base[REFERENCE][0]
    common = sorted(set(cur) & set(base))
    ratios = sorted(cur[n][0] / base[n][0] for n in common)
    median = ratios[len(ratios) // 2]
    # The machine's speed today: the yardstick tracks the core clock, the
    # suite's median ratio also tracks memory and cache contention from
    # neighbours (a real regression moves a few benchmarks, not the median).
    scale = max(ref_scale, median)
    print(f"\nthis machine vs the baseline's ({base_ctx.get('host_name', '?')}, "
          f"{base_ctx.get('date', '?')}): {REFERENCE} {ref_scale:.2f}x, median of the suite "
          f"{median:.2f}x; times are divided by {scale:.2f}")

    worst = []
    for name, (t, cycles) in sorted(cur.items()):
        if name == REFERENCE or name not in base:
            continue
        ratio = (t / scale) / base[name][0]
        extra = cycles / scale - base[name][1]
        worst.append((ratio, name, extra))
    worst.sort(reverse=True)
    missing = sorted(set(cur) - set(base))
    if missing:
        print("not in the baseline (not checked):", ", ".join(missing))
    gone = sorted(set(base) - set(cur))
    if gone:
        print("in the baseline but not run:", ", ".join(gone))
    def limit(name):
        return args.engine_threshold if name.startswith("BM_Engine_") else args.threshold

    print(f"slowest relative to the baseline (normalized; fail above "
          f"{args.engine_threshold:.1f}x for BM_Engine_*, {args.threshold:.1f}x for the rest):")
    for ratio, name, extra in worst[:5]:
        print(f"  {ratio:5.2f}x  {name} ({extra:+.1f} cycles/pkt)")
    bad = [(r, n, e) for r, n, e in worst if r > limit(n) and e > args.min_cycles]
    if bad:
        for ratio, name, extra in bad:
            print(f"REGRESSION: {name} is {ratio:.2f}x its baseline time ({extra:+.1f} cycles/pkt)")
        return 1
    print(f"ok: {len(worst)} benchmarks within {args.engine_threshold:.1f}x (engine) / "
          f"{args.threshold:.1f}x of the baseline "
          f"(or within {args.min_cycles:.0f} cycles/pkt of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
