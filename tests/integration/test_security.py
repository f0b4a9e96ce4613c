"""Security of a running cluster of real agent processes (issue 9).

Each refusal is checked three ways: the caller is refused, the target
agent's log names the reason (matched by the caller's own port, so a line
from another connection cannot satisfy the wait), and the cluster carries on
untouched: same leader and term on every node, the same three members,
writes still acknowledged. Two clusters serve the whole module (starting
them is the slow part): a plaintext one with a peer token and an API token,
and one with mutual TLS on both ports as well. Tests that only knock on the
doors share them; the one that kills a node runs last.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quorate.client import AsyncClient, Client, QuorateClientError
from quorate.testing.pki import Pki, write_pki
from quorate.transport.errors import FrameError
from quorate.transport.framing import FrameDecoder, encode_frame
from quorate.transport.handshake import HELLO_MAX_FRAME, Accept, Hello, Refusal, RefusalReason, decode_answer

from .harness import DEADLINE, ProcCluster, wait_for

pytestmark = pytest.mark.integration

API_TOKEN = "api-token-9f1c2e"
PEER_TOKEN = "peer-token-4b7d05"
# Slower than the harness default: a refusal must not be confused with a
# spurious election on a loaded 2-core machine (the term is compared).
TIMING: dict[str, Any] = {"election_ms": 2000, "heartbeat_ms": 100}
IO_TIMEOUT = 10.0


# -- fixtures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    cluster: Pki  # signed the nodes' and the operator's certificates
    other: Pki  # a stranger's CA, same names


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("pki")
    return Certs(write_pki(d, "cluster-ca", ["n1", "n2", "n3", "operator"]), write_pki(d, "other-ca", ["operator"]))


def client_context(pki: Pki | None, ca: Path, leaf: str = "operator") -> ssl.SSLContext:
    """What an API client uses: the cluster CA, and a client certificate from ``pki``."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if pki is not None:
        ctx.load_cert_chain(*map(str, pki.certs[leaf]))
    return ctx


def _run(request: pytest.FixtureRequest, c: ProcCluster) -> Iterator[ProcCluster]:
    """Start ``c``, wait for a leader; stop it after the module, with its logs if a test failed."""
    failed_before = request.session.testsfailed
    try:
        c.start_all()
        c.leader(timeout=60.0)
        yield c
    finally:
        c.stop_all()
        if request.session.testsfailed > failed_before:
            print(c.logs())


@pytest.fixture(scope="module")
def plain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    """No TLS; a peer token and an API token."""
    c = ProcCluster(tmp_path_factory.mktemp("plain"), 3, api_token=API_TOKEN,
                    extra=["--peer-token", PEER_TOKEN, "--api-token", API_TOKEN], **TIMING)
    yield from _run(request, c)


@pytest.fixture(scope="module")
def secure(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           certs: Certs) -> Iterator[ProcCluster]:
    """Mutual TLS on the peer port and the API, a peer token and an API token."""
    pki = certs.cluster
    c = ProcCluster(
        tmp_path_factory.mktemp("secure"), 3, api_token=API_TOKEN, client_ssl=client_context(pki, pki.ca),
        extra=["--peer-token", PEER_TOKEN, "--api-token", API_TOKEN, "--tls-ca", str(pki.ca)],
        node_extra={n: ["--tls-cert", str(pki.certs[n][0]), "--tls-key", str(pki.certs[n][1])]
                    for n in ("n1", "n2", "n3")},
        **TIMING)
    yield from _run(request, c)


# -- "no effect on the cluster" ------------------------------------------------------------------


@dataclass(frozen=True)
class Before:
    leader: str
    term: int


def before(c: ProcCluster) -> Before:
    lead = c.leader()
    return Before(lead, c.status(lead)["term"])


def assert_unaffected(c: ProcCluster, was: Before, key: str) -> None:
    """Same leader and term everywhere, the same members, writes still acknowledged."""
    assert c.leader() == was.leader
    for node in c.agents:
        st = c.status(node)
        assert (st["leader"], st["term"]) == (was.leader, was.term), (node, st)
        assert st["voters"] == sorted(c.agents) and st["learners"] == [], (node, st)
    members = c.api("GET", was.leader, "/v1/members").body
    assert {m["id"] for m in members} == set(c.agents), members
    follower = next(n for n in c.agents if n != was.leader)
    r = c.put(follower, key, "still-writable")
    assert r.status == 200, r
    assert c.get(was.leader, key).body["value"] == "still-writable"


# -- raw clients -------------------------------------------------------------------------------


def api_request(c: ProcCluster, node: str, method: str, path: str, headers: dict[str, str],
                body: Any = None) -> tuple[int, int, Any]:
    """``(local port, status, JSON body)`` of one request over plain HTTP; the
    local port is how the node's log line is told apart from any other."""
    conn = http.client.HTTPConnection("127.0.0.1", c.agents[node].api_port, timeout=IO_TIMEOUT)
    try:
        conn.connect()
        assert conn.sock is not None
        port = conn.sock.getsockname()[1]
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={**headers, "Content-Type": "application/json"})
        resp = conn.getresponse()
        return port, resp.status, json.loads(resp.read())
    finally:
        conn.close()


def refused_https(c: ProcCluster, node: str, ctx: ssl.SSLContext | None) -> int:
    """A GET /v1/status with the right token that must fail (plain HTTP when
    ``ctx`` is None); returns the local port."""
    port = c.agents[node].api_port
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=IO_TIMEOUT, context=ctx) if ctx is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT))
    local = 0
    try:
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.connect()
            assert conn.sock is not None
            local = conn.sock.getsockname()[1]
            conn.request("GET", "/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
            conn.getresponse().read()
    finally:
        conn.close()
    assert local, "the TCP connection itself should have been accepted"
    return local


def peer_exchange(c: ProcCluster, node: str, data: bytes, ctx: ssl.SSLContext | None = None,
                  then: bytes = b"") -> tuple[int, list[Accept | Refusal], bool]:
    """Send ``data`` to ``node``'s peer port (through TLS with ``ctx``), then
    ``then`` once an answer came; read until the node closes. Returns the
    local port, the handshake answers received and whether the node closed."""
    raw = socket.create_connection(("127.0.0.1", c.agents[node].peer_port), timeout=IO_TIMEOUT)
    local = raw.getsockname()[1]
    sock: socket.socket = raw
    answers: list[Accept | Refusal] = []
    closed = False
    try:
        if ctx is not None:
            try:
                sock = ctx.wrap_socket(raw)
            except (OSError, ssl.SSLError):
                return local, answers, True  # refused during the handshake (TLS 1.2 style)
        decoder: FrameDecoder | None = FrameDecoder(HELLO_MAX_FRAME)
        try:
            sock.sendall(data)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                if decoder is None:
                    continue
                decoder.feed(chunk)
                try:
                    while (frame := decoder.next_frame()) is not None:
                        answers.append(decode_answer(frame))
                        if then:
                            sock.sendall(then)
                            then = b""
                except FrameError:
                    decoder = None  # not quorate frames (a TLS alert): keep reading until the close
        except (ConnectionError, ssl.SSLError):
            closed = True  # reset, or a TLS alert: refused either way
    finally:
        sock.close()
    return local, answers, closed


def log_count(c: ProcCluster, node: str, needle: str) -> int:
    return sum(needle in line for line in c.agents[node].log_text().splitlines())


def hello(cluster_id: str, token: str, node: str = "intruder") -> bytes:
    """A hello frame built with the project's own encoder: the test follows the wire format."""
    return encode_frame(Hello(cluster_id=cluster_id, node_id=node, token=token).encode())


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``quorate`` command line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("QUORATE_")}
    return subprocess.run([sys.executable, "-m", "quorate", *args], capture_output=True, text=True,
                          timeout=60, env={**base, **(env or {})}, check=False)


# -- 1. the API bearer token ----------------------------------------------------------------------


def test_api_token_refused_and_logged(plain: ProcCluster) -> None:
    """No token, a wrong token, a non-bearer header: 401 with a JSON error and
    a log line naming the caller and the cause (never the token); nothing
    written. The right token works; /v1/health stays open by design."""
    c = plain
    was = before(c)
    lead = was.leader
    for i, (headers, why) in enumerate([
        ({}, "no Authorization header"),
        ({"Authorization": "Bearer wrong-secret-123"}, "wrong bearer token"),
        ({"Authorization": f"Basic {API_TOKEN}"}, "not a bearer token"),
    ]):
        port, status, body = api_request(c, lead, "PUT", f"/v1/kv/sec/token{i}", headers, {"value": "x"})
        assert status == 401 and body["error"] == "unauthorized", body
        c.wait_log(lead, f"refused API request PUT /v1/kv/sec/token{i} from 127.0.0.1:{port}: unauthorized ({why})")
        assert c.get(lead, f"sec/token{i}").status == 404  # the refused write did nothing
    port, status, body = api_request(c, lead, "GET", "/v1/status", {"Authorization": "Bearer nope"})
    assert status == 401
    c.wait_log(lead, f"refused API request GET /v1/status from 127.0.0.1:{port}: unauthorized (wrong bearer token)")
    assert "wrong-secret-123" not in c.agents[lead].log_text() and API_TOKEN not in c.agents[lead].log_text()

    _, status, body = api_request(c, lead, "GET", "/v1/health", {})
    assert status == 200 and body["healthy"] is True
    _, status, _ = api_request(c, lead, "PUT", "/v1/kv/sec/token-ok", {"Authorization": f"Bearer {API_TOKEN}"},
                               {"value": "ok"})
    assert status == 200
    assert_unaffected(c, was, "sec/after-token")


# -- 2. mutual TLS on the API -------------------------------------------------------------------


def test_api_mtls_python_client(secure: ProcCluster, certs: Certs) -> None:
    """quorate's own clients (blocking and asyncio) reach a TLS API with a
    client certificate; writes through a follower are forwarded over TLS."""
    c = secure
    was = before(c)
    ctx = client_context(certs.cluster, certs.cluster.ca)
    urls = [a.url for a in c.agents.values()]
    assert all(u.startswith("https://") for u in urls)
    with Client(urls, token=API_TOKEN, ssl_context=ctx, discover=False) as client:
        assert client.status().leader == was.leader
        follower = next(n for n in c.agents if n != was.leader)
        rev = client.put("sec/py", "v1")
        assert rev > 0
        assert client.get("sec/py").value == "v1"
        assert Client(c.agents[follower].url, token=API_TOKEN, ssl_context=ctx).get("sec/py").value == "v1"

    async def through_aio() -> str:
        async with AsyncClient(urls, token=API_TOKEN, ssl_context=ctx, discover=False) as aio:
            await aio.put("sec/aio", "v2")
            return (await aio.get("sec/aio")).value

    assert asyncio.run(through_aio()) == "v2"
    assert_unaffected(c, was, "sec/after-py")


def test_api_mtls_cli(secure: ProcCluster, certs: Certs) -> None:
    """An operator uses a TLS cluster from the CLI: --tls-ca/--tls-cert/--tls-key
    or the QUORATE_TLS_* variables; without a client certificate the same
    command fails cleanly (exit 1)."""
    c = secure
    was = before(c)
    pki = certs.cluster
    cert, key = map(str, pki.certs["operator"])
    url = c.agents[was.leader].url
    tls = ["--tls-ca", str(pki.ca), "--tls-cert", cert, "--tls-key", key]
    put = cli("kv", "put", "sec/cli", "from-cli", "-e", url, "--token", API_TOKEN, *tls)
    assert put.returncode == 0, put.stderr
    env = {"QUORATE_ENDPOINT": url, "QUORATE_API_TOKEN": API_TOKEN, "QUORATE_TLS_CA": str(pki.ca),
           "QUORATE_TLS_CERT": cert, "QUORATE_TLS_KEY": key}
    got = cli("kv", "get", "sec/cli", "--json", env=env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["value"] == "from-cli"
    st = cli("status", "--json", env=env)
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["leader"] == was.leader

    seen = log_count(c, was.leader, "tls (no client certificate")
    no_cert = cli("status", "-e", url, "--token", API_TOKEN, "--tls-ca", str(pki.ca))
    assert no_cert.returncode == 1, (no_cert.stdout, no_cert.stderr)
    assert "error" in no_cert.stderr
    wait_for("the CLI's refusal in the log", lambda: log_count(c, was.leader, "tls (no client certificate") > seen)
    assert_unaffected(c, was, "sec/after-cli")


@pytest.mark.parametrize("caller, cause", [
    ("plaintext", "plaintext on the TLS port"),
    ("no-cert", "no client certificate"),
    ("other-ca", "client certificate not signed by the cluster CA"),
])
def test_api_mtls_refusals(secure: ProcCluster, certs: Certs, caller: str, cause: str) -> None:
    """Plain HTTP to the TLS API port, https without a client certificate and
    with one from another CA: refused before any request is read, each a
    WARNING with the caller's address and the cause."""
    c = secure
    was = before(c)
    ca = certs.cluster.ca
    ctx = {"plaintext": None, "no-cert": client_context(None, ca),
           "other-ca": client_context(certs.other, ca)}[caller]
    target = next(n for n in c.agents if n != was.leader)  # a follower: it must not disturb anyone either
    port = refused_https(c, target, ctx)
    line = c.wait_log(target, f"refused API connection from 127.0.0.1:{port}: tls ({cause}")
    assert "WARNING" in line
    assert_unaffected(c, was, f"sec/after-{caller}")


# -- 3. the peer port with mutual TLS ----------------------------------------------------------------


@pytest.mark.parametrize("caller", ["plaintext-hello", "garbage", "other-ca"])
def test_tls_peer_port_refusals(secure: ProcCluster, certs: Certs, caller: str) -> None:
    """On a TLS peer port, a plaintext hello (even with the right cluster id
    and token), random bytes, and TLS with a certificate from another CA are
    refused in the TLS handshake: closed, logged as ``tls``, no effect."""
    c = secure
    was = before(c)
    data = {"plaintext-hello": hello(c.cluster_id, PEER_TOKEN, node="n2"),
            "garbage": random.Random(9).randbytes(512),
            "other-ca": hello(c.cluster_id, PEER_TOKEN, node="n2")}[caller]
    ctx = None
    if caller == "other-ca":
        ctx = client_context(certs.other, certs.cluster.ca)
        ctx.check_hostname = False
    port, answers, closed = peer_exchange(c, was.leader, data, ctx)
    assert closed and not any(isinstance(a, Accept) for a in answers), answers
    line = c.wait_log(was.leader, f"refused connection from 127.0.0.1:{port}: tls (TLS handshake failed")
    assert "WARNING" in line
    assert_unaffected(c, was, f"sec/after-peer-{caller}")


# -- 4. hand-made frames on a plaintext peer port -------------------------------------------------------


GARBAGE_FRAME = encode_frame(b"\xc1" + random.Random(4).randbytes(63))  # 0xc1 is never msgpack
CASES = {
    "wrong-cluster": (lambda c: hello("some-other-cluster", PEER_TOKEN), RefusalReason.WRONG_CLUSTER),
    "wrong-token": (lambda c: hello(c.cluster_id, "not-the-peer-token"), RefusalReason.BAD_TOKEN),
    "oversize-header": (lambda c: struct.pack(">I", HELLO_MAX_FRAME + 1) + b"\0" * 64,
                        RefusalReason.OVERSIZE_FRAME),
    "garbage-frame": (lambda c: GARBAGE_FRAME, RefusalReason.GARBAGE),
    "random-bytes": (lambda c: b"\x7f" + random.Random(5).randbytes(255), RefusalReason.OVERSIZE_FRAME),
}


@pytest.mark.parametrize("case", list(CASES))
def test_peer_handshake_refusals(plain: ProcCluster, case: str) -> None:
    """A stranger's first frame: the node answers with the refusal reason,
    closes, logs one WARNING with the caller's address and the reason, and
    nothing else happens (the hello's node id never becomes a member)."""
    c = plain
    was = before(c)
    make, reason = CASES[case]
    port, answers, closed = peer_exchange(c, was.leader, make(c))
    assert closed
    assert answers and isinstance(answers[0], Refusal) and answers[0].reason is reason, answers
    line = c.wait_log(was.leader, f"refused connection from 127.0.0.1:{port}: {reason.value} (")
    assert "WARNING" in line and "not-the-peer-token" not in line and PEER_TOKEN not in line
    assert_unaffected(c, was, f"sec/after-{case}")


def test_peer_oversize_frame_after_handshake(plain: ProcCluster) -> None:
    """Even a caller that knows the cluster id and token cannot make a node
    buffer a giant frame: a length over the message-frame limit (64 MiB by
    default) closes the connection at once, with a WARNING."""
    c = plain
    was = before(c)
    port, answers, closed = peer_exchange(c, was.leader, hello(c.cluster_id, PEER_TOKEN),
                                          then=struct.pack(">I", 0xFFFFFFFF) + b"\0" * 64)
    assert closed and len(answers) == 1 and isinstance(answers[0], Accept), answers
    line = c.wait_log(was.leader, f"closing connection from intruder (127.0.0.1:{port}): bad frame")
    assert "WARNING" in line
    assert_unaffected(c, was, "sec/after-oversize-message")


# -- 5. everything on at once -------------------------------------------------------------------------


def test_secure_cluster_works_and_survives_kill9(secure: ProcCluster, certs: Certs) -> None:
    """mTLS + peer token + API token together: a leader, writes through every
    node, linearizable reads from every node, the API token still enforced
    over TLS; the leader killed with -9 gives way to a new one, and once
    restarted it rejoins and catches up. (Last in the module: it disturbs the
    shared cluster.)"""
    c = secure
    lead = c.leader()
    for i, node in enumerate(c.agents):
        assert c.put(node, f"sec/all/{i}", node).status == 200
    for node in c.agents:
        for i, writer in enumerate(c.agents):
            assert c.get(node, f"sec/all/{i}").body["value"] == writer

    no_token = Client(c.agents[lead].url, ssl_context=c.client_ssl, discover=False, max_attempts=1)
    with pytest.raises(QuorateClientError) as refused:
        no_token.status()
    assert refused.value.code == "unauthorized"

    c.kill9(lead)
    rest = [n for n in c.agents if n != lead]
    new = c.leader(among=rest, timeout=DEADLINE * 2)
    assert new != lead
    wait_for("a write under the new leader", lambda: c.put(rest[0], "sec/after-kill", "v").status == 200)

    c.start(lead)
    wait_for(f"{lead} back as a follower of {new}",
             lambda: (st := c.status(lead))["leader"] == new and st["role"] == "follower", timeout=DEADLINE * 2)
    wait_for(f"{lead} caught up", lambda: c.get(lead, "sec/after-kill", stale=True).body.get("value") == "v")
    assert c.put(lead, "sec/after-restart", "w").status == 200
    assert c.get(new, "sec/after-restart").body["value"] == "w"
    assert all(c.status(n)["voters"] == sorted(c.agents) for n in c.agents)
