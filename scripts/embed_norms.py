#!/usr/bin/env python3
"""Puts the norm registry's list into the docs, so that no list of norms is typed by hand.

    scripts/embed_norms.py [--check] [--normlab build/normlab] [DOC.md ...]
        (default: README.md and docs/norms.md)

Each doc holds one block

    <!-- norms: normlab list norms --markdown -->
    ...replaced by the output of `normlab list norms --markdown`...
    <!-- end norms -->

and this script replaces what is between the two lines by the program's current output.
--check exits 1, changing nothing, when a block is out of date. A doc without the block (or with
a marker but no end line, or more than one block), a program that fails and an output without a
table row are errors (exit 1, with or without --check), so a list can never be silently missing,
stale or empty. Standard library only (no torch); needs a built normlab.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", os.path.join("docs", "norms.md"))
START = "<!-- norms: normlab list norms --markdown -->"
END = "<!-- end norms -->"
BLOCK = re.compile("^(" + re.escape(START) + "\n)(.*?)^(" + re.escape(END) + ")$", re.S | re.M)


def fail(message):
    sys.exit("embed_norms: " + message)


def norm_table(normlab):
    """The output of `normlab list norms --markdown`, checked to hold a table with rows."""
    try:
        result = subprocess.run([normlab, "list", "norms", "--markdown"], capture_output=True,
                                text=True)
    except OSError as e:
        fail(f"{normlab}: {e.strerror} (build normlab first, or give --normlab PATH)")
    if result.returncode != 0:
        fail(f"`{normlab} list norms --markdown` exited {result.returncode}: {result.stderr.strip()}")
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    if not rows:
        fail(f"`{normlab} list norms --markdown` printed no norm rows:\n{result.stdout}")
    return result.stdout if result.stdout.endswith("\n") else result.stdout + "\n"


def embedded(text, doc, table):
    starts, blocks = text.count(START), len(BLOCK.findall(text))
    if starts != 1 or blocks != 1:
        fail(f"{doc}: expected one block '{START}' ... '{END}', found {starts} start markers "
             f"and {blocks} complete blocks")
    return BLOCK.sub(lambda m: m.group(1) + table + m.group(3), text)


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    normlab = os.path.join(ROOT, "build", "normlab")
    if "--normlab" in args:
        at = args.index("--normlab")
        if at + 1 >= len(args):
            fail("--normlab needs a path")
        normlab = args[at + 1]
        del args[at:at + 2]
    docs = args or [os.path.join(ROOT, d) for d in DOCS]
    table = norm_table(normlab)
    stale = []
    for doc in docs:
        with open(doc) as f:
            text = f.read()
        new = embedded(text, os.path.relpath(doc, ROOT), table)
        if new == text:
            continue
        stale.append(doc)
        if not check:
            with open(doc + ".tmp", "w") as f:
                f.write(new)
            os.replace(doc + ".tmp", doc)
    for doc in stale:
        print(("out of date: " if check else "updated: ") + os.path.relpath(doc, ROOT)
              + (" (run scripts/embed_norms.py)" if check else ""))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
