"""Two runs of one cloud session pair at once (two nodes, or two jobs, downloading the
same location into the same folder): the file left is the object byte for byte, never
both copies appended into one, and no partial file stays. The run that finds another
fetching a file says so in its errors."""

import os
import shutil

import pytest

from test_cloud_sessions import finished, start, write

pytestmark = pytest.mark.postgres_only  # two nodes on one database


def test_two_nodes_downloading_one_pair_at_once_leave_one_whole_copy(_servers, pg_cluster,
                                                                    tmp_path):
    root = tmp_path / "files"
    (root / "src").mkdir(parents=True)
    lc = tmp_path / "lc"
    big = os.urandom(40 << 20)
    write(lc / "big.bin", big)
    write(lc / "small.txt", b"x")
    env = {"FERRY_LOCATIONS": f"Files=folder:{root / 'src'},Disk=local:{lc}"}
    flags = ("--file-root", str(root), "--rate-limit", "0")
    n1 = _servers("postgres", *flags, pg=pg_cluster, env=env)
    n2 = _servers("postgres", *flags, pg=pg_cluster, env=env, db_url=n1.db_url)
    n2.pg, n2.db_name = n1.pg, n1.db_name
    shutil.copy(os.path.join(n1.data_dir, "admin.token"), n2.data_dir)
    for rnd in range(2):
        dst = root / f"down{rnd}"
        sids = [start(n, "Disk", dst) for n in (n1, n2)]
        states = [finished(n, s, timeout=120) for n, s in zip((n1, n2), sids)]
        assert [s["status"] for s in states] == ["completed", "completed"], states
        errors = [e for s in states for e in s["result"]["errors"]]
        assert all(": another run " in e for e in errors), errors
        assert (dst / "big.bin").stat().st_size == len(big), states
        assert (dst / "big.bin").read_bytes() == big
        assert (dst / "small.txt").read_bytes() == b"x"
        assert not [p for p in dst.rglob("*") if ".ferry-part-" in p.name]
