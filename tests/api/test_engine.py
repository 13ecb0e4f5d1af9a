"""The engine under every API (DESIGN.md section 2), seen through the legacy push/pull and
the v1 change feed: change capture by triggers (writes from other programs included),
all-or-nothing batches, declared-type checks, start-up checks on the synced tables, and
tombstone purging with the resync answer. Every test runs on SQLite and PostgreSQL."""

import json
import time

from conftest import assert_legacy_error, assert_v1_error, run_ferry
from test_legacy import db_rows, ok, op, pull, push

ITEMS = "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)"
ITEMS_FLAGS = ("--allowed-tables", "items", "--purge-interval", "0")
CHANGES = "/api/v1/sync/changes"


def changes(srv, cursor=0, token=None, **query):
    """The v1 change feed from cursor (admin token unless given); returns the answer."""
    params = {"cursor": str(cursor), "limit": "1000", **query}
    r = srv.get(CHANGES, token=token or srv.admin_token, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def head(srv):
    return changes(srv)["cursor"]


def items(srv):
    return db_rows(srv, "SELECT id, name, qty FROM items ORDER BY id")


def register_device(srv, user_token, name):
    r = srv.post("/api/v1/sync/devices", token=user_token, json={"name": name})
    assert r.status_code == 200, r.text
    body = r.json()
    return body["id"], body["token"]


# --- change capture ------------------------------------------------------------------------


def test_changes_from_another_program_are_captured(make_server):
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS])
    assert changes(srv) == {"changes": [], "cursor": 0, "hasMore": False}

    srv.db_exec("INSERT INTO items (id, name, qty) VALUES ('i1', 'one', 1)",
                "INSERT INTO items (id, name, qty) VALUES ('i2', 'two', 2)",
                "UPDATE items SET qty = 10 WHERE id = 'i1'",
                "DELETE FROM items WHERE id = 'i2'")
    feed = changes(srv)
    got = [(c["table"], c["id"], c["op"], c["version"], c["deleted"], c["deviceId"], c["data"])
           for c in feed["changes"]]
    assert got == [
        ("items", "i1", "upsert", 2, False, None, {"id": "i1", "name": "one", "qty": 10}),
        ("items", "i2", "delete", 2, True, None, None),
    ]
    seqs = [c["seq"] for c in feed["changes"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2
    assert feed["cursor"] == seqs[-1] == 4 and feed["hasMore"] is False

    # the legacy pull sees the same
    body = ok(pull(srv))
    assert body["data"]["items"] == [{"id": "i1", "name": "one", "qty": 10}]
    assert body["deleted"]["items"] == ["i2"]

    # a ferry push records the device it speaks for
    ok(push(srv, [op("items", "insert", id="i3", name="three", qty=3)], device_id="shop_01"))
    (c,) = changes(srv, feed["cursor"])["changes"]
    assert (c["id"], c["deviceId"], c["version"], c["data"]) == \
        ("i3", "shop_01", 1, {"id": "i3", "name": "three", "qty": 3})

    # a device token's push is the device's own when the device holds the whole row...
    user = srv.create_token(role="user", name="u")["token"]
    dev_id, dev_token = register_device(srv, user, "d1")
    ok(push(srv, [op("items", "update", id="i3", name="three", qty=4)], token=dev_token))
    (c,) = changes(srv, c["seq"])["changes"]
    assert (c["id"], c["deviceId"], c["version"], c["data"]["qty"]) == ("i3", dev_id, 2, 4)

    # and another program's later write to the same row has no device again
    srv.db_exec("UPDATE items SET name = 'THREE' WHERE id = 'i3'")
    (c,) = changes(srv, c["seq"])["changes"]
    assert (c["id"], c["deviceId"], c["version"], c["data"]["name"]) == ("i3", None, 3, "THREE")

    # the log holds one row per key, the version counting every change
    assert db_rows(srv, "SELECT tbl, pk, version, deleted FROM ferry_changes ORDER BY pk") == \
        [("items", "i1", "2", "0"), ("items", "i2", "2", "1"), ("items", "i3", "3", "0")]

    # a partial update of a row it has not seen is no one's: its feed must bring
    # back the fields another writer set
    ok(push(srv, [op("items", "insert", id="i4", name="four", qty=4)], device_id="shop_01"))
    ok(push(srv, [op("items", "update", id="i4", qty=5)], token=dev_token))
    (c4,) = [ch for ch in changes(srv, 0)["changes"] if ch["id"] == "i4"]
    assert (c4["deviceId"], c4["data"]["name"], c4["data"]["qty"]) == (None, "four", 5)


def test_rows_present_before_first_sync_appear_from_cursor_zero(make_server):
    pre = ["INSERT INTO items (id, name, qty) VALUES ('a', 'A', 1)",
           "INSERT INTO items (id, name, qty) VALUES ('b', 'B', 2)",
           "INSERT INTO items (id, name, qty) VALUES ('c', 'C', NULL)",
           "CREATE TABLE later (id INTEGER PRIMARY KEY, label TEXT)",
           "INSERT INTO later (id, label) VALUES (7, 'seven')",
           "INSERT INTO later (id, label) VALUES (8, 'eight')"]
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS] + pre)
    feed = changes(srv)
    assert [(c["id"], c["version"], c["deviceId"]) for c in feed["changes"]] == \
        [("a", 1, None), ("b", 1, None), ("c", 1, None)]
    assert len({c["seq"] for c in feed["changes"]}) == 3
    assert ok(pull(srv))["data"]["items"] == [
        {"id": "a", "name": "A", "qty": 1}, {"id": "b", "name": "B", "qty": 2},
        {"id": "c", "name": "C", "qty": None}]
    old = feed["cursor"]

    # a table allow-listed later: its rows come after everything seen so far
    srv.stop()
    srv.args = ["--allowed-tables", "items,later", "--purge-interval", "0"]
    srv.start()
    feed = changes(srv, old)
    assert [(c["table"], c["id"]) for c in feed["changes"]] == [("later", 7), ("later", 8)]
    assert all(c["seq"] > old for c in feed["changes"])
    body = ok(pull(srv, cursor=old))
    assert body["data"] == {"items": [], "later": [{"id": 7, "label": "seven"},
                                                   {"id": 8, "label": "eight"}]}


def test_restart_neither_duplicates_nor_loses_changes(make_server):
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS])
    ok(push(srv, [op("items", "insert", id="p1", name="P", qty=1)], device_id="d"))
    srv.db_exec("INSERT INTO items (id, name, qty) VALUES ('x1', 'X', 1)")
    h1 = head(srv)
    assert h1 == 2

    srv.restart()
    assert head(srv) == h1
    assert changes(srv, h1)["changes"] == []

    # written while ferry is down: the triggers live in the database
    srv.stop()
    srv.db_exec("INSERT INTO items (id, name, qty) VALUES ('x2', 'X', 2)",
                "UPDATE items SET qty = 5 WHERE id = 'p1'")
    srv.start()
    feed = changes(srv, h1)
    assert [(c["id"], c["seq"], c["deviceId"]) for c in feed["changes"]] == \
        [("x2", h1 + 1, None), ("p1", h1 + 2, None)]

    ok(push(srv, [op("items", "insert", id="p2", name="P", qty=2)], device_id="d"))
    (c,) = changes(srv, h1 + 2)["changes"]
    assert (c["id"], c["seq"], c["deviceId"]) == ("p2", h1 + 3, "d")

    feed = changes(srv)
    assert sorted(c["id"] for c in feed["changes"]) == ["p1", "p2", "x1", "x2"]
    assert db_rows(srv, "SELECT COUNT(*) AS n, COUNT(DISTINCT pk) AS keys, MAX(seq) AS top"
                        " FROM ferry_changes") == [("4", "4", str(h1 + 3))]


# --- push: all or nothing -------------------------------------------------------------


BAD_OPS = [
    # (what, bad operation, fragments the error must name)
    ("unknown column", op("items", "insert", id="b", name="B", colour="red"),
     ["items", "colour"]),
    ("string into INTEGER", op("items", "insert", id="b", name="B", qty="many"),
     ["items", "'b'", "qty"]),
    ("real into INTEGER", op("items", "upsert", id="b", name="B", qty=1.5),
     ["items", "'b'", "qty"]),
    ("number into TEXT", op("items", "insert", id="b", name=5, qty=1), ["items", "'b'", "name"]),
    ("missing primary key", op("items", "insert", name="B", qty=1), ["items", "id"]),
    ("null primary key", op("items", "insert", id=None, name="B"), ["items", "id"]),
    ("empty primary key", op("items", "insert", id="", name="B"), ["items", "id"]),
    ("null into NOT NULL", op("items", "update", id="a", name=None), ["items", "'a'", "name"]),
    ("unknown action", op("items", "replace", id="b", name="B"), ["operations[1]", "action"]),
    ("no data", {"table": "items", "action": "insert"}, ["operations[1]", "data"]),
    ("data not an object", {"table": "items", "action": "insert", "data": ["b"]},
     ["operations[1]", "data"]),
    ("no action", {"table": "items", "data": {"id": "b", "name": "B"}},
     ["operations[1]", "action"]),
    ("operation not an object", "insert b", []),  # no table: cloud-sync-api says "Invalid table"
]


def test_one_bad_operation_rejects_the_whole_batch(make_server):
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS, "INSERT INTO items VALUES ('a', 'A', 1)"])
    h = head(srv)
    good_before = op("items", "insert", id="g1", name="G", qty=1)
    touch_a = op("items", "update", id="a", qty=99)
    good_after = op("items", "insert", id="g2", name="G", qty=2)
    for what, bad, fragments in BAD_OPS:
        r = push(srv, [good_before, bad, touch_a, good_after])
        body = assert_legacy_error(r, 400)
        for fragment in fragments:
            assert fragment in body["error"], (what, fragment, body["error"])
        assert items(srv) == [("a", "A", "1")], what
    # an unknown table inside an otherwise valid batch: the seed's own answer
    r = push(srv, [good_before, op("orders", "insert", id="o1"), good_after])
    assert r.status_code == 400 and r.json() == {"success": False, "error": "Invalid table"}
    for bad_body in ({}, {"operations": "x"}, {"operations": None}, {"operations": {}}):
        assert_legacy_error(srv.post("/sync/push", token=srv.admin_token, json=bad_body), 400)
    assert items(srv) == [("a", "A", "1")]
    assert head(srv) == h


def test_failure_inside_the_transaction_rolls_back_earlier_operations(make_server):
    schema = [ITEMS, "INSERT INTO items VALUES ('a', 'A', 1)",
              "CREATE TABLE skus (id TEXT PRIMARY KEY, sku TEXT UNIQUE)"]
    srv = make_server("--allowed-tables", "items,skus", "--purge-interval", "0", schema=schema)
    h = head(srv)

    # insert over an existing row with other values: 409, the earlier ops undone
    r = push(srv, [op("items", "insert", id="n1", name="N", qty=1),
                   op("items", "update", id="a", qty=5),
                   op("items", "insert", id="a", name="other", qty=1)])
    body = assert_legacy_error(r, 409)
    assert "'a'" in body["error"] and "items" in body["error"]
    assert items(srv) == [("a", "A", "1")]

    # the database's own constraint: the same sku twice
    r = push(srv, [op("items", "insert", id="n1", name="N", qty=1),
                   op("skus", "insert", id="s1", sku="X"),
                   op("skus", "insert", id="s2", sku="X")])
    assert_legacy_error(r, 409)
    assert items(srv) == [("a", "A", "1")]
    assert db_rows(srv, "SELECT id FROM skus") == []
    assert head(srv) == h

    # the same row inserted again with the same values: a no-op, nothing logged
    body = ok(push(srv, [op("items", "insert", id="a", name="A", qty=1),
                         op("items", "insert", id="a", name="A")]))
    assert body["cursor"] == h
    assert items(srv) == [("a", "A", "1")]
    assert head(srv) == h


def test_update_delete_upsert(make_server):
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS, "INSERT INTO items VALUES ('a', 'A', 1)"])
    h = head(srv)

    # cloud-sync-api: an update of a missing row and a delete of a missing row succeed, no-ops
    body = ok(push(srv, [op("items", "update", id="ghost", name="G", qty=1),
                         op("items", "delete", id="ghost2")]))
    assert body["cursor"] == h
    assert items(srv) == [("a", "A", "1")]

    # a partial update changes only the columns it names
    ok(push(srv, [op("items", "update", id="a", qty=2)]))
    assert items(srv) == [("a", "A", "2")]

    # upsert inserts a new row and overwrites an existing one (absent columns kept)
    ok(push(srv, [op("items", "upsert", id="b", name="B", qty=3),
                  op("items", "upsert", id="a", name="A2")]))
    assert items(srv) == [("a", "A2", "2"), ("b", "B", "3")]

    # delete; a deleted row updated again stays deleted (update is not upsert)
    ok(push(srv, [op("items", "delete", id="b"), op("items", "update", id="b", qty=9)]))
    assert items(srv) == [("a", "A2", "2")]
    body = ok(pull(srv, cursor=h))
    assert body["data"]["items"] == [{"id": "a", "name": "A2", "qty": 2}]
    assert body["deleted"]["items"] == ["b"]

    # insert, update, delete and insert again of one key in one batch
    ok(push(srv, [op("items", "insert", id="c", name="C", qty=1),
                  op("items", "update", id="c", qty=2),
                  op("items", "delete", id="c"),
                  op("items", "insert", id="c", name="C2", qty=3)]))
    assert items(srv) == [("a", "A2", "2"), ("c", "C2", "3")]

    # an empty batch is a success that changes nothing
    assert ok(push(srv, []))["cursor"] == head(srv)


def test_update_naming_only_the_key_is_a_no_op(make_server):
    """An update whose data holds just the primary key has nothing to set: a success
    that changes nothing, whether the row exists or not."""
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS, "INSERT INTO items VALUES ('a', 'A', 1)"])
    h = head(srv)
    for key in ("a", "ghost"):
        r = push(srv, [op("items", "update", id=key)])
        assert r.status_code == 200, (key, r.text)
        assert r.json()["success"] is True
    assert items(srv) == [("a", "A", "1")]
    assert head(srv) == h


def test_insert_without_a_not_null_column_is_a_400(make_server):
    """A row that leaves out a NOT NULL column (no default) cannot be stored: invalid
    input naming the table, row and column, not a conflict with the server's state."""
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS])
    for action in ("insert", "upsert"):
        r = push(srv, [op("items", action, id="b", qty=1)])
        body = assert_legacy_error(r, 400)
        for fragment in ("items", "'b'", "name"):
            assert fragment in body["error"], (action, body["error"])
    assert items(srv) == []


def test_max_batch(make_server):
    srv = make_server(*ITEMS_FLAGS, "--max-batch", "3", schema=[ITEMS])
    four = [op("items", "insert", id=f"i{n}", name="I") for n in range(4)]
    body = assert_legacy_error(push(srv, four), 413)
    assert "3" in body["error"]
    assert items(srv) == []
    ok(push(srv, four[:3]))
    assert [r[0] for r in items(srv)] == ["i0", "i1", "i2"]


def test_integer_primary_key(make_server):
    schema = ["CREATE TABLE counters (id INTEGER PRIMARY KEY, label TEXT, n INTEGER)"]
    srv = make_server("--allowed-tables", "counters", "--purge-interval", "0", schema=schema)
    ok(push(srv, [op("counters", "insert", id=1, label="one", n=1),
                  op("counters", "insert", id=2, label="two", n=2),
                  op("counters", "insert", id=3, label="three", n=3),
                  op("counters", "update", id=2, n=20),
                  op("counters", "delete", id=3),
                  op("counters", "insert", id=1, label="one", n=1)]))
    srv.db_exec("INSERT INTO counters (id, label, n) VALUES (10, 'ten', 10)")
    body = ok(pull(srv))
    assert body["data"]["counters"] == [
        {"id": 1, "label": "one", "n": 1}, {"id": 2, "label": "two", "n": 20},
        {"id": 10, "label": "ten", "n": 10}]
    assert body["deleted"]["counters"] == [3]
    assert [c["id"] for c in changes(srv)["changes"]] == [1, 2, 3, 10]
    for bad in ("1", 1.5, True):
        body = assert_legacy_error(push(srv, [op("counters", "upsert", id=bad, n=0)]), 400)
        assert "counters" in body["error"] and "id" in body["error"]
    assert_legacy_error(push(srv, [op("counters", "insert", id=1, label="uno")]), 409)
    assert db_rows(srv, "SELECT id, label, n FROM counters ORDER BY id") == \
        [("1", "one", "1"), ("2", "two", "20"), ("10", "ten", "10")]


def test_identifiers_are_quoted(make_server):
    """Table and column names that need quoting (spaces, capitals, reserved words)."""
    schema = ['CREATE TABLE "Line Items" ("Item ID" TEXT PRIMARY KEY, "order" INTEGER,'
              ' "Qty" INTEGER)']
    srv = make_server("--allowed-tables", "Line Items", "--purge-interval", "0", schema=schema)
    ok(push(srv, [op("Line Items", "insert", **{"Item ID": "a", "order": 1, "Qty": 2}),
                  op("Line Items", "insert", **{"Item ID": "b", "order": 2, "Qty": 3}),
                  op("Line Items", "update", **{"Item ID": "a", "Qty": 5}),
                  op("Line Items", "delete", **{"Item ID": "b"})]))
    srv.db_exec('INSERT INTO "Line Items" ("Item ID", "order", "Qty") VALUES (\'c\', 3, 1)')
    body = ok(pull(srv))
    assert body["data"] == {"Line Items": [{"Item ID": "a", "order": 1, "Qty": 5},
                                           {"Item ID": "c", "order": 3, "Qty": 1}]}
    assert body["deleted"] == {"Line Items": ["b"]}
    assert db_rows(srv, 'SELECT "Item ID", "Qty" FROM "Line Items" ORDER BY 1') == \
        [("a", "5"), ("c", "1")]


# --- declared types -------------------------------------------------------------------------


TYPED = ("CREATE TABLE typed (id TEXT PRIMARY KEY, d DATE, ts TIMESTAMP, b BOOLEAN, r REAL,"
         " n NUMERIC, j JSON, t TEXT, i INTEGER)")

GOOD_VALUES = {
    "d": ["2024-01-15", "2024-02-29"],
    "ts": ["2024-01-15T10:30:00Z", "2024-01-15 10:30:00", "2024-01-15T10:30:00.250+05:30"],
    "b": [True, False],
    "r": [1.5, 2, -0.25],
    "n": [12, 12.5, "12.50", "-3"],
    "j": [{"a": [1, 2]}, [1, "x"], "text", 5],
    "t": ["hello", ""],
    "i": [0, -7],
}

BAD_VALUES = {
    "d": ["15/01/2024", "2024-1-5", "2024-13-01", "2024-01-32", "yesterday", 20240115, True],
    "ts": ["2024-01-15T25:00:00Z", "2024-01-15X10:30", "now", 1705314600, False],
    "b": ["true", 1, 0, "yes"],
    "r": ["1.5", "abc", True, {"v": 1}],
    "n": ["abc", "", " 1", "1,5", True, [1]],
    "t": [5, 1.5, True, {"a": 1}, ["x"]],
    "i": ["5", 1.5, True, "abc"],
}


def test_declared_types_are_checked(make_server):
    srv = make_server("--allowed-tables", "typed", "--purge-interval", "0", schema=[TYPED])
    for col, values in GOOD_VALUES.items():
        for k, v in enumerate(values):
            r = push(srv, [op("typed", "insert", id=f"{col}{k}", **{col: v})])
            assert r.status_code == 200, (col, v, r.text)
    for col, values in BAD_VALUES.items():
        for v in values:
            r = push(srv, [op("typed", "insert", id="ok", t="fine"),
                           op("typed", "insert", id="bad", **{col: v})])
            body = assert_legacy_error(r, 400)
            for fragment in ("typed", "'bad'", f"'{col}'"):
                assert fragment in body["error"], (col, v, body["error"])
    assert db_rows(srv, "SELECT id FROM typed WHERE id IN ('ok', 'bad')") == []

    rows = {row["id"]: row for row in ok(pull(srv, tables=["typed"]))["data"]["typed"]}
    assert rows["d0"]["d"] == "2024-01-15"
    assert rows["ts0"]["ts"].startswith("2024-01-15T10:30:00")
    assert rows["b0"]["b"] is True and rows["b1"]["b"] is False
    assert rows["r0"]["r"] == 1.5 and rows["r1"]["r"] == 2 and rows["r2"]["r"] == -0.25
    assert float(rows["n1"]["n"]) == 12.5 and float(rows["n2"]["n"]) == 12.5
    assert rows["j0"]["j"] == {"a": [1, 2]} and rows["j1"]["j"] == [1, "x"]
    assert rows["j2"]["j"] == "text" and rows["j3"]["j"] == 5
    assert rows["t1"]["t"] == "" and rows["i1"]["i"] == -7
    assert rows["d0"]["b"] is None  # absent columns are null


IDENTICAL_RETRIES = [
    ("n", 12.5), ("n", "12.50"), ("n", 3), ("ts", "2024-01-15T10:30:00Z"),
    ("ts", "2024-01-15 10:30:00"), ("d", "2024-01-15"), ("j", {"b": 1, "a": [1, 2]}),
    ("r", 2), ("b", True), ("i", 5), ("t", "x"),
]

UNSTORABLE = [("d", "2023-02-29"), ("d", "2024-04-31"), ("ts", "2023-02-29T10:00:00Z"),
              ("n", "0x1A")]


def test_repeated_identical_insert_is_a_no_op_for_every_type(make_server):
    """A client that retries an insert (without a batch id) sends exactly the same data:
    whatever the column's type, that is a success that changes nothing, not a 409."""
    srv = make_server("--allowed-tables", "typed", "--purge-interval", "0", schema=[TYPED])
    wrong = []
    for k, (col, value) in enumerate(IDENTICAL_RETRIES):
        row = op("typed", "insert", id=f"x{k}", **{col: value})
        first = ok(push(srv, [row]))
        r = push(srv, [row])
        if r.status_code != 200 or r.json().get("cursor") != first["cursor"]:
            wrong.append((col, value, r.status_code, r.text))
    assert not wrong, "\n".join(map(repr, wrong))


def test_values_no_backend_can_store_are_refused(make_server):
    """The declared-type check is ferry's own and the same on both backends: a date that
    does not exist or a hexadecimal "number" is a 400 naming table, row and column, not
    stored on one backend and refused with the database's own words on the other."""
    srv = make_server("--allowed-tables", "typed", "--purge-interval", "0", schema=[TYPED])
    wrong = []
    for col, value in UNSTORABLE:
        r = push(srv, [op("typed", "insert", id="bad", **{col: value})])
        msg = r.json().get("error", "") if r.status_code == 400 else ""
        if r.status_code != 400 or not all(f in msg for f in ("typed", "'bad'", f"'{col}'")):
            wrong.append((col, value, r.status_code, r.text))
        srv.db_exec("DELETE FROM typed")
    assert not wrong, "\n".join(map(repr, wrong))


# --- start-up checks ------------------------------------------------------------------------


UNSYNCABLE_SCHEMA = [
    "CREATE TABLE nokey (a TEXT, b INTEGER)",
    "CREATE TABLE pair (a TEXT, b TEXT, v INTEGER, PRIMARY KEY (a, b))",
    "CREATE TABLE realkey (k REAL PRIMARY KEY, v TEXT)",
]

UNSYNCABLE = [
    # (what, flags, what stderr must name)
    ("no primary key", ["--allowed-tables", "items,nokey"], "nokey"),
    ("composite primary key", ["--allowed-tables", "pair"], "pair"),
    ("missing table", ["--allowed-tables", "items,missing_tbl"], "missing_tbl"),
    ("REAL primary key", ["--allowed-tables", "realkey"], "realkey"),
    ("ferry's own table", ["--allowed-tables", "ferry_changes"], "ferry_changes"),
    ("bad policy", ["--allowed-tables", "items", "--conflict-policy", "items=sometimes"],
     "items"),
    ("bad default policy", ["--allowed-tables", "items", "--default-conflict-policy", "often"],
     "default-conflict-policy"),
]


def test_start_refuses_tables_it_cannot_sync(make_server):
    """Each bad allowlist makes `ferry serve` exit non-zero naming the table, against the
    same database; afterwards a good allowlist starts normally."""
    srv = make_server(schema=[ITEMS] + UNSYNCABLE_SCHEMA, start=False)
    base = srv.command()[1:]
    for what, flags, mentions in UNSYNCABLE:
        # run to completion (run_ferry also fails on a sanitizer report)
        p = run_ferry(*base, *flags, env=srv.env, timeout=20)
        assert p.returncode != 0, (what, p.stdout + p.stderr)
        assert "listening" not in p.stdout, what
        assert mentions in p.stderr, (what, p.stderr)
    srv.args = list(ITEMS_FLAGS)
    srv.start()
    ok(push(srv, [op("items", "insert", id="a", name="A")]))
    assert [c["id"] for c in changes(srv)["changes"]] == ["a"]


def test_start_logs_each_synced_table(make_server):
    schema = [ITEMS, "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)",
              "CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER)"]
    srv = make_server("--allowed-tables", "items, notes,counters,items",
                      "--conflict-policy", "notes=merge,counters=manual",
                      "--default-conflict-policy", "skip", schema=schema)

    def syncing():
        out = []
        for line in srv.stderr().splitlines():
            if line.startswith("{") and '"syncing table"' in line:
                out.append(json.loads(line))
        return out

    lines = syncing()
    assert [(l["table"], l["primaryKey"], l["policy"]) for l in lines] == [
        ("items", "id", "skip"), ("notes", "id", "merge"), ("counters", "id", "manual")]
    assert all(l["level"] == "info" for l in lines)
    assert ok(srv.get("/sync/status", token=srv.admin_token))["allowed_tables"] == \
        ["items", "notes", "counters"]
    srv.restart()
    assert len(syncing()) == 6


# --- tombstones and resync ------------------------------------------------------------------


def seed_rows(srv, n=4):
    ok(push(srv, [op("items", "insert", id=f"i{k}", name="I", qty=k) for k in range(1, n + 1)]))


def purge(srv):
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"tombstones_purged", "batches_purged", "conflicts_purged", "horizon",
                         "uploads_expired", "blobs_collected"}, body
    return body


def tombstones(srv):
    return db_rows(srv, "SELECT pk FROM ferry_changes WHERE deleted = 1 ORDER BY pk")


def ack(srv, device_token, cursor):
    r = srv.post("/api/v1/sync/ack", token=device_token, json={"cursor": cursor})
    assert r.status_code == 200, r.text
    return r.json()


def test_purge_after_every_device_acknowledged(make_server):
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS])
    user = srv.create_token(role="user", name="u")["token"]
    dev_id, dev = register_device(srv, user, "d1")
    seed_rows(srv)
    ok(push(srv, [op("items", "delete", id="i1"), op("items", "delete", id="i2")]))
    h = head(srv)
    assert h == 6 and tombstones(srv) == [("i1",), ("i2",)]

    assert ack(srv, dev, h) == {"deviceId": dev_id, "cursor": h}
    body = purge(srv)
    assert body["tombstones_purged"] == 2 and body["horizon"] == h
    assert tombstones(srv) == []
    assert db_rows(srv, "SELECT pk FROM ferry_changes WHERE tbl <> '' ORDER BY pk") == [("i3",), ("i4",)]

    # a cursor older than the horizon must start over; 0 and the horizon itself are fine
    for old in (1, h - 1):
        body = assert_v1_error(srv.get(CHANGES, token=dev, params={"cursor": str(old)}),
                               410, "GONE")
        assert "resync" in body["details"].lower()
        body = assert_legacy_error(pull(srv, cursor=old), 410)
        assert "resync" in body["error"].lower()
    feed = changes(srv, 0)
    assert [(c["id"], c["deleted"]) for c in feed["changes"]] == [("i3", False), ("i4", False)]
    assert feed["cursor"] == h
    assert changes(srv, h, token=dev)["changes"] == []
    assert ok(pull(srv, cursor=0))["data"]["items"] == [
        {"id": "i3", "name": "I", "qty": 3}, {"id": "i4", "name": "I", "qty": 4}]

    # a second purge finds nothing and keeps the horizon
    assert purge(srv)["tombstones_purged"] == 0
    assert purge(srv)["horizon"] == h

    # a purged key can come back; devices see it as new
    ok(push(srv, [op("items", "insert", id="i1", name="again", qty=1)]))
    (c,) = changes(srv, h)["changes"]
    assert (c["id"], c["version"], c["deleted"]) == ("i1", 1, False)


def test_tombstone_not_acknowledged_by_an_active_device_is_kept(make_server):
    srv = make_server(*ITEMS_FLAGS, schema=[ITEMS])
    user = srv.create_token(role="user", name="u")["token"]
    _, d1 = register_device(srv, user, "d1")
    _, d2 = register_device(srv, user, "d2")
    seed_rows(srv)
    ok(push(srv, [op("items", "delete", id="i1")]))
    h1 = head(srv)

    ack(srv, d1, h1)  # d2 has acknowledged nothing
    body = purge(srv)
    assert body["tombstones_purged"] == 0 and body["horizon"] == 0
    assert tombstones(srv) == [("i1",)]
    assert [c["id"] for c in changes(srv, 1, token=d2)["changes"]] == ["i2", "i3", "i4", "i1"]

    ack(srv, d2, h1)
    ok(push(srv, [op("items", "delete", id="i2")]))  # after both acks
    body = purge(srv)
    assert body["tombstones_purged"] == 1 and body["horizon"] == h1
    assert tombstones(srv) == [("i2",)]
    # the newer tombstone is still delivered to a device at h1
    feed = changes(srv, h1, token=d2, includeOwn="true")
    assert [(c["id"], c["deleted"]) for c in feed["changes"]] == [("i2", True)]
    assert ack(srv, d1, h1 - 5)["cursor"] == h1  # acks never move back


def test_retention_purges_tombstones_nobody_acknowledged(make_server):
    srv = make_server(*ITEMS_FLAGS, "--tombstone-retention", "0", schema=[ITEMS])
    user = srv.create_token(role="user", name="u")["token"]
    register_device(srv, user, "never-acks")
    seed_rows(srv, 2)
    ok(push(srv, [op("items", "delete", id="i1")]))
    time.sleep(0.05)  # retention 0: anything older than now
    body = purge(srv)
    assert body["tombstones_purged"] == 1 and body["horizon"] == head(srv)
    assert tombstones(srv) == []
