"""The README's five-minute tour, run as printed against a real server, so that its
examples stay true.

The tour's shell blocks follow `<!-- tour: server -->` and `<!-- tour: client -->`
markers. Lines starting with `#>` are the output the commands above them print; every
other line is run by bash, in a fresh folder that stands in for a clone (`build/ferry` is
the binary under test, so the block's `make` line is not run). The server block's last
command starts the server; the client blocks run in one bash session, in order, and each
must print exactly its `#>` lines (`...` matches anything). Two things differ from a
reader's run: the server listens on a free port (FERRY_LISTEN, not a flag, so the command
stays as printed) and the client's `URL=` line names that port."""

import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import FERRY_BIN, REPO, SANITIZER_MARKERS, child_env, free_port

pytestmark = pytest.mark.sqlite_only

README = os.path.join(REPO, "README.md")
BLOCK = re.compile(r"<!-- tour: (server|client) -->\n```sh\n(.*?)```", re.S)
PRINTED_URL = "127.0.0.1:8080"
SEPARATOR = "----- ferry tour block -----"


def tour_blocks():
    """[(kind, [command lines], [expected output lines])] in README order."""
    blocks = []
    for kind, text in BLOCK.findall(open(README, encoding="utf-8").read()):
        commands, expected = [], []
        for line in text.splitlines():
            if line.startswith("#>"):
                expected.append(line[3:] if line.startswith("#> ") else line[2:])
            else:
                commands.append(line)
        blocks.append((kind, commands, expected))
    return blocks


def matches(expected, actual):
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def assert_output(expected, actual, what):
    assert len(actual) == len(expected) and all(
        matches(e, a) for e, a in zip(expected, actual)
    ), f"{what}: the README says\n  " + "\n  ".join(expected) + "\nbut it printed\n  " + (
        "\n  ".join(actual)
    )


def test_tour_blocks_are_found():
    kinds = [kind for kind, _, _ in tour_blocks()]
    assert kinds[0] == "server" and kinds.count("server") == 1
    assert kinds.count("client") >= 3
    # The tour covers what the README promises: a token, push, pull, upload, download.
    text = "\n".join("\n".join(c) for _, c, _ in tour_blocks())
    for needle in ("/api/v1/admin/tokens", "/sync/push", "/sync/pull", "/api/v1/sync/upload",
                   "/api/v1/sync/download/"):
        assert needle in text, needle


def test_readme_is_a_front_page():
    text = open(README, encoding="utf-8").read()
    assert len(text.splitlines()) <= 250
    assert not re.search(r"\.\./[s]hared\b", text) and not re.search(r"\bseeds? \d", text, re.I)
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not link.startswith(("http://", "https://")):
            assert os.path.exists(os.path.join(REPO, link)), f"README links to missing {link}"


def start_server(commands, clone, port):
    """Runs the server block: its setup lines, then its last line in the background."""
    assert commands[0] == "make", "the tour starts by building"
    setup, serve = commands[1:-1], commands[-1]
    assert serve.startswith("build/ferry serve"), serve
    subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(setup)], cwd=clone, check=True,
                   timeout=60)
    env = child_env({"FERRY_LISTEN": f"127.0.0.1:{port}"})
    return subprocess.Popen(["bash", "-c", "exec " + serve], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not all(shutil.which(t) for t in ("curl", "jq", "sqlite3")),
                    reason="the tour needs curl, jq and sqlite3 (scripts/bootstrap.sh test)")
def test_tour_runs_as_printed(tmp_path):
    blocks = tour_blocks()
    clone = tmp_path / "clone"
    (clone / "build").mkdir(parents=True)
    os.symlink(FERRY_BIN, clone / "build" / "ferry")
    port = free_port()

    _, server_commands, server_expected = blocks[0]
    proc = start_server(server_commands, clone, port)
    try:
        printed = [proc.stdout.readline().rstrip("\n") for _ in server_expected]
        want = [line.replace(PRINTED_URL, f"127.0.0.1:{port}") for line in server_expected]
        assert_output(want, printed, "the server")

        script = ["set -eo pipefail"]
        for _, commands, _ in blocks[1:]:
            for line in commands:
                if line == f"URL=http://{PRINTED_URL}":
                    line = f"URL=http://127.0.0.1:{port}"
                script.append(line)
            script.append(f"echo '{SEPARATOR}'")
        run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=clone, capture_output=True,
                             text=True, timeout=120, env=child_env())
        assert run.returncode == 0, run.stdout + run.stderr
        outputs = run.stdout.split(SEPARATOR + "\n")
        assert outputs[-1] == ""
        for n, ((_, _, expected), out) in enumerate(zip(blocks[1:], outputs), start=1):
            assert_output(expected, out.splitlines(), f"client block {n}")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    for marker in SANITIZER_MARKERS:
        assert marker not in stderr, stderr
