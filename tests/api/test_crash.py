"""Crash windows: ferry killed as by kill -9 before, inside and after each commit point of
chunked completion, tus PATCH and tus completion, then restarted. Nothing acknowledged
may be missing, nothing may be committed twice, and every upload must go on at once.

The points are chosen with FERRY_CRASH_AT (util/crashpoint.h), which only the test build
honours (CMake option FERRY_CRASH_POINTS, on with FERRY_SANITIZE). NAME:N dies at the N-th
time NAME is reached.
"""

import hashlib
import os
import random
import signal
import time

import pytest
import requests

from conftest import wait_until

V1 = "/api/v1/sync"
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MIB = 1024 * 1024

COMPLETE_POINTS = ["complete.before_blob", "complete.after_claim", "complete.after_rename",
                   "complete.after_commit"]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def rand_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def token(srv, user="bob"):
    return srv.create_token(user_id=user)["token"]


def crashing(make_server, point, *args):
    """A server that dies at point; the caller restarts it with restart_clean()."""
    return make_server("--purge-interval", "0", *args, env={"FERRY_CRASH_AT": point})


def expect_crash(srv, call):
    """Runs call, which must lose its connection because the server died by SIGKILL."""
    try:
        r = call()
    except requests.exceptions.ConnectionError:
        r = None
    assert r is None, f"the server answered {r.status_code} {r.text!r} instead of dying"
    assert srv.wait_exit(10) == -signal.SIGKILL, srv.stderr()[-3000:]


def restart_clean(srv):
    srv.env.pop("FERRY_CRASH_AT", None)
    return srv.start()


def entry(srv, tok, path):
    r = srv.get("/api/v1/files/" + path, token=tok)
    assert r.status_code in (200, 404), r.text
    return r.json() if r.status_code == 200 else None


def assert_file(srv, tok, path, data, version=1):
    """path holds exactly data, committed once (version), downloadable."""
    e = entry(srv, tok, path)
    assert e is not None, f"no entry for {path}"
    assert (e["sha256"], e["size"], e["version"]) == (sha(data), len(data), version), e
    r = srv.get(f"{V1}/download/{path}", token=tok)
    assert r.status_code == 200, r.text
    assert r.content == data
    h = sha(data)
    with open(os.path.join(srv.data_dir, "blobs", h[:2], h[2:4], h), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == h


def purge(srv):
    r = srv.post("/api/v1/admin/purge", token=srv.admin_token)
    assert r.status_code == 200, r.text
    return r.json()


# --- chunked completion -----------------------------------------------------------------


def chunked_session(srv, tok, path, data, chunk=64 * 1024):
    r = srv.post(f"{V1}/upload", token=tok,
                 json={"path": path, "size": len(data), "chunk_size": chunk,
                       "sha256": sha(data)})
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    for i in range(r.json()["chunkCount"]):
        r = srv.put(f"{V1}/upload/{uid}/chunks/{i}", token=tok,
                    data=data[i * chunk:(i + 1) * chunk])
        assert r.status_code == 200, r.text
    return uid


@pytest.mark.parametrize("point", COMPLETE_POINTS)
def test_chunked_complete_survives_a_crash_at_each_point(make_server, point):
    """A completion killed anywhere answers 200 at once after the restart (no lease left
    to wait out), with one version of the entry; collection in between keeps its blob."""
    srv = crashing(make_server, point, "--blob-grace", "0")
    tok = token(srv)
    data = rand_bytes(300 * 1024, point)
    uid = chunked_session(srv, tok, "crash/chunked.bin", data)
    expect_crash(srv, lambda: srv.post(f"{V1}/upload/{uid}/complete", token=tok))
    restart_clean(srv)
    purge(srv)  # a blob put in place before the crash is claimed, not collectable
    r = srv.post(f"{V1}/upload/{uid}/complete", token=tok)
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == sha(data) and r.json()["version"] == 1, r.json()
    assert_file(srv, tok, "crash/chunked.bin", data)
    again = srv.post(f"{V1}/upload/{uid}/complete", token=tok)
    assert again.status_code == 200 and again.json() == r.json()
    assert not os.path.exists(os.path.join(srv.data_dir, "uploads", uid))


# --- tus completion -----------------------------------------------------------------------


def tus_create(srv, tok, length, path):
    import base64
    meta = "path " + base64.b64encode(path.encode()).decode()
    r = srv.post("/tus/", token=tok, headers={**TUS, "Upload-Length": str(length),
                                              "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    return r.headers["Location"]


def tus_patch(srv, tok, loc, offset, data):
    return srv.request("PATCH", loc, token=tok, data=data,
                       headers={**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS},
                       timeout=60)


def tus_offset(srv, tok, loc):
    r = srv.request("HEAD", loc, token=tok, headers=TUS)
    assert r.status_code == 200, r.text
    return int(r.headers["Upload-Offset"]), int(r.headers["Upload-Length"])


@pytest.mark.parametrize("point", ["tus.patch.before_settle", "tus.patch.before_complete"]
                         + COMPLETE_POINTS)
def test_tus_last_patch_survives_a_crash_at_each_point(make_server, point):
    """The PATCH carrying the last byte killed anywhere: once the bytes are on record the
    upload becomes its file entry at start-up (exactly once, even after a collection);
    before that, HEAD says where to go on and the client sends the rest again."""
    srv = crashing(make_server, point, "--blob-grace", "0")
    tok = token(srv)
    data = rand_bytes(200 * 1024, point)
    loc = tus_create(srv, tok, len(data), "crash/tus.bin")
    expect_crash(srv, lambda: tus_patch(srv, tok, loc, 0, data))
    restart_clean(srv)
    purge(srv)
    offset, length = tus_offset(srv, tok, loc)
    if point == "tus.patch.before_settle":
        assert offset == 0 and entry(srv, tok, "crash/tus.bin") is None
        r = tus_patch(srv, tok, loc, 0, data)
        assert r.status_code == 204, r.text
    else:
        # recovered at start-up, before any request about it
        assert offset == length == len(data)
    assert_file(srv, tok, "crash/tus.bin", data)
    assert tus_offset(srv, tok, loc) == (len(data), len(data))
    srv.restart()  # recovery again finds nothing to do: still one version
    assert_file(srv, tok, "crash/tus.bin", data)


def test_tus_upload_complete_on_disk_is_completed_by_head(make_server):
    """Recovery also happens on the next request (here HEAD on a server that did not
    restart: the record says every byte arrived, but the completion never ran)."""
    srv = crashing(make_server, "tus.patch.before_complete")
    tok = token(srv)
    data = rand_bytes(50 * 1024, 7)
    loc = tus_create(srv, tok, len(data), "crash/head.bin")
    expect_crash(srv, lambda: tus_patch(srv, tok, loc, 0, data))
    # start with recovery at start-up out of the way: the row is made incomplete again
    srv.db_exec("UPDATE ferry_uploads SET received = 0")
    restart_clean(srv)
    assert entry(srv, tok, "crash/head.bin") is None
    srv.db_exec(f"UPDATE ferry_uploads SET received = {len(data)}")
    assert tus_offset(srv, tok, loc) == (len(data), len(data))
    assert_file(srv, tok, "crash/head.bin", data)


def test_tus_upload_whose_completion_another_node_holds_is_not_reported_done(make_server):
    """A node died holding the upload's PATCH lease (another host: its lease lasts until it
    expires). Until then HEAD must not report the full offset, which a tus client takes
    for success while no entry exists: it answers 423 and the client asks again. Once the
    lease expires, housekeeping (or the next request) completes the upload."""
    srv = crashing(make_server, "tus.patch.before_complete", "--purge-interval", "0")
    tok = token(srv)
    data = rand_bytes(50 * 1024, 11)
    loc = tus_create(srv, tok, len(data), "crash/other-node.bin")
    upload_id = loc.rstrip("/").split("/")[-1]
    expect_crash(srv, lambda: tus_patch(srv, tok, loc, 0, data))
    far = int(time.time() * 1000) + 3600 * 1000
    srv.db_exec("DELETE FROM ferry_leases",
                "INSERT INTO ferry_leases(name, owner, token, expires_at) VALUES "
                f"('patch:{upload_id}', 'other-host boot-x 4242 1', 't', {far})")
    restart_clean(srv)
    r = srv.request("HEAD", loc, token=tok, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 423, (r.status_code, r.headers)
    assert "Upload-Offset" not in r.headers
    assert entry(srv, tok, "crash/other-node.bin") is None
    srv.db_exec("UPDATE ferry_leases SET expires_at = 0")
    purge(srv)  # housekeeping completes it without any request about the upload
    assert_file(srv, tok, "crash/other-node.bin", data)
    assert tus_offset(srv, tok, loc) == (len(data), len(data))


# --- tus PATCH progress -----------------------------------------------------------------


@pytest.mark.parametrize("nth", [1, 3])
def test_tus_patch_progress_is_checkpointed(make_server, nth):
    """One long PATCH killed after its nth checkpoint keeps what the checkpoint recorded
    (about 4 MiB each): the offset after the restart is where it was, not where the
    PATCH started, and the upload goes on from there to the right bytes."""
    srv = crashing(make_server, f"tus.patch.checkpoint:{nth}")
    tok = token(srv)
    data = rand_bytes(18 * MIB, nth)
    loc = tus_create(srv, tok, len(data), "crash/long.bin")
    expect_crash(srv, lambda: tus_patch(srv, tok, loc, 0, data))
    restart_clean(srv)
    offset, _ = tus_offset(srv, tok, loc)
    # (a checkpoint falls at the first write that reaches each 4 MiB)
    assert nth * 4 * MIB <= offset < (nth + 1) * 4 * MIB, offset
    r = tus_patch(srv, tok, loc, offset, data[offset:])
    assert r.status_code == 204, r.text
    assert_file(srv, tok, "crash/long.bin", data)


# --- random kills under load ---------------------------------------------------------------


def test_random_kills_lose_nothing_acknowledged(make_server):
    """Timing-based: uploads (chunked and tus) run while the server is killed at a random
    moment, several times. Every upload answered 200/204 must be there afterwards, and
    every other one must complete when the client carries on."""
    srv = make_server("--purge-interval", "0", "--rate-limit", "0")  # many requests, one token
    tok = token(srv)
    rng = random.Random(42)
    acked, pending = {}, []
    for trial in range(6):
        import threading
        stop = threading.Event()

        def work(k):
            n = 0
            while not stop.is_set():
                path = f"rand/{trial}-{k}-{n}.bin"
                data = rand_bytes(rng.randint(1, 200) * 1024, path)
                n += 1
                try:
                    if n % 2:
                        uid = chunked_session(srv, tok, path, data, chunk=32 * 1024)
                        pending.append(("chunked", uid, path, data))
                        r = srv.post(f"{V1}/upload/{uid}/complete", token=tok)
                        ok = r.status_code == 200
                    else:
                        loc = tus_create(srv, tok, len(data), path)
                        pending.append(("tus", loc, path, data))
                        ok = tus_patch(srv, tok, loc, 0, data).status_code == 204
                    if ok:
                        acked[path] = data
                except (requests.exceptions.ConnectionError, AssertionError):
                    return

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: False, timeout=rng.uniform(0.3, 1.5))
        srv.proc.send_signal(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
        assert srv.wait_exit(10) == -signal.SIGKILL
        srv.start()
    for path, data in acked.items():
        assert_file(srv, tok, path, data)
    for kind, ref, path, data in pending:
        if path in acked:
            continue
        if kind == "chunked":
            r = srv.get(f"{V1}/upload/{ref}", token=tok)
            missing = [i for i in range(r.json()["chunkCount"])
                       if i not in r.json()["receivedChunks"]]
            for i in missing:
                srv.put(f"{V1}/upload/{ref}/chunks/{i}", token=tok,
                        data=data[i * 32 * 1024:(i + 1) * 32 * 1024])
            r = srv.post(f"{V1}/upload/{ref}/complete", token=tok)
            assert r.status_code == 200, r.text
        else:
            offset, length = tus_offset(srv, tok, ref)
            if offset < length:
                assert tus_patch(srv, tok, ref, offset, data[offset:]).status_code == 204
        assert_file(srv, tok, path, data)
    assert acked, "no upload finished between the kills"
    print(f"\nrandom kills: 6, uploads acknowledged {len(acked)}, "
          f"unacknowledged then finished {len(pending) - len(acked)}")


# --- push (timing-based) -----------------------------------------------------------------


def test_push_batches_survive_random_kills(make_server):
    """Batches of rows pushed while the server is killed at random moments: each batch
    answered 200 is there whole, and every batch sent again under its batchId after the
    restart is applied once (replayed when it had been applied before the kill)."""
    import threading

    from devsync import Client, new_batch_id, op, start

    srv = start(make_server, "--purge-interval", "0")
    device = Client(srv, token(srv)).register("crash")
    rng = random.Random(7)
    sent, acked = [], set()
    for trial in range(6):
        stop = threading.Event()

        def work():
            n = 0
            while not stop.is_set():
                bid = new_batch_id()
                rows = [f"{trial}-{n}-{i}" for i in range(50)]
                n += 1
                sent.append((bid, rows))
                try:
                    device.report([op("notes", "insert", {"id": r, "title": r}) for r in rows],
                                  batch_id=bid)
                    acked.add(bid)
                except (requests.exceptions.ConnectionError, AssertionError):
                    return

        t = threading.Thread(target=work)
        t.start()
        wait_until(lambda: False, timeout=rng.uniform(0.2, 1.0))
        srv.proc.send_signal(signal.SIGKILL)
        stop.set()
        t.join(30)
        assert srv.wait_exit(10) == -signal.SIGKILL
        srv.start()
    for bid, rows in sent:
        body = device.report([op("notes", "insert", {"id": r, "title": r}) for r in rows],
                             batch_id=bid)
        if bid in acked:
            assert body["replayed"] is True, body
    total = sum(len(rows) for _, rows in sent)
    assert int(srv.db_query("SELECT COUNT(*) FROM notes")[0][0]) == total
    assert acked, "no batch was answered between the kills"
    print(f"\npush kills: 6, batches acknowledged {len(acked)}, sent again {len(sent)}, "
          f"rows {total}")
