"""Backups whose repository is a cloud location (backupPath naming --location
NAME=s3:BUCKET/PREFIX, azure:... or local:...): create, incremental create, versions,
restore byte-identical, prune, against the real emulators of test_cloud.py. A second
server with an empty data folder sees and restores what the first one wrote (the cloud is
the repository; each server's copy is only a cache), and a server killed while it sends
a version's files leaves the repository with its earlier versions only."""

import hashlib
import os
import signal
import time

import pytest

from backup_trees import assert_same_tree, make_tree, write
from conftest import assert_v1_error, free_port, wait_until  # noqa: F401
from test_cloud import BUCKET, cloud_env, emulators, needs_node  # noqa: F401
from test_cloud_sessions import location, prometheus

PASSWORD = {"FERRY_BACKUP_PASSWORD": "cloud backup password"}
CREATE, VERSIONS, RESTORE = "/api/v1/backup/create", "/api/v1/backup/versions", \
    "/api/v1/backup/restore"
PRUNE = "/api/v1/backup/prune"


@pytest.fixture
def servers(make_server, emulators, tmp_path):  # noqa: F811
    """Starts servers (each with its own data folder) that share the location Vault."""
    (tmp_path / "localcloud").mkdir()
    name = f"b{os.getpid()}-{free_port()}"

    def start(provider, root, **kw):
        env = cloud_env(emulators, tmp_path / "cloud")
        env.update(PASSWORD)
        env["FERRY_LOCATIONS"] = f"Vault={location(provider, tmp_path, name)}"
        return make_server("--file-root", str(root), "--cloud-part-size", "5M",
                           "--cloud-timeout", "5", "--rate-limit", "0", env=env, **kw)

    return start, name


def post(srv, path, status=200, **kw):
    r = srv.post(path, token=srv.admin_token, timeout=120, **kw)
    assert r.status_code == status, r.text
    return r.json()


def versions(srv):
    r = srv.get(VERSIONS, token=srv.admin_token, params={"backupPath": "Vault"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def objects(srv, provider, name, tmp_path):
    """The repository's objects in the cloud: {relative path: size}."""
    if provider == "local":
        base = tmp_path / "localcloud" / name
        return {str(p.relative_to(base)): p.stat().st_size for p in base.rglob("*")
                if p.is_file() and ".ferry-meta" not in p.parts}
    r = srv.get(f"/api/v1/cloud/{provider}/list", token=srv.admin_token,
                params={"prefix": name + "/"})
    assert r.status_code == 200, r.text
    return {f["path"][len(name) + 1:]: f["size"] for f in r.json()["files"]}


def cached_packs(srv):
    [cache] = os.listdir(os.path.join(srv.data_dir, "backup-cache"))
    base = os.path.join(srv.data_dir, "backup-cache", cache)
    return {os.path.relpath(os.path.join(d, f), base) for d, _, files in
            os.walk(os.path.join(base, "packs")) for f in files}


def kinds(objs):
    return sorted({k.split("/")[0] for k in objs})


@needs_node
@pytest.mark.parametrize("provider", ["s3", "azure", "local"])
def test_create_versions_restore_prune_in_the_cloud(servers, provider, tmp_path):
    start, name = servers
    root = tmp_path / "files"
    src = root / "src"
    make_tree(str(src), n_small=60)
    srv = start(provider, root)

    first = post(srv, CREATE, json={"sourceDirectory": str(src), "backupPath": "Vault",
                                    "description": "first"})
    assert first["isFullBackup"] is True and first["fileCount"] > 0, first
    objs = objects(srv, provider, name, tmp_path)
    assert kinds(objs) == ["config", "index", "packs", "snapshots"], objs
    assert [k for k in objs if k.startswith("snapshots/")] == \
        [f"snapshots/{first['versionId']}.snap"]
    first_packs = {k for k in objs if k.startswith("packs/")}

    write(str(src / "added.txt"), b"later\n")
    second = post(srv, CREATE, json={"sourceDirectory": str(src), "backupPath": "Vault"})
    assert second["isFullBackup"] is False and second["changedFiles"] == ["added.txt"], second
    listed = versions(srv)
    assert [v["versionId"] for v in listed["versions"]] == [second["versionId"],
                                                             first["versionId"]]

    assert {k for k in objects(srv, provider, name, tmp_path) if k.startswith("packs/")} > \
        first_packs

    # another server, its data folder empty: the repository is the cloud's
    other = start(provider, root)
    assert [v["versionId"] for v in versions(other)["versions"]] == \
        [second["versionId"], first["versionId"]]
    # a restore fetches the packs its version uses, not the others
    post(other, RESTORE, json={"backupPath": "Vault", "versionId": first["versionId"],
                               "restorePath": str(root / "out1")})
    assert cached_packs(other) == first_packs
    out = root / "out"
    got = post(other, RESTORE, json={"backupPath": "Vault", "versionId": second["versionId"],
                                     "restorePath": str(out)})
    assert got["damagedFiles"] == [] and got["fileCount"] == second["fileCount"], got
    assert_same_tree(str(src), str(out))

    # prune on the first server: the forgotten version's files go from the cloud too
    pruned = post(srv, PRUNE, params={"backupPath": "Vault", "keepLast": "1"})
    assert pruned["deletedCount"] == 1 and pruned["deletedVersions"] == [first["versionId"]]
    objs = objects(srv, provider, name, tmp_path)
    assert [k for k in objs if k.startswith("snapshots/")] == \
        [f"snapshots/{second['versionId']}.snap"]
    assert [v["versionId"] for v in versions(other)["versions"]] == [second["versionId"]]
    out2 = root / "out2"
    post(other, RESTORE, json={"backupPath": "Vault", "versionId": second["versionId"],
                               "restorePath": str(out2)})
    assert_same_tree(str(src), str(out2))

    # the first server's records of what it stored follow the cloud exactly
    if provider != "local":
        usage = srv.get("/api/v1/metrics", token=srv.admin_token).json()["cloudStorageUsage"]
        assert usage[provider] == sum(objs.values()), (usage, objs)


@needs_node
def test_killed_while_sending_leaves_earlier_versions(servers, tmp_path):
    """Snapshots go up last: a server killed after a few files of a new version leaves a
    repository whose versions are the earlier ones, all restorable; the next create
    finishes the job."""
    start, name = servers
    root = tmp_path / "files"
    src = root / "src"
    make_tree(str(src), n_small=30)
    srv = start("s3", root)
    first = post(srv, CREATE, json={"sourceDirectory": str(src), "backupPath": "Vault"})
    write(str(src / "big.bin"), os.urandom(3 * 1024 * 1024))

    srv.stop()
    srv.env["FERRY_CRASH_AT"] = "backup_cloud_sent:2"
    srv.start()
    r = srv.post(CREATE, token=srv.admin_token, timeout=120, json={
        "sourceDirectory": str(src), "backupPath": "Vault", "wait": False})
    assert r.status_code == 202, r.text
    assert srv.wait_exit(60) == -signal.SIGKILL
    del srv.env["FERRY_CRASH_AT"]

    other = start("s3", root)
    assert [v["versionId"] for v in versions(other)["versions"]] == [first["versionId"]]
    out = root / "out"
    post(other, RESTORE, json={"backupPath": "Vault", "versionId": first["versionId"],
                               "restorePath": str(out)})
    assert (out / "big.bin").exists() is False

    srv.start()  # the worker runs the interrupted create again, once its heartbeat is stale
    st = wait_until(lambda: len(versions(other)["versions"]) == 2, timeout=60, interval=0.5)
    assert st, versions(other)
    newest = versions(other)["versions"][0]["versionId"]
    out2 = root / "out2"
    post(other, RESTORE, json={"backupPath": "Vault", "versionId": newest,
                               "restorePath": str(out2)})
    assert_same_tree(str(src), str(out2))


def test_cloud_repository_errors(make_server, tmp_path):
    root = tmp_path / "files"
    (root / "src").mkdir(parents=True)
    env = dict(PASSWORD, FERRY_LOCATIONS="Vault=s3:bucket/backups")
    srv = make_server("--file-root", str(root), env=env)
    r = srv.post(CREATE, token=srv.admin_token,
                 json={"sourceDirectory": str(root / "src"), "backupPath": "Vault"})
    assert "s3-endpoint" in assert_v1_error(r, 503, "CLOUD_ERROR")["details"]
    r = srv.get(VERSIONS, token=srv.admin_token, params={"backupPath": "Vault"})
    assert_v1_error(r, 503, "CLOUD_ERROR")
    # a name that is no location is a relative path: refused as before
    r = srv.get(VERSIONS, token=srv.admin_token, params={"backupPath": "Nowhere"})
    assert r.status_code in (400, 403), r.text


@needs_node
def test_a_lease_held_by_another_node_is_waited_for(servers, tmp_path):
    """The repository's lease is a row in ferry's database: a run waits while another
    node holds it (up to 30 s, then 409), and goes ahead once it is released."""
    start, name = servers
    root = tmp_path / "files"
    write(str(root / "src" / "a.txt"), b"a\n")
    srv = start("s3", root)
    target = location("s3", tmp_path, name)  # s3:BUCKET/NAME
    # the lease is the location's (KIND:TARGET), whichever node's cache runs it
    lease = "backup:" + hashlib.sha256(target.encode()).hexdigest()[:32]
    expires = int(time.time() * 1000) + 120_000
    srv.db_exec("INSERT INTO ferry_leases(name, owner, token, expires_at) VALUES "
                f"('{lease}', 'another-host 0 1 1', 'held', {expires})")
    t0 = time.monotonic()
    r = srv.post(CREATE, token=srv.admin_token, timeout=120,
                 json={"sourceDirectory": str(root / "src"), "backupPath": "Vault"})
    assert "another run" in assert_v1_error(r, 409, "CONFLICT")["details"]
    assert time.monotonic() - t0 >= 29
    assert objects(srv, "s3", name, tmp_path) == {}  # nothing was written meanwhile

    srv.db_exec(f"DELETE FROM ferry_leases WHERE name = '{lease}'")
    made = post(srv, CREATE, json={"sourceDirectory": str(root / "src"), "backupPath": "Vault"})
    assert versions(srv)["versions"][0]["versionId"] == made["versionId"]



@needs_node
def test_one_lease_however_the_location_is_spelt(make_server, emulators, tmp_path):  # noqa: F811
    """Nodes that spell one repository differently (s3:BUCKET/NAME, s3:BUCKET/NAME/)
    share one lease: named after the bucket and the cleaned prefix, not
    the text of the target, or two nodes could prune the repository at once."""
    name = f"b{os.getpid()}-{free_port()}"
    root = tmp_path / "files"
    write(str(root / "src" / "a.txt"), b"a\n")
    env = cloud_env(emulators, tmp_path / "cloud")
    env.update(PASSWORD)
    env["FERRY_LOCATIONS"] = f"Vault=s3:{BUCKET}/{name}/"
    srv = make_server("--file-root", str(root), "--cloud-timeout", "5", "--rate-limit", "0",
                      env=env)
    lease = "backup:" + hashlib.sha256(f"s3:{BUCKET}/{name}".encode()).hexdigest()[:32]
    expires = int(time.time() * 1000) + 120_000
    srv.db_exec("INSERT INTO ferry_leases(name, owner, token, expires_at) VALUES "
                f"('{lease}', 'another-host 0 1 1', 'held', {expires})")
    r = srv.post(CREATE, token=srv.admin_token, timeout=120,
                 json={"sourceDirectory": str(root / "src"), "backupPath": "Vault"})
    assert "another run" in assert_v1_error(r, 409, "CONFLICT")["details"]
    assert objects(srv, "s3", name, tmp_path) == {}


@needs_node
def test_a_run_whose_lease_is_taken_over_publishes_nothing(servers, tmp_path):
    """Fencing: a run checks that the repository's lease is still its own (the row's token,
    its generation) before it sends or removes anything. Another node taking the lease over
    mid-run (as after an expiry: the test rewrites the row) makes the run stop with a 409
    before it writes a single object."""
    start, name = servers
    root = tmp_path / "files"
    for i in range(8):
        write(str(root / "src" / f"f{i}.bin"), os.urandom(6 * 1024 * 1024))
    srv = start("s3", root)
    target = location("s3", tmp_path, name)
    # the lease is the location's (KIND:TARGET), whichever node's cache runs it
    lease = "backup:" + hashlib.sha256(target.encode()).hexdigest()[:32]
    r = srv.post(CREATE, token=srv.admin_token, timeout=120, json={
        "sourceDirectory": str(root / "src"), "backupPath": "Vault", "wait": False})
    assert r.status_code == 202, r.text
    job = r.json()["jobId"]
    assert wait_until(lambda: srv.db_query(
        f"SELECT token FROM ferry_leases WHERE name = '{lease}'"), timeout=30, interval=0.01)
    expires = int(time.time() * 1000) + 120_000
    srv.db_exec(f"UPDATE ferry_leases SET owner = 'another-host 0 1 1', token = 'taken', "
                f"expires_at = {expires} WHERE name = '{lease}'")

    def status():
        r = srv.get(f"/api/v1/sync/session/{job}/status", token=srv.admin_token)
        assert r.status_code == 200, r.text
        return r.json()["status"] in ("completed", "failed") and r.json()
    st = wait_until(status, timeout=120, interval=0.1)
    assert st and st["status"] == "failed" and "taken over" in st["message"], st
    assert objects(srv, "s3", name, tmp_path) == {}  # not even the config went up
    # the other node's lease is left alone
    assert srv.db_query(f"SELECT token FROM ferry_leases WHERE name = '{lease}'") == [["taken"]]


@needs_node
def test_prune_fetches_only_the_packs_it_rewrites(servers, tmp_path):
    """A prune in the cloud fetches the packs it must rewrite (partly used) and nothing
    else: a pack every remaining version still uses wholly stays where it is, and one no
    remaining version uses is deleted in the cloud without being read."""
    start, name = servers
    root = tmp_path / "files"
    src = root / "src"
    make_tree(str(src), n_small=60)
    srv = start("s3", root)

    def packs():
        return {k for k in objects(srv, "s3", name, tmp_path) if k.startswith("packs/")}

    post(srv, CREATE, json={"sourceDirectory": str(src), "backupPath": "Vault"})
    first = packs()
    write(str(src / "gone.bin"), os.urandom(1024 * 1024))
    write(str(src / "kept.bin"), os.urandom(1024 * 1024))
    post(srv, CREATE, json={"sourceDirectory": str(src), "backupPath": "Vault"})
    second = packs() - first  # gone.bin's and kept.bin's chunks
    os.remove(src / "gone.bin")
    last = post(srv, CREATE, json={"sourceDirectory": str(src), "backupPath": "Vault"})

    pruner = start("s3", root)  # an empty cache: whatever it holds after, it fetched
    pruned = post(pruner, PRUNE, params={"backupPath": "Vault", "keepLast": "1"})
    moved = prometheus(pruner)['ferry_cloud_transferred_bytes_total{provider="s3"}']
    print(f"prune on an empty cache: {moved} bytes moved")  # for the record (docs/backup.md)
    assert pruned["deletedCount"] == 2 and pruned["freedBytes"] >= 1024 * 1024, pruned
    after = packs()
    # the partly used pack was fetched, rewritten (a new pack) and deleted; the first
    # version's packs, used whole, were neither fetched nor touched
    rewritten = after - first - second
    assert rewritten and not (second & after) and first <= after, (first, second, after)
    assert cached_packs(pruner) == rewritten, (cached_packs(pruner), rewritten)

    out = root / "out"
    got = post(start("s3", root), RESTORE, json={"backupPath": "Vault", "restorePath": str(out),
                                                 "versionId": last["versionId"]})
    assert got["damagedFiles"] == [], got
    assert_same_tree(str(src), str(out))
