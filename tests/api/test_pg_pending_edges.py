"""Edges of the PostgreSQL write path without a global lock (capture triggers number
changes as they write them, readers stop at a safe head; sync/settle.h) found by
attacking it:

- a row that another program moves out of its owner's scope and back within one
  transaction reaches its owner's devices as the row, not as a delete: the exit left by
  the first move and the row's return must not share a seq with the delete read last;
- TRUNCATE by another program (CASCADE included) leaves every device as deletes of the
  rows it removed."""

import os
import sqlite3

import pytest

from devsync import Client, op

SCHEMA = ["CREATE TABLE orders (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, item TEXT)"]


def start(make_server, tables="orders", schema=()):
    return make_server("--allowed-tables", tables, "--rate-limit", "0",
                       schema=SCHEMA + list(schema),
                       env={"FERRY_SYNC_RULES": "orders=owner:user_id"})


def device(srv, user_id, name):
    tok = srv.create_token(role="user", user_id=user_id)["token"]
    return Client(srv, tok).register(name)


def one_transaction(srv, *statements):
    """Runs the statements in one transaction of another program."""
    if srv.backend == "postgres":
        srv.db_exec("BEGIN; " + "; ".join(statements) + "; COMMIT;")
        return
    con = sqlite3.connect(os.path.join(srv.data_dir, "ferry.db"), timeout=10)
    try:
        con.executescript("BEGIN; " + "; ".join(statements) + "; COMMIT;")
    finally:
        con.close()


def final_rows(client, cursor):
    """{id: data or None} as a device that applies the feed in order ends up with."""
    changes, _ = client.pull_all(cursor=cursor, includeOwn="true")
    out = {}
    for ch in changes:
        out[ch["id"]] = None if ch["deleted"] else ch["data"]
    return out, changes


def test_row_moved_out_and_back_in_one_transaction_stays_with_its_owner(make_server):
    srv = start(make_server)
    phone, laptop = device(srv, "anna", "phone"), device(srv, "anna", "laptop")
    phone.report([op("orders", "insert", {"id": f"r{i}", "item": "cup"}) for i in range(6)])
    _, cursor = laptop.pull_all(cursor=0, includeOwn="true")

    # another program gives the rows to bob and back to anna, in one transaction
    one_transaction(srv, "UPDATE orders SET user_id = 'bob', item = 'bowl'",
                    "UPDATE orders SET user_id = 'anna'")

    got, changes = final_rows(laptop, cursor)
    assert set(got) == {f"r{i}" for i in range(6)}, changes
    for key, data in got.items():
        assert data is not None and data["item"] == "bowl", (key, changes)
    # no delete for a row that is in anna's scope at the seq of its return
    live = {ch["seq"] for ch in changes if not ch["deleted"]}
    assert not [ch for ch in changes if ch["deleted"] and ch["seq"] in live], changes


@pytest.mark.postgres_only
def test_truncate_by_another_program_reaches_devices_as_deletes(make_server):
    srv = start(make_server, "orders,notes", ["CREATE TABLE notes (id TEXT PRIMARY KEY,"
                                              " order_id TEXT REFERENCES orders(id), body TEXT)"])
    phone, laptop = device(srv, "anna", "phone"), device(srv, "anna", "laptop")
    phone.report([op("orders", "insert", {"id": f"t{i}", "item": "cup"}) for i in range(4)])
    phone.report([op("notes", "insert", {"id": "n1", "order_id": "t1", "body": "x"})])
    _, cursor = laptop.pull_all(cursor=0, includeOwn="true")

    # CASCADE empties notes too, with its own trigger
    srv.db_exec("TRUNCATE orders CASCADE")
    got, changes = final_rows(laptop, cursor)
    assert got == {**{f"t{i}": None for i in range(4)}, "n1": None}, changes

    # and the keys made again afterwards arrive as rows
    phone.report([op("orders", "insert", {"id": "t1", "item": "jug"})])
    got, _ = final_rows(laptop, cursor)
    assert got["t1"]["item"] == "jug"
