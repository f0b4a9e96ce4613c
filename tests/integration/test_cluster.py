"""A real quorate cluster: agent processes on 127.0.0.1, kill -9, SIGSTOP,
restarts, membership changes, corrupt WALs and bad input."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from .harness import ProcCluster, http, wait_for

pytestmark = pytest.mark.integration


def _up(make_cluster, n: int = 3, **kw) -> ProcCluster:  # type: ignore[no-untyped-def]
    c = make_cluster(n, **kw)
    c.start_all()
    c.leader()
    return c


def _put_anywhere(c: ProcCluster, key: str, value: str, timeout: float = 30.0) -> int:
    """Retry a write on every live node until one acknowledges it."""

    def attempt() -> int | None:
        for i in c.live():
            try:
                r = c.put(i, key, value)
            except OSError:
                continue
            if r.status == 200:
                return int(r.body["revision"])
        return None

    return wait_for(f"an acknowledged write of {key}", attempt, timeout)


def test_write_and_read_through_every_node(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    for i, node in enumerate(c.agents):
        r = c.put(node, f"k/{node}", f"v{i}")
        assert r.status == 200, r
    for reader in c.agents:
        for i, node in enumerate(c.agents):
            r = c.get(reader, f"k/{node}")
            assert r.status == 200 and r.body["value"] == f"v{i}", (reader, node, r)
    st = c.status("n1")
    assert st["voters"] == ["n1", "n2", "n3"] and st["quorum"] is True and st["problems"] == []


def test_kill_leader_mid_load_keeps_every_acknowledged_write(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster, extra=["--snapshot-entries", "40"])
    acked: dict[str, str] = {}
    stop = threading.Event()

    def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            key, value = f"load/{w}/{n}", f"v{n}"
            for node in c.live():
                try:
                    r = c.put(node, key, value)
                except OSError:
                    continue
                if r.status == 200:
                    acked[key] = value
                    break
            n += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_for("some writes before the crash", lambda: len(acked) > 30)
    old = c.leader()
    c.kill9(old)
    survivors = [i for i in c.agents if i != old]
    new = c.leader(survivors)
    assert new != old
    before = len(acked)
    wait_for("writes acknowledged by the new leader", lambda: len(acked) > before + 30)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    # Restart the old leader: its log was compacted away meanwhile, so it
    # catches up through a snapshot.
    c.start(old)
    wait_for(f"{old} caught up", lambda: c.status(old)["applied_index"] >= c.status(new)["commit_index"])
    for key, value in acked.items():
        r = c.get(old, key)
        assert r.status == 200 and r.body["value"] == value, (key, r)
    assert "installed snapshot" in (c.agents[old].log_path.read_text())


def test_sigstop_leader_then_sigcont_rejoins_as_follower(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    old = c.leader()
    c.signal(old, signal.SIGSTOP)
    others = [i for i in c.agents if i != old]
    new = c.leader(others)
    assert new != old
    _put_anywhere(c, "during-pause", "x")
    c.signal(old, signal.SIGCONT)
    wait_for(f"{old} follows {new}", lambda: c.status(old)["leader"] == new and c.status(old)["role"] == "follower")
    r = c.get(old, "during-pause")
    assert r.status == 200 and r.body["value"] == "x"


def test_join_learner_promote_then_remove(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    _put_anywhere(c, "before-join", "1")
    a = c.add_agent("n4")
    c.start("n4", join=c.agents["n1"].url)
    wait_for("n4 promoted to voter", lambda: "n4" in c.status("n1")["voters"])
    wait_for("n4 serves the data", lambda: c.get("n4", "before-join").status == 200)
    members = http("GET", c.agents["n2"].url + "/v1/members").body
    assert {m["id"] for m in members} == {"n1", "n2", "n3", "n4"}
    assert next(m for m in members if m["id"] == "n4")["api_addr"] == f"127.0.0.1:{a.api_port}"
    r = http("DELETE", c.agents["n2"].url + "/v1/members/n4")
    assert r.status == 409 and "n4 is alive" in r.body["message"], r  # a live member: refused (S4)
    r = http("DELETE", c.agents["n2"].url + "/v1/members/n4?force=true")
    assert r.status == 200, r
    wait_for("n4 removed", lambda: c.status("n1")["voters"] == ["n1", "n2", "n3"])
    _put_anywhere(c, "after-remove", "2")


def test_writes_without_quorum_fail_fast_with_503(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster, extra=["--request-timeout", "2"])
    lead = c.leader()
    for i in [x for x in c.agents if x != lead]:
        c.kill9(i)
    t0 = time.monotonic()
    r = c.put(lead, "no-quorum", "x")
    assert r.status == 503 and r.body["error"] in ("timeout", "no_leader"), r
    assert time.monotonic() - t0 < 20  # answered, not hung (generous bound)
    st = wait_for("the lone node to report lost quorum", lambda: (s := c.status(lead))["quorum"] is False and s)
    assert st["problems"], st


def test_bad_api_input_is_refused_with_json_errors(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    url = c.agents["n1"].url
    cases = [
        ("PUT", "/v1/kv/a", b"{not json", 400),
        ("PUT", "/v1/kv/a", b'{"value": "x", "bogus": 1}', 400),
        ("PUT", "/v1/kv/a", b'{"value": 5}', 400),
        ("PUT", "/v1/kv/a", b'{"value": "x", "prev_revision": -1}', 400),
        ("PUT", "/v1/kv/a", b'{"value": "' + b"x" * (1 << 20) + b'x"}', 400),
        ("GET", "/v1/kv/never-written", None, 404),
        ("POST", "/v1/kv/a", b"{}", 405),
        ("GET", "/v1/nothing-here", None, 404),
        ("GET", "/v1/kv/a?consistency=weird", None, 400),
        ("DELETE", "/v1/kv/a?prev_revision=abc", None, 400),
    ]
    for method, path, raw, status in cases:
        r = http(method, url + path, raw=raw)
        assert r.status == status, (method, path, r)
        assert isinstance(r.body, dict) and "error" in r.body and "message" in r.body, (path, r)
    big = http("PUT", url + "/v1/kv/a", raw=b'{"value": "' + b"x" * (3 << 20) + b'"}')
    assert big.status == 413 and big.body["error"] == "too_large"
    listing = http("GET", url + "/v1/kv?prefix=").body
    assert listing["kvs"] == [], "bad input changed the store (or a listing showed reserved keys)"
    wait_for("every member to register its addresses",
             lambda: len(http("GET", url + "/v1/kv?prefix=_quorate/members/").body["kvs"]) == 3)


def test_cas_semantics_over_http(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    r1 = c.put("n2", "cas", "a", prev_revision=0)
    assert r1.status == 200
    again = c.put("n3", "cas", "b", prev_revision=0)
    assert again.status == 409 and again.body["current_revision"] == r1.body["revision"]
    ok = c.put("n1", "cas", "b", prev_revision=r1.body["revision"])
    assert ok.status == 200
    d = http("DELETE", f"{c.agents['n3'].url}/v1/kv/cas?prev_revision={r1.body['revision']}")
    assert d.status == 409
    d = http("DELETE", f"{c.agents['n3'].url}/v1/kv/cas")
    assert d.status == 200
    assert c.get("n1", "cas").status == 404


def _segments(c: ProcCluster, node: str) -> list:  # type: ignore[type-arg]
    return sorted((c.agents[node].data_dir / "raft" / "wal").glob("*"))


def test_corrupt_wal_tail_is_truncated_and_middle_refused(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    for k in range(20):
        _put_anywhere(c, f"w{k}", "v")
    victim = [i for i in c.agents if i != c.leader()][0]
    c.terminate(victim)
    seg = _segments(c, victim)[-1]
    data = seg.read_bytes()
    seg.write_bytes(data + b"\x00\x00\x01\x00garbage-torn-tail")
    c.start(victim)
    wait_for(f"{victim} back in the cluster", lambda: c.status(victim)["leader"] is not None)
    assert "torn" in c.agents[victim].log_path.read_text().lower() or "truncat" in \
        c.agents[victim].log_path.read_text().lower()
    c.terminate(victim)
    seg = _segments(c, victim)[-1]
    data = bytearray(seg.read_bytes())
    data[40] ^= 0xFF  # inside an early record, with valid records after it
    seg.write_bytes(bytes(data))
    a = c.start(victim)
    code = a.proc.wait(timeout=30)  # type: ignore[union-attr]
    assert code != 0
    text = a.log_path.read_text()
    assert "corrupt" in text.lower() and seg.name in text


def test_peer_with_wrong_token_or_cluster_is_refused(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster, extra=["--peer-token", "s3cret", "--cluster-id", "prod"])
    term_before = c.status("n1")["term"]
    for flags in (["--peer-token", "wrong", "--cluster-id", "prod"], ["--peer-token", "s3cret", "--cluster-id", "other"]):
        rogue = make_cluster(1, extra=flags)
        a = rogue.agents["n1"]
        # The rogue claims to be a member of a cluster made of itself and our n2.
        rogue.bootstrap = f"n1={a.peer_addr},n2={c.agents['n2'].peer_addr}"
        rogue.start("n1")
        wait_for("the refusal to be logged",
                 lambda: "refus" in c.agents["n2"].log_path.read_text().lower())
        rogue.stop_all()
    _put_anywhere(c, "still-fine", "1")
    st = c.status("n1")
    assert st["voters"] == ["n1", "n2", "n3"] and st["term"] == term_before


def test_sigterm_on_leader_hands_over_and_exits_zero(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    old = c.leader()
    _put_anywhere(c, "before-term", "1")
    assert c.terminate(old) == 0
    log = c.agents[old].log_path.read_text()
    assert "handed leadership to" in log, log[-2000:]
    new = c.leader([i for i in c.agents if i != old])
    r = c.get(new, "before-term")
    assert r.status == 200 and r.body["value"] == "1"


def test_mutual_tls_for_peers_and_api(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl
    import urllib.error

    from quorate.testing.pki import write_pki

    pki = write_pki(tmp_path, "ca", ["n1", "n2", "n3", "client"])
    c = make_cluster(3)
    for node_id, a in c.agents.items():
        cert, key = pki.certs[node_id]
        a.extra += ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(pki.ca)]
    c.start_all()
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.check_hostname = False
    ctx.load_cert_chain(*map(str, pki.certs["client"]))

    def https(method: str, node: str, path: str, body: object = None):  # type: ignore[no-untyped-def]
        import json
        import urllib.request

        req = urllib.request.Request(f"https://127.0.0.1:{c.agents[node].api_port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    lead = wait_for("a leader over TLS", lambda: https("GET", "n1", "/v1/status")[1]["leader"])
    follower = next(i for i in c.agents if i != lead)
    status, body = wait_for("a write through a follower over TLS",
                            lambda: (r := https("PUT", follower, "/v1/kv/secure", {"value": "s"}))[0] == 200 and r)
    assert https("GET", lead, "/v1/kv/secure")[1]["value"] == "s"
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        http("GET", c.agents["n1"].url + "/v1/status", timeout=5)  # plaintext to the TLS API
