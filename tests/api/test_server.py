"""The server around the handlers: request ids and the per-request log line, CORS,
graceful shutdown, and what survives a restart."""

import json
import os
import re
import signal
import socket
import stat
import threading
import time

import pytest
import requests

from conftest import ISO_RE, wait_until

TOKENS = "/api/v1/admin/tokens"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# --- request ids and logs ---------------------------------------------------------------


@pytest.mark.sqlite_only
def test_request_id_is_echoed(server):
    r = server.get("/health", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    (line,) = server.wait_log("abc-123")
    assert line["path"] == "/health"


@pytest.mark.sqlite_only
def test_request_id_is_generated_when_absent(server):
    ids = {server.get("/health").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(HEX32.match(i) for i in ids), ids


@pytest.mark.sqlite_only
@pytest.mark.parametrize("given", ["has space", "x" * 200, "quote\"d", "new\\nline"])
def test_unsafe_request_id_is_replaced(server, given):
    r = server.get("/health", headers={"X-Request-Id": given})
    assert HEX32.match(r.headers["X-Request-Id"]), r.headers["X-Request-Id"]


def test_one_log_line_per_request(server):
    admin = server.admin_token
    body = json.dumps({"name": "logged", "role": "user", "userId": "bob"}).encode()
    calls = [
        ("log-1", "GET", "/health", {}, 200),
        ("log-2", "GET", "/api/v1/metrics", {"token": admin}, 200),
        ("log-3", "POST", TOKENS, {"token": admin, "data": body,
                                   "headers": {"Content-Type": "application/json"}}, 201),
        ("log-4", "GET", "/api/v1/metrics", {"token": "fy_" + "Q" * 43}, 401),
        ("log-5", "GET", "/api/v1/nowhere", {}, 404),
    ]
    responses = {}
    for rid, method, path, kw, status in calls:
        headers = dict(kw.pop("headers", {}), **{"X-Request-Id": rid})
        r = server.request(method, path, headers=headers, **kw)
        assert r.status_code == status, r.text
        responses[rid] = r
    created = responses["log-3"].json()
    admin_id = server.get(TOKENS, token=admin).json()["tokens"][0]["id"]  # one more line

    assert wait_until(lambda: len(server.log_lines()) == len(calls) + 1), server.stderr()
    lines = server.log_lines()
    assert len(lines) == len(calls) + 1
    for rid, method, path, _, status in calls:
        (line,) = [l for l in lines if l["requestId"] == rid]
        assert line["method"] == method and line["path"] == path
        assert line["status"] == status
        assert ISO_RE.match(line["time"]), line["time"]
        assert isinstance(line["durationMs"], (int, float)) and line["durationMs"] >= 0
        assert type(line["bytesIn"]) is int and type(line["bytesOut"]) is int
        assert line["bytesOut"] == len(responses[rid].content)
        assert "credential" in line

    by_id = {l["requestId"]: l for l in lines}
    assert by_id["log-3"]["bytesIn"] == len(body)
    assert by_id["log-1"]["bytesIn"] == 0
    assert by_id["log-2"]["credential"] == admin_id
    assert by_id["log-3"]["credential"] == admin_id
    assert by_id["log-1"]["credential"] in ("", None)
    assert by_id["log-4"]["credential"] in ("", None)

    log = server.stderr()
    assert admin not in log
    assert created["token"] not in log
    assert "Q" * 43 not in log


LOG_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def json_lines(text):
    """Every line of text parsed as JSON (each must be one object)."""
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


@pytest.mark.sqlite_only
def test_every_log_line_is_a_json_event(make_server):
    """From start to stop, everything ferry writes on stderr is one JSON object per line
    with time (RFC 3339, UTC, milliseconds), level and event."""
    schema = ["CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)"]
    srv = make_server("--allowed-tables", "notes", schema=schema)
    srv.get("/health", headers={"X-Request-Id": "every-1"})
    srv.get("/api/v1/nowhere", headers={"X-Request-Id": "every-2"})
    srv.wait_log("every-2")
    assert srv.stop() == 0
    lines = json_lines(srv.stderr())
    for line in lines:
        assert LOG_TIME.match(line["time"]), line
        assert line["level"] in ("debug", "info", "warn", "error"), line
        assert re.fullmatch(r"[a-z_]+", line["event"]), line
    events = [l["event"] for l in lines]
    assert events[:2] == ["syncing_table", "listening"], events
    assert events[-2:] == ["shutdown", "stopped"], events
    (request,) = [l for l in lines if l.get("requestId") == "every-1"]
    assert request["event"] == "request" and request["level"] == "info"
    assert set(request) == {"time", "level", "event", "requestId", "method", "path", "status",
                            "durationMs", "bytesIn", "bytesOut", "credential", "remote"}
    (listening,) = [l for l in lines if l["event"] == "listening"]
    assert listening["address"] == f"127.0.0.1:{srv.port}" and listening["store"] == "sqlite"


@pytest.mark.sqlite_only
def test_text_log_format(make_server):
    srv = make_server("--log-format", "text")
    srv.get("/health", headers={"X-Request-Id": "text-1"})
    line = wait_until(lambda: [l for l in srv.stderr().splitlines() if "requestId=text-1" in l])
    assert line, srv.stderr()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info  request requestId=text-1"
                    r" method=GET path=/health status=200 durationMs=[0-9.]+ bytesIn=0"
                    r" bytesOut=\d+ credential=\"\" remote=127\.0\.0\.1$", line[0]), line[0]
    assert not any(l.startswith("{") for l in srv.stderr().splitlines())


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_log_level_hides_request_lines(make_server, tmp_path, how):
    if how == "flag":
        srv = make_server("--log-level", "warn")
    elif how == "env":
        srv = make_server(env={"FERRY_LOG_LEVEL": "warn"})
    else:
        conf = tmp_path / "ferry.conf"
        conf.write_text("log-level = warn\n")
        srv = make_server("--config", str(conf))
    srv.get("/health", headers={"X-Request-Id": "quiet-1"})
    assert srv.stop() == 0
    assert "quiet-1" not in srv.stderr()
    assert "listening" not in srv.stderr()  # info too
    assert srv.stderr() == ""


@pytest.mark.sqlite_only
def test_log_level_debug_keeps_info(make_server):
    srv = make_server("--log-level", "debug")
    srv.get("/health", headers={"X-Request-Id": "debug-1"})
    assert srv.wait_log("debug-1")


def file_lines(path):
    try:
        with open(path) as f:
            return json_lines(f.read())
    except FileNotFoundError:
        return []


def request_ids(path):
    return [l["requestId"] for l in file_lines(path) if l["event"] == "request"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_sighup_reopens_the_log_file(make_server, tmp_path, how):
    """logrotate's way: the file is moved, SIGHUP, and ferry writes to a new file at the
    same path; the server stays up throughout."""
    log = tmp_path / "ferry.log"
    if how == "flag":
        srv = make_server("--log-file", str(log))
    elif how == "env":
        srv = make_server(env={"FERRY_LOG_FILE": str(log)})
    else:
        conf = tmp_path / "ferry.conf"
        conf.write_text(f"log-file = {log}\n")
        srv = make_server("--config", str(conf))
    assert srv.get("/health", headers={"X-Request-Id": "before-hup"}).status_code == 200
    assert wait_until(lambda: "before-hup" in request_ids(log)), file_lines(log)
    assert oct(os.stat(log).st_mode & 0o777) == oct(0o640)

    rotated = tmp_path / "ferry.log.1"
    os.rename(log, rotated)
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: any(l["event"] == "log_reopened" for l in file_lines(log))), \
        srv.stderr()
    assert srv.running
    assert srv.get("/health", headers={"X-Request-Id": "after-hup"}).status_code == 200
    assert wait_until(lambda: "after-hup" in request_ids(log)), file_lines(log)

    assert request_ids(rotated) == ["before-hup"]
    assert request_ids(log) == ["after-hup"]
    assert [l["event"] for l in file_lines(rotated)] == ["listening", "request"]
    assert srv.stop() == 0
    assert [l["event"] for l in file_lines(log)][-2:] == ["shutdown", "stopped"]
    assert srv.stderr() == ""  # everything went to the file


@pytest.mark.sqlite_only
def test_sighup_without_log_file_keeps_serving(make_server):
    srv = make_server()
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert srv.running
    assert srv.get("/health", headers={"X-Request-Id": "still-1"}).status_code == 200
    assert srv.wait_log("still-1")
    assert shutting_down(srv) is None


@pytest.mark.sqlite_only
def test_sighup_while_stopping_does_not_exit_at_once(make_server, tmp_path):
    """During a graceful stop, SIGHUP still only reopens the log (a second SIGTERM is
    what cuts the wait short)."""
    log = tmp_path / "ferry.log"
    srv = make_server("--log-file", str(log))
    body = json.dumps({"name": "slow", "role": "user", "userId": "bob"}).encode()
    sock = start_slow_post(srv, body)
    srv.proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: any(l["event"] == "shutdown" for l in file_lines(log)))
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert srv.running
    sock.sendall(body[len(body) // 2:])
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 201
    assert srv.wait_exit(5) == 0
    assert [l["event"] for l in file_lines(log)][-3:] == ["log_reopened", "request", "stopped"]


def test_concurrent_clients(server):
    """Several clients creating and using tokens at once all get their answers."""
    admin = server.admin_token
    errors = []

    def client(n):
        try:
            with requests.Session() as s:
                auth = {"Authorization": f"Bearer {admin}"}
                for i in range(5):
                    r = s.post(server.base + TOKENS, headers=auth, timeout=20,
                               json={"name": f"c{n}-{i}", "role": "user", "userId": f"u{n}"})
                    if r.status_code != 201:
                        errors.append(r.text)
                        continue
                    r = s.get(server.base + "/api/v1/metrics", timeout=20,
                              headers={"Authorization": f"Bearer {r.json()['token']}"})
                    if r.status_code != 200:
                        errors.append(r.text)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert server.get(TOKENS, token=admin).json()["total_count"] == 31


# --- CORS -------------------------------------------------------------------------------

ORIGIN = "https://app.example"


@pytest.mark.sqlite_only
def test_cors_allowed_origin(make_server):
    srv = make_server("--cors-origins", ORIGIN)
    r = srv.get("/health", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers.get("Vary", "")
    # Errors carry the header too, so a browser app can read them.
    r = srv.get("/api/v1/metrics", headers={"Origin": ORIGIN})
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.sqlite_only
def test_cors_other_origin_gets_nothing(make_server):
    srv = make_server("--cors-origins", ORIGIN)
    r = srv.get("/health", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers
    r = srv.options(TOKENS, headers={"Origin": "https://evil.example",
                                     "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers


@pytest.mark.sqlite_only
def test_cors_off_by_default(server):
    r = server.get("/health", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.sqlite_only
def test_cors_preflight_needs_no_token(make_server):
    srv = make_server("--cors-origins", ORIGIN)
    r = srv.options(TOKENS, headers={"Origin": ORIGIN,
                                     "Access-Control-Request-Method": "POST",
                                     "Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 204, r.text
    methods = [m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")]
    assert "GET" in methods and "POST" in methods
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()


# --- graceful shutdown --------------------------------------------------------------------


def read_response(sock):
    """Reads one HTTP/1.1 response with a Content-Length body: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the headers: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-body: {body!r}")
        body += chunk
    return status, headers, body[:length]


def start_slow_post(srv, body):
    """Opens a connection, sends a token request's headers (with Expect: 100-continue,
    so that the 100 tells us ferry has taken the request in) and half its body."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(f"POST {TOKENS} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: Bearer {srv.admin_token}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                 f"Expect: 100-continue\r\n\r\n".encode())
    status, _, _ = read_response(sock)
    assert status == 100
    sock.sendall(body[:len(body) // 2])
    return sock


def shutting_down(srv):
    """The in-flight count ferry logged when it began to shut down, once it has."""
    for line in srv.stderr().splitlines():
        if '"shutting down"' in line:
            return json.loads(line)
    return None


def connection_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_in_flight_request_finish(make_server):
    srv = make_server()
    body = json.dumps({"name": "during shutdown", "role": "user", "userId": "bob"}).encode()
    sock = start_slow_post(srv, body)

    srv.proc.send_signal(signal.SIGTERM)
    note = wait_until(lambda: shutting_down(srv))
    assert note and note["inFlight"] == 1, srv.stderr()
    assert wait_until(lambda: connection_refused(srv.port), timeout=3), \
        "ferry still accepts connections after SIGTERM"
    time.sleep(0.3)
    assert srv.running

    sock.sendall(body[len(body) // 2:])
    status, headers, payload = read_response(sock)
    sock.close()
    assert status == 201, payload
    created = json.loads(payload)
    assert created["token"].startswith("fy_") and created["name"] == "during shutdown"

    assert srv.wait_exit(5) == 0, srv.stderr()
    # The answered request was committed: the token works after a restart.
    srv.start()
    assert srv.get("/api/v1/metrics", token=created["token"]).status_code == 200


def test_second_sigterm_exits_at_once(make_server):
    srv = make_server()
    body = json.dumps({"name": "stuck", "role": "admin"}).encode()
    sock = start_slow_post(srv, body)  # the rest of the body never comes

    srv.proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: shutting_down(srv)), srv.stderr()
    assert srv.running
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(1.0)
    elapsed = time.monotonic() - t0
    sock.close()
    assert rc is not None, "ferry did not exit within 1 s of the second SIGTERM"
    assert rc != 0
    assert elapsed < 1.0


@pytest.mark.sqlite_only
def test_shutdown_timeout_cuts_stuck_requests(make_server):
    srv = make_server("--shutdown-timeout", "1")
    sock = start_slow_post(srv, json.dumps({"name": "stuck", "role": "admin"}).encode())
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(6)
    sock.close()
    assert rc is not None, "ferry waited past its shutdown timeout"


# --- restarts ---------------------------------------------------------------------------


def test_restart_keeps_tokens_and_prints_admin_token_once(make_server):
    srv = make_server()
    admin = srv.admin_token
    user = srv.create_token(role="user", user_id="bob", name="survivor")

    srv.restart()
    first, second = srv.starts
    assert any(l.startswith("admin token") and l.endswith(admin) for l in first), first
    assert not any("admin token" in l for l in second), second

    assert srv.get("/api/v1/metrics", token=user["token"]).status_code == 200
    assert srv.get(TOKENS, token=admin).status_code == 200
    path = os.path.join(srv.data_dir, "admin.token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        assert f.read().strip() == admin
