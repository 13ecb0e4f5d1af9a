"""Stateless nodes: two `ferry serve` nodes on one PostgreSQL database and one S3 bucket
(s3rver), with no folder in common (--blob-store s3://bucket/prefix). Devices switch node
on every request: chunks of one upload land on both nodes, completions and ranged
downloads on either, while one node is killed -9 and started again; afterwards every
acknowledged upload downloads byte-identical from both, none is lost or doubled, and
identical contents are stored once. Also: redirect and proxy downloads, and collection
on one node sparing a blob another node's upload has claimed.
"""

import base64
import hashlib
import os
import random
import re
import signal
import threading
import time
import uuid

import pytest
import requests

from conftest import wait_until
from test_cloud import BUCKET, S3_KEY, S3_SECRET, Emulator, emulators  # noqa: F401

pytestmark = pytest.mark.postgres_only

V1 = "/api/v1/sync"
CHUNK = 16 * 1024


def sha(data):
    return hashlib.sha256(data).hexdigest()


def s3_env(emus):
    return {"FERRY_S3_ENDPOINT": f"http://127.0.0.1:{emus['s3'].port}",
            "FERRY_S3_REGION": "us-east-1", "FERRY_S3_ACCESS_KEY_ID": S3_KEY,
            "FERRY_S3_SECRET_ACCESS_KEY": S3_SECRET}


@pytest.fixture
def s3nodes(_servers, pg_cluster, emulators):  # noqa: F811
    """start(*flags) -> (a, b, prefix): two nodes, own data folders, one bucket prefix."""

    def start(*flags, env_a=None):
        prefix = f"nodes-{uuid.uuid4().hex[:8]}"
        common = ("--purge-interval", "0", "--blob-grace", "0",
                  "--blob-store", f"s3://{BUCKET}/{prefix}") + flags
        env = s3_env(emulators)
        a = _servers("postgres", *common, pg=pg_cluster, env={**env, **(env_a or {})})
        b = _servers("postgres", *common, pg=pg_cluster, db_url=a.db_url, env=env)
        b.pg, b.db_name = a.pg, a.db_name
        return a, b, prefix

    return start


def url(node, path):
    return f"{node.scheme}://127.0.0.1:{node.port}{path}"


def call(nodes, turn, method, path, tok, again=(409, 423, 503), **kw):
    """One request on nodes[turn % 2], moving to the other node while one is down, and
    asking again while the answer is one of again."""
    headers = {"Authorization": f"Bearer {tok}", **kw.pop("headers", {})}
    for attempt in range(60):
        node = nodes[(turn + attempt) % 2]
        try:
            r = requests.request(method, url(node, path), headers=headers, timeout=30, **kw)
        except requests.ConnectionError:
            time.sleep(0.1)
            continue
        if r.status_code in again:  # another completes it, or a node is down
            time.sleep(0.1)
            continue
        return r
    raise AssertionError(f"{method} {path}: no node answered")


def user_token(a, user):
    r = a.post("/api/v1/admin/tokens", token=a.admin_token,
               json={"name": user, "role": "user", "userId": user})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def upload(nodes, turn, tok, path, data):
    """A chunked upload whose every request goes to the other node than the last."""
    r = call(nodes, turn, "POST", f"{V1}/upload", tok,
             json={"path": path, "size": len(data), "chunk_size": CHUNK, "sha256": sha(data)})
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    for i in range(r.json()["chunkCount"]):
        turn += 1
        r = call(nodes, turn, "PUT", f"{V1}/upload/{uid}/chunks/{i}", tok,
                 data=data[i * CHUNK:(i + 1) * CHUNK])
        assert r.status_code == 200, r.text
    for _ in range(3):
        turn += 1
        r = call(nodes, turn, "POST", f"{V1}/upload/{uid}/complete", tok)
        lost = re.search(r"chunk (\d+) was lost", r.text) if r.status_code == 400 else None
        if not lost:  # a chunk whose put a killed node never finished is sent again
            break
        i = int(lost.group(1))
        r = call(nodes, turn, "PUT", f"{V1}/upload/{uid}/chunks/{i}", tok,
                 data=data[i * CHUNK:(i + 1) * CHUNK])
        assert r.status_code == 200, r.text
    assert r.status_code == 200, r.text
    return r.json()


TUS = {"Tus-Resumable": "1.0.0"}


def tus_upload(nodes, turn, tok, path, data, piece=24 * 1024):
    """A tus upload whose every PATCH (and offset check) goes to another node."""
    meta = "path " + base64.b64encode(path.encode()).decode()
    r = call(nodes, turn, "POST", "/tus/", tok,
             headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    offset = 0
    while offset < len(data):
        turn += 1
        r = call(nodes, turn, "PATCH", loc, tok, again=(423, 503), data=data[offset:offset + piece],
                 headers={**TUS, "Upload-Offset": str(offset),
                          "Content-Type": "application/offset+octet-stream"})
        if r.status_code != 204:  # a node died mid-PATCH: ask another where to go on
            r = call(nodes, turn + 1, "HEAD", loc, tok, headers=TUS)
            assert r.status_code == 200, r.text
        offset = int(r.headers["Upload-Offset"])
    return loc


def ranged(nodes, turn, tok, path, data):
    start = random.Random(path).randrange(len(data))
    r = call(nodes, turn, "GET", f"{V1}/download/{path}", tok,
             headers={"Range": f"bytes={start}-"})
    assert r.status_code == 206, (path, r.status_code, r.text[:200])
    assert r.content == data[start:], path


def stored_blobs(emus, prefix):
    """The blob objects s3rver holds under prefix (its folder names each object)."""
    root = os.path.join(emus["s3"].data_dir, BUCKET, prefix)
    names = set()
    for _, _, files in os.walk(root):
        names.update(f.split(".")[0] for f in files if len(f.split(".")[0]) == 64)
    return names


def test_devices_switch_nodes_while_one_is_killed(s3nodes, emulators):  # noqa: F811
    a, b, prefix = s3nodes()
    nodes = [a, b]
    shared = random.Random("shared").randbytes(40 * 1024)  # every device uploads it too
    acked, errors = {}, []
    lock = threading.Lock()

    def device(n):
        tok = user_token(a, f"dev{n}")
        try:
            for i in range(8):
                data = shared if i == 3 else random.Random(f"{n}-{i}").randbytes(
                    random.Random(f"{n}-{i}").randrange(1, 70 * 1024))
                path = f"d{n}/{i}.bin"
                if i % 2:
                    tus_upload(nodes, n + i, tok, path, data)
                else:
                    assert upload(nodes, n + i, tok, path, data)["sha256"] == sha(data)
                ranged(nodes, n + i + 1, tok, path, data)
                with lock:
                    acked[(n, path)] = (tok, data)
        except Exception as e:  # reported below with the others
            errors.append(repr(e))

    threads = [threading.Thread(target=device, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(acked) >= 6, timeout=60)
    a.stop(signal.SIGKILL)  # mid-run: requests on A fail and move to B
    killed_at = len(acked)
    time.sleep(1)
    a.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert killed_at < 32 and len(acked) == 32
    for (n, path), (tok, data) in acked.items():
        for turn in (0, 1):
            r = call(nodes, turn, "GET", f"{V1}/download/{path}", tok)
            assert r.status_code == 200 and r.content == data, (n, path)
    hashes = set()
    for n in range(4):  # 0 lost, 0 doubled: each device lists its 8 files, once, version 1
        tok = next(t for (m, _), (t, _) in acked.items() if m == n)
        r = call(nodes, n, "GET", "/api/v1/files", tok, params={"prefix": f"d{n}/"})
        files = r.json()["files"]
        assert sorted(f["path"] for f in files) == [f"d{n}/{i}.bin" for i in range(8)]
        assert all(f["version"] == 1 for f in files), files
        hashes |= {f["sha256"] for f in files}
    assert stored_blobs(emulators, prefix) == hashes  # the shared content once
    assert not os.listdir(os.path.join(b.data_dir, "uploads"))  # nothing staged on a node
    # Completed uploads leave no staged part behind, except when the node that completed
    # one was killed between its commit and the clean-up: those parts belong to a
    # completed upload and go with it when it expires (housekeeping).
    staging = os.path.join(emulators["s3"].data_dir, BUCKET, prefix, "staging", "uploads")
    left = {d for d in os.listdir(staging) if not d.startswith(".")} \
        if os.path.isdir(staging) else set()
    left = {d for d in left
            if any(not f.startswith(".") for _, _, fs in os.walk(os.path.join(staging, d))
                   for f in fs)}
    for upload_id in left:
        rows = a.db_query(f"SELECT completed_at FROM ferry_uploads WHERE id = '{upload_id}'")
        assert rows and rows[0][0] is not None, (upload_id, rows)


def test_tus_patch_cut_by_a_killed_node_resumes_on_the_other(s3nodes):
    """Node A dies (kill -9) right after the first 4 MiB checkpoint of a PATCH: node B
    answers that offset, and the rest sent to B completes the file byte-identical."""
    # parts of 5M: the 6 MiB blob goes to S3 as a multipart upload
    a, b, _ = s3nodes("--cloud-part-size", "5M", env_a={"FERRY_CRASH_AT": "tus.patch.checkpoint"})
    tok = user_token(a, "bob")
    data = random.Random("cut").randbytes(6 * 1024 * 1024)
    meta = "path " + base64.b64encode(b"cut.bin").decode()
    r = a.post("/tus/", token=tok,
               headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    loc = r.headers["Location"]
    with pytest.raises(requests.ConnectionError):
        requests.patch(url(a, loc), data=data, timeout=30,
                       headers={**TUS, "Authorization": f"Bearer {tok}", "Upload-Offset": "0",
                                "Content-Type": "application/offset+octet-stream"})
    assert a.wait_exit(10) == -signal.SIGKILL
    r = b.request("HEAD", loc, token=tok, headers=TUS)
    assert r.status_code == 200, r.text
    offset = int(r.headers["Upload-Offset"])  # the checkpoint: past 4 MiB, before the end
    assert 4 * 1024 * 1024 <= offset < len(data), offset
    r = b.request("PATCH", loc, token=tok, data=data[offset:],
                  headers={**TUS, "Upload-Offset": str(offset),
                           "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    r = b.get(f"{V1}/download/cut.bin", token=tok)
    assert r.status_code == 200 and r.content == data


def test_proxy_and_redirect_downloads(s3nodes):
    a, b, _ = s3nodes("--blob-download", "redirect")
    tok = user_token(a, "bob")
    data = random.Random("dl").randbytes(100 * 1024)
    upload([a, b], 0, tok, "dl.bin", data)
    r = requests.get(url(b, f"{V1}/download/dl.bin"), allow_redirects=False,
                     headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 307, r.text
    link = r.headers["Location"]
    assert "X-Amz-Signature=" in link
    r = requests.get(link, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    # proxy (the default): ferry streams the range from S3 itself
    c = a.__class__(os.path.join(os.path.dirname(a.data_dir), "proxy"), a.db_url,
                    [x for x in a.args if x not in ("--blob-download", "redirect")], a.env,
                    backend="postgres")
    c.start()
    try:
        r = requests.get(url(c, f"{V1}/download/dl.bin"), allow_redirects=False,
                         headers={"Authorization": f"Bearer {tok}", "Range": "bytes=-500"})
        assert r.status_code == 206, r.text
        assert r.headers["Content-Range"] == f"bytes {len(data) - 500}-{len(data) - 1}/{len(data)}"
        assert r.content == data[-500:]
    finally:
        c.stop()


def test_collection_on_one_node_spares_a_blob_claimed_on_the_other(s3nodes, emulators):  # noqa: F811
    a, b, prefix = s3nodes()
    tok = user_token(a, "bob")
    data = random.Random("claimed").randbytes(30 * 1024)
    entry = upload([a, b], 0, tok, "c.bin", data)
    hexd = entry["sha256"]
    assert a.delete("/api/v1/files/c.bin", token=tok).status_code == 200
    # an upload on node A has claimed the blob (it is about to name it in an entry)
    a.db_exec(f"INSERT INTO ferry_blob_claims(upload_id, sha256, created_at)"
              f" VALUES ('upload-on-a', '{hexd}', 0)")
    r = b.post("/api/v1/admin/purge", token=a.admin_token)
    assert r.status_code == 200 and r.json()["blobs_collected"] == 0, r.text
    assert hexd in stored_blobs(emulators, prefix)
    a.db_exec("DELETE FROM ferry_blob_claims WHERE upload_id = 'upload-on-a'")
    r = b.post("/api/v1/admin/purge", token=a.admin_token)
    assert r.status_code == 200 and r.json()["blobs_collected"] == 1, r.text
    assert hexd not in stored_blobs(emulators, prefix)


def test_a_torn_blob_object_is_put_again(s3nodes, emulators):  # noqa: F811
    """A node killed while it puts a blob can leave part of the object behind: s3rver
    writes a put straight into the object's file (so does a put still running). An upload
    of the same content must not take that object for the blob: it puts it again whole."""
    a, b, prefix = s3nodes()
    tok = user_token(a, "bob")
    data = random.Random("torn").randbytes(50 * 1024)
    h = sha(data)
    assert upload([a, b], 0, tok, "first.bin", data)["sha256"] == h
    obj = os.path.join(emulators["s3"].data_dir, BUCKET, prefix, h[:2], h[2:4],
                       h + "._S3rver_object")
    with open(obj, "r+b") as f:
        f.truncate(len(data) // 2)  # what a put cut short leaves
    assert upload([a, b], 1, tok, "second.bin", data)["sha256"] == h
    assert os.path.getsize(obj) == len(data)
    for path in ("first.bin", "second.bin"):
        r = call([a, b], 0, "GET", f"{V1}/download/{path}", tok)
        assert r.status_code == 200 and r.content == data, path
