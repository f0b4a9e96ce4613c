"""Instance providers: the process provider (default) and the registry that
finds providers by name (built-ins plus the ``quorate.providers`` entry points)."""

from .base import (
    Instance,
    InstanceState,
    LaunchSpec,
    Provider,
    ProviderError,
    StaleFencingToken,
    UnknownProvider,
)
from .process import ProcessProvider
from .registry import known_providers, make_provider

__all__ = ["Instance", "InstanceState", "LaunchSpec", "ProcessProvider", "Provider", "ProviderError",
           "StaleFencingToken", "UnknownProvider", "known_providers", "make_provider"]
