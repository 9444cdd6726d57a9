#!/usr/bin/env python3
"""Our small-batch degradation beside the published one (docs/results.md uses it).

    scripts/literature_table.py RUN_DIR [REMEDIES_DIR]

RUN_DIR holds a sweep with `batch` and `group` at B = 32 and 2 (and 16, 8, 4
when present); REMEDIES_DIR one with `batch` and `batch_renorm` at B = 4 and 2.
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
    print(f"| test error (%) | " + " | ".join(f"B={b}" for b in PAPER_BATCHES) + " |")
    print("|---|" + "---:|" * len(PAPER_BATCHES))
    for norm in ("batch", "group"):
        print(f"| GN paper, {norm} | " + " | ".join(f"{v:.1f}" for v in GN_PAPER[norm]) + " |")
        print(f"| {name}, {norm} | " +
              " | ".join(text(run.get((norm, b), {}).values()) for b in PAPER_BATCHES) + " |")
    print()
    bn = {b: run.get(("batch", b), {}) for b in PAPER_BATCHES}
    gn = {b: run.get(("group", b), {}) for b in PAPER_BATCHES}
    paper_bn = dict(zip(PAPER_BATCHES, GN_PAPER["batch"]))
    paper_gn = GN_PAPER["group"]
    print("| measure | published | ours |")
    print("|---|---:|---:|")
    loss = paper_bn[2] - paper_bn[32]
    print(f"| BatchNorm, B=2 minus B=32 (points) | {loss:.1f} (GN paper) | {paired(bn[2], bn[32])} |")
    if bn[2] and bn[32]:
        ours = 100 * (summary(bn[2].values())[0] / summary(bn[32].values())[0] - 1)
        ours_text = f"{ours:.0f}%"
    else:
        ours_text = "-"
    print(f"| BatchNorm, B=2 relative to B=32 | +{100 * loss / paper_bn[32]:.0f}% | +{ours_text} |"
          .replace("+-", "-"))
    means = [summary(v.values())[0] for v in gn.values() if v]
    spread = f"{max(means) - min(means):.2f}" if means else "-"
    print(f"| GroupNorm, spread over B=32..2 (points) | {max(paper_gn) - min(paper_gn):.1f} | {spread} |")
    # BatchNorm's loss from B=32 to 2 minus GroupNorm's, per seed.
    def loss_by_seed(cell):
        common = sorted(set(cell[2]) & set(cell[32]))
        return {s: cell[2][s] - cell[32][s] for s in common}
    beyond = paired(loss_by_seed(bn), loss_by_seed(gn)) if bn[2] and gn[2] else "-"
    paper_beyond = loss - (paper_gn[-1] - paper_gn[0])
    print(f"| BatchNorm's loss from B=32 to 2 beyond GroupNorm's (points) | {paper_beyond:.1f} (GN paper) | {beyond} |")
    print(f"| GroupNorm minus BatchNorm at B=2 (points) | {paper_gn[-1] - paper_bn[2]:.1f} (GN paper) | "
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
