"""Helpers for the device-sync tests (Pinakes, /api/v1/sync and /api/sync): the tables
the tests sync, a thin client for one credential, and small database readers.

Kept out of conftest.py on purpose: only test_devices.py and test_convergence.py use it."""

import uuid

V1 = "/api/v1/sync"
ALT = "/api/sync"
PREFIXES = (V1, ALT)

# Two user tables of each key type. notes: text key; orders: integer key with a NOT NULL
# column; plus one table per remaining conflict policy, so one server covers them all.
SCHEMA = [
    "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, body TEXT, n INTEGER)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER)",
    "CREATE TABLE lww (id TEXT PRIMARY KEY, title TEXT, body TEXT)",
    "CREATE TABLE keep (id TEXT PRIMARY KEY, title TEXT, body TEXT)",
]
ALL_TABLES = "notes,orders,lww,keep"
POLICIES = "notes=merge,orders=manual,lww=overwrite,keep=skip"
SERVER_FLAGS = ("--allowed-tables", ALL_TABLES, "--conflict-policy", POLICIES)

DEVICE_KEYS = {"id", "userId", "name", "platform", "appVersion", "cursor", "tables",
               "createdAt", "updatedAt", "lastSeenAt"}
REPORT_KEYS = {"batchId", "applied", "unchanged", "skipped", "conflicts", "cursor", "results",
               "deviceId", "replayed"}
CHANGE_KEYS = {"seq", "table", "id", "op", "version", "deleted", "updatedAt", "deviceId",
               "data"}
CONFLICT_KEYS = {"id", "table", "rowId", "deviceId", "userId", "action", "baseVersion",
                 "serverVersion", "serverData", "clientData", "fields", "status", "resolution",
                 "createdAt", "resolvedAt", "resolvedBy"}


def start(make_server, *extra, schema=SCHEMA, flags=SERVER_FLAGS):
    return make_server(*flags, *extra, schema=list(schema))


def op(table, action, data, base=None):
    o = {"table": table, "action": action, "data": data}
    if base is not None:
        o["base_version"] = base
    return o


def new_batch_id():
    return "b-" + uuid.uuid4().hex[:16]


class Client:
    """One credential (user or device token) on one server, talking to one prefix."""

    def __init__(self, srv, token, device_id=None, prefix=V1):
        self.srv = srv
        self.token = token
        self.device_id = device_id
        self.prefix = prefix

    def url(self, path):
        return self.prefix + path

    def get(self, path, **kw):
        return self.srv.get(self.url(path), token=self.token, **kw)

    def post(self, path, **kw):
        return self.srv.post(self.url(path), token=self.token, **kw)

    def put(self, path, **kw):
        return self.srv.put(self.url(path), token=self.token, **kw)

    def delete(self, path, **kw):
        return self.srv.delete(self.url(path), token=self.token, **kw)

    # devices

    def register(self, name="device", **fields):
        """Registers a device (user token); returns the device's own Client."""
        body = {"name": name}
        body.update(fields)
        r = self.post("/devices", json=body)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["token"].startswith("fyd_"), d
        return Client(self.srv, d["token"], d["id"], self.prefix)

    # sync

    def report(self, operations, batch_id=None, expect=200, **extra):
        body = {"operations": operations}
        if batch_id is not None:
            body["batchId"] = batch_id
        body.update(extra)
        r = self.post("/report", json=body)
        assert r.status_code == expect, r.text
        return r.json()

    def changes(self, expect=200, **params):
        r = self.get("/changes", params=params)
        assert r.status_code == expect, r.text
        return r.json()

    def pull_all(self, cursor=0, limit=1000, **params):
        """Every change after cursor, following hasMore; returns (changes, cursor)."""
        out = []
        while True:
            page = self.changes(cursor=cursor, limit=limit, **params)
            out.extend(page["changes"])
            assert page["cursor"] >= cursor
            cursor = page["cursor"]
            if not page["hasMore"]:
                return out, cursor

    def head(self):
        """The newest cursor (all changes, own included)."""
        return self.pull_all(includeOwn="true")[1]


def user(srv, user_id, prefix=V1):
    return Client(srv, srv.create_token(role="user", user_id=user_id)["token"], prefix=prefix)


def scalar(srv, sql):
    rows = srv.db_query(sql)
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def count(srv, table):
    return int(scalar(srv, f"SELECT COUNT(*) FROM {table}"))


def row(srv, table, key, cols="*"):
    """One row of a user table as a list of strings (None for NULL), or None."""
    k = key if isinstance(key, int) else "'" + key.replace("'", "''") + "'"
    rows = srv.db_query(f"SELECT {cols} FROM {table} WHERE id = {k}")
    return rows[0] if rows else None


def log_state(srv):
    """The change log as {(table, pk): (version, deleted, seq)}; seq is None only for an
    entry pending from before migration 16 (PostgreSQL)."""
    return {(t, pk): (int(v), int(d), None if s is None else int(s))
            for t, pk, v, d, s in srv.db_query(
        "SELECT tbl, pk, version, deleted, seq FROM ferry_changes")}


def log_version(srv, table, pk):
    rows = srv.db_query(f"SELECT version FROM ferry_changes WHERE tbl = '{table}'"
                        f" AND pk = '{pk}'")
    return int(rows[0][0]) if rows else None
