"""Electorate hygiene on real processes (DESIGN.md S4, seed 004 Habitat;
src/quorate/manager/electorate.py).

- The Habitat table replayed on agents started by hand: members die
  (kill -9) and are added (--join) in the table's order; a leader and a
  write at every row where the live voters are a majority; a failed voter
  removed through consensus before its replacement is added; the last row
  (4 of 5 voters lost) answered by the quorum advice and `quorate recover
  --remove`.
- An operator's removal: refused for a live member or a leave that breaks
  the quorum, allowed for a dead one, forced with --force.
- A leader leaving (`quorate members leave`), and --leave-on-terminate.
- The dead-member clean-up: one failed voter per cycle, never below
  --min-voters, a replacement making room.
- The quorum advice of a 5-voter cluster with 3 voters dead.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from .harness import ProcCluster, http, wait_for
from .localup import ok as _ok
from .localup import quorate

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 60.0
DEADLINE = 60.0  # every wait polls; this is only how long before giving up
ADVICE = re.compile(r"quorate recover --from (\S+) --remove (\S+)")


# -- helpers ----------------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return quorate(*args, timeout=CLI_TIMEOUT)


def _status(c: ProcCluster, node: str) -> dict[str, Any] | None:
    try:
        r = http("GET", c.agents[node].url + "/v1/status", timeout=3.0)
    except OSError:
        return None
    return r.body if r.status == 200 else None  # type: ignore[no-any-return]


def _members(c: ProcCluster, node: str) -> dict[str, dict[str, Any]]:
    r = http("GET", c.agents[node].url + "/v1/members", timeout=5.0)
    assert r.status == 200, r
    return {m["id"]: m for m in r.body}


def _voters(c: ProcCluster, node: str) -> set[str]:
    st = _status(c, node)
    assert st is not None, f"{node} does not answer"
    return set(st["voters"])


def _urls(c: ProcCluster, nodes: Iterable[str] | None = None) -> str:
    return ",".join(c.agents[n].url for n in (c.live() if nodes is None else nodes))


def _write(c: ProcCluster, key: str, nodes: list[str] | None = None, timeout: float = DEADLINE) -> None:
    """A write acknowledged through one of ``nodes`` (default: the live ones)."""

    def attempt() -> bool:
        for n in nodes or c.live():
            try:
                if c.put(n, key, key).status == 200:
                    return True
            except OSError:
                continue
        return False

    wait_for(f"an acknowledged write of {key}", attempt, timeout)


def _lead(c: ProcCluster, among: list[str]) -> str:
    """The leader the live ``among`` agree on, a write having gone through it."""
    lead = c.leader(among, timeout=DEADLINE)
    _write(c, f"lead/{lead}/{time.monotonic_ns()}", [lead])
    return lead


def _transfer(c: ProcCluster, among: list[str], target: str) -> str:
    """Move leadership to ``target`` (the table names who leads)."""

    def moved() -> bool:
        lead = c.leader(among, timeout=DEADLINE)
        if lead == target:
            return True
        http("POST", c.agents[lead].url + "/v1/leader/transfer", {"target": target}, timeout=5.0)
        return False

    wait_for(f"leadership moved to {target}", moved, DEADLINE, every=0.5)
    return c.leader(among, timeout=DEADLINE)


def _health(c: ProcCluster, leader: str, member: str) -> str | None:
    m = _members(c, leader).get(member)
    return None if m is None else str(m["health"])


def _wait_health(c: ProcCluster, leader: str, member: str, want: set[str], timeout: float = DEADLINE) -> None:
    wait_for(f"{leader} to see {member} as {want}", lambda: _health(c, leader, member) in want, timeout)


def _reconcile_cycles(c: ProcCluster, node: str) -> float:
    r = http("GET", c.agents[node].url + "/metrics", timeout=5.0)
    m = re.search(r"^quorate_reconcile_cycles_total (\S+)$", str(r.body), re.M)
    return float(m.group(1)) if m else 0.0


def _log(c: ProcCluster, node: str) -> str:
    p = c.agents[node].log_path
    return p.read_text(errors="replace") if p.exists() else ""


def _logs(c: ProcCluster, nodes: Iterable[str]) -> str:
    return "".join(_log(c, n) for n in nodes)


def _join(c: ProcCluster, *new: str, via: list[str], failed: set[str], voters_after: set[str],
          extra: list[str] | None = None) -> None:
    """Start the ``new`` agents at once with --join and wait until they are
    voters. All along, the leader's configuration never holds a voter in
    ``failed`` once a newcomer is in it (the dead go first), and never more
    voters than ``voters_after`` has (the electorate does not inflate)."""
    for n in new:
        c.add_agent(n).extra += extra or []
    for n in new:
        c.start(n, join=_urls(c, via))
    seen: list[tuple[list[str], list[str]]] = []

    def voters() -> bool:
        for n in via:
            st = _status(c, n)
            if st is None or st["role"] != "leader":
                continue
            v, learners = set(st["voters"]), set(st["learners"])
            if not seen or seen[-1] != (sorted(v), sorted(learners)):
                seen.append((sorted(v), sorted(learners)))
            if set(new) & (v | learners):
                assert not v & failed, f"{new} added next to failed voters {v & failed}: {seen}"
            assert len(v) <= len(voters_after), f"the electorate grew past {len(voters_after)}: {seen}"
            return v == voters_after and not learners
        return False

    wait_for(f"{new} voters, the voters being {sorted(voters_after)}", voters, DEADLINE, every=0.02)


def _advice(st: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The `quorate recover --from X --remove A,B` the status advises, if any."""
    for p in st["problems"]:
        if p.startswith("removing ") and (m := ADVICE.search(p)):
            return m.group(1), m.group(2).split(",")
    return None


def _wait_advice(c: ProcCluster, node: str, settled: Callable[[list[str]], bool] = lambda remove: True,
                 ) -> tuple[dict[str, Any], tuple[str, list[str]]]:
    """Until ``node`` has no leader and its status advises removals that
    ``settled`` accepts. (Right after the leader is lost, a member heard
    from less than an election timeout ago still counts as alive, so the
    first advice may name fewer members than the view settles on.)"""
    seen: list[list[str]] = []

    def advised() -> tuple[dict[str, Any], tuple[str, list[str]]] | None:
        st = _status(c, node)
        if st is None or st["quorum"] or st["leader"] is not None:
            return None
        a = _advice(st)
        if a is None:
            return None
        if not seen or seen[-1] != a[1]:
            seen.append(a[1])
        return (st, a) if settled(a[1]) else None

    try:
        return wait_for(f"{node}'s status to advise which members to remove", advised, DEADLINE)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; advice seen: {seen}") from None


# -- S4: the Habitat table --------------------------------------------------------------------


def test_habitat_table_replayed(make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(3, extra=["--dead-member-timeout", "3s", "--min-voters", "3"])
    c.start_all()
    failed: set[str] = set()

    # 1 2 3 alive, 3 leads.
    _transfer(c, ["n1", "n2", "n3"], "n3")
    _write(c, "habitat/row1")

    # 3 goes down: 1 and 2 elect a leader and keep writing.
    c.kill9("n3")
    failed.add("n3")
    live = ["n1", "n2"]
    lead = _lead(c, live)
    _write(c, "habitat/row2")
    # Past the dead-member timeout the leader calls it failed, yet keeps it
    # as a voter: 3 voters is the minimum and no replacement waits.
    _wait_health(c, lead, "n3", {"failed"})
    cycles = _reconcile_cycles(c, lead)
    wait_for("two more reconcile cycles", lambda: _reconcile_cycles(c, lead) >= cycles + 2, DEADLINE)
    assert _voters(c, lead) == {"n1", "n2", "n3"}

    # 4 is launched to replace 3: 3 leaves the electorate first (1 2 4, never 1 2 3 4).
    _join(c, "n4", via=live, failed=failed, voters_after={"n1", "n2", "n4"})
    live.append("n4")
    lead = _lead(c, live)
    assert "removing failed voter n3 before n4 joins" in _logs(c, live)
    _wait_health(c, lead, "n3", {"departed"})
    _write(c, "habitat/row3")

    # 2, leading, goes down: Habitat hung here (2 alive of an electorate of
    # 4); here 1 and 4 are 2 of 3 voters and elect a leader.
    _transfer(c, live, "n2")
    c.kill9("n2")
    failed.add("n2")
    live.remove("n2")
    lead = _lead(c, live)
    _write(c, "habitat/row4")
    st = _status(c, lead)
    assert st is not None and sorted(st["voters"]) == ["n1", "n2", "n4"], st  # 2 still counts, 3 does not
    assert st["quorum"] and not any(p.startswith("removing ") for p in st["problems"]), st
    _wait_health(c, lead, "n2", {"failed"})

    # 5 6 7 are launched together: 2 goes before the first of them comes
    # in; 5 voters, all alive.
    _join(c, "n5", "n6", "n7", via=live, failed=failed, voters_after={"n1", "n4", "n5", "n6", "n7"})
    live += ["n5", "n6", "n7"]
    assert re.search(r"removing failed voter n2 before n[567] joins", _logs(c, live))
    _transfer(c, live, "n1")
    _write(c, "habitat/row5")

    # 4 of the 5 go down (1, leading, among them); 7 alone has no quorum.
    for n in ["n4", "n5", "n6", "n1"]:
        c.kill9(n)
        failed.add(n)
    live = ["n7"]
    st, (src, remove) = _wait_advice(c, "n7", lambda remove: len(remove) == 4)
    assert src == "n7" and sorted(remove) == ["n1", "n4", "n5", "n6"], st
    assert sorted(st["voters"]) == ["n1", "n4", "n5", "n6", "n7"], st
    advice = next(p for p in st["problems"] if p.startswith("removing "))
    assert "would restore a quorum of the 1 remaining voters" in advice, advice
    r = c.put("n7", "habitat/no-quorum", "x")
    assert r.status == 503 and r.body["error"] == "no_leader", r

    # The operator follows the advice...
    out = _ok(_cli("recover", "--from", "n7", "--remove", ",".join(remove), "--yes", "-e", _urls(c, c.agents)))
    assert "forced" in out, out
    c.leader(["n7"], timeout=DEADLINE)
    _write(c, "habitat/recovered", ["n7"])
    assert _voters(c, "n7") == {"n7"}

    # ... and adds 4 more, who join a cluster of live voters only.
    new = ["n8", "n9", "n10", "n11"]
    _join(c, *new, via=live, failed=failed, voters_after={"n7", *new})
    live += new
    lead = _lead(c, live)
    assert _voters(c, lead) == {"n7", "n8", "n9", "n10", "n11"}
    _write(c, "habitat/row7")
    for key in ["habitat/row1", "habitat/row4", "habitat/row5", "habitat/recovered", "habitat/row7"]:
        r = c.get(lead, key)
        assert r.status == 200 and r.body["value"] == key, (key, r)


# -- an operator's removal ----------------------------------------------------------------------


def test_removal_refused_for_live_members_allowed_for_dead_ones_forced_with_force(
        make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(5)
    c.start_all()
    lead = c.leader()
    followers = sorted(n for n in c.agents if n != lead)
    x, y, d1, d2 = followers
    for n in (d1, d2):
        c.kill9(n)
    for n in (d1, d2):
        _wait_health(c, lead, n, {"suspect", "failed"})
    lead = _lead(c, [lead, x, y])

    # A live member: refused, named, through any node (a follower forwards).
    r = http("DELETE", f"{c.agents[lead].url}/v1/members/{x}")
    assert r.status == 409 and r.body["message"].startswith(f"{x} is alive"), r
    res = _cli("members", "remove", x, "-e", c.agents[y].url)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert f"{x} is alive" in " ".join(res.stderr.split()), res.stderr
    # A live member leaving while 2 of 5 are down would leave 2 live of 4: refused, with the numbers.
    r = http("DELETE", f"{c.agents[y].url}/v1/members/{x}?reason=leave")
    assert r.status == 409, r
    assert f"removing {x} leaves 4 voters of which 2 are alive, below the 3 a quorum needs" in r.body["message"], r
    # The leader itself, even forced: it must hand over first.
    r = http("DELETE", f"{c.agents[x].url}/v1/members/{lead}?force=true")
    assert r.status == 409 and "leads" in r.body["message"], r
    assert _voters(c, lead) == set(c.agents)

    # A dead voter whose removal keeps the quorum: allowed.
    out = _ok(_cli("members", "remove", d1, "-e", c.agents[x].url))
    assert f"{d1} removed" in out, out
    wait_for(f"{d1} out of the voters", lambda: _voters(c, lead) == {lead, x, y, d2}, DEADLINE)
    _wait_health(c, lead, d1, {"departed"})

    # --force removes a live member.
    out = _ok(_cli("members", "remove", x, "--force", "-e", c.agents[y].url))
    assert f"{x} removed (forced)" in out, out
    wait_for(f"{x} out of the voters", lambda: _voters(c, lead) == {lead, y, d2}, DEADLINE)
    assert f"removed member {x} (forced)" in _logs(c, [lead, y])
    _write(c, "after-forced-removal", [lead, y])


# -- leaving --------------------------------------------------------------------------------


def test_leader_leaves_then_leave_on_terminate(make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(3)
    c.start_all()
    old = c.leader()
    _write(c, "before-leave")

    out = _ok(_cli("members", "leave", "-e", c.agents[old].url))
    assert f"{old} left the cluster" in out, out
    assert c.agents[old].proc is not None and c.agents[old].proc.wait(timeout=DEADLINE) == 0
    rest = sorted(n for n in c.agents if n != old)
    lead = _lead(c, rest)
    assert lead != old and _voters(c, lead) == set(rest)
    assert "handed leadership to" in _log(c, old) and "left the cluster" in _log(c, old)
    _wait_health(c, lead, old, {"departed"})
    assert _members(c, lead)[old]["role"] == "voter"  # the role it had; health says departed
    _write(c, "after-leave", rest)

    # n4, leading, leaves on SIGTERM; n5, started without the flag, stays a member.
    _join(c, "n4", via=rest, failed=set(), voters_after={*rest, "n4"}, extra=["--leave-on-terminate"])
    _join(c, "n5", via=rest, failed=set(), voters_after={*rest, "n4", "n5"})
    _transfer(c, [*rest, "n4", "n5"], "n4")
    assert c.terminate("n4") == 0
    lead = _lead(c, [*rest, "n5"])
    assert _voters(c, lead) == {*rest, "n5"}
    _wait_health(c, lead, "n4", {"departed"})
    assert "handed leadership to" in _log(c, "n4") and "left the cluster" in _log(c, "n4")
    assert c.terminate("n5") == 0
    assert "left the cluster" not in _log(c, "n5")
    lead = _lead(c, rest)
    _wait_health(c, lead, "n5", {"suspect"})
    assert _voters(c, lead) == {*rest, "n5"}
    _write(c, "after-terminate", rest)


# -- the dead-member clean-up ------------------------------------------------------------------


def test_dead_members_cleaned_up_one_per_cycle_never_below_min_voters(
        make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(5, extra=["--dead-member-timeout", "2s", "--min-voters", "3"])
    c.start_all()
    lead = c.leader()
    followers = sorted(n for n in c.agents if n != lead)
    first, second = followers[-1], followers[-2]
    c.kill9(first)
    _wait_health(c, lead, first, {"suspect", "failed"})
    time.sleep(0.5)  # so that first is down measurably longer than second
    c.kill9(second)
    live = [n for n in c.agents if n not in (first, second)]
    wait_for("both failed voters removed", lambda: _voters(c, lead) == set(live), DEADLINE)
    for n in (first, second):
        assert f"removing failed member {n}" in _logs(c, live)
    # The longest down went first (the committed order, in any member's log).
    log = _log(c, live[0])
    assert log.index(f"membership remove {first} ") < log.index(f"membership remove {second} "), log
    # (the configuration changes on commit, the member directory on apply: poll)
    _wait_health(c, lead, first, {"departed"})
    _wait_health(c, lead, second, {"departed"})
    _write(c, "after-cleanup", live)

    # 3 voters, minimum 3: the third failed voter stays.
    third = sorted(n for n in live if n != lead)[-1]
    c.kill9(third)
    live.remove(third)
    lead = c.leader(live, timeout=DEADLINE)
    _wait_health(c, lead, third, {"failed"})
    cycles = _reconcile_cycles(c, lead)
    wait_for(f"three more reconcile cycles on {lead}", lambda: _reconcile_cycles(c, lead) >= cycles + 3, DEADLINE)
    assert _voters(c, lead) == {*live, third}
    assert _health(c, lead, third) == "failed"
    _write(c, "at-min-voters", live)

    # A replacement joining makes room: the failed voter goes first.
    _join(c, "n6", via=live, failed={third}, voters_after={*live, "n6"})
    assert f"removing failed voter {third} before n6 joins" in _logs(c, live)
    _write(c, "replaced", [*live, "n6"])


# -- the quorum advice ---------------------------------------------------------------------------


def _kill_in_turn(c: ProcCluster, leader: str, victims: list[str]) -> None:
    """kill -9 each in turn, the leader having seen each go before the next
    (so the first is down measurably longest)."""
    for i, n in enumerate(victims):
        c.kill9(n)
        if i < len(victims) - 1:
            _wait_health(c, leader, n, {"suspect", "failed"})
            time.sleep(0.5)


def test_five_voters_three_dead_every_survivor_gives_the_same_advice(
        make_cluster: Callable[..., ProcCluster]) -> None:
    """5 voters, 3 dead: each survivor names the same 2 members (the
    fewest whose removal gives the 2 live voters a majority) and the same
    command, from its last probe round; so an operator reading either
    status runs the same thing."""
    c = make_cluster(5)
    c.start_all()
    lead = c.leader()
    followers = sorted(n for n in c.agents if n != lead)
    survivor = followers[0]
    dead = list(reversed(followers[1:]))  # killed in this order, not in id order
    _kill_in_turn(c, lead, dead)
    st, (src, remove) = _wait_advice(c, lead)
    assert len(remove) == 2 and set(remove) <= set(dead) and src in (lead, survivor), st["problems"]
    advice = next(p for p in st["problems"] if p.startswith("removing "))
    assert advice == (f"removing {', '.join(remove)} (not answering) would restore a quorum of the 3 remaining "
                      f"voters; if they are gone for good run: quorate recover --from {src} --remove "
                      f"{','.join(remove)}"), advice
    st2, other = _wait_advice(c, survivor)
    assert other == (src, remove), (st["problems"], st2["problems"])
    # Nobody leads meanwhile, and nothing was removed by itself.
    for node in (lead, survivor):
        st = _status(c, node)
        assert st is not None and st["leader"] is None and len(st["voters"]) == 5, st


def test_a_leave_that_would_break_the_quorum_is_refused_with_the_reason(
        make_cluster: Callable[..., ProcCluster]) -> None:
    c = make_cluster(3)
    c.start_all()
    lead = c.leader()
    leaver, dead = sorted(n for n in c.agents if n != lead)
    c.kill9(dead)
    _wait_health(c, lead, dead, {"suspect", "failed"})
    res = _cli("members", "leave", "-e", c.agents[leaver].url)
    # Refused, and nothing changed: it is still a running voter.
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert c.agents[leaver].alive() and _voters(c, lead) == set(c.agents)
    assert (f"removing {leaver} leaves 2 voters of which 1 are alive, below the 2 a quorum needs"
            in " ".join(res.stderr.split())), res.stderr
