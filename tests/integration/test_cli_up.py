"""``quorate up`` / ``down`` with real agents: one manager bootstraps, the
cluster provisions the other managers and the demo workers itself, keys
are written and read through the CLI, ``down`` stops everything, and a
second ``up`` restarts the managers in place with their data."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from quorate.providers.process import ProcessProvider, read_stat

from .localup import LocalUp, ok, quorate, wait

pytestmark = pytest.mark.integration


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if (st := read_stat(p)) is not None and st.state not in ("Z", "X")]


def test_up_provisions_managers_and_workers_then_down_and_up_again(local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    out = lu.up()
    assert "n1: started" in out and "bootstrapping" in out and "is up" in out and "3/3 voters" in out
    assert (lu.dir / "endpoints").read_text().split() == lu.endpoints
    for member in ("n1", "n2", "n3"):
        for sub in ("data", "backup", "log"):
            assert (lu.dir / "nodes" / member / sub).is_dir()
    assert lu.voters() == ["n1", "n2", "n3"]
    workers = wait("two running workers", lu.running_workers)
    assert sorted(workers) == ["0", "1"]

    assert ok(quorate("kv", "put", "app/greeting", "hello", "-e", lu.endpoints[1])).startswith("revision ")
    assert ok(quorate("kv", "get", "app/greeting", "-e", lu.endpoints[2])) == "hello\n"
    listed = json.loads(ok(quorate("instances", "list", "--json", "-e", lu.endpoints[0])))
    assert sorted(i["id"] for i in listed) == ["managers-n1-1", "managers-n2-1", "managers-n3-1",
                                               "workers-0-1", "workers-1-1"]
    pids = [int(i["pid"]) for i in listed]

    down = lu.down()
    assert "managers-n1-1: stopped" in down and "workers-0-1: destroyed" in down
    assert _alive(pids) == []
    provider = ProcessProvider(lu.dir / "instances")
    import asyncio
    left = asyncio.run(provider.list(None))
    assert sorted(i.id for i in left) == ["managers-n1-1", "managers-n2-1", "managers-n3-1"]

    again = lu.up()
    assert again.count("restarted in place") == 3
    assert ok(quorate("kv", "get", "app/greeting", "-e", lu.endpoints[0])) == "hello\n"
    assert lu.voters() == ["n1", "n2", "n3"]  # the same members, no replacement
    wait("the workers back", lu.running_workers)
    log = (lu.dir / "nodes" / "n1" / "log" / "agent.log").read_text()
    assert "bootstrapped a new cluster" in log
