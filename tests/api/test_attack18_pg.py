"""attack18: the PostgreSQL write-once numbering (pushes that hold the promoters' lock get
their change-log entries numbered by the capture triggers as they write them). Each test
runs two `ferry serve` on one database, with another program (psql) beside them:

- a program that sets ferry.numbered itself, in a transaction held open while a push
  commits, is numbered after it commits like any other program's write (it drew a seq
  below the push's without the lock, which the feed's cursor had passed: never read);
- a push failing on its last operation moves no head and leaves no entry, and the feed
  reads on across the seqs it drew;
- a program's uncommitted insert of a key a push inserts: the push waits and retries,
  other pushes go on, nothing answers 500 and every change is read once;
- a push whose user trigger writes another table wakes that table's waiters on both nodes;
- a node killed inside a numbering push, before or after its commit, leaves no hole;
- an upgrade with entries pending from before migration 15, under older triggers;
- a user's trigger added and dropped between pushes."""

import threading
import time

import pytest

from conftest import wait_until
from devsync import op
from test_pg_writers import (FLAGS, SCHEMA, Psql, Reader, device, log_versions,  # noqa: F401
                             nodes, on)

pytestmark = pytest.mark.postgres_only


def head(srv):
    return int(srv.db_query("SELECT seq FROM ferry_head WHERE id = 1")[0][0])


@pytest.mark.parametrize("setting", ["SET LOCAL ferry.numbered = '1'",
                                     "SELECT set_config('ferry.numbered', '1', true)"])
def test_a_program_setting_ferry_numbered_itself_is_not_skipped(nodes, setting):
    a, b = nodes(2)
    dev = device(a, "writer")
    reader = Reader(device(b, "reader"), [a, b])
    reader.pull()
    prog = Psql(a)
    prog.run(f"BEGIN; {setting}; INSERT INTO things VALUES ('psql-1', 1, 'psql');")
    ans = on(dev, b).report([op("things", "upsert", {"id": "pushed", "v": 1})])
    assert ans["applied"] == 1
    reader.pull()
    assert reader.cursor >= ans["cursor"]
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
        answers = [None, None]

        def park(k):
            started = time.monotonic()
            page = waiters[k].changes(tables="audit", cursor=cursors[k], wait=20,
                                      includeOwn="true")
            answers[k] = (time.monotonic() - started, page)

        threads = [threading.Thread(target=park, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both parked
        on(dev, (a, b)[i % 2]).report([op("notes", "upsert", {"id": f"n{i}", "v": i})])
        for t in threads:
            t.join(30)
        for k, (took, page) in enumerate(answers):
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


def test_an_upgrade_numbers_entries_pending_from_before(nodes):
    """A database stopped with another program's committed entries still pending, from
    before migration 15 (no txid) and under capture triggers of an older version: the
    restarted node replaces the triggers, numbers the entries once, and a push that
    numbers as it writes goes on above them."""
    (a,) = nodes(1)
    dev = device(a, "writer")
    reader = Reader(device(a, "reader"), [a])
    on(dev, a).report([op("things", "upsert", {"id": "before", "v": 0})])
    reader.pull()
    a.stop()
    a.db_exec("INSERT INTO things VALUES ('old-1', 1, 'psql'), ('old-2', 2, 'psql')",
              "UPDATE ferry_changes SET txid = NULL WHERE seq IS NULL",
              "UPDATE ferry_synced SET signature = 'v13;old'")
    assert a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0] == "2"
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
