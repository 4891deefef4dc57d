"""The import boundaries from DESIGN.md, checked on the source of every module."""

from __future__ import annotations

import ast
import json
import sys
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


# DAG files: the standard library and `airflow.sdk` at module level (parsing stays cheap:
# the dag-processor re-parses every file every 30 s); inside tasks, the three packages too.
DAG_ANYWHERE = {"airflow", "connectors", "exchange", "ledger", *sys.stdlib_module_names}
DAG_FILES = sorted((ROOT / "dags").rglob("*.py"))


def top_level_imports(path: Path) -> set[str]:
    """Modules imported when the file is imported (not inside a function or class)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    names: set[str] = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        else:
            pending.extend(ast.iter_child_nodes(node))
    return names


def allowed_at_top(module: str) -> bool:
    if module == "__future__" or module.split(".")[0] in sys.stdlib_module_names:
        return True
    return module == "airflow.sdk" or module.startswith("airflow.sdk.")


def test_there_are_dag_files() -> None:
    assert DAG_FILES, "dags/ holds no DAG file"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_only_the_sdk_and_the_stdlib_at_top_level(path: Path) -> None:
    assert sorted(m for m in top_level_imports(path) if not allowed_at_top(m)) == []


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_tasks_import_only_airflow_and_the_three_packages(path: Path) -> None:
    assert sorted(imported_roots(path) - DAG_ANYWHERE) == []


def test_the_dag_checker_tells_top_level_from_task_imports(tmp_path: Path) -> None:
    module = tmp_path / "d.py"
    module.write_text(
        "import os\nfrom airflow.sdk import dag\nif True:\n    import duckdb\n"
        "def task():\n    import exchange.publish\n"
    )
    assert top_level_imports(module) == {"os", "airflow.sdk", "duckdb"}
    assert not allowed_at_top("duckdb") and not allowed_at_top("airflow.models")
    assert imported_roots(module) - DAG_ANYWHERE == {"duckdb"}


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def task():\n    from airflow.sdk import dag\n    import exchange.cli\n")
    assert imported_roots(module) == {"airflow", "exchange"}


@pytest.mark.parametrize("path", sorted((ROOT / "schemas").rglob("*.json")), ids=str)
def test_every_contract_file_loads(path: Path) -> None:
    assert isinstance(json.loads(path.read_text("utf-8")), dict)
