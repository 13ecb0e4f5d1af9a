"""Attacks on stateless nodes (two nodes, one PostgreSQL, one s3rver bucket): collection on
one node racing a re-upload of the same bytes on the other, a node killed at each crash
point of a completion, and ranged downloads of edge-case files, proxied and redirected.
After every answered success the bytes must read back whole and by range from both nodes.
"""

import base64
import os
import random
import signal
import socket
import stat
import threading
import time

import pytest
import requests

from test_cloud import emulators  # noqa: F401
from test_multinode_s3 import (CHUNK, TUS, V1, call, s3nodes, sha, upload,  # noqa: F401
                               url, user_token)

pytestmark = pytest.mark.postgres_only


def get(node, path, headers):
    """GET, asking again on a 503 for up to 2 s: s3rver writes a put straight into the
    object's file, so while another upload of the same bytes puts the blob again (it found
    it collected, or part-written) a read of it can come up short. S3's puts are atomic;
    a blob really lost stays lost, and fails here all the same."""
    for _ in range(20):
        r = requests.get(url(node, path), headers=headers, timeout=30)
        if r.status_code != 503:
            break
        time.sleep(0.1)
    return r


def readable_everywhere(nodes, tok, path, data):
    for node in nodes:
        r = get(node, f"{V1}/download/{path}", {"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, (node.port, path, r.status_code, r.text[:300])
        assert r.content == data, (node.port, path)
        if data:
            start = len(data) // 3
            r = get(node, f"{V1}/download/{path}",
                    {"Authorization": f"Bearer {tok}", "Range": f"bytes={start}-{len(data) - 2}"})
            assert r.status_code == 206, (node.port, path, r.status_code, r.text[:300])
            assert r.content == data[start:len(data) - 1], path


def test_reupload_after_delete_races_collection_on_the_other_node(s3nodes):
    """A file is deleted, and while node B collects unreferenced blobs (grace 0) node A
    takes an upload of the same bytes: the dedup finds the blob B is about to remove."""
    a, b, _ = s3nodes()
    tok = user_token(a, "bob")
    data = random.Random("again").randbytes(40 * 1024)
    for i in range(12):
        upload([a, b], i, tok, "same.bin", data)
        assert a.delete("/api/v1/files/same.bin", token=tok).status_code == 200
        stop = threading.Event()
        errors = []

        def collect():
            while not stop.is_set():
                r = b.post("/api/v1/admin/purge", token=a.admin_token)
                if r.status_code != 200:
                    errors.append(r.text)

        t = threading.Thread(target=collect)
        t.start()
        try:
            upload([a, a], 0, tok, "same.bin", data)
        finally:
            stop.set()
            t.join()
        assert not errors, errors
        readable_everywhere([a, b], tok, "same.bin", data)
        b.post("/api/v1/admin/purge", token=a.admin_token)
        readable_everywhere([a, b], tok, "same.bin", data)
        assert a.delete("/api/v1/files/same.bin", token=tok).status_code == 200


COMPLETE_POINTS = ["complete.before_blob", "complete.after_claim", "complete.after_rename",
                   "complete.after_commit"]


@pytest.mark.parametrize("point", COMPLETE_POINTS)
def test_chunked_completion_killed_at_each_point_finishes_on_the_other_node(s3nodes, point):
    a, b, _ = s3nodes(env_a={"FERRY_CRASH_AT": point})
    tok = user_token(a, "bob")
    data = random.Random(point).randbytes(3 * CHUNK + 100)
    r = b.post(f"{V1}/upload", token=tok,
               json={"path": "k.bin", "size": len(data), "chunk_size": CHUNK, "sha256": sha(data)})
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    for i in range(4):
        node = (a, b)[i % 2]
        r = node.put(f"{V1}/upload/{uid}/chunks/{i}", token=tok,
                     data=data[i * CHUNK:(i + 1) * CHUNK])
        assert r.status_code == 200, r.text
    with pytest.raises(requests.ConnectionError):
        a.post(f"{V1}/upload/{uid}/complete", token=tok)
    assert a.wait_exit(10) == -signal.SIGKILL
    r = call([b, b], 0, "POST", f"{V1}/upload/{uid}/complete", tok)
    assert r.status_code == 200, r.text
    a.env.pop("FERRY_CRASH_AT")
    a.start()
    readable_everywhere([a, b], tok, "k.bin", data)
    b.post("/api/v1/admin/purge", token=a.admin_token)
    a.post("/api/v1/admin/purge", token=a.admin_token)
    readable_everywhere([a, b], tok, "k.bin", data)


@pytest.mark.parametrize("point", ["tus.patch.before_complete", "tus.patch.before_settle",
                                   "complete.after_claim", "complete.after_rename"])
def test_tus_final_patch_killed_at_each_point_finishes_on_the_other_node(s3nodes, point):
    a, b, _ = s3nodes(env_a={"FERRY_CRASH_AT": point})
    tok = user_token(a, "bob")
    data = random.Random(point).randbytes(70 * 1024)
    meta = "path " + base64.b64encode(b"t.bin").decode()
    r = b.post("/tus/", token=tok,
               headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    half = len(data) // 2
    r = b.request("PATCH", loc, token=tok, data=data[:half],
                  headers={**TUS, "Upload-Offset": "0",
                           "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    try:
        r = a.request("PATCH", loc, token=tok, data=data[half:],
                      headers={**TUS, "Upload-Offset": str(half),
                               "Content-Type": "application/offset+octet-stream"})
    except requests.ConnectionError:
        r = None
    assert r is None, f"node A answered {r.status_code} {r.text!r} instead of dying"
    assert a.wait_exit(10) == -signal.SIGKILL
    for _ in range(100):
        r = b.request("HEAD", loc, token=tok, headers=TUS)
        if r.status_code != 423:
            break
    assert r.status_code == 200, r.text
    offset = int(r.headers["Upload-Offset"])
    if offset < len(data):
        r = b.request("PATCH", loc, token=tok, data=data[offset:],
                      headers={**TUS, "Upload-Offset": str(offset),
                               "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
    a.env.pop("FERRY_CRASH_AT")
    a.start()
    readable_everywhere([a, b], tok, "t.bin", data)


@pytest.mark.parametrize("mode", ["proxy", "redirect"])
def test_range_edges_on_s3(s3nodes, mode):
    a, b, _ = s3nodes("--blob-download", mode)
    tok = user_token(a, "bob")
    data = random.Random("edges").randbytes(10 * 1024)
    upload([a, b], 0, tok, "e.bin", data)
    meta = "path " + base64.b64encode(b"empty.bin").decode()
    r = a.post("/tus/", token=tok,
               headers={**TUS, "Upload-Length": "0", "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    h = {"Authorization": f"Bearer {tok}"}
    # (not bytes=0-0: s3rver takes an end of 0 for "to the end")
    cases = [("bytes=1-1", 206, data[1:2]), ("bytes=-1", 206, data[-1:]),
             (f"bytes={len(data) - 1}-", 206, data[-1:]),
             (f"bytes=0-{len(data) * 2}", 206, data),
             (f"bytes={len(data)}-", 416, None), ("bytes=-0", 416, None),
             ("bytes=5-2", 200, data), ("bytes=abc", 200, data)]
    if mode == "redirect":  # the range goes to s3rver, which knows no suffix ranges and
        # refuses what ferry ignores: only what ferry itself answers, and plain ranges
        cases = [c for c in cases if not c[0].startswith("bytes=-") and c[1] != 200]
    for node in (a, b):
        for rng, status, body in cases:
            r = requests.get(url(node, f"{V1}/download/e.bin"), headers={**h, "Range": rng},
                             timeout=30)
            assert r.status_code == status, (mode, rng, r.status_code, r.text[:200])
            if body is not None:
                assert r.content == body, (mode, rng)
        r = requests.get(url(node, f"{V1}/download/empty.bin"), headers=h, timeout=30)
        assert r.status_code == 200 and r.content == b"", (mode, r.status_code, r.text[:200])
        r = requests.get(url(node, f"{V1}/download/empty.bin"), headers={**h, "Range": "bytes=0-"},
                         timeout=30)
        assert r.status_code in (200, 416), (mode, r.status_code, r.text[:200])


def test_same_bytes_from_many_clients_on_both_nodes_while_both_collect(s3nodes):
    """Four clients upload the same bytes under their own paths, on alternating nodes, and
    delete them again, while both nodes collect without pause: every upload answered 200
    and not deleted since reads back whole from both nodes."""
    a, b, _ = s3nodes()
    tok = user_token(a, "bob")
    data = random.Random("many").randbytes(3 * CHUNK + 7)
    stop = threading.Event()
    failures = []

    def collect(node):
        while not stop.is_set():
            r = node.post("/api/v1/admin/purge", token=a.admin_token)
            if r.status_code != 200:
                failures.append(r.text)

    def client(k):
        try:
            for n in range(6):
                path = f"c{k}.bin"
                upload([a, b], k + n, tok, path, data)
                readable_everywhere([a, b], tok, path, data)
                if n % 2 == 0:
                    assert call([a, b], k, "DELETE", f"/api/v1/files/{path}", tok).status_code == 200
        except AssertionError as e:
            failures.append(str(e))

    collectors = [threading.Thread(target=collect, args=(n,)) for n in (a, b)]
    clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in collectors + clients:
        t.start()
    for t in clients:
        t.join()
    stop.set()
    for t in collectors:
        t.join()
    assert not failures, failures[:3]
    for k in range(4):
        readable_everywhere([a, b], tok, f"c{k}.bin", data)


def open_file_bytes(node):
    """Bytes of the regular files node holds open (a local copy of a download included)."""
    total = 0
    fd_dir = f"/proc/{node.proc.pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            st = os.stat(os.path.join(fd_dir, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


def test_a_proxied_download_is_not_copied_whole_before_it_is_sent(s3nodes):
    """A proxied download of a large file from S3 answers before the whole file has come
    from the store, and holds no local copy of it while a slow client reads: the bytes come
    from S3 piece by piece, as the client takes them."""
    a, b, _ = s3nodes()
    tok = user_token(a, "bob")
    data = random.Random("big").randbytes(24 * 1024 * 1024)
    meta = "path " + base64.b64encode(b"big.bin").decode()
    r = a.post("/tus/", token=tok,
               headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    r = a.request("PATCH", r.headers["Location"], token=tok, data=data,
                  headers={**TUS, "Upload-Offset": "0",
                           "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    held = open_file_bytes(b)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", b.port))
    s.settimeout(30)
    s.sendall(f"GET {V1}/download/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
              f"Range: bytes=1000-\r\nConnection: close\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 206"), head
    assert b"Content-Length: " + str(len(data) - 1000).encode() in head, head
    time.sleep(1)
    assert open_file_bytes(b) - held < 4 * 1024 * 1024  # no local copy of the 24 MiB
    s.settimeout(30)
    while True:
        piece = s.recv(1 << 20)
        if not piece:
            break
        body += piece
    s.close()
    assert body == data[1000:]


def test_a_patch_answered_204_has_let_go_of_the_upload(s3nodes):
    """Once a PATCH is answered 204, the next PATCH of the upload (on the other node, at
    once) must be taken, not refused 423 because the first still held the upload while
    its answer went out."""
    a, b, _ = s3nodes()
    tok = user_token(a, "bob")
    refused = 0
    for n in range(40):
        meta = "path " + base64.b64encode(f"p{n}.bin".encode()).decode()
        r = a.post("/tus/", token=tok,
                   headers={**TUS, "Upload-Length": "2000", "Upload-Metadata": meta})
        loc = r.headers["Location"]
        for i, node in enumerate((a, b)):
            r = requests.patch(url(node, loc), data=b"x" * 1000, timeout=30,
                               headers={**TUS, "Authorization": f"Bearer {tok}",
                                        "Upload-Offset": str(i * 1000), "Connection": "close",
                                        "Content-Type": "application/offset+octet-stream"})
            if r.status_code == 423:
                refused += 1
                break
            assert r.status_code == 204, r.text
    assert refused == 0, f"{refused} of 40 PATCHes sent after a 204 were refused 423"
