"""Carrying out a plan: KV intents first, then provider calls and
membership changes, each bounded by a timeout and fenced by the term.

Before every step the executor checks that this node still leads the term
the plan was made in; the provider checks the same term as a fencing token.
So a leader that lost its office mid-cycle stops at the next step, and one
that does not notice (paused, partitioned) is refused by the provider.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from quorate.errors import QuorateError
from quorate.kv import Applied, Delete, NotFound, Put, RevisionMismatch, encode_command
from quorate.providers.base import Provider, ProviderError
from quorate.raft import ConfChange, ConfChangeType
from quorate.runtime.raft_loop import RaftRuntime

from .model import Action, Adopt, Create, Destroy, Replace, Restart, Retire, SlotRecord, slot_key
from .spec import MANAGERS_GROUP, GroupSpec, member_id, render, slot_of_member

log = logging.getLogger("quorate.manager")
T = TypeVar("T")


class LostLeadership(Exception):
    """This node no longer leads the term the plan was made in."""


class StaleRecord(Exception):
    """A slot record changed under us (compare-and-swap failed); the next
    cycle plans again from what is stored."""


@dataclass(slots=True)
class GroupContext:
    """What executing one group's plan needs besides the runtime."""

    spec: GroupSpec | None
    records: dict[str, SlotRecord]
    provider: Provider
    self_instances: frozenset[str]      # instance ids that are this very process


class Executor:
    def __init__(self, rt: RaftRuntime, term: int, *, call_timeout_s: float, concurrency: int,
                 render_context: dict[str, str]) -> None:
        self.rt = rt
        self.term = term
        self.call_timeout_s = call_timeout_s
        self._limit = asyncio.Semaphore(concurrency)
        self._context = render_context
        self._ids = itertools.count(1)
        self._nonce = os.urandom(3).hex()

    def check_leading(self) -> None:
        if not self.rt.is_leader or self.rt.node.term != self.term:
            raise LostLeadership(f"no longer the leader of term {self.term}")

    async def _bounded(self, what: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return await aw
        except TimeoutError:
            raise TimeoutError(f"{what} did not finish within {self.call_timeout_s:g}s") from None

    async def run(self, actions: list[Action], ctx: GroupContext) -> list[dict[str, Any]]:
        """Execute ``actions`` (at most ``concurrency`` at once); one outcome
        dict per action, in order. LostLeadership propagates."""
        return list(await asyncio.gather(*(self._one(a, ctx) for a in actions)))

    async def _one(self, action: Action, ctx: GroupContext) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": type(action).__name__.lower(), "slot": getattr(action, "slot", None),
                               "instance_id": _target(action), "reason": action.reason}
        async with self._limit:
            try:
                self.check_leading()
                detail = await self._do(action, ctx)
                out["outcome"] = "ok"
                if detail:
                    out["detail"] = detail
            except LostLeadership:
                raise
            except (ProviderError, QuorateError, StaleRecord, TimeoutError, OSError) as exc:
                out["outcome"] = "error"
                out["error"] = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug must cost one action, not the controllers
                log.exception("node=%s term=%d %s failed unexpectedly", self.rt.id, self.term, out["kind"])
                out["outcome"] = "error"
                out["error"] = f"internal error: {exc!r}"
        return out

    async def _do(self, action: Action, ctx: GroupContext) -> str:
        if isinstance(action, Adopt):
            rec = SlotRecord(action.group, action.slot, action.instance_id, action.incarnation,
                             action.member_id, self.term)
            await self._write_record(rec, prev=0)
            return ""
        if isinstance(action, Create):
            assert ctx.spec is not None
            old = ctx.records.get(action.slot)
            if old is None or old.incarnation != action.incarnation:
                await self._write_record(self._record(ctx.spec, action.slot, action.incarnation),
                                         prev=old.revision if old else 0)
            return await self._create(ctx, action.slot, action.incarnation)
        if isinstance(action, Restart):
            assert ctx.spec is not None
            return await self._create(ctx, action.slot, action.incarnation)
        if isinstance(action, Replace):
            assert ctx.spec is not None
            if action.old_instance_id in ctx.self_instances:
                return self._hand_off("it is this leader's own instance")
            old = ctx.records.get(action.slot)
            await self._write_record(self._record(ctx.spec, action.slot, action.incarnation),
                                     prev=old.revision if old else 0)
            await self._destroy(ctx, action.old_instance_id)
            await self.remove_member(action.old_member_id)
            return await self._create(ctx, action.slot, action.incarnation)
        if isinstance(action, Retire):
            if action.instance_id in ctx.self_instances:
                return self._hand_off("it is this leader's own instance")
            await self.remove_member(action.member_id)
            if action.instance_id:
                await self._destroy(ctx, action.instance_id)
            old = ctx.records.get(action.slot)
            if old is not None:
                await self._delete_record(old)
            return ""
        if isinstance(action, Destroy):
            if action.instance_id in ctx.self_instances:
                return self._hand_off("it is this leader's own instance")
            await self._destroy(ctx, action.instance_id)
            return ""
        raise TypeError(f"unknown action {action!r}")

    def _hand_off(self, why: str) -> str:
        """Never destroy the process that runs this code: give leadership
        away and let the next leader do it."""
        target = self.rt.transfer_leadership(None)
        return f"skipped ({why}); leadership handed to {target}"

    def _record(self, spec: GroupSpec, slot: str, incarnation: int) -> SlotRecord:
        launch = render(spec, slot, incarnation)
        return SlotRecord(spec.id, slot, launch.instance_id, incarnation,
                          member_id(slot, incarnation) if spec.is_logical else None, self.term)

    async def _create(self, ctx: GroupContext, slot: str, incarnation: int) -> str:
        assert ctx.spec is not None
        launch = render(ctx.spec, slot, incarnation, self._context)
        if ctx.spec.id == MANAGERS_GROUP:
            # Remove before add, whatever happened in earlier cycles: an
            # older incarnation of this slot must not still hold a vote.
            new = member_id(slot, incarnation)
            for old in sorted(self.rt.node.conf.members()):
                if old != new and slot_of_member(old) == slot:
                    await self.remove_member(old)
        self.check_leading()
        inst = await self._bounded(f"creating {launch.instance_id}", ctx.provider.create(launch, self.term))
        return f"{inst.id} pid {inst.pid}" if inst.pid else inst.id

    async def _destroy(self, ctx: GroupContext, instance_id: str) -> None:
        self.check_leading()
        await self._bounded(f"destroying {instance_id}", ctx.provider.destroy(instance_id, self.term))

    async def remove_member(self, member: str | None) -> None:
        """Remove a dead manager from the Raft configuration before anything
        replaces it, so dead members never pile up in the electorate."""
        if member is None or member not in self.rt.node.conf.members():
            return
        if member == self.rt.id:
            raise LostLeadership("refusing to remove this leader itself")
        self.check_leading()
        log.info("node=%s term=%d removing member %s from the configuration", self.rt.id, self.term, member)
        await self._bounded(f"removing member {member}",
                            self.rt.change_membership(ConfChange(ConfChangeType.REMOVE, member)))

    def _request_id(self) -> str:
        return f"mgr-{self.rt.id}-{self._nonce}-{next(self._ids)}"

    async def _write_record(self, rec: SlotRecord, prev: int) -> None:
        self.check_leading()
        cmd = Put(slot_key(rec.group, rec.slot), rec.encode(), prev, self._request_id())
        result = await self._bounded("writing a slot record", self.rt.propose(encode_command(cmd)))
        if isinstance(result, RevisionMismatch):
            raise StaleRecord(f"slot {rec.group}/{rec.slot} changed meanwhile (revision "
                              f"{result.current_revision}, expected {prev})")
        if not isinstance(result, Applied):
            raise StaleRecord(f"slot {rec.group}/{rec.slot} not written: {result!r}")

    async def _delete_record(self, rec: SlotRecord) -> None:
        self.check_leading()
        cmd = Delete(slot_key(rec.group, rec.slot), rec.revision, self._request_id())
        result = await self._bounded("deleting a slot record", self.rt.propose(encode_command(cmd)))
        if isinstance(result, RevisionMismatch):
            raise StaleRecord(f"slot {rec.group}/{rec.slot} changed meanwhile")
        if not isinstance(result, (Applied, NotFound)):
            raise StaleRecord(f"slot {rec.group}/{rec.slot} not deleted: {result!r}")


def _target(action: Action) -> str | None:
    for name in ("instance_id", "old_instance_id"):
        value = getattr(action, name, None)
        if value:
            return value  # type: ignore[no-any-return]
    return None
