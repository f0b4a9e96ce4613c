"""An in-memory provider for tests of the manager: the process provider's
semantics (idempotent create, restart in place, fencing, UNKNOWN is not
TERMINATED) without processes, plus knobs to make it slow, fail, lose an
instance or lose sight of one, and a log of the calls it received."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time

from quorate.providers.base import Instance, InstanceState, LaunchSpec, Provider, ProviderError, StaleFencingToken

Call = tuple[str, str | None, int | None]  # (method, instance_id, fencing_term)


class FakeProvider(Provider):
    """``delay_s``: every call sleeps that long first. ``calls``: every call
    received, failed ones included. ``intact``: ids whose durable state
    ``state_intact`` reports as still there (tests fill it)."""

    name = "fake"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[Call] = []
        self.intact: set[str] = set()
        self.highest_term: int | None = None
        self._instances: dict[str, Instance] = {}
        self._pids = itertools.count(10_000)
        self._failures: list[BaseException] = []

    # -- knobs --

    def fail_next(self, n: int = 1, exc: BaseException | None = None) -> None:
        """The next ``n`` calls (any method) raise ``exc`` (a ProviderError
        by default) before doing anything."""
        failure = exc if exc is not None else ProviderError("injected failure (FakeProvider.fail_next)")
        self._failures.extend([failure] * n)

    def kill(self, instance_id: str) -> None:
        """The instance dies behind the manager's back (confirmed dead)."""
        self._set_state(instance_id, InstanceState.TERMINATED)

    def set_unknown(self, instance_id: str) -> None:
        """The provider loses sight of the instance (an unreachable host)."""
        self._set_state(instance_id, InstanceState.UNKNOWN)

    def _set_state(self, instance_id: str, state: InstanceState) -> None:
        self._instances[instance_id] = dataclasses.replace(self._instances[instance_id], state=state)

    # -- Provider --

    async def create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
        await self._enter("create", spec.instance_id, fencing_term)
        found = self._instances.get(spec.instance_id)
        if found is not None and found.state is InstanceState.RUNNING:
            return found
        if found is not None and found.state is InstanceState.UNKNOWN:
            raise ProviderError(f"cannot tell whether instance {spec.instance_id!r} runs")
        inst = Instance(id=spec.instance_id, group=spec.group, logical_id=spec.logical_id, slot=spec.slot,
                        state=InstanceState.RUNNING, spec_hash=spec.spec_hash, fencing_term=fencing_term,
                        created_at=time.time(), pid=next(self._pids), state_path=spec.state_path)
        self._instances[spec.instance_id] = inst
        return inst

    async def destroy(self, instance_id: str, fencing_term: int) -> None:
        await self._enter("destroy", instance_id, fencing_term)
        found = self._instances.get(instance_id)
        if found is not None and found.state is InstanceState.UNKNOWN:
            raise ProviderError(f"instance {instance_id!r} cannot be reached to stop it")
        self._instances.pop(instance_id, None)

    async def list(self, group: str | None = None) -> list[Instance]:
        await self._enter("list", None, None)
        return [i for _, i in sorted(self._instances.items()) if group is None or i.group == group]

    async def describe(self, instance_id: str) -> InstanceState:
        await self._enter("describe", instance_id, None)
        found = self._instances.get(instance_id)
        return found.state if found is not None else InstanceState.TERMINATED

    def state_intact(self, instance: Instance) -> bool:
        return instance.id in self.intact

    async def _enter(self, method: str, instance_id: str | None, fencing_term: int | None) -> None:
        """What every call does first: log, delay, injected failure, fencing."""
        self.calls.append((method, instance_id, fencing_term))
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if self._failures:
            raise self._failures.pop(0)
        if fencing_term is not None:
            if self.highest_term is not None and fencing_term < self.highest_term:
                raise StaleFencingToken(fencing_term, self.highest_term)
            self.highest_term = fencing_term

