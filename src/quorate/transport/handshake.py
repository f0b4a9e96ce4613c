"""The connection handshake: who is calling, from which cluster, with what token.

Theory of operation (no IO here; ``_inbound``/``_outbound`` do the IO)::

    connecting side                         accepting side
    hello  {"proto": "quorate", "version", "cluster", "node", "token"}  -->
                                            decode_hello, check_hello
       <--  {"ok": true, "cluster", "node"}          (then Raft messages flow)
       <--  {"ok": false, "reason", "message"}       (then the accepting side closes)

Both frames are msgpack maps, so the handshake stays readable and can grow
fields; the hello frame is limited to :data:`HELLO_MAX_FRAME` bytes, so a
stranger cannot make us buffer the full message-frame limit before saying who
it is. The token is compared in constant time. A refusal is a value
(:class:`Refusal`), logged by the caller with the peer address.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import FrameError

__all__ = [
    "HELLO_MAX_FRAME",
    "PROTOCOL_VERSION",
    "Accept",
    "Hello",
    "Refusal",
    "RefusalReason",
    "check_hello",
    "decode_answer",
    "decode_hello",
    "sniff",
]

PROTOCOL_VERSION = 1
HELLO_MAX_FRAME = 64 * 1024
_PROTO = "quorate"


class RefusalReason(enum.Enum):
    WRONG_CLUSTER = "wrong_cluster"
    BAD_TOKEN = "bad_token"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_FRAME = "bad_frame"  # msgpack, but not a hello
    GARBAGE = "garbage"  # not msgpack at all, or another protocol
    OVERSIZE_FRAME = "oversize_frame"
    TLS = "tls"  # the TLS handshake failed (plaintext caller, unknown CA, ...)
    TIMEOUT = "timeout"  # no hello within the handshake timeout
    STALE_EPOCH = "stale_epoch"  # a member left behind by quorum-loss recovery


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    detail: str

    def encode(self) -> bytes:
        return _pack({"ok": False, "reason": self.reason.value, "message": self.detail})


@dataclass(frozen=True, slots=True)
class Accept:
    """The accepting side's answer; the caller checks ``node_id`` is the peer it meant."""

    cluster_id: str
    node_id: str

    def encode(self) -> bytes:
        return _pack({"ok": True, "cluster": self.cluster_id, "node": self.node_id})


@dataclass(frozen=True, slots=True)
class Hello:
    cluster_id: str
    node_id: str
    token: str = ""
    version: int = PROTOCOL_VERSION
    epoch: int = 0  # the caller's cluster epoch (bumped by each forced configuration)

    def encode(self) -> bytes:
        return _pack(
            {
                "proto": _PROTO,
                "version": self.version,
                "cluster": self.cluster_id,
                "node": self.node_id,
                "token": self.token,
                "epoch": self.epoch,
            }
        )


def decode_hello(payload: bytes) -> Hello | Refusal:
    """The hello in ``payload`` or why it is not one."""
    try:
        obj = _unpack(payload)
    except FrameError as exc:
        return Refusal(RefusalReason.GARBAGE, str(exc))
    if not isinstance(obj, dict) or obj.get("proto") != _PROTO:
        return Refusal(RefusalReason.BAD_FRAME, "first frame is not a quorate hello")
    version, cluster, node, token = (obj.get(k) for k in ("version", "cluster", "node", "token"))
    if type(version) is not int:
        return Refusal(RefusalReason.BAD_FRAME, "hello has no protocol version")
    if version != PROTOCOL_VERSION:
        return Refusal(
            RefusalReason.UNSUPPORTED_VERSION,
            f"protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})",
        )
    if not all(type(v) is str for v in (cluster, node, token)) or not node:
        return Refusal(RefusalReason.BAD_FRAME, "hello fields cluster/node/token are not strings")
    epoch = obj.get("epoch", 0)
    if type(epoch) is not int or epoch < 0:
        return Refusal(RefusalReason.BAD_FRAME, "hello field epoch is not a non-negative integer")
    return Hello(cluster_id=cluster, node_id=node, token=token, version=version, epoch=epoch)


def check_hello(hello: Hello, cluster_id: str, token: str | None) -> Refusal | None:
    """None when ``hello`` may join this node's cluster; the refusal otherwise.
    With no token configured, any token is accepted."""
    if hello.cluster_id != cluster_id:
        return Refusal(
            RefusalReason.WRONG_CLUSTER,
            f"cluster id {hello.cluster_id!r:.80} is not this cluster's ({cluster_id!r})",
        )
    if token is not None and not hmac.compare_digest(hello.token.encode(), token.encode()):
        return Refusal(RefusalReason.BAD_TOKEN, "the cluster token does not match")
    return None


def decode_answer(payload: bytes) -> Accept | Refusal:
    """The accepting side's answer; FrameError when it is neither."""
    obj = _unpack(payload)
    if not isinstance(obj, dict) or type(obj.get("ok")) is not bool:
        raise FrameError("handshake answer is not a quorate answer")
    if obj["ok"]:
        cluster, node = obj.get("cluster"), obj.get("node")
        if type(cluster) is not str or type(node) is not str:
            raise FrameError("handshake answer has no cluster/node")
        return Accept(cluster_id=cluster, node_id=node)
    reason, message = obj.get("reason"), obj.get("message")
    if type(reason) is not str or type(message) is not str:
        raise FrameError("handshake refusal has no reason")
    try:
        return Refusal(RefusalReason(reason), message)
    except ValueError:  # a newer peer's reason: keep its words
        return Refusal(RefusalReason.BAD_FRAME, f"{reason}: {message}")


def sniff(header: bytes) -> str:
    """A hint for the log when a stranger speaks another protocol."""
    if len(header) >= 2 and header[0] == 0x16 and header[1] == 0x03:
        return "looks like a TLS ClientHello: the caller uses TLS, this node does not"
    if header[:3].isalpha() and header[:3].isupper():
        return "looks like HTTP or another text protocol"
    return ""


def _pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(payload: bytes) -> object:
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # the trust boundary: msgpack's failures are many and varied
        raise FrameError(f"payload is not msgpack: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
