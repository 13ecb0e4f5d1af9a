"""The shape of the source tree, kept by a check rather than by memory: no include cycles
between modules, no function longer than a screen, a README that is a front page, and
nothing in the repository that points outside it or vendors what a script installs.

A module is a source file and its header (src/sync/push.c + src/sync/push.h); a private
header named X_internal.h belongs to module X. Functions are found by the layout that
clang-format enforces (make format-check): a definition's body opens with "{" alone at
column 0 and closes with "}" at column 0."""

import os
import re
import subprocess

from conftest import REPO

SRC = os.path.join(REPO, "src")
MAX_FUNCTION_LINES = 80
MAX_README_LINES = 250


def sources():
    for folder, _, names in os.walk(SRC):
        for name in sorted(names):
            if name.endswith((".c", ".h")):
                yield os.path.join(folder, name)


def module_of(path):
    name = os.path.splitext(os.path.relpath(path, SRC))[0]
    return name[: -len("_internal")] if name.endswith("_internal") else name


def include_graph():
    graph = {}
    for path in sources():
        mod = module_of(path)
        text = open(path, encoding="utf-8").read()
        for inc in re.findall(r'^#include "([^"]+)\.h"', text, re.M):
            if not os.path.exists(os.path.join(SRC, inc + ".h")):
                continue
            target = module_of(os.path.join(SRC, inc + ".h"))
            if target != mod:
                graph.setdefault(mod, set()).add(target)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def long_functions():
    found = []
    for path in sources():
        if not path.endswith(".c"):
            continue
        lines = open(path, encoding="utf-8").read().split("\n")
        start, name = None, ""
        for i, line in enumerate(lines):
            if line == "{" and i > 0:
                start = i
                j = i - 1
                while j > 0 and "(" not in lines[j]:
                    j -= 1
                name = lines[j].strip()
            elif line.startswith("}") and start is not None:
                length = i - start - 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{os.path.relpath(path, REPO)}: {name} ({length} lines)")
                start = None
    return found


def tracked_files():
    out = subprocess.run(["git", "-C", REPO, "ls-files"], capture_output=True, text=True,
                         check=True).stdout
    return out.split("\n")


def test_the_include_graph_has_no_cycles():
    graph = include_graph()
    assert "http/server" in graph and "sync/push" in graph, "the include graph was not read"
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_is_longer_than_a_screen():
    assert long_functions() == []


def test_the_readme_is_a_front_page():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        assert len(f.read().split("\n")) <= MAX_README_LINES


def test_nothing_vendored_and_nothing_points_outside_the_repository():
    files = tracked_files()
    assert not [f for f in files if "node_modules/" in f]
    # the folders beside the checkout (the seeds, the design notes), as a pattern so
    # that this file does not name them itself
    grep = subprocess.run(["git", "-C", REPO, "grep", "-n", "-I", "-E", "-e",
                           r"\.\./[s]hared\b|[s]hared/seeds\b", "--", "."],
                          capture_output=True, text=True)
    assert grep.stdout == ""
