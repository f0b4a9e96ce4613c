"""``quorate up`` / ``down`` without real agents: the directory layout, the
managers group and n1's bootstrap command, refusing busy ports and bad spec
files before anything starts, and what ``down`` does to the managers
(stopped, kept for a restart in place) and to the workers (destroyed)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi import WAIT
from typer.testing import CliRunner, Result

from quorate.cli.local import LocalCluster, start_managers, stop_cluster
from quorate.cli.main import app
from quorate.manager.spec import render
from quorate.providers.base import InstanceState, LaunchSpec
from quorate.providers.process import ProcessProvider

SLEEP = (sys.executable, "-c", "import time; time.sleep(600)")


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _flags(argv: tuple[str, ...]) -> dict[str, str]:
    assert argv[:5] == (sys.executable, "-P", "-m", "quorate", "agent")
    return dict(zip(argv[5::2], argv[6::2], strict=True))


def test_layout_and_the_managers_group(tmp_path: Path) -> None:
    c = LocalCluster.new(tmp_path / "qc", managers=3, base_port=20001)
    c.save()
    assert (tmp_path / "qc" / "endpoints").read_text().splitlines() == [
        "http://127.0.0.1:20101", "http://127.0.0.1:20102", "http://127.0.0.1:20103"]
    assert LocalCluster.load(tmp_path / "qc") == c  # a second `up` restarts the same cluster
    spec = c.managers_spec()
    assert spec.logical_ids == ["n1", "n2", "n3"]
    node = tmp_path.resolve() / "qc" / "nodes"
    n2 = render(spec, "n2", 1, {"join": "http://127.0.0.1:20101"})
    assert _flags(n2.argv) == {
        "--id": "n2", "--data-dir": f"{node}/n2/data", "--backup-dir": f"{node}/n2/backup",
        "--log-file": f"{node}/n2/log/agent.log", "--peer-addr": "127.0.0.1:20002",
        "--api-addr": "127.0.0.1:20102", "--cluster-id": c.cluster_id,
        "--provider-dir": str(tmp_path.resolve() / "qc" / "instances"), "--join": "http://127.0.0.1:20101"}
    assert n2.state_path == f"{node}/n2/data"
    # A replacement of n2 runs as a new member with fresh directories, on the slot's ports.
    again = _flags(render(spec, "n2", 2).argv)
    assert again["--id"] == "n2-2" and again["--data-dir"] == f"{node}/n2-2/data"
    assert again["--peer-addr"] == "127.0.0.1:20002"
    boot = _flags(c.bootstrap_launch().argv)
    assert boot["--bootstrap"] == "n1=127.0.0.1:20001" and "--join" not in boot
    assert c.bootstrap_launch().instance_id == "managers-n1-1"
    assert c.default_worker_specs()[0].template.ports == {"port": 20201}


def test_up_refuses_busy_ports_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("up", "--dir", str(tmp_path / "qc"), "--nodes", "1", "--base-port", str(port), "--timeout", "1")
    assert r.exit_code == 1
    assert "ports already in use" in r.stderr and str(port) in r.stderr
    assert not list((tmp_path / "qc" / "instances" / "instances").glob("*.json"))


def test_up_rejects_bad_settings_and_bad_spec_files(tmp_path: Path) -> None:
    r = cli("up", "--dir", str(tmp_path / "qc"), "--base-port", "65500")
    assert r.exit_code == 2 and "leaves no room" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cluster.json").write_text("{not json")
    r = cli("down", "--dir", str(tmp_path / "bad"))
    assert r.exit_code == 2 and "not a quorate cluster file" in r.stderr
    spec = tmp_path / "groups.yaml"
    spec.write_text("id: web\nsize: -1\ntemplate: {command: x}\n")
    r = cli("up", "--dir", str(tmp_path / "qc2"), "--spec", str(spec))
    assert r.exit_code == 2 and "size" in r.stderr and "nothing was started" in r.stderr
    spec.write_text("id: managers\nlogical_ids: [a]\ntemplate: {command: x}\n")
    r = cli("up", "--dir", str(tmp_path / "qc3"), "--spec", str(spec))
    assert r.exit_code == 2 and "managers group is set by quorate up" in r.stderr
    assert not (tmp_path / "qc2" / "instances").exists() and not (tmp_path / "qc3" / "instances").exists()


def test_down_without_a_cluster_is_a_no_op(tmp_path: Path) -> None:
    r = cli("down", "--dir", str(tmp_path / "none"))
    assert r.exit_code == 0 and "nothing to stop" in r.stdout


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster.new(tmp_path / "qc", managers=2, base_port=20001)
    c.save()
    yield c
    provider = c.provider()

    async def clean() -> None:
        for inst in await provider.list(None):
            await provider.destroy(inst.id, provider.fencing_term())

    asyncio.run(clean())


def _launch(group: str, slot: str, state_path: str | None = None) -> LaunchSpec:
    return LaunchSpec(f"{group}-{slot}-1", group, slot if group == "managers" else None, slot, SLEEP,
                      state_path=state_path)


def test_down_stops_managers_for_a_restart_in_place_and_destroys_workers(cluster: LocalCluster) -> None:
    data = cluster.node_dir("n1") / "data"
    data.mkdir(parents=True)
    (data / "wal").write_text("x")
    provider = ProcessProvider(cluster.provider_dir)

    async def create() -> None:
        await provider.create(_launch("managers", "n1", str(data)), 3)
        await provider.create(_launch("workers", "0"), 3)

    asyncio.run(create())
    outcome = stop_cluster(cluster)
    assert outcome["managers-n1-1"].startswith("stopped") and outcome["workers-0-1"] == "destroyed"
    left = asyncio.run(provider.list(None))
    assert [(i.id, i.state) for i in left] == [("managers-n1-1", InstanceState.TERMINATED)]
    assert provider.state_intact(left[0])  # so the next `up` restarts it in place
    assert stop_cluster(cluster) == {}  # nothing runs any more


def test_up_on_a_cluster_whose_manager_lost_its_data_leaves_it_to_the_cluster(cluster: LocalCluster) -> None:
    provider = ProcessProvider(cluster.provider_dir)
    gone = str(cluster.node_dir("n2") / "data")
    asyncio.run(provider.create(_launch("managers", "n2", gone), 1))
    asyncio.run(provider.stop("managers-n2-1"))
    assert "no data to restart from" in start_managers(cluster)["n2"]


def test_python_dash_m_quorate_works() -> None:
    r = subprocess.run([sys.executable, "-m", "quorate", "kv", "--help"], capture_output=True, timeout=WAIT * 3)
    assert r.returncode == 0 and b"watch" in r.stdout
