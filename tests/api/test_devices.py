"""Pinakes device sync, under /api/v1/sync and /api/sync: devices and their
tokens, report (push), changes (pull, paging, filters, long-poll), ack, and conflicts
under each table policy (overwrite, skip, manual, merge) with their resolution.

Every test runs on SQLite and on PostgreSQL. The database is checked directly
(srv.db_query) wherever "nothing was applied" or "the row now holds" is the point."""

import signal
import threading
import time

import pytest
import requests

from conftest import ISO_RE, assert_v1_error
from devsync import (ALT, CHANGE_KEYS, CONFLICT_KEYS, DEVICE_KEYS, PREFIXES, REPORT_KEYS, V1,
                     Client, count, log_state, log_version, new_batch_id, op, row, start,
                     user)

# --- devices ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_device_register_list_get_update_delete(make_server, prefix):
    srv = start(make_server)
    alice = user(srv, "alice", prefix)
    bob = user(srv, "bob", prefix)

    r = alice.post("/devices", json={"name": "Alice's phone", "platform": "android",
                                     "appVersion": "1.2.3"})
    assert r.status_code == 200, r.text
    dev = r.json()
    assert set(dev) == DEVICE_KEYS | {"token"}
    assert dev["id"].startswith("dev_")
    assert dev["name"] == "Alice's phone"
    assert dev["userId"] == "alice"
    assert dev["platform"] == "android" and dev["appVersion"] == "1.2.3"
    assert dev["cursor"] == 0
    assert dev["token"].startswith("fyd_") and len(dev["token"]) >= 40
    assert ISO_RE.match(dev["createdAt"]) and ISO_RE.match(dev["updatedAt"])

    # a client-chosen id is kept
    r = alice.post("/devices", json={"id": "tablet-01:a_b.c", "name": "tablet"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "tablet-01:a_b.c"
    r = alice.get("/devices/tablet-01:a_b.c")
    assert r.status_code == 200 and r.json()["name"] == "tablet"
    # the same id again is a conflict
    assert_v1_error(alice.post("/devices", json={"id": "tablet-01:a_b.c", "name": "again"}),
                    409, "CONFLICT")

    bob_dev = bob.post("/devices", json={"name": "Bob's laptop"}).json()

    # lists: only the caller's own devices
    r = alice.get("/devices")
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["totalCount"] == 2
    assert sorted(d["id"] for d in listed["devices"]) == sorted([dev["id"], "tablet-01:a_b.c"])
    for d in listed["devices"]:
        assert set(d) == DEVICE_KEYS  # the token is shown once, at registration
    assert [d["id"] for d in bob.get("/devices").json()["devices"]] == [bob_dev["id"]]

    # one device
    r = alice.get(f"/devices/{dev['id']}")
    assert r.status_code == 200
    got = r.json()
    assert set(got) == DEVICE_KEYS
    assert {k: got[k] for k in ("id", "userId", "name", "platform", "appVersion", "cursor")} == {
        "id": dev["id"], "userId": "alice", "name": "Alice's phone", "platform": "android",
        "appVersion": "1.2.3", "cursor": 0}

    # another user's device: 403 for every verb; unknown: 404
    for method in ("GET", "PUT", "DELETE"):
        kw = {"json": {"name": "mine now"}} if method == "PUT" else {}
        r = srv.request(method, f"{prefix}/devices/{bob_dev['id']}", token=alice.token, **kw)
        assert_v1_error(r, 403, "FORBIDDEN")
        r = srv.request(method, f"{prefix}/devices/no-such-device", token=alice.token, **kw)
        assert_v1_error(r, 404, "NOT_FOUND")
    assert_v1_error(alice.post(f"/devices/{bob_dev['id']}/token"), 403, "FORBIDDEN")
    assert_v1_error(alice.post("/devices/no-such-device/token"), 404, "NOT_FOUND")
    assert bob.get(f"/devices/{bob_dev['id']}").json()["name"] == "Bob's laptop"

    # update: only the given fields change
    r = alice.put(f"/devices/{dev['id']}", json={"name": "renamed"})
    assert r.status_code == 200, r.text
    upd = r.json()
    assert set(upd) == DEVICE_KEYS
    assert upd["name"] == "renamed" and upd["platform"] == "android"
    assert upd["appVersion"] == "1.2.3"
    r = alice.put(f"/devices/{dev['id']}", json={"appVersion": "2.0", "id": dev["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["appVersion"] == "2.0" and r.json()["name"] == "renamed"
    assert alice.get(f"/devices/{dev['id']}").json()["name"] == "renamed"

    # the device token works until the device is deleted
    token = dev["token"]
    assert srv.get(f"{prefix}/devices/{dev['id']}", token=token).status_code == 200
    r = alice.delete(f"/devices/{dev['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_v1_error(alice.get(f"/devices/{dev['id']}"), 404, "NOT_FOUND")
    assert_v1_error(alice.delete(f"/devices/{dev['id']}"), 404, "NOT_FOUND")
    assert_v1_error(srv.get(f"{prefix}/changes", token=token), 401, "UNAUTHORIZED")
    assert_v1_error(srv.post(f"{prefix}/report", token=token, json={"operations": []}),
                    401, "UNAUTHORIZED")
    assert [d["id"] for d in alice.get("/devices").json()["devices"]] == ["tablet-01:a_b.c"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_device_token_regeneration(make_server, prefix):
    srv = start(make_server)
    alice = user(srv, "alice", prefix)
    phone = alice.register("phone")
    old = phone.token
    assert phone.changes()["changes"] == []

    r = alice.post(f"/devices/{phone.device_id}/token")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"deviceId", "token"}
    assert body["deviceId"] == phone.device_id
    new = body["token"]
    assert new.startswith("fyd_") and new != old

    # the old token is refused at once; the new one speaks for the same device
    assert_v1_error(srv.get(f"{prefix}/changes", token=old), 401, "UNAUTHORIZED")
    r = srv.post(f"{prefix}/report", token=new, json={"operations": [
        op("notes", "insert", {"id": "n1", "title": "t"})]})
    assert r.status_code == 200, r.text
    assert r.json()["deviceId"] == phone.device_id
    r = srv.get(f"{prefix}/devices", token=new)
    assert r.status_code == 200
    assert [d["id"] for d in r.json()["devices"]] == [phone.device_id]

    # regenerating again revokes the second token too
    newer = alice.post(f"/devices/{phone.device_id}/token").json()["token"]
    assert_v1_error(srv.get(f"{prefix}/changes", token=new), 401, "UNAUTHORIZED")
    assert srv.get(f"{prefix}/changes", token=newer).status_code == 200


def test_device_token_role_limits(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")

    # a device token may not register devices, delete or re-key them
    assert_v1_error(phone.post("/devices", json={"name": "sneaky"}), 403, "FORBIDDEN")
    assert_v1_error(srv.post(f"{ALT}/devices", token=phone.token, json={"name": "x"}),
                    403, "FORBIDDEN")
    assert_v1_error(phone.delete(f"/devices/{phone.device_id}"), 403, "FORBIDDEN")
    assert_v1_error(phone.post(f"/devices/{phone.device_id}/token"), 403, "FORBIDDEN")
    assert alice.get("/devices").json()["totalCount"] == 2

    # it sees and renames only itself, even among its user's devices
    r = phone.get("/devices")
    assert r.status_code == 200
    assert [d["id"] for d in r.json()["devices"]] == [phone.device_id]
    assert phone.get(f"/devices/{phone.device_id}").status_code == 200
    assert_v1_error(phone.get(f"/devices/{tablet.device_id}"), 403, "FORBIDDEN")
    r = phone.put(f"/devices/{phone.device_id}", json={"name": "my phone"})
    assert r.status_code == 200 and r.json()["name"] == "my phone"
    assert_v1_error(phone.put(f"/devices/{tablet.device_id}", json={"name": "x"}),
                    403, "FORBIDDEN")
    # and it acts only for itself
    r = phone.post("/report", json={"operations": [], "deviceId": tablet.device_id})
    assert_v1_error(r, 403, "FORBIDDEN")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_device_bad_bodies(make_server, prefix):
    srv = start(make_server)
    alice = user(srv, "alice", prefix)
    phone = alice.register("phone")
    before = alice.get("/devices").json()["totalCount"]

    bad_register = [
        {},                                              # name missing
        {"name": ""},                                    # name empty
        {"platform": "ios"},                             # name missing
        {"name": 5},                                     # wrong type
        {"name": ["phone"]},
        {"name": "ok", "platform": 7},
        {"name": "ok", "appVersion": True},
        {"name": "ok", "id": 12},
        {"name": "ok", "id": "bad id"},                  # bad characters
        {"name": "ok", "id": "a/b"},
        {"name": "ok", "id": "../x"},
        {"name": "ok", "id": "é"},
        {"name": "ok", "id": ""},
        {"name": "ok", "id": "x" * 129},                 # too long
        {"name": "n" * 201},
    ]
    for body in bad_register:
        assert_v1_error(alice.post("/devices", json=body), 400, "INVALID_REQUEST")
    for raw in (b"", b"[]", b"\"name\"", b"{\"name\": ", b"null"):
        r = srv.post(f"{prefix}/devices", token=alice.token, data=raw,
                     headers={"Content-Type": "application/json"})
        assert_v1_error(r, 400, "INVALID_REQUEST")
    assert alice.get("/devices").json()["totalCount"] == before

    # a user registers only for itself
    assert_v1_error(alice.post("/devices", json={"name": "x", "userId": "bob"}),
                    403, "FORBIDDEN")

    bad_update = [{"name": ""}, {"name": 5}, {"platform": []}, {"id": "other-id"},
                  {"id": 3}]
    for body in bad_update:
        assert_v1_error(alice.put(f"/devices/{phone.device_id}", json=body), 400,
                        "INVALID_REQUEST")
    r = srv.put(f"{prefix}/devices/{phone.device_id}", token=alice.token, data=b"[1]",
                headers={"Content-Type": "application/json"})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert alice.get(f"/devices/{phone.device_id}").json()["name"] == "phone"


def test_admin_registers_for_a_user(make_server):
    srv = start(make_server)
    admin = Client(srv, srv.admin_token)
    assert_v1_error(admin.post("/devices", json={"name": "x"}), 400, "INVALID_REQUEST")
    r = admin.post("/devices", json={"name": "kiosk", "userId": "carol"})
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == "carol"
    carol = user(srv, "carol")
    assert [d["name"] for d in carol.get("/devices").json()["devices"]] == ["kiosk"]


def test_device_inherits_the_user_token_scope(make_server):
    srv = start(make_server)
    scoped = srv.create_token(role="user", user_id="alice", tables=["notes"])["token"]
    alice = Client(srv, scoped)
    r = alice.post("/devices", json={"name": "scoped"})
    assert r.status_code == 200, r.text
    assert r.json()["tables"] == ["notes"]
    phone = Client(srv, r.json()["token"], r.json()["id"])
    other = user(srv, "bob").register("other")
    other.report([op("notes", "insert", {"id": "n1"}), op("orders", "insert", {"id": 1,
                                                                              "item": "x"})])

    r = phone.post("/report", json={"operations": [op("notes", "insert", {"id": "n2"}),
                                                   op("orders", "insert", {"id": 2,
                                                                           "item": "y"})]})
    assert_v1_error(r, 403, "FORBIDDEN")
    assert count(srv, "notes") == 1 and count(srv, "orders") == 1
    assert [c["table"] for c in phone.changes()["changes"]] == ["notes"]
    assert_v1_error(phone.get("/changes", params={"tables": "orders"}), 403, "FORBIDDEN")
    assert phone.report([op("notes", "insert", {"id": "n2"})])["applied"] == 1


def test_unauthenticated_sync_calls(make_server):
    srv = start(make_server)
    for prefix in PREFIXES:
        for method, path in (("GET", "/devices"), ("POST", "/devices"), ("GET", "/changes"),
                             ("POST", "/report"), ("POST", "/ack"), ("GET", "/conflicts")):
            r = srv.request(method, prefix + path, json={} if method == "POST" else None)
            assert_v1_error(r, 401, "UNAUTHORIZED")


# --- report ---------------------------------------------------------------------------------


def test_report_applies_and_answers(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")

    ans = phone.report([
        op("notes", "insert", {"id": "n1", "title": "first", "body": "b", "n": 1}),
        op("orders", "insert", {"id": 7, "item": "apple", "qty": 3}),
        op("orders", "upsert", {"id": 8, "item": "pear", "qty": None}),
    ], batch_id="batch-1")
    assert set(ans) == REPORT_KEYS
    assert ans["batchId"] == "batch-1"
    assert ans["deviceId"] == phone.device_id
    assert ans["replayed"] is False
    assert (ans["applied"], ans["unchanged"], ans["skipped"]) == (3, 0, 0)
    assert ans["conflicts"] == []
    assert ans["results"] == [
        {"index": 0, "table": "notes", "id": "n1", "status": "applied", "version": 1},
        {"index": 1, "table": "orders", "id": 7, "status": "applied", "version": 1},
        {"index": 2, "table": "orders", "id": 8, "status": "applied", "version": 1},
    ]
    head = alice.head()
    assert ans["cursor"] == head == 3
    assert row(srv, "notes", "n1") == ["n1", "first", "b", "1"]
    assert row(srv, "orders", 7) == ["7", "apple", "3"]
    assert row(srv, "orders", 8) == ["8", "pear", None]

    # update and delete, versions move on
    ans = phone.report([
        op("notes", "update", {"id": "n1", "title": "second"}, base=1),
        op("orders", "delete", {"id": 8}, base=1),
        op("orders", "delete", {"id": 999}),
    ], batch_id="batch-2")
    assert (ans["applied"], ans["unchanged"], ans["skipped"]) == (2, 1, 0)
    assert [(x["status"], x["version"]) for x in ans["results"]] == [
        ("applied", 2), ("applied", 2), ("unchanged", None)]
    assert row(srv, "notes", "n1") == ["n1", "second", "b", "1"]
    assert row(srv, "orders", 8) is None
    assert ans["cursor"] == alice.head()

    # the changes are the device's own
    changes, _ = alice.pull_all()
    assert {c["deviceId"] for c in changes} == {phone.device_id}
    assert all(set(c) == CHANGE_KEYS for c in changes)


def test_report_retry_is_answered_from_the_record(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")
    ops = [op("notes", "insert", {"id": "n1", "title": "a"}),
           op("orders", "upsert", {"id": 1, "item": "x", "qty": 1})]
    first = phone.report(ops, batch_id="same")
    assert first["replayed"] is False and first["applied"] == 2
    log = log_state(srv)

    for _ in range(2):
        again = phone.report(ops, batch_id="same")
        assert again["replayed"] is True
        assert {k: v for k, v in again.items() if k != "replayed"} == \
            {k: v for k, v in first.items() if k != "replayed"}
    # even with other operations under the same id, the recorded answer stands
    other = phone.report([op("notes", "insert", {"id": "n2", "title": "b"})], batch_id="same")
    assert other["replayed"] is True and other["results"] == first["results"]
    assert log_state(srv) == log, "a replayed batch changed the log"
    assert count(srv, "notes") == 1 and count(srv, "orders") == 1

    # the same batch id from another device is another batch
    ans = tablet.report([op("notes", "insert", {"id": "n3", "title": "c"})], batch_id="same")
    assert ans["replayed"] is False and ans["applied"] == 1
    assert count(srv, "notes") == 2

    # a batch that failed is not recorded: fixed and retried under its id, it applies
    bad = phone.post("/report", json={"batchId": "fix-me", "operations": [
        op("notes", "insert", {"id": "n4", "title": "d"}),
        op("notes", "update", {"id": "missing", "title": "x"})]})
    assert_v1_error(bad, 404, "NOT_FOUND")
    assert row(srv, "notes", "n4") is None
    ans = phone.report([op("notes", "insert", {"id": "n4", "title": "d"})], batch_id="fix-me")
    assert ans["replayed"] is False and ans["applied"] == 1
    assert row(srv, "notes", "n4") == ["n4", "d", None, None]


def test_report_with_user_token_names_the_device(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    bob = user(srv, "bob")
    phone = alice.register("phone")
    bobs = bob.register("bobs")
    ops = [op("notes", "insert", {"id": "n1", "title": "a"})]

    assert_v1_error(alice.post("/report", json={"operations": ops}), 400, "INVALID_REQUEST")
    assert_v1_error(alice.post("/report", json={"operations": ops, "deviceId": bobs.device_id}),
                    403, "FORBIDDEN")
    assert_v1_error(alice.post("/report", json={"operations": ops, "deviceId": "nope"}),
                    404, "NOT_FOUND")
    assert_v1_error(alice.post("/report", json={"operations": ops, "deviceId": 5}),
                    400, "INVALID_REQUEST")
    assert count(srv, "notes") == 0

    ans = alice.report(ops, deviceId=phone.device_id, batch_id="u1")
    assert ans["deviceId"] == phone.device_id and ans["applied"] == 1
    ch = alice.changes()["changes"]
    assert [(c["id"], c["deviceId"]) for c in ch] == [("n1", phone.device_id)]
    # a device does not get its own change back, whoever pushed it for it
    assert phone.changes()["changes"] == []
    # the batch id belongs to the device: the device's own retry is a replay
    again = phone.report(ops, batch_id="u1")
    assert again["replayed"] is True


BAD_BATCHES = [
    # (operations, status, code, words the details must contain)
    ([op("nope", "insert", {"id": "x"})], 400, "INVALID_REQUEST", ["nope"]),
    ([op("ferry_devices", "insert", {"id": "x"})], 400, "INVALID_REQUEST", ["ferry_devices"]),
    ([op("notes", "insert", {"id": "x", "colour": "red"})], 400, "INVALID_REQUEST",
     ["colour"]),
    ([op("orders", "insert", {"id": 5, "item": "x", "qty": "three"})], 400, "INVALID_REQUEST",
     ["orders", "5", "qty"]),
    ([op("orders", "insert", {"id": 5, "item": "x", "qty": 1.5})], 400, "INVALID_REQUEST",
     ["qty"]),
    ([op("orders", "insert", {"id": 5, "item": None})], 400, "INVALID_REQUEST", ["item"]),
    ([op("orders", "insert", {"id": "five", "item": "x"})], 400, "INVALID_REQUEST", ["id"]),
    ([op("notes", "insert", {"id": "x", "n": "many"})], 400, "INVALID_REQUEST",
     ["notes", "x", "n"]),
    ([op("notes", "insert", {"title": "no key"})], 400, "INVALID_REQUEST", ["id"]),
    ([op("notes", "delete", {})], 400, "INVALID_REQUEST", ["id"]),
    ([op("notes", "frobnicate", {"id": "x"})], 400, "INVALID_REQUEST", ["action"]),
    ([op("notes", "insert", {"id": "x"}, base=-1)], 400, "INVALID_REQUEST", ["base_version"]),
    ([op("notes", "insert", {"id": "x"}, base="1")], 400, "INVALID_REQUEST", ["base_version"]),
    ([{"table": "notes", "action": "insert"}], 400, "INVALID_REQUEST", ["data"]),
    ([{"table": "notes", "action": "insert", "data": [1]}], 400, "INVALID_REQUEST", ["data"]),
    ([{"action": "insert", "data": {"id": "x"}}], 400, "INVALID_REQUEST", ["table"]),
    (["insert"], 400, "INVALID_REQUEST", []),
    ([op("notes", "update", {"id": "missing", "title": "x"})], 404, "NOT_FOUND", ["missing"]),
    ([op("orders", "update", {"id": 404, "qty": 1})], 404, "NOT_FOUND", ["404"]),
]


def test_report_bad_input_applies_nothing(make_server):
    srv = start(make_server, "--max-batch", "5")
    alice = user(srv, "alice")
    phone = alice.register("phone")
    phone.report([op("notes", "insert", {"id": "keep", "title": "k"}),
                  op("orders", "insert", {"id": 1, "item": "one", "qty": 1})])
    log = log_state(srv)

    for bad_ops, status, code, words in BAD_BATCHES:
        # a good operation before and after the bad one: the batch is all or nothing
        ops = [op("notes", "insert", {"id": "good-1", "title": "g"}),
               op("orders", "update", {"id": 1, "qty": 2}),
               *bad_ops,
               op("notes", "insert", {"id": "good-2", "title": "g"})]
        r = phone.post("/report", json={"batchId": new_batch_id(), "operations": ops})
        body = assert_v1_error(r, status, code)
        for w in words:
            assert w in body["details"], (bad_ops, body)
        assert log_state(srv) == log, f"{bad_ops}: the log moved"
        assert count(srv, "notes") == 1, bad_ops
        assert row(srv, "orders", 1) == ["1", "one", "1"], bad_ops

    # over --max-batch: 413, nothing applied
    ops = [op("notes", "insert", {"id": f"m{i}", "title": "x"}) for i in range(6)]
    r = phone.post("/report", json={"batchId": "big", "operations": ops})
    assert_v1_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert count(srv, "notes") == 1
    # exactly the limit is fine
    ans = phone.report(ops[:5], batch_id="big")
    assert ans["applied"] == 5 and count(srv, "notes") == 6

    # bad envelopes
    for body in ({}, {"operations": {}}, {"operations": "x"}, {"operations": [], "batchId": 5},
                 {"operations": [], "batchId": ""}, {"operations": [], "batchId": "x" * 201}):
        assert_v1_error(phone.post("/report", json=body), 400, "INVALID_REQUEST")
    assert count(srv, "notes") == 6


def test_insert_over_an_existing_row(make_server):
    srv = start(make_server)
    phone = user(srv, "alice").register("phone")
    phone.report([op("notes", "insert", {"id": "n1", "title": "a"})])
    # the same values again: unchanged; other values: 409, nothing applied
    ans = phone.report([op("notes", "insert", {"id": "n1", "title": "a"})])
    assert ans["results"][0]["status"] == "unchanged" and ans["results"][0]["version"] == 1
    r = phone.post("/report", json={"operations": [
        op("notes", "insert", {"id": "n2", "title": "x"}),
        op("notes", "insert", {"id": "n1", "title": "b"})]})
    assert_v1_error(r, 409, "CONFLICT")
    assert count(srv, "notes") == 1 and row(srv, "notes", "n1")[1] == "a"


# --- changes -------------------------------------------------------------------------------


def test_changes_paging_and_limits(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")
    phone.report([op("notes", "insert", {"id": f"n{i:03d}", "n": i}) for i in range(150)])
    tablet.report([op("orders", "insert", {"id": i, "item": f"o{i}"}) for i in range(1, 11)])
    head = alice.head()
    assert head == 160

    # default limit 100
    page = alice.changes()
    assert set(page) == {"changes", "cursor", "hasMore"}
    assert len(page["changes"]) == 100 and page["hasMore"] is True
    assert [c["seq"] for c in page["changes"]] == list(range(1, 101))
    assert page["cursor"] == 100
    c0 = page["changes"][0]
    assert set(c0) == CHANGE_KEYS
    assert c0 == {**c0, "table": "notes", "id": "n000", "op": "upsert", "version": 1,
                  "deleted": False, "deviceId": phone.device_id,
                  "data": {"id": "n000", "title": None, "body": None, "n": 0}}
    assert ISO_RE.match(c0["updatedAt"])

    page = alice.changes(cursor=page["cursor"])
    assert len(page["changes"]) == 60 and page["hasMore"] is False
    assert page["cursor"] == head
    assert page["changes"][-1]["table"] == "orders" and page["changes"][-1]["id"] == 10

    # small pages walk the log without gaps or repeats
    seen, cursor = [], 0
    while True:
        page = alice.changes(cursor=cursor, limit=7)
        seen += [c["seq"] for c in page["changes"]]
        cursor = page["cursor"]
        if not page["hasMore"]:
            break
        assert len(page["changes"]) == 7
    assert seen == list(range(1, head + 1)) and cursor == head

    page = alice.changes(limit=1000)
    assert len(page["changes"]) == 160 and page["hasMore"] is False
    page = alice.changes(cursor=head)
    assert page == {"changes": [], "cursor": head, "hasMore": False}

    # tables= filter
    page = alice.changes(tables="orders")
    assert [c["id"] for c in page["changes"]] == list(range(1, 11))
    assert {c["table"] for c in page["changes"]} == {"orders"}
    assert page["cursor"] == head and page["hasMore"] is False
    page = alice.changes(tables="orders,notes", limit=1000)
    assert len(page["changes"]) == 160
    page = alice.changes(tables="orders", cursor=155)
    assert [c["id"] for c in page["changes"]] == [6, 7, 8, 9, 10]

    # bad parameters
    for params in ({"limit": 1001}, {"limit": 0}, {"limit": -1}, {"limit": "ten"},
                   {"limit": ""}, {"cursor": "x"}, {"cursor": "-1"}, {"cursor": "1.5"},
                   {"cursor": head + 1}, {"cursor": 10 ** 15}, {"tables": "nope"},
                   {"tables": "notes,nope"}, {"tables": "ferry_devices"}, {"wait": 61},
                   {"wait": "soon"}, {"wait": -1}):
        r = alice.get("/changes", params=params)
        assert_v1_error(r, 400, "INVALID_REQUEST")


def test_changes_exclude_own_unless_asked(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")
    phone.report([op("notes", "insert", {"id": "p1", "title": "phone"})])
    tablet.report([op("notes", "insert", {"id": "t1", "title": "tablet"})])
    phone.report([op("notes", "insert", {"id": "p2", "title": "phone"})])

    page = phone.changes()
    assert [c["id"] for c in page["changes"]] == ["t1"]
    assert page["cursor"] == 3 and page["hasMore"] is False  # past its own changes too
    assert [c["id"] for c in tablet.changes()["changes"]] == ["p1", "p2"]
    assert [c["id"] for c in phone.changes(includeOwn="true")["changes"]] == ["p1", "t1", "p2"]
    # a row another device changed last comes back, even if this device made it
    tablet.report([op("notes", "update", {"id": "p1", "title": "edited"}, base=1)])
    page = phone.changes(cursor=3)
    assert [(c["id"], c["version"], c["data"]["title"]) for c in page["changes"]] == [
        ("p1", 2, "edited")]
    # a change made straight in the database belongs to no device: everyone gets it
    srv.db_exec("UPDATE notes SET title = 'outside' WHERE id = 'p2'")
    for dev in (phone, tablet):
        ch = dev.changes(cursor=4)["changes"]
        assert [(c["id"], c["version"], c["deviceId"], c["data"]["title"]) for c in ch] == [
            ("p2", 2, None, "outside")]
    # a user token names the device it reads for
    assert [c["id"] for c in alice.changes(deviceId=phone.device_id)["changes"]] == \
        ["t1", "p1", "p2"]


def test_changes_report_deletes_as_tombstones(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    phone.report([op("orders", "insert", {"id": 1, "item": "x"}),
                  op("orders", "insert", {"id": 2, "item": "y"})])
    phone.report([op("orders", "delete", {"id": 1}, base=1)])
    srv.db_exec("DELETE FROM orders WHERE id = 2")
    ch = alice.changes()["changes"]
    assert [(c["id"], c["op"], c["deleted"], c["version"], c["data"]) for c in ch] == [
        (1, "delete", True, 2, None), (2, "delete", True, 2, None)]


# --- long-poll -----------------------------------------------------------------------------


def _long_poll(srv, token, params, out):
    """Runs one GET /changes in this thread; stores response and arrival time in out."""
    try:
        r = requests.get(srv.base + V1 + "/changes", params=params,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
        out["t"] = time.monotonic()
        out["resp"] = r
    except Exception as e:  # noqa: BLE001 - reported by the test
        out["t"] = time.monotonic()
        out["error"] = e


def _start_poll(srv, token, params):
    out = {}
    th = threading.Thread(target=_long_poll, args=(srv, token, params, out), daemon=True)
    out["t0"] = time.monotonic()
    th.start()
    return th, out


def test_long_poll_wakes_on_a_push(make_server, backend):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")
    tablet.report([op("notes", "insert", {"id": "old", "title": "x"})])
    head = alice.head()
    assert phone.changes(cursor=head)["changes"] == []

    lat = []
    for i in range(3):
        th, out = _start_poll(srv, phone.token, {"cursor": head, "wait": 5})
        time.sleep(0.5)
        assert "resp" not in out, "the long-poll answered before anything changed"
        ans = tablet.report([op("notes", "insert", {"id": f"new{i}", "title": "hi"})])
        t_push = time.monotonic()
        th.join(10)
        assert not th.is_alive() and "resp" in out, out
        r = out["resp"]
        assert r.status_code == 200, r.text
        body = r.json()
        assert [c["id"] for c in body["changes"]] == [f"new{i}"]
        assert body["changes"][0]["deviceId"] == tablet.device_id
        assert body["cursor"] == ans["cursor"] and body["hasMore"] is False
        lat.append(out["t"] - t_push)
        head = body["cursor"]
    print(f"\n[{backend}] long-poll latency after a push: "
          + ", ".join(f"{x * 1000:.1f} ms" for x in lat))
    assert max(lat) < 0.3, lat


def test_long_poll_wakes_on_a_change_made_outside_ferry(make_server, backend):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    head = alice.head()

    lat = []
    for i in range(3):
        th, out = _start_poll(srv, phone.token, {"cursor": head, "wait": 5})
        time.sleep(0.5)
        assert "resp" not in out
        srv.db_exec(f"INSERT INTO orders (id, item, qty) VALUES ({100 + i}, 'outside', {i})")
        t_write = time.monotonic()
        th.join(10)
        assert not th.is_alive() and "resp" in out, out
        r = out["resp"]
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(c["table"], c["id"], c["deviceId"], c["data"]) for c in body["changes"]] == [
            ("orders", 100 + i, None, {"id": 100 + i, "item": "outside", "qty": i})]
        lat.append(out["t"] - t_write)
        head = body["cursor"]
    print(f"\n[{backend}] long-poll latency after a direct database write: "
          + ", ".join(f"{x * 1000:.1f} ms" for x in lat))
    assert max(lat) < 0.3, lat


def test_long_poll_ignores_own_changes_and_times_out(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")
    head = alice.head()

    # nothing happens: an empty answer after about the wait
    t0 = time.monotonic()
    page = phone.changes(cursor=head, wait=1)
    took = time.monotonic() - t0
    assert page == {"changes": [], "cursor": head, "hasMore": False}
    assert 0.9 <= took < 2.5, took

    # the device's own push does not end its wait; another device's does
    th, out = _start_poll(srv, phone.token, {"cursor": head, "wait": 5})
    time.sleep(0.3)
    phone.report([op("notes", "insert", {"id": "mine", "title": "x"})])
    time.sleep(0.5)
    assert "resp" not in out, "woken by its own change: " + out["resp"].text
    tablet.report([op("notes", "insert", {"id": "theirs", "title": "y"})])
    th.join(10)
    body = out["resp"].json()
    assert [c["id"] for c in body["changes"]] == ["theirs"]
    assert body["cursor"] == 2

    # wait=0 answers at once
    t0 = time.monotonic()
    assert phone.changes(cursor=2, wait=0)["changes"] == []
    assert time.monotonic() - t0 < 0.5


def test_many_long_polls_wake_together(make_server, backend):
    """More waiting devices than HTTP worker threads (8): parked requests hold no thread,
    and one change wakes them all, on both prefixes."""
    srv = start(make_server)
    alice = user(srv, "alice")
    devs = [alice.register(f"d{i}") for i in range(12)]
    writer = alice.register("writer")
    head = alice.head()
    polls = []
    for i, d in enumerate(devs):
        out = {}
        prefix = V1 if i % 2 else ALT

        def run(d=d, out=out, prefix=prefix):
            r = requests.get(srv.base + prefix + "/changes", params={"cursor": head, "wait": 10},
                             headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
            out["t"], out["resp"] = time.monotonic(), r
        th = threading.Thread(target=run, daemon=True)
        th.start()
        polls.append((th, out))
    time.sleep(0.8)
    # the server still answers other requests while they wait
    assert alice.get("/devices").status_code == 200
    assert all("resp" not in out for _, out in polls)
    writer.report([op("notes", "insert", {"id": "wake", "title": "up"})])
    t_push = time.monotonic()
    for th, _ in polls:
        th.join(15)
    lat = []
    for _, out in polls:
        assert "resp" in out and out["resp"].status_code == 200, out
        assert [c["id"] for c in out["resp"].json()["changes"]] == ["wake"]
        lat.append(out["t"] - t_push)
    print(f"\n[{backend}] 12 long-polls woken by one push: slowest {max(lat) * 1000:.1f} ms")
    assert max(lat) < 0.5, lat


def test_sigterm_answers_a_waiting_long_poll(make_server):
    srv = start(make_server)
    phone = user(srv, "alice").register("phone")
    head = phone.head()
    th, out = _start_poll(srv, phone.token, {"cursor": head, "wait": 30})
    time.sleep(0.5)
    assert "resp" not in out
    t_sig = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    th.join(10)
    rc = srv.wait_exit(15)
    assert "resp" in out, out
    answered = out["t"] - t_sig
    print(f"\nlong-poll answered {answered * 1000:.1f} ms after SIGTERM; exit code {rc}")
    assert out["resp"].status_code == 200, out["resp"].text
    assert out["resp"].json() == {"changes": [], "cursor": head, "hasMore": False}
    assert answered < 2.0, answered
    assert rc == 0


# --- ack --------------------------------------------------------------------------------


def test_ack_moves_forward_only(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone = alice.register("phone")
    tablet = alice.register("tablet")
    tablet.report([op("notes", "insert", {"id": f"n{i}"}) for i in range(6)])

    r = phone.post("/ack", json={"cursor": 5})
    assert r.status_code == 200, r.text
    assert r.json() == {"deviceId": phone.device_id, "cursor": 5}
    assert phone.post("/ack", json={"cursor": 3}).json() == {"deviceId": phone.device_id,
                                                             "cursor": 5}
    assert phone.get(f"/devices/{phone.device_id}").json()["cursor"] == 5
    assert alice.get(f"/devices/{phone.device_id}").json()["cursor"] == 5
    assert alice.get(f"/devices/{tablet.device_id}").json()["cursor"] == 0

    assert_v1_error(phone.post("/ack", json={"cursor": 7}), 400, "INVALID_REQUEST")
    for body in ({}, {"cursor": "x"}, {"cursor": -1}, {"cursor": 1.5}, {"cursor": None},
                 {"cursor": [1]}, {"cursor": "7"}):
        assert_v1_error(phone.post("/ack", json=body), 400, "INVALID_REQUEST")
    assert phone.get(f"/devices/{phone.device_id}").json()["cursor"] == 5

    # the cursor as a string, as it may come from a stored answer
    assert phone.post("/ack", json={"cursor": "6"}).json()["cursor"] == 6
    # a user token names the device; without it: 400; another user's device: 403
    assert_v1_error(alice.post("/ack", json={"cursor": 6}), 400, "INVALID_REQUEST")
    bob_dev = user(srv, "bob").register("bobs")
    assert_v1_error(alice.post("/ack", json={"cursor": 6, "deviceId": bob_dev.device_id}),
                    403, "FORBIDDEN")
    r = alice.post("/ack", json={"cursor": 6, "deviceId": tablet.device_id})
    assert r.status_code == 200 and r.json() == {"deviceId": tablet.device_id, "cursor": 6}
    assert bob_dev.get(f"/devices/{bob_dev.device_id}").json()["cursor"] == 0
    r = srv.post(f"{ALT}/ack", token=phone.token, json={"cursor": 4})
    assert r.status_code == 200 and r.json()["cursor"] == 6


# --- conflicts ------------------------------------------------------------------------------


def _two_devices(srv):
    alice = user(srv, "alice")
    return alice, alice.register("phone"), alice.register("tablet")


def test_policy_overwrite(make_server):
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("lww", "insert", {"id": "r", "title": "v1", "body": "b1"})])
    tablet.report([op("lww", "update", {"id": "r", "title": "tablet"}, base=1)])
    ans = phone.report([op("lww", "update", {"id": "r", "title": "phone", "body": "pb"},
                           base=1)])
    assert ans["results"] == [{"index": 0, "table": "lww", "id": "r", "status": "applied",
                               "version": 3}]
    assert ans["applied"] == 1 and ans["conflicts"] == []
    assert row(srv, "lww", "r") == ["r", "phone", "pb"]
    assert log_version(srv, "lww", "r") == 3
    # a stale update of a deleted row brings it back
    tablet.report([op("lww", "delete", {"id": "r"}, base=3)])
    ans = phone.report([op("lww", "update", {"id": "r", "title": "back", "body": "x"}, base=3)])
    assert ans["results"][0]["status"] == "applied" and ans["results"][0]["version"] == 5
    assert row(srv, "lww", "r") == ["r", "back", "x"]
    assert alice.get("/conflicts").json() == {"conflicts": [], "totalCount": 0}


def test_policy_skip(make_server):
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("keep", "insert", {"id": "r", "title": "v1", "body": "b1"})])
    tablet.report([op("keep", "update", {"id": "r", "title": "tablet"}, base=1)])
    ans = phone.report([op("keep", "update", {"id": "r", "title": "phone"}, base=1),
                        op("keep", "delete", {"id": "r"}, base=1),
                        op("keep", "insert", {"id": "s", "title": "new"})])
    assert (ans["applied"], ans["unchanged"], ans["skipped"]) == (1, 0, 2)
    assert [(x["status"], x["version"]) for x in ans["results"]] == [
        ("skipped", 2), ("skipped", 2), ("applied", 1)]
    assert ans["conflicts"] == []
    assert row(srv, "keep", "r") == ["r", "tablet", "b1"]
    assert log_version(srv, "keep", "r") == 2
    assert alice.get("/conflicts").json()["totalCount"] == 0
    # with the current base it applies
    ans = phone.report([op("keep", "update", {"id": "r", "title": "phone"}, base=2)])
    assert ans["results"][0]["status"] == "applied"
    assert row(srv, "keep", "r") == ["r", "phone", "b1"]


def test_policy_manual_records_a_conflict(make_server):
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("orders", "insert", {"id": 1, "item": "apple", "qty": 1})])
    tablet.report([op("orders", "update", {"id": 1, "qty": 2}, base=1)])
    ans = phone.report([op("orders", "update", {"id": 1, "item": "pear", "qty": 5}, base=1)],
                       batch_id="m1")
    assert ans["applied"] == 0 and ans["skipped"] == 0
    assert ans["results"] == [{"index": 0, "table": "orders", "id": 1, "status": "conflict",
                               "version": 2}]
    assert len(ans["conflicts"]) == 1
    cf = ans["conflicts"][0]
    assert cf["id"].startswith("cf_")
    assert cf["table"] == "orders" and cf["rowId"] == 1 and cf["action"] == "update"
    assert cf["baseVersion"] == 1 and cf["serverVersion"] == 2
    assert cf["serverData"] == {"id": 1, "item": "apple", "qty": 2}
    assert cf["clientData"] == {"id": 1, "item": "pear", "qty": 5}
    assert row(srv, "orders", 1) == ["1", "apple", "2"]
    assert log_version(srv, "orders", "1") == 2

    listed = alice.get("/conflicts").json()
    assert listed["totalCount"] == 1
    got = listed["conflicts"][0]
    assert set(got) == CONFLICT_KEYS
    assert got["id"] == cf["id"]
    assert {k: got[k] for k in ("table", "deviceId", "userId", "action", "baseVersion",
                                "serverVersion", "serverData", "clientData", "status",
                                "resolution", "resolvedAt")} == {
        "table": "orders", "deviceId": phone.device_id, "userId": "alice",
        "action": "update", "baseVersion": 1, "serverVersion": 2,
        "serverData": {"id": 1, "item": "apple", "qty": 2},
        "clientData": {"id": 1, "item": "pear", "qty": 5},
        "status": "open", "resolution": None, "resolvedAt": None}
    assert ISO_RE.match(got["createdAt"])
    # devices of the same user see it; another user does not
    assert [c["id"] for c in tablet.get("/conflicts").json()["conflicts"]] == [cf["id"]]
    assert user(srv, "bob").get("/conflicts").json() == {"conflicts": [], "totalCount": 0}
    assert srv.get(f"{ALT}/conflicts", token=alice.token).json()["totalCount"] == 1
    # a replay does not record it twice
    again = phone.report([op("orders", "update", {"id": 1, "item": "pear", "qty": 5}, base=1)],
                         batch_id="m1")
    assert again["replayed"] is True and again["conflicts"] == ans["conflicts"]
    assert alice.get("/conflicts").json()["totalCount"] == 1
    # a stale delete is a conflict too
    ans = phone.report([op("orders", "delete", {"id": 1}, base=1)])
    assert ans["results"][0]["status"] == "conflict"
    assert ans["conflicts"][0]["action"] == "delete"
    assert row(srv, "orders", 1) == ["1", "apple", "2"]
    assert alice.get("/conflicts").json()["totalCount"] == 2
    assert_v1_error(alice.get("/conflicts", params={"status": "bogus"}), 400,
                    "INVALID_REQUEST")


def test_conflict_row_id_keeps_the_key_type(make_server):
    """One conflict, one shape: GET /conflicts gives rowId as the report answer and the
    feed give the key (an integer for an integer key, a string for a text key)."""
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("orders", "insert", {"id": 1, "item": "a"}),
                  op("notes", "insert", {"id": "1", "title": "a"})])
    tablet.report([op("orders", "update", {"id": 1, "qty": 2}, base=1),
                   op("notes", "update", {"id": "1", "title": "b", "n": 1}, base=1)])
    ans = phone.report([op("orders", "update", {"id": 1, "qty": 3}, base=1),
                        op("notes", "update", {"id": "1", "n": 3}, base=1)])
    assert [(c["table"], c["rowId"]) for c in ans["conflicts"]] == [("orders", 1), ("notes", "1")]
    listed = alice.get("/conflicts").json()["conflicts"]
    assert sorted((c["table"], repr(c["rowId"])) for c in listed) == [
        ("notes", "'1'"), ("orders", "1")]
    feed = alice.changes()["changes"]
    assert sorted((c["table"], repr(c["id"])) for c in feed) == [("notes", "'1'"), ("orders", "1")]


def test_policy_merge_fields(make_server):
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("notes", "insert", {"id": "m", "title": "t0", "body": "b0", "n": 0})])

    # different fields from the same base: both applied, no conflict
    a = phone.report([op("notes", "update", {"id": "m", "title": "t-phone"}, base=1)])
    assert a["results"][0]["status"] == "applied" and a["results"][0]["version"] == 2
    b = tablet.report([op("notes", "update", {"id": "m", "body": "b-tablet"}, base=1)])
    assert b["conflicts"] == [] and b["applied"] == 1
    assert b["results"] == [{"index": 0, "table": "notes", "id": "m", "status": "merged",
                             "version": 3, "data": {"id": "m", "title": "t-phone",
                                                    "body": "b-tablet", "n": 0}}]
    assert row(srv, "notes", "m") == ["m", "t-phone", "b-tablet", "0"]
    # a full row from the old base: fields the server did not change are applied, fields it
    # changed to the same value as the client are no conflict either
    c = tablet.report([op("notes", "update", {"id": "m", "title": "t-phone", "body": "b-tablet",
                                              "n": 7}, base=1)])
    assert c["conflicts"] == [] and c["results"][0]["status"] == "merged"
    assert row(srv, "notes", "m") == ["m", "t-phone", "b-tablet", "7"]
    v = log_version(srv, "notes", "m")

    # the same field to different values: a conflict naming it; the other fields apply
    d = phone.report([op("notes", "update", {"id": "m", "title": "t-other", "n": 9}, base=v)])
    assert d["results"][0]["status"] == "applied"
    e = tablet.report([op("notes", "update", {"id": "m", "title": "t-mine", "body": "b-new"},
                          base=v)])
    assert e["results"][0]["status"] == "conflict"
    assert e["applied"] == 0
    assert len(e["conflicts"]) == 1
    cf = e["conflicts"][0]
    assert cf["fields"] == ["title"]
    assert cf["baseVersion"] == v and cf["serverVersion"] == v + 1
    assert cf["clientData"] == {"id": "m", "title": "t-mine", "body": "b-new"}
    assert row(srv, "notes", "m") == ["m", "t-other", "b-new", "9"]
    assert e["results"][0]["version"] == log_version(srv, "notes", "m") == v + 2
    listed = alice.get("/conflicts").json()
    assert [x["id"] for x in listed["conflicts"]] == [cf["id"]]
    got = listed["conflicts"][0]
    assert got["fields"] == ["title"] and got["serverVersion"] == v + 1
    # serverData is the server's side at serverVersion (before the client's fields were
    # applied), as the conflict says: base v, server v+1, client this data
    server_side = {"id": "m", "title": "t-other", "body": "b-tablet", "n": 9}
    assert cf["serverData"] == server_side, cf
    assert got["serverData"] == server_side, got


def test_merge_result_reaches_the_merging_device(make_server):
    """After a field merge the row holds fields the pushing device has never seen. The
    device must be able to learn the merged row: from the report's answer or from its
    feed (the feed must not leave the row out as "its own change")."""
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("notes", "insert", {"id": "m", "title": "t0", "body": "b0", "n": 0})])
    cursor = tablet.pull_all()[1]
    phone.report([op("notes", "update", {"id": "m", "title": "t-phone"}, base=1)])
    ans = tablet.report([op("notes", "update", {"id": "m", "body": "b-tablet"}, base=1)])
    assert ans["results"][0]["status"] == "merged"
    merged = {"id": "m", "title": "t-phone", "body": "b-tablet", "n": 0}
    assert row(srv, "notes", "m") == ["m", "t-phone", "b-tablet", "0"]
    in_answer = ans["results"][0].get("data") == merged
    feed = tablet.changes(cursor=cursor)["changes"]
    in_feed = [(c["id"], c["data"]) for c in feed] == [("m", merged)]
    assert in_answer or in_feed, (
        "the merging device cannot learn the merged row: report result "
        f"{ans['results'][0]}, its feed {feed}")


def test_resolve_conflicts(make_server):
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    bob = user(srv, "bob")
    bob_dev = bob.register("bobs")
    phone.report([op("orders", "insert", {"id": i, "item": f"item{i}", "qty": 0})
                  for i in (1, 2, 3, 4)])
    tablet.report([op("orders", "update", {"id": i, "qty": 10}, base=1) for i in (1, 2, 3, 4)])
    ans = phone.report([op("orders", "update", {"id": i, "item": f"phone{i}", "qty": 20},
                           base=1) for i in (1, 2, 3)])
    cfs = {c["rowId"]: c["id"] for c in ans["conflicts"]}
    assert sorted(cfs) == [1, 2, 3]
    ans = bob_dev.report([op("orders", "update", {"id": 4, "qty": 99}, base=1)])
    bob_cf = ans["conflicts"][0]["id"]

    cursor = alice.head()
    # bad resolutions first: nothing changes
    for body in ({}, {"resolution": "whatever"}, {"resolution": 5}, {"resolution": "merge"},
                 {"resolution": "merge", "data": "x"},
                 {"resolution": "keep_server", "data": {"qty": 1}}):
        r = alice.post(f"/conflicts/{cfs[1]}/resolve", json=body)
        assert_v1_error(r, 400, "INVALID_REQUEST")
    assert_v1_error(alice.post("/conflicts/cf_nope/resolve", json={"resolution": "keep_server"}),
                    404, "NOT_FOUND")
    assert_v1_error(alice.post(f"/conflicts/{bob_cf}/resolve", json={"resolution": "take_client"}),
                    403, "FORBIDDEN")
    assert alice.head() == cursor

    # keep_server: the row keeps its values under a new version
    r = alice.post(f"/conflicts/{cfs[1]}/resolve", json={"resolution": "keep_server"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert set(done) == CONFLICT_KEYS
    assert done["id"] == cfs[1] and done["status"] == "resolved"
    assert done["resolution"] == "keep_server" and ISO_RE.match(done["resolvedAt"])
    assert row(srv, "orders", 1) == ["1", "item1", "10"]
    # take_client: the device's data wins
    r = alice.post(f"/conflicts/{cfs[2]}/resolve", json={"resolution": "take_client"})
    assert r.status_code == 200, r.text
    assert r.json()["resolution"] == "take_client"
    assert row(srv, "orders", 2) == ["2", "phone2", "20"]
    # merge: the supplied data (the key comes from the conflict)
    r = srv.post(f"{ALT}/conflicts/{cfs[3]}/resolve", token=phone.token,
                 json={"resolution": "merge", "data": {"item": "phone3", "qty": 15}})
    assert r.status_code == 200, r.text
    assert r.json()["resolution"] == "merge"
    assert row(srv, "orders", 3) == ["3", "phone3", "15"]

    # every resolution is a change in the feed, with a new version
    ch = tablet.changes(cursor=cursor)["changes"]
    assert [(c["id"], c["version"], c["data"]) for c in ch] == [
        (1, 3, {"id": 1, "item": "item1", "qty": 10}),
        (2, 3, {"id": 2, "item": "phone2", "qty": 20}),
        (3, 3, {"id": 3, "item": "phone3", "qty": 15})]
    assert [log_version(srv, "orders", str(i)) for i in (1, 2, 3)] == [3, 3, 3]

    # resolving twice: 409, nothing changes
    for cid in cfs.values():
        assert_v1_error(alice.post(f"/conflicts/{cid}/resolve",
                                   json={"resolution": "take_client"}), 409, "CONFLICT")
    assert row(srv, "orders", 1) == ["1", "item1", "10"]
    assert alice.get("/conflicts").json() == {"conflicts": [], "totalCount": 0}
    resolved = alice.get("/conflicts", params={"status": "resolved"}).json()
    assert sorted(c["id"] for c in resolved["conflicts"]) == sorted(cfs.values())
    assert alice.get("/conflicts", params={"status": "all"}).json()["totalCount"] == 3
    # bob's is still open and his to resolve
    r = bob.post(f"/conflicts/{bob_cf}/resolve", json={"resolution": "keep_server"})
    assert r.status_code == 200, r.text
    assert row(srv, "orders", 4) == ["4", "item4", "10"]


def test_take_client_of_a_partial_update(make_server):
    """A device's update carries only the fields it changed. Taking the client's side
    applies those fields to the row; the row's other columns (here a NOT NULL one the
    client did not send) keep their values."""
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("orders", "insert", {"id": 4, "item": "item4", "qty": 0})])
    tablet.report([op("orders", "update", {"id": 4, "qty": 10}, base=1)])
    ans = phone.report([op("orders", "update", {"id": 4, "qty": 99}, base=1)])
    cid = ans["conflicts"][0]["id"]
    r = alice.post(f"/conflicts/{cid}/resolve", json={"resolution": "take_client"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    assert row(srv, "orders", 4) == ["4", "item4", "99"]
    assert log_version(srv, "orders", "4") == 3


def test_resolve_a_conflict_over_a_delete(make_server):
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("orders", "insert", {"id": 1, "item": "a", "qty": 1}),
                  op("orders", "insert", {"id": 2, "item": "b", "qty": 1})])
    tablet.report([op("orders", "update", {"id": 1, "qty": 2}, base=1),
                   op("orders", "update", {"id": 2, "qty": 2}, base=1)])
    ans = phone.report([op("orders", "delete", {"id": 1}, base=1),
                        op("orders", "delete", {"id": 2}, base=1)])
    del1, del2 = (c["id"] for c in ans["conflicts"])
    cursor = alice.head()
    r = alice.post(f"/conflicts/{del1}/resolve", json={"resolution": "take_client"})
    assert r.status_code == 200, r.text
    assert row(srv, "orders", 1) is None
    r = alice.post(f"/conflicts/{del2}/resolve", json={"resolution": "keep_server"})
    assert r.status_code == 200, r.text
    assert row(srv, "orders", 2) == ["2", "b", "2"]
    ch = alice.changes(cursor=cursor)["changes"]
    assert [(c["id"], c["op"], c["version"]) for c in ch] == [(1, "delete", 3),
                                                              (2, "upsert", 3)]


def _replay(local, changes):
    """Applies a feed's changes to a device's local copy {id: row}."""
    for c in changes:
        if c["deleted"]:
            local.pop(c["id"], None)
        else:
            local[c["id"]] = c["data"]


def test_partial_write_over_unseen_delete_reaches_the_device(make_server):
    """A partial upsert that re-creates a row another device deleted leaves the columns the
    device did not send at their defaults: the device does not hold that row, so its feed
    must bring it (it is not "its own change"), or the device stays out of date for good."""
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    phone.report([op("lww", "insert", {"id": "r", "title": "t0", "body": "b0"})])
    local = {"r": {"id": "r", "title": "t0", "body": "b0"}}
    tablet.report([op("lww", "delete", {"id": "r"})])
    phone.report([op("lww", "upsert", {"id": "r", "title": "t1"})])
    local["r"]["title"] = "t1"  # what the phone wrote, on what it holds
    assert row(srv, "lww", "r") == ["r", "t1", None]
    changes, _ = phone.pull_all()
    _replay(local, changes)
    assert local == {"r": {"id": "r", "title": "t1", "body": None}}, changes

    # a delete the device has seen is no news: its partial re-creation stays its own
    tablet.report([op("lww", "delete", {"id": "r"})])
    cursor = phone.pull_all()[1]
    assert phone.post("/ack", json={"cursor": cursor}).status_code == 200
    phone.report([op("lww", "upsert", {"id": "r", "title": "t2"})])
    assert phone.changes(cursor=cursor)["changes"] == []



def test_partial_bulk_insert_over_unseen_delete_reaches_the_device(make_server):
    """The same through the legacy push, whose inserts go to the database as one multi-row
    statement: a partial insert that re-creates a row another device deleted."""
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    rows = [{"id": f"r{i}", "title": "t0", "body": "b0"} for i in range(4)]
    phone.report([op("lww", "insert", r) for r in rows])
    local = {r["id"]: dict(r) for r in rows}
    tablet.report([op("lww", "delete", {"id": "r2"})])
    ops = [op("lww", "insert", {"id": r["id"], "title": "t0"}) for r in rows]
    r = srv.post("/sync/push", token=phone.token, json={"operations": ops})
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    assert row(srv, "lww", "r2") == ["r2", "t0", None]
    changes, _ = phone.pull_all()
    _replay(local, changes)
    want = {r["id"]: {"id": r["id"], "title": "t0", "body": "b0"} for r in rows}
    want["r2"]["body"] = None
    assert local == want, changes


def push_rounds(dev, name, keys, rounds, lock, done, failures):
    """Pushes `rounds` batches updating every key (in alternating order) from one device,
    counting successes in done["push"] and recording any other answer in failures."""
    for n in range(rounds):
        order = keys[::-1] if n % 2 else keys
        ops = [op("lww", "update", {"id": k, "title": f"{name}{n}"}) for k in order]
        r = dev.post("/report", json={"operations": ops})
        with lock:
            if r.status_code == 200:
                done["push"] += 1
            else:
                failures.append(f"push {r.status_code}: {r.text}")


def test_outside_writes_and_pushes_never_deadlock(make_server, backend):
    """Other programs write the synced rows while devices push the same rows. ferry's
    pushes and the capture triggers of outside statements take their locks in one order,
    so neither side ever fails (PostgreSQL answered "deadlock detected" before), and every
    write is counted in the rows' versions."""
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    keys = [f"r{i}" for i in range(12)]
    phone.report([op("lww", "insert", {"id": k, "title": "t", "body": "b"}) for k in keys])
    rounds, failures, done = 25, [], {"push": 0, "outside": 0}
    lock = threading.Lock()

    def pusher(dev, name):
        push_rounds(dev, name, keys, rounds, lock, done, failures)

    def outsider(name):
        for n in range(rounds):
            order = "DESC" if n % 2 else "ASC"
            # one statement over many rows, in a transaction with a second one: the rows
            # are locked before the capture trigger runs
            sql = (f"UPDATE lww SET body = '{name}{n}' WHERE id IN (SELECT id FROM lww"
                   f" ORDER BY id {order})")
            try:
                srv.db_exec(sql)
                with lock:
                    done["outside"] += 1
            except Exception as e:  # noqa: BLE001 - any failure of the outside write counts
                with lock:
                    failures.append(f"outside: {e}")

    threads = [threading.Thread(target=pusher, args=(phone, "p")),
               threading.Thread(target=pusher, args=(tablet, "t")),
               threading.Thread(target=outsider, args=("a",)),
               threading.Thread(target=outsider, args=("b",))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    print(f"\n[{backend}] {done['push']} pushes and {done['outside']} outside statements,"
          f" {len(failures)} failures")
    assert failures == [], failures[:5]
    assert done == {"push": 2 * rounds, "outside": 2 * rounds}
    # every write is one version of each row, and the feed carries the rows as stored
    state = log_state(srv)
    for k in keys:
        assert state[("lww", k)][0] == 1 + 4 * rounds, (k, state[("lww", k)])
    feed = {c["id"]: c["data"] for c in alice.pull_all()[0] if c["table"] == "lww"}
    for k in keys:
        assert [feed[k]["id"], feed[k]["title"], feed[k]["body"]] == row(srv, "lww", k)


def test_rows_locked_before_outside_writes_never_deadlock_pushes(make_server, backend):
    """Other programs lock synced rows first (SELECT ... FOR UPDATE / NO KEY UPDATE /
    SHARE) and write them later in the same transaction, while devices push the same rows.
    A push holding ferry's writer lock never waits for such a row (it tries the rows with
    NOWAIT and steps back), so the outside write's wait for the writer lock cannot close a
    cycle: PostgreSQL answered "deadlock detected" to one side before."""
    if backend != "postgres":
        pytest.skip("SQLite has no row locks: one writer at a time")
    srv = start(make_server)
    alice, phone, tablet = _two_devices(srv)
    keys = [f"r{i:02d}" for i in range(12)]
    phone.report([op("lww", "insert", {"id": k, "title": "t", "body": "b"}) for k in keys])
    rounds, failures, done = 20, [], {"push": 0, "outside": 0}
    lock = threading.Lock()
    # (strength, keys): the three outsiders lock in key order, so they only queue behind
    # each other; only one takes FOR SHARE, which two holders could not both upgrade.
    outsiders = {"a": ("UPDATE", keys), "b": ("NO KEY UPDATE", keys), "c": ("SHARE", keys[:6])}

    def pusher(dev, name):
        push_rounds(dev, name, keys, rounds, lock, done, failures)

    def outsider(name):
        strength, mine = outsiders[name]
        ids = ", ".join(f"'{k}'" for k in mine)
        for n in range(rounds):
            sql = (f"BEGIN; SELECT id FROM lww WHERE id IN ({ids}) ORDER BY id FOR {strength};"
                   " SELECT pg_sleep(0.02);"
                   f" UPDATE lww SET body = '{name}{n}' WHERE id IN ({ids}); COMMIT;")
            try:
                srv.db_exec(sql)
                with lock:
                    done["outside"] += 1
            except Exception as e:  # noqa: BLE001 - any failure of the outside write counts
                with lock:
                    failures.append(f"outside {name}: {e}")
            time.sleep(0.01)

    threads = [threading.Thread(target=pusher, args=(phone, "p")),
               threading.Thread(target=pusher, args=(tablet, "t"))]
    threads += [threading.Thread(target=outsider, args=(name,)) for name in outsiders]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    print(f"\n[{backend}] {done['push']} pushes and {done['outside']} outside transactions"
          f" in {time.monotonic() - started:.1f}s, {len(failures)} failures")
    assert failures == [], failures[:5]
    assert done == {"push": 2 * rounds, "outside": 3 * rounds}
    state = log_state(srv)
    for i, k in enumerate(keys):
        outside_writes = 3 if i < 6 else 2
        assert state[("lww", k)][0] == 1 + (2 + outside_writes) * rounds, (k, state[("lww", k)])
    feed = {c["id"]: c["data"] for c in alice.pull_all()[0] if c["table"] == "lww"}
    for k in keys:
        assert [feed[k]["id"], feed[k]["title"], feed[k]["body"]] == row(srv, "lww", k)


FK_SCHEMA = [
    "CREATE TABLE lists (id TEXT PRIMARY KEY, name TEXT)",
    "CREATE TABLE items (id TEXT PRIMARY KEY, list_id TEXT REFERENCES lists(id), title TEXT)",
    "CREATE TABLE parts (a INTEGER, b TEXT, PRIMARY KEY (a, b))",
    "CREATE TABLE things (id INTEGER PRIMARY KEY, pa INTEGER, pb TEXT,"
    " FOREIGN KEY (pa, pb) REFERENCES parts(a, b))",
    "INSERT INTO lists VALUES ('L1', 'one'), ('L2', 'two')",
    "INSERT INTO parts VALUES (1, 'x'), (2, 'y')",
]


def test_parent_rows_locked_by_outside_writers_never_deadlock_pushes(make_server, backend):
    """A device inserts rows whose foreign keys name parent rows that another program holds
    FOR UPDATE while it writes the synced child table. The foreign-key check's KEY SHARE
    on the parent would wait for that program while the push holds ferry's writer lock,
    which the program's own write waits for: PostgreSQL answered "deadlock detected".
    Pushes now lock the parents first with NOWAIT and step back; both sides succeed. A
    two-column foreign key (to a table that is not synced) is locked the same way."""
    if backend != "postgres":
        pytest.skip("SQLite has no row locks: one writer at a time")
    srv = start(make_server, schema=FK_SCHEMA,
                flags=("--allowed-tables", "items,things", "--conflict-policy", "items=overwrite"))
    alice = user(srv, "alice")
    phone, tablet = alice.register("phone"), alice.register("tablet")
    rounds, failures, done = 15, [], {"push": 0, "outside": 0}
    lock = threading.Lock()

    def pusher(dev, name):
        for n in range(rounds):
            ops = [op("items", "insert", {"id": f"{name}{n}-{k}", "list_id": f"L{k % 2 + 1}",
                                          "title": "t"}) for k in range(4)]
            ops.append(op("things", "insert", {"id": hash((name, n)) % 1000000,
                                               "pa": n % 2 + 1, "pb": "xy"[n % 2]}))
            r = dev.post("/report", json={"operations": ops})
            with lock:
                if r.status_code == 200:
                    done["push"] += 1
                else:
                    failures.append(f"push {r.status_code}: {r.text}")

    def outsider(parent, child_sql):
        for n in range(rounds):
            sql = (f"BEGIN; {parent} FOR UPDATE; SELECT pg_sleep(0.03); {child_sql}; COMMIT;")
            try:
                srv.db_exec(sql)
                with lock:
                    done["outside"] += 1
            except Exception as e:  # noqa: BLE001 - any failure of the outside write counts
                with lock:
                    failures.append(f"outside: {e}")
            time.sleep(0.01)

    threads = [threading.Thread(target=pusher, args=(phone, "p")),
               threading.Thread(target=pusher, args=(tablet, "t")),
               threading.Thread(target=outsider, args=(
                   "SELECT id FROM lists ORDER BY id",
                   "UPDATE items SET title = 'o' WHERE list_id = 'L1'")),
               threading.Thread(target=outsider, args=(
                   "SELECT a FROM parts ORDER BY a",
                   "UPDATE things SET pb = pb WHERE pa = 1"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert failures == [], failures[:5]
    assert done == {"push": 2 * rounds, "outside": 2 * rounds}
    assert count(srv, "things") == 2 * rounds
    assert int(srv.db_query("SELECT COUNT(*) FROM items WHERE id LIKE 'p%' OR id LIKE 't%'")[0][0]) \
        == 2 * rounds * 4
