#!/usr/bin/env python3
"""bench/http/longpoll.py - many idle long-polls by many users against one ferry: the
server's memory while they wait, how soon a push wakes the waiters it concerns, and how
long waking all of them at once takes.

  longpoll.py --url http://127.0.0.1:PORT --admin-token fya_... [--users 1000]
              [--devices 10] [--pushes 200] [--pid FERRY_PID] [--per-address 250]

ferry syncs two tables: --table (rule owner:owner, each user sees only its rows) and
--shared-table (rule shared, everyone sees every row). The bench makes --users user
tokens and registers --devices devices for each, then parks one long-poll per device (a
raw socket, keep-alive, GET /api/v1/sync/changes?cursor=<its cursor>&wait=60 with the
device's token; the sockets come from 127.0.0.2, 127.0.0.3, ... --per-address each, so
that ferry's --max-connections-per-ip applies as it would to many clients). Each answer
is read and the device parks again from the answer's cursor.

Then, one at a time, --pushes single-row pushes (POST /api/v1/sync/report) by the first
device of a random user into its own rows: the time from the push's sending (and from
its answer) to the answer of each of that user's other devices is recorded, with the CPU
time ferry used per push. Last, one push to the shared table wakes every device but the
pusher: the old everyone-wakes figure. Prints one RESULT line. Standard library only."""

import argparse
import asyncio
import concurrent.futures
import http.client
import json
import os
import random
import resource
import time


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


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Api:
    """Blocking JSON calls on one keep-alive connection per thread."""

    def __init__(self, url):
        self.host, self.port = url.split("//")[1].split(":")
        self.local = __import__("threading").local()

    def call(self, method, path, token, body=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, int(self.port),
                                                                timeout=30)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data)


def make_devices(api, admin, users, devices):
    """[(user index, device token)], devices of a user together."""
    def one_user(u):
        tok = api.call("POST", "/api/v1/admin/tokens", admin,
                       {"name": f"u{u}", "role": "user", "user_id": f"u{u}"})["token"]
        return [(u, api.call("POST", "/api/v1/sync/devices", tok,
                             {"name": f"u{u}-d{d}"})["token"]) for d in range(devices)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return [d for per_user in pool.map(one_user, range(users)) for d in per_user]


async def read_answer(reader):
    """One HTTP response: (status line, body bytes); Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in headers:
        return lines[0], await reader.readexactly(int(headers["content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return lines[0], body
        body += chunk[:-2]


class Bench:
    def __init__(self, a):
        self.a = a
        self.host, self.port = a.url.split("//")[1].split(":")
        self.parked = 0  # requests sent and not answered
        self.waiting = {}  # device index -> future for the time of its next answer with changes
        self.errors = []
        self.phase = "parking"  # where errors happen: parking, targeted, everyone

    async def poller(self, i, token, cursor):
        source = f"127.0.0.{2 + i // self.a.per_address}"
        try:
            reader, writer = await asyncio.open_connection(self.host, int(self.port),
                                                           local_addr=(source, 0))
        except OSError as e:
            self.errors.append(f"{self.phase}: connect: {e}")
            return
        while True:
            writer.write((f"GET /api/v1/sync/changes?cursor={cursor}&wait=60 HTTP/1.1\r\n"
                          f"Host: {self.host}\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
            self.parked += 1
            try:
                status, body = await read_answer(reader)
            except (OSError, asyncio.IncompleteReadError) as e:
                self.errors.append(f"{self.phase}: read: {e}")
                return
            now = time.monotonic()
            self.parked -= 1
            if not status.startswith("HTTP/1.1 200"):
                self.errors.append(f"{self.phase}: {status}")
                return
            page = json.loads(body)
            cursor = page["cursor"]
            waiting = self.waiting.pop(i, None) if page["changes"] else None
            if waiting and not waiting.done():
                waiting.set_result(now)

    def expect(self, devices):
        """Futures for the next answer with changes of each device."""
        loop = asyncio.get_running_loop()
        for d in devices:
            self.waiting[d] = loop.create_future()
        return {d: self.waiting[d] for d in devices}

    async def wait_for(self, futures, timeout):
        """The answer times of the devices that answered within timeout."""
        await asyncio.wait(futures.values(), timeout=timeout)
        return {d: f.result() for d, f in futures.items() if f.done()}


async def slow_clients(host, port, n, source):
    """n sockets from one address that send half a request and go silent: how many ferry
    holds (--max-connections-per-ip) and how soon /health answers another address."""
    socks = []
    for _ in range(n):
        try:
            r, w = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            continue
        w.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n".encode())
        socks.append((r, w))
    await asyncio.sleep(1.0)
    held = 0
    for r, _ in socks:
        try:
            held += await asyncio.wait_for(r.read(1), 0.01) != b""
        except asyncio.TimeoutError:
            held += 1  # still open, nothing to read
        except OSError:
            pass
    return held, socks


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--table", default="bench")
    ap.add_argument("--shared-table", default="shared")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--pushes", type=int, default=200)
    ap.add_argument("--per-address", type=int, default=250)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--slow", type=int, default=300)
    a = ap.parse_args()
    conns = a.users * a.devices
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, conns + 1024), hard))
    api = Api(a.url)
    t0 = time.monotonic()
    devs = make_devices(api, a.admin_token, a.users, a.devices)
    setup_s = time.monotonic() - t0
    head = api.call("GET", "/api/v1/sync/changes?cursor=0&limit=1000", devs[0][1])["cursor"]
    rss_idle = rss_mib(a.pid)
    b = Bench(a)
    loop = asyncio.get_running_loop()
    tasks = []
    t_open = time.monotonic()
    for i, (_, token) in enumerate(devs):
        tasks.append(asyncio.create_task(b.poller(i, token, head)))
        if i % 200 == 199:
            await asyncio.sleep(0.01)  # do not overflow the listen backlog
    while b.parked + len(b.errors) < conns and time.monotonic() - t_open < 50:
        await asyncio.sleep(0.1)
    # let ferry read and park every request: until it is idle (under 5% of a core)
    quiet_before = time.monotonic()
    while time.monotonic() - quiet_before < 40:
        cpu = cpu_s(a.pid)
        await asyncio.sleep(0.5)
        if cpu_s(a.pid) - cpu < 0.025:
            break
    await asyncio.sleep(a.settle)
    rss_parked = rss_mib(a.pid)
    opened = b.parked

    def push(token, table, row, _):
        return api.call("POST", "/api/v1/sync/report", token,
                        {"batchId": f"lp-{time.time_ns()}",
                         "operations": [{"table": table, "action": "upsert", "data": row}]})

    # targeted: a user's first device pushes its own row; its other devices must answer
    b.phase = "targeted"
    rng = random.Random(14)
    from_sent, from_answer, push_ms, missed = [], [], [], 0
    cpu_before, wall_before = cpu_s(a.pid), time.monotonic()
    done = 0
    for k in range(a.pushes):
        # the first long-polls expire 60 s after they were sent, all together, and every
        # one is answered and sent again: no push is timed during that storm
        if time.monotonic() > t_open + 55:
            break
        done += 1
        u = rng.randrange(a.users)
        first = u * a.devices
        others = range(first + 1, first + a.devices)
        futures = b.expect(others)
        t_sent = time.monotonic()
        await loop.run_in_executor(None, push, devs[first][1], a.table,
                                   {"id": f"r{u}", "owner": f"u{u}", "n": k}, k)
        t_answer = time.monotonic()
        push_ms.append((t_answer - t_sent) * 1000)
        got = await b.wait_for(futures, timeout=3.0)
        missed += len(others) - len(got)
        from_sent += [(t - t_sent) * 1000 for t in got.values()]
        from_answer += [(t - t_answer) * 1000 for t in got.values()]
        await asyncio.sleep(0.005)  # the woken devices park again
    cpu_push = (cpu_s(a.pid) - cpu_before) / max(1, done)
    wall_targeted = time.monotonic() - wall_before
    rss_after = rss_mib(a.pid)

    # slow clients from one more address, with every long-poll parked
    held, slow_socks = await slow_clients(b.host, int(b.port), a.slow, "127.0.1.1")
    t = time.monotonic()
    await loop.run_in_executor(None, lambda: api.call("GET", "/health", a.admin_token))
    health_ms = (time.monotonic() - t) * 1000
    for _, w in slow_socks:
        w.close()

    # everyone: a push to the shared table wakes every device but the pusher
    await asyncio.sleep(0.5)
    b.phase = "everyone"
    cpu_before = cpu_s(a.pid)
    futures = b.expect(range(1, conns))
    t_sent = time.monotonic()
    await loop.run_in_executor(None, push, devs[0][1], a.shared_table, {"id": "s1", "n": 1}, 0)
    got = await b.wait_for(futures, timeout=120)
    cpu_all = cpu_s(a.pid) - cpu_before
    all_ms = [(t - t_sent) * 1000 for t in got.values()]
    for t in tasks:
        t.cancel()
    print(f"RESULT conns={conns} users={a.users} devices={a.devices} opened={opened} "
          f"errors={len(b.errors)} setup_s={setup_s:.0f} rss_idle_mib={rss_idle:.1f} "
          f"rss_parked_mib={rss_parked:.1f} rss_after_mib={rss_after:.1f} "
          f"pushes={done} woken={len(from_sent)} missed={missed} "
          f"wake_p50_ms={pct(from_sent, 0.5):.2f} wake_p95_ms={pct(from_sent, 0.95):.2f} "
          f"wake_max_ms={max(from_sent, default=float('nan')):.2f} "
          f"after_answer_p50_ms={pct(from_answer, 0.5):.2f} "
          f"after_answer_p95_ms={pct(from_answer, 0.95):.2f} push_p50_ms={pct(push_ms, 0.5):.2f} "
          f"srv_cpu_per_push_ms={cpu_push * 1000:.2f} targeted_wall_s={wall_targeted:.1f} "
          f"all_woken={len(all_ms)}/{conns - 1} all_p50_ms={pct(all_ms, 0.5):.0f} "
          f"all_p95_ms={pct(all_ms, 0.95):.0f} all_max_ms={max(all_ms, default=float('nan')):.0f} "
          f"all_srv_cpu_s={cpu_all:.2f} slow_held={held}/{a.slow} health_ms={health_ms:.1f} load={os.getloadavg()[0]:.1f}")
    if b.errors:
        phases = {}
        for e in b.errors:
            phases[e.split(":")[0]] = phases.get(e.split(":")[0], 0) + 1
        print("errors by phase:", phases, "first:", b.errors[:2])


asyncio.run(main())
