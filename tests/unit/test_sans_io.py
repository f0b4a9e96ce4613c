"""The consensus core, the KV apply path and (later) manager planning stay
free of IO, wall-clock time and global randomness: they must replay exactly
under the simulator. This scan keeps them so."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "quorate"
FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "selectors", "subprocess"}
PURE_PACKAGES = ["raft", "kv"]


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_packages_import_no_io(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no sources found under {package}"
    bad = {str(f.relative_to(SRC)): sorted(_imports(f) & FORBIDDEN) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"IO or global-randomness imports in pure code: {bad}"


def test_scanner_detects_forbidden_import(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("import os\nfrom time import monotonic\nif True:\n    import random\n")
    assert _imports(f) & FORBIDDEN == {"os", "time", "random"}
