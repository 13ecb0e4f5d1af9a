"""cloud-sync-api (cloud-sync-api): POST /sync/push (and its alias POST /sync), POST /sync/pull,
GET /sync/status and GET /health, on both backends, against real SQL tables.

The README's own examples live in data/seed004_examples.json and are replayed verbatim;
the rest checks ferry's documented extensions (cursor paging, deleted keys, batch ids),
the allowlist settings, and the token requirement ferry adds to these endpoints."""

import copy
import json
import os

import pytest

from conftest import assert_legacy_error

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
with open(os.path.join(DATA, "seed004_examples.json")) as f:
    SEED = json.load(f)

# The README's five tables; the two its examples touch have the columns they use.
SEED_SCHEMA = [
    "CREATE TABLE sales (id TEXT PRIMARY KEY, customer_id TEXT, total INTEGER)",
    "CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT, price INTEGER)",
    "CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT)",
    "CREATE TABLE item_sales (id TEXT PRIMARY KEY, sale_id TEXT, product_id TEXT, qty INTEGER)",
    "CREATE TABLE product_stock (id TEXT PRIMARY KEY, quantity INTEGER)",
]
# the two the examples touch, for the tests that allow-list only them
SCHEMA2 = [SEED_SCHEMA[0], SEED_SCHEMA[4]]
P001 = "INSERT INTO product_stock (id, quantity) VALUES ('P001', 5)"
TWO_TABLES = ["--allowed-tables", "sales,product_stock"]


# --- helpers (also used by test_engine.py) ---------------------------------------------


def push(srv, operations, token=None, path="/sync/push", **extra):
    """POSTs a legacy push; token defaults to the admin token ("" sends none)."""
    body = {"operations": operations, **extra}
    if token is None:
        token = srv.admin_token
    return srv.post(path, token=token or None, json=body)


def pull(srv, token=None, **body):
    if token is None:
        token = srv.admin_token
    return srv.post("/sync/pull", token=token or None, json=body)


def ok(resp):
    """The JSON body of a 200 legacy answer with success true."""
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True, body
    return body


def op(table, action, **data):
    return {"table": table, "action": action, "data": data}


def db_rows(srv, sql):
    return [tuple(r) for r in srv.db_query(sql)]


def series_insert(srv, table, n, prefix="r", start=1):
    """Inserts n rows (id, customer_id, total) straight in the database in one statement,
    as another program would; ids are prefix + zero-padded number."""
    if srv.backend == "postgres":
        sql = (f"INSERT INTO {table} (id, customer_id, total) SELECT '{prefix}' ||"
               f" lpad(i::text, 5, '0'), 'C', i FROM generate_series({start}, {start + n - 1}) i")
    else:
        sql = (f"WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s"
               f" WHERE i < {start + n - 1}) INSERT INTO {table} (id, customer_id, total)"
               f" SELECT '{prefix}' || substr('00000' || i, -5, 5), 'C', i FROM s")
    srv.db_exec(sql)


def subset_match(expected, actual, where="$"):
    """Every key the README shows is in ferry's answer with the same value (ferry may add
    keys to an object; lists and scalars must be equal)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{where}: key {k!r} missing from {actual!r}"
            subset_match(v, actual[k], f"{where}.{k}")
    else:
        assert expected == actual and type(expected) is type(actual), \
            f"{where}: expected {expected!r}, got {actual!r}"


def seed_call(srv, example, path=None):
    ex = SEED[example]
    if ex["method"] == "GET":
        return srv.get(path or ex["path"])
    return srv.post(path or ex["path"], json=copy.deepcopy(ex["request"]))


# --- the README's examples, verbatim ---------------------------------------------------


def test_seed_examples_replayed(make_server):
    """health, status, pull (empty tables), then the push example with P001 written
    beforehand by another program, then the pull example again."""
    srv = make_server("--legacy-auth", "false", schema=SEED_SCHEMA,
                      env={"ALLOWED_TABLES": SEED["allowed_tables"]})

    r = seed_call(srv, "health")
    assert r.status_code == 200 and r.json() == SEED["health"]["response"]

    r = seed_call(srv, "status")
    assert r.status_code == 200
    assert r.json() == SEED["status"]["response"]

    r = seed_call(srv, "pull")
    body = ok(r)
    subset_match(SEED["pull"]["response"], body)
    assert set(body["data"]) == {"sales", "product_stock"}

    srv.db_exec(P001)
    r = seed_call(srv, "push")
    body = ok(r)
    subset_match(SEED["push"]["response"], body)
    assert body["replayed"] is False
    assert isinstance(body["cursor"], int) and body["cursor"] > 0
    assert db_rows(srv, "SELECT id, customer_id, total FROM sales") == [("123", "C001", "1000")]
    assert db_rows(srv, "SELECT id, quantity FROM product_stock") == [("P001", "20")]

    body = ok(seed_call(srv, "pull"))
    assert body["limit"] == 500
    assert body["data"] == {
        "sales": [{"id": "123", "customer_id": "C001", "total": 1000}],
        "product_stock": [{"id": "P001", "quantity": 20}],
    }


def test_seed_push_alias_answers_identically(make_server):
    """POST /sync and POST /sync/push, each from the same starting rows, give the same
    answer (but for the cursor, which moves on) and leave the same rows."""
    srv = make_server("--legacy-auth", "false", schema=SEED_SCHEMA + [P001],
                      env={"ALLOWED_TABLES": SEED["allowed_tables"]})
    answers, states = [], []
    for path in (SEED["push"]["path"], SEED["push"]["alias"]):
        srv.db_exec("DELETE FROM sales", "UPDATE product_stock SET quantity = 5")
        body = ok(seed_call(srv, "push", path=path))
        subset_match(SEED["push"]["response"], body)
        answers.append(body)
        states.append((db_rows(srv, "SELECT id, customer_id, total FROM sales"),
                       db_rows(srv, "SELECT id, quantity FROM product_stock")))
    assert answers[1]["cursor"] > answers[0]["cursor"]
    assert dict(answers[0], cursor=0) == dict(answers[1], cursor=0)
    assert states[0] == states[1] == ([("123", "C001", "1000")], [("P001", "20")])


def test_seed_error_invalid_table(make_server):
    srv = make_server(*TWO_TABLES, schema=SEED_SCHEMA)
    expected = SEED["push"]["errors"][0]
    # products exists in the database but is not allow-listed here
    for table in ("orders", "products", "ferry_changes", "SALES", ""):
        r = push(srv, [op("sales", "insert", id="1", total=1), op(table, "insert", id="x")])
        assert r.status_code == 400, (table, r.text)
        assert r.json() == expected
    assert db_rows(srv, "SELECT id FROM sales") == []
    # the pull example's "Invalid table"
    assert SEED["pull"]["errors"][0] == expected
    for tables in (["orders"], ["sales", "products"], ["product_stock", "nope"]):
        r = pull(srv, tables=tables)
        assert r.status_code == 400, r.text
        assert r.json() == expected


def test_seed_error_no_tables_configured(make_server):
    srv = make_server(schema=SCHEMA2)
    r = pull(srv)
    assert r.status_code == 400
    assert r.json() == SEED["pull"]["errors"][1]
    r = srv.get("/sync/status", token=srv.admin_token)
    assert r.status_code == 200
    assert r.json() == {"success": True, "status": "ok", "allowed_tables": []}
    r = push(srv, [op("sales", "insert", id="1")])
    assert r.status_code == 400 and r.json() == SEED["push"]["errors"][0]
    assert db_rows(srv, "SELECT id FROM sales") == []


# --- the allowlist setting --------------------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["ALLOWED_TABLES", "FERRY_ALLOWED_TABLES", "flag"])
def test_allowlist_sources(make_server, how):
    if how == "flag":
        srv = make_server("--allowed-tables", "sales, product_stock", schema=SEED_SCHEMA)
    else:
        srv = make_server(schema=SEED_SCHEMA, env={how: "sales, product_stock"})
    r = srv.get("/sync/status", token=srv.admin_token)
    assert r.json()["allowed_tables"] == ["sales", "product_stock"]
    ok(push(srv, [op("product_stock", "insert", id="P9", quantity=1)]))
    assert db_rows(srv, "SELECT id, quantity FROM product_stock") == [("P9", "1")]


@pytest.mark.sqlite_only
def test_allowlist_precedence(make_server):
    """ferry's own variable beats the seed's name; the flag beats both."""
    env = {"ALLOWED_TABLES": "customers", "FERRY_ALLOWED_TABLES": "products"}
    srv = make_server(schema=SEED_SCHEMA, env=env)
    assert srv.get("/sync/status", token=srv.admin_token).json()["allowed_tables"] == ["products"]
    srv = make_server("--allowed-tables", "sales", schema=SEED_SCHEMA, env=env)
    assert srv.get("/sync/status", token=srv.admin_token).json()["allowed_tables"] == ["sales"]


# --- pull -------------------------------------------------------------------------------


def test_pull_tables_and_limit(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    series_insert(srv, "sales", 3)

    body = ok(pull(srv))  # tables omitted: every allowed table
    assert body["limit"] == 1000
    assert set(body["data"]) == {"sales", "product_stock"}
    assert sorted(r["id"] for r in body["data"]["sales"]) == ["r00001", "r00002", "r00003"]
    assert body["data"]["product_stock"] == [{"id": "P001", "quantity": 5}]
    assert body["deleted"] == {"sales": [], "product_stock": []}
    assert body["has_more"] is False

    body = ok(pull(srv, tables=["product_stock"]))
    assert body["data"] == {"product_stock": [{"id": "P001", "quantity": 5}]}

    assert ok(pull(srv, limit=9999))["limit"] == 5000
    assert ok(pull(srv, limit=5000))["limit"] == 5000
    assert ok(pull(srv, limit=1))["limit"] == 1

    for bad in ({"limit": 0}, {"limit": -1}, {"limit": "x"}, {"limit": 1.5},
                {"limit": True}, {"tables": "sales"}, {"tables": [7]}):
        r = pull(srv, **bad)
        assert_legacy_error(r, 400)


def test_pull_pages_through_every_row_once(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    series_insert(srv, "sales", 2500)

    seen, cursor, pages = [], 0, []
    while True:
        body = ok(pull(srv, cursor=cursor, limit=1000))
        n = len(body["data"]["sales"]) + len(body["data"]["product_stock"])
        pages.append((n, body["has_more"]))
        seen += [("sales", r["id"]) for r in body["data"]["sales"]]
        seen += [("product_stock", r["id"]) for r in body["data"]["product_stock"]]
        assert body["next_cursor"] >= cursor
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
        assert len(pages) < 10
    assert pages == [(1000, True), (1000, True), (501, False)]
    assert len(seen) == len(set(seen)) == 2501
    assert set(seen) == ({("sales", f"r{i:05d}") for i in range(1, 2501)}
                         | {("product_stock", "P001")})

    # nothing new: an empty page at the same cursor
    body = ok(pull(srv, cursor=cursor))
    assert body["data"] == {"sales": [], "product_stock": []}
    assert body["deleted"] == {"sales": [], "product_stock": []}
    assert body["next_cursor"] == cursor and body["has_more"] is False

    # only what changed since, deletes as keys
    srv.db_exec("UPDATE sales SET total = -1 WHERE id IN ('r00007', 'r02000')",
                "DELETE FROM sales WHERE id = 'r00100'",
                "INSERT INTO sales (id, customer_id, total) VALUES ('new', 'C9', 9)")
    ok(push(srv, [op("product_stock", "update", id="P001", quantity=6),
                  op("sales", "delete", id="r00200")]))
    body = ok(pull(srv, cursor=cursor))
    assert sorted((r["id"], r["total"]) for r in body["data"]["sales"]) == \
        [("new", 9), ("r00007", -1), ("r02000", -1)]
    assert body["data"]["product_stock"] == [{"id": "P001", "quantity": 6}]
    assert sorted(body["deleted"]["sales"]) == ["r00100", "r00200"]
    assert body["deleted"]["product_stock"] == []
    assert body["next_cursor"] > cursor and body["has_more"] is False

    # a cursor given as a string is the same cursor
    assert ok(pull(srv, cursor=str(cursor)))["data"] == body["data"]


def test_pull_rejects_bad_cursors(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    head = ok(pull(srv))["next_cursor"]
    assert head >= 1
    for bad in ("abc", -1, "-1", " 1", "1x", 1.5, {"seq": 1}, [1], True, head + 1, str(head + 50)):
        r = pull(srv, cursor=bad)
        assert_legacy_error(r, 400)
    assert ok(pull(srv, cursor=head))["next_cursor"] == head
    assert ok(pull(srv, cursor=None))["data"]["product_stock"] == [{"id": "P001", "quantity": 5}]


def test_pull_naming_a_table_twice_returns_each_row_once(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    series_insert(srv, "sales", 3)
    body = ok(pull(srv, tables=["sales", "product_stock", "sales"]))
    assert sorted(r["id"] for r in body["data"]["sales"]) == ["r00001", "r00002", "r00003"]
    assert body["data"]["product_stock"] == [{"id": "P001", "quantity": 5}]
    # and the limit counts rows, not copies of rows
    body = ok(pull(srv, tables=["sales", "sales"], limit=2))
    assert [r["id"] for r in body["data"]["sales"]] == ["r00001", "r00002"]
    assert body["has_more"] is True


# --- batch ids ----------------------------------------------------------------------------


def test_batch_id_is_answered_once(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    ops = [op("sales", "insert", id="s1", customer_id="C1", total=10),
           op("product_stock", "update", id="P001", quantity=4)]
    first = ok(push(srv, ops, batch_id="b-1", device_id="till"))
    assert first["replayed"] is False

    # another program deletes the row and changes the stock; a retry must not redo them
    srv.db_exec("DELETE FROM sales WHERE id = 's1'",
                "UPDATE product_stock SET quantity = 99 WHERE id = 'P001'")
    second = ok(push(srv, ops, batch_id="b-1", device_id="till"))
    assert second == dict(first, replayed=True)
    assert db_rows(srv, "SELECT id FROM sales") == []
    assert db_rows(srv, "SELECT quantity FROM product_stock") == [("99",)]

    # the same batch id from another device is another batch
    third = ok(push(srv, ops, batch_id="b-1", device_id="other-till"))
    assert third["replayed"] is False
    assert db_rows(srv, "SELECT id, total FROM sales") == [("s1", "10")]
    assert db_rows(srv, "SELECT quantity FROM product_stock") == [("4",)]

    # a batch that failed is not remembered: the corrected retry with its id is applied
    srv.db_exec("DELETE FROM sales")
    bad = [op("sales", "insert", id="s1", total=1), op("sales", "insert", id="s2", total="many")]
    assert_legacy_error(push(srv, bad, batch_id="b-2"), 400)
    good = [op("sales", "insert", id="s1", total=1), op("sales", "insert", id="s2", total=2)]
    body = ok(push(srv, good, batch_id="b-2"))
    assert body["replayed"] is False
    assert db_rows(srv, "SELECT id, total FROM sales ORDER BY id") == [("s1", "1"), ("s2", "2")]
    for bad_id in ("", "x" * 201, 5):
        assert_legacy_error(push(srv, good, batch_id=bad_id), 400)


# --- auth ---------------------------------------------------------------------------------


def test_legacy_endpoints_need_a_token_by_default(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    body = {"operations": [op("sales", "insert", id="s1", total=1)]}
    for path in ("/sync/push", "/sync"):
        for token in (None, "fy_" + "Q" * 43):
            r = srv.post(path, token=token, json=body)
            assert_legacy_error(r, 401)
    assert_legacy_error(srv.post("/sync/pull", json={}), 401)
    assert_legacy_error(srv.get("/sync/status"), 401)
    assert db_rows(srv, "SELECT id FROM sales") == []
    # /health stays open
    assert srv.get("/health").json() == SEED["health"]["response"]
    # a user token is enough
    user = srv.create_token(role="user", name="till")["token"]
    ok(push(srv, body["operations"], token=user))
    assert ok(srv.get("/sync/status", token=user))["allowed_tables"] == ["sales", "product_stock"]
    assert db_rows(srv, "SELECT id FROM sales") == [("s1",)]


def test_legacy_auth_false_opens_the_endpoints(make_server):
    srv = make_server(*TWO_TABLES, "--legacy-auth", "false", schema=SCHEMA2 + [P001])
    body = ok(push(srv, [op("sales", "insert", id="s1", total=1)], token="", path="/sync"))
    assert body["replayed"] is False
    body = ok(pull(srv, token=""))
    assert body["data"]["sales"] == [{"id": "s1", "customer_id": None, "total": 1}]
    assert ok(srv.get("/sync/status"))["allowed_tables"] == ["sales", "product_stock"]
    # the v1 API still needs a token
    assert srv.get("/api/v1/sync/changes").status_code == 401


def test_table_scoped_token(make_server):
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    tok = srv.create_token(role="user", name="sales-only", tables=["sales"])["token"]

    r = push(srv, [op("sales", "insert", id="s1", total=1),
                   op("product_stock", "update", id="P001", quantity=0)], token=tok)
    body = assert_legacy_error(r, 403)
    assert "product_stock" in body["error"]
    assert db_rows(srv, "SELECT id FROM sales") == []
    assert db_rows(srv, "SELECT quantity FROM product_stock") == [("5",)]

    ok(push(srv, [op("sales", "insert", id="s1", total=1)], token=tok))
    assert db_rows(srv, "SELECT id FROM sales") == [("s1",)]

    assert_legacy_error(pull(srv, token=tok, tables=["product_stock"]), 403)
    assert ok(pull(srv, token=tok, tables=["sales"]))["data"] == \
        {"sales": [{"id": "s1", "customer_id": None, "total": 1}]}


def test_table_scoped_token_pull_without_tables_stays_in_scope(make_server):
    """tables omitted means "every table this credential may read": a token limited to
    sales must not receive product_stock's rows."""
    srv = make_server(*TWO_TABLES, schema=SCHEMA2 + [P001])
    tok = srv.create_token(role="user", name="sales-only", tables=["sales"])["token"]
    r = pull(srv, token=tok)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "product_stock" not in body["data"], body
    assert "product_stock" not in body.get("deleted", {}), body
    assert body["data"] == {"sales": []}
