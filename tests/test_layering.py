"""The three planes keep their dependency rules (docs/DESIGN.md): checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RULES = {
    "timing plane": (["fedsimenv/sim", "channels"], {"gymnasium", "torch"}),
    "learning plane": (["fedsimenv/learning"], {"gymnasium", "simpy"}),
}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("plane", sorted(RULES))
def test_plane_does_not_import_forbidden_packages(plane: str) -> None:
    folders, forbidden = RULES[plane]
    files = [f for folder in folders for f in (ROOT / folder).rglob("*.py")]
    assert files
    for file in files:
        bad = _imported_roots(file) & forbidden
        assert not bad, f"{file.relative_to(ROOT)} ({plane}) imports {sorted(bad)}"
