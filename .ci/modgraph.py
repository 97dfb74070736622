#!/usr/bin/env python3
"""The crate's module graph, read from its `use crate::`, `crate::` and
`super::` paths (unit tests and comments left out), and its cycles.

Usage: .ci/modgraph.py [--print]

Checks, and exits 1 if one fails:
- no cycle between the crate's top-level modules (src/X.rs, src/X/);
- no cycle between sibling files of one directory (a parent's mod.rs
  holding what its children share is not counted as a cycle);
- only main.rs imports cli (the library's other modules and benches/ not).
With --print, also prints every edge.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")


def modules():
    """Module path (tuple) -> file, for every .rs file under src/."""
    mods = {}
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), SRC)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = [] if rel == ["lib"] else ["<main>"]
            mods[tuple(rel)] = os.path.join(dirpath, f)
    return mods


def code(path):
    """The file's text without comments and without `#[cfg(test)]` items."""
    text = open(path).read()
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        # Skip the item: up to its first `;` or its balanced `{...}`.
        j = m.end()
        depth = 0
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif c == ";" and depth == 0:
                j += 1
                break
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def paths(text):
    """Every path rooted at crate:: or super::, `use` groups expanded one level."""
    found = []
    for m in re.finditer(r"\b(crate|super)((?:::\s*(?:super|\w+))*)(::\s*\{)?", text):
        head = [m.group(1)] + [p.strip() for p in m.group(2).split("::") if p.strip()]
        if m.group(3):
            # A group: take each first segment inside the braces.
            start = m.end()
            depth, j = 1, start
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            inner = text[start : j - 1]
            d, item = 0, ""
            for c in inner + ",":
                if c == "," and d == 0:
                    seg = re.match(r"\s*(\w+)", item)
                    if seg:
                        found.append(head + [seg.group(1)])
                    item = ""
                    continue
                d += {"{": 1, "}": -1}.get(c, 0)
                item += c
        else:
            found.append(head)
    return found


def reexports(mods):
    """Names the crate root re-exports (`pub use error::Error;`) -> module."""
    out = {}
    for m in re.finditer(r"pub use (\w+)::(?:\w+::)*(\w+);", code(mods[()])):
        out[m.group(2)] = (m.group(1),)
    return out


def resolve(mod, path, mods, root_names):
    """The module a path of `mod`'s points into (the longest known prefix)."""
    if path[0] == "crate" and len(path) > 1 and path[1] in root_names:
        return root_names[path[1]]
    if path[0] == "crate":
        base, rest = [], path[1:]
    else:
        base = list(mod)
        # In a non-mod.rs file, `super` is the parent; in mod.rs too (its
        # module is the directory), so one `super` pops one level either way.
        rest = path
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    best = tuple(base)
    for k in range(len(rest) + 1):
        cand = tuple(base + rest[:k])
        if cand in mods:
            best = cand
    return best


def cycles(nodes, edges):
    """Strongly connected components of more than one node."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "crate" if m == () else "::".join(m)


def main():
    show = "--print" in sys.argv
    mods = modules()
    edges = {}
    root_names = reexports(mods)
    for mod, path in sorted(mods.items()):
        for p in paths(code(path)):
            target = resolve(mod, p, mods, root_names)
            if target != mod:
                edges.setdefault(mod, set()).add(target)
    failed = False

    top = lambda m: m[:1]
    top_edges = {}
    for a, bs in edges.items():
        for b in bs:
            if top(a) and top(b) and top(a) != top(b):
                top_edges.setdefault(top(a), set()).add(top(b))
    if show:
        print("top-level modules:")
        for a in sorted(top_edges):
            print(f"  {name(a)} -> {', '.join(sorted(name(b) for b in top_edges[a]))}")
    for c in cycles({top(m) for m in mods if top(m)}, top_edges):
        print("cycle between top-level modules: " + " <-> ".join(name(m) for m in c))
        failed = True

    # Siblings: files of one directory, edges between them only.
    by_parent = {}
    for m in mods:
        if len(m) >= 2:
            by_parent.setdefault(m[:-1], set()).add(m)
    for parent, sibs in sorted(by_parent.items()):
        sib_edges = {}
        for a in sibs:
            for b in edges.get(a, ()):
                # A path into a sibling's submodule counts as the sibling.
                b = b[: len(parent) + 1]
                if b in sibs and b != a:
                    sib_edges.setdefault(a, set()).add(b)
        if show and sib_edges:
            print(f"inside {name(parent)}:")
            for a in sorted(sib_edges):
                print(f"  {a[-1]} -> {', '.join(sorted(b[-1] for b in sib_edges[a]))}")
        for c in cycles(sibs, sib_edges):
            print(f"cycle inside {name(parent)}: " + " <-> ".join(m[-1] for m in c))
            failed = True

    cli = ("cli",)
    users = sorted(name(a) for a, bs in edges.items() if cli in bs and a != ("<main>",))
    bench_dir = os.path.join(ROOT, "benches")
    for f in sorted(os.listdir(bench_dir)) if os.path.isdir(bench_dir) else []:
        if re.search(r"udp_reflector::\s*(\{[^}]*\bcli\b|cli\b)", open(os.path.join(bench_dir, f)).read()):
            users.append("benches/" + f)
    if users:
        print("cli is imported by " + ", ".join(users) + " (only main.rs may)")
        failed = True

    print("module graph: " + ("FAILED" if failed else "no cycle; only main.rs imports cli"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
