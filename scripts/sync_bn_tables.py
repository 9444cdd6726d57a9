#!/usr/bin/env python3
"""Tables of the SyncBatchNorm study, from result files (docs/results.md uses them).

    scripts/sync_bn_tables.py [STUDY_DIR] [SINGLE_PROCESS_DIR]

STUDY_DIR (default experiments/results/sync_bn_fashion_mlp) holds the sweep
of configs/sync_bn_fashion_mlp.json; SINGLE_PROCESS_DIR (default
experiments/results/small_batch_fashion_mlp) a one-process sweep of the same
model and schedule with larger batches. Prints two markdown tables: test error
of each norm at R ranks x B per rank next to BatchNorm at R*B in one process,
and the share of training time spent inside collectives (also of the runs in
experiments/results/comm_share_*). Standard library only.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def records(folder):
    with open(os.path.join(folder, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    study = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "experiments/results/sync_bn_fashion_mlp")
    single = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        ROOT, "experiments/results/small_batch_fashion_mlp")
    cells = {(r["norm_spec"]["type"], r["batch_size"], r["ranks"]): r for r in records(study)}
    # BatchNorm in one process at each batch size: this study's R = 1 cells,
    # then the one-process sweep for the batch sizes this study does not have.
    one_process = {b: r for (t, b, ranks), r in cells.items() if t == "batch" and ranks == 1}
    sources = {b: os.path.relpath(study, ROOT) for b in one_process}
    for r in records(single):
        if r["norm_spec"]["type"] == "batch" and r["batch_size"] not in one_process:
            one_process[r["batch_size"]] = r
            sources[r["batch_size"]] = os.path.relpath(single, ROOT)

    def error(r):
        return "diverged" if r["diverged"] else f"{100 * r['test_error']:.2f}"

    print("| R x B (global) | batch at R*B, one process | sync_batch | batch (per-rank stats) | group |")
    print("|---|---:|---:|---:|---:|")
    for ranks in sorted({k[2] for k in cells}):
        for b in sorted({k[1] for k in cells}, reverse=True):
            if ranks == 1:
                continue
            row = [f"{ranks} x {b} ({ranks * b})"]
            ref = one_process.get(ranks * b)
            row.append(f"{error(ref)} ({'this study' if sources[ranks * b] == os.path.relpath(study, ROOT) else 'small_batch_fashion_mlp'})"
                       if ref else "-")
            for norm in ("sync_batch", "batch", "group"):
                r = cells.get((norm, b, ranks))
                row.append(error(r) if r else "-")
            print("| " + " | ".join(row) + " |")
    # The communication share: the study's cells, then the short runs of
    # configs/comm_share_fashion_mlp.json (experiments/results/comm_share_*).
    share_runs = [(os.path.relpath(study, ROOT), records(study))]
    results = os.path.join(ROOT, "experiments/results")
    for name in sorted(os.listdir(results)):
        if name.startswith("comm_share_"):
            share_runs.append(("experiments/results/" + name, records(os.path.join(results, name))))
    print()
    print("| run | norm | R | B | global batch | train s | in collectives s | share |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for source, rows in share_runs:
        for r in sorted(rows, key=lambda r: (r["ranks"], r["norm_spec"]["type"], -r["batch_size"])):
            if r["ranks"] == 1:
                continue
            print(f"| {os.path.basename(source)} | {r['norm_spec']['type']} | {r['ranks']} | "
                  f"{r['batch_size']} | {r['global_batch_size']} | {r['train_seconds']:.1f} | "
                  f"{r['communication_seconds']:.1f} | {100 * r['communication_share']:.0f}% |")


if __name__ == "__main__":
    main()
