"""libferry's pull over many pages: pages are fetched ahead on connections of their own
(the next one asked for as soon as the previous one's text is in) while one is applied.
Every row arrives once, in order, whether the answers come whole or are cut and retried
by a faulty network, and whatever the server changes meanwhile."""

import json
import subprocess

from conftest import FERRY_BIN
from test_client import device, local, start, sync
from test_client_convergence import Relay

ROWS = 5500  # six pages of 1,000


def fill(srv, first, n):
    srv.db_exec("INSERT INTO orders (id, item, qty) SELECT i, 'item ' || i, i % 97 FROM"
                f" (WITH RECURSIVE s(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM s"
                f" WHERE i < {first + n - 1}) SELECT i FROM s) AS t")


def server_orders(srv):
    return [(int(r[0]), r[1], int(r[2])) for r in
            srv.db_query("SELECT id, item, qty FROM orders ORDER BY id")]


def test_a_pull_of_many_pages_gets_every_row_once(make_server, tmp_path):
    srv = start(make_server)
    fill(srv, 1, ROWS)
    db = tmp_path / "phone.db"
    phone = device(srv)
    stats = sync(srv, phone, db)
    assert stats["pulled"] == ROWS, stats
    assert local(db, "SELECT id, item, qty FROM orders ORDER BY id") == server_orders(srv)
    # changes everywhere in the log, deletions among them, then more rows: the next pull
    # starts from the cursor and again gets each change once
    srv.db_exec("UPDATE orders SET qty = qty + 1000 WHERE id % 3 = 0",
                "DELETE FROM orders WHERE id % 11 = 0")
    fill(srv, ROWS + 1, 1500)
    stats = sync(srv, phone, db)
    changed = ROWS // 3 + ROWS // 11 + 1500 - ROWS // 33  # a deleted multiple of 3 is one change
    assert stats["pulled"] == changed, stats
    assert local(db, "SELECT id, item, qty FROM orders ORDER BY id") == server_orders(srv)


def test_pages_cut_by_the_network_are_fetched_again(make_server, tmp_path):
    srv = start(make_server)
    fill(srv, 1, ROWS)
    relay = Relay(int(srv.base.rsplit(":", 1)[1]), seed=7)
    db = tmp_path / "phone.db"
    phone = device(srv)
    try:
        for _ in range(30):  # a sync fails when one request failed six times: run it again
            proc = subprocess.run([FERRY_BIN, "sync", "--url", f"http://127.0.0.1:{relay.port}",
                                   "--token", phone.token, str(db)], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode == 0:
                break
        assert proc.returncode == 0, proc.stderr
    finally:
        relay.close()
    assert sum(relay.modes[m] for m in ("cut", "drop", "delay")) > 0, relay.modes
    assert local(db, "SELECT id, item, qty FROM orders ORDER BY id") == server_orders(srv)
    again = sync(srv, phone, db)
    assert again["pulled"] == 0, again
