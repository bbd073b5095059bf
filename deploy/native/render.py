"""The Prometheus and Alertmanager configs of one stack, written into its run directory.

Neither program expands environment variables in its config (the collector and Jaeger do,
and get their addresses from the environment), so the shipped native files are parsed and
the stack's own values set in them: every ``127.0.0.1:<default port>`` address becomes that
stack's port (file_sd targets, the webhook URL), and rule files point at the rule directory.
With the default ports the rendered files say what the shipped ones say.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from . import REPO

PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
HOST = "127.0.0.1"


def port_map(ports: Any) -> dict[int, int]:
    """Default port -> this stack's port, for every field of a Ports dataclass."""
    defaults = type(ports)()
    return {getattr(defaults, f.name): getattr(ports, f.name) for f in dataclasses.fields(ports)}


def restack_address(address: str, ports: dict[int, int]) -> str:
    """``127.0.0.1:<default port>`` -> ``127.0.0.1:<this stack's port>``."""
    host, sep, port = address.rpartition(":")
    if not sep or host != HOST or not port.isdigit() or int(port) not in ports:
        raise ValueError(f"{address!r} is not a native stack address ({HOST}:<known port>)")
    return f"{host}:{ports[int(port)]}"


def _dump(path: Path, doc: Any, source: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Rendered by deploy/native/render.py from {source.relative_to(REPO)}; do not edit.\n"
    )
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    return path


def _file_sd_configs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    jobs = [*doc.get("scrape_configs", []), *doc.get("alerting", {}).get("alertmanagers", [])]
    return [sd for job in jobs for sd in job.get("file_sd_configs", [])]


def prometheus_config(run_dir: Path, ports: Any, rules_dir: Path | None = None) -> Path:
    """prometheus.yml for this stack: its own copies of the file_sd target files (with its
    ports) and ``rules_dir`` (default deploy/prometheus/rules) for the rule files."""
    doc = yaml.safe_load(PROMETHEUS_YML.read_text())
    ports_by_default = port_map(ports)
    out_dir = run_dir / "prometheus"
    for sd in _file_sd_configs(doc):
        files = []
        for name in sd["files"]:
            source = PROMETHEUS_YML.parent / name
            groups = yaml.safe_load(source.read_text())
            for group in groups:
                group["targets"] = [restack_address(t, ports_by_default) for t in group["targets"]]
            files.append(str(_dump(out_dir / name, groups, source)))
        sd["files"] = files
    rules = rules_dir or PROMETHEUS_YML.parent / "rules"
    doc["rule_files"] = [str(rules / Path(pattern).name) for pattern in doc["rule_files"]]
    return _dump(out_dir / "prometheus.yml", doc, PROMETHEUS_YML)


def alertmanager_config(run_dir: Path, ports: Any) -> Path:
    """alertmanager.yml for this stack: webhook URLs on its ports."""
    doc = yaml.safe_load(ALERTMANAGER_YML.read_text())
    ports_by_default = port_map(ports)
    for receiver in doc.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            url = urlsplit(hook["url"])
            netloc = restack_address(url.netloc, ports_by_default)
            hook["url"] = urlunsplit(url._replace(netloc=netloc))
    return _dump(run_dir / "alertmanager" / "alertmanager.yml", doc, ALERTMANAGER_YML)
