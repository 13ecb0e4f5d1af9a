"""EonaCat.Sync's cloud storage: /api/v1/cloud/{s3,azure,local}/{upload,list,download,shared-link}.

Every call runs against real emulators the tests start (s3rver for S3, azurite for Azure
Blob Storage, both from tests/api/js, installed by scripts/test-peers.sh) and against the
local provider (a folder). Shared links are fetched with plain curl. Multipart uploads
(S3 parts, Azure blocks) are forced with a small --cloud-part-size and resumed after a
crash between parts; a download is resumed after a crash mid-way and an emulator restart.

The cloud calls do not touch the store, so these tests run on SQLite only."""

import hashlib
import hmac
import http.client
import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse

import pytest
import requests

from conftest import assert_v1_error, free_port, wait_until

pytestmark = pytest.mark.sqlite_only

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
BIN = os.path.join(JS_DIR, "node_modules", ".bin")
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node runs the emulators")

S3_KEY, S3_SECRET, BUCKET = "S3RVER", "S3RVER", "ferry-test"  # s3rver's own key pair
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
          "KBHBeksoGMGw==")  # azurite's documented account key
CONTAINER = "ferry-test"
PART = 5 * 1024 * 1024  # S3's smallest part
PROVIDERS = ["s3", "azure", "local"]


class Emulator:
    """One emulator process (s3rver or azurite) on a free port, its data in a folder that
    survives a restart."""

    def __init__(self, kind, data_dir):
        self.kind, self.data_dir = kind, data_dir
        self.port = free_port()
        self.proc = None
        self.log = open(os.path.join(os.path.dirname(data_dir), f"{kind}.log"), "ab")

    def command(self):
        if self.kind == "s3":
            return [NODE, os.path.join(BIN, "s3rver"), "-d", self.data_dir, "-a", "127.0.0.1",
                    "-p", str(self.port), "--configure-bucket", BUCKET, "--silent"]
        return [NODE, os.path.join(BIN, "azurite-blob"), "-l", self.data_dir, "--blobHost",
                "127.0.0.1", "--blobPort", str(self.port), "--disableTelemetry", "--silent",
                "--skipApiVersionCheck"]

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def up():
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return True
            except requests.ConnectionError:
                return False

        assert wait_until(up, timeout=60, interval=0.2), f"{self.kind} did not start"
        return self

    def stop(self, sig=signal.SIGKILL):
        """Stops the emulator (SIGTERM lets azurite save its metadata first)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)
        self.proc = None



@pytest.fixture(scope="module")
def emulators(tmp_path_factory):
    if NODE is None or not os.path.isdir(os.path.join(JS_DIR, "node_modules", "s3rver")):
        pytest.skip("run scripts/test-peers.sh first: the emulators are npm packages")
    root = tmp_path_factory.mktemp("emulators")
    emus = {"s3": Emulator("s3", str(root / "s3")).start(),
            "azure": Emulator("azure", str(root / "azure")).start()}
    yield emus
    for e in emus.values():
        e.stop()


def cloud_env(emus, local_dir):
    """The providers' settings, given the way an operator would: environment variables."""
    return {
        "FERRY_S3_ENDPOINT": f"http://127.0.0.1:{emus['s3'].port}",
        "FERRY_S3_REGION": "us-east-1",
        "FERRY_S3_ACCESS_KEY_ID": S3_KEY,
        "FERRY_S3_SECRET_ACCESS_KEY": S3_SECRET,
        "FERRY_S3_BUCKET": BUCKET,
        "FERRY_AZURE_CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{emus['azure'].port}/{AZ_ACCOUNT};"),
        "FERRY_AZURE_CONTAINER": CONTAINER,
        "FERRY_LOCAL_CLOUD_DIR": str(local_dir),
    }


@pytest.fixture
def cloud(make_server, emulators, tmp_path):
    """(server, files root) with every provider configured and a small part size."""
    root = tmp_path / "files"
    root.mkdir()
    srv = make_server("--file-root", str(root), "--cloud-part-size", "5M", "--cloud-timeout", "3",
                      env=cloud_env(emulators, tmp_path / "cloud"))
    return srv, root


def crash_and_restart(srv, point):
    """Restarts srv with FERRY_CRASH_AT=point; returns a function that, after the crash,
    starts it again without."""
    srv.stop()
    srv.env["FERRY_CRASH_AT"] = point
    srv.start()

    def again():
        assert srv.wait_exit(30) == -signal.SIGKILL
        del srv.env["FERRY_CRASH_AT"]
        srv.start()

    return again


def unique(name):
    return f"t{time.monotonic_ns()}/{name}"


def call(srv, method, path, **kw):
    """An admin's call (cloud calls are for admins and users), with time for large files."""
    kw.setdefault("timeout", 120)
    return srv.request(method, path, token=srv.admin_token, **kw)


def upload(srv, provider, cloud_path, local, metadata=None):
    body = {"cloudPath": cloud_path, "localPath": str(local)}
    if metadata is not None:
        body["metadata"] = metadata
    return call(srv, "POST", f"/api/v1/cloud/{provider}/upload", json=body)


def download(srv, provider, cloud_path, local):
    return call(srv, "POST", f"/api/v1/cloud/{provider}/download",
                json={"cloudPath": cloud_path, "localPath": str(local)})


# --- every call on every provider ----------------------------------------------------------


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_upload_list_download_link(cloud, provider, tmp_path):
    srv, root = cloud
    data = os.urandom(300_000)
    (root / "file.zip").write_bytes(data)
    path = unique("backups/file.zip")
    meta = {"backup-type": "full", "version": "1.0"}

    r = upload(srv, provider, "/" + path, root / "file.zip", meta)  # the seed's leading '/'
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["message"] == "File uploaded successfully"
    assert isinstance(body["executionTimeMs"], int)
    assert body["size"] == len(data) and body["eTag"]

    r = call(srv, "GET", f"/api/v1/cloud/{provider}/list", params={"prefix": path.split("/")[0]})
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing["totalCount"] == 1
    f = listing["files"][0]
    assert set(f) == {"name", "path", "size", "modifiedDate", "eTag"}
    assert f["name"] == "file.zip" and f["path"] == path and f["size"] == len(data)
    assert f["modifiedDate"].endswith("Z") and f["eTag"]

    r = download(srv, provider, path, root / "out" / "copy.zip")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["success"] is True and got["message"] == "File downloaded successfully"
    assert got["metadata"] == meta
    assert got["resumedFrom"] == 0
    assert (root / "out" / "copy.zip").read_bytes() == data

    r = call(srv, "GET", f"/api/v1/cloud/{provider}/shared-link", params={"path": path, "expiresIn": 120})
    assert r.status_code == 200, r.text
    link = r.json()
    assert set(link) == {"url", "expiresAt"}
    fetched = subprocess.run(["curl", "-sf", link["url"]], capture_output=True)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == data


def test_unknown_provider_names_the_three(cloud):
    srv, root = cloud
    for method, action in (("POST", "upload"), ("GET", "list"), ("POST", "download"),
                           ("GET", "shared-link")):
        kw = {"json": {"cloudPath": "a", "localPath": str(root / "a")}} if method == "POST" else {}
        r = call(srv, method, f"/api/v1/cloud/dropbox/{action}", **kw)
        assert_v1_error(r, 400, "INVALID_REQUEST")
        assert all(name in r.json()["details"] for name in ("s3", "azure", "local"))


def test_calls_need_a_credential(cloud):
    srv, _ = cloud
    r = srv.get("/api/v1/cloud/s3/list")
    assert_v1_error(r, 401, "UNAUTHORIZED")


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_multipart_upload_resumes_after_a_crash(cloud, provider):
    """A file of three parts: ferry dies after the first part is stored; the retry sends
    the other two, and what is stored is the file."""
    srv, root = cloud
    data = os.urandom(2 * PART + 123_457)
    src = root / "big.bin"
    src.write_bytes(data)
    path = unique("big.bin")

    if provider != "local":  # the local provider copies in one stream, there are no parts
        again = crash_and_restart(srv, "cloud_part_done")
        with pytest.raises(requests.ConnectionError):
            upload(srv, provider, path, src, {"kind": "big"})
        again()
    r = upload(srv, provider, path, src, {"kind": "big"})
    assert r.status_code == 200, r.text
    body = r.json()
    if provider != "local":
        assert (body["parts"], body["partsResumed"]) == (2, 1)
    assert body["size"] == len(data)

    r = download(srv, provider, path, root / "big.copy")
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"kind": "big"}
    assert hashlib.sha256((root / "big.copy").read_bytes()).digest() == \
        hashlib.sha256(data).digest()
    # the record of the finished upload is gone; a second upload starts afresh
    assert provider == "local" or os.listdir(os.path.join(srv.data_dir, "cloud-uploads")) == []
    r = upload(srv, provider, path, src)
    assert r.status_code == 200 and r.json()["partsResumed"] == 0, r.text


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_download_resumes_after_a_crash_and_an_emulator_restart(cloud, emulators, provider):
    srv, root = cloud
    data = os.urandom(3 * 1024 * 1024 + 77)
    (root / "src.bin").write_bytes(data)
    path = unique("resume.bin")
    assert upload(srv, provider, path, root / "src.bin").status_code == 200

    again = crash_and_restart(srv, "cloud_download_write:5")
    with pytest.raises(requests.ConnectionError):
        download(srv, provider, path, root / "dst.bin")
    if provider in emulators:  # down: the call fails and keeps what it has; then back up
        emulators[provider].stop(signal.SIGTERM)
        again()
        r = download(srv, provider, path, root / "dst.bin")
        assert_v1_error(r, 503, "CLOUD_ERROR")
        emulators[provider].start()
    else:
        again()
    assert not (root / "dst.bin").exists()  # only the partial file, never a torn one
    partial = [n for n in os.listdir(root) if n.startswith("dst.bin.ferry-part-")]
    assert len(partial) == 1 and 0 < os.path.getsize(root / partial[0]) < len(data)

    r = download(srv, provider, path, root / "dst.bin")
    assert r.status_code == 200, r.text
    assert 0 < r.json()["resumedFrom"] < len(data)
    assert (root / "dst.bin").read_bytes() == data
    assert sorted(os.listdir(root)) == ["dst.bin", "src.bin"]  # no partial file left


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_link_is_refused(cloud, provider):
    srv, root = cloud
    (root / "f.txt").write_bytes(b"short-lived")
    path = unique("f.txt")
    assert upload(srv, provider, path, root / "f.txt").status_code == 200
    r = call(srv, "GET", f"/api/v1/cloud/{provider}/shared-link",
             params={"path": path, "expiresIn": 1})
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    time.sleep(2.2)
    fetched = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                             capture_output=True, text=True)
    assert fetched.stdout == "403", fetched


def test_local_link_with_a_wrong_signature_is_refused(cloud):
    srv, root = cloud
    (root / "f.txt").write_bytes(b"secret bytes")
    path = unique("f.txt")
    assert upload(srv, "local", path, root / "f.txt").status_code == 200
    url = call(srv, "GET", "/api/v1/cloud/local/shared-link", params={"path": path}).json()["url"]
    assert requests.get(url, timeout=10).content == b"secret bytes"
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert_v1_error(requests.get(tampered, timeout=10), 403, "FORBIDDEN")
    other = url.replace("f.txt", "g.txt")
    assert_v1_error(requests.get(other, timeout=10), 403, "FORBIDDEN")


@needs_node
@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_provider_down_is_503_cloud_error(make_server, emulators, tmp_path, provider):
    root = tmp_path / "files"
    root.mkdir()
    (root / "f.txt").write_bytes(b"x")
    env = cloud_env(emulators, tmp_path / "cloud")
    dead = free_port()  # nothing listens there
    env["FERRY_S3_ENDPOINT"] = f"http://127.0.0.1:{dead}"
    env["FERRY_AZURE_CONNECTION_STRING"] = env["FERRY_AZURE_CONNECTION_STRING"].replace(
        str(emulators["azure"].port), str(dead))
    srv = make_server("--file-root", str(root), "--cloud-timeout", "2", env=env)
    for r in (upload(srv, provider, "a/f.txt", root / "f.txt"),
              call(srv, "GET", f"/api/v1/cloud/{provider}/list"),
              download(srv, provider, "a/f.txt", root / "g.txt"),
              call(srv, "GET", f"/api/v1/cloud/{provider}/shared-link", params={"path": "a"})):
        assert_v1_error(r, 503, "CLOUD_ERROR")
        assert provider in r.json()["details"]


def test_unconfigured_provider_is_503_naming_the_settings(make_server, tmp_path):
    srv = make_server("--file-root", str(tmp_path))
    for provider, setting in (("s3", "s3-endpoint"), ("azure", "azure-connection-string"),
                              ("local", "local-cloud-dir")):
        r = call(srv, "GET", f"/api/v1/cloud/{provider}/list")
        assert_v1_error(r, 503, "CLOUD_ERROR")
        assert setting in r.json()["details"]


@needs_node
def test_credentials_never_appear_in_answers_or_logs(cloud, emulators, tmp_path):
    srv, root = cloud
    (root / "f.txt").write_bytes(b"x")
    answers = []
    for provider in PROVIDERS:
        answers.append(upload(srv, provider, "creds/f.txt", root / "f.txt").text)
        answers.append(call(srv, "GET", f"/api/v1/cloud/{provider}/list").text)
        answers.append(download(srv, provider, "creds/f.txt", root / "g.txt").text)
        answers.append(download(srv, provider, "creds/missing", root / "g.txt").text)
    # a refused key names the failure, not the key (s3rver checks the key id but does not
    # verify SigV4 signatures; azurite verifies SharedKey ones)
    env = cloud_env(emulators, tmp_path / "cloud2")
    env["FERRY_S3_ACCESS_KEY_ID"] = "WRONGKEYID"
    env["FERRY_S3_SECRET_ACCESS_KEY"] = "wrong-secret-1234"
    env["FERRY_AZURE_CONNECTION_STRING"] = env["FERRY_AZURE_CONNECTION_STRING"].replace(
        AZ_KEY, "d3Jvbmcta2V5LXZhbHVl")
    other = srv_with(srv, env)
    for provider in ("s3", "azure"):
        r = call(other, "GET", f"/api/v1/cloud/{provider}/list")
        assert_v1_error(r, 503, "CLOUD_ERROR")
        answers.append(r.text)
    other.stop()
    logs = srv.stderr() + other.stderr() + srv.stdout + other.stdout
    for secret in (AZ_KEY, AZ_KEY[:20], "wrong-secret-1234", "d3Jvbmcta2V5LXZhbHVl",
                   "AccountKey"):
        assert secret not in logs
        assert not any(secret in a for a in answers)


def srv_with(srv, env):
    """Another server like srv with a different environment."""
    from conftest import Server
    other = Server(srv.data_dir + "-other", None, srv.args, env)
    return other.start()


@needs_node
def test_paths_are_confined(cloud, tmp_path):
    srv, root = cloud
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"x")
    r = upload(srv, "local", "a.txt", outside)
    assert_v1_error(r, 403, "FORBIDDEN")
    r = download(srv, "local", "a.txt", tmp_path / "elsewhere.txt")
    assert_v1_error(r, 403, "FORBIDDEN")
    # links inside the root that lead out are followed for the check, and refused
    os.symlink(outside, root / "link.txt")
    os.symlink(tmp_path, root / "linkdir")
    assert_v1_error(upload(srv, "local", "a.txt", root / "link.txt"), 403, "FORBIDDEN")
    r = download(srv, "local", "a.txt", root / "linkdir" / "planted.txt")
    assert_v1_error(r, 403, "FORBIDDEN")
    assert not (tmp_path / "planted.txt").exists()
    r = download(srv, "local", "a.txt", "relative/path.txt")
    assert r.status_code in (400, 403), r.text
    (root / "in.txt").write_bytes(b"x")
    for bad in ("../escape.txt", "a/../../b", "", "a\\b"):
        assert_v1_error(upload(srv, "local", bad, root / "in.txt"), 400, "INVALID_REQUEST")
    assert_v1_error(upload(srv, "local", ".ferry-meta/x", root / "in.txt"), 400,
                    "INVALID_REQUEST")
    r = upload(srv, "s3", "m.txt", root / "in.txt", {"bad name": "x"})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    r = upload(srv, "s3", "m.txt", root / "in.txt", {"n": 1})
    assert_v1_error(r, 400, "INVALID_REQUEST")


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_list_prefix_filter_and_missing_files(cloud, provider):
    srv, root = cloud
    (root / "f").write_bytes(b"abc")
    base = unique("")
    for name in ("a/one.zip", "a/two.txt", "b/three.zip"):
        assert upload(srv, provider, base + name, root / "f").status_code == 200
    listing = call(srv, "GET", f"/api/v1/cloud/{provider}/list", params={"prefix": base}).json()
    assert [f["path"] for f in listing["files"]] == [base + n for n in
                                                     ("a/one.zip", "a/two.txt", "b/three.zip")]
    listing = call(srv, "GET", f"/api/v1/cloud/{provider}/list",
                   params={"prefix": base + "a/", "filter": "*.zip"}).json()
    assert listing["totalCount"] == 1 and listing["files"][0]["name"] == "one.zip"
    listing = call(srv, "GET", f"/api/v1/cloud/{provider}/list",
                   params={"prefix": base, "limit": 1}).json()
    assert listing["totalCount"] == 3 and len(listing["files"]) == 1
    r = call(srv, "GET", f"/api/v1/cloud/{provider}/shared-link", params={"path": base + "nope"})
    assert_v1_error(r, 404, "NOT_FOUND")
    assert_v1_error(download(srv, provider, base + "nope", root / "x"), 404, "NOT_FOUND")


@needs_node
def test_metrics_count_cloud_bytes_per_provider(cloud):
    srv, root = cloud
    data = os.urandom(100_000)
    (root / "f").write_bytes(data)
    for provider in PROVIDERS:
        assert upload(srv, provider, unique("m"), root / "f").status_code == 200
    m = call(srv, "GET", "/api/v1/metrics").json()
    assert m["cloudStorageUsage"]["s3"] >= len(data)
    assert m["cloudStorageUsage"]["azure"] >= len(data)
    assert m["totalSyncOperations"] >= 3 and m["totalDataTransferred"] >= 3 * len(data)
    text = call(srv, "GET", "/metrics").text
    assert f'ferry_cloud_transferred_bytes_total{{provider="local"}} {len(data)}' in text


@needs_node
@pytest.mark.parametrize("provider", PROVIDERS)
def test_odd_names_and_empty_files(cloud, provider):
    """Names that need encoding (spaces, '+', '=', UTF-8) sign and round-trip; empty files too."""
    srv, root = cloud
    (root / "empty").write_bytes(b"")
    (root / "odd").write_bytes(b"odd bytes")
    base = unique("")
    for name, src in (("sp ace/\u00e9+x=1.txt", "odd"), ("empty.bin", "empty")):
        r = upload(srv, provider, base + name, root / src, {"n": "v"})
        assert r.status_code == 200, r.text
        r = download(srv, provider, base + name, root / "back")
        assert r.status_code == 200, r.text
        assert (root / "back").read_bytes() == (root / src).read_bytes()
        link = call(srv, "GET", f"/api/v1/cloud/{provider}/shared-link",
                    params={"path": base + name}).json()["url"]
        fetched = subprocess.run(["curl", "-sf", link], capture_output=True)
        assert fetched.returncode == 0 and fetched.stdout == (root / src).read_bytes(), fetched
    listing = call(srv, "GET", f"/api/v1/cloud/{provider}/list", params={"prefix": base}).json()
    assert sorted(f["path"] for f in listing["files"]) == sorted(
        [base + "empty.bin", base + "sp ace/\u00e9+x=1.txt"])


# --- SigV4, checked: s3rver does not verify signatures, so a proxy in front of it does --------


def sigv4_expected(method, raw_path, headers, secret):
    """The signature AWS would compute for a request (header or query authentication),
    following the documented algorithm; None when the request carries no SigV4."""
    path, _, query = raw_path.partition("?")
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    auth = headers.get("Authorization", "")
    if auth.startswith("AWS4-HMAC-SHA256 "):
        fields = dict(f.strip().split("=", 1) for f in auth[17:].split(","))
        scope = fields["Credential"].split("/", 1)[1]
        signed, stamp = fields["SignedHeaders"], headers["x-amz-date"]
        payload = headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())
    elif any(k == "X-Amz-Signature" for k, _ in params):
        q = dict(params)
        scope = q["X-Amz-Credential"].split("/", 1)[1]
        signed, stamp, payload = q["X-Amz-SignedHeaders"], q["X-Amz-Date"], "UNSIGNED-PAYLOAD"
        params = [(k, v) for k, v in params if k != "X-Amz-Signature"]
    else:
        return None
    enc = lambda v: urllib.parse.quote(v, safe="-_.~")
    canon_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params))
    canon_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed.split(";"))
    canonical = "\n".join([method, path, canon_query, canon_headers, signed, payload])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class SigV4Proxy(http.server.ThreadingHTTPServer):
    """Checks every request's SigV4 signature against S3_SECRET, then passes it to s3rver;
    a wrong or missing signature is a 403 SignatureDoesNotMatch, as S3 answers."""

    def __init__(self, upstream_port, delay=0.0):
        self.upstream_port, self.checked, self.delay = upstream_port, [], delay
        self.seen = threading.Event()  # a request arrived
        super().__init__(("127.0.0.1", 0), SigV4Handler)


class SigV4Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.set()
        time.sleep(self.server.delay)
        provided = (self.headers.get("Authorization", "").rpartition("Signature=")[2] or
                    dict(urllib.parse.parse_qsl(self.path.partition("?")[2])).get(
                        "X-Amz-Signature"))
        if not provided or provided != sigv4_expected(self.command, self.path, self.headers,
                                                      S3_SECRET):
            error = b"<Error><Code>SignatureDoesNotMatch</Code><Message>bad</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        self.server.checked.append(f"{self.command} {self.path}")
        up = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        up.request(self.command, self.path, body, dict(self.headers))
        resp = up.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", resp.getheader("Content-Length", str(len(data)))
                         if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        up.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one


@pytest.fixture
def proxied(make_server, emulators, tmp_path):
    """start(delay, *flags) -> (server, files root, env, proxy): a ferry whose S3 endpoint
    is a SigV4Proxy (answering after delay seconds) in front of the s3rver emulator."""
    proxies = []
    root = tmp_path / "files"
    root.mkdir()
    env = cloud_env(emulators, tmp_path / "cloud")

    def start(delay, *flags):
        proxy = SigV4Proxy(emulators["s3"].port, delay)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        proxies.append(proxy)
        env["FERRY_S3_ENDPOINT"] = f"http://127.0.0.1:{proxy.server_address[1]}"
        return make_server("--file-root", str(root), *flags, env=dict(env)), root, env, proxy

    yield start
    for proxy in proxies:
        proxy.shutdown()


@needs_node
def test_s3_requests_and_links_carry_valid_sigv4(proxied, make_server):
    """Every S3 call ferry makes (single and multipart uploads, listings, ranged
    downloads) and its presigned links pass an independent SigV4 check."""
    srv, root, env, proxy = proxied(0.0, "--cloud-part-size", "5M")
    data = os.urandom(PART + 1000)
    (root / "big").write_bytes(data)
    path = unique("sig v4/\u00e9t\u00e9+1.bin")
    r = upload(srv, "s3", path, root / "big", {"backup-type": "full"})
    assert r.status_code == 200 and r.json()["parts"] == 2, r.text
    r = call(srv, "GET", "/api/v1/cloud/s3/list", params={"prefix": path.split("/")[0]})
    assert r.status_code == 200 and r.json()["totalCount"] == 1, r.text
    assert download(srv, "s3", path, root / "back").status_code == 200
    assert (root / "back").read_bytes() == data
    link = call(srv, "GET", "/api/v1/cloud/s3/shared-link", params={"path": path}).json()
    fetched = subprocess.run(["curl", "-sf", link["url"]], capture_output=True)
    assert fetched.returncode == 0 and fetched.stdout == data
    methods = {c.split(" ")[0] for c in proxy.checked}
    assert methods >= {"POST", "PUT", "GET", "HEAD"}, proxy.checked
    # and the check is real: a wrong secret is refused
    env["FERRY_S3_SECRET_ACCESS_KEY"] = "not-the-secret"
    other = make_server("--file-root", str(root), env=env)
    assert_v1_error(call(other, "GET", "/api/v1/cloud/s3/list"), 503, "CLOUD_ERROR")


@needs_node
def test_transfers_in_requests_are_capped(proxied):
    """With 2 request threads one transfer may run at a time; another gets 429 at once,
    and the thread left serves other requests meanwhile."""
    srv, root, _, proxy = proxied(3.0, "--threads", "2")  # a slow provider
    (root / "f").write_bytes(b"slow")
    first = {}
    t = threading.Thread(target=lambda: first.update(r=upload(srv, "s3", "cap/f", root / "f")))
    t.start()
    assert proxy.seen.wait(10)
    r = upload(srv, "local", "cap/g", root / "f")
    assert_v1_error(r, 429, "RATE_LIMITED")
    assert r.headers["Retry-After"] == "1"
    assert srv.get("/api/v1/health").status_code == 200
    t.join(30)
    assert first["r"].status_code == 200, first["r"].text
    assert upload(srv, "local", "cap/g", root / "f").status_code == 200


@needs_node
def test_a_stopping_server_ends_its_transfers(proxied):
    """SIGTERM during a transfer to a provider that stalls: after --shutdown-timeout the
    transfer is ended and the server exits cleanly, instead of waiting for the provider."""
    srv, root, _, proxy = proxied(60.0, "--shutdown-timeout", "1", "--cloud-timeout", "120")
    (root / "f").write_bytes(b"stalled")
    answer = {}

    def slow():
        try:
            answer["r"] = upload(srv, "s3", "stop/f", root / "f")
        except requests.ConnectionError as e:
            answer["r"] = e

    t = threading.Thread(target=slow)
    t.start()
    assert proxy.seen.wait(10)
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 10
    t.join(10)
    r = answer["r"]
    assert isinstance(r, requests.ConnectionError) or r.status_code == 503, r


def test_local_links_outlive_a_restart_until_the_key_is_deleted(cloud):
    srv, root = cloud
    (root / "f.txt").write_bytes(b"kept")
    path = unique("f.txt")
    assert upload(srv, "local", path, root / "f.txt").status_code == 200
    url = call(srv, "GET", "/api/v1/cloud/local/shared-link", params={"path": path}).json()["url"]
    key_file = os.path.join(srv.data_dir, "cloud-link.key")
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    srv.restart()
    url = url.replace(url.split("/api/")[0], srv.base)  # the restarted server's port
    assert requests.get(url, timeout=10).content == b"kept"
    os.unlink(key_file)
    assert_v1_error(requests.get(url, timeout=10), 403, "FORBIDDEN")


def test_a_fifo_is_refused_at_once(make_server, tmp_path):
    """localPath naming a FIFO under a file root is no file to upload: refused at once
    (opening it would wait for a writer, holding the request and the server's shutdown)."""
    root = tmp_path / "files"
    root.mkdir()
    os.mkfifo(root / "pipe")
    srv = make_server("--file-root", str(root), env={"FERRY_LOCAL_CLOUD_DIR":
                                                     str(tmp_path / "lc")})
    r = srv.post("/api/v1/cloud/local/upload", token=srv.admin_token, timeout=20,
                 json={"cloudPath": "p", "localPath": str(root / "pipe")})
    assert "not a readable file" in assert_v1_error(r, 404, "NOT_FOUND")["details"]
