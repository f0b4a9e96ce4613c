"""The group and instance endpoints on a real single-node runtime, through
the blocking client (and raw HTTP for bodies the client would never send):
specs are validated before anything is proposed, stored canonically, read
back, deleted; instances come from the node's manager view."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from livenode import LiveNode

from quorate.client import BadRequestError, Client, NotFoundError, QuorateClientError
from quorate.manager.model import SlotRecord, group_key, slot_key
from quorate.manager.spec import parse_spec

TEMPLATE = {"command": "sleep", "args": ["600"], "env": {"SLOT": "{slot}"}}
WEB = {"id": "web", "size": 2, "template": TEMPLATE}
INSTANCES = [
    {"id": "web-0-1", "group": "web", "logical_id": None, "slot": "0", "state": "running", "pid": 101,
     "healthy": True, "incarnation": 1},
    {"id": "managers-n1-1", "group": "managers", "logical_id": "n1", "slot": "n1", "state": "running",
     "pid": 102, "healthy": None, "incarnation": 1},
]
STATUS = {"cycle": 7, "finished_at": 1_700_000_000.0, "duration_ms": 3.5, "summary": "1 action",
          "actions": [{"kind": "create", "slot": "1", "instance_id": "web-1-1", "reason": "slot 1 is empty",
                       "outcome": "ok", "error": None}], "notes": []}


class FakeManager:
    """The ManagerView of a node: canned instances and cycle statuses."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []
        self.statuses: dict[str, dict[str, Any]] = {}

    async def instances(self, group: str | None) -> list[dict[str, Any]]:
        self.asked.append(group)
        return [i for i in INSTANCES if group is None or i["group"] == group]

    def group_status(self, group: str) -> dict[str, Any] | None:
        return self.statuses.get(group)


@pytest.fixture
def manager() -> FakeManager:
    return FakeManager()


@pytest.fixture
def node(manager: FakeManager) -> Iterator[LiveNode]:
    n = LiveNode(manager=manager)
    try:
        n.wait_leader()
        yield n
    finally:
        n.close()


@pytest.fixture
def client(node: LiveNode) -> Client:
    return Client(node.url, discover=False, deadline=10.0)


def raw(node: LiveNode, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(node.url + path, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_apply_then_list_and_show(node: LiveNode, client: Client, manager: FakeManager) -> None:
    spec = parse_spec(WEB)
    first = client.apply_group(WEB)
    assert first == {"group": "web", "revision": first["revision"], "spec_hash": spec.spec_hash()}
    assert node.keys(group_key("web")) == {group_key("web"): json.dumps(spec.to_json(), sort_keys=True)}
    assert client.list_groups() == [{"id": "web", "provider": "process", "size": 2, "logical_ids": None,
                                     "desired": 2, "spec_hash": spec.spec_hash(), "revision": first["revision"]}]
    manager.statuses["web"] = STATUS
    record = SlotRecord("web", "0", "web-0-1", 1, None, 2)
    client.put(slot_key("web", "0"), record.encode())
    shown = client.get_group("web")
    assert shown == {"spec": spec.to_json(), "revision": first["revision"], "spec_hash": spec.spec_hash(),
                     "slots": [{"slot": "0", "instance_id": "web-0-1", "incarnation": 1, "member_id": None,
                                "term": 2}],
                     "status": STATUS}
    again = client.apply_group({**WEB, "size": 3})
    assert again["revision"] > first["revision"]
    assert again["spec_hash"] == first["spec_hash"]  # the size is not what runs
    assert [(g["size"], g["desired"], g["revision"]) for g in client.list_groups()] == [(3, 3, again["revision"])]
    assert client.list("").kvs == ()  # quorate's own keys stay out of the user's listing


def test_put_takes_the_id_from_the_path_and_post_from_the_body(node: LiveNode, client: Client) -> None:
    status, body = raw(node, "PUT", "/v1/groups/api", json.dumps({"size": 1, "template": TEMPLATE}).encode())
    assert status == 200 and body["group"] == "api", body
    status, body = raw(node, "POST", "/v1/groups",
                       json.dumps({"id": "managers", "logical_ids": ["n1"], "template": TEMPLATE}).encode())
    assert status == 200 and body["group"] == "managers", body
    assert [g["id"] for g in client.list_groups()] == ["api", "managers"]
    assert client.get_group("api")["spec"]["id"] == "api"


BAD = [
    pytest.param("/v1/groups/web", {**WEB, "colour": "red"}, "colour", id="unknown-field"),
    pytest.param("/v1/groups/web", {**WEB, "size": -1}, "size", id="negative-size"),
    pytest.param("/v1/groups/web", {**WEB, "logical_ids": ["a"]}, "exactly one of 'size'", id="size-and-ids"),
    pytest.param("/v1/groups/web", {**WEB, "template": {"command": "run {nope}"}}, "template.command",
                 id="unknown-placeholder"),
    pytest.param("/v1/groups/web", {**WEB, "provider": "nosuch"}, "unknown provider 'nosuch'; known providers: ",
                 id="unknown-provider"),
    pytest.param("/v1/groups/web", b"{not json", "not valid JSON", id="malformed-json"),
    pytest.param("/v1/groups/web", {**WEB, "id": "other"}, "id: 'other' differs", id="path-body-mismatch"),
    pytest.param("/v1/groups/web", [WEB], "expected a JSON object", id="not-an-object"),
    pytest.param("/v1/groups", {"size": 1, "template": TEMPLATE}, "id: Field required", id="post-without-id"),
]


@pytest.mark.parametrize(("path", "body", "named"), BAD)
def test_bad_specs_are_refused_naming_the_field_and_store_nothing(node: LiveNode, path: str, body: Any,
                                                                  named: str) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = raw(node, "PUT" if path != "/v1/groups" else "POST", path, data)
    assert status == 400 and answer["error"] == "bad_request", answer
    assert named in answer["message"]
    assert node.keys("_quorate/groups/") == {}


def test_unknown_provider_lists_the_known_ones(client: Client) -> None:
    with pytest.raises(BadRequestError) as err:
        client.apply_group({**WEB, "provider": "nosuch"})
    assert "process" in err.value.message.split("known providers: ")[1]


def test_delete(node: LiveNode, client: Client) -> None:
    applied = client.apply_group(WEB)
    deleted = client.delete_group("web")
    assert deleted["revision"] > applied["revision"]
    assert client.list_groups() == []
    with pytest.raises(NotFoundError, match="group 'web' does not exist"):
        client.get_group("web")
    with pytest.raises(NotFoundError, match="group 'web' does not exist"):
        client.delete_group("web")


def test_the_managers_group_cannot_be_deleted(client: Client) -> None:
    client.apply_group({"id": "managers", "logical_ids": ["n1"], "template": TEMPLATE})
    with pytest.raises(BadRequestError, match="the managers group cannot be deleted; change its logical_ids"):
        client.delete_group("managers")
    assert [g["id"] for g in client.list_groups()] == ["managers"]


def test_unknown_group_is_404(node: LiveNode, client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.get_group("nope")
    assert raw(node, "GET", "/v1/groups/nope") == (404, {"error": "not_found",
                                                          "message": "group 'nope' does not exist"})


def test_instances_come_from_the_leaders_manager(node: LiveNode, client: Client, manager: FakeManager) -> None:
    assert client.list_instances() == INSTANCES
    assert client.list_instances("web") == INSTANCES[:1]
    assert manager.asked == [None, "web"]
    assert raw(node, "GET", "/v1/instances?group=managers") == (200, INSTANCES[1:])


def test_a_node_without_manager_refuses_instances_and_has_no_status() -> None:
    n = LiveNode(manager=None)
    try:
        n.wait_leader()
        c = Client(n.url, discover=False)
        with pytest.raises(QuorateClientError) as err:
            c.list_instances()
        assert (err.value.code, err.value.status) == ("no_manager", 503)
        assert "runs no manager" in err.value.message
        c.apply_group(WEB)
        assert c.get_group("web")["status"] is None
    finally:
        n.close()


def test_without_a_leader_a_node_answers_from_its_own_view(manager: FakeManager) -> None:
    n = LiveNode(voters=("n1", "n2"), manager=manager)  # n2 never answers: no leader, ever
    try:
        assert raw(n, "GET", "/v1/instances") == (200, INSTANCES)
        status, body = raw(n, "GET", "/v1/groups/web?consistency=stale")
        assert (status, body["error"]) == (404, "not_found")  # answered from the local store
        status, body = raw(n, "GET", "/v1/groups/web")
        assert (status, body["error"]) == (503, "no_leader")  # a linearizable read needs a leader
        status, body = raw(n, "PUT", "/v1/groups/web", json.dumps({**WEB, "size": -1}).encode())
        assert (status, body["error"]) == (400, "bad_request")  # refused before looking for a leader
    finally:
        n.close()
