#!/usr/bin/env python3
"""Checks the workspace's layering, as README.md promises it:

1. crates: every `kiln-*` library's normal dependencies come earlier in the workspace's member
   list (pipeline order), so no crate imports from a later stage;
2. modules: inside each crate, no cycle between sibling modules. A reference from module a::x to
   a::y (through `crate::` or `super::` paths) is an edge x -> y under a; references between a
   module and its own ancestors or descendants are not edges (a parent declares its children).

Exits 1 and lists every violation. Reads only Cargo metadata and the sources.
"""
import json
import os
import re
import subprocess
import sys


def workspace():
    return json.loads(subprocess.check_output(["cargo", "metadata", "--no-deps", "--format-version", "1"]))


def crate_order_violations(meta):
    order = [p["name"] for p in sorted(meta["packages"], key=lambda p: meta["workspace_members"].index(p["id"]))]
    rank = {name: i for i, name in enumerate(order)}
    problems = []
    for package in meta["packages"]:
        for dep in package["dependencies"]:
            if dep["name"] in rank and dep["kind"] is None and rank[dep["name"]] >= rank[package["name"]]:
                problems.append(f"crate {package['name']} depends on {dep['name']}, which comes later in the pipeline")
    return problems


def module_files(src):
    """Module path (tuple) -> file, for a crate's src folder."""
    modules = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            modules[tuple(rel)] = os.path.join(folder, name)
    return modules


PATH = re.compile(r"\b(crate|super)((?:::(?:super|[a-z_][a-z0-9_]*))*)(?:::\{([^{}]*)\})?")


def references(text, module):
    """Absolute module-ish paths this file refers to (before `#[cfg(test)]`)."""
    text = text.split("#[cfg(test)]")[0]
    for line in text.splitlines():
        if line.lstrip().startswith("//"):
            continue
        for m in PATH.finditer(line):
            heads = [s for s in m.group(2).split("::") if s]
            # `a::{b, c::d}` refers to a::b and a::c::d.
            tails = [[s for s in item.strip().split("::") if s] for item in (m.group(3) or "").split(",")]
            for tail in tails:
                segments = heads + [s for s in tail if re.fullmatch(r"[a-z_][a-z0-9_]*", s)]
                # `crate` is the root; `super` is the parent of the file's own module.
                base = [] if m.group(1) == "crate" else list(module[:-1])
                while segments and segments[0] == "super":
                    base = base[:-1]
                    segments = segments[1:]
                yield tuple(base + segments)


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def module_cycle_violations(meta):
    problems = []
    for package in meta["packages"]:
        src = os.path.join(os.path.dirname(package["manifest_path"]), "src")
        modules = module_files(src)
        graphs = {}
        for module, path in modules.items():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for target in references(text, module):
                # The longest prefix of the path that is a module of this crate.
                while target and target not in modules:
                    target = target[:-1]
                common = 0
                while common < min(len(module), len(target)) and module[common] == target[common]:
                    common += 1
                if common < len(module) and common < len(target):
                    parent = module[:common]
                    graphs.setdefault(parent, {}).setdefault(module[common], set()).add(target[common])
        for parent, graph in graphs.items():
            for cycle in cycles(graph):
                where = "::".join(parent) or "crate root"
                problems.append(f"crate {package['name']}: module cycle under {where}: {' <-> '.join(cycle)}")
    return problems


def main():
    meta = workspace()
    problems = crate_order_violations(meta) + module_cycle_violations(meta)
    for problem in problems:
        print(f"check_layers: {problem}", file=sys.stderr)
    crates = len(meta["packages"])
    if problems:
        sys.exit(1)
    print(f"check_layers: {crates} crates in pipeline order, no module cycles")


if __name__ == "__main__":
    main()
