"""Resumable uploads with tus 1.0.0 at /tus/: the core protocol and the creation,
termination, expiration and checksum extensions, plain-text errors, every answer saying
Tus-Resumable: 1.0.0. A finished upload becomes a blob (DATA_DIR/blobs/aa/bb/<sha256>)
and a file entry at the path its metadata names. The last tests drive the real
tus-js-client (tests/api/js/tus_upload.mjs) through uploads, restarts and a crash."""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from email.utils import parsedate_to_datetime

import pytest

from conftest import REPO, wait_until

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
LOCATION_RE = re.compile(r"^/tus/[0-9a-f]{32}$")
HTTP_DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul"
                          r"|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$")
JS_DIR = os.path.join(REPO, "tests", "api", "js")
DRIVER = os.path.join(JS_DIR, "tus_upload.mjs")
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: the tus-js-client "
                                "tests need Node.js (and scripts/test-peers.sh)")


# --- helpers ----------------------------------------------------------------------------


def b64(text):
    return base64.b64encode(text.encode()).decode()


def meta(**kv):
    return ",".join(f"{k} {b64(v)}" for k, v in kv.items())


def tus(r, status):
    """Checks the status and the Tus-Resumable header every tus answer carries."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("Tus-Resumable") == "1.0.0", dict(r.headers)
    return r


def text_error(r, status, body=None):
    tus(r, status)
    if r.request.method == "HEAD":
        return r
    assert r.headers["Content-Type"].startswith("text/plain"), dict(r.headers)
    assert r.text.endswith("\n") and len(r.text) > 1, repr(r.text)
    if body is not None:
        assert r.content == body.encode()
    return r


def post(srv, token, headers):
    return srv.post("/tus/", token=token, headers=headers)


def create(srv, token, length, name="f.bin", metadata=None):
    """Creates an upload of a file called name; returns its Location (/tus/<id>)."""
    r = tus(post(srv, token, {**TUS, "Upload-Length": str(length),
                              "Upload-Metadata": metadata or meta(filename=name)}), 201)
    assert LOCATION_RE.match(r.headers["Location"]), r.headers["Location"]
    return r.headers["Location"]


def head(srv, token, loc, headers=TUS):
    return srv.request("HEAD", loc, token=token, headers=headers)


def patch(srv, token, loc, offset, data, **extra):
    h = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS, **extra}
    return srv.request("PATCH", loc, token=token, headers=h, data=data)


def offset_of(srv, token, loc):
    r = tus(head(srv, token, loc), 200)
    return int(r.headers["Upload-Offset"])


def http_date(value):
    assert HTTP_DATE_RE.match(value), value
    return parsedate_to_datetime(value).timestamp()


def upload_dir(srv, loc):
    return os.path.join(srv.data_dir, "uploads", loc.rsplit("/", 1)[1])


def blob_file(srv, data):
    h = hashlib.sha256(data).hexdigest()
    return os.path.join(srv.data_dir, "blobs", h[:2], h[2:4], h)


def blob_files(srv):
    out = []
    for root, _, names in os.walk(os.path.join(srv.data_dir, "blobs")):
        out += [os.path.join(root, n) for n in names if re.fullmatch(r"[0-9a-f]{64}", n)]
    return out


def download(srv, token, path):
    return srv.get("/api/v1/sync/download/" + path, token=token)


def assert_stored(srv, token, path, data):
    """The file entry at path has exactly data, as download, change and blob."""
    r = download(srv, token, path)
    assert r.status_code == 200, r.text
    assert r.content == data
    digest = hashlib.sha256(data).hexdigest()
    changes = srv.get("/api/v1/sync/changes", token=token).json()["changes"]
    mine = [c for c in changes if c["table"] == "files" and c["id"] == path]
    assert mine, changes
    assert mine[-1]["op"] == "upsert"
    assert mine[-1]["data"]["sha256"] == digest
    assert mine[-1]["data"]["size"] == len(data)
    with open(blob_file(srv, data), "rb") as f:
        assert f.read() == data


def raw_request(srv, head_text):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(head_text.replace("\n", "\r\n").encode())
    return sock


def read_status(sock):
    """The status code of the answer on sock, or None when it closed without one."""
    data = b""
    try:
        while b"\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
    except OSError:
        pass
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def js_upload(srv, token, file, *args):
    """Runs tus-js-client via the driver; returns its JSON line."""
    assert os.path.isdir(os.path.join(JS_DIR, "node_modules", "tus-js-client")), \
        "tus-js-client is not installed: run scripts/test-peers.sh"
    proc = subprocess.run([NODE, DRIVER, srv.base + "/tus/", token, str(file), *args],
                          capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"driver said nothing (rc {proc.returncode}): {proc.stderr}"
    return json.loads(lines[-1])


def loc_of(url):
    """/tus/<id> of an upload URL; srv.base + it is the URL on the server's current port."""
    return "/tus/" + url.rsplit("/tus/", 1)[1]


@pytest.fixture
def bob(server):
    return server.create_token(user_id="bob")["token"]


# --- discovery and creation -----------------------------------------------------------


@pytest.mark.sqlite_only
def test_options_advertises_the_protocol_without_auth(make_server):
    srv = make_server("--max-upload", "1M")
    for path in ("/tus/", "/tus", "/tus/" + "0" * 32):
        r = tus(srv.options(path), 204)
        assert r.headers["Tus-Version"] == "1.0.0"
        assert r.headers["Tus-Extension"] == "creation,termination,expiration,checksum"
        assert r.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"
        assert r.headers["Tus-Max-Size"] == "1048576"
        assert r.content == b""


def test_create_then_head(server, bob):
    metadata = meta(filename="docs/report.pdf", note="hi there")
    before = time.time()
    r = tus(post(server, bob, {**TUS, "Upload-Length": "1000", "Upload-Metadata": metadata}),
            201)
    loc = r.headers["Location"]
    assert LOCATION_RE.match(loc), loc
    expires = http_date(r.headers["Upload-Expires"])
    assert before + 86400 - 2 <= expires <= time.time() + 86400 + 1  # default expiry: a day
    with open(os.path.join(upload_dir(server, loc), "data"), "rb") as f:
        assert f.read() == b""

    r = tus(head(server, bob, loc), 200)
    assert r.headers["Upload-Offset"] == "0"
    assert r.headers["Upload-Length"] == "1000"
    assert r.headers["Upload-Metadata"] == metadata
    assert r.headers["Cache-Control"] == "no-store"
    assert abs(http_date(r.headers["Upload-Expires"]) - expires) <= 1
    # Each creation is a new upload.
    assert create(server, bob, 1000, "docs/report.pdf") != loc


@pytest.mark.sqlite_only
def test_create_refusals(make_server):
    srv = make_server("--max-upload", "1M")
    tok = srv.create_token(user_id="bob")["token"]
    ok = {**TUS, "Upload-Length": "10", "Upload-Metadata": meta(filename="a.txt")}

    for length in (None, "", "abc", "-1", "10x"):
        h = {k: v for k, v in ok.items() if k != "Upload-Length"}
        if length is not None:
            h["Upload-Length"] = length
        text_error(post(srv, tok, h), 400, "Upload-Length must be a number of bytes\n")
    h = {k: v for k, v in ok.items() if k != "Upload-Length"}
    text_error(post(srv, tok, {**h, "Upload-Defer-Length": "1"}), 400)
    text_error(post(srv, tok, {**ok, "Upload-Length": "1048577"}), 413,
               "Upload-Length is over Tus-Max-Size\n")

    text_error(post(srv, tok, {k: v for k, v in ok.items() if k != "Upload-Metadata"}), 400)
    text_error(post(srv, tok, {**ok, "Upload-Metadata": meta(name="a.txt")}), 400)
    for bad in ("../x", "/etc/passwd", "a/../../x", "", "a\\b"):
        text_error(post(srv, tok, {**ok, "Upload-Metadata": meta(filename=bad)}), 400)
    text_error(post(srv, tok, {**ok, "Upload-Metadata": meta(path="../x", filename="ok.txt")}),
               400)
    for bad in ("filename abc", "filename !!!!", "filename YS50eHQ", "filename=YS50eHQ="):
        text_error(post(srv, tok, {**ok, "Upload-Metadata": bad}), 400)

    text_error(post(srv, None, ok), 401)
    text_error(post(srv, "fy_" + "Z" * 43, ok), 401)
    assert os.listdir(os.path.join(srv.data_dir, "uploads")) == []

    # The largest upload allowed is exactly Tus-Max-Size.
    create(srv, tok, 1048576, "big.bin")


@pytest.mark.sqlite_only
def test_requests_without_tus_resumable_are_412(server, bob):
    loc = create(server, bob, 10)
    calls = [lambda h: post(server, bob, {**h, "Upload-Length": "10",
                                          "Upload-Metadata": meta(filename="a.txt")}),
             lambda h: head(server, bob, loc, headers=h),
             lambda h: server.request("PATCH", loc, token=bob, data=b"abc",
                                      headers={**h, "Content-Type": OCTETS, "Upload-Offset": "0"}),
             lambda h: server.delete(loc, token=bob, headers=h)]
    for call in calls:
        for h in ({}, {"Tus-Resumable": "0.2.2"}, {"Tus-Resumable": "1.0"}):
            r = tus(call(h), 412)
            assert r.headers["Tus-Version"] == "1.0.0"
            if r.request.method != "HEAD":
                assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert r.content == b"Tus-Resumable: 1.0.0 is required\n"
    assert offset_of(server, bob, loc) == 0


def test_path_wins_over_filename(server, bob):
    loc = create(server, bob, 3, metadata=meta(filename="a.txt", path="dir/b.txt"))
    r = tus(patch(server, bob, loc, 0, b"xyz"), 204)
    assert r.headers["Upload-Offset"] == "3"
    assert_stored(server, bob, "dir/b.txt", b"xyz")
    assert download(server, bob, "a.txt").status_code == 404


def test_uploads_are_private_to_their_user(server, bob):
    alice = server.create_token(user_id="alice", name="alice")["token"]
    loc = create(server, alice, 10, "secret.txt")
    tus(patch(server, alice, loc, 0, b"12345"), 204)

    text_error(head(server, bob, loc), 404)
    text_error(patch(server, bob, loc, 5, b"67890"), 404)
    text_error(server.delete(loc, token=bob, headers=TUS), 404)
    assert offset_of(server, alice, loc) == 5
    assert os.path.isdir(upload_dir(server, loc))

    text_error(head(server, bob, "/tus/" + "0" * 32), 404)
    text_error(head(server, bob, "/tus/nothing-here"), 404)
    text_error(head(server, None, loc), 401)


# --- PATCH ------------------------------------------------------------------------------


def test_patch_refusals_leave_the_offset(server, bob):
    loc = create(server, bob, 10, "p.txt")
    text_error(patch(server, bob, loc, 0, b"abc", **{"Content-Type": "text/plain"}), 415)
    text_error(server.request("PATCH", loc, token=bob, data=b"abc",
                              headers={**TUS, "Upload-Offset": "0"}), 415)
    text_error(patch(server, bob, loc, 3, b"abc"), 409)
    h = {**TUS, "Content-Type": OCTETS}
    text_error(server.request("PATCH", loc, token=bob, data=b"abc", headers=h), 400)
    text_error(patch(server, bob, loc, 0, b"x" * 11), 413, "the body goes past Upload-Length\n")
    tus(server.request("PATCH", loc, token=bob, data=b"abc",
                       headers={"Content-Type": OCTETS, "Upload-Offset": "0"}), 412)
    assert offset_of(server, bob, loc) == 0

    r = tus(patch(server, bob, loc, 0, b"abcd"), 204)
    assert r.headers["Upload-Offset"] == "4"
    assert r.content == b""
    http_date(r.headers["Upload-Expires"])
    r = text_error(patch(server, bob, loc, 0, b"abcd"), 409)
    assert r.headers["Upload-Offset"] == "4"
    text_error(patch(server, bob, loc, 4, b"x" * 7), 413)
    assert offset_of(server, bob, loc) == 4
    with open(os.path.join(upload_dir(server, loc), "data"), "rb") as f:
        assert f.read() == b"abcd"


def test_patch_checksums(server, bob):
    pieces = [b"first piece,", b"second piece,", b"third"]
    data = b"".join(pieces)
    loc = create(server, bob, len(data), "sums.txt")

    def digest(algo, body):
        return f"{algo} " + base64.b64encode(hashlib.new(algo, body).digest()).decode()

    off = len(pieces[0])
    r = tus(patch(server, bob, loc, 0, pieces[0], **{"Upload-Checksum": digest("sha1", pieces[0])}),
            204)
    assert r.headers["Upload-Offset"] == str(off)
    text_error(patch(server, bob, loc, off, pieces[1],
                     **{"Upload-Checksum": digest("sha1", b"something else")}), 460)
    assert offset_of(server, bob, loc) == off
    text_error(patch(server, bob, loc, off, pieces[1],
                     **{"Upload-Checksum": digest("sha256", pieces[1] + b"!")}), 460)
    assert offset_of(server, bob, loc) == off
    text_error(patch(server, bob, loc, off, pieces[1],
                     **{"Upload-Checksum": digest("md5", pieces[1])}), 400)
    text_error(patch(server, bob, loc, off, pieces[1],
                     **{"Upload-Checksum": "sha1 not-base64"}), 400)
    assert offset_of(server, bob, loc) == off

    r = tus(patch(server, bob, loc, off, pieces[1],
                  **{"Upload-Checksum": digest("sha256", pieces[1])}), 204)
    off += len(pieces[1])
    assert r.headers["Upload-Offset"] == str(off)
    tus(patch(server, bob, loc, off, pieces[2], **{"Upload-Checksum": digest("sha1", pieces[2])}),
        204)
    assert_stored(server, bob, "sums.txt", data)


@pytest.mark.sqlite_only
def test_chunked_patch_past_length_is_refused_cleanly(server, bob):
    """A chunked PATCH (no Content-Length) that goes past Upload-Length: 413, and the
    upload is never left claiming all its bytes without having become a file."""
    loc = create(server, bob, 10, "chunked.txt")
    sock = raw_request(server, f"PATCH {loc} HTTP/1.1\nHost: x\nAuthorization: Bearer {bob}\n"
                       f"Tus-Resumable: 1.0.0\nUpload-Offset: 0\nContent-Type: {OCTETS}\n"
                       "Transfer-Encoding: chunked\n\n")
    with sock:
        sock.sendall(b"a\r\n1234567890\r\n")
        time.sleep(0.3)
        sock.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        status = read_status(sock)
    r = tus(head(server, bob, loc), 200)
    offset, length = r.headers["Upload-Offset"], r.headers["Upload-Length"]
    got = download(server, bob, "chunked.txt")
    stuck = offset == length and got.status_code != 200
    assert status == 413 and not stuck, \
        f"answer {status}; then HEAD says {offset}/{length}, download {got.status_code}"
    assert server.get("/health").status_code == 200


# --- completion, termination, expiry -----------------------------------------------------


def test_last_byte_makes_blob_and_file_entry(server, bob):
    data = os.urandom(200 * 1024)
    loc = create(server, bob, len(data), "photos/cat.jpg")
    off = 0
    for size in (70000, 70000, len(data) - 140000):
        r = tus(patch(server, bob, loc, off, data[off:off + size]), 204)
        off += size
        assert r.headers["Upload-Offset"] == str(off)
    assert "Upload-Expires" not in r.headers
    assert_stored(server, bob, "photos/cat.jpg", data)

    r = tus(head(server, bob, loc), 200)
    assert r.headers["Upload-Offset"] == r.headers["Upload-Length"] == str(len(data))
    assert not os.path.exists(upload_dir(server, loc))
    assert blob_files(server) == [blob_file(server, data)]
    # Nothing more can be appended.
    text_error(patch(server, bob, loc, len(data), b"x"), 409)
    assert download(server, bob, "photos/cat.jpg").content == data


def test_terminate(server, bob):
    loc = create(server, bob, 100, "gone.txt")
    tus(patch(server, bob, loc, 0, b"x" * 40), 204)
    tus(server.delete(loc, token=bob), 412)
    r = tus(server.delete(loc, token=bob, headers=TUS), 204)
    assert r.content == b""
    text_error(head(server, bob, loc), 404)
    text_error(patch(server, bob, loc, 40, b"y"), 404)
    text_error(server.delete(loc, token=bob, headers=TUS), 404)
    assert not os.path.exists(upload_dir(server, loc))
    assert download(server, bob, "gone.txt").status_code == 404
    assert blob_files(server) == []


def test_expired_upload_is_gone(make_server):
    srv = make_server("--upload-expiry", "1")
    tok = srv.create_token(user_id="bob")["token"]
    before = time.time()
    r = tus(post(srv, tok, {**TUS, "Upload-Length": "10",
                            "Upload-Metadata": meta(filename="late.txt")}), 201)
    loc = r.headers["Location"]
    assert before - 1 <= http_date(r.headers["Upload-Expires"]) <= time.time() + 1.5
    tus(patch(srv, tok, loc, 0, b"12345"), 204)
    time.sleep(1.5)
    text_error(head(srv, tok, loc), 410, "the upload has expired\n")
    text_error(patch(srv, tok, loc, 5, b"67890"), 410)
    assert download(srv, tok, "late.txt").status_code == 404


def test_same_content_twice_is_two_files_one_blob(server, bob):
    data = b"the same bytes " * 1000
    for path in ("one/copy.txt", "two/copy.txt"):
        loc = create(server, bob, len(data), path)
        tus(patch(server, bob, loc, 0, data), 204)
        assert_stored(server, bob, path, data)
    files = server.get("/api/v1/files", token=bob).json()["files"]
    assert sorted(f["path"] for f in files) == ["one/copy.txt", "two/copy.txt"]
    assert {f["sha256"] for f in files} == {hashlib.sha256(data).hexdigest()}
    assert blob_files(server) == [blob_file(server, data)]


# --- the real tus-js-client ---------------------------------------------------------------


@needs_node
def test_js_client_uploads_in_chunks(server, bob, tmp_path):
    data = os.urandom(300 * 1000)
    src = tmp_path / "random.bin"
    src.write_bytes(data)
    out = js_upload(server, bob, src, "--path", "js/random.bin", "--chunk-size", "65536")
    assert out.get("done") is True, out
    assert out["offset"] == len(data)
    assert_stored(server, bob, "js/random.bin", data)
    assert not os.path.exists(upload_dir(server, loc_of(out["url"])))


@needs_node
@pytest.mark.sqlite_only
def test_js_client_empty_file(server, bob, tmp_path):
    """tus-js-client creates a zero-length upload and, rightly, sends no PATCH: the
    creation alone must make the (empty) file."""
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    out = js_upload(server, bob, src, "--path", "js/empty.bin")
    assert out.get("done") is True, out
    assert_stored(server, bob, "js/empty.bin", b"")


@needs_node
def test_js_client_resumes_after_restart(server, bob, tmp_path):
    data = os.urandom(300 * 1024)
    src = tmp_path / "resume.bin"
    src.write_bytes(data)
    args = ("--path", "js/resume.bin", "--chunk-size", "65536")
    first = js_upload(server, bob, src, *args, "--stop-after", "100000")
    assert first.get("done") is False and first["offset"] == 131072, first

    server.restart()
    loc = loc_of(first["url"])
    assert offset_of(server, bob, loc) == 131072
    out = js_upload(server, bob, src, *args, "--resume", server.base + loc)
    assert out.get("done") is True, out
    assert_stored(server, bob, "js/resume.bin", data)
    assert not os.path.exists(upload_dir(server, loc))


@needs_node
def test_js_client_resumes_after_crash(server, bob, tmp_path):
    data = os.urandom(300 * 1024)
    src = tmp_path / "crash.bin"
    src.write_bytes(data)
    args = ("--path", "js/crash.bin", "--chunk-size", "65536")
    first = js_upload(server, bob, src, *args, "--stop-after", "100000")
    acked = first["offset"]
    assert first.get("done") is False and acked == 131072, first
    loc = loc_of(first["url"])

    # A PATCH that promises 150000 bytes, sends 50000, and then the server dies.
    sock = raw_request(server, f"PATCH {loc} HTTP/1.1\nHost: x\nAuthorization: Bearer {bob}\n"
                       f"Tus-Resumable: 1.0.0\nUpload-Offset: {acked}\n"
                       f"Content-Type: {OCTETS}\nContent-Length: 150000\n\n")
    with sock:
        sock.sendall(data[acked:acked + 50000])
        part = os.path.join(upload_dir(server, loc), "data")
        assert wait_until(lambda: os.path.getsize(part) == acked + 50000), \
            os.path.getsize(part)
        assert server.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    server.start()

    # The unfinished PATCH does not count; what was acknowledged before it does.
    offset = offset_of(server, bob, loc)
    assert offset <= acked
    assert offset == acked, "bytes acknowledged before the crash were lost"
    out = js_upload(server, bob, src, *args, "--resume", server.base + loc)
    assert out.get("done") is True, out
    assert_stored(server, bob, "js/crash.bin", data)
    assert not os.path.exists(upload_dir(server, loc))


def test_offset_follows_the_data_on_disk(server, bob):
    """Data cut short behind ferry's back (a restore without uploads/, say): the next
    PATCH, even without a HEAD first, learns the offset the data really has (409) instead
    of having the gap padded with zeros, and the upload goes on from there."""
    data = os.urandom(100 * 1024)
    loc = create(server, bob, len(data), name="cut.bin")
    tus(patch(server, bob, loc, 0, data[:80 * 1024]), 204)
    with open(os.path.join(upload_dir(server, loc), "data"), "r+b") as f:
        f.truncate(50 * 1024)
    r = text_error(patch(server, bob, loc, 80 * 1024, data[80 * 1024:]), 409)
    assert r.headers["Upload-Offset"] == str(50 * 1024)
    tus(patch(server, bob, loc, 50 * 1024, data[50 * 1024:]), 204)
    assert_stored(server, bob, "cut.bin", data)
