"""The frame the server puts around each request (http/server.c).

A handler's error is rendered by the server in the error format of the surface the route
belongs to: EonaCat.Sync's v1 JSON, {"success": false, "error": ...} for cloud-sync-api and
PhoenixKit, plain text for tus. Each case is an error the handler returns (not one the
router or the authentication gives), so it goes through the server's rendering.

The server lends a route its store connection only while the handler runs: a parked
long-poll holds none, so more of them than the pool has connections still leave the
server answering."""

import threading
import time

import requests

from conftest import assert_legacy_error, assert_v1_error
from devsync import V1, op, start, user

PK = "/phoenix_kit/sync/api"


def test_v1_surfaces_answer_v1_errors(server):
    admin = server.admin_token
    r = server.get("/api/v1/admin/tokens/no-such-token", token=admin)
    assert_v1_error(r, 404, "NOT_FOUND")

    r = server.get("/api/v1/sync/conflicts?status=bogus", token=admin)
    body = assert_v1_error(r, 400, "INVALID_REQUEST")
    assert body["details"] == "status must be open, resolved or all"

    r = server.get("/api/v1/admin/sites/no-such-site", token=admin)
    body = assert_v1_error(r, 404, "NOT_FOUND")
    assert body["details"] == "no such site connection"

    r = server.get("/api/v1/sync/session/no-such-session/status", token=admin)
    body = assert_v1_error(r, 404, "NOT_FOUND")
    assert body["details"] == "no such session"

    r = server.post("/api/v1/admin/tokens", token=admin, json=[])
    body = assert_v1_error(r, 400, "INVALID_REQUEST")
    assert body["details"] == "request body must be a JSON object"


def test_legacy_surface_answers_success_false(server):
    admin = server.admin_token
    r = server.post("/sync/push", token=admin,
                    json={"operations": [{"table": "no_such_table", "op": "upsert",
                                          "data": {"id": "1"}}]})
    assert assert_legacy_error(r, 400)["error"] == "Invalid table"

    r = server.post("/sync/pull", token=admin, json={"tables": ["no_such_table"]})
    assert assert_legacy_error(r, 400)["error"] == "Invalid table"

    r = server.post("/sync/pull", token=admin, json=[1])
    assert assert_legacy_error(r, 400)["error"] == "request body must be a JSON object"


def test_phoenixkit_surface_answers_success_false(server):
    r = server.post(f"{PK}/list-tables", json={"auth_token_hash": "0" * 64})
    assert assert_legacy_error(r, 401)["error"] == "Invalid connection"

    r = server.post(f"{PK}/update-status",
                    json={"sender_url": "http://x", "auth_token_hash": "0" * 64,
                          "status": "bogus"})
    assert assert_legacy_error(r, 400)["error"] == "Invalid status value"

    r = server.post(f"{PK}/table-records",
                    json={"auth_token_hash": "0" * 64, "table_name": "t", "limit": 0})
    assert assert_legacy_error(r, 400)["error"] == "limit must be an integer from 1 to 100"


def test_tus_surface_answers_plain_text(server):
    r = server.delete("/tus/no-such-upload", token=server.admin_token,
                      headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 404, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.text.endswith("\n") and "{" not in r.text


def test_parked_long_polls_hold_no_store_connection(make_server):
    # one HTTP thread: a pool of 8 connections (1 + 7 for background work)
    srv = start(make_server, "--threads", "1")
    alice = user(srv, "alice")
    devs = [alice.register(f"d{i}") for i in range(10)]
    writer = alice.register("writer")
    head = alice.head()
    polls = []
    for d in devs:
        out = {}

        def run(d=d, out=out):
            out["resp"] = requests.get(srv.base + V1 + "/changes",
                                       params={"cursor": head, "wait": 10},
                                       headers={"Authorization": f"Bearer {d.token}"},
                                       timeout=30)
        th = threading.Thread(target=run, daemon=True)
        th.start()
        polls.append((th, out))
    time.sleep(1.0)
    # ten parked polls, more than the pool's connections: a request needing one still runs
    t0 = time.monotonic()
    assert alice.get("/devices").status_code == 200
    assert time.monotonic() - t0 < 2
    assert all("resp" not in out for _, out in polls)
    writer.report([op("notes", "insert", {"id": "wake", "title": "up"})])
    for th, out in polls:
        th.join(15)
        assert "resp" in out and out["resp"].status_code == 200, out
        assert [c["id"] for c in out["resp"].json()["changes"]] == ["wake"]
