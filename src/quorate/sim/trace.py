"""The run's trace: short text lines for what matters plus a running hash.

Role changes, faults and client operations become lines; message deliveries
only feed the hash, which keeps tracing cheap while still making two runs of
one seed comparable byte for byte.
"""

from __future__ import annotations

import hashlib


class Trace:
    """Deterministic record of one simulated run."""

    __slots__ = ("lines", "_hash", "keep_lines")

    def __init__(self, keep_lines: bool = True) -> None:
        self.lines: list[str] = []
        self._hash = hashlib.blake2b(digest_size=16)
        self.keep_lines = keep_lines

    def log(self, now: int, who: str, what: str) -> None:
        line = f"{now:>8} {who:<6} {what}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        if self.keep_lines:
            self.lines.append(line)

    def delivery(self, now: int, frm: str, to: str, kind: int) -> None:
        """A message delivery: hashed, not kept as a line."""
        self._hash.update(f"{now}:{frm}>{to}:{kind};".encode())

    def digest(self) -> str:
        return self._hash.hexdigest()

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
