"""Instructions a model request executes, bare against full telemetry, counted by callgrind:
the one cost figure a shared, noisy host does not move.

    apt-get install valgrind
    python bench/request_instructions.py                  # ~12 minutes: Python starts slowly there
    python bench/request_instructions.py --requests 200

Each setup is its own process under ``valgrind --tool=callgrind``, collecting only inside
``itertools.starmap``'s C iterator (``--toggle-collect=starmap_next``), which drives the
measured requests and nothing else: start-up, imports, model training and the warm-up are
outside the count. A request is the whole model service app called through ASGI, no
sockets (bench/telemetry_profile.py's setup: real providers, the batch processors' queues,
spans and log records encoded as they are queued); the batch processors' export threads
never run (an hour's schedule delay), so their joining and sending is not counted. The
gateway setups count ``POST /v1/predict`` through the gateway app, bare or full, in front of
a bare model service over httpx's ASGI transport: their difference is the gateway's own
telemetry (its server span, its client span with the trace context it sends, and their two
duration histograms).

Instructions are not time: a request's instructions ran at about 4 per nanosecond here, and
cache misses, which callgrind does not count, differ between setups. Read the ratio as the
request path's work, beside bench/telemetry_overhead.py's throughput, which is the figure
users get.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# setup → (the app measured, telemetry on, MODELOBS_STDOUT_PREDICTIONS)
SETUPS: dict[str, tuple[str, bool, bool]] = {
    "bare": ("model", False, False),
    "full": ("model", True, False),
    "full, every record also on stdout": ("model", True, True),
    "gateway bare": ("gateway", False, False),
    "gateway full": ("gateway", True, False),
}
# A setup's ratio is taken against the bare setup of its app.
BARE_OF = {"model": "bare", "gateway": "gateway bare"}
WARM_UP = 30


def gateway_in_front(profile: Any, model: Any, enabled: bool) -> tuple[Any, Any]:
    """The gateway app (with or without telemetry) forwarding over ASGI to ``model``, a bare
    model service: only the gateway's own telemetry differs between its two setups. The model
    app runs in an empty OpenTelemetry context, so its stdout line does not pick up the
    gateway's client span (which no real model service process could see), and httpx's ASGI
    transport is told sniffio is absent once (it would search for it on every request)."""
    import httpx
    from opentelemetry import context as otel_context

    from modelobs.apps import gateway
    from modelobs.settings import Settings

    async def detached(scope: Any, receive: Any, send: Any) -> None:
        token = otel_context.attach(otel_context.Context())
        try:
            await model.app(scope, receive, send)
        finally:
            otel_context.detach(token)

    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
    telemetry, _, _ = profile.make_telemetry("full" if enabled else "bare")
    app = gateway.create_app(
        settings=Settings(model_url="http://model"),
        telemetry=telemetry,
        transport=httpx.ASGITransport(app=detached),
    )
    return app, app.router.lifespan_context(app)


def inside(setup: str, requests: int) -> None:
    """Runs under callgrind: ``requests`` POST /predict, driven from inside starmap."""
    sys.path.insert(0, str(ROOT / "bench"))
    import telemetry_profile as profile  # the environment it sets must come first

    kind, enabled, on_stdout = SETUPS[setup]
    workdir = Path(tempfile.mkdtemp(prefix="modelobs-instructions-"))
    model = profile.Setup("full" if enabled and kind == "model" else "bare", workdir)
    app, lifespans = model.app, [model.lifespan]
    if kind == "gateway":
        app, lifespan = gateway_in_front(profile, model, enabled)
        lifespans.append(lifespan)
    path = "/predict" if kind == "model" else "/v1/predict"
    devnull = open(os.devnull, "w")  # noqa: SIM115
    loop = asyncio.new_event_loop()
    profile.configure_logging(stream=devnull, per_request_on_stdout=on_stdout)
    for lifespan in lifespans:
        loop.run_until_complete(lifespan.__aenter__())
    profile.configure_logging(stream=devnull, per_request_on_stdout=on_stdout)

    def one(_: int) -> None:
        # No request awaits anything real here, so one send() runs it to the end.
        request = profile.one_request(app, profile.BODY, path)
        try:
            request.send(None)
        except StopIteration as done:
            if done.value != 200:
                raise RuntimeError(f"{setup}: POST {path} answered {done.value}") from None
            return
        raise RuntimeError(f"{setup}: a request suspended; it would be counted in part")

    async def measure() -> None:  # a task: the app's timeouts need one
        list(map(one, range(WARM_UP)))
        list(itertools.starmap(one, ((i,) for i in range(requests))))

    loop.run_until_complete(measure())
    os._exit(0)  # the count is taken; shutting the stack down under valgrind is minutes


def count(setup: str, requests: int, out_dir: Path) -> int:
    """Instructions per request of one setup, from its own valgrind run."""
    log = out_dir / f"{re.sub(r'[^a-z]+', '-', setup)}.log"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=starmap_next",
            f"--callgrind-out-file={log.with_suffix('.out')}",
            sys.executable,
            __file__,
            "--inside",
            setup,
            "--requests",
            str(requests),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    log.write_text(done.stdout + done.stderr)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{setup}: valgrind failed (exit {done.returncode}); see {log}")
    collected = int(found.group(1))
    if collected == 0:
        raise RuntimeError(f"{setup}: nothing collected: is libpython built with symbols?")
    return collected // requests


def markdown_table(figures: dict) -> str:
    """The table bench/README.md quotes, from a results file's figures (a test holds the
    README to the committed results through this function)."""
    lines = [
        "| setup | instructions per request | of bare | above bare |",
        "|---|---:|---:|---:|",
    ]
    for name, row in figures["setups"].items():
        lines.append(
            f"| {name} | {row['instructions_per_request'] / 1000:,.0f}k | {row['of_bare']:.3f} "
            f"| {row['above_bare'] / 1000:+,.0f}k |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--inside", choices=list(SETUPS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--table", action="store_true", help="print the README table of the committed results"
    )
    args = parser.parse_args()
    if args.table:
        results = ROOT / "bench" / "results" / "request_instructions.json"
        print(markdown_table(json.loads(results.read_text())))
        return 0
    if args.inside:
        inside(args.inside, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind not found: apt-get install valgrind")
    sys.path.insert(0, str(ROOT / "bench"))
    from results_file import write_results
    from telemetry_overhead import git_commit

    out_dir = Path(tempfile.mkdtemp(prefix="modelobs-callgrind-"))
    print(f"{len(SETUPS)} setups under callgrind, two at a time; logs in {out_dir}", flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(
            zip(SETUPS, pool.map(lambda s: count(s, args.requests, out_dir), SETUPS), strict=True)
        )
    table = {}
    for name, n in counts.items():
        bare = counts[BARE_OF[SETUPS[name][0]]]
        table[name] = {"instructions_per_request": n, "of_bare": bare / n, "above_bare": n - bare}
    for name, row in table.items():
        print(
            f"{name:<36}{row['instructions_per_request']:>12,} instructions"
            f"{row['of_bare']:>8.3f} of bare{row['above_bare']:>+12,}"
        )
    out = write_results(
        "request_instructions",
        {"commit": git_commit(), "requests": args.requests, "setups": table},
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
