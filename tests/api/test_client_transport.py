"""libferry over HTTPS (ferry serve --tls-cert/--tls-key with a self-signed certificate
made here; --cacert trusts it, nothing else does) and with a JWT (HS256, --jwt-secret)
as the credential of a user acting for a registered device (--device)."""

import json
import sqlite3
import subprocess

from conftest import FERRY_BIN, make_jwt
from devsync import Client, row
from test_client import device, start
from test_transport import make_cert

SECRET = "client-jwt-secret-0123456789"


def sync(base, token, db, *extra):
    return subprocess.run([FERRY_BIN, "sync", "--url", base, "--token", token, *extra, str(db)],
                          capture_output=True, text=True, timeout=120)


def test_sync_over_https_with_a_private_ca(make_server, tmp_path):
    cert, key = make_cert(tmp_path, "server")
    srv = start(make_server, "--tls-cert", str(cert), "--tls-key", str(key))
    assert srv.base.startswith("https://")
    srv.session.trust_env, srv.session.verify = False, str(cert)
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 3)")
    phone = device(srv)
    db = tmp_path / "phone.db"
    # the certificate is not trusted by default: refused, and said so
    proc = sync(srv.base, phone.token, db)
    assert proc.returncode == 1 and "certificate" in proc.stderr.lower(), proc.stderr
    proc = sync(srv.base, phone.token, db, "--cacert", str(cert))
    assert proc.returncode == 0 and json.loads(proc.stdout)["pulled"] == 1, proc.stderr
    con = sqlite3.connect(db)
    with con:
        con.execute("INSERT INTO orders VALUES (2, 'pear', 1)")
    con.close()
    proc = sync(srv.base, phone.token, db, "--cacert", str(cert))
    assert proc.returncode == 0 and json.loads(proc.stdout)["pushed"] == 1, proc.stderr
    assert row(srv, "orders", 2) == ["2", "pear", "1"]


def test_sync_with_a_jwt_for_a_registered_device(make_server, tmp_path):
    srv = start(make_server, "--jwt-secret", SECRET)
    srv.db_exec("INSERT INTO orders VALUES (1, 'apple', 3)")
    jwt = make_jwt({"sub": "anna"}, SECRET)
    anna = Client(srv, jwt)
    r = anna.post("/devices", json={"name": "laptop"})
    assert r.status_code == 200, r.text
    dev_id = r.json()["id"]
    db = tmp_path / "laptop.db"
    # a user credential must say which device it acts for: reading works, acknowledging
    # (and pushing) does not
    proc = sync(srv.base, jwt, db)
    assert proc.returncode == 1 and "deviceId" in proc.stderr, proc.stderr
    proc = sync(srv.base, jwt, db, "--device", dev_id)
    assert proc.returncode == 0, proc.stderr
    assert anna.get("/devices/" + dev_id).json()["cursor"] == json.loads(proc.stdout)["cursor"]
    assert sqlite3.connect(db).execute("SELECT * FROM orders").fetchall() == [(1, "apple", 3)]
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE orders SET qty = 9 WHERE id = 1")
    con.close()
    proc = sync(srv.base, jwt, db, "--device", dev_id)
    assert proc.returncode == 0 and json.loads(proc.stdout)["pushed"] == 1, proc.stderr
    assert row(srv, "orders", 1) == ["1", "apple", "9"]
    # the push was the device's: its own change does not come back, its cursor moved
    proc = sync(srv.base, jwt, db, "--device", dev_id)
    assert json.loads(proc.stdout)["pulled"] == 0
    assert anna.get("/devices/" + dev_id).json()["cursor"] == json.loads(proc.stdout)["cursor"]
    # a forged token is refused as such
    proc = sync(srv.base, make_jwt({"sub": "anna"}, "wrong-secret-0123456789"), db,
                "--device", dev_id)
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr, proc.stderr
