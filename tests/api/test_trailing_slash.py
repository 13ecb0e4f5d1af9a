"""A trailing '/' on a path is answered as the path without it, on every surface (the
Express, ASP.NET Core and Phoenix servers behind the seed APIs accept both): the same
status and the same body, with or without the slash."""

from conftest import assert_v1_error


def same(srv, method, path, token=None, **kw):
    """The answers to path and path + '/' (and '//'), checked equal; returns the first."""
    answers = [srv.request(method, p, token=token, **kw) for p in (path, path + "/", path + "//")]
    plain = answers[0]
    for r in answers[1:]:
        assert r.status_code == plain.status_code, (path, r.status_code, plain.status_code, r.text)
        if plain.headers.get("Content-Type", "").startswith("application/json"):
            body, other = plain.json(), r.json()
            if isinstance(body, dict):  # the clock moves between the answers
                for key in ("timestamp", "serverTime", "uptime"):
                    body.pop(key, None), other.pop(key, None)
            assert body == other, (path, body, other)
    return plain


def test_every_surface_takes_a_trailing_slash(make_server, tmp_path):
    srv = make_server("--rate-limit", "0", "--file-root", str(tmp_path))
    admin = srv.admin_token
    bob = srv.create_token(role="user", user_id="bob")["token"]

    # cloud-sync-api (legacy)
    assert same(srv, "GET", "/health").status_code == 200
    assert same(srv, "GET", "/sync/status", token=admin).status_code == 200
    # EonaCat.Sync and ferry's own, under /api/v1
    assert same(srv, "GET", "/api/v1/health").status_code == 200
    assert same(srv, "GET", "/api/v1/metrics", token=admin).status_code == 200
    assert same(srv, "GET", "/api/v1/admin/tokens", token=admin).status_code == 200
    assert same(srv, "GET", "/api/v1/openapi.json").status_code == 200
    (tmp_path / "src").mkdir()
    r = srv.post("/api/v1/sync/session/start/", token=bob,
                 json={"sourceLocation": str(tmp_path / "src"),
                       "targetLocation": str(tmp_path / "dst")})
    assert r.status_code == 200, r.text
    sid = r.json()["sessionId"]
    st = srv.get(f"/api/v1/sync/session/{sid}/status/", token=bob)
    assert st.status_code == 200 and st.json()["sessionId"] == sid, st.text
    # Pinakes device sync, under both prefixes
    for prefix in ("/api/v1/sync", "/api/sync"):
        assert same(srv, "GET", f"{prefix}/devices", token=bob).status_code == 200
    # PhoenixKit
    assert same(srv, "GET", "/phoenix_kit/sync/api/status").status_code == 200
    # Prometheus
    assert same(srv, "GET", "/metrics").status_code == 200
    # tus: the creation URL takes both spellings, as before
    for path in ("/tus", "/tus/"):
        r = srv.options(path)
        assert r.status_code in (200, 204) and r.headers.get("Tus-Resumable") == "1.0.0", path

    # a wrong method is still a 405, and an unknown path still a 404, slash or not
    assert same(srv, "DELETE", "/api/v1/health").status_code == 405
    assert_v1_error(srv.get("/api/v1/nothing/", token=admin), 404, "NOT_FOUND")
    assert_v1_error(srv.get("/api/v1/sync/session/nope/status/", token=bob), 404, "NOT_FOUND")
