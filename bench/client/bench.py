#!/usr/bin/env python3
"""libferry vs PouchDB (not a test), in one run: the initial sync of ROWS rows into an
empty replica and a steady sync of CHANGES local changes, with `ferry sync` (libferry)
against a ferry server on SQLite, then with PouchDB replicating from express-pouchdb
(PouchDB's CouchDB-style server; both on LevelDB). Prints rows/s and the ratios.
Usage: bench/client/bench.py [FERRY_BIN]  (default build/ferry); NO_POUCH=1 skips PouchDB.
The PouchDB side is installed by bench/client/setup.sh (npm ci, once)."""

import json
import os
import shutil
import random
import resource
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

ROWS = int(os.environ.get("ROWS", 100_000))
CHANGES = int(os.environ.get("CHANGES", 1_000))
FERRY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/ferry")
HERE = os.path.dirname(os.path.abspath(__file__))
CPU = []  # CPU seconds of each `ferry sync`
SERVER_CPU = []  # CPU seconds the ferry server spent during each sync


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


def cpu_of_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of(pid):
    """CPU seconds (user + system) a running process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sync(url, tok, db, server):
    """Runs `ferry sync`; its wall time and CPU time (the CPU time does not depend on what
    else the machine runs) and stats."""
    started, cpu, server_cpu = time.perf_counter(), cpu_of_children(), cpu_of(server.pid)
    proc = subprocess.run([FERRY, "sync", "--url", url, "--token", tok, db],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    CPU.append(cpu_of_children() - cpu)
    SERVER_CPU.append(cpu_of(server.pid) - server_cpu)
    return time.perf_counter() - started, json.loads(proc.stdout)


def ferry_side(tmp):
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
        initial, stats = sync(url, tok, db, srv)
        assert stats["pulled"] == ROWS, stats
        rep = sqlite3.connect(db)
        with rep:
            for k in random.Random(1).sample(range(ROWS), CHANGES):
                rep.execute("UPDATE sales SET total = total + 1 WHERE id = ?", (f"s{k:07d}",))
        rep.close()
        steady, stats = sync(url, tok, db, srv)
        assert stats["pushed"] == CHANGES, stats
    finally:
        srv.terminate()
        srv.wait()
    return initial, steady


def pouch_side(tmp):
    subprocess.run([os.path.join(HERE, "setup.sh")], check=True)
    data = os.path.join(tmp, "pouch-server")
    os.mkdir(data)
    srv = subprocess.Popen(["node", os.path.join(HERE, "pouch_server.mjs"), "0", data],
                           stdout=subprocess.PIPE, text=True, cwd=data)
    try:
        port = re.search(r"listening on (\d+)", srv.stdout.readline()).group(1)
        out = subprocess.run(["node", os.path.join(HERE, "pouch_bench.mjs"),
                              f"http://127.0.0.1:{port}", tmp, str(ROWS), str(CHANGES)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        srv.terminate()
        srv.wait()
    result = json.loads(out)
    return result["initial_s"], result["steady_s"]


def main():
    tmp = tempfile.mkdtemp(prefix="ferry-bench-client-")
    try:
        f_init, f_steady = ferry_side(tmp)
        print(f"libferry initial sync: {ROWS} rows in {f_init:.2f} s = {ROWS / f_init:,.0f} rows/s"
              f" (client CPU {CPU[0]:.2f} s = {ROWS / CPU[0]:,.0f} rows per CPU second,"
              f" server CPU {SERVER_CPU[0]:.2f} s)")
        print(f"libferry steady sync: {CHANGES} local changes in {f_steady:.3f} s = "
              f"{CHANGES / f_steady:,.0f} changes/s", flush=True)
        if os.environ.get("NO_POUCH"):
            return
        p_init, p_steady = pouch_side(tmp)
        print(f"PouchDB initial sync: {ROWS} rows in {p_init:.2f} s = {ROWS / p_init:,.0f} rows/s")
        print(f"PouchDB steady sync: {CHANGES} local changes in {p_steady:.3f} s = "
              f"{CHANGES / p_steady:,.0f} changes/s")
        print(f"libferry / PouchDB: initial {p_init / f_init:.1f}x, steady "
              f"{p_steady / f_steady:.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
