"""The import boundaries from DESIGN.md, checked on the source of every module."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "connectors": {"airflow", "exchange", "ledger"},
    "ledger": {"airflow", "exchange", "connectors"},
    "exchange": {"airflow"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):  # walks function bodies too: lazy imports count
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_inside_their_boundary(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    broken = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files
    }
    assert {f: bad for f, bad in broken.items() if bad} == {}


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def task():\n    from airflow.sdk import dag\n    import exchange.cli\n")
    assert imported_roots(module) == {"airflow", "exchange"}


@pytest.mark.parametrize("path", sorted((ROOT / "schemas").rglob("*.json")), ids=str)
def test_every_contract_file_loads(path: Path) -> None:
    assert isinstance(json.loads(path.read_text("utf-8")), dict)
