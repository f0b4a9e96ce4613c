"""What only the process provider does: recognising its processes by pid and
start time, logs, environment and working directory, the process group,
records shared between managers, and records it cannot trust."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quorate.providers import InstanceState, LaunchSpec, ProcessProvider, ProviderError, StaleFencingToken
from quorate.providers.process import InstanceRecord, read_record, read_stat, reap_children
from quorate.testing.provider_conformance import cleanup, pids_running

SLEEP = "import time; time.sleep(600)"


# -- helpers -----------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting until {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def kill_and_reap(*pids: int) -> None:
    """Kill processes the test knowingly left running, and collect them
    (they are the provider's children: it reaps them)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def gone() -> bool:
        running = reap_children()
        return all(not alive(pid) and pid not in running for pid in pids)

    wait_until(gone, f"{pids} are dead")


@pytest.fixture
def marker() -> Iterator[str]:
    """Tags the test's processes; none may be left running afterwards."""
    tag = f"quorate-test-{uuid.uuid4().hex}"
    yield tag
    left = pids_running(tag)
    kill_and_reap(*left)
    assert left == [], "the test left processes running"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def provider(state_dir: Path, marker: str) -> Iterator[ProcessProvider]:
    p = ProcessProvider(state_dir, stop_timeout_s=5.0)
    yield p
    asyncio.run(cleanup(p))


def spec(instance_id: str, marker: str, code: str = SLEEP, **kwargs: object) -> LaunchSpec:
    """An instance running Python ``code``, tagged with ``marker``."""
    fields: dict = {"group": "web", "logical_id": None, "slot": "0", **kwargs}
    return LaunchSpec(instance_id=instance_id, argv=(sys.executable, "-c", code, marker), **fields)


def rewrite(provider: ProcessProvider, source_id: str, new_id: str, **changes: object) -> InstanceRecord:
    """Store a copy of a real record under ``new_id`` with ``changes``."""
    record = dataclasses.replace(read_record(provider.record_path(source_id)), id=new_id, **changes)
    provider.record_path(new_id).write_text(json.dumps(record.to_json()))
    return record


# -- recognising the process ------------------------------------------------------


def test_a_reused_pid_is_terminated_and_never_signalled(provider: ProcessProvider, marker: str) -> None:
    inst = asyncio.run(provider.create(spec("web-0-1", marker), 1))
    assert inst.pid is not None
    record = read_record(provider.record_path("web-0-1"))
    rewrite(provider, "web-0-1", "web-0-1", start_time=record.start_time + 1)  # as if the pid were reused
    try:
        assert asyncio.run(provider.describe("web-0-1")) is InstanceState.TERMINATED
        assert [i.state for i in asyncio.run(provider.list())] == [InstanceState.TERMINATED]
        asyncio.run(provider.destroy("web-0-1", 1))
        assert not provider.record_path("web-0-1").exists()
        time.sleep(0.2)  # what a wrongly sent SIGTERM would need to take effect
        stat = read_stat(inst.pid)
        assert stat is not None and stat.state not in ("Z", "X") and stat.start_time == record.start_time
    finally:
        kill_and_reap(inst.pid)


def test_a_record_from_an_earlier_boot_is_terminated(provider: ProcessProvider, marker: str) -> None:
    inst = asyncio.run(provider.create(spec("web-0-1", marker), 1))
    rewrite(provider, "web-0-1", "web-0-0", boot_id="an-earlier-boot")  # same pid and start time
    assert asyncio.run(provider.describe("web-0-0")) is InstanceState.TERMINATED
    asyncio.run(provider.destroy("web-0-0", 1))
    assert inst.pid is not None and alive(inst.pid)
    assert asyncio.run(provider.describe("web-0-1")) is InstanceState.RUNNING


def test_a_zombie_is_terminated(provider: ProcessProvider, marker: str) -> None:
    asyncio.run(provider.create(spec("web-0-1", marker), 1))
    # A zombie the provider cannot reap: the test's own child, not waited for yet.
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        wait_until(lambda: (s := read_stat(child.pid)) is not None and s.state == "Z", "the child is a zombie")
        stat = read_stat(child.pid)
        assert stat is not None
        rewrite(provider, "web-0-1", "web-1-1", pid=child.pid, start_time=stat.start_time)
        assert asyncio.run(provider.describe("web-1-1")) is InstanceState.TERMINATED
        asyncio.run(provider.destroy("web-1-1", 1))
    assert asyncio.run(provider.describe("web-0-1")) is InstanceState.RUNNING


def test_exited_instances_are_reaped(provider: ProcessProvider, marker: str) -> None:
    inst = asyncio.run(provider.create(spec("job-0-1", marker, "pass"), 1))
    assert inst.pid is not None
    wait_until(lambda: asyncio.run(provider.describe("job-0-1")) is InstanceState.TERMINATED, "it exits")
    wait_until(lambda: read_stat(inst.pid) is None, "it is reaped, not left a zombie")  # type: ignore[arg-type]


def test_a_command_name_with_spaces_and_parentheses(provider: ProcessProvider, marker: str) -> None:
    code = "import time; open('/proc/self/comm', 'w').write('a) b (c'); print('ready', flush=True); time.sleep(600)"
    inst = asyncio.run(provider.create(spec("web-0-1", marker, code), 1))
    wait_until(lambda: "ready" in provider.log_path("web-0-1").read_text(), "the name is changed")
    assert Path(f"/proc/{inst.pid}/comm").read_text().strip() == "a) b (c"
    assert asyncio.run(provider.describe("web-0-1")) is InstanceState.RUNNING


# -- how it runs ----------------------------------------------------------------


def test_output_goes_to_the_log(provider: ProcessProvider, marker: str) -> None:
    code = f"import sys, time; print('to stdout', flush=True); print('to stderr', file=sys.stderr, flush=True); {SLEEP}"
    asyncio.run(provider.create(spec("web-0-1", marker, code), 1))
    log = provider.log_path("web-0-1")
    assert read_record(provider.record_path("web-0-1")).log == str(log)
    wait_until(lambda: log.exists() and {"to stdout", "to stderr"} <= set(log.read_text().splitlines()),
               "both lines are in the log")


def test_environment_working_directory_and_stdin(
    provider: ProcessProvider, marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUORATE_INHERITED", "from the manager")
    monkeypatch.setenv("QUORATE_OVERRIDDEN", "old")
    workdir = tmp_path / "work"
    workdir.mkdir()
    code = ("import json, os, sys\n"
            "out = {k: os.environ.get(k) for k in ('QUORATE_INHERITED', 'QUORATE_OVERRIDDEN', 'QUORATE_NEW')}\n"
            "out['cwd'] = os.getcwd()\nout['stdin'] = sys.stdin.read()\n"
            "open('seen.json.tmp', 'w').write(json.dumps(out)); os.rename('seen.json.tmp', 'seen.json')\n")
    env = {"QUORATE_OVERRIDDEN": "new", "QUORATE_NEW": "yes"}
    asyncio.run(provider.create(spec("job-0-1", marker, code, env=env, working_dir=str(workdir)), 1))
    seen_file = workdir / "seen.json"
    wait_until(seen_file.exists, "the instance wrote what it saw")
    assert json.loads(seen_file.read_text()) == {"QUORATE_INHERITED": "from the manager", "QUORATE_OVERRIDDEN": "new",
                                                 "QUORATE_NEW": "yes", "cwd": str(workdir), "stdin": ""}
    record = read_record(provider.record_path("job-0-1"))
    assert (record.env, record.working_dir) == (env, str(workdir))


@pytest.mark.parametrize("problem", ["missing", "not-on-path", "not-executable", "bad-working-dir"])
def test_a_command_that_cannot_start(provider: ProcessProvider, marker: str, tmp_path: Path, problem: str) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\n")
    argv, working_dir, message = {
        "missing": (("/nonexistent/quorate-cmd",), None, "No such file"),
        "not-on-path": (("quorate-no-such-command",), None, "No such file"),
        "not-executable": ((str(not_executable),), None, "Permission denied"),
        "bad-working-dir": ((sys.executable, "-c", "pass"), str(tmp_path / "nowhere"), "working directory"),
    }[problem]
    launch = LaunchSpec("web-0-1", "web", None, "0", argv=argv, working_dir=working_dir)
    with pytest.raises(ProviderError, match=message):
        asyncio.run(provider.create(launch, 1))
    assert not provider.record_path("web-0-1").exists()
    assert not provider.log_path("web-0-1").exists()
    assert asyncio.run(provider.list()) == []
    assert asyncio.run(provider.describe("web-0-1")) is InstanceState.TERMINATED


def test_an_invalid_instance_id_is_refused(provider: ProcessProvider, marker: str) -> None:
    with pytest.raises(ProviderError, match="must match"):
        asyncio.run(provider.create(spec("../escape", marker), 1))


# -- stopping -------------------------------------------------------------------


def test_destroy_stops_the_whole_process_group(provider: ProcessProvider, marker: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time\n"
            f"child = subprocess.Popen([sys.executable, '-c', {SLEEP!r}, {marker!r}])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(600)\n")
    inst = asyncio.run(provider.create(spec("web-0-1", marker, code), 1))
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", "the instance started its child")
    child_pid = int(pid_file.read_text())
    assert alive(child_pid) and inst.pid is not None
    asyncio.run(provider.destroy("web-0-1", 1))
    assert not alive(inst.pid)
    wait_until(lambda: not alive(child_pid), "the instance's child is gone too")


def test_destroy_kills_what_ignores_sigterm(state_dir: Path, marker: str) -> None:
    provider = ProcessProvider(state_dir, stop_timeout_s=0.3)
    code = f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); {SLEEP}"
    try:
        inst = asyncio.run(provider.create(spec("web-0-1", marker, code), 1))
        wait_until(lambda: "ready" in provider.log_path("web-0-1").read_text(), "SIGTERM is ignored")
        started = time.monotonic()
        asyncio.run(provider.destroy("web-0-1", 1))
        assert 0.3 <= time.monotonic() - started < 5
        assert inst.pid is not None and not alive(inst.pid)
        assert asyncio.run(provider.describe("web-0-1")) is InstanceState.TERMINATED
    finally:
        asyncio.run(cleanup(provider))


# -- several managers, one state directory ---------------------------------------


def test_concurrent_creates_from_two_providers_start_one_process(state_dir: Path, marker: str) -> None:
    providers = [ProcessProvider(state_dir) for _ in range(3)]

    async def race(instance_id: str) -> set[int | None]:
        launch = spec(instance_id, marker, f"{SLEEP} # {instance_id}")
        results = await asyncio.gather(*(p.create(launch, 1) for p in providers for _ in range(2)))
        return {r.pid for r in results}

    try:
        for n in range(5):
            iid = f"web-{n}-1"
            pids = asyncio.run(race(iid))
            assert len(pids) == 1, f"{iid}: several processes were started: {pids}"
            assert pids_running(f"# {iid}") == [pids.pop()]
    finally:
        asyncio.run(cleanup(providers[0]))


def test_a_new_provider_adopts_existing_instances(state_dir: Path, provider: ProcessProvider, marker: str) -> None:
    inst = asyncio.run(provider.create(spec("web-0-1", marker), 3))
    successor = ProcessProvider(state_dir)
    [adopted] = asyncio.run(successor.list())
    assert (adopted.id, adopted.pid, adopted.state) == ("web-0-1", inst.pid, InstanceState.RUNNING)
    assert asyncio.run(successor.create(spec("web-0-1", marker), 4)).pid == inst.pid
    asyncio.run(successor.destroy("web-0-1", 4))
    assert inst.pid is not None and not alive(inst.pid)


def test_the_fence_survives_a_new_provider(state_dir: Path, provider: ProcessProvider, marker: str) -> None:
    asyncio.run(provider.create(spec("web-0-1", marker), 5))
    assert (state_dir / "fence").read_text().strip() == "5"
    successor = ProcessProvider(state_dir)
    with pytest.raises(StaleFencingToken) as stale:
        asyncio.run(successor.create(spec("web-1-1", marker), 3))
    assert (stale.value.given, stale.value.highest) == (3, 5)
    with pytest.raises(StaleFencingToken):
        asyncio.run(successor.destroy("web-0-1", 4))
    assert asyncio.run(successor.describe("web-0-1")) is InstanceState.RUNNING
    assert asyncio.run(successor.describe("web-1-1")) is InstanceState.TERMINATED


# -- records it cannot trust ---------------------------------------------------


def test_a_record_from_another_host_is_unknown(provider: ProcessProvider, marker: str) -> None:
    inst = asyncio.run(provider.create(spec("web-0-1", marker), 1))
    rewrite(provider, "web-0-1", "web-1-1", hostname="elsewhere.example")
    try:
        assert asyncio.run(provider.describe("web-1-1")) is InstanceState.UNKNOWN
        states = {i.id: i.state for i in asyncio.run(provider.list())}
        assert states == {"web-0-1": InstanceState.RUNNING, "web-1-1": InstanceState.UNKNOWN}
        with pytest.raises(ProviderError, match="elsewhere.example"):
            asyncio.run(provider.create(spec("web-1-1", marker), 1))
        with pytest.raises(ProviderError, match="elsewhere.example"):
            asyncio.run(provider.destroy("web-1-1", 1))
        assert provider.record_path("web-1-1").exists()
        assert inst.pid is not None and alive(inst.pid)
    finally:
        provider.record_path("web-1-1").unlink()


def test_a_corrupt_record_is_unknown_and_skipped(
    provider: ProcessProvider, marker: str, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(provider.create(spec("web-0-1", marker), 1))
    provider.record_path("bad-0-1").write_text("{not json")
    provider.record_path("odd-0-1").write_text(json.dumps({"version": 1, "id": "odd-0-1", "pid": "twelve"}))
    rewrite(provider, "web-0-1", "web-0-2")
    provider.record_path("web-0-2").rename(provider.record_path("misfiled-0-1"))
    with caplog.at_level(logging.WARNING, logger="quorate.providers.process"):
        for iid in ("bad-0-1", "odd-0-1", "misfiled-0-1"):
            assert asyncio.run(provider.describe(iid)) is InstanceState.UNKNOWN
        assert [i.id for i in asyncio.run(provider.list())] == ["web-0-1"]
    assert sum("unreadable" in r.getMessage() for r in caplog.records) == 6
    with pytest.raises(ProviderError, match="unreadable"):
        asyncio.run(provider.create(spec("bad-0-1", marker), 1))
    for iid in ("bad-0-1", "odd-0-1", "misfiled-0-1"):
        asyncio.run(provider.destroy(iid, 1))  # nothing in it to signal: forgotten
        assert asyncio.run(provider.describe(iid)) is InstanceState.TERMINATED
    assert asyncio.run(provider.describe("web-0-1")) is InstanceState.RUNNING


# -- durable state -------------------------------------------------------------


def test_state_intact(provider: ProcessProvider, marker: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    inst = asyncio.run(provider.create(spec("db-n1-1", marker, state_path=str(data)), 1))
    assert not provider.state_intact(inst)  # absent
    data.mkdir()
    assert not provider.state_intact(inst)  # empty
    (data / "log").write_text("x")
    assert provider.state_intact(inst)
    assert not provider.state_intact(dataclasses.replace(inst, state_path=str(data / "log")))  # not a directory
    assert not provider.state_intact(dataclasses.replace(inst, state_path=None))
