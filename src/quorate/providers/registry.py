"""Finding a provider by the name a group spec gives (``provider: process``).

The process provider is built in; others are plugins that declare an entry
point in the ``quorate.providers`` group, so installing a package is all it
takes to make its provider known, with no change to quorate.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .base import Provider, UnknownProvider

ENTRY_POINT_GROUP = "quorate.providers"


def _builtins() -> dict[str, type[Provider]]:
    from .process import ProcessProvider

    return {ProcessProvider.name: ProcessProvider}


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_providers() -> list[str]:
    """The names ``make_provider`` accepts, sorted."""
    return sorted(_builtins().keys() | _plugins().keys())


def provider_class(name: str) -> type[Provider]:
    """The class registered as ``name``; a built-in wins over a plugin of
    the same name (quorate itself declares ``process`` as an entry point)."""
    builtin = _builtins().get(name)
    if builtin is not None:
        return builtin
    ep = _plugins().get(name)
    if ep is None:
        raise UnknownProvider(f"unknown provider '{name}'; known providers: {', '.join(known_providers())}")
    try:
        cls = ep.load()
    except Exception as exc:  # a plugin's import can fail in any way
        raise UnknownProvider(f"provider '{name}' ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise UnknownProvider(f"provider '{name}' ({ep.value}) is not a quorate Provider class: {cls!r}")
    return cls


def make_provider(name: str, **kwargs: Any) -> Provider:
    """A new provider ``name`` built with ``kwargs`` (its own options)."""
    return provider_class(name)(**kwargs)
