#!/usr/bin/env python3
"""scripts/embed_norms.py: the block is filled with `normlab list norms --markdown`, --check fails
on a stale block, and a doc without the block, a block without its end, a program that fails and
an output without norm rows fail, with and without --check. A stand-in program prints the table,
so this runs without a build. Run by ctest (scripts_embed_norms); standard library only."""
import os
import stat
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "embed_norms.py")
START, END = "<!-- norms: normlab list norms --markdown -->", "<!-- end norms -->"
TABLE = "| type | what |\n|---|---|\n| `batch` | BatchNorm |\n"


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class EmbedNorms(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.normlab = self.program(TABLE)

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def program(self, output, status=0, name="normlab"):
        """A stand-in for normlab that prints `output` for `list norms --markdown`."""
        path = self.write(name, "#!/bin/sh\n[ \"$*\" = \"list norms --markdown\" ] || exit 9\n"
                          f"printf '%s' '{output}'\nexit {status}\n")
        os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
        return path

    def doc(self, body):
        return self.write("doc.md", "intro\n\n" + body + "\nafter\n")

    def embed(self, *args, normlab=None):
        return run("--normlab", normlab or self.normlab, *args)

    def test_fills_the_block_and_check_then_passes(self):
        doc = self.doc(f"{START}\n{END}\n")
        result = self.embed("--check", doc)  # stale: the block is empty
        self.assertEqual(result.returncode, 1)
        self.assertIn("out of date", result.stdout)
        self.assertEqual(self.embed(doc).returncode, 0)
        with open(doc) as f:
            self.assertEqual(f.read(), f"intro\n\n{START}\n{TABLE}{END}\n\nafter\n")
        self.assertEqual(self.embed("--check", doc).returncode, 0)

    def test_stale_block_fails_check_and_is_left_alone(self):
        stale = f"{START}\n| `old` | gone |\n{END}\n"
        doc = self.doc(stale)
        self.assertEqual(self.embed("--check", doc).returncode, 1)
        with open(doc) as f:
            self.assertIn(stale, f.read())

    def test_doc_without_the_block_fails(self):
        doc = self.doc("no list here\n")
        for args in (["--check", doc], [doc]):
            result = self.embed(*args)
            self.assertEqual(result.returncode, 1)
            self.assertIn("found 0 start markers", result.stderr)

    def test_marker_without_end_fails(self):
        result = self.embed("--check", self.doc(f"{START}\n| `batch` | x |\n"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("0 complete blocks", result.stderr)

    def test_two_blocks_fail(self):
        result = self.embed("--check", self.doc(f"{START}\n{END}\n\n{START}\n{END}\n"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("found 2 start markers", result.stderr)

    def test_empty_or_failing_program_fails(self):
        doc = self.doc(f"{START}\n{TABLE}{END}\n")
        for normlab in (self.program("", name="empty"),
                        self.program("| type | what |\\n|---|---|\\n", name="header_only"),
                        self.program(TABLE, status=3, name="failing"),
                        os.path.join(self.dir.name, "missing")):
            for args in (["--check", doc], [doc]):
                result = self.embed(*args, normlab=normlab)
                self.assertEqual(result.returncode, 1, normlab)
                self.assertIn("embed_norms:", result.stderr)


if __name__ == "__main__":
    unittest.main()
