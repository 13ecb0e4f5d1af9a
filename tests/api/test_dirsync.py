"""EonaCat.Sync's directory sync: POST /api/v1/sync/files and the sessions under
/api/v1/sync/session (jobs with real progress that resume after a restart). Folders must
lie inside the --file-root folders; every root here is a fresh folder under tmp_path.

/sync/files does not touch the store, so its tests run on SQLite only; session tests run
on both backends."""

import os
import re
import signal
import stat
import time

import pytest

from conftest import ISO_RE, assert_v1_error, wait_until

FILES = "/api/v1/sync/files"
SESS = "/api/v1/sync/session"
RESULT_KEYS = {"success", "changesApplied", "conflictsEncountered", "errors", "syncedAt",
               "executionTimeMs", "filesCopied", "filesDeleted", "filesUnchanged",
               "bytesCopied", "conflicts"}
STATUS_KEYS = {"sessionId", "status", "progressPercentage", "message", "result", "createdAt",
               "completedAt", "filesDone", "filesTotal", "bytesDone", "bytesTotal", "closed"}
T0 = 1_600_000_000_123_456_789  # an mtime in ns with every digit significant


# --- helpers ------------------------------------------------------------------------------


def write(root, rel, data, mode=0o644, mtime_ns=T0):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chmod(p, mode)
    os.utime(p, ns=(mtime_ns, mtime_ns))
    return p


def tree(root):
    """Everything under root: rel -> ("dir",) | ("link", dest) | ("file", bytes, mode, ns)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel, st = os.path.relpath(p, root), os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def no_temp_files(root):
    left = [os.path.join(d, n) for d, ds, fs in os.walk(root) for n in ds + fs
            if n.startswith(".ferry-tmp-")]
    assert left == []


def sync(srv, src, dst, token=None, status=200, **opts):
    body = {"sourceDirectory": str(src), "targetDirectory": str(dst), **opts}
    r = srv.post(FILES, token=token or srv.admin_token, json=body, timeout=60)
    if status != 200:
        return r
    assert r.status_code == 200, r.text
    res = r.json()
    assert set(res) == RESULT_KEYS, res
    assert ISO_RE.match(res["syncedAt"]) and res["executionTimeMs"] >= 0, res
    assert res["changesApplied"] == res["filesCopied"] + res["filesDeleted"], res
    assert res["conflictsEncountered"] == len(res["conflicts"]), res
    assert res["success"] is (res["errors"] == []), res
    return res


def counts(res):
    return {k: res[k] for k in ("filesCopied", "filesUnchanged", "filesDeleted",
                                "conflictsEncountered", "changesApplied")}


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
def rooted(make_server, root):
    return make_server("--file-root", str(root))


def sample(src):
    files = {"a.txt": (b"alpha\n", 0o644), "bin/run.sh": (b"#!/bin/sh\necho hi\n", 0o755),
             "docs/deep/er/secret.key": (os.urandom(70_000), 0o600),
             "docs/readme": (b"", 0o640), "docs/deep/x.bin": (bytes(range(256)) * 9, 0o444)}
    for i, (rel, (data, mode)) in enumerate(sorted(files.items())):
        write(src, rel, data, mode, T0 + i * 1_000_001)
    return files


# --- POST /sync/files ------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_tree_copied_exactly_then_nothing_then_one_file(rooted, root):
    src, dst = root / "src", root / "dst"
    files = sample(src)
    files["caf\udce9"] = (b"latin-1 name", 0o644)  # a name that is not UTF-8
    write(src, "caf\udce9", b"latin-1 name", 0o644, T0 + 5 * 1_000_001)
    res = sync(rooted, src, dst)
    assert counts(res) == {"filesCopied": 6, "filesUnchanged": 0, "filesDeleted": 0,
                           "conflictsEncountered": 0, "changesApplied": 6}
    assert res["success"] is True and res["errors"] == [] and res["conflicts"] == []
    assert res["bytesCopied"] == sum(len(d) for d, _ in files.values())
    assert tree(dst) == tree(src)  # bytes, modes and mtimes to the nanosecond
    assert tree(dst)["bin/run.sh"][2:] == (0o755, T0 + 1_000_001)
    no_temp_files(dst)

    res = sync(rooted, src, dst)
    assert counts(res) == {"filesCopied": 0, "filesUnchanged": 6, "filesDeleted": 0,
                           "conflictsEncountered": 0, "changesApplied": 0}
    assert res["bytesCopied"] == 0

    write(src, "docs/readme", b"now with words", 0o640, T0 + 10**10)
    res = sync(rooted, src, dst)
    assert counts(res) == {"filesCopied": 1, "filesUnchanged": 5, "filesDeleted": 0,
                           "conflictsEncountered": 0, "changesApplied": 1}
    assert res["bytesCopied"] == len(b"now with words")
    assert tree(dst) == tree(src)

    # same size and mtime, other bytes: only a Full sync sees it
    write(src, "a.txt", b"ALPHA\n", 0o644, T0)
    assert sync(rooted, src, dst, syncType="Incremental")["filesCopied"] == 0
    assert (dst / "a.txt").read_bytes() == b"alpha\n"
    res = sync(rooted, src, dst, syncType="Full")
    assert counts(res)["filesCopied"] == 1 and res["filesUnchanged"] == 5, res
    assert tree(dst) == tree(src)
    assert sync(rooted, src, dst, syncType="Full", verifyIntegrity=True)["filesUnchanged"] == 6
    no_temp_files(dst)


@pytest.mark.sqlite_only
def test_empty_folders_are_copied(rooted, root):
    src, dst = root / "src", root / "dst"
    write(src, "f", b"x")
    (src / "empty").mkdir()
    (src / "a/b/c").mkdir(parents=True)
    res = sync(rooted, src, dst)
    assert res["success"] is True and res["filesCopied"] == 1, res
    assert tree(dst) == tree(src)
    (dst / "gone").mkdir()  # an empty folder only the target has
    res = sync(rooted, src, dst, deleteMissingInTarget=True)
    assert res["filesDeleted"] == 1 and tree(dst) == tree(src), res


@pytest.mark.sqlite_only
def test_verify_integrity_copies_correctly(rooted, root):
    src, dst = root / "src", root / "dst"
    sample(src)
    write(src, "big.bin", os.urandom(3 * 1024 * 1024 + 7))
    res = sync(rooted, src, dst, verifyIntegrity=True)
    assert res["success"] is True and res["filesCopied"] == 6, res
    assert tree(dst) == tree(src)
    no_temp_files(dst)


@pytest.mark.sqlite_only
def test_exclude_patterns_skip_files_and_folders(rooted, root):
    src, dst = root / "src", root / "dst"
    for rel in ("keep.txt", "a.tmp", "sub/b.tmp", "sub/cachet", "cache/x", "sub/cache/y",
                "sub/keep.tmpx"):
        write(src, rel, rel.encode())
    res = sync(rooted, src, dst, excludePatterns=["*.tmp", "cache"])
    assert counts(res)["filesCopied"] == 3 and res["success"] is True, res
    assert sorted(tree(dst)) == ["keep.txt", "sub", "sub/cachet", "sub/keep.tmpx"]
    # excluded target entries are not deleted either
    write(dst, "cache/mine", b"target's own")
    res = sync(rooted, src, dst, excludePatterns=["*.tmp", "cache"], deleteMissingInTarget=True)
    assert res["filesDeleted"] == 0 and (dst / "cache/mine").exists(), res


@pytest.mark.sqlite_only
def test_delete_missing_in_target(rooted, root, tmp_path):
    src, dst = root / "src", root / "dst"
    sample(src)
    sync(rooted, src, dst)
    write(dst, "extra.txt", b"x")
    write(dst, "old/deep/f", b"y")
    outside = tmp_path / "outside"
    write(outside, "precious", b"z")
    os.symlink(outside, dst / "docs/link")
    before = tree(dst)
    res = sync(rooted, src, dst)  # deleteMissingInTarget defaults to false
    assert res["filesDeleted"] == 0 and tree(dst) == before
    res = sync(rooted, src, dst, deleteMissingInTarget=False)
    assert res["filesDeleted"] == 0 and tree(dst) == before
    res = sync(rooted, src, dst, deleteMissingInTarget=True)
    # extra.txt, old, old/deep, old/deep/f and the link itself
    assert counts(res) == {"filesCopied": 0, "filesUnchanged": 5, "filesDeleted": 5,
                           "conflictsEncountered": 0, "changesApplied": 5}, res
    assert tree(dst) == tree(src)
    assert tree(outside) == {"precious": ("file", b"z", 0o644, T0)}


@pytest.mark.sqlite_only
def test_conflicts_keep_the_target(rooted, root):
    src, dst = root / "src", root / "dst"
    write(src, "same.txt", b"source", mtime_ns=T0)
    write(dst, "same.txt", b"edited on target", mtime_ns=T0 + 1)  # 1 ns newer
    write(src, "f", b"a file")
    write(dst, "f/inner", b"a folder on the target")
    write(src, "d/child", b"under a folder")
    write(dst, "d", b"a file on the target")
    write(src, "ok.txt", b"fine")
    res = sync(rooted, src, dst)
    assert res["success"] is True and res["errors"] == [], res
    assert counts(res) == {"filesCopied": 1, "filesUnchanged": 0, "filesDeleted": 0,
                           "conflictsEncountered": 3, "changesApplied": 1}, res
    reasons = {c["path"]: c["reason"] for c in res["conflicts"]}
    assert set(reasons) == {"same.txt", "f", "d"}, res
    assert "newer" in reasons["same.txt"]
    assert (dst / "same.txt").read_bytes() == b"edited on target"
    assert (dst / "f/inner").read_bytes() == b"a folder on the target"
    assert (dst / "d").read_bytes() == b"a file on the target"
    assert (dst / "ok.txt").read_bytes() == b"fine"
    # a target that is older is simply replaced
    write(dst, "same.txt", b"old", mtime_ns=T0 - 1)
    res = sync(rooted, src, dst)
    assert res["filesCopied"] == 1 and res["conflictsEncountered"] == 2, res
    assert (dst / "same.txt").read_bytes() == b"source"


@pytest.mark.sqlite_only
def test_source_links(rooted, root):
    src, dst = root / "src", root / "dst"
    write(src, "real/data.txt", b"linked content", 0o640)
    os.symlink("real/data.txt", src / "inside")
    os.symlink("/etc/passwd", src / "passwd")
    res = sync(rooted, src, dst)
    assert res["success"] is False, res
    assert len(res["errors"]) == 1 and res["errors"][0].startswith("passwd: "), res
    assert "leads outside" in res["errors"][0]
    assert res["filesCopied"] == 2, res
    got = tree(dst)
    assert sorted(got) == ["inside", "real", "real/data.txt"]
    assert got["inside"] == ("file", b"linked content", 0o640, T0)  # a regular file
    assert not os.path.lexists(dst / "passwd")


@pytest.mark.sqlite_only
def test_source_links_that_stay_inside_by_other_spellings(rooted, root):
    # dirsync.c: a link "counts as the file it leads to, when that is a file beneath the
    # source"; these two lead to one, spelt absolutely and through the source's own name
    src, dst = root / "src", root / "dst"
    write(src, "real/data.txt", b"linked content")
    os.symlink(src / "real/data.txt", src / "absolute")
    os.symlink("../src/real/data.txt", src / "roundabout")
    res = sync(rooted, src, dst)
    assert res["errors"] == [] and res["filesCopied"] == 3, res
    assert (dst / "absolute").read_bytes() == (dst / "roundabout").read_bytes() == \
        b"linked content"


@pytest.mark.sqlite_only
def test_target_link_out_of_the_root_is_not_written_through(rooted, root, tmp_path):
    src, dst, elsewhere = root / "src", root / "dst", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(src, "sub/file", b"must stay inside")
    write(src, "a/b/c", b"deeper")
    write(src, "top", b"top")
    dst.mkdir()
    os.symlink(elsewhere, dst / "sub")
    (dst / "a").mkdir()
    os.symlink(elsewhere, dst / "a/b")
    os.symlink(elsewhere / "top", dst / "top")
    res = sync(rooted, src, dst)
    assert os.listdir(elsewhere) == []
    # reported (as a conflict: the target has a link where the source has a folder/file)
    assert {c["path"] for c in res["conflicts"]} == {"sub", "a/b", "top"}, res
    assert res["filesCopied"] == 0, res
    assert os.readlink(dst / "sub") == str(elsewhere)
    res = sync(rooted, src, dst, deleteMissingInTarget=True, syncType="Full")
    assert os.listdir(elsewhere) == []
    no_temp_files(dst)


@pytest.mark.sqlite_only
def test_confinement_and_validation(make_server, root, tmp_path):
    srv = make_server("--file-root", str(root))
    src, dst, outside = root / "src", root / "dst", tmp_path / "outside"
    write(src, "f", b"x")
    write(outside, "g", b"y")
    os.symlink(outside, root / "escape")

    def err(status, code, body, token=None):
        r = srv.post(FILES, token=token or srv.admin_token, json=body)
        return assert_v1_error(r, status, code)

    ok = {"sourceDirectory": str(src), "targetDirectory": str(dst)}
    for s, t in ((outside, dst), (src, outside / "t"), (root / "escape", dst),
                 (src, root / "escape/t"), ("/etc", dst)):
        err(403, "FORBIDDEN", {"sourceDirectory": str(s), "targetDirectory": str(t)})
    for s, t in (("root/src", dst), (src, "dst"), (f"{root}/src/../src", dst),
                 (src, f"{root}/dst/../../x"), (src, src / "inner"), (src, src),
                 (dst, dst / ".." / "x")):
        err(400, "INVALID_REQUEST", {"sourceDirectory": str(s), "targetDirectory": str(t)})
    write(dst, "x", b"")
    err(400, "INVALID_REQUEST", {"sourceDirectory": str(root), "targetDirectory": str(dst)})
    err(400, "INVALID_REQUEST", {"sourceDirectory": str(dst / "inner"),
                                 "targetDirectory": str(root / "dst")})
    for bad in ({"targetDirectory": str(dst)}, {"sourceDirectory": str(src)},
                {**ok, "sourceDirectory": 5}, {**ok, "verifyIntegrity": "yes"},
                {**ok, "deleteMissingInTarget": 1}, {**ok, "syncType": "Weird"},
                {**ok, "excludePatterns": "*.tmp"}, {**ok, "excludePatterns": [3]},
                {**ok, "excludePatterns": [""]}):
        err(400, "INVALID_REQUEST", bad)
    assert_v1_error(srv.post(FILES, json=ok), 401, "UNAUTHORIZED")
    dev = srv.create_token(role="device", user_id="bob", deviceId="till-1")["token"]
    err(403, "FORBIDDEN", ok, token=dev)
    # a user may sync
    user = srv.create_token(role="user", user_id="bob")["token"]
    assert sync(srv, src, dst, token=user)["filesCopied"] == 1
    assert tree(outside) == {"g": ("file", b"y", 0o644, T0)}


@pytest.mark.sqlite_only
def test_source_folder_missing_or_a_file(rooted, root):
    dst = root / "dst"
    write(root, "file", b"x")
    (root / "src").mkdir()
    for source, target, status, code, what in (
            (root / "nope", dst, 404, "NOT_FOUND", "cannot be opened"),
            (root / "file", dst, 400, "INVALID_REQUEST", "cannot be opened"),
            (root / "src", dst / "no/parent", 400, "INVALID_REQUEST", "cannot be created")):
        r = rooted.post(FILES, token=rooted.admin_token,
                        json={"sourceDirectory": str(source), "targetDirectory": str(target)})
        body = assert_v1_error(r, status, code)
        assert what in body["details"], body
    assert not dst.exists()


@pytest.mark.sqlite_only
def test_roots_none_or_from_env(make_server, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, "src/f", b"from one")
    two.mkdir()
    body = {"sourceDirectory": str(one / "src"), "targetDirectory": str(two / "dst")}
    bare = make_server()
    r = bare.post(FILES, token=bare.admin_token, json=body)
    assert_v1_error(r, 403, "FORBIDDEN")
    r = bare.post(f"{SESS}/start", token=bare.admin_token,
                  json={"sourceLocation": body["sourceDirectory"],
                        "targetLocation": body["targetDirectory"], "syncType": "Full"})
    assert_v1_error(r, 403, "FORBIDDEN")
    srv = make_server(env={"FERRY_FILE_ROOTS": f"{one}:{two}"})
    assert sync(srv, one / "src", two / "dst")["filesCopied"] == 1
    assert (two / "dst/f").read_bytes() == b"from one"


# --- sessions --------------------------------------------------------------------------------


def start(srv, src, dst, token=None, **opts):
    body = {"sourceLocation": str(src), "targetLocation": str(dst), "syncType": "Incremental",
            **opts}
    r = srv.post(f"{SESS}/start", token=token or srv.admin_token, json=body)
    assert r.status_code == 200, r.text
    s = r.json()
    assert set(s) == {"sessionId", "startedAt", "sourceIdentifier", "targetIdentifier"}, s
    assert re.fullmatch(r"job_[0-9a-f]{32}", s["sessionId"]) and ISO_RE.match(s["startedAt"])
    assert (s["sourceIdentifier"], s["targetIdentifier"]) == (str(src), str(dst))
    return s["sessionId"]


def status(srv, sid, token=None):
    r = srv.get(f"{SESS}/{sid}/status", token=token or srv.admin_token)
    assert r.status_code == 200, r.text
    st = r.json()
    assert set(st) == STATUS_KEYS, st
    assert st["sessionId"] == sid and ISO_RE.match(st["createdAt"])
    assert st["status"] in ("pending", "in-progress", "completed", "failed"), st
    assert 0 <= st["progressPercentage"] <= 100, st
    return st


def poll(srv, sid, pred, token=None, timeout=30, interval=0.01):
    st = wait_until(lambda: pred(s := status(srv, sid, token)) and s, timeout, interval)
    assert st, f"session {sid}: {status(srv, sid, token)}"
    return st


def finished(srv, sid, token=None, timeout=30):
    st = poll(srv, sid, lambda s: s["status"] in ("completed", "failed"), token, timeout, 0.05)
    assert ISO_RE.match(st["completedAt"]), st
    return st


def many_files(src, n, big=0):
    for i in range(n):
        write(src, f"d{i % 20:02d}/f{i:05d}.txt", b"%d\n" % i * 3)
    if big:
        write(src, "big/blob.bin", os.urandom(big))
    return n + (1 if big else 0), sum(len(b"%d\n" % i * 3) for i in range(n)) + big


def test_session_runs_to_completion_and_closes(make_server, root):
    srv = make_server("--file-root", str(root), "--rate-limit", "0")  # polled often
    src, dst = root / "src", root / "dst"
    files = sample(src)
    write(src, "skip.tmp", b"no")
    write(dst, "stale/old.txt", b"gone soon")
    bob = srv.create_token(role="user", user_id="bob")["token"]
    alice = srv.create_token(role="user", user_id="alice")["token"]
    sid = start(srv, src, dst, token=bob, deleteMissingInTarget=True, verifyIntegrity=True,
                excludePatterns=["*.tmp"])
    st = finished(srv, sid, token=bob)
    assert st["status"] == "completed" and st["progressPercentage"] == 100, st
    res = st["result"]
    assert set(res) == RESULT_KEYS and res["success"] is True, res
    assert counts(res) == {"filesCopied": 5, "filesUnchanged": 0, "filesDeleted": 2,
                           "conflictsEncountered": 0, "changesApplied": 7}, res
    total_bytes = sum(len(d) for d, _ in files.values())
    assert (st["filesDone"], st["filesTotal"], st["bytesDone"], st["bytesTotal"]) == \
        (5, 5, total_bytes, total_bytes), st
    assert st["closed"] is False
    src_tree = tree(src)
    del src_tree["skip.tmp"]
    assert tree(dst) == src_tree
    no_temp_files(dst)

    # someone else's session, or none, is not found
    for path in (f"{SESS}/{sid}/status", f"{SESS}/job_{'0' * 32}/status"):
        assert_v1_error(srv.get(path, token=alice), 404, "NOT_FOUND")
    assert_v1_error(srv.get(f"{SESS}/nope/status", token=bob), 404, "NOT_FOUND")
    assert_v1_error(srv.post(f"{SESS}/{sid}/complete", token=alice), 404, "NOT_FOUND")
    assert_v1_error(srv.post(f"{SESS}/nope/complete", token=bob), 404, "NOT_FOUND")
    assert status(srv, sid)["closed"] is False  # the admin sees it; alice closed nothing

    r = srv.post(f"{SESS}/{sid}/complete", token=bob)
    assert r.status_code == 200, r.text
    done = r.json()
    assert set(done) == STATUS_KEYS and done["closed"] is True, done
    assert done["result"] == res and done["status"] == "completed"
    assert status(srv, sid, token=bob)["closed"] is True
    assert srv.post(f"{SESS}/{sid}/complete", token=bob).status_code == 200

    # start is checked like /sync/files
    for body, code, status_code in (
            ({"sourceLocation": "/etc", "targetLocation": str(dst)}, "FORBIDDEN", 403),
            ({"sourceLocation": str(src)}, "INVALID_REQUEST", 400),
            ({"sourceLocation": str(src), "targetLocation": str(dst), "syncType": "Weird"},
             "INVALID_REQUEST", 400),
            ({"sourceLocation": str(src), "targetLocation": str(src / "in")},
             "INVALID_REQUEST", 400)):
        assert_v1_error(srv.post(f"{SESS}/start", token=bob, json=body), status_code, code)
    assert_v1_error(srv.post(f"{SESS}/start", json={}), 401, "UNAUTHORIZED")
    dev = srv.create_token(role="device", user_id="bob", deviceId="till-1")["token"]
    assert_v1_error(srv.get(f"{SESS}/{sid}/status", token=dev), 403, "FORBIDDEN")


def test_session_with_missing_source_fails(make_server, root):
    srv = make_server("--file-root", str(root), "--rate-limit", "0")  # polled often
    sid = start(srv, root / "nope", root / "dst")
    st = finished(srv, sid)
    assert st["status"] == "failed" and st["result"] is None, st
    assert "cannot be opened" in st["message"], st
    r = srv.post(f"{SESS}/{sid}/complete", token=srv.admin_token)
    assert r.status_code == 200 and r.json()["closed"] is True, r.text


def test_session_progress_is_real(make_server, root):
    srv = make_server("--file-root", str(root), "--rate-limit", "0")  # polled often
    src, dst = root / "src", root / "dst"
    n_files, n_bytes = many_files(src, 2000, big=4 * 1024 * 1024)
    sid = start(srv, src, dst)
    r = srv.post(f"{SESS}/{sid}/complete", token=srv.admin_token)
    body = assert_v1_error(r, 409, "CONFLICT")
    assert "in progress" in body["message"] + body["details"], body
    seen = [status(srv, sid)]
    while seen[-1]["status"] not in ("completed", "failed") and len(seen) < 3000:
        time.sleep(0.01)
        seen.append(status(srv, sid))
    st = seen[-1]
    assert st["status"] == "completed", st
    # a snapshot taken mid-copy (the copy is fast: the first file's report may be the
    # only one before the end, and its percentage rounds down to 0)
    assert any(s["status"] == "in-progress" and 0 <= s["progressPercentage"] < 100
               and 0 < s["filesDone"] < n_files and s["filesTotal"] == n_files
               and s["bytesTotal"] == n_bytes for s in seen), seen[:3]
    pct = [s["progressPercentage"] for s in seen]
    assert pct == sorted(pct), pct
    assert all(s["result"] is None and s["completedAt"] is None for s in seen[:-1])
    assert (st["filesDone"], st["filesTotal"], st["bytesDone"], st["bytesTotal"]) == \
        (n_files, n_files, n_bytes, n_bytes)
    assert st["result"]["filesCopied"] == n_files and st["result"]["bytesCopied"] == n_bytes
    assert tree(dst) == tree(src)
    no_temp_files(dst)


def test_session_resumes_after_restart(make_server, root):
    srv = make_server("--file-root", str(root), "--rate-limit", "0")  # polled often
    src, dst = root / "src", root / "dst"
    n_files, n_bytes = many_files(src, 3000)
    sid = start(srv, src, dst)
    st = poll(srv, sid, lambda s: s["filesDone"] > 0 or s["status"] == "completed")
    assert st["status"] == "in-progress", f"too quick to interrupt: {st}"
    reported = st["filesDone"]
    assert srv.stop(signal.SIGTERM) == 0
    t_stop = time.monotonic()
    srv.start()
    st = status(srv, sid)
    assert st["status"] == "in-progress" and st["completedAt"] is None, st
    done_before = st["filesDone"]
    # what was reported before the stop is kept, and all of it is in the target
    assert 0 < reported <= done_before < n_files, (reported, st)
    assert in_place(src, dst) >= done_before, st
    st = finished(srv, sid, timeout=40)
    assert st["status"] == "completed", st
    assert time.monotonic() - t_stop >= 8  # resumed only once the heartbeat was stale
    res = st["result"]
    assert res["success"] is True, res
    assert res["filesCopied"] + res["filesUnchanged"] == n_files, res
    assert res["filesUnchanged"] >= done_before, (res, done_before)
    assert st["filesTotal"] == n_files and st["bytesTotal"] == n_bytes, st
    assert tree(dst) == tree(src)
    no_temp_files(dst)


def in_place(src, dst):
    """How many of the target's files hold their source file's bytes."""
    return sum(1 for p in dst.rglob("*")
               if p.is_file() and not p.name.startswith(".ferry-tmp-")
               and (src / p.relative_to(dst)).is_file()
               and (src / p.relative_to(dst)).read_bytes() == p.read_bytes())


def test_session_progress_counts_only_files_in_place(make_server, root):
    """The progress a session stores counts a copy only once it is in place on disk: a
    crash (kill -9) while copies wait in a batch for their rename loses none of the files
    the progress had counted, and the session then resumes to completion."""
    srv = make_server("--file-root", str(root), "--rate-limit", "0",
                      env={"FERRY_CRASH_AT": "dirsync.before_rename:300"})
    src, dst = root / "src", root / "dst"
    n_files, n_bytes = many_files(src, 3000)
    sid = start(srv, src, dst)
    assert srv.wait_exit(60) == -signal.SIGKILL
    del srv.env["FERRY_CRASH_AT"]
    srv.start()
    st = status(srv, sid)
    assert st["status"] == "in-progress", st
    assert st["filesDone"] <= in_place(src, dst) < n_files, st
    st = finished(srv, sid, timeout=60)
    assert st["status"] == "completed" and st["result"]["success"] is True, st
    assert st["filesDone"] == n_files and st["bytesDone"] == n_bytes, st
    left = tree(dst)  # the killed run's temporary copies wait out TMP_STALE_S
    assert {k: v for k, v in left.items() if ".ferry-tmp-" not in k} == tree(src)


@pytest.mark.sqlite_only
def test_special_mode_bits_are_not_copied(rooted, root):
    """A setuid or setgid source file is copied without those bits: the copy belongs to
    the user ferry runs as, not to the source's owner."""
    src, dst = root / "src", root / "dst"
    write(src, "tool", b"#!/bin/sh\n", 0o755)
    os.chmod(src / "tool", 0o6755)
    res = sync(rooted, src, dst)
    assert res["filesCopied"] == 1, res
    assert stat.S_IMODE(os.stat(dst / "tool").st_mode) == 0o755


def test_data_folder_cannot_be_synced(make_server, tmp_path):
    """A file root that holds ferry's own data folder (database, admin token) still
    refuses it as a source or a target, and any folder containing it."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "other").mkdir()
    srv = make_server("--file-root", str(tmp_path), data_dir=str(data))
    for src, dst in ((data, tmp_path / "out"), (tmp_path / "other", data / "x"),
                     (tmp_path, tmp_path / "other2")):
        r = srv.post("/api/v1/sync/files", token=srv.admin_token,
                     json={"sourceDirectory": str(src), "targetDirectory": str(dst)})
        assert r.status_code in (400, 403), r.text
    r = srv.post("/api/v1/sync/files", token=srv.admin_token,
                 json={"sourceDirectory": str(data), "targetDirectory": str(tmp_path / "out")})
    assert_v1_error(r, 403, "FORBIDDEN")
    assert not (tmp_path / "out").exists()
