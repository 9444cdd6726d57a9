#!/usr/bin/env python3
"""Our small-batch degradation beside the published one (docs/results.md uses it).

    scripts/literature_table.py RUN_DIR [REMEDIES_DIR]

RUN_DIR holds a sweep with `batch` and `group` at B = 2 and at a reference
batch of the paper's, the largest of 32, 16 and 8 that the sweep has (and the
other paper batches when present); REMEDIES_DIR one with `batch` and
`batch_renorm` (and `mabn` when present) at B = 4 and 2.
Prints a markdown table: test error per B for BatchNorm and GroupNorm, as
mean ± 95% CI half width over seeds (Student's t, as `normlab report`), then
the relative measures beside those of the papers:
  - GroupNorm paper (Wu & He, 2018), Table 2: ResNet-50 on ImageNet, error % at
    32/16/8/4/2 images per GPU; Batch Renorm at 4;
  - MABN (Yan et al., 2020): ResNet-50, normalization batch 2: BN, BRN and MABN.
A sweep that also varies the budget with B (a matched number of steps) shifts
every norm's error with B; "beyond GroupNorm's" takes that shift out, seed by
seed.
The published numbers are constants below, cited; ours come from the files.
Standard library only.
"""
import os
import sys

from seed_stats import cells, paired, summary, text

PAPER_BATCHES = [32, 16, 8, 4, 2]
GN_PAPER = {"batch": [23.6, 23.7, 24.8, 27.3, 34.7], "group": [24.1, 24.2, 24.0, 24.2, 24.1]}
GN_PAPER_BRN_AT_4 = 26.3
MABN_AT_2 = {"batch": 35.22, "batch_renorm": 30.29, "mabn": 23.67}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    run = cells(sys.argv[1])
    remedies = cells(sys.argv[2]) if len(sys.argv) > 2 else {}
    name = os.path.basename(os.path.normpath(sys.argv[1]))
    bn = {b: run.get(("batch", b), {}) for b in PAPER_BATCHES}
    gn = {b: run.get(("group", b), {}) for b in PAPER_BATCHES}
    # The large batch that B=2 is measured from: the paper's 32 when the sweep has it.
    reference = next((b for b in (32, 16, 8) if bn[b] and gn[b]), None)
    if reference is None or not bn[2] or not gn[2]:
        sys.exit(f"literature_table: {sys.argv[1]} needs batch and group at B=2 and at one "
                 "of B=32, 16, 8; run the sweep (or its missing cells) first")
    print(f"| test error (%) | " + " | ".join(f"B={b}" for b in PAPER_BATCHES) + " |")
    print("|---|" + "---:|" * len(PAPER_BATCHES))
    for norm in ("batch", "group"):
        print(f"| GN paper, {norm} | " + " | ".join(f"{v:.1f}" for v in GN_PAPER[norm]) + " |")
        print(f"| {name}, {norm} | " +
              " | ".join(text(run.get((norm, b), {}).values()) for b in PAPER_BATCHES) + " |")
    print()
    paper_bn = dict(zip(PAPER_BATCHES, GN_PAPER["batch"]))
    paper_gn = dict(zip(PAPER_BATCHES, GN_PAPER["group"]))
    spanned = [b for b in PAPER_BATCHES if b <= reference]
    print("| measure | published | ours |")
    print("|---|---:|---:|")
    loss = paper_bn[2] - paper_bn[reference]
    print(f"| BatchNorm, B=2 minus B={reference} (points) | {loss:.1f} (GN paper) | "
          f"{paired(bn[2], bn[reference])} |")
    ours = 100 * (summary(bn[2].values())[0] / summary(bn[reference].values())[0] - 1)
    print(f"| BatchNorm, B=2 relative to B={reference} | {100 * loss / paper_bn[reference]:+.0f}% | "
          f"{ours:+.0f}% |")
    means = [summary(gn[b].values())[0] for b in spanned if gn[b]]
    paper_spread = max(paper_gn[b] for b in spanned) - min(paper_gn[b] for b in spanned)
    print(f"| GroupNorm, spread over B={reference}..2 (points) | {paper_spread:.1f} | "
          f"{max(means) - min(means):.2f} |")
    # BatchNorm's loss from the reference B to 2 minus GroupNorm's, per seed.
    def loss_by_seed(cell):
        common = sorted(set(cell[2]) & set(cell[reference]))
        return {s: cell[2][s] - cell[reference][s] for s in common}
    paper_beyond = loss - (paper_gn[2] - paper_gn[reference])
    print(f"| BatchNorm's loss from B={reference} to 2 beyond GroupNorm's (points) | "
          f"{paper_beyond:.1f} (GN paper) | {paired(loss_by_seed(bn), loss_by_seed(gn))} |")
    print(f"| GroupNorm minus BatchNorm at B=2 (points) | {paper_gn[2] - paper_bn[2]:.1f} (GN paper) | "
          f"{paired(gn[2], bn[2])} |")
    if remedies:
        gains = [(4, "batch_renorm", "Batch Renorm", paper_bn[4] - GN_PAPER_BRN_AT_4, "GN paper"),
                 (2, "batch_renorm", "Batch Renorm", MABN_AT_2["batch"] - MABN_AT_2["batch_renorm"],
                  "MABN")]
        if any(norm == "mabn" for norm, _ in remedies):
            gains.append((2, "mabn", "MABN", MABN_AT_2["batch"] - MABN_AT_2["mabn"], "MABN"))
        for b, norm, label, published, source in gains:
            ours = paired(remedies.get(("batch", b), {}), remedies.get((norm, b), {}))
            print(f"| {label}'s gain over BatchNorm at B={b} (points) | {published:.2f} ({source}) | {ours} |")


if __name__ == "__main__":
    main()
