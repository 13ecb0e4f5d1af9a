#!/usr/bin/env python3
"""bench/push_pull/latency.py - Pinakes report and legacy push rows/s when PostgreSQL is a
network hop away: a throwaway cluster behind a TCP proxy that delays each direction by
DELAY_MS / 2 (one round trip = DELAY_MS), one client, batches of 500 rows. Shows what the
statements per batch cost once each is a round trip.

    FERRY_BIN=build/ferry DELAY_MS=0.9 BATCHES=10 bench/push_pull/latency.py
"""

import os
import socket
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "api"))
os.environ.setdefault("FERRY_BIN", os.path.join(HERE, "..", "..", "build", "ferry"))

from conftest import PgCluster, Server, free_port  # noqa: E402

DELAY = float(os.environ.get("DELAY_MS", "0.9")) / 1000
BATCHES = int(os.environ.get("BATCHES", "10"))
ROWS = 500


def pipe(src, dst):
    """Copies src to dst, each chunk held back half a round trip."""
    try:
        while data := src.recv(65536):
            time.sleep(DELAY / 2)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port, target_port):
    srv = socket.create_server(("127.0.0.1", listen_port))

    def accept():
        while True:
            client, _ = srv.accept()
            upstream = socket.create_connection(("127.0.0.1", target_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def batch(prefix, b, action="insert"):
    return [{"table": "items", "action": action,
             "data": {"id": f"{prefix}{b:04d}-{i:03d}", "name": "n", "qty": i}}
            for i in range(ROWS)]


def timed(label, post):
    start = time.monotonic()
    for b in range(BATCHES):
        r = post(b)
        assert r.status_code == 200, r.text
    wall = time.monotonic() - start
    print(f"RESULT label={label} delay_ms={DELAY * 1000:.2f} rows={BATCHES * ROWS}"
          f" wall_s={wall:.3f} rows_s={BATCHES * ROWS / wall:.0f}"
          f" ms_per_batch={wall * 1000 / BATCHES:.1f}")


def main():
    pg = PgCluster()
    srv = None
    try:
        pg.start()
        db = pg.create_database()
        pg.psql("CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)", db=db)
        port = free_port()
        proxy(port, pg.port)
        url = f"postgres://postgres@127.0.0.1:{port}/{db}"
        srv = Server(tempfile.mkdtemp(prefix="ferry-lat-"), url,
                     ("--allowed-tables", "items", "--rate-limit", "0"), None, backend="postgres")
        srv.start()
        user = srv.create_token(role="user", user_id="u")["token"]
        r = srv.post("/api/v1/sync/devices", token=user, json={"name": "till"})
        dev = r.json()["token"]
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {dev}"
        timed("report", lambda b: s.post(srv.base + "/api/v1/sync/report",
                                         json={"operations": batch("r", b)}, timeout=600))
        timed("legacy-push", lambda b: s.post(srv.base + "/sync/push", timeout=600,
                                              headers={"Authorization": f"Bearer {srv.admin_token}"},
                                              json={"operations": batch("l", b)}))
    finally:
        if srv and srv.running:
            srv.stop()
        pg.destroy()


if __name__ == "__main__":
    main()
