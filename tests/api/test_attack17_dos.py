"""Attacks without credentials on memory and CPU: slow readers of the largest public answer
(the OpenAPI document) from many addresses, plain and compressed. Each may hold its
connection for as long as it reads a little now and then; none may hold its own copy of
the answer."""

import socket
import time

import pytest

from test_dos import rss_kib

N = 400


def slow_readers(srv, path, n, extra=b""):
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that barely reads
        # segments as over Ethernet: on loopback's 64 KiB ones the kernel would take the
        # whole answer into its send buffer at once, and nothing would stay in the server
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1200)
        s.bind((f"127.0.4.{1 + i // 100}", 0))
        s.connect(("127.0.0.1", srv.port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n")
        socks.append(s)
    return socks


def growth_kib(srv, path, extra=b""):
    """RSS growth while N slow readers hold path's answer half read."""
    before = rss_kib(srv, "VmRSS")
    socks = slow_readers(srv, path, N, extra)
    try:
        time.sleep(2)
        return rss_kib(srv, "VmRSS") - before
    finally:
        for s in socks:
            s.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("extra", [b"", b"Accept-Encoding: gzip\r\n", b"Accept-Encoding: zstd\r\n"])
def test_slow_readers_of_the_openapi_document_share_one_copy(make_server, extra):
    srv = make_server()
    size = len(srv.get("/api/v1/openapi.json").content)
    assert size > 300 * 1024  # the largest answer anyone may ask for
    srv.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip, zstd"})
    baseline = growth_kib(srv, "/health")  # what a connection costs by itself
    grown = growth_kib(srv, "/api/v1/openapi.json", extra)
    # one copy per reader would be N * size (over 200 MiB); allow a tenth of one per reader
    assert grown - baseline < N * size / 1024 / 10, (grown, baseline)
    r = srv.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers.get("Content-Encoding") == "gzip"
    assert len(r.content) == size and r.json()["openapi"] == "3.0.3"
    r = srv.get("/api/v1/openapi.json", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in r.headers and len(r.content) == size


def trickle(socks, stop):
    """Sends one more header byte on each socket every half second until stop."""
    while not stop.is_set():
        for s in socks:
            try:
                s.send(b"X")
            except OSError:
                pass
        stop.wait(0.5)


@pytest.mark.sqlite_only
def test_trickled_request_heads_cannot_hold_every_slot(make_server):
    """Slowloris: every connection the server allows, from several addresses, each sending
    its request head a byte at a time (never silent, so the idle timeout never fires). The
    head must arrive within the body timeout; after it, the slots are free again and a
    client from another address is served."""
    import threading

    from test_dos import health_from

    srv = make_server("--max-connections", "16", "--max-connections-per-ip", "4",
                      "--idle-timeout", "2", "--body-timeout", "3")
    socks = []
    for i in range(16):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.5.{1 + i // 4}", 0))
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    stop = threading.Event()
    t = threading.Thread(target=trickle, args=(socks, stop))
    t.start()
    try:
        time.sleep(1)
        assert health_from(srv, "127.0.6.1", timeout=1) is None  # every slot is taken
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8 and health_from(srv, "127.0.6.1", timeout=1) != 200:
            time.sleep(0.2)
        assert health_from(srv, "127.0.6.1") == 200
        assert time.monotonic() - t0 < 6
        authed = srv.get("/api/v1/admin/tokens", token=srv.admin_token)
        assert authed.status_code == 200
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()
