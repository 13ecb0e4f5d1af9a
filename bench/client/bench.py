#!/usr/bin/env python3
"""libferry sync benchmark (not a test): initial sync of ROWS rows into an empty replica
and a steady sync of CHANGES local changes, with `ferry sync` (libferry) against a ferry
server on SQLite. Usage: bench/client/bench.py [FERRY_BIN]  (default build/ferry)."""

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

ROWS = int(os.environ.get("ROWS", 100_000))
CHANGES = int(os.environ.get("CHANGES", 1_000))
FERRY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/ferry")


def serve(data):
    proc = subprocess.Popen([FERRY, "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
                             "--allowed-tables", "sales", "--rate-limit", "0",
                             "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        m = re.search(r"listening on (http://[0-9.:]+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("ferry did not start")


def token(data, *args):
    return subprocess.run([FERRY, "token", "create", "--data-dir", data, "--name", "bench",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


def sync(url, tok, db):
    started = time.perf_counter()
    proc = subprocess.run([FERRY, "sync", "--url", url, "--token", tok, db],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - started, json.loads(proc.stdout)


def main():
    tmp = tempfile.mkdtemp(prefix="ferry-bench-client-")
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    con = sqlite3.connect(os.path.join(data, "ferry.db"))
    con.execute("CREATE TABLE sales (id TEXT PRIMARY KEY, customer_id TEXT, total INTEGER)")
    con.executemany("INSERT INTO sales VALUES (?, ?, ?)",
                    ((f"s{i:07d}", f"c{i % 997}", i % 10000) for i in range(ROWS)))
    con.commit()
    con.close()
    srv, url = serve(data)
    try:
        tok = token(data, "--role", "device", "--user", "bench", "--device", "bench-1")
        db = os.path.join(tmp, "replica.db")
        secs, stats = sync(url, tok, db)
        assert stats["pulled"] == ROWS, stats
        print(f"initial sync: {ROWS} rows in {secs:.2f} s = {ROWS / secs:,.0f} rows/s")
        rep = sqlite3.connect(db)
        with rep:
            for k in random.Random(1).sample(range(ROWS), CHANGES):
                rep.execute("UPDATE sales SET total = total + 1 WHERE id = ?", (f"s{k:07d}",))
        rep.close()
        secs, stats = sync(url, tok, db)
        assert stats["pushed"] == CHANGES, stats
        print(f"steady sync: {CHANGES} local changes in {secs:.3f} s = "
              f"{CHANGES / secs:,.0f} changes/s")
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
