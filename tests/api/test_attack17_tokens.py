"""Attacks on the token lookup cache: a revocation on one node while another has the token
cached (trusted for at most --token-cache-ttl seconds, as documented, then refused), and a
flood of random well-formed tokens from one address (the failed-authentication limit stops
it; other clients, and the cached valid tokens, keep being served)."""

import secrets
import time

import pytest
import requests

pytestmark = pytest.mark.postgres_only


def status(node, tok, path="/api/v1/sync/devices"):
    return requests.get(f"http://127.0.0.1:{node.port}{path}",
                        headers={"Authorization": f"Bearer {tok}"}, timeout=10).status_code


def test_revocation_on_one_node_reaches_the_other_within_the_ttl(_servers, pg_cluster):
    a = _servers("postgres", "--token-cache-ttl", "2", pg=pg_cluster)
    b = _servers("postgres", "--token-cache-ttl", "2", pg=pg_cluster, db_url=a.db_url)
    made = a.create_token(user_id="bob")
    tok = made["token"]
    assert status(b, tok) == 200  # cached on b from here
    r = a.delete(f"/api/v1/admin/tokens/{made['id']}", token=a.admin_token)
    assert r.status_code in (200, 204), r.text
    revoked_at = time.monotonic()
    assert status(a, tok) == 401
    while status(b, tok) == 200:
        assert time.monotonic() - revoked_at < 2.5, "b trusted a revoked token past its ttl"
        time.sleep(0.05)
    assert status(b, tok) == 401


def test_a_flood_of_random_tokens_is_stopped_per_address(_servers, pg_cluster):
    a = _servers("postgres", "--auth-fail-limit", "20", pg=pg_cluster)
    good = a.create_token(user_id="bob")["token"]
    assert status(a, good) == 200
    codes = [status(a, "fy_" + secrets.token_urlsafe(40)) for _ in range(60)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
    # the flooding address is refused even with a good token; everyone else is served
    assert status(a, good) == 429
    import socket
    s = socket.create_connection(("127.0.0.1", a.port), source_address=("127.0.0.9", 0))
    s.sendall(f"GET /api/v1/sync/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {good}\r\n"
              f"Connection: close\r\n\r\n".encode())
    assert s.recv(64).startswith(b"HTTP/1.1 200")
    s.close()
