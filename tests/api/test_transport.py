"""Transport: compressed answers (gzip, zstd; Accept-Encoding with q-values) and HTTPS
served by ferry itself (--tls-cert/--tls-key, made here with the openssl CLI; SIGHUP
reloads them).

Answers are read with http.client, which (unlike requests) leaves the bytes as sent, and
decoded with Python's zlib, python3-zstandard and the zstd CLI."""

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
import zlib

import pytest
import zstandard

import devsync
from conftest import REPO, run_ferry, wait_until

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
    # Vary keeps CORS's Origin beside Accept-Encoding
    cors = make_server("--cors-origins", "https://app.example.com")
    _, headers, _ = fetch(cors, "GET", OPENAPI, {"Accept-Encoding": "gzip",
                                                 "Origin": "https://app.example.com"})
    assert headers["vary"] == "Origin, Accept-Encoding" and headers["content-encoding"] == "gzip"
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


@pytest.mark.sqlite_only
def test_compressed_request_bodies_are_refused_not_stored_compressed(server):
    """ferry decodes no request body: an upload sent with Content-Encoding would be kept as
    its compressed bytes and downloaded as such, so it is refused (415) before any is read."""
    import base64
    import gzip

    tok = server.create_token(role="user", user_id="alice")["token"]
    data = b"the same words again " * 100
    packed = gzip.compress(data)
    tus = {"Tus-Resumable": "1.0.0"}
    r = server.post("/tus/", token=tok, headers={
        **tus, "Upload-Length": str(len(packed)),
        "Upload-Metadata": "path " + base64.b64encode(b"g.txt").decode()})
    assert r.status_code == 201, r.text
    r = server.request("PATCH", r.headers["Location"], token=tok, data=packed, headers={
        **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Content-Encoding": "gzip"})
    assert r.status_code == 415 and "Content-Encoding 'gzip' is not supported" in r.text, r.text
    assert server.get(f"{V1}/download/g.txt", token=tok).status_code == 404
    s = server.post(f"{V1}/upload", token=tok,
                    json={"path": "p.txt", "size": len(data), "chunk_size": len(data)}).json()
    r = server.put(f"{V1}/upload/{s['id']}/chunks/0", token=tok, data=gzip.compress(data),
                   headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415 and r.json()["errorCode"] == "UNSUPPORTED_MEDIA_TYPE", r.text
    r = server.put(f"{V1}/upload/{s['id']}/chunks/0", token=tok, data=data,
                   headers={"Content-Encoding": "identity"})
    assert r.status_code == 200, r.text
    r = server.post(f"{V1}/devices", token=tok, data=gzip.compress(b'{"name": "x"}'),
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text


# --- HTTPS ----------------------------------------------------------------------------------


def make_cert(folder, name, key_type="rsa:2048"):
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI: (cert, key)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    algo = ["-newkey", key_type] if key_type.startswith("rsa") else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *algo, "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def der_of(cert):
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def https_conn(srv, cafile, timeout=20):
    ctx = ssl.create_default_context(cafile=str(cafile))
    return http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=timeout, context=ctx)


def https_get(conn, path, headers=None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=20)


@pytest.fixture
def tls_files(tmp_path):
    """cert/key paths the server is started with (copies of the first pair), and both
    pairs: the files are replaced in place to test reloads."""
    folder = tmp_path / "tls"
    folder.mkdir()
    first, second = make_cert(folder, "first"), make_cert(folder, "second", "ec")
    serving = folder / "serving.crt", folder / "serving.key"
    for src, dst in zip(first, serving):
        dst.write_bytes(src.read_bytes())
    return serving, first, second


def start_https(make_server, tls_files, *extra):
    (cert, key), first, _ = tls_files
    srv = make_server("--tls-cert", str(cert), "--tls-key", str(key), *extra)
    assert srv.scheme == "https" and srv.base.startswith("https://")
    trust(srv, first[0])
    return srv


def trust(srv, cafile):
    """The harness's requests session trusts cafile only (the environment may name a CA
    bundle, which requests would take instead)."""
    srv.session.trust_env = False
    srv.session.verify = str(cafile)


@pytest.mark.sqlite_only
def test_https_with_curl_and_python_clients(make_server, tls_files):
    srv = start_https(make_server, tls_files)
    cafile = tls_files[1][0]
    url = srv.base
    p = curl("--cacert", str(cafile), url + "/health")
    assert p.returncode == 0 and json.loads(p.stdout)["status"], p.stderr
    # the certificate is checked: without the CA curl refuses, and TLS 1.1 is not spoken
    assert curl(url + "/health").returncode == 60
    assert curl("--cacert", str(cafile), "--tls-max", "1.1", url + "/health").returncode == 35
    p = curl("--cacert", str(cafile), "--tlsv1.2", "--tls-max", "1.2", "-o", "/dev/null",
             "-w", "%{http_code}", url + "/health")
    assert p.stdout == "200", p.stderr
    # plain HTTP on the HTTPS port gets no answer
    assert curl("http://127.0.0.1:%d/health" % srv.port).returncode in (52, 56)

    # Python: urllib with an ssl context, and requests (the harness's session)
    ctx = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url + "/api/v1/health", context=ctx, timeout=10) as r:
        assert r.status == 200 and json.loads(r.read())["status"]
    tok = srv.create_token(role="user", user_id="alice")["token"]
    r = srv.get("/api/v1/files", token=tok)
    assert r.status_code == 200 and r.json()["files"] == [], r.text
    # compression over TLS as over plain HTTP
    conn = https_conn(srv, cafile)
    status, headers, raw = https_get(conn, OPENAPI, {"Accept-Encoding": "zstd"})
    assert (status, headers["content-encoding"]) == (200, "zstd")
    assert json.loads(decode(headers, raw))["openapi"] == "3.0.3"
    conn.close()


@pytest.mark.sqlite_only
def test_tus_upload_over_https(make_server, tls_files, tmp_path):
    srv = start_https(make_server, tls_files)
    tok = srv.create_token(role="user", user_id="alice")["token"]
    content = bytes(range(256)) * 1000
    # by hand with requests: creation, then two PATCHes
    r = srv.post("/tus/", token=tok, headers={"Tus-Resumable": "1.0.0",
                                              "Upload-Length": str(len(content)),
                                              "Upload-Metadata": "filename aGFuZC5iaW4="})
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    for offset in (0, 150_000):
        r = srv.request("PATCH", loc, token=tok, data=content[offset:offset + 150_000],
                        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                                 "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
    r = srv.get(f"{V1}/download/hand.bin", token=tok)
    assert (r.status_code, r.content) == (200, content)
    # the real tus-js-client, trusting the test's certificate
    node = shutil.which("node")
    driver = os.path.join(REPO, "tests", "api", "js", "tus_upload.mjs")
    if node is None or not os.path.isdir(os.path.join(REPO, "tests", "api", "js",
                                                      "node_modules", "tus-js-client")):
        pytest.skip("tus-js-client is not installed (scripts/test-peers.sh)")
    file = tmp_path / "js.bin"
    file.write_bytes(content[::-1])
    proc = subprocess.run([node, driver, srv.base + "/tus/", tok, str(file)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NODE_EXTRA_CA_CERTS": str(tls_files[1][0])})
    assert json.loads(proc.stdout.strip().splitlines()[-1])["done"] is True, proc.stderr
    r = srv.get(f"{V1}/download/js.bin", token=tok)
    assert (r.status_code, r.content) == (200, content[::-1])


def reloads(srv, event):
    return [l for l in srv.stderr().splitlines() if f'"event":"{event}"' in l]


@pytest.mark.sqlite_only
def test_sighup_reloads_the_certificate_without_dropping_connections(make_server, tls_files):
    srv = devsync.start(make_server, "--tls-cert", str(tls_files[0][0]), "--tls-key",
                        str(tls_files[0][1]))
    (cert, key), first, second = tls_files
    trust(srv, first[0])
    alice = devsync.user(srv, "alice")
    phone, tablet = alice.register("phone"), alice.register("tablet")
    head = alice.head()

    # a keep-alive connection and a waiting long-poll, both made with the first pair
    kept = https_conn(srv, first[0])
    assert https_get(kept, "/health")[0] == 200
    out = {}

    def poll():
        conn = https_conn(srv, first[0])
        conn.request("GET", f"{V1}/changes?cursor={head}&wait=20",
                     headers={"Authorization": f"Bearer {phone.token}"})
        out["peer"] = conn.sock.getpeercert(binary_form=True)
        r = conn.getresponse()
        out["resp"] = (r.status, json.loads(r.read()))
        conn.close()

    th = threading.Thread(target=poll)
    th.start()
    wait_until(lambda: "peer" in out)
    time.sleep(0.3)

    # the files are replaced and the server told
    for src, dst in zip(second, (cert, key)):
        dst.write_bytes(src.read_bytes())
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: reloads(srv, "tls_reloaded")), srv.stderr()

    # new connections see the new certificate (and no longer the old one)
    fresh = https_conn(srv, second[0])
    assert https_get(fresh, "/health")[0] == 200
    assert fresh.sock.getpeercert(binary_form=True) == der_of(second[0])
    fresh.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(https_conn(srv, first[0]), "/health")
    # the connection made before goes on, with the old certificate
    assert https_get(kept, "/health")[0] == 200
    assert kept.sock.getpeercert(binary_form=True) == der_of(first[0])
    kept.close()
    # and the waiting long-poll is answered when the change comes
    trust(srv, second[0])
    tablet.report([devsync.op("notes", "insert", {"id": "after-reload", "title": "x"})])
    th.join(20)
    assert out["peer"] == der_of(first[0])
    status, page = out["resp"]
    assert status == 200 and [c["id"] for c in page["changes"]] == ["after-reload"]

    # a bad pair on reload (key of the other certificate) is refused; the good one stays
    key.write_bytes(first[1].read_bytes())
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: reloads(srv, "tls_reload_failed")), srv.stderr()
    assert "is not the private key of the certificate" in reloads(srv, "tls_reload_failed")[0]
    conn = https_conn(srv, second[0])
    assert https_get(conn, "/health")[0] == 200
    conn.close()
    # SIGHUP with unchanged files (logrotate) replaces nothing
    key.write_bytes(second[1].read_bytes())
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: len(reloads(srv, "log_reopened")) == 3)
    time.sleep(0.2)
    assert len(reloads(srv, "tls_reloaded")) == 1
    assert srv.running


@pytest.mark.sqlite_only
def test_bad_certificates_are_refused_at_start(tmp_path, tls_files):
    (cert, key), first, second = tls_files
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (("--tls-cert", cert, "--tls-key", second[1]), 1,
         f"ferry: tls-key {second[1]} is not the private key of the certificate in "
         f"tls-cert {cert}"),
        (("--tls-cert", tmp_path / "missing.crt", "--tls-key", key), 1,
         f"ferry: cannot read tls-cert {tmp_path / 'missing.crt'}: No such file or directory"),
        (("--tls-cert", garbage, "--tls-key", key), 1,
         f"ferry: tls-cert {garbage} holds no usable PEM certificate"),
        (("--tls-cert", cert, "--tls-key", garbage), 1,
         f"ferry: tls-key {garbage} is not a usable unencrypted PEM private key"),
        (("--tls-cert", cert), 2, "ferry serve: tls-cert and tls-key go together: tls-key is "
         "missing"),
        (("--tls-cert", cert, "--tls-key", key, "--tls-min-version", "1.0"), 2,
         "ferry serve: tls-min-version must be 1.2 or 1.3, not '1.0'"),
    ]
    for args, code, message in cases:
        data = tmp_path / "data"
        p = run_ferry("serve", "--listen", "127.0.0.1:0", "--data-dir", str(data),
                      *map(str, args), timeout=20)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert p.stderr.startswith(message), (args, p.stderr)
        assert "listening" not in p.stdout
        assert not data.exists()  # refused before anything was made


@pytest.mark.sqlite_only
def test_tls_1_3_only(make_server, tls_files):
    srv = start_https(make_server, tls_files, "--tls-min-version", "1.3")
    cafile = str(tls_files[1][0])
    assert curl("--cacert", cafile, "--tls-max", "1.2", srv.base + "/health").returncode == 35
    ctx = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(srv.base + "/health", context=ctx, timeout=10) as r:
        assert r.status == 200
