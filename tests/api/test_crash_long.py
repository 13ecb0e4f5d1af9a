"""Crash windows of the long operations: a site import page, a directory sync session and
a pushed batch, killed as by kill -9 at chosen points (FERRY_CRASH_AT, util/crashpoint.h,
honoured by the test build only) before, inside and after their commits, then restarted.
Nothing acknowledged may be missing, nothing may be applied twice, and each operation
must run on to its end.

A job left running by a killed server starts again once its heartbeat is stale (10 s);
the tests age the heartbeat in the database instead of waiting, as the time would."""

import hashlib
import os
import signal
import time

import pytest

from devsync import SCHEMA, SERVER_FLAGS, Client, new_batch_id, op
from test_crash import expect_crash, restart_clean, token
from test_dirsync import finished, many_files, no_temp_files, start, status, tree
from test_site_imports import BIG_COLS, big_schema, counts, pair, pull, rows, transfers, wait_job

SESS = "/api/v1/sync/session"


def age_heartbeats(srv):
    srv.db_exec("UPDATE ferry_jobs SET heartbeat_at = 0 WHERE status = 'running'")


def checksum(table_rows):
    return hashlib.sha256(repr(table_rows).encode()).hexdigest()


# --- site import pages ------------------------------------------------------------------

N_IMPORT, PAGE = 3500, 1000  # the sender's page size: the crash falls in the second page
IMPORT_POINTS = [("import.page.before", 1000), ("import.page.rows_written", 1000),
                 ("import.page.after_commit", 2000), ("jobs.after_finish", N_IMPORT)]


@pytest.mark.parametrize("point,kept", IMPORT_POINTS, ids=[p for p, _ in IMPORT_POINTS])
def test_import_page_survives_a_crash_at_each_point(_servers, backend, point, kept):
    """The receiver killed at the second page (or after the job's completion record):
    what is on record is whole pages with their transfer progress, and after the restart
    the job goes on from there to every row exactly once."""
    a, b, conn, rid = pair(_servers, backend, a_schema=big_schema(backend, n=N_IMPORT),
                           max_records_per_request=PAGE)
    b.stop()
    b.env["FERRY_CRASH_AT"] = point if point.startswith("jobs.") else point + ":2"
    b.start()
    r = pull(b, rid, ["big"], "skip")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert b.wait_exit(60) == -signal.SIGKILL, b.stderr()[-3000:]

    # the rows on record and the transfer's progress agree: whole pages, committed together
    [[t_status, records, created, skipped]] = b.db_query(
        "SELECT status, records, created, skipped FROM ferry_site_transfers")
    assert int(b.db_query("SELECT COUNT(*) FROM big")[0][0]) == kept
    assert (int(records), int(created), int(skipped)) == (kept, kept, 0)
    [[j_status]] = b.db_query(f"SELECT status FROM ferry_jobs WHERE id = '{job_id}'")
    assert (t_status, j_status) == (("completed", "completed") if kept == N_IMPORT
                                    else ("running", "running"))

    age_heartbeats(b)
    restart_clean(b)
    j = wait_job(b, job_id, timeout=60)
    assert j["status"] == "completed", j
    [rep] = j["result"]["tables"]
    want = {"records": N_IMPORT, "created": N_IMPORT, "updated": 0, "skipped": 0,
            "deleted": 0, "failed": 0}
    assert counts(rep) == want, rep
    [t] = transfers(b, rid)  # one transfer, resumed rather than started again
    assert (t["job_id"], t["status"], t["error"]) == (job_id, "completed", None), t
    assert counts(t) == want, t
    assert b.db_query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM big") == [
        [str(N_IMPORT), str(N_IMPORT)]]
    mine = rows(a, "big", BIG_COLS)
    assert checksum(rows(b, "big", BIG_COLS)) == checksum(mine) and len(mine) == N_IMPORT


# --- directory sync sessions -------------------------------------------------------------

N_FILES = 400
DIRSYNC_POINTS = ["dirsync.before_rename:150", "dirsync.after_rename:150", "jobs.after_finish"]


@pytest.mark.parametrize("point", DIRSYNC_POINTS)
def test_dirsync_session_survives_a_crash_at_each_point(make_server, tmp_path, point):
    """A session killed before a copy's rename, after it (before the progress counts it)
    or after the job's completion record: after the restart the session runs again (or
    is complete), the target equals the source, and no temporary copy is left."""
    root = tmp_path / "root"
    src, dst = root / "src", root / "dst"
    n_files, n_bytes = many_files(src, N_FILES, big=512 * 1024)
    srv = make_server("--file-root", str(root), "--rate-limit", "0",
                      env={"FERRY_CRASH_AT": point})
    sid = start(srv, src, dst)
    assert srv.wait_exit(60) == -signal.SIGKILL, srv.stderr()[-3000:]

    left = [os.path.join(d, n) for d, _, fs in os.walk(dst) for n in fs
            if n.startswith(".ferry-tmp-")]
    if point.startswith("dirsync.before_rename"):
        assert left, "no copy was waiting for its rename"
    # a killed server's copies are removed once they are old (another server sharing the
    # folder may still be writing young ones): make them as old as a restart much later
    old = time.time() - 3600
    for p in left:
        os.utime(p, (old, old))
    if not point.startswith("jobs."):
        age_heartbeats(srv)
    restart_clean(srv)
    st = finished(srv, sid, timeout=60)
    assert st["status"] == "completed" and st["progressPercentage"] == 100, st
    assert (st["filesDone"], st["filesTotal"], st["bytesDone"], st["bytesTotal"]) == \
        (n_files, n_files, n_bytes, n_bytes), st
    res = st["result"]
    assert res["success"] is True and res["errors"] == [], res
    assert res["filesCopied"] + res["filesUnchanged"] == n_files, res
    assert tree(dst) == tree(src)
    no_temp_files(dst)
    r = srv.post(f"{SESS}/{sid}/complete", token=srv.admin_token)
    assert r.status_code == 200 and r.json()["closed"] is True, r.text
    assert status(srv, sid)["status"] == "completed"


# --- push ----------------------------------------------------------------------------------


def notes(batch, n=50):
    return [op("notes", "insert", {"id": f"{batch}-{i}", "title": f"t{i}"}) for i in range(n)]


@pytest.mark.parametrize("point", ["push.before_commit", "push.after_commit"])
def test_push_batch_survives_a_crash_at_each_point(make_server, point):
    """The second batch killed before its commit is applied once when sent again; killed
    after it (the answer never written), sending it again answers from its idempotency
    record (replayed). The first batch, answered before the crash, stays as it was."""
    srv = make_server(*SERVER_FLAGS, "--purge-interval", "0", schema=list(SCHEMA),
                      env={"FERRY_CRASH_AT": point + ":2"})
    device = Client(srv, token(srv)).register("crash")
    first, second = new_batch_id(), new_batch_id()
    body = device.report(notes("a"), batch_id=first)
    assert (body["applied"], body["replayed"]) == (50, False), body
    expect_crash(srv, lambda: device.report(notes("b"), batch_id=second))
    committed = point == "push.after_commit"
    assert int(srv.db_query("SELECT COUNT(*) FROM notes")[0][0]) == (100 if committed else 50)

    restart_clean(srv)
    again = device.report(notes("b"), batch_id=second)
    assert (again["applied"], again["replayed"]) == (50, committed), again
    replay = device.report(notes("b"), batch_id=second)
    assert replay["replayed"] is True and replay["applied"] == 50, replay
    old = device.report(notes("a"), batch_id=first)
    assert old["replayed"] is True and old["applied"] == body["applied"], old
    assert srv.db_query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM notes") == [["100", "100"]]
    changes, _ = Client(srv, token(srv)).pull_all()
    assert sorted(c["id"] for c in changes) == sorted(
        [f"a-{i}" for i in range(50)] + [f"b-{i}" for i in range(50)])
    assert {c["version"] for c in changes} == {1}  # each row written once
