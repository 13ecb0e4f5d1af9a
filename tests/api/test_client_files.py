"""Files through libferry: `ferry download` (a .part file resumed with a Range request,
the content checked against the server's SHA-256, progress as JSON lines or, on a
terminal, one line redrawn in place) and `ferry ls`."""

import hashlib
import json
import os
import pty
import signal
import subprocess

import pytest

from conftest import FERRY_BIN
from devsync import user
from test_transport import _upload_text

CONTENT = bytes(range(256)) * 4096  # 1 MiB


def ferry(srv, token, *args, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(FERRY_URL=srv.base, FERRY_TOKEN=token)
    return subprocess.run([FERRY_BIN, *args], capture_output=True, timeout=120, env=env, **kw)


@pytest.fixture
def files_server(server):
    token = user(server, "anna").token
    _upload_text(server, token, "docs/big.bin", CONTENT)
    return server, token


def test_download_verifies_and_reports_json_lines(files_server, tmp_path):
    srv, token = files_server
    out = tmp_path / "big.bin"
    proc = ferry(srv, token, "download", "docs/big.bin", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == CONTENT and not (tmp_path / "big.bin.part").exists()
    lines = [json.loads(l) for l in proc.stdout.decode().splitlines()]
    assert lines[-1] == {"event": "done", "path": "docs/big.bin", "file": str(out),
                         "bytes": len(CONTENT)}
    last = [l for l in lines if l["event"] == "progress"][-1]
    assert last["bytes"] == last["total"] == len(CONTENT) and last["items"] == 1
    assert proc.stderr == b""  # no bar when not on a terminal
    # FILE defaults to the path's last segment, in the working folder
    proc = ferry(srv, token, "download", "docs/big.bin", cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "big.bin").read_bytes() == CONTENT


def test_download_resumes_from_the_part_file_and_checks_the_sha256(files_server, tmp_path):
    srv, token = files_server
    out = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    # a .part with the right first half: only the rest is fetched
    part.write_bytes(CONTENT[:400_000])
    proc = ferry(srv, token, "download", "--json", "docs/big.bin", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == CONTENT
    # a .part whose bytes are wrong is resumed too (they are not fetched again), so the
    # SHA-256 check fails, says so and drops it; the next run starts afresh
    part2 = tmp_path / "again.bin.part"
    part2.write_bytes(b"x" * 400_000)
    proc = ferry(srv, token, "download", "docs/big.bin", str(tmp_path / "again.bin"))
    assert proc.returncode == 1 and b"SHA-256 mismatch" in proc.stderr, proc.stderr
    assert not part2.exists() and not (tmp_path / "again.bin").exists()
    proc = ferry(srv, token, "download", "docs/big.bin", str(tmp_path / "again.bin"))
    assert proc.returncode == 0 and (tmp_path / "again.bin").read_bytes() == CONTENT
    # a file that is not there
    proc = ferry(srv, token, "download", "docs/none.bin", str(tmp_path / "none"))
    assert proc.returncode == 1 and b"HTTP 404" in proc.stderr, proc.stderr


def test_download_draws_a_bar_on_a_terminal(files_server, tmp_path):
    srv, token = files_server
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(FERRY_URL=srv.base, FERRY_TOKEN=token)
    proc = subprocess.Popen([FERRY_BIN, "download", "docs/big.bin", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
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
    assert proc.returncode == 0
    # each frame clears the line it redraws; the last shows the whole file
    frames = screen.split(b"\r\x1b[2K")[1:]
    assert frames and frames[-1].startswith(b"download docs/big.bin [####################] 100%")
    assert b"1.0 MiB / 1.0 MiB" in frames[-1] and screen.endswith(b"\r\n")
    assert b"\n" not in b"".join(f.rstrip(b"\r\n") for f in frames)
    assert b"progress" not in out  # no JSON lines when the bar is drawn
    assert hashlib.sha256((tmp_path / "b").read_bytes()).hexdigest() == \
        hashlib.sha256(CONTENT).hexdigest()


def test_ls_lists_the_files(files_server):
    srv, token = files_server
    proc = ferry(srv, token, "ls", "docs/")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    assert [(f["path"], f["size"]) for f in files] == [("docs/big.bin", len(CONTENT))]
    assert json.loads(ferry(srv, token, "ls", "nothing/").stdout)["files"] == []


def upload_env(srv, token, home):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FERRY_") and k not in ("XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    env.update(FERRY_URL=srv.base, FERRY_TOKEN=token, HOME=str(home))
    return env


def test_upload_is_verified_and_listed(server, tmp_path):
    token = user(server, "anna").token
    src = tmp_path / "photo.bin"
    data = os.urandom(2_500_000)
    src.write_bytes(data)
    proc = subprocess.run([FERRY_BIN, "upload", str(src), "pics/photo.bin"], capture_output=True,
                          timeout=120, env=upload_env(server, token, tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in proc.stdout.decode().splitlines()]
    assert lines[-1] == {"event": "done", "file": str(src), "path": "pics/photo.bin",
                         "bytes": len(data)}
    entry = server.get("/api/v1/files/pics/photo.bin", token=token).json()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    assert not list((tmp_path / ".local/state/ferry/uploads").iterdir())  # state removed
    back = tmp_path / "back.bin"
    assert ferry(server, token, "download", "pics/photo.bin", str(back)).returncode == 0
    assert back.read_bytes() == data


def test_upload_resumes_after_ctrl_c(server, tmp_path):
    token = user(server, "anna").token
    src = tmp_path / "big.bin"
    data = os.urandom(48 * 1024 * 1024)
    src.write_bytes(data)
    env = upload_env(server, token, tmp_path)
    cmd = [FERRY_BIN, "upload", "--json", str(src), "big/one.bin"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    while True:  # Ctrl-C once some parts are on the server
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "progress" and line["total"] == len(data), line
        if line["bytes"] > 0:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"interrupted; run the same command again" in err, err
    states = list((tmp_path / ".local/state/ferry/uploads").iterdir())
    assert len(states) == 1
    url = json.loads(states[0].read_text())["url"]
    head = server.session.head(url, headers={"Tus-Resumable": "1.0.0",
                                             "Authorization": f"Bearer {token}"})
    sent = int(head.headers["Upload-Offset"])
    assert 0 < sent < len(data), sent
    # the rerun goes on from the server's offset
    proc = subprocess.run(cmd, capture_output=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in proc.stdout.decode().splitlines()]
    assert lines[0]["bytes"] == sent, (lines[0], sent)
    entry = server.get("/api/v1/files/big/one.bin", token=token).json()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert not states[0].exists()
