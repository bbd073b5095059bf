"""Per-request cost of reading a prediction body: pydantic's one-pass parse and validation
against the contract built from the model's schema, side by side with the hand-written
validator on ``json.loads`` it replaced (taken from git at --baseline-rev).

    python bench/validation.py           # ~20 s
    python bench/validation.py --quick   # ~5 s

Figures go to bench/results/validation.json; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelobs.apps.validation import RequestValidator
from modelobs.model.data import CLASSES, EXAMPLE_RECORD, FEATURES
from modelobs.model.schema import ModelSchema

ROOT = Path(__file__).resolve().parent.parent
# The last commit with the hand-written validator.
BASELINE_REV = "318fb3e"
BODIES = {
    "1 record": json.dumps({"record": EXAMPLE_RECORD}).encode(),
    "256 records": json.dumps({"records": [EXAMPLE_RECORD] * 256}).encode(),
}


def hand_written(rev: str) -> Callable[[ModelSchema, int], Any]:
    """The old RequestValidator class, loaded from git as a sibling of the new module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:service/modelobs/apps/validation.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "validation_before.py"
    path.write_text(source)
    name = "modelobs.apps.validation_before"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.RequestValidator  # type: ignore[no-any-return]


def calls_per_round(work: Callable[[], Any], seconds: float) -> int:
    return max(1, int(seconds / max(min(timeit.repeat(work, number=1, repeat=3)), 1e-7)))


def interleaved_us(works: dict[str, Callable[[], Any]], seconds: float) -> dict[str, float]:
    """Best per-call time of each over 7 rounds that alternate between them, so both see
    the same load on this shared machine; the best round is the least disturbed."""
    numbers = {name: calls_per_round(work, seconds) for name, work in works.items()}
    best = dict.fromkeys(works, float("inf"))
    for _ in range(7):
        for name, work in works.items():
            elapsed = timeit.timeit(work, number=numbers[name]) / numbers[name] * 1e6
            best[name] = min(best[name], elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/validation.json"
    )
    args = parser.parse_args()
    seconds = 0.1 if args.quick else 0.4

    schema = ModelSchema("churn-classifier", "bench", FEATURES, CLASSES)
    validator = RequestValidator(schema, 256)
    before = hand_written(args.baseline_rev)(schema, 256)
    rows = []
    for label, body in BODIES.items():
        assert validator.records(body) == before.records(json.loads(body))
        timed = interleaved_us(
            {
                "pydantic": lambda body=body: validator.records(body),
                "hand-written": lambda body=body: before.records(json.loads(body)),
            },
            seconds,
        )
        new, old = timed["pydantic"], timed["hand-written"]
        rows.append({"body": label, "bytes": len(body), "pydantic_us": new, "hand_written_us": old})
        print(f"{label:12} {len(body):6d} B   pydantic {new:8.1f} us   hand-written {old:8.1f} us")

    payload = {"python": platform.python_version(), "baseline_rev": args.baseline_rev, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
