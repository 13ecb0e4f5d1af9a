"""Limits: requests per credential, failed authentications per address, body size
(declared and chunked), header size. Exceeding one is a clear 4xx, never a crash, and
the server keeps serving."""

import socket

import pytest

from conftest import assert_v1_error

TOKENS = "/api/v1/admin/tokens"


def assert_healthy(srv):
    assert srv.get("/health").status_code == 200
    assert srv.get("/api/v1/health").status_code == 200


# --- rate limits ------------------------------------------------------------------------


def test_rate_limit_per_credential(make_server):
    srv = make_server("--rate-limit", "5")
    admin = srv.admin_token
    for remaining in (4, 3, 2, 1, 0):
        r = srv.get("/api/v1/metrics", token=admin)
        assert r.status_code == 200, r.text
        assert r.headers["X-RateLimit-Limit"] == "5"
        assert r.headers["X-RateLimit-Remaining"] == str(remaining)
        assert "Retry-After" not in r.headers

    r = srv.get("/api/v1/metrics", token=admin)
    assert_v1_error(r, 429, "RATE_LIMITED")
    assert r.headers["X-RateLimit-Limit"] == "5"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["Retry-After"]) >= 1

    # The budget is the credential's, whatever the endpoint; public ones are not limited.
    assert_v1_error(srv.get(TOKENS, token=admin), 429, "RATE_LIMITED")
    assert srv.get("/health").status_code == 200


def test_rate_limit_is_per_credential_not_global(make_server):
    srv = make_server("--rate-limit", "3")
    # The admin spends its 3 requests (the first one creates a user token)...
    created = srv.post(TOKENS, token=srv.admin_token,
                       json={"name": "u", "role": "user", "userId": "bob"}).json()
    for _ in range(2):
        assert srv.get(TOKENS, token=srv.admin_token).status_code == 200
    assert srv.get(TOKENS, token=srv.admin_token).status_code == 429
    # ...and the user still has a full budget of its own.
    r = srv.get("/api/v1/metrics", token=created["token"])
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Remaining"] == "2"


def test_rate_limit_zero_means_no_limit(make_server):
    srv = make_server("--rate-limit", "0")
    for _ in range(8):
        r = srv.get("/api/v1/metrics", token=srv.admin_token)
        assert r.status_code == 200
        assert "X-RateLimit-Limit" not in r.headers


def test_failed_auth_limit_per_address(make_server):
    srv = make_server("--auth-fail-limit", "3")
    for _ in range(3):
        r = srv.get(TOKENS, token="fy_" + "Z" * 43)
        assert_v1_error(r, 401, "UNAUTHORIZED")
    # The address is now blocked, even with a valid token.
    r = srv.get(TOKENS, token=srv.admin_token)
    assert_v1_error(r, 429, "RATE_LIMITED")
    assert int(r.headers["Retry-After"]) >= 1
    # Public endpoints still answer.
    assert srv.get("/health").status_code == 200


def test_successful_auth_does_not_count_as_failure(make_server):
    srv = make_server("--auth-fail-limit", "2")
    for _ in range(5):
        assert srv.get(TOKENS, token=srv.admin_token).status_code == 200
    assert srv.get(TOKENS, token="fy_" + "Z" * 43).status_code == 401
    assert srv.get(TOKENS, token=srv.admin_token).status_code == 200


# --- body size --------------------------------------------------------------------------


def padded_body(size):
    """A valid token request of exactly size bytes."""
    head = '{"name":"big","role":"admin","pad":"'
    tail = '"}'
    return (head + "x" * (size - len(head) - len(tail)) + tail).encode()


def test_declared_body_over_limit_is_413(make_server):
    srv = make_server("--max-body", "1K")
    body = padded_body(2000)
    r = srv.post(TOKENS, token=srv.admin_token, data=body,
                 headers={"Content-Type": "application/json"})
    assert_v1_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert_healthy(srv)
    # Exactly at the limit is accepted.
    r = srv.post(TOKENS, token=srv.admin_token, data=padded_body(1024),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text


def test_chunked_body_over_limit_is_413(make_server):
    srv = make_server("--max-body", "1K")
    body = padded_body(3000)

    def chunks():
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    r = srv.post(TOKENS, token=srv.admin_token, data=chunks(),
                 headers={"Content-Type": "application/json"})
    assert_v1_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert_healthy(srv)

    def small():
        yield b'{"name":"chunked",'
        yield b'"role":"admin"}'

    r = srv.post(TOKENS, token=srv.admin_token, data=small(),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text


def test_declared_body_over_limit_is_refused_before_it_arrives(make_server):
    """The refusal comes from the headers alone; ferry does not wait for the body."""
    srv = make_server("--max-body", "1K")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(f"POST {TOKENS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  f"{srv.admin_token}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 1000000\r\n\r\n".encode())
        head = s.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert_healthy(srv)


# --- header size ------------------------------------------------------------------------


@pytest.mark.sqlite_only  # libmicrohttpd refuses it before ferry's code sees it
def test_huge_header_is_refused(server):
    r = server.get("/health", headers={"X-Big": "a" * 65536})
    assert 400 <= r.status_code < 500, r.status_code
    assert r.status_code in (413, 431), r.status_code
    assert_healthy(server)
    # And a second huge request on a new connection is refused the same way.
    server.session.close()
    r = server.get("/api/v1/health", headers={"X-Big": "b" * 65536})
    assert r.status_code in (413, 431)
    assert_healthy(server)


@pytest.mark.sqlite_only
def test_max_header_setting_is_enforced(make_server):
    """--max-header caps the request line plus headers at what it says."""
    srv = make_server("--max-header", "4K")
    assert srv.get("/health", headers={"X-Small": "a" * 2000}).status_code == 200
    srv.session.close()
    r = srv.get("/health", headers={"X-Big": "a" * 8192})
    assert r.status_code in (413, 431), r.status_code
    assert_healthy(srv)


# --- malformed requests -----------------------------------------------------------------


def raw_request(srv, data):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(data)
        return s.recv(65536).decode(errors="replace")


def test_nul_in_a_header_value_is_refused(server):
    token = server.admin_token.encode()
    head = raw_request(server, b"GET " + TOKENS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: Bearer " + token + b"\x00junk\r\nConnection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 400"), head
    assert "NUL" in head
    head = raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n"
                       b"Connection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 400"), head
    # the same request without the NUL is served, also with bare LF line ends
    head = raw_request(server, b"GET " + TOKENS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    head = raw_request(server, b"GET /health HTTP/1.1\nHost: x\nX-Empty:\nConnection: close\n\n")
    assert head.startswith("HTTP/1.1 200"), head


@pytest.mark.parametrize("tail", [b"\x00 junk", b"\x00\tjunk", b"\x00\x00junk", b"\x00\r\njunk"])
def test_nul_followed_by_whitespace_or_nul_is_refused(server, tail):
    """A NUL then whitespace or another NUL looks like a line end at first glance; the
    whole gap up to the next header (or the end of the block) is checked."""
    token = server.admin_token.encode()
    auth = b"Authorization: Bearer " + token + tail + b"\r\n"
    for head in (b"Host: x\r\n" + auth + b"Connection: close\r\n",  # a middle header
                 b"Host: x\r\nConnection: close\r\n" + auth):  # the last header
        answer = raw_request(server, b"GET " + TOKENS.encode() + b" HTTP/1.1\r\n" + head + b"\r\n")
        assert answer.startswith("HTTP/1.1 400"), (head, answer)
        if b"\n" not in tail:  # otherwise "junk" is a line without a colon: MHD's own 400
            assert "NUL" in answer
    answer = raw_request(server, b"GET /health HTTP/1.1\r\nConnection: close\r\nHost: x" + tail
                         + b"\r\n\r\n")
    assert answer.startswith("HTTP/1.1 400"), answer


def test_folded_header_is_refused(server):
    answer = raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n"
                         b"Connection: close\r\n\r\n")
    assert answer.startswith("HTTP/1.1 400"), answer
    assert "folded" in answer


def test_headers_without_nul_are_served_with_a_body_and_keep_alive(server):
    """No false alarm: trailing whitespace, a body right after the block, and a second
    request on the same connection."""
    token = server.admin_token.encode()
    body = b'{"name":"x"}'
    first = (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: a  \r\n\r\n")
    second = (b"POST /api/v1/merge/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token
              + b"\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(first + second)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    text = data.decode(errors="replace")
    assert text.startswith("HTTP/1.1 200"), text
    assert "NUL" not in text
    assert text.count("HTTP/1.1 ") == 2, text
    assert "HTTP/1.1 400" in text.split("HTTP/1.1 200", 1)[1]  # the merge body is incomplete


def test_http11_without_host_is_refused(server):
    head = raw_request(server, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 400"), head
    assert "Host" in head
    # HTTP/1.0 has no Host requirement
    head = raw_request(server, b"GET /health HTTP/1.0\r\n\r\n")
    assert " 200 " in head.split("\r\n")[0], head


@pytest.mark.parametrize("expires_in", [-1, 0, -86400, -9223372036854775808])
def test_token_expiry_must_be_positive(server, expires_in):
    r = server.post(TOKENS, token=server.admin_token,
                    json={"name": "t", "role": "admin", "expiresIn": expires_in})
    assert_v1_error(r, 400, "INVALID_REQUEST")
    assert "expiresIn" in r.json()["details"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "ftp://a.example",
                                 "http://", "not a url", "//a.example/x", "http:///x",
                                 "https://u:p@a.example", "http://a.example\\@evil.example"])
def test_register_connection_needs_an_http_url(server, url):
    r = server.post("/phoenix_kit/sync/api/register-connection",
                    json={"sender_url": url, "connection_name": "n", "auth_token": "t"})
    assert r.status_code == 400, r.text
    assert r.json() == {"success": False, "error": "sender_url must be an http or https URL"}
