"""libferry's pull over many pages: pages are fetched ahead on connections of their own
(the next one asked for as soon as the previous one's text is in) while one is applied.
Every row arrives once, in order, whether the answers come whole or are cut and retried
by a faulty network, and whatever the server changes meanwhile."""

import json
import os
import pty
import signal
import sqlite3
import subprocess

from conftest import FERRY_BIN
from test_client import device, local, start, sync
from test_client_convergence import FaultyRelay
from test_client_mirror import SlowRelay, read_all

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
    relay = FaultyRelay(int(srv.base.rsplit(":", 1)[1]), seed=7)
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


def test_sync_counts_rows_on_a_terminal_and_in_json_lines(make_server, tmp_path):
    srv = start(make_server)
    fill(srv, 1, ROWS)
    phone = device(srv)
    master, slave = pty.openpty()
    proc = subprocess.Popen([FERRY_BIN, "sync", "--url", srv.base, "--token", phone.token,
                             str(tmp_path / "a.db")], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    screen = read_all(master)
    assert proc.returncode == 0, screen
    frames = screen.split(b"\r\x1b[2K")[1:]
    assert frames and frames[-1].startswith(f"sync {tmp_path / 'a.db'}  {ROWS} done".encode())
    assert screen.endswith(b"\r\n") and json.loads(out)["pulled"] == ROWS  # one line
    proc = subprocess.run([FERRY_BIN, "sync", "--json", "--url", srv.base, "--token",
                           device(srv, "tablet").token, str(tmp_path / "b.db")],
                          capture_output=True, text=True, timeout=120)
    lines = [json.loads(l) for l in proc.stdout.splitlines()]
    assert [l["pulled"] for l in lines[:-1]] == [1000, 2000, 3000, 4000, 5000, ROWS], lines
    assert lines[-1]["pulled"] == ROWS and proc.stderr == ""


def test_ctrl_c_stops_a_sync_between_pages_and_the_rerun_goes_on(make_server, tmp_path):
    srv = start(make_server)
    fill(srv, 1, ROWS)
    phone = device(srv)
    db = tmp_path / "phone.db"
    relay = SlowRelay(int(srv.base.rsplit(":", 1)[1]))
    try:
        proc = subprocess.Popen([FERRY_BIN, "sync", "--json", "--url", relay.url, "--token",
                                 phone.token, str(db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        relay.close()
    assert first["pulled"] == 1000 and proc.returncode == 1, err
    assert b"stopped" in err, err
    have = local(db, "SELECT COUNT(*) FROM orders")[0][0]
    assert 1000 <= have < ROWS
    stats = sync(srv, phone, db)
    assert stats["pulled"] == ROWS - have, stats
    assert local(db, "SELECT id, item, qty FROM orders ORDER BY id") == server_orders(srv)


class CrawlRelay(SlowRelay):
    """A SlowRelay passing the server's answers at about 20 KiB/s (a compressed page of
    1,000 orders takes about half a second)."""

    @staticmethod
    def pump(src, dst, pause):
        SlowRelay.pump(src, dst, pause * 12)


def test_the_app_writes_while_a_sync_waits_for_its_next_page(make_server, tmp_path):
    """A pull's transaction holds the replica's write lock (and in a bulk load the capture
    triggers are off in it): it is committed instead of held while the next page is still
    on its way, so the app's own connection writes meanwhile within a short busy timeout,
    and the write is captured and pushed."""
    srv = start(make_server)
    fill(srv, 1, ROWS)
    phone = device(srv)
    db = tmp_path / "phone.db"
    relay = CrawlRelay(int(srv.base.rsplit(":", 1)[1]))
    try:
        proc = subprocess.Popen([FERRY_BIN, "sync", "--json", "--url", relay.url, "--token",
                                 phone.token, str(db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = json.loads(proc.stdout.readline())
        assert first["pulled"] == 1000, first
        app = sqlite3.connect(db, timeout=1.0)
        try:
            with app:
                app.execute("INSERT INTO orders (id, item, qty) VALUES (100000, 'local', 1)")
        finally:
            app.close()
        assert proc.poll() is None  # the sync was still under way
        _, err = proc.communicate(timeout=120)
    finally:
        relay.close()
    assert proc.returncode == 0, err
    stats = sync(srv, phone, db)
    assert stats["pushed"] == 1, stats
    assert srv.db_query("SELECT item, qty FROM orders WHERE id = 100000") == [["local", "1"]]
    assert local(db, "SELECT COUNT(*) FROM orders")[0][0] == ROWS + 1
