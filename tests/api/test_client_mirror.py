"""`ferry mirror DIR [PREFIX]` (ferry_mirror): a folder kept equal to the server's files
from the files namespace of the feed. Files go up with `ferry upload` (tus); the mirror
downloads new and changed ones, removes deleted ones, restores local damage, never writes
through a symbolic link, and a run stopped by Ctrl-C resumes its partial download with a
Range request. Also `ferry jobs watch ID` on a directory sync session."""

import hashlib
import http.server
import json
import os
import pty
import signal
import socket
import subprocess
import threading
import time

from conftest import FERRY_BIN
from devsync import user
from test_client_files import upload_env
from test_dirsync import root, start, write  # noqa: F401 (root is a fixture)

BIG = os.urandom(3 << 20)


def ferry(srv, token, home, *args, url=None, **kw):
    env = upload_env(srv, token, home)
    if url:
        env["FERRY_URL"] = url
    return subprocess.run([FERRY_BIN, *args], capture_output=True, timeout=120, env=env, **kw)


def upload(srv, token, home, path, data):
    local = home / "up.bin"
    local.write_bytes(data)
    proc = ferry(srv, token, home, "upload", str(local), path)
    assert proc.returncode == 0, proc.stderr


def rounds(proc):
    return [json.loads(l) for l in proc.stdout.decode().splitlines()
            if json.loads(l)["event"] == "done"]


def tree(folder):
    out = {}
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".ferry-mirror"]
        for f in files:
            p = os.path.join(base, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def test_mirror_follows_uploads_changes_and_deletes(server, tmp_path):
    anna = user(server, "anna").token
    home = tmp_path / "home"
    home.mkdir()
    upload(server, anna, home, "docs/a.txt", b"first")
    upload(server, anna, home, "docs/sub/deep/b.bin", BIG)
    upload(server, anna, home, "other/c.txt", b"not under docs")
    out = tmp_path / "mirror"
    proc = ferry(server, anna, home, "mirror", str(out), "docs")
    assert proc.returncode == 0, proc.stderr
    done = rounds(proc)[-1]
    assert (done["downloaded"], done["removed"], done["files"], done["bytes"]) == \
        (2, 0, 2, 5 + len(BIG)), done
    assert tree(out) == {"a.txt": b"first", "sub/deep/b.bin": BIG}
    progress = [json.loads(l) for l in proc.stdout.decode().splitlines()][:-1]
    assert progress and progress[-1]["items"] == progress[-1]["itemsTotal"] == 2
    assert proc.stderr == b""  # no bar when not on a terminal

    # nothing changed: nothing fetched
    done = rounds(ferry(server, anna, home, "mirror", str(out), "docs"))[-1]
    assert (done["downloaded"], done["removed"], done["files"]) == (0, 0, 2), done

    # a new version, a deletion (its empty folders go too), a local edit and a local
    # extra file (the server never had it: left alone)
    upload(server, anna, home, "docs/a.txt", b"second version")
    r = server.delete("/api/v1/files/docs/sub/deep/b.bin", token=anna)
    assert r.status_code in (200, 204), r.text
    upload(server, anna, home, "docs/new.txt", b"new")
    (out / "extra.txt").write_bytes(b"mine")
    proc = ferry(server, anna, home, "mirror", str(out), "docs")
    assert proc.returncode == 0, proc.stderr
    done = rounds(proc)[-1]
    assert (done["downloaded"], done["removed"], done["files"]) == (2, 1, 2), done
    assert tree(out) == {"a.txt": b"second version", "new.txt": b"new", "extra.txt": b"mine"}
    assert not (out / "sub").exists()
    (out / "new.txt").write_bytes(b"damaged")
    (out / "a.txt").unlink()
    done = rounds(ferry(server, anna, home, "mirror", str(out), "docs"))[-1]
    assert done["downloaded"] == 2 and tree(out)["new.txt"] == b"new", done
    assert tree(out)["a.txt"] == b"second version"

    # the folder mirrors docs: another prefix is refused
    proc = ferry(server, anna, home, "mirror", str(out), "other")
    assert proc.returncode == 1 and b"mirrors 'docs'" in proc.stderr, proc.stderr

    # another user's files are not in anna's feed
    bob = user(server, "bob").token
    proc = ferry(server, bob, home, "mirror", str(tmp_path / "bob"))
    assert proc.returncode == 0 and tree(tmp_path / "bob") == {}, proc.stderr


def test_mirror_never_writes_through_a_symbolic_link(server, tmp_path):
    anna = user(server, "anna").token
    home = tmp_path / "home"
    home.mkdir()
    upload(server, anna, home, "pics/x/cat.txt", b"meow")
    upload(server, anna, home, "pics/top.txt", b"top")
    out, outside = tmp_path / "m", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "x")  # a folder the mirror needs is a link out of DIR
    proc = ferry(server, anna, home, "mirror", str(out), "pics")
    assert proc.returncode == 0, proc.stderr
    done = rounds(proc)[-1]
    assert done["skipped"] == 1 and done["downloaded"] == 1, done
    assert list(outside.iterdir()) == [] and (out / "top.txt").read_bytes() == b"top"


class SlowRelay:
    """A TCP relay that passes the server's answers at about 256 KiB/s."""

    def __init__(self, port):
        self.port_to = port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.port_to))
            threading.Thread(target=self.pump, args=(down, up, 0), daemon=True).start()
            threading.Thread(target=self.pump, args=(up, down, 0.03), daemon=True).start()

    @staticmethod
    def pump(src, dst, pause):
        try:
            while data := src.recv(8192):
                dst.sendall(data)
                time.sleep(pause)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def until(check, timeout):
    """Seconds until check() held (polled every 20 ms), or None after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_mirror_watch_waits_on_the_feed(server, tmp_path):
    """--watch parks one long poll on the feed's files namespace: an upload or a delete
    reaches the folder at once, and an idle mirror sends no listing or rescan."""
    anna = user(server, "anna").token
    home = tmp_path / "home"
    home.mkdir()
    upload(server, anna, home, "docs/a.txt", b"first")
    out = tmp_path / "w"
    proc = subprocess.Popen([FERRY_BIN, "mirror", "--watch", "3", str(out), "docs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=upload_env(server, anna, home))
    try:
        assert until(lambda: tree(out) == {"a.txt": b"first"}, 20) is not None
        # idle: only parked polls of the feed, each held about the 3 s asked for
        seen = len(server.log_lines())
        time.sleep(4.5)
        idle = server.log_lines()[seen:]
        assert {l["path"] for l in idle} == {"/api/v1/sync/changes"}, idle
        assert 1 <= len(idle) <= 2 and all(l["durationMs"] >= 2500 for l in idle), idle

        upload(server, anna, home, "docs/sub/b.txt", b"uploaded while watching")
        took = until(lambda: tree(out).get("sub/b.txt") == b"uploaded while watching", 2)
        assert took is not None, tree(out)
        r = server.delete("/api/v1/files/docs/a.txt", token=anna)
        assert r.status_code in (200, 204), r.text
        took = until(lambda: not (out / "a.txt").exists(), 2)
        assert took is not None, tree(out)
        assert tree(out) == {"sub/b.txt": b"uploaded while watching"}

        # Ctrl-C while parked ends it at once, cleanly
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        outs, err = proc.communicate(timeout=10)
        assert time.monotonic() - started < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and err == b"", err
    done = [json.loads(l) for l in outs.decode().splitlines()]
    done = [d for d in done if d["event"] == "done"]
    assert len(done) >= 3 and done[-1]["files"] == 1 and done[-1]["removed"] == 1, done


def test_mirror_stopped_by_ctrl_c_resumes_with_a_range_request(server, tmp_path):
    anna = user(server, "anna").token
    home = tmp_path / "home"
    home.mkdir()
    upload(server, anna, home, "big.bin", BIG)
    relay = SlowRelay(int(server.base.rsplit(":", 1)[1]))
    out = tmp_path / "m"
    env = upload_env(server, anna, home)
    env["FERRY_URL"] = relay.url
    proc = subprocess.Popen([FERRY_BIN, "mirror", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["bytes"] > 100_000:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        relay.close()
    assert proc.returncode == 1 and b"interrupted" in err, err
    parts = list((out / ".ferry-mirror").glob("*.part"))
    assert len(parts) == 1 and 100_000 <= parts[0].stat().st_size < len(BIG)
    had = parts[0].stat().st_size
    assert not (out / "big.bin").exists()
    # the rerun (straight to the server this time) goes on from the part
    proc = ferry(server, anna, home, "mirror", str(out))
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.decode().splitlines()[0])
    assert first["bytes"] >= had, first
    assert (out / "big.bin").read_bytes() == BIG and not list((out / ".ferry-mirror").glob("*.part"))


def test_mirror_draws_a_bar_on_a_terminal(server, tmp_path):
    anna = user(server, "anna").token
    home = tmp_path / "home"
    home.mkdir()
    upload(server, anna, home, "t/big.bin", BIG)
    master, slave = pty.openpty()
    proc = subprocess.Popen([FERRY_BIN, "mirror", str(tmp_path / "m"), "t"],
                            stdout=subprocess.PIPE, stderr=slave,
                            env=upload_env(server, anna, home))
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    screen = read_all(master)
    assert proc.returncode == 0
    frames = screen.split(b"\r\x1b[2K")[1:]
    assert frames and frames[-1].startswith(f"mirror {tmp_path / 'm'} [".encode()), frames[-1]
    assert b"] 100%" in frames[-1] and screen.endswith(b"\r\n")
    assert b"3.0 MiB / 3.0 MiB" in frames[-1], frames[-1]
    assert json.loads(out.decode().splitlines()[-1])["downloaded"] == 1
    assert b"progress" not in out


def read_all(master):
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    return screen


# --- ferry jobs watch --------------------------------------------------------------------


def test_jobs_watch_follows_a_session_to_its_end(make_server, root, tmp_path):  # noqa: F811
    srv = make_server("--file-root", str(root), "--rate-limit", "0")
    bob = srv.create_token(role="user", user_id="bob")["token"]
    src = root / "src"
    for i in range(50):
        write(src, f"d/f{i:03d}.txt", b"x" * 1000)
    sid = start(srv, src, root / "dst", token=bob)
    home = tmp_path / "home"
    home.mkdir()
    # a user follows the user's own session (the admin route is not theirs)
    proc = ferry(srv, bob, home, "jobs", "watch", sid)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in proc.stdout.decode().splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["status"] == "completed", lines
    assert lines[-1]["result"]["filesCopied"] == 50
    assert all(l["event"] == "progress" for l in lines[:-1])
    # an admin follows any job; a failing one exits 1 with the job's message
    bad = start(srv, root / "missing", root / "dst2", token=srv.admin_token)
    proc = ferry(srv, srv.admin_token, home, "jobs", "watch", bad)
    assert proc.returncode == 1, proc.stderr
    assert b"failed: " in proc.stderr and b"cannot be opened" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout.decode().splitlines()[-1])["status"] == "failed"
    # unknown jobs and bad command lines
    proc = ferry(srv, srv.admin_token, home, "jobs", "watch", "job_nope")
    assert proc.returncode == 1 and b"no such job" in proc.stderr, proc.stderr
    assert ferry(srv, bob, home, "jobs", "watch", "a/b").returncode == 2
    assert ferry(srv, bob, home, "jobs", "follow", sid).returncode == 2


def test_jobs_watch_draws_a_bar_on_a_terminal(make_server, root, tmp_path):  # noqa: F811
    srv = make_server("--file-root", str(root), "--rate-limit", "0")
    src = root / "src"
    write(src, "big.bin", os.urandom(4 << 20))
    sid = start(srv, src, root / "dst")
    master, slave = pty.openpty()
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen([FERRY_BIN, "jobs", "watch", sid], stdout=subprocess.PIPE,
                            stderr=slave, env=upload_env(srv, srv.admin_token, home))
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    screen = read_all(master)
    assert proc.returncode == 0, screen
    frames = screen.split(b"\r\x1b[2K")[1:]
    assert frames and frames[-1].startswith(f"job {sid} [####################] 100%".encode())
    assert screen.endswith(b"\r\n") and b"progress" not in out
    assert json.loads(out.decode().splitlines()[-1])["status"] == "completed"


class HostileFeed(http.server.ThreadingHTTPServer):
    """A server that answers the mirror's feed with the given changes and every download
    with body: what a hostile (or compromised) server can send a mirror."""

    def __init__(self, changes, body):
        self.changes, self.body, self.sent = changes, body, 0
        super().__init__(("127.0.0.1", 0), HostileHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class HostileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/api/v1/sync/changes"):
            data = json.dumps({"changes": self.server.changes, "cursor": 9,
                               "hasMore": False}).encode()
        else:
            data = self.server.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for at in range(0, len(data), 65536):
                self.wfile.write(data[at:at + 65536])
                self.server.sent += min(65536, len(data) - at)
        except OSError:
            self.close_connection = True


def hostile_mirror(tmp_path, changes, body):
    """The mirror's run against a HostileFeed, and the download bytes the server sent."""
    srv = HostileFeed(changes, body)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env.update(FERRY_URL=srv.url, FERRY_TOKEN="t", HOME=str(tmp_path))
        return subprocess.run([FERRY_BIN, "mirror", str(tmp_path / "m")], capture_output=True,
                              timeout=60, env=env), srv.sent
    finally:
        srv.shutdown()
        srv.server_close()


def test_mirror_of_a_hostile_server_writes_nothing_outside_the_folder(tmp_path):
    """The feed's paths and SHA-256s come from the server: a sha256 that is a path (64
    characters of "../" and "./" naming a file beside the folder) is refused; a path with
    "..", an absolute path, and bytes that do not match their sha256 (or are longer than
    the size the feed gave) write and remove nothing outside the folder and leave no file
    in it."""
    out, outside = tmp_path / "m", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.part"
    victim.write_bytes(b"precious")
    sneaky = "../../" + "./" * 22 + "outside/victim"
    assert len(sneaky) == 64
    change = {"table": "files", "id": "evil.txt", "data": {"sha256": sneaky, "size": 1000}}
    proc, _ = hostile_mirror(tmp_path, [change], b"x" * 1000)
    assert proc.returncode != 0 and b"sha256" in proc.stderr, proc.stderr
    assert victim.read_bytes() == b"precious", proc.stderr

    sha = hashlib.sha256(b"x" * 10).hexdigest()
    changes = [{"table": "files", "id": p, "data": {"sha256": sha, "size": 10}}
               for p in ("../up.txt", "/abs.txt", "sub/../../up2.txt", "long.txt")]
    proc, sent = hostile_mirror(tmp_path, changes, b"x" * 10 + b"y" * 200_000_000)
    # the answers longer than the 10 bytes the feed gave are cut off, not stored and hashed
    assert sent < 20_000_000, sent
    assert sorted(p.name for p in outside.iterdir()) == ["victim.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "outside"]
    assert tree(out) == {}, proc.stderr
    assert not [p for p in (out / ".ferry-mirror").iterdir() if p.name.endswith(".part")]


def test_mirror_never_writes_through_a_link_planted_as_its_partial_file(tmp_path):
    """The partial file of a download is named by the content's SHA-256, which anyone can
    know: a symbolic link planted under that name in the state folder is replaced, never
    appended to through."""
    out, outside = tmp_path / "m", tmp_path / "outside"
    (out / ".ferry-mirror").mkdir(parents=True)
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"abc")
    body = b"0123456789"
    sha = hashlib.sha256(body).hexdigest()
    os.symlink(victim, out / ".ferry-mirror" / f"{sha}.part")
    change = {"table": "files", "id": "f.txt", "data": {"sha256": sha, "size": len(body)}}
    proc, _ = hostile_mirror(tmp_path, [change], body)
    assert victim.read_bytes() == b"abc", proc.stderr
    assert proc.returncode == 0 and tree(out) == {"f.txt": body}, proc.stderr

    # nor is the state database opened through a link planted under its name
    other = tmp_path / "other"
    (other / ".ferry-mirror").mkdir(parents=True)
    os.symlink(outside / "state.db", other / ".ferry-mirror" / "state.db")
    srv = HostileFeed([change], body)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env.update(FERRY_URL=srv.url, FERRY_TOKEN="t", HOME=str(tmp_path))
        proc = subprocess.run([FERRY_BIN, "mirror", str(other)], capture_output=True,
                              timeout=60, env=env)
    finally:
        srv.shutdown()
        srv.server_close()
    assert proc.returncode != 0 and b"state.db" in proc.stderr, proc.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
