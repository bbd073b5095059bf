"""``modelobs load``: turns the command's options into a scenario, runs it, prints the summary."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ..flags.client import FaultFlags
from ..settings import get_settings
from .flag_driven import FlagDriven
from .runner import print_summary, run_load
from .scenarios import SCENARIOS


def run_command(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 2 bad options, 130 interrupted."""
    if args.scenario not in SCENARIOS:
        print(
            f"unknown scenario {args.scenario!r}; choose from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    options: dict[str, object] = {"path": args.path}
    if args.scenario in ("gradual-drift", "sudden-shift"):
        options["features"] = tuple(f.strip() for f in args.features.split(",") if f.strip())
        options["shift_sd"] = args.shift_sd
    if args.scenario == "gradual-drift":
        options["ramp_s"] = args.ramp
    if args.scenario in ("sudden-shift", "label-shift", "bad-inputs"):
        options["at_s"] = args.at
    if args.scenario == "label-shift":
        options["feedback_path"] = args.path.replace("predict", "feedback")
    try:
        scenario = SCENARIOS[args.scenario](**options)
    except ValueError as exc:
        print(f"modelobs load: {exc}", file=sys.stderr)
        return 2
    flags_file = get_settings().flags_file
    flags = FaultFlags(flags_file, get_settings().flags_poll_ms) if flags_file else None
    if flags is not None:
        # feature-shift / label-shift act here, on the traffic itself.
        scenario = FlagDriven(scenario, flags)  # type: ignore[assignment]
    try:
        result = asyncio.run(
            run_load(
                args.url,
                scenario,
                rps=args.rps,
                duration_s=args.duration,
                total=args.requests,
                concurrency=args.concurrency,
                api_key=os.environ.get("MODELOBS_API_KEY"),
                show_progress=not args.quiet,
            )
        )
    except KeyboardInterrupt:
        return 130
    finally:
        if flags is not None:
            flags.close()
    print_summary(result)
    return 0
