"""Pinakes' chunked uploads and ranged downloads (under /api/v1/sync and /api/sync), and
ferry's file entries (/api/v1/files): sessions, chunks, completion, blobs, expiry,
restarts and crashes, the change feed's "files" namespace, token scopes and a full disk.

Every test runs on SQLite and on PostgreSQL unless marked. Paths that a client library
would normalise are sent with http.client or a raw socket."""

import glob
import hashlib
import http.client
import os
import random
import signal
import socket
import threading
import time

import pytest

from conftest import ISO_RE, Server, assert_legacy_error, assert_v1_error, wait_until

V1 = "/api/v1/sync"
ALT = "/api/sync"
SESSION_KEYS = {"id", "path", "size", "sha256", "chunkSize", "chunkCount", "receivedChunks",
                "receivedBytes", "complete", "createdAt", "expiresAt", "file"}
ENTRY_KEYS = {"path", "size", "sha256", "version", "deleted", "updatedAt"}


# --- helpers ------------------------------------------------------------------------------


def rand_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def user_token(srv, user_id, **extra):
    return srv.create_token(role="user", user_id=user_id, **extra)["token"]


def create(srv, tok, path, size, prefix=V1, chunk=1024, **extra):
    body = {"path": path, "size": size, **({"chunk_size": chunk} if chunk else {}), **extra}
    r = srv.post(f"{prefix}/upload", token=tok, json=body)
    assert r.status_code == 200, r.text
    s = r.json()
    assert set(s) == SESSION_KEYS, s
    return s


def put(srv, tok, uid, idx, data, prefix=V1):
    return srv.put(f"{prefix}/upload/{uid}/chunks/{idx}", token=tok, data=data)


def put_ok(srv, tok, uid, idx, data, stored=True, prefix=V1):
    r = put(srv, tok, uid, idx, data, prefix)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": uid, "index": idx, "size": len(data), "sha256": sha(data),
                        "stored": stored}


def session(srv, tok, uid, prefix=V1):
    r = srv.get(f"{prefix}/upload/{uid}", token=tok)
    assert r.status_code == 200, r.text
    assert set(r.json()) == SESSION_KEYS
    return r.json()


def complete(srv, tok, uid, prefix=V1):
    return srv.post(f"{prefix}/upload/{uid}/complete", token=tok)


def upload(srv, tok, path, content, prefix=V1, chunk=1024, with_sha=True):
    """A whole upload; returns the file entry that completing answers."""
    extra = {"sha256": sha(content)} if with_sha else {}
    s = create(srv, tok, path, len(content), prefix, chunk, **extra)
    for i in range(s["chunkCount"]):
        put_ok(srv, tok, s["id"], i, content[i * chunk:(i + 1) * chunk], prefix=prefix)
    r = complete(srv, tok, s["id"], prefix)
    assert r.status_code == 200, r.text
    return r.json()


def assert_entry(e, path, content, version, deleted=False):
    assert set(e) == ENTRY_KEYS, e
    assert {k: e[k] for k in ("path", "size", "sha256", "version", "deleted")} == {
        "path": path, "size": len(content), "sha256": sha(content), "version": version,
        "deleted": deleted}
    assert ISO_RE.match(e["updatedAt"]), e


def raw_http(srv, method, path, token=None, headers=None):
    """One request with the path sent verbatim; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_put(srv, path, token, body, headers):
    """Sends a PUT over a raw socket while a thread reads the answer (the server may answer
    and close before the body is all sent). Returns (status, body) or (None, b"")."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    got = []

    def reader():
        buf = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        got.append(buf)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    try:
        s.sendall(head.encode() + body)
    except OSError:
        pass
    t.join(20)
    s.close()
    raw = got[0] if got else b""
    if not raw:
        return None, b""
    status = int(raw.split(b" ", 2)[1])
    return status, raw.split(b"\r\n\r\n", 1)[1]


def feed(srv, token=None):
    r = srv.get(f"{V1}/changes", token=token or srv.admin_token,
                params={"cursor": "0", "limit": "1000"})
    assert r.status_code == 200, r.text
    return r.json()["changes"]


def blob_files(srv):
    return sorted(glob.glob(os.path.join(srv.data_dir, "blobs", "??", "??", "*")))


def upload_dir(srv, uid):
    return os.path.join(srv.data_dir, "uploads", uid)


# --- creating sessions --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", (V1, ALT))
def test_create_session_shape_and_validation(make_server, prefix):
    srv = make_server("--max-upload", "4096")
    tok = user_token(srv, "alice")
    s = create(srv, tok, "docs/./a//b.bin", 2500, prefix, sha256="AB" * 32)
    assert s == {"id": s["id"], "path": "docs/a/b.bin", "size": 2500, "sha256": "ab" * 32,
                 "chunkSize": 1024, "chunkCount": 3, "receivedChunks": [], "receivedBytes": 0,
                 "complete": False, "createdAt": s["createdAt"], "expiresAt": s["expiresAt"],
                 "file": None}
    assert ISO_RE.match(s["createdAt"]) and ISO_RE.match(s["expiresAt"])
    assert os.path.isdir(upload_dir(srv, s["id"]))
    # defaults: no sha256, 8 MiB chunks; chunkSize is the other spelling; size 0 has no chunks
    r = srv.post(f"{prefix}/upload", token=tok, json={"path": "x", "size": 4096})
    assert r.status_code == 200, r.text
    assert (r.json()["sha256"], r.json()["chunkSize"], r.json()["chunkCount"]) == (None, 8 << 20, 1)
    assert create(srv, tok, "y", 4096, prefix, chunk=None, chunkSize=2048)["chunkCount"] == 2
    assert create(srv, tok, "z", 0, prefix)["chunkCount"] == 0
    assert session(srv, tok, s["id"], prefix) == s

    url = f"{prefix}/upload"
    for path in ("../x", "a/../b", "/etc/passwd", "a\\b", "a\x01b", "a\x7fb", "", ".", "./", "//"):
        assert_v1_error(srv.post(url, token=tok, json={"path": path, "size": 1}), 400,
                        "INVALID_REQUEST")
    body = assert_v1_error(srv.post(url, token=tok, json={"path": "big", "size": 4097}), 413,
                           "PAYLOAD_TOO_LARGE")
    assert "4097" in body["details"]
    bad = [{"size": 1}, {"path": "p"}, {"path": 5, "size": 1}, {"path": "p", "size": "1"},
           {"path": "p", "size": -1}, {"path": "p", "size": 1.5},
           {"path": "p", "size": 1, "sha256": "a" * 63}, {"path": "p", "size": 1, "sha256": "g" * 64},
           {"path": "p", "size": 1, "sha256": 7}, {"path": "p", "size": 1, "chunk_size": 1023},
           {"path": "p", "size": 1, "chunk_size": (64 << 20) + 1},
           {"path": "p", "size": 1, "chunkSize": "1024"}]
    for b in bad:
        assert_v1_error(srv.post(url, token=tok, json=b), 400, "INVALID_REQUEST")
    assert_v1_error(srv.post(url, token=tok, data="{", headers={"Content-Type": "application/json"}),
                    400, "INVALID_REQUEST")
    assert_v1_error(srv.post(url, json={"path": "p", "size": 1}), 401, "UNAUTHORIZED")
    assert len(os.listdir(os.path.join(srv.data_dir, "uploads"))) == 4  # refusals made none


# --- chunks and completing ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", (V1, ALT))
def test_chunks_complete_and_download(make_server, prefix):
    srv = make_server()
    tok = user_token(srv, "alice")
    content = rand_bytes(2500, 1)
    c0, c1, c2 = content[:1024], content[1024:2048], content[2048:]
    s = create(srv, tok, "docs/report.bin", 2500, prefix, sha256=sha(content))
    uid = s["id"]
    put_ok(srv, tok, uid, 2, c2, prefix=prefix)
    put_ok(srv, tok, uid, 0, c0, prefix=prefix)
    put_ok(srv, tok, uid, 0, c0, stored=False, prefix=prefix)  # the same bytes again
    body = assert_v1_error(put(srv, tok, uid, 0, c1, prefix), 400, "INVALID_REQUEST")
    assert f"chunk 0 was received before with different bytes (sha256 {sha(c0)}" in body["details"]
    # wrong lengths: by Content-Length, and streamed (chunked transfer encoding)
    body = assert_v1_error(put(srv, tok, uid, 1, c1[:1000], prefix), 400, "INVALID_REQUEST")
    assert body["details"] == "chunk 1 must be 1024 bytes, not 1000"
    body = assert_v1_error(put(srv, tok, uid, 2, c1, prefix), 400, "INVALID_REQUEST")
    assert body["details"] == "chunk 2 must be 452 bytes, not 1024"
    body = assert_v1_error(put(srv, tok, uid, 1, iter([c1[:600], c1[600:1000]]), prefix), 400,
                           "INVALID_REQUEST")
    assert body["details"] == "chunk 1 must be 1024 bytes, not 1000"
    assert_v1_error(put(srv, tok, uid, 1, b"", prefix), 400, "INVALID_REQUEST")
    for idx in ("3", "-1", "x", "1.0", "+1", "99999999999999999999"):
        body = assert_v1_error(put(srv, tok, uid, idx, c1, prefix), 400, "INVALID_REQUEST")
        assert "out of range: this upload has chunks 0 to 2" in body["details"]
    assert_v1_error(put(srv, tok, "nope", 0, c0, prefix), 404, "NOT_FOUND")
    # nothing half-written stays behind
    assert wait_until(lambda: sorted(os.listdir(upload_dir(srv, uid))) == ["0", "2"])

    got = session(srv, tok, uid, prefix)
    assert (got["receivedChunks"], got["receivedBytes"], got["complete"]) == ([0, 2], 1476, False)
    body = assert_v1_error(complete(srv, tok, uid, prefix), 400, "INVALID_REQUEST")
    assert body["details"] == "1 of 3 chunks are missing: 1"
    put_ok(srv, tok, uid, 1, c1, prefix=prefix)
    assert session(srv, tok, uid, prefix)["receivedChunks"] == [0, 1, 2]

    r = complete(srv, tok, uid, prefix)
    assert r.status_code == 200, r.text
    entry = r.json()
    assert_entry(entry, "docs/report.bin", content, 1)
    again = complete(srv, tok, uid, prefix)
    assert again.status_code == 200 and again.json() == entry
    assert not os.path.exists(upload_dir(srv, uid))
    assert_v1_error(put(srv, tok, uid, 1, c1, prefix), 409, "CONFLICT")
    got = session(srv, tok, uid, prefix)
    assert (got["complete"], got["file"], got["receivedBytes"]) == (True, entry, 2500)
    assert blob_files(srv) == [os.path.join(srv.data_dir, "blobs", sha(content)[:2],
                                            sha(content)[2:4], sha(content))]

    r = srv.get(f"{prefix}/download/docs/report.bin", token=tok)
    assert r.status_code == 200 and r.content == content
    assert r.headers["ETag"] == f'"{sha(content)}"'
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers["X-File-Version"] == "1"
    assert r.headers["Content-Length"] == "2500"


def test_overlong_streamed_chunk_is_answered(make_server):
    """A chunk sent with chunked transfer encoding that runs past its length: the server
    refuses it mid-body, and the refusal must reach the client."""
    srv = make_server()
    tok = user_token(srv, "alice")
    s = create(srv, tok, "f", 2048)
    c1 = rand_bytes(1024, 14)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (c1, b"extra")) + b"0\r\n\r\n"
    status, raw = raw_put(srv, f"{V1}/upload/{s['id']}/chunks/1", tok, chunked,
                          {"Transfer-Encoding": "chunked"})
    assert wait_until(lambda: os.listdir(upload_dir(srv, s["id"])) == [])
    assert session(srv, tok, s["id"])["receivedChunks"] == []
    assert status == 400, (status, raw)
    assert b'"INVALID_REQUEST"' in raw and b"chunk 1 must be 1024 bytes; more arrived" in raw, raw


def test_completed_session_lists_its_chunks(make_server):
    """After completing, receivedBytes says 1500 while receivedChunks says none came."""
    srv = make_server()
    tok = user_token(srv, "alice")
    content = rand_bytes(1500, 2)
    s = create(srv, tok, "f", 1500)
    put_ok(srv, tok, s["id"], 0, content[:1024])
    put_ok(srv, tok, s["id"], 1, content[1024:])
    assert complete(srv, tok, s["id"]).status_code == 200
    got = session(srv, tok, s["id"])
    assert (got["receivedChunks"], got["receivedBytes"]) == ([0, 1], 1500), got


def test_checksum_mismatch_and_empty_file(make_server):
    srv = make_server()
    tok = user_token(srv, "alice")
    content = rand_bytes(1024, 3)
    s = create(srv, tok, "f", 1024, sha256=sha(b"other"))
    put_ok(srv, tok, s["id"], 0, content)
    body = assert_v1_error(complete(srv, tok, s["id"]), 400, "INVALID_REQUEST")
    assert "checksum mismatch" in body["details"]
    assert_v1_error(srv.get(f"{V1}/download/f", token=tok), 404, "NOT_FOUND")
    assert blob_files(srv) == []
    assert srv.db_query("SELECT COUNT(*) FROM ferry_files") == [["0"]]
    # without a checksum the same bytes are taken; an empty file has no chunks at all
    assert_entry(upload(srv, tok, "f", content, with_sha=False), "f", content, 1)
    assert_entry(upload(srv, tok, "empty", b""), "empty", b"", 1)
    r = srv.get(f"{V1}/download/empty", token=tok)
    assert (r.status_code, r.content, r.headers["Content-Length"]) == (200, b"", "0")


def test_sessions_belong_to_their_user_and_delete(make_server):
    srv = make_server()
    alice, bob = user_token(srv, "alice"), user_token(srv, "bob")
    s = create(srv, alice, "a", 2048)
    put_ok(srv, alice, s["id"], 0, rand_bytes(1024, 4))
    uid = s["id"]
    for r in (srv.get(f"{V1}/upload/{uid}", token=bob), put(srv, bob, uid, 1, rand_bytes(1024, 5)),
              complete(srv, bob, uid), srv.delete(f"{V1}/upload/{uid}", token=bob)):
        assert_v1_error(r, 404, "NOT_FOUND")
    assert session(srv, srv.admin_token, uid)["receivedChunks"] == [0]
    assert session(srv, alice, uid)["receivedChunks"] == [0]
    r = srv.delete(f"{V1}/upload/{uid}", token=alice)
    assert r.status_code == 204 and r.content == b""
    assert not os.path.exists(upload_dir(srv, uid))
    assert_v1_error(srv.get(f"{V1}/upload/{uid}", token=alice), 404, "NOT_FOUND")
    assert_v1_error(srv.delete(f"{V1}/upload/{uid}", token=alice), 404, "NOT_FOUND")
    assert_v1_error(put(srv, alice, uid, 1, rand_bytes(1024, 5)), 404, "NOT_FOUND")
    assert srv.db_query("SELECT COUNT(*) FROM ferry_upload_chunks") == [["0"]]


def test_versions_blob_sharing_and_collection(make_server):
    srv = make_server("--purge-interval", "0", "--blob-grace", "0")
    tok = user_token(srv, "alice")
    one, two = rand_bytes(3000, 6), rand_bytes(1100, 7)
    assert_entry(upload(srv, tok, "a", one), "a", one, 1)
    assert_entry(upload(srv, tok, "b", one, chunk=2048), "b", one, 1)
    h1, h2 = sha(one), sha(two)
    assert blob_files(srv) == [os.path.join(srv.data_dir, "blobs", h1[:2], h1[2:4], h1)]
    assert_entry(upload(srv, tok, "a", two), "a", two, 2)
    r = srv.get(f"{V1}/download/a", token=tok)
    assert (r.content, r.headers["X-File-Version"], r.headers["ETag"]) == (two, "2", f'"{h2}"')
    assert len(blob_files(srv)) == 2
    # one is still b's: nothing to collect; once b is deleted it goes
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.status_code == 200 and (r.json()["uploads_expired"], r.json()["blobs_collected"]) == (0, 0)
    r = srv.delete("/api/v1/files/b", token=tok)
    assert r.status_code == 200, r.text
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.status_code == 200 and (r.json()["uploads_expired"], r.json()["blobs_collected"]) == (0, 1)
    assert blob_files(srv) == [os.path.join(srv.data_dir, "blobs", h2[:2], h2[2:4], h2)]
    assert srv.get(f"{V1}/download/a", token=tok).content == two


# --- downloads ----------------------------------------------------------------------------


def test_download_ranges_and_conditionals(make_server):
    srv = make_server()
    tok = user_token(srv, "alice")
    content = rand_bytes(2500, 8)
    upload(srv, tok, "dir/my file.bin", content)
    url, etag = f"{V1}/download/dir/my%20file.bin", f'"{sha(content)}"'

    def get(**headers):
        return srv.get(url, token=tok, headers=headers)

    for rng, a, b in (("bytes=0-0", 0, 0), ("bytes=10-19", 10, 19), ("bytes=2000-", 2000, 2499),
                      ("bytes=-100", 2400, 2499), ("bytes=-9999", 0, 2499),
                      ("bytes=2490-9999", 2490, 2499), ("bytes=2499-2499", 2499, 2499)):
        r = get(Range=rng)
        assert r.status_code == 206, (rng, r.status_code)
        assert r.headers["Content-Range"] == f"bytes {a}-{b}/2500", rng
        assert r.content == content[a:b + 1], rng
        assert r.headers["Content-Length"] == str(b - a + 1) and r.headers["ETag"] == etag
    for rng in ("bytes=2500-", "bytes=3000-4000", "bytes=-0"):
        r = get(Range=rng)
        assert_v1_error(r, 416, "RANGE_NOT_SATISFIABLE")
        assert r.headers["Content-Range"] == "bytes */2500", rng
    for rng in ("bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-"):  # ignored: whole file
        r = get(Range=rng)
        assert (r.status_code, r.content) == (200, content), rng
        assert "Content-Range" not in r.headers
    for inm in (etag, f"W/{etag}", f'"abc", {etag}', "*"):
        r = get(**{"If-None-Match": inm})
        assert (r.status_code, r.content, r.headers["ETag"]) == (304, b"", etag), inm
    assert get(**{"If-None-Match": '"abc"'}).content == content
    r = get(Range="bytes=0-9", **{"If-Range": etag})
    assert (r.status_code, r.content) == (206, content[:10])
    r = get(Range="bytes=0-9", **{"If-Range": '"' + "0" * 64 + '"'})
    assert (r.status_code, r.content) == (200, content)
    status, headers, body = raw_http(srv, "HEAD", url, tok)
    assert (status, body, headers["content-length"], headers["etag"]) == (200, b"", "2500", etag)
    assert_v1_error(srv.get(f"{V1}/download/dir/nope", token=tok), 404, "NOT_FOUND")
    assert_v1_error(srv.get(url), 401, "UNAUTHORIZED")


@pytest.mark.sqlite_only
def test_download_path_checks(make_server):
    srv = make_server()
    upload(srv, srv.admin_token, "x", b"y" * 10)
    for path in ("..%2f..%2fetc%2fpasswd", "%2e%2e/x", "a%00b", "%2fetc%2fpasswd", "a%5cb",
                 "..", "a/../x", "%01"):
        for prefix in (V1, ALT):
            status, headers, body = raw_http(srv, "GET", f"{prefix}/download/{path}",
                                             srv.admin_token)
            assert status == 400, (path, status, body)
            assert b'"INVALID_REQUEST"' in body and b"root:" not in body, body
    for path in ("x", "./x", "%78"):
        status, _, body = raw_http(srv, "GET", f"{V1}/download/{path}", srv.admin_token)
        assert (status, body) == (200, b"y" * 10), path


# --- expiry, restarts, crashes ------------------------------------------------------------


def test_expired_sessions_answer_gone_and_are_purged(make_server):
    srv = make_server("--upload-expiry", "1", "--purge-interval", "0")
    tok = user_token(srv, "alice")
    s = create(srv, tok, "late", 2048)
    put_ok(srv, tok, s["id"], 0, rand_bytes(1024, 9))
    done = upload(srv, tok, "quick", b"q" * 100)
    uid = s["id"]
    time.sleep(1.3)
    for r in (srv.get(f"{V1}/upload/{uid}", token=tok), put(srv, tok, uid, 1, rand_bytes(1024, 10)),
              complete(srv, tok, uid), srv.delete(f"{V1}/upload/{uid}", token=tok)):
        assert_v1_error(r, 410, "GONE")
    assert os.path.isdir(upload_dir(srv, uid))
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.status_code == 200, r.text
    assert (r.json()["uploads_expired"], r.json()["blobs_collected"]) == (1, 0)
    assert not os.path.exists(upload_dir(srv, uid))
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.json()["uploads_expired"] == 0
    assert_v1_error(srv.get(f"{V1}/upload/{uid}", token=tok), 410, "GONE")
    assert srv.get(f"{V1}/download/quick", token=tok).content == b"q" * 100
    assert done["version"] == 1


def test_sessions_survive_restart_and_lost_chunks_are_asked_again(make_server):
    srv = make_server()
    tok = user_token(srv, "alice")
    content = rand_bytes(3000, 11)
    parts = [content[i:i + 1024] for i in (0, 1024, 2048)]
    s = create(srv, tok, "r.bin", 3000, sha256=sha(content))
    put_ok(srv, tok, s["id"], 0, parts[0])
    put_ok(srv, tok, s["id"], 2, parts[2])
    srv.restart()
    got = session(srv, tok, s["id"])
    assert got == {**s, "receivedChunks": [0, 2], "receivedBytes": 1976}
    put_ok(srv, tok, s["id"], 2, parts[2], stored=False)
    put_ok(srv, tok, s["id"], 1, parts[1])
    # a chunk on record whose file is gone is asked for again
    os.remove(os.path.join(upload_dir(srv, s["id"]), "1"))
    body = assert_v1_error(complete(srv, tok, s["id"]), 400, "INVALID_REQUEST")
    assert body["details"] == "chunk 1 was lost; send it again"
    assert session(srv, tok, s["id"])["receivedChunks"] == [0, 2]
    put_ok(srv, tok, s["id"], 1, parts[1])
    r = complete(srv, tok, s["id"])
    assert r.status_code == 200, r.text
    assert_entry(r.json(), "r.bin", content, 1)
    srv.restart()
    assert srv.get(f"{V1}/download/r.bin", token=tok).content == content
    assert complete(srv, tok, s["id"]).json() == r.json()


def test_server_killed_mid_chunk(make_server):
    srv = make_server()
    tok = user_token(srv, "alice")
    content = rand_bytes(2048, 12)
    s = create(srv, tok, "k.bin", 2048)
    put_ok(srv, tok, s["id"], 0, content[:1024])
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(f"PUT {V1}/upload/{s['id']}/chunks/1 HTTP/1.1\r\nHost: x\r\nAuthorization: "
                 f"Bearer {tok}\r\nContent-Length: 1024\r\n\r\n".encode() + content[1024:1536])

    def half_spooled():
        spools = glob.glob(os.path.join(upload_dir(srv, s["id"]), ".spool-*"))
        return spools and os.path.getsize(spools[0]) == 512

    assert wait_until(half_spooled)
    assert srv.stop(signal.SIGKILL) == -9
    sock.close()
    srv.start()
    got = session(srv, tok, s["id"])
    assert (got["receivedChunks"], got["receivedBytes"]) == ([0], 1024)
    assert_v1_error(complete(srv, tok, s["id"]), 400, "INVALID_REQUEST")
    put_ok(srv, tok, s["id"], 1, content[1024:])
    r = complete(srv, tok, s["id"])
    assert r.status_code == 200, r.text
    assert_entry(r.json(), "k.bin", content, 1)
    assert srv.get(f"{V1}/download/k.bin", token=tok).content == content
    assert not os.path.exists(upload_dir(srv, s["id"]))


# --- file entries and the change feed -----------------------------------------------------


def test_files_api_and_change_feed(make_server):
    srv = make_server()
    tok = user_token(srv, "alice")
    blobs = {p: rand_bytes(100 + i, 20 + i) for i, p in
             enumerate(("docs/a", "docs/b", "docs/c", "docsx", "img/z"))}
    for p, data in blobs.items():
        upload(srv, tok, p, data)

    ch = [c for c in feed(srv) if c["table"] == "files"]
    assert [c["id"] for c in ch] == list(blobs)
    for c in ch:
        assert (c["op"], c["deleted"], c["version"]) == ("upsert", False, 1), c
        d = blobs[c["id"]]
        assert {k: c["data"][k] for k in ("path", "size", "sha256", "version")} == {
            "path": c["id"], "size": len(d), "sha256": sha(d), "version": 1}, c
    assert [c["id"] for c in feed(srv, tok) if c["table"] == "files"] == list(blobs)

    r = srv.get("/api/v1/files", token=tok)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"files", "count", "nextAfter"}
    assert (body["count"], body["nextAfter"]) == (5, None)
    for e, p in zip(body["files"], sorted(blobs)):
        assert_entry(e, p, blobs[p], 1)
    page = srv.get("/api/v1/files", token=tok, params={"prefix": "docs/", "limit": "2"}).json()
    assert ([e["path"] for e in page["files"]], page["count"], page["nextAfter"]) == (
        ["docs/a", "docs/b"], 2, "docs/b")
    page = srv.get("/api/v1/files", token=tok,
                   params={"prefix": "docs/", "limit": "2", "after": "docs/b"}).json()
    assert ([e["path"] for e in page["files"]], page["nextAfter"]) == (["docs/c"], None)
    for bad in ("0", "1001", "x", "-1"):
        assert_v1_error(srv.get("/api/v1/files", token=tok, params={"limit": bad}), 400,
                        "INVALID_REQUEST")

    r = srv.get("/api/v1/files/docs/b", token=tok)
    assert r.status_code == 200
    assert_entry(r.json(), "docs/b", blobs["docs/b"], 1)
    assert_v1_error(srv.get("/api/v1/files/docs/nope", token=tok), 404, "NOT_FOUND")
    deleted = srv.delete("/api/v1/files/docs/b", token=tok)
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["version"], deleted.json()["deleted"]) == (2, True)
    assert_v1_error(srv.delete("/api/v1/files/docs/b", token=tok), 404, "NOT_FOUND")
    assert_v1_error(srv.get("/api/v1/files/docs/b", token=tok), 404, "NOT_FOUND")
    assert_v1_error(srv.get(f"{V1}/download/docs/b", token=tok), 404, "NOT_FOUND")
    assert [e["path"] for e in srv.get("/api/v1/files", token=tok).json()["files"]] == [
        "docs/a", "docs/c", "docsx", "img/z"]
    last = [c for c in feed(srv) if c["table"] == "files"][-1]
    assert (last["id"], last["op"], last["deleted"], last["version"]) == ("docs/b", "delete", True, 2)
    assert last["data"]["sha256"] == sha(blobs["docs/b"]), last
    # uploading again brings it back as version 3
    assert_entry(upload(srv, tok, "docs/b", b"new"), "docs/b", b"new", 3)
    last = [c for c in feed(srv) if c["table"] == "files"][-1]
    assert (last["id"], last["op"], last["deleted"]) == ("docs/b", "upsert", False)
    assert last["data"]["sha256"] == sha(b"new")
    # the deletion's answer is the entry as it now is (checked last: see the report)
    assert_entry(deleted.json(), "docs/b", blobs["docs/b"], 2, deleted=True)


def test_files_namespace_is_not_pushable(make_server):
    srv = make_server("--allowed-tables", "notes",
                      schema=["CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT)"])
    tok = user_token(srv, "alice")
    op = {"table": "files", "action": "upsert",
          "data": {"path": "evil", "size": 1, "sha256": "0" * 64, "version": 9, "deleted": 0}}
    r = srv.post("/sync/push", token=srv.admin_token, json={"operations": [op]})
    assert assert_legacy_error(r, 400) == {"success": False, "error": "Invalid table"}
    r = srv.post("/sync/pull", token=srv.admin_token, json={"tables": ["files"]})
    assert_legacy_error(r, 400)
    r = srv.get("/sync/status", token=srv.admin_token)
    assert r.status_code == 200 and r.json()["allowed_tables"] == ["notes"]
    assert "files" not in srv.post("/sync/pull", token=srv.admin_token, json={}).json()["data"]
    dev = srv.post(f"{V1}/devices", token=tok, json={"name": "phone"}).json()["token"]
    for prefix in (V1, ALT):
        r = srv.post(f"{prefix}/report", token=dev, json={"operations": [op]})
        body = assert_v1_error(r, 403, "FORBIDDEN")
        assert "upload" in body["details"]
    assert srv.db_query("SELECT COUNT(*) FROM ferry_files") == [["0"]]
    assert [c for c in feed(srv) if c["table"] == "files"] == []


def test_token_scoped_to_other_tables_may_not_touch_files(make_server):
    srv = make_server()
    full = user_token(srv, "alice")
    scoped = user_token(srv, "alice", tables=["notes"])
    files_ok = user_token(srv, "alice", tables=["notes", "files"])
    upload(srv, full, "f", b"data")
    assert_v1_error(srv.post(f"{V1}/upload", token=scoped, json={"path": "g", "size": 1}), 403,
                    "FORBIDDEN")
    assert_v1_error(srv.get(f"{V1}/download/f", token=scoped), 403, "FORBIDDEN")
    assert_v1_error(srv.get(f"{ALT}/download/f", token=scoped), 403, "FORBIDDEN")
    assert_v1_error(srv.get("/api/v1/files", token=scoped), 403, "FORBIDDEN")
    assert_v1_error(srv.get("/api/v1/files/f", token=scoped), 403, "FORBIDDEN")
    assert_v1_error(srv.delete("/api/v1/files/f", token=scoped), 403, "FORBIDDEN")
    s = create(srv, full, "g", 1024)
    assert_v1_error(put(srv, scoped, s["id"], 0, b"z" * 1024), 403, "FORBIDDEN")
    assert srv.get(f"{V1}/download/f", token=files_ok).content == b"data"
    assert upload(srv, files_ok, "h", b"hh")["version"] == 1
    assert [c for c in feed(srv, scoped) if c["table"] == "files"] == []


def test_scoped_token_cannot_read_or_finish_sessions(make_server):
    """The same user's session, reached with a token whose scope leaves out files."""
    srv = make_server()
    full = user_token(srv, "alice")
    scoped = user_token(srv, "alice", tables=["notes"])
    s = create(srv, full, "g", 1024)
    put_ok(srv, full, s["id"], 0, b"z" * 1024)
    assert_v1_error(srv.get(f"{V1}/upload/{s['id']}", token=scoped), 403, "FORBIDDEN")
    assert_v1_error(complete(srv, scoped, s["id"]), 403, "FORBIDDEN")
    assert_v1_error(srv.delete(f"{V1}/upload/{s['id']}", token=scoped), 403, "FORBIDDEN")


# --- a full disk --------------------------------------------------------------------------


def test_full_disk_answers_507(make_server):
    """ferry runs with RLIMIT_FSIZE of 1 MiB (prlimit), SIGXFSZ at its default action as a
    service manager would leave it: a chunk that cannot be written is a 507."""
    limit = 1 << 20
    srv = make_server(start=False)
    srv.command = lambda: ["prlimit", f"--fsize={limit}", "--", *Server.command(srv)]
    srv.start()
    tok = user_token(srv, "alice")
    s = create(srv, tok, "big", limit + 256 * 1024, chunk=limit + 256 * 1024)
    status, raw = raw_put(srv, f"{V1}/upload/{s['id']}/chunks/0", tok,
                          rand_bytes(limit + 256 * 1024, 13),
                          {"Content-Length": str(limit + 256 * 1024)})
    died = wait_until(lambda: not srv.running, timeout=1.0)
    assert not died, f"ferry died (exit {srv.proc.poll()}) writing past RLIMIT_FSIZE"
    assert status == 507 and b'"INSUFFICIENT_STORAGE"' in raw, (status, raw)
    assert wait_until(lambda: os.listdir(upload_dir(srv, s["id"])) == [])
    got = session(srv, tok, s["id"])
    assert (got["receivedChunks"], got["receivedBytes"]) == ([], 0)
    # the server still works
    assert upload(srv, tok, "small", b"s" * 10)["version"] == 1


def test_concurrent_completes_commit_once(make_server):
    """Two clients completing one upload at once: the file is committed once (version 1);
    each answer is the entry, or 409 while the other is completing."""
    srv = make_server()
    tok = srv.admin_token
    content = rand_bytes(64 * 1024, 21)
    s = create(srv, tok, "race/one.bin", len(content), chunk=4096)
    for i in range(s["chunkCount"]):
        put_ok(srv, tok, s["id"], i, content[i * 4096:(i + 1) * 4096])
    answers = []

    def go():
        r = complete(srv, tok, s["id"])
        answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for status, body in answers:
        if status == 200:
            assert_entry(body, "race/one.bin", content, 1)
        else:
            assert status == 409 and body["errorCode"] == "CONFLICT", body
    assert any(st == 200 for st, _ in answers)
    r = srv.get("/api/v1/files/race/one.bin", token=tok)
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    changes = [c for c in feed(srv) if c["table"] == "files"]
    assert [c["data"]["version"] for c in changes] == [1], changes


@pytest.mark.sqlite_only
def test_too_many_chunks_is_refused(make_server):
    srv = make_server()
    r = srv.post(f"{V1}/upload", token=srv.admin_token,
                 json={"path": "big.bin", "size": 1024 * 100001, "chunk_size": 1024})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "too many" in r.json()["details"], r.text


@pytest.mark.sqlite_only
def test_purge_thread_clears_expired_sessions(make_server):
    """The background purge (every --purge-interval seconds) removes an expired session's
    folder by itself, without the admin endpoint."""
    srv = make_server("--upload-expiry", "1", "--purge-interval", "1")
    s = create(srv, srv.admin_token, "bg/one.bin", 2048)
    put_ok(srv, srv.admin_token, s["id"], 0, rand_bytes(1024, 5))
    assert os.path.isdir(upload_dir(srv, s["id"]))
    assert wait_until(lambda: not os.path.exists(upload_dir(srv, s["id"])), timeout=8.0)
    r = srv.get(f"{V1}/upload/{s['id']}", token=srv.admin_token)
    assert_v1_error(r, 410, "GONE")
