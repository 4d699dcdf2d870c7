#!/usr/bin/env python3
"""check_function_size.py - no function in src/ longer than a reader takes in at once.

A function is found the way the repository's format writes one: its opening
brace alone on a line at column 0, its closing brace alone at column 0.  The
lines between are counted (blank lines and comments too: they are read as
well).  Exits 1 and lists each function over the limit.

Usage: check_function_size.py [--limit N] [SRC_DIR]   (default 80, src)
"""
import os
import re
import sys

NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def functions(path):
    """(name, first line, body lines) of each function of a C file."""
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i] == "{" and i > 0:
            j = i - 1
            while j > 0 and not NAME.search(lines[j]):
                j -= 1
            m = NAME.search(lines[j])
            k = i + 1
            while k < len(lines) and lines[k] != "}":
                k += 1
            yield (m.group(1) if m else "?", j + 1, k - i - 1)
            i = k
        i += 1


def main(argv):
    limit, src = 80, "src"
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--limit":
            limit = int(args.pop(0))
        else:
            src = a
    over = []
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if f.endswith(".c"):
                p = os.path.join(root, f)
                over += [(p, line, name, n) for name, line, n in functions(p) if n > limit]
    for p, line, name, n in sorted(over):
        print(f"{p}:{line}: {name}() has {n} lines (limit {limit})")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
