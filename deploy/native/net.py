"""Local TCP ports: pick free ones, tell whether one is open and who listens on it."""

from __future__ import annotations

import socket

import psutil


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free right now (all held until every one is picked,
    so none is handed out twice)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    """Who listens on ``port``: "name (pid N)", or "unknown process" when the system does
    not say (macOS lists other users' sockets to root only)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return "unknown process"
    owners = []
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            try:
                owners.append(f"{psutil.Process(conn.pid).name()} (pid {conn.pid})")
            except (psutil.Error, TypeError, ValueError):
                continue
    return ", ".join(sorted(set(owners))) or "unknown process"
