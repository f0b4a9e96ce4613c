"""What every cluster command shares: the ``--endpoint``, ``--token``,
``--tls-ca``/``--tls-cert``/``--tls-key`` and ``--json`` options, building a
client from them, printing for people or for scripts, and turning client
errors into exit code 1.

Exit codes: 0 ok, 1 the cluster (or the network) refused or failed, 2 the
command line was wrong.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from quorate.client import (
    Client,
    CompactedError,
    QuorateClientError,
    RevisionMismatchError,
    parse_endpoints,
)

ENDPOINT_ENV = "QUORATE_ENDPOINT"
TOKEN_ENV = "QUORATE_API_TOKEN"
TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV = "QUORATE_TLS_CA", "QUORATE_TLS_CERT", "QUORATE_TLS_KEY"
DEFAULT_LOCAL_DIR = Path("quorate-local")
FALLBACK_ENDPOINT = "http://127.0.0.1:7101"

EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", "-e", envvar=ENDPOINT_ENV, show_default=False,
    help="API endpoint(s), comma-separated, e.g. http://127.0.0.1:7101. Default: $QUORATE_ENDPOINT, "
         f"else the endpoints of ./{DEFAULT_LOCAL_DIR} (quorate up), else {FALLBACK_ENDPOINT}.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar=TOKEN_ENV, show_default=False,
    help="API token, sent as 'Authorization: Bearer TOKEN'. Default: $QUORATE_API_TOKEN.")]
TlsCaOpt = Annotated[Path | None, typer.Option(
    "--tls-ca", envvar=TLS_CA_ENV, show_default=False, metavar="FILE",
    help="CA that signed the nodes' certificates, for an https:// endpoint (a cluster run with --tls-ca): the "
         "server must present a certificate it signed; host names are not checked. Default: $QUORATE_TLS_CA.")]
TlsCertOpt = Annotated[Path | None, typer.Option(
    "--tls-cert", envvar=TLS_CERT_ENV, show_default=False, metavar="FILE",
    help="Client certificate for mutual TLS (the API of a TLS cluster requires one signed by its CA). "
         "Default: $QUORATE_TLS_CERT.")]
TlsKeyOpt = Annotated[Path | None, typer.Option(
    "--tls-key", envvar=TLS_KEY_ENV, show_default=False, metavar="FILE",
    help="Private key of --tls-cert. Default: $QUORATE_TLS_KEY.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The CLI's side of mutual TLS with the API."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __bool__(self) -> bool:
        return any((self.ca, self.cert, self.key))

    def or_(self, other: TlsFiles) -> TlsFiles:
        return TlsFiles(self.ca or other.ca, self.cert or other.cert, self.key or other.key)

    def context(self) -> ssl.SSLContext | None:
        """The client context, or None without TLS options. Like the nodes
        among themselves, the cluster CA is the check, not the host name
        (nodes are usually addressed by IP)."""
        if not self:
            return None
        if self.key is not None and self.cert is None:
            raise typer.BadParameter("--tls-key needs --tls-cert", param_hint="--tls-key")
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_REQUIRED
            if self.cert is not None:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:  # a missing file, a key that does not match
            raise typer.BadParameter(f"cannot load the TLS files: {exc}", param_hint="--tls-*") from exc
        return ctx


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    endpoint: str | None
    token: str | None
    json: bool
    tls: TlsFiles = TlsFiles()

    def merged(self, parent: ClusterOptions | None) -> ClusterOptions:
        """Options given to a command group (``quorate members --json list``)
        apply to its subcommands unless the subcommand repeats them."""
        if parent is None:
            return self
        return ClusterOptions(self.endpoint or parent.endpoint, self.token or parent.token,
                              self.json or parent.json, self.tls.or_(parent.tls))

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context()

    def endpoints(self) -> list[str]:
        raw = self.endpoint or _local_endpoints() or FALLBACK_ENDPOINT
        try:
            return parse_endpoints(raw)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--endpoint") from exc

    def client(self, *, discover: bool = False, timeout: float = 10.0) -> Client:
        """A client for one command. No discovery by default: a one-shot
        command should not pay an extra request, followers forward writes,
        and ``quorate up`` / $QUORATE_ENDPOINT usually list every node."""
        return Client(self.endpoints(), token=self.token, timeout=timeout, deadline=max(20.0, timeout),
                      discover=discover, ssl_context=self.ssl_context())


def _local_endpoints() -> str | None:
    path = DEFAULT_LOCAL_DIR / "endpoints"
    try:
        text = path.read_text()
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ",".join(lines) or None


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def describe(exc: QuorateClientError) -> str:
    text = f"{exc.code}: {exc.message}"
    if isinstance(exc, RevisionMismatchError):
        text += f" (current revision {exc.current_revision})"
    elif isinstance(exc, CompactedError):
        text += f" (oldest revision {exc.oldest_revision})"
    return text


@contextmanager
def cluster_errors(as_json: bool) -> Iterator[None]:
    """Print a client error (as JSON on stdout with ``--json``) and exit 1."""
    try:
        yield
    except QuorateClientError as exc:
        if as_json:
            typer.echo(json.dumps(exc.to_json(), sort_keys=True, default=str))
        else:
            stderr().print(f"[bold red]error[/] {escape(describe(exc))}")
        raise typer.Exit(1) from None


def print_error(message: str) -> None:
    stderr().print(f"[bold red]error[/] {escape(message)}")
    sys.stderr.flush()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on stderr; the caller raises the returned Exit."""
    print_error(message)
    return typer.Exit(code)
