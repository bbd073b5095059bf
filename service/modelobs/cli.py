"""The ``modelobs`` command: train, serve, load, and drill (flag, trace, drill)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .settings import get_settings

DEFAULT_PORTS = {"model": 8000, "gateway": 8080, "monitor": 8002}


def _train(args: argparse.Namespace) -> int:
    from .model.train import train_and_save

    directory = Path(args.model_dir or get_settings().model_dir)
    bundle = train_and_save(directory, name=get_settings().model_name, version=args.version)
    print(
        f"trained {bundle.schema.name} {bundle.schema.version} into {directory}:",
        bundle.schema.metrics,
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .apps.slow_clients import server_options
    from .workers import WorkersRefused, prepare_workers

    if args.app == "gateway" and args.model_url:
        os.environ["MODELOBS_MODEL_URLS"] = args.model_url
    if args.app == "monitor" and args.workers != 1:
        print(
            "modelobs serve monitor: one process computes drift and quality over every "
            "replica's predictions; --workers must be 1",
            file=sys.stderr,
        )
        return 2
    get_settings.cache_clear()
    try:
        notes = prepare_workers(args.app, args.workers, get_settings())
    except WorkersRefused as refused:
        print(f"modelobs serve: {refused}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"modelobs serve: {note}", file=sys.stderr)
    target = {
        "model": "modelobs.apps.model_service:create_app",
        "gateway": "modelobs.apps.gateway:create_app",
        "monitor": "modelobs.apps.monitor:create_app",
    }[args.app]
    # Logging is ours (JSON + OTLP); uvicorn's own records are routed into it.
    uvicorn.run(
        target,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=args.access_log,
        **server_options(get_settings()),  # timeouts for slow clients
    )
    return 0


def _load(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the server runs without the load generator.
    try:
        from .loadgen.command import run_command
    except ModuleNotFoundError as missing:
        if not (missing.name or "").startswith(f"{__package__}.loadgen"):
            raise
        print(
            "modelobs load: the load generator is not installed here "
            "(the service image leaves it out; use the loadgen image)",
            file=sys.stderr,
        )
        return 2
    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelobs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the model and save it with its schema")
    train.add_argument("--model-dir", help="where to save (default: MODELOBS_MODEL_DIR)")
    train.add_argument("--version", default="1.0.0", help="model version to record")
    train.set_defaults(run=_train)

    serve = commands.add_parser("serve", help="run the model service, the gateway or the monitor")
    serve.add_argument("app", choices=list(DEFAULT_PORTS))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help="default 8000 (model), 8080 (gateway), 8002 (monitor)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port, each with its own telemetry (see README)",
    )
    serve.add_argument(
        "--model-url",
        help="gateway only: one model-service URL or several, comma-separated "
        "(default MODELOBS_MODEL_URLS, else MODELOBS_MODEL_URL)",
    )
    serve.add_argument("--access-log", action="store_true", help="also log every request")
    serve.set_defaults(run=_serve)

    load = commands.add_parser("load", help="send traffic and summarise the answers")
    load.add_argument("--url", default="http://127.0.0.1:8080", help="gateway base URL")
    load.add_argument("--path", default="/v1/predict")
    load.add_argument("--rps", type=float, default=20.0, help="requests per second")
    load.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds; 0 with --requests 0 runs until stopped",
    )
    load.add_argument(
        "--requests", type=int, default=0, help="stop after this many (overrides --duration)"
    )
    load.add_argument("--concurrency", type=int, default=64)
    load.add_argument(
        "--scenario",
        default="steady",
        help="steady, bad-inputs, gradual-drift, sudden-shift, label-shift",
    )
    load.add_argument(
        "--features",
        default="monthly_charges,tenure_months",
        help="numeric features to shift (drift scenarios)",
    )
    load.add_argument("--shift-sd", type=float, default=1.0, help="shift in standard deviations")
    load.add_argument(
        "--ramp", type=float, default=60.0, help="gradual-drift: seconds to full shift"
    )
    load.add_argument(
        "--at",
        type=float,
        default=30.0,
        help="sudden-shift / label-shift / bad-inputs: seconds until the change",
    )
    load.add_argument("--quiet", action="store_true", help="no progress display")
    load.set_defaults(run=_load)

    from .drills.commands import add_commands

    add_commands(commands)  # flag, trace, drill
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve" and args.port is None:
        args.port = DEFAULT_PORTS[args.app]
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
