"""Quorum loss on real processes (DESIGN.md S2, S3; src/quorate/recovery/quorum.py).

With `quorate up` (the managers are a process-provider group, so the
provider can confirm a death):

- 2 of 3 managers killed with their data: the survivor's watchdog restarts
  them in place (same members, epoch 0, nothing lost);
- 2 of 3 killed with their data gone: the survivor forces a new
  configuration (epoch 1), records it, and the managers group provisions
  replacements back to 3 voters;
- 2 of 3 SIGSTOPped: nobody forces, the survivor says why and what an
  operator could run; after SIGCONT the original cluster carries on;
- 5 managers: 3 lost for good, the 2 survivors recover (epoch 1) back to 5;
  then 2 of those 5 lost: ordinary Raft, no forcing.

By hand (agents started without a provider, so no death is ever confirmed):
`quorate recover --from NODE` online, a stale member refused afterwards, and
`quorate recover --data-dir` offline.

Killing a manager "with its data deleted" is done as SIGSTOP, move the data
dir away, SIGKILL: the process never runs again after its data is gone, and
no live leader can restart it in place between the kill and the deletion.
Every wait polls a condition; the only fixed waits are where a test shows
that something does *not* happen, and those start once the watchdog has
demonstrably looked at the situation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .harness import ProcCluster, http, wait_for
from .localup import LocalUp, _slot, quorate, wait
from .localup import ok as _ok

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 60.0
#: Long enough for the watchdog's grace period (5 election timeouts = 5 s
#: with `quorate up`'s defaults), its rounds and the restarts, on a loaded box.
RECOVERY_DEADLINE = 120.0
EPOCH_KEY = "_quorate/recovery/epochs/"


# -- helpers ----------------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return quorate(*args, timeout=CLI_TIMEOUT)


def _status(url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    try:
        r = http("GET", url + "/v1/status", timeout=timeout)
    except OSError:
        return None
    return r.body if r.status == 200 else None  # type: ignore[no-any-return]


def _put_ok(url: str, key: str, value: str) -> bool:
    try:
        return http("PUT", f"{url}/v1/kv/{key}", {"value": value}, timeout=10.0).status == 200
    except OSError:
        return False


def _get(url: str, key: str, stale: bool = False) -> str | None:
    r = http("GET", f"{url}/v1/kv/{key}" + ("?consistency=stale" if stale else ""), timeout=10.0)
    assert r.status in (200, 404), (key, r)
    return str(r.body["value"]) if r.status == 200 else None


def _endpoint(lu: LocalUp, member: str) -> str:
    """The API URL of a manager (a replacement takes its slot's ports)."""
    return lu.endpoints[lu.cluster.slots().index(_slot(member))]


def _managers(lu: LocalUp) -> dict[str, dict[str, Any]]:
    """member id -> its running manager instance."""
    return {i["member_id"]: i for i in lu.instances("managers") if i["state"] == "running"}


def _record_pids(lu: LocalUp) -> dict[str, int]:
    """instance id -> pid, from the process provider's records (no API needed)."""
    out = {}
    for path in (lu.dir / "instances" / "instances").glob("managers-*.json"):
        raw = json.loads(path.read_text())
        out[raw["id"]] = int(raw["pid"])
    return out


def _caught_up(urls: list[str], leader_url: str) -> None:
    """Until every node in ``urls`` has applied what the leader has committed now."""
    st = _status(leader_url)
    assert st is not None and st["role"] == "leader", st
    commit = st["commit_index"]
    wait(f"{urls} to apply up to {commit}",
         lambda: all((s := _status(u)) is not None and s["applied_index"] >= commit for u in urls))


def _lose(lu: LocalUp, victims: list[dict[str, Any]], *, wipe: bool) -> float:
    """kill -9 the victims (their data dirs removed first when ``wipe``:
    stopped, so they never run without it); the monotonic time of the kill."""
    pids = [int(v["pid"]) for v in victims]
    gone: list[Path] = []
    try:
        if wipe:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            for v in victims:
                data = lu.dir / "nodes" / v["member_id"] / "data"
                gone.append(data.rename(data.with_name("data.deleted")))
    finally:  # never leave a stopped manager behind
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    if wipe:
        for path in gone:
            shutil.rmtree(path)
    return t0


def _first_write(url: str, key: str, t0: float, what: str) -> float:
    """Seconds from ``t0`` to the first write acknowledged through ``url``."""
    wait(what, lambda: _put_ok(url, key, "first"), timeout=RECOVERY_DEADLINE)
    return time.monotonic() - t0


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _epoch_record(url: str, epoch: int) -> dict[str, Any]:
    r = http("GET", f"{url}/v1/kv/{EPOCH_KEY}{epoch}", timeout=10.0)
    assert r.status == 200, r
    return json.loads(r.body["value"])  # type: ignore[no-any-return]


def _all_statuses(lu: LocalUp) -> list[dict[str, Any]] | None:
    sts = [_status(e) for e in lu.endpoints]
    return None if any(s is None for s in sts) else sts  # type: ignore[return-value]


def _report(line: str) -> None:
    print(f"\n[quorum-loss timing] {line}", flush=True)


# -- S2 with quorate up -------------------------------------------------------------------------


def test_s2_two_of_three_killed_with_their_data_are_restarted_in_place(
        local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    leader, leader_url = lu.leader()
    keys = {f"s2/{i:02d}": f"v{i}" for i in range(20)}
    for k, v in keys.items():
        lu.put(k, v)
    mgrs = _managers(lu)
    assert sorted(mgrs) == ["n1", "n2", "n3"]
    survivor = min(m for m in mgrs if m != leader)
    url = _endpoint(lu, survivor)
    _caught_up([url], leader_url)
    victims = [mgrs[m] for m in sorted(mgrs) if m != survivor]  # the leader among them

    t0 = _lose(lu, victims, wipe=False)
    took = _first_write(url, "s2/after", t0, f"a write accepted through the survivor {survivor}")
    _report(f"restart in place (3 managers, 2 killed): kill -9 -> first acknowledged write {took:.1f} s")

    # Restarted in place by the survivor's watchdog: the same instances and
    # members (new processes), the same voters, no new epoch, nothing lost.
    def restarted() -> bool:
        now = _managers(lu)
        return all((i := now.get(v["member_id"])) is not None and i["id"] == v["id"] and i["pid"] != v["pid"]
                   for v in victims)

    wait("both killed managers restarted in place", restarted)
    assert lu.voters() == ["n1", "n2", "n3"]
    sts = wait("every manager answering", lambda: _all_statuses(lu))
    assert [s["epoch"] for s in sts] == [0, 0, 0]
    assert {s["id"] for s in sts} == {"n1", "n2", "n3"}
    assert {k: lu.get(k) for k in keys} == keys
    assert lu.get("s2/after") == "first"
    slog = _log(lu.cluster.log_file(survivor))
    assert "quorum watchdog: RestartInPlace" in slog, slog[-5000:]
    assert "FORCED" not in slog


def test_s2_two_of_three_lost_for_good_survivor_forces_then_group_heals(
        local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    leader, leader_url = lu.leader()
    keys = {f"s2/{i:02d}": f"v{i}" for i in range(20)}
    for k, v in keys.items():
        lu.put(k, v)
    mgrs = _managers(lu)
    survivor = min(m for m in mgrs if m != leader)
    url = _endpoint(lu, survivor)
    _caught_up([url], leader_url)  # so every acknowledged key is on the survivor
    victims = [mgrs[m] for m in sorted(mgrs) if m != survivor]
    removed = sorted(v["member_id"] for v in victims)

    t0 = _lose(lu, victims, wipe=True)
    took_write = _first_write(url, "s2/after", t0, f"a write accepted through the survivor {survivor}")
    st = _status(url)
    assert st is not None and st["epoch"] == 1, st

    expected = sorted({survivor} | {f"{m}-2" for m in removed})
    seen: list[list[str]] = []

    def healed() -> bool:
        voters = lu.voters()
        seen.append(voters)
        return voters == expected

    wait(f"the managers group back to voters {expected}", healed, timeout=RECOVERY_DEADLINE)
    took_full = time.monotonic() - t0
    _report(f"forced recovery (3 managers, 2 lost for good): kill -9 -> first acknowledged write "
            f"{took_write:.1f} s, -> 3 voters again {took_full:.1f} s")
    assert all(len(v) <= 3 for v in seen), seen  # never more voters than wanted on the way

    record = wait("the recovery recorded in the store", lambda: _epoch_record(url, 1))
    assert record["epoch"] == 1 and record["forced_by"] == survivor, record
    assert record["removed"] == removed and record["voters"] == [survivor], record
    assert survivor in record["survivors"], record

    sts = wait("every manager answering in epoch 1",
               lambda: (s := _all_statuses(lu)) and all(x["epoch"] == 1 for x in s) and s)
    assert sorted(s["id"] for s in sts) == expected
    now = _managers(lu)
    for m in removed:
        assert now[f"{m}-2"]["id"] == f"managers-{m}-2", now
    assert {k: lu.get(k) for k in keys} == keys
    assert lu.get("s2/after") == "first"
    slog = _log(lu.cluster.log_file(survivor))
    assert "quorum watchdog: Force" in slog and "FORCED a new configuration" in slog, slog[-5000:]


# -- S3 with quorate up -------------------------------------------------------------------------


def test_s3_two_of_three_paused_nobody_forces_then_the_cluster_carries_on(
        local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(3)
    lu.up()
    leader, leader_url = lu.leader()
    for i in range(5):
        lu.put(f"s3/{i}", f"v{i}")
    mgrs = _managers(lu)
    survivor = min(m for m in mgrs if m != leader)
    url = _endpoint(lu, survivor)
    paused = sorted(m for m in mgrs if m != survivor)
    pids = {m: int(mgrs[m]["pid"]) for m in paused}
    records_before = _record_pids(lu)
    term_before = _status(url)["term"]  # type: ignore[index]

    stopped: list[int] = []
    try:
        for m in paused:
            os.kill(pids[m], signal.SIGSTOP)
            stopped.append(pids[m])
        t0 = time.monotonic()

        def explained() -> dict[str, Any] | None:
            st = _status(url)
            if st is None or st["quorum"] or not st["quorum_recovery"]:
                return None
            return st if st["quorum_recovery"]["decision"] == "wait" and st["quorum_recovery"]["missing"] else None

        st = wait("the survivor's watchdog to explain the lost quorum", explained, timeout=RECOVERY_DEADLINE)
        spoke = time.monotonic() - t0
        qr = st["quorum_recovery"]
        assert qr["missing"] == {m: "running" for m in paused}, qr
        assert qr["command"] == f"quorate recover --from {survivor}", qr
        assert "not confirmed dead" in qr["reason"] and "nothing is forced" in qr["reason"], qr
        problems = "\n".join(st["problems"])
        assert "no quorum" in problems, problems
        for m in paused:
            assert f"missing voter {m}: the provider says running" in problems, problems
        assert f"quorate recover --from {survivor}" in problems, problems
        assert st["epoch"] == 0 and sorted(st["voters"]) == ["n1", "n2", "n3"], st
        view = http("GET", url + "/v1/quorum", timeout=5.0).body
        assert view["decision"]["decision"] == "wait" and view["forced"] == [], view

        # A good while (ten watchdog rounds and more) after it has spoken:
        # still nothing forced, nothing restarted, the same voters.
        watched_until = time.monotonic() + 12.0
        rounds = 0
        while time.monotonic() < watched_until:
            st = _status(url)
            assert st is not None, "the survivor stopped answering"
            assert st["epoch"] == 0 and sorted(st["voters"]) == ["n1", "n2", "n3"], st
            assert st["role"] != "leader" and st["quorum_recovery"]["decision"] == "wait", st
            rounds += 1
            time.sleep(0.5)
        assert _record_pids(lu) == records_before  # no manager was started anew
        assert http("GET", url + "/v1/quorum", timeout=5.0).body["forced"] == []
        slog = _log(lu.cluster.log_file(survivor))
        assert "FORCED" not in slog and "RestartInPlace" not in slog
        assert "quorum watchdog: Wait: no quorum" in slog, slog[-5000:]
        _report(f"S3 pause: the survivor explained the lost quorum {spoke:.1f} s after SIGSTOP; "
                f"watched {rounds} more polls over 12 s, nothing forced")
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    t1 = time.monotonic()
    took = _first_write(url, "s3/after", t1, "writes to resume after SIGCONT")
    _report(f"S3 pause: SIGCONT -> first acknowledged write {took:.1f} s")
    assert lu.voters() == ["n1", "n2", "n3"]
    sts = wait("every manager answering", lambda: _all_statuses(lu))
    assert [s["epoch"] for s in sts] == [0, 0, 0]
    assert {m: int(i["pid"]) for m, i in _managers(lu).items() if m in pids} == pids  # the same processes
    assert lu.get("s3/4") == "v4" and lu.get("s3/after") == "first"
    assert _status(url)["term"] >= term_before  # type: ignore[index]


# -- five managers ---------------------------------------------------------------------------


def test_five_managers_three_lost_recover_then_two_lost_is_ordinary_raft(
        local_up: Callable[..., LocalUp]) -> None:
    lu = local_up(5)
    lu.up()
    all5 = ["n1", "n2", "n3", "n4", "n5"]
    assert lu.voters() == all5
    leader, leader_url = lu.leader()
    keys = {f"five/{i:02d}": f"v{i}" for i in range(10)}
    for k, v in keys.items():
        lu.put(k, v)
    mgrs = _managers(lu)
    survivors = sorted(m for m in mgrs if m != leader)[:2]
    urls = [_endpoint(lu, m) for m in survivors]
    _caught_up(urls, leader_url)
    victims = [mgrs[m] for m in sorted(mgrs) if m not in survivors]  # the leader among them
    removed = sorted(v["member_id"] for v in victims)

    # Phase 1: three of five lost for good; the two survivors agree and recover.
    t0 = _lose(lu, victims, wipe=True)
    took_write = _first_write(urls[0], "five/after1", t0, f"a write accepted through {survivors[0]}")
    expected = sorted(set(survivors) | {f"{m}-2" for m in removed})
    wait(f"the managers group back to voters {expected}", lambda: lu.voters() == expected,
         timeout=RECOVERY_DEADLINE)
    took_full = time.monotonic() - t0
    _report(f"forced recovery (5 managers, 3 lost for good): kill -9 -> first acknowledged write "
            f"{took_write:.1f} s, -> 5 voters again {took_full:.1f} s")
    for u in urls:
        assert _status(u)["epoch"] == 1  # type: ignore[index]
    record = wait("the recovery recorded in the store", lambda: _epoch_record(urls[0], 1))
    assert record["removed"] == removed and record["voters"] == survivors, record
    assert record["forced_by"] in survivors and sorted(record["survivors"]) == survivors, record
    forced_by = record["forced_by"]
    other = next(s for s in survivors if s != forced_by)
    assert "FORCED a new configuration" in _log(lu.cluster.log_file(forced_by))
    assert "FORCED" not in _log(lu.cluster.log_file(other))  # it followed, it did not force too
    sts = wait("every manager answering in epoch 1",
               lambda: (s := _all_statuses(lu)) and all(x["epoch"] == 1 for x in s) and s)
    assert sorted(s["id"] for s in sts) == expected
    assert {k: lu.get(k) for k in keys} == keys

    # Phase 2: two of these five lost for good (the leader among them): a
    # majority lives, so ordinary Raft; no forcing, the dead are replaced.
    leader2, leader2_url = lu.leader()
    mgrs = _managers(lu)
    assert sorted(mgrs) == expected
    victims2 = [mgrs[leader2], mgrs[min(m for m in mgrs if m != leader2)]]
    gone2 = sorted(v["member_id"] for v in victims2)
    rest = sorted(set(mgrs) - set(gone2))
    _caught_up([_endpoint(lu, m) for m in rest], leader2_url)
    t2 = _lose(lu, victims2, wipe=True)
    took2 = _first_write(_endpoint(lu, rest[0]), "five/after2", t2, "writes after losing two of five")
    new_leader, _ = lu.leader()
    assert new_leader in rest

    def five_again() -> list[str] | None:
        voters = lu.voters()
        return voters if len(voters) == 5 and not set(gone2) & set(voters) else None

    voters2 = wait("five voters again, without the lost two", five_again, timeout=RECOVERY_DEADLINE)
    took2_full = time.monotonic() - t2
    _report(f"ordinary Raft (5 managers, 2 lost for good): kill -9 -> first acknowledged write {took2:.1f} s, "
            f"-> 5 voters again {took2_full:.1f} s")
    assert set(rest) <= set(voters2)
    sts = wait("every manager answering", lambda: _all_statuses(lu))
    assert [s["epoch"] for s in sts] == [1] * 5, sts
    assert http("GET", f"{_endpoint(lu, rest[0])}/v1/kv/{EPOCH_KEY}2", timeout=10.0).status == 404
    for m in rest:  # nobody forced again
        assert _log(lu.cluster.log_file(m)).count("FORCED a new configuration") == (m == forced_by), m
    assert {k: lu.get(k) for k in keys} == keys


# -- by hand, without a provider ---------------------------------------------------------------


def _put(c: ProcCluster, key: str, value: str) -> None:
    def attempt() -> bool:
        for node in c.live():
            try:
                if c.put(node, key, value).status == 200:
                    return True
            except OSError:
                pass
        return False

    wait_for(f"an acknowledged write of {key}", attempt)


def test_manual_recover_without_a_provider_then_the_stale_member_is_refused(
        make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(3)
    c.start_all()
    leader = c.leader()
    keys = {f"m/{i}": f"v{i}" for i in range(10)}
    for k, v in keys.items():
        _put(c, k, v)
    survivor = min(n for n in c.agents if n != leader)
    url = c.agents[survivor].url
    wait_for("the survivor to hold every key", lambda: all(_get(url, k, stale=True) == v for k, v in keys.items()))
    dead = sorted(n for n in c.agents if n != survivor)
    for n in dead:
        c.kill9(n)
    t0 = time.monotonic()

    def explained() -> dict[str, Any] | None:
        st = _status(url)
        if st is None or st["quorum"] or not st["quorum_recovery"]:
            return None
        return st if st["quorum_recovery"]["decision"] == "wait" and st["quorum_recovery"]["missing"] else None

    st = wait_for("the survivor to explain the lost quorum", explained, timeout=RECOVERY_DEADLINE)
    problems = "\n".join(st["problems"])
    assert "no quorum" in problems and f"quorate recover --from {survivor}" in problems, problems
    assert st["quorum_recovery"]["missing"] == {n: "unknown" for n in dead}, st  # no oracle here
    assert st["epoch"] == 0

    endpoints = ",".join(a.url for a in c.agents.values())
    # Without --yes and without a terminal: refused, nothing changed.
    r = _cli("recover", "--from", survivor, "-e", endpoints)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--yes" in r.stdout + r.stderr
    st = _status(url)
    assert st is not None and st["epoch"] == 0 and sorted(st["voters"]) == ["n1", "n2", "n3"], st
    assert st["role"] != "leader"

    out = " ".join(_ok(_cli("recover", "--from", survivor, "--yes", "-e", endpoints)).split())
    assert "forced" in out and "epoch 1" in out, out
    for n in dead:  # the operator was told the provider could not confirm these deaths
        assert f"remove: {n} (the provider says unknown)" in out and "split brain" in out, out
    took = _first_write(url, "m/after", t0, "a write accepted after quorate recover")
    _report(f"manual recover (ProcCluster, 2 of 3 killed): kill -9 -> first acknowledged write {took:.1f} s "
            "(includes the test's own checks before running quorate recover)")
    st = _status(url)
    assert st is not None and st["epoch"] == 1 and st["voters"] == [survivor] and st["role"] == "leader", st
    assert {k: _get(url, k) for k in keys} == keys
    record = wait_for("the recovery recorded in the store", lambda: _epoch_record(url, 1))
    assert record["removed"] == dead and record["voters"] == [survivor] and record["manual"] is True, record
    term = st["term"]

    # One of the removed members comes back with its old data (epoch 0):
    # the survivor's transport refuses it, and the survivor keeps leading.
    back = dead[0]
    c.start(back)
    wait_for(f"{back} refused as of a stale epoch",
             lambda: "stale_epoch" in _log(c.agents[back].log_path), timeout=RECOVERY_DEADLINE)
    assert "stale_epoch" in _log(c.agents[survivor].log_path)
    # Until its own watchdog has looked (grace: 5 election timeouts), then some rounds.
    wait_for(f"{back}'s watchdog to have looked",
             lambda: (s := _status(c.agents[back].url)) is not None and s["quorum_recovery"] is not None,
             timeout=RECOVERY_DEADLINE)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        st = _status(url)
        assert st is not None and st["role"] == "leader" and st["term"] == term, st
        assert st["epoch"] == 1 and st["voters"] == [survivor], st
        time.sleep(0.25)
    bst = _status(c.agents[back].url)
    assert bst is not None and bst["epoch"] == 0 and bst["role"] != "leader", bst
    assert "FORCED" not in _log(c.agents[back].log_path)
    assert _put_ok(url, "m/after-stale", "ok")
    assert _status(url)["term"] == term  # type: ignore[index]


def test_offline_recover_on_a_stopped_node(make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(3)
    c.start_all()
    c.leader()
    keys = {f"off/{i}": f"v{i}" for i in range(10)}
    for k, v in keys.items():
        _put(c, k, v)
    n1 = c.agents["n1"]
    wait_for("n1 to hold every key", lambda: all(_get(n1.url, k, stale=True) == v for k, v in keys.items()))

    # Refused while the agent holds the directory; nothing changes.
    r = _cli("recover", "--data-dir", n1.data_dir, "--id", "n1", "--yes")
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "in use by another process" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert "forced" not in r.stdout
    c.leader()
    st = c.status("n1")
    assert st["epoch"] == 0 and sorted(st["voters"]) == ["n1", "n2", "n3"], st

    for node in c.live():
        assert c.terminate(node) == 0, f"{node} did not stop cleanly"
    out = _ok(_cli("recover", "--data-dir", n1.data_dir, "--id", "n1", "--yes"))
    assert "forced" in out and "epoch 1" in out, out

    c.start("n1")
    assert c.leader(among=["n1"]) == "n1"
    st = c.status("n1")
    assert st["epoch"] == 1 and st["voters"] == ["n1"], st
    assert {k: _get(n1.url, k) for k in keys} == keys
    assert _put_ok(n1.url, "off/after", "ok")


def test_offline_recover_on_a_missing_data_dir_changes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nodes" / "n1" / "data"  # e.g. a typo, or the wrong node's path
    r = _cli("recover", "--data-dir", missing, "--id", "n1", "--yes")
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "forced" not in r.stdout
    assert not missing.exists(), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    message = " ".join((r.stdout + r.stderr).split())
    assert "there is no quorate store" in message and "nothing was changed" in message, message
