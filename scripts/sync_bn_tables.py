#!/usr/bin/env python3
"""Tables of the SyncBatchNorm study, from result files (the docs embed them).

    scripts/sync_bn_tables.py errors [STUDY_DIR] [SINGLE_PROCESS_DIR]
    scripts/sync_bn_tables.py share [STUDY_DIR]

STUDY_DIR (default experiments/results/sync_bn_fashion_mlp) holds the sweep of
configs/sync_bn_fashion_mlp.json; SINGLE_PROCESS_DIR (default
experiments/results/small_batch_fashion_mlp) a one-process sweep of the same
model, schedule and seeds with larger batches.

errors: test error (mean ± 95% CI over seeds) of each norm at R ranks x B per
rank next to BatchNorm at R*B in one process, and sync_batch minus that
BatchNorm seed by seed (an interval holding 0: no difference shown).
share: the share of training time spent inside collectives, mean over seeds,
of the study's cells with R > 1 and of the runs of
configs/comm_share_fashion_mlp.json (experiments/results/comm_share_*).
Standard library only.
"""
import os
import statistics
import sys

from seed_stats import cells, paired, records, text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")


def errors(study, single):
    by_ranks = cells(study, key=lambda r: (r["norm_spec"]["type"], r["batch_size"], r["ranks"]))
    # BatchNorm in one process at each batch size: this study's R = 1 cells,
    # then the one-process sweep for the batch sizes this study does not have.
    one_process = {b: (seeds, os.path.basename(study))
                   for (norm, b, ranks), seeds in by_ranks.items() if norm == "batch" and ranks == 1}
    for (norm, b), seeds in cells(single).items():
        if norm == "batch" and b not in one_process:
            one_process[b] = (seeds, os.path.basename(single))
    print("| R x B (global) | batch at R*B, one process | sync_batch | sync_batch minus batch at R*B "
          "(paired) | batch (per-rank statistics) | group |")
    print("|---|---:|---:|---:|---:|---:|")
    for ranks in sorted({k[2] for k in by_ranks if k[2] > 1}):
        for b in sorted({k[1] for k in by_ranks}, reverse=True):
            reference, source = one_process.get(ranks * b, ({}, ""))
            sync = by_ranks.get(("sync_batch", b, ranks), {})
            row = [f"{ranks} x {b} ({ranks * b})",
                   f"{text(reference.values())} ({source})" if reference else "-",
                   text(sync.values()), paired(sync, reference),
                   text(by_ranks.get(("batch", b, ranks), {}).values()),
                   text(by_ranks.get(("group", b, ranks), {}).values())]
            print("| " + " | ".join(row) + " |")


def share(study):
    runs = [study] + [os.path.join(RESULTS, name) for name in sorted(os.listdir(RESULTS))
                      if name.startswith("comm_share_")]
    print("| run | norm | R | B | global batch | seeds | train s | in collectives s | share |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        groups = {}
        for r in records(run):
            if r["ranks"] > 1:
                groups.setdefault((r["ranks"], r["norm_spec"]["type"], -r["batch_size"]), []).append(r)
        for (ranks, norm, minus_b), rows in sorted(groups.items()):
            mean = lambda key: statistics.fmean(r[key] for r in rows)
            print(f"| {os.path.basename(run)} | {norm} | {ranks} | {-minus_b} | "
                  f"{rows[0]['global_batch_size']} | {len(rows)} | {mean('train_seconds'):.1f} | "
                  f"{mean('communication_seconds'):.1f} | {100 * mean('communication_share'):.0f}% |")


def main():
    args = sys.argv[1:]
    if not args or args[0] not in ("errors", "share"):
        sys.exit(__doc__)
    study = args[1] if len(args) > 1 else os.path.join(RESULTS, "sync_bn_fashion_mlp")
    if args[0] == "errors":
        errors(study, args[2] if len(args) > 2 else os.path.join(RESULTS, "small_batch_fashion_mlp"))
    else:
        share(study)


if __name__ == "__main__":
    main()
