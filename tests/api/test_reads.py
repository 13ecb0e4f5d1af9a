"""Reads written straight from the rows (issue 14): the feed, the Pinakes changes call and
the cloud-sync-api pull print JSON text from the result rows without building a JSON tree.
What a client parses stays what it always was: every kind of value, text with control
characters and any Unicode, integers beyond 2^53, reals, NaN and infinities (null),
booleans, text that is not UTF-8 (its key left out, as before), large pages with every
row, and long-polls woken together that share one read answer each its own question."""

import json
import threading
import time

import requests

from devsync import SERVER_FLAGS, op, start, user

VALS = ("CREATE TABLE vals (id TEXT PRIMARY KEY, t TEXT, i BIGINT, r DOUBLE PRECISION,"
        " flag BOOLEAN)")
TEXT = "ctl \x01\x1f tab\t nl\n cr\r quote\" back\\ slash/ \u00e9 \u20ac \U0001F600 \u2028 \x7f"
VALUES = [
    {"id": "text", "t": TEXT, "i": None, "r": None, "flag": None},
    {"id": "big", "t": "", "i": 9007199254740993, "r": 0.1, "flag": True},
    {"id": "edge", "t": "x", "i": -9223372036854775808, "r": 1e300, "flag": False},
    {"id": "max", "t": "y", "i": 9223372036854775807, "r": -2.5e-7, "flag": True},
]


def legacy_pull(srv, token, **body):
    r = srv.post("/sync/pull", token=token, json=body)
    assert r.status_code == 200, r.text
    return r


def test_values_read_as_they_were_written(make_server, backend):
    srv = make_server("--allowed-tables", "vals", schema=[VALS])
    ops = [{"table": "vals", "action": "insert", "data": v} for v in VALUES]
    r = srv.post("/sync/push", token=srv.admin_token, json={"operations": ops})
    assert r.status_code == 200, r.text
    inf = "9e999" if backend == "sqlite" else "'Infinity'::float8"
    nan = "NULL" if backend == "sqlite" else "'NaN'::float8"  # SQLite keeps no NaN
    srv.db_exec(f"INSERT INTO vals (id, t, r) VALUES ('inf', 'i', {inf})",
                f"INSERT INTO vals (id, t, r) VALUES ('nan', 'n', {nan})")
    want = {v["id"]: v for v in VALUES}
    want["inf"] = {"id": "inf", "t": "i", "i": None, "r": None, "flag": None}
    want["nan"] = {"id": "nan", "t": "n", "i": None, "r": None, "flag": None}

    # the legacy pull: rows under their table
    r = legacy_pull(srv, srv.admin_token, tables=["vals"])
    body = json.loads(r.text)  # strict: no NaN, no Infinity
    assert set(body) == {"success", "data", "limit", "deleted", "next_cursor", "has_more"}
    assert {row["id"]: row for row in body["data"]["vals"]} == want
    assert body["deleted"] == {"vals": []}
    # control characters travel escaped, the rest of Unicode as it is (UTF-8)
    assert "\\u0001\\u001F tab\\t nl\\n cr\\r quote\\\" back\\\\ slash/" in r.text
    assert "\U0001F600".encode() in r.content

    # the Pinakes feed: change objects
    r = srv.get("/api/v1/sync/changes", token=srv.admin_token, params={"limit": 1000})
    assert r.status_code == 200, r.text
    body = json.loads(r.text)
    assert set(body) == {"changes", "cursor", "hasMore"}
    got = {c["id"]: c for c in body["changes"]}
    assert {k: c["data"] for k, c in got.items()} == want
    for c in body["changes"]:
        assert c["op"] == "upsert" and c["deleted"] is False and c["table"] == "vals"
        assert isinstance(c["seq"], int) and c["version"] == 1
        assert c["updatedAt"].endswith("Z") and len(c["updatedAt"]) == 24
    assert body["cursor"] == max(c["seq"] for c in body["changes"])


def test_text_that_is_not_utf8_leaves_its_key_out(make_server, backend):
    if backend != "sqlite":
        return  # PostgreSQL refuses such text itself
    srv = make_server("--allowed-tables", "vals", schema=[VALS])
    srv.db_exec("INSERT INTO vals (id, t, i) VALUES ('bad', CAST(x'ff61' AS TEXT), 7)")
    r = srv.get("/api/v1/sync/changes", token=srv.admin_token)
    assert r.status_code == 200, r.text
    (change,) = r.json()["changes"]
    assert change["id"] == "bad" and change["data"] == {"id": "bad", "i": 7, "r": None,
                                                        "flag": None}
    body = legacy_pull(srv, srv.admin_token).json()
    assert body["data"]["vals"] == [{"id": "bad", "i": 7, "r": None, "flag": None}]


def test_a_large_page_is_valid_json_with_every_row(make_server):
    srv = make_server("--allowed-tables", "vals", schema=[VALS])
    n = 5000
    for start_at in range(0, n, 1000):
        ops = [{"table": "vals", "action": "insert",
                "data": {"id": f"r{k:05d}", "t": "row \"%d\"\n" % k, "i": k, "r": k / 4,
                         "flag": k % 2 == 0}} for k in range(start_at, start_at + 1000)]
        r = srv.post("/sync/push", token=srv.admin_token, json={"operations": ops})
        assert r.status_code == 200, r.text
    srv.post("/sync/push", token=srv.admin_token,
             json={"operations": [{"table": "vals", "action": "delete", "data": {"id": "r00007"}}]})
    r = legacy_pull(srv, srv.admin_token, tables=["vals"], limit=5000)
    assert len(r.content) > 300_000
    body = json.loads(r.text)
    rows = body["data"]["vals"]
    assert len(rows) == n - 1 and body["deleted"] == {"vals": ["r00007"]}
    assert body["has_more"] is False
    for row in rows:
        k = int(row["id"][1:])
        assert row == {"id": row["id"], "t": "row \"%d\"\n" % k, "i": k, "r": k / 4,
                       "flag": k % 2 == 0}

    # the feed in pages of 1000, each valid JSON, every row once
    seen, cursor = [], 0
    while True:
        r = srv.get("/api/v1/sync/changes", token=srv.admin_token,
                    params={"cursor": cursor, "limit": 1000})
        assert r.status_code == 200, r.text
        page = json.loads(r.text)
        seen += [c["id"] for c in page["changes"]]
        cursor = page["cursor"]
        if not page["hasMore"]:
            break
    assert len(seen) == len(set(seen)) == n
    assert sorted(seen) == [f"r{k:05d}" for k in range(n)]


def _poll(srv, token, params, out):
    r = requests.get(srv.base + "/api/v1/sync/changes", params=params,
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    out["resp"] = r


def test_long_polls_woken_together_each_get_their_own_answer(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    phone, tablet, writer = (alice.register(n) for n in ("phone", "tablet", "writer"))
    head = alice.head()
    polls = []
    # the same question several times (one read answers them), and different ones: the
    # writer's own (its change is left out), another table's, another cursor's
    askers = [(phone, {}), (phone, {}), (tablet, {}), (tablet, {}), (phone, {}),
              (writer, {}), (phone, {"tables": "orders"})]
    for dev, extra in askers:
        out = {}
        params = {"cursor": head, "wait": 3, **extra}
        th = threading.Thread(target=_poll, args=(srv, dev.token, params, out), daemon=True)
        th.start()
        polls.append((th, out, dev, extra))
    time.sleep(0.8)
    writer.report([op("notes", "insert", {"id": "n1", "title": "hello"})])
    t_pushed = time.monotonic()
    for th, out, dev, extra in polls:
        th.join(15)
        assert out["resp"].status_code == 200, out["resp"].text
        body = out["resp"].json()
        if dev is writer or extra:  # nothing for them: they waited their time out
            assert body["changes"] == [], body
            assert time.monotonic() - t_pushed > 1.0
        else:
            assert [(c["table"], c["id"], c["data"]["title"]) for c in body["changes"]] == [
                ("notes", "n1", "hello")]
            assert body["cursor"] == head + 1 and body["hasMore"] is False
