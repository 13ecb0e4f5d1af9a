"""The ferry command: version and help, `ferry token` against a running server's store,
where settings come from (config file < FERRY_* environment < flags), and the command
line's conventions: help for every subcommand, exit codes (0 ok, 1 failed, 2 usage),
one-line errors, and no database created by anything but `ferry serve`."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import FERRY_BIN, REPO, child_env, run_ferry, sha256_hex

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
    # Another process's revocation reaches the server within --token-cache-ttl (5 s).
    deadline = time.monotonic() + 8
    while server.get("/api/v1/metrics", token=secret).status_code == 200:
        assert time.monotonic() < deadline, "revoked token still accepted after the TTL"
        time.sleep(0.2)
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


# --- exit codes, help and one-line errors (every subcommand) ----------------------------------

COMMANDS = ["serve", "token", "sites"]


def one_line(text):
    """The single line of text (it must have exactly one)."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_no_command_exits_2_with_one_line():
    p = run_ferry()
    assert p.returncode == 2
    assert p.stdout == ""
    assert "usage" in one_line(p.stderr) and "ferry --help" in p.stderr


def test_unknown_command_exits_2():
    p = run_ferry("frobnicate")
    assert (p.returncode, p.stdout) == (2, "")
    assert one_line(p.stderr) == "ferry: unknown command 'frobnicate' (see 'ferry --help')"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", ["flag", "short", "help-command", "after-arguments"])
def test_every_subcommand_has_help(command, how):
    args = {"flag": [command, "--help"], "short": [command, "-h"],
            "help-command": ["help", command],
            "after-arguments": [command, "list", "--data-dir", "/nonexistent", "--help"]}[how]
    p = run_ferry(*args)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.startswith(f"usage: ferry {command}"), p.stdout
    assert not os.path.exists("/nonexistent")


def test_help_names_every_command_and_option():
    p = run_ferry("help")
    assert p.returncode == 0 and p.stderr == ""
    for command in COMMANDS:
        assert f"\n  {command} " in p.stdout, p.stdout
    for option in ("--log-level", "--log-format", "--log-file", "FERRY_LOG_FILE"):
        assert option in p.stdout
    p = run_ferry("token", "--help")
    for option in ("--role", "--name", "--user", "--device", "--expires-in", "--tables"):
        assert option in p.stdout
    p = run_ferry("sites", "--help")
    for word in ("pull ID", "--strategy", "--incremental", "--incoming-mode", "transfers ID"):
        assert word in p.stdout


def test_help_for_an_unknown_command_is_a_usage_error():
    p = run_ferry("help", "frobnicate")
    assert (p.returncode, p.stdout) == (2, "")
    assert "frobnicate" in one_line(p.stderr)


@pytest.mark.parametrize("args,message", [
    (["serve", "--bogus"], "unknown option '--bogus'"),
    (["serve", "--bogus=1"], "unknown option '--bogus'"),
    (["serve", "-x"], "unknown option '-x'"),
    (["serve", "stray"], "unexpected argument 'stray'"),
    (["serve", "--rate-limit"], "option '--rate-limit' needs a value"),
    (["serve", "--rate-limit", "abc"], "rate-limit must be a whole number"),
    (["serve", "--log-level", "loud"], "log-level must be debug, info, warn or error, not 'loud'"),
    (["serve", "--log-format", "xml"], "log-format must be json or text, not 'xml'"),
    (["token"], "which command"),
    (["token", "frob"], "unknown command 'frob'"),
    (["token", "revoke"], "revoke needs one token id"),
    (["token", "list", "extra"], "unexpected argument 'extra'"),
    (["token", "list", "--role", "admin"], "--role applies to token create only"),
    (["token", "create", "--name", "x"], "--role and --name"),
    (["token", "create", "--role", "root", "--name", "x"], "role must be admin, user or device"),
    (["token", "create", "--role", "user", "--name", "x"], "a user token needs a user"),
    (["token", "create", "--role", "admin", "--name", "x", "--expires-in", "soon"],
     "--expires-in must be a number of seconds"),
    (["sites"], "which command"),
    (["sites", "frob"], "unknown command 'frob'"),
    (["sites", "show"], "sites show needs a connection id"),
    (["sites", "list", "--strategy", "merge"], "sites list takes no --strategy"),
    (["sites", "pull", "c1", "--incremental=yes"], "option '--incremental' takes no value"),
])
def test_usage_errors_exit_2_with_one_line_and_a_hint(tmp_path, args, message):
    data = tmp_path / "d"
    p = run_ferry(args[0], "--data-dir", str(data), "--listen", "127.0.0.1:0", *args[1:])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == ""
    line = one_line(p.stderr)
    command = args[0]
    assert line.startswith(f"ferry {command}: "), line
    assert message in line, line
    assert line.endswith(f"(see 'ferry {command} --help')"), line
    assert not data.exists()  # nothing was opened or created


# --- commands other than serve never create a data folder or database --------------------------


@pytest.mark.parametrize("args", [["token", "list"], ["token", "revoke", "tok_x"],
                                  ["token", "create", "--role", "admin", "--name", "x"],
                                  ["sites", "list"], ["sites", "show", "c1"]])
def test_missing_data_folder_is_refused(tmp_path, args):
    typo = tmp_path / "typo"
    p = run_ferry(*args, "--data-dir", str(typo))
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr) == (f"ferry: data folder {typo} does not exist"
                                  " (give the server's --data-dir)")
    assert not typo.exists()


@pytest.mark.sqlite_only
def test_missing_database_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_ferry("token", "list", "--data-dir", str(empty))
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr).startswith(f"ferry: no database at {empty}/ferry.db")
    assert os.listdir(empty) == []

    other = tmp_path / "other.db"
    p = run_ferry("sites", "list", "--data-dir", str(empty), "--db", f"sqlite:{other}")
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr).startswith(f"ferry: no database at {other}")
    assert not other.exists() and os.listdir(empty) == []


@pytest.mark.postgres_only
def test_missing_postgres_database_is_refused(tmp_path, pg_cluster, backend):
    url = pg_cluster.url("ferry_no_such_db")
    p = run_ferry("token", "list", "--db", url, "--data-dir", str(tmp_path / "d"))
    assert (p.returncode, p.stdout) == (1, "")
    line = one_line(p.stderr)
    assert line.startswith("ferry: cannot connect to PostgreSQL") and "does not exist" in line
    assert pg_cluster.psql("SELECT 1 FROM pg_database WHERE datname = 'ferry_no_such_db'") == []
    assert not (tmp_path / "d").exists()


def test_runtime_failure_exits_1(server):
    p = run_ferry("token", "revoke", "tok_000000000000000000000000", *store_args(server))
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr) == "ferry: no token with id 'tok_000000000000000000000000'"
    p = run_ferry("sites", "show", "c_nope", *store_args(server))
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr) == "ferry: no site connection 'c_nope'"


# --- serve: clear one-line start-up errors ------------------------------------------------------


def serve_error(tmp_path, *args, data=None, **kw):
    """Runs ferry serve expecting exit 1; returns its one stderr line."""
    data = data or str(tmp_path / "d")
    p = run_ferry("serve", "--listen", kw.pop("listen", "127.0.0.1:0"), "--data-dir", data,
                  *args, timeout=20, **kw)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "listening" not in p.stdout
    return one_line(p.stderr)


@pytest.mark.sqlite_only
def test_port_in_use(tmp_path, make_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = serve_error(tmp_path, listen=f"127.0.0.1:{port}")
    assert line == f"ferry: cannot listen on 127.0.0.1:{port}: Address already in use"
    # and when another ferry holds it
    first = make_server()
    line = serve_error(tmp_path, listen=f"127.0.0.1:{first.port}")
    assert line == f"ferry: cannot listen on 127.0.0.1:{first.port}: Address already in use"


def test_data_folder_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert serve_error(tmp_path, data=str(f)) == f"ferry: data folder {f} is not a folder"
    line = serve_error(tmp_path, data=str(f / "sub"))
    assert line == f"ferry: cannot create {f}/sub: Not a directory"


def test_unwritable_data_folder(tmp_path):
    """The folder exists but ferry may not create files in it (as root: run as nobody)."""
    base = tmp_path / "ro"
    data = base / "data"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        for path in [tmp_path, *tmp_path.parents]:  # let nobody reach it
            mode = os.stat(path).st_mode
            if mode & 0o005 == 0o005:
                break
            os.chmod(path, mode | 0o005)
        os.chmod(data, 0o755)
        p = subprocess.run(["runuser", "-u", "nobody", "--", FERRY_BIN, "serve", "--listen",
                            "127.0.0.1:0", "--data-dir", str(data)], env=child_env(),
                           capture_output=True, text=True, timeout=20)
    else:
        os.chmod(data, 0o555)
        p = run_ferry("serve", "--listen", "127.0.0.1:0", "--data-dir", str(data), timeout=20)
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr) == f"ferry: data folder {data} is not writable: Permission denied"
    assert os.listdir(data) == []


def test_log_file_that_cannot_be_opened(tmp_path):
    path = tmp_path / "no-such-folder" / "ferry.log"
    line = serve_error(tmp_path, "--log-file", str(path))
    assert line == f"ferry: cannot open log file {path}: No such file or directory"
    assert not (tmp_path / "d").exists()  # refused before anything was made


@pytest.mark.parametrize("url,message", [
    ("mysql://x", "ferry: database URL must start with sqlite: or postgres://"),
    ("postgres://u:pw-123@127.0.0.1:notaport/x",
     "ferry: cannot connect to PostgreSQL: invalid integer value \"notaport\""),
    ("postgres://u:pw-123@127.0.0.1:1/x",
     "ferry: cannot connect to PostgreSQL: connection to server at \"127.0.0.1\", port 1"
     " failed: Connection refused"),
], ids=["scheme", "unparsable", "unreachable"])
def test_bad_db_url(tmp_path, url, message):
    line = serve_error(tmp_path, "--db", url)
    assert line.startswith(message), line
    assert "pw-123" not in line
    p = run_ferry("token", "list", "--db", url)
    assert (p.returncode, p.stdout) == (1, "")
    assert one_line(p.stderr) == line


def test_man_page_describes_every_command_and_setting():
    """packaging/ferry.1 keeps up with the option table: every setting `ferry serve
    --help` lists, with its environment variable, and every command's own options."""
    with open(os.path.join(REPO, "packaging", "ferry.1")) as f:
        page = f.read().replace("\\-", "-")
    settings = re.findall(r"^  --([a-z-]+)", run_ferry("serve", "--help").stdout, re.M)
    envs = re.findall(r"\(env (FERRY_[A-Z_]+)", run_ferry("serve", "--help").stdout)
    assert len(settings) == len(envs) > 30
    for name in settings:
        assert f"--{name}" in page, name
    for env in envs:
        assert env in page, env
    for command in ("serve", "token create", "token list", "token revoke", "sites list",
                    "sites pull", "sites settings", "sites create", "sites transfers"):
        assert command in page, command
    for option in ("--role", "--expires-in", "--tables", "--strategy", "--incremental",
                   "--incoming-mode", "--allowed", "--excluded"):
        assert option in page, option
