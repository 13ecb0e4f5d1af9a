"""Files have owners (issue 11): two users, each with two devices, on every file surface
(Pinakes chunked uploads and downloads, ferry's /api/v1/files, tus, the change feed's
"files" namespace, directory-sync sessions). Each user has a namespace of their own, so
both may keep a file at the same path; another user's file or session answers 404 in the
surface's error format; shared folders (--shared-folder) are one namespace that every
user reads and writes; admins see everything. Entries from before owners existed belong
to the common namespace: admins see them, users only where a shared folder covers them.

Every test runs on SQLite and on PostgreSQL."""

import base64
import hashlib
import os
import re
import threading
import time

import pytest

from conftest import assert_v1_error, run_ferry, wait_until

V1 = "/api/v1/sync"
TUS = {"Tus-Resumable": "1.0.0"}
ENTRY_KEYS = {"path", "size", "sha256", "version", "deleted", "updatedAt"}


def sha(data):
    return hashlib.sha256(data).hexdigest()


def device(srv, user_token, name):
    r = srv.post(f"{V1}/devices", token=user_token, json={"name": name})
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


def chunked(srv, tok, path, data, chunk=1024):
    """A whole Pinakes chunked upload; returns the entry that completing answers."""
    r = srv.post(f"{V1}/upload", token=tok, json={"path": path, "size": len(data),
                                                  "chunk_size": chunk})
    assert r.status_code == 200, r.text
    s = r.json()
    for i in range(s["chunkCount"]):
        r = srv.put(f"{V1}/upload/{s['id']}/chunks/{i}", token=tok,
                    data=data[i * chunk:(i + 1) * chunk])
        assert r.status_code == 200, r.text
    r = srv.post(f"{V1}/upload/{s['id']}/complete", token=tok)
    assert r.status_code == 200, r.text
    return r.json()


def tus_create(srv, tok, path, length):
    name = base64.b64encode(path.encode()).decode()
    r = srv.post("/tus/", token=tok, headers={**TUS, "Upload-Length": str(length),
                                               "Upload-Metadata": f"path {name}"})
    assert r.status_code == 201, r.text
    return r.headers["Location"]


def tus_patch(srv, tok, loc, offset, data):
    return srv.request("PATCH", loc, token=tok, data=data, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def tus_upload(srv, tok, path, data):
    loc = tus_create(srv, tok, path, len(data))
    r = tus_patch(srv, tok, loc, 0, data)
    assert r.status_code == 204, r.text
    return loc


def tus_not_found(r):
    """tus answers errors as text; another user's upload is not found, as none is."""
    assert r.status_code == 404, (r.status_code, r.text)
    if r.request.method != "HEAD":
        assert r.headers["Content-Type"].startswith("text/plain"), dict(r.headers)


def feed(srv, tok):
    """The files changes a credential's feed shows (a device's own uploads included)."""
    r = srv.get(f"{V1}/changes", token=tok, params={"cursor": "0", "limit": "1000",
                                                    "includeOwn": "true"})
    assert r.status_code == 200, r.text
    return [c for c in r.json()["changes"] if c["table"] == "files"]


def feed_files(srv, tok):
    """path -> sha256 of the newest change of each file the credential's feed shows."""
    return {c["id"]: c["data"]["sha256"] for c in feed(srv, tok)}


def listing(srv, tok, **params):
    r = srv.get("/api/v1/files", token=tok, params=params)
    assert r.status_code == 200, r.text
    return r.json()["files"]


def download(srv, tok, path, **kw):
    return srv.get(f"{V1}/download/{path}", token=tok, **kw)


def two_users(srv):
    anna, bob = (srv.create_token(user_id=u)["token"] for u in ("anna", "bob"))
    return {"anna": (anna, device(srv, anna, "anna-phone"), device(srv, anna, "anna-laptop")),
            "bob": (bob, device(srv, bob, "bob-phone"), device(srv, bob, "bob-laptop"))}


# --- private files --------------------------------------------------------------------------


def test_two_users_keep_their_own_file_at_one_path(make_server):
    srv = make_server("--shared-folder", "team")
    u = two_users(srv)
    anna_data, bob_data = os.urandom(3000), os.urandom(2500)
    _, anna_phone, anna_laptop = u["anna"]
    _, bob_phone, bob_laptop = u["bob"]
    # the same path through two surfaces: Pinakes for anna's phone, tus for bob's
    assert chunked(srv, anna_phone, "notes/a.bin", anna_data)["version"] == 1
    tus_upload(srv, bob_phone, "notes/a.bin", bob_data)
    chunked(srv, bob_phone, "bob/only.txt", b"bob's secret")

    # each user's other device gets that user's bytes, whole and by range
    for tok, data in ((anna_laptop, anna_data), (bob_laptop, bob_data)):
        r = download(srv, tok, "notes/a.bin")
        assert (r.status_code, r.content) == (200, data)
        r = download(srv, tok, "notes/a.bin", headers={"Range": "bytes=100-199"})
        assert (r.status_code, r.content) == (206, data[100:200])
        r = srv.get("/api/v1/files/notes/a.bin", token=tok)
        assert r.status_code == 200 and set(r.json()) == ENTRY_KEYS
        assert (r.json()["sha256"], r.json()["version"]) == (sha(data), 1)

    # listings and feeds: each user's own files only, on every one of their credentials
    for user, data, extra in (("anna", anna_data, {}), ("bob", bob_data,
                                                        {"bob/only.txt": b"bob's secret"})):
        for tok in u[user]:
            files = listing(srv, tok)
            assert {f["path"]: f["sha256"] for f in files} == {
                "notes/a.bin": sha(data), **{p: sha(d) for p, d in extra.items()}}
            assert all(set(f) == ENTRY_KEYS for f in files), files
            assert feed_files(srv, tok) == {"notes/a.bin": sha(data),
                                            **{p: sha(d) for p, d in extra.items()}}

    # anna cannot reach bob's file on any path: 404, as for a file that does not exist
    for tok in u["anna"]:
        assert_v1_error(download(srv, tok, "bob/only.txt"), 404, "NOT_FOUND")
        assert_v1_error(srv.get("/api/sync/download/bob/only.txt", token=tok), 404, "NOT_FOUND")
        assert_v1_error(download(srv, tok, "bob/only.txt", headers={"Range": "bytes=0-3"}),
                        404, "NOT_FOUND")
        assert_v1_error(srv.get("/api/v1/files/bob/only.txt", token=tok), 404, "NOT_FOUND")
        assert_v1_error(srv.delete("/api/v1/files/bob/only.txt", token=tok), 404, "NOT_FOUND")
        assert listing(srv, tok, prefix="bob/") == []
        # an admin's "owner" parameter means nothing coming from a user
        assert_v1_error(srv.get("/api/v1/files/bob/only.txt", token=tok,
                                params={"owner": "bob"}), 404, "NOT_FOUND")
    assert download(srv, bob_laptop, "bob/only.txt").content == b"bob's secret"

    # deleting her file leaves his: each deletion reaches its owner's devices only
    r = srv.delete("/api/v1/files/notes/a.bin", token=anna_laptop)
    assert (r.status_code, r.json()["version"], r.json()["deleted"]) == (200, 2, True)
    assert_v1_error(download(srv, anna_phone, "notes/a.bin"), 404, "NOT_FOUND")
    assert download(srv, bob_phone, "notes/a.bin").content == bob_data
    anna_changes = feed(srv, anna_phone)
    assert [(c["id"], c["op"], c["version"]) for c in anna_changes] == [
        ("notes/a.bin", "delete", 2)]
    assert [(c["id"], c["op"]) for c in feed(srv, bob_phone)] == [
        ("notes/a.bin", "upsert"), ("bob/only.txt", "upsert")]
    # an upload to a path of her own goes on from her own entry's version
    assert chunked(srv, anna_phone, "notes/a.bin", b"again")["version"] == 3


def test_a_waiting_device_wakes_for_its_own_users_files_only(make_server):
    """A long-poll of anna's laptop is woken by bob's upload too (the log moved), finds
    nothing of his, waits on, and answers with her phone's upload."""
    srv = make_server()
    u = two_users(srv)
    _, anna_phone, anna_laptop = u["anna"]
    head = srv.get(f"{V1}/changes", token=anna_laptop, params={"cursor": "0"}).json()["cursor"]
    got = {}

    def wait():
        t0 = time.monotonic()
        got["r"] = srv.get(f"{V1}/changes", token=anna_laptop, timeout=20,
                           params={"cursor": str(head), "wait": "8", "tables": "files"})
        got["s"] = time.monotonic() - t0

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    chunked(srv, u["bob"][1], "x.bin", b"bob's")
    time.sleep(0.5)
    assert waiter.is_alive()
    chunked(srv, anna_phone, "y.bin", b"anna's")
    waiter.join()
    assert got["r"].status_code == 200, got["r"].text
    assert [c["id"] for c in got["r"].json()["changes"]] == ["y.bin"]
    assert got["s"] < 6


def test_another_users_upload_sessions_are_not_found(make_server):
    srv = make_server()
    u = two_users(srv)
    _, bob_phone, bob_laptop = u["bob"]
    # a chunked session of bob's phone: his laptop may go on with it, anna may not see it
    r = srv.post(f"{V1}/upload", token=bob_phone, json={"path": "s.bin", "size": 2048,
                                                        "chunk_size": 1024})
    sid = r.json()["id"]
    assert srv.put(f"{V1}/upload/{sid}/chunks/0", token=bob_phone,
                   data=b"x" * 1024).status_code == 200
    loc = tus_create(srv, bob_phone, "t.bin", 10)
    assert tus_patch(srv, bob_phone, loc, 0, b"12345").status_code == 204
    for tok in u["anna"]:
        assert_v1_error(srv.get(f"{V1}/upload/{sid}", token=tok), 404, "NOT_FOUND")
        assert_v1_error(srv.put(f"{V1}/upload/{sid}/chunks/1", token=tok, data=b"y" * 1024),
                        404, "NOT_FOUND")
        assert_v1_error(srv.post(f"{V1}/upload/{sid}/complete", token=tok), 404, "NOT_FOUND")
        assert_v1_error(srv.delete(f"{V1}/upload/{sid}", token=tok), 404, "NOT_FOUND")
        tus_not_found(srv.request("HEAD", loc, token=tok, headers=TUS))
        tus_not_found(tus_patch(srv, tok, loc, 5, b"67890"))
        tus_not_found(srv.request("DELETE", loc, token=tok, headers=TUS))
    # nothing anna tried changed bob's uploads: his other device resumes and finishes both
    assert srv.put(f"{V1}/upload/{sid}/chunks/1", token=bob_laptop,
                   data=b"z" * 1024).status_code == 200
    assert srv.post(f"{V1}/upload/{sid}/complete", token=bob_laptop).status_code == 200
    r = srv.request("HEAD", loc, token=bob_laptop, headers=TUS)
    assert (r.status_code, r.headers["Upload-Offset"]) == (200, "5")
    assert tus_patch(srv, bob_laptop, loc, 5, b"67890").status_code == 204
    assert download(srv, bob_phone, "t.bin").content == b"1234567890"
    assert download(srv, bob_phone, "s.bin").content == b"x" * 1024 + b"z" * 1024
    for tok in u["anna"]:
        assert listing(srv, tok) == [] and feed(srv, tok) == []


def test_same_content_is_stored_once_and_tells_nothing(make_server):
    """Dedup is inside the blob store: a user gets a file only by sending all of its
    bytes, the answers are the same whether anyone else had them, and one user deleting
    their copy leaves the other's."""
    srv = make_server()
    u = two_users(srv)
    data = os.urandom(5000)
    first = chunked(srv, u["anna"][1], "mine.bin", data)
    second = chunked(srv, u["bob"][1], "his.bin", data)
    assert {k: first[k] for k in ("size", "sha256", "version")} == {
        k: second[k] for k in ("size", "sha256", "version")}
    blobs = [n for _, _, names in os.walk(os.path.join(srv.data_dir, "blobs")) for n in names
             if re.fullmatch(r"[0-9a-f]{64}", n)]
    assert blobs == [sha(data)]
    # a session announcing the hash gets no shortcut: its chunks are still asked for
    r = srv.post(f"{V1}/upload", token=u["bob"][0], json={
        "path": "guess.bin", "size": len(data), "sha256": sha(data), "chunk_size": 1024})
    s = r.json()
    assert (s["receivedChunks"], s["complete"], s["file"]) == ([], False, None)
    r = srv.post(f"{V1}/upload/{s['id']}/complete", token=u["bob"][0])
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert srv.delete("/api/v1/files/mine.bin", token=u["anna"][0]).status_code == 200
    assert srv.post("/api/v1/admin/purge", token=srv.admin_token).status_code == 200
    assert download(srv, u["bob"][2], "his.bin").content == data


# --- shared folders and admins ---------------------------------------------------------------


def test_shared_folders_are_one_namespace_for_everyone(make_server):
    srv = make_server("--shared-folder", "team/", "--shared-folder", "public")
    u = two_users(srv)
    anna, anna_phone, _ = u["anna"]
    bob, bob_phone, bob_laptop = u["bob"]
    chunked(srv, anna_phone, "team/plan.txt", b"plan v1")
    tus_upload(srv, bob_phone, "public/readme.txt", b"hello all")
    chunked(srv, anna_phone, "teamwork.txt", b"not in the folder")  # a prefix, not the folder
    # bob reads and rewrites anna's shared file: one entry, version 2, seen by all devices
    assert download(srv, bob_laptop, "team/plan.txt").content == b"plan v1"
    assert chunked(srv, bob_laptop, "team/plan.txt", b"plan v2")["version"] == 2
    for user in ("anna", "bob"):
        for tok in u[user]:
            got = feed_files(srv, tok)
            assert got["team/plan.txt"] == sha(b"plan v2")
            assert got["public/readme.txt"] == sha(b"hello all")
            assert ("teamwork.txt" in got) == (user == "anna")
            paths = [f["path"] for f in listing(srv, tok)]
            assert paths == (["public/readme.txt", "team/plan.txt", "teamwork.txt"]
                             if user == "anna" else ["public/readme.txt", "team/plan.txt"])
    shared = [c for c in feed(srv, anna) if c["id"] == "team/plan.txt"][-1]
    assert shared["data"]["owner"] is None and "file_key" not in shared["data"]
    # either may delete it; the deletion reaches everyone
    r = srv.delete("/api/v1/files/team/plan.txt", token=anna)
    assert r.status_code == 200 and r.json()["version"] == 3
    assert_v1_error(download(srv, bob, "team/plan.txt"), 404, "NOT_FOUND")
    assert [c["op"] for c in feed(srv, bob) if c["id"] == "team/plan.txt"] == ["delete"]


def test_shared_folders_from_the_environment(make_server):
    srv = make_server(env={"FERRY_SHARED_FOLDERS": "a, b/c"})
    u = two_users(srv)
    chunked(srv, u["anna"][0], "b/c/x", b"x")
    chunked(srv, u["anna"][0], "b/d/y", b"y")
    assert [f["path"] for f in listing(srv, u["bob"][0])] == ["b/c/x"]


def test_shared_folders_from_the_config_file(make_server, tmp_path):
    conf = tmp_path / "ferry.conf"
    conf.write_text("shared-folder = x/y, z\n")
    srv = make_server("--config", str(conf))
    u = two_users(srv)
    for path in ("x/y/1", "z/2", "x/3"):
        chunked(srv, u["anna"][0], path, b"d")
    assert [f["path"] for f in listing(srv, u["bob"][0])] == ["x/y/1", "z/2"]


def test_a_shared_folder_must_be_a_relative_path(tmp_path):
    p = run_ferry("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                  "--shared-folder", "team", "--shared-folder", "../up", timeout=20)
    assert p.returncode != 0
    assert "shared-folder '../up'" in p.stderr, p.stderr


def test_admins_see_every_namespace(make_server):
    srv = make_server("--shared-folder", "team")
    u = two_users(srv)
    chunked(srv, u["anna"][1], "doc.txt", b"anna's")
    chunked(srv, u["bob"][1], "doc.txt", b"bob's")
    chunked(srv, u["bob"][1], "team/x", b"shared")
    admin = srv.admin_token
    files = listing(srv, admin)
    assert [(f["path"], f["owner"], f["sha256"]) for f in files] == [
        ("doc.txt", "anna", sha(b"anna's")), ("doc.txt", "bob", sha(b"bob's")),
        ("team/x", None, sha(b"shared"))]
    assert [f["path"] for f in listing(srv, admin, owner="bob")] == ["doc.txt"]
    assert [f["path"] for f in listing(srv, admin, owner="")] == ["team/x"]
    assert sorted((c["id"], c["data"]["owner"] or "") for c in feed(srv, admin)) == [
        ("doc.txt", "anna"), ("doc.txt", "bob"), ("team/x", "")]
    r = download(srv, admin, "doc.txt", params={"owner": "bob"})
    assert (r.status_code, r.content) == (200, b"bob's")
    assert download(srv, admin, "team/x").content == b"shared"
    # without "owner" an admin without a user id acts in the common namespace
    assert_v1_error(download(srv, admin, "doc.txt"), 404, "NOT_FOUND")
    r = srv.delete("/api/v1/files/doc.txt", token=admin, params={"owner": "anna"})
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert download(srv, u["bob"][2], "doc.txt").content == b"bob's"
    # an admin without a user id uploads to the common namespace: outside the shared
    # folders, only admins see it
    chunked(srv, admin, "ops/report.txt", b"r")
    assert listing(srv, u["anna"][0], prefix="ops/") == []
    assert_v1_error(download(srv, u["anna"][0], "ops/report.txt"), 404, "NOT_FOUND")
    assert download(srv, admin, "ops/report.txt").content == b"r"


def test_an_admins_pages_never_split_one_path_across_namespaces(make_server):
    """The next page starts after a path: a page that ended between two namespaces'
    entries at one path lost the second."""
    srv = make_server()
    u = two_users(srv)
    for who in ("anna", "bob"):
        chunked(srv, u[who][1], "doc.txt", who.encode())
    chunked(srv, u["anna"][1], "z.txt", b"z")
    pages, after = [], None
    while True:
        r = srv.get("/api/v1/files", token=srv.admin_token,
                    params={"limit": "1", **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        pages.append([(f["path"], f["owner"]) for f in r.json()["files"]])
        after = r.json()["nextAfter"]
        if not after:
            break
    assert pages[:2] == [[("doc.txt", "anna"), ("doc.txt", "bob")], [("z.txt", "anna")]]
    assert all(p == [] for p in pages[2:])
    # one namespace, and users' own listings, keep to the limit
    r = srv.get("/api/v1/files", token=srv.admin_token, params={"limit": "1", "owner": "bob"})
    assert [f["path"] for f in r.json()["files"]] == ["doc.txt"]
    assert len(listing(srv, u["anna"][0], limit="1")) == 1


@pytest.mark.postgres_only
def test_a_user_id_cannot_end_the_literals_of_the_files_filter(make_server):
    """The feed's files filter names the user as an SQL literal (quotes doubled). With
    standard_conforming_strings off in the database, a backslash in a user id (a token's
    user, a JWT's sub) ended it: this one read every user's files."""
    srv = make_server("--shared-folder", "pub")
    srv.db_exec("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET"
                " standard_conforming_strings = off', current_database()); END $$")
    srv.restart()
    anna = srv.create_token(user_id="anna")["token"]
    chunked(srv, anna, "secret.txt", b"anna's secret")
    chunked(srv, anna, "pub/open.txt", b"for all")
    for evil_id in ("\\' OR TRUE))) ORDER BY c.seq LIMIT $2 --", "x\\", "\\'"):
        evil = srv.create_token(user_id=evil_id)["token"]
        assert feed_files(srv, evil) == {"pub/open.txt": sha(b"for all")}
        assert [f["path"] for f in listing(srv, evil)] == ["pub/open.txt"]
        chunked(srv, evil, "mine.txt", b"evil's")
        assert sorted(feed_files(srv, evil)) == ["mine.txt", "pub/open.txt"]
    assert feed_files(srv, anna) == {"secret.txt": sha(b"anna's secret"),
                                     "pub/open.txt": sha(b"for all")}


def test_entries_from_before_owners_belong_to_admins(make_server):
    """An entry without an owner (written before migration 7) is in the common
    namespace: admins see it, users only once a shared folder covers it. Its key and
    its change-log entry stay as they were."""
    srv = make_server()
    u = two_users(srv)
    chunked(srv, srv.admin_token, "old/report.txt", b"legacy")
    chunked(srv, srv.admin_token, "team/old.txt", b"legacy shared")
    assert srv.db_query("SELECT file_key, owner FROM ferry_files ORDER BY path") == [
        ["old/report.txt", None], ["team/old.txt", None]]
    # both entries have their seq as written (the wait is from when PostgreSQL numbered
    # an upload's change after its commit)
    log = "SELECT seq, pk FROM ferry_changes WHERE tbl = 'files' ORDER BY seq"
    before = wait_until(lambda: (rows := srv.db_query(log)) and all(r[0] for r in rows) and rows)
    assert len(before) == 2, before
    for tok in u["anna"]:
        assert listing(srv, tok) == [] and feed(srv, tok) == []
        assert_v1_error(download(srv, tok, "old/report.txt"), 404, "NOT_FOUND")
    srv.stop()
    srv.args = [*srv.args, "--shared-folder", "team"]
    srv.start()
    for tok in u["anna"]:
        assert [f["path"] for f in listing(srv, tok)] == ["team/old.txt"]
        assert list(feed_files(srv, tok)) == ["team/old.txt"]
        assert download(srv, tok, "team/old.txt").content == b"legacy shared"
    assert [f["path"] for f in listing(srv, srv.admin_token)] == ["old/report.txt",
                                                                 "team/old.txt"]
    assert srv.db_query(log) == before


def test_directory_sync_sessions_belong_to_their_user(make_server, tmp_path):
    root = tmp_path / "root"
    (root / "src").mkdir(parents=True)
    (root / "src" / "f.txt").write_text("f")
    srv = make_server("--file-root", str(root))
    anna, bob = (srv.create_token(user_id=n)["token"] for n in ("anna", "bob"))
    r = srv.post(f"{V1}/session/start", token=bob, json={
        "sourceLocation": str(root / "src"), "targetLocation": str(root / "dst")})
    assert r.status_code == 200, r.text
    sid = r.json()["sessionId"]
    assert_v1_error(srv.get(f"{V1}/session/{sid}/status", token=anna), 404, "NOT_FOUND")
    assert_v1_error(srv.post(f"{V1}/session/{sid}/complete", token=anna), 404, "NOT_FOUND")
    for tok in (bob, srv.admin_token):
        r = srv.get(f"{V1}/session/{sid}/status", token=tok)
        assert r.status_code == 200 and r.json()["sessionId"] == sid, r.text


def test_migration_7_keeps_old_entries_for_admins(make_server):
    """A database from before owners (ferry_files keyed by path, schema version 5) is
    migrated at start: its entries keep their keys and change-log entries and belong to
    the common namespace."""
    srv = make_server()
    chunked(srv, srv.admin_token, "old/a.txt", b"from before")
    log = "SELECT seq, pk FROM ferry_changes WHERE tbl = 'files' ORDER BY seq"
    before = wait_until(lambda: (rows := srv.db_query(log)) and all(r[0] for r in rows) and rows)
    assert len(before) == 1, before
    srv.stop()
    srv.db_exec(
        "CREATE TABLE ferry_files_v5 (path TEXT PRIMARY KEY, size BIGINT NOT NULL,"
        " sha256 TEXT NOT NULL, version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"
        " updated_at BIGINT NOT NULL)",
        "INSERT INTO ferry_files_v5 SELECT path, size, sha256, version, deleted, updated_at"
        " FROM ferry_files",
        "DROP TABLE ferry_files",
        "ALTER TABLE ferry_files_v5 RENAME TO ferry_files",
        "CREATE INDEX ferry_files_sha256 ON ferry_files(sha256)",
        "DELETE FROM ferry_schema_version WHERE version = 7")
    srv.start()
    assert srv.db_query("SELECT file_key, owner, path, version FROM ferry_files") == [
        ["old/a.txt", None, "old/a.txt", "1"]]
    assert srv.db_query(log) == before
    anna = srv.create_token(user_id="anna")["token"]
    assert listing(srv, anna) == [] and feed(srv, anna) == []
    assert_v1_error(download(srv, anna, "old/a.txt"), 404, "NOT_FOUND")
    assert download(srv, srv.admin_token, "old/a.txt").content == b"from before"
    # her own file at that path is hers, beside the old one
    chunked(srv, anna, "old/a.txt", b"anna's")
    assert download(srv, anna, "old/a.txt").content == b"anna's"
    assert [(f["owner"], f["version"]) for f in listing(srv, srv.admin_token)] == [
        (None, 1), ("anna", 1)]
