"""Fuzzing the HTTP API of a real node: arbitrary bodies, paths, query
strings and headers at the routes that parse input.

One node runs in-process (Raft on memory storage, elected on its own, the
API with the recovery and quorum-recovery routes an agent installs) on a
background event loop, as in tests/unit/api_client/livenode.py. Every answer
must be a success or a 4xx with the API's JSON error shape
``{"error": code, "message": text}``: never a 500 (an exception that
escaped a handler), never a hang (each request is bounded).
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote_plus, urlencode

import aiohttp
import pytest
from aiohttp import web
from fuzz_support import HANG_LIMIT_S, mutated
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from quorate.api.server import Api
from quorate.raft import RaftConfig
from quorate.recovery import BackupDir, RecoveryRoutes, RecoveryService, StoreWriter
from quorate.recovery.backup_file import BackupHeader, encode
from quorate.recovery.quorum_routes import QuorumRoutes
from quorate.recovery.quorum_watchdog import QuorumWatchdog
from quorate.runtime.raft_loop import RaftRuntime
from quorate.runtime.state_machine import MemberInfo
from quorate.testing.memory_storage import MemoryStorage

pytestmark = pytest.mark.fuzz

T = TypeVar("T")


class Node:
    """One elected node serving the full API on 127.0.0.1."""

    def __init__(self, backups: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-node", daemon=True)
        self._thread.start()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = URL(f"http://127.0.0.1:{port}")
        info = MemberInfo("127.0.0.1:1", f"127.0.0.1:{port}")
        self.rt = RaftRuntime("n1", RaftConfig(election_ticks=5), MemoryStorage(), lambda m: None,
                              self_info=info, tick_seconds=0.01, election_timeout_s=0.05, request_timeout=2.0,
                              bootstrap={"n1": info})
        self.writer = StoreWriter(self.rt)
        self.recovery = RecoveryService(self.rt, self.writer, BackupDir(backups, fsync=False), cluster_id="c1",
                                        backup_interval_s=3600.0)
        self.quorum = QuorumRoutes(QuorumWatchdog(self.rt, None, grace_s=60.0, interval_s=1.0, auto_recover=False))
        self._runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(HANG_LIMIT_S)

    async def _start(self) -> None:
        await self.rt.start()
        app = Api(self.rt, status_hooks=[self.quorum.adjust_status]).app()
        RecoveryRoutes(self.recovery).install(app)
        self.quorum.install(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HANG_LIMIT_S))

    def wait_leader(self) -> None:
        deadline = time.monotonic() + HANG_LIMIT_S
        while not self.rt.is_leader:
            assert time.monotonic() < deadline, "the single node did not elect itself"
            time.sleep(0.01)

    def request(
        self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        """(status, content type, body); a hang fails through the timeouts."""

        async def send() -> tuple[int, str, bytes]:
            assert self.session is not None
            url = URL(f"{self.url}{path}" + (f"?{query}" if query else ""), encoded=True)
            async with self.session.request(method, url, data=body, headers=headers) as resp:
                return resp.status, resp.content_type, await resp.read()

        return self.call(send())

    def close(self) -> None:
        async def stop() -> None:
            if self.session is not None:
                await self.session.close()
            await self.writer.close()
            if self._runner is not None:
                await self._runner.cleanup()
            await self.rt.stop()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(HANG_LIMIT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with tempfile.TemporaryDirectory() as tmp:
        n = Node(Path(tmp))
        try:
            n.wait_leader()
            yield n
        finally:
            n.close()


def _check_answer(status: int, content_type: str, body: bytes) -> None:
    """A success, or a 4xx with the API's JSON error shape."""
    assert status < 500, f"{status}: {body[:300]!r}"
    if status >= 400:
        assert content_type == "application/json", (status, content_type, body[:200])
        err = json.loads(body)
        assert isinstance(err, dict) and type(err.get("error")) is str and type(err.get("message")) is str, err


# -- inputs ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
SPEC = {"id": "web", "size": 1, "template": {"command": "sleep", "args": ["60"]}}
BACKUP = encode(BackupHeader(counter=1, wall_time=1.0, cluster_id="c1", raft_index=1, node="n1"),
                [("fuzz/a", "1", 1, 1, 1)])
seeds = [b'{"value": "v"}', b'{"value": "v", "prev_revision": 0}', json.dumps(SPEC).encode(),
         b'{"id": "n9", "peer_addr": "127.0.0.1:9", "api_addr": "127.0.0.1:9"}', b'{"confirm": true}',
         b'{"confirm": true, "remove": ["n2"]}', b'{"node": "n1"}', b'{"target": null}']
DEEP = b"[" * 100_000  # json.loads recursed past the limit: RecursionError, a 500
HUGE_INT = b"1" * 5000  # int() refuses over 4300 digits with a ValueError that is not a JSONDecodeError

bodies = st.one_of(
    st.sampled_from(seeds).flatmap(mutated),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={"value": json_values, "prev_revision": json_values, "confirm": json_values,
                                        "remove": json_values, "node": json_values, "id": json_values,
                                        "peer_addr": json_values, "api_addr": json_values, "target": json_values,
                                        "template": json_values, "size": json_values})
    .map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"", DEEP, b'{"value": ' * 50_000, HUGE_INT, b'{"value": "v", "prev_revision": ' + HUGE_INT + b"}",
                     b"\xff\xfe", b"NaN", b'{"value": "\\ud800"}']),
)
names = st.text(st.characters(codec="utf-8"), min_size=0, max_size=12).map(lambda t: quote(t, safe=""))
routes = st.one_of(
    st.tuples(st.sampled_from(["PUT", "GET", "DELETE"]), names.map(lambda k: f"/v1/kv/fuzz{k}")),
    st.tuples(st.sampled_from(["PUT"]), names.map(lambda g: f"/v1/groups/{g or 'web'}")),
    st.tuples(st.sampled_from(["POST"]), st.sampled_from(["/v1/groups", "/v1/members", "/v1/quorum/recover",
                                                          "/v1/recovery/proceed", "/v1/leader/transfer"])),
    st.tuples(st.sampled_from(["GET"]), st.sampled_from(["/v1/kv", "/v1/watch", "/v1/groups", "/v1/quorum/recover"])),
)
# "1" * 4400 passes aiohttp's 8190-byte request line (a longer line gets
# aiohttp's own plain-text 400 before any route runs) and not int().
query_values = st.one_of(
    st.text(max_size=8), st.sampled_from(["", "-1", "0", "1", "abc", "1e3", "nan", "-inf", "0x10", "1" * 4400,
                                          "\u0661", "linearizable", "stale", "true"]),
)
queries = st.dictionaries(
    st.sampled_from(["prefix", "limit", "prev_revision", "consistency", "timeout", "from_revision", "remove",
                     "force", "x"]),
    query_values, max_size=3,
).map(lambda q: urlencode({"timeout": "0", **q}))  # a watch without a timeout waits 30 s
headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", "x/y"]),
    "X-Quorate-Forwarded": st.sampled_from(["n2", ""]),
    "Accept": st.sampled_from(["*/*", "text/html"]),
})


def _safe_query(query: str) -> str:
    """A watch must not wait: any timeout that parses as a long wait is cut
    to zero (waiting out the 60 s cap would be correct, just slow); and the
    request line stays under aiohttp's limit."""
    parts = []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "timeout":
            raw = unquote_plus(value)
            if not raw:
                value = "0"  # an empty value means the default 30 s wait
            else:
                try:
                    if float(raw) > 0.05:  # float() as the server reads it (spaces, other digits)
                        value = "0"
                except ValueError:
                    pass  # unparseable: exactly what is being fuzzed
        parts.append(f"{key}={value}")
    while len("&".join(parts)) > 8000:  # aiohttp's request line limit, see query_values
        parts.pop()
    return "&".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=routes, query=queries, body=bodies, hdrs=headers)
@example(route=("PUT", "/v1/kv/fuzz-deep"), query="", body=DEEP, hdrs={})
@example(route=("PUT", "/v1/kv/fuzz-int"), query="", body=HUGE_INT, hdrs={})
@example(route=("POST", "/v1/members"), query="", body=DEEP, hdrs={})
@example(route=("PUT", "/v1/groups/web"), query="", body=DEEP, hdrs={})
@example(route=("POST", "/v1/quorum/recover"), query="", body=DEEP, hdrs={})
@example(route=("POST", "/v1/recovery/proceed"), query="", body=DEEP, hdrs={})
@example(route=("POST", "/v1/leader/transfer"), query="", body=DEEP, hdrs={})
@example(route=("GET", "/v1/watch"), query="timeout=abc", body=b"", hdrs={})
@example(route=("GET", "/v1/watch"), query="timeout=&prefix=", body=b"{}", hdrs={})
@example(route=("PUT", "/v1/groups/web"), query="",
         body=json.dumps({**SPEC, "template": {"command": "{index:300000000}"}}).encode(), hdrs={})
def test_routes_answer_any_input_with_success_or_a_json_4xx(
    node: Node, route: tuple[str, str], query: str, body: bytes, hdrs: dict[str, str]
) -> None:
    method, path = route
    status, content_type, answer = node.request(method, path, _safe_query(query), body, hdrs)
    event(f"{method} {path.split('/')[2]}: {status}")
    _check_answer(status, content_type, answer)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(mutated(BACKUP), st.binary(max_size=100)))
@example(body=BACKUP)  # intact: restored
@example(body=BACKUP[:-1])
@example(body=b"")
def test_backup_restore_endpoint_answers_any_file(node: Node, body: bytes) -> None:
    """``POST /v1/backup/restore``: a damaged file is a 400 naming the
    problem (an intact one is restored: a success)."""
    status, content_type, answer = node.request("POST", "/v1/backup/restore", "", body, {})
    event(f"restore: {status}")
    _check_answer(status, content_type, answer)
