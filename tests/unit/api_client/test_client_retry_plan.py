"""The retry plan without any IO: drive the generator by hand."""

from __future__ import annotations

import pytest

from quorate.client import NoLeaderError, WriteTimeout, calls
from quorate.client.calls import Response
from quorate.client.endpoints import EndpointBook, normalize_endpoint, parse_endpoints
from quorate.client.models import Member
from quorate.client.retry import Failure, RetryPolicy, Send, Sleep, plan

A, B, C = "http://10.0.0.1:1", "http://10.0.0.2:1", "http://10.0.0.3:1"
NO_LEADER = Response(503, b'{"error": "no_leader", "message": "x"}')


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(gen, outcomes):  # type: ignore[no-untyped-def]
    """Feed ``outcomes`` to the Sends (sleeps get None); return the actions."""
    actions = []
    reply = None
    try:
        while True:
            action = gen.send(reply)
            actions.append(action)
            reply = outcomes.pop(0) if isinstance(action, Send) else None
    except StopIteration as stop:
        actions.append(("result", stop.value))
    return actions


def test_connection_failures_try_untried_endpoints_first_then_back_off() -> None:
    book = EndpointBook([A, B, C])
    refused = Failure(sent=False, reason="refused")
    actions = drive(plan(calls.get("k"), book, RetryPolicy(max_attempts=5), Clock()),
                    [refused, refused, refused, refused, Response(200, b'{"key":"k","value":"v",'
                                                                   b'"create_revision":1,"mod_revision":1}')])
    kinds = [a.endpoint if isinstance(a, Send) else a for a in actions[:-1]]
    assert kinds == [A, B, C, Sleep(0.05), A, Sleep(0.1), B]
    assert book.preferred == B


def test_no_leader_backs_off_between_every_attempt() -> None:
    gen = plan(calls.put("k", "v"), EndpointBook([A, B]), RetryPolicy(max_attempts=3), Clock())
    with pytest.raises(NoLeaderError) as info:
        drive(gen, [NO_LEADER, NO_LEADER, NO_LEADER])
    assert len(info.value.details["attempts"]) == 3


def test_sent_write_is_never_resent() -> None:
    gen = plan(calls.put("k", "v"), EndpointBook([A, B]), RetryPolicy(), Clock())
    assert isinstance(next(gen), Send)
    with pytest.raises(WriteTimeout):
        gen.send(Failure(sent=True, reason="reset"))


def test_no_pause_that_would_end_past_the_deadline() -> None:
    clock = Clock()
    gen = plan(calls.get("k"), EndpointBook([A]), RetryPolicy(request_timeout=1.0, deadline=1.0), clock)
    assert isinstance(next(gen), Send)
    clock.now = 0.99
    with pytest.raises(NoLeaderError):
        gen.send(NO_LEADER)


def test_send_timeout_is_capped_by_the_deadline_and_extended_for_watches() -> None:
    clock = Clock()
    policy = RetryPolicy(request_timeout=10.0, deadline=60.0)
    first = next(plan(calls.watch("p", 1, timeout=30), EndpointBook([A]), policy, clock))
    assert isinstance(first, Send) and first.timeout == 40.0
    clock.now = 0.0
    short = next(plan(calls.get("k"), EndpointBook([A]), RetryPolicy(request_timeout=10.0, deadline=10.0), clock))
    assert isinstance(short, Send) and short.timeout == 10.0


def test_endpoint_normalization() -> None:
    assert normalize_endpoint("127.0.0.1:7101") == "http://127.0.0.1:7101"
    assert normalize_endpoint("https://Node-1:443/") == "https://node-1:443"
    assert normalize_endpoint("[::1]:80") == "http://[::1]:80"
    assert parse_endpoints("a:1, b:2,a:1") == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError):
        parse_endpoints(" , ")


def test_book_learns_members_and_resolves_hints() -> None:
    book = EndpointBook([A])
    book.learn([Member("n1", "x:1", "10.0.0.1:1", "voter"), Member("n2", "x:2", "0.0.0.0:9", "voter"),
                Member("n3", "x:3", "", "learner")], answered_by=A)
    assert book.endpoints == [A, "http://10.0.0.1:9"]
    assert book.resolve_hint("n2") == "http://10.0.0.1:9"
    assert book.resolve_hint(None) is None
    assert book.resolve_hint("n9") is None and book.needs_discovery
    assert book.resolve_hint("10.0.0.7:5") == "http://10.0.0.7:5"
