"""A throwaway PostgreSQL server from Debian's binaries (initdb, pg_ctl), for the tests and
the native stack: a temporary data directory, loopback only, a port of our choosing.

initdb and postgres refuse to run as root, and this project's machines run as root: the
server then runs as the ``postgres`` user Debian's package creates (``runuser``), in a
directory that user owns. A missing binary is an error that says how to install it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

INSTALL_HINT = "install Debian's postgresql package (apt-get install -y postgresql)"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no unprivileged user to run them as."""


def bin_dir() -> Path:
    """The newest installed server's bin directory (Debian keeps them per major version)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable(f"no initdb found: {INSTALL_HINT}")


def _as_server_user() -> list[str]:
    """The command prefix that runs a program as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as missing:
        raise PostgresUnavailable(f"no 'postgres' user for the server: {INSTALL_HINT}") from missing
    return ["runuser", "-u", "postgres", "--"]


class PostgresServer:
    """One server on 127.0.0.1:``port``, its data in a fresh temporary directory."""

    def __init__(self, port: int, *, base_dir: Path | None = None) -> None:
        self.port = port
        self._bin = bin_dir()
        self._prefix = _as_server_user()
        self.root = Path(tempfile.mkdtemp(prefix="modelobs-pg-", dir=base_dir))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._prefix, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        if self._prefix:
            shutil.chown(self.root, user="postgres", group="postgres")
        self._run(
            str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            " -c max_connections=200"
        )
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
