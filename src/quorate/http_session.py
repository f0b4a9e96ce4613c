"""The one way quorate makes aiohttp client sessions.

aiohttp silently sends a PUT or DELETE a second time when the connection
drops before the answer arrives (RFC 9112 lets clients retry idempotent
methods). For quorate a write is not idempotent in that sense: the first
copy may already have been proposed, so the retry can apply a
compare-and-set or delete twice, or fail to connect and make the caller
report "not applied" for a write that did happen (found by the
linearizability test under kill -9). Every session therefore has that retry
turned off; quorate's own retry rules decide what may be resent.
"""

from __future__ import annotations

from typing import Any

import aiohttp


def new_session(**kwargs: Any) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(**kwargs)
    if not hasattr(session, "_retry_connection"):  # pragma: no cover - a future aiohttp
        raise RuntimeError("this aiohttp has no switch for its automatic retry of writes; pin aiohttp<4")
    session._retry_connection = False
    return session
