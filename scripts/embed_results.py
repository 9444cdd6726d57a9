#!/usr/bin/env python3
"""Copies result files into the docs, so that no number in them is typed by hand.

    scripts/embed_results.py [DOC.md ...]      (default: every docs/*.md)

A doc marks where a result file goes with two comment lines:

    <!-- embed: experiments/results/bench/training_vs_torch.md -->
    ...replaced by the file's text...
    <!-- end embed -->

and this script replaces what is between them by the file's current text
(paths relative to the repository). --check exits 1, changing nothing, when a
doc is out of date. Standard library only.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- embed: (\S+) -->\n)(.*?)(<!-- end embed -->)", re.S)


def embedded(doc_text):
    def replace(match):
        with open(os.path.join(ROOT, match.group(2))) as f:
            body = f.read()
        return match.group(1) + body + ("" if body.endswith("\n") else "\n") + match.group(4)
    return BLOCK.sub(replace, doc_text)


def main():
    args = sys.argv[1:]
    check = "--check" in args
    docs = [a for a in args if a != "--check"] or sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    stale = []
    for doc in docs:
        with open(doc) as f:
            text = f.read()
        new = embedded(text)
        if new == text:
            continue
        stale.append(doc)
        if not check:
            with open(doc + ".tmp", "w") as f:
                f.write(new)
            os.replace(doc + ".tmp", doc)
    for doc in stale:
        print(("out of date: " if check else "updated: ") + os.path.relpath(doc, ROOT))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
