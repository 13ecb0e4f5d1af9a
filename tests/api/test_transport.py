"""Transport: compressed answers (gzip, zstd; Accept-Encoding with q-values) and HTTPS
served by ferry itself (--tls-cert/--tls-key, made here with the openssl CLI; SIGHUP
reloads them).

Answers are read with http.client, which (unlike requests) leaves the bytes as sent, and
decoded with Python's zlib, python3-zstandard and the zstd CLI."""

import http.client
import json
import subprocess
import threading
import time
import zlib

import pytest
import zstandard

import devsync
from conftest import wait_until

OPENAPI = "/api/v1/openapi.json"
V1 = "/api/v1/sync"


def fetch(srv, method, path, headers=None, body=None, token=None):
    """One request on a fresh connection: (status, headers with lower-case names, bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def decode(headers, body):
    """The body with its Content-Encoding undone, checked by two decoders for zstd."""
    coding = headers.get("content-encoding")
    if coding is None:
        return body
    if coding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    assert coding == "zstd", coding
    plain = zstandard.ZstdDecompressor().decompress(body)
    cli = subprocess.run(["zstd", "-d", "-c", "-q"], input=body, capture_output=True, check=True)
    assert cli.stdout == plain
    return plain


def encodings(srv, method, path, token=None, body=None):
    """{Accept-Encoding sent: (status, headers, decoded body)} for the usual offers."""
    out = {}
    for offer in (None, "gzip", "zstd", "gzip, deflate, br, zstd", "identity", "gzip;q=0"):
        status, headers, raw = fetch(srv, method, path,
                                     {"Accept-Encoding": offer} if offer else {}, body, token)
        out[offer] = (status, headers, decode(headers, raw))
        if headers.get("content-encoding"):
            assert int(headers["content-length"]) == len(raw) < len(out[offer][2])
    return out


# --- compression --------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_large_json_is_compressed_as_the_client_asks(server):
    got = encodings(server, "GET", OPENAPI)
    plain = got[None][2]
    assert json.loads(plain)["openapi"] == "3.0.3" and len(plain) > 100_000
    want = {None: None, "gzip": "gzip", "zstd": "zstd", "gzip, deflate, br, zstd": "zstd",
            "identity": None, "gzip;q=0": None}
    for offer, coding in want.items():
        status, headers, body = got[offer]
        assert status == 200, offer
        assert headers.get("content-encoding") == coding, (offer, headers)
        assert headers["vary"] == "Accept-Encoding", offer  # also when sent as it is
        assert body == plain, offer
    # q-values decide; a tie goes to zstd; * covers what is not named
    for offer, coding in (("gzip;q=1, zstd;q=0.5", "gzip"), ("gzip;q=0.5, zstd", "zstd"),
                          ("zstd;q=0, *", "gzip"), ("*;q=0", None), ("br, deflate", None),
                          ("gzip;q=0.5, identity", None)):
        _, headers, raw = fetch(server, "GET", OPENAPI, {"Accept-Encoding": offer})
        assert headers.get("content-encoding") == coding, (offer, headers)
        assert decode(headers, raw) == plain
    # HEAD says what GET would send
    for offer in ("zstd", "gzip", None):
        h = {"Accept-Encoding": offer} if offer else {}
        _, get_headers, raw = fetch(server, "GET", OPENAPI, h)
        status, head_headers, nothing = fetch(server, "HEAD", OPENAPI, h)
        assert (status, nothing) == (200, b"")
        for name in ("content-length", "content-encoding", "vary", "content-type"):
            assert head_headers.get(name) == get_headers.get(name), (offer, name)


@pytest.mark.sqlite_only
def test_small_answers_and_the_setting(make_server):
    srv = make_server()
    status, headers, body = fetch(srv, "GET", "/health", {"Accept-Encoding": "gzip, zstd"})
    assert status == 200 and json.loads(body)
    assert "content-encoding" not in headers and "vary" not in headers
    # an error body in the v1 format is small as well
    status, headers, body = fetch(srv, "GET", "/api/v1/nowhere", {"Accept-Encoding": "zstd"})
    assert status == 404 and json.loads(body)["errorCode"] == "NOT_FOUND"
    assert "content-encoding" not in headers

    off = make_server("--compress", "false")
    _, headers, body = fetch(off, "GET", OPENAPI, {"Accept-Encoding": "gzip, zstd"})
    assert "content-encoding" not in headers and json.loads(body)["openapi"] == "3.0.3"
    big = make_server("--compress-min-size", "1M")  # the document is about 460K
    _, headers, _ = fetch(big, "GET", OPENAPI, {"Accept-Encoding": "zstd"})
    assert "content-encoding" not in headers and "vary" not in headers


def test_feeds_pulls_and_long_polls_are_compressed(make_server):
    srv = devsync.start(make_server, "--rate-limit", "0")
    alice = devsync.user(srv, "alice")
    phone, tablet = alice.register("phone"), alice.register("tablet")
    head = alice.head()
    rows = [devsync.op("notes", "insert", {"id": f"n{i:04d}", "title": f"note number {i}",
                                           "body": "lorem ipsum " * 8, "n": i})
            for i in range(300)]
    tablet.report(rows)

    got = encodings(srv, "GET", f"{V1}/changes?cursor={head}&limit=1000", phone.token)
    page = json.loads(got[None][2])
    assert len(page["changes"]) == 300
    for offer, (status, headers, body) in got.items():
        assert status == 200 and json.loads(body) == page, offer
    assert got["zstd"][1]["content-encoding"] == "zstd"
    assert got["gzip"][1]["content-encoding"] == "gzip"

    # the legacy pull
    got = encodings(srv, "POST", "/sync/pull", srv.admin_token, {"tables": ["notes"]})
    pulled = json.loads(got[None][2])
    assert len(pulled["data"]["notes"]) == 300
    for offer, (status, headers, body) in got.items():
        assert status == 200 and json.loads(body) == pulled, offer
    assert got["gzip, deflate, br, zstd"][1]["content-encoding"] == "zstd"

    # a long-poll woken by a change answers compressed too
    cursor = page["cursor"]
    out = {}

    def poll():
        out["resp"] = fetch(srv, "GET", f"{V1}/changes?cursor={cursor}&wait=10",
                            {"Accept-Encoding": "gzip"}, token=phone.token)

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    tablet.report([devsync.op("notes", "update", {"id": f"n{i:04d}", "title": "changed " * 20})
                   for i in range(50)])
    th.join(15)
    status, headers, raw = out["resp"]
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert [c["id"] for c in json.loads(decode(headers, raw))["changes"]] == [
        f"n{i:04d}" for i in range(50)]


def _upload_text(srv, token, path, content):
    s = srv.post(f"{V1}/upload", token=token,
                 json={"path": path, "size": len(content), "chunk_size": len(content)}).json()
    assert srv.put(f"{V1}/upload/{s['id']}/chunks/0", token=token,
                   data=content).status_code == 200
    assert srv.post(f"{V1}/upload/{s['id']}/complete", token=token).status_code == 200


@pytest.mark.sqlite_only
def test_downloads_and_ranges_are_sent_as_they_are(server):
    tok = server.create_token(role="user", user_id="alice")["token"]
    content = json.dumps([{"id": i, "name": "the same words again"} for i in range(500)]).encode()
    _upload_text(server, tok, "data/rows.json", content)
    url = f"{V1}/download/data/rows.json"
    status, headers, body = fetch(server, "GET", url, {"Accept-Encoding": "gzip, zstd"}, token=tok)
    assert (status, body) == (200, content)
    assert "content-encoding" not in headers and headers["content-length"] == str(len(content))
    status, headers, body = fetch(server, "GET", url,
                                  {"Accept-Encoding": "zstd", "Range": "bytes=100-2099"},
                                  token=tok)
    assert (status, body, headers["content-range"]) == (206, content[100:2100],
                                                        f"bytes 100-2099/{len(content)}")
    assert "content-encoding" not in headers
