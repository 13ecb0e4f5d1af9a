"""libferry's API beyond ferry_sync, from a C program built against the library: the
background mode (ferry_start/ferry_stop: long-polls the feed, wakes on a local commit,
stops at once), the conflict callback and ferry_resolve."""

import os
import queue
import sqlite3
import subprocess
import threading
import time

from conftest import FERRY_BIN, wait_until
from devsync import row, user
from test_client import sanitized_build

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <ferry/client.h>

static void on_conflict(void *ctx, const struct ferry_conflict *c)
{
    (void)ctx;
    printf("conflict %s %s %s %s\n", c->id, c->table, c->row_id, c->details);
    fflush(stdout);
}

static void on_round(void *ctx, int status, const struct ferry_sync_stats *s)
{
    (void)ctx;
    printf("round %d %lld %lld %lld\n", status, (long long)s->pushed, (long long)s->pulled,
           (long long)s->conflicts);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct ferry_client_options o = {.url = argv[2], .token = argv[3], .poll_s = 20};
    ferry_replica *r = NULL;
    char why[256], line[64];
    int rc = 1;
    if (argc < 5 || ferry_replica_open(argv[1], &o, &r, why, sizeof(why)) != FERRY_CLIENT_OK) {
        fprintf(stderr, "open: %s\n", argc >= 5 ? why : "usage");
        return 1;
    }
    if (!strcmp(argv[4], "watch")) {
        ferry_set_conflict_handler(r, on_conflict, NULL);
        rc = ferry_start(r, on_round, NULL) != FERRY_CLIENT_OK ||
             ferry_start(r, on_round, NULL) != FERRY_CLIENT_EINVAL;
        while (!rc && fgets(line, sizeof(line), stdin) && strcmp(line, "stop\n"))
            ;
        ferry_stop(r);
        printf("stopped\n");
    } else if (!strcmp(argv[4], "resolve") && argc == 7) {
        rc = ferry_resolve(r, argv[5], !strcmp(argv[6], "client") ? FERRY_KEEP_CLIENT
                                                                  : FERRY_KEEP_SERVER);
        if (rc)
            fprintf(stderr, "resolve: %s\n", ferry_replica_error(r));
        else
            printf("resolved\n");
    }
    ferry_replica_close(r);
    return rc != 0;
}
"""

FLAGS = ("--allowed-tables", "orders", "--conflict-policy", "orders=manual", "--rate-limit", "0")


def build(tmp_path):
    build_dir = os.path.dirname(os.path.abspath(FERRY_BIN))
    include = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "include")
    src, out = tmp_path / "prog.c", tmp_path / "prog"
    src.write_text(PROGRAM)
    extra = ["-fsanitize=address,undefined"] if sanitized_build() else []
    proc = subprocess.run(["cc", "-Wall", "-Werror", *extra, "-I", include, str(src), "-o",
                           str(out), "-L", build_dir, "-lferry", f"-Wl,-rpath,{build_dir}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return str(out)


class Watcher:
    """The program in background mode; its lines arrive on a queue."""

    def __init__(self, prog, db, srv, token):
        self.proc = subprocess.Popen([prog, str(db), srv.base, token, "watch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(l.strip()) for l in self.proc.stdout],
                         daemon=True).start()

    def expect(self, prefix, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line

    def stop(self):
        started = time.monotonic()
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        assert self.proc.wait(10) == 0, self.proc.stderr.read()
        assert self.expect("stopped") == "stopped"
        return time.monotonic() - started


def local(db, sql, *args):
    con = sqlite3.connect(db)
    try:
        with con:
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_background_mode_conflict_callback_and_resolve(make_server, tmp_path):
    srv = make_server(*FLAGS, schema=["CREATE TABLE orders (id INTEGER PRIMARY KEY,"
                                      " item TEXT, qty INTEGER)"])
    prog = build(tmp_path)
    dev = user(srv, "anna").register("till")
    db = tmp_path / "till.db"
    w = Watcher(prog, db, srv, dev.token)
    assert w.expect("round ") == "round 0 0 0 0"
    # a server change arrives through the long poll, well before poll_s (20 s)
    started = time.monotonic()
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 1)")
    assert wait_until(lambda: local(db, "SELECT qty FROM orders") == [(1,)], timeout=5)
    assert time.monotonic() - started < 5
    # a local commit by another connection ends the wait and is pushed
    local(db, "INSERT INTO orders VALUES (2, 'pear', 2)")
    assert wait_until(lambda: row(srv, "orders", 2) == ["2", "pear", "2"], timeout=5)
    # ferry_stop ends a long poll at once
    assert w.stop() < 3
    # both sides change row 1 while the till is off: its next push is a manual conflict,
    # delivered to the callback; the replica takes the server's row
    srv.db_exec("UPDATE orders SET qty = 50 WHERE id = 1")
    local(db, "UPDATE orders SET qty = 7 WHERE id = 1")
    w = Watcher(prog, db, srv, dev.token)
    line = w.expect("conflict ")
    _, cid, table, row_id, details = line.split(" ", 4)
    assert cid.startswith("cf_") and (table, row_id) == ("orders", "1"), line
    assert '"clientData"' in details and '"qty":7' in details.replace(" ", ""), details
    status, pushed, _, conflicts = w.expect("round ").split()[1:]
    assert (status, pushed, conflicts) == ("0", "1", "1")
    assert wait_until(lambda: local(db, "SELECT qty FROM orders WHERE id = 1") == [(50,)], 5)
    assert local(db, "SELECT status, delivered FROM ferry_client_conflicts") == [("open", 1)]
    # resolved from another handle on the same file: the resolution reaches the watcher
    proc = subprocess.run([prog, str(db), srv.base, dev.token, "resolve", cid, "client"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "resolved", proc.stderr
    assert row(srv, "orders", 1) == ["1", "apple", "7"]
    assert wait_until(lambda: local(db, "SELECT qty FROM orders WHERE id = 1") == [(7,)], 5)
    assert local(db, "SELECT status FROM ferry_client_conflicts") == [("resolved",)]
    # a second resolution is refused with the server's reason
    proc = subprocess.run([prog, str(db), srv.base, dev.token, "resolve", cid, "server"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "HTTP 4" in proc.stderr, proc.stderr
    w.stop()
    # nothing is delivered twice: a new watcher sees no conflict line
    w = Watcher(prog, db, srv, dev.token)
    assert w.expect("round ").startswith("round 0")
    w.stop()
    assert not any(l.startswith("conflict") for l in list(w.lines.queue))
