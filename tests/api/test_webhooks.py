"""Webhooks (/api/v1/webhooks): subscriptions, and deliveries as Standard Webhooks 1.0
messages checked by the specification's own verifier (the standardwebhooks npm package in
tests/api/js/webhook_receiver.mjs, a receiver each test starts): retries with the same
webhook-id, a server killed between attempts, disabling after failures and enabling again,
refused private targets, re-delivery, and every event type emitted by a real action."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess

import pytest
import requests

from conftest import REPO, assert_v1_error, wait_until

JS_DIR = os.path.join(REPO, "tests", "api", "js")
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the receiver "
                                "verifies with the standardwebhooks npm package")
HOOKS = "/api/v1/webhooks"
FAST = ("--webhook-allow-private", "true", "--webhook-retry-base", "200ms",
        "--webhook-retry-max", "1s")
EVENTS = ["sync.completed", "sync.failed", "conflict.created", "upload.completed",
          "device.registered", "site.connection.changed", "backup.completed"]


class Receiver:
    """The node receiver: answers deliveries with the statuses it is told, logs each with
    the verifier's verdict."""

    def __init__(self):
        assert os.path.isdir(os.path.join(JS_DIR, "node_modules", "standardwebhooks")), \
            "run scripts/test-peers.sh first"
        self.proc = subprocess.Popen([NODE, os.path.join(JS_DIR, "webhook_receiver.mjs")],
                                     stdout=subprocess.PIPE, cwd=JS_DIR)
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def control(self, **settings):
        r = requests.post(f"http://127.0.0.1:{self.port}/control", json=settings, timeout=5)
        assert r.status_code == 200, r.text

    def log(self):
        return requests.get(f"http://127.0.0.1:{self.port}/log", timeout=5).json()

    def wait(self, n, timeout=15):
        got = wait_until(lambda: len(log := self.log()) >= n and log, timeout, 0.05)
        assert got, f"the receiver got {len(self.log())} deliveries, not {n}"
        return got

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def admin(srv, method, path="", **kw):
    return srv.request(method, HOOKS + path, token=srv.admin_token, **kw)


def subscribe(srv, rcv, events, **extra):
    r = admin(srv, "POST", "/subscribe", json={"url": rcv.url, "events": events, **extra})
    assert r.status_code == 201, r.text
    hook = r.json()
    rcv.control(secret=hook["secret"])
    return hook


def hook_state(srv, hid):
    r = admin(srv, "GET", f"/{hid}")
    assert r.status_code == 200, r.text
    return r.json()


def deliveries(srv, hid, **params):
    r = admin(srv, "GET", f"/{hid}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


def wait_delivery(srv, hid, pred, timeout=15):
    got = wait_until(lambda: [d for d in deliveries(srv, hid) if pred(d)], timeout, 0.05)
    assert got, deliveries(srv, hid)
    return got[0]


def register_device(srv, user="alice", name="phone"):
    tok = srv.create_token(role="user", user_id=user)["token"]
    r = srv.post("/api/v1/sync/devices", token=tok, json={"name": name, "platform": "ios"})
    assert r.status_code == 200, r.text
    return r.json()


def metric(srv, result):
    text = srv.get("/metrics").text  # public unless --metrics-auth
    m = re.search(r'^ferry_webhook_deliveries_total\{result="%s"\} (\d+)$' % result, text, re.M)
    assert m, text
    return int(m.group(1))


# --- subscriptions -----------------------------------------------------------------------


def test_subscribe_list_show_unsubscribe(make_server, receiver):
    srv = make_server(*FAST)
    # the seed's own body
    r = admin(srv, "POST", "/subscribe",
              json={"url": receiver.url, "events": ["sync.completed", "sync.failed"]})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert re.fullmatch(r"wh_[0-9a-f]{24}", hook["id"]), hook
    assert r.headers["Location"] == f"{HOOKS}/{hook['id']}"
    assert hook["success"] is True and hook["url"] == receiver.url
    assert hook["events"] == ["sync.completed", "sync.failed"] and hook["enabled"] is True
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"][6:], validate=True)) == 32
    shown = hook_state(srv, hook["id"])
    assert "secret" not in shown and shown["consecutiveFailures"] == 0
    assert shown["disabledAt"] is None and shown["description"] is None
    listed = admin(srv, "GET").json()
    assert listed["totalCount"] == 1 and listed["webhooks"] == [shown]

    for body, words in [({"events": ["sync.completed"]}, "url"),
                        ({"url": "ftp://example.com/x", "events": ["sync.completed"]}, "url"),
                        ({"url": receiver.url, "events": []}, "events"),
                        ({"url": receiver.url, "events": ["sync.exploded"]}, "events[0]"),
                        ({"url": receiver.url}, "events")]:
        err = assert_v1_error(admin(srv, "POST", "/subscribe", json=body), 400,
                              "INVALID_REQUEST")
        assert words in err["details"], err
    user = srv.create_token(role="user", user_id="bob")["token"]
    assert_v1_error(srv.post(f"{HOOKS}/subscribe", token=user,
                             json={"url": receiver.url, "events": ["sync.completed"]}),
                    403, "FORBIDDEN")
    assert_v1_error(srv.post(f"{HOOKS}/subscribe",
                             json={"url": receiver.url, "events": ["sync.completed"]}),
                    401, "UNAUTHORIZED")
    assert_v1_error(admin(srv, "GET", "/wh_nope"), 404, "NOT_FOUND")
    assert_v1_error(admin(srv, "GET", "/wh_nope/deliveries"), 404, "NOT_FOUND")
    assert_v1_error(admin(srv, "GET", f"/{hook['id']}/deliveries", params={"limit": "0"}),
                    400, "INVALID_REQUEST")

    r = admin(srv, "DELETE", f"/{hook['id']}")
    assert r.status_code == 204, r.text
    assert_v1_error(admin(srv, "DELETE", f"/{hook['id']}"), 404, "NOT_FOUND")
    assert admin(srv, "GET").json() == {"webhooks": [], "totalCount": 0}


def test_private_targets_refused(make_server, receiver):
    srv = make_server()  # no --webhook-allow-private
    for url in (receiver.url, "http://localhost:9/x", "http://169.254.169.254/latest",
                "http://10.1.2.3/x", "http://[::1]:9/x", "http://0.0.0.0:9/x"):
        err = assert_v1_error(admin(srv, "POST", "/subscribe",
                                    json={"url": url, "events": ["device.registered"]}),
                              400, "INVALID_REQUEST")
        assert "private" in err["details"], err
    assert admin(srv, "GET").json()["totalCount"] == 0
    # A subscription whose name passed the check but whose address is private when the
    # delivery connects (as after DNS rebinding): the connection itself is refused.
    srv.db_exec("INSERT INTO ferry_webhooks(id, url, events, secret, created_at, updated_at)"
                f" VALUES ('wh_rebound', '{receiver.url}', 'device.registered',"
                " 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0, 0)")
    register_device(srv)
    d = wait_delivery(srv, "wh_rebound", lambda d: d["attempts"] >= 1)
    assert d["status"] == "pending" and d["lastStatusCode"] is None
    assert "refused" in d["lastError"] and "private" in d["lastError"], d
    assert receiver.log() == []


# --- deliveries --------------------------------------------------------------------------


def test_retried_until_delivered_once_with_one_id(make_server, receiver):
    srv = make_server(*FAST)
    hook = subscribe(srv, receiver, ["device.registered"])
    receiver.control(statuses=[500, 503])
    dev = register_device(srv)
    log = receiver.wait(3)
    assert [e["answered"] for e in log] == [500, 503, 200]
    assert all(e["verified"] for e in log), log  # signed right on every attempt
    assert len({e["id"] for e in log}) == 1 and log[0]["id"].startswith("msg_")
    assert len({e["body"] for e in log}) == 1  # the same bytes each time
    assert all(e["contentType"] == "application/json" for e in log)
    payload = json.loads(log[0]["body"])
    assert payload["type"] == "device.registered"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["timestamp"])
    assert payload["data"]["deviceId"] == dev["id"] and payload["data"]["userId"] == "alice"
    assert int(log[2]["timestamp"]) - int(log[0]["timestamp"]) <= 10

    d = wait_delivery(srv, hook["id"], lambda d: d["status"] == "delivered")
    assert d["eventId"] == log[0]["id"] and d["eventType"] == "device.registered"
    assert d["attempts"] == 3 and d["lastStatusCode"] == 200 and d["lastError"] is None
    assert [(a["attempt"], a["statusCode"], a["success"]) for a in d["attemptLog"]] == [
        (1, 500, False), (2, 503, False), (3, 200, True)]
    assert "500" in d["attemptLog"][0]["error"]
    assert json.loads(d["attemptLog"][2]["response"]) == {"received": True}
    assert hook_state(srv, hook["id"])["consecutiveFailures"] == 0
    assert metric(srv, "ok") == 1 and metric(srv, "failed") == 2
    assert [x["eventId"] for x in deliveries(srv, hook["id"], status="delivered")] == [d["eventId"]]
    assert deliveries(srv, hook["id"], status="pending") == []
    assert len(receiver.log()) == 3  # delivered once: nothing after the 200


def test_killed_between_attempts_still_delivered(make_server, receiver):
    srv = make_server("--webhook-allow-private", "true", "--webhook-retry-base", "2s",
                      "--webhook-retry-max", "2s")
    hook = subscribe(srv, receiver, ["device.registered"])
    receiver.control(statuses=[500])
    register_device(srv)
    receiver.wait(1)
    wait_delivery(srv, hook["id"], lambda d: d["attempts"] == 1)
    srv.stop(signal.SIGKILL)
    srv.start()
    log = receiver.wait(2, timeout=20)
    assert [e["answered"] for e in log] == [500, 200]
    assert log[0]["id"] == log[1]["id"] and all(e["verified"] for e in log)
    d = wait_delivery(srv, hook["id"], lambda d: d["status"] == "delivered")
    assert d["attempts"] == 2


def test_crash_after_the_post_delivers_again_with_the_same_id(make_server, receiver):
    """The server dies (as by kill -9) after the receiver got the message and before the
    outcome is recorded: after the restart the event goes again, with the same webhook-id,
    which is what at-least-once means and why receivers de-duplicate by it."""
    srv = make_server(*FAST, env={"FERRY_CRASH_AT": "webhooks.after_post"})
    hook = subscribe(srv, receiver, ["device.registered"])
    register_device(srv)
    receiver.wait(1)
    assert srv.wait_exit(10) == -signal.SIGKILL, srv.stderr()[-3000:]
    srv.env.pop("FERRY_CRASH_AT")
    srv.start()
    log = receiver.wait(2, timeout=20)
    assert log[0]["id"] == log[1]["id"] and log[0]["body"] == log[1]["body"]
    assert all(e["verified"] and e["answered"] == 200 for e in log)
    d = wait_delivery(srv, hook["id"], lambda d: d["status"] == "delivered")
    assert d["attempts"] == 1  # the first attempt's outcome was never recorded
    assert len(receiver.log()) == 2


def test_disabled_after_failures_then_enabled(make_server, receiver):
    srv = make_server(*FAST, "--webhook-disable-after", "3")
    hook = subscribe(srv, receiver, ["device.registered"])
    receiver.control(status=500)
    register_device(srv, name="first")
    state = wait_until(lambda: not (s := hook_state(srv, hook["id"]))["enabled"] and s, 15)
    assert state, hook_state(srv, hook["id"])
    assert state["consecutiveFailures"] == 3 and state["disabledAt"]
    assert "3 consecutive failed deliveries" in state["disabledReason"], state
    assert len(receiver.log()) == 3
    [d] = deliveries(srv, hook["id"])
    assert d["status"] == "pending" and d["attempts"] == 3  # waits for the subscription
    register_device(srv, name="second")  # not queued for a disabled subscription
    assert len(deliveries(srv, hook["id"])) == 1

    receiver.control(status=200)
    r = admin(srv, "POST", f"/{hook['id']}/enable")
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True and r.json()["consecutiveFailures"] == 0
    assert r.json()["disabledAt"] is None and r.json()["disabledReason"] is None
    log = receiver.wait(4)
    assert log[3]["answered"] == 200 and log[3]["verified"] and log[3]["id"] == d["eventId"]
    wait_delivery(srv, hook["id"], lambda x: x["status"] == "delivered")
    third = register_device(srv, name="third")
    log = receiver.wait(5)
    assert json.loads(log[4]["body"])["data"]["deviceId"] == third["id"]
    assert_v1_error(admin(srv, "POST", "/wh_nope/enable"), 404, "NOT_FOUND")


def test_gone_disables_at_once(make_server, receiver):
    srv = make_server(*FAST)  # --webhook-disable-after at its default, 20
    hook = subscribe(srv, receiver, ["device.registered"])
    receiver.control(status=410)
    register_device(srv)
    state = wait_until(lambda: not (s := hook_state(srv, hook["id"]))["enabled"] and s, 15)
    assert state and state["consecutiveFailures"] == 1, hook_state(srv, hook["id"])
    assert "410" in state["disabledReason"], state
    assert len(receiver.log()) == 1


def test_redeliver_a_past_event(make_server, receiver):
    srv = make_server(*FAST)
    hook = subscribe(srv, receiver, ["device.registered"])
    register_device(srv)
    [first] = receiver.wait(1)
    d = wait_delivery(srv, hook["id"], lambda d: d["status"] == "delivered")
    r = admin(srv, "POST", f"/{hook['id']}/deliveries/{d['eventId']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["eventId"] == d["eventId"] and r.json()["status"] == "pending"
    log = receiver.wait(2)
    assert log[1]["id"] == first["id"] and log[1]["body"] == first["body"] and log[1]["verified"]
    d = wait_delivery(srv, hook["id"], lambda x: x["status"] == "delivered" and x["attempts"] == 2)
    assert [a["attempt"] for a in d["attemptLog"]] == [1, 2]
    assert_v1_error(admin(srv, "POST", f"/{hook['id']}/deliveries/msg_nope/redeliver"), 404,
                    "NOT_FOUND")
    assert_v1_error(admin(srv, "POST", f"/wh_nope/deliveries/{d['eventId']}/redeliver"), 404,
                    "NOT_FOUND")


def test_large_answers_are_cut(make_server, receiver):
    """A receiver that answers with megabytes is read no further than 64 KiB, its 2xx
    still counts, and the log keeps the first 1024 bytes."""
    srv = make_server(*FAST)
    hook = subscribe(srv, receiver, ["device.registered"])
    receiver.control(bodyBytes=4 * 1024 * 1024)
    register_device(srv)
    d = wait_delivery(srv, hook["id"], lambda d: d["status"] == "delivered")
    assert d["attempts"] == 1 and d["lastStatusCode"] == 200
    assert d["attemptLog"][0]["response"] == "x" * 1024
    assert len(receiver.log()) == 1


def test_rolled_back_change_emits_nothing(make_server, receiver):
    srv = make_server(*FAST)
    hook = subscribe(srv, receiver, ["device.registered"])
    tok = srv.create_token(role="user", user_id="alice")["token"]
    r = srv.post("/api/v1/sync/devices", token=tok, json={"id": "till-1", "name": "a"})
    assert r.status_code == 200, r.text
    r = srv.post("/api/v1/sync/devices", token=tok, json={"id": "till-1", "name": "again"})
    assert r.status_code == 409, r.text
    receiver.wait(1)
    assert len(deliveries(srv, hook["id"])) == 1
    assert srv.db_query("SELECT COUNT(*) FROM ferry_webhook_events") == [["1"]]


# --- every event, from a real action ------------------------------------------------------

SCHEMA = ["CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER)"]


def sync_events(srv, root):
    src, dst = root / "src", root / "dst"
    src.mkdir()
    (src / "a.txt").write_bytes(b"hello")
    r = srv.post("/api/v1/sync/files", token=srv.admin_token,
                 json={"sourceDirectory": str(src), "targetDirectory": str(dst)})
    assert r.status_code == 200, r.text
    r = srv.post("/api/v1/sync/session/start", token=srv.admin_token,
                 json={"sourceLocation": str(root / "nope"), "targetLocation": str(dst),
                       "syncType": "Full"})
    assert r.status_code == 200, r.text
    return r.json()["sessionId"]


def conflict_event(srv):
    tok = srv.create_token(role="user", user_id="alice")["token"]
    devs = []
    for name in ("phone", "tablet"):
        r = srv.post("/api/v1/sync/devices", token=tok, json={"name": name})
        assert r.status_code == 200, r.text
        devs.append(r.json()["token"])

    def report(dev, ops):
        r = srv.post("/api/v1/sync/report", token=dev, json={"operations": ops})
        assert r.status_code == 200, r.text
        return r.json()

    report(devs[0], [{"table": "orders", "action": "insert",
                      "data": {"id": 1, "item": "apple", "qty": 1}}])
    report(devs[1], [{"table": "orders", "action": "update", "data": {"id": 1, "qty": 2},
                      "base_version": 1}])
    ans = report(devs[0], [{"table": "orders", "action": "update",
                            "data": {"id": 1, "item": "pear", "qty": 5}, "base_version": 1}])
    return ans["conflicts"][0]["id"]


def upload_event(srv):
    tok = srv.create_token(role="user", user_id="alice")["token"]
    r = srv.post("/api/v1/sync/upload", token=tok, json={"path": "docs/a.bin", "size": 4})
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    assert srv.put(f"/api/v1/sync/upload/{uid}/chunks/0", token=tok, data=b"abcd").ok
    r = srv.post(f"/api/v1/sync/upload/{uid}/complete", token=tok)
    assert r.status_code == 200, r.text
    return uid


def site_event(srv):
    body = {"sender_url": "http://127.0.0.1:7001", "connection_name": "alpha",
            "auth_token": "tok-alpha"}
    r = srv.post("/phoenix_kit/sync/api/register-connection", json=body)
    assert r.status_code == 200 and r.json()["success"] is True, r.text


def test_every_event_type_from_a_real_action(make_server, receiver, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    srv = make_server(*FAST, "--file-root", str(root), "--allowed-tables", "orders",
                      "--conflict-policy", "orders=manual", "--sites-incoming-mode",
                      "auto_accept", schema=SCHEMA)
    subscribe(srv, receiver, EVENTS)
    session = sync_events(srv, root)
    conflict = conflict_event(srv)  # registers two devices too
    upload = upload_event(srv)
    site_event(srv)
    log = receiver.wait(7, timeout=20)
    assert all(e["verified"] for e in log), log
    by_type = {}
    for e in log:
        by_type.setdefault(e["type"], []).append(json.loads(e["body"])["data"])
    assert sorted(by_type) == sorted(set(EVENTS) - {"backup.completed"}), by_type
    [files] = [d for d in by_type["sync.completed"] if d.get("kind") == "files"]
    assert files["status"] == "completed" and files["result"]["filesCopied"] == 1
    [failed] = by_type["sync.failed"]
    assert failed["jobId"] == session and failed["kind"] == "dirsync"
    assert failed["status"] == "failed" and "cannot be opened" in failed["message"]
    assert failed["source"] == str(root / "nope") and failed["target"] == str(root / "dst")
    [cf] = by_type["conflict.created"]
    assert cf["id"] == conflict and cf["table"] == "orders" and cf["serverVersion"] == 2
    [up] = by_type["upload.completed"]
    assert up["uploadId"] == upload and up["file"]["path"] == "docs/a.bin"
    assert up["file"]["size"] == 4 and up["userId"] == "alice"
    assert sorted(d["name"] for d in by_type["device.registered"]) == ["phone", "tablet"]
    [site] = by_type["site.connection.changed"]
    assert site["status"] == "active" and site["direction"] == "receiver"
    assert len({e["id"] for e in log}) == len(log)  # each event its own id


def test_backup_completed_from_a_real_backup(make_server, receiver, tmp_path):
    """A backup that writes a snapshot is one backup.completed, signed and verified; the
    operations that write none (listing versions, a restore) send nothing."""
    root = tmp_path / "root"
    (root / "src" / "d").mkdir(parents=True)
    (root / "src" / "d" / "a.txt").write_bytes(b"backed up\n")
    srv = make_server(*FAST, "--file-root", str(root),
                      env={"FERRY_BACKUP_PASSWORD": "webhook test password"})
    hook = subscribe(srv, receiver, ["backup.completed"])
    repo = str(root / "repo")
    r = srv.post("/api/v1/backup/create", token=srv.admin_token, timeout=60,
                 json={"sourceDirectory": str(root / "src"), "backupPath": repo})
    assert r.status_code == 200, r.text
    made = r.json()
    [e] = receiver.wait(1)
    assert e["verified"] and e["id"].startswith("msg_"), e
    payload = json.loads(e["body"])
    assert payload["type"] == "backup.completed"
    data = payload["data"]
    assert data["jobId"] == made["jobId"] and data["kind"] == "backup", data
    assert data["status"] == "completed" and data["source"] == str(root / "src"), data
    assert data["result"]["versionId"] == made["versionId"], data
    assert data["result"]["fileCount"] == made["fileCount"] == 1, data
    d = wait_delivery(srv, hook["id"], lambda d: d["status"] == "delivered")
    assert d["eventId"] == e["id"] and d["eventType"] == "backup.completed" and d["attempts"] == 1

    r = srv.get("/api/v1/backup/versions", token=srv.admin_token, params={"backupPath": repo})
    assert r.status_code == 200 and r.json()["totalCount"] == 1, r.text
    r = srv.post("/api/v1/backup/restore", token=srv.admin_token, timeout=60,
                 json={"backupPath": repo, "versionId": made["versionId"],
                       "restorePath": str(root / "out")})
    assert r.status_code == 200, r.text
    assert (root / "out" / "d" / "a.txt").read_bytes() == b"backed up\n"
    r = srv.post("/api/v1/backup/create", token=srv.admin_token, timeout=60,
                 json={"sourceDirectory": str(root / "src"), "backupPath": repo})
    assert r.status_code == 200, r.text
    log = receiver.wait(2)
    assert len(log) == 2 and all(x["verified"] for x in log), log
    assert json.loads(log[1]["body"])["data"]["result"]["versionId"] == r.json()["versionId"]
    assert log[0]["id"] != log[1]["id"]


@pytest.mark.postgres_only
def test_two_nodes_deliver_each_event_once(_servers, pg_cluster, receiver, tmp_path):
    """Two servers on one database share the outbox: their delivery threads claim each
    delivery in the database, so every event reaches the receiver exactly once (all
    answered 2xx) whichever node emitted it."""
    a = _servers("postgres", *FAST, pg=pg_cluster)
    b = _servers("postgres", *FAST, pg=pg_cluster, db_url=a.db_url,
                 data_dir=str(tmp_path / "node-b"))
    b.pg, b.db_name = a.pg, a.db_name
    hook = subscribe(a, receiver, ["device.registered"])
    tok = a.create_token(role="user", user_id="alice")["token"]
    for i in range(12):
        node = (a, b)[i % 2]
        r = node.post("/api/v1/sync/devices", token=tok, json={"name": f"d{i}"})
        assert r.status_code == 200, r.text
    log = receiver.wait(12)
    assert wait_until(lambda: len(deliveries(a, hook["id"], status="delivered")) == 12, 15)
    assert len(receiver.log()) == 12 and len({e["id"] for e in log}) == 12
    assert all(e["verified"] and e["answered"] == 200 for e in log)
    assert metric(a, "ok") + metric(b, "ok") == 12
