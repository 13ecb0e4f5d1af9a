"""Identity: JWTs signed by an identity provider (RS256, ES256, EdDSA) and verified with
its JWK Set (served here by a small HTTP server the test starts, so keys can rotate and
the provider can go down) or with PEM public keys; and --trusted-proxies, which decides
the client address the failed-auth limiter and the log see. Keys are made in the test
with python3-cryptography."""

import concurrent.futures
import http.server
import json
import threading
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import assert_v1_error, b64url, make_jwt, wait_until

PROTECTED = "/api/v1/metrics"  # any route a user credential may read


# --- keys and tokens ----------------------------------------------------------------------


class Key:
    """A private key of one JWS algorithm, its JWK and its PEM public key."""

    def __init__(self, alg, kid):
        self.alg, self.kid = alg, kid
        if alg == "RS256":
            self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.priv = ec.generate_private_key(ec.SECP256R1())
        else:
            self.priv = ed25519.Ed25519PrivateKey.generate()

    def jwk(self):
        pub = self.priv.public_key()
        if self.alg == "RS256":
            n = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": b64url(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(n.e.to_bytes(3, "big"))}
        if self.alg == "ES256":
            n = pub.public_numbers()
            return {"kty": "EC", "crv": "P-256", "kid": self.kid,
                    "x": b64url(n.x.to_bytes(32, "big")), "y": b64url(n.y.to_bytes(32, "big"))}
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64url(raw)}

    def pem(self):
        return self.priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims, kid=True, alg=None):
        head = {"alg": alg or self.alg, "typ": "JWT"}
        if kid:
            head["kid"] = self.kid if kid is True else kid
        data = (b64url(json.dumps(head).encode()) + "." +
                b64url(json.dumps(claims).encode())).encode()
        if self.alg == "RS256":
            sig = self.priv.sign(data, padding.PKCS1v15(), hashes.SHA256())
        elif self.alg == "ES256":
            r, s = decode_dss_signature(self.priv.sign(data, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = self.priv.sign(data)
        return data.decode() + "." + b64url(sig)


def claims(sub="alice", **over):
    now = int(time.time())
    c = {"sub": sub, "iat": now, "exp": now + 600}
    c.update(over)
    return c


class IdP:
    """A JWK Set on http://127.0.0.1:PORT/jwks.json whose keys the test changes; counts
    the fetches."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.fetches = 0
        self.delay = 0.0  # seconds each answer waits: a slow provider
        self.body = None  # bytes answered instead of the key set
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                idp.fetches += 1
                time.sleep(idp.delay)
                body = idp.body or json.dumps({"keys": [k.jwk() for k in idp.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def idp_factory():
    started = []

    def make(keys):
        started.append(IdP(keys))
        return started[-1]

    yield make
    for idp in started:
        if idp.thread.is_alive():
            idp.down()


def accepted(srv, token, user="alice"):
    r = srv.get(PROTECTED, token=token)
    assert r.status_code == 200, r.text
    return r


def refused(srv, token, detail=None):
    body = assert_v1_error(srv.get(PROTECTED, token=token), 401, "UNAUTHORIZED")
    if detail:
        assert detail in body["details"], body
    return body


# --- JWK Set --------------------------------------------------------------------------


@pytest.mark.sqlite_only  # JWTs never reach the store
def test_each_algorithm_verifies_against_the_jwks(make_server, idp_factory):
    keys = [Key("RS256", "r1"), Key("ES256", "e1"), Key("EdDSA", "d1")]
    idp = idp_factory(keys)
    srv = make_server("--jwt-jwks-url", idp.url)
    for k in keys:
        r = srv.get(PROTECTED, token=k.sign(claims()), headers={"X-Request-Id": "idp-" + k.kid})
        assert r.status_code == 200, (k.alg, r.text)
        (line,) = srv.wait_log("idp-" + k.kid)
        assert line["credential"] == "jwt:alice"
    assert idp.fetches == 1
    # a token naming one key but signed by another; a key of another type; expired
    refused(srv, keys[0].sign(claims(), kid="e1"), "not a key for its algorithm")
    forged = Key("RS256", "r1").sign(claims())
    refused(srv, forged, "signature or format is invalid")
    refused(srv, keys[2].sign(claims(exp=int(time.time()) - 5)), "expired")
    # HS256 is not accepted without --jwt-secret, whatever key it names
    refused(srv, make_jwt(claims(), keys[0].pem(), header={"kid": "r1"}), "HS256")
    refused(srv, make_jwt(claims(), "x", alg="none"), "algorithm must be")


@pytest.mark.sqlite_only
def test_key_rotation(make_server, idp_factory):
    old, new = Key("RS256", "2024"), Key("ES256", "2025")
    idp = idp_factory([old])
    srv = make_server("--jwt-jwks-url", idp.url, "--jwt-jwks-min-interval", "1",
                      "--jwt-jwks-refresh", "2", "--auth-fail-limit", "1000")
    accepted(srv, old.sign(claims()))
    time.sleep(1.1)  # past the minimum interval after the start-up fetch
    idp.keys.append(new)
    # the new kid is unknown to the cache: one fetch, and the token is accepted
    accepted(srv, new.sign(claims(sub="bob")))
    fetched = idp.fetches
    assert fetched == 2
    # unknown kids now cannot make ferry fetch again within the minimum interval
    for i in range(20):
        refused(srv, new.sign(claims(), kid=f"nope-{i}"), "unknown")
    assert idp.fetches == fetched
    # the old key is withdrawn: refused once the scheduled refresh has seen it go
    idp.keys.remove(old)
    assert wait_until(lambda: srv.get(PROTECTED, token=old.sign(claims())).status_code == 401,
                      timeout=8)
    accepted(srv, new.sign(claims()))


@pytest.mark.sqlite_only
def test_idp_down(make_server, idp_factory):
    known = Key("EdDSA", "k1")
    idp = idp_factory([known])
    srv = make_server("--jwt-jwks-url", idp.url, "--jwt-jwks-min-interval", "1",
                      "--jwt-jwks-timeout", "2")
    accepted(srv, known.sign(claims()))
    idp.down()
    time.sleep(1.1)
    # the cached key still works; an unknown kid gets a clear 401, quickly
    accepted(srv, known.sign(claims()))
    t0 = time.monotonic()
    refused(srv, Key("EdDSA", "k2").sign(claims()), "could not be fetched")
    assert time.monotonic() - t0 < 3
    accepted(srv, known.sign(claims()))


@pytest.mark.sqlite_only
def test_slow_idp_does_not_hold_the_server(make_server, idp_factory):
    """A burst of unknown kids while the provider is slow: one fetch; the request that
    asked for it waits at most a second, the others are answered at once; valid tokens
    are served."""
    known = Key("EdDSA", "k1")
    idp = idp_factory([known])
    srv = make_server("--jwt-jwks-url", idp.url, "--jwt-jwks-min-interval", "1",
                      "--jwt-jwks-timeout", "5", "--auth-fail-limit", "1000", "--threads", "16")
    time.sleep(1.1)
    idp.delay = 4.0
    rotated = Key("RS256", "k2")
    idp.keys.append(rotated)

    def call(token):
        t0 = time.monotonic()
        r = srv.request("GET", PROTECTED, token=token, timeout=20)
        return r.status_code, r.json().get("details", ""), time.monotonic() - t0

    with concurrent.futures.ThreadPoolExecutor(15) as pool:
        unknown = [pool.submit(call, known.sign(claims(), kid=f"u{i}")) for i in range(10)]
        time.sleep(0.2)
        good = [pool.submit(call, known.sign(claims())) for _ in range(5)]
        good = [f.result() for f in good]
        unknown = [f.result() for f in unknown]
    # Nothing waits for the 4 s fetch. The one request that asked for it waits a second;
    # a libmicrohttpd thread serves several connections, so another may queue behind it.
    assert all(code == 200 and took < 3 for code, _, took in good), good
    assert all(code == 401 and took < 3 for code, _, took in unknown), unknown
    assert sum(took >= 0.95 for _, _, took in unknown) >= 1, unknown
    assert sum(took < 0.95 for _, _, took in unknown) >= 5, unknown
    assert all("being fetched" in details for _, details, _ in unknown), unknown
    # the slow fetch ends in the background: the key it brought then works, unfetched
    assert wait_until(lambda: srv.get(PROTECTED, token=rotated.sign(claims())).status_code
                      == 200, timeout=8)
    assert idp.fetches == 2


@pytest.mark.sqlite_only
def test_oversized_or_malformed_key_set_keeps_the_cached_one(make_server, idp_factory):
    known = Key("ES256", "k1")
    idp = idp_factory([known])
    srv = make_server("--jwt-jwks-url", idp.url, "--jwt-jwks-min-interval", "1")
    accepted(srv, known.sign(claims()))
    idp.keys.append(Key("ES256", "k2"))
    idp.body = b'{"keys": [' + b'{"kty":"oct","k":"AAAA"},' * 60000 + b'{}]}'  # 1.5 MB
    time.sleep(1.1)
    refused(srv, idp.keys[1].sign(claims()), "could not be fetched")
    idp.body = json.dumps({"keys": [{"kty": "RSA", "kid": "bad", "n": "!", "e": "AQAB"}]}).encode()
    # a failed fetch is retried by the thread after the minimum interval
    assert wait_until(lambda: idp.fetches >= 3, timeout=3)
    refused(srv, idp.keys[1].sign(claims()), "malformed")
    accepted(srv, known.sign(claims()))
    fetches = idp.fetches
    time.sleep(1.5)
    assert idp.fetches <= fetches + 2  # retries keep to the interval
    assert sum('"jwks_fetch_failed"' in line for line in srv.stderr().splitlines()) >= 2


@pytest.mark.sqlite_only
def test_start_with_idp_unreachable(make_server, idp_factory):
    idp = idp_factory([Key("RS256", "a")])
    url = idp.url
    idp.down()
    srv = make_server("--jwt-jwks-url", url, "--jwt-jwks-timeout", "1")
    body = refused(srv, Key("RS256", "a").sign(claims()))
    assert "unknown" in body["details"], body


# --- PEM keys, claims -----------------------------------------------------------------


@pytest.mark.sqlite_only
def test_pem_keys(make_server, tmp_path):
    rsa_key, ed_key, other = Key("RS256", "x"), Key("EdDSA", "y"), Key("RS256", "z")
    (tmp_path / "rsa.pem").write_bytes(rsa_key.pem())
    (tmp_path / "ed.pem").write_bytes(ed_key.pem())
    srv = make_server("--jwt-public-key", str(tmp_path / "rsa.pem"),
                      "--jwt-public-key", str(tmp_path / "ed.pem"),
                      "--jwt-secret", "an-hs256-secret-for-other-tokens")
    accepted(srv, rsa_key.sign(claims(), kid=False))
    accepted(srv, ed_key.sign(claims()))
    accepted(srv, make_jwt(claims(), "an-hs256-secret-for-other-tokens"))
    refused(srv, other.sign(claims(), kid=False), "signature or format is invalid")
    # algorithm confusion: the public key's PEM text used as an HMAC secret
    refused(srv, make_jwt(claims(), rsa_key.pem()), "signature or format is invalid")
    # a key of one type used for another algorithm's token
    refused(srv, rsa_key.sign(claims(), kid=False, alg="ES256"))


@pytest.mark.sqlite_only
def test_issuer_audience_and_user_claim(make_server, idp_factory):
    key = Key("ES256", "k")
    idp = idp_factory([key])
    srv = make_server("--jwt-jwks-url", idp.url, "--jwt-issuer", "https://idp.example",
                      "--jwt-audience", "ferry", "--jwt-user-claim", "email")
    good = claims(iss="https://idp.example", aud=["other", "ferry"], email="a@example.com")
    r = srv.get(PROTECTED, token=key.sign(good), headers={"X-Request-Id": "email-claim"})
    assert r.status_code == 200, r.text
    (line,) = srv.wait_log("email-claim")
    assert line["credential"] == "jwt:a@example.com"
    refused(srv, key.sign({**good, "iss": "https://evil.example"}), "issuer")
    refused(srv, key.sign({**good, "aud": "other"}), "audience")
    refused(srv, key.sign({k: v for k, v in good.items() if k != "email"}), "email")


# --- trusted proxies -------------------------------------------------------------------


def bad_login(srv, headers):
    return srv.get(PROTECTED, token="fy_" + "x" * 43, headers=headers).status_code


def logged_remote(srv, headers, request_id):
    """The log's remote for a request with a bad token (401, or 429 once limited)."""
    r = srv.get(PROTECTED, token="bad", headers={**headers, "X-Request-Id": request_id})
    assert r.status_code in (401, 429), r.text
    (line,) = srv.wait_log(request_id)
    return line["remote"]


@pytest.mark.sqlite_only
def test_forwarded_for_is_ignored_without_trusted_proxies(make_server):
    srv = make_server("--auth-fail-limit", "3")
    codes = [bad_login(srv, {"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert logged_remote(srv, {"X-Forwarded-For": "10.9.9.9"}, "spoof-1") == "127.0.0.1"


@pytest.mark.sqlite_only
def test_limiter_keyed_by_forwarded_for_behind_trusted_proxy(make_server):
    srv = make_server("--auth-fail-limit", "2", "--trusted-proxies", "10.0.0.0/8, 127.0.0.1")
    a = {"X-Forwarded-For": "203.0.113.7"}
    assert [bad_login(srv, a) for _ in range(3)] == [401, 401, 429]
    # another client behind the same proxy is not limited by a's failures
    assert bad_login(srv, {"X-Forwarded-For": "203.0.113.8"}) == 401
    # a client cannot escape by prepending an address: the right-most untrusted one counts
    assert bad_login(srv, {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) == 429
    # a chain through another trusted proxy: 10.1.2.3 is skipped
    assert bad_login(srv, {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}) == 429
    # the proxy writes X-Forwarded-For: a Forwarded header came from the client itself
    assert bad_login(srv, {"Forwarded": "for=198.51.100.99", **a}) == 429
    # garbage in the chain: the proxy that reported it is the client
    assert logged_remote(srv, {"X-Forwarded-For": "<script>, 10.1.2.3"}, "fwd-2") == "10.1.2.3"


@pytest.mark.sqlite_only
def test_rfc7239_forwarded_behind_trusted_proxy(make_server):
    srv = make_server("--auth-fail-limit", "2", "--trusted-proxies", "127.0.0.1,10.0.0.0/8",
                      "--forwarded-header", "forwarded")
    fwd = {"Forwarded": 'for="[2001:db8::1]:4711";proto=https, for=10.1.2.3'}
    assert logged_remote(srv, fwd, "fwd-1") == "2001:db8::1"
    assert [bad_login(srv, fwd) for _ in range(2)] == [401, 429]
    assert bad_login(srv, {"Forwarded": "for=192.0.2.1"}) == 401
    # X-Forwarded-For is now the client's own header: ignored
    assert logged_remote(srv, {"X-Forwarded-For": "192.0.2.99"}, "fwd-2") == "127.0.0.1"


@pytest.mark.sqlite_only
def test_untrusted_peer_cannot_spoof(make_server):
    # 127.0.0.1 (the test's own address) is not in the trusted range
    srv = make_server("--auth-fail-limit", "2", "--trusted-proxies", "10.0.0.0/8,::1")
    codes = [bad_login(srv, {"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(4)]
    assert codes == [401, 401, 429, 429]


@pytest.mark.sqlite_only
def test_ip_allowlist_sees_the_forwarded_address(_servers, backend):
    """A PhoenixKit connection's ip_allowlist checks the client behind the trusted proxy."""
    from test_sites import PK, admin, ok, pair, receiver_hash
    a, b, conn = pair(_servers, backend, a_flags=("--trusted-proxies", "127.0.0.1"),
                      a_schema=["CREATE TABLE t (id INTEGER PRIMARY KEY)"])
    h = receiver_hash(b)
    r = admin(a, "PATCH", f"/{conn['id']}", json={"ip_whitelist": ["203.0.113.0/24"]})
    assert r.status_code == 200, r.text

    def tables(headers):
        return a.post(f"{PK}/list-tables", json={"auth_token_hash": h}, headers=headers)

    ok(tables({"X-Forwarded-For": "203.0.113.9"}))
    ok(tables({"X-Forwarded-For": "198.51.100.1, 203.0.113.10"}))
    assert tables({"X-Forwarded-For": "198.51.100.1"}).status_code == 403
    assert tables({}).status_code == 403  # the proxy itself is not allowed


@pytest.mark.sqlite_only
@pytest.mark.parametrize("flags,message", [
    (("--trusted-proxies", "10.0.0.0/33"), "trusted-proxies: '10.0.0.0/33'"),
    (("--trusted-proxies", "10.0.0.1,proxy.example"), "trusted-proxies: 'proxy.example'"),
    (("--trusted-proxies", "10.0.0.1", "--forwarded-header", "x-real-ip"),
     "forwarded-header must be"),
    (("--jwt-public-key", "{dir}/missing.pem"), "cannot read JWT public key"),
    (("--jwt-public-key", "{dir}/k.pem"), "holds no PEM public key"),
    (("--jwt-jwks-url", "file:///etc/passwd"), "jwt-jwks-url must be an http"),
    (("--jwt-jwks-min-interval", "0"), "jwt-jwks-min-interval must be at least 1"),
], ids=["prefix", "name", "header", "missing-key", "not-a-key", "jwks-scheme", "interval"])
def test_bad_settings_stop_start(tmp_path, flags, message):
    from conftest import run_ferry
    (tmp_path / "k.pem").write_text("not a key")
    flags = [f.format(dir=tmp_path) for f in flags]
    r = run_ferry("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), *flags)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
