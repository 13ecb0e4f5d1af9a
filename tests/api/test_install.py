"""`make install`'s rules: cmake --install of the tested build into a DESTDIR puts the
binary, the man page, the sample config and the systemd unit where a distribution
expects them, the installed binary runs, and the unit passes systemd-analyze verify."""

import os
import shutil
import subprocess

import pytest

from conftest import FERRY_BIN, REPO

pytestmark = pytest.mark.sqlite_only

BUILD_DIR = os.path.dirname(os.path.abspath(FERRY_BIN))


def cmake_install(destdir, prefix):
    env = dict(os.environ, DESTDIR=str(destdir))
    proc = subprocess.run(
        ["cmake", "--install", BUILD_DIR, "--prefix", prefix],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_install_puts_every_file_in_place(tmp_path):
    root = tmp_path / "root"
    cmake_install(root, "/usr")

    binary = root / "usr/bin/ferry"
    assert os.access(binary, os.X_OK)
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith("ferry ")

    man = root / "usr/share/man/man1/ferry.1"
    assert man.read_text().startswith(".TH FERRY 1")
    version = out.stdout.split()[1]
    assert f'"ferry {version}"' in man.read_text().splitlines()[0]

    conf = root / "etc/ferry/ferry.conf"
    assert conf.read_bytes() == open(os.path.join(REPO, "packaging/ferry.conf"), "rb").read()
    assert (root / "usr/share/doc/ferry/ferry.conf").exists()

    unit = (root / "usr/lib/systemd/system/ferry.service").read_text()
    assert "ExecStart=/usr/bin/ferry serve --config /etc/ferry/ferry.conf\n" in unit
    assert "@BINDIR@" not in unit and "@SYSCONFDIR@" not in unit
    for option in (
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "StateDirectory=ferry",
        "SystemCallFilter=@system-service",
    ):
        assert option + "\n" in unit


def test_install_under_local_prefix_and_keeps_existing_config(tmp_path):
    root = tmp_path / "root"
    cmake_install(root, "/usr/local")
    unit = (root / "usr/local/lib/systemd/system/ferry.service").read_text()
    assert "ExecStart=/usr/local/bin/ferry serve --config /usr/local/etc/ferry/ferry.conf\n" in unit

    conf = root / "usr/local/etc/ferry/ferry.conf"
    conf.write_text("listen = 0.0.0.0:9000\n")
    out = cmake_install(root, "/usr/local")
    assert conf.read_text() == "listen = 0.0.0.0:9000\n"
    assert "Keeping" in out


def test_sample_config_is_accepted_by_ferry(tmp_path):
    """Every line of the sample is a valid setting: uncommented, ferry reads them all."""
    text = open(os.path.join(REPO, "packaging/ferry.conf")).read()
    lines = []
    for line in text.splitlines():
        if line.startswith("#") and "=" in line and not line.startswith("# "):
            line = line[1:]
        lines.append(line)
    data = tmp_path / "data"
    body = "\n".join(lines).replace("/var/lib/ferry", str(data))
    # Values the sample shows as examples that need a real environment.
    body = body.replace("file-root = /srv/ferry/share:/srv/ferry/mirror", f"file-root = {tmp_path}")
    body = body.replace("listen = 127.0.0.1:8080", "listen = 127.0.0.1:0")
    # The sample's tables are examples; syncing them needs them in the database.
    body = body.replace("allowed-tables = sales, products, customers", "")
    body = body.replace("conflict-policy = notes=merge,orders=manual", "")
    body = body.replace("sync-rule = orders=owner:user_id, catalog=shared", "")
    # HTTPS needs a real certificate and key: a self-signed pair made here.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    body = body.replace("/etc/ferry/tls/fullchain.pem", str(cert))
    body = body.replace("/etc/ferry/tls/privkey.pem", str(key))
    keys = [l.split("=")[0].strip() for l in body.splitlines() if "=" in l and l[0] != "#"]
    assert len(keys) >= 30
    conf = tmp_path / "ferry.conf"
    conf.write_text(body)
    proc = subprocess.Popen(
        [FERRY_BIN, "serve", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("ferry ") and "listening on https://127.0.0.1:" in first, (
            first + proc.stderr.read() if not first else first
        )
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    root = tmp_path / "root"
    cmake_install(root, "/usr")
    unit_text = (root / "usr/lib/systemd/system/ferry.service").read_text()
    # verify checks that ExecStart's binary exists: point it into the DESTDIR.
    unit = tmp_path / "ferry.service"
    unit.write_text(unit_text.replace("/usr/bin/ferry", str(root / "usr/bin/ferry")))
    env = dict(os.environ, MANPATH=str(root / "usr/share/man"))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ""


def bootstrap_set(name):
    proc = subprocess.run([os.path.join(REPO, "scripts", "bootstrap.sh"), "--list", name],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_make_run_installs_only_what_running_needs():
    run, test = bootstrap_set("run"), bootstrap_set("test")
    assert {"gcc", "cmake", "pkg-config", "libmicrohttpd-dev", "libjansson-dev",
            "libsqlite3-dev", "libpq-dev", "libssl-dev", "libjwt-dev",
            "libcurl4-openssl-dev"} <= run
    assert not run & {"postgresql", "nodejs", "npm", "libcmocka-dev", "python3-pytest",
                      "clang-format", "jq", "sqlite3"}
    assert run < test
    assert {"postgresql", "libcmocka-dev", "python3-pytest", "clang-format", "jq",
            "sqlite3", "curl"} <= test
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "run: bootstrap-run build" in makefile
    assert "@scripts/bootstrap.sh run" in makefile and "@scripts/bootstrap.sh test" in makefile
