"""attack19: attacks on the PostgreSQL numbering without a lock (sync/settle.h). Each test
runs `ferry serve` on one database, with another program (psql) beside it:

- an operator's `ALTER SEQUENCE ferry_change_seq CACHE 20`: another program's session
  would hand out seqs from its cache below a head already read (a skip); ferry sets the
  cache back to 1 when it starts, and the program's later change is read."""

import os
import threading
import time

import pytest
import requests

from conftest import wait_until
from devsync import new_batch_id, op
from test_pg_writers import (FLAGS, SCHEMA, Parked, Psql, Reader, device,  # noqa: F401
                             log_versions, nodes, on, safe_head)

pytestmark = pytest.mark.postgres_only


def cache_size(srv):
    return int(srv.db_query("SELECT cache_size FROM pg_sequences"
                            " WHERE sequencename = 'ferry_change_seq'")[0][0])


def test_a_cached_sequence_is_set_back_to_one_at_start(nodes):
    """With CACHE 20, a program's session draws 20 seqs at its first write and numbers its
    next write from them, below the mark a push wrote meanwhile: a reader's cursor would
    already be past it. ferry repairs the cache when it starts, so the program's second
    change lands above the reader's cursor and is read, once."""
    (a,) = nodes(1)
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    a.db_exec("ALTER SEQUENCE ferry_change_seq CACHE 20")
    a.restart()
    assert cache_size(a) == 1
    prog = Psql(a)
    prog.run("INSERT INTO things VALUES ('p1', 1, 'psql');")
    ans = on(dev, a).report([op("things", "upsert", {"id": "pushed", "v": 1})])
    reader.pull()
    assert reader.cursor == ans["cursor"] == safe_head(a)
    prog.run("INSERT INTO things VALUES ('p2', 2, 'psql');")
    assert prog.close() == []
    p2 = int(a.db_query("SELECT seq FROM ferry_changes WHERE pk = 'p2'")[0][0])
    assert p2 > reader.cursor

    def pulled():
        reader.pull()
        return ("things", "p2") in reader.latest()

    assert wait_until(pulled, timeout=5)
    assert reader.dups == [] and reader.latest() == log_versions(a)


def test_a_cache_given_while_running_is_set_back_to_one(nodes):
    (a,) = nodes(1)
    a.db_exec("ALTER SEQUENCE ferry_change_seq CACHE 20")
    assert wait_until(lambda: cache_size(a) == 1, timeout=10)


def test_reads_held_back_by_a_transaction_do_not_tie_up_every_worker(nodes):
    """A program holds a write open below a committed push, so every read finds committed
    entries above the head and, when it waits, waits its full 100 ms. 16 reads at once
    against 8 worker threads: when each waited, none answered in under 100 ms; with at most
    4 waits at once, the reads that find no free wait answer at once (at least 4 of them),
    and every one answers the same empty page at the head."""
    (a,) = nodes(1)
    dev = device(a, "writer")
    reader = device(a, "reader")
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');")
    ans = on(dev, a).report([op("things", "upsert", {"id": "pushed", "v": 1})])
    top = int(a.db_query("SELECT MAX(seq) FROM ferry_changes")[0][0])
    assert ans["cursor"] == safe_head(a) < top
    url = a.base + "/api/v1/sync/changes"
    params = {"cursor": ans["cursor"], "limit": 10}
    answers, lock, gate = [], threading.Lock(), threading.Barrier(16)

    def read():
        with requests.Session() as s:
            gate.wait(10)
            started = time.monotonic()
            r = s.get(url, params=params, timeout=20,
                      headers={"Authorization": f"Bearer {reader.token}"})
            took = time.monotonic() - started
            with lock:
                answers.append((r.status_code, r.json(), took))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 16
    assert {(code, body["cursor"], len(body["changes"])) for code, body, _ in answers} == {
        (200, ans["cursor"], 0)}
    assert sum(took < 0.1 for _, _, took in answers) >= 4, sorted(t for _, _, t in answers)
    prog.run("COMMIT;")
    assert prog.close() == []


class _OtherDb:
    """What Psql needs to open a session on another database of the cluster."""

    def __init__(self, pg, name):
        self.pg, self.db_name = pg, name


@pytest.mark.parametrize("kind", ["open", "prepared"])
def test_a_transaction_in_another_database_holds_no_head_back(nodes, pg_cluster, kind):
    if kind == "prepared":
        pg_cluster.psql("ALTER SYSTEM SET max_prepared_transactions = 4")
        pg_cluster.stop()
        pg_cluster.start()
    (a,) = nodes(1)
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    other = Psql(_OtherDb(pg_cluster, pg_cluster.create_database()))
    other.run("BEGIN; CREATE TABLE elsewhere (x INTEGER); INSERT INTO elsewhere VALUES (1);")
    if kind == "prepared":
        other.run("PREPARE TRANSACTION 'attack19';")
    try:
        ans = on(dev, a).report([op("things", "upsert", {"id": "pushed", "v": 1})])
        pushed = int(a.db_query("SELECT seq FROM ferry_changes WHERE pk = 'pushed'")[0][0])
        assert ans["cursor"] == pushed
        reader.pull()
        assert reader.cursor == pushed and ("things", "pushed") in reader.latest()
    finally:
        other.run("ROLLBACK PREPARED 'attack19';" if kind == "prepared" else "ROLLBACK;")
    assert other.close() == []
    assert reader.dups == [] and reader.latest() == log_versions(a)



@pytest.mark.parametrize("point", ["push.before_commit", "push.before_mark",
                                   "push.after_commit"])
def test_a_node_killed_in_a_push_retried_elsewhere_is_applied_and_read_once(
        _servers, pg_cluster, point):
    a = _servers("postgres", *FLAGS, pg=pg_cluster, schema=list(SCHEMA))
    b = _servers("postgres", *FLAGS, pg=pg_cluster, db_url=a.db_url,
                 env={"FERRY_CRASH_AT": point})
    b.pg, b.db_name = a.pg, a.db_name
    dev, other = device(a, "writer"), device(a, "other")
    readers = [Reader(device(a, f"reader-{i}"), [a]) for i in range(2)]
    for r in readers:
        r.pull()
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');")
    batch = new_batch_id()
    ops = [op("things", "upsert", {"id": f"b{i}", "v": i}) for i in range(5)]
    try:
        on(dev, b).post("/report", timeout=10, json={"operations": ops, "batchId": batch})
    except Exception:  # the node died mid-answer
        pass
    assert wait_until(lambda: b.proc.poll() is not None, timeout=10)
    committed = point != "push.before_commit"
    assert int(a.db_query("SELECT COUNT(*) FROM things WHERE id LIKE 'b%'")[0][0]) == (
        5 if committed else 0)
    on(other, a).report([op("things", "upsert", {"id": "o1", "v": 1})])
    readers[0].pull()
    ans = on(dev, a).report(ops, batch_id=batch)
    assert ans["applied"] == 5
    # the held write is below: the answer is the head, safe to pull from
    assert ans["cursor"] == safe_head(a)
    held = int(a.db_query("SELECT MIN(seq) FROM ferry_changes WHERE tbl = 'things'")[0][0])
    for r in readers:
        r.pull()
        assert r.cursor < held + 1 and ("things", "held") not in r.latest()
    prog.run("COMMIT;")
    assert prog.close() == []
    on(other, a).report([op("things", "upsert", {"id": "o2", "v": 2})])
    for r in readers:
        r.pull()
        assert r.dups == [] and r.latest() == log_versions(a)
    assert {k for t, k in readers[0].latest() if t == "things"} == {
        "held", "o1", "o2", "b0", "b1", "b2", "b3", "b4"}
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE pk LIKE 'b%'"
                      " AND version <> 1")[0][0] == "0"


PREV_BIN = os.environ.get("FERRY_PREV_BIN")


@pytest.mark.skipif(not PREV_BIN, reason="FERRY_PREV_BIN (ferry at schema 15) not given")
def test_an_upgrade_from_schema_15_numbers_pending_entries_once(_servers, pg_cluster):
    a = _servers("postgres", *FLAGS, pg=pg_cluster, schema=list(SCHEMA), start=False)
    new_command = a.command
    a.command = lambda: [PREV_BIN, *new_command()[1:]]
    a.start()
    assert a.db_query("SELECT MAX(version) FROM ferry_schema_version")[0][0] == "15"
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    on(dev, a).report([op("things", "upsert", {"id": "before", "v": 0})])
    reader.pull()
    a.stop()
    a.db_exec("INSERT INTO things VALUES ('old-1', 1, 'psql'), ('old-2', 2, 'psql')",
              "UPDATE things SET v = 3 WHERE id = 'before'")
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "3"
    a.command = new_command
    a.start()
    assert a.db_query("SELECT MAX(version) FROM ferry_schema_version")[0][0] == "16"
    numbered = [int(v) for (v,) in a.db_query(
        "SELECT seq FROM ferry_changes WHERE pk IN ('old-1', 'old-2', 'before')")]
    assert min(numbered) > reader.cursor
    ans = on(dev, a).report([op("things", "upsert", {"id": "after", "v": 1})])
    assert ans["cursor"] > max(numbered)
    reader.pull()
    assert reader.cursor == ans["cursor"]
    got = reader.latest()
    assert {k for t, k in got if t == "things"} == {"before", "old-1", "old-2", "after"}
    assert got[("things", "before")] == (2, False)
    assert reader.dups == [] and got == log_versions(a)
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "0"


HELD = {
    "read-committed": "BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');",
    "repeatable-read": "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT COUNT(*) FROM things;"
                       " INSERT INTO things VALUES ('held', 1, 'psql');",
    "serializable": "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT COUNT(*) FROM things;"
                    " INSERT INTO things VALUES ('held', 1, 'psql');",
    "savepoint": "BEGIN; SAVEPOINT s1; INSERT INTO things VALUES ('held', 1, 'psql');"
                 " RELEASE SAVEPOINT s1;",
    "savepoint-rolled-back": "BEGIN; SAVEPOINT s1; INSERT INTO things VALUES ('gone', 1, 'p');"
                             " ROLLBACK TO SAVEPOINT s1;"
                             " INSERT INTO things VALUES ('held', 1, 'psql');",
    "for-update": "BEGIN; SELECT id FROM things WHERE id = 'seed' FOR UPDATE;"
                  " INSERT INTO things VALUES ('held', 1, 'psql');",
}


@pytest.mark.parametrize("kind", sorted(HELD))
def test_a_write_held_open_in_any_isolation_is_read_once(nodes, kind):
    a, b = nodes(2)
    dev = device(a, "writer")
    readers = [Reader(device(n, f"reader-{i}"), [a, b]) for i, n in enumerate((a, b))]
    on(dev, a).report([op("things", "upsert", {"id": "seed", "v": 0})])
    prog = Psql(a)
    prog.run(HELD[kind])
    # the held entry is the newest draw (invisible until its commit)
    held = int(a.db_query("SELECT last_value FROM ferry_change_seq")[0][0])
    for i in range(6):
        ans = on(dev, (a, b)[i % 2]).report([op("things", "upsert", {"id": f"p{i}", "v": i})])
        assert ans["applied"] == 1 and ans["cursor"] <= safe_head(a)
        for r in readers:
            r.pull()
            assert ("things", "held") not in r.latest()
    first_pushed = int(a.db_query("SELECT MIN(seq) FROM ferry_changes WHERE pk LIKE 'p%'")[0][0])
    for r in readers:
        assert r.cursor < first_pushed
    assert all(r.cursor < held for r in readers)
    prog.run("COMMIT;")
    assert prog.close() == []

    def all_read():
        for r in readers:
            r.pull()
        return all(("things", "held") in r.latest() for r in readers)

    assert wait_until(all_read, timeout=10)
    for r in readers:
        assert r.dups == [] and r.latest() == log_versions(a)
    assert ("things", "gone") not in log_versions(a)


def test_long_polls_parked_behind_a_held_write_answer_once_with_both_changes(nodes):
    a, b = nodes(2)
    dev = device(a, "writer")
    waiters = [device(n, f"w{i}") for i, n in enumerate((a, b))]
    on(dev, a).report([op("things", "upsert", {"id": "seed", "v": 0})])
    cursors = [w.changes(tables="things")["cursor"] for w in waiters]
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');")
    parked = Parked(waiters, "things", cursors)
    ans = on(dev, b).report([op("things", "upsert", {"id": "p1", "v": 1})])
    assert ans["cursor"] < int(a.db_query(
        "SELECT seq FROM ferry_changes WHERE pk = 'p1'")[0][0])
    assert all(t.is_alive() for t in parked.threads)
    prog.run("COMMIT;")
    assert prog.close() == []
    for k, (took, page) in enumerate(parked.join()):
        assert took < 10, (k, took, page)
        assert sorted(ch["id"] for ch in page["changes"]) == ["held", "p1"], (k, page)
        assert page["cursor"] == max(ch["seq"] for ch in page["changes"])


def test_a_purge_behind_a_held_write_keeps_tombstones_above_the_head(_servers, pg_cluster):
    a = _servers("postgres", *FLAGS, "--tombstone-retention", "0", pg=pg_cluster,
                 schema=list(SCHEMA))
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    on(dev, a).report([op("things", "upsert", {"id": f"d{i}", "v": i}) for i in range(2)])
    reader.pull()
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');")
    on(dev, a).report([op("things", "delete", {"id": "d1"})])
    gone = int(a.db_query("SELECT seq FROM ferry_changes WHERE pk = 'd1' AND deleted = 1")[0][0])
    r = a.post("/api/v1/admin/purge", token=a.admin_token)
    assert r.status_code == 200, r.text
    assert r.json()["tombstones_purged"] == 0 and r.json()["horizon"] < gone
    prog.run("COMMIT;")
    assert prog.close() == []

    def read_both():
        reader.pull()
        got = reader.latest()
        return ("things", "held") in got and got[("things", "d1")] == (2, True)

    assert wait_until(read_both, timeout=10)
    assert reader.dups == [] and reader.latest() == log_versions(a)
    r = a.post("/api/v1/admin/purge", token=a.admin_token)
    assert r.status_code == 200, r.text
    assert r.json()["tombstones_purged"] == 1 and r.json()["horizon"] == gone
    page = on(reader.client, a).changes(cursor=reader.cursor, includeOwn="true")
    assert page["changes"] == [] and page["cursor"] == reader.cursor


def test_a_streamed_page_behind_a_held_write_stops_at_the_head(nodes):
    a, b = nodes(2)
    dev = device(a, "writer")
    reader = device(b, "reader")
    on(dev, a).report([op("things", "upsert", {"id": "seed", "v": 0})])
    start = on(reader, a).changes(cursor=0, includeOwn="true")["cursor"]
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');")
    for i in range(4):
        on(dev, (a, b)[i % 2]).report([op("things", "upsert", {"id": f"p{i}", "v": i})])
    params = {"cursor": start, "includeOwn": "true", "limit": 100}
    for node in (a, b):
        streamed = on(reader, node).get("/changes", params={**params, "stream": "true"})
        plain = on(reader, node).get("/changes", params=params)
        assert streamed.status_code == plain.status_code == 200
        assert streamed.json() == plain.json() == {"changes": [], "cursor": start,
                                                   "hasMore": False}
    prog.run("COMMIT;")
    assert prog.close() == []

    def after():
        page = on(reader, b).get("/changes", params={**params, "stream": "true"}).json()
        return sorted(ch["id"] for ch in page["changes"]) == ["held", "p0", "p1", "p2", "p3"]

    assert wait_until(after, timeout=10)
