"""One PySyncObj node with a small HTTP front (run as a process, 3 of them).

PySyncObj's "replicated calls" are in-process method calls: a program embeds
``SyncObj`` and calls ``@replicated`` methods, which are forwarded to the
leader and answered through a callback once committed. To drive it like the
other systems, each node process embeds the KV below and serves it over HTTP
(aiohttp, as quorate's API): ``PUT /kv/KEY {"value"}`` is a replicated
``set``; ``GET /kv/KEY`` is a replicated ``get`` (PySyncObj has no ReadIndex,
so a linearizable read goes through the log); ``GET /kv/KEY?stale=1`` reads
locally; ``GET /status``.

PySyncObj keeps its log in memory (no journal file here: its journal is an
mmap without fsync), so it is *not* durable: the table says so.

    python -m bench.systems.pysyncobj_node SELF_ADDR PEER1,PEER2 HTTP_PORT [fast] [batch]

``batch`` keeps PySyncObj's default ``appendEntriesUseBatch=True``, which
sends new entries only every ``appendEntriesPeriod`` (100 ms): every write
then waits about 100 ms. The benchmark runs without it (entries are sent as
they are proposed), the setting PySyncObj documents for request latency;
``python -m bench --pysyncobj-batch`` measures the default instead.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web
from pysyncobj import SyncObj, SyncObjConf, replicated

REQUEST_TIMEOUT = 5.0


class KV(SyncObj):
    def __init__(self, self_addr: str, peers: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, peers, conf)
        self.data: dict[str, str] = {}

    @replicated
    def set(self, key: str, value: str) -> bool:
        self.data[key] = value
        return True

    @replicated
    def get(self, key: str) -> str | None:
        return self.data.get(key)


def conf(fast: bool, batch: bool) -> SyncObjConf:
    kw: dict[str, object] = {"appendEntriesUseBatch": batch}
    if fast:
        kw.update(appendEntriesPeriod=0.03, raftMinTimeout=0.15, raftMaxTimeout=0.3,
                  autoTickPeriod=0.01, connectionTimeout=1.0, connectionRetryTime=0.2)
    return SyncObjConf(**kw)


def main() -> None:
    self_addr, peers, port = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    flags = sys.argv[4:]
    kv = KV(self_addr, peers, conf("fast" in flags, "batch" in flags))

    async def call(method, *args) -> web.Response:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(result: object, error: object) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result((result, error)))

        method(*args, callback=done)
        try:
            result, error = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except TimeoutError:
            return web.json_response({"error": "timeout"}, status=503)
        if error != 0:  # FAIL_REASON.SUCCESS == 0
            return web.json_response({"error": f"failed ({error})"}, status=503)
        return web.json_response({"value": result})

    async def put(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return await call(kv.set, request.match_info["key"], body["value"])

    async def get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if request.query.get("stale"):
            if key in kv.data:
                return web.json_response({"value": kv.data[key]})
            return web.json_response({"error": "not_found"}, status=404)
        return await call(kv.get, key)

    async def status(request: web.Request) -> web.Response:
        leader = kv._getLeader()  # noqa: SLF001 (no public accessor)
        return web.json_response({"self": self_addr, "leader": str(leader) if leader else None,
                                  "is_leader": kv._isLeader()})  # noqa: SLF001

    app = web.Application()
    app.router.add_put("/kv/{key:.+}", put)
    app.router.add_get("/kv/{key:.+}", get)
    app.router.add_get("/status", status)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
