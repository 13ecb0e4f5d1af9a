"""Attacks on SQLite's group commit (many pushes sharing one durable commit): ferry killed
as by kill -9 while many devices push at once, at random moments and at the push's crash
points (the N-th time reached, so that other pushes share the dying group). Every batch
answered 200 must be whole in the table and in the feed after the restart, none may be
half applied, and each batch id sent again must be applied once.
"""

import random
import signal
import threading

import pytest
import requests

from conftest import wait_until
from devsync import SCHEMA, SERVER_FLAGS, Client, new_batch_id, op, start

DEVICES = 8
ROWS = 20


def push_until_dead(devices, trial, sent, acked, lock, stop):
    def work(k, device):
        n = 0
        while not stop.is_set():
            bid = new_batch_id()
            rows = [f"{trial}-{k}-{n}-{i}" for i in range(ROWS)]
            n += 1
            with lock:
                sent.append((k, bid, rows))
            try:
                r = device.post("/report", timeout=30, json={
                    "batchId": bid,
                    "operations": [op("notes", "insert", {"id": r, "title": r}) for r in rows]})
            except requests.exceptions.ConnectionError:
                return
            if r.status_code != 200:
                return
            with lock:
                acked.add(bid)

    threads = [threading.Thread(target=work, args=(k, d)) for k, d in enumerate(devices)]
    for t in threads:
        t.start()
    return threads


def check(srv, devices, sent, acked):
    notes = {r[0] for r in srv.db_query("SELECT id FROM notes")}
    for _, bid, rows in sent:
        present = sum(r in notes for r in rows)
        assert present in (0, ROWS), f"batch {bid} half applied: {present} of {ROWS}"
        if bid in acked:
            assert present == ROWS, f"batch {bid} was answered 200 and is gone"
    reader = devices[0]
    changes, _ = reader.pull_all(includeOwn="true")
    in_feed = {c["id"] for c in changes if c["table"] == "notes"}
    assert in_feed == notes, (len(in_feed), len(notes))
    for k, bid, rows in sent:  # every batch again: applied once, replayed when it was
        body = devices[k].report([op("notes", "insert", {"id": r, "title": r}) for r in rows],
                                 batch_id=bid)
        if bid in acked:
            assert body["replayed"] is True, body
    total = sum(len(rows) for _, _, rows in sent)
    assert int(srv.db_query("SELECT COUNT(*) FROM notes")[0][0]) == total


def devices_of(srv, n):
    tok = srv.create_token(user_id="bob")["token"]
    return [Client(srv, tok).register(f"d{k}") for k in range(n)]


@pytest.mark.sqlite_only
def test_concurrent_pushes_survive_random_kills(make_server):
    srv = start(make_server, "--purge-interval", "0")
    devices = devices_of(srv, DEVICES)
    rng = random.Random(17)
    sent, acked, lock = [], set(), threading.Lock()
    for trial in range(5):
        stop = threading.Event()
        threads = push_until_dead(devices, trial, sent, acked, lock, stop)
        wait_until(lambda: False, timeout=rng.uniform(0.3, 1.2))
        srv.proc.send_signal(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
        assert srv.wait_exit(10) == -signal.SIGKILL
        srv.start()
    assert acked
    check(srv, devices, sent, acked)
    commits = srv.get("/metrics").text
    print("\n", len(acked), "acked of", len(sent), [
        l for l in commits.splitlines() if "group" in l or "commit" in l][:4])


@pytest.mark.sqlite_only
@pytest.mark.parametrize("point", ["push.before_commit:40", "push.after_commit:40"])
def test_concurrent_pushes_survive_a_kill_at_the_push_crash_points(make_server, point):
    srv = make_server(*SERVER_FLAGS, "--purge-interval", "0", schema=list(SCHEMA),
                      env={"FERRY_CRASH_AT": point})
    devices = devices_of(srv, DEVICES)
    sent, acked, lock = [], set(), threading.Lock()
    stop = threading.Event()
    threads = push_until_dead(devices, 0, sent, acked, lock, stop)
    assert srv.wait_exit(60) == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(30)
    srv.env.pop("FERRY_CRASH_AT")
    srv.start()
    check(srv, devices, sent, acked)


@pytest.mark.sqlite_only
def test_failing_pushes_in_a_group_leave_the_others_whole(make_server):
    """Bad batches (a NOT NULL column left empty at the last row) share groups with good
    ones: each bad one is refused whole, each good one applied whole, and the same batch
    id sent twice at once is applied once."""
    srv = start(make_server, "--purge-interval", "0")
    devices = devices_of(srv, DEVICES)
    results, lock = [], threading.Lock()

    def work(k, device):
        for n in range(15):
            bad = (k + n) % 3 == 0
            rows = [{"id": k * 1000 + n * 20 + i, "item": None if bad and i == ROWS - 1 else "x"}
                    for i in range(ROWS)]
            bid = f"g-{k}-{n}"
            body = {"batchId": bid, "operations": [op("orders", "insert", r) for r in rows]}
            pair = [None, None]

            def send(j):
                pair[j] = device.post("/report", json=body, timeout=30)

            twins = [threading.Thread(target=send, args=(j,)) for j in range(2)]
            for t in twins:
                t.start()
            for t in twins:
                t.join()
            with lock:
                results.append((bad, rows, pair))

    threads = [threading.Thread(target=work, args=(k, d)) for k, d in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = {int(r[0]) for r in srv.db_query("SELECT id FROM orders")}
    for bad, rows, pair in results:
        present = sum(r["id"] in ids for r in rows)
        if bad:
            assert [p.status_code for p in pair] == [400, 400], [p.text for p in pair]
            assert present == 0
        else:
            assert [p.status_code for p in pair] == [200, 200], [p.text for p in pair]
            assert present == ROWS
            assert sorted(p.json()["replayed"] for p in pair) == [False, True]
            assert pair[0].json()["applied"] == pair[1].json()["applied"] == ROWS
