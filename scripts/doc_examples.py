#!/usr/bin/env python3
"""doc_examples.py - every C example in the README and docs/*.md compiles.

Each ```c block of the given Markdown files is built against the library:

  - A block with a main() is a complete program: it is compiled as it is,
    linked, and run (with a time limit); it must exit with status 0.
  - Any other block is a fragment, and the line just before its fence must
    say so, as an HTML comment (invisible on the rendered page):

        <!-- example: fragment -->
        <!-- example: fragment
        static char buf[64];  ...C at file scope the fragment relies on...
        -->

    The script builds a file from it: the #include lines and the function
    definitions of the block (a line at column 0 ending in ')' followed by
    a '{' line) at file scope, after the comment's C; the rest of the block
    - its statements - as the body of a function that is compiled, not
    run.  A line that is only "..." (standing for elided code) is dropped.

A block that is neither a program nor marked fails the check, so that a new
example is either whole or says what it leaves out.

Usage: doc_examples.py --cc CC --include DIR --lib LIBFILE --out DIR
                       [--cflags "..."] FILE.md...
Exits 1, naming FILE:LINE of each block that fails, with the compiler's or
the program's output.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

FENCE = re.compile(r"^```c[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
# The marker must end on the line before the fence; (?:(?!-->).) keeps a
# match from reaching back into an earlier comment.
MARK = re.compile(r"<!--\s*example:\s*fragment\b((?:(?!-->).)*)-->[ \t]*\n$", re.S)
HEADER = '#include <mproc.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n'


def blocks(path):
    text = open(path, encoding="utf-8").read()
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()]
        mark = MARK.search(before[-2000:])
        yield line, m.group(1), (mark.group(1).strip() if mark else None)


def split_fragment(code):
    """(file-scope lines, body lines) of a fragment."""
    lines = code.splitlines()
    top, body, i = [], [], 0
    while i < len(lines):
        ln = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if ln.startswith("#"):
            top.append(ln)
        elif re.match(r"^[A-Za-z_].*\)\s*(/\*.*\*/)?\s*$", ln) and nxt.startswith("{"):
            # A function definition, to its closing brace at column 0.
            j = i + 1
            while j < len(lines) and not lines[j].startswith("}"):
                j += 1
            top.extend(lines[i : j + 1])
            i = j
        elif ln.strip().startswith("...") and not ln.strip().startswith("...)"):
            rest = ln.strip()[3:].strip()
            if rest:
                body.append(rest)  # a comment after the elision
        else:
            body.append(ln)
        i += 1
    return top, body


def build(args, name, source, run):
    os.makedirs(args.out, exist_ok=True)
    src = os.path.join(args.out, name + ".c")
    exe = os.path.join(args.out, name)
    with open(src, "w", encoding="utf-8") as f:
        f.write(source)
    libdir = os.path.dirname(os.path.abspath(args.lib))
    cmd = ([args.cc, "-std=gnu11", "-Wall", "-Wno-unused", "-Werror=implicit-function-declaration",
            "-Werror=incompatible-pointer-types", "-Werror=int-conversion"]
           + shlex.split(args.cflags) + ["-I", args.include, src, "-o", exe, args.lib,
                                         "-Wl,-rpath," + libdir, "-lpthread", "-lm"])
    if not run:
        cmd[1:1] = ["-c"]
        cmd[cmd.index("-o") + 1] = exe + ".o"
        cmd = cmd[: cmd.index(args.lib)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        return "does not compile:\n" + r.stdout
    if r.stdout.strip():
        return "compiles with warnings:\n" + r.stdout
    if not run:
        return None
    try:
        p = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "ran over 60 s"
    if p.returncode != 0:
        return "exits with %d:\n%s" % (p.returncode, p.stdout)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", required=True)
    ap.add_argument("--include", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cflags", default="")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    failed = built = ran = 0
    for path in args.files:
        base = re.sub(r"\W", "_", os.path.relpath(path))
        for line, code, mark in blocks(path):
            name = "%s_%d" % (base, line)
            where = "%s:%d" % (path, line)
            if re.search(r"\bmain\s*\(", code):
                err = build(args, name, code, True)
                ran += err is None
            elif mark is None:
                err = ("neither a program (no main) nor marked as a fragment: put "
                       "<!-- example: fragment --> on the line before its fence")
            else:
                top, body = split_fragment(code)
                source = (HEADER + mark + "\n\n" + "\n".join(top) +
                          "\n\nint mpdoc_fragment(void);\nint mpdoc_fragment(void)\n{\n" +
                          "\n".join(body) + "\n    return 0;\n}\n")
                err = build(args, name, source, False)
            built += 1
            if err:
                failed += 1
                print("%s: example %s" % (where, err))
    print("doc_examples: %d examples, %d programs ran, %d failed" % (built, ran, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
