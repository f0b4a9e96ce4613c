"""Validated shapes of API request bodies (unknown fields are refused)."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quorate.config import parse_hostport
from quorate.errors import BadRequest


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PutBody(_Body):
    value: str
    prev_revision: int | None = Field(default=None, ge=0)


class JoinBody(_Body):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    peer_addr: str
    api_addr: str

    @field_validator("peer_addr", "api_addr")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v)
        return v


class TransferBody(_Body):
    target: str | None = None


_B = TypeVar("_B", bound=_Body)


def parse_body(model: type[_B], raw: object) -> _B:
    """Validate ``raw`` (decoded JSON) or raise BadRequest naming the fields."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"invalid request body: {problems}") from None
