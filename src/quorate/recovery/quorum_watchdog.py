"""The quorum watchdog: every manager, leader or not, watches for a lost
quorum and acts on :func:`quorate.recovery.quorum.decide` (S2, S3).

Once no leader has been known for longer than the grace period, every
round (one election timeout) it does the following:

1. Probe each voter of the last committed configuration
   (``GET /v1/internal/quorum/probe``, bounded).
2. Ask the provider about each voter that did not answer. The voter is
   found through the managers group's slot records, which name its
   instance.
3. Decide, and act:

   - restart confirmed-dead voters in place with their own state (the
     process provider's per-instance lock lets one survivor, and only one,
     start each);
   - or force a new configuration from this node;
   - or wait.

The latest decision is kept for ``quorate status``. It says why nothing is
forced, which members are missing, what the provider says of each, and the
``quorate recover`` command an operator could run.

After a forced configuration, the new leader records in the store
(``_quorate/recovery/epochs/<epoch>``) what each survivor had. Entries the
old cluster committed beyond the forcing node's log lived only on the dead
and cannot come back; the record says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from quorate.http_session import new_session
from quorate.kv import Put, encode_command
from quorate.providers.base import InstanceState, ProviderError
from quorate.raft import Role

from .quorum import Decision, Follow, Force, Observation, PeerFacts, RestartInPlace, Wait, decide

log = logging.getLogger("quorate.recovery")

PROBE_PATH = "/v1/internal/quorum/probe"
EPOCHS_PREFIX = "_quorate/recovery/epochs/"


def lost_note(known_committed: int, removed: list[str]) -> str:
    """What a forced configuration may have lost, in words (honesty about
    data): everything a survivor knew committed is kept; past that, entries
    the old cluster committed only on the removed members are gone."""
    return (f"every entry a survivor knew committed (up to index {known_committed}) was kept; entries the old "
            f"cluster committed after it only on {', '.join(removed) or 'nobody'} cannot come back")


def facts_json(f: PeerFacts) -> dict[str, Any]:
    return {"id": f.id, "epoch": f.epoch, "term": f.term, "last_term": f.last_term, "last_index": f.last_index,
            "commit": f.commit, "voters": sorted(f.voters), "leader": f.leader, "sees": sorted(f.sees),
            "verdicts": {m: v.value for m, v in sorted(f.verdicts.items())}}


def facts_from_json(raw: Any) -> PeerFacts:
    """A probe answer; raises ValueError (or KeyError/TypeError) when malformed."""
    return PeerFacts(
        id=str(raw["id"]), epoch=int(raw["epoch"]), term=int(raw["term"]), last_term=int(raw["last_term"]),
        last_index=int(raw["last_index"]), commit=int(raw["commit"]), voters=frozenset(map(str, raw["voters"])),
        leader=None if raw["leader"] is None else str(raw["leader"]), sees=frozenset(map(str, raw["sees"])),
        verdicts={str(m): InstanceState(v) for m, v in raw["verdicts"].items()})


def decision_json(d: Decision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    out: dict[str, Any] = {"decision": type(d).__name__.lower().replace("inplace", "_in_place"),
                           "reason": d.reason}
    if isinstance(d, Wait):
        out["missing"] = dict(d.missing)
        out["command"] = d.command
    elif isinstance(d, RestartInPlace):
        out["members"] = list(d.members)
    elif isinstance(d, Force):
        out.update(voters=sorted(d.voters), removed=sorted(d.removed), epoch=d.epoch)
    elif isinstance(d, Follow):
        out["leader"] = d.leader
    return out


class QuorumWatchdog:
    def __init__(self, rt: Any, manager: Any, *, grace_s: float, interval_s: float, auto_recover: bool,
                 api_scheme: str = "http", api_token: str | None = None, ssl_client: Any = None) -> None:
        self.rt = rt
        self.manager = manager   # its provider and the managers group's records tell who is dead
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.auto_recover = auto_recover
        self._scheme = api_scheme
        self._headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self._ssl = ssl_client
        self._leaderless_since: float | None = None
        self._sees: frozenset[str] = frozenset()
        self._verdicts: dict[str, InstanceState] = {}
        self.latest: Decision | None = None
        self.last_observation: Observation | None = None
        self.forced: list[dict[str, Any]] = []

    # -- what this node tells the others ---------------------------------------------------

    def facts(self) -> PeerFacts:
        node = self.rt.node
        return PeerFacts(id=self.rt.id, epoch=self.rt.sm.epoch, term=node.term, last_term=node.log.last_term,
                         last_index=node.last_index, commit=node.commit_index, voters=frozenset(node.conf.voters),
                         leader=node.leader, sees=self._sees, verdicts=dict(self._verdicts))

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad round must not end the watchdog
                log.warning("node=%s quorum watchdog round failed: %r", self.rt.id, exc)
            await asyncio.sleep(self.interval_s)

    async def round(self) -> Decision | None:
        node = self.rt.node
        now = time.monotonic()
        if self._leader_known(now) or self.rt.id not in node.conf.members():
            self._leaderless_since = None
            self.last_observation = None
            self._set(None)
            return None
        if self._leaderless_since is None:
            self._leaderless_since = now
        leaderless = now - self._leaderless_since
        if leaderless < self.grace_s:
            return None
        obs = await self.observe(leaderless)
        decision = decide(obs)
        self._set(decision)
        await self._act(decision, obs)
        return decision

    def _leader_known(self, now: float) -> bool:
        """This node leads, or heard from its leader within an election
        timeout (a learner never clears the leader field by itself)."""
        node = self.rt.node
        if node.role is Role.LEADER:
            return True
        if node.leader is None:
            return False
        seen = self.rt.last_contact.get(node.leader)
        return seen is not None and now - seen < self.rt.election_timeout_s

    def _set(self, decision: Decision | None) -> None:
        if decision != self.latest and decision is not None:
            level = logging.INFO if isinstance(decision, Wait) else logging.WARNING
            log.log(level, "node=%s quorum watchdog: %s: %s", self.rt.id, type(decision).__name__,
                    decision.reason)
        self.latest = decision

    async def observe(self, leaderless_s: float) -> Observation:
        voters = frozenset(self.rt.node.conf.voters)
        answers = {self.rt.id: self.facts()}
        asked: set[str] = {self.rt.id}
        universe = set(voters)
        # Probe this node's voters, then any voter another survivor knows of
        # (a configuration one change newer), until nobody new turns up.
        while universe - asked:
            batch = sorted(universe - asked)
            asked |= set(batch)
            found = await asyncio.gather(*(self._probe(m) for m in batch))
            for f in found:
                if f is not None:
                    answers[f.id] = f
                    universe |= f.voters
        now = time.monotonic()
        for m in answers:  # a probe answer is contact too: followers never hear from each other
            if m != self.rt.id:
                self.rt.last_contact[m] = now
        verdicts, intact = await self._provider_view(sorted(universe - set(answers)))
        self._sees = frozenset(answers)
        self._verdicts = verdicts
        answers[self.rt.id] = self.facts()
        self.last_observation = Observation(self.rt.id, voters, answers, verdicts, intact, leaderless_s,
                                            self.grace_s, self.auto_recover)
        return self.last_observation

    async def _probe(self, member: str) -> PeerFacts | None:
        info = self.rt.sm.members.get(member)
        if info is None or not info.api_addr:
            return None
        url = f"{self._scheme}://{info.api_addr}{PROBE_PATH}"
        timeout = aiohttp.ClientTimeout(total=max(0.2, min(self.interval_s, 2.0)))
        try:
            async with new_session(timeout=timeout) as session:
                async with session.get(url, headers=self._headers, ssl=self._ssl) as resp:
                    if resp.status != 200:
                        return None
                    facts = facts_from_json(await resp.json(content_type=None))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError, TypeError):
            return None
        return facts if facts.id == member else None

    async def _provider_view(self, missing: list[str]) -> tuple[dict[str, InstanceState], dict[str, bool]]:
        """The provider's verdict on each missing voter and whether its
        state is intact; UNKNOWN when no instance of the managers group is
        recorded for it (a cluster run by hand has no oracle)."""
        verdicts: dict[str, InstanceState] = {}
        intact: dict[str, bool] = {}
        if not missing:
            return verdicts, intact
        located = self.manager.locate_members(missing)
        for member in missing:
            where = located.get(member)
            if where is None:
                verdicts[member], intact[member] = InstanceState.UNKNOWN, False
                continue
            provider, instance_id = where
            try:
                async with asyncio.timeout(self.manager.settings.call_timeout_s):
                    listed = {i.id: i for i in await provider.list("managers")}
            except (ProviderError, OSError, TimeoutError):
                verdicts[member], intact[member] = InstanceState.UNKNOWN, False
                continue
            inst = listed.get(instance_id)
            verdicts[member] = inst.state if inst is not None else InstanceState.TERMINATED
            intact[member] = inst is not None and provider.state_intact(inst)
        return verdicts, intact

    # -- acting -----------------------------------------------------------------------------------

    async def _act(self, decision: Decision, obs: Observation) -> None:
        if isinstance(decision, RestartInPlace):
            for member in decision.members:
                try:
                    what = await self.manager.restart_member(member, self.rt.node.term)
                    log.warning("node=%s quorum watchdog: %s", self.rt.id, what)
                except (ProviderError, OSError, TimeoutError, LookupError) as exc:
                    log.warning("node=%s quorum watchdog could not restart %s: %s", self.rt.id, member, exc)
        elif isinstance(decision, Force):
            record = {"epoch": decision.epoch, "forced_by": self.rt.id, "at": time.time(),
                      "voters": sorted(decision.voters), "removed": sorted(decision.removed),
                      "survivors": {f.id: {"last_term": f.last_term, "last_index": f.last_index,
                                           "commit": f.commit} for f in obs.answers.values()},
                      "known_committed_index": max(f.commit for f in obs.answers.values()),
                      "forcing_last_index": self.rt.node.last_index,
                      "note": lost_note(max(f.commit for f in obs.answers.values()), sorted(decision.removed))}
            self.rt.force_new_configuration(decision.voters, decision.epoch)
            self.forced.append(record)
            asyncio.get_running_loop().create_task(self.record(record), name="recovery-record")

    async def record(self, record: dict[str, Any]) -> None:
        """Write what the recovery kept and lost into the store, once this
        node leads the new configuration (bounded)."""
        deadline = time.monotonic() + 30 * self.interval_s
        while time.monotonic() < deadline:
            if self.rt.is_leader:
                try:
                    cmd = Put(f"{EPOCHS_PREFIX}{record['epoch']}", json.dumps(record, sort_keys=True), None,
                              f"recovery-{self.rt.id}-{record['epoch']}")
                    await self.rt.propose(encode_command(cmd))
                    log.warning("node=%s recovery of epoch %d recorded: %s", self.rt.id, record["epoch"],
                                record["note"])
                    return
                except Exception as exc:  # retried until the deadline
                    log.info("node=%s recording the recovery failed (%s); retrying", self.rt.id, exc)
            await asyncio.sleep(self.interval_s / 2)
        log.error("node=%s could not record the recovery of epoch %d in the store: %s", self.rt.id,
                  record["epoch"], json.dumps(record, sort_keys=True))
