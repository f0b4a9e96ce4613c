"""The manager: runs the group controllers on the leader, and only there.

Leadership reaches the manager as a latest value (``runtime.leadership``),
never through a queue the consensus loop could block on (seed 003, Nomad
#6977). On gaining leadership of term T the manager first runs a barrier (a
linearizable read: an entry of term T committed and applied, so the store it
plans from is complete), bounded by a timeout, and only then starts the
reconcile loop. On losing it (or on any newer term) the loop is cancelled at
once; every call the loop makes is bounded by a timeout and fenced by T, so
no flap storm can leave a controller running on a follower or deadlock the
node.

One reconcile cycle: read the specs and slot records, list the instances
from the provider, probe health, plan each group (a pure function, see
``plan.py``), execute, and keep the result for ``quorate group show``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorate.errors import QuorateError
from quorate.providers.base import Instance, InstanceState, Provider, ProviderError
from quorate.providers.registry import make_provider
from quorate.runtime.raft_loop import RaftRuntime
from quorate.runtime.views import member_states

from .backoff import CrashBackoff
from .execute import Executor, GroupContext, LostLeadership
from .electorate import cleanup
from .health import HealthTracker
from .model import (
    GROUPS_PREFIX,
    SLOTS_PREFIX,
    GroupObservation,
    Observed,
    SlotRecord,
    action_json,
)
from .plan import parse_incarnation, plan, summarize
from .spec import MANAGERS_GROUP, GroupSpec, SpecError, parse_spec, render, render_health

log = logging.getLogger("quorate.manager")


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    provider_dir: Path
    interval_s: float = 1.0             # one reconcile cycle per interval
    call_timeout_s: float = 15.0        # any provider call or consensus call
    barrier_timeout_s: float = 10.0     # the barrier after gaining leadership
    concurrency: int = 4                # actions executed at once
    cluster_id: str = "quorate"
    api_scheme: str = "http"
    min_voters: int | None = None       # None: the managers group's size, else 3
    backoff_first_s: float = 1.0        # crash-loop back-off (backoff.py)
    backoff_max_s: float = 30.0
    crash_window_s: float = 10.0


@dataclass(slots=True)
class _Session:
    term: int
    task: asyncio.Task[None]
    started: float = field(default_factory=time.monotonic)


class Manager:
    def __init__(self, rt: RaftRuntime, settings: ManagerSettings,
                 may_run: Callable[[], bool] = lambda: True,
                 providers: dict[str, Provider] | None = None) -> None:
        self.rt = rt
        self._may_run = may_run  # False while the node is starting or in recovery mode (S5)
        self.settings = settings
        self.health = HealthTracker()
        self.backoff = CrashBackoff(first_s=settings.backoff_first_s, max_s=settings.backoff_max_s,
                                    crash_window_s=settings.crash_window_s)
        # Providers by name, made on first use (tests hand some in ready-made).
        self._providers: dict[str, Provider] = dict(providers or {})
        self._session: _Session | None = None
        self._results: dict[str, dict[str, Any]] = {}
        self._cycle_no = 0
        self._bad_specs: dict[str, str] = {}
        self._unknown_noted: set[str] = set()
        self._closed = False
        self._running_term: int | None = None   # set once the barrier passed
        self.sessions_started = 0
        self._m = rt.metrics

    # -- what the API asks ----------------------------------------------------------

    @property
    def active_term(self) -> int | None:
        """The term whose controllers run here now (after the barrier), or None."""
        return self._running_term

    def group_status(self, group: str) -> dict[str, Any] | None:
        if self.active_term is None:
            return None
        return self._results.get(group)

    async def instances(self, group: str | None) -> list[dict[str, Any]]:
        """The provider's view, joined with the slot records and health."""
        records = self._records()
        out = []
        for provider in self._providers_in_use():
            listed = await asyncio.wait_for(provider.list(group), self.settings.call_timeout_s)
            for inst in listed:
                rec = records.get(inst.group, {}).get(inst.slot)
                out.append({**inst.to_json(), "provider": provider.name,
                            "tracked": rec is not None and rec.instance_id == inst.id,
                            "incarnation": parse_incarnation(inst.group, inst.slot, inst.id),
                            "member_id": rec.member_id if rec is not None and rec.instance_id == inst.id else None,
                            "healthy": self.health.healthy(inst.id)})
        return sorted(out, key=lambda d: (d["group"], str(d["slot"]), d["id"]))

    # -- for the quorum watchdog (no leader needed) -----------------------------------------

    def locate_members(self, members: list[str]) -> dict[str, tuple[Provider, str]]:
        """Where each manager runs: its provider and instance id, from the
        managers group's slot records in the local store."""
        spec = self._specs().get(MANAGERS_GROUP)
        provider_name = spec.provider if spec is not None else "process"
        by_member = {r.member_id: r for r in self._records().get(MANAGERS_GROUP, {}).values() if r.member_id}
        out = {}
        for m in members:
            rec = by_member.get(m)
            if rec is not None:
                out[m] = (self.provider(provider_name), rec.instance_id)
        return out

    async def restart_member(self, member: str, term: int) -> str:
        """Start a dead manager again in place (same instance, same state);
        idempotent, so several survivors may ask at once."""
        spec = self._specs().get(MANAGERS_GROUP)
        rec = next((r for r in self._records().get(MANAGERS_GROUP, {}).values() if r.member_id == member), None)
        if spec is None or rec is None:
            raise LookupError(f"no managers group record names {member}")
        launch = render(spec, rec.slot, rec.incarnation, self._render_context())
        async with asyncio.timeout(self.settings.call_timeout_s):
            inst = await self.provider(spec.provider).create(launch, term)
        return f"restarted {member} in place ({inst.id}, pid {inst.pid})"

    # -- providers -------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        p = self._providers.get(name)
        if p is None:
            p = make_provider(name, state_dir=self.settings.provider_dir)
            self._providers[name] = p
        return p

    def _providers_in_use(self, specs: dict[str, GroupSpec] | None = None) -> list[Provider]:
        names = {"process"} | {spec.provider for spec in (specs if specs is not None else self._specs()).values()}
        out = []
        for name in sorted(names):
            try:
                out.append(self.provider(name))
            except ProviderError as exc:
                log.warning("node=%s provider %s unavailable: %s", self.rt.id, name, exc)
        return out

    async def close(self) -> None:
        """Stop the controllers for good (run() starts none afterwards)."""
        self._closed = True
        await self._stop_session("shutting down")
        for p in self._providers.values():
            await p.close()

    # -- leadership ------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow leadership forever (cancel to stop): start the controllers
        on gaining it, stop them on losing it."""
        lv = self.rt.leadership
        try:
            await self._follow(lv)
        finally:  # cancelled: the controllers go with it
            await asyncio.shield(self._stop_session("the manager stopped"))

    async def _follow(self, lv: Any) -> None:
        while not self._closed:
            seen = lv.version
            lead = lv.value
            want = lead.term if lead.is_leader and self.rt.node.term == lead.term and self._may_run() else None
            s = self._session
            if s is not None and (want is None or s.term != want):
                await self._stop_session(f"leadership of term {s.term} lost" if want is None
                                         else f"term {want} began")
            s = self._session
            if want is not None and (s is None or s.task.done()):
                if s is not None and s.task.done():
                    self._session = None
                    # A session that ended by itself (barrier timeout, error)
                    # is retried after one interval, still under the same term.
                    await asyncio.sleep(self.settings.interval_s)
                    continue
                self._start_session(want)
            try:
                await lv.wait_newer(seen, self.settings.interval_s)
            except TimeoutError:
                pass

    def _start_session(self, term: int) -> None:
        self.sessions_started += 1
        task = asyncio.create_task(self._lead(term), name=f"controllers-{self.rt.id}-t{term}")
        self._session = _Session(term, task)

    async def _stop_session(self, why: str) -> None:
        s, self._session = self._session, None
        if s is None:
            return
        self._set_running(None)
        s.task.cancel()
        done, _ = await asyncio.wait({s.task}, timeout=self.settings.call_timeout_s)
        if not done:  # cannot happen with bounded calls; say so loudly if it does
            log.error("node=%s term=%d controllers did not stop within %gs", self.rt.id, s.term,
                      self.settings.call_timeout_s)
        log.info("node=%s term=%d controllers stopped (%s) after %.1fs", self.rt.id, s.term, why,
                 time.monotonic() - s.started)

    async def _lead(self, term: int) -> None:
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.barrier_timeout_s):
                await self.rt.read_barrier()
        except (TimeoutError, QuorateError) as exc:
            log.warning("node=%s term=%d leadership barrier failed (%s); controllers not started",
                        self.rt.id, term, exc or type(exc).__name__)
            return
        if not self.rt.is_leader or self.rt.node.term != term:
            return
        log.info("node=%s term=%d barrier passed in %.0f ms (applied %d); controllers started", self.rt.id, term,
                 (time.monotonic() - t0) * 1000, self.rt.sm.applied_index)
        self._set_running(term)
        try:
            while True:
                try:
                    await self._cycle(term)
                except LostLeadership as exc:
                    log.info("node=%s term=%d cycle stopped: %s", self.rt.id, term, exc)
                    return
                except (QuorateError, ProviderError, OSError, TimeoutError) as exc:
                    log.warning("node=%s term=%d reconcile cycle failed: %s", self.rt.id, term,
                                str(exc) or type(exc).__name__)
                await asyncio.sleep(self.settings.interval_s)
        finally:
            if self._running_term == term:
                self._set_running(None)

    def _set_running(self, term: int | None) -> None:
        self._running_term = term
        self._m.controllers_running.set(0 if term is None else 1)

    # -- one cycle ---------------------------------------------------------------------------

    def _specs(self) -> dict[str, GroupSpec]:
        specs: dict[str, GroupSpec] = {}
        for kv in self.rt.sm.kv.list_prefix(GROUPS_PREFIX):
            gid = kv.key[len(GROUPS_PREFIX):]
            try:
                specs[gid] = parse_spec(json.loads(kv.value))
            except (SpecError, ValueError) as exc:
                if self._bad_specs.get(gid) != str(exc):
                    log.error("node=%s stored spec of group %s is invalid, group left alone: %s",
                              self.rt.id, gid, exc)
                    self._bad_specs[gid] = str(exc)
        return specs

    def _records(self) -> dict[str, dict[str, SlotRecord]]:
        out: dict[str, dict[str, SlotRecord]] = defaultdict(dict)
        for kv in self.rt.sm.kv.list_prefix(SLOTS_PREFIX):
            try:
                rec = SlotRecord.decode(kv.value, kv.mod_revision)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("node=%s unreadable slot record %s: %s", self.rt.id, kv.key, exc)
                continue
            out[rec.group][rec.slot] = rec
        return out

    def _render_context(self) -> dict[str, str]:
        urls = []
        for m in sorted(self.rt.node.conf.voters):
            info = self.rt.sm.members.get(m)
            if info is not None and info.api_addr:
                urls.append(f"{self.settings.api_scheme}://{info.api_addr}")
        return {"join": ",".join(urls), "cluster_id": self.settings.cluster_id}

    async def _cycle(self, term: int) -> None:
        self._cycle_no += 1
        t0 = time.monotonic()
        specs = self._specs()
        records = self._records()
        listed: dict[str, list[Instance]] = defaultdict(list)
        owner: dict[str, Provider] = {}
        for provider in self._providers_in_use(specs):
            async with asyncio.timeout(self.settings.call_timeout_s):
                for inst in await provider.list(None):
                    listed[inst.group].append(inst)
                    owner[inst.group] = provider
        await self._probe(specs, listed, records)
        me = os.getpid()
        executor = Executor(self.rt, term, call_timeout_s=self.settings.call_timeout_s,
                            concurrency=self.settings.concurrency, render_context=self._render_context())
        members = frozenset(self.rt.node.conf.members())
        groups = sorted(set(specs) | set(records) | set(listed))
        jobs = []
        for gid in groups:
            spec = specs.get(gid)
            if spec is None and gid in self._bad_specs:
                continue  # stored but unreadable: left alone (logged once), never taken for deleted
            if spec is None and not records.get(gid):
                # Instances of a group the store knows nothing about: a wiped
                # or rolled-back store looks exactly like this, so never
                # destroy on that evidence alone (a deleted group keeps its
                # slot records until its instances are retired).
                self._note_unknown_group(gid, len(listed.get(gid, [])))
                continue
            provider = self.provider(spec.provider) if spec is not None else owner.get(gid, self.provider("process"))
            threshold = spec.health.failure_threshold if spec is not None else 1
            observed = [Observed(i, unhealthy=self.health.unhealthy(i.id, threshold),
                                 state_intact=provider.state_intact(i))
                        for i in listed.get(gid, []) if spec is None or i.group == gid]
            obs = GroupObservation(gid, spec, records.get(gid, {}), observed,
                                   members if gid == "managers" else frozenset())
            p = self.backoff.gate(plan(obs), time.monotonic())
            ctx = GroupContext(spec, records.get(gid, {}), provider,
                               frozenset(i.id for i in listed.get(gid, []) if i.pid == me))
            jobs.append((gid, obs, p, ctx))
        outcomes = await asyncio.gather(*(executor.run(list(p.actions), ctx) for _, _, p, ctx in jobs))
        finished = time.time()
        duration_ms = (time.monotonic() - t0) * 1000
        live = {i.id for insts in listed.values() for i in insts}
        self.health.forget_except(live)
        for (gid, obs, p, _), results in zip(jobs, outcomes):
            result = {"cycle": self._cycle_no, "term": term, "finished_at": finished,
                      "duration_ms": round(duration_ms, 1), "summary": summarize(obs, p),
                      "actions": results, "notes": list(p.notes)}
            prev = self._results.get(gid)
            # The latest cycle that did something stays visible after the
            # quiet cycles that follow it (`quorate group show`).
            result["last_change"] = ({"cycle": self._cycle_no, "finished_at": finished, "actions": results}
                                     if results else (prev or {}).get("last_change"))
            self._results[gid] = result
            for r in results:
                self._m.reconcile_actions.labels(r["kind"], r["outcome"]).inc()
            if results:
                log.info("node=%s term=%d cycle=%d group=%s %s: %s", self.rt.id, term, self._cycle_no, gid,
                         result["summary"], "; ".join(
                             f"{r['kind']} {r['slot']} ({r['reason']}) -> {r['outcome']}"
                             + (f": {r['error']}" if r.get("error") else "") for r in results))
            elif prev is None or prev["notes"] != result["notes"]:
                log.info("node=%s term=%d group=%s %s%s", self.rt.id, term, gid, result["summary"],
                         "".join(f"; {n}" for n in p.notes))
        for gone in set(self._results) - set(groups):
            del self._results[gone]
        self._note_confirmed_dead(specs, records, listed)
        await self._clean_electorate(executor)
        self._m.reconcile_cycles.inc()

    def _note_confirmed_dead(self, specs: dict[str, GroupSpec], records: dict[str, dict[str, SlotRecord]],
                             listed: dict[str, list[Instance]]) -> None:
        """Which members the provider confirms dead (for `quorate members`),
        and the minimum voter count clean-up keeps (the managers' size)."""
        states = {i.id: i.state for i in listed.get(MANAGERS_GROUP, [])}
        dead = {r.member_id for r in records.get(MANAGERS_GROUP, {}).values()
                if r.member_id and states.get(r.instance_id, InstanceState.TERMINATED) is InstanceState.TERMINATED}
        self.rt.confirmed_dead = frozenset(dead)
        managers = specs.get(MANAGERS_GROUP)
        self.rt.min_voters = self.settings.min_voters or (len(managers.slots()) if managers else 3)

    async def _clean_electorate(self, executor: Executor) -> None:
        """Remove members failed for longer than the dead-member timeout,
        one per cycle (S4)."""
        gone = cleanup(member_states(self.rt), suspect_after_s=self.rt.election_timeout_s,
                       dead_after_s=self.rt.dead_member_timeout_s, min_voters=self.rt.min_voters)
        if not gone:
            return
        member = gone[0]
        down = self.rt.down_since.get(member)
        log.warning("node=%s term=%d removing failed member %s (not heard from for %.0fs, past the dead-member "
                    "timeout of %.0fs)", self.rt.id, executor.term, member,
                    0 if down is None else time.monotonic() - down, self.rt.dead_member_timeout_s)
        try:
            await executor.remove_member(member)
        except (QuorateError, TimeoutError) as exc:
            log.warning("node=%s removing failed member %s did not succeed: %s", self.rt.id, member, exc)

    def _note_unknown_group(self, gid: str, count: int) -> None:
        note = (f"{count} instance(s) of group {gid!r} are not in the store; left alone "
                f"(apply the group's spec to adopt them)")
        self._results[gid] = {"cycle": self._cycle_no, "summary": f"{gid}: unknown to the store",
                              "actions": [], "notes": [note]}
        if gid not in self._unknown_noted:
            self._unknown_noted.add(gid)
            log.warning("node=%s %s", self.rt.id, note)

    async def _probe(self, specs: dict[str, GroupSpec], listed: dict[str, list[Instance]],
                     records: dict[str, dict[str, SlotRecord]]) -> None:
        targets = []
        for gid, spec in specs.items():
            if spec.health.type == "process":
                continue
            for inst in listed.get(gid, []):
                rec = records.get(gid, {}).get(inst.slot)
                if rec is None or rec.instance_id != inst.id:
                    continue
                try:
                    target = render_health(spec, inst.slot, rec.incarnation)
                except (KeyError, ValueError, IndexError):
                    continue
                targets.append((inst.id, target, spec.health.interval_s, spec.health.timeout_s,
                                inst.created_at + spec.health.start_period_s))
        await self.health.probe_due(targets)
