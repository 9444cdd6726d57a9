#!/usr/bin/env python3
"""scripts/seed_stats.py against tests/golden/seed_statistics.json, the values
tests/test_seed_statistics.cpp checks the C++ report's statistics against (Student's
t from boost::math, Holm, the failure rule): the two agree. Run by ctest
(scripts_seed_stats); standard library only."""
import json
import math
import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import seed_stats  # noqa: E402

with open(os.path.join(ROOT, "tests", "golden", "seed_statistics.json")) as f:
    GOLDEN = json.load(f)


class SeedStats(unittest.TestCase):
    def test_t_quantiles_match_boost(self):
        self.assertGreater(len(GOLDEN["quantiles"]), 50)
        for probability, df, expected in GOLDEN["quantiles"]:
            got = seed_stats.t_quantile(probability, df)
            self.assertAlmostEqual(got, expected, delta=1e-9 * max(1, abs(expected)),
                                   msg=f"t({probability}, {df})")

    def test_two_sided_p_matches_boost(self):
        for t, df, expected in GOLDEN["two_sided_p"]:
            got = seed_stats.t_two_sided_p(t, df)
            self.assertLessEqual(abs(got - expected), 1e-12 + 1e-9 * expected, f"p({t}, {df})")

    def test_holm(self):
        for case in GOLDEN["holm"]:
            got = seed_stats.holm(case["p"])
            for g, e in zip(got, case["adjusted"]):
                if e is None:
                    self.assertIsNone(g)
                else:
                    self.assertAlmostEqual(g, e, places=12)

    def test_failure_rule(self):
        for diverged, error, classes, expected in GOLDEN["outcomes"]:
            self.assertEqual(seed_stats.outcome(diverged, error, classes), expected,
                             (diverged, error, classes))
        self.assertEqual(seed_stats.record_classes({"config": {"dataset": {
            "type": "synthetic", "classes": 3}}}), 3)
        self.assertEqual(seed_stats.record_classes({"classes": 4}), 4)
        self.assertEqual(seed_stats.record_classes({}), 10)

    def test_summary_and_paired(self):
        mean, half = seed_stats.summary([1.0, 2.0, 3.0])
        self.assertEqual(mean, 2.0)
        self.assertAlmostEqual(half, 4.302652729749462 / math.sqrt(3), places=12)
        self.assertTrue(math.isnan(seed_stats.summary([5.0])[1]))
        a, b = {0: 10.0, 1: 20.0, 2: 30.0}, {2: 1.0, 0: 3.0}
        self.assertEqual(seed_stats.differences(a, b), [7.0, 29.0])
        self.assertTrue(seed_stats.paired(a, b).startswith("+18.00 ± "))
        self.assertTrue(seed_stats.paired(a, b, 0.5).endswith("(n=2, p=0.500)"))
        self.assertEqual(seed_stats.paired(a, {7: 1.0}), "-")


if __name__ == "__main__":
    unittest.main()
