#!/usr/bin/env python3
"""Two normlab binaries timed in the same run, interleaved, on the same cases.

    scripts/bench_before_after.py OLD_BINARY NEW_BINARY [--rounds 6] [--repeats 30]
        [--threads 1] [--case NORM[,NORM...]:SHAPE ...] [--title TEXT] > table.md

A NORM may end in @nhwc: that norm with "layout": "nhwc", its SHAPE given as N,H,W,C.

Each round runs `normlab bench --json` with the old binary, then the new one,
for every case. A table cell is the minimum over the rounds of that phase's
median (the machine is shared: the minimum is the least disturbed run). The
ratio is new / old time: below 1, the new binary is faster. Standard library
only; any python3 runs it.
"""
import argparse
import json
import platform
import subprocess
import sys
import time

PHASES = ("forward", "forward_eval", "backward")
DEFAULT_CASES = [
    "batch,layer,instance,group,ghost,batch_renorm,frn,evonorm_s0:32,64,56,56",
    "layer,rms,group,evonorm_s0:8192,768",
    "batch,layer,instance,group,frn,evonorm_s0:2,64,56,56",
    "weight:256,128,3,3",
]


def known_norms(binary):
    """The norm names `BINARY list` prints on its first line (older binaries know fewer)."""
    first = subprocess.run([binary, "list"], capture_output=True, text=True).stdout.splitlines()[0]
    return set(first.replace("norms:", "").replace(",", " ").split())


def norm_argument(name):
    """`batch` as is; `batch@nhwc` as the spec of batch with "layout": "nhwc"."""
    base, _, layout = name.partition("@")
    return json.dumps({"type": base, "layout": layout}) if layout else base


def bench(binary, case, repeats, threads, known):
    names, shape = case.split(":")
    norms = [norm_argument(n) for n in names.split(",") if n.partition("@")[0] in known]
    if not norms:
        return []
    command = [binary, "bench", "--json", "--probe-mb", "32", "--repeats", str(repeats),
               "--threads", str(threads), "--norm", *norms, "--shape", shape]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_before_after: {' '.join(command)} failed: {done.stderr.strip()}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--case", action="append", help="NORMS:SHAPE, e.g. batch,layer:8192,768")
    parser.add_argument("--title", default="Engine speed, two binaries in one run")
    args = parser.parse_args()
    cases = args.case or DEFAULT_CASES

    best = {}  # (norm, shape) -> {(binary, phase): ms}
    order = []
    cpu_share = {"old": 1.0, "new": 1.0}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    known = {"old": known_norms(args.old), "new": known_norms(args.new)}
    for _ in range(args.rounds):
        for which, binary in (("old", args.old), ("new", args.new)):
            for case in cases:
                for row in bench(binary, case, args.repeats, args.threads, known[which]):
                    spec = row["spec"]
                    name = spec["type"] + ("@nhwc" if spec.get("layout") == "nhwc" else "")
                    key = (name, "x".join(map(str, row["shape"])))
                    if key not in best:
                        best[key] = {}
                        order.append(key)
                    cpu_share[which] = min(cpu_share[which], row["cpu_share"])
                    for phase in PHASES:
                        ms = row[phase + "_ms"]
                        best[key][(which, phase)] = min(best[key].get((which, phase), ms), ms)

    print(f"# {args.title}\n")
    print(f"Old: `{args.old}`; new: `{args.new}`. {args.rounds} interleaved rounds of "
          f"`normlab bench --json --probe-mb 32 --repeats {args.repeats}` (old, then new, each "
          f"round), float32, {args.threads} thread{'s' if args.threads > 1 else ''}, started {started} on {platform.node()}. Each cell is the "
          f"minimum over the rounds of the phase's median, in ms; ratio = new / old. Lowest CPU "
          f"share seen: old {cpu_share['old']:.2f}, new {cpu_share['new']:.2f}. Written by "
          f"`scripts/bench_before_after.py`.\n")
    print("| norm | shape | old fwd / eval / bwd | new fwd / eval / bwd | ratio fwd / eval / bwd |")
    print("|---|---|---|---|---|")
    for key in order:
        cells = best[key]
        have_old = all(("old", p) in cells for p in PHASES)
        new = " / ".join(f"{cells[('new', p)]:.3f}" for p in PHASES)
        if have_old:
            old = " / ".join(f"{cells[('old', p)]:.3f}" for p in PHASES)
            ratio = " / ".join(f"{cells[('new', p)] / cells[('old', p)]:.2f}" for p in PHASES)
        else:
            old, ratio = "(not in old)", "-"
        print(f"| {key[0]} | {key[1]} | {old} | {new} | {ratio} |")


if __name__ == "__main__":
    main()
