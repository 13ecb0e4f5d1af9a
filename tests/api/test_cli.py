"""The ferry command: version and help, `ferry token` against a running server's store,
and where settings come from (config file < FERRY_* environment < flags)."""

import json
import re

import pytest

from conftest import run_ferry, sha256_hex

TOKENS = "/api/v1/admin/tokens"


# --- version and help ---------------------------------------------------------------------


def test_version():
    p = run_ferry("--version")
    assert p.returncode == 0, p.stderr
    assert re.match(r"^ferry \d+\.\d+\.\d+\S*$", p.stdout.strip()), p.stdout


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_help(args):
    p = run_ferry(*args)
    assert p.returncode == 0, p.stderr
    assert "--listen" in p.stdout and "FERRY_LISTEN" in p.stdout
    assert "--rate-limit" in p.stdout and "FERRY_RATE_LIMIT" in p.stdout


def test_no_command_is_an_error():
    p = run_ferry()
    assert p.returncode != 0
    assert "usage" in p.stderr


def test_unknown_command_is_an_error():
    p = run_ferry("frobnicate")
    assert p.returncode != 0
    assert "frobnicate" in p.stderr


# --- ferry token, next to a running server -------------------------------------------------


def store_args(srv):
    """The flags that point a ferry client command at srv's store."""
    args = ["--data-dir", srv.data_dir]
    if srv.db_url:
        args += ["--db", srv.db_url]
    return args


def test_token_commands_work_against_a_running_server(server):
    p = run_ferry("token", "create", "--role", "user", "--name", "cli", "--user", "bob",
                  *store_args(server))
    assert p.returncode == 0, p.stderr
    secret = p.stdout.strip()
    assert re.match(r"^fy_[A-Za-z0-9_-]{43,}$", secret), p.stdout
    assert secret not in p.stderr

    # The running server accepts it at once.
    assert server.get("/api/v1/metrics", token=secret).status_code == 200
    assert server.get(TOKENS, token=secret).status_code == 403  # a user, not an admin

    p = run_ferry("token", "list", *store_args(server))
    assert p.returncode == 0, p.stderr
    listing = json.loads(p.stdout)
    assert isinstance(listing, list)
    (mine,) = [t for t in listing if t["name"] == "cli"]
    assert mine["role"] == "user" and mine["user_id"] == "bob" and mine["revoked"] is False
    assert secret not in p.stdout and sha256_hex(secret) not in p.stdout
    assert server.admin_token not in p.stdout
    assert sha256_hex(server.admin_token) not in p.stdout

    p = run_ferry("token", "revoke", mine["id"], *store_args(server))
    assert p.returncode == 0, p.stderr
    assert server.get("/api/v1/metrics", token=secret).status_code == 401

    p = run_ferry("token", "revoke", "tok_000000000000000000000000", *store_args(server))
    assert p.returncode != 0
    assert "tok_000000000000000000000000" in p.stderr


@pytest.mark.sqlite_only
def test_device_token_from_cli(server):
    p = run_ferry("token", "create", "--role", "device", "--name", "till", "--user", "bob",
                  "--device", "till-7", *store_args(server))
    assert p.returncode == 0, p.stderr
    secret = p.stdout.strip()
    assert secret.startswith("fyd_")
    r = server.get(TOKENS, token=secret)
    assert r.status_code == 403  # authenticated as a device, which is not an admin


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args,mentions", [
    (["--name", "x"], "--role"),
    (["--role", "user"], "--name"),
    (["--role", "root", "--name", "x"], "role"),
    (["--role", "user", "--name", "x"], "user"),
    (["--role", "admin", "--name", "x", "--expires-in", "-3"], "--expires-in"),
])
def test_token_create_rejects_bad_arguments(tmp_path, args, mentions):
    p = run_ferry("token", "create", *args, "--data-dir", str(tmp_path / "d"))
    assert p.returncode != 0
    assert mentions in p.stderr, p.stderr
    assert p.stdout == ""


# --- where settings come from --------------------------------------------------------------


def rate_limit_of(srv):
    r = srv.get("/api/v1/metrics", token=srv.admin_token)
    assert r.status_code == 200, r.text
    return r.headers["X-RateLimit-Limit"]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "ferry.conf"
    path.write_text("# ferry settings\n\nrate-limit = 7\n  max-body = 64K  \n")
    return str(path)


@pytest.mark.sqlite_only
def test_config_file_by_flag(make_server, config_file):
    assert rate_limit_of(make_server("--config", config_file)) == "7"


@pytest.mark.sqlite_only
def test_config_file_by_environment(make_server, config_file):
    assert rate_limit_of(make_server(env={"FERRY_CONFIG": config_file})) == "7"


@pytest.mark.sqlite_only
def test_environment_overrides_config_file(make_server, config_file):
    srv = make_server("--config", config_file, env={"FERRY_RATE_LIMIT": "8"})
    assert rate_limit_of(srv) == "8"


@pytest.mark.sqlite_only
def test_flag_overrides_environment_and_file(make_server, config_file):
    srv = make_server("--rate-limit", "9",
                      env={"FERRY_CONFIG": config_file, "FERRY_RATE_LIMIT": "8"})
    assert rate_limit_of(srv) == "9"
    # The flag wins wherever it stands relative to --config, and --name=value works too.
    srv2 = make_server("--rate-limit=11", "--config", config_file)
    assert rate_limit_of(srv2) == "11"


@pytest.mark.sqlite_only
def test_file_setting_without_override_still_applies(make_server, config_file):
    """max-body = 64K from the file is in force while the environment sets another key."""
    srv = make_server("--config", config_file, env={"FERRY_RATE_LIMIT": "8"})
    big = b'{"name":"x","role":"admin","pad":"' + b"x" * (70 * 1024) + b'"}'
    r = srv.post(TOKENS, token=srv.admin_token, data=big,
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def serve_fails(tmp_path, *args, env=None):
    p = run_ferry("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), *args,
                  env=env, timeout=20)
    assert p.returncode != 0, f"ferry serve {args} should have failed:\n{p.stdout}{p.stderr}"
    assert "listening" not in p.stdout
    return p.stderr


@pytest.mark.parametrize("args,env,mentions", [
    (["--bogus", "1"], None, "--bogus"),
    (["--rate-limit", "abc"], None, "rate-limit"),
    (["--rate-limit", "-1"], None, "rate-limit"),
    (["--max-body", "lots"], None, "max-body"),
    (["--metrics-auth", "maybe"], None, "metrics-auth"),
    (["--rate-limit"], None, "rate-limit"),
    (["stray"], None, "stray"),
    ([], {"FERRY_RATE_LIMIT": "abc"}, "FERRY_RATE_LIMIT"),
    (["--db", "mysql://x"], None, "sqlite: or postgres://"),
], ids=["unknown-flag", "rate-not-number", "rate-negative", "size-not-size",
        "bool-not-bool", "missing-value", "positional", "env-not-number", "db-scheme"])
def test_bad_settings_fail_naming_the_setting(tmp_path, args, env, mentions):
    assert mentions in serve_fails(tmp_path, *args, env=env)


def test_bad_config_file_names_file_and_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("rate-limit = 5\nno-such-setting = 1\n")
    err = serve_fails(tmp_path, "--config", str(path))
    assert f"{path}:2" in err and "no-such-setting" in err

    path.write_text("rate-limit = five\n")
    err = serve_fails(tmp_path, "--config", str(path))
    assert f"{path}:1" in err and "rate-limit" in err

    err = serve_fails(tmp_path, "--config", str(tmp_path / "missing.conf"))
    assert "missing.conf" in err
