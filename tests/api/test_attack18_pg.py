"""attack18: the PostgreSQL numbering as changes are written (capture triggers draw each
entry's seq from a sequence; readers stop at the safe head of sync/settle.h). Each test
runs two `ferry serve` on one database, with another program (psql) beside them:

- a program's write held open while a push commits: the push answers a cursor safe to
  pull from, and the program's change, numbered below the push's, is read once it commits;
- a push failing on its last operation moves no head and leaves no entry, and the feed
  reads on across the seqs it drew;
- a program's uncommitted insert of a key a push inserts: the push waits and retries,
  other pushes go on, nothing answers 500 and every change is read once;
- a push whose user trigger writes another table wakes that table's waiters on both nodes;
- a node killed inside a numbering push, before or after its commit, leaves no hole;
- changes another program commits while no node runs, under older capture triggers;
- a user's trigger added and dropped between pushes."""

import threading
import time

import pytest

from conftest import wait_until
from devsync import op
from test_pg_writers import (FLAGS, SCHEMA, Parked, Psql, Reader, device,  # noqa: F401
                             log_versions, nodes, on, safe_head)

pytestmark = pytest.mark.postgres_only


def head(srv):
    return safe_head(srv)


def test_a_program_holding_a_write_open_while_a_push_commits_is_not_skipped(nodes):
    a, b = nodes(2)
    dev = device(a, "writer")
    reader = Reader(device(b, "reader"), [a, b])
    reader.pull()
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('psql-1', 1, 'psql');")
    ans = on(dev, b).report([op("things", "upsert", {"id": "pushed", "v": 1})])
    assert ans["applied"] == 1
    pushed = int(a.db_query("SELECT seq FROM ferry_changes WHERE pk = 'pushed'")[0][0])
    assert ans["cursor"] < pushed  # the head, below the program's change
    reader.pull()
    assert reader.cursor == ans["cursor"]
    assert ("things", "pushed") not in reader.latest()
    prog.run("COMMIT;")
    assert prog.close() == []

    def pulled():
        reader.pull()
        return ("things", "psql-1") in reader.latest()

    assert wait_until(pulled, timeout=10), a.db_query(
        "SELECT tbl, pk, seq FROM ferry_changes WHERE tbl = 'things'")
    assert reader.dups == [] and reader.latest() == log_versions(a)


def test_a_push_failing_on_its_last_operation_moves_no_head(nodes):
    a, b = nodes(2)
    dev = device(a, "writer")
    reader = Reader(device(b, "reader"), [a, b])
    on(dev, b).report([op("things", "upsert", {"id": "first", "v": 0})])
    reader.pull()
    before = head(a)
    for node in (a, b):
        good = [op("things", "upsert", {"id": f"k{i}", "v": i}) for i in range(20)]
        r = on(dev, node).post("/report", json={
            "operations": good + [op("things", "upsert", {"id": "bad", "v": "not a number"})]})
        assert 400 <= r.status_code < 500, r.text
        assert head(a) == before
        assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE pk LIKE 'k%'")[0][0] == "0"
    # the seqs the failed tries drew are holes the feed reads across
    ans = on(dev, b).report([op("things", "upsert", {"id": "after", "v": 1})])
    assert ans["cursor"] > before
    reader.pull(a)
    assert reader.cursor == ans["cursor"]
    assert reader.dups == [] and reader.latest() == log_versions(a)
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "0"


def test_an_uncommitted_insert_of_a_pushed_key_answers_no_500(nodes):
    a, b = nodes(2)
    slow, other = device(a, "slow"), device(b, "other")
    reader = Reader(device(a, "reader"), [a, b])
    prog = Psql(a)
    prog.run("BEGIN; INSERT INTO things VALUES ('held', 1, 'psql');")
    held = {}
    th = threading.Thread(target=lambda: held.update(r=on(slow, b).post("/report", json={
        "operations": [op("things", "upsert", {"id": "held", "v": 2, "who": "push"}),
                       op("things", "upsert", {"id": "beside", "v": 2})]})))
    th.start()
    statuses, started = [], time.monotonic()
    while time.monotonic() - started < 1.0:  # the held push retries meanwhile
        for node in (a, b):
            r = on(other, node).post("/report", json={"operations": [
                op("things", "upsert", {"id": f"o{len(statuses)}", "v": 1})]})
            statuses.append(r.status_code)
    prog.run("COMMIT;")
    assert prog.close() == []
    th.join(20)
    assert set(statuses) == {200} and len(statuses) >= 4, statuses
    assert held["r"].status_code == 200, held["r"].text
    assert a.db_query("SELECT v, who FROM things WHERE id = 'held'") == [["2", "push"]]
    assert wait_until(lambda: a.db_query(
        "SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "0", timeout=10)
    reader.pull()
    assert reader.dups == [] and reader.latest() == log_versions(a)
    assert reader.latest()[("things", "held")][0] == 2


def test_a_push_whose_user_trigger_writes_another_table_wakes_its_waiters(nodes):
    """The push's own wake names its tables only (notes); audit, which the user's trigger
    writes, is told by the change listener: waiters of audit on both nodes answer at once
    with the trigger's rows, once each, not at their deadline."""
    a, b = nodes(2)
    dev = device(a, "writer")
    waiters = [device(n, f"w{i}") for i, n in enumerate((a, b))]
    cursors = [w.changes(tables="audit")["cursor"] for w in waiters]
    for i in range(3):
        parked = Parked(waiters, "audit", cursors)
        on(dev, (a, b)[i % 2]).report([op("notes", "upsert", {"id": f"n{i}", "v": i})])
        for k, (took, page) in enumerate(parked.join()):
            assert took < 5, (k, took, page)
            ids = sorted(ch["id"] for ch in page["changes"])
            assert ids == [f"n{i}-a", f"n{i}-b"], (k, page)
            cursors[k] = page["cursor"]


@pytest.mark.parametrize("point", ["push.before_commit", "push.after_commit"])
def test_a_node_killed_in_a_numbering_push_leaves_no_hole(_servers, pg_cluster, point):
    """kill -9 inside a push that numbers as it writes (things: no user trigger), before
    and after its commit: the other node's pushes and readers go on, nothing is pending,
    and the head is the newest committed change."""
    a = _servers("postgres", *FLAGS, pg=pg_cluster, schema=list(SCHEMA))
    b = _servers("postgres", *FLAGS, pg=pg_cluster, db_url=a.db_url,
                 env={"FERRY_CRASH_AT": point})
    b.pg, b.db_name = a.pg, a.db_name
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    try:
        on(dev, b).post("/report", timeout=10, json={"operations": [
            op("things", "upsert", {"id": f"b{i}", "v": i}) for i in range(5)]})
    except Exception:  # the node died mid-answer
        pass
    assert wait_until(lambda: b.proc.poll() is not None, timeout=10)
    ans = on(dev, a).report([op("things", "upsert", {"id": "a1", "v": 1})])
    reader.pull()
    assert reader.cursor == ans["cursor"] == head(a)
    committed = point == "push.after_commit"
    assert (("things", "b0") in reader.latest()) == committed
    assert reader.dups == [] and reader.latest() == log_versions(a)
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "0"


def test_changes_committed_while_no_node_runs_are_read_once(nodes):
    """Another program commits changes while every node is stopped, under capture
    triggers of an older version: nobody wrote a mark for them, so they lie above the
    head; the restarted node replaces the triggers, its reads bring the head over them,
    and a push goes on above them."""
    (a,) = nodes(1)
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    on(dev, a).report([op("things", "upsert", {"id": "before", "v": 0})])
    reader.pull()
    a.stop()
    a.db_exec("INSERT INTO things VALUES ('old-1', 1, 'psql'), ('old-2', 2, 'psql')",
              "UPDATE ferry_synced SET signature = 'v14;old'")
    old = [int(v) for (v,) in a.db_query("SELECT seq FROM ferry_changes WHERE pk LIKE 'old-%'")]
    assert len(old) == 2 and min(old) > head(a)
    a.start()
    ans = on(dev, a).report([op("things", "upsert", {"id": "after", "v": 1})])
    reader.pull()
    assert reader.cursor == ans["cursor"]
    got = reader.latest()
    assert {k for t, k in got if t == "things"} == {"before", "old-1", "old-2", "after"}
    assert reader.dups == [] and got == log_versions(a)
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "0"


def test_a_trigger_added_and_dropped_between_pushes(nodes):
    """A user's trigger added to things (numbered as written until then) between two
    pushes, then dropped: the push in between numbers last, itself, what the trigger
    mirrored into audit in a subtransaction, and its cursor covers it."""
    a, b = nodes(2)
    dev = device(a, "writer")
    reader = Reader(device(b, "reader"), [a, b])
    on(dev, a).report([op("things", "upsert", {"id": "t0", "v": 0})])
    a.db_exec("CREATE FUNCTION mirror_thing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
              " BEGIN INSERT INTO audit VALUES (NEW.id || '-m', NEW.v::text)"
              " ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note;"
              " EXCEPTION WHEN unique_violation THEN NULL; END; RETURN NULL; END $$",
              "CREATE TRIGGER mirror_thing AFTER INSERT OR UPDATE ON things FOR EACH ROW"
              " EXECUTE FUNCTION mirror_thing()")
    for i, node in enumerate((b, a)):
        ans = on(dev, node).report([op("things", "upsert", {"id": f"t{i + 1}", "v": i})])
        seq = a.db_query(f"SELECT seq FROM ferry_changes WHERE pk = 't{i + 1}-m'")[0][0]
        assert seq is not None and int(seq) <= ans["cursor"]
    a.db_exec("DROP TRIGGER mirror_thing ON things")
    ans = on(dev, b).report([op("things", "upsert", {"id": "t3", "v": 3})])
    reader.pull()
    assert reader.cursor == ans["cursor"]
    assert {k for t, k in reader.latest() if t == "audit"} == {"t1-m", "t2-m"}
    assert reader.dups == [] and reader.latest() == log_versions(a)
