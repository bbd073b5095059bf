"""The README's Reliability table names real tests: every row's `path::name` is a test
function in that file, so a guarantee never points at a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rows() -> list[tuple[str, str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] and not set(cells[0]) <= {"-"} and cells[0] != "guarantee":
            rows.append((cells[0], cells[1]))
    return rows


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_guarantee_names_a_test_that_exists() -> None:
    rows = _rows()
    assert len(rows) >= 9, rows  # the fault and soak guarantees at least
    missing = []
    for guarantee, cell in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", cell)
        if not refs:
            missing.append(f"{guarantee!r}: no `tests/...py::test_name` in {cell!r}")
        for path, name in refs:
            file = REPO / path
            if not file.is_file() or name not in _test_functions(file):
                missing.append(f"{path}::{name}")
    assert not missing, "README Reliability names tests that do not exist:\n" + "\n".join(missing)
