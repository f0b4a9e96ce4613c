"""Which API endpoints a client knows, and in which order it tries them.

The book starts from the endpoints the caller gave (kept for good: one may
be a load balancer), learns every member's ``api_addr`` from
``GET /v1/members``, remembers the endpoint that answered last (tried first
next time) and turns a leader hint (a node id, an address or a URL) into an
endpoint. Plain data, no IO: both clients share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from .models import Member

_ANY_HOST = {"0.0.0.0", "::", "[::]", ""}


def normalize_endpoint(value: str, default_scheme: str = "http") -> str:
    """``host:port`` or ``http://host:port/`` into ``scheme://host:port``."""
    text = value.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) endpoint: {value!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in endpoint {value!r}") from exc
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"an endpoint is scheme://host:port only, got {value!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (a redirect's Location)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def parse_endpoints(values: str | Iterable[str]) -> list[str]:
    """Comma-separated or a sequence; duplicates dropped, order kept."""
    items = values.split(",") if isinstance(values, str) else [v for s in values for v in s.split(",")]
    out: list[str] = []
    for item in items:
        if item.strip():
            ep = normalize_endpoint(item)
            if ep not in out:
                out.append(ep)
    if not out:
        raise ValueError("at least one endpoint is needed")
    return out


class EndpointBook:
    def __init__(self, seeds: Sequence[str]) -> None:
        self._seeds = parse_endpoints(seeds)
        self._learned: list[str] = []
        self._by_id: dict[str, str] = {}
        self._preferred = self._seeds[0]
        self.needs_discovery = True

    @property
    def endpoints(self) -> list[str]:
        return self._seeds + [e for e in self._learned if e not in self._seeds]

    @property
    def preferred(self) -> str:
        return self._preferred

    def by_id(self) -> dict[str, str]:
        """Member id -> endpoint, as last learned."""
        return dict(self._by_id)

    def rotation(self) -> list[str]:
        """Every endpoint, the preferred one first."""
        eps = self.endpoints
        i = eps.index(self._preferred) if self._preferred in eps else 0
        return eps[i:] + eps[:i]

    def succeeded(self, endpoint: str) -> None:
        self._preferred = endpoint

    def learn(self, members: Iterable[Member], answered_by: str) -> None:
        """Add every member's API address; a wildcard bind address
        (0.0.0.0) takes the host of the endpoint that answered."""
        scheme = urlsplit(answered_by).scheme or "http"
        known_host = urlsplit(answered_by).hostname or "127.0.0.1"
        learned: list[str] = []
        by_id: dict[str, str] = {}
        for m in members:
            try:
                ep = normalize_endpoint(m.api_addr, scheme)
            except ValueError:
                continue
            parts = urlsplit(ep)
            if parts.hostname in _ANY_HOST:
                ep = normalize_endpoint(f"{known_host}:{parts.port}", scheme)
            by_id[m.id] = ep
            if ep not in learned:
                learned.append(ep)
        self._learned = learned
        self._by_id = by_id
        self.needs_discovery = False

    def resolve_hint(self, hint: object) -> str | None:
        """The endpoint a leader hint points at, or None. An unknown node id
        asks for a fresh discovery before the next call."""
        if not isinstance(hint, str) or not hint:
            return None
        if hint in self._by_id:
            return self._by_id[hint]
        if "://" in hint or ":" in hint:
            try:
                return normalize_endpoint(hint, urlsplit(self._preferred).scheme)
            except ValueError:
                return None
        self.needs_discovery = True
        return None
