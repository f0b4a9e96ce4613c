"""``quorate agent``: one manager process (storage + transport + runtime + API).

Backups and recovery mode (S5) run beside the runtime: the recovery service
decides at start whether the node runs normally, enters recovery mode or
refuses to start (exit code 3, a rolled-back store), gates the API
accordingly and runs the backup loop (``quorate.recovery``).

Shutdown on SIGTERM or SIGINT is graceful: stop accepting API requests, hand
leadership to the most caught-up voter if this node leads (bounded wait),
flush the Ready loop, close storage and sockets, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web

from quorate.errors import Conflict
from quorate.http_session import new_session
from quorate.api.server import Api
from quorate.api.tls_site import LoggedTlsSite
from quorate.config import AgentConfig, parse_hostport
from quorate.raft import RaftConfig, Role
from quorate.recovery import EXIT_REFUSED, BackupDir, RecoveryRoutes, RecoveryService, StoreWriter
from quorate.recovery.quorum_routes import QuorumRoutes
from quorate.recovery.quorum_watchdog import QuorumWatchdog
from quorate.storage import FileStorage
from quorate.transport import PeerTransport, make_ssl_contexts

from quorate.kv import Put, encode_command

from quorate.manager.controller import Manager, ManagerSettings

from .raft_loop import RaftRuntime
from .state_machine import MEMBER_PREFIX, MemberInfo

log = logging.getLogger("quorate.agent")


def raft_config(cfg: AgentConfig) -> RaftConfig:
    return RaftConfig(election_ticks=cfg.election_ticks, heartbeat_ticks=1, pre_vote=True, check_quorum=True)


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self._stop = asyncio.Event()
        self._ssl_server: ssl.SSLContext | None = None
        self._ssl_client: ssl.SSLContext | None = None
        if cfg.tls_cert and cfg.tls_key and cfg.tls_ca:
            self._ssl_server, self._ssl_client = make_ssl_contexts(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)
        data = Path(cfg.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.storage = FileStorage(data / "raft", fsync=cfg.fsync)
        self.transport = PeerTransport(
            cfg.id, cfg.cluster_id, parse_hostport(cfg.peer_addr), token=cfg.peer_token,
            ssl_server=self._ssl_server, ssl_client=self._ssl_client, max_frame=cfg.max_frame_bytes,
            on_message=self._on_message, epoch=self._epoch, admit=self._admit_peer,
            on_peer_lost=self._on_peer_lost)
        self.self_info = MemberInfo(cfg.peer_addr, cfg.api_addr)
        # A bootstrap names peer addresses only, and every member must write the
        # very same first entries; API addresses are registered afterwards.
        bootstrap = {m: MemberInfo(addr, "") for m, addr in cfg.bootstrap.items()}
        self.runtime = RaftRuntime(
            cfg.id, raft_config(cfg), self.storage, self.transport.send, self_info=self.self_info,
            tick_seconds=cfg.tick_seconds, election_timeout_s=cfg.election_timeout_s,
            request_timeout=cfg.request_timeout_s, snapshot_entries=cfg.snapshot_entries,
            bootstrap=bootstrap or None, on_members_changed=self._set_peers)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.exit_code = 0
        self.writer = StoreWriter(self.runtime, api_token=cfg.api_token, ssl_client=self._ssl_client)
        self.recovery = RecoveryService(
            self.runtime, self.writer, BackupDir(cfg.backup_path, keep=cfg.backup_keep, fsync=cfg.fsync),
            cluster_id=cfg.cluster_id, backup_interval_s=cfg.backup_interval_s,
            accept_rollback=cfg.accept_rollback, auto_recover_after_s=cfg.auto_recover_after_s,
            on_refuse=self._refuse)
        self.runtime.dead_member_timeout_s = cfg.dead_member_timeout_s
        self.runtime.min_voters = cfg.min_voters or 3
        self._left = False
        self.manager = Manager(self.runtime, ManagerSettings(
            provider_dir=cfg.provider_path, interval_s=cfg.reconcile_interval_s,
            call_timeout_s=cfg.provider_timeout_s, barrier_timeout_s=max(2 * cfg.request_timeout_s, 5.0),
            cluster_id=cfg.cluster_id, api_scheme="https" if self._ssl_client else "http",
            min_voters=cfg.min_voters),
            may_run=self.recovery.healthy)
        self.watchdog = QuorumWatchdog(
            self.runtime, self.manager, grace_s=cfg.quorum_grace, interval_s=cfg.election_timeout_s,
            auto_recover=cfg.auto_recover, api_scheme="https" if self._ssl_client else "http",
            api_token=cfg.api_token, ssl_client=self._ssl_client)

    def _epoch(self) -> int:
        return self.runtime.sm.epoch

    def _admit_peer(self, node: str, epoch: int) -> str | None:
        """Refuse a member left behind by a forced configuration (an old
        disk come back): it is of an older epoch and no longer a member."""
        mine = self.runtime.sm.epoch
        if epoch < mine and node not in self.runtime.node.conf.members():
            return (f"{node} is of cluster epoch {epoch} but the cluster is at epoch {mine}: quorum-loss "
                    f"recovery removed it. Wipe its data directory and let the managers group provision "
                    f"a replacement (or join it anew with --join)")
        return None

    def _on_message(self, msg: object) -> None:
        self.runtime.step(msg)  # type: ignore[arg-type]

    def _on_peer_lost(self, node: str) -> None:
        self.runtime.peer_lost(node)

    def _set_peers(self, members: dict[str, MemberInfo]) -> None:
        peers = {}
        for m, info in members.items():
            if m != self.cfg.id and info.peer_addr:
                peers[m] = parse_hostport(info.peer_addr)
        self.transport.set_peers(peers)

    async def start(self) -> None:
        await self.transport.start()
        await self.runtime.start()
        quorum = QuorumRoutes(self.watchdog)
        api = Api(self.runtime, api_token=self.cfg.api_token, peer_ssl=self._ssl_client, gate=self.recovery,
                  manager=self.manager, status_hooks=[quorum.adjust_status])
        api.leave_hook = self.leave
        app = api.app()
        RecoveryRoutes(self.recovery).install(app)
        quorum.install(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = parse_hostport(self.cfg.api_addr)
        if self._ssl_server is not None:
            await LoggedTlsSite(self._runner, host, port, self._ssl_server, self.cfg.id).start()
        else:
            await web.TCPSite(self._runner, host, port).start()
        log.info("node=%s serving API on %s, peers on %s", self.cfg.id, self.cfg.api_addr, self.cfg.peer_addr)
        if self.cfg.join and not self.runtime.node.conf.members():
            self._tasks.append(asyncio.create_task(self._join(self.cfg.join), name="join"))
        self._tasks.append(asyncio.create_task(self._register_addresses(), name="register"))
        self._tasks.append(asyncio.create_task(self._run_recovery(), name="recovery"))
        self._tasks.append(asyncio.create_task(self.manager.run(), name="manager"))
        self._tasks.append(asyncio.create_task(self.watchdog.run(), name="quorum-watchdog"))
        log.info("node=%s local backups in %s", self.cfg.id, self.cfg.backup_path)

    async def _run_recovery(self) -> None:
        try:
            await self.recovery.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the node cannot serve safely without it: stop
            log.critical("node=%s the backup and recovery service failed: %r", self.cfg.id, exc, exc_info=exc)
            self.exit_code = 1
            self.request_stop()

    def _refuse(self, reason: str) -> None:
        self.exit_code = EXIT_REFUSED
        self.request_stop()

    async def _register_addresses(self) -> None:
        """Keep this node's addresses in the replicated member directory: a
        bootstrap only names peer addresses, and clients and forwarding
        need the API address of every member, the leader's above all."""
        rt = self.runtime
        key = MEMBER_PREFIX + self.cfg.id
        value = self.self_info.encode()
        while not self._stop.is_set():
            if rt.sm.members.get(self.cfg.id) != self.self_info and self.cfg.id in rt.node.conf.members():
                try:
                    if rt.is_leader:
                        await rt.propose(encode_command(Put(key, value, None, f"register-{self.cfg.id}")))
                    elif rt.leader_info() is not None and rt.leader_info().api_addr:  # type: ignore[union-attr]
                        await self._put_via_own_api(key, value)
                except Exception as exc:  # retried on the next round
                    log.debug("node=%s address registration failed: %s", self.cfg.id, exc)
            try:  # look again when leadership changes, or soon anyway
                await rt.leadership.wait_newer(rt.leadership.version, self.cfg.tick_seconds * 5)
            except TimeoutError:
                pass

    async def _put_via_own_api(self, key: str, value: str) -> None:
        scheme = "https" if self._ssl_client else "http"
        headers = {"Authorization": f"Bearer {self.cfg.api_token}"} if self.cfg.api_token else {}
        timeout = aiohttp.ClientTimeout(total=self.cfg.request_timeout_s + 2)
        async with new_session(timeout=timeout) as session:
            async with session.put(f"{scheme}://{self.cfg.api_addr}/v1/kv/{key}", json={"value": value},
                                   headers=headers, ssl=self._ssl_client) as resp:
                await resp.read()

    async def _join(self, urls: str) -> None:
        """Ask a running cluster to add this node as a learner, through each
        of the comma-separated API URLs in turn (retrying)."""
        body = {"id": self.cfg.id, "peer_addr": self.cfg.peer_addr, "api_addr": self.cfg.api_addr}
        headers = {"Authorization": f"Bearer {self.cfg.api_token}"} if self.cfg.api_token else {}
        delay = 0.2
        timeout = aiohttp.ClientTimeout(total=self.cfg.request_timeout_s + 2)
        candidates = [u.strip() for u in urls.split(",") if u.strip()]
        attempt = 0
        async with new_session(timeout=timeout) as session:
            while not self._stop.is_set():
                url = candidates[attempt % len(candidates)]
                attempt += 1
                try:
                    async with session.post(f"{url.rstrip('/')}/v1/members", json=body, headers=headers,
                                            ssl=self._ssl_client) as resp:
                        payload = await resp.json(content_type=None)
                        if resp.status == 200:
                            self._set_peers({m["id"]: MemberInfo(m["peer_addr"] or "", m["api_addr"] or "")
                                             for m in payload["members"]})
                            log.info("node=%s joined via %s as a learner", self.cfg.id, url)
                            return
                        log.warning("node=%s join via %s refused: %s", self.cfg.id, url, payload)
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                    log.warning("node=%s join via %s failed: %s; retrying", self.cfg.id, url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def leave(self) -> dict[str, object]:
        """Leave the cluster for good: hand leadership over if this node
        leads, have the leader remove it, then stop (exit 0)."""
        rt = self.runtime
        if self._left:
            return {"left": self.cfg.id, "already": True}
        if self.cfg.id not in rt.node.conf.members():
            raise Conflict(f"{self.cfg.id} is not a member")
        if rt.node.conf.voters == {self.cfg.id}:
            raise Conflict(f"{self.cfg.id} is the only voter: it cannot leave its own cluster")
        if rt.is_leader:
            await self._hand_over_leadership()
            if rt.is_leader:
                raise Conflict("leadership could not be handed over in time; nothing changed, try again")
        await self._remove_self()
        self._left = True
        log.warning("node=%s left the cluster; stopping", self.cfg.id)
        asyncio.get_running_loop().call_later(0.2, self.request_stop)
        return {"left": self.cfg.id}

    async def _remove_self(self) -> None:
        """Ask the leader to remove this node (reason: leave), and wait
        until the removal is applied here or the leader stops answering."""
        rt = self.runtime
        deadline = asyncio.get_running_loop().time() + 2 * self.cfg.request_timeout_s + 5
        scheme = "https" if self._ssl_client else "http"
        headers = {"Authorization": f"Bearer {self.cfg.api_token}"} if self.cfg.api_token else {}
        async with new_session(timeout=aiohttp.ClientTimeout(total=self.cfg.request_timeout_s + 2)) as session:
            while self.cfg.id in rt.node.conf.members():
                if asyncio.get_running_loop().time() > deadline:
                    raise Conflict("the leader did not remove this node in time; try again")
                info = rt.leader_info()
                if info is not None and info.api_addr and rt.leader_id != self.cfg.id:
                    try:
                        url = f"{scheme}://{info.api_addr}/v1/members/{self.cfg.id}?reason=leave"
                        async with session.delete(url, headers=headers, ssl=self._ssl_client) as resp:
                            body = await resp.json(content_type=None)
                            if resp.status == 200 or resp.status == 404:
                                return
                            if resp.status == 409:  # refused, with the reason: say it, do not insist
                                raise Conflict(str(body.get("message") if isinstance(body, dict) else body))
                            log.info("node=%s leave: the leader answered %s %s", self.cfg.id, resp.status, body)
                    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                        log.info("node=%s leave: asking the leader failed: %s", self.cfg.id, exc)
                await asyncio.sleep(0.2)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def shutdown(self) -> None:
        log.info("node=%s shutting down", self.cfg.id)
        if self.cfg.leave_on_terminate and not self._left and self.exit_code == 0:
            try:
                await self.leave()
            except Exception as exc:  # stopping anyway; the dead-member clean-up will catch up
                log.warning("node=%s could not leave before stopping: %s", self.cfg.id, exc)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.manager.close()  # controllers stop before leadership is handed over
        if self._runner is not None:
            await self._runner.cleanup()  # stop accepting API requests first
        await self._hand_over_leadership()
        await self.writer.close()
        await self.runtime.stop()
        await self.transport.stop()
        log.info("node=%s stopped", self.cfg.id)

    async def _hand_over_leadership(self) -> None:
        rt = self.runtime
        if rt.node.role is not Role.LEADER or len(rt.node.conf.voters) < 2:
            return
        try:
            target = rt.transfer_leadership(None)
        except Exception as exc:  # nothing to hand over to: just stop
            log.warning("node=%s could not transfer leadership: %s", self.cfg.id, exc)
            return
        deadline = asyncio.get_running_loop().time() + 2 * self.cfg.election_timeout_s
        while rt.node.role is Role.LEADER and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self.cfg.tick_seconds)
        if rt.node.role is Role.LEADER:
            log.warning("node=%s leadership transfer to %s did not finish in time", self.cfg.id, target)
        else:
            log.info("node=%s handed leadership to %s", self.cfg.id, target)


async def run_agent(cfg: AgentConfig) -> int:
    """Run one agent until SIGTERM/SIGINT; returns the exit code."""
    agent = Agent(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    try:
        await agent.start()
        await agent.wait_stopped()
    finally:
        await agent.shutdown()
    return agent.exit_code
