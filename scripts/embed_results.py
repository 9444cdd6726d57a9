#!/usr/bin/env python3
"""Copies result files into the docs, so that no number in them is typed by hand.

    scripts/embed_results.py [--check] [DOC.md ...]   (default: README.md, docs/*.md)

A doc marks where a result file goes with two comment lines:

    <!-- embed: experiments/results/bench/training_vs_torch.md -->
    ...replaced by the file's text...
    <!-- end embed -->

and this script replaces what is between them by the file's current text
(paths relative to the repository). `path#Caption start` takes one table of a
report.md instead: the markdown table under the first bold caption line
(`**Caption start...**`) that begins with that text; `path#Heading>Caption
start` looks only after the line `## Heading`. --check exits 1, changing nothing, when a
doc is out of date. A marker without its end line, a selector that matches no table and a file
or table with nothing in it are errors (exit 1, with or without --check), so a block can never
stay silently empty. Standard library only.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A marker starts its line (an indented one, as in a code example, is left alone).
# The selector runs to the closing " -->" (it may hold ">", as in "heading>caption").
BLOCK = re.compile(r"^(<!-- embed: ([^#\s]+)(?:#(.*?))? -->\n)(.*?)^(<!-- end embed -->)", re.S | re.M)
MARKER = re.compile(r"^<!-- embed:", re.M)


def table_under(text, selector, path):
    """The markdown table that follows the bold caption starting with `caption`
    (after the `## heading` line when the selector is `heading>caption`)."""
    lines = text.splitlines()
    heading, _, caption = selector.rpartition(">")
    if heading:
        starts = [i for i, line in enumerate(lines) if line == "## " + heading]
        if not starts:
            sys.exit(f"embed_results: no heading '## {heading}' in {path}")
        lines = lines[starts[0] + 1:]
    for i, line in enumerate(lines):
        if line.startswith("**" + caption):
            rows = []
            for row in lines[i + 1:]:
                if row.startswith("|"):
                    rows.append(row)
                elif rows or row.strip():
                    break
            if rows:
                return "\n".join(rows) + "\n"
    sys.exit(f"embed_results: no table under a caption starting '{selector}' in {path}")


def embedded(doc_text, doc):
    markers, blocks = len(MARKER.findall(doc_text)), len(BLOCK.findall(doc_text))
    if markers != blocks:
        sys.exit(f"embed_results: {doc}: {markers} embed markers but {blocks} complete blocks "
                 "(each '<!-- embed: PATH[#SELECTOR] -->' line needs its '<!-- end embed -->')")

    def replace(match):
        try:
            with open(os.path.join(ROOT, match.group(2))) as f:
                body = f.read()
        except OSError as e:
            sys.exit(f"embed_results: {match.group(2)}: {e.strerror} (a doc embeds it)")
        if match.group(3):
            body = table_under(body, match.group(3), match.group(2))
        if not body.strip():
            sys.exit(f"embed_results: {doc}: {match.group(2)} is empty (nothing to embed)")
        return match.group(1) + body + ("" if body.endswith("\n") else "\n") + match.group(5)
    return BLOCK.sub(replace, doc_text)


def main():
    args = sys.argv[1:]
    check = "--check" in args
    docs = [a for a in args if a != "--check"] or [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "*.md")))
    stale = []
    for doc in docs:
        with open(doc) as f:
            text = f.read()
        new = embedded(text, os.path.relpath(doc, ROOT))
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
