#!/usr/bin/env python3
"""bench/http/longpoll.py - many idle long-polls against one ferry, then one push: the
server's memory while they wait and how soon each is answered after the push.

  longpoll.py --url http://127.0.0.1:PORT --poll-token fyd_... --push-token fyd_...
              [--conns 10000] [--pid FERRY_PID] [--per-address 250]

Each poller is a raw socket (asyncio) sending one
GET /api/v1/sync/changes?cursor=<head>&wait=60 with the poll device's token; the sockets
come from 127.0.0.2, 127.0.0.3, ... (--per-address each), so that ferry's
--max-connections-per-ip applies as it would to many clients. Once all are parked, one
upsert is pushed with another device's token (POST /api/v1/sync/report), and the time
from the push's answer (and from its sending) to the first byte of each poller's answer
is recorded, with the CPU time ferry used from the push until the last answer (what the
wake costs, whatever else runs on the machine). Prints one RESULT line and a summary.
Standard library only."""

import argparse
import asyncio
import json
import os
import resource
import statistics
import time
import urllib.request


def rss_mib(pid):
    if not pid:
        return float("nan")
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid):
    """CPU seconds (user + system) the process has used so far."""
    if not pid:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(url, token, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


async def poller(i, host, port, request, per_address, opened, woke, errors):
    source = f"127.0.0.{2 + i // per_address}"
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError as e:
        errors.append(f"connect: {e}")
        return
    writer.write(request)
    await writer.drain()
    opened.append(i)
    try:
        first = await reader.read(64)
        woke.append(time.monotonic())
        if not first.startswith(b"HTTP/1.1 200"):
            errors.append(first[:40].decode(errors="replace"))
    except OSError as e:
        errors.append(f"read: {e}")
    writer.close()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--poll-token", required=True)
    ap.add_argument("--push-token", required=True)
    ap.add_argument("--table", default="bench")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--per-address", type=int, default=250)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--settle", type=float, default=3.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.conns + 1024), hard))
    host, port = a.url.split("//")[1].split(":")
    head = call(f"{a.url}/api/v1/sync/changes?cursor=0&limit=1000", a.poll_token)["cursor"]
    request = (f"GET /api/v1/sync/changes?cursor={head}&wait=60 HTTP/1.1\r\n"
               f"Host: {host}:{port}\r\nAuthorization: Bearer {a.poll_token}\r\n\r\n").encode()
    rss_idle = rss_mib(a.pid)
    opened, woke, errors = [], [], []
    t_open = time.monotonic()
    tasks = []
    for i in range(a.conns):
        tasks.append(asyncio.create_task(
            poller(i, host, int(port), request, a.per_address, opened, woke, errors)))
        if i % 200 == 199:
            await asyncio.sleep(0.01)  # do not overflow the listen backlog
    while len(opened) + len(errors) < a.conns and time.monotonic() - t_open < 120:
        await asyncio.sleep(0.1)
    await asyncio.sleep(a.settle)  # let ferry run and park every request
    parked_early = len(woke)
    rss_parked = rss_mib(a.pid)

    loop = asyncio.get_running_loop()
    cpu_before = cpu_s(a.pid)
    t_sent = time.monotonic()
    await loop.run_in_executor(None, lambda: call(
        f"{a.url}/api/v1/sync/report", a.push_token,
        {"batchId": f"lp-{time.time_ns()}",
         "operations": [{"table": a.table, "action": "upsert", "data": {"id": "1", "n": 1}}]}))
    t_pushed = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=90)
    cpu_wake = cpu_s(a.pid) - cpu_before
    rss_after = rss_mib(a.pid)
    late = [(t - t_pushed) * 1000 for t in woke[parked_early:]]
    since_sent = [(t - t_sent) * 1000 for t in woke[parked_early:]]
    print(f"RESULT conns={a.conns} opened={len(opened)} answered_before_push={parked_early} "
          f"woken={len(late)} errors={len(errors)} rss_idle_mib={rss_idle:.1f} "
          f"rss_parked_mib={rss_parked:.1f} rss_after_mib={rss_after:.1f} "
          f"push_ms={(t_pushed - t_sent) * 1000:.1f} "
          f"wake_p50_ms={pct(late, 0.5):.1f} wake_p95_ms={pct(late, 0.95):.1f} "
          f"wake_max_ms={max(late, default=float('nan')):.1f} "
          f"from_sent_p50_ms={pct(since_sent, 0.5):.1f} srv_cpu_wake_s={cpu_wake:.2f} "
          f"load={os.getloadavg()[0]:.1f}")
    if errors:
        print("first errors:", statistics.multimode(errors)[:3])


asyncio.run(main())
