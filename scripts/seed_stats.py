"""Seed statistics for the scripts that read results.jsonl (literature_table.py,
sync_bn_tables.py): the same mean ± 95% CI half width over seeds (Student's t,
n - 1 degrees of freedom, exact quantiles), the same paired differences and
Holm adjustment, and the same failure rule as `normlab report`
(src/experiment/seed_statistics.cpp), so a script's table and the report's agree
to the digit; tests/test_seed_stats.py checks both against the same values.
Diverged and failed runs are left out of means and counted (outcome()).
Standard library only: the t distribution comes from the regularized incomplete
beta function (a continued fraction), not scipy.
"""
import json
import math
import os
import statistics

# A run failed when it finished with a test error at or above chance minus this
# (1 - 1/classes - 0.05: 0.85 for ten classes); the C++ kFailedMargin.
FAILED_MARGIN = 0.05


def records(folder):
    with open(os.path.join(folder, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def record_classes(r):
    """The record's "classes", else its synthetic config's, else 10 (as the C++ report)."""
    if isinstance(r.get("classes"), int) and r["classes"] > 0:
        return r["classes"]
    dataset = (r.get("config") or {}).get("dataset") or {}
    if dataset.get("type") == "synthetic" and isinstance(dataset.get("classes"), int):
        return dataset["classes"]
    return 10


def outcome(diverged, test_error, classes):
    """'diverged' (non-finite loss, no test error), 'failed' (test error at or above
    1 - 1/classes - FAILED_MARGIN) or 'succeeded'."""
    if diverged or test_error is None or not math.isfinite(test_error):
        return "diverged"
    return "failed" if test_error + 1e-9 >= 1 - 1 / classes - FAILED_MARGIN else "succeeded"


def record_outcome(r):
    return outcome(r["diverged"], r.get("test_error"), record_classes(r))


def cells(folder, key=lambda r: (r["norm"], r["batch_size"])):
    """key(record) -> {seed: test error %} of the runs that succeeded."""
    out = {}
    for r in records(folder):
        if record_outcome(r) == "succeeded":
            out.setdefault(key(r), {})[r["seed"]] = 100 * r["test_error"]
    return out


def failures(folder, key=lambda r: (r["norm"], r["batch_size"])):
    """key(record) -> {'diverged': k, 'failed': f} of the runs that did not succeed."""
    out = {}
    for r in records(folder):
        kind = record_outcome(r)
        if kind != "succeeded":
            counts = out.setdefault(key(r), {"diverged": 0, "failed": 0})
            counts[kind] += 1
    return out


# ---- Student's t, exactly ----

def _beta_fraction(a, b, x):
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-16:
            return h
    raise ArithmeticError("incomplete beta: no convergence")


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) +
                     b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):  # where the fraction converges fast
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2, 0.5, df / (df + t * t))


def t_quantile(probability, df):
    """The `probability` quantile of Student's t (bisection on the exact tail)."""
    if not 0 < probability < 1 or not df > 0:
        return float("nan")
    if probability == 0.5:
        return 0.0
    tail = 2 * min(probability, 1 - probability)  # two-sided tail of |t|
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > tail:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > tail else (lo, mid)
    t = (lo + hi) / 2
    return t if probability > 0.5 else -t


def holm(pvalues):
    """Holm's step-down adjusted p-values (None entries stay None and are not counted)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p))
    adjusted = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p))
        adjusted[i] = running
    return adjusted


# ---- Summaries ----

def summary(values):
    """(mean, half width of the 95% interval; nan for one value)."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))


def p_value(values):
    """Two-sided p of the one-sample t test of mean 0 (None below two values)."""
    values = list(values)
    if len(values) < 2:
        return None
    se = statistics.stdev(values) / math.sqrt(len(values))
    mean = statistics.fmean(values)
    return t_two_sided_p(mean / se, len(values) - 1) if se > 0 else (1.0 if mean == 0 else 0.0)


def text(values):
    """'12.34 ± 0.56' (or the mean alone for one value, '-' for none)."""
    values = list(values)
    if not values:
        return "-"
    mean, half = summary(values)
    return f"{mean:.2f}" if math.isnan(half) else f"{mean:.2f} ± {half:.2f}"


def differences(a, b):
    """a - b over the seeds both have ({seed: value} each)."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def paired(a, b, adjusted_p=None):
    """a - b over the seeds both have: 'mean ± h (n=K)', with ', p=...' when the
    comparison's Holm-adjusted p-value (holm() over the table) is given."""
    diff = differences(a, b)
    if not diff:
        return "-"
    shown = text(diff)
    shown = ("+" + shown if not shown.startswith("-") else shown)
    if adjusted_p is None:
        return shown + f" (n={len(diff)})"
    p = "p<0.001" if adjusted_p < 0.001 else f"p={adjusted_p:.3f}"
    return shown + f" (n={len(diff)}, {p})"
