"""PhoenixKit's site-to-site sync (docs/phoenixkit.md): the
site API at /phoenix_kit/sync/api/<action> and ferry's admin API /api/v1/admin/sites.

Two ferry servers talk over loopback (both with --sites-allow-private and a public URL on
a port picked beforehand). Where a test has two, A runs on the test's backend and B on
the other one, so every pairing of SQLite and PostgreSQL is exercised."""

import base64
import json
import re

from conftest import assert_legacy_error, assert_v1_error, free_port, sha256_hex

PK = "/phoenix_kit/sync/api"
SITES = "/api/v1/admin/sites"
OTHER = {"sqlite": "postgres", "postgres": "sqlite"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
POST_ACTIONS = ["register-connection", "delete-connection", "verify-connection",
                "update-status", "get-connection-status", "list-tables", "table-schema",
                "table-records", "pull-data"]
COL_KEYS = {"column_name", "data_type", "is_nullable", "column_default",
            "character_maximum_length", "primary_key"}
NOT_FOUND = {"success": False, "error": "Connection not found"}
TABLE_NOT_FOUND = {"success": False, "error": "Table not found"}
N_ITEMS = 50000


# --- helpers ------------------------------------------------------------------------------


def site(_servers, backend, *flags, private=True, **kw):
    """A ferry on a port known before it starts, so that its public URL is right."""
    port = free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}",
            "--sites-verify-interval", "0"]
    if private:
        args += ["--sites-allow-private", "true"]
    return _servers(backend, *args, *flags, **kw)


def admin(srv, method, path="", **kw):
    return srv.request(method, SITES + path, token=srv.admin_token, **kw)


def conns(srv):
    r = admin(srv, "GET")
    assert r.status_code == 200, r.text
    assert r.json()["count"] == len(r.json()["connections"])
    return r.json()["connections"]


def only(srv):
    [c] = conns(srv)
    return c


def get_conn(srv, cid):
    r = admin(srv, "GET", f"/{cid}")
    assert r.status_code == 200, r.text
    return r.json()


def create(a, b, name="to-b", **extra):
    return admin(a, "POST", json={"name": name, "url": b.base, **extra})


def pair(_servers, backend, a_flags=(), a_schema=(), b_mode="auto_accept", **extra):
    """A (the sender) connected to B (the receiver); returns a, b and A's 201 answer."""
    a = site(_servers, backend, *a_flags, schema=a_schema)
    b = site(_servers, OTHER[backend], "--sites-incoming-mode", b_mode)
    r = create(a, b, **extra)
    assert r.status_code == 201, r.text
    return a, b, r.json()


def receiver_hash(b):
    [[h]] = b.db_query("SELECT token_hash FROM ferry_sites WHERE direction = 'receiver'")
    assert re.fullmatch(r"[0-9a-f]{64}", h), h
    return h


def pk(srv, action, **body):
    return srv.post(f"{PK}/{action}", json=body)


def register(srv, sender="http://127.0.0.1:7001", name="alpha", token="tok-alpha", **extra):
    body = {"sender_url": sender, "connection_name": name, "auth_token": token, **extra}
    return pk(srv, "register-connection", **body)


def ok(r):
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True, r.text
    return r.json()


def series(table, cols, exprs, n):
    """INSERT of n generated rows (x = 1..n); the same SQL runs on SQLite and PostgreSQL."""
    return (f"INSERT INTO {table}({cols}) WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL"
            f" SELECT x + 1 FROM s WHERE x < {n}) SELECT {exprs} FROM s")


def data_schema(backend):
    pg = backend == "postgres"
    blob = "BYTEA" if pg else "BLOB"
    binary, utf8 = ("'\\xff00fe'::bytea", "'hi'::bytea") if pg else ("x'ff00fe'", "x'6869'")
    return [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL DEFAULT 'x',"
        " qty INTEGER)",
        series("items", "id, name, qty", "x, 'item' || x, x % 7", N_ITEMS),
        "CREATE TABLE codes (code TEXT PRIMARY KEY, label TEXT)",
        "INSERT INTO codes VALUES ('d', 'D'), ('a', 'A'), ('e', 'E'), ('c', 'C'), ('b', 'B')",
        f"CREATE TABLE typed (id INTEGER PRIMARY KEY, amount NUMERIC(10,2), at TIMESTAMP,"
        f" data {blob})",
        f"INSERT INTO typed VALUES (1, 12.50, '2024-01-02 03:04:05', {binary}),"
        f" (2, NULL, NULL, {utf8})",
        "CREATE TABLE nokey (a INTEGER, b TEXT)",
        series("nokey", "a, b", "x % 5, 'r' || x", 25),
        "CREATE TABLE secret (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO secret VALUES (1, 'hidden')",
    ]


# --- status, the disabled module, registration --------------------------------------------


def test_disabled_module_answers_503(_servers, backend):
    srv = site(_servers, backend, "--sites-enabled", "false")
    r = srv.get(f"{PK}/status")
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "enabled": False, "incoming_mode": "require_approval",
                        "password_required": False}
    for action in POST_ACTIONS:
        r = pk(srv, action, auth_token_hash="x" * 64, table_name="items")
        assert r.status_code == 503, (action, r.text)
        assert r.json() == {"success": False, "error": "DB Sync module is disabled"}, action
    assert conns(srv) == []


def test_register_connection_in_each_mode(_servers, backend):
    srv = site(_servers, backend, "--sites-incoming-mode", "deny_all", private=False)
    assert srv.get(f"{PK}/status").json() == {
        "success": True, "enabled": True, "incoming_mode": "deny_all", "password_required": False}
    # deny_all is checked before the fields
    for body in ({}, {"sender_url": "http://x", "connection_name": "n", "auth_token": "t"}):
        r = pk(srv, "register-connection", **body)
        assert r.status_code == 403, r.text
        assert r.json() == {"success": False, "error": "Incoming connections are not allowed"}
    r = admin(srv, "GET", "/settings")
    assert r.status_code == 200, r.text
    assert r.json() == {"enabled": True, "prefix": "/phoenix_kit", "incoming_mode": "deny_all",
                        "password_set": False, "public_url": srv.base}
    assert_v1_error(admin(srv, "PUT", "/settings", json={"incoming_mode": "bogus"}), 400,
                    "INVALID_REQUEST")
    assert_v1_error(admin(srv, "PUT", "/settings", json={"enabled": False}), 400,
                    "INVALID_REQUEST")

    r = admin(srv, "PUT", "/settings", json={"incoming_mode": "auto_accept"})
    assert r.status_code == 200 and r.json()["incoming_mode"] == "auto_accept", r.text
    r = pk(srv, "register-connection")
    assert r.status_code == 400, r.text
    assert r.json() == {"success": False, "error": "Missing required fields",
                        "fields": ["sender_url", "connection_name", "auth_token"]}
    r = pk(srv, "register-connection", sender_url=None, connection_name="", auth_token="t")
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == ["sender_url", "connection_name"]
    body = ok(register(srv))
    assert set(body) == {"success", "message", "connection_status", "connection_uuid"}
    assert body["connection_status"] == "active" and isinstance(body["message"], str)
    assert UUID_RE.match(body["connection_uuid"]), body
    r = register(srv, name="again", token="other")
    assert r.status_code == 409, r.text
    assert r.json() == {"success": False, "error": "Connection already exists for this site"}
    c = only(srv)
    assert (c["id"], c["name"], c["direction"], c["site_url"], c["status"]) == (
        body["connection_uuid"], "From: alpha", "receiver", "http://127.0.0.1:7001", "active")
    assert srv.db_query("SELECT token_hash FROM ferry_sites") == [[sha256_hex("tok-alpha")]]

    # require_password, the password set through the settings API
    r = admin(srv, "PUT", "/settings", json={"incoming_mode": "require_password",
                                             "password": "s3cret"})
    assert r.status_code == 200, r.text
    assert r.json()["password_set"] is True and "password" not in r.json()
    assert "s3cret" not in r.text
    assert srv.get(f"{PK}/status").json()["password_required"] is True
    assert pk(srv, "register-connection").status_code == 400  # fields before the password
    for extra in ({}, {"password": ""}, {"password": None}):
        r = register(srv, sender="http://127.0.0.1:7002", **extra)
        assert r.status_code == 401, r.text
        assert r.json() == {"success": False,
                            "error": "Password required for incoming connections"}
    r = register(srv, sender="http://127.0.0.1:7002", password="wrong")
    assert r.status_code == 401, r.text
    assert r.json() == {"success": False, "error": "Invalid password"}
    body = ok(register(srv, sender="http://127.0.0.1:7002", password="s3cret"))
    assert body["connection_status"] == "active"

    r = admin(srv, "PUT", "/settings", json={"incoming_mode": "require_approval"})
    assert r.status_code == 200, r.text
    body = ok(register(srv, sender="http://127.0.0.1:7003", name="gamma", token="tok-g"))
    assert body["connection_status"] == "pending"
    c = get_conn(srv, body["connection_uuid"])
    assert (c["status"], c["name"], c["direction"]) == ("pending", "From: gamma", "receiver")

    # without --sites-allow-private, private and loopback remotes are refused
    for url in (srv.base, f"http://localhost:{srv.port}", "http://10.1.2.3"):
        r = admin(srv, "POST", json={"name": "loop", "url": url})
        assert_v1_error(r, 403, "FORBIDDEN")
    assert len(conns(srv)) == 3

    # the mode from the environment, the password from a flag (both override the stored)
    assert srv.stop() == 0
    srv.env = {"FERRY_SITES_INCOMING_MODE": "require_password"}
    i = srv.args.index("--sites-incoming-mode")
    srv.args[i:i + 2] = ["--sites-password", "pw2"]  # the flag would beat the environment
    srv.start()
    assert srv.get(f"{PK}/status").json() == {
        "success": True, "enabled": True, "incoming_mode": "require_password",
        "password_required": True}
    r = register(srv, sender="http://127.0.0.1:7004", password="s3cret")
    assert r.status_code == 401 and r.json()["error"] == "Invalid password", r.text
    assert ok(register(srv, sender="http://127.0.0.1:7004", password="pw2"))[
        "connection_status"] == "active"
    assert admin(srv, "GET", "/settings").json()["password_set"] is True
    r = admin(srv, "PUT", "/settings", json={"password": None})
    assert r.status_code == 200 and r.json()["password_set"] is False, r.text


def test_management_actions_called_directly(_servers, backend):
    srv = site(_servers, backend, "--sites-incoming-mode", "require_approval")
    sender, h = "http://127.0.0.1:7101", sha256_hex("tok-m")
    cid = ok(register(srv, sender=sender, token="tok-m"))["connection_uuid"]
    wrong = sha256_hex("nope")
    for action in ("delete-connection", "verify-connection", "update-status"):
        r = pk(srv, action)
        assert r.status_code == 400, r.text
        assert r.json()["fields"][:2] == ["sender_url", "auth_token_hash"]
    assert pk(srv, "get-connection-status").json()["fields"] == ["receiver_url",
                                                                   "auth_token_hash"]
    r = pk(srv, "verify-connection", sender_url=sender, auth_token_hash=wrong)
    assert r.status_code == 404, r.text
    assert r.json() == {"success": False, "exists": False, "error": "Connection not found"}
    r = pk(srv, "verify-connection", sender_url="http://127.0.0.1:1", auth_token_hash=h)
    assert r.status_code == 404 and r.json()["exists"] is False, r.text
    assert ok(pk(srv, "verify-connection", sender_url=sender, auth_token_hash=h)) == {
        "success": True, "exists": True}
    for action in ("delete-connection", "update-status"):
        r = pk(srv, action, sender_url=sender, auth_token_hash=wrong, status="suspended")
        assert r.status_code == 404, r.text
        assert r.json() == NOT_FOUND
    # get-connection-status looks up sender connections only; this one is a receiver
    for hsh in (wrong, h):
        r = pk(srv, "get-connection-status", receiver_url=sender, auth_token_hash=hsh)
        assert r.status_code == 404 and r.json() == NOT_FOUND, r.text
    r = pk(srv, "update-status", sender_url=sender, auth_token_hash=h, status="bogus")
    assert r.status_code == 400, r.text
    assert r.json() == {"success": False, "error": "Invalid status value"}

    # the sender cannot approve what waits for this site's admin
    ok(pk(srv, "update-status", sender_url=sender, auth_token_hash=h, status="active"))
    assert get_conn(srv, cid)["status"] == "pending"

    r = pk(srv, "delete-connection", sender_url=sender, auth_token_hash=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "message": "Connection deleted"}
    assert conns(srv) == []
    r = pk(srv, "delete-connection", sender_url=sender, auth_token_hash=h)
    assert r.status_code == 404 and r.json() == NOT_FOUND
    # ... nor by way of suspended: pending -> suspended -> active
    cid = ok(register(srv, sender=sender, token="tok-m"))["connection_uuid"]
    ok(pk(srv, "update-status", sender_url=sender, auth_token_hash=h, status="suspended"))
    ok(pk(srv, "update-status", sender_url=sender, auth_token_hash=h, status="active"))
    assert get_conn(srv, cid)["status"] != "active", "a never-approved receiver became active"


# --- the admin flow between two servers ---------------------------------------------------


def test_approval_suspend_reactivate_revoke(_servers, backend):
    a, b, conn = pair(_servers, backend, b_mode="require_approval", excluded_tables=["secret"])
    assert (conn["name"], conn["direction"], conn["site_url"], conn["status"]) == (
        "to-b", "sender", b.base, "pending")
    assert conn["excluded_tables"] == ["secret"]
    remote = conn["remote"]
    assert set(remote) == {"success", "message", "connection_status", "connection_uuid"}
    assert remote["success"] is True and remote["connection_status"] == "pending"
    recv = only(b)
    assert (recv["id"], recv["name"], recv["direction"], recv["site_url"], recv["status"]) == (
        remote["connection_uuid"], "From: to-b", "receiver", a.base, "pending")
    h = receiver_hash(b)
    assert a.db_query("SELECT token_hash FROM ferry_sites") == [[h]]

    def data_status():
        r = pk(a, "list-tables", auth_token_hash=h)
        if r.status_code != 200:
            assert r.json() == {"success": False, "error": "Connection is not active"}, r.text
        return r.status_code

    assert data_status() == 403
    assert_v1_error(admin(a, "POST", f"/{conn['id']}/approve"), 409, "CONFLICT")  # a sender
    r = admin(b, "POST", f"/{recv['id']}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["mirrored"] is True
    assert get_conn(a, conn["id"])["status"] == "active"
    assert data_status() == 200
    assert_v1_error(admin(b, "POST", f"/{recv['id']}/approve"), 409, "CONFLICT")
    r = pk(a, "get-connection-status", receiver_url=b.base, auth_token_hash=h)
    assert ok(r) == {"success": True, "status": "active", "name": "to-b"}

    for action, status, code in (("suspend", "suspended", 403), ("reactivate", "active", 200)):
        r = admin(a, "POST", f"/{conn['id']}/{action}")
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["mirrored"]) == (status, True)
        assert get_conn(b, recv["id"])["status"] == status
        assert data_status() == code
    assert_v1_error(admin(a, "POST", f"/{conn['id']}/reactivate"), 409, "CONFLICT")

    # the receiver may lower the sender's status, never lift the sender's suspension
    assert admin(a, "POST", f"/{conn['id']}/suspend").json()["mirrored"] is True
    r = admin(b, "POST", f"/{recv['id']}/reactivate")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["mirrored"]) == ("active", False), r.json()
    assert "kept its status 'suspended'" in r.json()["remote_error"]
    assert get_conn(a, conn["id"])["status"] == "suspended"
    assert data_status() == 403
    assert admin(a, "POST", f"/{conn['id']}/reactivate").json()["mirrored"] is True
    assert data_status() == 200
    v = admin(b, "POST", f"/{recv['id']}/verify").json()  # the receiver asks the sender
    assert (v["result"], v["status"], v["reachable"]) == ("exists", "active", True), v
    assert_v1_error(admin(a, "POST", f"/{conn['id']}/bogus"), 400, "INVALID_REQUEST")
    assert_v1_error(admin(a, "POST", "/no-such-id/suspend"), 404, "NOT_FOUND")

    # deny of another pending one (its sender is unreachable: not mirrored)
    other = ok(register(b, sender="http://127.0.0.1:9", token="tok-d"))["connection_uuid"]
    r = admin(b, "POST", f"/{other}/deny")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["mirrored"]) == ("revoked", False)
    assert isinstance(r.json()["remote_error"], str) and r.json()["remote_error"]
    assert get_conn(b, other)["status"] == "revoked"

    r = admin(a, "POST", f"/{conn['id']}/revoke")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["mirrored"]) == ("revoked", True)
    assert get_conn(b, recv["id"])["status"] == "revoked"
    assert data_status() == 403
    assert_v1_error(admin(a, "POST", f"/{conn['id']}/reactivate"), 409, "CONFLICT")


def test_patch_connection_fields(_servers, backend):
    a, b, conn = pair(_servers, backend)
    assert conn["status"] == "active" and conn["remote"]["connection_status"] == "active"
    assert (conn["max_records_per_request"], conn["rate_limit_requests_per_minute"],
            conn["default_conflict_strategy"], conn["expires_at"]) == (10000, 60, "skip", None)
    path = f"/{conn['id']}"
    good = {"allowed_tables": ["a", "b"], "excluded_tables": ["c"],
            "ip_whitelist": ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"],
            "max_records_per_request": 500, "rate_limit_requests_per_minute": 5,
            "default_conflict_strategy": "merge", "name": "renamed"}
    r = admin(a, "PATCH", path, json=good)
    assert r.status_code == 200, r.text
    for k, v in good.items():
        assert r.json()[k] == v, k
    r = admin(a, "PATCH", path, json={"expires_at": "2099-01-02T03:04:05Z"})
    assert r.status_code == 200 and r.json()["expires_at"].startswith("2099-01-02T03:04:05")
    r = admin(a, "PATCH", path, json={"expires_at": None, "allowed_tables": []})
    assert r.status_code == 200 and r.json()["expires_at"] is None
    assert r.json()["allowed_tables"] == []
    bad = [{"allowed_tables": "a"}, {"excluded_tables": [""]}, {"allowed_tables": ["a,b"]},
           {"ip_whitelist": ["999.1.1.1"]}, {"ip_whitelist": ["10.0.0.0/33"]},
           {"expires_at": "yesterday"}, {"expires_at": 5}, {"max_records_per_request": 0},
           {"max_records_per_request": "5"}, {"rate_limit_requests_per_minute": -1},
           {"default_conflict_strategy": "bogus"}, {"status": "active"}, {"name": ""}]
    for body in bad:
        assert_v1_error(admin(a, "PATCH", path, json=body), 400, "INVALID_REQUEST")
    after = get_conn(a, conn["id"])
    assert after["max_records_per_request"] == 500 and after["status"] == "active"
    assert_v1_error(admin(a, "PATCH", "/no-such-id", json={"name": "x"}), 404, "NOT_FOUND")
    assert admin(a, "DELETE", path).status_code == 200
    assert conns(b) == []
    # bad settings in the create body: 400, and nothing is kept on either side
    assert_v1_error(create(a, b, max_records_per_request=0), 400, "INVALID_REQUEST")
    assert conns(a) == [] and conns(b) == []
    assert_v1_error(admin(a, "POST", json={"name": "x"}), 400, "INVALID_REQUEST")
    assert_v1_error(admin(a, "POST", json={"name": "x", "url": "ftp://h"}), 400,
                    "INVALID_REQUEST")
    r = create(a, b, max_records_per_request=500)
    assert r.status_code == 201 and r.json()["max_records_per_request"] == 500, r.text
    cid = r.json()["id"]
    path = f"/{cid}"
    # a rejected PATCH changes nothing, not even its valid fields
    r = admin(a, "PATCH", path, json={"max_records_per_request": 7,
                                      "default_conflict_strategy": "bogus"})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert get_conn(a, cid)["max_records_per_request"] == 500


def test_delete_mirroring_self_healing_and_refusals(_servers, backend):
    a, b, conn = pair(_servers, backend)
    r = admin(a, "DELETE", f"/{conn['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": conn["id"], "deleted": True, "mirrored": True}
    assert conns(a) == [] and conns(b) == []

    # the receiver's delete is mirrored to the sender too
    r = create(a, b)
    assert r.status_code == 201, r.text
    hash_ = b.db_query("SELECT token_hash FROM ferry_sites")[0][0]
    r = admin(b, "DELETE", f"/{only(b)['id']}")
    assert r.status_code == 200, r.text
    assert (r.json()["deleted"], r.json()["mirrored"]) == (True, True)
    assert conns(a) == [] and conns(b) == []
    # neither site logged the connection's credential: its calls name 8 characters of it
    calls = [json.loads(line) for srv in (a, b) for line in srv.stderr().splitlines()
             if line.startswith("{") and '"msg":"site call"' in line]
    assert {l["action"] for l in calls} >= {"register-connection", "delete-connection"}, calls
    assert all(re.fullmatch(r"[0-9a-f]{8}", l["connection"]) for l in calls), calls
    assert [l["action"] for l in calls if l["connection"] == hash_[:8]] == [
        "register-connection", "delete-connection"], calls
    assert hash_ not in a.stderr() and hash_ not in b.stderr()

    # B deletes while A is down; A's verify later finds it gone and deletes its side
    r = create(a, b)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert a.stop() == 0
    r = admin(b, "DELETE", f"/{only(b)['id']}")
    assert r.status_code == 200, r.text
    assert (r.json()["deleted"], r.json()["mirrored"]) == (True, False)
    assert r.json()["remote_error"]
    a.start()
    r = admin(a, "POST", f"/{cid}/verify")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": cid, "result": "deleted"}
    assert_v1_error(admin(a, "GET", f"/{cid}"), 404, "NOT_FOUND")

    # verify while B is down: unreachable, counted, kept
    r = create(a, b)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert b.stop() == 0
    r = admin(a, "POST", f"/{cid}/verify")
    assert r.status_code == 200, r.text
    v = r.json()
    assert (v["id"], v["result"], v["failures"], v["reachable"]) == (
        cid, "unreachable", 1, False)
    assert v["remote_error"] and v["status"] == "active"
    assert get_conn(a, cid)["failures"] == 1
    b.start()
    v = admin(a, "POST", f"/{cid}/verify").json()
    assert (v["result"], v["failures"], v["reachable"]) == ("exists", 0, True)

    # the remote's refusals: 502 REMOTE_ERROR, nothing stored on A
    assert_v1_error(create(a, b, name="dup"), 502, "REMOTE_ERROR")  # B has one from A
    admin(b, "PUT", "/settings", json={"incoming_mode": "deny_all"})
    body = assert_v1_error(create(a, b, name="denied"), 502, "REMOTE_ERROR")
    assert "Incoming connections are not allowed" in body["details"] + body["message"]
    admin(b, "PUT", "/settings", json={"incoming_mode": "require_password", "password": "pw"})
    assert_v1_error(create(a, b, name="nopw"), 502, "REMOTE_ERROR")
    assert [c["id"] for c in conns(a)] == [cid]
    assert admin(a, "DELETE", f"/{cid}").json()["mirrored"] is True
    assert conns(b) == []
    r = create(a, b, name="withpw", password="pw")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "active" and "password" not in r.json()
    assert only(b)["name"] == "From: withpw"


# --- data endpoints -----------------------------------------------------------------------


def test_data_endpoints(_servers, backend):
    a, b, conn = pair(_servers, backend, a_schema=data_schema(backend),
                      excluded_tables=["secret"])
    h = receiver_hash(b)
    r = admin(a, "PATCH", f"/{conn['id']}", json={"rate_limit_requests_per_minute": 100000})
    assert r.status_code == 200, r.text

    def call(action, **body):
        return a.post(f"{PK}/{action}", json={"auth_token_hash": h, **body})

    body = ok(call("list-tables"))
    assert set(body) == {"success", "tables"}
    tables = {t["name"]: t for t in body["tables"]}
    assert set(tables) == {"items", "codes", "typed", "nokey"}, tables
    for t in tables.values():
        assert set(t) == {"name", "row_count", "size_bytes"}
        assert isinstance(t["size_bytes"], int) and t["size_bytes"] >= 0
    assert {n: t["row_count"] for n, t in tables.items()} == {
        "items": N_ITEMS, "codes": 5, "typed": 2, "nokey": 25}

    # schema
    schema = ok(call("table-schema", table_name="items"))["schema"]
    assert schema["table_name"] == "items" and set(schema) == {"table_name", "columns"}
    cols = schema["columns"]
    assert [c["column_name"] for c in cols] == ["id", "name", "qty"]
    assert all(set(c) == COL_KEYS for c in cols), cols
    cid, cname, cqty = cols
    assert "int" in cid["data_type"] and cid["primary_key"] is True
    assert (cid["is_nullable"], cid["character_maximum_length"]) == ("NO", None)
    assert (cname["is_nullable"], cname["character_maximum_length"]) == ("NO", 40)
    assert "'x'" in cname["column_default"] and cname["primary_key"] is False
    assert (cqty["is_nullable"], cqty["column_default"], cqty["primary_key"]) == (
        "YES", None, False)
    types = [c["data_type"] for c in ok(call("table-schema", table_name="typed"))["schema"][
        "columns"]]
    assert types[1].startswith("numeric") and "timestamp" in types[2]
    assert types[3] == ("bytea" if backend == "postgres" else "blob")
    for action in ("table-schema", "table-records", "pull-data"):
        for table in ("nope", "secret", "ferry_sites", "items; DROP TABLE items"):
            r = call(action, table_name=table)
            assert r.status_code == 404, (action, table, r.text)
            assert r.json() == TABLE_NOT_FOUND

    # table-records
    def ids(**q):
        body = ok(call("table-records", **q))
        assert set(body) == {"success", "records"}
        return [row.get("id", row.get("code")) for row in body["records"]]

    assert ids(table_name="items") == list(range(1, 11))
    assert ids(table_name="items", limit=100) == list(range(1, 101))
    assert ids(table_name="items", offset=5, limit=3) == [6, 7, 8]
    assert ids(table_name="items", ids=[9, 3, 5]) == [3, 5, 9]
    assert ids(table_name="items", ids=[9, 3], id_start=100, id_end=200) == [3, 9]
    assert ids(table_name="items", id_start=10, id_end=12) == [10, 11, 12]
    assert ids(table_name="items", id_start=N_ITEMS - 1) == [N_ITEMS - 1, N_ITEMS]
    assert ids(table_name="items", id_end=2, limit=50) == [1, 2]
    assert ids(table_name="codes") == ["a", "b", "c", "d", "e"]
    assert ids(table_name="codes", ids=["e", "b"]) == ["b", "e"]
    assert ids(table_name="codes", id_start="b", id_end="d") == ["b", "c", "d"]
    assert ok(call("table-records", table_name="items", ids=[7]))["records"] == [
        {"id": 7, "name": "item7", "qty": 0}]
    # a larger limit is clamped to 100, as PhoenixKit's own server does
    assert ids(table_name="items", limit=101) == list(range(1, 101))
    assert ids(table_name="items", limit=100000) == list(range(1, 101))
    for q in ({"limit": 0}, {"limit": "5"}, {"offset": -1}, {"ids": 5}):
        assert_legacy_error(call("table-records", table_name="items", **q), 400)
    assert len(ok(call("table-records", table_name="nokey", limit=5))["records"]) == 5
    assert_legacy_error(call("table-records", table_name="nokey", ids=[1]), 400)
    # a key of the wrong type is named in a readable message (it used to come out garbled)
    r = call("table-records", table_name="items", ids=[{"x": 1}])
    assert_legacy_error(r, 400)
    assert r.json()["error"] == "key for 'id': expected an integer, got an object"

    typed = ok(call("table-records", table_name="typed"))["records"]
    assert [set(r) for r in typed] == [{"id", "amount", "at", "data"}] * 2
    assert isinstance(typed[0]["amount"], str) and float(typed[0]["amount"]) == 12.5
    assert typed[0]["at"].startswith("2024-01-02T03:04:05"), typed[0]
    assert typed[0]["data"] == {"__phoenix_kit_binary__":
                                base64.b64encode(b"\xff\x00\xfe").decode()}
    assert typed[1] == {"id": 2, "amount": None, "at": None, "data": "hi"}

    # pull-data: pages in key order, every row once
    def pull_all(table, key, limit=None):
        rows, after, pages = [], None, 0
        while True:
            q = {"table_name": table, **({"limit": limit} if limit else {}),
                 **({"after": after} if after is not None else {})}
            body = ok(call("pull-data", **q))
            assert set(body) == {"success", "table", "data", "count", "next_after"}
            assert body["table"] == table and body["count"] == len(body["data"])
            rows += body["data"]
            pages += 1
            after = body["next_after"]
            if after is None:
                return rows, pages
            assert after == (rows[-1][key] if key else {"offset": len(rows)})

    rows, pages = pull_all("items", "id")
    assert [r["id"] for r in rows] == list(range(1, N_ITEMS + 1)) and pages >= 5
    assert rows[41] == {"id": 42, "name": "item42", "qty": 0}
    rows, pages = pull_all("codes", "code", limit=2)
    assert ([r["code"] for r in rows], pages) == (["a", "b", "c", "d", "e"], 3)
    rows, pages = pull_all("nokey", None, limit=10)
    assert pages == 3 and sorted((r["a"], r["b"]) for r in rows) == sorted(
        (x % 5, f"r{x}") for x in range(1, 26))
    assert_legacy_error(call("pull-data", table_name="nokey", after=5), 400)
    assert_legacy_error(call("pull-data", table_name="items", limit=10001), 400)
    assert_legacy_error(call("pull-data", table_name="items", conflict_strategy="bogus"), 400)
    assert ok(call("pull-data", table_name="items", limit=1, conflict_strategy="merge"))[
        "count"] == 1
    r = admin(a, "PATCH", f"/{conn['id']}", json={"max_records_per_request": 100,
                                                    "allowed_tables": ["codes", "items"]})
    assert r.status_code == 200, r.text
    body = ok(call("pull-data", table_name="items"))
    assert (body["count"], body["next_after"]) == (100, 100)
    assert_legacy_error(call("pull-data", table_name="items", limit=101), 400)
    assert sorted(t["name"] for t in ok(call("list-tables"))["tables"]) == ["codes", "items"]
    for action in ("table-schema", "table-records", "pull-data"):
        assert call(action, table_name="typed").json() == TABLE_NOT_FOUND
    c = get_conn(a, conn["id"])
    assert c["records_sent"] >= N_ITEMS and c["requests"] > 20 and c["last_transfer_at"]


def test_table_names_are_matched_exactly(_servers, backend):
    """Excluded tables and ferry's own tables stay hidden whatever the case of the name
    (SQLite's table names are case-insensitive)."""
    a, b, conn = pair(_servers, backend, excluded_tables=["secret"], a_schema=[
        "CREATE TABLE secret (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO secret VALUES (1, 'hidden')"])
    h = receiver_hash(b)
    assert ok(a.post(f"{PK}/list-tables", json={"auth_token_hash": h}))["tables"] == []
    for table in ("SECRET", "Secret", "FERRY_SITES", "Ferry_Tokens"):
        for action in ("table-schema", "table-records", "pull-data"):
            r = a.post(f"{PK}/{action}", json={"auth_token_hash": h, "table_name": table})
            assert r.status_code == 404, (action, table, r.text[:300])
            assert r.json() == TABLE_NOT_FOUND


def test_connection_policies_and_failed_lookups(_servers, backend):
    a, b, conn = pair(_servers, backend, a_flags=("--auth-fail-limit", "5"),
                      a_schema=["CREATE TABLE t (id INTEGER PRIMARY KEY)"])
    h, path = receiver_hash(b), f"/{conn['id']}"

    def tables():
        return a.post(f"{PK}/list-tables", json={"auth_token_hash": h})

    def patch(**body):
        r = admin(a, "PATCH", path, json=body)
        assert r.status_code == 200, r.text

    assert ok(tables())["tables"][0]["name"] == "t"
    r = a.post(f"{PK}/list-tables", json={"auth_token_hash": ""})
    assert r.status_code == 400 and r.json()["fields"] == ["auth_token_hash"], r.text
    patch(ip_whitelist=["10.0.0.0/8"])
    assert_legacy_error(tables(), 403)
    patch(ip_whitelist=["127.0.0.1"])
    ok(tables())
    patch(ip_whitelist=["10.0.0.0/8", "127.0.0.0/24"])
    ok(tables())
    patch(ip_whitelist=[])

    patch(rate_limit_requests_per_minute=2)
    ok(tables())
    ok(tables())
    r = tables()
    assert r.status_code == 429, r.text
    assert r.json() == {"success": False, "error": "Rate limit exceeded"}
    assert int(r.headers["Retry-After"]) >= 1
    patch(rate_limit_requests_per_minute=1000)
    ok(tables())

    patch(expires_at="2000-01-01T00:00:00Z")
    r = tables()
    assert r.status_code == 403, r.text
    assert r.json() == {"success": False, "error": "Connection is not active"}
    assert get_conn(a, conn["id"])["status"] == "expired"

    # unknown hashes: 401 each, until the address is over --auth-fail-limit
    for i in range(5):
        r = a.post(f"{PK}/list-tables", json={"auth_token_hash": sha256_hex(f"bad{i}")})
        assert r.status_code == 401, (i, r.text)
        assert r.json() == {"success": False, "error": "Invalid connection"}
    r = a.post(f"{PK}/table-records", json={"auth_token_hash": h, "table_name": "t"})
    assert r.status_code == 429, r.text
    assert r.json() == {"success": False, "error": "Too many failed attempts"}
    assert int(r.headers["Retry-After"]) >= 1


def test_registrations_are_limited_per_address(_servers, backend):
    """Each registration counts against the caller's address (--auth-fail-limit a
    minute): one address can neither guess a password quickly nor flood the list of
    connections waiting for approval."""
    b = site(_servers, backend, "--auth-fail-limit", "3", "--sites-incoming-mode",
             "require_approval")
    for i in range(3):
        r = register(b, sender=f"http://127.0.0.1:{7100 + i}", token=f"tok-{i}")
        assert ok(r)["connection_status"] == "pending"
    r = register(b, sender="http://127.0.0.1:7200", token="tok-x")
    assert r.status_code == 429, r.text
    assert r.json() == {"success": False, "error": "Too many failed attempts"}
    assert r.headers["Retry-After"] == "60"
    assert len(b.db_query("SELECT id FROM ferry_sites")) == 3
