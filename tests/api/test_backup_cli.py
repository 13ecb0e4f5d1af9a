"""`ferry backup` on generated trees: byte-identical round trips, incremental growth,
point-in-time, prune, passwords, damaged packs, and kill -9 (crash points of the test
build) during create and prune followed by check, repair and restore."""

import glob
import json
import os
import shutil
import subprocess

import pytest

from backup_trees import assert_same_tree, make_tree, write
from conftest import run_ferry

PASSWORD = {"FERRY_BACKUP_PASSWORD": "correct horse battery staple"}
# Tests of what encryption does not change use plaintext repositories: each run on an
# encrypted one derives its key with Argon2id (64 MiB), which costs more than the run.
PLAIN = "--insecure-no-encryption"


def backup(*args, env=None, ok=True, timeout=120):
    proc = run_ferry("backup", *args, "--no-progress", env={**PASSWORD, **(env or {})},
                     timeout=timeout)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def backup_json(*args, **kw):
    return json.loads(backup(*args, **kw).stdout)


def repo_size(repo):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(repo, "**"), recursive=True)
               if os.path.isfile(p))


def test_round_trip_of_a_generated_tree(tmp_path):
    src = make_tree(str(tmp_path / "src"), n_small=10000)
    repo, out = str(tmp_path / "repo"), str(tmp_path / "out")
    made = backup_json("create", repo, src, "--description", "first")
    assert made["isFullBackup"] is True and made["fileCount"] == 10000 + 8
    assert made["description"] == "first" and len(made["changedFiles"]) == made["fileCount"]
    # Packs, not a file per chunk: far fewer files than the tree has.
    assert len(glob.glob(os.path.join(repo, "packs", "*", "*.pack"))) < 10
    restored = backup_json("restore", repo, made["versionId"], out)
    assert restored["versionId"] == made["versionId"] and restored["damagedFiles"] == []
    assert_same_tree(src, out)
    # The hole stays a hole, and the repository holds the text compressed.
    assert os.stat(os.path.join(out, "sparse.img")).st_blocks * 512 < 1024 * 1024
    assert repo_size(repo) < 9 * 1024 * 1024
    listed = backup_json("versions", repo)
    assert listed["totalCount"] == 1
    assert listed["versions"][0]["versionId"] == made["versionId"]
    assert backup_json("check", repo)["ok"] is True


def test_incremental_stores_only_what_changed(tmp_path):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    for i in range(12):
        write(os.path.join(src, "f%02d.bin" % i), os.urandom(1024 * 1024 + i))
    first = backup_json("create", repo, src, PLAIN)
    shutil.copytree(src, str(tmp_path / "v1"), symlinks=True)
    size1 = repo_size(repo)
    # Insert a few bytes early in one file: only the chunks around them are new.
    path = os.path.join(src, "f03.bin")
    data = open(path, "rb").read()
    write(path, data[:1000] + b"inserted" + data[1000:])
    write(os.path.join(src, "new.txt"), b"new file\n")
    second = backup_json("create", repo, src)
    assert second["isFullBackup"] is False
    assert sorted(second["changedFiles"]) == ["f03.bin", "new.txt"]
    growth = repo_size(repo) - size1
    assert second["addedBytes"] < 1.2 * 1024 * 1024 and growth < 1.3 * 1024 * 1024, growth
    # A full backup reads everything again, and stores nothing new.
    full = backup_json("create", repo, src, "--full")
    assert full["isFullBackup"] is True and full["changedFiles"] == []
    assert full["addedBytes"] == 0
    backup("restore", repo, first["versionId"], str(tmp_path / "r1"))
    assert_same_tree(str(tmp_path / "v1"), str(tmp_path / "r1"))
    backup("restore", repo, "latest", str(tmp_path / "r3"))
    assert_same_tree(src, str(tmp_path / "r3"))


def test_point_in_time_picks_the_version_at_or_before(tmp_path):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    made = []
    for i in range(3):
        write(os.path.join(src, "state.txt"), b"state %d\n" % i)
        made.append(backup_json("create", repo, src, PLAIN))
    between = made[1]["createdAt"]  # exactly at v2: v2 is picked
    out = str(tmp_path / "out")
    got = backup_json("restore", repo, between, out)
    assert got["versionId"] == made[1]["versionId"]
    assert open(os.path.join(out, "state.txt"), "rb").read() == b"state 1\n"
    before = backup("restore", repo, "2000-01-01T00:00:00Z", out, ok=False)
    assert before.returncode == 1 and "no backup version" in before.stderr


def test_prune_frees_space_and_what_remains_restores(tmp_path):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    made, copies = [], []
    for i in range(5):
        write(os.path.join(src, "v.bin"), os.urandom(600 * 1024))
        write(os.path.join(src, "same.txt"), b"unchanged\n" * 1000)
        made.append(backup_json("create", repo, src))
        copies.append(str(tmp_path / ("copy%d" % i)))
        shutil.copytree(src, copies[-1])
    refused = backup("prune", repo, ok=False)
    assert refused.returncode == 1 and "which versions to keep" in refused.stderr
    before = repo_size(repo)
    pruned = backup_json("prune", repo, "--keep-last", "2")
    assert pruned["deletedCount"] == 3 and pruned["keptCount"] == 2
    assert before - repo_size(repo) > 3 * 600 * 1024
    left = [v["versionId"] for v in backup_json("versions", repo)["versions"]]
    assert left == [made[4]["versionId"], made[3]["versionId"]]
    for i in (3, 4):
        out = str(tmp_path / ("out%d" % i))
        backup("restore", repo, made[i]["versionId"], out)
        assert_same_tree(copies[i], out)
    # retention-days 0 keeps no old version, but never the newest.
    assert backup_json("prune", repo, "--retention-days", "0")["deletedCount"] == 1
    assert backup_json("versions", repo)["totalCount"] == 1
    assert backup_json("check", repo)["ok"] is True


def test_passwords_and_plaintext(tmp_path):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    write(os.path.join(src, "a.txt"), b"secret contents " * 100)
    proc = run_ferry("backup", "create", repo, src, "--no-progress")
    assert proc.returncode == 1 and "needs a password" in proc.stderr
    backup("create", repo, src)
    wrong = backup("versions", repo, env={"FERRY_BACKUP_PASSWORD": "nope"}, ok=False)
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    # Nothing in the repository shows the contents.
    for path in glob.glob(os.path.join(repo, "**"), recursive=True):
        if os.path.isfile(path):
            assert b"secret contents" not in open(path, "rb").read()
    pw_file = str(tmp_path / "pw")
    write(pw_file, b"a new password\n")
    backup("password", repo, "--new-password-file", pw_file)
    assert backup("versions", repo, ok=False).returncode == 1
    assert backup_json("versions", repo, "--password-file", pw_file)["totalCount"] == 1
    plain = str(tmp_path / "plain")
    run = run_ferry("backup", "create", plain, src, "--insecure-no-encryption", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert json.load(open(os.path.join(plain, "config")))["encryption"] is None


def user_xattrs(path):
    """The user.* attributes of path, as getfattr -d shows them (others, such as
    security.selinux, belong to the filesystem)."""
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user.")}


def test_hard_links_and_extended_attributes_round_trip(tmp_path):
    src, repo, out = str(tmp_path / "src"), str(tmp_path / "repo"), str(tmp_path / "out")
    data = os.urandom(300 * 1024)
    write(os.path.join(src, "a", "data.bin"), data)
    os.makedirs(os.path.join(src, "b"))
    os.link(os.path.join(src, "a", "data.bin"), os.path.join(src, "b", "other name.bin"))
    os.link(os.path.join(src, "a", "data.bin"), os.path.join(src, "third"))
    write(os.path.join(src, "solo.txt"), b"solo\n")
    try:
        os.setxattr(os.path.join(src, "a", "data.bin"), "user.origin", b"camera 7")
    except OSError:
        pytest.skip("no user extended attributes on this filesystem")
    os.setxattr(os.path.join(src, "solo.txt"), "user.empty", b"")
    os.setxattr(os.path.join(src, "solo.txt"), "user.binary", bytes(range(256)))
    os.setxattr(os.path.join(src, "b"), "user.folder", b"yes")
    made = backup_json("create", repo, src, PLAIN)
    assert made["fileCount"] == 4 and made["totalSize"] == 3 * len(data) + 5
    # The three names share one copy of the bytes.
    assert made["addedBytes"] < len(data) + 1024, made["addedBytes"]
    restored = backup_json("restore", repo, made["versionId"], out)
    assert restored["fileCount"] == 4 and restored["damagedFiles"] == []
    assert_same_tree(src, out)
    names = [os.path.join(out, p) for p in ("a/data.bin", "b/other name.bin", "third")]
    assert len({os.stat(p).st_ino for p in names}) == 1
    assert all(os.stat(p).st_nlink == 3 for p in names)
    assert os.stat(os.path.join(out, "solo.txt")).st_nlink == 1
    for rel in ("a/data.bin", "b/other name.bin", "third", "solo.txt", "b", "a"):
        assert user_xattrs(os.path.join(out, rel)) == user_xattrs(os.path.join(src, rel)), rel
    assert user_xattrs(os.path.join(out, "third")) == {"user.origin": b"camera 7"}
    # Unchanged links and attributes make no change; a changed attribute is kept.
    os.setxattr(os.path.join(src, "solo.txt"), "user.empty", b"now set")
    again = backup_json("create", repo, src)
    assert again["changedFiles"] == [] and again["addedBytes"] == 0
    backup("restore", repo, again["versionId"], str(tmp_path / "out2"))
    assert user_xattrs(os.path.join(str(tmp_path / "out2"), "solo.txt"))["user.empty"] == b"now set"
    # When the first name goes, another holds the bytes: still one inode, two names.
    os.unlink(os.path.join(src, "a", "data.bin"))
    third = backup_json("create", repo, src)
    assert sorted(third["changedFiles"]) == ["b/other name.bin", "third"]
    backup("restore", repo, third["versionId"], str(tmp_path / "out3"))
    assert_same_tree(src, str(tmp_path / "out3"))
    assert os.stat(os.path.join(str(tmp_path / "out3"), "third")).st_nlink == 2


def flip_bytes(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(16)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def test_a_corrupted_pack_is_reported_with_the_files_it_costs(tmp_path):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    write(os.path.join(src, "victim.bin"), os.urandom(300 * 1024))
    write(os.path.join(src, "other.txt"), b"fine\n")
    made = backup_json("create", repo, src)
    packs = glob.glob(os.path.join(repo, "packs", "*", "*.pack"))
    assert len(packs) == 1
    flip_bytes(packs[0], 100)  # inside the first chunk (victim.bin sorts after other.txt?)
    checked = backup("check", repo, ok=False)
    assert checked.returncode == 1
    report = json.loads(checked.stdout)
    assert report["ok"] is False
    damaged = [d["path"] for d in report["damagedFiles"]]
    assert damaged and set(damaged) <= {"victim.bin", "other.txt"}
    pack_id = os.path.basename(packs[0])[:-5]
    assert any(pack_id in p for p in report["problems"])
    restore = backup("restore", repo, made["versionId"], str(tmp_path / "out"), ok=False)
    assert restore.returncode == 1 and damaged[0] in restore.stderr
    assert [d["path"] for d in json.loads(restore.stdout)["damagedFiles"]] == damaged
    # Repair drops the damaged chunk; the next backup stores it again and heals v1.
    repaired = json.loads(backup("repair", repo, ok=False).stdout)
    assert repaired["repaired"]
    backup("create", repo, src)
    assert backup_json("check", repo)["ok"] is True
    backup("restore", repo, made["versionId"], str(tmp_path / "healed"))
    assert_same_tree(src, str(tmp_path / "healed"))


def crash(args, point):
    proc = run_ferry("backup", *args, "--no-progress", env={**PASSWORD, "FERRY_CRASH_AT": point})
    assert proc.returncode == -9, (point, proc.returncode, proc.stderr)


@pytest.mark.parametrize("point", ["backup_pack_written", "backup_create_before_snapshot"])
def test_kill_during_create_loses_no_version(tmp_path, point):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    write(os.path.join(src, "a.bin"), os.urandom(200 * 1024))
    first = backup_json("create", repo, src, PLAIN)
    v1 = str(tmp_path / "v1")
    shutil.copytree(src, v1)
    write(os.path.join(src, "b.bin"), os.urandom(300 * 1024))
    crash(["create", repo, src], point)
    report = backup_json("check", repo)
    assert report["ok"] is True and report["versions"] == 1
    if point == "backup_pack_written":
        assert any("no index" in x for x in report["leftovers"])
    repaired = backup_json("repair", repo)
    assert repaired["ok"] is True and repaired["leftovers"] == []
    backup("restore", repo, first["versionId"], str(tmp_path / "r1"))
    assert_same_tree(v1, str(tmp_path / "r1"))
    # The lock died with the process: the next run goes straight on.
    second = backup_json("create", repo, src)
    backup("restore", repo, second["versionId"], str(tmp_path / "r2"))
    assert_same_tree(src, str(tmp_path / "r2"))


@pytest.mark.parametrize("point", ["backup_prune_forgot", "backup_prune_repacked",
                                   "backup_prune_unindexed"])
def test_kill_during_prune_loses_no_kept_version(tmp_path, point):
    src, repo = str(tmp_path / "src"), str(tmp_path / "repo")
    made, copies = [], []
    for i in range(3):
        write(os.path.join(src, "v.bin"), os.urandom(200 * 1024))
        write(os.path.join(src, "keep.txt"), b"kept %d\n" % i)
        made.append(backup_json("create", repo, src, PLAIN))
        copies.append(str(tmp_path / ("c%d" % i)))
        shutil.copytree(src, copies[-1])
    crash(["prune", repo, "--keep-last", "1"], point)
    report = backup_json("check", repo)
    assert report["ok"] is True
    backup_json("repair", repo)
    remaining = [v["versionId"] for v in backup_json("versions", repo)["versions"]]
    assert made[2]["versionId"] in remaining
    for i, v in enumerate(made):
        if v["versionId"] in remaining:
            out = str(tmp_path / ("r%d" % i))
            backup("restore", repo, v["versionId"], out)
            assert_same_tree(copies[i], out)
    assert backup_json("prune", repo, "--keep-last", "1")["keptCount"] == 1
    assert backup_json("check", repo)["leftovers"] == []
