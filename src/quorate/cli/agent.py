"""``quorate agent``: run one manager node until SIGTERM or SIGINT.

Settings come from defaults < ``--config`` TOML file < ``QUORATE_*``
environment variables < flags (see :mod:`quorate.config`); an invalid
setting exits 2 with a message that names it. Every flag defaults to
"unset" so that the file and the environment can supply it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from quorate.config import ConfigError, load_config
from quorate.runtime.eventloop import EVENT_LOOPS, EventLoopUnavailable, run_event_loop

from .common import fail

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _opt(name: str, text: str, metavar: str | None = None) -> typer.models.OptionInfo:
    return typer.Option(name, help=text, metavar=metavar, show_default=False)


IdOpt = Annotated[str | None, _opt("--id", "This node's id (letters, digits, '_', '.', '-'); unique in the "
                                   "cluster and stable across restarts.")]
DataDirOpt = Annotated[Path | None, _opt("--data-dir", "Where the write-ahead log, hard state and snapshots "
                                         "live; created when missing.")]
PeerAddrOpt = Annotated[str | None, _opt("--peer-addr", "Address for Raft traffic from the other nodes.",
                                         "HOST:PORT")]
ApiAddrOpt = Annotated[str | None, _opt("--api-addr", "Address of this node's HTTP API.", "HOST:PORT")]
BootstrapOpt = Annotated[str | None, _opt(
    "--bootstrap", "First start of a new cluster: every initial member as ID=HOST:PORT (peer address), "
    "comma-separated, this node included (n1=127.0.0.1:7001,n2=...). Ignored, with a log line, when the "
    "data dir already holds state, so a restart may repeat the same command.", "MEMBERS")]
JoinOpt = Annotated[str | None, _opt("--join", "Join a running cluster through this API endpoint "
                                     "(http://HOST:PORT), as a learner promoted to voter once caught up.",
                                     "URL")]
ClusterIdOpt = Annotated[str | None, _opt("--cluster-id", "Name checked on every peer connection, so two "
                                          "clusters never mix (default: quorate).")]
HeartbeatOpt = Annotated[int | None, _opt("--heartbeat-ms", "Leader heartbeat interval in milliseconds; one "
                                          "Raft tick (default 100).", "MS")]
ElectionOpt = Annotated[int | None, _opt("--election-timeout-ms", "Election timeout t in milliseconds, "
                                         "randomized in [t, 2t) (default 1000).", "MS")]
MultiplierOpt = Annotated[float | None, _opt("--timing-multiplier", "Scales both the heartbeat and the "
                                             "election timeout, given or default (e.g. 5 on a slow machine; "
                                             "default 1).")]
RequestTimeoutOpt = Annotated[float | None, _opt("--request-timeout", "How long a write waits to be committed "
                                                 "before answering 'timeout' (default 5).", "SECONDS")]
SnapshotOpt = Annotated[int | None, _opt("--snapshot-entries", "Take a snapshot and compact the log every "
                                         "this many entries (default 10000).")]
PeerTokenOpt = Annotated[str | None, _opt("--peer-token", "Shared secret every peer connection must present "
                                          "($QUORATE_PEER_TOKEN).")]
ApiTokenOpt = Annotated[str | None, _opt("--api-token", "Require 'Authorization: Bearer TOKEN' on every API "
                                         "request but GET /v1/health ($QUORATE_API_TOKEN).")]
TlsCertOpt = Annotated[Path | None, _opt("--tls-cert", "Certificate for mutual TLS on the peer port and the "
                                         "API, which then serves https only (needs --tls-key and --tls-ca).")]
TlsKeyOpt = Annotated[Path | None, _opt("--tls-key", "Private key of --tls-cert.")]
TlsCaOpt = Annotated[Path | None, _opt("--tls-ca", "CA that signed the nodes' certificates; peers and API "
                                       "clients must present a certificate it signed.")]
FsyncOpt = Annotated[bool | None, typer.Option(
    "--fsync/--no-fsync", show_default=False,
    help="fsync the log before acknowledging (default on; off only for throwaway test clusters).")]
BackupDirOpt = Annotated[Path | None, _opt(
    "--backup-dir", "Where this node keeps local backups of the store; must be outside the data dir, so that "
    "losing the data dir leaves them (default: next to it, DATA_DIR-backup).", "DIR")]
BackupIntervalOpt = Annotated[str | None, _opt(
    "--backup-interval", "Back up at the latest this long after the previous backup, changed or not; a change "
    "to the store triggers one sooner (default 60s).", "DURATION")]
BackupKeepOpt = Annotated[int | None, _opt("--backup-keep", "How many local backups to keep, newest first; "
                                           "orphaned newer backups are never deleted (default 5).", "N")]
AcceptRollbackOpt = Annotated[bool | None, typer.Option(
    "--accept-rollback", show_default=False,
    help="Start even though this node holds a backup newer than the store (the store was rolled back): "
         "run on the store as it is and keep the newer backups as orphan files. Without it the node refuses "
         "to start (exit code 3).")]
AutoRecoverOpt = Annotated[str | None, _opt(
    "--auto-recover-after", "In recovery mode, restore the backup with the highest counter without waiting "
    "for `quorate recovery proceed`, once every voter has offered its backup or after this long "
    "(default: off, the operator decides).", "DURATION")]
ProviderDirOpt = Annotated[Path | None, _opt(
    "--provider-dir", "State of the process provider (instance records and logs). Every manager on a host "
    "must use the same directory, so a new leader finds and adopts what its predecessors started "
    "(default: next to the data dir, DATA_DIR-instances).", "DIR")]
ReconcileOpt = Annotated[str | None, _opt(
    "--reconcile-interval", "How often the leader reconciles the groups toward their specs (default 1s).",
    "DURATION")]
ProviderTimeoutOpt = Annotated[str | None, _opt(
    "--provider-timeout", "Longest a provider call (create, destroy, list) may take before the cycle gives "
    "up on it (default 15s).", "DURATION")]
QuorumGraceOpt = Annotated[str | None, _opt(
    "--quorum-grace", "How long without a leader before the quorum watchdog probes the voters and asks the "
    "provider about the missing ones (default: five election timeouts).", "DURATION")]
AutoRecoverQuorumOpt = Annotated[bool | None, typer.Option(
    "--auto-recover/--no-auto-recover", show_default=False,
    help="After quorum loss, force a new configuration from the survivors by themselves, but only when the "
         "provider confirms every missing voter terminated with its state gone and the survivors agree "
         "(default on). Off: the watchdog only restarts dead voters in place and says what "
         "`quorate recover` would do.")]
DeadMemberOpt = Annotated[str | None, _opt(
    "--dead-member-timeout", "A member unreachable this long counts as failed, and the leader removes it "
    "from the configuration (never below --min-voters, never more than (N-1)/2 voters at once; default 72h, "
    "as Habitat and Consul).", "DURATION")]
MinVotersOpt = Annotated[int | None, _opt(
    "--min-voters", "Automatic clean-up never leaves fewer voters than this (default: the managers group's "
    "size, else 3).", "N")]
LeaveOnTerminateOpt = Annotated[bool | None, typer.Option(
    "--leave-on-terminate/--no-leave-on-terminate", show_default=False,
    help="On SIGTERM, leave the cluster (hand over leadership, be removed from the configuration) before "
         "exiting. Off by default, so that a restart (an upgrade, a reboot) keeps the membership and its data "
         "count; use it for nodes that are going away for good.")]
LogFileOpt = Annotated[Path | None, _opt("--log-file", "Append the log to this file instead of stderr.",
                                         "FILE")]
ConfigOpt = Annotated[Path | None, _opt("--config", "TOML file with the same settings (snake_case keys); "
                                        "environment variables and flags override it.", "FILE.toml")]
LogLevelOpt = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")]
EventLoopOpt = Annotated[str, typer.Option(
    "--event-loop", help="auto, uvloop or asyncio. auto takes uvloop when it is installed (the uvloop extra of the package).")]


def agent(
    node_id: IdOpt = None, data_dir: DataDirOpt = None, peer_addr: PeerAddrOpt = None,
    api_addr: ApiAddrOpt = None, bootstrap: BootstrapOpt = None, join: JoinOpt = None,
    cluster_id: ClusterIdOpt = None, heartbeat_ms: HeartbeatOpt = None, election_timeout_ms: ElectionOpt = None,
    timing_multiplier: MultiplierOpt = None, request_timeout: RequestTimeoutOpt = None,
    snapshot_entries: SnapshotOpt = None, peer_token: PeerTokenOpt = None, api_token: ApiTokenOpt = None,
    tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None, tls_ca: TlsCaOpt = None, fsync: FsyncOpt = None,
    backup_dir: BackupDirOpt = None, backup_interval: BackupIntervalOpt = None, backup_keep: BackupKeepOpt = None,
    accept_rollback: AcceptRollbackOpt = None, auto_recover_after: AutoRecoverOpt = None,
    provider_dir: ProviderDirOpt = None, reconcile_interval: ReconcileOpt = None,
    provider_timeout: ProviderTimeoutOpt = None, quorum_grace: QuorumGraceOpt = None,
    auto_recover: AutoRecoverQuorumOpt = None, dead_member_timeout: DeadMemberOpt = None,
    min_voters: MinVotersOpt = None, leave_on_terminate: LeaveOnTerminateOpt = None, log_file: LogFileOpt = None,
    config: ConfigOpt = None, log_level: LogLevelOpt = "INFO", event_loop: EventLoopOpt = "auto",
) -> None:
    """Run a quorate manager node until SIGTERM or SIGINT.

    Exit codes: 0 stopped, 1 could not run, 2 bad settings, 3 refused to start
    because the store was rolled back (see --accept-rollback)."""
    flags = {
        "id": node_id, "data_dir": data_dir, "peer_addr": peer_addr, "api_addr": api_addr,
        "bootstrap": bootstrap, "join": join, "cluster_id": cluster_id, "heartbeat_ms": heartbeat_ms,
        "election_timeout_ms": election_timeout_ms, "timing_multiplier": timing_multiplier,
        "request_timeout_s": request_timeout, "snapshot_entries": snapshot_entries,
        "peer_token": peer_token, "api_token": api_token, "tls_cert": tls_cert, "tls_key": tls_key,
        "tls_ca": tls_ca, "fsync": fsync, "backup_dir": backup_dir, "backup_interval_s": backup_interval,
        "backup_keep": backup_keep, "accept_rollback": accept_rollback, "auto_recover_after_s": auto_recover_after,
        "provider_dir": provider_dir, "reconcile_interval_s": reconcile_interval,
        "provider_timeout_s": provider_timeout, "quorum_grace_s": quorum_grace, "auto_recover": auto_recover,
        "dead_member_timeout_s": dead_member_timeout, "min_voters": min_voters,
        "leave_on_terminate": leave_on_terminate,
    }
    if event_loop not in EVENT_LOOPS:
        raise fail(f"--event-loop must be one of {', '.join(EVENT_LOOPS)}, got {event_loop!r}", code=2)
    level = log_level.upper()
    if level not in LOG_LEVELS:
        raise fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}", code=2)
    try:
        cfg = load_config(flags, config_file=config, env=os.environ)
    except ConfigError as exc:
        raise fail(str(exc), code=2) from None
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(log_file)
        except OSError as exc:
            raise fail(f"cannot open --log-file {log_file}: {exc}", code=2) from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=[handler], force=True)
    try:
        from quorate.runtime.agent import run_agent
    except ImportError as exc:
        raise fail(f"the agent runtime is not available: {exc}") from None
    try:
        code = run_event_loop(run_agent(cfg), event_loop)
    except EventLoopUnavailable as exc:
        raise fail(str(exc), code=2) from None
    except OSError as exc:  # e.g. a port in use: say so without a traceback
        logging.getLogger("quorate.agent").error("node=%s cannot run: %s", cfg.id, exc)
        raise typer.Exit(1) from None
    sys.exit(code)
