"""Group specs on a real 3-agent cluster: applied through a follower (which
forwards to the leader), read back on the other nodes, shown, deleted."""

from __future__ import annotations

import pytest

from quorate.manager.spec import parse_spec

from .harness import ProcCluster, http, wait_for

pytestmark = pytest.mark.integration

# size 0: nothing to start, whatever controller the agents may run.
SPEC = {"id": "web", "size": 0, "template": {"command": "sleep", "args": ["600"]}}


def test_group_applied_on_a_follower_is_served_everywhere(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: ProcCluster = make_cluster(3)
    c.start_all()
    leader = c.leader()
    follower, other = [i for i in c.agents if i != leader]
    url = {i: a.url for i, a in c.agents.items()}

    # The follower forwards once the leader's API address is registered.
    applied = wait_for("the group applied through a follower",
                       lambda: (r := http("PUT", f"{url[follower]}/v1/groups/web", SPEC)).status == 200 and r)
    spec = parse_spec(SPEC)
    assert applied.body == {"group": "web", "revision": applied.body["revision"], "spec_hash": spec.spec_hash()}

    listed = http("GET", f"{url[other]}/v1/groups")
    assert listed.status == 200, listed
    web = [g for g in listed.body["groups"] if g["id"] == "web"]
    assert web == [{"id": "web", "provider": "process", "size": 0, "logical_ids": None, "desired": 0,
                    "spec_hash": spec.spec_hash(), "revision": applied.body["revision"]}]
    shown = http("GET", f"{url[other]}/v1/groups/web")  # forwarded to the leader
    assert shown.status == 200, shown
    assert shown.body["spec"] == spec.to_json() and shown.body["revision"] == applied.body["revision"]
    assert shown.body["slots"] == [] and "status" in shown.body
    bad = http("PUT", f"{url[follower]}/v1/groups/web", {**SPEC, "size": -1})
    assert (bad.status, bad.body["error"]) == (400, "bad_request") and "size" in bad.body["message"]
    assert http("GET", f"{url[leader]}/v1/groups/web").body["revision"] == applied.body["revision"]

    deleted = http("DELETE", f"{url[other]}/v1/groups/web")
    assert deleted.status == 200 and deleted.body["revision"] > applied.body["revision"], deleted
    for node in c.agents:
        assert "web" not in [g["id"] for g in http("GET", f"{url[node]}/v1/groups").body["groups"]]
        assert http("GET", f"{url[node]}/v1/groups/web").status == 404
    refused = http("DELETE", f"{url[follower]}/v1/groups/managers")
    assert refused.status == 400 and "cannot be deleted" in refused.body["message"]
