"""The flag file the services watch: created with every flag off, switched atomically.

A switch writes a new file beside the old one and renames it over it, so a watcher never
reads half a file; flagd's file provider notices the new modification time within its poll
interval and the next evaluation sees the new variant, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .definitions import BY_KEY, OFF, default_document


class UnknownFlag(ValueError):
    """A flag key or variant that definitions.py does not declare."""


def _write_atomically(path: Path, document: dict[str, Any], replace: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=2)
        if replace:
            os.replace(tmp, path)
        else:
            # Several services may start at once: the first one's file wins, and a flag
            # someone switched meanwhile is never overwritten.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def ensure(path: Path) -> None:
    """Create the flag file with every flag off, unless it exists."""
    if not path.exists():
        _write_atomically(path, default_document(), replace=False)


def read(path: Path) -> dict[str, Any]:
    ensure(path)
    return json.loads(path.read_text())


def variants(path: Path) -> dict[str, str]:
    """Each flag's current variant, as the file says."""
    flags = read(path)["flags"]
    return {key: flags.get(key, {}).get("defaultVariant", OFF) for key in BY_KEY}


def switch(path: Path, key: str, variant: str, value: dict[str, Any] | None = None) -> None:
    """Set ``key``'s variant (``off`` switches it off); the file keeps every other flag.

    ``value`` declares a variant of the operator's own (e.g. a 10 % error share for a test
    stack) under the name ``variant``; without it the variant must be a declared one."""
    definition = BY_KEY.get(key)
    if definition is None:
        raise UnknownFlag(f"unknown flag {key!r}; known: {', '.join(BY_KEY)}")
    if value is None and variant not in definition.variants:
        raise UnknownFlag(
            f"flag {key!r} has no variant {variant!r}; known: {', '.join(definition.variants)}"
        )
    document = read(path)
    fresh = default_document()["flags"][key]
    if value is not None:
        fresh["variants"] = {**fresh["variants"], variant: {**definition.off_value, **value}}
    document["flags"][key] = {**fresh, "defaultVariant": variant}
    _write_atomically(path, document)
