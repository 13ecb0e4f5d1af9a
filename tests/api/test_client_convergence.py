"""Convergence of libferry replicas: six devices, each a `ferry sync` process on its own
SQLite replica written with plain SQL (as an app would), make random offline inserts,
updates and deletes on tables of every conflict policy and sync at once through a
fault-injecting TCP relay (dropped requests, cut answers, delays) while the server is
restarted or killed with SIGKILL and clients are killed mid-sync. After a quiet final
round every replica equals the server, each device's own rows carry exactly one server
version per local write (nothing lost, nothing applied twice) and every conflict the
server recorded was reported to exactly one replica."""

import asyncio
import collections
import os
import random
import signal
import sqlite3
import subprocess
import time

from conftest import FERRY_BIN
from devsync import user
from relay import Relay

REPLICAS = 6
ROUNDS = 7
KEYS = 10  # shared keys per table: small, so devices collide
POLICIES = {"t_over": "overwrite", "t_skip": "skip", "t_manual": "manual", "t_merge": "merge"}
SCHEMA = [f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)" for t in POLICIES] + [
    "CREATE TABLE own (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)"]
TABLES = [*POLICIES, "own"]


class FaultyRelay(Relay):
    """A TCP relay to the server's current port. While faults are on, each connection is
    passed through, delayed, cut after a few bytes of the request, or cut after a few
    bytes of the answer (after the server did the work)."""

    def __init__(self, target, seed):
        self.faults, self.rng = True, random.Random(seed)
        self.modes = collections.Counter()
        super().__init__(target)

    async def handle(self, reader, writer):
        mode = "ok"
        if self.faults:
            mode = self.rng.choices(["ok", "drop", "cut", "delay"], [55, 15, 15, 15])[0]
        self.modes[mode] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        ends = (writer, up_writer)
        delay = (lambda: self.rng.uniform(0, 0.25)) if mode == "delay" else None
        await asyncio.gather(
            self.pump(reader, up_writer, ends,
                      self.rng.randint(1, 300) if mode == "drop" else None, 4096, delay),
            self.pump(up_reader, writer, ends,
                      self.rng.randint(1, 400) if mode == "cut" else None, 4096, delay))


def connect(db):
    con = sqlite3.connect(db, timeout=30)
    con.isolation_level = None
    return con


def query(db, sql):
    con = connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def offline_writes(rng, db, index, writes):
    """Random inserts, updates and deletes on the shared tables; one write of each own row
    only when everything before was settled, so each lands in a batch of its own."""
    con = connect(db)
    try:
        settled = con.execute("SELECT (SELECT COUNT(*) FROM ferry_client_outbox) +"
                              " (SELECT COUNT(*) FROM ferry_client_inflight)").fetchone()[0] == 0
        con.execute("BEGIN")
        for _ in range(rng.randint(2, 6)):
            table, key = rng.choice(list(POLICIES)), rng.randint(1, KEYS)
            exists = con.execute(f"SELECT 1 FROM {table} WHERE id = ?", (key,)).fetchone()
            word = f"d{index}-{rng.randint(0, 10**6)}"
            if not exists:
                con.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (key, word, rng.randint(0, 9)))
            elif rng.random() < 0.25:
                con.execute(f"DELETE FROM {table} WHERE id = ?", (key,))
            elif rng.random() < 0.5:
                con.execute(f"UPDATE {table} SET a = ? WHERE id = ?", (word, key))
            else:
                con.execute(f"UPDATE {table} SET b = b + 1 WHERE id = ?", (key,))
        if settled:
            key = index * 100 + rng.randint(0, 3)
            writes[key] += 1
            con.execute("INSERT INTO own VALUES (?, ?, 1) ON CONFLICT (id) DO UPDATE SET"
                        " b = b + 1, a = excluded.a", (key, f"own{index}"))
        con.execute("COMMIT")
    finally:
        con.close()


def start_sync(url, token, db):
    return subprocess.Popen([FERRY_BIN, "sync", "--url", url, "--token", token, str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def chaos(srv, relay, rng, what):
    """Restarts the server (SIGTERM, or SIGKILL) while the devices sync."""
    time.sleep(rng.uniform(0.05, 0.6))
    if what == "kill":
        srv.stop(signal.SIGKILL)
        time.sleep(rng.uniform(0, 0.5))
        srv.start()
    else:
        srv.restart()
    relay.target = srv.port


def sync_round(srv, relay, rng, devices, round_no):
    url = f"http://127.0.0.1:{relay.port}"
    procs = [start_sync(url, dev.token, db) for dev, db in devices]
    what = ["restart", "kill", None][round_no % 3]
    if what:
        chaos(srv, relay, rng, what)
    victim = rng.randrange(len(procs)) if round_no % 2 else None
    if victim is not None:  # a device dies mid-sync
        time.sleep(rng.uniform(0, 0.3))
        procs[victim].send_signal(signal.SIGKILL)
    outcomes = collections.Counter()
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        assert "Sanitizer" not in err and "runtime error" not in err, err
        outcomes["killed" if i == victim and p.returncode < 0 else p.returncode] += 1
    return outcomes


def quiet_round(srv, devices):
    for dev, db in devices:
        proc = subprocess.run([FERRY_BIN, "sync", "--url", srv.base, "--token", dev.token,
                               str(db)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr


def server_rows(srv, table):
    return sorted(tuple(r) for r in srv.db_query(f"SELECT id, a, b FROM {table}"))


def replica_rows(db, table):
    return sorted(tuple(None if v is None else str(v) for v in r)
                  for r in query(db, f"SELECT id, a, b FROM {table}"))


def test_replicas_converge_through_restarts_kills_and_a_faulty_network(make_server, tmp_path):
    seed = int(os.environ.get("FERRY_TEST_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    policy = ",".join(f"{t}={p}" for t, p in POLICIES.items())
    srv = make_server("--allowed-tables", ",".join(TABLES), "--conflict-policy", policy,
                      "--rate-limit", "0", schema=list(SCHEMA))
    anna = user(srv, "anna")
    devices = [(anna.register(f"till{i}"), tmp_path / f"till{i}.db") for i in range(REPLICAS)]
    quiet_round(srv, devices)  # every replica gets its tables
    relay = FaultyRelay(srv.port, seed)
    writes = collections.Counter()
    started = time.monotonic()
    try:
        outcomes = collections.Counter()
        for round_no in range(ROUNDS):
            for i, (_, db) in enumerate(devices):
                offline_writes(rng, db, i, writes)
            outcomes += sync_round(srv, relay, rng, devices, round_no)
        relay.faults = False
    finally:
        relay.close()
    print("convergence", seed, dict(relay.modes), dict(outcomes), sum(writes.values()))
    assert relay.modes["drop"] and relay.modes["cut"], (seed, relay.modes)
    assert outcomes[0] > 0, (seed, outcomes)
    # the network heals: each device syncs alone, twice (push all, then pull all)
    quiet_round(srv, devices)
    quiet_round(srv, devices)
    assert time.monotonic() - started < 90, "the chaos rounds took too long"

    for _, db in devices:
        for table in TABLES:
            assert replica_rows(db, table) == server_rows(srv, table), (seed, db.name, table)
        for state in ("outbox", "inflight", "held"):
            assert query(db, f"SELECT COUNT(*) FROM ferry_client_{state}") == [(0,)], \
                (seed, db.name, state)
    # each own row was written by one device only, one settled batch per write: its
    # server version counts its writes exactly
    versions = {int(pk): int(v) for pk, v in
                srv.db_query("SELECT pk, version FROM ferry_changes WHERE tbl = 'own'")}
    assert versions == dict(writes), (seed, versions, writes)
    assert {int(r[0]): int(r[2]) for r in server_rows(srv, "own")} == dict(writes), seed
    # every conflict the server recorded was reported to the replica that pushed it, once
    server_conflicts = sorted(r[0] for r in srv.db_query("SELECT id FROM ferry_conflicts"))
    reported = sorted(r[0] for _, db in devices
                      for r in query(db, "SELECT id FROM ferry_client_conflicts"))
    assert reported == server_conflicts, seed
    assert server_conflicts, (seed, "no conflict was provoked")
