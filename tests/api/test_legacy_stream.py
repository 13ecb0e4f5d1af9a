"""Streamed pages of the cloud-sync-api pull (POST /sync/pull with "stream": true): pages
past the plain cap of 5,000 changes, written to the socket as the rows are read, grouped by
table like any pull: the rows and deleted keys of the plain pages exactly (exits under an
owner rule too), compressed as they go; a page cut on the way is not JSON and the next
pull completes; the server's memory does not grow with the page; the caps."""

import json
import socket
import time

from conftest import assert_legacy_error, wait_until
from test_legacy import ok
from test_stream_pages import CuttingRelay, assert_compressed, read_slowly, vm_hwm_kb
from test_sync_rules import start as rules_start
from test_sync_rules import two_users

SCHEMA = [
    "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, n INTEGER)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER)",
]
FLAGS = ("--allowed-tables", "notes,orders", "--rate-limit", "0")
TABLES = ["notes", "orders"]


def series(first, last):
    return (f"(WITH RECURSIVE s(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM s"
            f" WHERE i < {last}) SELECT i FROM s) AS t")


def fill_orders(srv, first, last, width=8):
    srv.db_exec(f"INSERT INTO orders (id, item, qty) SELECT i, 'item ' || i || ' {'x' * width}',"
                f" i % 97 FROM {series(first, last)}")


def fill_notes(srv, first, last):
    srv.db_exec(f"INSERT INTO notes (id, title, n) SELECT 'n' || i, 'note ' || i, i FROM"
                f" {series(first, last)}")


def start(make_server, *extra, **kw):
    return make_server(*FLAGS, *extra, schema=list(SCHEMA), **kw)


def two_tables(srv):
    """About 7,000 changes over two tables, interleaved in the log, with updates and
    deletes in both."""
    fill_orders(srv, 1, 2000)
    fill_notes(srv, 1, 1500)
    fill_orders(srv, 2001, 4000)
    fill_notes(srv, 1501, 3000)
    srv.db_exec("DELETE FROM orders WHERE id % 7 = 0", "UPDATE notes SET n = -n WHERE n % 3 = 0",
                "DELETE FROM notes WHERE n % 5 = 0", "UPDATE orders SET qty = 0 WHERE id % 11 = 0")


def post(srv, headers=None, token=None, **body):
    return srv.post("/sync/pull", token=token or srv.admin_token, json=body, timeout=60,
                    headers={"Accept-Encoding": "identity", **(headers or {})})


def plain_pages(srv, tables, limit, token=None):
    """The rows and deleted keys of every plain page, per table, and the last cursor."""
    data, deleted = {t: [] for t in tables}, {t: [] for t in tables}
    cursor, more, pages = 0, True, 0
    while more:
        body = ok(post(srv, token=token, tables=tables, limit=limit, cursor=cursor))
        for t in tables:
            data[t] += body["data"][t]
            deleted[t] += body["deleted"][t]
        cursor, more, pages = body["next_cursor"], body["has_more"], pages + 1
    return data, deleted, cursor, pages


def test_a_streamed_pull_is_the_plain_pages(make_server):
    srv = start(make_server)
    two_tables(srv)
    data, deleted, cursor, pages = plain_pages(srv, TABLES, 1000)
    assert pages == 7 and len(deleted["orders"]) == 571 and len(deleted["notes"]) == 600
    r = post(srv, tables=TABLES, limit=100000, cursor=0, stream=True)
    assert r.status_code == 200 and r.headers["Transfer-Encoding"] == "chunked"
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert list(body) == ["success", "data", "limit", "deleted", "next_cursor", "has_more"]
    assert body["data"] == data and body["deleted"] == deleted and body["limit"] == 100000
    assert (body["next_cursor"], body["has_more"]) == (cursor, False)
    # one table's page is found by its own walk, without the log's: the same pages
    one = plain_pages(srv, ["orders"], 1000)
    body = ok(post(srv, tables=["orders"], limit=100000, stream=True))
    assert (body["data"], body["deleted"], body["next_cursor"]) == one[:3]
    # under the plain cap, a streamed page is the plain page of its limit byte for byte
    for tables, limit in ((["orders"], 1999), (["orders"], 3000), (TABLES, 2500),
                          (TABLES, 5000)):
        plain = post(srv, tables=tables, limit=limit, cursor=0)
        streamed = post(srv, tables=tables, limit=limit, cursor=0, stream=True)
        assert streamed.headers["Transfer-Encoding"] == "chunked"
        assert "chunked" not in plain.headers.get("Transfer-Encoding", "")
        assert streamed.content == plain.content and plain.json()["has_more"]
        after = plain.json()["next_cursor"]
        assert post(srv, tables=tables, limit=limit, cursor=after, stream=True).content == \
            post(srv, tables=tables, limit=limit, cursor=after).content
    # every table by default, in the allowlist's order; a page from a cursor in the middle
    mid = plain.json()["next_cursor"]
    plain = post(srv, limit=5000, cursor=mid)
    assert post(srv, limit=5000, cursor=mid, stream=True).content == plain.content
    # compressed as it is written, for a client that asks
    for coding in ("gzip", "zstd"):
        z = srv.post("/sync/pull", token=srv.admin_token, stream=True, timeout=60,
                     json={"limit": 100000, "stream": True}, headers={"Accept-Encoding": coding})
        assert_compressed(z, coding, r.content, 3)


def test_a_streamed_pull_under_an_owner_rule_has_the_plain_pages_exits(make_server):
    """Under an owner rule the pull shows the caller's rows and, as deleted keys, the rows
    that left the caller's scope: a streamed page has exactly the plain pages' of both."""
    srv = rules_start(make_server)
    anna = two_users(srv)["anna"][0].token
    srv.db_exec("INSERT INTO orders (id, user_id, item, qty) SELECT 'o' || i, CASE WHEN"
                " i % 2 = 0 THEN 'anna' ELSE 'bob' END, 'x', i FROM " + series(1, 8000),
                "INSERT INTO catalog (id, name) SELECT 'c' || i, 'n' FROM " + series(1, 2000))
    srv.db_exec("UPDATE orders SET user_id = 'bob' WHERE user_id = 'anna' AND qty % 3 = 0",
                "UPDATE orders SET item = 'y' WHERE user_id = 'anna' AND qty % 5 = 0",
                "DELETE FROM catalog WHERE name = 'n' AND id LIKE '%7'")
    tables = ["orders", "catalog"]
    data, deleted, cursor, pages = plain_pages(srv, tables, 1000, token=anna)
    assert pages >= 6 and len(deleted["orders"]) == 1333 and len(deleted["catalog"]) == 200
    assert {row["user_id"] for row in data["orders"]} == {"anna"}
    body = ok(post(srv, token=anna, tables=tables, limit=100000, stream=True))
    assert body["data"] == data and body["deleted"] == deleted
    assert (body["next_cursor"], body["has_more"]) == (cursor, False)
    for some in (tables, ["orders"]):
        plain = post(srv, token=anna, tables=some, limit=3000)
        assert plain.json()["has_more"]
        assert plain.json()["deleted"]["orders"] or some == tables  # exits in orders' page
        assert post(srv, token=anna, tables=some, limit=3000, stream=True).content == \
            plain.content


def test_a_small_streamed_pull_and_the_caps(make_server):
    srv = start(make_server)
    fill_orders(srv, 1, 6000)
    # a page that fits in the first part is answered whole, as the plain one
    plain = post(srv, limit=5, cursor=0)
    streamed = post(srv, limit=5, cursor=0, stream=True)
    assert streamed.content == plain.content
    assert "chunked" not in streamed.headers.get("Transfer-Encoding", "")
    # without stream the cap stays 5,000; with it, 100,000
    assert ok(post(srv, limit=6000))["limit"] == 5000
    assert ok(post(srv, limit=6000, stream=False))["limit"] == 5000
    body = ok(post(srv, limit=100001, stream=True))
    assert body["limit"] == 100000 and len(body["data"]["orders"]) == 6000
    assert body["has_more"] is False
    # a page of exactly every change says nothing follows; one short of it that one does
    whole = ok(post(srv, limit=6000, stream=True))
    assert whole == body | {"limit": 6000}
    short = ok(post(srv, limit=5999, stream=True))
    assert short["has_more"] is True and short["data"]["orders"] == body["data"]["orders"][:-1]
    rest = ok(post(srv, limit=5999, stream=True, cursor=short["next_cursor"]))
    assert rest["data"]["orders"] == body["data"]["orders"][-1:] and not rest["has_more"]
    # stream must be a boolean; errors found before the first byte are answers as always
    assert_legacy_error(post(srv, stream="yes"), 400)
    assert_legacy_error(post(srv, stream=True, cursor=10**9), 400)
    assert_legacy_error(post(srv, stream=True, tables=["nope"]), 400)
    # nothing new: an empty page
    head = body["next_cursor"]
    assert ok(post(srv, stream=True, cursor=head, limit=100000)) == {
        "success": True, "data": {"notes": [], "orders": []}, "limit": 100000,
        "deleted": {"notes": [], "orders": []}, "next_cursor": head, "has_more": False}


def relay_pull(port, token, body):
    """The bytes of a pull's answer through the relay, as far as they came."""
    s = socket.create_connection(("127.0.0.1", port))
    text = json.dumps(body).encode()
    s.sendall(b"POST /sync/pull HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n"
              b"Connection: close\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {token}\r\nContent-Length: {len(text)}\r\n\r\n".encode()
              + text)
    got = b""
    while chunk := s.recv(1 << 16):
        got += chunk
    s.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    out = b""
    while rest:  # the chunked body, as far as it came
        size, _, rest = rest.partition(b"\r\n")
        if not size or int(size, 16) == 0:
            break
        out += rest[:int(size, 16)]
        rest = rest[int(size, 16) + 2:]
    return head, out


def test_a_pull_cut_mid_stream_is_not_json_and_the_next_completes(make_server):
    srv = start(make_server)
    fill_orders(srv, 1, 6000, width=200)  # about 1.3 MB
    srv.db_exec("DELETE FROM orders WHERE id % 9 = 0")
    relay = CuttingRelay(srv.port, cut_at=300_000)
    try:
        head, body = relay_pull(relay.port, srv.admin_token, {"limit": 100000, "stream": True})
        assert head.startswith(b"HTTP/1.1 200")
        assert wait_until(lambda: relay.cuts == 1)  # counted once both ends closed
        assert 200_000 < len(body) < 300_000
        try:
            json.loads(body)
            assert False, "a cut page parsed as JSON"
        except ValueError:
            pass
        relay.cutting = False
        head, body = relay_pull(relay.port, srv.admin_token, {"limit": 100000, "stream": True})
    finally:
        relay.close()
    page = json.loads(body)
    assert len(page["data"]["orders"]) == 5334 and len(page["deleted"]["orders"]) == 666
    assert page == ok(post(srv, limit=100000, stream=True))


def test_a_huge_streamed_pull_does_not_grow_the_server(make_server):
    """A page of about 40 MB is read in parts (on PostgreSQL in statements of 1,000 rows):
    the server's peak RSS grows far less than the page."""
    srv = start(make_server, env={
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=1"})
    fill_orders(srv, 1, 20000, width=2000)
    ok(post(srv, limit=10))  # warm: pools, statements
    before = vm_hwm_kb(srv.proc.pid)
    with srv.session.post(srv.base + "/sync/pull", json={"limit": 100000, "stream": True},
                          headers={"Authorization": f"Bearer {srv.admin_token}",
                                   "Accept-Encoding": "identity"}, stream=True,
                          timeout=120) as r:
        size = read_slowly(r)
    grown = vm_hwm_kb(srv.proc.pid) - before
    assert size > 40_000_000 and grown < 12_000, (size, grown)


def slow_pull(srv):
    """A streamed pull whose client reads its first bytes and then nothing: the stream
    stays in flight, holding its store connection."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    text = b'{"limit": 100000, "stream": true}'
    s.sendall(b"POST /sync/pull HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n"
              b"Content-Type: application/json\r\n"
              + f"Authorization: Bearer {srv.admin_token}\r\nContent-Length: {len(text)}"
              "\r\n\r\n".encode() + text)
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    return s


def probe(srv):
    """The rows a streamed pull of 6,000 gets, and whether it streamed."""
    r = post(srv, limit=6000, stream=True)
    return len(ok(r)["data"]["orders"]), r.headers.get("Transfer-Encoding") == "chunked"


def test_the_stream_cap_is_shared_with_the_changes_feed(make_server):
    """Pulls stream from the same places as the changes feed (half the pool): past them a
    streamed pull gets a plain page of at most 5,000, and closed streams give theirs back."""
    srv = start(make_server, "--threads", "4")
    fill_orders(srv, 1, 20000, width=2000)
    assert probe(srv) == (6000, True)
    held = []
    try:
        while len(held) < 8 and probe(srv) == (6000, True):
            held.append(slow_pull(srv))
        assert 1 <= len(held) < 8, len(held)
        assert probe(srv) == (5000, False)
        # the changes feed finds no place either
        tok = srv.create_token(role="user", user_id="anna")["token"]
        r = srv.get("/api/v1/sync/changes", token=tok, timeout=60,
                    params={"limit": 5000, "stream": "true"})
        assert len(r.json()["changes"]) == 1000
        assert ok(post(srv, limit=10))["data"]["orders"][0]["id"] == 1
    finally:
        for s in held:
            s.close()
    deadline = time.time() + 30
    while probe(srv) != (6000, True):
        assert time.time() < deadline, "closed streams kept their places"
        time.sleep(0.2)
