#!/usr/bin/env python3
"""One table of normlab against both speed peers, from the two peer scripts' outputs.

    scripts/peer_table.py ONEDNN_OUTPUT TORCH_OUTPUT [TORCH_OUTPUT ...] [> table.md]

ONEDNN_OUTPUT is what `scripts/compare_onednn --json ...` printed, each TORCH_OUTPUT what
`/usr/bin/python3 scripts/compare_torch.py --json ...` printed (e.g. the default cases and
channels-last ones); the JSON lines of each are read, the rest skipped. Each peer is compared with the normlab times measured in its own run
(interleaved with it), so every ratio is a same-run ratio: peer time / normlab time, above 1
normlab is faster. oneDNN's column is its fastest layout per phase (nchw, nhwc or nChw16c for
BatchNorm), for the same logical operation. "% bw" is normlab's share of the machine's measured
bandwidth (the bench's traffic model), from the PyTorch run. Standard library only.
"""
import json
import sys

PHASES = ("forward", "forward_eval", "backward")


def json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.lstrip().startswith("{")]


def logical_key(norm, shape, layout, shape_in_layout=True):
    """The operation a row times: BatchNorm by its (N, C, H, W); LayerNorm by (rows, row length),
    since normalizing (N, C, H, W) over (C, H, W) is the (N, C*H*W) matrix over its rows.
    compare_torch gives an nhwc shape as (N, H, W, C); compare_onednn gives (N, C, H, W)."""
    shape = list(shape)
    if layout == "nhwc" and shape_in_layout:
        shape = [shape[0], shape[-1]] + shape[1:-1]
    if norm == "layer":
        length = 1
        for d in shape[1:]:
            length *= d
        shape = [shape[0], length]
    return norm, tuple(shape), layout


def onednn_entries(rows):
    """{(logical key, threads): (normlab ms per phase, best oneDNN ms per phase, its layouts)}"""
    out = {}
    for row in rows:
        for layout, ours in row["normlab_ms"].items():
            key = logical_key(row["norm"], row["shape"], layout, shape_in_layout=False), row["threads"]
            best, best_layout = {}, {}
            for their_layout, theirs in row["onednn_ms"].items():
                for p in PHASES:
                    if p not in best or theirs[p] < best[p]:
                        best[p], best_layout[p] = theirs[p], their_layout
            out[key] = (ours, best, best_layout)
    return out


def fmt(values, spec="{:.2f}"):
    return " / ".join(spec.format(v) for v in values)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__.split("\n\n")[1].strip())
    onednn_rows = json_lines(argv[1])
    onednn = onednn_entries(onednn_rows)
    torch_rows = [row for path in argv[2:] for row in json_lines(path)]
    if not torch_rows or not onednn:
        sys.exit("peer_table: no JSON lines in " + (" ".join(argv[2:]) if onednn else argv[1]) +
                 " (run the peer scripts with --json)")
    # One data type per table (compare_onednn's lines before --dtype were float32).
    dtypes = {row.get("dtype", "float32") for row in onednn_rows + torch_rows}
    if len(dtypes) > 1:
        sys.exit("peer_table: the outputs mix data types (" + ", ".join(sorted(dtypes)) +
                 "): give the runs of one --dtype")
    print("| norm | shape | layout | thr | normlab ms fwd / eval / bwd | torch / normlab "
          "| oneDNN best ms (layout) | oneDNN / normlab | slowest peer / normlab | % bw |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    behind, phases = [], 0
    for row in torch_rows:
        layout = row["spec"].get("layout", "nchw")
        threads = row["threads"]
        ours = [row[p + "_ms"] for p in PHASES]
        vs_torch = [row["torch_ms"][p] / row[p + "_ms"] for p in PHASES]
        entry = onednn.get((logical_key(row["norm"], row["shape"], layout), threads))
        if entry:
            their_ours, best, best_layout = entry
            vs_onednn = [best[p] / their_ours[p] for p in PHASES]
            onednn_cell = fmt(best[p] for p in PHASES) + " (" + ", ".join(
                dict.fromkeys(best_layout[p] for p in PHASES)) + ")"
            onednn_ratio = fmt(vs_onednn)
        else:
            vs_onednn, onednn_cell, onednn_ratio = [None] * 3, "no primitive", ""
        worst = [min(r for r in (t, o) if r is not None) for t, o in zip(vs_torch, vs_onednn)]
        shape = "x".join(str(d) for d in row["shape"])
        for p, w in zip(PHASES, worst):
            phases += 1
            if w < 1:
                behind.append(f"{row['norm']} {shape} {layout} {threads} thr {p} {w:.2f}")
        print(f"| {row['norm']} | {shape} | {layout} | {threads} | {fmt(ours)} | {fmt(vs_torch)} "
              f"| {onednn_cell} | {onednn_ratio} | {fmt(worst)} "
              f"| {fmt((row[p + '_pct'] for p in PHASES), '{:.0f}')} |")
    print()
    print(f"{phases - len(behind)} of {phases} phases at or ahead of every peer that has them; "
          f"behind ({len(behind)}): " + ("; ".join(behind) if behind else "none") + ".")


if __name__ == "__main__":
    main(sys.argv)
