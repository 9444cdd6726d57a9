#!/usr/bin/env python3
"""scripts/literature_table.py: the degradation is measured from the paper's largest batch that
the sweep has (32, else 16, else 8), seed by seed; a sweep without batch and group at B=2 and at
such a batch is refused with a message, not printed as an empty table.
Run by ctest (scripts_literature_table); standard library only."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "literature_table.py")


def write_sweep(folder, errors):
    """errors: {(norm, B): [test error % per seed]} -> folder/results.jsonl."""
    with open(os.path.join(folder, "results.jsonl"), "w") as f:
        for (norm, batch), per_seed in errors.items():
            for seed, error in enumerate(per_seed):
                f.write(json.dumps({"norm": norm, "batch_size": batch, "seed": seed,
                                    "diverged": False, "test_error": error / 100}) + "\n")


def run(*folders):
    return subprocess.run([sys.executable, SCRIPT, *folders], capture_output=True, text=True)


def row(output, label):
    return next(line for line in output.splitlines() if line.startswith(f"| {label} "))


class LiteratureTable(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def sweep(self, name, errors):
        folder = os.path.join(self.dir.name, name)
        os.mkdir(folder)
        write_sweep(folder, errors)
        return folder

    def test_without_b32_measures_from_b16_seed_by_seed(self):
        folder = self.sweep("no32", {("batch", 16): [10, 12], ("batch", 2): [30, 36],
                                     ("group", 16): [11, 11], ("group", 2): [14, 16]})
        result = run(folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        # (30 - 10, 36 - 12) = (20, 24): mean 22; the paper's 34.7 - 23.7 = 11.0.
        self.assertIn("| 11.0 (GN paper) | +22.00 ±", row(result.stdout, "BatchNorm, B=2 minus B=16"))
        # Relative: 33 / 11 - 1 = +200%.
        self.assertIn("| +200% |", row(result.stdout, "BatchNorm, B=2 relative to B=16"))
        # Beyond GroupNorm's, per seed: (20 - 3, 24 - 5) = (17, 19): mean 18.
        self.assertIn("+18.00 ±", row(result.stdout, "BatchNorm's loss from B=16 to 2"))
        self.assertIn("| 4.00 |", row(result.stdout, "GroupNorm, spread over B=16..2"))

    def test_b32_is_the_reference_when_present(self):
        folder = self.sweep("with32", {("batch", 32): [10, 10], ("batch", 16): [0, 0],
                                       ("batch", 2): [20, 22], ("group", 32): [12, 12],
                                       ("group", 16): [0, 0], ("group", 2): [13, 12]})
        result = run(folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("+11.00 ±", row(result.stdout, "BatchNorm, B=2 minus B=32"))

    def test_remedies_give_mabn_gain_when_present(self):
        folder = self.sweep("remedies", {("batch", 16): [10, 10], ("batch", 2): [30, 32],
                                         ("group", 16): [10, 10], ("group", 2): [12, 12],
                                         ("batch", 4): [15, 15], ("batch_renorm", 4): [14, 13],
                                         ("batch_renorm", 2): [25, 26], ("mabn", 2): [20, 21]})
        result = run(folder, folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("+1.50 ±", row(result.stdout, "Batch Renorm's gain over BatchNorm at B=4"))
        self.assertIn("+10.50 ±", row(result.stdout, "MABN's gain over BatchNorm at B=2"))

    def test_a_sweep_without_the_cells_is_refused(self):
        folder = self.sweep("small", {("batch", 4): [10, 10], ("group", 4): [10, 10]})
        result = run(folder)
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stdout, "")
        self.assertIn("needs batch and group at B=2", result.stderr)


if __name__ == "__main__":
    unittest.main()
