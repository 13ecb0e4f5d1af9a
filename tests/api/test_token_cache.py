"""The authentication cache (--token-cache-ttl): a token checked against the database is
trusted for a few seconds without asking it again, yet a revocation made through the
same server (admin API, device removal, a device's new token) and an expiry take effect
at once; a revocation made by another process (the CLI, another node) within the TTL."""

import time

from conftest import assert_v1_error, run_ferry

TOKENS = "/api/v1/admin/tokens"
DEVICES = "/api/v1/sync/devices"
LONG = ("--token-cache-ttl", "3600")  # so that every token used below is cached


def store_args(srv):
    args = ["--data-dir", str(srv.data_dir)]
    if srv.db_url:
        args += ["--db", srv.db_url]
    return args


def refused(r, why):
    body = assert_v1_error(r, 401, "UNAUTHORIZED")
    assert why in body["details"]


def use(srv, token, times=3):
    for _ in range(times):
        assert srv.get("/api/v1/metrics", token=token).status_code == 200


def test_revoked_token_is_refused_at_once_though_cached(make_server):
    srv = make_server(*LONG)
    user = srv.create_token(role="user", user_id="bob")
    use(srv, user["token"])
    assert srv.delete(f"{TOKENS}/{user['id']}", token=srv.admin_token).status_code == 204
    refused(srv.get("/api/v1/metrics", token=user["token"]), "revoked")


def test_expired_token_is_refused_though_cached(make_server):
    srv = make_server(*LONG)
    user = srv.create_token(role="user", user_id="bob", expires_in=1)
    use(srv, user["token"])
    time.sleep(1.2)
    refused(srv.get("/api/v1/metrics", token=user["token"]), "expired")


def register(srv, user_token, device_id):
    r = srv.post(DEVICES, token=user_token, json={"id": device_id, "name": device_id})
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


def test_removed_device_token_is_refused_at_once(make_server):
    srv = make_server(*LONG)
    user = srv.create_token(role="user", user_id="bob")["token"]
    device = register(srv, user, "till-1")
    assert srv.get(f"{DEVICES}/till-1", token=device).status_code == 200
    assert srv.get(f"{DEVICES}/till-1", token=device).status_code == 200
    assert srv.delete(f"{DEVICES}/till-1", token=user).status_code in (200, 204)
    refused(srv.get(f"{DEVICES}/till-1", token=device), "revoked")


def test_new_device_token_retires_the_cached_old_one_at_once(make_server):
    srv = make_server(*LONG)
    user = srv.create_token(role="user", user_id="bob")["token"]
    old = register(srv, user, "till-2")
    assert srv.get(f"{DEVICES}/till-2", token=old).status_code == 200
    r = srv.post(f"{DEVICES}/till-2/token", token=user)
    assert r.status_code in (200, 201), r.text
    new = r.json()["token"]
    refused(srv.get(f"{DEVICES}/till-2", token=old), "revoked")
    assert srv.get(f"{DEVICES}/till-2", token=new).status_code == 200


def test_cli_revocation_reaches_a_running_server_within_the_ttl(make_server):
    srv = make_server("--token-cache-ttl", "1")
    user = srv.create_token(role="user", user_id="bob")
    use(srv, user["token"])
    p = run_ferry("token", "revoke", user["id"], *store_args(srv))
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 3  # the TTL, with room for a loaded machine
    while srv.get("/api/v1/metrics", token=user["token"]).status_code == 200:
        assert time.monotonic() < deadline, "revoked token still accepted after the TTL"
        time.sleep(0.1)
    refused(srv.get("/api/v1/metrics", token=user["token"]), "revoked")


def test_without_the_cache_a_cli_revocation_is_at_once(make_server):
    srv = make_server("--token-cache-ttl", "0")
    user = srv.create_token(role="user", user_id="bob")
    use(srv, user["token"])
    p = run_ferry("token", "revoke", user["id"], *store_args(srv))
    assert p.returncode == 0, p.stderr
    refused(srv.get("/api/v1/metrics", token=user["token"]), "revoked")


def test_token_cache_ttl_is_checked(make_server):
    p = run_ferry("serve", "--token-cache-ttl", "-1", "--listen", "127.0.0.1:0")
    assert p.returncode != 0
    assert "token-cache-ttl" in p.stderr
