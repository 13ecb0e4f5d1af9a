"""Two `ferry serve` nodes on one PostgreSQL database sharing the blobs/ and uploads/
folders (the second node's are links to the first's), as behind a load balancer:
collection on one node never takes a blob another node's upload is naming, a tus PATCH
retried on the other node while the first is still open is refused (423) instead of
writing the same bytes twice, and what a node killed mid-completion left is finished by
the other at once.
"""

import base64
import hashlib
import os
import random
import signal
import socket
import threading

import pytest
import requests

from conftest import wait_until

pytestmark = pytest.mark.postgres_only

V1 = "/api/v1/sync"
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def rand_bytes(n, seed):
    return random.Random(seed).randbytes(n)


@pytest.fixture
def nodes(_servers, pg_cluster, tmp_path):
    """start(env_a=None): nodes A and B on one database with shared folders."""

    def start(env_a=None):
        a = _servers("postgres", "--purge-interval", "0", "--blob-grace", "0", pg=pg_cluster,
                     env=env_a)
        b_dir = tmp_path / "node-b"
        b_dir.mkdir()
        for sub in ("blobs", "uploads"):
            os.symlink(os.path.join(a.data_dir, sub), b_dir / sub)
        b = _servers("postgres", "--purge-interval", "0", "--blob-grace", "0", pg=pg_cluster,
                     db_url=a.db_url, data_dir=str(b_dir))
        b.pg, b.db_name = a.pg, a.db_name
        return a, b

    return start


def admin(a):
    return a.admin_token  # one database: node A's first token works on both


def user_token(a):
    r = a.post("/api/v1/admin/tokens", token=admin(a),
               json={"name": "t", "role": "user", "userId": "bob"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def purge(node, a):
    r = node.post("/api/v1/admin/purge", token=admin(a))
    assert r.status_code == 200, r.text
    return r.json()


def chunked(node, tok, path, data, chunk=16 * 1024):
    r = node.post(f"{V1}/upload", token=tok,
                  json={"path": path, "size": len(data), "chunk_size": chunk})
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    for i in range(r.json()["chunkCount"]):
        r = node.put(f"{V1}/upload/{uid}/chunks/{i}", token=tok,
                     data=data[i * chunk:(i + 1) * chunk])
        assert r.status_code == 200, r.text
    return node.post(f"{V1}/upload/{uid}/complete", token=tok)


def tus_create(node, tok, length, path):
    meta = "path " + base64.b64encode(path.encode()).decode()
    r = node.post("/tus/", token=tok, headers={**TUS, "Upload-Length": str(length),
                                               "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    return r.headers["Location"]


def tus_patch(node, tok, loc, offset, data):
    return node.request("PATCH", loc, token=tok, data=data,
                        headers={**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS})


def assert_download(node, tok, path, data):
    r = node.get(f"{V1}/download/{path}", token=tok)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    assert r.content == data, path


def test_uploads_completed_while_the_other_node_collects(nodes):
    """Node A completes uploads (new content, and content whose blob nothing names any
    more, the deduplication race) while node B collects blobs in a loop: every upload
    answered 200 downloads whole from either node."""
    a, b = nodes()
    tok = user_token(a)
    stop = threading.Event()
    collected = []

    def collector():
        while not stop.is_set():
            collected.append(purge(b, a)["blobs_collected"])

    t = threading.Thread(target=collector)
    t.start()
    done = {}
    try:
        for i in range(30):
            # new content each round, uploaded, its entry deleted (so its blob is
            # collectable), then uploaded again while B collects: the deduplication race
            shared = rand_bytes(40 * 1024, f"shared-{i}")
            path = f"mn/shared-{i}.bin"
            assert chunked(a, tok, path, shared).status_code == 200
            done[path] = shared
            assert a.delete(f"/api/v1/files/{path}", token=tok).status_code == 200
            del done[path]
            path = f"mn/again-{i}.bin"
            r = chunked(a, tok, path, shared) if i % 2 else None
            if r is None:
                loc = tus_create(a, tok, len(shared), path)
                r = tus_patch(a, tok, loc, 0, shared)
            assert r.status_code in (200, 204), r.text
            done[path] = shared
            fresh = rand_bytes(20 * 1024, i)
            assert chunked(a, tok, f"mn/fresh-{i}.bin", fresh).status_code == 200
            done[f"mn/fresh-{i}.bin"] = fresh
    finally:
        stop.set()
        t.join(30)
    assert sum(collected) > 0, "the collector never collected anything: no race was tried"
    purge(b, a)
    for path, data in done.items():
        assert_download(a, tok, path, data)
        assert_download(b, tok, path, data)


def test_blob_of_an_upload_a_dead_node_was_completing_survives_collection(nodes):
    """Node A dies right after putting a tus upload's blob in place (its data file is
    gone, no entry yet). Node B's collection keeps the blob (the claim), and B completes
    the upload on the next HEAD, at once (A's lease died with it)."""
    a, b = nodes(env_a={"FERRY_CRASH_AT": "complete.after_rename"})
    tok = user_token(a)
    data = rand_bytes(100 * 1024, "dead")
    loc = tus_create(a, tok, len(data), "mn/dead.bin")
    try:
        r = tus_patch(a, tok, loc, 0, data)
    except requests.exceptions.ConnectionError:
        r = None
    assert r is None and a.wait_exit(10) == -signal.SIGKILL
    assert purge(b, a)["blobs_collected"] == 0
    h = b.request("HEAD", loc, token=tok, headers=TUS)
    assert h.status_code == 200 and h.headers["Upload-Offset"] == str(len(data))
    assert_download(b, tok, "mn/dead.bin", data)
    r = b.get("/api/v1/files/mn/dead.bin", token=tok)
    assert r.json()["version"] == 1


def test_chunked_complete_left_by_a_dead_node_finishes_on_the_other(nodes):
    a, b = nodes(env_a={"FERRY_CRASH_AT": "complete.after_claim"})
    tok = user_token(a)
    data = rand_bytes(64 * 1024, "chunked-dead")
    try:
        r = chunked(a, tok, "mn/chunked-dead.bin", data)
    except requests.exceptions.ConnectionError:
        r = None
    assert r is None and a.wait_exit(10) == -signal.SIGKILL
    uid = b.db_query("SELECT id FROM ferry_uploads")[0][0]
    r = b.post(f"{V1}/upload/{uid}/complete", token=tok)
    assert r.status_code == 200, r.text
    assert_download(b, tok, "mn/chunked-dead.bin", data)


def test_patch_retried_on_the_other_node_while_the_first_is_open(nodes):
    """A PATCH is open on node A (part of its body sent); the client, thinking it lost,
    retries the same PATCH on node B: B refuses it (423) rather than writing beside A.
    Once A's PATCH ends, the retry goes through from the offset A reached, and the file
    holds exactly the bytes sent, under their own hash."""
    a, b = nodes()
    tok = user_token(a)
    data = rand_bytes(1024 * 1024, "retry")
    loc = tus_create(a, tok, len(data), "mn/retry.bin")
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: {OCTETS}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    sock.sendall(head.encode() + data[:256 * 1024])
    part = os.path.join(a.data_dir, "uploads", loc.rsplit("/", 1)[1], "data")
    assert wait_until(lambda: os.path.getsize(part) >= 256 * 1024)
    r = tus_patch(b, tok, loc, 0, data)
    assert r.status_code == 423, r.text
    sock.close()  # the first PATCH ends with what arrived
    offset = wait_until(lambda: (lambda h: h.status_code == 200 and
                                 int(h.headers["Upload-Offset"]))(
        b.request("HEAD", loc, token=tok, headers=TUS)) or None, timeout=10)
    assert offset == 256 * 1024, offset
    r = tus_patch(b, tok, loc, offset, data[offset:])
    assert r.status_code == 204, r.text
    assert_download(a, tok, "mn/retry.bin", data)
    r = a.get("/api/v1/files/mn/retry.bin", token=tok)
    assert r.json()["sha256"] == sha(data)
