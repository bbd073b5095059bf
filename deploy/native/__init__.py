"""The native modelobs stack, no Docker: ``python -m deploy.native up|status|down``.

    stack.toml     what runs: every component declared once, as data
    components.py  the declarations filled in for one stack (ports, run dir, binaries)
    scaled.py      the stack with an agent and gateway collectors instead of one collector
    render.py      the Prometheus and Alertmanager configs of one stack's ports
    supervisor.py  start, watch and stop the processes (portable: psutil)
    readiness.py   wait until a started process answers its ready check
    net.py         free ports, open ports and who holds them
    binaries.py    where the natively built Go programs are
    summary.py     what ``up`` prints once telemetry flows
    cli.py         the commands behind ``make up``, ``make status`` and ``make down``

The end-to-end tests and the benchmarks start their stacks from the same definitions.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
