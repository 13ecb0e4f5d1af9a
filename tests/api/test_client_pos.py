"""examples/pos, the offline point-of-sale till on libferry, built by the `examples`
target (`make examples`) and run as its README's walk-through does: two tills sync, ring
up sales while the server is down, reconnect and agree on the stock."""

import os
import subprocess

from conftest import FERRY_BIN
from devsync import user

SCHEMA = [
    "CREATE TABLE stock (item TEXT PRIMARY KEY, qty INTEGER, price_cents INTEGER)",
    "CREATE TABLE sales (id TEXT PRIMARY KEY, till TEXT, item TEXT, qty INTEGER,"
    " price_cents INTEGER, sold_at TEXT)",
]


def build_pos():
    build = os.path.dirname(os.path.abspath(FERRY_BIN))
    proc = subprocess.run(["cmake", "--build", build, "--target", "examples"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return os.path.join(build, "examples", "pos")


def pos(srv, till, db, *args, expect=0):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(FERRY_URL=srv.base, FERRY_TOKEN=till.token)
    proc = subprocess.run([POS, str(db), *args], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == expect, proc.stderr
    return proc.stdout if expect == 0 else proc.stderr


POS = None


def test_two_tills_sell_offline_and_converge(make_server, tmp_path):
    global POS
    POS = build_pos()
    srv = make_server("--allowed-tables", "stock,sales", "--rate-limit", "0", schema=SCHEMA)
    srv.db_exec("INSERT INTO stock VALUES ('coffee', 10, 250)",
                "INSERT INTO stock VALUES ('bagel', 5, 300)")
    shop = user(srv, "shop")
    till1, till2 = shop.register("till-1"), shop.register("till-2")
    db1, db2 = tmp_path / "till1.db", tmp_path / "till2.db"
    for till, db in ((till1, db1), (till2, db2)):
        assert "change(s) received" in pos(srv, till, db, "sync")
    assert pos(srv, till1, db1, "stock") == "bagel 5 300\ncoffee 10 250\n"

    srv.stop()  # offline: selling needs only the replica
    assert pos(srv, till1, db1, "sell", "coffee", "3") == "sold 3 coffee; 7 left\n"
    assert pos(srv, till2, db2, "sell", "coffee", "4") == "sold 4 coffee; 6 left\n"
    assert pos(srv, till2, db2, "sell", "bagel", "1") == "sold 1 bagel; 4 left\n"
    assert "only 4 bagel left" in pos(srv, till2, db2, "sell", "bagel", "9", expect=1)
    assert "sync failed" in pos(srv, till1, db1, "sync", expect=1)  # opens; cannot sync

    srv.start()  # back online: each till sends its sales and gets the other's
    pos(srv, till1, db1, "sync")
    pos(srv, till2, db2, "sync")
    pos(srv, till1, db1, "sync")
    for till, db in ((till1, db1), (till2, db2)):
        assert pos(srv, till, db, "stock") == "bagel 4 300\ncoffee 3 250\n"
        assert pos(srv, till, db, "total") == f"3 {7 * 250 + 300}\n"
    rows = srv.db_query("SELECT till, item, qty FROM sales ORDER BY till, item")
    assert [[str(v) for v in r] for r in rows] == [
        ["till1.db", "coffee", "3"], ["till2.db", "bagel", "1"], ["till2.db", "coffee", "4"]]
