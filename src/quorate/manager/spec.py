"""Group specs: what the operator declares, validated with pydantic.

A group is either ``size`` interchangeable instances (slots "0", "1", ...)
or one instance per name in ``logical_ids`` (the managers are such a group,
slot = logical id = node id). The template's strings may use placeholders,
filled in per instance by :func:`render`:

``{group}`` ``{slot}`` ``{index}`` (0-based) ``{logical_id}`` (empty for
size groups) ``{instance_id}`` ``{incarnation}`` ``{member_id}`` (the node
id a manager instance runs as: the logical id, with ``-<incarnation>``
appended after a replacement, so a member identity is never reused), every
name in ``template.ports`` (its base port plus ``{index}``), and the
cluster context ``{join}`` (API URLs of the current managers, comma
separated) and ``{cluster_id}``.

An unknown placeholder, an unknown field, a negative size, both or neither of
``size`` and ``logical_ids``: each is refused with the field named.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quorate.providers.base import LaunchSpec

MANAGERS_GROUP = "managers"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_SIZE = 1000
MAX_FORMAT_WIDTH = 1000

INSTANCE_FIELDS = frozenset({"group", "slot", "index", "logical_id", "instance_id", "incarnation", "member_id"})
CONTEXT_FIELDS = frozenset({"join", "cluster_id"})


class SpecError(ValueError):
    """A group spec that cannot be accepted; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Template(_Model):
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    state_path: str | None = None

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: dict[str, int]) -> dict[str, int]:
        for name, base in v.items():
            if not name.isidentifier():
                raise ValueError(f"port name {name!r} must be an identifier")
            if name in INSTANCE_FIELDS | CONTEXT_FIELDS:
                raise ValueError(f"port name {name!r} clashes with a built-in placeholder")
            if not 1 <= base <= 65535:
                raise ValueError(f"port {name} = {base} is not a TCP port")
        return v


class HealthCheck(_Model):
    type: Literal["process", "http", "tcp"] = "process"
    url: str | None = None
    host: str = "127.0.0.1"
    port: int | str | None = None
    interval_s: float = Field(default=1.0, gt=0, le=3600)
    timeout_s: float = Field(default=1.0, gt=0, le=600)
    failure_threshold: int = Field(default=3, ge=1, le=1000)
    start_period_s: float = Field(default=10.0, ge=0, le=3600)

    @field_validator("port")
    @classmethod
    def _port(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 1 <= v <= 65535:
            raise ValueError(f"port {v} is not a TCP port")
        if isinstance(v, str) and not (v.isdigit() or re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", v)):
            raise ValueError(f"port {v!r} must be a number or one placeholder such as '{{port}}'")
        if isinstance(v, str) and v.isdigit() and not 1 <= int(v) <= 65535:
            raise ValueError(f"port {v} is not a TCP port")
        return v

    @model_validator(mode="after")
    def _target(self) -> HealthCheck:
        if self.type == "http" and not self.url:
            raise ValueError("an http health check needs a url")
        if self.type == "tcp" and self.port is None:
            raise ValueError("a tcp health check needs a port")
        return self


class UpdatePolicy(_Model):
    max_unavailable: int = Field(default=1, ge=1)


class GroupSpec(_Model):
    id: str = Field(pattern=NAME_PATTERN)
    provider: str = Field(default="process", pattern=NAME_PATTERN)
    size: int | None = Field(default=None, ge=0, le=MAX_SIZE)
    logical_ids: list[str] | None = None
    template: Template
    health: HealthCheck = Field(default_factory=HealthCheck)
    update: UpdatePolicy = Field(default_factory=UpdatePolicy)

    @field_validator("logical_ids")
    @classmethod
    def _logical_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(v) > MAX_SIZE:
            raise ValueError(f"at most {MAX_SIZE} logical ids")
        if len(set(v)) != len(v):
            raise ValueError("logical ids must be unique")
        for name in v:
            if not _valid_name(name):
                raise ValueError(f"logical id {name!r} must match {NAME_PATTERN}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> GroupSpec:
        if (self.size is None) == (self.logical_ids is None):
            raise ValueError("give exactly one of 'size' (interchangeable instances) or 'logical_ids'")
        if self.id == MANAGERS_GROUP and self.logical_ids is None:
            raise ValueError("the managers group needs 'logical_ids' (its members are named)")
        if self.id == MANAGERS_GROUP and any(slot_of_member(n) != n for n in self.logical_ids or []):
            raise ValueError("manager logical ids may not end in '-<number>': that suffix marks "
                             "a replacement's node id")
        _check_placeholders(self.template, self.health)
        count = len(self.logical_ids) if self.logical_ids is not None else (self.size or 0)
        for name, base in self.template.ports.items():
            if count and base + count - 1 > 65535:
                raise ValueError(f"template.ports.{name}: {base} + {count - 1} (the last slot) is past 65535")
        _check_renders(self)
        return self

    # -- derived ---------------------------------------------------------------

    def slots(self) -> list[str]:
        """The slots this group wants filled, in order."""
        if self.logical_ids is not None:
            return list(self.logical_ids)
        return [str(i) for i in range(self.size or 0)]

    @property
    def is_logical(self) -> bool:
        return self.logical_ids is not None

    def spec_hash(self) -> str:
        """Changes when what runs changes (the template or the provider),
        not when the health check or the size does."""
        canon = json.dumps({"provider": self.provider, "template": self.template.model_dump()}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


def _fields(text: str) -> set[str]:
    try:
        parsed = [(f, spec) for _, f, spec, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"bad placeholder syntax in {text!r}: {exc}") from None
    for f, spec in parsed:
        # "{index:300000000}" is a 30-byte spec that renders 300 MB (at
        # validation, then at every create): widths and precisions are capped,
        # and nested placeholders ("{index:{port}{port}}") could evade the cap.
        if "{" in spec:
            raise ValueError(f"placeholder {{{f}:{spec}}}: no placeholders inside a format spec")
        if any(len(n) > 4 or int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec)):
            raise ValueError(f"placeholder {{{f}:{spec}}}: format widths are limited to {MAX_FORMAT_WIDTH}")
    return {f.split(".")[0].split("[")[0] for f, _ in parsed}


def _check_placeholders(template: Template, health: HealthCheck) -> None:
    known = INSTANCE_FIELDS | CONTEXT_FIELDS | set(template.ports)
    texts: list[tuple[str, str]] = [("template.command", template.command)]
    texts += [(f"template.args[{i}]", a) for i, a in enumerate(template.args)]
    texts += [(f"template.env.{k}", v) for k, v in template.env.items()]
    if template.working_dir:
        texts.append(("template.working_dir", template.working_dir))
    if template.state_path:
        texts.append(("template.state_path", template.state_path))
    if health.url:
        texts.append(("health.url", health.url))
    if isinstance(health.port, str):
        texts.append(("health.port", health.port))
    for where, text in texts:
        unknown = _fields(text) - known
        if "" in unknown:
            raise ValueError(f"{where}: positional placeholders '{{}}' are not allowed")
        if unknown:
            raise ValueError(f"{where}: unknown placeholder(s) {sorted(unknown)}; "
                             f"known: {sorted(known)}")


def _check_renders(spec: GroupSpec) -> None:
    """Render the first slot once, so a placeholder with a format spec or
    an attribute that cannot work is refused now, not at the first create."""
    slot = spec.slots()[0] if spec.slots() else ("n1" if spec.is_logical else "0")
    try:
        render(spec, slot, 1, {"join": "http://127.0.0.1:1", "cluster_id": "c"})
        if spec.health.url or isinstance(spec.health.port, str):
            render_health(spec, slot, 1)
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"template or health check does not render: {type(exc).__name__}: {exc}") from None


def parse_spec(raw: object) -> GroupSpec:
    """Validate decoded YAML/JSON, or raise SpecError naming each bad field."""
    try:
        return GroupSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"invalid group spec: {problems}") from None


def load_spec_text(text: str, source: str = "spec") -> list[GroupSpec]:
    """One or more specs from YAML or JSON text (a mapping, a list of
    mappings, or several YAML documents)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{source} is not valid YAML or JSON: {exc}") from None
    except RecursionError:  # the YAML parser recurses once per nesting level
        raise SpecError(f"{source} is nested too deeply to be a group spec") from None
    specs: list[GroupSpec] = []
    for doc in docs:
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            if not isinstance(item, dict):
                raise SpecError(f"{source}: a group spec must be a mapping, got {type(item).__name__}")
            specs.append(parse_spec(item))
    if not specs:
        raise SpecError(f"{source} holds no group spec")
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{source}: group ids must be unique, got {ids}")
    return specs


def member_id(logical_id: str, incarnation: int) -> str:
    """The node id a manager instance runs as: a replacement never reuses
    the identity (and so the votes) of the member it replaces."""
    return logical_id if incarnation <= 1 else f"{logical_id}-{incarnation}"


def slot_of_member(member: str) -> str:
    """The logical id a manager's node id belongs to (inverse of member_id)."""
    base, sep, suffix = member.rpartition("-")
    return base if sep and suffix.isdigit() and int(suffix) > 1 else member


def instance_id(group: str, slot: str, incarnation: int) -> str:
    return f"{group}-{slot}-{incarnation}"


def _values(spec: GroupSpec, slot: str, incarnation: int, context: dict[str, str] | None) -> dict[str, Any]:
    slots = spec.slots()
    index = slots.index(slot) if slot in slots else int(slot) if slot.isdigit() else 0
    logical = spec.is_logical
    iid = instance_id(spec.id, slot, incarnation)
    values: dict[str, Any] = {"join": "", "cluster_id": ""}
    values.update(context or {})
    values.update(group=spec.id, slot=slot, index=index, logical_id=slot if logical else "", instance_id=iid,
                  incarnation=incarnation, member_id=member_id(slot, incarnation) if logical else iid)
    values.update({name: base + index for name, base in spec.template.ports.items()})
    return values


def render(spec: GroupSpec, slot: str, incarnation: int, context: dict[str, str] | None = None) -> LaunchSpec:
    """The launch spec of the instance ``incarnation`` of ``slot``."""
    values = _values(spec, slot, incarnation, context)
    t = spec.template

    def fill(text: str) -> str:
        return text.format(**values)

    return LaunchSpec(
        instance_id=values["instance_id"], group=spec.id, logical_id=slot if spec.is_logical else None, slot=slot,
        argv=tuple([fill(t.command), *(fill(a) for a in t.args)]),
        env={k: fill(v) for k, v in t.env.items()},
        working_dir=fill(t.working_dir) if t.working_dir else None,
        spec_hash=spec.spec_hash(),
        state_path=fill(t.state_path) if t.state_path else None)


def render_health(spec: GroupSpec, slot: str, incarnation: int) -> dict[str, Any]:
    """The health check of one instance with its placeholders filled:
    ``{"type", "host", "url"?, "port"?}``."""
    h = spec.health
    values = _values(spec, slot, incarnation, None)
    out: dict[str, Any] = {"type": h.type, "host": h.host}
    if h.url:
        out["url"] = h.url.format(**values)
    if h.port is not None:
        out["port"] = int(h.port.format(**values)) if isinstance(h.port, str) else h.port
    return out
