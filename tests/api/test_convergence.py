"""Convergence of Pinakes device sync: many simulated devices edit overlapping rows of
two tables (items: overwrite, tasks: manual) offline-first, pushing batches with the
base_version of their local copy and pulling in random order; pushes are retried with
the same batchId (some after their first answer was lost); another program writes
straight into the database; users resolve some conflicts. At the end every device's
copy equals the server's tables (rows and versions), and the conflicts the server lists
are exactly those the report answers announced.

Also: concurrent pushes against one row must not lose the conflict check, and
concurrent retries of one batch must apply it once. Runs on SQLite and PostgreSQL."""

import random
import threading
import time

from devsync import Client, log_state, op, user

SCHEMA = [
    "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)",
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER,"
    " note TEXT)",
]
FLAGS = ("--allowed-tables", "items,tasks", "--conflict-policy",
         "items=overwrite,tasks=manual", "--rate-limit", "0")
COLUMNS = {"items": ("id", "name", "qty"), "tasks": ("id", "title", "done", "note")}
SEED = 20240611
DEVICES = 9
STEPS = 320


def start(make_server):
    return make_server(*FLAGS, schema=list(SCHEMA))


def norm(v):
    """A value as db_query gives it (text, None for NULL)."""
    return None if v is None else str(v)


def server_tables(srv):
    """{(table, key): row as a tuple of text} for every live row."""
    out = {}
    for table, cols in COLUMNS.items():
        for r in srv.db_query(f"SELECT {', '.join(cols)} FROM {table}"):
            key = int(r[0]) if table == "tasks" else r[0]
            out[(table, key)] = tuple(r)
    return out


class Device:
    """A device's local replica: {(table, key): (version, data or None for a tombstone)},
    its pull cursor, and at most one batch whose answer it has not seen yet."""

    def __init__(self, client, owner, index):
        self.c = client
        self.owner = owner
        self.index = index
        self.local = {}
        self.cursor = 0
        self.acked = 0
        self.pending = None  # (batch id, ops, the answer the device never saw)
        self.fresh = 0
        self.batches = 0

    def apply_change(self, ch):
        key = (ch["table"], ch["id"])
        old = self.local.get(key)
        assert old is None or old[0] <= ch["version"], (
            f"device {self.index}: {key} went back from version {old[0]} to {ch['version']}")
        self.local[key] = (ch["version"], None if ch["deleted"] else ch["data"])


class Sim:
    def __init__(self, srv, rng):
        self.srv = srv
        self.rng = rng
        self.users = {"alice": user(srv, "alice"), "bob": user(srv, "bob")}
        self.devices = []
        for i in range(DEVICES):
            owner = "alice" if i % 3 else "bob"
            dev = self.users[owner].register(f"dev{i}", platform="sim")
            self.devices.append(Device(dev, owner, i))
        self.reported = {"alice": [], "bob": []}  # conflict ids, in report order
        self.resolved = set()
        self.known_head = 0
        self.outside = 0
        self.stats = {"push": 0, "ops": 0, "pull": 0, "retry": 0, "lost_answer": 0,
                      "outside": 0, "resolve": 0, "conflicts": 0, "ack": 0}

    # data

    def values(self, table, key):
        r = self.rng
        if table == "items":
            return {"id": key, "name": f"n{r.randrange(1000)}",
                    "qty": r.choice([None, r.randrange(100)])}
        return {"id": key, "title": f"t{r.randrange(1000)}", "done": r.choice([0, 1]),
                "note": r.choice([None, f"note{r.randrange(50)}"])}

    def shared_keys(self, table):
        return [f"s{i}" for i in range(8)] if table == "items" else list(range(1, 9))

    def make_ops(self, dev):
        r = self.rng
        ops, used = [], set()
        for _ in range(r.randint(1, 4)):
            table = r.choice(("items", "tasks"))
            if r.random() < 0.2:
                dev.fresh += 1
                key = (f"d{dev.index}-{dev.fresh}" if table == "items"
                       else 1000 + dev.index * 100 + dev.fresh)
                ops.append(op(table, "insert", self.values(table, key)))
                used.add((table, key))
                continue
            known = [k for (t, k) in dev.local if t == table]
            key = r.choice(sorted(set(self.shared_keys(table)) | set(known), key=str))
            if (table, key) in used:
                continue
            used.add((table, key))
            version, data = dev.local.get((table, key), (0, None))
            if data is None:  # unknown or deleted here: (re)create it
                ops.append(op(table, "upsert", self.values(table, key), base=version))
                continue
            x = r.random()
            if x < 0.65:
                ops.append(op(table, "update", self.values(table, key), base=version))
            elif x < 0.8:
                ops.append(op(table, "upsert", self.values(table, key), base=version))
            else:
                ops.append(op(table, "delete", {"id": key}, base=version))
        return ops

    # actions

    def head(self):
        alice = self.users["alice"]
        self.known_head = alice.pull_all(cursor=self.known_head, includeOwn="true")[1]
        return self.known_head

    def apply_answer(self, dev, ops, ans):
        assert ans["deviceId"] == dev.c.device_id
        assert len(ans["results"]) == len(ops)
        n_conflicts = 0
        for i, (res, o) in enumerate(zip(ans["results"], ops)):
            key = (o["table"], o["data"]["id"])
            assert res["index"] == i and res["table"] == o["table"] and res["id"] == key[1]
            status = res["status"]
            deleting = o["action"] == "delete"
            if status == "applied":
                dev.local[key] = (res["version"], None if deleting else o["data"])
            elif status == "unchanged":
                assert deleting, (o, res)  # deleting a row already gone
                dev.local[key] = (res["version"] or 0, None)
            elif status == "conflict":
                assert o["table"] == "tasks", (o, res)  # only the manual table
                n_conflicts += 1
            else:
                raise AssertionError(f"unexpected result {res} for {o}")
        assert len(ans["conflicts"]) == n_conflicts, ans
        assert ans["applied"] + ans["unchanged"] + n_conflicts == len(ops), ans
        self.known_head = max(self.known_head, ans["cursor"])

    def record_conflicts(self, dev, ans):
        for cf in ans["conflicts"]:
            assert cf["id"] not in self.reported[dev.owner], "one conflict reported twice"
            self.reported[dev.owner].append(cf["id"])
            self.stats["conflicts"] += 1

    def push(self, dev):
        r = self.rng
        ops = self.make_ops(dev)
        if not ops:
            return
        dev.batches += 1
        batch_id = f"dev{dev.index}-batch{dev.batches}"
        ans = dev.c.report(ops, batch_id=batch_id)
        assert ans["replayed"] is False and ans["batchId"] == batch_id
        self.stats["push"] += 1
        self.stats["ops"] += len(ops)
        self.record_conflicts(dev, ans)
        if r.random() < 0.12:
            # the answer is lost on the way: the device knows nothing and must retry
            dev.pending = (batch_id, ops, ans)
            self.stats["lost_answer"] += 1
            return
        self.apply_answer(dev, ops, ans)
        if r.random() < 0.15:
            self.retry(dev, batch_id, ops, ans)

    def retry(self, dev, batch_id, ops, first):
        before = self.head()
        again = dev.c.report(ops, batch_id=batch_id)
        self.stats["retry"] += 1
        assert again["replayed"] is True, again
        assert {k: v for k, v in again.items() if k != "replayed"} == \
            {k: v for k, v in first.items() if k != "replayed"}
        assert self.head() == before, "a retried batch changed the log"
        return again

    def finish_pending(self, dev):
        batch_id, ops, lost = dev.pending
        dev.pending = None
        again = self.retry(dev, batch_id, ops, lost)
        self.apply_answer(dev, ops, again)

    def pull(self, dev):
        page = dev.c.changes(cursor=dev.cursor, limit=self.rng.randint(2, 40))
        assert page["cursor"] >= dev.cursor
        seqs = [c["seq"] for c in page["changes"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(dev.cursor < s <= page["cursor"] for s in seqs)
        for ch in page["changes"]:
            assert ch["deviceId"] != dev.c.device_id, "a device got its own change back"
            dev.apply_change(ch)
        dev.cursor = page["cursor"]
        self.known_head = max(self.known_head, dev.cursor)
        self.stats["pull"] += 1
        if self.rng.random() < 0.2:
            r = dev.c.post("/ack", json={"cursor": dev.cursor})
            assert r.status_code == 200, r.text
            dev.acked = max(dev.acked, dev.cursor)
            assert r.json() == {"deviceId": dev.c.device_id, "cursor": dev.acked}
            self.stats["ack"] += 1

    def outside_write(self):
        """Another program writes straight into the database."""
        r = self.rng
        self.outside += 1
        x = r.random()
        if x < 0.4:
            key = r.choice(self.shared_keys("items"))
            sql = f"UPDATE items SET qty = COALESCE(qty, 0) + 1 WHERE id = '{key}'"
        elif x < 0.7:
            sql = (f"INSERT INTO items (id, name, qty) VALUES ('ext-{self.outside}',"
                   f" 'outside', {self.outside})")
        else:
            sql = f"DELETE FROM tasks WHERE id = {r.choice(self.shared_keys('tasks'))}"
        self.srv.db_exec(sql)
        self.stats["outside"] += 1

    def resolve_one(self):
        r = self.rng
        owner = r.choice(("alice", "bob"))
        open_ids = [c for c in self.reported[owner] if c not in self.resolved]
        if not open_ids:
            return
        cid = r.choice(open_ids)
        how = r.choice(("keep_server", "take_client", "merge"))
        body = {"resolution": how}
        if how == "merge":
            data = self.values("tasks", 0)
            del data["id"]
            body["data"] = data
        resp = self.users[owner].post(f"/conflicts/{cid}/resolve", json=body)
        assert resp.status_code == 200, resp.text
        done = resp.json()
        assert done["id"] == cid and done["status"] == "resolved" and done["resolution"] == how
        self.resolved.add(cid)
        self.stats["resolve"] += 1

    def step(self):
        r = self.rng
        x = r.random()
        if x < 0.04:
            return self.outside_write()
        if x < 0.08:
            return self.resolve_one()
        dev = r.choice(self.devices)
        if dev.pending:
            return self.finish_pending(dev)
        if r.random() < 0.55:
            self.push(dev)
        else:
            self.pull(dev)

    # the end

    def settle(self):
        for dev in self.devices:
            if dev.pending:
                self.finish_pending(dev)
        for dev in self.devices:
            changes, dev.cursor = dev.c.pull_all(cursor=dev.cursor)
            for ch in changes:
                assert ch["deviceId"] != dev.c.device_id
                dev.apply_change(ch)


def test_devices_converge(make_server, backend):
    srv = start(make_server)
    sim = Sim(srv, random.Random(SEED))
    t0 = time.monotonic()
    for _ in range(STEPS):
        sim.step()
    sim.settle()
    took = time.monotonic() - t0
    print(f"\n[{backend}] {took:.1f} s, {sim.stats}")

    head = sim.head()
    server = server_tables(srv)
    log = log_state(srv)
    assert server, "the simulation left no rows"
    for dev in sim.devices:
        assert dev.cursor == head, (dev.index, dev.cursor, head)
        live = {k: tuple(norm(d[c]) for c in COLUMNS[k[0]])
                for k, (v, d) in dev.local.items() if d is not None}
        assert live == server, f"device {dev.index} diverged"
        for (table, key), (version, data) in dev.local.items():
            v, deleted, _ = log[(table, str(key))]
            assert (version, data is None) == (v, bool(deleted)), (
                f"device {dev.index}: {table}/{key} is at version {version}"
                f" ({'gone' if data is None else 'live'}), the server at {v}"
                f" ({'gone' if deleted else 'live'})")
        # rows the device never heard of can only be tombstones it never saw alive
        for (table, pk), (v, deleted, _) in log.items():
            key = int(pk) if table == "tasks" else pk
            assert (table, key) in dev.local or deleted, (dev.index, table, pk)

    # every conflict reported is listed, once, by its user; open ones as open
    total = 0
    for owner, client in sim.users.items():
        reported = sim.reported[owner]
        listed = client.get("/conflicts", params={"status": "all"}).json()
        assert listed["totalCount"] == len(listed["conflicts"]) == len(reported), owner
        assert sorted(c["id"] for c in listed["conflicts"]) == sorted(reported), owner
        open_now = client.get("/conflicts").json()
        assert sorted(c["id"] for c in open_now["conflicts"]) == sorted(
            c for c in reported if c not in sim.resolved), owner
        for c in listed["conflicts"]:
            assert c["userId"] == owner and c["table"] == "tasks"
            assert c["status"] == ("resolved" if c["id"] in sim.resolved else "open")
        total += len(reported)
    everyone = Client(srv, srv.admin_token).get("/conflicts", params={"status": "all"}).json()
    assert everyone["totalCount"] == total
    assert sim.stats["conflicts"] > 0 and sim.stats["lost_answer"] > 0
    assert sim.stats["retry"] > sim.stats["lost_answer"]


# --- concurrency -----------------------------------------------------------------------


def _all_at_once(fns):
    """Runs the callables in threads released together; returns their results."""
    barrier = threading.Barrier(len(fns))
    out = [None] * len(fns)

    def run(i, fn):
        barrier.wait()
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def _report_fn(srv, dev, ops, batch_id=None):
    import requests

    def fn():
        body = {"operations": ops}
        if batch_id:
            body["batchId"] = batch_id
        r = requests.post(srv.base + "/api/v1/sync/report", json=body, timeout=20,
                          headers={"Authorization": f"Bearer {dev.token}"})
        return r.status_code, r.json()
    return fn


def test_concurrent_stale_writers_on_a_manual_row(make_server):
    """Eight devices saw version 1 of a row and push their edit at the same moment. With
    the manual policy exactly one of them may win; the others are conflicts (listed).
    Several rounds, since a race shows only sometimes."""
    srv = start(make_server)
    alice = user(srv, "alice")
    devs = [alice.register(f"d{i}") for i in range(8)]
    rounds, bad = 6, []
    for round_ in range(rounds):
        key = 500 + round_
        devs[0].report([op("tasks", "insert", {"id": key, "title": "base", "done": 0})])
        answers = _all_at_once([
            _report_fn(srv, d, [op("tasks", "update", {"id": key, "title": f"dev{i}", "done": 1},
                                   base=1)]) for i, d in enumerate(devs)])
        assert all(a[0] == 200 for a in answers), answers
        statuses = sorted(a[1]["results"][0]["status"] for a in answers)
        v = log_state(srv)[("tasks", str(key))][0]
        if statuses != ["applied"] + ["conflict"] * 7 or v != 2:
            bad.append(f"round {round_}: {statuses.count('applied')} of 8 stale writers"
                       f" applied, row at version {v}")
    assert not bad, "lost updates under the manual policy:\n" + "\n".join(bad)
    listed = alice.get("/conflicts").json()
    assert listed["totalCount"] == 7 * rounds


def test_concurrent_overwrites_get_distinct_versions(make_server):
    """Last writer wins, but every write is a version of its own: the answers' versions
    are 2..9 without repeats, the row ends at version 9 with the data of the answer that
    says 9."""
    srv = start(make_server)
    alice = user(srv, "alice")
    devs = [alice.register(f"d{i}") for i in range(8)]
    bad = []
    for round_ in range(4):
        key = f"hot{round_}"
        devs[0].report([op("items", "insert", {"id": key, "name": "base", "qty": 0})])
        answers = _all_at_once([
            _report_fn(srv, d, [op("items", "update", {"id": key, "name": f"dev{i}", "qty": i},
                                   base=1)]) for i, d in enumerate(devs)])
        assert all(a[0] == 200 for a in answers), answers
        assert [a[1]["results"][0]["status"] for a in answers] == ["applied"] * 8
        assert log_state(srv)[("items", key)][0] == 9
        versions = sorted(a[1]["results"][0]["version"] for a in answers)
        last = max(range(8), key=lambda i: answers[i][1]["results"][0]["version"])
        name = srv.db_query(f"SELECT name FROM items WHERE id = '{key}'")[0][0]
        if versions != list(range(2, 10)) or name != f"dev{last}":
            bad.append(f"round {round_}: answered versions {versions}; row holds {name},"
                       f" the answer with the highest version was dev{last}'s")
    assert not bad, "\n".join(bad)


def test_concurrent_retries_of_one_batch_apply_it_once(make_server):
    srv = start(make_server)
    alice = user(srv, "alice")
    dev = alice.register("phone")
    dev.report([op("items", "insert", {"id": "r", "name": "base", "qty": 0})])
    for round_ in range(3):
        base = log_state(srv)[("items", "r")][0]
        ops = [op("items", "update", {"id": "r", "name": f"round{round_}", "qty": round_},
                  base=base),
               op("items", "insert", {"id": f"new{round_}", "name": "x", "qty": 1})]
        answers = _all_at_once([_report_fn(srv, dev, ops, batch_id=f"same-{round_}")
                                for _ in range(6)])
        assert all(a[0] == 200 for a in answers), answers
        assert sorted(a[1]["replayed"] for a in answers) == [False] + [True] * 5, answers
        strip = [{k: v for k, v in a[1].items() if k != "replayed"} for a in answers]
        assert all(s == strip[0] for s in strip), strip
        assert log_state(srv)[("items", "r")][0] == base + 1
        assert log_state(srv)[("items", f"new{round_}")][0] == 1
