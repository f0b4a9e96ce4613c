"""The blocking client against fake API nodes: requests on the wire,
typed errors, failover, leader hints, and never re-sending a write whose
outcome is unknown."""

from __future__ import annotations

import pytest
from fakeapi import STATUS, Drop, FakeCluster, FakeSleep, Hang, kv_json, members_json

from quorate.client import (
    BadRequestError,
    Client,
    CompactedError,
    ConflictError,
    KeyValue,
    NoLeaderError,
    NotFoundError,
    QuorateClientError,
    RecoveryModeError,
    RequestTimeoutError,
    RevisionMismatchError,
    UnauthorizedError,
    UnavailableError,
    WriteTimeout,
)

NO_LEADER = (503, {"error": "no_leader", "message": "no leader is known", "leader": None})


def client(*endpoints: str, sleep: FakeSleep, **kw: object) -> Client:
    kw.setdefault("discover", False)
    return Client(list(endpoints), sleep=sleep, clock=sleep.clock, **kw)  # type: ignore[arg-type]


def test_put_get_delete_on_the_wire(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    n = fake.node()
    n.on("PUT", "/v1/kv/a b/c?d", (200, {"revision": 7}))
    n.on("GET", "/v1/kv/a b/c?d", (200, kv_json("a b/c?d", "v", 7)))
    n.on("DELETE", "/v1/kv/a b/c?d", (200, {"revision": 8}))
    c = client(n.url, token="s3cret", sleep=fake_sleep)

    assert c.put("a b/c?d", "v", prev_revision=0) == 7
    assert c.get("a b/c?d", stale=True) == KeyValue("a b/c?d", "v", 7, 7, 1)
    assert c.delete("a b/c?d", prev_revision=7) == 8

    put, get, delete = n.seen
    assert put.raw_path == "/v1/kv/a%20b/c%3Fd"
    assert put.body == {"value": "v", "prev_revision": 0}
    assert put.headers["Authorization"] == "Bearer s3cret"
    assert put.headers["Content-Type"] == "application/json"
    assert get.query == {"consistency": "stale"}
    assert delete.query == {"prev_revision": "7"}
    assert all(s.headers["Authorization"] == "Bearer s3cret" for s in n.seen)


def test_absent_key_is_none_for_get_and_delete(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    n = fake.node()
    n.on("GET", "/v1/kv/k", (404, {"error": "not_found", "message": "key 'k' does not exist"}))
    n.on("DELETE", "/v1/kv/k", (404, {"error": "not_found", "message": "the key does not exist"}))
    c = client(n.url, sleep=fake_sleep)
    assert c.get("k") is None
    assert c.delete("k") is None


def test_list_and_status_and_members(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    n = fake.node()
    n.on("GET", "/v1/kv", (200, {"revision": 9, "kvs": [kv_json("p/a", "1", 3), kv_json("p/b", "2", 9)]}))
    n.on("GET", "/v1/status", (200, {**STATUS, "extra_field": 1}))
    n.on("GET", "/v1/members", (200, members_json(("n1", n.url))))
    c = client(n.url, sleep=fake_sleep)

    result = c.list("p/", limit=2, stale=True)
    assert result.revision == 9 and [kv.key for kv in result.kvs] == ["p/a", "p/b"]
    assert n.requests("GET", "/v1/kv")[0].query == {"prefix": "p/", "limit": "2", "consistency": "stale"}
    st = c.status()
    assert (st.role, st.leader, st.voters, st.quorum) == ("leader", "n1", ("n1", "n2", "n3"), True)
    assert st.raw["extra_field"] == 1
    (m,) = c.members()
    assert (m.id, m.role, m.health, m.last_contact_ms) == ("n1", "voter", "alive", 5)


def test_revision_mismatch_is_typed_and_not_retried(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("PUT", "/v1/kv/k", (409, {"error": "revision_mismatch", "message": "no", "current_revision": 12}))
    c = client(a.url, b.url, sleep=fake_sleep)
    with pytest.raises(RevisionMismatchError) as info:
        c.put("k", "v", prev_revision=3)
    assert info.value.current_revision == 12
    assert len(a.seen) == 1 and not b.seen


def test_no_leader_moves_to_the_next_endpoint(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("PUT", "/v1/kv/k", NO_LEADER)
    b.on("PUT", "/v1/kv/k", (200, {"revision": 4}))
    c = client(a.url, b.url, sleep=fake_sleep)
    assert c.put("k", "v") == 4
    assert len(a.seen) == 1 and len(b.seen) == 1
    assert c.last_endpoint == b.url
    assert c.put("k", "v") == 4  # the endpoint that answered is asked first next time
    assert len(a.seen) == 1 and len(b.seen) == 2


def test_dead_endpoint_is_skipped_without_a_pause(fake: FakeCluster, fake_sleep: FakeSleep,
                                                  dead_endpoint: str) -> None:
    b = fake.node()
    b.on("GET", "/v1/kv/k", (200, kv_json("k", "v")))
    c = client(dead_endpoint, b.url, sleep=fake_sleep)
    assert c.get("k") is not None
    assert fake_sleep.pauses == []


def test_shutting_down_and_not_committed_are_retried(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a = fake.node()
    a.on("PUT", "/v1/kv/k", (503, {"error": "shutting_down", "message": "bye"}),
         (503, {"error": "not_committed", "message": "lost"}), (200, {"revision": 2}))
    c = client(a.url, sleep=fake_sleep)
    assert c.put("k", "v") == 2
    assert len(a.seen) == 3
    assert fake_sleep.pauses == [0.05, 0.1]


def test_leader_hint_is_followed_at_once(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b, other = fake.node(), fake.node(), fake.node()
    a.on("GET", "/v1/members", (200, members_json(("n1", a.url), ("n2", b.url))))
    a.on("PUT", "/v1/kv/k", (503, {"error": "no_leader", "message": "leader unreachable", "leader": "n2"}))
    b.on("PUT", "/v1/kv/k", (200, {"revision": 3}))
    # ``other`` comes first in the rotation: without the hint it would be asked.
    c = client(a.url, other.url, sleep=fake_sleep, discover=True)
    assert c.endpoints[:2] == [a.url, other.url]
    assert c.put("k", "v") == 3
    assert b.url in c.endpoints
    assert not other.seen and len(b.seen) == 1
    assert fake_sleep.pauses == []


def test_discovery_learns_members_then_fails_over(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("GET", "/v1/members", (200, members_json(("n1", a.url), ("n2", b.url.replace("127.0.0.1", "0.0.0.0")))))
    a.on("PUT", "/v1/kv/k", (503, {"error": "shutting_down", "message": "bye"}))
    b.on("PUT", "/v1/kv/k", (200, {"revision": 5}))
    c = client(a.url, sleep=fake_sleep, discover=True)
    assert c.put("k", "v") == 5
    assert c.endpoints == [a.url, b.url]  # a wildcard address takes the answering node's host
    assert len(a.requests("GET", "/v1/members")) == 1
    c.put("k", "v")
    assert len(a.requests("GET", "/v1/members")) == 1  # learnt once


def test_write_timeout_is_never_retried(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("PUT", "/v1/kv/k", (503, {"error": "timeout", "message": "not committed in 5 s"}))
    a.on("DELETE", "/v1/kv/k", (503, {"error": "timeout", "message": "not committed in 5 s"}))
    c = client(a.url, b.url, sleep=fake_sleep)
    with pytest.raises(WriteTimeout):
        c.put("k", "v")
    with pytest.raises(WriteTimeout):
        c.delete("k")
    assert len(a.seen) == 2 and not b.seen


def test_read_timeout_is_retried_elsewhere(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("GET", "/v1/kv/k", (503, {"error": "timeout", "message": "read index timed out"}))
    b.on("GET", "/v1/kv/k", (200, kv_json("k", "v")))
    c = client(a.url, b.url, sleep=fake_sleep)
    assert c.get("k") is not None


def test_connection_lost_after_a_write_was_sent_is_a_write_timeout(fake: FakeCluster,
                                                                  fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("PUT", "/v1/kv/k", Drop())
    a.on("GET", "/v1/kv/k", Drop())
    b.on("GET", "/v1/kv/k", (200, kv_json("k", "v")))
    c = client(a.url, b.url, sleep=fake_sleep)
    with pytest.raises(WriteTimeout, match="may have happened"):
        c.put("k", "v")
    assert not b.seen
    assert c.get("k") is not None  # a read is simply asked elsewhere


def test_hanging_write_times_out_as_write_timeout(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a = fake.node()
    a.on("PUT", "/v1/kv/k", Hang())
    c = Client(a.url, timeout=0.3, discover=False)
    with pytest.raises(WriteTimeout):
        c.put("k", "v")


def test_all_dead_is_unavailable_after_three_passes(fake_sleep: FakeSleep, dead_endpoint: str) -> None:
    c = client(dead_endpoint, sleep=fake_sleep)
    with pytest.raises(UnavailableError) as info:
        c.put("k", "v")
    assert len(info.value.details["attempts"]) == 3
    assert fake_sleep.pauses == [0.05, 0.1]
    assert "cannot connect" in info.value.message
    with pytest.raises(UnavailableError) as info:
        client(dead_endpoint, sleep=fake_sleep, max_attempts=2).get("k")
    assert len(info.value.details["attempts"]) == 2


def test_no_leader_forever_stops_at_the_deadline(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a = fake.node()
    a.on("PUT", "/v1/kv/k", NO_LEADER)
    c = client(a.url, sleep=fake_sleep, timeout=1.0, deadline=2.0, max_attempts=100)
    with pytest.raises(NoLeaderError):
        c.put("k", "v")
    assert sum(fake_sleep.pauses) < 2.0
    assert 3 <= len(a.seen) < 100


@pytest.mark.parametrize(("status", "body", "error"), [
    (401, {"error": "unauthorized", "message": "token"}, UnauthorizedError),
    (401, "Unauthorized", UnauthorizedError),
    (503, {"error": "recovery_mode", "message": "run quorate recovery"}, RecoveryModeError),
    (400, {"error": "bad_request", "message": "unknown field"}, BadRequestError),
    (409, {"error": "conflict", "message": "member exists"}, ConflictError),
])
def test_refusals_are_typed_and_not_retried(fake: FakeCluster, fake_sleep: FakeSleep, status: int, body: object,
                                            error: type[QuorateClientError]) -> None:
    a, b = fake.node(), fake.node()
    a.on("POST", "/v1/members/n4/promote", (status, body))
    c = client(a.url, b.url, sleep=fake_sleep)
    with pytest.raises(error):
        c.promote("n4")
    assert len(a.seen) == 1 and not b.seen


def test_unknown_error_code_and_non_json_answers(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a = fake.node()
    a.on("GET", "/v1/kv/x", (418, {"error": "teapot", "message": "short and stout"}))
    a.on("GET", "/v1/kv/y", (502, "Bad Gateway"))
    a.on("GET", "/v1/kv/z", (200, "not json"))
    c = client(a.url, sleep=fake_sleep)
    with pytest.raises(QuorateClientError) as info:
        c.get("x")
    assert (info.value.code, info.value.status, info.value.message) == ("teapot", 418, "short and stout")
    with pytest.raises(QuorateClientError) as info:
        c.get("y")
    assert info.value.code == "http_502"
    with pytest.raises(QuorateClientError, match="not JSON"):
        c.get("z")


def test_redirect_is_followed(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a, b = fake.node(), fake.node()
    a.on("PUT", "/v1/kv/k", (307, {}, {"Location": b.url + "/v1/kv/k"}))
    b.on("PUT", "/v1/kv/k", (200, {"revision": 1}))
    assert client(a.url, sleep=fake_sleep).put("k", "v") == 1
    assert b.seen[0].body == {"value": "v"}


def test_watch_follows_next_revision_and_reports_compaction(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a = fake.node()
    put = {"type": "put", "key": "p/a", "revision": 5, "value": "1", "create_revision": 5}
    delete = {"type": "delete", "key": "p/a", "revision": 6, "value": None, "create_revision": 0}
    a.on("GET", "/v1/watch", (200, {"events": [put], "next_revision": 6}),
         (200, {"events": [], "next_revision": 6}), (200, {"events": [delete], "next_revision": 7}),
         (410, {"error": "compacted", "message": "gone", "oldest_revision": 40}))
    c = client(a.url, sleep=fake_sleep)
    events = c.watch("p/", 5, poll_timeout=2.5)
    assert [(e.type, e.revision) for e in (next(events), next(events))] == [("put", 5), ("delete", 6)]
    assert [s.query["from_revision"] for s in a.seen] == ["5", "6", "6"]
    assert a.seen[0].query == {"prefix": "p/", "from_revision": "5", "timeout": "3"}
    with pytest.raises(CompactedError) as info:
        next(events)
    assert info.value.oldest_revision == 40


def test_health_metrics_and_membership_calls(fake: FakeCluster, fake_sleep: FakeSleep) -> None:
    a = fake.node()
    a.on("GET", "/v1/health", (503, {"healthy": False, "id": "n1"}))
    a.on("GET", "/metrics", (200, "quorate_term 3\n"))
    a.on("POST", "/v1/members", (200, {"members": members_json(("n1", a.url), ("n4", "http://10.0.0.4:8001"))}))
    a.on("DELETE", "/v1/members/n4", (200, {}))
    a.on("POST", "/v1/leader/transfer", (200, {"target": "n2"}))
    c = client(a.url, sleep=fake_sleep)
    assert c.health().healthy is False
    assert c.metrics_text() == "quorate_term 3\n"
    assert [m.id for m in c.join("n4", "10.0.0.4:7001", "10.0.0.4:8001")] == ["n1", "n4"]
    assert a.requests("POST", "/v1/members")[0].body == {"id": "n4", "peer_addr": "10.0.0.4:7001",
                                                           "api_addr": "10.0.0.4:8001"}
    c.remove("n4")
    assert c.transfer_leader() == "n2"
    assert a.requests("POST", "/v1/leader/transfer")[0].body == {"target": None}


def test_pinned_status_does_not_fail_over(fake: FakeCluster, fake_sleep: FakeSleep, dead_endpoint: str) -> None:
    a = fake.node()
    a.on("GET", "/v1/status", (200, STATUS))
    c = client(a.url, dead_endpoint, sleep=fake_sleep)
    with pytest.raises(UnavailableError):
        c.status(dead_endpoint)
    assert not a.seen


def test_bad_input_is_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        Client("ftp://x:1")
    with pytest.raises(ValueError):
        Client("http://x:1/path")
    c = Client("http://127.0.0.1:1", discover=False)
    with pytest.raises(ValueError):
        c.get("")
    with pytest.raises(TypeError):
        c.put("k", 5)  # type: ignore[arg-type]


def test_errors_carry_request_timeout_base() -> None:
    assert issubclass(WriteTimeout, RequestTimeoutError)
    assert issubclass(NotFoundError, QuorateClientError)
