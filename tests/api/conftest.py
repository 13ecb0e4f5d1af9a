"""Harness for ferry's black-box API tests.

Every test that takes the `backend` argument runs twice, against SQLite and against a
real PostgreSQL 15 cluster that this file starts once per session in a temporary folder.
A test gets a running server from the `server` fixture (default options) or starts its
own with `make_server(*flags, env=...)`. Each server has its own data dir and, on
PostgreSQL, its own fresh database. At teardown every server still running is stopped
with SIGTERM and must exit 0 without a sanitizer report on stderr.

Markers: `sqlite_only` for behaviour that does not depend on the store (runs once),
`postgres_only` for behaviour that only PostgreSQL has.
"""

import base64
import glob
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FERRY_BIN = os.environ.get("FERRY_BIN", os.path.join(REPO, "build-test", "ferry"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


# --- helpers ----------------------------------------------------------------------------


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, secret, alg="HS256", header=None):
    """Builds a JWT by hand (no library): HS256/HS384/HS512, or "none" (empty signature)."""
    head = {"alg": alg, "typ": "JWT"}
    head.update(header or {})
    signing_input = (
        b64url(json.dumps(head, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    if alg == "none":
        return signing_input + "."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(sig)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra=None):
    """The environment for ferry: ours without FERRY_* settings, plus sanitizer options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env.update(extra or {})
    return env


def run_ferry(*args, env=None, timeout=30):
    """Runs a ferry command to completion; fails on a sanitizer report."""
    proc = subprocess.run(
        [FERRY_BIN, *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for marker in SANITIZER_MARKERS:
        assert marker not in proc.stderr, f"sanitizer report from ferry {args}:\n{proc.stderr}"
    return proc


def assert_v1_error(resp, status, code):
    """Checks EonaCat.Sync's error shape: errorCode, message, details, timestamp."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"errorCode", "message", "details", "timestamp"}, body
    assert body["errorCode"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], str) and body["details"]
    assert ISO_RE.match(body["timestamp"]), body["timestamp"]
    return body


def assert_legacy_error(resp, status):
    """Checks cloud-sync-api's error shape: {"success": false, "error": "..."}."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"success", "error"}, body
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    return body


def wait_until(predicate, timeout=5.0, interval=0.02):
    """Polls predicate until it returns a truthy value; returns that value or None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- PostgreSQL -------------------------------------------------------------------------


def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "initdb"))]
    if not dirs:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    return dirs[-1]


class PgCluster:
    """A throwaway PostgreSQL cluster in a temp folder, on its own TCP port.

    initdb and postgres refuse to run as root, so as root they run as the postgres user
    (runuser) in a folder it owns."""

    _db_counter = itertools.count(1)

    def __init__(self):
        self.bindir = pg_bindir()
        self.version = int(os.path.basename(os.path.dirname(self.bindir)).split(".")[0])
        self.root = tempfile.mkdtemp(prefix="ferry-pg-")
        os.chmod(self.root, 0o755)
        self.datadir = os.path.join(self.root, "data")
        self.sockdir = os.path.join(self.root, "sock")
        os.mkdir(self.sockdir)
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        self._run("initdb", "-D", self.datadir, "--auth=trust", "-U", "postgres", "-N",
                  "-E", "UTF8", "--locale=C")

    def _run(self, tool, *args, check=True, timeout=60):
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def start(self):
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200")
        self._run("pg_ctl", "-D", self.datadir, "-l", os.path.join(self.root, "log"),
                  "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "30", "stop",
                  check=False)

    def destroy(self):
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql, db="postgres"):
        """Runs one SQL string with psql (trust auth over TCP) and returns its rows as
        lists of strings (unaligned, tab-separated)."""
        proc = subprocess.run(
            ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
            capture_output=True, text=True, timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr}")
        return [line.split("\t") for line in proc.stdout.splitlines() if line]

    def create_database(self):
        name = f"ferry_t{os.getpid()}_{next(self._db_counter)}"
        # FILE_COPY from template0 is the quickest way to a fresh database (fsync is off).
        strategy = " STRATEGY FILE_COPY" if self.version >= 15 else ""
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0{strategy}")
        return name

    def url(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --- the server under test ---------------------------------------------------------------


class Server:
    """One `ferry serve` process on 127.0.0.1 with a random port.

    stdout is read by a thread (the "listening on" line tells the port); stderr goes to
    a file, which keeps growing across restarts."""

    def __init__(self, data_dir, db_url=None, args=(), env=None, backend="sqlite",
                 pg=None, db_name=None):
        self.data_dir = data_dir
        self.db_url = db_url
        self.args = list(args)
        self.env = dict(env or {})
        self.backend = backend
        self.pg = pg
        self.db_name = db_name
        self.stderr_path = os.path.join(os.path.dirname(data_dir),
                                        os.path.basename(data_dir) + ".stderr")
        self.proc = None
        self.port = None
        self.scheme = "http"  # "https" when started with --tls-cert
        self.stdout_lines = []  # of the current process
        self.starts = []        # stdout of each start, in order
        self.session = requests.Session()

    # lifecycle

    def command(self):
        cmd = [FERRY_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir]
        if self.db_url:
            cmd += ["--db", self.db_url]
        return cmd + self.args

    def start(self):
        self.stdout_lines = []
        self.starts.append(self.stdout_lines)
        listening = threading.Event()
        self._stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=self._stderr_file,
            stdin=subprocess.DEVNULL, env=child_env(self.env), cwd=os.path.dirname(self.data_dir),
        )
        lines, proc = self.stdout_lines, self.proc

        def reader():
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if " listening on http" in line:  # http:// or https://
                    listening.set()
            listening.set()  # EOF: the process is gone

        self._reader = threading.Thread(target=reader, daemon=True)
        self._reader.start()
        started = listening.wait(START_TIMEOUT) and any(
            " listening on http" in l for l in self.stdout_lines)
        if not started or self.proc.poll() is not None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"ferry did not start: {self.command()}\nstdout: "
                               f"{self.stdout_lines}\nstderr: {self.stderr()}")
        line = next(l for l in self.stdout_lines if " listening on http" in l)
        m = re.search(r"listening on (https?)://([0-9.]+):(\d+) \((\w+)\)", line)
        assert m, line
        self.scheme, self.port = m.group(1), int(m.group(3))
        assert m.group(4) == ("postgres" if self.backend == "postgres" else "sqlite"), line
        return self

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig and waits for the exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"ferry did not exit within {timeout}s of {sig!r}")
        self._reader.join(5)
        self._stderr_file.close()
        self.session.close()
        self.session = requests.Session()
        return rc

    def restart(self):
        rc = self.stop()
        assert rc == 0, f"ferry exited {rc} on SIGTERM:\n{self.stderr()}"
        return self.start()

    def wait_exit(self, timeout):
        """Waits for the process to exit by itself; returns its code (None if still up)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        self._stderr_file.close()
        self.session.close()
        self.session = requests.Session()
        return rc

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # what it said

    @property
    def stdout(self):
        return "\n".join(self.stdout_lines)

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_lines(self):
        """The per-request JSON log lines written so far."""
        out = []
        for line in self.stderr().splitlines():
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "requestId" in obj:
                out.append(obj)
        return out

    def wait_log(self, request_id, timeout=5.0):
        """The log lines of one request, once at least one has been written (the line is
        written when libmicrohttpd reports the request complete, just after the reply)."""
        return wait_until(
            lambda: [l for l in self.log_lines() if l["requestId"] == request_id], timeout)

    @property
    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    @property
    def base(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # HTTP

    def request(self, method, path, token=None, headers=None, **kw):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, headers=h, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def options(self, path, **kw):
        return self.request("OPTIONS", path, **kw)

    # ferry's own admin API

    def create_token(self, role="user", name="test", user_id="bob", **extra):
        body = {"name": name, "role": role}
        if user_id is not None:
            body["user_id"] = user_id
        body.update(extra)
        r = self.post("/api/v1/admin/tokens", token=self.admin_token, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    # the database, read directly

    def token_rows(self, token_id):
        """The ferry_tokens row of token_id as a dict of column -> text (None for NULL)."""
        if self.backend == "postgres":
            rows = self.pg.psql(
                "SELECT row_to_json(t)::text FROM ferry_tokens t WHERE id = "
                f"'{token_id}'", db=self.db_name)
            return [{k: None if v is None else str(v) for k, v in json.loads(r[0]).items()}
                    for r in rows]
        con = sqlite3.connect(os.path.join(self.data_dir, "ferry.db"), timeout=10)
        try:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT * FROM ferry_tokens WHERE id = ?", (token_id,)).fetchall()
            return [{k: None if r[k] is None else str(r[k]) for k in r.keys()} for r in rows]
        finally:
            con.close()

    # the database as another program sees it

    def db_exec(self, *statements):
        """Runs SQL statements straight in the server's database (as another program
        would), each committed. Works before the server starts, too."""
        if self.backend == "postgres":
            for sql in statements:
                self.pg.psql(sql, db=self.db_name)
            return
        os.makedirs(self.data_dir, exist_ok=True)
        con = sqlite3.connect(os.path.join(self.data_dir, "ferry.db"), timeout=10)
        try:
            for sql in statements:
                con.execute(sql)
                con.commit()
        finally:
            con.close()

    def db_query(self, sql):
        """Rows of a query run straight in the database, as lists of strings (None for
        NULL) on both backends."""
        if self.backend == "postgres":
            wrapped = f"SELECT row_to_json(q)::text FROM ({sql}) q"
            return [[None if v is None else str(v) for v in json.loads(r[0]).values()]
                    for r in self.pg.psql(wrapped, db=self.db_name)]
        con = sqlite3.connect(os.path.join(self.data_dir, "ferry.db"), timeout=10)
        try:
            return [[None if v is None else str(v) for v in row]
                    for row in con.execute(sql).fetchall()]
        finally:
            con.close()

    # teardown checks

    def sanitizer_report(self):
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        return None


@pytest.fixture
def _servers(request, tmp_path):
    """start(backend, *flags, env=, data_dir=, db_url=, pg=, schema=) starts a server (on
    PostgreSQL in a fresh database of pg, the shared cluster by default), after running
    the schema statements in its database, and checks each one at teardown."""
    started = []
    counter = itertools.count(1)

    def start(backend, *args, env=None, data_dir=None, db_url=None, pg=None, start=True,
              schema=()):
        db_name = None
        if backend == "postgres":
            pg = pg or request.getfixturevalue("pg_cluster")
            if db_url is None:
                db_name = pg.create_database()
                db_url = pg.url(db_name)
        if data_dir is None:
            data_dir = str(tmp_path / f"data{next(counter)}")
        srv = Server(data_dir, db_url, args, env, backend=backend, pg=pg, db_name=db_name)
        started.append(srv)
        if schema:  # the user's own tables, made before ferry starts
            srv.db_exec(*schema)
        return srv.start() if start else srv

    yield start

    problems = []
    for srv in started:
        if srv.proc is None:
            continue
        if srv.running:
            rc = srv.stop()
            if rc != 0:
                problems.append(f"ferry exited {rc} on SIGTERM")
        report = srv.sanitizer_report()
        if report:
            problems.append("sanitizer report on stderr:\n" + report[-6000:])
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def make_server(_servers, backend):
    """make_server(*flags, env=None, data_dir=None) starts ferry on the test's backend."""

    def make(*args, **kw):
        return _servers(backend, *args, **kw)

    return make


@pytest.fixture
def server(make_server):
    """A running ferry with default options on the test's backend."""
    return make_server()


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: store-independent; run on SQLite only")
    config.addinivalue_line("markers", "postgres_only: needs PostgreSQL")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = ["sqlite"]
        elif metafunc.definition.get_closest_marker("postgres_only"):
            backends = ["postgres"]
        else:
            backends = ["sqlite", "postgres"]
        metafunc.parametrize("backend", backends)
