#!/usr/bin/env python3
"""Checks the links of README.md and docs/**/*.md: every relative link names
a file or folder that exists, and every #anchor a heading of that page (as
GitHub spells it). With --paths, also every backticked repository path
(`crates/...`, `src/...`, `tools/...`, `tests/...`, `assets/...`,
`.ci/...`) the pages name, so a moved file shows up.

    python3 tools/check_doc_links.py [--paths]

Prints one line per broken link and exits 1 if there is any. Standard
library only; not part of `cargo test`.
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_PATH = re.compile(r"`((?:crates|src|tools|tests|assets|\.ci)/[A-Za-z0-9_./<>{}*-]*)`")
FENCE = re.compile(r"^(```|~~~)")


def slug(heading):
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    in_fence = False
    for line in open(path, encoding="utf-8"):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    in_fence = False
    for i, line in enumerate(open(path, encoding="utf-8"), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield i, line


def main():
    check_paths = "--paths" in sys.argv[1:]
    pages = [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    problems = []
    for page in pages:
        rel = os.path.relpath(page, ROOT)
        for lineno, line in prose_lines(page):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                dest = page if not path else os.path.normpath(os.path.join(os.path.dirname(page), path))
                if not os.path.exists(dest):
                    problems.append(f"{rel}:{lineno}: {target}: no such file")
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    problems.append(f"{rel}:{lineno}: {target}: no heading #{anchor}")
            if check_paths:
                for p in CODE_PATH.findall(line):
                    if any(c in p for c in "<>{}*"):
                        continue
                    if not os.path.exists(os.path.join(ROOT, p.rstrip("/"))):
                        problems.append(f"{rel}:{lineno}: `{p}`: no such path")
    for p in problems:
        print(p)
    print(f"{len(pages)} pages checked, {len(problems)} broken", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
