"""Finding providers by name: the built-in one, plugins declared as entry
points, and clear errors for a name nobody registered or a broken plugin."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from quorate.providers import ProcessProvider, UnknownProvider, known_providers, make_provider
from quorate.providers import registry
from quorate.testing.fake_provider import FakeProvider


def plugins(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Pretend installed packages declare these ``quorate.providers`` entry points."""
    eps = [EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in values.items()]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(registry, "entry_points", entry_points)


def test_the_process_provider_is_built_in() -> None:
    assert "process" in known_providers()
    assert registry.provider_class("process") is ProcessProvider


def test_make_provider(tmp_path: Path) -> None:
    provider = make_provider("process", state_dir=tmp_path / "state", stop_timeout_s=1.0)
    assert isinstance(provider, ProcessProvider)
    assert provider.state_dir == (tmp_path / "state").resolve() and provider.stop_timeout_s == 1.0


def test_an_unknown_name_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, zeta="quorate.testing.fake_provider:FakeProvider")
    with pytest.raises(UnknownProvider, match=r"^unknown provider 'nope'; known providers: process, zeta$"):
        make_provider("nope")


def test_a_plugin_is_found_by_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, fake="quorate.testing.fake_provider:FakeProvider")
    assert known_providers() == ["fake", "process"]
    assert isinstance(make_provider("fake", delay_s=0.5), FakeProvider)


def test_the_built_in_wins_over_an_entry_point_of_the_same_name(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, process="quorate.testing.fake_provider:FakeProvider")
    assert known_providers() == ["process"]
    assert registry.provider_class("process") is ProcessProvider


def test_a_broken_plugin_is_named_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, broken="quorate_no_such_module:Provider")
    with pytest.raises(UnknownProvider, match=r"provider 'broken' \(quorate_no_such_module:Provider\) cannot be "
                                              r"loaded: ModuleNotFoundError: .*quorate_no_such_module"):
        make_provider("broken")


def test_a_plugin_that_is_not_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, odd="quorate.providers.base:LaunchSpec")
    with pytest.raises(UnknownProvider, match="'odd' .* is not a quorate Provider class"):
        make_provider("odd")
