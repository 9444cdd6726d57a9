#!/usr/bin/env python3
"""scripts/embed_results.py: blocks are filled, and a block that would stay empty (a selector
that matches nothing, a marker without its end, an empty file) fails, with and without --check.
Run by ctest (scripts_embed_results); standard library only."""
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "embed_results.py")

REPORT = """# report

**Loose caption**

| a | b |
|---|---|
| 0 | 0 |

## Probe: one

**Per layer (caption)**

| x | y |
|---|---:|
| 1 | 2 |
"""


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class EmbedResults(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.report = self.write("report.md", REPORT)
        self.empty = self.write("empty.md", "\n")

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def doc(self, marker, end="<!-- end embed -->\n"):
        return self.write("doc.md", "intro\n\n" + marker + "\n" + end + "\nafter\n")

    def test_heading_caption_selector_fills_the_block(self):
        doc = self.doc(f"<!-- embed: {self.report}#Probe: one>Per layer -->")
        self.assertEqual(run("--check", doc).returncode, 1)  # stale: the block is empty
        self.assertEqual(run(doc).returncode, 0)
        with open(doc) as f:
            text = f.read()
        self.assertIn("| 1 | 2 |\n<!-- end embed -->", text)
        self.assertNotIn("| 0 | 0 |", text)  # the table under the heading, not the first one
        self.assertEqual(run("--check", doc).returncode, 0)

    def test_whole_file_and_caption(self):
        doc = self.doc(f"<!-- embed: {self.report}#Loose -->")
        self.assertEqual(run(doc).returncode, 0)
        with open(doc) as f:
            self.assertIn("| 0 | 0 |\n<!-- end embed -->", f.read())

    def test_unmatched_selector_fails(self):
        for selector in ["Probe: two>Per layer", "Probe: one>No such caption", "Nothing"]:
            doc = self.doc(f"<!-- embed: {self.report}#{selector} -->")
            for args in (["--check", doc], [doc]):
                result = run(*args)
                self.assertEqual(result.returncode, 1, selector)
                self.assertIn("embed_results:", result.stderr)

    def test_marker_without_end_fails(self):
        doc = self.doc(f"<!-- embed: {self.report} -->", end="")
        result = run("--check", doc)
        self.assertEqual(result.returncode, 1)
        self.assertIn("end embed", result.stderr)

    def test_empty_file_fails(self):
        doc = self.doc(f"<!-- embed: {self.empty} -->")
        result = run("--check", doc)
        self.assertEqual(result.returncode, 1)
        self.assertIn("empty", result.stderr)

    def test_missing_file_fails(self):
        doc = self.doc(f"<!-- embed: {self.dir.name}/none.md -->")
        self.assertEqual(run("--check", doc).returncode, 1)


if __name__ == "__main__":
    unittest.main()
