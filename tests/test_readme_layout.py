"""The README's Layout table matches the tree: every path it names exists, and every package
of service/modelobs and every folder of deploy/ and the top level is named in it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Top-level entries that are not part of the layout a reader walks.
NOT_LAYOUT = {".ci", ".git", ".venv", "var", "service", "deploy", "tests"}


def _layout_rows() -> list[str]:
    section = README.read_text().split("## Layout", 1)[1]
    return [line for line in section.splitlines() if line.startswith("| `")]


def _named_paths() -> set[str]:
    """Every backticked path in the first column, with a sibling name (``settings.py`` after
    ``service/modelobs/cli.py``) taken relative to the previous one's folder."""
    paths: set[str] = set()
    for row in _layout_rows():
        first_column = row.split("|")[1]
        parent = ""
        for name in re.findall(r"`([^`]+)`", first_column):
            path = name if "/" in name.rstrip("/") or not parent else parent + name
            parent = path.rstrip("/").rpartition("/")[0] + "/"
            paths.add(path.rstrip("/"))
    return paths


def test_every_path_in_the_layout_table_exists() -> None:
    missing = sorted(p for p in _named_paths() if not (REPO / p).exists())
    assert not missing, f"README Layout names paths that do not exist: {missing}"


def test_every_package_and_component_folder_is_in_the_layout_table() -> None:
    named = _named_paths()
    folders = [
        *(p for p in (REPO / "service" / "modelobs").iterdir() if (p / "__init__.py").exists()),
        *(p for p in (REPO / "deploy").iterdir() if p.is_dir()),
        *(p for p in REPO.iterdir() if p.is_dir() and p.name not in NOT_LAYOUT),
    ]
    unnamed = sorted(
        str(p.relative_to(REPO))
        for p in folders
        if not p.name.startswith(".") and str(p.relative_to(REPO)) not in named
    )
    assert not unnamed, f"folders missing from the README Layout table: {unnamed}"
