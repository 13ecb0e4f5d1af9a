"""Operations endpoints: GET /health (cloud-sync-api), GET /api/v1/health and /api/v1/metrics
(EonaCat.Sync), Prometheus /metrics, the OpenAPI document, and the router's 404/405
answers in each surface's error format."""

import re

import pytest

from conftest import ISO_RE, PgCluster, assert_legacy_error, assert_v1_error, wait_until

# --- health -----------------------------------------------------------------------------


def test_legacy_health_needs_no_token(server):
    r = server.get("/health")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "Sync API running"}


def test_head_health_has_no_body(server):
    r = server.request("HEAD", "/health")
    assert r.status_code == 200
    assert r.content == b""


def test_v1_health(server):
    r = server.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert ISO_RE.match(body["timestamp"]), body["timestamp"]
    details = body["details"]
    assert details["database"] == "connected"
    assert details["storage"] in ("available", "low")
    assert isinstance(details["memory"], str) and details["memory"]


@pytest.fixture
def private_pg():
    """A PostgreSQL cluster of this test's own, so stopping it disturbs no other test."""
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.mark.postgres_only
def test_v1_health_follows_the_database(private_pg, make_server, backend):
    srv = make_server(pg=private_pg)
    assert srv.get("/api/v1/health").status_code == 200

    private_pg.stop()
    for _ in range(3):  # every pooled connection now fails; each answer must say so
        r = srv.get("/api/v1/health")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unhealthy"
        assert body["details"]["database"] == "error"
    assert srv.get("/health").status_code == 200  # ferry itself stays up
    assert re.search(r'^ferry_store_up\{backend="postgres"\} 0$', srv.get("/metrics").text,
                     re.M)

    private_pg.start()
    recovered = wait_until(lambda: srv.get("/api/v1/health").status_code == 200, timeout=10)
    assert recovered, "health did not recover after PostgreSQL came back"
    body = srv.get("/api/v1/health").json()
    assert body["status"] == "healthy" and body["details"]["database"] == "connected"
    assert srv.stop() == 0


# --- EonaCat.Sync metrics -------------------------------------------------------------------


def test_v1_metrics_shape(server):
    r = server.get("/api/v1/metrics", token=server.admin_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"totalSyncOperations", "successfulSyncs", "failedSyncs",
                         "averageSyncDuration", "totalDataTransferred", "cloudStorageUsage"}
    for key in ("totalSyncOperations", "successfulSyncs", "failedSyncs",
                "averageSyncDuration", "totalDataTransferred"):
        assert type(body[key]) is int, key
    assert set(body["cloudStorageUsage"]) == {"azure", "s3"}
    assert all(type(v) is int for v in body["cloudStorageUsage"].values())


def test_v1_metrics_needs_a_token(server):
    r = server.get("/api/v1/metrics")
    assert_v1_error(r, 401, "UNAUTHORIZED")


# --- Prometheus -------------------------------------------------------------------------

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """[(name, {label: value}, float)] of every sample line."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(LABEL_RE.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def sample(samples, name, **labels):
    """The value of the one sample with that name and those labels, 0 when absent."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == v2
                                                           for k, v2 in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0


def scrape(srv, **kw):
    r = srv.get("/metrics", **kw)
    assert r.status_code == 200, r.text
    return parse_prometheus(r.text)


def test_prometheus_counts_requests_by_route_and_status(server):
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    before = parse_prometheus(r.text)

    ok_before = sample(before, "ferry_http_requests_total", route="/health", status="200")
    denied_before = sample(before, "ferry_http_requests_total", route="/api/v1/metrics",
                           status="401")
    for _ in range(3):
        assert server.get("/health").status_code == 200
    for _ in range(2):
        assert server.get("/api/v1/metrics").status_code == 401

    def counts():
        s = scrape(server)
        return (sample(s, "ferry_http_requests_total", route="/health", status="200"),
                sample(s, "ferry_http_requests_total", route="/api/v1/metrics", status="401"))

    # Requests are counted when libmicrohttpd reports them complete, just after the reply.
    wait_until(lambda: counts() == (ok_before + 3, denied_before + 2))
    assert counts() == (ok_before + 3, denied_before + 2)

    after = scrape(server)
    labels = [l for n, l, _ in after if n == "ferry_http_requests_total"
              and l.get("route") == "/health"]
    assert labels and all(l.get("method") == "GET" for l in labels)
    inf = sample(after, "ferry_http_request_duration_seconds_bucket", route="/health", le="+Inf")
    assert inf >= 3
    assert inf == sample(after, "ferry_http_request_duration_seconds_count", route="/health")
    assert any(n == "ferry_http_request_bytes_total" for n, _, _ in after)
    assert sample(after, "ferry_store_up", backend=server.backend) == 1


def test_prometheus_counts_request_bytes(server):
    before = sample(scrape(server), "ferry_http_request_bytes_total")
    body = b'{"name":"bytes","role":"user","userId":"carol"}'
    r = server.post("/api/v1/admin/tokens", token=server.admin_token, data=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    expected = before + len(body)
    wait_until(lambda: sample(scrape(server), "ferry_http_request_bytes_total") == expected)
    assert sample(scrape(server), "ferry_http_request_bytes_total") == expected


def test_prometheus_job_gauges_follow_the_jobs_table(server):
    """ferry_jobs{kind,status} counts the jobs waiting or running on any node: rows of
    ferry_jobs, whichever node wrote them (a kind no worker here runs stays pending)."""
    def job(i, status):
        server.db_exec("INSERT INTO ferry_jobs(id, kind, status, created_at) VALUES "
                       f"('job_gauge_{i}', 'gauge\"test', '{status}', 0)")  # a quote: escaped

    assert sample(scrape(server), "ferry_jobs", kind='gauge\\"test', status="pending") == 0
    job(1, "pending")
    job(2, "pending")
    job(3, "running")
    job(4, "completed")
    after = scrape(server)
    assert sample(after, "ferry_jobs", kind='gauge\\"test', status="pending") == 2
    assert sample(after, "ferry_jobs", kind='gauge\\"test', status="running") == 1
    assert not [l for n, l, _ in after if n == "ferry_jobs" and l.get("status") == "completed"]
    server.db_exec("DELETE FROM ferry_jobs WHERE id LIKE 'job_gauge_%'")
    assert sample(scrape(server), "ferry_jobs", kind='gauge\\"test', status="pending") == 0


def test_prometheus_with_metrics_auth(make_server):
    srv = make_server("--metrics-auth")
    r = srv.get("/metrics")
    assert r.status_code == 401
    assert "WWW-Authenticate" in r.headers
    r = srv.get("/metrics", token=srv.admin_token)
    assert r.status_code == 200
    assert "ferry_store_up" in r.text


# --- OpenAPI ----------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_openapi_document(server, backend):
    r = server.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert "openapi" in doc and "paths" in doc
    assert isinstance(doc["paths"], dict)


# --- the router's own answers -------------------------------------------------------------


@pytest.mark.sqlite_only
def test_unknown_v1_path_is_404_in_v1_shape(server, backend):
    r = server.get("/api/v1/no/such/thing", token=server.admin_token)
    assert_v1_error(r, 404, "NOT_FOUND")
    # Without a token too: an unknown path is not a reason to ask for credentials.
    assert_v1_error(server.get("/api/v1/nothing-here"), 404, "NOT_FOUND")


@pytest.mark.sqlite_only
def test_unknown_legacy_path_is_404_in_legacy_shape(server, backend):
    r = server.get("/sync/nothing-here", token=server.admin_token)
    assert_legacy_error(r, 404)


@pytest.mark.sqlite_only
def test_wrong_method_on_legacy_path_is_405(server, backend):
    r = server.put("/health", json={})
    body = assert_legacy_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert "PUT" in body["error"]


@pytest.mark.sqlite_only
def test_wrong_method_on_v1_path_is_405(server, backend):
    r = server.post("/api/v1/health", json={})
    assert_v1_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.sqlite_only
def test_wrong_method_is_405_before_auth(server, backend):
    r = server.put("/api/v1/admin/tokens")
    assert_v1_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "GET, POST, HEAD, OPTIONS"
    r = server.request("PUT", "/api/v1/admin/tokens/tok_1", token=server.admin_token)
    assert_v1_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "GET, PATCH, DELETE, HEAD, OPTIONS"
