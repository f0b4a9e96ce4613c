"""progress.py: Inflights against a plain list, and Progress transitions
keep ``match < next`` whatever responses arrive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.raft import Snapshot, SnapshotMeta
from quorate.raft.progress import Inflights, Progress, ProgressState

SETTINGS = settings(max_examples=200, deadline=None)

inflight_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 5)),       # index grows by this step
    st.tuples(st.just("free"), st.integers(-2, 40)),     # ack up to an absolute index
    st.tuples(st.just("free_first"), st.just(0)),        # a heartbeat unblocks a full window
    st.tuples(st.just("reset"), st.just(0)),
), max_size=60)


@SETTINGS
@given(capacity=st.integers(1, 8), ops=inflight_ops)
def test_inflights_behave_like_a_list(capacity: int, ops: list[tuple[str, int]]) -> None:
    infl, model, last = Inflights(capacity), [], 0
    for op, arg in ops:
        if op == "add":
            if len(model) >= capacity:  # callers never add to a full window
                continue
            last += arg
            infl.add(last)
            model.append(last)
        elif op == "free":
            infl.free_le(arg)
            model = [x for x in model if x > arg]
        elif op == "free_first":
            infl.free_first()
            model = model[1:]
        else:
            infl.reset()
            model = []
        assert len(infl) == len(model)
        assert infl.full() == (len(model) >= capacity)


progress_ops = st.lists(st.one_of(
    st.tuples(st.just("ack"), st.integers(0, 30)),
    st.tuples(st.just("reject"), st.tuples(st.integers(-1, 3), st.integers(0, 30))),
    st.tuples(st.just("send"), st.integers(0, 5)),
    st.tuples(st.just("probe"), st.just(0)),
    st.tuples(st.just("replicate"), st.just(0)),
    st.tuples(st.just("snapshot"), st.integers(0, 30)),
), max_size=50)


def _apply(pr: Progress, op: str, arg: object) -> None:
    if op == "ack":
        pr.maybe_update(arg)  # type: ignore[arg-type]
    elif op == "reject":
        delta, hint = arg  # type: ignore[misc]
        # A rejection names the prev index of an append we sent (next - 1),
        # or a stale one a little off it.
        before = (pr.next, pr.match)
        changed = pr.maybe_decr_to(pr.next - 1 - delta, hint)
        if pr.state is ProgressState.PROBE and delta != 0:
            assert not changed and (pr.next, pr.match) == before
    elif op == "send" and pr.state is ProgressState.REPLICATE and not pr.is_paused():
        last = pr.next + arg - 1  # type: ignore[operator]
        if last >= pr.next:
            pr.optimistic_update(last)
            pr.inflights.add(last)
    elif op == "probe":
        pr.become_probe()
    elif op == "replicate":
        pr.become_replicate()
    elif op == "snapshot":
        pr.become_snapshot(Snapshot(SnapshotMeta(max(arg, pr.match), 1)))  # type: ignore[call-overload]


@SETTINGS
@given(start=st.integers(1, 20), ops=progress_ops)
def test_progress_keeps_match_below_next(start: int, ops: list[tuple[str, object]]) -> None:
    pr = Progress(start, max_inflight=3)
    for op, arg in ops:
        match_before = pr.match
        _apply(pr, op, arg)
        assert pr.match < pr.next, f"after {op}({arg}): {pr}"
        assert pr.match >= match_before, "match went backwards"
        if pr.state is ProgressState.SNAPSHOT:
            assert pr.is_paused()
        if pr.state is ProgressState.PROBE:
            assert pr.is_paused() == pr.probe_sent
