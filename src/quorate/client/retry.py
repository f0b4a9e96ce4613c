"""How one call is tried against the endpoints, without doing any IO.

:func:`plan` is a generator: it yields :class:`Send` (do this HTTP exchange
and send me back a :class:`Response` or a :class:`Failure`) and
:class:`Sleep`, and returns the decoded answer or raises a typed error. The
sync client drives it with ``http.client`` and ``time.sleep``, the async one
with aiohttp and ``asyncio.sleep``; the rules live here once:

* a failed connection, or ``no_leader`` / ``shutting_down`` /
  ``not_committed`` (the request did not happen) moves to the next endpoint,
  within ``max_attempts`` and the call's ``deadline``;
* a leader hint in a refusal (or a 307/308 redirect) is followed at once;
* a lost connection after a write was sent, or a ``timeout`` answer to a
  write, raises :class:`WriteTimeout`: the write may have happened, so it
  is never re-sent;
* the first pass over the endpoints after a connection failure does not
  wait; otherwise attempts back off exponentially; when every endpoint has
  refused the connection ``unreachable_passes`` times in a row, the call
  fails with :class:`UnavailableError` at once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from .calls import Call, Request, Response, leader_hint
from .endpoints import EndpointBook, origin
from .errors import RETRYABLE, QuorateClientError, RequestTimeoutError, UnavailableError, WriteTimeout

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: Seconds for one HTTP exchange (a watch adds its poll time).
    request_timeout: float = 10.0
    #: Seconds for a whole call, every attempt and pause included.
    deadline: float = 30.0
    #: Exchanges per call, across endpoints.
    max_attempts: int = 10
    #: Give up once every endpoint refused the connection this many times
    #: in a row: the cluster is down, waiting longer rarely helps.
    unreachable_passes: int = 3
    backoff_initial: float = 0.05
    backoff_max: float = 1.0

    def __post_init__(self) -> None:
        if self.request_timeout <= 0 or self.deadline <= 0 or self.max_attempts < 1:
            raise ValueError("timeouts must be positive and max_attempts at least 1")

    def backoff(self, pause_number: int) -> float:
        return min(self.backoff_max, self.backoff_initial * (2 ** max(0, pause_number - 1)))


@dataclass(frozen=True, slots=True)
class Send:
    endpoint: str
    request: Request
    timeout: float


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Failure:
    """The exchange failed below HTTP. ``sent``: the request may have
    reached the server (connection lost or timed out after sending)."""

    sent: bool
    reason: str


Action: TypeAlias = Send | Sleep
Plan: TypeAlias = Generator[Action, "Response | Failure | None", T]


def plan(call: Call[T], book: EndpointBook, policy: RetryPolicy, clock: Callable[[], float]) -> Plan[T]:
    """Try ``call`` until it answers; see the module docstring."""
    start = clock()
    order = [call.endpoint] if call.endpoint else book.rotation()
    max_attempts = 1 if call.endpoint else policy.max_attempts
    tried: set[str] = set()
    attempts: list[str] = []
    last_error: QuorateClientError | None = None
    pauses = refused_in_a_row = 0
    endpoint = order[0]
    for attempt in range(1, max_attempts + 1):
        remaining = policy.deadline - (clock() - start)
        if remaining <= 0:
            break
        tried.add(endpoint)
        outcome = yield Send(endpoint, call.request, min(policy.request_timeout + call.extra_timeout, remaining))
        verdict = _judge(call, outcome, endpoint, book)
        if isinstance(verdict, _Answer):
            book.succeeded(endpoint)
            return verdict.value
        attempts.append(f"{endpoint}: {verdict.note}")
        last_error = verdict.error or last_error
        refused_in_a_row = refused_in_a_row + 1 if verdict.refused else 0
        if attempt == max_attempts or refused_in_a_row >= policy.unreachable_passes * len(order):
            break
        untried = [e for e in order if e not in tried]
        if verdict.hint and verdict.hint != endpoint:
            endpoint = verdict.hint
        elif verdict.refused and untried:
            endpoint = untried[0]
        else:
            pauses += 1
            pause = policy.backoff(pauses)
            if pause >= policy.deadline - (clock() - start):
                break  # no time left for another attempt after the pause
            yield Sleep(pause)
            endpoint = untried[0] if untried else _after(order, endpoint)
    raise _give_up(call, last_error, attempts)


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class _Retry:
    note: str
    error: QuorateClientError | None = None
    hint: str | None = None
    refused: bool = False  # the connection was refused: nothing was sent


def _judge(call: Call[T], outcome: Response | Failure | None, endpoint: str,
           book: EndpointBook) -> _Answer[T] | _Retry:
    """The answer, or why and where to try again; raises what must not be
    retried (the server's refusals, and writes whose outcome is unknown)."""
    if isinstance(outcome, Failure):
        if outcome.sent and not call.idempotent:
            raise WriteTimeout(f"lost the connection to {endpoint} after sending {call.request.method} "
                               f"{call.request.path} ({outcome.reason}): the write may have happened",
                               code="timeout", details={"endpoint": endpoint})
        return _Retry(outcome.reason, refused=not outcome.sent)
    if not isinstance(outcome, Response):
        raise TypeError(f"a Send needs a Response or a Failure back, got {outcome!r}")
    if outcome.status in (307, 308) and outcome.location:
        return _Retry(f"redirected to {outcome.location}", hint=book.resolve_hint(origin(outcome.location)))
    try:
        return _Answer(call.outcome(outcome))  # type: ignore[arg-type]
    except RETRYABLE as exc:
        return _Retry(str(exc), error=exc, hint=book.resolve_hint(leader_hint(exc)))
    except RequestTimeoutError as exc:
        if not call.idempotent:
            raise WriteTimeout(exc.message, code=exc.code, status=exc.status, details=exc.details) from None
        return _Retry(str(exc), error=exc)


def _after(order: list[str], endpoint: str) -> str:
    """The endpoint after ``endpoint`` in the rotation (a hinted one that is
    not in it goes back to the start)."""
    if endpoint not in order:
        return order[0]
    return order[(order.index(endpoint) + 1) % len(order)]


def _give_up(call: Call[T], last_error: QuorateClientError | None, attempts: list[str]) -> QuorateClientError:
    if last_error is not None:
        last_error.details.setdefault("attempts", attempts)
        return last_error
    summary = "; ".join(attempts[-4:]) or "deadline reached before any attempt"
    return UnavailableError(f"no endpoint answered {call.request.method} {call.request.path}: {summary}",
                            details={"attempts": attempts})
