"""The process provider: each instance is a detached process on this machine.

An instance is identified by its pid *and* the start time the kernel gives
that pid (field 22 of ``/proc/<pid>/stat``), plus the boot id: a pid alone is
recycled, and mistaking a stranger for the instance would both report a dead
instance as running and, worse, signal an innocent process. Only a matching
pid + start time + boot id is RUNNING; a pid that is gone, reused or a
zombie, or a record from an earlier boot, is TERMINATED (confirmed dead); a
record written on another host, or one that cannot be read, is UNKNOWN.

What the provider knows lives in files under ``state_dir``, not in memory::

    instances/<id>.json   one record per instance (written atomically)
    logs/<id>.log         the instance's stdout and stderr (appended)
    locks/<id>.lock       flock held while creating or destroying <id>
    fence, fence.lock     the highest fencing term seen, and its lock

Records outlive the manager that wrote them, so a newly elected leader (in
this process or another one sharing the directory) adopts the instances that
exist instead of starting them twice; records are removed only by destroy.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .base import Instance, InstanceState, LaunchSpec, Provider, ProviderError, StaleFencingToken

_log = logging.getLogger(__name__)

RECORD_VERSION = 1
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_POLL_S = 0.02
_KILL_WAIT_S = 2.0      # after SIGKILL: the kernel needs no more than this
_LOCK_SLACK_S = 10.0    # a lock holder may be destroying: stop + kill wait + this


# -- /proc ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The few fields of ``/proc/<pid>/stat`` the provider needs."""

    state: str        # field 3: R, S, D, Z (zombie), X (dead), ...
    pgrp: int         # field 5
    start_time: int   # field 22, clock ticks since boot: with the pid, names one process


def read_stat(pid: int) -> ProcStat | None:
    """The stat of ``pid``, None when there is no such process. Parsed after
    the last ')' because the command name (field 2) may hold spaces and
    parentheses."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # fields[0] is field 3
    return ProcStat(state=fields[0], pgrp=int(fields[2]), start_time=int(fields[19]))


@cache
def boot_id() -> str:
    """Changes at every boot: a record from an earlier boot is dead for sure."""
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _alive(stat: ProcStat | None) -> bool:
    return stat is not None and stat.state not in ("Z", "X")


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                stat = read_stat(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
            if stat is not None and stat.pgrp == pgid and _alive(stat):
                return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# -- our children -----------------------------------------------------------------

class _Child(subprocess.Popen[bytes]):
    """An instance process, meant to outlive this object and this manager.
    A plain Popen warns (ResourceWarning) when it is dropped while its child
    runs, which here is the normal case, e.g. when the manager exits; the
    provider reaps its children itself (``reap_children``)."""

    def __del__(self) -> None:
        pass


# Process-wide, not per provider: instances outlive the provider object that
# started them, and any provider call then still reaps them.
_children: dict[int, _Child] = {}
_children_lock = threading.Lock()


def reap_children() -> frozenset[int]:
    """Collect the exited processes this Python process started, so a
    long-running manager accumulates no zombies. Returns the pids of those
    not exited yet."""
    with _children_lock:
        for pid, child in list(_children.items()):
            if child.poll() is not None:
                del _children[pid]
        return frozenset(_children)


# -- records ----------------------------------------------------------------------

_NONE = type(None)
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "group": (str,), "logical_id": (str, _NONE), "slot": (str,), "pid": (int,),
    "start_time": (int,), "boot_id": (str,), "hostname": (str,), "spec_hash": (str,), "fencing_term": (int,),
    "created_at": (int, float), "argv": (list,), "env": (dict,), "working_dir": (str, _NONE),
    "state_path": (str, _NONE), "log": (str,),
}


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the provider writes down when it starts an instance: enough to
    recognise the process later (pid, start time, boot id, host) and to
    report the instance without asking the manager."""

    id: str
    group: str
    logical_id: str | None
    slot: str
    pid: int
    start_time: int
    boot_id: str
    hostname: str
    spec_hash: str
    fencing_term: int
    created_at: float
    argv: tuple[str, ...]
    env: dict[str, str]
    working_dir: str | None
    state_path: str | None
    log: str

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["argv"] = list(self.argv)
        return {"version": RECORD_VERSION, **data}

    @classmethod
    def from_json(cls, raw: Any) -> InstanceRecord:
        """Raises ValueError on anything but a well-formed record."""
        if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
            raise ValueError(f"not a version {RECORD_VERSION} instance record")
        for name, types in _RECORD_FIELDS.items():
            value = raw.get(name, ...)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"field {name!r} is missing or not {'/'.join(t.__name__ for t in types)}")
        if not all(isinstance(a, str) for a in raw["argv"]):
            raise ValueError("field 'argv' holds a non-string")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw["env"].items()):
            raise ValueError("field 'env' holds a non-string")
        values = {name: raw[name] for name in _RECORD_FIELDS}
        values["argv"] = tuple(raw["argv"])
        values["created_at"] = float(raw["created_at"])
        return cls(**values)

    def instance(self, state: InstanceState) -> Instance:
        return Instance(id=self.id, group=self.group, logical_id=self.logical_id, slot=self.slot, state=state,
                        spec_hash=self.spec_hash, fencing_term=self.fencing_term, created_at=self.created_at,
                        pid=self.pid, state_path=self.state_path)


def read_record(path: Path) -> InstanceRecord:
    """Raises FileNotFoundError when absent, OSError or ValueError when unreadable."""
    record = InstanceRecord.from_json(json.loads(path.read_bytes()))
    if path.name != f"{record.id}.json":
        raise ValueError(f"record of {record.id!r} stored as {path.name}")
    return record


def observe(record: InstanceRecord) -> InstanceState:
    """The state of the recorded process, judged from this host."""
    if record.hostname != socket.gethostname():
        return InstanceState.UNKNOWN
    if record.boot_id != boot_id():
        return InstanceState.TERMINATED
    stat = read_stat(record.pid)
    if stat is None or stat.start_time != record.start_time or not _alive(stat):
        return InstanceState.TERMINATED
    return InstanceState.RUNNING


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old or the new content, never a torn one, even
    after a crash."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def _flock(path: Path, *, shared: bool, timeout_s: float) -> Iterator[None]:
    """An flock on ``path``, waited for at most ``timeout_s``. flock (not
    fcntl record locks) so that two provider objects in one process exclude
    each other too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, op)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ProviderError(f"timed out after {timeout_s:.1f}s waiting for the lock {path}") from None
                time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_id(instance_id: str) -> None:
    """Ids name files: nothing that could escape the state directory."""
    if not ID_PATTERN.fullmatch(instance_id):
        raise ProviderError(f"instance id {instance_id!r} must match {ID_PATTERN.pattern}")


# -- the provider -----------------------------------------------------------------


class ProcessProvider(Provider):
    """Runs instances as local processes, each in its own session (so its
    whole process group can be stopped), with its state in ``state_dir``."""

    name = "process"

    def __init__(self, state_dir: str | Path, *, stop_timeout_s: float = 5.0) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.stop_timeout_s = stop_timeout_s
        self._lock_timeout_s = stop_timeout_s + _KILL_WAIT_S + _LOCK_SLACK_S
        for sub in ("instances", "logs", "locks"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    # -- paths --

    def record_path(self, instance_id: str) -> Path:
        return self.state_dir / "instances" / f"{instance_id}.json"

    def log_path(self, instance_id: str) -> Path:
        return self.state_dir / "logs" / f"{instance_id}.log"

    def _lock_path(self, instance_id: str) -> Path:
        # Lock files are never removed: unlinking one while another caller
        # waits on it would let two callers hold "the" lock at once.
        return self.state_dir / "locks" / f"{instance_id}.lock"

    # -- Provider --

    async def create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
        return await asyncio.to_thread(self._create, spec, fencing_term)

    async def destroy(self, instance_id: str, fencing_term: int) -> None:
        await asyncio.to_thread(self._destroy, instance_id, fencing_term)

    async def list(self, group: str | None = None) -> list[Instance]:
        return await asyncio.to_thread(self._list, group)

    async def describe(self, instance_id: str) -> InstanceState:
        return await asyncio.to_thread(self._describe, instance_id)

    def state_intact(self, instance: Instance) -> bool:
        if not instance.state_path:
            return False
        try:
            with os.scandir(instance.state_path) as entries:
                return any(True for _ in entries)
        except OSError:  # absent, not a directory, unreadable
            return False

    async def close(self) -> None:
        await asyncio.to_thread(reap_children)

    # -- operator actions (quorate up / down), outside the manager's fencing --

    async def stop(self, instance_id: str) -> bool:
        """Stop a running instance but keep its record: it then reads
        TERMINATED with its state intact, and can be restarted in place.
        True when it was running."""
        return await asyncio.to_thread(self._stop_keep, instance_id)

    def fencing_term(self) -> int:
        """The highest fencing term seen (0 before any): an operator restart
        of a stopped instance uses it, so it is never refused as stale."""
        return self._read_fence() or 0

    def _stop_keep(self, instance_id: str) -> bool:
        _check_id(instance_id)
        with self._instance_lock(instance_id):
            try:
                record = read_record(self.record_path(instance_id))
            except (OSError, ValueError):
                return False
            if self._observe(record) is not InstanceState.RUNNING:
                return False
            self._stop(record)
            return True

    # -- the work, in a thread --

    def _create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
        _check_id(spec.instance_id)
        reap_children()
        with self._fenced(fencing_term), self._instance_lock(spec.instance_id):
            try:
                found = read_record(self.record_path(spec.instance_id))
            except FileNotFoundError:
                found = None
            except (OSError, ValueError) as exc:
                raise ProviderError(f"the record of instance {spec.instance_id!r} is unreadable ({exc}): cannot "
                                    "tell whether it runs; destroy it before creating it again") from exc
            if found is not None:
                state = self._observe(found)
                if state is InstanceState.RUNNING:
                    return found.instance(state)
                if state is InstanceState.UNKNOWN:
                    raise ProviderError(f"instance {spec.instance_id!r} is recorded on host {found.hostname!r}, "
                                        f"not {socket.gethostname()!r}: cannot tell whether it runs")
            record = self._spawn(spec, fencing_term)
            try:
                _write_atomic(self.record_path(spec.instance_id), _encode(record))
            except OSError as exc:
                self._kill_unrecorded(record.pid)
                raise ProviderError(f"cannot record instance {spec.instance_id!r}: {exc}") from exc
            return record.instance(InstanceState.RUNNING)

    def _spawn(self, spec: LaunchSpec, fencing_term: int) -> InstanceRecord:
        """Start the process: a new session (setsid), stdin from /dev/null,
        stdout and stderr appended to its log."""
        if not spec.argv:
            raise ProviderError(f"instance {spec.instance_id!r} has an empty command")
        log = self.log_path(spec.instance_id)
        log_existed = log.exists()
        try:
            with open(log, "ab") as out:
                child = _Child(
                    list(spec.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, **spec.env}, cwd=spec.working_dir, start_new_session=True)
        except OSError as exc:
            if not log_existed:
                log.unlink(missing_ok=True)
            what = "working directory" if spec.working_dir and exc.filename == spec.working_dir else "command"
            raise ProviderError(f"cannot start instance {spec.instance_id!r}: {what} {exc.filename or spec.argv[0]!r}: "
                                f"{exc.strerror or exc}") from exc
        # Read before anyone can reap it: until then its /proc entry stays.
        stat = read_stat(child.pid)
        with _children_lock:
            _children[child.pid] = child
        if stat is None:  # cannot happen for an unreaped child; never record a guess
            self._kill_unrecorded(child.pid)
            raise ProviderError(f"instance {spec.instance_id!r}: /proc/{child.pid}/stat vanished")
        return InstanceRecord(
            id=spec.instance_id, group=spec.group, logical_id=spec.logical_id, slot=spec.slot, pid=child.pid,
            start_time=stat.start_time, boot_id=boot_id(), hostname=socket.gethostname(), spec_hash=spec.spec_hash,
            fencing_term=fencing_term, created_at=time.time(), argv=tuple(spec.argv), env=dict(spec.env),
            working_dir=spec.working_dir, state_path=spec.state_path, log=str(log))

    def _kill_unrecorded(self, pid: int) -> None:
        """Undo a start whose record could not be written: nothing is left behind."""
        _signal_group(pid, signal.SIGKILL)
        self._wait_group_gone(pid, _KILL_WAIT_S)

    def _destroy(self, instance_id: str, fencing_term: int) -> None:
        _check_id(instance_id)
        reap_children()
        with self._fenced(fencing_term), self._instance_lock(instance_id):
            path = self.record_path(instance_id)
            try:
                record = read_record(path)
            except FileNotFoundError:
                return
            except ValueError as exc:
                # No pid in it can be trusted, so there is nothing to signal.
                _log.warning("removing the unreadable record of instance %s: %s", instance_id, exc)
                path.unlink(missing_ok=True)
                return
            except OSError as exc:
                raise ProviderError(f"cannot read the record of instance {instance_id!r}: {exc}") from exc
            state = self._observe(record)
            if state is InstanceState.UNKNOWN:
                raise ProviderError(f"instance {instance_id!r} is recorded on host {record.hostname!r}, "
                                    f"not {socket.gethostname()!r}: it cannot be stopped from here")
            if state is InstanceState.RUNNING:
                self._stop(record)
            path.unlink(missing_ok=True)

    def _stop(self, record: InstanceRecord) -> None:
        """SIGTERM the instance's process group, SIGKILL it after
        ``stop_timeout_s``. The group id is the instance's pid (setsid), and
        it is signalled only while that pid still has the recorded start
        time, or right after we saw members of the group alive (a group id
        cannot be reused while the group has members)."""
        if observe(record) is not InstanceState.RUNNING:
            return
        pgid = record.pid
        _signal_group(pgid, signal.SIGTERM)
        if self._wait_group_gone(pgid, self.stop_timeout_s):
            return
        _log.warning("instance %s (pid %d) did not stop within %.1fs of SIGTERM: killing its group",
                     record.id, pgid, self.stop_timeout_s)
        _signal_group(pgid, signal.SIGKILL)
        if not self._wait_group_gone(pgid, _KILL_WAIT_S):
            raise ProviderError(f"instance {record.id!r}: process group {pgid} is still alive "
                                f"{_KILL_WAIT_S}s after SIGKILL")

    @staticmethod
    def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            gone = not _group_alive(pgid)
            reap_children()  # after the check: a leader seen as a zombie is collected now
            if gone:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)

    def _list(self, group: str | None) -> list[Instance]:
        reap_children()
        out = []
        for path in sorted((self.state_dir / "instances").glob("*.json")):
            try:
                record = read_record(path)
            except FileNotFoundError:  # destroyed meanwhile
                continue
            except (OSError, ValueError) as exc:
                _log.warning("skipping the unreadable instance record %s: %s", path, exc)
                continue
            if group is None or record.group == group:
                out.append(record.instance(self._observe(record)))
        return out

    def _describe(self, instance_id: str) -> InstanceState:
        _check_id(instance_id)
        reap_children()
        try:
            record = read_record(self.record_path(instance_id))
        except FileNotFoundError:
            return InstanceState.TERMINATED  # records go only with destroy: it is gone
        except (OSError, ValueError) as exc:
            _log.warning("the record of instance %s is unreadable: %s", instance_id, exc)
            return InstanceState.UNKNOWN
        return self._observe(record)

    @staticmethod
    def _observe(record: InstanceRecord) -> InstanceState:
        try:
            return observe(record)
        except (OSError, ValueError, IndexError) as exc:
            _log.warning("cannot observe instance %s (pid %d): %s", record.id, record.pid, exc)
            return InstanceState.UNKNOWN

    # -- locks and fencing --

    def _instance_lock(self, instance_id: str) -> AbstractContextManager[None]:
        return _flock(self._lock_path(instance_id), shared=False, timeout_s=self._lock_timeout_s)

    @contextmanager
    def _fenced(self, term: int) -> Iterator[None]:
        """Refuse a term lower than the highest seen, store a higher one, and
        hold the fence (shared) for the whole call: once a higher term is
        stored, no call of a lower term is still in flight."""
        fence_lock = self.state_dir / "fence.lock"
        while True:
            with _flock(fence_lock, shared=True, timeout_s=self._lock_timeout_s):
                highest = self._read_fence()
                if highest is not None and term < highest:
                    raise StaleFencingToken(term, highest)
                if highest == term:
                    yield
                    return
            with _flock(fence_lock, shared=False, timeout_s=self._lock_timeout_s):
                highest = self._read_fence()
                if highest is not None and term < highest:
                    raise StaleFencingToken(term, highest)
                if highest != term:
                    _write_atomic(self.state_dir / "fence", f"{term}\n".encode())
            # and take it shared again, re-checking: a higher term may have come meanwhile

    def _read_fence(self) -> int | None:
        path = self.state_dir / "fence"
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return int(text.strip())
        except ValueError:
            raise ProviderError(f"{path} does not hold a fencing term: {text[:40]!r}") from None


def _encode(record: InstanceRecord) -> bytes:
    return (json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n").encode()
