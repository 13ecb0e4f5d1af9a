"""Two nodes on one database backing up to one cloud repository (backupPath naming a
cloud location) at once: each node works on its own cache folder in its own data folder,
so the repository's lease must be the location's, not the cache folder's, or both nodes
send up versions, packs and indexes into one repository together (docs/backup.md)."""

import os
import shutil
import threading
import time

import pytest

from backup_trees import write

pytestmark = pytest.mark.postgres_only  # two nodes on one database

PASSWORD = {"FERRY_BACKUP_PASSWORD": "cloud backup password"}
CREATE = "/api/v1/backup/create"


def backup_leases(srv):
    return {r[0] for r in srv.db_query("SELECT name FROM ferry_leases"
                                       " WHERE name LIKE 'backup:%'")}


def test_two_nodes_never_hold_one_cloud_repository_at_once(_servers, pg_cluster, tmp_path):
    root = tmp_path / "files"
    src = root / "src"
    for i in range(6):
        write(src / f"f{i}.bin", os.urandom(12 << 20))
    env = {**PASSWORD, "FERRY_LOCATIONS": f"Vault=local:{tmp_path / 'vault'}"}
    flags = ("--file-root", str(root), "--rate-limit", "0")
    n1 = _servers("postgres", *flags, pg=pg_cluster, env=env)
    n2 = _servers("postgres", *flags, pg=pg_cluster, env=env, db_url=n1.db_url)
    n2.pg, n2.db_name = n1.pg, n1.db_name
    shutil.copy(os.path.join(n1.data_dir, "admin.token"), n2.data_dir)
    answers = {}

    def create(name, node):
        r = node.post(CREATE, token=node.admin_token, timeout=180,
                      json={"sourceDirectory": str(src), "backupPath": "Vault"})
        answers[name] = r.status_code, r.text

    first = threading.Thread(target=create, args=("n1", n1))
    first.start()
    deadline = time.time() + 30
    while not backup_leases(n1) and time.time() < deadline and first.is_alive():
        time.sleep(0.02)
    second = threading.Thread(target=create, args=("n2", n2))
    second.start()
    most = 0
    while first.is_alive() or second.is_alive():
        most = max(most, len(backup_leases(n1)))
        time.sleep(0.05)
    first.join()
    second.join()
    assert most <= 1, (most, answers)
    assert answers["n1"][0] == 200, answers
    assert answers["n2"][0] in (200, 409), answers
