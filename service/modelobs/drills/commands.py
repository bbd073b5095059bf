"""``modelobs flag``, ``modelobs trace`` and ``modelobs drill``: registered on the main parser
by ``add_commands`` (cli.py stays a list of commands)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from ..flags import store
from ..flags.definitions import BY_KEY
from ..settings import get_settings
from . import backends as api
from .backends import Backends
from .scenarios import SCENARIOS
from .waterfall import render_logs, render_trace

# `make up`'s flag file (deploy/native/stack.toml: {run_dir}/flags.json, run dir var/run).
NATIVE_FLAGS_FILE = Path("var/run/flags.json")


def _flags_file(args: argparse.Namespace) -> Path:
    return Path(args.flags_file or get_settings().flags_file or NATIVE_FLAGS_FILE)


def _backends(args: argparse.Namespace) -> Backends:
    """The URLs the command was given; the native defaults for those it takes none of."""
    defaults = Backends()
    given = {
        name: getattr(args, name, None) or getattr(defaults, name)
        for name in ("prometheus", "alertmanager", "jaeger", "logs")
    }
    return Backends(**given, webhook=getattr(args, "webhook", None) or None)


def _flag(args: argparse.Namespace) -> int:
    path = _flags_file(args)
    try:
        if args.key:
            store.switch(path, args.key, args.variant)
    except store.UnknownFlag as exc:
        print(f"modelobs flag: {exc}", file=sys.stderr)
        return 2
    for key, variant in store.variants(path).items():
        choices = "/".join(BY_KEY[key].variants)
        print(f"  {key:<18} {variant:<8} ({choices}) {BY_KEY[key].description}")
    print(f"flag file: {path}")
    return 0


def _trace(args: argparse.Namespace) -> int:
    trace_id = args.trace_id.strip().lower()
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        print("modelobs trace: a trace id is 32 hex digits", file=sys.stderr)
        return 2
    b = _backends(args)
    try:
        spans = api.jaeger_trace(b.jaeger, trace_id)
        records = api.logs_query(b.logs, api.trace_logs_query(trace_id))
    except httpx.HTTPError as exc:
        print(f"modelobs trace: {exc}", file=sys.stderr)
        return 1
    for line in render_trace(trace_id, spans):
        print(line)
    print(f"logs ({len(records)} records, LogsQL {api.trace_logs_query(trace_id)}):")
    for line in render_logs(records):
        print(line)
    return 0 if spans else 1


def _drill(args: argparse.Namespace) -> int:
    from .runner import run_drill

    if args.scenario not in SCENARIOS:
        print(
            f"modelobs drill: unknown scenario {args.scenario!r}; "
            f"choose from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    report = run_drill(
        SCENARIOS[args.scenario],
        _backends(args),
        _flags_file(args),
        fire_timeout_s=args.fire_timeout,
        resolve_timeout_s=args.resolve_timeout,
        say=lambda line: print(line, flush=True),
        switch_off=not args.keep_on,
    )
    complete = report.alert is not None and report.trace_id is not None
    if args.keep_on:
        return 0 if complete else 1
    return 0 if complete and report.resolved else 1


def _stack_options(parser: argparse.ArgumentParser, *names: str) -> None:
    defaults = Backends()
    for name in names:
        parser.add_argument(
            f"--{name}", default=getattr(defaults, name), help=f"{name} URL (native default)"
        )


def add_commands(commands: argparse._SubParsersAction) -> None:
    flag = commands.add_parser("flag", help="show the fault flags, or switch one")
    flag.add_argument("key", nargs="?", choices=list(BY_KEY))
    flag.add_argument("variant", nargs="?", default="on", help="default on; off switches off")
    flag.add_argument("--flags-file", help="default MODELOBS_FLAGS_FILE, else var/run/flags.json")
    flag.set_defaults(run=_flag)

    trace = commands.add_parser("trace", help="draw a trace from Jaeger, with its logs")
    trace.add_argument("trace_id")
    _stack_options(trace, "jaeger", "logs")
    trace.set_defaults(run=_trace)

    drill = commands.add_parser(
        "drill",
        help="switch a fault on and walk from its alert to the trace and logs",
        description="scenarios: "
        + "; ".join(f"{s.name} ({s.flag}={s.variant} -> {s.alert})" for s in SCENARIOS.values()),
    )
    drill.add_argument("scenario", help=", ".join(SCENARIOS))
    drill.add_argument("--flags-file", help="default MODELOBS_FLAGS_FILE, else var/run/flags.json")
    _stack_options(drill, "prometheus", "alertmanager", "jaeger", "logs", "webhook")
    drill.add_argument("--fire-timeout", type=float, default=900.0, help="seconds (default 900)")
    drill.add_argument("--resolve-timeout", type=float, default=900.0)
    drill.add_argument("--keep-on", action="store_true", help="leave the flag on at the end")
    drill.set_defaults(run=_drill)
