"""``quorate up`` / ``down`` without real agents: the directory layout,
refusing busy ports before anything starts, and stopping only processes
that are still our agents (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi import WAIT
from typer.testing import CliRunner, Result

from quorate.cli.local import LocalCluster, is_agent, running_pid, stop_nodes
from quorate.cli.main import app


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_layout_and_agent_command(tmp_path: Path) -> None:
    c = LocalCluster.new(tmp_path / "qc", nodes=3, base_port=20001)
    assert [(n.id, n.peer_port, n.api_port) for n in c.nodes] == [
        ("n1", 20001, 20101), ("n2", 20002, 20102), ("n3", 20003, 20103)]
    c.save()
    assert (tmp_path / "qc" / "endpoints").read_text().splitlines() == [
        "http://127.0.0.1:20101", "http://127.0.0.1:20102", "http://127.0.0.1:20103"]
    again = LocalCluster.load(tmp_path / "qc")
    assert again == c  # a second `up` restarts the same cluster
    argv = c.agent_argv(c.nodes[1])
    assert argv[:5] == [sys.executable, "-P", "-m", "quorate", "agent"]
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags == {"--id": "n2", "--data-dir": str(tmp_path / "qc" / "nodes" / "n2" / "data"),
                     "--peer-addr": "127.0.0.1:20002", "--api-addr": "127.0.0.1:20102",
                     "--bootstrap": "n1=127.0.0.1:20001,n2=127.0.0.1:20002,n3=127.0.0.1:20003",
                     "--cluster-id": c.cluster_id,
                     "--backup-dir": str(tmp_path / "qc" / "nodes" / "n2" / "backup")}


def test_up_refuses_busy_ports_and_changes_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("up", "--dir", str(tmp_path / "qc"), "--nodes", "1", "--base-port", str(port), "--timeout", "1")
    assert r.exit_code == 1
    assert "ports already in use" in r.stderr and str(port) in r.stderr
    assert not (tmp_path / "qc").exists()


def test_up_rejects_bad_settings(tmp_path: Path) -> None:
    r = cli("up", "--dir", str(tmp_path / "qc"), "--base-port", "65500")
    assert r.exit_code == 2 and "leaves no room" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cluster.json").write_text("{not json")
    r = cli("down", "--dir", str(tmp_path / "bad"))
    assert r.exit_code == 2 and "not a quorate cluster file" in r.stderr


def test_down_without_a_cluster_is_a_no_op(tmp_path: Path) -> None:
    r = cli("down", "--dir", str(tmp_path / "none"))
    assert r.exit_code == 0 and "nothing to stop" in r.stdout


def test_down_never_signals_a_pid_that_is_not_our_agent(tmp_path: Path) -> None:
    c = LocalCluster.new(tmp_path / "qc", nodes=1, base_port=20001)
    c.save()
    c.pid_file(c.nodes[0]).parent.mkdir(parents=True)
    c.pid_file(c.nodes[0]).write_text(f"{os.getpid()}\n")  # a recycled pid: this test process
    assert not is_agent(os.getpid(), c.data_dir(c.nodes[0]))
    r = cli("down", "--dir", str(c.dir))
    assert r.exit_code == 0 and "n1: not running" in r.stdout
    assert not c.pid_file(c.nodes[0]).exists()


def _fake_agent(c: LocalCluster, node_index: int, ignore_term: bool) -> subprocess.Popen[bytes]:
    """A process whose command line looks like this node's agent."""
    node = c.nodes[node_index]
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "quorate", "agent", "--data-dir", str(c.data_dir(node))],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(WAIT), "fake agent did not start"
    assert proc.stdout.readline() == b"ready\n"
    c.pid_file(node).parent.mkdir(parents=True, exist_ok=True)
    c.pid_file(node).write_text(f"{proc.pid}\n")
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(WAIT)
        assert p.stdout is not None
        p.stdout.close()


def test_stop_terminates_agents(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    c = LocalCluster.new(tmp_path / "qc", nodes=2, base_port=20001)
    c.save()
    procs.append(_fake_agent(c, 0, ignore_term=False))
    assert running_pid(c, c.nodes[0]) == procs[0].pid
    assert running_pid(c, c.nodes[1]) is None
    assert stop_nodes(c, timeout=WAIT) == {"n1": "stopped", "n2": "not running"}
    with pytest.raises(ProcessLookupError):  # gone, and reaped by stop_nodes (our child here)
        os.kill(procs[0].pid, 0)
    assert not any(c.pid_file(n).exists() for n in c.nodes)


def test_stop_kills_an_agent_that_ignores_sigterm(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    c = LocalCluster.new(tmp_path / "qc", nodes=1, base_port=20001)
    c.save()
    procs.append(_fake_agent(c, 0, ignore_term=True))
    assert stop_nodes(c, timeout=0.2, kill_after=WAIT) == {"n1": "killed (did not stop on SIGTERM)"}
    with pytest.raises(ProcessLookupError):
        os.kill(procs[0].pid, 0)


def test_python_dash_m_quorate_works() -> None:
    r = subprocess.run([sys.executable, "-m", "quorate", "kv", "--help"], capture_output=True, timeout=WAIT * 3)
    assert r.returncode == 0 and b"watch" in r.stdout
