"""The cluster commands of the CLI (typer's CliRunner) against fake API
nodes: tables for people, --json for scripts, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeapi import STATUS, FakeCluster, kv_json, members_json
from typer.testing import CliRunner, Result

from quorate.cli.main import app

CLEAN_ENV = {"QUORATE_ENDPOINT": None, "QUORATE_API_TOKEN": None, "QUORATE_TLS_CA": None, "QUORATE_TLS_CERT": None,
             "QUORATE_TLS_KEY": None}


def cli(*args: str, env: dict[str, str | None] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **(env or {})}, input=stdin)


def test_status_table(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/status", (200, STATUS))
    r = cli("status", "-e", n.url)
    assert r.exit_code == 0, r.output
    assert "node n1" in r.stdout and "leader" in r.stdout and "n1, n2, n3" in r.stdout
    assert "quorum" in r.stdout and "yes" in r.stdout
    assert "problem" not in r.stdout


def test_status_shows_problems(fake: FakeCluster) -> None:
    lost = {**STATUS, "role": "follower", "leader": None, "quorum": False,
            "problems": ["no quorum: n2 and n3 unreachable", "remove n3 to restore quorum"]}
    n = fake.node().on("GET", "/v1/status", (200, lost))
    r = cli("status", "-e", n.url)
    assert r.exit_code == 0
    assert "problem: no quorum: n2 and n3 unreachable" in r.stdout
    assert "problem: remove n3 to restore quorum" in r.stdout
    assert "none" in r.stdout  # the leader


def test_status_json_passes_the_answer_through(fake: FakeCluster) -> None:
    answer = {**STATUS, "future_field": {"x": 1}}
    n = fake.node().on("GET", "/v1/status", (200, answer))
    r = cli("status", "--json", "-e", n.url)
    assert r.exit_code == 0
    assert json.loads(r.stdout) == answer


def test_status_all_asks_every_member(fake: FakeCluster, dead_endpoint: str) -> None:
    a = fake.node()
    a.on("GET", "/v1/members", (200, members_json(("n1", a.url), ("n2", dead_endpoint))))
    a.on("GET", "/v1/status", (200, STATUS))
    r = cli("status", "--all", "--json", "-e", a.url)
    assert r.exit_code == 0, r.output
    first, second = json.loads(r.stdout)
    assert first == STATUS
    assert second["endpoint"] == dead_endpoint and second["error"].startswith("unavailable")
    r = cli("status", "--all", "-e", a.url)
    assert r.exit_code == 0 and "leader" in r.stdout and "unavailable" in r.stdout


def test_kv_put_get_del(fake: FakeCluster) -> None:
    n = fake.node()
    n.on("PUT", "/v1/kv/app/x", (200, {"revision": 7}))
    n.on("GET", "/v1/kv/app/x", (200, kv_json("app/x", "hello world", 7)))
    n.on("DELETE", "/v1/kv/app/x", (200, {"revision": 8}))
    r = cli("kv", "put", "app/x", "hello world", "-e", n.url, env={"QUORATE_API_TOKEN": "tok"})
    assert (r.exit_code, r.stdout) == (0, "revision 7\n")
    assert n.requests("PUT")[0].body == {"value": "hello world"}
    assert n.requests("PUT")[0].headers["Authorization"] == "Bearer tok"
    r = cli("kv", "get", "app/x", "-e", n.url)
    assert (r.exit_code, r.stdout) == (0, "hello world\n")
    r = cli("kv", "get", "app/x", "--json", "-e", n.url)
    assert json.loads(r.stdout) == kv_json("app/x", "hello world", 7)
    r = cli("kv", "del", "app/x", "--json", "-e", n.url)
    assert json.loads(r.stdout) == {"revision": 8}


def test_kv_put_reads_stdin_and_passes_prev_revision(fake: FakeCluster) -> None:
    n = fake.node().on("PUT", "/v1/kv/k", (200, {"revision": 2}))
    r = cli("kv", "put", "k", "-", "--prev-revision", "0", "--json", "-e", n.url, stdin="line1\nline2\n")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"revision": 2}
    assert n.requests("PUT")[0].body == {"value": "line1\nline2\n", "prev_revision": 0}


def test_cluster_errors_exit_1_with_code_and_message(fake: FakeCluster) -> None:
    n = fake.node()
    n.on("GET", "/v1/kv/nope", (404, {"error": "not_found", "message": "key 'nope' does not exist"}))
    n.on("PUT", "/v1/kv/k", (409, {"error": "revision_mismatch", "message": "prev_revision does not match",
                                   "current_revision": 9}))
    n.on("DELETE", "/v1/kv/nope", (404, {"error": "not_found", "message": "the key does not exist"}))
    r = cli("kv", "get", "nope", "-e", n.url)
    assert r.exit_code == 1 and "not_found" in r.stderr and r.stdout == ""
    r = cli("kv", "get", "nope", "--json", "-e", n.url)
    assert r.exit_code == 1 and json.loads(r.stdout)["error"] == "not_found"
    r = cli("kv", "del", "nope", "-e", n.url)
    assert r.exit_code == 1 and "not_found" in r.stderr
    r = cli("kv", "put", "k", "v", "--prev-revision", "3", "-e", n.url)
    assert r.exit_code == 1
    assert "revision_mismatch" in r.stderr and "current revision 9" in r.stderr
    r = cli("kv", "put", "k", "v", "--prev-revision", "3", "--json", "-e", n.url)
    assert json.loads(r.stdout) == {"error": "revision_mismatch", "message": "prev_revision does not match",
                                    "current_revision": 9}


def test_unreachable_is_exit_1_and_bad_usage_is_exit_2(dead_endpoint: str) -> None:
    r = cli("status", "-e", dead_endpoint)
    assert r.exit_code == 1 and "unavailable" in r.stderr
    assert cli("status", "-e", "ftp://nowhere").exit_code == 2
    assert cli("kv", "put", "k").exit_code == 2  # missing VALUE
    assert cli("kv", "frobnicate").exit_code == 2
    assert cli("kv", "put", "k", "v", "--prev-revision", "-1", "-e", dead_endpoint).exit_code == 2


def test_kv_ls_table_and_json(fake: FakeCluster) -> None:
    listing = {"revision": 12, "kvs": [kv_json("app/a", "1", 3), kv_json("app/b", "2", 12)]}
    n = fake.node().on("GET", "/v1/kv", (200, listing))
    r = cli("kv", "ls", "app/", "-e", n.url)
    assert r.exit_code == 0
    assert "2 keys at revision 12" in r.stdout and "app/a" in r.stdout and "app/b" in r.stdout
    r = cli("kv", "ls", "app/", "--limit", "5", "--json", "-e", n.url)
    assert json.loads(r.stdout) == listing
    assert n.seen[-1].query == {"prefix": "app/", "limit": "5"}


def test_kv_watch_prints_events_from_now(fake: FakeCluster) -> None:
    n = fake.node()
    n.on("GET", "/v1/kv", (200, {"revision": 20, "kvs": []}))
    n.on("GET", "/v1/watch", (200, {"events": [
        {"type": "put", "key": "app/a", "revision": 21, "value": "x", "create_revision": 21},
        {"type": "delete", "key": "app/b", "revision": 22, "value": None, "create_revision": 0},
        {"type": "put", "key": "app/c", "revision": 23, "value": "y", "create_revision": 23}],
        "next_revision": 24}))
    r = cli("kv", "watch", "app/", "--count", "2", "-e", n.url)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["21 put app/a = x", "22 delete app/b"]
    assert n.requests("GET", "/v1/watch")[0].query["from_revision"] == "21"
    r = cli("kv", "watch", "app/", "--from-revision", "5", "--count", "1", "--json", "-e", n.url)
    assert json.loads(r.stdout)["key"] == "app/a"
    assert n.requests("GET", "/v1/watch")[-1].query["from_revision"] == "5"


def test_members_list_and_changes(fake: FakeCluster) -> None:
    n = fake.node()
    found = members_json(("n1", n.url), ("n2", "http://127.0.0.1:7102"))
    n.on("GET", "/v1/members", (200, found))
    n.on("POST", "/v1/members", (200, {"members": found}))
    n.on("POST", "/v1/members/n2/promote", (200, {}))
    n.on("DELETE", "/v1/members/n2", (409, {"error": "conflict", "message": "a membership change is in progress"}))
    n.on("POST", "/v1/leader/transfer", (200, {"target": "n2"}))
    for args in (["members"], ["members", "list"]):
        r = cli(*args, "-e", n.url) if args == ["members", "list"] else cli("members", "-e", n.url)
        assert r.exit_code == 0, r.output
        assert "n1" in r.stdout and "127.0.0.1:7102" in r.stdout and "voter" in r.stdout
    r = cli("members", "--json", "-e", n.url, "list")  # group options reach the subcommand
    assert json.loads(r.stdout) == found
    r = cli("members", "add", "n2", "--peer-addr", "127.0.0.1:7002", "--api-addr", "127.0.0.1:7102",
            "-e", n.url)
    assert r.exit_code == 0
    assert n.requests("POST", "/v1/members")[0].body == {"id": "n2", "peer_addr": "127.0.0.1:7002",
                                                           "api_addr": "127.0.0.1:7102"}
    assert cli("members", "promote", "n2", "-e", n.url).exit_code == 0
    r = cli("members", "remove", "n2", "-e", n.url)
    assert r.exit_code == 1 and "conflict" in r.stderr
    r = cli("members", "transfer", "n2", "--json", "-e", n.url)
    assert json.loads(r.stdout) == {"target": "n2"}
    assert n.requests("POST", "/v1/leader/transfer")[0].body == {"target": "n2"}
    assert cli("members", "add", "n3", "-e", n.url).exit_code == 2  # --peer-addr missing


def test_endpoint_defaults(fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = fake.node(), fake.node()
    a.on("GET", "/v1/status", (200, STATUS))
    b.on("GET", "/v1/status", (200, {**STATUS, "id": "n2"}))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quorate-local").mkdir()
    (tmp_path / "quorate-local" / "endpoints").write_text(f"{a.url}\n")
    assert json.loads(cli("status", "--json").stdout)["id"] == "n1"
    r = cli("status", "--json", env={"QUORATE_ENDPOINT": f"{b.url},{a.url}"})
    assert json.loads(r.stdout)["id"] == "n2"


def test_agent_config_errors_exit_2(tmp_path: Path) -> None:
    env = {k: None for k in ("QUORATE_ID", "QUORATE_DATA_DIR", "QUORATE_PEER_ADDR", "QUORATE_API_ADDR",
                             "QUORATE_BOOTSTRAP", "QUORATE_JOIN")}
    r = cli("agent", "--id", "n1", env=env)
    assert r.exit_code == 2 and "data_dir" in r.stderr and "Field required" in r.stderr
    base = ["agent", "--id", "n1", "--data-dir", str(tmp_path), "--peer-addr", "127.0.0.1:1",
            "--api-addr", "127.0.0.1:2"]
    r = cli(*base, "--bootstrap", "n2=127.0.0.1:3", env=env)
    assert r.exit_code == 2 and "must list this node" in r.stderr
    r = cli(*base, "--heartbeat-ms", "500", "--election-timeout-ms", "100", env=env)
    assert r.exit_code == 2 and "election timeout must be longer" in r.stderr
    r = cli(*base, "--log-level", "chatty", env=env)
    assert r.exit_code == 2 and "--log-level" in r.stderr
    r = cli(*base, "--config", str(tmp_path / "missing.toml"), env=env)
    assert r.exit_code == 2 and "cannot read config file" in r.stderr
    r = cli("agent", "--data-dir", str(tmp_path), env={**env, "QUORATE_ID": "bad id!"})
    assert r.exit_code == 2 and "id" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was created


def test_tls_options_are_checked_before_any_request(tmp_path: Path) -> None:
    """Bad --tls-* files are a usage error (exit 2) naming the problem, on
    every cluster command, flags or QUORATE_TLS_* alike."""
    from quorate.testing.pki import write_pki

    pki = write_pki(tmp_path, "ca", ["op"])
    cert, key = map(str, pki.certs["op"])
    ep = "https://127.0.0.1:9"
    r = cli("status", "-e", ep, "--tls-key", key)
    assert r.exit_code == 2 and "--tls-key needs --tls-cert" in r.stderr
    r = cli("kv", "get", "k", "-e", ep, "--tls-ca", str(pki.ca), "--tls-cert", str(tmp_path / "missing.crt"))
    assert r.exit_code == 2 and "cannot load the TLS files" in r.stderr
    r = cli("members", "list", "-e", ep, env={"QUORATE_TLS_CERT": cert, "QUORATE_TLS_KEY": str(pki.ca)})
    assert r.exit_code == 2 and "cannot load the TLS files" in r.stderr  # a key that is not a key
    for command in (["status"], ["kv", "put"], ["members", "list"], ["group", "list"], ["instances", "list"],
                    ["backup", "save"], ["recovery", "status"], ["recover"]):
        r = cli(*command, "--help", env={"COLUMNS": "200"})
        assert all(opt in r.stdout for opt in ("--tls-ca", "--tls-cert", "--tls-key")), command


def test_help_texts() -> None:
    r = cli("--help")
    assert r.exit_code == 0
    for command in ("agent", "status", "members", "kv", "up", "down"):
        assert command in r.stdout
    r = cli("agent", "--help", env={"COLUMNS": "200"})
    assert "--bootstrap" in r.stdout and "already holds state" in r.stdout
