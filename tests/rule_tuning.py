"""Render a tuned copy of deploy/prometheus/rules/modelobs.yml for short-lived test stacks.

Production thresholds and ``for:`` durations make an alert wait 5-15 minutes; an end-to-end test
wants it in seconds. Instead of keeping a second, drifting rule file, render one from the real
rules with only three kinds of change:

* ``for:`` of every alert (``--for``) or of named alerts (``--for-alert NAME=DURATION``);
* the constant of a threshold recording rule ``modelobs:alert_threshold:<NAME>``
  (``--threshold NAME=VALUE``);
* the evaluation ``interval:`` of every group (``--interval``): the long-window groups are
  evaluated once a minute in production, which a short-lived stack may not want to wait for.
  Without it, each group keeps its own interval (or none, i.e. the global one);
* range selectors of one length in every expression (``--window 5m=30s``): an alert drill
  that switches a fault off should not wait five minutes for a ``[5m]`` rate to forget it.

Everything else (expressions, labels, annotations, recording rules) stays as it is.

    python tests/rule_tuning.py --out var/run/rules/modelobs.yml \
        --threshold http_p99_latency_seconds=0.2 --for 15s --interval 5s
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES_FILE = REPO / "deploy" / "prometheus" / "rules" / "modelobs.yml"
THRESHOLD_PREFIX = "modelobs:alert_threshold:"
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def _check_duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"not a Prometheus duration: {value!r}")
    return value


def tune_rules(
    *,
    for_all: str | None = None,
    overrides_for: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    interval: str | None = None,
    windows: Mapping[str, str] | None = None,
    source: Path = RULES_FILE,
) -> str:
    """Return the rule file at ``source`` as YAML text with the given overrides applied.

    Raises KeyError when an override names an alert or threshold that does not exist, so a
    renamed rule breaks the test that tunes it instead of silently testing nothing.
    """
    overrides_for = dict(overrides_for or {})
    thresholds = dict(thresholds or {})
    if for_all is not None:
        _check_duration(for_all)
    if interval is not None:
        _check_duration(interval)
    for value in overrides_for.values():
        _check_duration(value)
    windows = dict(windows or {})
    for old, new in windows.items():
        _check_duration(old)
        _check_duration(new)

    doc = yaml.safe_load(source.read_text())
    seen_alerts: set[str] = set()
    seen_thresholds: set[str] = set()
    for group in doc["groups"]:
        if interval is not None:
            group["interval"] = interval
        for rule in group["rules"]:
            for old, new in windows.items():
                rule["expr"] = rule["expr"].replace(f"[{old}]", f"[{new}]")
            if "alert" in rule:
                name = rule["alert"]
                seen_alerts.add(name)
                if name in overrides_for:
                    rule["for"] = overrides_for[name]
                elif for_all is not None:
                    rule["for"] = for_all
            elif rule.get("record", "").startswith(THRESHOLD_PREFIX):
                name = rule["record"][len(THRESHOLD_PREFIX) :]
                seen_thresholds.add(name)
                if name in thresholds:
                    rule["expr"] = f"vector({float(thresholds[name])!r})"

    unknown_alerts = set(overrides_for) - seen_alerts
    if unknown_alerts:
        raise KeyError(f"no such alert(s) in {source}: {sorted(unknown_alerts)}")
    unknown_thresholds = set(thresholds) - seen_thresholds
    if unknown_thresholds:
        raise KeyError(
            f"no such threshold(s) {sorted(unknown_thresholds)} in {source}; "
            f"known: {sorted(seen_thresholds)}"
        )
    return yaml.safe_dump(doc, sort_keys=False, width=200)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{what} takes NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="file to write the tuned rules to")
    parser.add_argument("--source", type=Path, default=RULES_FILE)
    parser.add_argument("--for", dest="for_all", help="for: of every alert, e.g. 15s")
    parser.add_argument("--for-alert", action="append", default=[], metavar="NAME=DURATION")
    parser.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--interval", help="evaluation interval of every group, e.g. 5s")
    parser.add_argument("--window", action="append", default=[], metavar="OLD=NEW")
    args = parser.parse_args(argv)
    try:
        thresholds = {k: float(v) for k, v in _pairs(args.threshold, "--threshold").items()}
        text = tune_rules(
            for_all=args.for_all,
            overrides_for=_pairs(args.for_alert, "--for-alert"),
            thresholds=thresholds,
            interval=args.interval,
            windows=_pairs(args.window, "--window"),
            source=args.source,
        )
    except (KeyError, ValueError) as exc:
        print(f"rule_tuning: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
