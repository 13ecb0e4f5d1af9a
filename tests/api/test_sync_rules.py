"""Sync rules (docs/sync-rules.md): per table, who reads and writes which rows. Two users,
anna and bob, each with two devices, on both backends: neither sees, changes, deletes or
resolves the other's rows on any surface (Pinakes changes and report, cloud-sync-api pull
and push, conflicts); shared tables reach both; a row moved between owners, through ferry
and straight in the database, leaves one user's devices as a delete and reaches the
other's whole; a rule change sends each device back to cursor 0 exactly once; claim rules
work with JWT claims and with ferry token attributes; read-only tables refuse device
writes while admins write."""

import threading
import time

from conftest import assert_legacy_error, assert_v1_error, make_jwt, run_ferry
from devsync import Client, op

SCHEMA = [
    "CREATE TABLE orders (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, item TEXT,"
    " qty INTEGER)",
    "CREATE TABLE catalog (id TEXT PRIMARY KEY, name TEXT)",
    "CREATE TABLE docs (id INTEGER PRIMARY KEY, tenant TEXT, body TEXT)",
    "CREATE TABLE prices (id TEXT PRIMARY KEY, price INTEGER)",
]
TABLES = "orders,catalog,docs,prices"
RULES = "orders=owner:user_id,catalog=shared,docs=claim:tenant_id:tenant,prices=read-only"
SECRET = "rules-secret-0123456789abcdef0123456789"


def start(make_server, *extra, rules=RULES):
    """A server syncing the four tables, with the rules given through FERRY_SYNC_RULES."""
    return make_server("--allowed-tables", TABLES, "--conflict-policy", "orders=manual", *extra,
                       schema=list(SCHEMA), env={"FERRY_SYNC_RULES": rules})


def user_client(srv, user_id, **extra):
    tok = srv.create_token(role="user", user_id=user_id, **extra)["token"]
    return Client(srv, tok)


def two_users(srv):
    """anna and bob, each a user client and two device clients."""
    out = {}
    for name in ("anna", "bob"):
        u = user_client(srv, name)
        out[name] = (u, u.register(f"{name}-phone"), u.register(f"{name}-laptop"))
    return out


def rows_of(changes, table):
    """{id: data or None (deleted)} of the table's changes, in order (the last wins)."""
    out = {}
    for ch in changes:
        if ch["table"] == table:
            out[ch["id"]] = None if ch["deleted"] else ch["data"]
    return out


def feed(client, cursor=0):
    return client.pull_all(cursor=cursor, includeOwn="true")


def test_each_user_sees_and_changes_only_own_rows(make_server):
    srv = start(make_server)
    users = two_users(srv)
    anna, anna_phone, anna_laptop = users["anna"]
    bob, bob_phone, bob_laptop = users["bob"]

    # an insert without the owner column is filled with the caller's user id
    anna_phone.report([op("orders", "insert", {"id": "a1", "item": "tea", "qty": 1}),
                       op("orders", "insert", {"id": "a2", "item": "milk", "user_id": "anna"})])
    bob_phone.report([op("orders", "insert", {"id": "b1", "item": "coffee"})])
    assert srv.db_query("SELECT id, user_id FROM orders ORDER BY id") == [
        ["a1", "anna"], ["a2", "anna"], ["b1", "bob"]]

    # a shared table reaches both
    srv.post("/sync/push", token=srv.admin_token, json={"operations": [
        {"table": "catalog", "action": "insert", "data": {"id": "c1", "name": "tea"}}]})

    for client, own in ((anna_laptop, {"a1", "a2"}), (anna, {"a1", "a2"}),
                        (bob_laptop, {"b1"}), (bob, {"b1"})):
        changes, _ = feed(client)
        assert set(rows_of(changes, "orders")) == own
        assert set(rows_of(changes, "catalog")) == {"c1"}

    # the legacy pull is narrowed the same way
    r = srv.post("/sync/pull", token=bob.token, json={"tables": ["orders", "catalog"]})
    assert r.status_code == 200, r.text
    assert [row["id"] for row in r.json()["data"]["orders"]] == ["b1"]
    assert [row["id"] for row in r.json()["data"]["catalog"]] == ["c1"]

    # bob can neither change, delete nor take anna's rows, on any surface; nothing of
    # the batch is applied
    before = srv.db_query("SELECT id, user_id, item FROM orders ORDER BY id")
    for operations in ([op("orders", "update", {"id": "a1", "item": "stolen"})],
                       [op("orders", "delete", {"id": "a1"})],
                       [op("orders", "upsert", {"id": "a2", "item": "mine"})],
                       [op("orders", "insert", {"id": "b9", "item": "x"}),
                        op("orders", "insert", {"id": "a1", "item": "tea", "qty": 1,
                                                 "user_id": "anna"})],
                       [op("orders", "insert", {"id": "b2", "item": "gift", "user_id": "anna"})]):
        r = bob_phone.post("/report", json={"operations": operations})
        assert_v1_error(r, 403, "FORBIDDEN")
        r = srv.post("/sync/push", token=bob.token, json={"operations": operations})
        assert_legacy_error(r, 403)
        assert "another user" in r.json()["error"]
    assert srv.db_query("SELECT id, user_id, item FROM orders ORDER BY id") == before

    # admins see and change every row
    r = srv.post("/sync/pull", token=srv.admin_token, json={"tables": ["orders"]})
    assert sorted(row["id"] for row in r.json()["data"]["orders"]) == ["a1", "a2", "b1"]

    # each user's own writes still work, from each device
    anna_laptop.report([op("orders", "update", {"id": "a1", "qty": 5}),
                        op("orders", "delete", {"id": "a2"})])
    got = rows_of(feed(anna_phone)[0], "orders")
    assert set(got) == {"a1", "a2"} and got["a2"] is None and got["a1"]["qty"] == 5
    changes, cursor = feed(bob_phone)
    assert set(rows_of(changes, "orders")) == {"b1"}
    # acks carry no rows: a device acknowledges the cursor its narrowed feed gave it
    r = bob_phone.post("/ack", json={"cursor": cursor})
    assert r.status_code == 200 and r.json()["cursor"] == cursor
    assert_v1_error(bob.post("/ack", json={"cursor": cursor, "deviceId": anna_phone.device_id}),
                    403, "FORBIDDEN")


def test_moving_a_row_between_owners_is_a_delete_and_an_insert(make_server):
    srv = start(make_server)
    users = two_users(srv)
    anna, anna_phone, anna_laptop = users["anna"]
    bob, bob_phone, bob_laptop = users["bob"]
    anna_phone.report([op("orders", "insert", {"id": "m1", "item": "desk"}),
                       op("orders", "insert", {"id": "m2", "item": "lamp"})])
    _, anna_cursor = feed(anna_laptop)
    _, bob_cursor = feed(bob_laptop)

    # anna cannot give her row away
    r = anna_phone.post("/report", json={"operations": [
        op("orders", "update", {"id": "m1", "user_id": "bob"})]})
    assert_v1_error(r, 403, "FORBIDDEN")

    # an admin moves m1 through ferry, another program moves m2 straight in the database
    r = srv.post("/sync/push", token=srv.admin_token, json={"operations": [
        {"table": "orders", "action": "update", "data": {"id": "m1", "user_id": "bob"}}]})
    assert r.status_code == 200, r.text
    srv.db_exec("UPDATE orders SET user_id = 'bob', qty = 7 WHERE id = 'm2'")

    for device in (anna_phone, anna_laptop):
        changes, _ = feed(device, anna_cursor)
        assert rows_of(changes, "orders") == {"m1": None, "m2": None}
        assert all(ch["op"] == "delete" and ch["data"] is None for ch in changes)
    for device in (bob_phone, bob_laptop):
        changes, _ = feed(device, bob_cursor)
        got = rows_of(changes, "orders")
        assert set(got) == {"m1", "m2"}
        assert got["m1"]["item"] == "desk" and got["m1"]["user_id"] == "bob"
        assert got["m2"]["qty"] == 7

    # and back to anna, straight in the database: whole again for her, gone for bob
    _, anna_cursor = feed(anna_laptop)
    _, bob_cursor = feed(bob_laptop)
    srv.db_exec("UPDATE orders SET user_id = 'anna' WHERE id = 'm2'")
    changes, _ = feed(anna_phone, anna_cursor)
    assert rows_of(changes, "orders") == {"m2": changes[0]["data"]}
    assert changes[0]["data"]["user_id"] == "anna"
    changes, _ = feed(bob_phone, bob_cursor)
    assert rows_of(changes, "orders") == {"m2": None}

    # a row deleted by another program leaves its owner's devices as a delete
    _, bob_cursor = feed(bob_laptop)
    srv.db_exec("DELETE FROM orders WHERE id = 'm1'")
    changes, _ = feed(bob_phone, bob_cursor)
    assert rows_of(changes, "orders") == {"m1": None}
    changes, _ = feed(anna_phone, anna_cursor)
    assert "m1" not in rows_of(changes, "orders")

    # anna deletes her row and bob makes the key again before anna's laptop pulls: the
    # laptop still receives the delete, bob's devices the new row
    _, anna_cursor = feed(anna_laptop)
    _, bob_cursor = feed(bob_laptop)
    anna_phone.report([op("orders", "insert", {"id": "k1", "item": "cup"})])
    anna_phone.report([op("orders", "delete", {"id": "k1"})])
    _, middle = feed(anna_phone)
    bob_phone.report([op("orders", "insert", {"id": "k1", "item": "bowl"})])
    assert rows_of(feed(anna_laptop, anna_cursor)[0], "orders") == {"k1": None}
    # (a device that already has the delete may get it again: applying it changes nothing)
    assert rows_of(feed(anna_laptop, middle)[0], "orders") in ({}, {"k1": None})
    got = rows_of(feed(bob_laptop, bob_cursor)[0], "orders")
    assert got["k1"]["item"] == "bowl" and got["k1"]["user_id"] == "bob"


def test_long_poll_wakes_only_for_own_rows(make_server):
    srv = start(make_server)
    users = two_users(srv)
    _, anna_phone, _ = users["anna"]
    _, bob_phone, bob_laptop = users["bob"]
    _, cursor = feed(bob_laptop)
    started = time.monotonic()
    result = {}

    def wait():
        result["page"] = bob_laptop.changes(cursor=cursor, wait=3)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    anna_phone.report([op("orders", "insert", {"id": "x1", "item": "a"})])
    time.sleep(0.5)
    bob_phone.report([op("orders", "insert", {"id": "y1", "item": "b"})])
    t.join()
    assert [c["id"] for c in result["page"]["changes"]] == ["y1"]
    assert time.monotonic() - started < 3


def test_conflicts_stay_with_their_rows_owner(make_server):
    srv = start(make_server)
    users = two_users(srv)
    anna, anna_phone, anna_laptop = users["anna"]
    bob, bob_phone, _ = users["bob"]
    anna_phone.report([op("orders", "insert", {"id": "c1", "item": "tea", "qty": 1})])
    anna_laptop.report([op("orders", "update", {"id": "c1", "qty": 2})])
    body = anna_phone.report([op("orders", "update", {"id": "c1", "qty": 3}, base=1)])
    assert len(body["conflicts"]) == 1
    cid = body["conflicts"][0]["id"]

    assert bob.get("/conflicts").json()["conflicts"] == []
    assert_v1_error(bob.post(f"/conflicts/{cid}/resolve", json={"resolution": "take_client"}),
                    403, "FORBIDDEN")
    assert [c["id"] for c in anna.get("/conflicts").json()["conflicts"]] == [cid]

    # once the row is bob's, anna neither lists nor resolves its conflict
    srv.db_exec("UPDATE orders SET user_id = 'bob' WHERE id = 'c1'")
    assert anna.get("/conflicts").json()["conflicts"] == []
    r = anna.post(f"/conflicts/{cid}/resolve", json={"resolution": "take_client"})
    assert_v1_error(r, 403, "FORBIDDEN")
    assert srv.db_query("SELECT user_id, qty FROM orders WHERE id = 'c1'") == [["bob", "2"]]
    srv.db_exec("UPDATE orders SET user_id = 'anna' WHERE id = 'c1'")
    r = anna.post(f"/conflicts/{cid}/resolve", json={"resolution": "take_client"})
    assert r.status_code == 200, r.text
    assert srv.db_query("SELECT user_id, qty FROM orders WHERE id = 'c1'") == [["anna", "3"]]


def test_read_only_refuses_devices_and_admins_write(make_server):
    srv = start(make_server)
    users = two_users(srv)
    anna, anna_phone, _ = users["anna"]
    r = anna_phone.post("/report", json={"operations": [
        op("prices", "insert", {"id": "p1", "price": 3})]})
    assert_v1_error(r, 403, "FORBIDDEN")
    assert "read-only" in r.json()["details"]
    assert_legacy_error(srv.post("/sync/push", token=anna.token, json={"operations": [
        op("prices", "insert", {"id": "p1", "price": 3})]}), 403)
    r = srv.post("/sync/push", token=srv.admin_token, json={"operations": [
        op("prices", "insert", {"id": "p1", "price": 3})]})
    assert r.status_code == 200, r.text
    srv.db_exec("INSERT INTO prices (id, price) VALUES ('p2', 4)")
    changes, _ = feed(anna_phone)
    assert set(rows_of(changes, "prices")) == {"p1", "p2"}


def test_claim_rule_with_jwt_and_token_attributes(make_server):
    srv = start(make_server, "--jwt-secret", SECRET)
    acme_jwt = Client(srv, make_jwt({"sub": "carol", "tenant_id": "acme",
                                     "exp": int(time.time()) + 600}, SECRET))
    acme_tok = user_client(srv, "dave", attrs={"tenant_id": "acme"})
    other = user_client(srv, "erin", attrs={"tenant_id": "globex"})
    none = user_client(srv, "fred")

    acme_jwt.report([op("docs", "insert", {"id": 1, "body": "plan"})],
                    deviceId=acme_jwt.register("carol-phone").device_id)
    dave_dev = acme_tok.register("dave-phone")
    dave_dev.report([op("docs", "insert", {"id": 2, "body": "memo"})])
    other.register("erin-phone").report([op("docs", "insert", {"id": 3, "body": "x"})])
    assert srv.db_query("SELECT id, tenant FROM docs ORDER BY id") == [
        ["1", "acme"], ["2", "acme"], ["3", "globex"]]

    assert set(rows_of(feed(acme_jwt)[0], "docs")) == {1, 2}
    assert set(rows_of(feed(dave_dev)[0], "docs")) == {1, 2}
    assert set(rows_of(feed(other)[0], "docs")) == {3}
    assert rows_of(feed(none)[0], "docs") == {}
    r = none.post("/report", json={"operations": [op("docs", "insert", {"id": 4})],
                                   "deviceId": none.register("fred-phone").device_id})
    assert_v1_error(r, 403, "FORBIDDEN")
    assert "tenant_id" in r.json()["details"]
    # a colleague of the same tenant may change the tenant's rows; another tenant may not
    dave_dev.report([op("docs", "update", {"id": 1, "body": "plan v2"})])
    r = other.post("/report", json={"operations": [op("docs", "delete", {"id": 1})],
                                    "deviceId": other.register("erin-2").device_id})
    assert_v1_error(r, 403, "FORBIDDEN")


def test_token_attributes_in_cli_and_admin_api(make_server):
    srv = start(make_server)
    tok = srv.create_token(role="user", user_id="gina", attrs={"tenant_id": "acme", "n": 7})
    assert tok["attrs"] == {"tenant_id": "acme", "n": 7}
    r = srv.get(f"/api/v1/admin/tokens/{tok['id']}", token=srv.admin_token)
    assert r.json()["attrs"] == {"tenant_id": "acme", "n": 7}
    assert srv.create_token(role="user", user_id="g")["attrs"] == {}
    for bad in ({"tenant_id": {"x": 1}}, ["a"], {"": "x"}, {"t": "x" * 1100}):
        r = srv.post("/api/v1/admin/tokens", token=srv.admin_token,
                     json={"name": "t", "role": "user", "user_id": "g", "attrs": bad})
        assert_v1_error(r, 400, "INVALID_REQUEST")

    # ferry token create --attr, straight in the database
    where = ["--data-dir", srv.data_dir] + (["--db", srv.db_url] if srv.db_url else [])
    p = run_ferry("token", "create", "--role", "user", "--name", "cli", "--user", "hal",
                  "--attr", "tenant_id=globex", "--attr", "team=x=y", *where)
    assert p.returncode == 0, p.stderr
    hal = Client(srv, p.stdout.strip())
    listed = [t for t in srv.get("/api/v1/admin/tokens", token=srv.admin_token).json()["tokens"]
              if t["user_id"] == "hal"]
    assert listed[0]["attrs"] == {"tenant_id": "globex", "team": "x=y"}
    srv.db_exec("INSERT INTO docs (id, tenant, body) VALUES (10, 'globex', 'g'),"
                " (11, 'acme', 'a')")
    assert set(rows_of(feed(hal)[0], "docs")) == {10}
    p = run_ferry("token", "create", "--role", "user", "--name", "bad", "--user", "hal",
                  "--attr", "novalue", *where)
    assert p.returncode == 2 and "NAME=VALUE" in p.stderr


def test_changed_token_attributes_resync_its_devices_once(make_server):
    srv = start(make_server)
    tok = srv.create_token(role="user", user_id="ivy", attrs={"tenant_id": "acme"})
    ivy = Client(srv, tok["token"])
    phone = ivy.register("ivy-phone")
    srv.db_exec("INSERT INTO docs (id, tenant, body) VALUES (1, 'acme', 'a'),"
                " (2, 'globex', 'g')")
    changes, cursor = feed(phone)
    assert set(rows_of(changes, "docs")) == {1}
    device_token = [t for t in srv.get("/api/v1/admin/tokens", token=srv.admin_token)
                    .json()["tokens"] if t["device_id"] == phone.device_id][0]
    assert device_token["attrs"] == {"tenant_id": "acme"}

    # the same attributes again change nothing
    r = srv.request("PATCH", f"/api/v1/admin/tokens/{device_token['id']}",
                    token=srv.admin_token, json={"attrs": {"tenant_id": "acme"}})
    assert r.status_code == 200, r.text
    assert phone.changes(cursor=cursor)["changes"] == []
    r = srv.request("PATCH", f"/api/v1/admin/tokens/{device_token['id']}",
                    token=srv.admin_token, json={"attrs": {"tenant_id": "globex"}})
    assert r.status_code == 200 and r.json()["attrs"] == {"tenant_id": "globex"}
    r = phone.get("/changes", params={"cursor": cursor})
    assert r.status_code == 410 and "resync" in r.json()["details"]
    changes, cursor = feed(phone)
    assert set(rows_of(changes, "docs")) == {2}
    assert phone.changes(cursor=cursor)["changes"] == []
    for bad in ({}, {"attrs": "x"}):
        r = srv.request("PATCH", f"/api/v1/admin/tokens/{device_token['id']}",
                        token=srv.admin_token, json=bad)
        assert_v1_error(r, 400, "INVALID_REQUEST")
    assert_v1_error(srv.request("PATCH", "/api/v1/admin/tokens/tok_nope", token=srv.admin_token,
                                json={"attrs": {}}), 404, "NOT_FOUND")


def test_rule_change_forces_exactly_one_resync(make_server):
    srv = start(make_server, rules="catalog=shared")
    users = two_users(srv)
    _, anna_phone, anna_laptop = users["anna"]
    anna_phone.report([op("orders", "insert", {"id": "r1", "item": "a", "user_id": "anna"})])
    srv.db_exec("INSERT INTO orders (id, user_id, item) VALUES ('r2', 'bob', 'b')")
    _, cursor = feed(anna_laptop)
    _, phone_cursor = feed(anna_phone)

    srv.stop()
    srv.env = dict(srv.env or {}, FERRY_SYNC_RULES=RULES)
    srv.start()
    # the next read from the old cursor is 410, once; from 0 the device gets its rows only
    r = anna_laptop.get("/changes", params={"cursor": cursor})
    assert r.status_code == 410, r.text
    assert "resync" in r.json()["details"]
    changes, new_cursor = anna_laptop.pull_all(cursor=0, limit=1, includeOwn="true")
    assert set(rows_of(changes, "orders")) == {"r1"}
    assert anna_laptop.changes(cursor=new_cursor)["changes"] == []
    # restarting with the same rules asks for nothing more
    srv.stop()
    srv.start()
    assert anna_laptop.changes(cursor=new_cursor)["changes"] == []
    r = anna_phone.get("/changes", params={"cursor": phone_cursor})
    assert r.status_code == 410
    assert anna_phone.changes(cursor=0)["cursor"] >= new_cursor


def test_unknown_table_or_column_in_a_rule_stops_start_up(make_server):
    srv = make_server("--allowed-tables", TABLES, schema=list(SCHEMA), start=False)
    base = srv.command()[1:]
    for rules, words in (("nope=shared", "nope"), ("orders=owner:nobody", "nobody"),
                         ("orders=owner", "orders"), ("orders=sometimes", "sometimes"),
                         ("files=shared", "files"), ("orders=shared,orders=owner:id", "two")):
        p = run_ferry(*base, "--sync-rule", rules, timeout=20)
        assert p.returncode != 0, (rules, p.stdout + p.stderr)
        assert "listening" not in p.stdout, rules
        assert words in p.stderr, (rules, p.stderr)
    # repeated flags add up; the config file has the key too
    srv.args += ["--sync-rule", "orders=owner:user_id", "--sync-rule", "catalog=shared"]
    srv.start()
    assert srv.db_query("SELECT tbl, rule FROM ferry_synced WHERE tbl IN ('orders', 'catalog')"
                        " ORDER BY tbl") == [["catalog", "shared"], ["orders", "owner:user_id"]]
