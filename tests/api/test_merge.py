"""EonaCat.Sync's merge: POST /api/v1/merge/files and `ferry merge BASE SOURCE TARGET`.

The merge must be git's: a corpus of base/source/target triples, generated here with a
fixed random seed (clean and conflicting, with and without final newlines, unicode,
repeated lines), is merged by ferry and by `git merge-file` and compared byte for byte:
favor none against `git merge-file -p --diff3`, source/target/union against
`--ours/--theirs/--union` (ferry's source is git's "ours", its target git's "theirs").
Conflict lists are compared with the regions parsed from git's diff3 output.

The merge does not touch the store, so these tests run on SQLite only."""

import os
import random
import subprocess

import pytest

import json

from conftest import FERRY_BIN, SANITIZER_MARKERS, assert_v1_error, child_env, run_ferry

MERGE = "/api/v1/merge/files"
RESULT_KEYS = {"success", "mergedContent", "conflicts", "conflictResolutionCount", "favor"}
CONFLICT_KEYS = {"lineNumber", "baseContent", "sourceContent", "targetContent", "resolution"}
MAX_INPUT = 16 * 1024 * 1024  # MERGE_MAX_INPUT
GIT_FLAG = {"none": "--diff3", "source": "--ours", "target": "--theirs", "union": "--union"}
SEED = 20261203
N_TRIPLES = 60

pytestmark = pytest.mark.sqlite_only


# --- git, the reference --------------------------------------------------------------------


def git_merge(tmp, base, source, target, favor):
    """(exit code, output) of `git merge-file -p` on the three texts (bytes)."""
    paths = []
    for name, data in (("source", source), ("base", base), ("target", target)):
        p = tmp / f"git-{name}"
        p.write_bytes(data)
        paths.append(str(p))
    proc = subprocess.run(["git", "merge-file", "-p", GIT_FLAG[favor], "-L", "source", "-L",
                           "base", "-L", "target", *paths], capture_output=True)
    assert proc.returncode >= 0 and proc.returncode < 128, proc.stderr
    return proc.returncode, proc.stdout


def region(lines):
    """A region as the API shows it: lines joined, without the final newline."""
    text = "".join(lines)
    return text[:-1] if text.endswith("\n") else text


def git_conflicts(diff3_output):
    """[(lineNumber, base, source, target)] from `git merge-file --diff3` output."""
    out, state, cur, sections = [], None, None, {}
    for n, line in enumerate(diff3_output.decode().splitlines(keepends=True), 1):
        bare = line.rstrip("\r\n")
        if state is None and bare == "<<<<<<< source":
            state, cur, sections = "source", n, {"source": [], "base": [], "target": []}
        elif state == "source" and bare == "||||||| base":
            state = "base"
        elif state == "base" and bare == "=======":
            state = "target"
        elif state == "target" and bare == ">>>>>>> target":
            out.append((cur, region(sections["base"]), region(sections["source"]),
                        region(sections["target"])))
            state = None
        elif state:
            sections[state].append(line)
    assert state is None
    return out


# --- the corpus ------------------------------------------------------------------------------


def edit(rng, lines, lo, hi, tag, n_edits):
    """Applies n_edits random replacements, insertions and deletions within lines[lo:hi]."""
    lines = list(lines)
    for _ in range(n_edits):
        hi = min(hi, len(lines))
        pos = rng.randint(lo, max(lo, hi))
        op = rng.choice("rrid")
        if op == "r" and pos < len(lines):
            lines[pos] = f"{tag} changed {rng.randint(0, 99)}"
        elif op == "i":
            new = [rng.choice([f"{tag} new {rng.randint(0, 99)}", "", "}", "héllo ☕"])
                   for _ in range(rng.randint(1, 3))]
            lines[pos:pos] = new
            hi += len(new)
        elif op == "d" and pos < len(lines):
            k = rng.randint(1, 2)
            del lines[pos:pos + k]
            hi -= k
    return lines


def text(lines, final_newline):
    data = "\n".join(lines)
    return (data + "\n" if lines and final_newline else data).encode()


def corpus():
    """N_TRIPLES (name, base, source, target) triples: disjoint edits (clean), overlapping
    edits (mostly conflicting), identical edits, and edge cases."""
    rng = random.Random(SEED)
    triples = []
    for i in range(N_TRIPLES):
        n = rng.randint(0, 40)
        base = [rng.choice(["", "{", "}", "return x;", f"row {k}"]) if rng.random() < 0.25
                else f"row {k} {rng.randint(0, 999)}" for k in range(n)]
        kind = i % 4
        if kind == 0:  # disjoint halves, a gap between: clean
            mid = n // 2
            source = edit(rng, base, 0, max(0, mid - 3), "src", rng.randint(1, 3))
            target = edit(rng, base, mid + 3 if mid + 3 <= n else n, n, "tgt", rng.randint(1, 3))
        elif kind == 3:  # the same edit on both sides, and one more on the target
            source = edit(rng, base, 0, n, "both", rng.randint(1, 2))
            target = edit(rng, source, 0, len(source), "tgt", 1) if rng.random() < 0.5 \
                else list(source)
        else:  # edits anywhere: conflicts more often than not
            source = edit(rng, base, 0, n, "src", rng.randint(1, 4))
            target = edit(rng, base, 0, n, "tgt", rng.randint(1, 4))
        nl = [rng.random() < 0.85 for _ in range(3)]
        triples.append((f"gen{i:02d}", text(base, nl[0]), text(source, nl[1]),
                        text(target, nl[2])))
    triples += [
        ("empty", b"", b"", b""),
        ("empty-base", b"", b"a\nb\n", b"a\nc\n"),
        ("no-newline", b"a\nb", b"a\nB", b"A\nb"),
        ("crlf", b"a\r\nb\r\nc\r\n", b"a\r\nB\r\nc\r\n", b"a\r\nb2\r\nc\r\n"),
        ("markers-in-input", b"x\n<<<<<<< source\ny\n=======\nz\n",
         b"x\n<<<<<<< source\nY\n=======\nz\n", b"x\n<<<<<<< source\nY2\n=======\nz\n"),
        ("delete-vs-change", b"a\nb\nc\n", b"a\nc\n", b"a\nB\nc\n"),
    ]
    return triples


CORPUS = corpus()
# "markers-in-input": its input line "<<<<<<< source" stays text (line 2); ferry parsed its
# own merge with longer markers, so only the real conflict is listed, at line 3.
MARKER_CASE = [(3, "y", "Y", "Y2")]


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
def rooted(make_server, root):
    return make_server("--file-root", str(root))


def put_files(root, name, base, source, target):
    paths = {}
    for side, data in (("base", base), ("source", source), ("target", target)):
        p = root / f"{name}.{side}"
        p.write_bytes(data)
        paths[f"{side}File"] = str(p)
    return paths


def merge(srv, status=200, **body):
    r = srv.post(MERGE, token=srv.admin_token, json=body, timeout=60)
    if status != 200:
        return r
    assert r.status_code == 200, r.text
    res = r.json()
    assert set(res) == RESULT_KEYS, res
    for c in res["conflicts"]:
        assert set(c) == CONFLICT_KEYS, c
    return res


def check_against_git(tmp, res, base, source, target, favor):
    code, out = git_merge(tmp, base, source, target, favor)
    assert res["mergedContent"].encode() == out
    assert res["favor"] == favor
    _, diff3 = git_merge(tmp, base, source, target, "none")
    expected = git_conflicts(diff3)
    if any(b"<<<<<<<" in t for t in (base, source, target)):
        expected = MARKER_CASE  # git's output is ambiguous to read back; see below
    got = [(c["lineNumber"], c["baseContent"], c["sourceContent"], c["targetContent"])
           for c in res["conflicts"]]
    assert got == expected
    if favor == "none":
        assert res["success"] is (code == 0) and res["conflictResolutionCount"] == 0
        assert all(c["resolution"] is None for c in res["conflicts"])
        return len(expected)
    assert res["success"] is True and code == 0
    assert res["conflictResolutionCount"] == len(expected)
    for c in res["conflicts"]:
        if favor == "source":
            assert c["resolution"] == c["sourceContent"]
        elif favor == "target":
            assert c["resolution"] == c["targetContent"]
        else:  # the region alone merged with --union
            sides = [(c[k] + "\n").encode() if c[k] else b"" for k in
                     ("baseContent", "sourceContent", "targetContent")]
            assert c["resolution"] == region([git_merge(tmp, *sides, "union")[1].decode()])
    return len(expected)


# --- the seed's example and the corpus -------------------------------------------------------


def test_seed_example(rooted, root):
    context = "".join(f"line {i}\n" for i in range(1, 42))
    files = put_files(root, "seed", (context + "original\nend\n").encode(),
                      (context + "modified in source\nend\n").encode(),
                      (context + "modified in target\nend\n").encode())
    res = merge(rooted, **files)
    assert res == {
        "success": True,
        "mergedContent": context + "modified in source\nend\n",
        "conflicts": [{"lineNumber": 42, "baseContent": "original",
                       "sourceContent": "modified in source",
                       "targetContent": "modified in target",
                       "resolution": "modified in source"}],
        "conflictResolutionCount": 1,
        "favor": "source",
    }


@pytest.mark.parametrize("favor", ["none", "source", "target", "union"])
def test_each_favor_on_one_conflict(rooted, root, favor):
    files = put_files(root, "f", b"a\nx\nb\nc\n", b"a\nx\nB1\nc\nd\n", b"A\nx\nB2\nc\n")
    res = merge(rooted, favor=favor, **files)
    middle = {"none": "<<<<<<< source\nB1\n||||||| base\nb\n=======\nB2\n>>>>>>> target\n",
              "source": "B1\n", "target": "B2\n", "union": "B1\nB2\n"}[favor]
    # "a" -> "A" and the new "d" are clean; only the middle line conflicts
    assert res["mergedContent"] == "A\nx\n" + middle + "c\nd\n"
    assert res["success"] is (favor != "none")
    assert res["conflicts"] == [{
        "lineNumber": 3, "baseContent": "b", "sourceContent": "B1", "targetContent": "B2",
        "resolution": None if favor == "none" else middle[:-1]}]
    assert res["conflictResolutionCount"] == (0 if favor == "none" else 1)


def test_corpus_agrees_with_git_merge_file(rooted, root, tmp_path):
    clean = conflicting = 0
    for i, (name, base, source, target) in enumerate(CORPUS):
        if i % 2:  # half by path, as the seed does, half inline (ferry's extension)
            sides = put_files(root, name, base, source, target)
        else:
            sides = {"baseContent": base.decode(), "sourceContent": source.decode(),
                     "targetContent": target.decode()}
        for favor in ("none", "source", "target", "union"):
            res = merge(rooted, favor=favor, **sides)
            n = check_against_git(tmp_path, res, base, source, target, favor)
        clean += n == 0
        conflicting += n > 0
    assert len(CORPUS) >= 50 and clean >= 15 and conflicting >= 15, (clean, conflicting)


def test_clean_merge_and_default_favor(rooted):
    res = merge(rooted, baseContent="a\nb\nc\n", sourceContent="a\nB\nc\n",
                targetContent="a\nb\nc\nd\n")
    assert res == {"success": True, "mergedContent": "a\nB\nc\nd\n", "conflicts": [],
                   "conflictResolutionCount": 0, "favor": "source"}


def test_output_file_written_atomically(rooted, root):
    files = put_files(root, "o", b"a\nb\nc\n", b"a\nB\nc\n", b"a\nb\nc\nd\n")
    out = root / "sub" / "merged.txt"
    out.parent.mkdir()
    res = merge(rooted, outputFile=str(out), **files)
    assert out.read_bytes() == b"a\nB\nc\nd\n" == res["mergedContent"].encode()
    assert sorted(os.listdir(out.parent)) == ["merged.txt"]  # no temporary file left
    r = merge(rooted, 403, outputFile="/tmp/elsewhere.txt", **files)
    assert_v1_error(r, 403, "FORBIDDEN")


# --- refusals ----------------------------------------------------------------------------------


def refused(srv, status, code, fragment, **body):
    err = assert_v1_error(merge(srv, status, **body), status, code)
    assert fragment in err["details"], err
    return err


def test_binary_non_utf8_and_oversize_refused(rooted, root):
    ok = put_files(root, "ok", b"a\n", b"b\n", b"c\n")
    (root / "bin").write_bytes(b"text\x00more\n")
    (root / "latin1").write_bytes("café\n".encode("latin-1"))
    with open(root / "big", "wb") as f:
        f.truncate(MAX_INPUT + 1)  # sparse: size alone refuses it, before reading
    (root / "limit").write_bytes(b"x" * (MAX_INPUT - 1) + b"\n")  # exactly at the limit
    refused(rooted, 400, "INVALID_REQUEST", "binary", **{**ok, "sourceFile": str(root / "bin")})
    refused(rooted, 400, "INVALID_REQUEST", "not valid UTF-8",
            **{**ok, "targetFile": str(root / "latin1")})
    refused(rooted, 400, "INVALID_REQUEST", "larger than the merge limit of 16777216 bytes",
            **{**ok, "baseFile": str(root / "big")})
    res = merge(rooted, **{**ok, "baseFile": str(root / "limit")})
    assert res["success"] is True
    r = rooted.post(MERGE, token=rooted.admin_token,
                    data=b'{"baseContent":"a\\u0000b","sourceContent":"","targetContent":""}',
                    headers={"Content-Type": "application/json"})
    assert_v1_error(r, 400, "INVALID_REQUEST")


def test_an_answer_too_large_is_refused(rooted, root):
    """Control characters take six bytes each in JSON ("\\u0001"), and a conflict's sides
    are in the answer twice (mergedContent and conflicts): three inputs at the limit made
    of them would answer 600 MB (1.4 GB of memory for one request). Over the answer's
    limit (8 x MERGE_MAX_INPUT) the merge is refused; a conflict of plain text at the
    limit still answers."""
    n = MAX_INPUT // 100
    big = put_files(root, "ctl", (b"\x01" * 99 + b"\n") * n, (b"\x02" * 99 + b"\n") * n,
                    (b"\x03" * 99 + b"\n") * n)
    refused(rooted, 400, "INVALID_REQUEST", "answer would be", **big, favor="none")
    plain = put_files(root, "plain", (b"a" * 99 + b"\n") * n, (b"b" * 99 + b"\n") * n,
                      (b"c" * 99 + b"\n") * n)
    r = rooted.post(MERGE, token=rooted.admin_token, json={**plain, "favor": "none"},
                    timeout=120)
    assert r.status_code == 200 and len(r.content) > 90_000_000, r.text[:200]


def test_paths_confined_to_file_roots(rooted, root, tmp_path):
    ok = put_files(root, "ok", b"a\n", b"b\n", b"c\n")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"a\n")
    (root / "escape").symlink_to(outside)
    refused(rooted, 403, "FORBIDDEN", "outside the configured file roots",
            **{**ok, "baseFile": str(outside)})
    refused(rooted, 403, "FORBIDDEN", "outside the configured file roots",
            **{**ok, "baseFile": str(root / "escape")})
    refused(rooted, 400, "INVALID_REQUEST", "..", **{**ok, "baseFile": str(root / ".." / "x")})
    refused(rooted, 400, "INVALID_REQUEST", "absolute", **{**ok, "baseFile": "rel.txt"})
    refused(rooted, 404, "NOT_FOUND", "baseFile", **{**ok, "baseFile": str(root / "missing")})
    refused(rooted, 400, "INVALID_REQUEST", "not a regular file", **{**ok, "baseFile": str(root)})
    # a FIFO is no file to merge: refused at once, not waited on for a writer
    os.mkfifo(root / "pipe")
    refused(rooted, 400, "INVALID_REQUEST", "not a regular file",
            **{**ok, "baseFile": str(root / "pipe")})


def test_data_folder_and_no_roots_refused(make_server, tmp_path):
    srv = make_server("--file-root", str(tmp_path))  # the data folder lies under the root
    db = next(p for p in (tmp_path / "data1").iterdir() if p.is_file())
    refused(srv, 403, "FORBIDDEN", "data folder", baseFile=str(db), sourceContent="",
            targetContent="")
    bare = make_server()
    refused(bare, 403, "FORBIDDEN", "no file roots", baseFile=str(db), sourceContent="",
            targetContent="")
    # inline texts need no root
    assert merge(bare, baseContent="", sourceContent="x\n", targetContent="")["success"]


def test_bad_requests(rooted):
    texts = {"baseContent": "a\n", "sourceContent": "b\n", "targetContent": "c\n"}
    refused(rooted, 400, "INVALID_REQUEST", "favor", favor="ours", **texts)
    refused(rooted, 400, "INVALID_REQUEST", "'baseFile' and 'baseContent'",
            sourceContent="b\n", targetContent="c\n")
    refused(rooted, 400, "INVALID_REQUEST", "'targetFile' and 'targetContent'",
            targetFile="/x", **texts)
    refused(rooted, 400, "INVALID_REQUEST", "sourceContent",
            **{**texts, "sourceContent": 5})
    device = rooted.create_token(role="device", user_id="bob", deviceId="till-1")["token"]
    r = rooted.post(MERGE, token=device, json=texts)
    assert_v1_error(r, 403, "FORBIDDEN")
    assert_v1_error(rooted.post(MERGE, json=texts), 401, "UNAUTHORIZED")


# --- the command line --------------------------------------------------------------------------


def test_cli_agrees_with_git_and_exit_codes(tmp_path):
    """Compares bytes: run_ferry's text mode would hide "\r\n"."""
    for name, base, source, target in CORPUS[:20] + CORPUS[-6:]:
        paths = put_files(tmp_path, name, base, source, target)
        args = [paths["baseFile"], paths["sourceFile"], paths["targetFile"]]
        for favor in ("none", "source", "target", "union"):
            p = subprocess.run([FERRY_BIN, "merge", "--favor", favor, *args],
                               capture_output=True, env=child_env())
            assert not any(m.encode() in p.stderr for m in SANITIZER_MARKERS), p.stderr
            code, out = git_merge(tmp_path, base, source, target, favor)
            assert p.stdout == out, (name, favor)
            assert p.returncode == (1 if code else 0), (name, favor, p.stderr)


def test_cli_json_output_and_usage(tmp_path):
    paths = put_files(tmp_path, "c", b"a\nb\nc\n", b"a\nB1\nc\n", b"a\nB2\nc\n")
    args = [paths["baseFile"], paths["sourceFile"], paths["targetFile"]]
    p = run_ferry("merge", "--json", "--favor", "target", *args)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "success": True, "mergedContent": "a\nB2\nc\n", "favor": "target",
        "conflicts": [{"lineNumber": 2, "baseContent": "b", "sourceContent": "B1",
                       "targetContent": "B2", "resolution": "B2"}],
        "conflictResolutionCount": 1}
    out = tmp_path / "merged.txt"
    p = run_ferry("merge", "--favor", "none", "--output", str(out), *args)
    assert p.returncode == 1 and p.stdout == ""
    assert out.read_text() == "a\n<<<<<<< source\nB1\n||||||| base\nb\n=======\nB2\n>>>>>>> target\nc\n"
    p = run_ferry("merge", *args)  # default favor: source
    assert (p.returncode, p.stdout) == (0, "a\nB1\nc\n")
    for bad in (["merge"], ["merge", *args[:2]], ["merge", "--favor", "ours", *args],
                ["merge", "--frob", *args]):
        p = run_ferry(*bad)
        assert p.returncode == 2 and p.stdout == "" and p.stderr, bad
    p = run_ferry("merge", "--help")
    assert p.returncode == 0 and "BASE SOURCE TARGET" in p.stdout
    (tmp_path / "bin").write_bytes(b"\x00")
    p = run_ferry("merge", str(tmp_path / "bin"), *args[1:])
    assert p.returncode == 1 and "binary" in p.stderr and p.stdout == ""
    p = run_ferry("merge", str(tmp_path / "nope"), *args[1:])
    assert p.returncode == 1 and "cannot open" in p.stderr


def far_triples():
    """Longer texts whose conflicts lie apart (ten lines or more), each with lines both
    sides add in common: ferry writes these from its one diff3 merge, union included,
    where the corpus' short texts mostly have conflicts close together."""
    rng = random.Random(SEED + 1)
    common = ["}", "", "shared", "shared 2", "return y;"]
    for i in range(12):
        n = rng.randint(30, 150)
        base = [f"line {k}" for k in range(n)]
        source, target = list(base), list(base)
        for at in sorted(rng.sample(range(0, n, 10), rng.randint(1, n // 10)), reverse=True):
            width, both = rng.randint(1, 4), [rng.choice(common) for _ in range(rng.randint(0, 5))]
            source[at:at + width] = [f"s{i} {at}"] + both + ["s tail"] * rng.randint(0, 1)
            target[at:at + width] = ["t head"] * rng.randint(0, 1) + both + [f"t{i} {at}"]
        eol = "\r\n" if i % 4 == 3 else "\n"
        yield tuple((eol.join(lines) + eol).encode() for lines in (base, source, target))


def test_cli_json_far_conflicts_agree_with_git(tmp_path):
    for i, (base, source, target) in enumerate(far_triples()):
        paths = put_files(tmp_path, f"far{i}", base, source, target)
        args = [paths["baseFile"], paths["sourceFile"], paths["targetFile"]]
        _, diff3 = git_merge(tmp_path, base, source, target, "none")
        for favor in ("none", "source", "target", "union"):
            p = subprocess.run([FERRY_BIN, "merge", "--json", "--favor", favor, *args],
                               capture_output=True, env=child_env())
            assert not any(m.encode() in p.stderr for m in SANITIZER_MARKERS), p.stderr
            res = json.loads(p.stdout)
            assert res["mergedContent"].encode() == git_merge(tmp_path, base, source, target,
                                                               favor)[1], (i, favor)
            got = [(c["lineNumber"], c["baseContent"], c["sourceContent"], c["targetContent"])
                   for c in res["conflicts"]]
            assert got == git_conflicts(diff3) and got, (i, favor)
