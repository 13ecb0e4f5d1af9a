"""The client commands on libferry: `ferry login` (client.conf, mode 0600; FERRY_URL and
FERRY_TOKEN override it), `ferry push` / `ferry pull` (one half of a sync each, a JSON line
out), `ferry conflicts` and `ferry resolve` (JSON out, the server's refusals on stderr)."""

import json
import os
import sqlite3
import stat
import subprocess

from conftest import FERRY_BIN
from devsync import row, user

SCHEMA = ["CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, qty INTEGER)"]
FLAGS = ("--allowed-tables", "orders", "--conflict-policy", "orders=manual", "--rate-limit", "0")


def ferry(home, *args, env=None, stdin=None):
    """Runs ferry with HOME in the test's folder and no FERRY_* from outside."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("FERRY_") and k != "XDG_CONFIG_HOME"}
    clean.update(HOME=str(home), **(env or {}))
    return subprocess.run([FERRY_BIN, *args], capture_output=True, text=True, timeout=120,
                          env=clean, input=stdin)


def local(db, sql, *args):
    con = sqlite3.connect(db)
    try:
        with con:
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_login_stores_server_and_token_for_the_other_commands(make_server, tmp_path):
    srv = make_server(*FLAGS, schema=list(SCHEMA))
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 1)")
    dev = user(srv, "anna").register("till")
    home, db = tmp_path / "home", tmp_path / "till.db"
    home.mkdir()
    # without a login, the commands say how to get one
    proc = ferry(home, "sync", str(db))
    assert proc.returncode == 2 and "ferry login URL" in proc.stderr, proc.stderr
    # a refused token is not stored
    proc = ferry(home, "login", "--token", "fyd_" + "x" * 43, srv.base)
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr, proc.stderr
    conf = home / ".config/ferry/client.conf"
    assert not conf.exists()
    # the token may come on standard input
    proc = ferry(home, "login", srv.base, stdin=dev.token + "\n")
    assert proc.returncode == 0 and "logged in to" in proc.stdout, proc.stderr
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert f"url = {srv.base}" in conf.read_text() and dev.token in conf.read_text()
    proc = ferry(home, "sync", str(db))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pulled"] == 1
    assert local(db, "SELECT * FROM orders") == [(1, "apple", 1)]
    # the environment overrides the file
    proc = ferry(home, "sync", str(db), env={"FERRY_URL": "http://127.0.0.1:1"})
    assert proc.returncode == 1 and "127.0.0.1:1" in proc.stderr, proc.stderr
    # XDG_CONFIG_HOME moves the file
    xdg = tmp_path / "xdg"
    proc = ferry(home, "login", "--token", dev.token, srv.base,
                 env={"XDG_CONFIG_HOME": str(xdg)})
    assert proc.returncode == 0 and (xdg / "ferry/client.conf").exists(), proc.stderr


def test_push_and_pull_are_the_halves_of_a_sync(make_server, tmp_path):
    srv = make_server(*FLAGS, schema=list(SCHEMA))
    anna = user(srv, "anna")
    a, b = anna.register("a"), anna.register("b")
    home = tmp_path
    dba, dbb = tmp_path / "a.db", tmp_path / "b.db"
    for dev, db in ((a, dba), (b, dbb)):
        assert ferry(home, "sync", "--url", srv.base, "--token", dev.token, str(db)).returncode == 0
    local(dba, "INSERT INTO orders VALUES (5, 'fig', 2)")
    srv.db_exec("INSERT INTO orders VALUES (6, 'kiwi', 1)")
    proc = ferry(home, "push", "--url", srv.base, "--token", a.token, str(dba))
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["pushed"] == 1 and out["pulled"] == 0, proc.stderr
    assert row(srv, "orders", 5) == ["5", "fig", "2"]
    assert local(dba, "SELECT id FROM orders") == [(5,)]  # 6 not pulled
    local(dbb, "INSERT INTO orders VALUES (7, 'lime', 3)")
    proc = ferry(home, "pull", "--url", srv.base, "--token", b.token, str(dbb))
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["pulled"] == 2 and out["pushed"] == 0, proc.stderr
    assert local(dbb, "SELECT id FROM orders ORDER BY id") == [(5,), (6,), (7,)]
    assert row(srv, "orders", 7) is None  # not pushed
    assert local(dbb, "SELECT COUNT(*) FROM ferry_client_outbox") == [(1,)]
    proc = ferry(home, "push", str(dbb))
    assert proc.returncode == 2 and "--url" in proc.stderr


def test_conflicts_and_resolve(make_server, tmp_path):
    srv = make_server(*FLAGS, schema=list(SCHEMA))
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 1)")
    dev = user(srv, "anna").register("till")
    home, db = tmp_path, tmp_path / "till.db"
    env = {"FERRY_URL": srv.base, "FERRY_TOKEN": dev.token}
    assert ferry(home, "sync", str(db), env=env).returncode == 0
    srv.db_exec("UPDATE orders SET qty = 50 WHERE id = 1")
    local(db, "UPDATE orders SET qty = 7 WHERE id = 1")
    proc = ferry(home, "sync", str(db), env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["conflicts"] == 1, proc.stderr
    proc = ferry(home, "conflicts", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)["conflicts"]
    assert len(listed) == 1 and listed[0]["clientData"]["qty"] == 7, listed
    cid = listed[0]["id"]
    assert local(db, "SELECT id FROM ferry_client_conflicts") == [(cid,)]
    proc = ferry(home, "resolve", cid, env=env)
    assert proc.returncode == 2 and "--keep" in proc.stderr
    proc = ferry(home, "resolve", "--keep", "client", cid, env=env)
    assert proc.returncode == 0, proc.stderr
    assert row(srv, "orders", 1) == ["1", "apple", "7"]
    proc = ferry(home, "resolve", "--keep", "server", cid, env=env)
    assert proc.returncode == 1 and "HTTP 4" in proc.stderr, proc.stderr
    assert json.loads(ferry(home, "conflicts", env=env).stdout)["conflicts"] == []
    resolved = json.loads(ferry(home, "conflicts", "--status", "resolved", env=env).stdout)
    assert [c["id"] for c in resolved["conflicts"]] == [cid]
    proc = ferry(home, "sync", str(db), env=env)
    assert proc.returncode == 0 and local(db, "SELECT qty FROM orders") == [(7,)]
    proc = ferry(home, "conflicts", "--status", "maybe", env=env)
    assert proc.returncode == 2 and "open, resolved or all" in proc.stderr
