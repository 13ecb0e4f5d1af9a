"""Writes without a global lock on PostgreSQL (issue 14; issue 10 point 7): capture
triggers number each change as they write it, from a sequence, and readers stop at a
safe head (sync/settle.h), so writers (pushes on several nodes, other programs) commit
concurrently and the feed still never skips a change. Each test runs two or three
`ferry serve` on one database.

- a push and another program's transaction held open while others commit on other
  nodes: the others answer at once, the feed's cursor stays below the held changes, and
  once they commit every reader gets them (0 missed, 0 duplicated);
- another program's parent-then-child writes against a child insert (the deadlock of
  issue 10) and outside UPDATEs racing pushes of the same rows: nothing fails;
- devices on random nodes, another program, a node killed: every reader gets every
  change exactly once, in increasing seq."""

import os
import queue
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import wait_until
from devsync import Client, new_batch_id, op

pytestmark = pytest.mark.postgres_only

SCHEMA = [
    "CREATE TABLE items (id TEXT PRIMARY KEY, v INTEGER, who TEXT)",
    "CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT)",
    "CREATE TABLE children (id INTEGER PRIMARY KEY,"
    " parent_id INTEGER NOT NULL REFERENCES parents(id), v TEXT)",
    "INSERT INTO parents VALUES (1, 'one'), (2, 'two')",
    # Holds a writing transaction open at its commit's deferred checks (after ferry
    # wrote the row and the change log) when a row has v = -1, until the test releases
    # the advisory lock HOLD it holds meanwhile.
    "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM set_config('lock_timeout', '0', true);"
    " PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER slow AFTER INSERT OR UPDATE ON items"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.v = -1)"
    " EXECUTE FUNCTION slow_commit()",
    # A user's trigger that mirrors each note in audit (another synced table) inside an
    # EXCEPTION block and one nested in it: subtransactions, whose rows have xmins of
    # their own.
    # things: a table without the user's trigger
    "CREATE TABLE things (id TEXT PRIMARY KEY, v INTEGER, who TEXT)",
    "CREATE TABLE notes (id TEXT PRIMARY KEY, v INTEGER)",
    "CREATE TABLE audit (id TEXT PRIMARY KEY, note TEXT)",
    "CREATE FUNCTION audit_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " BEGIN INSERT INTO audit VALUES (NEW.id || '-a', NEW.v::text)"
    "  ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note;"
    "  BEGIN INSERT INTO audit VALUES (NEW.id || '-b', NEW.v::text)"
    "   ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note;"
    "  EXCEPTION WHEN unique_violation THEN NULL; END;"
    " EXCEPTION WHEN unique_violation THEN NULL; END; RETURN NULL; END $$",
    "CREATE TRIGGER audit_note AFTER INSERT OR UPDATE ON notes FOR EACH ROW"
    " EXECUTE FUNCTION audit_note()",
]
FLAGS = ("--allowed-tables", "items,parents,children,notes,audit,things", "--conflict-policy",
         "items=overwrite,parents=overwrite,children=overwrite,notes=overwrite,audit=overwrite,"
         "things=overwrite",
         "--rate-limit", "0")


@pytest.fixture
def nodes(_servers, pg_cluster):
    """start(n): n nodes on one fresh database, with SCHEMA."""

    def start(n):
        first = _servers("postgres", *FLAGS, pg=pg_cluster, schema=list(SCHEMA))
        out = [first]
        for _ in range(n - 1):
            node = _servers("postgres", *FLAGS, pg=pg_cluster, db_url=first.db_url)
            node.pg, node.db_name = first.pg, first.db_name
            # one database, one admin: the first node's token works on every node
            shutil.copy(os.path.join(first.data_dir, "admin.token"), node.data_dir)
            out.append(node)
        return out

    return start


class Psql:
    """Another program: one psql session whose statements are sent one at a time and
    may block (wait() collects the answer)."""

    def __init__(self, srv):
        pg = srv.pg
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=0", "-h", "127.0.0.1",
             "-p", str(pg.port), "-U", "postgres", "-d", srv.db_name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self.lines, self.errors = queue.Queue(), []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append),
                         daemon=True).start()

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))

    def send(self, sql):
        self.proc.stdin.write(sql + "\n\\echo __done__\n")
        self.proc.stdin.flush()

    def wait(self, timeout=20):
        out = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line == "__done__":
                return out
            out.append(line)

    def run(self, sql, timeout=20):
        self.send(sql)
        return self.wait(timeout)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)
        return [e for e in self.errors if "ERROR" in e or "FATAL" in e]


def device(node, name):
    user_tok = node.create_token(role="user", user_id="anna")["token"]
    return Client(node, user_tok).register(name)


def on(client, node):
    """The same credential on another node."""
    return Client(node, client.token, client.device_id)


HOLD = "SELECT pg_advisory_lock(4242);"
RELEASE = "SELECT pg_advisory_unlock(4242);"


def waiting_locks(srv):
    """Lock waits, leaving out those on the test's own HOLD."""
    return int(srv.db_query("SELECT COUNT(*) FROM pg_locks WHERE NOT granted"
                            " AND NOT (locktype = 'advisory' AND objid = 4242)")[0][0])


def held_back(srv):
    """Transactions waiting for HOLD (the slow commits)."""
    return int(srv.db_query("SELECT COUNT(*) FROM pg_locks WHERE NOT granted"
                            " AND locktype = 'advisory' AND objid = 4242")[0][0])


class Parked:
    """Long-polls of `table`, one per waiter from its cursor (its own changes included),
    each in a thread, parked before this returns; join() gives (seconds, page) each."""

    def __init__(self, waiters, table, cursors):
        self.answers = [None] * len(waiters)

        def park(k):
            started = time.monotonic()
            page = waiters[k].changes(tables=table, cursor=cursors[k], wait=20,
                                      includeOwn="true")
            self.answers[k] = (time.monotonic() - started, page)

        self.threads = [threading.Thread(target=park, args=(k,)) for k in range(len(waiters))]
        for t in self.threads:
            t.start()
        time.sleep(0.5)  # all parked

    def join(self):
        for t in self.threads:
            t.join(30)
        return self.answers


class Reader:
    """A device following the feed (its own changes included) from node to node,
    counting what it gets: each (table, id, version) once, seqs increasing."""

    def __init__(self, client, nodes):
        self.client, self.nodes = client, nodes
        self.cursor, self.seen, self.dups, self.last_seq = 0, {}, [], 0

    def pull(self, node=None):
        c = on(self.client, node or random.choice(self.nodes))
        while True:
            page = c.changes(cursor=self.cursor, limit=50, includeOwn="true")
            for ch in page["changes"]:
                assert ch["seq"] > self.last_seq, (ch, self.last_seq)
                self.last_seq = ch["seq"]
                key = (ch["table"], str(ch["id"]), ch["version"])
                if key in self.seen:
                    self.dups.append(key)
                self.seen[key] = ch
            assert page["cursor"] >= self.cursor
            self.cursor = page["cursor"]
            if not page["hasMore"]:
                return

    def latest(self):
        out = {}
        for (table, key, version), ch in self.seen.items():
            if (table, key) not in out or out[(table, key)][0] < version:
                out[(table, key)] = (version, ch["deleted"])
        return out


def log_versions(srv):
    rows = srv.db_query("SELECT tbl, pk, version, deleted FROM ferry_changes"
                        " WHERE tbl <> '' AND seq IS NOT NULL")
    return {(t, k): (int(v), d == "1") for t, k, v, d in rows}


def safe_head(srv):
    """The feed's head (settle.h): the seq of the newest mark the snapshot has passed."""
    return int(srv.db_query(
        "SELECT COALESCE((SELECT s FROM ferry_marks WHERE x <="
        " pg_snapshot_xmin(pg_current_snapshot())::text::bigint ORDER BY x DESC LIMIT 1), 0)"
    )[0][0])


@pytest.mark.parametrize("table", ["items", "things"])
def test_transactions_held_open_are_not_skipped_and_hold_no_push_back(nodes, table):
    """A push held before its commit and another program's open transaction both drew
    seqs; twenty pushes on two other nodes commit meanwhile, each answered at once (no
    push waits for another's commit). Readers on three nodes stop below the held seqs
    (their cursors never pass a seq that may still commit), then, once both commit, read
    everything exactly once, the held changes included."""
    a, b, c = nodes(3)
    slow_dev, dev_a, dev_b = device(a, "slow"), device(a, "a"), device(b, "b")
    readers = [Reader(device(n, f"reader-{i}"), [a, b, c]) for i, n in enumerate((a, b, c))]
    for r in readers:
        r.pull()

    gate, outside = Psql(a), Psql(a)
    gate.run(HOLD)
    outside.run("BEGIN; INSERT INTO items VALUES ('outside', 1, 'psql');")
    held = {}
    # held for the whole test: twenty pushes and thirty pulls run meanwhile
    th = threading.Thread(target=lambda: held.update(ans=slow_dev.post(
        "/report", json={"operations": [op("items", "upsert", {"id": "slow", "v": -1})]},
        timeout=120).json()))
    th.start()
    # The push has written its row and change, and waits at its deferred checks.
    assert wait_until(lambda: held_back(a) == 1, timeout=10)
    first_held = int(a.db_query(
        "SELECT MIN(last_value) FROM pg_sequences WHERE sequencename = 'ferry_change_seq'")[0][0])

    answers = []
    for i in range(10):
        for dev, node in ((dev_a, b), (dev_b, c)):
            started = time.monotonic()
            ans = on(dev, node).report([op(table, "upsert",
                                           {"id": f"{dev.device_id[:6]}-{i}", "v": i})])
            assert ans["applied"] == 1
            assert time.monotonic() - started < 3
            answers.append(ans)
        for r in readers:
            r.pull()
    # Twenty pushes on two other nodes committed while the slow one and the outside
    # transaction were open, none waiting on a lock; no reader passed the held seqs.
    assert th.is_alive() and held_back(a) == 1
    assert waiting_locks(a) == 0
    assert int(a.db_query(f"SELECT COUNT(*) FROM ferry_changes WHERE seq > {first_held}"
                          f" AND tbl = '{table}' AND pk <> 'slow'")[0][0]) == 20
    cursors = [r.cursor for r in readers]
    for r in readers:
        assert ("items", "slow") not in r.latest() and ("items", "outside") not in r.latest()
        assert r.cursor <= first_held
    # a push answered meanwhile gives a cursor that is safe to pull from
    assert all(ans["cursor"] <= safe_head(a) for ans in answers)

    outside.run("COMMIT;")
    gate.run(RELEASE)
    th.join(20)
    assert gate.close() == []
    assert held["ans"]["applied"] == 1
    assert outside.close() == []
    for r in readers:
        before = r.cursor
        assert wait_until(lambda: (r.pull() or True) and ("items", "outside") in r.latest(),
                          timeout=10)
        got = r.latest()
        assert got[("items", "slow")][0] == 1 and got[("items", "outside")][0] == 1
        assert r.cursor > before
        # 0 missed, 0 duplicated: the reader holds exactly the log's latest state
        assert r.dups == []
        assert got == log_versions(a)
    # the held changes kept the seqs they drew, which no reader's cursor had passed
    held_seqs = [int(a.db_query(f"SELECT seq FROM ferry_changes WHERE tbl = 'items'"
                                f" AND pk = '{k}'")[0][0]) for k in ("slow", "outside")]
    assert max(cursors) < min(held_seqs) <= first_held
    # the held push's answer covers its own change
    assert held["ans"]["cursor"] >= held_seqs[0]


def test_parent_then_child_writers_never_deadlock(nodes):
    """Issue 10 point 7: A locks a parent and then inserts a child; B (another program,
    or a push) inserts a child of that parent meanwhile. With the old writer lock in the
    triggers, B held it while its foreign-key check waited for A, and A's trigger waited
    for it: "deadlock detected"."""
    a, b = nodes(2)
    dev = device(b, "pusher")
    for i in range(4):
        prog_a, prog_b = Psql(a), Psql(a)
        prog_a.run("BEGIN; SELECT id FROM parents WHERE id = 1 FOR UPDATE;")
        prog_b.send(f"INSERT INTO children VALUES ({100 + i}, 1, 'b');")
        assert wait_until(lambda: waiting_locks(a) >= 1, timeout=10)
        pushed = {}
        th = threading.Thread(target=lambda: pushed.update(ans=dev.report(
            [op("children", "insert", {"id": 300 + i, "parent_id": 1, "v": "push"})])))
        th.start()
        time.sleep(0.3)  # the push meets the locked parent and retries meanwhile
        prog_a.run(f"INSERT INTO children VALUES ({200 + i}, 1, 'a'); COMMIT;")
        prog_b.wait()
        th.join(20)
        assert prog_a.close() == [] and prog_b.close() == []
        assert pushed["ans"]["applied"] == 1
    ids = {int(r[0]) for r in a.db_query("SELECT id FROM children")}
    assert ids == {k + i for k in (100, 200, 300) for i in range(4)}
    reader = Reader(device(a, "reader"), [a, b])
    reader.pull()
    assert {k for (t, k) in reader.latest() if t == "children"} == {str(x) for x in ids}


def test_outside_updates_racing_pushes_of_the_same_rows(nodes):
    a, b = nodes(2)
    keys = [f"r{i:02d}" for i in range(12)]
    a.db_exec("INSERT INTO items SELECT 'r' || lpad(g::text, 2, '0'), 0, 'seed'"
              " FROM generate_series(0, 11) g")
    devs = [device(n, f"d{i}") for i, n in enumerate((a, b, a, b))]
    statuses, stop = [], threading.Event()

    def pusher(dev, seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            node = rnd.choice((a, b))
            picked = sorted(rnd.sample(keys, 3))
            r = on(dev, node).post("/report", json={"operations": [
                op("items", "upsert", {"id": k, "v": rnd.randint(1, 99), "who": "push"})
                for k in picked]})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=pusher, args=(d, i)) for i, d in enumerate(devs)]
    for t in threads:
        t.start()
    progs = [Psql(a), Psql(a)]
    rnd = random.Random(7)
    for n in range(60):
        prog = progs[n % 2]
        picked = sorted(rnd.sample(keys, 3))
        ids = ", ".join(f"'{k}'" for k in picked)
        # rows in key order within a transaction, as programs that avoid deadlocking
        # with each other do; single-statement updates in between
        prog.run(f"BEGIN; SELECT id FROM items WHERE id IN ({ids}) ORDER BY id FOR UPDATE;"
                 f" UPDATE items SET v = v + 1, who = 'psql' WHERE id IN ({ids}); COMMIT;"
                 f" UPDATE items SET v = v + 1 WHERE id = '{picked[0]}';")
    stop.set()
    for t in threads:
        t.join(30)
    assert [p.close() for p in progs] == [[], []]
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    # every change is in the feed once, and the feed ends where the tables are
    reader = Reader(devs[0], [a, b])
    reader.pull()
    assert reader.dups == [] and reader.latest() == log_versions(a)
    rows = {k: (int(v), w) for k, v, w in a.db_query("SELECT id, v, who FROM items")}
    for ch in reader.seen.values():
        if ch["table"] == "items" and ch["version"] == reader.latest()[("items", ch["id"])][0]:
            assert (ch["data"]["v"], ch["data"]["who"]) == rows[ch["id"]]


@pytest.mark.parametrize("table", ["items", "things"])
def test_devices_on_random_nodes_with_a_node_killed_get_every_change_once(nodes, table):
    a, b, c = nodes(3)
    alive = [a, b, c]
    writers = [device(n, f"w{i}") for i, n in enumerate((a, b, c, a))]
    readers = [Reader(device(n, f"r{i}"), alive) for i, n in enumerate((a, b, c))]
    stop, errors, written, answered = threading.Event(), [], [], set()

    def write(dev, seed):
        rnd = random.Random(seed)
        n = 0
        while not stop.is_set():
            batch = new_batch_id()
            ops = [op(table, "upsert", {"id": f"{dev.device_id[:8]}-{n + k}", "v": n})
                   for k in range(rnd.randint(1, 5))]
            if rnd.random() < 0.3:  # a key rewritten: its change moves on
                ops.append(op(table, "upsert", {"id": f"{dev.device_id[:8]}-0", "v": n}))
            for attempt in range(20):  # a retry goes to another node, same batch id
                node = rnd.choice(alive)
                try:
                    r = on(dev, node).post("/report", timeout=10,
                                           json={"batchId": batch, "operations": ops})
                except requests.ConnectionError:
                    continue
                if r.status_code != 200:
                    errors.append((r.status_code, r.text))
                answered.add(batch)
                break
            n += len(ops)
            written.append(n)

    def outside():
        prog, n = Psql(a), 0
        while not stop.is_set():
            prog.run(f"INSERT INTO {table} VALUES ('psql-{n}', {n}, 'psql'), "
                     f"('psql-{n + 1}', {n}, 'psql'); UPDATE {table} SET v = v + 1"
                     f" WHERE id = 'psql-0';")
            n += 2
        errors.extend(prog.close())

    def read(r):
        while not stop.is_set():
            try:
                r.pull()
            except requests.ConnectionError:
                pass
            except AssertionError as e:  # a refused page ("cursor from the future"...)
                errors.append(str(e))
                return

    threads = [threading.Thread(target=write, args=(w, i)) for i, w in enumerate(writers)]
    threads += [threading.Thread(target=outside)]
    threads += [threading.Thread(target=read, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    time.sleep(4)
    alive.remove(c)
    for r in readers:
        r.nodes = alive
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(written) > 20
    log = None
    for r in readers:
        r.pull(a)
        log = log or log_versions(a)
        assert r.dups == [], r.dups[:5]
        assert r.latest() == log  # 0 missed
    assert int(a.db_query("SELECT COUNT(*) FROM ferry_changes WHERE seq IS NULL")[0][0]) == 0
    # one record per answered batch, whichever node answered (or replayed) it
    assert int(a.db_query("SELECT COUNT(*) FROM ferry_batches")[0][0]) == len(answered)


def test_large_batches_take_few_locks_and_still_apply_once(nodes):
    """A push locks at most 64 keys (PostgreSQL's lock table is shared by every
    program): a large run of inserts relies on INSERT ... ON CONFLICT instead, and many
    single operations lock their tables instead of their keys. Two such batches on two
    nodes at once, with a small push between, all apply, once."""
    a, b = nodes(2)
    a.db_exec("INSERT INTO items SELECT 'u' || g, 0, 'seed' FROM generate_series(1, 100) g")
    dev_a, dev_b, dev_c = device(a, "bulk"), device(b, "singles"), device(b, "small")
    inserts = [op("items", "insert", {"id": f"n{i}", "v": i}) for i in range(300)]
    updates = [op("items", "update", {"id": f"u{i}", "v": i}, base=1) for i in range(1, 101)]
    answers = {}

    def run(name, dev, node, ops):
        answers[name] = on(dev, node).post("/report", json={"batchId": name, "operations": ops})

    threads = [threading.Thread(target=run, args=("bulk", dev_a, a, inserts)),
               threading.Thread(target=run, args=("singles", dev_b, b, updates)),
               threading.Thread(target=run, args=("small", dev_c, a, [
                   op("items", "upsert", {"id": "s1", "v": -1}),
                   op("items", "upsert", {"id": "s2", "v": -2})]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {k: r.status_code for k, r in answers.items()} == {
        "bulk": 200, "singles": 200, "small": 200}, {k: r.text for k, r in answers.items()}
    assert answers["bulk"].json()["applied"] == 300
    assert answers["singles"].json()["applied"] == 100
    assert int(a.db_query("SELECT COUNT(*) FROM items")[0][0]) == 402
    reader = Reader(device(a, "reader"), [a, b])
    reader.pull()
    assert reader.dups == [] and reader.latest() == log_versions(a)


def test_a_push_numbers_what_user_triggers_wrote_in_subtransactions(nodes):
    """A pushed note's audit rows are written by the user's trigger in subtransactions,
    numbered as written like the note's. While another program's transaction is held
    open (it drew a seq first) the pushes on both nodes still answer at once, with a
    cursor safe to pull from (the head, below their changes); once it commits, a reader
    following the feed on both nodes gets everything once, and a push's cursor covers
    its own changes, the subtransactions' included."""
    a, b = nodes(2)
    dev = device(a, "writer")
    reader = Reader(device(b, "reader"), [a, b])
    held = Psql(a)
    held.run("BEGIN; INSERT INTO notes VALUES ('held', 0);")
    for i in range(12):
        node = (a, b)[i % 2]
        started = time.monotonic()
        ans = on(dev, node).report([op("notes", "upsert", {"id": f"n{i % 4}", "v": i})])
        assert ans["applied"] == 1 and time.monotonic() - started < 3
        seqs = {pk: seq for pk, seq in node.db_query(
            f"SELECT pk, seq FROM ferry_changes WHERE pk LIKE 'n{i % 4}%'")}
        assert set(seqs) == {f"n{i % 4}", f"n{i % 4}-a", f"n{i % 4}-b"}
        assert all(s and int(s) > ans["cursor"] for s in seqs.values()), (ans, seqs)
        reader.pull()
        assert reader.cursor == ans["cursor"]
        assert not any(t in ("notes", "audit") for t, _ in reader.latest())
    held.run("COMMIT;")
    assert held.close() == []
    for i, node in enumerate((a, b)):
        ans = on(dev, node).report([op("notes", "upsert", {"id": f"after{i}", "v": i})])
        seqs = [int(s) for (s,) in node.db_query(
            f"SELECT seq FROM ferry_changes WHERE pk LIKE 'after{i}%'")]
        assert len(seqs) == 3 and max(seqs) <= ans["cursor"]
        reader.pull()
        assert reader.cursor >= ans["cursor"]

    def pulled_held():
        reader.pull()
        return ("audit", "held-b") in reader.latest()

    assert wait_until(pulled_held, timeout=10)
    assert reader.dups == [] and reader.latest() == log_versions(a)
