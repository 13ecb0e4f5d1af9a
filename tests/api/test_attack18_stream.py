"""attack18: hostile bodies for the streamed cloud-sync-api pull (POST /sync/pull with
"stream": true), on both backends. Held: every malformed field is a 400 in the pull's
error shape before any byte streams, a huge limit is cut to the stream's cap, and a table
named twice (in another order) streams the plain page's bytes."""

from conftest import assert_legacy_error
from test_legacy import ok
from test_legacy_stream import fill_notes, fill_orders, post, start


def test_hostile_streamed_pull_bodies(make_server):
    srv = start(make_server)
    fill_orders(srv, 1, 300)
    fill_notes(srv, 1, 200)
    for body in ({"stream": 1}, {"stream": "true"}, {"stream": [True]},
                 {"stream": True, "limit": 0}, {"stream": True, "limit": -5},
                 {"stream": True, "limit": 1e12}, {"stream": True, "limit": "100"},
                 {"stream": True, "limit": 2**64}, {"stream": True, "cursor": "abc"},
                 {"stream": True, "cursor": -1}, {"stream": True, "tables": "orders"},
                 {"stream": True, "tables": [1]}, {"stream": True, "tables": [None]},
                 {"stream": True, "tables": ["orders", "ferry_changes"]}):
        r = post(srv, **body)
        assert r.status_code == 400, (body, r.status_code, r.text[:200])
        assert_legacy_error(r, 400)
    # null is an absent field, as for cursor
    assert ok(post(srv, stream=None, limit=3))["limit"] == 3
    body = ok(post(srv, stream=True, limit=2**62))
    assert body["limit"] == 100000 and len(body["data"]["orders"]) == 300
    twice = ["orders", "notes", "orders", "notes"]
    plain = post(srv, tables=twice, limit=400)
    streamed = post(srv, tables=twice, limit=400, stream=True)
    assert streamed.status_code == 200 and streamed.content == plain.content
    assert list(ok(plain)["data"]) == ["orders", "notes"]
    # after the bad bodies every stream place is free: as many streams as places at once
    for _ in range(3):
        assert ok(post(srv, stream=True, limit=100000))["has_more"] is False
