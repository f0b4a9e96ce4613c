"""HTTP endpoints of quorum-loss recovery (S2, S3).

- ``GET /v1/internal/quorum/probe``: this node's facts for the other
  survivors' watchdogs (epoch, term, last log term and index, commit, voters,
  leader, what it sees). Served in every phase.
- ``GET /v1/quorum``: the watchdog's latest decision and the recoveries this
  node forced.
- ``GET /v1/quorum/recover``: what ``quorate recover`` would do from this
  node (a dry run): the voters it would keep, the ones it would remove, what
  the provider says of each, the new epoch.
- ``POST /v1/quorum/recover {"confirm": true}``: do it. This is the manual
  path for clusters whose provider cannot confirm deaths. It is refused while
  a leader is known, and from a survivor whose log is not the most
  up-to-date of those it reaches (the answer names the right one).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from quorate.errors import BadRequest, Conflict
from quorate.raft import Role

from quorate.manager.electorate import quorum_advice
from quorate.providers.base import InstanceState

from .quorum import Wait, recover_command, recovery_leader
from .quorum_watchdog import PROBE_PATH, QuorumWatchdog, decision_json, facts_json, lost_note


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


class QuorumRoutes:
    def __init__(self, watchdog: QuorumWatchdog) -> None:
        self.wd = watchdog
        self.rt = watchdog.rt

    def install(self, app: web.Application) -> None:
        r = app.router
        r.add_get(PROBE_PATH, self.probe)
        r.add_get("/v1/quorum", self.view)
        r.add_get("/v1/quorum/recover", self.plan)
        r.add_post("/v1/quorum/recover", self.recover)

    def adjust_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """Add the epoch, and when there is no quorum, the watchdog's words."""
        status["epoch"] = self.rt.sm.epoch
        d = self.wd.latest
        status["quorum_recovery"] = decision_json(d)
        if d is not None and not status.get("quorum"):
            status["problems"] = list(status.get("problems", [])) + _words(d) + self._advice()
        return status

    def _advice(self) -> list[str]:
        """Which voters' removal would restore the quorum (seed 004: name
        them, and the command), from the watchdog's last probe round, so
        every survivor sees the same members alive."""
        obs = self.wd.last_observation
        if obs is None or not obs.answers:
            return []
        voters = set(obs.voters)
        # Ranked the same on every survivor: members the provider confirms
        # dead first, then by id (how long a member has been down is only
        # known to the dead leader; followers never heard from each other).
        rank = {m: 1.0 for m, v in obs.verdicts.items() if v is InstanceState.TERMINATED}
        remove = quorum_advice(voters, set(obs.answers), rank)
        if not remove:
            return []
        lead = recovery_leader(obs.answers)
        return [f"removing {', '.join(remove)} (not answering) would restore a quorum of the "
                f"{len(voters) - len(remove)} remaining voters; if they are gone for good run: "
                f"{recover_command(lead)} --remove {','.join(remove)}"]

    async def probe(self, request: web.Request) -> web.Response:
        return _json(facts_json(self.wd.facts()))

    async def view(self, request: web.Request) -> web.Response:
        return _json({"id": self.rt.id, "epoch": self.rt.sm.epoch, "decision": decision_json(self.wd.latest),
                      "forced": self.wd.forced})

    async def _plan(self, remove: list[str] | None = None) -> dict[str, Any]:
        """What forcing from this node would do. By default it keeps the
        voters that answer; ``remove`` names the ones to drop instead (the
        quorum advice: the fewest whose removal restores a quorum)."""
        node = self.rt.node
        if node.role is Role.LEADER or node.leader is not None:
            raise Conflict(f"the cluster has a leader ({node.leader}): there is nothing to recover")
        if self.rt.id not in node.conf.voters:
            raise Conflict(f"{self.rt.id} is not a voter: recover from one of {sorted(node.conf.voters)}")
        if remove is not None:
            strangers = set(remove) - set(node.conf.voters)
            if strangers or self.rt.id in remove or not remove:
                raise BadRequest(f"remove must name voters other than {self.rt.id}; voters: "
                                 f"{sorted(node.conf.voters)}")
        obs = await self.wd.observe(0.0)
        keep = sorted(set(obs.answers) if remove is None else set(obs.voters) - set(remove))
        best = recovery_leader({m: f for m, f in obs.answers.items() if m in keep})
        removed = sorted(obs.voters - set(keep))
        warnings = [f"{m} is {obs.verdicts.get(m).value if obs.verdicts.get(m) else 'unknown'} according to "
                    "the provider: if it is in fact alive, forcing makes a second cluster (split brain); "
                    "make sure it is stopped for good first"
                    for m in removed if obs.verdicts.get(m) is None or obs.verdicts[m].value != "terminated"]
        return {"from": self.rt.id, "most_up_to_date": best, "keep": keep, "remove": removed,
                "epoch": max(f.epoch for f in obs.answers.values()) + 1,
                "last_index": node.last_index, "last_term": node.log.last_term,
                "survivors": {f.id: {"last_term": f.last_term, "last_index": f.last_index, "commit": f.commit}
                              for f in obs.answers.values()},
                "known_committed_index": max(f.commit for f in obs.answers.values()),
                "provider": {m: (obs.verdicts[m].value if m in obs.verdicts else "unknown") for m in removed},
                "warnings": warnings}

    async def plan(self, request: web.Request) -> web.Response:
        raw = request.query.get("remove")
        return _json(await self._plan([m for m in raw.split(",") if m] if raw else None))

    async def recover(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(body, dict) or body.get("confirm") is not True:
            raise BadRequest('forcing a new configuration needs {"confirm": true}; see GET /v1/quorum/recover')
        remove = body.get("remove")
        if remove is not None and (not isinstance(remove, list) or not all(isinstance(m, str) for m in remove)):
            raise BadRequest("remove must be a list of member ids")
        plan = await self._plan(remove)
        if plan["most_up_to_date"] != self.rt.id:
            raise Conflict(f"{plan['most_up_to_date']} has a more up-to-date log than {self.rt.id}: recover "
                           f"from it (quorate recover --from {plan['most_up_to_date']}), or entries it holds "
                           "would be lost")
        voters = frozenset(plan["keep"])
        self.rt.force_new_configuration(voters, plan["epoch"])
        record = {"epoch": plan["epoch"], "forced_by": self.rt.id, "at": time.time(), "voters": plan["keep"],
                  "removed": plan["remove"], "survivors": plan["survivors"], "forcing_last_index": plan["last_index"],
                  "manual": True, "known_committed_index": plan["known_committed_index"],
                  "note": lost_note(plan["known_committed_index"], plan["remove"])}
        self.wd.forced.append(record)
        asyncio.get_running_loop().create_task(self.wd.record(record), name="recovery-record")
        return _json({**plan, "forced": True})


def _words(d: Any) -> list[str]:
    if isinstance(d, Wait):
        out = [f"quorum recovery: {d.reason}"]
        out += [f"missing voter {m}: the provider says {v}" for m, v in sorted(d.missing.items())]
        if d.command:
            out.append(f"an operator who knows the missing voters are gone for good can run: {d.command}")
        return out
    return [f"quorum recovery: {d.reason}"]
