"""Agent settings: one validated object built from defaults, a TOML file,
``QUORATE_*`` environment variables and command-line flags (later wins).

Timing follows Consul's idea of one multiplier: ``--timing-multiplier``
scales both the heartbeat and the election timeout, so a slow environment is
tuned with one number.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "QUORATE_"


class ConfigError(Exception):
    """The settings are invalid; the message names the setting."""


def parse_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``1.5m``, ``500ms`` or ``2h``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"expected a duration such as 30s, 5m, 500ms or 1h, got {value!r}")
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def default_backup_dir(data_dir: Path) -> Path:
    """Next to the data dir, never inside it (wiping the data dir must keep
    the backups): ``/var/lib/quorate/n1`` -> ``/var/lib/quorate/n1-backup``."""
    resolved = Path(data_dir).resolve()
    return resolved.with_name(resolved.name + "-backup")


def parse_bootstrap(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """``n1=127.0.0.1:7001,n2=...`` into ``{"n1": "127.0.0.1:7001", ...}``."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    members: dict[str, str] = {}
    for part in value.split(","):
        node_id, sep, addr = part.strip().partition("=")
        if not sep or not node_id:
            raise ValueError(f"bootstrap member {part!r} is not id=HOST:PORT")
        parse_hostport(addr)
        if node_id in members:
            raise ValueError(f"bootstrap lists {node_id} twice")
        members[node_id] = addr
    return members


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path
    peer_addr: str
    api_addr: str
    bootstrap: dict[str, str] = Field(default_factory=dict)
    join: str | None = None
    cluster_id: str = "quorate"
    heartbeat_ms: int = Field(default=100, ge=1)
    election_timeout_ms: int = Field(default=1000, ge=2)
    timing_multiplier: float = Field(default=1.0, gt=0)
    request_timeout_s: float = Field(default=5.0, gt=0)
    snapshot_entries: int = Field(default=10_000, ge=10)
    peer_token: str | None = None
    api_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    fsync: bool = True
    max_frame_bytes: int = Field(default=64 << 20, ge=1024)
    # Backups and recovery mode (DESIGN.md S5, docs/recovery.md).
    backup_dir: Path | None = None
    backup_interval_s: float = Field(default=60.0, gt=0)
    backup_keep: int = Field(default=5, ge=1)
    accept_rollback: bool = False
    auto_recover_after_s: float | None = Field(default=None, ge=0)
    # The manager (groups and instances, docs/manager.md).
    provider_dir: Path | None = None
    reconcile_interval_s: float = Field(default=1.0, gt=0)
    provider_timeout_s: float = Field(default=15.0, gt=0)
    # Quorum-loss recovery (S2/S3, docs/recovery.md).
    quorum_grace_s: float | None = Field(default=None, gt=0)
    auto_recover: bool = True
    # Electorate hygiene (S4, docs/manager.md).
    dead_member_timeout_s: float = Field(default=72 * 3600.0, gt=0)
    min_voters: int | None = Field(default=None, ge=1)
    leave_on_terminate: bool = False

    @field_validator("peer_addr", "api_addr")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("backup_interval_s", "auto_recover_after_s", "reconcile_interval_s", "provider_timeout_s",
                     "quorum_grace_s", "dead_member_timeout_s",
                     mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None or v == "" else parse_duration(v)

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _bootstrap(cls, v: Any) -> dict[str, str]:
        return parse_bootstrap(v)

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        if self.bootstrap and self.join:
            raise ValueError("give either --bootstrap or --join, not both")
        if self.bootstrap and self.id not in self.bootstrap:
            raise ValueError(f"--bootstrap must list this node ({self.id}=HOST:PORT) among the members")
        if self.election_timeout_ms <= self.heartbeat_ms:
            raise ValueError("election timeout must be longer than the heartbeat")
        tls = [self.tls_cert, self.tls_key, self.tls_ca]
        if any(tls) and not all(tls):
            raise ValueError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
        data, backup = Path(self.data_dir).resolve(), self.backup_path
        if backup == data or data in backup.parents or backup in data.parents:
            raise ValueError(f"--backup-dir {backup} must be separate from --data-dir {data} "
                             "(neither inside the other): a wiped data dir must leave the backups")
        return self

    @property
    def backup_path(self) -> Path:
        """Where local backups go: --backup-dir, else next to the data dir."""
        if self.backup_dir is not None:
            return Path(self.backup_dir).resolve()
        return default_backup_dir(self.data_dir)

    @property
    def provider_path(self) -> Path:
        """The process provider's state (instance records, logs): shared by
        every manager on a host; default next to the data dir."""
        if self.provider_dir is not None:
            return Path(self.provider_dir).resolve()
        resolved = Path(self.data_dir).resolve()
        return resolved.with_name(resolved.name + "-instances")

    # -- derived timing ---------------------------------------------------

    @property
    def tick_seconds(self) -> float:
        """One Raft tick is one heartbeat interval."""
        return self.heartbeat_ms * self.timing_multiplier / 1000.0

    @property
    def election_ticks(self) -> int:
        return max(2, math.ceil(self.election_timeout_ms / self.heartbeat_ms))

    @property
    def election_timeout_s(self) -> float:
        return self.election_timeout_ms * self.timing_multiplier / 1000.0

    @property
    def quorum_grace(self) -> float:
        """How long without a leader before the quorum watchdog looks:
        --quorum-grace, else five election timeouts (an ordinary election
        takes one or two)."""
        return self.quorum_grace_s if self.quorum_grace_s is not None else 5 * self.election_timeout_s


def _env_settings(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in AgentConfig.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            out[name] = env[key]
    return out


def load_config(
    flags: Mapping[str, Any], *, config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Merge TOML file < environment < flags (None flags are unset)."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        merged.update({k.replace("-", "_"): v for k, v in raw.items()})
    merged.update(_env_settings(env or {}))
    merged.update({k: v for k, v in flags.items() if v is not None})
    try:
        return AgentConfig(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid agent settings: {problems}") from exc
