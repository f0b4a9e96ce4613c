"""``quorate group`` and ``quorate instances`` against fake API nodes: a
bad spec file is refused locally (exit 2, nothing sent), tables for
people, --json for scripts."""

from __future__ import annotations

import json
from pathlib import Path

from fakeapi import FakeCluster
from typer.testing import CliRunner, Result

from quorate.cli.main import app
from quorate.manager.spec import load_spec_text

CLEAN_ENV = {"QUORATE_ENDPOINT": None, "QUORATE_API_TOKEN": None}

SPECS = """\
id: web
size: 2
template:
  command: python3
  args: ["-m", "http.server", "{http}"]
  ports: {http: 8000}
---
- id: managers
  logical_ids: [n1, n2, n3]
  template: {command: quorate, args: [agent, --id, "{member_id}"]}
"""
GROUPS = [
    {"id": "managers", "provider": "process", "size": None, "logical_ids": ["n1", "n2", "n3"], "desired": 3,
     "spec_hash": "aaaa", "revision": 4},
    {"id": "web", "provider": "process", "size": 2, "logical_ids": None, "desired": 2, "spec_hash": "bbbb",
     "revision": 9},
]
SHOW = {
    "spec": {"id": "web", "provider": "process", "size": 2,
             "template": {"command": "python3", "args": ["-m", "http.server", "{http}"]}},
    "revision": 9, "spec_hash": "bbbb",
    "slots": [{"slot": "0", "instance_id": "web-0-1", "incarnation": 1, "member_id": None, "term": 3},
              {"slot": "1", "instance_id": "web-1-2", "incarnation": 2, "member_id": None, "term": 5}],
    "status": {"cycle": 12, "finished_at": 1_700_000_000.0, "duration_ms": 4.25, "summary": "replaced web-1-1",
               "actions": [{"kind": "replace", "slot": "1", "instance_id": "web-1-2",
                            "reason": "web-1-1 terminated", "outcome": "failed", "error": "spawn refused"}],
               "notes": ["web-0-1 starting: waiting"], "leader_term": 5},
}
INSTANCES = [
    {"id": "web-0-1", "group": "web", "logical_id": None, "slot": "0", "state": "running", "pid": 4242,
     "healthy": True, "incarnation": 1},
    {"id": "managers-n2-1", "group": "managers", "logical_id": "n2", "slot": "n2", "state": "terminated",
     "pid": None, "healthy": False, "incarnation": 1},
]


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=CLEAN_ENV, input=stdin)  # type: ignore[arg-type]


def _applied(seen) -> tuple[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    group = seen.body["id"]
    return 200, {"group": group, "revision": 10 + len(group), "spec_hash": "h-" + group}


def test_apply_refuses_a_bad_file_locally_naming_the_field(fake: FakeCluster, tmp_path: Path) -> None:
    n = fake.node()
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPECS + "- id: api\n  size: -1\n  template: {command: x}\n")
    r = cli("group", "apply", str(bad), "-e", n.url)
    assert r.exit_code == 2, r.output
    assert "size" in r.stderr and "nothing was applied" in r.stderr
    bad.write_text('{"id": "web", "size": 1, "colour": "red", "template": {"command": "x"}}')
    r = cli("group", "apply", str(bad), "--json", "-e", n.url)
    assert r.exit_code == 2 and "colour" in r.stderr
    r = cli("group", "apply", str(tmp_path / "missing.yaml"), "-e", n.url)
    assert r.exit_code == 2 and "cannot read" in r.stderr
    assert n.seen == []  # nothing was sent


def test_apply_sends_every_spec_and_prints_revisions(fake: FakeCluster, tmp_path: Path) -> None:
    n = fake.node().on("PUT", "/v1/groups/web", _applied).on("PUT", "/v1/groups/managers", _applied)
    path = tmp_path / "groups.yaml"
    path.write_text(SPECS)
    r = cli("group", "apply", str(path), "-e", n.url)
    assert r.exit_code == 0, r.output
    assert r.stdout == "web: revision 13, spec h-web\nmanagers: revision 18, spec h-managers\n"
    assert [s.body for s in n.requests("PUT")] == [s.to_json() for s in load_spec_text(SPECS)]
    r = cli("group", "apply", "-", "--json", "-e", n.url, stdin=SPECS)
    assert r.exit_code == 0, r.output
    assert [g["group"] for g in json.loads(r.stdout)] == ["web", "managers"]


def test_apply_failing_midway_says_what_was_applied(fake: FakeCluster) -> None:
    n = fake.node().on("PUT", "/v1/groups/web", _applied)
    n.on("PUT", "/v1/groups/managers", (400, {"error": "bad_request",
                                              "message": "invalid group spec: provider: unknown provider"}))
    r = cli("group", "apply", "-", "--json", "-e", n.url, stdin=SPECS)
    assert r.exit_code == 1
    answer = json.loads(r.stdout)
    assert answer["error"] == "bad_request" and [g["group"] for g in answer["applied"]] == ["web"]
    r = cli("group", "apply", "-", "-e", n.url, stdin=SPECS)
    assert r.exit_code == 1 and "web: revision" in r.stdout and "unknown provider" in r.stderr


def test_group_list(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/groups", (200, {"groups": GROUPS}))
    r = cli("group", "list", "-e", n.url)
    assert r.exit_code == 0, r.output
    assert "2 groups" in r.stdout and "n1, n2, n3" in r.stdout and "size 2" in r.stdout and "bbbb" in r.stdout
    r = cli("group", "list", "--json", "-e", n.url)
    assert json.loads(r.stdout) == GROUPS


def test_group_show(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/groups/web", (200, SHOW))
    r = cli("group", "show", "web", "-e", n.url)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "group web at revision 9, spec hash bbbb" in out
    assert "python3 -m http.server '{http}'" in out and "size 2" in out
    assert "web-1-2" in out and "│ 2 " in out  # the slots table
    assert "last cycle 12" in out and "2023-11-14" in out and "4.2 ms" in out and "replaced web-1-1" in out
    assert "replace" in out and "web-1-1 terminated" in out and "failed: spawn refused" in out
    assert "note: web-0-1 starting: waiting" in out and "leader_term: 5" in out
    r = cli("group", "show", "web", "--json", "-e", n.url)
    assert json.loads(r.stdout) == SHOW


def test_group_show_without_status_or_slots(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/groups/web", (200, {**SHOW, "slots": [], "status": None}))
    r = cli("group", "show", "web", "-e", n.url)
    assert r.exit_code == 0, r.output
    assert "slots: none recorded yet" in r.stdout and "last cycle: none reported" in r.stdout
    n.on("GET", "/v1/groups/nope", (404, {"error": "not_found", "message": "group 'nope' does not exist"}))
    r = cli("group", "show", "nope", "-e", n.url)
    assert r.exit_code == 1 and "group 'nope' does not exist" in r.stderr


def test_group_delete(fake: FakeCluster) -> None:
    n = fake.node().on("DELETE", "/v1/groups/web", (200, {"revision": 21}))
    n.on("DELETE", "/v1/groups/managers", (400, {"error": "bad_request", "message": "the managers group cannot "
                                                 "be deleted; change its logical_ids to resize it"}))
    r = cli("group", "delete", "web", "-e", n.url)
    assert (r.exit_code, r.stdout) == (0, "web: deleted at revision 21\n")
    r = cli("group", "delete", "web", "--json", "-e", n.url)
    assert json.loads(r.stdout) == {"group": "web", "revision": 21}
    r = cli("group", "delete", "managers", "-e", n.url)
    assert r.exit_code == 1 and "cannot be deleted" in r.stderr


def test_instances_list(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/instances", (200, INSTANCES))
    r = cli("instances", "list", "-e", n.url)
    assert r.exit_code == 0, r.output
    assert "2 instances" in r.stdout and "4242" in r.stdout and "terminated" in r.stdout and "n2" in r.stdout
    assert "yes" in r.stdout and "no" in r.stdout
    r = cli("instances", "list", "--group", "web", "--json", "-e", n.url)
    assert json.loads(r.stdout) == INSTANCES
    assert n.requests("GET")[-1].query == {"group": "web"}


def test_instances_without_manager_exits_1(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/instances", (503, {"error": "no_manager", "message": "node n1 runs no manager"}))
    r = cli("instances", "list", "-e", n.url)
    assert r.exit_code == 1 and "no_manager: node n1 runs no manager" in r.stderr
    assert len(n.requests("GET")) == 1  # not retried elsewhere: it is an answer, not an outage
