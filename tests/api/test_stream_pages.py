"""Streamed pages of the change feed (GET /api/v1/sync/changes?stream=true): pages past
the plain cap of 1,000 changes, written to the socket as the rows are read, byte-for-byte
the changes of the plain pages; a page cut on the way is not a page (libferry asks again
and its replica keeps nothing of it); the server's memory does not grow with the page."""

import asyncio
import gzip
import re
import subprocess
import time

from conftest import FERRY_BIN
from devsync import op
from relay import Relay
from test_client import FLAGS, SCHEMA, device, local, start, sync
from test_sync_rules import start as rules_start
from test_sync_rules import two_users

ROWS = 2500  # a streamed page of them is two and a half plain pages
CHANGES = "/api/v1/sync/changes"


def assert_compressed(z, coding, plain, ratio):
    """z, a streamed answer asked with Accept-Encoding: coding, is that coding, at most
    1/ratio of plain's size, and decodes (gzip module, zstd tool) to exactly plain."""
    raw = z.raw.read(decode_content=False)
    assert z.headers["Content-Encoding"] == coding and len(raw) < len(plain) // ratio
    decoded = (gzip.decompress(raw) if coding == "gzip" else
               subprocess.run(["zstd", "-dc"], input=raw, capture_output=True,
                              check=True).stdout)
    assert decoded == plain


def read_slowly(r):
    """Reads a 200 streamed answer to its end, more slowly than the server writes it;
    its size in bytes."""
    assert r.status_code == 200
    size = 0
    for chunk in r.iter_content(1 << 16):
        size += len(chunk)
        time.sleep(0.0005)
    return size


def fill(srv, first, n, width=8):
    srv.db_exec(f"INSERT INTO orders (id, item, qty) SELECT i, 'item ' || i || ' {'x' * width}',"
                " i % 97 FROM"
                f" (WITH RECURSIVE s(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM s"
                f" WHERE i < {first + n - 1}) SELECT i FROM s) AS t")


def changes_text(body):
    """The comma-separated change objects of a page's text, and the rest."""
    m = re.fullmatch(r'\{"changes":\[(.*)\],"cursor":(\d+),"hasMore":(true|false)\}', body,
                     re.S)
    assert m, body[-200:]
    return m.group(1), int(m.group(2)), m.group(3) == "true"


def get(srv, token, **params):
    return srv.get(CHANGES, token=token, params={"includeOwn": "true", **params},
                   headers={"Accept-Encoding": "identity"}, timeout=60)


def test_a_streamed_page_is_the_plain_pages_byte_for_byte(make_server):
    srv = start(make_server)
    fill(srv, 1, ROWS)
    phone = device(srv)
    plain, cursor, more = [], 0, True
    while more:
        r = get(srv, phone.token, cursor=cursor, limit=1000)
        assert r.status_code == 200 and "chunked" not in r.headers.get("Transfer-Encoding", "")
        text, cursor, more = changes_text(r.text)
        plain.append(text)
    assert len(plain) == 3
    r = get(srv, phone.token, cursor=0, limit=ROWS, stream="true")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Transfer-Encoding"] == "chunked"
    text, streamed_cursor, streamed_more = changes_text(r.text)
    assert text == ",".join(plain)
    assert (streamed_cursor, streamed_more) == (cursor, False)
    assert len(r.json()["changes"]) == ROWS
    # compressed as it is written, for a client that asks
    for coding in ("gzip", "zstd"):
        z = srv.get(CHANGES, token=phone.token, stream=True, timeout=60,
                    params={"includeOwn": "true", "cursor": 0, "limit": ROWS, "stream": "true"},
                    headers={"Accept-Encoding": coding})
        assert_compressed(z, coding, r.content, 4)
    # a page that ends short of the limit says where the next one starts
    r = get(srv, phone.token, cursor=0, limit=2000, stream="true")
    text, cursor, more = changes_text(r.text)
    assert more and r.json()["changes"][-1]["seq"] == cursor
    assert get(srv, phone.token, cursor=cursor, limit=2000, stream="true").json()[
        "changes"][0]["seq"] > cursor


def test_a_streamed_page_under_a_sync_rule_is_the_plain_pages(make_server):
    """Under an owner rule the walk is a union of the caller's rows and the exits of rows
    that left the caller (shown as deletes): a streamed page of them, which PostgreSQL reads
    in statements of 1,000 rows, is still the plain pages byte for byte."""
    srv = rules_start(make_server)
    anna = two_users(srv)["anna"][1]
    srv.db_exec("INSERT INTO orders (id, user_id, item, qty) SELECT 'o' || i, CASE WHEN"
                " i % 2 = 0 THEN 'anna' ELSE 'bob' END, 'x', i FROM (WITH RECURSIVE s(i) AS"
                " (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000) SELECT i FROM s) AS t")
    srv.db_exec("UPDATE orders SET user_id = 'bob' WHERE user_id = 'anna' AND qty % 3 = 0")
    srv.db_exec("UPDATE orders SET item = 'y' WHERE user_id = 'anna' AND qty % 5 = 0")
    plain, cursor, more = [], 0, True
    while more:
        text, cursor, more = changes_text(get(srv, anna.token, cursor=cursor, limit=1000).text)
        plain.append(text)
    r = get(srv, anna.token, cursor=0, limit=100000, stream="true")
    text, streamed_cursor, streamed_more = changes_text(r.text)
    assert len(plain) == 3 and text == ",".join(plain)
    assert (streamed_cursor, streamed_more) == (cursor, False)
    changes = r.json()["changes"]
    assert len(changes) == 2500 and sum(c["deleted"] for c in changes) == 833


def test_a_small_streamed_page_and_the_caps(make_server):
    srv = start(make_server)
    fill(srv, 1, 10)
    phone = device(srv)
    plain = get(srv, phone.token, cursor=0, limit=5)
    streamed = get(srv, phone.token, cursor=0, limit=5, stream="true")
    assert streamed.status_code == 200 and streamed.text == plain.text
    for params, detail in [({"limit": 1001}, "limit must be at most 1000"),
                           ({"limit": 100001, "stream": "true"}, "limit must be at most 100000"),
                           ({"stream": "yes"}, "stream must be true or false"),
                           ({"maxBytes": -1}, "maxBytes must be a whole number")]:
        r = get(srv, phone.token, cursor=0, **params)
        assert r.status_code == 400 and r.json()["details"] == detail, (params, r.text)
    # nothing new: a streamed call long-polls as a plain one does
    head = get(srv, phone.token, cursor=0, limit=5000, stream="true").json()["cursor"]
    started = time.monotonic()
    r = get(srv, phone.token, cursor=head, limit=5000, stream="true", wait=1)
    assert r.json() == {"changes": [], "cursor": head, "hasMore": False}
    assert time.monotonic() - started >= 0.9
    # errors found before the first byte are answers as always
    r = get(srv, phone.token, cursor=10**9, limit=5000, stream="true")
    assert r.status_code == 400 and "from the future" in r.json()["details"]


def test_a_byte_budget_ends_a_page_early(make_server):
    srv = start(make_server)
    fill(srv, 1, ROWS)
    phone = device(srv)
    seen, cursor, more, pages = [], 0, True, 0
    while more:
        r = get(srv, phone.token, cursor=cursor, limit=ROWS, stream="true", maxBytes=50_000)
        body = r.json()
        # the page ends at the first change past the budget
        assert len(changes_text(r.text)[0]) < 50_000 + 200
        seen += [c["id"] for c in body["changes"]]
        cursor, more, pages = body["cursor"], body["hasMore"], pages + 1
    assert seen == list(range(1, ROWS + 1)) and pages > 3


class CuttingRelay(Relay):
    """A TCP relay that, while cutting, closes each connection once the answer passed
    cut_at bytes (mid-page for a large page), after the server did the work."""

    def __init__(self, target, cut_at):
        self.cut_at, self.cutting, self.cuts = cut_at, True, 0
        super().__init__(target)

    async def handle(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        ends = (writer, up_writer)
        limit = self.cut_at if self.cutting else None
        _, cut = await asyncio.gather(self.pump(reader, up_writer, ends),
                                      self.pump(up_reader, writer, ends, limit))
        self.cuts += cut


def test_a_page_cut_mid_stream_leaves_the_replica_unchanged(make_server, tmp_path):
    srv = start(make_server)
    fill(srv, 1, 3000, width=500)  # streamed pages of 1,000 changes, about 0.5 MB each
    phone = device(srv)
    relay = CuttingRelay(int(srv.base.rsplit(":", 1)[1]), cut_at=3000)  # mid-body, compressed or not
    db = tmp_path / "phone.db"
    try:
        # every answer is cut well inside the first page: the sync fails, nothing applied
        proc = subprocess.run([FERRY_BIN, "sync", "--url", f"http://127.0.0.1:{relay.port}",
                               "--token", phone.token, str(db)], capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode != 0 and relay.cuts >= 6, (proc.stderr, relay.cuts)
        assert local(db, "SELECT COUNT(*) FROM orders") == [(0,)]
        assert local(db, "SELECT cursor FROM ferry_client_state") == [(0,)]
        relay.cutting = False
        proc = subprocess.run([FERRY_BIN, "sync", "--url", f"http://127.0.0.1:{relay.port}",
                               "--token", phone.token, str(db)], capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, proc.stderr
    finally:
        relay.close()
    assert local(db, "SELECT COUNT(*), SUM(qty) FROM orders") == \
        [(3000, sum(i % 97 for i in range(1, 3001)))]
    # the capture triggers are back after the bulk load: a local write is pushed
    local(db, "UPDATE orders SET qty = -1 WHERE id = 7")
    assert sync(srv, phone, db)["pushed"] == 1
    assert [list(r) for r in srv.db_query("SELECT qty FROM orders WHERE id = 7")] == [["-1"]]


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def test_a_huge_streamed_page_does_not_grow_the_server(make_server):
    """A page of about 40 MB is read in chunks: the server's peak RSS grows far less than
    the page (a plain page would hold it whole, and the feed's rows with it). On
    PostgreSQL, which hands a statement's rows over whole, too: the page is read in
    statements of 1,000 rows. (A sanitized build keeps freed memory in quarantine, where
    each statement's rows would pile up: a small one is asked for.)"""
    srv = make_server(*FLAGS, schema=list(SCHEMA), env={
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=1"})
    fill(srv, 1, 20000, width=2000)
    phone = device(srv)
    get(srv, phone.token, cursor=0, limit=10)  # warm: pools, statements
    before = vm_hwm_kb(srv.proc.pid)
    with srv.session.get(srv.base + CHANGES, params={"cursor": 0, "limit": 100000,
                                                     "stream": "true", "includeOwn": "true"},
                         headers={"Authorization": f"Bearer {phone.token}",
                                  "Accept-Encoding": "identity"}, stream=True, timeout=120) as r:
        size = read_slowly(r)
    grown = vm_hwm_kb(srv.proc.pid) - before
    assert size > 40_000_000 and grown < 12_000, (size, grown)


def slow_stream(srv, token):
    """A streamed call whose client reads its first bytes and then nothing: the server
    fills the socket's buffers and the stream stays in flight, holding its connection."""
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.sendall((f"GET {CHANGES}?cursor=0&limit=100000&stream=true&includeOwn=true HTTP/1.1\r\n"
               f"Host: x\r\nAuthorization: Bearer {token}\r\nAccept-Encoding: identity\r\n\r\n"
               ).encode())
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    return s


def probe(srv, token):
    """The number of changes a stream=true call for 5,000 gets, and whether it streamed."""
    r = get(srv, token, cursor=0, limit=5000, stream="true")
    assert r.status_code == 200, r.text
    return len(r.json()["changes"]), r.headers.get("Transfer-Encoding") == "chunked"


def test_slow_stream_readers_cannot_take_every_connection(make_server):
    """Streams hold a store connection while their client reads, so at most half the pool
    streams: past that a stream=true call gets a plain page of at most 1,000 changes, the
    other requests keep their connections, and closed streams give their places back."""
    srv = start(make_server, "--threads", "4")
    fill(srv, 1, 20000, width=2000)  # about 40 MB: more than the sockets' buffers
    phone = device(srv)
    assert probe(srv, phone.token) == (5000, True)
    held = []
    try:
        while len(held) < 8 and probe(srv, phone.token) == (5000, True):
            held.append(slow_stream(srv, phone.token))
        assert 1 <= len(held) < 8, len(held)  # half of the pool (4 threads and a few)
        assert probe(srv, phone.token) == (1000, False)
        # the other requests still find a connection
        phone.report([op("orders", "insert", {"id": 99999, "item": "late", "qty": 1})])
        assert get(srv, phone.token, cursor=0, limit=10).status_code == 200
    finally:
        for s in held:
            s.close()
    deadline = time.time() + 30
    while probe(srv, phone.token) != (5000, True):
        assert time.time() < deadline, "closed streams kept their places"
        time.sleep(0.2)
