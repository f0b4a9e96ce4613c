"""A conformance suite every ``Provider`` must pass: the manager relies on
these semantics whatever runs its instances.

Give it a ``ProviderFactory``: ``make()`` returns a provider over fresh,
empty state; ``kill(provider, instance_id)`` kills an instance behind the
provider's back (SIGKILL for a process, ``FakeProvider.kill`` for the fake);
``argv`` is a harmless long-lived command to run. Each check is a plain
function of the factory that raises ``AssertionError`` on a difference::

    for name, check in CHECKS.items():
        check(factory)

Every check destroys what it started, even when it fails, and waits for
conditions with a deadline rather than sleeping and hoping.
"""

from __future__ import annotations

from pathlib import Path

import os

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from quorate.providers.base import Instance, InstanceState, LaunchSpec, Provider, StaleFencingToken

CLEANUP_TERM = 1 << 62   # above any term a check uses: cleanup is never fenced off
WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class ProviderFactory:
    make: Callable[[], Provider]
    kill: Callable[[Provider, str], None]
    argv: tuple[str, ...]


Check = Callable[[ProviderFactory], None]
_Body = Callable[[ProviderFactory, Provider], Awaitable[None]]


def spec(factory: ProviderFactory, instance_id: str, group: str = "web", slot: str = "0",
         logical_id: str | None = None, spec_hash: str = "h1", state_path: str | None = None) -> LaunchSpec:
    return LaunchSpec(instance_id=instance_id, group=group, logical_id=logical_id, slot=slot, argv=factory.argv,
                      spec_hash=spec_hash, state_path=state_path)


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting until {what}")
        await asyncio.sleep(0.02)


async def wait_state(provider: Provider, instance_id: str, state: InstanceState) -> None:
    async def reached() -> bool:
        return await provider.describe(instance_id) is state

    await wait_for(reached, f"{instance_id} is {state.value}")


async def ids(provider: Provider, group: str | None = None) -> list[str]:
    return sorted(i.id for i in await provider.list(group))


async def cleanup(provider: Provider) -> None:
    """Destroy every instance the provider lists, then close it."""
    try:
        for inst in await provider.list():
            await provider.destroy(inst.id, CLEANUP_TERM)
    finally:
        await provider.close()


def _check(body: _Body) -> Check:
    """A check of the factory that runs ``body`` on a fresh provider and
    cleans up after it, pass or fail."""

    @functools.wraps(body)
    def check(factory: ProviderFactory) -> None:
        async def run() -> None:
            provider = factory.make()
            try:
                await body(factory, provider)
            finally:
                await cleanup(provider)

        asyncio.run(run())

    return check


async def _stale(call: Awaitable[object], given: int, highest: int) -> None:
    try:
        await call
    except StaleFencingToken as exc:
        assert (exc.given, exc.highest) == (given, highest), f"StaleFencingToken({exc.given}, {exc.highest})"
    else:
        raise AssertionError(f"a call with term {given} was accepted after term {highest}")


# -- the checks ------------------------------------------------------------------


@_check
async def check_create_running_and_listed(factory: ProviderFactory, p: Provider) -> None:
    a = await p.create(spec(factory, "web-0-1"), 1)
    assert a.state is InstanceState.RUNNING and a.id == "web-0-1"
    await p.create(spec(factory, "web-1-1", slot="1"), 1)
    await p.create(spec(factory, "db-n1-1", group="db", slot="n1", logical_id="n1"), 1)
    for iid in ("web-0-1", "web-1-1", "db-n1-1"):
        assert await p.describe(iid) is InstanceState.RUNNING
    assert await ids(p) == ["db-n1-1", "web-0-1", "web-1-1"]
    assert await ids(p, "web") == ["web-0-1", "web-1-1"]
    assert await ids(p, "db") == ["db-n1-1"]
    assert await ids(p, "nope") == []
    assert all(i.state is InstanceState.RUNNING for i in await p.list())


@_check
async def check_create_is_idempotent(factory: ProviderFactory, p: Provider) -> None:
    first = await p.create(spec(factory, "web-0-1"), 1)
    again = await p.create(spec(factory, "web-0-1"), 1)
    later = await p.create(spec(factory, "web-0-1"), 2)  # a new leader adopting it
    for inst in (again, later):
        assert (inst.pid, inst.created_at, inst.fencing_term) == (first.pid, first.created_at, first.fencing_term)
        assert inst.state is InstanceState.RUNNING
    listed = await p.list()
    assert [i.id for i in listed] == ["web-0-1"]
    assert (listed[0].pid, listed[0].created_at) == (first.pid, first.created_at)


@_check
async def check_create_after_death_restarts_in_place(factory: ProviderFactory, p: Provider) -> None:
    first = await p.create(spec(factory, "db-n1-1", slot="n1", logical_id="n1", state_path="/srv/n1"), 1)
    factory.kill(p, first.id)
    await wait_state(p, first.id, InstanceState.TERMINATED)
    again = await p.create(spec(factory, "db-n1-1", slot="n1", logical_id="n1", state_path="/srv/n1"), 2)
    assert again.state is InstanceState.RUNNING and again.id == first.id
    assert (again.pid, again.created_at) != (first.pid, first.created_at), "the dead instance was returned"
    assert again.state_path == "/srv/n1" and again.fencing_term == 2
    assert await p.describe(first.id) is InstanceState.RUNNING
    assert [(i.id, i.state) for i in await p.list()] == [(first.id, InstanceState.RUNNING)]


@_check
async def check_destroy(factory: ProviderFactory, p: Provider) -> None:
    await p.create(spec(factory, "web-0-1"), 1)
    await p.create(spec(factory, "web-1-1", slot="1"), 1)
    await p.destroy("web-0-1", 1)
    assert await p.describe("web-0-1") is InstanceState.TERMINATED
    assert await ids(p) == ["web-1-1"]
    await p.destroy("web-0-1", 1)    # again: not an error
    await p.destroy("never-was", 1)  # never known: not an error
    assert await p.describe("web-1-1") is InstanceState.RUNNING


@_check
async def check_destroy_of_a_dead_instance(factory: ProviderFactory, p: Provider) -> None:
    await p.create(spec(factory, "web-0-1"), 1)
    factory.kill(p, "web-0-1")
    await wait_state(p, "web-0-1", InstanceState.TERMINATED)
    await p.destroy("web-0-1", 1)
    assert await ids(p) == []


@_check
async def check_describe_unknown_id(factory: ProviderFactory, p: Provider) -> None:
    assert await p.describe("never-was") is InstanceState.TERMINATED
    assert await p.list() == []


@_check
async def check_stale_fencing_token_refused(factory: ProviderFactory, p: Provider) -> None:
    await p.create(spec(factory, "web-0-1"), 5)
    await _stale(p.create(spec(factory, "web-1-1", slot="1"), 4), 4, 5)
    assert await p.describe("web-1-1") is InstanceState.TERMINATED
    await _stale(p.destroy("web-0-1", 4), 4, 5)
    assert await p.describe("web-0-1") is InstanceState.RUNNING
    assert await ids(p) == ["web-0-1"]
    await p.create(spec(factory, "web-1-1", slot="1"), 5)  # the same term is fine
    await p.destroy("web-1-1", 6)                          # a higher one too, and it now rules
    await _stale(p.create(spec(factory, "web-2-1", slot="2"), 5), 5, 6)
    await _stale(p.destroy("web-0-1", 5), 5, 6)
    await _stale(p.destroy("never-was", 5), 5, 6)
    assert await ids(p) == ["web-0-1"]
    assert await p.describe("web-0-1") is InstanceState.RUNNING


@_check
async def check_killed_instance_is_terminated(factory: ProviderFactory, p: Provider) -> None:
    await p.create(spec(factory, "web-0-1"), 1)
    await p.create(spec(factory, "web-1-1", slot="1"), 1)
    factory.kill(p, "web-0-1")
    await wait_state(p, "web-0-1", InstanceState.TERMINATED)
    states = {i.id: i.state for i in await p.list()}  # still known until destroyed
    assert states == {"web-0-1": InstanceState.TERMINATED, "web-1-1": InstanceState.RUNNING}


@_check
async def check_instance_fields_round_trip(factory: ProviderFactory, p: Provider) -> None:
    before = time.time()
    named = await p.create(spec(factory, "db-n2-3", group="db", slot="n2", logical_id="n2", spec_hash="abc123",
                                state_path="/srv/db/n2"), 7)
    plain = await p.create(spec(factory, "web-4-1", slot="4", spec_hash="def456"), 7)
    after = time.time()
    listed = {i.id: i for i in await p.list()}
    for inst in (named, listed["db-n2-3"]):
        assert (inst.id, inst.group, inst.logical_id, inst.slot, inst.spec_hash, inst.fencing_term,
                inst.state_path) == ("db-n2-3", "db", "n2", "n2", "abc123", 7, "/srv/db/n2")
        assert before - 1 <= inst.created_at <= after + 1
    for inst in (plain, listed["web-4-1"]):
        assert (inst.group, inst.logical_id, inst.slot, inst.spec_hash, inst.fencing_term,
                inst.state_path) == ("web", None, "4", "def456", 7, None)
    assert named.pid == listed["db-n2-3"].pid and named.created_at == listed["db-n2-3"].created_at


CHECKS: dict[str, Check] = {
    "create_running_and_listed": check_create_running_and_listed,
    "create_is_idempotent": check_create_is_idempotent,
    "create_after_death_restarts_in_place": check_create_after_death_restarts_in_place,
    "destroy": check_destroy,
    "destroy_of_a_dead_instance": check_destroy_of_a_dead_instance,
    "describe_unknown_id": check_describe_unknown_id,
    "stale_fencing_token_refused": check_stale_fencing_token_refused,
    "killed_instance_is_terminated": check_killed_instance_is_terminated,
    "instance_fields_round_trip": check_instance_fields_round_trip,
}


def run_all(factory: ProviderFactory) -> None:
    for check in CHECKS.values():
        check(factory)


def pids_running(marker: str) -> list[int]:
    """Live processes (this one aside) whose command line holds ``marker``:
    how tests prove a process provider left nothing behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
