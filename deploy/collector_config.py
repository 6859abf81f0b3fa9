"""A collector role's files from collector-config/, merged the way the collector merges its
``--config`` flags, so a Kubernetes resource carries the very config compose and the tests run.

The OpenTelemetry Operator takes one config per collector, where compose passes several files:
merging them here (maps key by key, a later file's scalar or list replacing an earlier one's) is
what keeps one source of truth.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "collector-config"

# The files each role loads, in order: the one list, which the test harness starts collectors
# from; common.yaml's header says the same and tests/compose and tests/deploy check that
# docker-compose.yml's --config flags are among these.
ROLES: dict[str, tuple[str, ...]] = {
    "single": ("common.yaml", "config.yaml"),
    "gateway": ("common.yaml", "config.yaml", "gateway.yaml"),
    "gateway-tls": ("common.yaml", "config.yaml", "gateway.yaml", "gateway-tls.yaml"),
    "agent": ("common.yaml", "agent.yaml"),
}

ENV_REF = re.compile(r"\$\{env:(\w+)(?::-([^}]*))?\}")


def merged_config(role: str, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """The role's files merged in order; a fresh tree (YAML anchors are not shared)."""
    merged: dict[str, Any] = {}
    for name in ROLES[role]:
        loaded = yaml.safe_load((config_dir / name).read_text()) or {}
        merge_into(merged, loaded)
    return merged


def merge_into(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Merge ``other`` over ``into``: maps key by key; anything else, lists too, replaced."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_into(into[key], value)
        else:
            into[key] = _fresh(value)


def _fresh(node: Any) -> Any:
    """A copy sharing nothing: deepcopy would keep two YAML aliases one object."""
    if isinstance(node, dict):
        return {key: _fresh(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_fresh(item) for item in node]
    return node


def variables(config: Any) -> dict[str, str | None]:
    """Every ``${env:NAME[:-default]}`` in a config tree: name -> default, None when some
    reference has none (the variable must be set)."""
    found: dict[str, str | None] = {}
    for text in _strings(config):
        for match in ENV_REF.finditer(text):
            name, default = match.group(1), match.group(2)
            if default is None or (name in found and found[name] is None):
                found[name] = None
            else:
                found.setdefault(name, default)
    return found


def default_of(config: Any, name: str) -> str:
    """The default a config gives ``name``; an error when it has none."""
    default = variables(config).get(name)
    if default is None:
        raise KeyError(f"{name} has no default in this config")
    return default


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []
