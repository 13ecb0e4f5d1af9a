"""Edges of the engine behind the v1 APIs, on SQLite and PostgreSQL: a token's table list
(an empty list is refused), device tokens made directly (admin API, `ferry token create`)
registering their device, a table-limited credential's view of conflicts, the purge with
no active device (retention only, old resolved conflicts cleared), capture triggers
dropped by hand and put back at start, and seqs never handed out twice after a purge
removed the newest change."""

import time

from conftest import assert_legacy_error, assert_v1_error, run_ferry
from test_engine import changes, head

TOKENS = "/api/v1/admin/tokens"
PURGE = "/api/v1/admin/purge"
DEVICES = "/api/v1/sync/devices"
CHANGES = "/api/v1/sync/changes"
ACK = "/api/v1/sync/ack"
REPORT = "/api/v1/sync/report"
CONFLICTS = "/api/v1/sync/conflicts"

NOTES = "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, n INTEGER)"
NOTES_FLAGS = ("--allowed-tables", "notes", "--purge-interval", "0")


# --- helpers --------------------------------------------------------------------------------


def legacy_push(srv, operations):
    r = srv.post("/sync/push", token=srv.admin_token, json={"operations": operations})
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True, r.text
    return r.json()


def lop(table, action, **data):
    return {"table": table, "action": action, "data": data}


def vop(table, action, data, base=None):
    o = {"table": table, "action": action, "data": data}
    if base is not None:
        o["base_version"] = base
    return o


def report(srv, token, operations):
    r = srv.post(REPORT, token=token, json={"operations": operations})
    assert r.status_code == 200, r.text
    return r.json()


def register(srv, user_token, name):
    r = srv.post(DEVICES, token=user_token, json={"name": name})
    assert r.status_code == 200, r.text
    return r.json()["id"], r.json()["token"]


def devices_of(srv, token, **params):
    r = srv.get(DEVICES, token=token, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totalCount"] == len(body["devices"])
    return {d["id"]: d for d in body["devices"]}


def conflict_ids(srv, token, status="open"):
    r = srv.get(CONFLICTS, token=token, params={"status": status})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totalCount"] == len(body["conflicts"]), body
    return sorted((c["table"], c["id"]) for c in body["conflicts"])


def purge(srv):
    r = srv.post(PURGE, token=srv.admin_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"tombstones_purged", "batches_purged", "conflicts_purged", "horizon",
                         "uploads_expired", "blobs_collected"}, body
    return body


def tombstones(srv, table="notes"):
    return sorted(r[0] for r in srv.db_query(
        f"SELECT pk FROM ferry_changes WHERE tbl = '{table}' AND deleted = 1"))


def token_count(srv):
    return int(srv.db_query("SELECT COUNT(*) FROM ferry_tokens")[0][0])


def store_args(srv):
    args = ["--data-dir", srv.data_dir]
    if srv.db_url:
        args += ["--db", srv.db_url]
    return args


# --- 1. a token's table list ----------------------------------------------------------------


def test_token_table_list_empty_is_refused(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    before = token_count(srv)
    for role, extra in (("user", {"userId": "alice"}),
                        ("device", {"userId": "alice", "deviceId": "dev-empty"})):
        r = srv.post(TOKENS, token=srv.admin_token,
                     json={"name": "t", "role": role, "tables": [], **extra})
        body = assert_v1_error(r, 400, "INVALID_REQUEST")
        assert "tables" in body["message"] + body["details"], body
    assert token_count(srv) == before
    # the refused device token registered no device
    assert srv.db_query("SELECT id FROM ferry_devices WHERE id = 'dev-empty'") == []

    tok = srv.create_token(role="user", user_id="alice", tables=["notes"])
    assert tok["tables"] == ["notes"]
    assert tok["token"].startswith("fy_")
    r = srv.get(f"{TOKENS}/{tok['id']}", token=srv.admin_token)
    assert r.status_code == 200 and r.json()["tables"] == ["notes"], r.text
    # and the token works, on its table
    assert changes(srv, token=tok["token"])["changes"] == []
    # leaving the list out means every table
    assert srv.create_token(role="user", user_id="alice")["tables"] is None


# --- 2. device tokens made directly register their device ---------------------------------


def test_device_token_from_admin_api_registers_the_device(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    carol = srv.create_token(role="user", user_id="carol")["token"]
    assert devices_of(srv, carol) == {}

    made = srv.create_token(role="device", name="till", user_id="carol", device_id="till-1")
    assert made["token"].startswith("fyd_") and made["device_id"] == "till-1"
    dev = made["token"]

    # the device is listed for its user, for the admin, and for itself
    mine = devices_of(srv, carol)
    assert list(mine) == ["till-1"]
    assert mine["till-1"]["userId"] == "carol" and mine["till-1"]["cursor"] == 0
    assert "till-1" in devices_of(srv, srv.admin_token)
    assert list(devices_of(srv, srv.admin_token, userId="carol")) == ["till-1"]
    assert list(devices_of(srv, dev)) == ["till-1"]
    r = srv.get(f"{DEVICES}/till-1", token=carol)
    assert r.status_code == 200 and r.json()["id"] == "till-1", r.text

    # it acknowledges like a registered device, and its cursor moves
    legacy_push(srv, [lop("notes", "insert", id="n1", title="one"),
                      lop("notes", "insert", id="n2", title="two")])
    h = head(srv)
    assert h >= 2
    r = srv.post(ACK, token=dev, json={"cursor": h})
    assert r.status_code == 200, r.text
    assert r.json() == {"deviceId": "till-1", "cursor": h}
    assert devices_of(srv, carol)["till-1"]["cursor"] == h
    assert devices_of(srv, dev)["till-1"]["cursor"] == h

    # it reports as that device
    ans = report(srv, dev, [vop("notes", "insert", {"id": "n3", "title": "three"})])
    assert ans["deviceId"] == "till-1" and ans["applied"] == 1

    # a second token for the same device of the same user is fine; still one device
    again = srv.create_token(role="device", name="till again", user_id="carol",
                             device_id="till-1")
    assert again["device_id"] == "till-1"
    assert list(devices_of(srv, carol)) == ["till-1"]
    assert devices_of(srv, carol)["till-1"]["cursor"] == h  # not reset

    # another user's device: refused, nothing written
    phone_id, _ = register(srv, carol, "phone")
    before = token_count(srv)
    for device_id in ("till-1", phone_id):
        r = srv.post(TOKENS, token=srv.admin_token,
                     json={"name": "steal", "role": "device", "userId": "mallory",
                           "deviceId": device_id})
        body = assert_v1_error(r, 400, "INVALID_REQUEST")
        assert device_id in body["message"] + body["details"], body
    assert token_count(srv) == before
    r = srv.get(TOKENS, token=srv.admin_token, params={"user_id": "mallory"})
    assert r.status_code == 200 and r.json()["tokens"] == [], r.text
    assert {r[0] for r in srv.db_query("SELECT user_id FROM ferry_devices")} == {"carol"}
    assert devices_of(srv, srv.admin_token, userId="mallory") == {}


def test_device_token_from_cli_registers_the_device(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    p = run_ferry("token", "create", "--role", "device", "--name", "till", "--user", "dora",
                  "--device", "cli-till", *store_args(srv))
    assert p.returncode == 0, p.stderr
    dev = p.stdout.strip()
    assert dev.startswith("fyd_")
    dora = srv.create_token(role="user", user_id="dora")["token"]
    assert list(devices_of(srv, dora)) == ["cli-till"]
    srv.db_exec("INSERT INTO notes (id, title) VALUES ('x', 'X')")
    h = head(srv)
    r = srv.post(ACK, token=dev, json={"cursor": h})
    assert r.status_code == 200 and r.json() == {"deviceId": "cli-till", "cursor": h}, r.text

    # the same device for another user: refused, exit non-zero naming the device
    p = run_ferry("token", "create", "--role", "device", "--name", "x", "--user", "eve",
                  "--device", "cli-till", *store_args(srv))
    assert p.returncode != 0
    assert "cli-till" in p.stderr, p.stderr
    assert p.stdout == ""
    assert list(devices_of(srv, srv.admin_token)) == ["cli-till"]


def test_direct_device_tokens_are_checked(make_server):
    """A direct device token needs a valid device id and keeps an existing device's table
    limit; the CLI refuses an empty or malformed table list, as the API does."""
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    for bad in ("has space", "a/b", "x" * 129):
        r = srv.post(TOKENS, token=srv.admin_token,
                     json={"name": "t", "role": "device", "userId": "u", "deviceId": bad})
        assert_v1_error(r, 400, "INVALID_REQUEST")
    assert srv.db_query("SELECT COUNT(*) AS n FROM ferry_devices") == [["0"]]

    limited = srv.create_token(role="user", user_id="u", tables=["notes"])["token"]
    dev_id, _ = register(srv, limited, "scoped")
    r = srv.post(TOKENS, token=srv.admin_token,
                 json={"name": "wider", "role": "device", "userId": "u", "deviceId": dev_id})
    body = assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "table limit" in body["details"], body
    r = srv.post(TOKENS, token=srv.admin_token,
                 json={"name": "same", "role": "device", "userId": "u", "deviceId": dev_id,
                       "tables": ["notes"]})
    assert r.status_code == 201, r.text

    for bad in (",", "", "notes,,x", "notes,"):
        p = run_ferry("token", "create", "--role", "user", "--name", "t", "--user", "u",
                      "--tables", bad, *store_args(srv))
        assert p.returncode != 0 and "table list" in p.stderr, (bad, p.stderr)


# --- 3. conflicts and a table-limited token --------------------------------------------------


AB_SCHEMA = ["CREATE TABLE a (id TEXT PRIMARY KEY, v TEXT)",
             "CREATE TABLE b (id TEXT PRIMARY KEY, v TEXT)"]
AB_FLAGS = ("--allowed-tables", "a,b", "--conflict-policy", "a=manual,b=manual",
            "--purge-interval", "0")


def make_conflicts(srv, user_token, tables, rows=("r",)):
    """Two devices of the token's user; a stale update from the first makes one open
    conflict per table and row. Returns {(table, row): conflict id}."""
    _, phone = register(srv, user_token, "phone")
    _, tablet = register(srv, user_token, "tablet")
    report(srv, phone, [vop(t, "insert", {"id": k, "v": "v1"}) for t in tables for k in rows])
    report(srv, tablet, [vop(t, "update", {"id": k, "v": "tablet"}, base=1)
                         for t in tables for k in rows])
    ans = report(srv, phone, [vop(t, "update", {"id": k, "v": "phone"}, base=1)
                              for t in tables for k in rows])
    assert [x["status"] for x in ans["results"]] == ["conflict"] * (len(tables) * len(rows))
    return {(c["table"], c["rowId"]): c["id"] for c in ans["conflicts"]}


def test_table_limited_token_sees_and_resolves_only_its_tables_conflicts(make_server):
    srv = make_server(*AB_FLAGS, schema=AB_SCHEMA)
    alice = srv.create_token(role="user", user_id="alice")["token"]
    cfs = make_conflicts(srv, alice, ("a", "b"))
    assert set(cfs) == {("a", "r"), ("b", "r")}
    both = sorted([("a", cfs[("a", "r")]), ("b", cfs[("b", "r")])])
    assert conflict_ids(srv, alice) == both
    assert conflict_ids(srv, alice, "all") == both
    assert conflict_ids(srv, srv.admin_token) == both

    only_a = srv.create_token(role="user", user_id="alice", tables=["a"])["token"]
    assert conflict_ids(srv, only_a) == [("a", cfs[("a", "r")])]
    assert conflict_ids(srv, only_a, "all") == [("a", cfs[("a", "r")])]
    # same on the other prefix
    r = srv.get("/api/sync/conflicts", token=only_a)
    assert r.status_code == 200 and r.json()["totalCount"] == 1, r.text

    # a device registered with the limited token inherits its scope
    _, scoped_dev = register(srv, only_a, "scoped")
    assert conflict_ids(srv, scoped_dev) == [("a", cfs[("a", "r")])]

    # resolving table b's conflict with it: 403, nothing changes
    for tok in (only_a, scoped_dev):
        r = srv.post(f"{CONFLICTS}/{cfs[('b', 'r')]}/resolve", token=tok,
                     json={"resolution": "take_client"})
        assert_v1_error(r, 403, "FORBIDDEN")
    assert srv.db_query("SELECT v FROM b WHERE id = 'r'") == [["tablet"]]
    assert conflict_ids(srv, alice) == both

    # its own table's conflict it may resolve
    r = srv.post(f"{CONFLICTS}/{cfs[('a', 'r')]}/resolve", token=only_a,
                 json={"resolution": "take_client"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    assert srv.db_query("SELECT v FROM a WHERE id = 'r'") == [["phone"]]
    assert conflict_ids(srv, only_a) == []
    assert conflict_ids(srv, only_a, "resolved") == [("a", cfs[("a", "r")])]
    # the unrestricted token still sees b's, and may resolve it
    assert conflict_ids(srv, alice) == [("b", cfs[("b", "r")])]
    r = srv.post(f"{CONFLICTS}/{cfs[('b', 'r')]}/resolve", token=alice,
                 json={"resolution": "keep_server"})
    assert r.status_code == 200, r.text
    assert conflict_ids(srv, alice) == []


# --- 4. the purge with no active device -------------------------------------------------------


def test_purge_without_devices_keeps_tombstones_for_the_retention(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    legacy_push(srv, [lop("notes", "insert", id=f"n{k}", title="N") for k in (1, 2, 3)])
    legacy_push(srv, [lop("notes", "delete", id="n1"), lop("notes", "delete", id="n2")])
    h = head(srv)
    assert tombstones(srv) == ["n1", "n2"]

    # nobody has acknowledged anything: the default retention (30 days) keeps them
    body = purge(srv)
    assert body["tombstones_purged"] == 0 and body["horizon"] == 0, body
    assert tombstones(srv) == ["n1", "n2"]
    feed = changes(srv, 0)
    assert sorted((c["id"], c["deleted"]) for c in feed["changes"]) == \
        [("n1", True), ("n2", True), ("n3", False)]

    # with a one-second retention, once the tombstones are older than that
    srv.stop()
    srv.args = [*NOTES_FLAGS, "--tombstone-retention", "1"]
    srv.start()
    time.sleep(1.2)
    body = purge(srv)
    assert body["tombstones_purged"] == 2 and body["horizon"] == h, body
    assert tombstones(srv) == []
    assert [c["id"] for c in changes(srv, 0)["changes"]] == ["n3"]
    assert_v1_error(srv.get(CHANGES, token=srv.admin_token, params={"cursor": "1"}), 410,
                    "GONE")


def test_purge_clears_resolved_conflicts_older_than_the_retention(make_server):
    srv = make_server(*AB_FLAGS, "--tombstone-retention", "1", schema=AB_SCHEMA)
    alice = srv.create_token(role="user", user_id="alice")["token"]
    cfs = make_conflicts(srv, alice, ("a",), rows=("r1", "r2", "r3"))
    old, fresh, still_open = cfs[("a", "r1")], cfs[("a", "r2")], cfs[("a", "r3")]

    r = srv.post(f"{CONFLICTS}/{old}/resolve", token=alice, json={"resolution": "keep_server"})
    assert r.status_code == 200, r.text
    # resolved just now: kept
    assert purge(srv)["conflicts_purged"] == 0
    time.sleep(1.2)
    r = srv.post(f"{CONFLICTS}/{fresh}/resolve", token=alice, json={"resolution": "keep_server"})
    assert r.status_code == 200, r.text

    body = purge(srv)
    assert body["conflicts_purged"] >= 1, body
    left = {r[0]: r[1] for r in srv.db_query("SELECT id, status FROM ferry_conflicts")}
    assert old not in left
    # an open conflict is never purged, however old; one resolved within the retention stays
    assert left.get(still_open) == "open"
    assert left.get(fresh) == "resolved"
    assert body["conflicts_purged"] == 1, body
    assert conflict_ids(srv, alice, "all") == sorted([("a", fresh), ("a", still_open)])


# --- 5. capture triggers dropped by hand come back at start -----------------------------------


T_SCHEMA = ["CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER)"]
T_FLAGS = ("--allowed-tables", "t", "--purge-interval", "0")


def drop_triggers(srv, only_one=False):
    """Drops table t's capture triggers by hand (only_one: just the one that logs
    updates, ferry_upd_t on SQLite, ferry_capture_upd on PostgreSQL)."""
    if srv.backend == "postgres":
        names = ["upd"] if only_one else ["ins", "upd", "del"]
        srv.db_exec(*[f"DROP TRIGGER ferry_capture_{n} ON t" for n in names])
    else:
        names = ["upd"] if only_one else ["ins", "upd", "del"]
        srv.db_exec(*[f'DROP TRIGGER "ferry_{n}_t"' for n in names])


def trigger_count(srv):
    if srv.backend == "postgres":
        sql = ("SELECT COUNT(*) FROM pg_trigger tg JOIN pg_class r ON r.oid = tg.tgrelid"
               " WHERE r.relname = 't' AND tg.tgname IN"
               " ('ferry_capture_ins', 'ferry_capture_upd', 'ferry_capture_del')")
    else:
        sql = ("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 't'"
               " AND name IN ('ferry_ins_t', 'ferry_upd_t', 'ferry_del_t')")
    return int(srv.db_query(sql)[0][0])


def feed_since(srv, cursor):
    return [(c["id"], c["op"], c["deleted"], c["data"]) for c in changes(srv, cursor)["changes"]]


def test_missing_triggers_are_reinstalled_at_start(make_server):
    srv = make_server(*T_FLAGS, schema=T_SCHEMA)
    full = 3  # ferry_ins/upd/del_<t> on SQLite, ferry_capture_ins/upd/del on PostgreSQL
    assert trigger_count(srv) == full
    srv.db_exec("INSERT INTO t (id, v) VALUES ('before', 1)")
    assert feed_since(srv, 0) == [("before", "upsert", False, {"id": "before", "v": 1})]

    # all of them, while ferry is down
    srv.stop()
    drop_triggers(srv)
    assert trigger_count(srv) == 0
    # written while nothing captures: picked up by the re-install's backfill
    srv.db_exec("INSERT INTO t (id, v) VALUES ('gap', 2)")
    srv.restart()
    assert trigger_count(srv) == full
    assert [c[0] for c in feed_since(srv, 0)] == ["before", "gap"]

    h = head(srv)
    srv.db_exec("INSERT INTO t (id, v) VALUES ('after', 3)")
    assert feed_since(srv, h) == [("after", "upsert", False, {"id": "after", "v": 3})]
    h = head(srv)
    srv.db_exec("UPDATE t SET v = 30 WHERE id = 'after'", "DELETE FROM t WHERE id = 'before'")
    assert feed_since(srv, h) == [("after", "upsert", False, {"id": "after", "v": 30}),
                                  ("before", "delete", True, None)]

    # just one of them, while ferry runs; the next start puts it back
    drop_triggers(srv, only_one=True)
    assert trigger_count(srv) == full - 1
    srv.restart()
    assert trigger_count(srv) == full
    h = head(srv)
    srv.db_exec("UPDATE t SET v = 31 WHERE id = 'after'")
    assert feed_since(srv, h) == [("after", "upsert", False, {"id": "after", "v": 31})]

    # the table rebuilt by hand (copied, dropped, renamed back) loses them all
    srv.stop()
    srv.db_exec("CREATE TABLE t_new (id TEXT PRIMARY KEY, v INTEGER)",
                "INSERT INTO t_new SELECT id, v FROM t",
                "DROP TABLE t",
                "ALTER TABLE t_new RENAME TO t")
    assert trigger_count(srv) == 0
    srv.start()
    assert trigger_count(srv) == full
    h = head(srv)
    srv.db_exec("UPDATE t SET v = 32 WHERE id = 'after'")
    assert feed_since(srv, h) == [("after", "upsert", False, {"id": "after", "v": 32})]

    # nothing was logged twice
    assert srv.db_query("SELECT COUNT(*) AS n, COUNT(DISTINCT pk) AS keys FROM ferry_changes"
                        " WHERE tbl = 't'") == [["3", "3"]]


# --- 6. a seq is never handed out twice -------------------------------------------------------


def test_seq_not_reused_after_purging_the_newest_change(make_server):
    srv = make_server(*NOTES_FLAGS, "--tombstone-retention", "1", schema=[NOTES])
    legacy_push(srv, [lop("notes", "insert", id="keep", title="K")])
    for round_no, (gone, new) in enumerate((("x1", "y1"), ("y1", "y2"))):
        if round_no == 0:
            legacy_push(srv, [lop("notes", "insert", id=gone, title="X")])
        legacy_push(srv, [lop("notes", "delete", id=gone)])  # the newest change
        noted = changes(srv, 0)["cursor"]
        newest = changes(srv, 0)["changes"][-1]
        assert (newest["id"], newest["deleted"], newest["seq"]) == (gone, True, noted)

        time.sleep(1.2)
        body = purge(srv)
        assert body["tombstones_purged"] == 1 and body["horizon"] == noted, body
        assert tombstones(srv) == []
        if round_no == 1:
            srv.restart()  # the head survives a restart too
        # the head stays where it was
        assert changes(srv, 0)["cursor"] == noted
        assert changes(srv, noted)["changes"] == []
        assert [c["id"] for c in changes(srv, 0)["changes"]] == ["keep"]

        legacy_push(srv, [lop("notes", "insert", id=new, title="Y")])
        feed = changes(srv, noted)
        assert [(c["id"], c["op"]) for c in feed["changes"]] == [(new, "upsert")], feed
        assert feed["changes"][0]["seq"] > noted
        assert feed["cursor"] == feed["changes"][0]["seq"]

    # a direct write after all that also gets a fresh seq
    h = head(srv)
    srv.db_exec("INSERT INTO notes (id, title) VALUES ('z', 'Z')")
    (c,) = changes(srv, h)["changes"]
    assert c["id"] == "z" and c["seq"] > h


# --- review findings: bytes that are not UTF-8, device names, scope of new tokens ---------


def test_bytes_that_are_not_utf8_never_crash_the_server(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    r = srv.get("/%ff%fe")
    body = assert_v1_error(r, 404, "NOT_FOUND")
    r = srv.get("/api/v1/sync/changes", token=srv.admin_token, params={"cursor": b"\xff"})
    body = assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "cursor" in body["details"]
    long_name = "a" + "\u00e9" * 300  # an error message cut inside a two-byte character
    r = legacy_push_raw(srv, [{"table": long_name, "action": "insert", "data": {"id": "1"}}])
    assert r.status_code == 400, r.text
    assert srv.get("/health").status_code == 200  # still serving


def legacy_push_raw(srv, operations):
    return srv.post("/sync/push", token=srv.admin_token, json={"operations": operations})


def test_legacy_device_id_of_another_users_device_is_refused(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    alice = srv.create_token(role="user", user_id="alice")["token"]
    bob = srv.create_token(role="user", user_id="bob")["token"]
    dev_id, _ = register(srv, alice, "alice-phone")
    r = srv.post("/sync/push", token=bob, json={
        "device_id": dev_id, "batch_id": "b-1",
        "operations": [{"table": "notes", "action": "insert", "data": {"id": "x", "title": "x"}}]})
    assert_legacy_error(r, 403)
    assert srv.db_query("SELECT id FROM notes") == []
    # alice may name her own device, and bob's refused batch id did not block hers
    r = srv.post("/sync/push", token=alice, json={
        "device_id": dev_id, "batch_id": "b-1",
        "operations": [{"table": "notes", "action": "insert", "data": {"id": "y", "title": "y"}}]})
    assert r.status_code == 200 and r.json()["replayed"] is False, r.text


def test_limited_token_cannot_mint_a_wider_device_token(make_server):
    srv = make_server(*NOTES_FLAGS, schema=[NOTES])
    full = srv.create_token(role="user", user_id="u")["token"]
    limited = srv.create_token(role="user", user_id="u", tables=["notes"])["token"]
    wide_id, _ = register(srv, full, "wide")
    r = srv.post(f"/api/v1/sync/devices/{wide_id}/token", token=limited)
    assert_v1_error(r, 403, "FORBIDDEN")
    r = srv.post(f"/api/v1/sync/devices/{wide_id}/token", token=full)
    assert r.status_code == 200 and r.json()["token"].startswith("fyd_"), r.text


def test_merge_resolution_with_partial_data_updates_the_row(make_server):
    """A merged resolution may name only some fields, even when the table has required
    columns."""
    srv = make_server("--allowed-tables", "orders", "--conflict-policy", "orders=manual",
                      "--purge-interval", "0",
                      schema=["CREATE TABLE orders (id TEXT PRIMARY KEY, item TEXT NOT NULL,"
                              " qty INTEGER)"])
    user = srv.create_token(role="user", user_id="u")["token"]
    _, phone = register(srv, user, "phone")
    _, tablet = register(srv, user, "tablet")
    report(srv, phone, [vop("orders", "insert", {"id": "o1", "item": "pen", "qty": 1})])
    report(srv, tablet, [vop("orders", "update", {"id": "o1", "qty": 2}, base=1)])
    ans = report(srv, phone, [vop("orders", "update", {"id": "o1", "qty": 3}, base=1)])
    (cf,) = ans["conflicts"]
    r = srv.post(f"/api/v1/sync/conflicts/{cf['id']}/resolve", token=user,
                 json={"resolution": "merge", "data": {"qty": 5}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    assert srv.db_query("SELECT item, qty FROM orders") == [["pen", "5"]]
