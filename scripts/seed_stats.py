"""Seed statistics for the scripts that read results.jsonl (literature_table.py,
sync_bn_tables.py): the same mean ± 95% CI half width over seeds (Student's t,
n - 1 degrees of freedom) and the same paired differences as `normlab report`
(src/experiment/seed_statistics.cpp), so a script's table and the report's agree
to the digit. Diverged runs are left out, as the report counts and skips them.
Standard library only.
"""
import json
import math
import os
import statistics

# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def records(folder):
    with open(os.path.join(folder, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def cells(folder, key=lambda r: (r["norm"], r["batch_size"])):
    """key(record) -> {seed: test error %} of the runs that did not diverge."""
    out = {}
    for r in records(folder):
        if r["diverged"] or r["test_error"] is None:
            continue
        out.setdefault(key(r), {})[r["seed"]] = 100 * r["test_error"]
    return out


def summary(values):
    """(mean, half width of the 95% interval; nan for one value)."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    t = T975[len(values) - 2] if len(values) - 1 <= len(T975) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def text(values):
    """'12.34 ± 0.56' (or the mean alone for one value, '-' for none)."""
    values = list(values)
    if not values:
        return "-"
    mean, half = summary(values)
    return f"{mean:.2f}" if math.isnan(half) else f"{mean:.2f} ± {half:.2f}"


def paired(a, b):
    """a - b over the seeds both have ({seed: value} each): 'mean ± h (n=K)'."""
    common = sorted(set(a) & set(b))
    if not common:
        return "-"
    diff = text([a[s] - b[s] for s in common])
    return ("+" + diff if not diff.startswith("-") else diff) + f" (n={len(common)})"
