"""The state both clients share: endpoints, retry policy, token, clock.

Kept apart from the IO so that :class:`Client` and :class:`AsyncClient`
differ only in how they send bytes and how they sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from . import calls
from .calls import Call
from .endpoints import EndpointBook
from .models import Member
from .retry import Plan, RetryPolicy, plan

T = TypeVar("T")

USER_AGENT = "quorate-client/0.1"


class ClientCore:
    def __init__(self, endpoints: str | Sequence[str], *, token: str | None, timeout: float, deadline: float,
                 max_attempts: int, discover: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.book = EndpointBook([endpoints] if isinstance(endpoints, str) else list(endpoints))
        self.book.needs_discovery = discover
        self.policy = RetryPolicy(request_timeout=timeout, deadline=max(deadline, timeout),
                                  max_attempts=max_attempts)
        self.token = token
        self.clock = clock
        self._discover = discover

    def headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def plan(self, call: Call[T]) -> Plan[T]:
        return plan(call, self.book, self.policy, self.clock)

    def wants_discovery(self, call: Call[T]) -> bool:
        return (self._discover and self.book.needs_discovery and call.endpoint is None
                and call.request.path != "/v1/members")

    def discovery_plan(self) -> Plan[tuple[Member, ...]]:
        """``GET /v1/members`` once per known endpoint, briefly: discovery
        is best effort and must not slow a call down much."""
        policy = RetryPolicy(request_timeout=self.policy.request_timeout, deadline=self.policy.request_timeout,
                             max_attempts=len(self.book.endpoints), backoff_initial=0.0, backoff_max=0.0)
        return plan(calls.members(), self.book, policy, self.clock)

    def learn(self, members: Sequence[Member]) -> None:
        self.book.learn(members, answered_by=self.book.preferred)

    def saw_members(self, members: Sequence[Member]) -> None:
        """A ``members()`` answer doubles as discovery, when it is on."""
        if self._discover:
            self.learn(members)
