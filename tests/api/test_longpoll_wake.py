"""Long-polls woken by the changes that concern them (sync/watch.h, http/waiter.h): a
change wakes the waiters whose feed can contain it (its table, and its owner where a sync
rule narrows the table), and never leaves one of those asleep, whoever made the change:
a device through ferry, another program straight in the database (including a row moved
from one owner to another, which its old owner's devices see as a delete, and one write
of more owners than the watcher tells apart), on both backends, and across two nodes on
one PostgreSQL database."""

import concurrent.futures
import time

import pytest

from devsync import Client, op

SCHEMA = [
    "CREATE TABLE orders (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, item TEXT)",
    "CREATE TABLE catalog (id TEXT PRIMARY KEY, name TEXT)",
]
FLAGS = ("--allowed-tables", "orders,catalog")
RULES = {"FERRY_SYNC_RULES": "orders=owner:user_id,catalog=shared"}
USERS = ("u0", "u1", "u2", "u3")
WAIT_S = 20  # far longer than any wake may take: an answer before it is a wake
WAKE_S = 5  # how long a concerned waiter may take to answer (a loaded test machine)


def devices(srv, users, admin_srv):
    """{user: (phone, laptop)}: two device clients per user on srv (tokens made through
    admin_srv, whose admin token is in its data folder)."""
    out = {}
    for name in users:
        u = Client(srv, admin_srv.create_token(role="user", user_id=name)["token"])
        out[name] = (u.register(f"{name}-phone"), u.register(f"{name}-laptop"))
    return out


class Waiters:
    """One parked long-poll per device at a time, each from where that device last read."""

    def __init__(self, pool, devs):
        self.pool = pool
        self.cursor = {}
        self.pending = {}
        for dev in devs:
            r = dev.get("/changes", params={"cursor": 0, "limit": 1000})
            assert r.status_code == 200, r.text
            self.cursor[dev] = r.json()["cursor"]
            self.park(dev)

    def park(self, dev):
        params = {"cursor": self.cursor[dev], "wait": WAIT_S}
        self.pending[dev] = self.pool.submit(dev.get, "/changes", params=params,
                                             timeout=WAIT_S + 30)

    def settle(self):
        time.sleep(0.5)  # every poll has reached the server and parked
        assert not [d for d, f in self.pending.items() if f.done()], "answered with nothing new"

    def woken(self, expected):
        """Waits for the devices in expected ({device: [(table, id, deleted)]}) to answer
        with those changes, then checks that no other device answered; parks them again."""
        deadline = time.monotonic() + WAKE_S
        for dev, changes in expected.items():
            r = self.pending[dev].result(timeout=max(0.1, deadline - time.monotonic()))
            assert r.status_code == 200, r.text
            page = r.json()
            got = [(c["table"], c["id"], c["deleted"]) for c in page["changes"]]
            assert got == changes, (dev.device_id, got)
            self.cursor[dev] = page["cursor"]
        time.sleep(0.3)  # a wrong answer elsewhere would have come by now
        others = [d.device_id for d, f in self.pending.items() if d not in expected and f.done()]
        assert not others, f"answered without a change of theirs: {others}"
        for dev in expected:
            self.park(dev)


def run_owner_scenario(nodes_of, push_at):
    """The scenario on one or two nodes: nodes_of(user) gives the server a user's devices
    use; push_at is where the pushes go."""
    devs = {name: devices(nodes_of(name), (name,), push_at)[name] for name in USERS}
    every = [d for pair in devs.values() for d in pair]
    with concurrent.futures.ThreadPoolExecutor(len(every)) as pool:
        w = Waiters(pool, every)
        w.settle()
        # u0's phone writes its own row: u0's laptop alone (a device's own change is not
        # in its feed) is woken
        u0_phone, u0_laptop = devs["u0"]
        pusher = Client(push_at, u0_phone.token, u0_phone.device_id)
        pusher.report([op("orders", "insert", {"id": "o1", "user_id": "u0", "item": "a"})])
        w.woken({u0_laptop: [("orders", "o1", False)]})
        # another program moves the row to u1: u0's devices see it go, u1's see it come
        push_at.db_exec("UPDATE orders SET user_id = 'u1' WHERE id = 'o1'")
        w.woken({u0_phone: [("orders", "o1", True)], u0_laptop: [("orders", "o1", True)],
                 devs["u1"][0]: [("orders", "o1", False)],
                 devs["u1"][1]: [("orders", "o1", False)]})
        # another program writes u2's row
        push_at.db_exec("INSERT INTO orders VALUES ('o2', 'u2', 'b')")
        w.woken({d: [("orders", "o2", False)] for d in devs["u2"]})
        # another program writes rows of 600 owners at once (too many to tell apart: every
        # waiter is woken), among them one of each user
        rows = [f"('m{i}', 'x{i}', 'c')" for i in range(596)]
        rows += [f"('m-{name}', '{name}', 'c')" for name in USERS]
        push_at.db_exec("INSERT INTO orders VALUES " + ", ".join(rows))
        w.woken({d: [("orders", f"m-{name}", False)] for name in USERS for d in devs[name]})
        # a shared table: everyone but the device that wrote it
        u3_phone = devs["u3"][0]
        Client(push_at, u3_phone.token, u3_phone.device_id).report(
            [op("catalog", "insert", {"id": "c1", "name": "tea"})])
        w.woken({d: [("catalog", "c1", False)] for d in every if d is not u3_phone})
        # and the writer too, by another program's write to the shared table
        push_at.db_exec("INSERT INTO catalog VALUES ('c2', 'milk')")
        w.woken({d: [("catalog", "c2", False)] for d in every})
        push_at.db_exec("INSERT INTO catalog VALUES ('c3', 'salt')")  # lets the polls end
        for f in w.pending.values():
            assert f.result(timeout=WAKE_S).status_code == 200


def test_a_change_wakes_exactly_the_waiters_that_can_see_it(make_server):
    srv = make_server(*FLAGS, schema=list(SCHEMA), env=RULES)
    run_owner_scenario(lambda _: srv, srv)


@pytest.mark.postgres_only
def test_a_change_on_one_node_wakes_the_waiters_of_the_other(_servers, pg_cluster, backend):
    assert backend == "postgres"
    a = _servers("postgres", *FLAGS, pg=pg_cluster, schema=list(SCHEMA), env=RULES)
    b = _servers("postgres", *FLAGS, pg=pg_cluster, db_url=a.db_url, env=RULES)
    b.pg, b.db_name = a.pg, a.db_name
    # u0 and u2 wait on node B, u1 and u3 on node A; every push goes to node A
    run_owner_scenario(lambda name: b if name in ("u0", "u2") else a, a)


def run_pusher_scenario(a, b):
    """A push wakes the waiters of its own node (a) from the pushing thread (sync/watch.h
    watch_wake) and those of node b (the same node, or another one through its watcher):
    each with exactly its changes, once, the pusher's own device not at all."""
    u0 = Client(a, a.create_token(role="user", user_id="u0")["token"])
    u1 = Client(a, a.create_token(role="user", user_id="u1")["token"])
    pusher, u0_here = u0.register("u0-phone"), u0.register("u0-laptop")
    u1_here = u1.register("u1-phone")
    there = [u0.register("u0-tablet"), u1.register("u1-laptop")]
    u0_there, u1_there = [Client(b, d.token, d.device_id) for d in there]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        w = Waiters(pool, [pusher, u0_here, u0_there, u1_here, u1_there])
        w.settle()
        # a device's report into its own rows: its user's other devices, here and there
        pusher.report([op("orders", "insert", {"id": "p1", "user_id": "u0", "item": "a"})])
        w.woken({u0_here: [("orders", "p1", False)], u0_there: [("orders", "p1", False)]})
        # one batch over two tables: the shared one concerns u1 too
        pusher.report(
            [op("orders", "update", {"id": "p1", "user_id": "u0", "item": "b"}),
             op("catalog", "insert", {"id": "p2", "name": "tea"})])
        w.woken({u0_here: [("orders", "p1", False), ("catalog", "p2", False)],
                 u0_there: [("orders", "p1", False), ("catalog", "p2", False)],
                 u1_here: [("catalog", "p2", False)], u1_there: [("catalog", "p2", False)]})
        # a legacy push by u1's user token (no device): every device of u1
        r = a.post("/sync/push", token=u1.token,
                   json={"operations": [op("orders", "insert", {"id": "p3", "user_id": "u1"})]})
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        w.woken({u1_here: [("orders", "p3", False)], u1_there: [("orders", "p3", False)]})
        # an admin's push may write any owner's row: the push cannot tell whose, the
        # watcher wakes them
        r = a.post("/sync/push", token=a.admin_token,
                   json={"operations": [op("orders", "insert", {"id": "p4", "user_id": "u0"})]})
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        w.woken({d: [("orders", "p4", False)] for d in (pusher, u0_here, u0_there)})
        w.settle()  # the watcher's report of the moves the pushes woke for answers nobody
        a.db_exec("INSERT INTO catalog VALUES ('p5', 'salt')")  # lets the polls end
        for f in w.pending.values():
            assert f.result(timeout=WAKE_S).status_code == 200


def test_a_push_wakes_the_waiters_of_its_own_node(make_server):
    srv = make_server(*FLAGS, schema=list(SCHEMA), env=RULES)
    run_pusher_scenario(srv, srv)


@pytest.mark.postgres_only
def test_a_push_wakes_its_own_nodes_waiters_and_the_other_nodes(_servers, pg_cluster, backend):
    assert backend == "postgres"
    a = _servers("postgres", *FLAGS, pg=pg_cluster, schema=list(SCHEMA), env=RULES)
    b = _servers("postgres", *FLAGS, pg=pg_cluster, db_url=a.db_url, env=RULES)
    b.pg, b.db_name = a.pg, a.db_name
    run_pusher_scenario(a, b)


def test_changed_token_attributes_wake_the_devices_they_send_back(make_server):
    """A token's attributes changed under a claim rule put a resync mark in the log (a
    change of no table): the token's device parked on a long-poll answers 410 (pull again
    from 0) at once, not at its deadline with the rows of its old claim."""
    srv = make_server("--allowed-tables", "docs",
                      schema=["CREATE TABLE docs (id INTEGER PRIMARY KEY, tenant TEXT)"],
                      env={"FERRY_SYNC_RULES": "docs=claim:tenant_id:tenant"})
    tok = srv.create_token(role="user", user_id="ivy", attrs={"tenant_id": "acme"})
    phone = Client(srv, tok["token"]).register("ivy-phone")
    srv.db_exec("INSERT INTO docs (id, tenant) VALUES (1, 'acme'), (2, 'globex')")
    r = phone.get("/changes", params={"cursor": 0})
    assert r.status_code == 200 and [c["id"] for c in r.json()["changes"]] == [1], r.text
    cursor = r.json()["cursor"]
    held = [t for t in srv.get("/api/v1/admin/tokens", token=srv.admin_token).json()["tokens"]
            if t["device_id"] == phone.device_id][0]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(phone.get, "/changes", params={"cursor": cursor, "wait": WAIT_S},
                           timeout=WAIT_S + 30)
        time.sleep(0.5)
        assert not poll.done(), poll.result().text
        r = srv.request("PATCH", f"/api/v1/admin/tokens/{held['id']}", token=srv.admin_token,
                        json={"attrs": {"tenant_id": "globex"}})
        assert r.status_code == 200, r.text
        r = poll.result(timeout=WAKE_S)
    assert r.status_code == 410 and "resync" in r.json()["details"], r.text
