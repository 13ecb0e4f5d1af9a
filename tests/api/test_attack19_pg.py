"""attack19: attacks on the PostgreSQL numbering without a lock (sync/settle.h). Each test
runs `ferry serve` on one database, with another program (psql) beside it:

- an operator's `ALTER SEQUENCE ferry_change_seq CACHE 20`: another program's session
  would hand out seqs from its cache below a head already read (a skip); ferry sets the
  cache back to 1 when it starts, and the program's later change is read."""

import threading
import time

import pytest
import requests

from conftest import wait_until
from devsync import op
from test_pg_writers import (FLAGS, SCHEMA, Psql, Reader, device, log_versions,  # noqa: F401
                             nodes, on, safe_head)

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

