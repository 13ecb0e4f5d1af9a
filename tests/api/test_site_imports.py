"""Site imports: a receiver pulls tables from its sender (POST /api/v1/admin/sites/{id}/pull,
the job at /api/v1/admin/jobs/{id}, the transfers at /api/v1/admin/sites/{id}/transfers,
and `ferry sites pull`). Sender A runs on the test's backend and holds the data; receiver
B runs on the other backend in auto_accept mode, so both directions of the type mapping
(SQLite <-> PostgreSQL) are exercised."""

import json
import re
import signal
import time

from conftest import assert_v1_error, free_port, run_ferry, wait_until

SITES = "/api/v1/admin/sites"
JOBS = "/api/v1/admin/jobs"
OTHER = {"sqlite": "postgres", "postgres": "sqlite"}
N_BIG = 50000


# --- helpers (after test_sites.py) -------------------------------------------------------


def site(_servers, backend, *flags, **kw):
    port = free_port()
    return _servers(backend, "--listen", f"127.0.0.1:{port}", "--public-url",
                    f"http://127.0.0.1:{port}", "--sites-verify-interval", "0",
                    "--sites-allow-private", "true", *flags, **kw)


def admin(srv, method, path="", **kw):
    return srv.request(method, SITES + path, token=srv.admin_token, **kw)


def pair(_servers, backend, a_schema=(), b_schema=(), a_flags=(), b_mode="auto_accept",
         **extra):
    """A (the sender, holding the data) connected to B (the receiver); returns a, b, A's
    connection and the id of B's receiver connection."""
    a = site(_servers, backend, *a_flags, schema=a_schema)
    b = site(_servers, OTHER[backend], "--sites-incoming-mode", b_mode, schema=b_schema)
    r = admin(a, "POST", json={"name": "to-b", "url": b.base, **extra})
    assert r.status_code == 201, r.text
    conn = r.json()
    r = admin(a, "PATCH", f"/{conn['id']}", json={"rate_limit_requests_per_minute": 100000})
    assert r.status_code == 200, r.text
    [recv] = admin(b, "GET").json()["connections"]
    assert recv["direction"] == "receiver"
    return a, b, conn, recv["id"]


def series(table, cols, exprs, n):
    """INSERT of n generated rows (x = 1..n); runs on SQLite and PostgreSQL."""
    return (f"INSERT INTO {table}({cols}) WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL"
            f" SELECT x + 1 FROM s WHERE x < {n}) SELECT {exprs} FROM s")


def blob_type(backend):
    return "BYTEA" if backend == "postgres" else "BLOB"


def blob(backend, data):
    return f"'\\x{data.hex()}'::bytea" if backend == "postgres" else f"x'{data.hex()}'"


def pull(b, rid, tables, strategy=None, **extra):
    body = {"tables": tables, **({"strategy": strategy} if strategy else {}), **extra}
    return admin(b, "POST", f"/{rid}/pull", json=body)


def job(b, job_id):
    r = b.get(f"{JOBS}/{job_id}", token=b.admin_token)
    assert r.status_code == 200, r.text
    return r.json()


def wait_job(b, job_id, timeout=180):
    done = wait_until(lambda: (lambda j: j if j["status"] in ("completed", "failed") else None)(
        job(b, job_id)), timeout, 0.1)
    assert done, f"job {job_id} did not finish: {job(b, job_id)}"
    return done


def run_pull(b, rid, tables, strategy=None, **extra):
    """Starts a pull, checks the 202 answer, waits for the job and returns it."""
    r = pull(b, rid, tables, strategy, **extra)
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job_id", "status", "status_url"}, body
    assert body["status"] == "pending" and re.fullmatch(r"job_[0-9a-f]{32}", body["job_id"])
    assert body["status_url"] == f"{JOBS}/{body['job_id']}"
    assert r.headers["Location"] == body["status_url"]
    return wait_job(b, body["job_id"])


def transfers(b, rid):
    r = admin(b, "GET", f"/{rid}/transfers")
    assert r.status_code == 200, r.text
    return r.json()["transfers"]


def counts(report):
    return {k: report[k] for k in ("records", "created", "updated", "skipped", "deleted",
                                   "failed")}


def rows(srv, table, cols, key="id"):
    """The table's rows, normalised across backends: cols maps column -> kind
    (int, num, text, ts, blob); blobs as upper-case hex."""
    pg = srv.backend == "postgres"
    sel = []
    for name, kind in cols.items():
        if kind == "blob":
            sel.append(f"upper(encode({name}, 'hex'))" if pg else
                       f"CASE WHEN {name} IS NULL THEN NULL ELSE hex({name}) END")
        else:
            sel.append(name)
    out = []
    for r in srv.db_query(f"SELECT {', '.join(sel)} FROM {table} ORDER BY {key}"):
        norm = []
        for v, kind in zip(r, cols.values()):
            if v is None or kind in ("text", "blob"):
                norm.append(v)
            elif kind == "int":
                norm.append(int(v))
            elif kind == "num":
                norm.append(round(float(v), 2))
            else:
                norm.append(v.replace("T", " ")[:19])
        out.append(tuple(norm))
    return out


def columns(srv, table):
    """(name, type, not null, primary key) of each column, from B's own catalog."""
    if srv.backend == "postgres":
        cols = srv.db_query(
            "SELECT column_name, data_type, character_maximum_length, is_nullable FROM"
            f" information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position")
        pk = {n for [n] in srv.db_query(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            f" AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '{table}'::regclass"
            " AND i.indisprimary")}
        return [(n, t + (f"({m})" if m else ""), nullable == "NO", n in pk)
                for n, t, m, nullable in cols]
    return [(n, t, notnull == "1", pk != "0") for n, t, notnull, pk in srv.db_query(
        f"SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}') ORDER BY cid")]


# --- a whole table that the receiver lacks ------------------------------------------------

BIG_COLS = {"id": "int", "name": "text", "price": "num", "note": "text", "at": "ts",
            "data": "blob"}


def big_schema(backend, n=N_BIG, pad=0):
    pg = backend == "postgres"
    at = ("TIMESTAMP '2024-01-01' + x * INTERVAL '1 minute'" if pg
          else "datetime('2024-01-01', '+' || x || ' minutes')")
    data = f"CASE WHEN x % 4 = 0 THEN {blob(backend, bytes([0xff, 0, 0xfe]))} END"
    note = f"'note ' || x || '{'.' * pad}'"
    return [
        f"CREATE TABLE big (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL,"
        f" price NUMERIC(10,2), note TEXT, at TIMESTAMP, data {blob_type(backend)})",
        series("big", "id, name, price, note, at, data",
               "x, 'item ' || x, CASE WHEN x % 7 = 0 THEN NULL ELSE (x % 1000) * 1.25 END,"
               f" CASE WHEN x % 3 = 0 THEN NULL ELSE {note} END, CASE WHEN x % 5 = 0 THEN NULL"
               f" ELSE {at} END, {data}", n)]


def test_whole_table_is_created_and_copied(_servers, backend):
    a, b, conn, rid = pair(_servers, backend, a_schema=big_schema(backend))
    t0 = time.monotonic()
    j = run_pull(b, rid, ["big"], "skip")
    elapsed = time.monotonic() - t0
    assert j["status"] == "completed", j
    assert (j["kind"], j["items_done"], j["items_total"]) == ("site-import", N_BIG, N_BIG), j
    assert j["started_at"] and j["completed_at"] and a.base in j["message"]
    [rep] = j["result"]["tables"]
    assert (rep["table"], rep["mode"], rep["status"], rep.get("error")) == (
        "big", "whole", "completed", None), rep
    assert counts(rep) == {"records": N_BIG, "created": N_BIG, "updated": 0, "skipped": 0,
                           "deleted": 0, "failed": 0}, (rep, elapsed)

    pg = b.backend == "postgres"
    want = ([("id", "bigint", True, True), ("name", "character varying(40)", True, False),
             ("price", "numeric", False, False), ("note", "text", False, False),
             ("at", "timestamp without time zone", False, False), ("data", "bytea", False, False)]
            if pg else
            [("id", "INTEGER", False, True), ("name", "VARCHAR(40)", True, False),
             ("price", "NUMERIC", False, False), ("note", "TEXT", False, False),
             ("at", "TIMESTAMP", False, False), ("data", "BLOB", False, False)])
    assert columns(b, "big") == want
    mine = rows(a, "big", BIG_COLS)
    assert len(mine) == N_BIG and mine[3][5] == "FF00FE" and mine[2][3] is None
    assert rows(b, "big", BIG_COLS) == mine

    [t] = transfers(b, rid)
    assert (t["job_id"], t["table"], t["strategy"], t["status"]) == (
        j["id"], "big", "skip", "completed"), t
    assert counts(t) == counts(rep)
    assert t["bytes"] > N_BIG * 20 and t["cursor"] is None and t["error"] is None, t
    assert re.fullmatch(r"xfer_[0-9a-f]{32}", t["id"]) and t["started_at"] <= t["completed_at"]


# --- conflict strategies -------------------------------------------------------------------

SMALL_COLS = {"id": "int", "name": "text", "qty": "int", "note": "text"}
A_ROWS = [(1, "a1", 10, "n1"), (2, "a2", None, "n2"), (3, "a3", 30, None), (4, "a4", 40, "n4"),
          (5, "a5", None, None)]
B_ROWS = [(1, "b1", 11, "m1"), (2, "b2", 22, "m2"), (3, "b3", 33, "m3"), (9, "b9", 99, "m9")]


def small(table, rows_):
    def lit(v):
        return "NULL" if v is None else repr(v) if isinstance(v, str) else str(v)
    return [f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT)",
            f"INSERT INTO {table} VALUES " + ", ".join(
                "(" + ", ".join(lit(v) for v in r) + ")" for r in rows_)]


def test_conflict_strategies(_servers, backend):
    names = ["s_skip", "s_over", "s_merge", "s_append"]
    a, b, conn, rid = pair(_servers, backend, a_schema=sum((small(t, A_ROWS) for t in names), []),
                           b_schema=sum((small(t, B_ROWS) for t in names), []))
    got = {}
    for table, strategy in zip(names, ["skip", "overwrite", "merge", "append"]):
        j = run_pull(b, rid, [table], strategy)
        assert j["status"] == "completed", j
        [rep] = j["result"]["tables"]
        got[strategy] = counts(rep)
        assert rows(a, table, SMALL_COLS) == A_ROWS  # the sender is untouched
    zero = {"records": 5, "created": 0, "updated": 0, "skipped": 0, "deleted": 0, "failed": 0}
    assert got == {"skip": {**zero, "created": 2, "skipped": 3},
                   "overwrite": {**zero, "created": 2, "updated": 3},
                   "merge": {**zero, "created": 2, "updated": 3},
                   "append": {**zero, "created": 5}}
    b9 = [B_ROWS[3]]
    assert rows(b, "s_skip", SMALL_COLS) == B_ROWS[:3] + A_ROWS[3:] + b9
    assert rows(b, "s_over", SMALL_COLS) == A_ROWS + b9
    assert rows(b, "s_merge", SMALL_COLS) == [
        (1, "a1", 10, "n1"), (2, "a2", 22, "n2"), (3, "a3", 30, "m3"), (4, "a4", 40, "n4"),
        (5, "a5", None, None), (9, "b9", 99, "m9")]
    appended = rows(b, "s_append", SMALL_COLS)
    assert len(appended) == len(B_ROWS) + len(A_ROWS)
    assert appended[:4] == B_ROWS  # the original rows, untouched
    new = appended[4:]
    assert all(r[0] > 9 for r in new) and len({r[0] for r in new}) == 5
    assert sorted(r[1:] for r in new) == sorted(r[1:] for r in A_ROWS)
    strategies = {t["table"]: t["strategy"] for t in transfers(b, rid)}
    assert strategies == dict(zip(names, ["skip", "overwrite", "merge", "append"]))


# --- text keys and binary values -----------------------------------------------------------

UTF8 = "h\u00e9llo \u2713 \u043a\u043b\u044e\u0447"
BLOBS = [bytes([0xff, 0x00, 0xfe]), bytes(range(256)), UTF8.encode(), None, b"",
         bytes([0xc3, 0x28]), b"plain ascii"]


def test_text_keys_and_binary_values(_servers, backend):
    n_codes = 2500  # pages of 1000, keys in text order ('k1', 'k10', 'k100', ...)
    bt = blob_type(backend)
    schema = [
        "CREATE TABLE codes (code TEXT PRIMARY KEY, label TEXT)",
        series("codes", "code, label", "'k' || x, 'label ' || x", n_codes),
        f"INSERT INTO codes VALUES ('{UTF8}', 'unicode key'), ('a b', NULL), ('Z', '{UTF8}')",
        f"CREATE TABLE bin (id INTEGER PRIMARY KEY, data {bt}, label TEXT)",
        "INSERT INTO bin VALUES " + ", ".join(
            f"({i + 1}, {'NULL' if d is None else blob(backend, d)}, '{UTF8} {i}')"
            for i, d in enumerate(BLOBS)),
        f"CREATE TABLE binnul (id INTEGER PRIMARY KEY, data {bt})",
        f"INSERT INTO binnul VALUES (1, {blob(backend, b'a' + bytes(1) + b'b')}),"
        f" (2, {blob(backend, bytes(3))})",
    ]
    a, b, conn, rid = pair(_servers, backend, a_schema=schema)
    j = run_pull(b, rid, ["codes", "bin"], "skip")
    assert j["status"] == "completed", j
    reps = {r["table"]: r for r in j["result"]["tables"]}
    assert counts(reps["codes"]) == {"records": n_codes + 3, "created": n_codes + 3,
                                     "updated": 0, "skipped": 0, "deleted": 0, "failed": 0}
    assert counts(reps["bin"])["created"] == len(BLOBS) and reps["bin"]["failed"] == 0
    codes = {"code": "text", "label": "text"}
    assert rows(b, "codes", codes, key="code") == rows(a, "codes", codes, key="code")
    assert len(rows(b, "codes", codes, key="code")) == n_codes + 3
    bcols = {"id": "int", "data": "blob", "label": "text"}
    want = [(i + 1, None if d is None else d.hex().upper(), f"{UTF8} {i}")
            for i, d in enumerate(BLOBS)]
    assert rows(a, "bin", bcols) == want
    assert rows(b, "bin", bcols) == want
    if b.backend == "sqlite":  # stored as bytes, not as text
        assert b.db_query("SELECT typeof(data) FROM bin ORDER BY id") == [
            ["null" if d is None else "blob"] for d in BLOBS]

    # bytes that are valid UTF-8 but hold a NUL arrive as they are, too
    j = run_pull(b, rid, ["binnul"], "skip")
    last = transfers(b, rid)[0]
    assert last["error"] is None, last["error"]
    assert (j["status"], last["status"]) == ("completed", "completed"), j["message"]
    assert rows(b, "binnul", {"id": "int", "data": "blob"}) == [(1, "610062"), (2, "000000")]


# --- incremental pulls ---------------------------------------------------------------------

T_COLS = {"id": "int", "name": "text", "qty": "int"}
N_T = 3000


def test_incremental_pull(_servers, backend):
    schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)",
              series("t", "id, name, qty", "x, 'name ' || x, x % 11", N_T),
              "CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)",
              series("u", "id, v", "x, 'v' || x", 40)]
    a, b, conn, rid = pair(_servers, backend, a_schema=schema,
                           a_flags=("--allowed-tables", "t", "--purge-interval", "0"))
    j = run_pull(b, rid, ["t", "u"], "skip", incremental=True)  # nothing earlier: whole
    assert j["status"] == "completed", j
    reps = {r["table"]: r for r in j["result"]["tables"]}
    assert (reps["t"]["mode"], reps["u"]["mode"]) == ("whole", "whole")
    assert (reps["t"]["created"], reps["u"]["created"]) == (N_T, 40)
    first = {t["table"]: t for t in transfers(b, rid)}
    assert isinstance(first["t"]["cursor"], int) and first["t"]["cursor"] > 0, first["t"]
    assert first["u"]["cursor"] is None
    assert rows(b, "t", T_COLS) == rows(a, "t", T_COLS)

    # on A, straight in its database: 120 updates, 30 deletions, 60 new rows; one in u
    a.db_exec("UPDATE t SET name = 'changed ' || id, qty = NULL WHERE id <= 120",
              f"DELETE FROM t WHERE id > {N_T - 30}",
              series("t", "id, name, qty", f"x + {N_T}, 'new ' || x, x", 60),
              "UPDATE u SET v = 'changed' WHERE id = 3")
    j = run_pull(b, rid, ["t", "u"], "overwrite", incremental=True)
    assert j["status"] == "completed", j
    reps = {r["table"]: r for r in j["result"]["tables"]}
    assert (reps["t"]["mode"], reps["t"]["status"]) == ("changes", "completed"), reps["t"]
    assert counts(reps["t"]) == {"records": 210, "created": 60, "updated": 120, "skipped": 0,
                                 "deleted": 30, "failed": 0}
    assert reps["u"]["mode"] == "whole"  # A does not track u: pulled whole
    assert counts(reps["u"]) == {"records": 40, "created": 0, "updated": 40, "skipped": 0,
                                 "deleted": 0, "failed": 0}
    mine = rows(a, "t", T_COLS)
    assert len(mine) == N_T + 30 and rows(b, "t", T_COLS) == mine
    assert rows(b, "u", {"id": "int", "v": "text"})[2] == (3, "changed")
    second = {t["table"]: t for t in transfers(b, rid) if t["job_id"] == j["id"]}
    assert second["t"]["cursor"] > first["t"]["cursor"] and second["u"]["cursor"] is None
    assert counts(second["t"]) == counts(reps["t"])

    # nothing changed since: an empty change set
    j = run_pull(b, rid, ["t"], "overwrite", incremental=True)
    [rep] = j["result"]["tables"]
    assert (rep["mode"], rep["records"], rep["status"]) == ("changes", 0, "completed"), rep

    # A stops tracking t: the sender refuses the cursor and t comes whole
    i = a.args.index("--allowed-tables")
    del a.args[i:i + 2]
    a.restart()
    a.db_exec("UPDATE t SET name = 'untracked' WHERE id = 7")
    j = run_pull(b, rid, ["t"], "overwrite", incremental=True)
    [rep] = j["result"]["tables"]
    assert (rep["mode"], rep["status"], rep["records"], rep["updated"]) == (
        "whole", "completed", N_T + 30, N_T + 30), rep
    assert rows(b, "t", T_COLS) == rows(a, "t", T_COLS)


# --- an interrupted import resumes ---------------------------------------------------------


def test_killed_import_resumes_without_duplicates(_servers, backend):
    a, b, conn, rid = pair(_servers, backend, a_schema=big_schema(backend, pad=200))
    r = pull(b, rid, ["big"], "skip")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def midway():
        j = job(b, job_id)
        assert j["status"] in ("pending", "running"), j
        return j if 0 < j["items_done"] <= N_BIG // 2 else None

    at = wait_until(midway, 60, 0.01)
    assert at, job(b, job_id)
    assert b.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    [[status, records, created, last_key]] = b.db_query(
        "SELECT status, records, created, last_key FROM ferry_site_transfers")
    records = int(records)
    assert status == "running" and 0 < records < N_BIG and records % 1000 == 0
    assert int(created) == records and json.loads(last_key) == records
    assert int(b.db_query("SELECT COUNT(*) FROM big")[0][0]) == records

    b.start()
    j = wait_job(b, job_id, timeout=60)
    assert j["status"] == "completed", j
    [rep] = j["result"]["tables"]
    assert counts(rep) == {"records": N_BIG, "created": N_BIG, "updated": 0, "skipped": 0,
                           "deleted": 0, "failed": 0}, rep
    [t] = transfers(b, rid)
    assert (t["job_id"], t["status"]) == (job_id, "completed")
    assert counts(t) == counts(rep)
    assert b.db_query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM big") == [
        [str(N_BIG), str(N_BIG)]]
    assert rows(b, "big", BIG_COLS) == rows(a, "big", BIG_COLS)


# --- refusals and failures -------------------------------------------------------------------


def test_refusals_failures_and_the_cli(_servers, backend):
    schema = small("items", A_ROWS) + ["CREATE TABLE secret (id INTEGER PRIMARY KEY, v TEXT)",
                                       "INSERT INTO secret VALUES (1, 'hidden')"]
    a, b, conn, rid = pair(_servers, backend, a_schema=schema, b_mode="require_approval",
                           excluded_tables=["secret"])
    assert_v1_error(pull(b, rid, ["items"]), 409, "CONFLICT")  # pending
    assert_v1_error(pull(a, conn["id"], ["items"]), 409, "CONFLICT")  # a sender
    assert_v1_error(pull(b, "no-such-id", ["items"]), 404, "NOT_FOUND")
    # the order of the checks: body fields, the connection, then tables and strategy
    assert_v1_error(pull(b, rid, [], "bogus"), 409, "CONFLICT")
    assert_v1_error(pull(b, "no-such-id", ["a-b"], "bogus"), 404, "NOT_FOUND")
    assert_v1_error(pull(b, "no-such-id", ["items"], incremental=1), 400, "INVALID_REQUEST")
    r = admin(b, "POST", f"/{rid}/approve")
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    assert_v1_error(pull(a, conn["id"], ["items"]), 409, "CONFLICT")  # still a sender
    bad = [{}, {"tables": []}, {"tables": "items"}, {"tables": None}, {"tables": [""]},
           {"tables": ["ferry_x"]}, {"tables": ["ferry_sites"]}, {"tables": ["a-b"]},
           {"tables": ["1a"]}, {"tables": ["items", 5]}, {"tables": ["t"] * 65},
           {"tables": ["items"], "strategy": "bogus"}, {"tables": ["items"], "strategy": 5},
           {"tables": ["items"], "incremental": "yes"}]
    for body in bad:
        assert_v1_error(admin(b, "POST", f"/{rid}/pull", json=body), 400, "INVALID_REQUEST")
    assert transfers(b, rid) == []
    assert b.db_query("SELECT COUNT(*) FROM ferry_jobs WHERE kind = 'site-import'") == [["0"]]

    for action in ("suspend", "reactivate"):
        r = admin(a, "POST", f"/{conn['id']}/{action}")
        assert r.status_code == 200 and r.json()["mirrored"] is True, r.text
        if action == "suspend":
            assert_v1_error(pull(b, rid, ["items"]), 409, "CONFLICT")

    # a table the sender excludes fails alone; the job reports it
    j = run_pull(b, rid, ["items", "secret"], "skip")
    assert j["status"] == "completed", j
    reps = {r["table"]: r for r in j["result"]["tables"]}
    assert (reps["items"]["status"], reps["items"]["created"]) == ("completed", 5)
    assert reps["secret"]["status"] == "failed" and "404" in reps["secret"]["error"], reps
    assert "Table not found" in reps["secret"]["error"]
    assert "some failed" in j["message"]
    xs = {t["table"]: t for t in transfers(b, rid)}
    assert xs["secret"]["status"] == "failed" and "404" in xs["secret"]["error"]
    assert xs["secret"]["records"] == 0 and xs["secret"]["completed_at"]
    j = run_pull(b, rid, ["secret"])
    assert (j["status"], j["message"]) == ("failed", "every table failed; see the transfers"), j
    assert_v1_error(b.get(f"{JOBS}/job_{'0' * 32}", token=b.admin_token), 404, "NOT_FOUND")
    assert b.db_query("SELECT COUNT(*) FROM ferry_site_transfers WHERE tbl = 'secret'"
                      " AND status = 'failed'") == [["2"]]

    # the CLI runs the import itself, on B's database, and prints the transfers
    a.db_exec("UPDATE items SET name = 'cli' WHERE id = 1")
    store = ["--data-dir", b.data_dir] + (["--db", b.db_url] if b.db_url else [])
    p = run_ferry("sites", "pull", rid, "--tables", "items", "--strategy", "overwrite", *store,
                  "--sites-allow-private", "true", timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out, list) and len(out) == len(transfers(b, rid)) == 4
    newest = out[0]
    assert (newest["table"], newest["strategy"], newest["status"]) == (
        "items", "overwrite", "completed"), newest
    assert counts(newest) == {"records": 5, "created": 0, "updated": 5, "skipped": 0,
                              "deleted": 0, "failed": 0}
    assert rows(b, "items", SMALL_COLS)[0] == (1, "cli", 10, "n1")
    assert job(b, newest["job_id"])["status"] == "completed"
    p = run_ferry("sites", "pull", rid, "--tables", "items", "--strategy", "bogus", *store)
    assert p.returncode != 0 and "strategy" in p.stderr


# --- every strategy on 50,000 rows ------------------------------------------------------------

def strategy_tables(names, n, b_side):
    """Sender tables of n rows (x: name 'a<x>', qty NULL every 7th) or, on the receiver,
    the first half with other values (name 'b<x>', qty -x)."""
    out = []
    for t in names:
        out.append(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
        out.append(series(t, "id, name, qty", "x, 'b' || x, -x", n // 2) if b_side else
                   series(t, "id, name, qty",
                          "x, 'a' || x, CASE WHEN x % 7 = 0 THEN NULL ELSE x END", n))
    return out


def test_each_strategy_on_50000_rows(_servers, backend):
    names = ["w_skip", "w_over", "w_merge", "w_append"]
    n, half = N_BIG, N_BIG // 2
    a, b, conn, rid = pair(_servers, backend, a_schema=strategy_tables(names, n, False),
                           b_schema=strategy_tables(names, n, True))
    sender = [(x, f"a{x}", None if x % 7 == 0 else x) for x in range(1, n + 1)]
    cols = {"id": "int", "name": "text", "qty": "int"}
    for table, strategy in zip(names, ["skip", "overwrite", "merge", "append"]):
        j = run_pull(b, rid, [table], strategy)
        assert j["status"] == "completed", j
        [rep] = j["result"]["tables"]
        got = rows(b, table, cols)
        if strategy == "skip":
            assert counts(rep) == {"records": n, "created": half, "updated": 0, "skipped": half,
                                   "deleted": 0, "failed": 0}, rep
            assert got == [(x, f"b{x}", -x) for x in range(1, half + 1)] + sender[half:]
        elif strategy == "overwrite":
            assert counts(rep) == {"records": n, "created": half, "updated": half,
                                   "skipped": 0, "deleted": 0, "failed": 0}, rep
            assert got == sender
        elif strategy == "merge":  # the receiver's qty stays where the sender's is NULL
            assert counts(rep) == {"records": n, "created": half, "updated": half,
                                   "skipped": 0, "deleted": 0, "failed": 0}, rep
            assert got == [(x, f"a{x}", -x if x % 7 == 0 else x) for x in range(1, half + 1)] \
                + sender[half:]
        else:  # append: the sender's rows under new keys after the receiver's
            assert counts(rep) == {"records": n, "created": n, "updated": 0, "skipped": 0,
                                   "deleted": 0, "failed": 0}, rep
            assert got[:half] == [(x, f"b{x}", -x) for x in range(1, half + 1)]
            assert [r[1:] for r in got[half:]] == [r[1:] for r in sender]
            assert [r[0] for r in got[half:]] == list(range(half + 1, half + n + 1))
