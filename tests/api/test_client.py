"""libferry and `ferry sync`: a device's SQLite replica synced with a real server, on both
store backends. The replica is written with plain SQL (Python's sqlite3, as an app
would); `ferry sync` pushes the captured changes and pulls everyone else's."""

import json
import os
import shutil
import sqlite3
import subprocess
import time

from conftest import FERRY_BIN
from devsync import count, row, user

SCHEMA = [
    "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, n INTEGER, done BOOLEAN, pic BYTEA,"
    " score REAL)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER)",
]
FLAGS = ("--allowed-tables", "notes,orders", "--conflict-policy", "notes=overwrite,orders=skip",
         "--rate-limit", "0")


def start(make_server, *extra):
    return make_server(*FLAGS, *extra, schema=list(SCHEMA))


def device(srv, name="phone"):
    return user(srv, "anna").register(name)


def sync(srv, dev, db, *extra, expect=0):
    proc = subprocess.run([FERRY_BIN, "sync", "--url", srv.base, "--token", dev.token, *extra,
                           str(db)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == expect, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]) if expect == 0 else proc.stderr


def local(db, sql, *args):
    con = sqlite3.connect(db)
    try:
        with con:
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_a_new_replica_gets_the_tables_and_every_row(make_server, tmp_path):
    srv = start(make_server)
    srv.db_exec("INSERT INTO notes VALUES ('s1', 'from server', 7, TRUE, NULL, 1.5)",
                "INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 4)")
    db = tmp_path / "phone.db"
    phone = device(srv)
    stats = sync(srv, phone, db)
    assert stats == {"pushed": 0, "conflicts": 0, "pulled": 3, "skipped": 0,
                     "cursor": stats["cursor"], "resynced": False}
    assert local(db, "SELECT id, title, n, done, pic, score FROM notes") == \
        [("s1", "from server", 7, 1, None, 1.5)]
    assert local(db, "SELECT * FROM orders ORDER BY id") == [(1, "apple", 3), (2, "pear", 4)]
    # the tables are the server's, with their key
    cols = local(db, "SELECT name, type, pk FROM pragma_table_info('orders')")
    assert cols == [("id", "INTEGER", 1), ("item", "TEXT", 0), ("qty", "INTEGER", 0)]
    # a second sync has nothing to do, and the device acknowledged its cursor
    again = sync(srv, phone, db)
    assert again["pulled"] == 0 and again["pushed"] == 0 and again["cursor"] == stats["cursor"]
    assert phone.get("/devices/" + phone.device_id).json()["cursor"] == stats["cursor"]


def test_local_writes_reach_the_server_and_remote_ones_the_replica(make_server, tmp_path):
    srv = start(make_server)
    phone = device(srv)
    db = tmp_path / "phone.db"
    sync(srv, phone, db)
    local(db, "INSERT INTO notes VALUES ('p1', 'phone', 2, 0, x'00ff10', 0.25)")
    local(db, "INSERT INTO orders VALUES (10, 'fig', 1), (11, 'kiwi', 2)")
    local(db, "UPDATE orders SET qty = 9 WHERE id = 10")
    local(db, "DELETE FROM orders WHERE id = 11")
    stats = sync(srv, phone, db)
    assert stats["pushed"] == 3 and stats["conflicts"] == 0, stats  # p1, 10 and 11 (a delete)
    assert row(srv, "orders", 10) == ["10", "fig", "9"]
    assert row(srv, "orders", 11) is None
    hexed = "encode(pic, 'hex')" if srv.backend == "postgres" else "lower(hex(pic))"
    assert srv.db_query(f"SELECT {hexed}, done FROM notes WHERE id = 'p1'")[0][0] == "00ff10"
    # the server's bytes are the replica's bytes: a second device pulls them back
    tablet_db = tmp_path / "tablet.db"
    sync(srv, device(srv, "tablet"), tablet_db)
    assert local(tablet_db, "SELECT id, title, n, done, pic, score FROM notes") == \
        [("p1", "phone", 2, 0, b"\x00\xff\x10", 0.25)]
    assert local(tablet_db, "SELECT * FROM orders") == [(10, "fig", 9)]
    # changes made on the server (another program) reach the phone; its own do not return
    srv.db_exec("UPDATE orders SET item = 'FIG' WHERE id = 10", "DELETE FROM notes WHERE id = 'p1'")
    stats = sync(srv, phone, db)
    assert stats["pulled"] == 2 and stats["pushed"] == 0, stats
    assert local(db, "SELECT * FROM orders") == [(10, "FIG", 9)]
    assert local(db, "SELECT COUNT(*) FROM notes") == [(0,)]
    # applying remote changes is not captured again: nothing is left to push
    assert local(db, "SELECT COUNT(*) FROM ferry_client_outbox") == [(0,)]
    assert sync(srv, phone, db)["pushed"] == 0


def test_a_batch_retried_after_a_lost_answer_is_applied_once(make_server, tmp_path):
    """The replica crashed after the server applied its batch but before it recorded that
    (simulated by restoring the file as it was before the sync): the retry carries the
    same batch id and the server answers from the first answer."""
    srv = start(make_server)
    phone = device(srv)
    db = tmp_path / "phone.db"
    sync(srv, phone, db)
    local(db, "INSERT INTO orders VALUES (1, 'apple', 1)")
    backup = tmp_path / "before.db"
    shutil.copy(db, backup)
    sync(srv, phone, db)
    version = srv.db_query("SELECT version FROM ferry_changes WHERE tbl = 'orders' AND pk = '1'")
    os.replace(backup, db)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(db) + suffix):
            os.remove(str(db) + suffix)
    stats = sync(srv, phone, db)
    assert stats["pushed"] == 1
    assert srv.db_query("SELECT version FROM ferry_changes WHERE tbl = 'orders' AND pk = '1'") \
        == version
    assert count(srv, "orders") == 1
    assert local(db, "SELECT COUNT(*) FROM ferry_client_outbox") == [(0,)]


def test_a_row_changed_on_both_sides_ends_as_the_server_keeps_it(make_server, tmp_path):
    """orders has the skip policy: the server keeps its row when a device pushes over a
    version it has not seen. The replica then takes the server's row, which its pull had
    held back while the local change was pending."""
    srv = start(make_server)
    phone = device(srv)
    db = tmp_path / "phone.db"
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 1)")
    sync(srv, phone, db)
    srv.db_exec("UPDATE orders SET qty = 50 WHERE id = 1")  # the server moves on
    local(db, "UPDATE orders SET qty = 2 WHERE id = 1")  # and the phone too, offline
    stats = sync(srv, phone, db)
    assert row(srv, "orders", 1) == ["1", "apple", "50"]
    assert local(db, "SELECT * FROM orders") == [(1, "apple", 50)], stats
    # notes has last-writer-wins: the phone's row wins there
    srv.db_exec("INSERT INTO notes(id, title) VALUES ('n', 'server')")
    sync(srv, phone, db)
    srv.db_exec("UPDATE notes SET title = 'server 2' WHERE id = 'n'")
    local(db, "UPDATE notes SET title = 'phone' WHERE id = 'n'")
    sync(srv, phone, db)
    assert row(srv, "notes", "n", "title") == ["phone"]
    assert local(db, "SELECT title FROM notes") == [("phone",)]


def test_a_410_rebuilds_the_replica(make_server, tmp_path):
    srv = start(make_server, "--tombstone-retention", "1")
    phone = device(srv)
    db = tmp_path / "phone.db"
    srv.db_exec("INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    sync(srv, phone, db)
    srv.db_exec("DELETE FROM orders WHERE id = 2", "INSERT INTO orders VALUES (4, 'd', 4)")
    time.sleep(1.2)
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.status_code == 200 and r.json()["tombstones_purged"] >= 1, r.text
    local(db, "INSERT INTO orders VALUES (5, 'local', 5)")  # not pushed yet: kept
    stats = sync(srv, phone, db)
    assert stats["resynced"] is True
    assert local(db, "SELECT id FROM orders ORDER BY id") == [(1,), (3,), (4,), (5,)]
    assert [r[0] for r in srv.db_query("SELECT id FROM orders ORDER BY id")] == \
        ["1", "3", "4", "5"]


def test_errors_are_clear(make_server, tmp_path):
    srv = start(make_server)
    db = tmp_path / "x.db"
    proc = subprocess.run([FERRY_BIN, "sync", "--url", srv.base, "--token", "fyd_" + "x" * 43,
                           str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr, proc.stderr
    proc = subprocess.run([FERRY_BIN, "sync", str(db)], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items()
                                           if not k.startswith("FERRY_")})
    assert proc.returncode == 2 and "--url" in proc.stderr
    proc = subprocess.run([FERRY_BIN, "sync", "--url", "ftp://x", "--token", "t", str(db)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "http://" in proc.stderr
    # a local table without a synced column
    bad = tmp_path / "bad.db"
    local(bad, "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
    err = sync(srv, device(srv), bad, expect=1)
    assert "orders has no column qty" in err


PROGRAM = r"""
#include <stdio.h>
#include <ferry/client.h>

int main(int argc, char **argv)
{
    struct ferry_client_options o = {.url = argv[2], .token = argv[3]};
    struct ferry_sync_stats s;
    ferry_replica *r = NULL;
    char why[256];
    if (argc != 4 || ferry_replica_open(argv[1], &o, &r, why, sizeof(why)) != FERRY_CLIENT_OK) {
        fprintf(stderr, "open: %s\n", argc == 4 ? why : "usage");
        return 1;
    }
    int rc = ferry_sync(r, &s);
    if (rc != FERRY_CLIENT_OK)
        fprintf(stderr, "sync: %s\n", ferry_replica_error(r));
    else
        printf("%lld %lld\n", (long long)s.pulled, (long long)ferry_pending(r));
    ferry_replica_close(r);
    return rc != FERRY_CLIENT_OK;
}
"""


def sanitized_build():
    cache = os.path.join(os.path.dirname(os.path.abspath(FERRY_BIN)), "CMakeCache.txt")
    return os.path.exists(cache) and "FERRY_SANITIZE:BOOL=ON" in open(cache).read()


def test_a_program_built_with_pkg_config_against_the_installed_library(make_server, tmp_path):
    """make install puts libferry (shared, static, versioned soname), its header and
    ferry.pc in place; a program compiled with `pkg-config --cflags --libs ferry` syncs."""
    prefix = tmp_path / "usr"
    build = os.path.dirname(os.path.abspath(FERRY_BIN))
    proc = subprocess.run(["cmake", "--install", build, "--prefix", str(prefix)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs if f == "ferry.pc"]
    assert len(pcs) == 1, pcs
    libdir = os.path.dirname(os.path.dirname(pcs[0]))
    assert os.path.islink(os.path.join(libdir, "libferry.so"))
    assert os.path.exists(os.path.join(libdir, "libferry.so.0"))
    assert os.path.exists(os.path.join(libdir, "libferry.a"))
    assert (prefix / "include/ferry/client.h").exists()
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "ferry"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    dirs = [os.path.realpath(f[2:]) for f in flags if f.startswith("-L")]
    assert os.path.realpath(libdir) in dirs and "-lferry" in flags, flags
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    extra = ["-fsanitize=address,undefined"] if sanitized_build() else []
    out = tmp_path / "prog"
    proc = subprocess.run(["cc", "-Wall", "-Werror", *extra, str(src), "-o", str(out), *flags,
                           f"-Wl,-rpath,{libdir}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    srv = start(make_server)
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 3)")
    phone = device(srv)
    db = tmp_path / "app.db"
    proc = subprocess.run([str(out), str(db), srv.base, phone.token], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "0"]
    assert local(db, "SELECT * FROM orders") == [(1, "apple", 3)]


def hostile_server(answer):
    """A server in this process whose every GET is answer(handler): it speaks for ferry
    at a URL a device was given."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            answer(self)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_an_answer_too_large_or_a_compressed_bomb_fails_without_exhausting_memory(tmp_path):
    import gzip

    bomb = gzip.compress(b" " * (200 << 20), compresslevel=9)  # 200 MiB from ~200 KiB

    def answer(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(bomb)))
        h.end_headers()
        h.wfile.write(bomb)

    httpd = hostile_server(answer)
    try:
        started = time.monotonic()
        proc = subprocess.run([FERRY_BIN, "sync", "--url", f"http://127.0.0.1:{httpd.server_port}",
                               "--token", "t", str(tmp_path / "x.db")], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "the answer is larger than 64 MiB" in proc.stderr, proc.stderr
        assert time.monotonic() - started < 10  # no retries of the same answer
    finally:
        httpd.shutdown()


def test_a_replica_killed_after_the_server_applied_its_push_loses_nothing(make_server, tmp_path):
    """kill -9 between the server applying a batch and the replica recording it; the app
    then edits the same rows again. The resumed sync sends the lost batch again under its
    id (the server answers from its record) and then the new edits, so the server ends
    with them, also on a table whose policy keeps the server's row (orders: skip)."""
    import signal
    import urllib.error
    import urllib.request

    srv = start(make_server)
    phone = device(srv)
    db = tmp_path / "phone.db"
    sync(srv, phone, db)
    local(db, "INSERT INTO orders VALUES (1, 'zero', 1)")
    local(db, "INSERT INTO notes(id, title) VALUES ('n1', 'zero')")
    sync(srv, phone, db)
    local(db, "UPDATE orders SET item = 'first' WHERE id = 1")
    local(db, "UPDATE notes SET title = 'first' WHERE id = 'n1'")
    victim = {}

    def forward_then_kill_on_push(h):
        length = int(h.headers.get("Content-Length") or 0)
        req = urllib.request.Request(srv.base + h.path, method=h.command,
                                     data=h.rfile.read(length) if length else None,
                                     headers={"Authorization": h.headers["Authorization"],
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        if h.path.endswith("/report"):  # applied on the server: the replica dies unanswered
            os.kill(victim["pid"], signal.SIGKILL)
            return
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    proxy = hostile_server(forward_then_kill_on_push)
    proxy.RequestHandlerClass.do_POST = proxy.RequestHandlerClass.do_GET
    try:
        proc = subprocess.Popen([FERRY_BIN, "sync", "--url",
                                 f"http://127.0.0.1:{proxy.server_port}", "--token", phone.token,
                                 str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        victim["pid"] = proc.pid
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proxy.shutdown()
    assert srv.db_query("SELECT item FROM orders WHERE id = 1") == [["first"]]
    local(db, "UPDATE orders SET item = 'second' WHERE id = 1")
    local(db, "UPDATE notes SET title = 'second' WHERE id = 'n1'")
    stats = sync(srv, phone, db)
    assert stats["conflicts"] == 0, stats
    assert srv.db_query("SELECT item FROM orders WHERE id = 1") == [["second"]]
    assert srv.db_query("SELECT title FROM notes WHERE id = 'n1'") == [["second"]]
    assert sync(srv, phone, db)["pushed"] == 0
    assert local(db, "SELECT item FROM orders") == [("second",)]
    r = srv.get("/api/v1/sync/conflicts", token=srv.admin_token, params={"status": "all"})
    assert r.json()["totalCount"] == 0, r.text


def test_a_schema_naming_the_replicas_own_tables_is_refused(tmp_path):
    """A server (or something at its URL) that lists libferry's bookkeeping as a synced
    table could write it: e.g. switch capture off for good, so that the app's writes are
    never pushed. Such a schema is refused and the replica left as it was."""
    hostile = {"ferry_client_state": {"id": 1, "applying": 1, "replica_id": "x"},
               "FERRY_CLIENT_outbox": {"id": 1, "tbl": "t", "pk": "1"},
               "sqlite_sequence": {"name": "ferry_client_outbox", "seq": 1}}
    for name, row in hostile.items():
        key = next(iter(row))
        schema = {"tables": [{"name": name, "primaryKey": key, "columns": [
            {"name": col, "type": "integer" if isinstance(v, int) else "text"}
            for col, v in row.items()]}]}
        page = {"changes": [{"seq": 1, "table": name, "id": row[key], "op": "upsert",
                             "version": 1, "deleted": False, "data": row}],
                "cursor": 1, "hasMore": False}

        def answer(h):
            body = json.dumps(schema if h.path.endswith("/schema") else
                              page if "/changes" in h.path else {"cursor": 1}).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        httpd = hostile_server(answer)
        httpd.RequestHandlerClass.do_POST = httpd.RequestHandlerClass.do_GET
        db = tmp_path / f"{name}.db"
        try:
            proc = subprocess.run([FERRY_BIN, "sync", "--url",
                                   f"http://127.0.0.1:{httpd.server_port}", "--token", "t",
                                   str(db)], capture_output=True, text=True, timeout=60)
        finally:
            httpd.shutdown()
        assert proc.returncode == 1, proc.stderr
        assert f"table {name} is the replica's own" in proc.stderr, proc.stderr
        tables = local(db, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert tables == [], tables
