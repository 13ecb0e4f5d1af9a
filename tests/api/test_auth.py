"""Credentials and ferry's token administration: bearer tokens (unknown, revoked,
expired, wrong role), the /api/v1/admin/tokens endpoints and what they store, and
HS256 JWTs as user credentials."""

import json
import time

import pytest

from conftest import assert_v1_error, make_jwt, sha256_hex

TOKENS = "/api/v1/admin/tokens"


def assert_unauthorized(r):
    body = assert_v1_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    return body


# --- who may call the admin API ---------------------------------------------------------


def test_no_token_is_401_with_challenge(server):
    assert_unauthorized(server.get(TOKENS))


@pytest.mark.parametrize("header", [
    "Bearer xyz",
    "Bearer ",
    "Basic YWRtaW46YWRtaW4=",
    "fy_" + "A" * 43,
    "Bearer fy_short",
], ids=["bearer-xyz", "bearer-empty", "basic", "no-scheme", "token-too-short"])
def test_malformed_authorization_is_401(server, header):
    assert_unauthorized(server.get(TOKENS, headers={"Authorization": header}))


def test_unknown_well_formed_token_is_401(server):
    body = assert_unauthorized(server.get(TOKENS, token="fy_" + "A" * 43))
    assert "unknown" in body["details"]
    assert_unauthorized(server.get(TOKENS, token="fyd_" + "B" * 43))


def test_admin_token_is_accepted(server):
    r = server.get(TOKENS, token=server.admin_token)
    assert r.status_code == 200, r.text


def test_user_token_is_forbidden_on_admin_endpoints(server):
    user = server.create_token(role="user", user_id="bob")
    r = server.get(TOKENS, token=user["token"])
    body = assert_v1_error(r, 403, "FORBIDDEN")
    assert "WWW-Authenticate" not in r.headers
    assert body["details"]
    # The same token is fine where users are admitted.
    assert server.get("/api/v1/metrics", token=user["token"]).status_code == 200


def test_device_token_is_forbidden_on_admin_endpoints(server):
    dev = server.create_token(role="device", user_id="bob", device_id="till-1")
    assert_v1_error(server.get(TOKENS, token=dev["token"]), 403, "FORBIDDEN")


def test_revoked_token_stops_working_at_once(server):
    admin = server.admin_token
    user = server.create_token(role="user", user_id="bob")
    assert server.get("/api/v1/metrics", token=user["token"]).status_code == 200

    r = server.delete(f"{TOKENS}/{user['id']}", token=admin)
    assert r.status_code == 204
    assert r.content == b""
    body = assert_unauthorized(server.get("/api/v1/metrics", token=user["token"]))
    assert "revoked" in body["details"]

    listed = server.get(f"{TOKENS}/{user['id']}", token=admin).json()
    assert listed["revoked"] is True and listed["revoked_at"] is not None
    # Revoking again is allowed and changes nothing.
    assert server.delete(f"{TOKENS}/{user['id']}", token=admin).status_code == 204


def test_revoked_admin_token_loses_admin_rights(server):
    second = server.create_token(role="admin", user_id=None, name="second admin")
    assert server.get(TOKENS, token=second["token"]).status_code == 200
    assert server.delete(f"{TOKENS}/{second['id']}", token=server.admin_token).status_code == 204
    assert_unauthorized(server.get(TOKENS, token=second["token"]))


def test_expired_token_is_401(server):
    user = server.create_token(role="user", user_id="bob", expires_in=1)
    assert user["expires_at"] is not None
    assert server.get("/api/v1/metrics", token=user["token"]).status_code == 200
    time.sleep(1.2)
    body = assert_unauthorized(server.get("/api/v1/metrics", token=user["token"]))
    assert "expired" in body["details"]


# --- creating, listing, revoking tokens -------------------------------------------------


@pytest.mark.parametrize("role,prefix,extra", [
    ("user", "fy_", {"user_id": "bob"}),
    ("admin", "fy_", {}),
    ("device", "fyd_", {"user_id": "bob", "device_id": "till-1"}),
])
def test_create_token(server, role, prefix, extra):
    r = server.post(TOKENS, token=server.admin_token,
                    json={"name": f"{role} one", "role": role, **extra})
    assert r.status_code == 201, r.text
    body = r.json()
    secret = body["token"]
    assert secret.startswith(prefix)
    assert len(secret) >= len(prefix) + 43  # 32 random bytes, base64url
    assert body["id"].startswith("tok_")
    assert body["role"] == role
    assert body["name"] == f"{role} one"
    assert secret.startswith(body["prefix"]) and len(body["prefix"]) > len(prefix)
    assert body["user_id"] == extra.get("user_id")
    assert body["device_id"] == extra.get("device_id")
    assert body["revoked"] is False
    # The new token works at once (within its role).
    want = 200 if role == "admin" else 403
    assert server.get(TOKENS, token=secret).status_code == want


def test_old_camel_case_spellings_are_accepted(server):
    """ferry 0.1.0's admin API used userId, deviceId, expiresIn and ?userId=; requests with
    them still work, and answers use the snake_case names."""
    r = server.post(TOKENS, token=server.admin_token,
                    json={"name": "old", "role": "device", "userId": "zoe", "deviceId": "z-1",
                          "expiresIn": 60})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["user_id"], body["device_id"]) == ("zoe", "z-1")
    assert body["expires_at"] is not None
    assert not {"userId", "deviceId", "expiresAt", "createdAt"} & set(body)
    listed = server.get(TOKENS + "?userId=zoe", token=server.admin_token).json()
    assert [t["id"] for t in listed["tokens"]] == [body["id"]]
    assert listed["total_count"] == 1


def test_secret_is_shown_only_at_creation(server):
    admin = server.admin_token
    created = server.create_token(role="user", user_id="bob", name="once")
    secret, token_id = created["token"], created["id"]
    hashed = sha256_hex(secret)

    r = server.get(TOKENS, token=admin)
    assert r.status_code == 200
    listing = r.json()
    assert listing["total_count"] == len(listing["tokens"]) == 2  # initial admin + ours
    assert [t["id"] for t in listing["tokens"]][1] == token_id
    for tok in listing["tokens"]:
        assert "token" not in tok
        assert not any("hash" in key.lower() for key in tok)
    assert secret not in r.text and hashed not in r.text
    assert sha256_hex(admin) not in r.text and admin not in r.text

    r = server.get(f"{TOKENS}/{token_id}", token=admin)
    assert r.status_code == 200
    one = r.json()
    assert one["id"] == token_id and one["name"] == "once" and one["user_id"] == "bob"
    assert "token" not in one
    assert secret not in r.text and hashed not in r.text

    mine = server.get(TOKENS + "?user_id=bob", token=admin).json()
    assert [t["id"] for t in mine["tokens"]] == [token_id]


def test_database_stores_only_the_hash(server):
    created = server.create_token(role="user", user_id="bob", name="stored")
    secret = created["token"]
    rows = server.token_rows(created["id"])
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] == sha256_hex(secret)
    assert row["role"] == "user" and row["user_id"] == "bob"
    assert row["prefix"] == created["prefix"]
    for column, value in row.items():
        assert value is None or secret not in value, column
    # The random part of the secret appears nowhere either.
    random_part = secret[len("fy_"):]
    assert not any(value and random_part[8:] in value for value in row.values())


def test_unknown_token_id_is_404(server):
    admin = server.admin_token
    assert_v1_error(server.get(f"{TOKENS}/tok_000000000000000000000000", token=admin), 404,
                    "NOT_FOUND")
    assert_v1_error(server.delete(f"{TOKENS}/tok_000000000000000000000000", token=admin), 404,
                    "NOT_FOUND")
    # Ids are bound as parameters, never spliced into SQL.
    assert_v1_error(server.get(f"{TOKENS}/x'%20OR%20'1'='1", token=admin), 404, "NOT_FOUND")
    assert_v1_error(server.delete(f"{TOKENS}/x'%20OR%20'1'='1", token=admin), 404, "NOT_FOUND")
    assert server.get(TOKENS, token=admin).json()["tokens"][0]["revoked"] is False


def post_raw(server, data, content_type="application/json", **kw):
    return server.post(TOKENS, token=server.admin_token, data=data,
                       headers={"Content-Type": content_type}, **kw)


def test_malformed_json_is_400_with_position(server):
    body = assert_v1_error(post_raw(server, b'{"name": "x",\n "role": }'), 400,
                           "INVALID_REQUEST")
    assert "line 2" in body["details"] and "column" in body["details"]


def test_wrong_content_type_is_400(server):
    body = assert_v1_error(
        post_raw(server, b'{"name":"x","role":"admin"}', content_type="text/plain"), 400,
        "INVALID_REQUEST")
    assert "Content-Type" in body["details"]


@pytest.mark.parametrize("payload,mentions", [
    ({"role": "admin"}, "name"),
    ({"name": "", "role": "admin"}, "name"),
    ({"name": "x"}, "role"),
    ({"name": "x", "role": "root"}, "role"),
    ({"name": "x", "role": 123}, "'role'"),
    ({"name": 5, "role": "admin"}, "'name'"),
    ({"name": "x", "role": "admin", "expires_in": -5}, "expires_in"),
    ({"name": "x", "role": "admin", "expires_in": "soon"}, "expires_in"),
    ({"name": "x", "role": "user"}, "user"),
    ({"name": "x", "role": "device", "user_id": "bob"}, "device"),
    ({"name": "x" * 201, "role": "admin"}, "name"),
    ({"name": "x", "role": "admin", "expires_in": 10 ** 12}, "expires_in"),
    ({"name": "x", "role": "admin", "expires_in": 1.5}, "expires_in"),
    ({"name": "x", "role": "admin", "expiresIn": -5}, "expiresIn"),
], ids=["no-name", "empty-name", "no-role", "role-root", "role-number", "name-number",
        "expires-negative", "expires-string", "user-without-user_id", "device-without-device_id",
        "name-too-long", "expires-too-far", "expires-fraction", "old-spelling-named"])
def test_bad_token_body_is_400(server, payload, mentions):
    body = assert_v1_error(server.post(TOKENS, token=server.admin_token, json=payload), 400,
                           "INVALID_REQUEST")
    assert mentions in body["details"], body


@pytest.mark.parametrize("data", [
    b"[]", b'"token"', b"null", b"",
    b'{"name":"a","name":"b","role":"admin"}',
    b'{"name":"\xff\xfe","role":"admin"}',
    b'{"name":"a","role":"admin"} trailing',
], ids=["array", "string", "null", "empty", "duplicate-key", "invalid-utf8", "trailing-data"])
def test_non_object_or_invalid_body_is_400(server, data):
    assert_v1_error(post_raw(server, data), 400, "INVALID_REQUEST")


def test_json_content_type_with_parameters_is_accepted(server):
    r = post_raw(server, b'{"name":"charset","role":"admin"}',
                 content_type="application/json; charset=utf-8")
    assert r.status_code == 201, r.text


def test_missing_content_type_is_400(server):
    r = server.post(TOKENS, token=server.admin_token, data=b'{"name":"x","role":"admin"}')
    assert "Content-Type" not in r.request.headers
    assert_v1_error(r, 400, "INVALID_REQUEST")


def test_json_deeper_than_limit_is_400(make_server):
    srv = make_server("--max-json-depth", "4")
    nested = {"name": "deep", "role": "admin", "x": {}}
    inner = nested["x"]
    for _ in range(8):  # 10 levels in all
        inner["y"] = {}
        inner = inner["y"]
    body = assert_v1_error(
        srv.post(TOKENS, token=srv.admin_token, data=json.dumps(nested),
                 headers={"Content-Type": "application/json"}), 400, "INVALID_REQUEST")
    assert "nesting" in body["details"] and "4" in body["details"]
    # Within the limit is fine.
    r = srv.post(TOKENS, token=srv.admin_token,
                 json={"name": "flat", "role": "admin", "x": {"y": {"z": {}}}})
    assert r.status_code == 201, r.text


def test_rejected_create_stores_nothing(server):
    admin = server.admin_token
    server.post(TOKENS, token=admin, json={"name": "x", "role": "root"})
    server.post(TOKENS, token=admin, json={"name": "x", "role": "user"})
    listing = server.get(TOKENS, token=admin).json()
    assert listing["total_count"] == 1  # only the initial admin token


# --- JWTs -------------------------------------------------------------------------------

SECRET = "jwt-test-secret-0123456789"


@pytest.fixture
def jwt_server(make_server):
    return make_server("--jwt-secret", SECRET)


def claims(**over):
    now = int(time.time())
    c = {"sub": "alice", "iat": now, "exp": now + 600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def test_jwt_is_a_user_credential(jwt_server):
    jwt = make_jwt(claims(), SECRET)
    r = jwt_server.get("/api/v1/metrics", token=jwt)
    assert r.status_code == 200, r.text
    assert_v1_error(jwt_server.get(TOKENS, token=jwt), 403, "FORBIDDEN")


@pytest.mark.sqlite_only
def test_jwt_credential_is_logged_by_subject_not_secret(jwt_server):
    jwt = make_jwt(claims(), SECRET)
    r = jwt_server.get("/api/v1/metrics", token=jwt,
                       headers={"X-Request-Id": "jwt-log-1"})
    assert r.status_code == 200
    (line,) = jwt_server.wait_log("jwt-log-1")
    assert line["credential"] == "jwt:alice"
    assert jwt not in jwt_server.stderr()


def tampered_jwt():
    """A valid JWT for alice whose payload is swapped for one naming the admin."""
    head, _, sig = make_jwt(claims(), SECRET).split(".")
    _, payload, _ = make_jwt(claims(sub="admin", role="admin"), SECRET).split(".")
    return f"{head}.{payload}.{sig}"


BAD_JWTS = [
    ("expired", lambda: make_jwt(claims(exp=int(time.time()) - 10), SECRET)),
    ("not-yet-valid", lambda: make_jwt(claims(nbf=int(time.time()) + 600), SECRET)),
    ("alg-none", lambda: make_jwt(claims(), SECRET, alg="none")),
    ("hs512", lambda: make_jwt(claims(), SECRET, alg="HS512")),
    ("wrong-secret", lambda: make_jwt(claims(), "not-the-secret")),
    ("no-sub", lambda: make_jwt(claims(sub=None), SECRET)),
    ("empty-sub", lambda: make_jwt(claims(sub=""), SECRET)),
    ("tampered", lambda: tampered_jwt()),
    ("long-sub", lambda: make_jwt(claims(sub="a" * 300), SECRET)),
    ("sub-not-string", lambda: make_jwt(claims(sub=42), SECRET)),
    # NumericDate may have a fraction (RFC 7519 section 2); it is still a date.
    ("nbf-fractional-future", lambda: make_jwt(claims(nbf=time.time() + 600.5), SECRET)),
    ("exp-fractional-past", lambda: make_jwt(claims(exp=time.time() - 600.5), SECRET)),
    # A date that is not a number is not a date: refuse rather than ignore it.
    ("nbf-string", lambda: make_jwt(claims(nbf=str(int(time.time()) + 600)), SECRET)),
    ("exp-string", lambda: make_jwt(claims(exp=str(int(time.time()) + 600)), SECRET)),
]


@pytest.mark.parametrize("make", [make for _, make in BAD_JWTS],
                         ids=[name for name, _ in BAD_JWTS])
@pytest.mark.sqlite_only  # JWTs never reach the store
def test_bad_jwt_is_401(jwt_server, make):
    assert_unauthorized(jwt_server.get("/api/v1/metrics", token=make()))


@pytest.mark.sqlite_only
def test_jwt_with_fractional_exp_in_the_future_is_accepted(jwt_server):
    jwt = make_jwt(claims(exp=time.time() + 600.5), SECRET)
    assert jwt_server.get("/api/v1/metrics", token=jwt).status_code == 200


@pytest.mark.sqlite_only
def test_jwt_without_exp_is_accepted(jwt_server):
    jwt = make_jwt(claims(exp=None), SECRET)
    assert jwt_server.get("/api/v1/metrics", token=jwt).status_code == 200


@pytest.mark.sqlite_only
def test_jwt_without_configured_secret_is_401(server):
    jwt = make_jwt(claims(), SECRET)
    assert_unauthorized(server.get("/api/v1/metrics", token=jwt))
