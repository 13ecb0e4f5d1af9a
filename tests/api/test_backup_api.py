"""EonaCat.Sync's backups under /api/v1/backup: the seed's request fields and response
shapes, jobs with progress, folders confined to the file and backup roots, and the
server's repository password."""

import json
import os
import sqlite3
import subprocess
import time

import pytest

from backup_trees import assert_same_tree, make_tree, write
from conftest import assert_v1_error, run_ferry, wait_until, ISO_RE

PASSWORD = {"FERRY_BACKUP_PASSWORD": "server backup password"}
CREATE, VERSIONS, RESTORE = "/api/v1/backup/create", "/api/v1/backup/versions", "/api/v1/backup/restore"
PIT, PRUNE = "/api/v1/backup/restore-point-in-time", "/api/v1/backup/prune"


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return str(r)


def post(srv, path, status=200, **kw):
    r = srv.post(path, token=srv.admin_token, timeout=120, **kw)
    assert r.status_code == status, r.text
    return r.json()


def get(srv, path, status=200, **kw):
    r = srv.get(path, token=srv.admin_token, timeout=120, **kw)
    assert r.status_code == status, r.text
    return r.json()


def test_create_list_restore_round_trip(make_server, root):
    srv = make_server("--file-root", root, env=PASSWORD)
    src, repo = os.path.join(root, "src"), os.path.join(root, "repo")
    make_tree(src, n_small=100)
    made = post(srv, CREATE, json={"sourceDirectory": src, "backupPath": repo,
                                   "isFullBackup": False, "description": "first"})
    assert set(made) >= {"versionId", "createdAt", "totalSize", "fileCount", "isFullBackup",
                         "changedFiles", "jobId"}
    assert ISO_RE.match(made["createdAt"]) and made["fileCount"] == 108
    assert made["isFullBackup"] is True  # the first version of a folder is full
    assert isinstance(made["feedCursor"], int) and made["description"] == "first"
    write(os.path.join(src, "added.txt"), b"later\n")
    second = post(srv, CREATE, json={"sourceDirectory": src, "backupPath": repo})
    assert second["isFullBackup"] is False and second["changedFiles"] == ["added.txt"]
    listed = get(srv, VERSIONS, params={"backupPath": repo})
    assert listed["totalCount"] == 2
    assert [v["versionId"] for v in listed["versions"]] == [second["versionId"], made["versionId"]]
    assert set(listed["versions"][0]) >= {"versionId", "createdAt", "totalSize", "fileCount",
                                          "isFullBackup"}
    out = os.path.join(root, "out")
    restored = post(srv, RESTORE, json={"backupPath": repo, "versionId": second["versionId"],
                                        "restorePath": out})
    assert restored["versionId"] == second["versionId"] and restored["damagedFiles"] == []
    assert_same_tree(src, out)
    # The repository is the same one the CLI reads.
    cli = run_ferry("backup", "versions", repo, env=PASSWORD)
    assert cli.returncode == 0 and json.loads(cli.stdout)["totalCount"] == 2


@pytest.mark.sqlite_only
def test_point_in_time_and_prune(make_server, root):
    srv = make_server("--file-root", root, env=PASSWORD)
    src, repo = os.path.join(root, "src"), os.path.join(root, "repo")
    made = []
    for i in range(3):
        write(os.path.join(src, "state.txt"), b"state %d\n" % i + os.urandom(50000))
        made.append(post(srv, CREATE, json={"sourceDirectory": src, "backupPath": repo}))
        time.sleep(0.01)
    out = os.path.join(root, "pit")
    got = get(srv, PIT, params={"backupPath": repo, "pointInTime": made[1]["createdAt"],
                                "restorePath": out})
    assert got["versionId"] == made[1]["versionId"] and got["createdAt"] == made[1]["createdAt"]
    assert open(os.path.join(out, "state.txt"), "rb").read().startswith(b"state 1\n")
    none = srv.get(PIT, token=srv.admin_token, params={
        "backupPath": repo, "pointInTime": "2001-01-01T00:00:00Z", "restorePath": out})
    assert_v1_error(none, 404, "NOT_FOUND")
    bad = srv.get(PIT, token=srv.admin_token, params={
        "backupPath": repo, "pointInTime": "yesterday", "restorePath": out})
    assert_v1_error(bad, 400, "INVALID_REQUEST")
    assert_v1_error(srv.post(PRUNE, token=srv.admin_token, params={"backupPath": repo}),
                    400, "INVALID_REQUEST")
    kept = post(srv, PRUNE, params={"backupPath": repo, "keepLast": "2"})
    assert kept["deletedCount"] == 1 and kept["keptCount"] == 2
    pruned = post(srv, PRUNE, params={"backupPath": repo, "retentionDays": "0"})
    assert pruned["deletedCount"] == 1 and pruned["freedBytes"] > 0
    left = get(srv, VERSIONS, params={"backupPath": repo})
    assert [v["versionId"] for v in left["versions"]] == [made[2]["versionId"]]


@pytest.mark.sqlite_only
def test_folders_are_confined_to_the_roots(make_server, root, tmp_path):
    backups = str(tmp_path / "backups")
    os.mkdir(backups)
    srv = make_server("--file-root", root, "--backup-root", backups, env=PASSWORD)
    src = os.path.join(root, "src")
    write(os.path.join(src, "a.txt"), b"a\n")
    outside = str(tmp_path / "outside")
    os.mkdir(outside)
    os.symlink(outside, os.path.join(root, "escape"))

    def refused(status, code, **body):
        r = srv.post(CREATE, token=srv.admin_token, json=body)
        assert_v1_error(r, status, code)

    refused(403, "FORBIDDEN", sourceDirectory=outside, backupPath=os.path.join(backups, "r"))
    refused(403, "FORBIDDEN", sourceDirectory=src, backupPath=os.path.join(root, "escape", "r"))
    refused(400, "INVALID_REQUEST", sourceDirectory=src, backupPath=root + "/../x")
    refused(403, "FORBIDDEN", sourceDirectory=src, backupPath=srv.data_dir)
    refused(400, "INVALID_REQUEST", sourceDirectory=src, backupPath=root)  # src inside it
    refused(400, "INVALID_REQUEST", backupPath=os.path.join(backups, "r"))
    # A repository under the backup root, a restore under the file root: fine.
    repo = os.path.join(backups, "r")
    made = post(srv, CREATE, json={"sourceDirectory": src, "backupPath": repo})
    r = srv.post(RESTORE, token=srv.admin_token, json={
        "backupPath": repo, "versionId": made["versionId"], "restorePath": repo + "/inside"})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    r = srv.post(RESTORE, token=srv.admin_token, json={
        "backupPath": repo, "versionId": made["versionId"], "restorePath": outside})
    assert_v1_error(r, 403, "FORBIDDEN")
    r = srv.post(RESTORE, token=srv.admin_token, json={
        "backupPath": repo, "versionId": "00000000-0000-4000-8000-000000000000",
        "restorePath": os.path.join(root, "out")})
    assert_v1_error(r, 404, "NOT_FOUND")
    no_roots = make_server(env=PASSWORD)
    r = no_roots.post(CREATE, token=no_roots.admin_token,
                      json={"sourceDirectory": src, "backupPath": repo})
    assert_v1_error(r, 403, "FORBIDDEN")


@pytest.mark.sqlite_only
def test_the_server_needs_a_password_for_encrypted_repositories(make_server, root, tmp_path):
    src = os.path.join(root, "src")
    write(os.path.join(src, "a.txt"), b"a\n")
    srv = make_server("--file-root", root)
    r = srv.post(CREATE, token=srv.admin_token,
                 json={"sourceDirectory": src, "backupPath": os.path.join(root, "enc")})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "backup password" in r.json()["message"] + r.json()["details"]
    plain = post(srv, CREATE, json={"sourceDirectory": src, "backupPath": os.path.join(root, "plain"),
                                    "insecureNoEncryption": True})
    assert plain["fileCount"] == 1
    pw_file = str(tmp_path / "pw")
    write(pw_file, b"from a file\n")
    with_file = make_server("--file-root", root, "--backup-password-file", pw_file)
    post(with_file, CREATE, json={"sourceDirectory": src, "backupPath": os.path.join(root, "enc")})
    other = make_server("--file-root", root, env={"FERRY_BACKUP_PASSWORD": "another"})
    r = other.get(VERSIONS, token=other.admin_token, params={"backupPath": os.path.join(root, "enc")})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "wrong password" in r.json()["message"] + r.json()["details"]


@pytest.mark.sqlite_only
def test_the_servers_cached_key_never_outlives_a_password_change(make_server, root, tmp_path):
    """The server derives a repository's password key once and reuses it; a password
    changed meanwhile (a new salt) is still a wrong password, never a stale success."""
    src, repo = os.path.join(root, "src"), os.path.join(root, "repo")
    write(os.path.join(src, "a.txt"), b"a\n")
    srv = make_server("--file-root", root, env=PASSWORD)
    post(srv, CREATE, json={"sourceDirectory": src, "backupPath": repo})
    for _ in range(3):
        assert get(srv, VERSIONS, params={"backupPath": repo})["totalCount"] == 1
    pw_file = str(tmp_path / "new-pw")
    write(pw_file, b"the new password\n")
    changed = run_ferry("backup", "password", repo, "--new-password-file", pw_file, env=PASSWORD)
    assert changed.returncode == 0, changed.stderr
    r = srv.get(VERSIONS, token=srv.admin_token, params={"backupPath": repo})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "wrong password" in r.json()["message"] + r.json()["details"]


@pytest.mark.sqlite_only
def test_a_backup_job_reports_progress(make_server, root):
    srv = make_server("--file-root", root, "--rate-limit", "0", env=PASSWORD)
    src, repo = os.path.join(root, "src"), os.path.join(root, "repo")
    for i in range(20):
        write(os.path.join(src, "f%02d" % i), os.urandom(200000))
    started = post(srv, CREATE, status=202, json={"sourceDirectory": src, "backupPath": repo,
                                                  "wait": False})
    url = started["statusUrl"]
    assert started["jobId"] in url

    def done():
        s = srv.get(url, token=srv.admin_token).json()
        return s if s["status"] in ("completed", "failed") else None

    status = wait_until(done, timeout=60)
    assert status["status"] == "completed", status
    assert status["bytesDone"] == status["bytesTotal"] == 20 * 200000
    assert status["filesDone"] == status["filesTotal"] == 20
    assert status["result"]["fileCount"] == 20 and status["result"]["jobId"] == started["jobId"]
    listed = get(srv, VERSIONS, params={"backupPath": repo})
    assert listed["versions"][0]["versionId"] == status["result"]["versionId"]


def test_database_backup_of_a_running_server(make_server, tmp_path):
    srv = make_server()
    srv.create_token(role="user", name="kept")
    repo, out = str(tmp_path / "repo"), str(tmp_path / "out")
    where = ["--db", srv.db_url] if srv.db_url else ["--data-dir", srv.data_dir]
    proc = run_ferry("backup", "create", repo, "--database", *where, "--no-progress",
                     env=PASSWORD, timeout=60)
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert made["description"] == "ferry database" and made["fileCount"] == 1
    run = run_ferry("backup", "restore", repo, "latest", out, "--no-progress", env=PASSWORD)
    assert run.returncode == 0, run.stderr
    if srv.db_url:  # pg_dump's custom format, for pg_restore
        listing = subprocess.run(["pg_restore", "--list", os.path.join(out, "ferry.pgdump")],
                                 capture_output=True, text=True, check=True).stdout
        assert "ferry_tokens" in listing
        return
    db = sqlite3.connect(os.path.join(out, "ferry.db"))
    names = [r[0] for r in db.execute("SELECT name FROM ferry_tokens")]
    assert "kept" in names
