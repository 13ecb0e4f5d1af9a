"""docs/openapi.json against the routes the code serves.

Every route of the route tables in src/api/*.c must be documented, and every documented
operation must be served. Routes are read from the source, not from a running server:
entries like `{M_GET | M_POST, "/api/v1/...", handler, ...}`; the SYNC_ROUTES(P) and
FILE_ROUTES(P) macros (`P "/path"` entries), expanded for each prefix they are used with
("/api/v1/sync" and "/api/sync"); and PhoenixKit's `{prefix}/sync/api/<action>` paths,
built by phoenix.c from its `actions[]` table, at the default prefix "/phoenix_kit".

Paths are compared with their parameters' names left out: `{id}` matches `{session}`, and
a trailing `*` (the rest of the path) matches a `{path}`-style parameter. As in the router,
HEAD is served by a GET route, and OPTIONS (the CORS preflight) on every served path."""

import json
import os
import re

import pytest

from conftest import REPO

API_DIR = os.path.join(REPO, "src", "api")
OPENAPI = os.path.join(REPO, "docs", "openapi.json")
PHOENIX_PREFIX = "/phoenix_kit"  # --sites-prefix's default, as the document writes it
MACRO_PREFIXES = {"SYNC_ROUTES": ["/api/v1/sync", "/api/sync"],
                  "FILE_ROUTES": ["/api/v1/sync", "/api/sync"]}
METHODS = {"M_GET": "get", "M_POST": "post", "M_PUT": "put", "M_PATCH": "patch",
           "M_DELETE": "delete", "M_HEAD": "head", "M_OPTIONS": "options"}

# `{M_GET | M_DELETE, "/path", ...` and, inside a macro, `{M_POST, P "/path", ...`
ENTRY = re.compile(r'\{\s*(M_[A-Z]+(?:\s*\|\s*M_[A-Z]+)*)\s*,\s*(P\s+)?"([^"]*)"')
DEFINE = re.compile(r"#define\s+(\w+)\(P\)((?:[^\n]*\\\n)*[^\n]*)")


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"//[^\n]*", " ", src)


def methods_of(expr):
    names = [m.strip() for m in expr.split("|")]
    unknown = [m for m in names if m not in METHODS]
    assert not unknown, f"unknown method constant(s) {unknown} in {expr!r}"
    return [METHODS[m] for m in names]


def code_routes():
    """{(path, method): "file.c"} for every route the code serves."""
    routes = {}
    files = sorted(f for f in os.listdir(API_DIR) if f.endswith(".c"))
    assert files, f"no sources in {API_DIR}"
    for name in files:
        src = strip_comments(open(os.path.join(API_DIR, name), encoding="utf-8").read())
        found = 0

        def add(path, expr):
            nonlocal found
            for method in methods_of(expr):
                routes.setdefault((path, method), name)
            found += 1

        # the macros: their entries, once per prefix they are used with
        defines = {m.group(1): m.group(2) for m in DEFINE.finditer(src)}
        body = DEFINE.sub(" ", src)
        for macro, text in defines.items():
            text = text.replace("\\\n", " ")  # line continuations, wherever the formatter puts them
            used = re.findall(rf'\b{macro}\(\s*"([^"]*)"\s*\)', body)
            assert used, f"{name}: macro {macro}(P) is never used"
            if macro in MACRO_PREFIXES:
                assert sorted(used) == sorted(MACRO_PREFIXES[macro]), (
                    f"{name}: {macro} is used with {used}, expected {MACRO_PREFIXES[macro]}")
            # clang-format may break an entry over continuation lines
            entries = ENTRY.findall(text.replace("\\\n", " "))
            assert entries, f"{name}: no route entries in macro {macro}(P)"
            for prefix in used:
                for expr, p_arg, path in entries:
                    assert p_arg, f"{name}: {macro} has an entry without P: {path}"
                    add(prefix + path, expr)

        # phoenix.c: {prefix}/sync/api/<action> from actions[]
        if name == "phoenix.c":
            assert '"%s/sync/api/%s"' in body, "phoenix.c no longer builds %s/sync/api/%s"
            table = re.search(r"\bactions\[\]\s*=\s*\{(.*?)\};", body, re.S)
            assert table, "phoenix.c: no actions[] table"
            entries = re.findall(r'\{\s*(M_[A-Z]+(?:\s*\|\s*M_[A-Z]+)*)\s*,\s*"([^"]+)"',
                                 table.group(1))
            assert entries, "phoenix.c: actions[] has no entries"
            for expr, action in entries:
                add(f"{PHOENIX_PREFIX}/sync/api/{action}", expr)
            body = body.replace(table.group(0), " ")

        # plain route-table entries
        for expr, p_arg, path in ENTRY.findall(body):
            if not p_arg and path.startswith("/"):
                add(path, expr)

        if re.search(r"\bstruct\s+route\s+routes\s*\[", src):
            assert found, f"{name} has a route table, but no route was read from it"
    return routes


def normalize(path):
    """A path with its parameters' names left out; a trailing * is a parameter too."""
    path = re.sub(r"\{[^}/]*\}", "{}", path)
    return path[:-1] + "{}" if path.endswith("/*") else path


def documented():
    """{(normalized path, method)} of docs/openapi.json, and the original paths."""
    doc = json.load(open(OPENAPI, encoding="utf-8"))
    ops, names = set(), {}
    for path, item in doc["paths"].items():
        # A path item may name one alias served with the same operations (`/tus/` for
        # `/tus`: OpenAPI linters refuse paths with a trailing slash).
        for name in filter(None, (path, item.get("x-ferry-alias"))):
            names[normalize(name)] = name
            for method in item:
                if method in METHODS.values():
                    ops.add((normalize(name), method))
    return ops, names


def served(routes):
    """{(normalized path, method)} the server answers (HEAD by GET routes too)."""
    out = set()
    for (path, method), _ in routes.items():
        out.add((normalize(path), method))
        if method == "get":
            out.add((normalize(path), "head"))
    return out


@pytest.mark.sqlite_only
def test_every_route_is_documented():
    routes = code_routes()
    assert len(routes) >= 60, f"only {len(routes)} routes read from {API_DIR}: parser broken?"
    ops, _ = documented()
    missing = []
    for (path, method), source in sorted(routes.items()):
        key = normalize(path)
        ok = (key, method) in ops or (method == "head" and (key, "get") in ops)
        if not ok:
            missing.append(f"{method.upper()} {path}  ({source})")
    if missing:
        print("routes missing from docs/openapi.json:\n  " + "\n  ".join(missing))
    assert not missing, "routes missing from docs/openapi.json:\n  " + "\n  ".join(missing)


@pytest.mark.sqlite_only
def test_every_documented_operation_is_served():
    routes = code_routes()
    answered = served(routes)
    paths = {p for p, _ in answered}
    ops, names = documented()
    extra = []
    for key, method in sorted(ops):
        # OPTIONS is answered on every served path (the CORS preflight; tus's own under /tus)
        ok = (key, method) in answered or (method == "options" and key in paths)
        if not ok:
            extra.append(f"{method.upper()} {names[key]}")
    if extra:
        print("documented in docs/openapi.json but not served:\n  " + "\n  ".join(extra))
    assert not extra, ("documented in docs/openapi.json but not served:\n  "
                       + "\n  ".join(extra))
