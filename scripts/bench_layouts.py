#!/usr/bin/env python3
"""Training speed of cnn3 with channels-first (nchw) and channels-last (nhwc) activations.

    scripts/bench_layouts.py [--normlab build/normlab] [--norms batch group frn]
        [--threads 1 2] [--batch 64] [--steps 30] [--rounds 5] > table.md

Each round runs `normlab bench --model cnn3 --json` for every norm and thread
count, nchw then nhwc, so the two layouts share the machine's load. A figure
is the median over the rounds. The first table is images/s of a whole training
step; the second splits the step by kind of layer (ms, median), which says
where the difference comes from. NORMLAB_CONV in the environment chooses the
convolution backend as for any normlab command. Standard library only.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

LAYOUTS = ("nchw", "nhwc")
KINDS = ("conv", "norm", "relu", "maxpool", "to_channels_last", "rest")


def kind_of(layer):
    if layer.startswith("conv"):
        return "conv"
    if layer.endswith("_norm"):
        return "norm"
    if layer.startswith("maxpool"):
        return "maxpool"
    if layer in ("relu", "to_channels_last"):
        return layer
    return "rest"


def bench(args, norm, threads, layout):
    command = [args.normlab, "bench", "--model", "cnn3", "--norm", norm, "--batch", str(args.batch),
               "--steps", str(args.steps), "--threads", str(threads), "--layout", layout, "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_layouts: {' '.join(command)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--normlab", default="build/normlab")
    parser.add_argument("--norms", nargs="+", default=["batch", "group", "frn"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rate = {}   # (norm, threads, layout) -> [images/s per round]
    split = {}  # (norm, threads, layout) -> {kind: [ms per round]}
    blas = ""
    for _ in range(args.rounds):
        for threads in args.threads:
            for norm in args.norms:
                for layout in LAYOUTS:
                    report = bench(args, norm, threads, layout)
                    blas = report["blas"]
                    key = (norm, threads, layout)
                    rate.setdefault(key, []).append(report["images_per_second"])
                    ms = dict.fromkeys(KINDS, 0.0)
                    for layer in report["layers"]:
                        ms[kind_of(layer["layer"])] += 1e3 * (layer["forward_seconds"] +
                                                             layer["backward_seconds"])
                    ms["rest"] += 1e3 * (report["loss_seconds"] + report["update_seconds"])
                    for kind, value in ms.items():
                        split.setdefault(key, {}).setdefault(kind, []).append(value)

    conv = os.environ.get("NORMLAB_CONV", "default (oneDNN when built with it)")
    print(f"{started}, {platform.processor() or platform.machine()}, BLAS {blas.get('library', '')} "
          f"{blas.get('version', '')} core {blas.get('core', '')}, NORMLAB_CONV {conv}")
    print(f"`normlab bench --model cnn3 --batch {args.batch} --steps {args.steps} --json`, "
          f"nchw and nhwc alternated in each of {args.rounds} rounds, median of the rounds; "
          f"written by `scripts/bench_layouts.py`\n")
    print("| norm | threads | nchw img/s | nhwc img/s | nhwc/nchw |")
    print("|---|---|---:|---:|---:|")
    for threads in args.threads:
        for norm in args.norms:
            first = statistics.median(rate[(norm, threads, "nchw")])
            last = statistics.median(rate[(norm, threads, "nhwc")])
            print(f"| {norm} | {threads} | {first:.0f} | {last:.0f} | {last / first:.2f} |")
    print("\nms per step by kind of layer (forward + backward; rest: global average pool, linear, "
          "loss, SGD update), nchw / nhwc:\n")
    print("| norm | threads | " + " | ".join(KINDS) + " |")
    print("|---|---|" + "---:|" * len(KINDS))
    for threads in args.threads:
        for norm in args.norms:
            cells = []
            for kind in KINDS:
                values = [statistics.median(split[(norm, threads, layout)][kind])
                          for layout in LAYOUTS]
                cells.append(" / ".join(f"{v:.2f}" for v in values))
            print(f"| {norm} | {threads} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
