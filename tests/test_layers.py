"""The floors of docs/architecture.md: imports run one way, from the top down.

Read from the source (every ``import``, at any depth, type-checking ones included), so a
lazy import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Each floor, the folder that holds it, and the floors it may import (besides itself).
FLOORS: dict[str, tuple[str, set[str]]] = {
    "core": ("musicflow/core", set()),
    "terminal": ("musicflow/terminal", {"core"}),
    "adapters": ("musicflow/adapters", {"core", "terminal"}),
    "pages": ("musicflow/pages", {"core", "adapters"}),
    "models": ("models", {"core", "terminal", "adapters"}),
    "tasks": ("tasks", {"core", "terminal", "adapters", "pages", "models"}),
    "flows": ("flows", {"core", "terminal", "adapters", "pages", "models", "tasks"}),
}


def floor_of(module: str) -> str:
    """``musicflow.core.roll`` → ``core``; the package itself (``__version__``) → ``base``,
    below every floor."""
    parts = module.split(".")
    return "base" if len(parts) == 1 or parts[1] == "__version__" else parts[1]


def imported(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "musicflow":
                out += [(node.lineno, f"musicflow.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(line, m) for line, m in out if m.split(".")[0] == "musicflow"]


@pytest.mark.parametrize("floor", FLOORS)
def test_a_floor_imports_only_the_floors_below_it(floor: str) -> None:
    folder, allowed = FLOORS[floor]
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    wrong = []
    for path in files:
        for line, module in imported(path):
            if floor_of(module) not in allowed | {floor, "base"}:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_models_and_pages_do_not_know_each_other() -> None:
    for floor, other in (("models", "pages"), ("pages", "models")):
        folder = ROOT / FLOORS[floor][0]
        for path in folder.rglob("*.py"):
            assert all(floor_of(m) != other for _, m in imported(path)), path


def test_the_checker_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from musicflow.tasks.train import train\n")
    assert imported(module) == [(2, "musicflow.tasks.train")]
    assert floor_of("musicflow.tasks.train") == "tasks"
    assert "tasks" not in FLOORS["core"][1]
