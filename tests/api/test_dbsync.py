"""EonaCat.Sync's database sync (POST /api/v1/sync/database) between configured locations
(--location NAME=sqlite:PATH or NAME=postgres://...), sessions over named locations, and
the sync counters of /api/v1/metrics and /metrics.

Each test runs on both store backends (ferry's own database, where the pair's state and
the conflicts live); the synced databases are a SQLite file and a PostgreSQL database of
the shared test cluster, whichever backend ferry itself uses."""

import os
import re
import sqlite3
import threading

import pytest

from conftest import ISO_RE, assert_v1_error, wait_until

DB = "/api/v1/sync/database"
SESS = "/api/v1/sync/session"
RESULT_KEYS = {"success", "changesApplied", "conflictsEncountered", "errors", "syncedAt",
               "executionTimeMs", "jobId", "rowsInserted", "rowsUpdated", "rowsDeleted",
               "rowsUnchanged", "bytesTransferred", "conflicts"}
N_USERS = 1200  # more than two pages of 500, so the walk pages on both sides
CODES = ["b", "B", "a", "_x", "Z", "é", "aa"]  # byte order differs from most collations


def lite(path, *statements):
    con = sqlite3.connect(path, timeout=10)
    try:
        rows = []
        for sql in statements:
            rows = con.execute(sql).fetchall()
            con.commit()
        return rows
    finally:
        con.close()


def seed_users(path):
    lite(path,
         "CREATE TABLE Users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL,"
         " active BOOLEAN, born TIMESTAMP, pic BLOB, amount NUMERIC(10,2))",
         "CREATE TABLE Codes (code TEXT PRIMARY KEY, label TEXT)")
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO Users VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(i, f"user{i}", i / 2, i % 2, f"2024-01-02 03:04:{i % 60:02d}",
                      bytes([i % 256, 0, 255]) if i % 3 else None, f"{i}.25")
                     for i in range(1, N_USERS + 1)])
    con.executemany("INSERT INTO Codes VALUES (?, ?)", [(c, f"label {c}") for c in CODES])
    con.commit()
    con.close()


@pytest.fixture
def dbs(tmp_path, pg_cluster):
    """Two SQLite files and a PostgreSQL database, each configured as a location."""
    pg_db = pg_cluster.create_database()
    d = {"lite": str(tmp_path / "lite.db"), "back": str(tmp_path / "back.db"),
         "pg_db": pg_db, "pg": pg_cluster, "port": pg_cluster.port}
    seed_users(d["lite"])
    d["flags"] = ["--location", f"lite=sqlite:{d['lite']}", "--location",
                  f"back=sqlite:{d['back']}",
                  "--location", f"pg={pg_cluster.url(pg_db)}", "--rate-limit", "0"]
    return d


def dbsync(srv, source, target, entities, status=200, token=None, **opts):
    body = {"sourceConnectionString": source, "targetConnectionString": target,
            "entityNames": entities, **opts}
    r = srv.post(DB, token=token or srv.admin_token, json=body, timeout=120)
    if status != 200:
        return r
    assert r.status_code == 200, r.text
    res = r.json()
    assert set(res) == RESULT_KEYS, res
    assert ISO_RE.match(res["syncedAt"]) and res["executionTimeMs"] >= 0, res
    assert res["changesApplied"] == res["rowsInserted"] + res["rowsUpdated"] + \
        res["rowsDeleted"], res
    assert res["success"] is (res["errors"] == []), res
    return res


def counts(res):
    return {k: res[k] for k in ("rowsInserted", "rowsUpdated", "rowsDeleted", "rowsUnchanged",
                                "conflictsEncountered")}


def pg_rows(d, sql):
    return d["pg"].psql(sql, db=d["pg_db"])


def test_sqlite_to_postgres_and_back(make_server, dbs):
    srv = make_server(*dbs["flags"])
    ado = f"Host=127.0.0.1;Port={dbs['port']};Database={dbs['pg_db']};Username=postgres"
    res = dbsync(srv, f"sqlite:{dbs['lite']}", ado, ["Users", "Codes"], useTransactions=True)
    assert counts(res) == {"rowsInserted": N_USERS + len(CODES), "rowsUpdated": 0,
                           "rowsDeleted": 0, "rowsUnchanged": 0, "conflictsEncountered": 0}, res
    assert res["bytesTransferred"] > 0

    # the missing tables were created with mapped types
    types = dict(pg_rows(dbs, "SELECT column_name, data_type FROM information_schema.columns"
                              " WHERE table_name = 'Users'"))
    assert types == {"id": "bigint", "name": "text", "score": "double precision",
                     "active": "boolean", "born": "timestamp without time zone",
                     "pic": "bytea", "amount": "numeric"}, types
    assert pg_rows(dbs, 'SELECT id, name, score, active, born, encode(pic, \'hex\'), amount'
                        ' FROM "Users" WHERE id IN (2, 3) ORDER BY id') == [
        ["2", "user2", "1", "f", "2024-01-02 03:04:02", "0200ff", "2.25"],
        ["3", "user3", "1.5", "t", "2024-01-02 03:04:03", "", "3.25"]]
    assert sorted(r[0] for r in pg_rows(dbs, 'SELECT code FROM "Codes"')) == sorted(CODES)

    # a second run of the unchanged pair copies nothing (the location name works too)
    res = dbsync(srv, "lite", "pg", ["Users", "Codes"])
    assert counts(res) == {"rowsInserted": 0, "rowsUpdated": 0, "rowsDeleted": 0,
                           "rowsUnchanged": N_USERS + len(CODES), "conflictsEncountered": 0}
    assert res["bytesTransferred"] == 0

    # changes on both sides: an update, a delete and an insert in the source, a row
    # changed in the target since (a conflict, kept), a row deleted in the source but
    # changed in the target (a conflict, kept)
    lite(dbs["lite"], "UPDATE Users SET name = 'renamed' WHERE id = 5",
         "DELETE FROM Users WHERE id IN (6, 9)", "INSERT INTO Users(id, name) VALUES (5000, 'new')",
         "UPDATE Users SET score = 99 WHERE id = 7")
    pg_rows(dbs, 'UPDATE "Users" SET name = \'theirs\' WHERE id IN (7, 9)')
    res = dbsync(srv, "lite", "pg", ["Users"])
    assert counts(res) == {"rowsInserted": 1, "rowsUpdated": 1, "rowsDeleted": 1,
                           "rowsUnchanged": N_USERS - 4, "conflictsEncountered": 2}, res
    assert {(c["key"], c["resolution"]) for c in res["conflicts"]} == {
        ("7", "kept-target"), ("9", "kept-target")}
    assert pg_rows(dbs, 'SELECT id, name FROM "Users" WHERE id IN (5, 6, 7, 9, 5000)'
                        ' ORDER BY id') == [["5", "renamed"], ["7", "theirs"], ["9", "theirs"],
                                            ["5000", "new"]]

    # the conflicts can be listed, with both sides
    r = srv.get(f"{DB}/conflicts", token=srv.admin_token,
                params={"source": "lite", "target": "pg", "entity": "Users"})
    assert r.status_code == 200, r.text
    listed = {c["key"]: c for c in r.json()["conflicts"]}
    assert set(listed) == {"7", "9"} and r.json()["totalCount"] == 2
    assert listed["7"]["sourceRow"]["score"] == "99.0" and \
        listed["7"]["targetRow"]["name"] == "theirs"
    assert listed["9"]["sourceRow"] is None and listed["9"]["resolution"] == "kept-target"

    # overwrite: the source wins, then the pair is quiet
    res = dbsync(srv, "lite", "pg", ["Users"], conflictPolicy="overwrite")
    assert res["conflictsEncountered"] == 2 and res["rowsUpdated"] == 1 and \
        res["rowsDeleted"] == 1, res
    assert pg_rows(dbs, 'SELECT id, name FROM "Users" WHERE id IN (7, 9)') == [["7", "user7"]]
    res = dbsync(srv, "lite", "pg", ["Users", "Codes"])
    assert res["changesApplied"] == 0 and res["conflictsEncountered"] == 0, res

    # and back: PostgreSQL to a new SQLite file, types mapped the other way
    res = dbsync(srv, "pg", "back", ["Users", "Codes"], useTransactions=False)
    assert res["rowsInserted"] == N_USERS - 1 + len(CODES), res
    decl = {r[1]: r[2] for r in lite(dbs["back"], "PRAGMA table_info(Users)")}
    assert decl == {"id": "INTEGER", "name": "TEXT", "score": "REAL", "active": "BOOLEAN",
                    "born": "TIMESTAMP", "pic": "BLOB", "amount": "NUMERIC"}, decl
    original = lite(dbs["lite"], "SELECT * FROM Users ORDER BY id")
    copied = lite(dbs["back"], "SELECT * FROM Users ORDER BY id")
    assert copied == [tuple(float(v) if k == 6 and v is not None else v for k, v in enumerate(row))
                      for row in original], (copied[:3], original[:3])
    assert sorted(lite(dbs["back"], "SELECT code, label FROM Codes")) == \
        sorted(lite(dbs["lite"], "SELECT code, label FROM Codes"))
    res = dbsync(srv, "pg", "back", ["Users", "Codes"])
    assert res["changesApplied"] == 0 and res["rowsUnchanged"] == N_USERS - 1 + len(CODES)


def test_conflicts_from_postgres_to_sqlite(make_server, dbs):
    """The other direction: PostgreSQL is the source, a SQLite file the target. Rows changed,
    deleted or added in the target since the pair's last sync are conflicts: listed, kept
    as the target has them, and overwritten only with conflictPolicy overwrite."""
    srv = make_server(*dbs["flags"])
    dbsync(srv, "lite", "pg", ["Users"])
    res = dbsync(srv, "pg", "back", ["Users"])
    assert res["rowsInserted"] == N_USERS and res["conflictsEncountered"] == 0, res
    pg_rows(dbs, 'UPDATE "Users" SET name = \'src\' || id WHERE id IN (5, 7)')
    pg_rows(dbs, 'INSERT INTO "Users"(id, name) VALUES (6000, \'pg-new\'), (6001, \'only-pg\')')
    lite(dbs["back"], "UPDATE Users SET name = 'theirs' WHERE id = 7",
         "DELETE FROM Users WHERE id = 8",
         "INSERT INTO Users(id, name) VALUES (6000, 'back-new')")
    res = dbsync(srv, "pg", "back", ["Users"])
    assert counts(res) == {"rowsInserted": 1, "rowsUpdated": 1, "rowsDeleted": 0,
                           "rowsUnchanged": N_USERS - 3, "conflictsEncountered": 3}, res
    assert {(c["key"], c["reason"], c["resolution"]) for c in res["conflicts"]} == {
        ("7", "changed in the target", "kept-target"),
        ("8", "deleted in the target", "kept-target"),
        ("6000", "added in the target since the last sync", "kept-target")}, res
    query = "SELECT id, name FROM Users WHERE id IN (5, 7, 8, 6000, 6001) ORDER BY id"
    assert lite(dbs["back"], query) == [(5, "src5"), (7, "theirs"), (6000, "back-new"),
                                        (6001, "only-pg")]

    r = srv.get(f"{DB}/conflicts", token=srv.admin_token,
                params={"source": "pg", "target": "back", "entity": "Users"})
    assert r.status_code == 200, r.text
    listed = {c["key"]: c for c in r.json()["conflicts"]}
    assert set(listed) == {"7", "8", "6000"} and r.json()["totalCount"] == 3, listed
    assert listed["7"]["sourceRow"]["name"] == "src7" and \
        listed["7"]["targetRow"]["name"] == "theirs"
    assert listed["8"]["targetRow"] is None and listed["8"]["sourceRow"]["name"] == "user8"
    assert listed["6000"]["targetRow"]["name"] == "back-new"
    # the other direction's list is its own
    r = srv.get(f"{DB}/conflicts", token=srv.admin_token,
                params={"source": "lite", "target": "pg", "entity": "Users"})
    assert r.status_code == 200 and r.json()["totalCount"] == 0, r.text

    # unchanged since: still conflicts, still kept; then overwrite makes the source win
    res = dbsync(srv, "pg", "back", ["Users"])
    assert res["conflictsEncountered"] == 3 and res["changesApplied"] == 0, res
    res = dbsync(srv, "pg", "back", ["Users"], conflictPolicy="overwrite")
    assert res["conflictsEncountered"] == 3 and res["changesApplied"] == 3, res
    assert {c["resolution"] for c in res["conflicts"]} == {"overwritten"}
    assert lite(dbs["back"], query) == [(5, "src5"), (7, "src7"), (8, "user8"),
                                        (6000, "pg-new"), (6001, "only-pg")]
    res = dbsync(srv, "pg", "back", ["Users"])
    assert res["changesApplied"] == 0 and res["conflictsEncountered"] == 0, res


def journal_mode(path):
    return lite(path, "PRAGMA journal_mode")[0][0]


def test_sync_keeps_each_files_journal_mode(make_server, dbs):
    """A database sync reads and writes a user's SQLite files without changing their
    journal mode: files in a rollback journal stay so (and the sync still commits page by
    page while it reads the target), and a file in WAL mode stays in WAL mode."""
    lite(dbs["back"], "PRAGMA journal_mode=DELETE")  # creates the target file
    assert journal_mode(dbs["lite"]) == journal_mode(dbs["back"]) == "delete"
    srv = make_server(*dbs["flags"])
    res = dbsync(srv, "lite", "back", ["Users", "Codes"])
    assert counts(res)["rowsInserted"] == N_USERS + len(CODES), res
    lite(dbs["lite"], "UPDATE Users SET name = 'changed' WHERE id % 100 = 0",
         "INSERT INTO Users (id, name) SELECT id + 2000, name FROM Users WHERE id <= 10")
    res = dbsync(srv, "lite", "back", ["Users"])
    assert counts(res) == {"rowsInserted": 10, "rowsUpdated": N_USERS // 100, "rowsDeleted": 0,
                           "rowsUnchanged": N_USERS - N_USERS // 100,
                           "conflictsEncountered": 0}, res
    query = "SELECT * FROM Users ORDER BY id"
    assert lite(dbs["back"], query) == lite(dbs["lite"], query)
    for path in (dbs["lite"], dbs["back"]):
        assert journal_mode(path) == "delete" and not os.path.exists(path + "-wal"), path

    lite(dbs["back"], "PRAGMA journal_mode=WAL")
    lite(dbs["lite"], "UPDATE Users SET score = -1 WHERE id = 7")
    res = dbsync(srv, "lite", "back", ["Users"])
    assert res["rowsUpdated"] == 1 and res["success"] is True, res
    assert lite(dbs["back"], "SELECT score FROM Users WHERE id = 7") == [(-1.0,)]
    assert journal_mode(dbs["back"]) == "wal" and journal_mode(dbs["lite"]) == "delete"


def test_use_transactions_makes_an_entity_all_or_nothing(make_server, dbs):
    srv = make_server(*dbs["flags"])
    lite(dbs["lite"], "UPDATE Users SET name = 'a name far too long' WHERE id = 800")
    pg_rows(dbs, 'CREATE TABLE "Users" (id bigint PRIMARY KEY, name text NOT NULL'
                 ' CHECK (length(name) < 12), score float8, active boolean, born timestamp,'
                 ' pic bytea, amount numeric)')
    res = dbsync(srv, "lite", "pg", ["Users", "Codes"], useTransactions=True)
    assert res["success"] is False and len(res["errors"]) == 1, res
    assert res["errors"][0].startswith("Users: "), res
    assert res["rowsInserted"] == len(CODES)  # Codes went through; Users left nothing
    assert pg_rows(dbs, 'SELECT count(*) FROM "Users"') == [["0"]]
    # without, the pages written before the failing one stay
    res = dbsync(srv, "lite", "pg", ["Users"], useTransactions=False)
    assert res["success"] is False
    kept = int(pg_rows(dbs, 'SELECT count(*) FROM "Users"')[0][0])
    assert 0 < kept < 800 and res["rowsInserted"] == kept, (kept, res)
    # fixed, the next run carries on without copying the kept rows again
    lite(dbs["lite"], "UPDATE Users SET name = 'short' WHERE id = 800")
    res = dbsync(srv, "lite", "pg", ["Users"])
    assert res["success"] is True and res["rowsInserted"] == N_USERS - kept, res
    assert res["rowsUnchanged"] == kept


def test_one_sync_of_a_pair_at_a_time(make_server, dbs):
    srv = make_server(*dbs["flags"])
    results = []

    def run():
        results.append(dbsync(srv, "lite", "pg", ["Users"]))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # each ran alone or was refused while another held the pair; none saw the others'
    # writes as changes made in the target
    for res in results:
        assert res["conflictsEncountered"] == 0, res
        assert res["success"] or res["errors"] == [
            "Users: another sync of this pair is running"], res
    assert sum(r["rowsInserted"] for r in results) == N_USERS
    res = dbsync(srv, "lite", "pg", ["Users"])
    assert res["changesApplied"] == 0 and res["conflictsEncountered"] == 0, res
    assert res["rowsUnchanged"] == N_USERS


def test_deletes_come_from_a_ferry_change_log(make_server, backend, dbs, tmp_path, pg_cluster):
    """A source that is a ferry database capturing the table carries its deletes even to
    target rows this pair never copied; other target-only rows stay."""
    data = tmp_path / "own"
    data.mkdir()
    create = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"
    if backend == "sqlite":
        own, db_url = f"sqlite:{data}/ferry.db", None
        lite(str(data / "ferry.db"), create)
    else:
        name = pg_cluster.create_database()
        own = db_url = pg_cluster.url(name)
        pg_cluster.psql(create, db=name)
    srv = make_server(*dbs["flags"], "--location", f"own={own}", "--allowed-tables", "items",
                      data_dir=str(data), db_url=db_url)
    # writes straight into ferry's database are captured by its triggers
    statements = ["INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')",
                  "DELETE FROM items WHERE id = 3"]
    for sql in statements:
        if backend == "sqlite":
            lite(str(data / "ferry.db"), sql)
        else:
            pg_cluster.psql(sql, db=name)
    pg_rows(dbs, "CREATE TABLE items (id bigint PRIMARY KEY, name text)")
    pg_rows(dbs, "INSERT INTO items VALUES (1, 'one'), (3, 'three'), (4, 'theirs')")
    res = dbsync(srv, "own", "pg", ["items"])
    assert res["rowsDeleted"] == 1 and res["rowsInserted"] == 1, res
    assert pg_rows(dbs, "SELECT id, name FROM items ORDER BY id") == [
        ["1", "one"], ["2", "two"], ["4", "theirs"]]
    # a plain database has no change log: its target-only rows stay
    res = dbsync(srv, "lite", "pg", ["Codes"])
    pg_rows(dbs, 'INSERT INTO "Codes" VALUES (\'zz\', \'theirs\')')
    res = dbsync(srv, "lite", "pg", ["Codes"])
    assert res["changesApplied"] == 0, res
    assert pg_rows(dbs, 'SELECT count(*) FROM "Codes"') == [[str(len(CODES) + 1)]]


def test_only_configured_databases_and_admins(make_server, dbs, tmp_path):
    srv = make_server(*dbs["flags"])
    other = str(tmp_path / "other.db")
    lite(other, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    for source, target in ((f"sqlite:{other}", "pg"), ("lite", f"Data Source={other}"),
                           ("lite", "Server=db.example;Database=prod;Password=hunter2")):
        body = assert_v1_error(dbsync(srv, source, target, ["t"], status=403), 403, "FORBIDDEN")
        assert "hunter2" not in body["message"] + body["details"]
        assert "not a configured location" in body["details"], body
    bob = srv.create_token(role="user", user_id="bob")["token"]
    assert_v1_error(dbsync(srv, "lite", "pg", ["Users"], status=403, token=bob), 403, "FORBIDDEN")
    assert_v1_error(srv.post(DB, json={}), 401, "UNAUTHORIZED")
    for body in ({"sourceConnectionString": "lite", "targetConnectionString": "pg"},
                 {"sourceConnectionString": "lite", "targetConnectionString": "pg",
                  "entityNames": []},
                 {"sourceConnectionString": "lite", "targetConnectionString": "lite",
                  "entityNames": ["Users"]},
                 {"sourceConnectionString": "nowhere", "targetConnectionString": "pg",
                  "entityNames": ["Users"]},
                 {"sourceConnectionString": "lite", "targetConnectionString": "pg",
                  "entityNames": ["Users"], "conflictPolicy": "coin-toss"}):
        assert_v1_error(srv.post(DB, token=srv.admin_token, json=body), 400, "INVALID_REQUEST")
    # a table the source lacks is an error of that entity only
    res = dbsync(srv, "lite", "back", ["Nope", "Codes"])
    assert res["success"] is False and res["rowsInserted"] == len(CODES), res
    assert res["errors"][0].startswith("Nope: "), res
    # the seed's own shape of connection string, as a configured location
    srv2 = make_server("--location", f"main=postgres://postgres@localhost:{dbs['port']}/"
                       f"{dbs['pg_db']}", "--location", f"lite=sqlite:{dbs['lite']}")
    res = dbsync(srv2, "lite", f"Server=127.0.0.1;Port={dbs['port']};Database={dbs['pg_db']};",
                 ["Codes"])
    assert res["rowsInserted"] == len(CODES), res


@pytest.mark.sqlite_only
def test_bad_location_config_is_refused(backend, tmp_path):
    from conftest import run_ferry
    for bad in ("nokind", "x=ftp:/a", "x=folder:relative", "x=folder:/a,x=folder:/b",
                "x=postgres:nothing"):
        proc = run_ferry("serve", "--data-dir", str(tmp_path / "d"), "--location", bad,
                         "--listen", "127.0.0.1:0")
        assert proc.returncode != 0 and "location" in proc.stderr, (bad, proc.stderr)


# --- sessions over named locations --------------------------------------------------------


def wait_session(srv, sid, token=None):
    def done():
        r = srv.get(f"{SESS}/{sid}/status", token=token or srv.admin_token)
        assert r.status_code == 200, r.text
        return r.json()["status"] in ("completed", "failed") and r.json()
    st = wait_until(done, timeout=60, interval=0.05)
    assert st, sid
    return st


def test_seed_session_example_with_named_locations(make_server, dbs, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "report.txt").write_bytes(b"quarterly\n")
    # the environment's comma-separated list (flags would replace it)
    dbs_locations = ",".join(v for v in dbs["flags"] if "=" in v)
    env = {"FERRY_LOCATIONS": f"System1=folder:{one},System2=folder:{two},"
                              f"bucket=s3:backups/ferry,{dbs_locations}"}
    srv = make_server("--rate-limit", "0", env=env)
    bob = srv.create_token(role="user", user_id="bob")["token"]
    body = {"sourceLocation": "System1", "targetLocation": "System2", "syncType": "Full"}
    r = srv.post(f"{SESS}/start", token=bob, json=body)
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["sourceIdentifier"], s["targetIdentifier"]) == ("System1", "System2")
    st = wait_session(srv, s["sessionId"], bob)
    assert st["status"] == "completed" and st["progressPercentage"] == 100, st
    assert st["result"]["changesApplied"] == 1 and "completed" in st["message"], st
    assert (two / "report.txt").read_bytes() == b"quarterly\n"
    r = srv.post(f"{SESS}/{s['sessionId']}/complete", token=bob)
    assert r.status_code == 200 and r.json()["closed"] is True, r.text

    # two database locations: a database sync (admins only)
    body = {"sourceLocation": "lite", "targetLocation": "pg", "syncType": "Incremental",
            "entityNames": ["Codes"]}
    assert_v1_error(srv.post(f"{SESS}/start", token=bob, json=body), 403, "FORBIDDEN")
    r = srv.post(f"{SESS}/start", token=srv.admin_token, json=body)
    assert r.status_code == 200, r.text
    st = wait_session(srv, r.json()["sessionId"])
    assert st["status"] == "completed" and st["progressPercentage"] == 100, st
    assert st["result"]["rowsInserted"] == len(CODES), st
    assert sorted(x[0] for x in pg_rows(dbs, 'SELECT code FROM "Codes"')) == sorted(CODES)

    # what a session cannot join
    for src, dst, why in (("bucket", "lite", "joins it to a folder"),
                          ("lite", "System2", "two folders or two databases"),
                          ("System9", "System2", "neither a configured location")):
        body = assert_v1_error(srv.post(f"{SESS}/start", token=srv.admin_token,
                                        json={"sourceLocation": src, "targetLocation": dst}),
                               400, "INVALID_REQUEST")
        assert why in body["details"], body


# --- metrics --------------------------------------------------------------------------------


def test_metrics_count_directory_database_and_session_syncs(make_server, dbs, tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.txt").write_bytes(b"x" * 1000)
    srv = make_server(*dbs["flags"], "--file-root", str(root), "--location",
                      f"A=folder:{root / 'a'}", "--location", f"B=folder:{root / 'b'}")

    def v1():
        r = srv.get("/api/v1/metrics", token=srv.admin_token)
        assert r.status_code == 200, r.text
        return r.json()

    before = v1()
    r = srv.post("/api/v1/sync/files", token=srv.admin_token,
                 json={"sourceDirectory": str(root / "a"), "targetDirectory": str(root / "c")})
    assert r.status_code == 200 and r.json()["success"], r.text
    res = dbsync(srv, "lite", "pg", ["Codes"])
    bad = dbsync(srv, "lite", "pg", ["Nope"])
    assert bad["success"] is False
    sid = srv.post(f"{SESS}/start", token=srv.admin_token,
                   json={"sourceLocation": "A", "targetLocation": "B"}).json()["sessionId"]
    assert wait_session(srv, sid)["status"] == "completed"
    after = v1()
    assert after["totalSyncOperations"] - before["totalSyncOperations"] == 4, (before, after)
    assert after["successfulSyncs"] - before["successfulSyncs"] == 3
    assert after["failedSyncs"] - before["failedSyncs"] == 1
    assert after["totalDataTransferred"] - before["totalDataTransferred"] == \
        1000 + res["bytesTransferred"] + 1000
    assert 0 <= after["averageSyncDuration"] <= max(res["executionTimeMs"], 1) * 100
    text = srv.get("/metrics", token=srv.admin_token).text
    ok = re.search(r'^ferry_sync_operations_total\{result="success"\} (\d+)$', text, re.M)
    failed = re.search(r'^ferry_sync_operations_total\{result="failure"\} (\d+)$', text, re.M)
    moved = re.search(r"^ferry_sync_transferred_bytes_total (\d+)$", text, re.M)
    assert ok and failed and moved, text
    assert (int(ok[1]), int(failed[1]), int(moved[1])) == (
        after["successfulSyncs"], after["failedSyncs"], after["totalDataTransferred"])
