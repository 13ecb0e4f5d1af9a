"""Denial of service without credentials (issue 10): bodies refused before they are read
or parsed, a cap on JSON values, many slow sockets from one and from several addresses
while /health keeps answering, silent connections closed, and long-polls abandoned by
their clients giving their slot back."""

import concurrent.futures
import socket
import time

import pytest

from conftest import assert_legacy_error, assert_v1_error, wait_until
from devsync import start, user

PK = "/phoenix_kit/sync/api"


def connect(srv, source="127.0.0.1", timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", srv.port))
    return s


def health_from(srv, source, timeout=5):
    """Status of GET /health sent from the given loopback address (None: no answer)."""
    try:
        with connect(srv, source, timeout) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(4096).decode(errors="replace")
    except OSError:
        return None
    return int(head.split(" ")[1]) if head.startswith("HTTP/1.1 ") else None


def rss_kib(srv, field):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def empty_objects(size):
    """A JSON array of {} of about size bytes: the cheapest way to make jansson allocate."""
    n = size // 3
    return b"[" + b",".join([b"{}"] * n) + b"]"


# --- memory -------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_phoenix_body_is_refused_from_its_headers(server):
    with connect(server) as s:
        s.sendall(f"POST {PK}/list-tables HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  "application/json\r\nContent-Length: 9900000\r\n\r\n".encode())
        head = s.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert "over the limit of 65536 bytes" in head
    # a body that fits is still served
    r = server.post(f"{PK}/list-tables", json={"sender_url": "http://a", "auth_token_hash": "x"})
    assert r.status_code == 401, r.text


@pytest.mark.sqlite_only
def test_phoenix_chunked_body_over_the_small_limit(server):
    def chunks():
        for _ in range(40):
            yield b" " * 4096
        yield b"{}"

    r = server.post(f"{PK}/list-tables", data=chunks(),
                    headers={"Content-Type": "application/json"})
    assert_legacy_error(r, 413)
    assert server.get("/health").status_code == 200


@pytest.mark.sqlite_only
def test_small_body_limit_is_configurable(make_server):
    srv = make_server("--max-small-body", "1K")
    body = {"sender_url": "http://a", "auth_token_hash": "x" * 2000}
    assert_legacy_error(srv.post(f"{PK}/list-tables", json=body), 413)
    # token requests are small too; other bodies keep max-body
    r = srv.post("/api/v1/admin/tokens", token=srv.admin_token,
                 json={"name": "n" * 2000, "role": "admin"})
    assert_v1_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert srv.post("/api/v1/admin/tokens", token=srv.admin_token,
                    json={"name": "n", "role": "admin"}).status_code == 201


@pytest.mark.sqlite_only
def test_sites_off_refuses_before_the_body(make_server):
    srv = make_server("--sites-enabled", "false")
    with connect(srv) as s:
        s.sendall(f"POST {PK}/pull-data HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  "application/json\r\nContent-Length: 60000\r\n\r\n".encode())
        head = s.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 503"), head
    assert "DB Sync module is disabled" in head
    assert srv.get(f"{PK}/status").json()["enabled"] is False


def test_json_values_are_capped(make_server):
    srv = make_server("--max-json-values", "1000")
    r = srv.post("/sync/push", token=srv.admin_token, data=empty_objects(3000),
                 headers={"Content-Type": "application/json"})
    assert_legacy_error(r, 413)
    assert "more than the limit of 1000 values" in r.json()["error"]
    # an object's members count as values, keys do not
    doc = "{" + ",".join(f'"k{i}":{i}' for i in range(999)) + "}"
    r = srv.post("/sync/push", token=srv.admin_token, data=doc,
                 headers={"Content-Type": "application/json"})
    assert r.status_code != 413, r.text
    assert srv.get("/health").status_code == 200


@pytest.mark.sqlite_only
def test_parallel_large_bodies_without_credentials(server):
    """Eight parallel 9.9 MB bodies to PhoenixKit endpoints and to an endpoint that needs a
    credential: all refused, and the server's memory stays small (it took 5.8 GiB)."""
    body = empty_objects(9_900_000)
    before = rss_kib(server, "VmRSS")

    def send(i):
        path = f"{PK}/pull-data" if i % 2 else "/sync/push"
        with connect(server, timeout=30) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            try:
                s.sendall(body)
            except OSError:
                pass  # refused from the headers and closed before the body went out
            return s.recv(4096).decode(errors="replace").split(" ")[1]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(8)))
    assert statuses == ["401", "413"] * 4, statuses
    assert server.get("/health").status_code == 200
    peak = rss_kib(server, "VmHWM")
    assert peak - before < 200 * 1024, (before, peak)


# --- connections ------------------------------------------------------------------------------


def slow_sockets(srv, sources, per_source):
    """Opens per_source connections from each address, each sending half a request."""
    socks = []
    for source in sources:
        for _ in range(per_source):
            try:
                s = connect(srv, source)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            except OSError:
                pass
    return socks


def still_open(socks, wait=0.5):
    """How many of socks the server has not closed."""
    time.sleep(wait)
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            n += s.recv(1) != b""
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


@pytest.mark.sqlite_only
def test_slow_sockets_from_one_address(make_server):
    srv = make_server("--max-connections-per-ip", "100")
    socks = slow_sockets(srv, ["127.0.0.1"], 1200)
    try:
        assert still_open(socks) == 100
        # the one address is at its limit; any other is served
        assert health_from(srv, "127.0.0.2") == 200
        assert health_from(srv, "127.0.0.3") == 200
    finally:
        for s in socks:
            s.close()
    assert wait_until(lambda: health_from(srv, "127.0.0.1") == 200)


@pytest.mark.sqlite_only
def test_slow_sockets_from_many_addresses(make_server):
    """1,300 slow connections (above the 1,020 that used to stop the server), 100 from
    each of 13 addresses, all held open, and /health answers beside them."""
    srv = make_server("--max-connections-per-ip", "100")
    sources = [f"127.0.1.{i}" for i in range(1, 14)]
    socks = slow_sockets(srv, sources, 100)
    try:
        assert still_open(socks) == 1300
        t0 = time.monotonic()
        assert health_from(srv, "127.0.2.1") == 200
        assert time.monotonic() - t0 < 1.0
        assert srv.get("/api/v1/health").status_code == 200
    finally:
        for s in socks:
            s.close()


@pytest.mark.sqlite_only
def test_silent_connections_are_closed(make_server):
    srv = make_server("--idle-timeout", "2")
    socks = slow_sockets(srv, ["127.0.0.1"], 20)
    try:
        assert still_open(socks, wait=0.2) == 20
        assert wait_until(lambda: still_open(socks, wait=0) == 0, timeout=6)
    finally:
        for s in socks:
            s.close()


@pytest.mark.sqlite_only
def test_trickled_body_is_cut_at_the_body_timeout(make_server):
    srv = make_server("--body-timeout", "2")
    with connect(srv, timeout=10) as s:
        s.sendall(b"POST /sync/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + srv.admin_token.encode() +
                  b"\r\nContent-Length: 1000\r\n\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 8:
            try:
                s.sendall(b" ")
            except OSError:
                closed = True
                break
            time.sleep(0.5)
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            s.setblocking(True)
        assert closed
        assert time.monotonic() - t0 < 5
    assert srv.get("/health").status_code == 200


@pytest.mark.sqlite_only
def test_abandoned_long_polls_free_their_slots(make_server):
    srv = start(make_server, "--max-connections-per-ip", "6")
    phone = user(srv, "alice").register("phone")
    head = user(srv, "alice").head()
    socks = []
    for _ in range(6):
        s = connect(srv, "127.0.0.5")
        s.sendall(f"GET /api/v1/sync/changes?cursor={head}&wait=60 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {phone.token}\r\n\r\n".encode())
        socks.append(s)
    time.sleep(0.5)
    assert still_open(socks) == 6
    assert health_from(srv, "127.0.0.5", timeout=2) is None  # every slot is taken
    for s in socks:
        s.close()
    # the server notices the clients are gone and releases their slots within seconds,
    # not at the end of their 60 s wait
    t0 = time.monotonic()
    assert wait_until(lambda: health_from(srv, "127.0.0.5", timeout=1) == 200, timeout=10)
    assert time.monotonic() - t0 < 5
