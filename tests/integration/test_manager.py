"""The manager on real processes (S1, S6): a cluster made by `quorate up`,
kill -9 of the leading manager, of a worker and of every manager, a lost
data directory, and a storm of leadership transfers."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from quorate.client import Client

from .harness import http
from .localup import LocalUp, wait

pytestmark = pytest.mark.integration


def test_s1_leader_killed_then_a_worker(local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    leader, _ = lu.leader()
    workers = wait("two running workers", lu.running_workers)
    acked = {f"s1/{i}": f"v{i}" for i in range(20)}
    for k, v in acked.items():
        lu.put(k, v)

    victim = next(i for i in lu.instances("managers") if i["member_id"] == leader)
    lu.kill9(victim)
    new_leader, _ = wait("a new leader", lambda: (lead := lu.leader()) and lead[0] != leader and lead)
    lu.put("s1/after", "ok")
    assert {k: lu.get(k) for k in acked} == acked  # no acknowledged write lost

    # The new leader restarts the dead manager in place: same instance and
    # member, a new process, no membership change.
    back = wait("the killed manager restarted in place", lambda: next(
        (i for i in lu.instances("managers")
         if i["id"] == victim["id"] and i["state"] == "running" and i["pid"] != victim["pid"]), None))
    assert back["member_id"] == leader
    assert lu.voters() == ["n1", "n2", "n3"]

    # A killed worker is replaced in its slot; never two in one slot.
    dead = workers["0"]
    lu.kill9(dead)
    now = wait("worker slot 0 replaced", lambda: (w := lu.running_workers()) and w["0"]["pid"] != dead["pid"]
               and len(w) == 2 and w)
    assert now["1"]["id"] == workers["1"]["id"]  # the other one was left alone
    # `group show` tells what the controller did, and why.
    change = Client(lu.endpoints, timeout=5.0).get_group("workers")["status"]["last_change"]
    assert [(a["kind"], a["slot"], a["outcome"]) for a in change["actions"]] == [("replace", "0", "ok")]
    assert "terminated" in change["actions"][0]["reason"]


def test_all_managers_killed_then_up_adopts_the_running_workers(local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    before = wait("two running workers", lu.running_workers)
    for m in lu.instances("managers"):
        lu.kill9(m)
    wait("no manager answering", lambda: not lu.answering())
    out = lu.up()
    assert out.count("restarted in place") == 3
    after = wait("the workers adopted", lu.running_workers)
    # The very same processes: adopted, not duplicated, not restarted.
    assert {s: w["pid"] for s, w in after.items()} == {s: w["pid"] for s, w in before.items()}
    assert len([i for i in lu.instances("workers") if i["state"] == "running"]) == 2


def test_a_manager_that_lost_its_data_is_replaced_by_a_new_member(local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    leader, _ = lu.leader()
    victim = next(i for i in lu.instances("managers") if i["member_id"] != leader)
    # The machine is lost: stop it, take its data away, then kill it, so the
    # leader never sees it dead with its data still there (it would restart
    # it in place, which is right, but not this test).
    data = Path(lu.dir / "nodes" / victim["member_id"] / "data")
    os.kill(int(victim["pid"]), signal.SIGSTOP)
    gone = data.with_name("data.lost")
    data.rename(gone)
    lu.kill9(victim)
    shutil.rmtree(gone)
    slot = victim["slot"]
    seen_voters: list[list[str]] = []

    def replaced() -> bool:
        voters = lu.voters()
        seen_voters.append(voters)
        return voters == sorted({"n1", "n2", "n3"} - {slot} | {f"{slot}-2"})

    wait("the replacement to be a voter", replaced)
    # Remove before add: never more than three voters on the way.
    assert all(len(v) <= 3 for v in seen_voters), seen_voters
    inst = next(i for i in lu.instances("managers") if i["slot"] == slot and i["state"] == "running")
    assert inst["id"] == f"managers-{slot}-2" and inst["member_id"] == f"{slot}-2"
    lu.put("after/replacement", "ok")


def test_s6_transfer_storm_keeps_one_controller_and_counts_the_flaps(local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    wait("two running workers", lu.running_workers)
    term0 = max(lu.status(e)["term"] for e in lu.endpoints)
    flaps0 = sum(lu.metric(e, "quorate_leadership_flaps_total") for e in lu.endpoints)
    transfers = 0
    killed = False
    for i in range(60):
        leader, endpoint = lu.leader()
        r = http("POST", endpoint + "/v1/leader/transfer", {}, timeout=10.0)
        if r.status != 200:
            continue
        wait("leadership to move", lambda: (lead := lu.leader()) and lead[0] != leader)
        transfers += 1
        if i == 30 and not killed:  # work for the controllers in the middle of the storm
            lu.kill9(lu.instances("workers")[0])
            killed = True
    assert transfers >= 40
    workers = wait("the workers converged", lambda: (w := lu.running_workers()) and len(w) == 2 and w)
    assert sorted(workers) == ["0", "1"]
    leader, _ = lu.leader()
    running = {e: lu.metric(e, "quorate_controllers_running") for e in lu.endpoints}
    wait("controllers on the leader only", lambda: [
        lu.status(e)["id"] for e in lu.endpoints if lu.metric(e, "quorate_controllers_running") == 1.0
    ] == [lu.leader()[0]])
    flaps = sum(lu.metric(e, "quorate_leadership_flaps_total") for e in lu.endpoints) - flaps0
    terms = max(lu.status(e)["term"] for e in lu.endpoints) - term0
    # Every transfer ended a reign (a flap: all were short); elections of
    # their own, if the loaded machine caused any, can only add terms.
    assert flaps >= transfers and terms >= transfers, (flaps, terms, transfers, running)
    if terms == transfers:
        assert flaps == transfers
