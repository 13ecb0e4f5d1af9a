"""Sessions between a folder and a cloud location (POST /api/v1/sync/session/start with an
s3, azure or local location on one side): the folder's tree is uploaded, or the location's
objects are downloaded, as a job whose status shows real progress. Full transfers
everything; Incremental skips what is unchanged on both sides since the pair's last run.

Against the real emulators of test_cloud.py (s3rver, azurite) and the local provider. The
per-pair records and the stored-bytes table are in the store, so these run on both
backends."""

import hashlib
import http.server
import os
import signal
import threading

import pytest

from conftest import assert_v1_error, free_port, wait_until
from test_cloud import BUCKET, CONTAINER, PART, cloud_env, emulators, needs_node  # noqa: F401

SESS = "/api/v1/sync/session"
PROVIDERS = ["s3", "azure", "local"]


def location(provider, tmp_path, name):
    """A cloud location of provider holding its objects under its own prefix."""
    if provider == "s3":
        return f"s3:{BUCKET}/{name}"
    if provider == "azure":
        return f"azure:{CONTAINER}/{name}"
    return f"local:{tmp_path / 'localcloud' / name}"


@pytest.fixture
def sessions(make_server, emulators, tmp_path):  # noqa: F811
    """Start a server with file root tmp_path/files, the folder location Files on
    tmp_path/files/src and the cloud location Cloud on the given provider."""
    root = tmp_path / "files"
    (root / "src").mkdir(parents=True)
    (tmp_path / "localcloud").mkdir()

    def start(provider, env_extra=None, name=None):
        name = name or f"s{os.getpid()}-{free_port()}"
        env = cloud_env(emulators, tmp_path / "cloud")
        env["FERRY_LOCATIONS"] = (f"Files=folder:{root / 'src'},"
                                  f"Cloud={location(provider, tmp_path, name)}")
        env.update(env_extra or {})
        srv = make_server("--file-root", str(root), "--cloud-part-size", "5M",
                          "--cloud-timeout", "3", "--rate-limit", "0", env=env)
        return srv, root, name

    return start


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tree(folder):
    """The files under folder (the local provider's side files under .ferry-meta/ aside)."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not str(p.relative_to(folder)).startswith(".ferry-meta")}


def make_tree(src, big=0):
    write(src / "top.txt", b"top\n")
    write(src / "a" / "one.txt", b"one\n" * 100)
    write(src / "a" / "b" / "two.bin", os.urandom(70_000))
    write(src / "a" / "b" / "empty", b"")
    write(src / "skip.tmp", b"excluded")
    if big:
        write(src / "big" / "blob.bin", os.urandom(big))
    return {k: v for k, v in tree(src).items() if not k.endswith(".tmp")}


def start(srv, source, target, sync_type="Full", token=None, **opts):
    body = {"sourceLocation": str(source), "targetLocation": str(target),
            "syncType": sync_type, "excludePatterns": ["*.tmp"], **opts}
    r = srv.post(f"{SESS}/start", token=token or srv.admin_token, json=body)
    assert r.status_code == 200, r.text
    assert (r.json()["sourceIdentifier"], r.json()["targetIdentifier"]) == (str(source),
                                                                            str(target))
    return r.json()["sessionId"]


def finished(srv, sid, timeout=60):
    def done():
        r = srv.get(f"{SESS}/{sid}/status", token=srv.admin_token)
        assert r.status_code == 200, r.text
        return r.json()["status"] in ("completed", "failed") and r.json()
    st = wait_until(done, timeout=timeout, interval=0.05)
    assert st, sid
    return st


def listing(srv, provider, prefix):
    r = srv.get(f"/api/v1/cloud/{provider}/list", token=srv.admin_token,
                params={"prefix": prefix})
    assert r.status_code == 200, r.text
    return {f["path"][len(prefix) + 1:]: f["size"] for f in r.json()["files"]}


def metrics(srv):
    r = srv.get("/api/v1/metrics", token=srv.admin_token)
    assert r.status_code == 200, r.text
    return r.json()


def run(srv, source, target, sync_type="Full", **opts):
    st = finished(srv, start(srv, source, target, sync_type, **opts))
    assert st["status"] == "completed", st
    return st


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_tree_goes_up_and_comes_back_down(sessions, provider):
    srv, root, name = sessions(provider)
    files = make_tree(root / "src")
    n_bytes = sum(len(v) for v in files.values())
    before = metrics(srv)

    st = run(srv, "Files", "Cloud")
    res = st["result"]
    assert res["success"] is True and res["errors"] == [], res
    assert (res["direction"], res["filesCopied"], res["filesUnchanged"], res["bytesCopied"]) == \
        ("upload", len(files), 0, n_bytes), res
    assert (st["filesDone"], st["filesTotal"], st["bytesDone"], st["bytesTotal"]) == \
        (len(files), len(files), n_bytes, n_bytes), st
    assert st["progressPercentage"] == 100 and st["message"].startswith("completed"), st
    if provider != "local":  # the local location is its own folder, not the configured one
        assert listing(srv, provider, name) == {k: len(v) for k, v in files.items()}
    else:
        assert tree(root.parent / "localcloud" / name) == files

    # counted once as a sync, its bytes as moved and as stored in the provider
    after = metrics(srv)
    assert after["totalSyncOperations"] - before["totalSyncOperations"] == 1
    assert after["successfulSyncs"] - before["successfulSyncs"] == 1
    assert after["totalDataTransferred"] - before["totalDataTransferred"] == n_bytes
    if provider != "local":
        assert after["cloudStorageUsage"][provider] - before["cloudStorageUsage"][provider] \
            == n_bytes

    # Incremental: nothing changed, nothing moves; one change, one file
    res = run(srv, "Files", "Cloud", "Incremental")["result"]
    assert (res["filesCopied"], res["filesUnchanged"], res["bytesCopied"]) == \
        (0, len(files), 0), res
    write(root / "src" / "a" / "one.txt", b"changed\n")
    files["a/one.txt"] = b"changed\n"
    res = run(srv, "Files", "Cloud", "Incremental")["result"]
    assert (res["filesCopied"], res["filesUnchanged"], res["bytesCopied"]) == \
        (1, len(files) - 1, 8), res

    # down into a new folder named by its path: byte for byte, with the objects' dates
    dst = root / "down"
    st = run(srv, "Cloud", dst)
    res = st["result"]
    assert (res["direction"], res["filesCopied"]) == ("download", len(files)), res
    assert tree(dst) == files
    assert not [p for p in dst.rglob("*") if ".ferry-part-" in p.name]
    res = run(srv, "Cloud", dst, "Incremental")["result"]
    assert (res["filesCopied"], res["filesUnchanged"]) == (0, len(files)), res
    # a file changed on the folder's side is fetched again by Full only
    write(dst / "top.txt", b"local edit")
    os.utime(dst / "top.txt", (1, 1))
    res = run(srv, "Cloud", dst, "Incremental")["result"]
    assert res["filesCopied"] == 1, res
    assert (dst / "top.txt").read_bytes() == b"top\n"


@needs_node
@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_large_file_goes_in_parts_and_resumes_after_a_crash(sessions, provider):
    """ferry dies after the first part of a three-part file; the session runs again when
    the server is back and continues that upload where it stopped."""
    srv, root, name = sessions(provider)
    files = make_tree(root / "src", big=2 * PART + 4321)
    srv.stop()
    srv.env["FERRY_CRASH_AT"] = "cloud_part_done"
    srv.start()
    sid = start(srv, "Files", "Cloud")
    assert srv.wait_exit(60) == -signal.SIGKILL
    del srv.env["FERRY_CRASH_AT"]
    srv.start()
    st = finished(srv, sid, timeout=90)
    assert st["status"] == "completed", st
    res = st["result"]
    assert res["filesCopied"] == len(files) and res["partsResumed"] == 1, res
    assert listing(srv, provider, name) == {k: len(v) for k, v in files.items()}

    dst = root / "down"
    run(srv, "Cloud", dst)
    assert tree(dst) == files


@needs_node
@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_provider_down_fails_the_session_with_a_message(sessions, emulators, provider):  # noqa: F811
    dead = f"127.0.0.1:{free_port()}"
    env = cloud_env(emulators, "/nonexistent")
    env["FERRY_S3_ENDPOINT"] = f"http://{dead}"
    env["FERRY_AZURE_CONNECTION_STRING"] = env["FERRY_AZURE_CONNECTION_STRING"].replace(
        f"127.0.0.1:{emulators['azure'].port}", dead)
    srv, root, _ = sessions(provider, env_extra=env)
    make_tree(root / "src")
    before = metrics(srv)
    for source, target in (("Files", "Cloud"), ("Cloud", root / "down")):
        st = finished(srv, start(srv, source, target))
        assert st["status"] == "failed" and provider in st["message"], st
    assert metrics(srv)["failedSyncs"] - before["failedSyncs"] == 2


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_delete_missing_in_target_both_ways(sessions, provider, tmp_path):
    """deleteMissingInTarget removes the target's files the source lacks, under the pair's
    prefix or folder only, and never excluded ones."""
    srv, root, name = sessions(provider)
    files = make_tree(root / "src")
    run(srv, "Files", "Cloud", deleteMissingInTarget=True, verifyIntegrity=True)
    # a neighbour prefix that must survive every delete
    write(root / "other" / "keep.txt", b"neighbour")
    r = srv.post(f"/api/v1/cloud/{provider}/upload", token=srv.admin_token,
                 json={"cloudPath": f"{name}x/keep.txt", "localPath": str(root / "other" /
                                                                          "keep.txt")})
    assert r.status_code == 200, r.text
    os.remove(root / "src" / "a" / "b" / "two.bin")
    del files["a/b/two.bin"]
    res = run(srv, "Files", "Cloud", "Incremental")["result"]  # default: nothing deleted
    assert res["filesDeleted"] == 0, res
    res = run(srv, "Files", "Cloud", "Incremental", deleteMissingInTarget=True)["result"]
    assert (res["filesDeleted"], res["filesCopied"], res["success"]) == (1, 0, True), res
    if provider == "local":
        assert sorted(tree(tmp_path / "localcloud" / name)) == sorted(files)
    else:  # the prefix is "name/": "namex/keep.txt" shares its letters, not its folder
        assert sorted(listing(srv, provider, name)) == sorted([*files, "/keep.txt"])
        assert listing(srv, provider, f"{name}x") == {"keep.txt": 9}

    # down: files the location lacks go; excluded ones and the partial files stay
    dst = root / "down"
    write(dst / "stale.txt", b"old")
    write(dst / "gone" / "deep.txt", b"old")
    write(dst / "mine.tmp", b"excluded")
    res = run(srv, "Cloud", dst, deleteMissingInTarget=True, verifyIntegrity=True)["result"]
    assert (res["filesDeleted"], res["filesCopied"], res["errors"]) == (2, len(files), []), res
    assert tree(dst) == {**files, "mine.tmp": b"excluded"}


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_verify_integrity_fails_a_file_whose_bytes_differ(sessions, provider):
    """Uploads record each file's SHA-256 as metadata; a verified download checks it, and an
    object whose bytes do not match (or that carries none) fails with a clear error."""
    srv, root, name = sessions(provider)
    write(root / "src" / "good.txt", b"good\n")
    res = run(srv, "Files", "Cloud", verifyIntegrity=True)["result"]
    assert (res["filesCopied"], res["success"]) == (1, True), res
    r = srv.post(f"/api/v1/cloud/{provider}/download", token=srv.admin_token,
                 json={"cloudPath": f"{name}/good.txt" if provider != "local" else "good.txt",
                       "localPath": str(root / "peek.txt")})
    if provider != "local":  # the local location is its own folder, not the configured one
        assert r.status_code == 200, r.text
        assert r.json()["metadata"]["sha256"] == hashlib.sha256(b"good\n").hexdigest()
    # bytes that do not match their recorded SHA-256, and an object that carries none
    write(root / "src" / "bad.txt", b"the real bytes")
    write(root / "src" / "foreign.txt", b"no hash")
    if provider == "local":  # the location is a folder: change the object's bytes in place
        cloud_dir = root.parent / "localcloud" / name
        run(srv, "Files", "Cloud")
        obj = cloud_dir / "bad.txt"
        before = obj.stat()
        obj.write_bytes(b"tampered bytes")  # same size and date: the side record still holds
        os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.remove(root / "src" / "foreign.txt")
        write(cloud_dir / "foreign.txt", b"no hash")
    else:
        for rel, meta in (("bad.txt", {"sha256": "0" * 64}), ("foreign.txt", None)):
            body = {"cloudPath": f"{name}/{rel}", "localPath": str(root / "src" / rel)}
            if meta:
                body["metadata"] = meta
            r = srv.post(f"/api/v1/cloud/{provider}/upload", token=srv.admin_token, json=body)
            assert r.status_code == 200, r.text
    dst = root / "down"
    res = run(srv, "Cloud", dst, verifyIntegrity=True)["result"]
    assert res["success"] is False and res["filesCopied"] == 1, res
    errors = "\n".join(res["errors"])
    assert "bad.txt: integrity check failed" in errors, res
    assert "foreign.txt: cannot be verified" in errors, res
    assert tree(dst) == {"good.txt": b"good\n"}
    assert not [p for p in dst.rglob("*") if ".ferry-part-" in p.name]
    # without verifyIntegrity the same objects come down as they are
    res = run(srv, "Cloud", dst)["result"]
    assert res["success"] is True, res


@needs_node
@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_status_moves_within_one_large_file(sessions, provider):
    """bytesDone counts a large file's bytes as its parts go up (and as it comes down), not
    only when the file is done: status shows motion on one big file."""
    srv, root, name = sessions(provider)
    size = 5 * PART + 123
    write(root / "src" / "big.bin", os.urandom(size))

    def watch(sid):
        seen = set()

        def done():
            r = srv.get(f"{SESS}/{sid}/status", token=srv.admin_token)
            st = r.json()
            if st["filesDone"] == 0 and 0 < st["bytesDone"] < size:
                assert st["bytesTotal"] == size and "big.bin" in st["message"], st
                seen.add(st["bytesDone"])
            return st["status"] in ("completed", "failed") and st
        st = wait_until(done, timeout=120, interval=0.02)
        assert st and st["status"] == "completed", st
        assert (st["bytesDone"], st["filesDone"]) == (size, 1), st
        return seen

    seen_up = watch(start(srv, "Files", "Cloud"))
    assert seen_up
    # The way down is one stream, and progress is written at most ten times a second: from
    # a local emulator 25 MB can arrive within one such period, so motion is not asserted.
    watch(start(srv, "Cloud", root / "down"))
    assert (root / "down" / "big.bin").stat().st_size == size


def test_what_a_cloud_session_refuses(make_server, tmp_path):
    root = tmp_path / "files"
    (root / "src").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "src" / "inner").mkdir()
    env = {"FERRY_LOCATIONS": f"Files=folder:{root / 'src'},Cloud=s3:bucket/p,"
                              f"Disk=local:{tmp_path / 'lc'},lite=sqlite:{tmp_path / 'x.db'},"
                              f"Inside=local:{root / 'src' / 'inner'}"}
    srv = make_server("--file-root", str(root), env=env)

    def refused(source, target, status, code, why, **opts):
        body = {"sourceLocation": str(source), "targetLocation": str(target), **opts}
        r = srv.post(f"{SESS}/start", token=srv.admin_token, json=body)
        assert why in assert_v1_error(r, status, code)["details"], r.text

    # the provider of the location is not configured: 503 naming the settings
    refused("Files", "Cloud", 503, "CLOUD_ERROR", "s3-endpoint")
    refused("Cloud", "Disk", 400, "INVALID_REQUEST", "joins it to a folder")
    refused("lite", "Disk", 400, "INVALID_REQUEST", "joins it to a folder")
    refused(outside, "Disk", 403, "FORBIDDEN", "outside")
    refused("Files", "Inside", 400, "INVALID_REQUEST", "separate folders")
    refused("Inside", root, 400, "INVALID_REQUEST", "separate folders")


def test_local_location_session_for_a_user(make_server, tmp_path):
    """No emulator needed: a user's session to a local location, and the objects' keys
    that would lead out of the folder are refused on the way down."""
    root = tmp_path / "files"
    (root / "src").mkdir(parents=True)
    lc = tmp_path / "lc"
    env = {"FERRY_LOCATIONS": f"Files=folder:{root / 'src'},Disk=local:{lc}"}
    srv = make_server("--file-root", str(root), "--rate-limit", "0", env=env)
    bob = srv.create_token(role="user", user_id="bob")["token"]
    files = make_tree(root / "src")
    sid = start(srv, "Files", "Disk", token=bob)
    r = srv.get(f"{SESS}/{sid}/status", token=bob)
    assert r.status_code == 200
    st = wait_until(lambda: (s := srv.get(f"{SESS}/{sid}/status", token=bob).json())["status"]
                    in ("completed", "failed") and s, timeout=30)
    assert st and st["status"] == "completed", st
    assert tree(lc) == files
    r = srv.post(f"{SESS}/{sid}/complete", token=bob)
    assert r.status_code == 200 and r.json()["closed"] is True, r.text
    # someone else's session is not found
    alice = srv.create_token(role="user", user_id="alice")["token"]
    assert_v1_error(srv.get(f"{SESS}/{sid}/status", token=alice), 404, "NOT_FOUND")
    dst = root / "down"
    run(srv, "Disk", dst)
    assert tree(dst) == files


def prometheus(srv):
    r = srv.get("/metrics", token=srv.admin_token)
    assert r.status_code == 200, r.text
    values = {}
    for line in r.text.splitlines():
        if line.startswith(("ferry_sync_", "ferry_cloud_")):
            name, value = line.rsplit(" ", 1)
            values[name] = int(value)
    return values


@needs_node
def test_metrics_count_cloud_calls_exactly(sessions, emulators):  # noqa: F811
    """Each upload or download call is one sync of its bytes; cloudStorageUsage is the bytes
    stored (an object uploaded again replaces its old size), the same in /metrics."""
    srv, root, name = sessions("s3")
    (root / "a.bin").write_bytes(os.urandom(30_000))
    (root / "b.bin").write_bytes(os.urandom(12_000))
    key = f"{name}/m.bin"
    m0, p0 = metrics(srv), prometheus(srv)

    def call(action, local):
        return srv.post(f"/api/v1/cloud/s3/{action}", token=srv.admin_token,
                        json={"cloudPath": key, "localPath": str(root / local)})

    assert call("upload", "a.bin").status_code == 200
    m1 = metrics(srv)
    assert m1["totalSyncOperations"] - m0["totalSyncOperations"] == 1
    assert m1["successfulSyncs"] - m0["successfulSyncs"] == 1
    assert m1["totalDataTransferred"] - m0["totalDataTransferred"] == 30_000
    assert m1["cloudStorageUsage"]["s3"] - m0["cloudStorageUsage"]["s3"] == 30_000
    assert m1["cloudStorageUsage"]["azure"] == m0["cloudStorageUsage"]["azure"]

    assert call("upload", "b.bin").status_code == 200  # the same key, smaller
    assert call("download", "c.bin").status_code == 200
    m2 = metrics(srv)
    assert m2["totalSyncOperations"] - m1["totalSyncOperations"] == 2
    assert m2["totalDataTransferred"] - m1["totalDataTransferred"] == 2 * 12_000
    assert m2["cloudStorageUsage"]["s3"] - m0["cloudStorageUsage"]["s3"] == 12_000
    assert m2["failedSyncs"] == m0["failedSyncs"]

    emulators["s3"].stop(signal.SIGTERM)
    try:
        assert call("download", "d.bin").status_code == 503
    finally:
        emulators["s3"].start()
    m3 = metrics(srv)
    assert m3["failedSyncs"] - m2["failedSyncs"] == 1
    assert m3["totalSyncOperations"] - m2["totalSyncOperations"] == 1

    p3 = prometheus(srv)
    assert p3['ferry_sync_operations_total{result="success"}'] - \
        p0['ferry_sync_operations_total{result="success"}'] == 3
    assert p3['ferry_sync_operations_total{result="failure"}'] - \
        p0['ferry_sync_operations_total{result="failure"}'] == 1
    assert p3["ferry_sync_transferred_bytes_total"] - \
        p0["ferry_sync_transferred_bytes_total"] == 30_000 + 2 * 12_000
    assert p3['ferry_cloud_stored_bytes{provider="s3"}'] == m3["cloudStorageUsage"]["s3"]
    assert p3['ferry_cloud_transferred_bytes_total{provider="s3"}'] - \
        p0['ferry_cloud_transferred_bytes_total{provider="s3"}'] == 30_000 + 2 * 12_000


@needs_node
def test_download_killed_midway_runs_again_to_the_same_bytes(sessions):
    """ferry dies while a session writes a large object into the folder: the partial file
    stays beside its target (never a torn target), and the session, run again when the
    server is back, completes it; nothing partial is left."""
    srv, root, name = sessions("s3")
    files = make_tree(root / "src", big=3 * 1024 * 1024 + 11)
    run(srv, "Files", "Cloud")
    dst = root / "down"
    srv.stop()
    srv.env["FERRY_CRASH_AT"] = "treesync_download_write:20"
    srv.start()
    sid = start(srv, "Cloud", dst)
    assert srv.wait_exit(60) == -signal.SIGKILL
    del srv.env["FERRY_CRASH_AT"]
    assert not (dst / "big" / "blob.bin").exists()
    partial = [p for p in dst.rglob("*") if ".ferry-part-" in p.name]
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(files["big/blob.bin"])
    srv.start()
    st = finished(srv, sid, timeout=90)
    assert st["status"] == "completed" and st["result"]["errors"] == [], st
    assert 0 < st["result"]["bytesResumed"] < len(files["big/blob.bin"]), st["result"]
    assert tree(dst) == files
    assert not [p for p in dst.rglob("*") if ".ferry-part-" in p.name]


class HostileS3(http.server.ThreadingHTTPServer):
    """An S3 endpoint whose listings are the given (key, size) objects in one page that
    says it is truncated (IsTruncated true) without the token of the next page, as a
    hostile or broken server (or one that ignores list-type=2) answers, or with token as
    the next page's token, every time (token "": one whole page); every object's bytes
    are b"aaa"."""

    def __init__(self, objects, token=None):
        self.objects, self.token, self.listed = objects, token, 0
        super().__init__(("127.0.0.1", 0), HostileS3Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class HostileS3Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"e1"')
        self.send_header("Last-Modified", "Wed, 02 Dec 2026 10:00:00 GMT")
        self.end_headers()
        return body

    def do_HEAD(self):
        self.answer(b"aaa")

    def do_GET(self):
        if "list-type=2" in self.path:
            items = "".join(f"<Contents><Key>{k}</Key><Size>{n}</Size><ETag>\"e1\"</ETag>"
                            "<LastModified>2026-12-02T10:00:00.000Z</LastModified></Contents>"
                            for k, n in self.server.objects)
            token = self.server.token
            more = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
            truncated = "false" if token == "" else "true"
            body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
                    f"<IsTruncated>{truncated}</IsTruncated>{more}{items}"
                    "</ListBucketResult>").encode()
            self.server.listed += 1
        else:
            body = b"aaa"
        self.wfile.write(self.answer(body))


@pytest.mark.parametrize("objects,token", [([("p/a.txt", 3)], None),
                                           ([("p/a.txt", 3), ("x", 3)], None),
                                           ([("p/a.txt", 3)], "same")],
                         ids=["truncated", "outside-the-prefix", "same-token-again"])
def test_a_hostile_listing_deletes_nothing_on_the_way_down(make_server, tmp_path, objects,
                                                           token):
    """A download with deleteMissingInTarget removes the folder's files the location lacks:
    a listing cut short (truncated, with no token to go on), naming keys outside the
    prefix, or going round in circles (the same token again) is no account of what the
    location lacks, so the session fails (at once) and deletes nothing."""
    root = tmp_path / "files"
    dst = root / "down"
    write(dst / "a.txt", b"old")
    write(dst / "later.txt", b"on the next page of the listing")
    s3 = HostileS3(objects, token)
    try:
        env = {"FERRY_LOCATIONS": "Cloud=s3:bucket/p", "FERRY_S3_ENDPOINT": s3.url,
               "FERRY_S3_REGION": "us-east-1", "FERRY_S3_ACCESS_KEY_ID": "k",
               "FERRY_S3_SECRET_ACCESS_KEY": "s", "FERRY_S3_BUCKET": "bucket"}
        srv = make_server("--file-root", str(root), "--cloud-timeout", "3", "--rate-limit", "0",
                          env=env)
        st = finished(srv, start(srv, "Cloud", dst, deleteMissingInTarget=True))
    finally:
        s3.shutdown()
        s3.server_close()
    assert st["status"] == "failed", st
    assert tree(dst)["later.txt"] == b"on the next page of the listing"
    assert s3.listed <= 2, s3.listed


def test_an_object_longer_than_listed_is_not_stored(make_server, tmp_path):
    """The listing says how large each object is, and the download asks for that version
    (If-Match): bytes beyond that size (a broken or hostile server, or a huge
    Content-Length) end the file's download at once, and nothing is stored under its
    name."""
    root = tmp_path / "files"
    dst = root / "down"
    dst.mkdir(parents=True)
    s3 = HostileS3([("p/a.txt", 1)], "")
    try:
        env = {"FERRY_LOCATIONS": "Cloud=s3:bucket/p", "FERRY_S3_ENDPOINT": s3.url,
               "FERRY_S3_REGION": "us-east-1", "FERRY_S3_ACCESS_KEY_ID": "k",
               "FERRY_S3_SECRET_ACCESS_KEY": "s", "FERRY_S3_BUCKET": "bucket"}
        srv = make_server("--file-root", str(root), "--cloud-timeout", "3", "--rate-limit", "0",
                          env=env)
        st = finished(srv, start(srv, "Cloud", dst))
    finally:
        s3.shutdown()
        s3.server_close()
    res = st["result"]
    assert res["filesCopied"] == 0 and "a.txt: " in "\n".join(res["errors"]), st
    assert tree(dst) == {}, tree(dst)


def test_delete_missing_spares_another_location_inside_the_target(make_server, tmp_path):
    """An upload with deleteMissingInTarget removes the objects the folder lacks, but not
    those of another configured location that lies inside the target (a backup
    repository under the same bucket or folder): they are that location's, not this
    one's."""
    root = tmp_path / "files"
    (root / "src").mkdir(parents=True)
    lc = tmp_path / "lc"
    write(lc / "backups" / "config", b"another location's repository")
    write(lc / "stale.txt", b"this location's own: goes")
    env = {"FERRY_LOCATIONS": f"Files=folder:{root / 'src'},Disk=local:{lc},"
                              f"Vault=local:{lc / 'backups'}"}
    srv = make_server("--file-root", str(root), "--rate-limit", "0", env=env)
    write(root / "src" / "a.txt", b"a")
    res = run(srv, "Files", "Disk", deleteMissingInTarget=True)["result"]
    assert (res["filesCopied"], res["filesDeleted"]) == (1, 1), res
    assert tree(lc) == {"a.txt": b"a", "backups/config": b"another location's repository"}
