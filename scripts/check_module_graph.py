#!/usr/bin/env python3
"""check_module_graph.py - the modules of src/ must not depend on each other in a cycle.

A module is a file pair src/NAME.c + src/NAME.h, or a whole directory under
src/ (src/platform/, and subsystems such as src/pool/).  Module A depends on
module B when a file of A
  - includes B's internal header (src/NAME.h, or any header under B's
    directory), or
  - uses an mp__ function or variable that a .c file of B defines (in a
    header: inside the body of an inline function; a declaration is not a
    use).
src/internal.h, the umbrella that includes every module header, gives no
edge by itself: what a file uses through it still counts, by name.

Usage: check_module_graph.py [--print] [SRC_DIR]
  --print   list every module's dependencies (for docs/internals.md)
Exits 1 and prints each cycle, with the names that make every edge, when the
graph has one.
"""
import os
import re
import sys

UMBRELLA = "internal.h"

DECL_ONLY = re.compile(r"\s*(?:(?:static|const|volatile|_Thread_local)\s+)*(typedef|extern)\b")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)


def strip(text):
    """The text without comments, string and character literals, and
    preprocessor lines (newlines kept, so positions still make sense)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        elif c == "#" and (i == 0 or text[i - 1] == "\n"):
            # A preprocessor line, with its continuations.
            j = i
            while True:
                k = text.find("\n", j)
                if k < 0:
                    j = n
                    break
                if text[k - 1] == "\\":
                    j = k + 1
                    continue
                j = k
                break
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def flatten(stmt):
    """A declaration with the insides of its braces dropped (struct bodies,
    initializers), so that only its own names remain."""
    out, depth = [], 0
    for c in stmt:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0:
            out.append(c)
    return "".join(out)


def definitions(code):
    """mp_ and mp__ functions and variables a .c file defines (at file
    scope): a function whose body follows, or a variable declared without
    extern or typedef."""
    found = set()
    depth = paren = 0
    stmt_start = 0
    body_is_function = False
    for i, c in enumerate(code):
        if c == "(":
            paren += 1
        elif c == ")":
            paren -= 1
        elif c == "{":
            if depth == 0 and paren == 0:
                stmt = flatten(code[stmt_start:i])
                body_is_function = bool(re.search(r"\)\s*$", stmt))
                m = re.search(r"\b(mp_\w+)\s*\([^;]*\)\s*$", stmt, re.S)
                if body_is_function and m and not DECL_ONLY.match(stmt):
                    found.add(m.group(1))
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and body_is_function:
                stmt_start = i + 1
        elif c == ";" and depth == 0 and paren == 0:
            stmt = flatten(code[stmt_start:i])
            stmt_start = i + 1
            if DECL_ONLY.match(stmt):
                continue  # a typedef or an extern
            m = re.search(r"\(\s*\*\s*(mp_\w+)\s*\)\s*\(", stmt)
            if m:
                found.add(m.group(1))  # a function pointer
                continue
            if re.search(r"\)\s*$", stmt.split("=")[0]):
                continue  # a function's prototype
            # A variable: the name of its declarator, followed by '=', '['
            # or the end.
            for m in re.finditer(r"(?:^|[\s*(])(mp_\w+)\s*(?:\[|=|$)", stmt, re.S):
                if not re.search(r"\b(struct|union|enum)\s*$", stmt[: m.start(1)]):
                    found.add(m.group(1))  # not a tag
                    break
    return found


def in_bodies(code):
    """The text inside braces only: for a header, what its inline functions
    use, apart from what it merely declares."""
    out, depth = [], 0
    for c in code:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth > 0:
            out.append(c)
            continue
        out.append(" ")
    return "".join(out)


def module_of(path, src):
    rel = os.path.relpath(path, src)
    parts = rel.split(os.sep)
    if len(parts) > 1:
        return parts[0]
    if rel == UMBRELLA:
        return None
    return os.path.splitext(rel)[0]


def collect(src):
    files = []
    for root, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith((".c", ".h")):
                files.append(os.path.join(root, name))
    return sorted(files)


def build_graph(src):
    files = collect(src)
    texts = {}
    defined = {}  # mp__ name -> module
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            raw = fh.read()
        texts[f] = (raw, strip(raw))
        if f.endswith(".c"):
            for name in definitions(texts[f][1]):
                defined.setdefault(name, module_of(f, src))
    edges = {}  # (a, b) -> set of reasons

    def add(a, b, why):
        if a and b and a != b:
            edges.setdefault((a, b), set()).add(why)

    modules = set()
    for f in files:
        mod = module_of(f, src)
        if mod is None:
            continue
        modules.add(mod)
        raw, code = texts[f]
        rel = os.path.relpath(f, src)
        for inc in INCLUDE.findall(raw):
            for base in (os.path.dirname(f), src):
                target = os.path.normpath(os.path.join(base, inc))
                if os.path.isfile(target):
                    if os.path.commonpath([target, src]) == os.path.normpath(src):
                        add(mod, module_of(target, src), '%s includes "%s"' % (rel, inc))
                    break
        # A header declares its own module's functions: only what its
        # inline functions use counts.
        used = in_bodies(code) if f.endswith(".h") else code
        for name in set(IDENT.findall(used)):
            if name.startswith("mp_") and name in defined:
                add(mod, defined[name], "%s uses %s" % (rel, name))
    return modules, edges


def cycles(modules, edges):
    """The strongly connected components with more than one module."""
    succ = {m: sorted(b for (a, b) in edges if a == m) for m in modules}
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for m in sorted(modules):
        if m not in index:
            visit(m)
    return out, succ


def one_cycle(comp, succ):
    """A shortest cycle through the component's first module."""
    start = comp[0]
    members = set(comp)
    prev = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in succ[v]:
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    path.reverse()
                    return path + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def main(argv):
    show = "--print" in argv
    args = [a for a in argv if not a.startswith("--")]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    src = os.path.normpath(src)
    modules, edges = build_graph(src)
    comps, succ = cycles(modules, edges)
    if show:
        for m in sorted(modules):
            print("%-12s -> %s" % (m, " ".join(succ[m]) or "(nothing)"))
    for comp in comps:
        path = one_cycle(comp, succ)
        print("module cycle: %s" % " -> ".join(path), file=sys.stderr)
        for a, b in zip(path, path[1:]):
            for why in sorted(edges[(a, b)])[:3]:
                print("  %s -> %s: %s" % (a, b, why), file=sys.stderr)
    if comps:
        return 1
    if not show:
        print("module graph: %d modules, %d edges, no cycle" % (len(modules), len(edges)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
