"""Start, watch and stop a set of background processes, portably (psutil: Linux and macOS).

Every process leads its own session and process group, writes its output to
``<run_dir>/<name>.log`` and its pid to ``<name>.pid``, and is recorded in
``<run_dir>/stack.json`` with its creation time, so a later ``status`` or ``stop`` from
another command finds exactly it (a reused pid is not ours). Stopping signals the whole
group (also what the leader left behind): SIGTERM, SIGKILL after a grace period, then checks
that no process and no port is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from . import REPO
from .net import port_open, port_owner
from .readiness import NotReady, wait_ready

STATE_FILE = "stack.json"
STOP_GRACE_S = 10.0
# psutil reports creation times in seconds as floats; the same process reads the same.
SAME_PROCESS_S = 0.05

Say = Callable[[str], object]


class SupervisorError(RuntimeError):
    """A failure with a message meant for the person who ran the command."""


@dataclass
class Process:
    """What to run, where it listens and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    # Answers 200 once ready; None: ready once it has lived a moment.
    ready_url: str | None = None
    ready_timeout_s: float = 60.0
    # Names started (and ready) before this one, among the processes started together.
    depends_on: tuple[str, ...] = ()
    # Printed for a person: label -> address.
    endpoints: dict[str, str] = field(default_factory=dict)
    # It finishes by itself (a bounded load): not a failure when it is gone.
    may_exit: bool = False


@dataclass
class Running:
    """One started process, as recorded in stack.json."""

    name: str
    pid: int
    create_time: float
    ports: list[int]
    ready_url: str | None
    log: str
    endpoints: dict[str, str]
    may_exit: bool = False

    def is_alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.create_time) < SAME_PROCESS_S
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def group(self) -> list[psutil.Process]:
        """The live processes of this record's process group: the leader and whatever it
        started, also after the leader exited. Never a stranger's: members are created no
        earlier than our leader, and before whoever holds the leader's pid now."""
        holder_created = math.inf
        with contextlib.suppress(psutil.Error):
            created = psutil.Process(self.pid).create_time()
            if abs(created - self.create_time) >= SAME_PROCESS_S:
                holder_created = created  # the pid was reused
        members = []
        for proc in psutil.process_iter(["create_time", "status"]):
            try:
                created = proc.info["create_time"]
                if (
                    os.getpgid(proc.pid) == self.pid
                    and self.create_time - SAME_PROCESS_S <= created < holder_created
                    and proc.info["status"] != psutil.STATUS_ZOMBIE
                ):
                    members.append(proc)
            except (OSError, psutil.Error):
                continue
        return members


def start_order(processes: Iterable[Process]) -> list[Process]:
    """Each process after the ones it depends on; otherwise in the given order. Names not
    among ``processes`` are outside this start (already running, or not wanted)."""
    pending = list(processes)
    names = {p.name for p in pending}
    if len(names) != len(pending):
        raise SupervisorError("two processes share a name")
    done: set[str] = set()
    ordered: list[Process] = []
    while pending:
        ready = next(
            (p for p in pending if all(d in done or d not in names for d in p.depends_on)), None
        )
        if ready is None:
            cycle = ", ".join(p.name for p in pending)
            raise SupervisorError(f"dependency cycle among: {cycle}")
        pending.remove(ready)
        done.add(ready.name)
        ordered.append(ready)
    return ordered


def launch(process: Process, run_dir: Path) -> tuple[subprocess.Popen[bytes], Running]:
    """Start ``process`` in its own session; its output goes to ``<name>.log``."""
    busy = [port for port in process.ports if port_open(port)]
    if busy:
        owners = "; ".join(f"{port}: {port_owner(port)}" for port in busy)
        raise SupervisorError(
            f"{process.name}: port(s) already in use ({owners}). Is another stack running "
            "(`make status`, `make down`) or another program on these ports?"
        )
    program = process.argv[0]
    if not (shutil.which(program) or Path(program).is_file()):
        raise SupervisorError(f"{process.name}: {program} not found")
    log = run_dir / f"{process.name}.log"
    with open(log, "ab") as out:
        out.write(f"\n=== {datetime.now(UTC).isoformat()} start: {process.argv}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            process.argv,
            env={**os.environ, **process.env},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (run_dir / f"{process.name}.pid").write_text(f"{proc.pid}\n")
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = time.time()  # already gone: wait_ready reports how it ended
    running = Running(
        name=process.name,
        pid=proc.pid,
        create_time=create_time,
        ports=list(process.ports),
        ready_url=process.ready_url,
        log=str(log),
        endpoints=process.endpoints,
        may_exit=process.may_exit,
    )
    return proc, running


def stop_group(record: Running, grace_s: float = STOP_GRACE_S) -> str:
    """SIGTERM the record's process group, SIGKILL what is left after ``grace_s``."""
    members = record.group()
    if not members:
        return "not running"
    t0 = time.monotonic()
    for proc in members:
        _signal(proc, signal.SIGTERM)
    left = _wait_gone(members, grace_s)
    if not left:
        return f"stopped in {time.monotonic() - t0:.1f}s"
    for proc in left:
        _signal(proc, signal.SIGKILL)
    _wait_gone(left, 5.0)
    return f"killed after {grace_s:.0f}s"


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):  # already gone
        proc.send_signal(sig)


def _running(proc: psutil.Process) -> bool:
    """Not gone and not a zombie. A zombie has ended; it waits for its parent (us, in
    tests: reaped here) or init (which may take seconds) to collect it."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.Error:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)
    return False


def _wait_gone(procs: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has ended; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in procs if _running(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _wait_started(process: Process, proc: subprocess.Popen[bytes], record: Running) -> None:
    """Wait until ``process`` is ready; one that may exit and finished cleanly is fine too."""
    try:
        wait_ready(
            process.ready_url, proc, Path(record.log), process.ready_timeout_s, name=process.name
        )
    except NotReady as exc:
        if not (process.may_exit and proc.returncode == 0):
            raise SupervisorError(str(exc)) from None


class Supervisor:
    """The processes of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.state_path = run_dir / STATE_FILE

    def recorded(self) -> list[Running]:
        try:
            data = json.loads(self.state_path.read_text())
            return [Running(**item) for item in data["processes"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _save(self, records: Sequence[Running]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"processes": [dataclasses.asdict(r) for r in records]}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(self.state_path)

    def dead(self) -> list[Running]:
        """Recorded processes that should run and do not."""
        return [r for r in self.recorded() if not r.is_alive() and not r.may_exit]

    def start(self, processes: Iterable[Process], say: Say = print) -> list[Running]:
        """Start each process once its dependencies are ready, and wait for it. On a failure
        stop everything started so far. Already running: nothing is started again."""
        existing = self.recorded()
        if existing:
            dead = [r.name for r in self.dead()]
            if dead:
                raise SupervisorError(
                    f"stack in {self.run_dir} is partly running (dead: {', '.join(dead)}); "
                    "stop it first (`make down`)"
                )
            say(f"already up ({len(existing)} processes, run dir {self.run_dir})")
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started: list[Running] = []
        try:
            for process in start_order(processes):
                t0 = time.monotonic()
                proc, record = launch(process, self.run_dir)
                started.append(record)
                self._save(started)
                _wait_started(process, proc, record)
                elapsed = time.monotonic() - t0
                say(f"  {process.name:<16} ready in {elapsed:4.1f}s  pid {proc.pid}")
        except BaseException:
            self._stop(started, say=lambda _m: None)
            self.state_path.unlink(missing_ok=True)
            raise
        return started

    # -- one process at a time (the fault tests kill and bring back single components) --
    def record(self, name: str) -> Running:
        """The recorded process called ``name``."""
        for record in self.recorded():
            if record.name == name:
                return record
        raise SupervisorError(f"{name} is not recorded in {self.state_path}")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout_s: float = 30) -> None:
        """Send ``sig`` to ``name``'s process group and wait until it has ended and its
        ports are closed (SIGTERM: a graceful stop, waited for up to ``timeout_s``)."""
        record = self.record(name)
        members = record.group()
        for proc in members:
            _signal(proc, sig)
        left = _wait_gone(members, timeout_s)
        if left:
            raise SupervisorError(f"{name} still running {timeout_s:.0f}s after {sig.name}")
        deadline = time.monotonic() + 10
        while any(port_open(port) for port in record.ports):
            if time.monotonic() > deadline:
                raise SupervisorError(f"{name}: ports {record.ports} still open after it ended")
            time.sleep(0.05)

    def restart(self, process: Process) -> Running:
        """Start ``process`` again in place of its ended record (same name, log and ports)
        and wait until it is ready; the stack's stop then stops the new one."""
        records = self.recorded()
        old = next((r for r in records if r.name == process.name), None)
        if old is not None and old.group():
            raise SupervisorError(f"{process.name} is still running: stop or kill it first")
        proc, running = launch(process, self.run_dir)
        # In its old place: the stack stops in reverse start order.
        if old is None:
            records.append(running)
        self._save([running if r.name == process.name else r for r in records])
        _wait_started(process, proc, running)
        return running

    def _stop(self, records: Sequence[Running], say: Say) -> list[str]:
        """Stop in reverse start order; returns what was left behind."""
        for record in reversed(records):
            say(f"  {record.name:<16} {stop_group(record)}")
        problems = [f"{r.name}: pid {p.pid} still alive" for r in records for p in r.group()]
        busy = [(r.name, port) for r in records for port in r.ports]
        deadline = time.monotonic() + 5
        while busy:
            busy = [(name, port) for name, port in busy if port_open(port)]
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        problems += [f"port {p} of {name} still open ({port_owner(p)})" for name, p in busy]
        return problems

    def stop(self, say: Say = print) -> None:
        """Stop every recorded process; raises SupervisorError if anything is left."""
        records = self.recorded()
        if not records:
            say(f"nothing recorded in {self.state_path}: not running")
            return
        problems = self._stop(records, say)
        if problems:
            raise SupervisorError("stop left things behind: " + "; ".join(problems))
        self.state_path.unlink(missing_ok=True)
        for record in records:
            (self.run_dir / f"{record.name}.pid").unlink(missing_ok=True)
        say("all stopped; no process or port left behind")
