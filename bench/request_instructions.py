"""Instructions a model request executes, bare against full telemetry, counted by callgrind:
the one cost figure a shared, noisy host does not move.

    apt-get install valgrind
    python bench/request_instructions.py                  # ~8 minutes: Python starts slowly there
    python bench/request_instructions.py --requests 200

Each setup is its own process under ``valgrind --tool=callgrind``, collecting only inside
``itertools.starmap``'s C iterator (``--toggle-collect=starmap_next``), which drives the
measured requests and nothing else: start-up, imports, model training and the warm-up are
outside the count. A request is the whole model service app called through ASGI, no
sockets (bench/telemetry_profile.py's setup: real providers, the batch processors' queues,
spans and log records encoded as they are queued); the batch processors' export threads
never run (an hour's schedule delay), so their joining and sending is not counted.

Instructions are not time: a request's instructions ran at about 4 per nanosecond here, and
cache misses, which callgrind does not count, differ between setups. Read the ratio as the
request path's work, beside bench/telemetry_overhead.py's throughput, which is the figure
users get.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# setup → (telemetry on, MODELOBS_STDOUT_PREDICTIONS)
SETUPS: dict[str, tuple[bool, bool]] = {
    "bare": (False, False),
    "full": (True, False),
    "full, every record also on stdout": (True, True),
}
WARM_UP = 30


def inside(setup: str, requests: int) -> None:
    """Runs under callgrind: ``requests`` POST /predict, driven from inside starmap."""
    sys.path.insert(0, str(ROOT / "bench"))
    import telemetry_profile as profile  # the environment it sets must come first

    enabled, on_stdout = SETUPS[setup]
    workdir = Path(tempfile.mkdtemp(prefix="modelobs-instructions-"))
    chosen = profile.Setup("full" if enabled else "bare", workdir)
    devnull = open(os.devnull, "w")  # noqa: SIM115
    loop = asyncio.new_event_loop()
    profile.configure_logging(stream=devnull, per_request_on_stdout=on_stdout)
    loop.run_until_complete(chosen.lifespan.__aenter__())
    profile.configure_logging(stream=devnull, per_request_on_stdout=on_stdout)

    def one(_: int) -> None:
        # No request awaits anything real here, so one send() runs it to the end.
        request = profile.request(chosen.app)
        try:
            request.send(None)
        except StopIteration as done:
            if done.value != 200:
                raise RuntimeError(f"{setup}: POST /predict answered {done.value}") from None
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--inside", choices=list(SETUPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    bare = counts["bare"]
    table = {
        name: {"instructions_per_request": n, "of_bare": bare / n, "above_bare": n - bare}
        for name, n in counts.items()
    }
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
