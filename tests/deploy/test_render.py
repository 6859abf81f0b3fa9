"""deploy/kubernetes's generated manifests are what `python -m deploy` makes now from
collector-config/, and the merge behind them is the collector's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy import manifests
from deploy.__main__ import main as generate
from deploy.__main__ import rendered
from deploy.collector_config import ROLES, merge_into, merged_config, variables

REPO = Path(__file__).resolve().parents[2]


def test_committed_manifests_match_the_generator():
    assert generate(["--check"]) == 0, "run: python -m deploy"


def test_the_check_names_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = {tmp_path / "agent.yaml": "wanted\n"}
    (tmp_path / "agent.yaml").write_text("edited by hand\n")
    monkeypatch.setattr("deploy.__main__.rendered", lambda: stale)
    assert generate(["--check"]) == 1
    assert "agent.yaml" in capsys.readouterr().err
    assert (tmp_path / "agent.yaml").read_text() == "edited by hand\n"


def test_compose_starts_collectors_only_in_the_roles():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    used = {tuple(arg.removeprefix("--config=/etc/otelcol/") for arg in s["command"])
            for s in compose.values() if s["image"].startswith("otel/")}
    assert used <= set(ROLES.values())


def test_merge_maps_key_by_key_and_later_lists_and_scalars_win():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": "keep", "c": {"deep": {"k": 1}}}
    merge_into(base, {"a": {"y": [3], "z": 2}, "c": {"deep": {"j": 2}}, "b": "new"})
    assert base == {"a": {"x": 1, "y": [3], "z": 2}, "b": "new", "c": {"deep": {"k": 1, "j": 2}}}


def test_merged_trees_share_no_nodes():
    """agent.yaml's anchors load as one shared object; an edit of one exporter of the merged
    tree must not change another (the operator-specific port change relies on it)."""
    config = merged_config("agent")
    exporters = list(config["exporters"].values())
    exporters[0]["protocol"]["otlp"]["timeout"] = "edited"
    assert exporters[1]["protocol"]["otlp"]["timeout"] != "edited"


@pytest.mark.parametrize("role", ["agent", "gateway"])
def test_each_cr_carries_its_roles_merged_config(role):
    """Byte for byte the role's files merged, but the telemetry port the operator must read as
    a number (written as the files' default)."""
    name = {"agent": manifests.AGENT, "gateway": manifests.GATEWAY}[role]
    path = REPO / "deploy" / "kubernetes" / f"{role}.yaml"
    (cr,) = [d for d in yaml.safe_load_all(path.read_text()) if d["metadata"]["name"] == name]
    config = cr["spec"]["config"]
    expected = merged_config(role)
    (reader,) = expected["service"]["telemetry"]["metrics"]["readers"]
    port = reader["pull"]["exporter"]["prometheus"]["port"]
    assert variables(port) == {"EXAI_OTELCOL_TELEMETRY_PORT": "8888"}
    (got,) = config["service"]["telemetry"]["metrics"]["readers"]
    assert got["pull"]["exporter"]["prometheus"]["port"] == 8888
    got["pull"]["exporter"]["prometheus"]["port"] = port
    assert config == expected
    header = path.read_text().splitlines()[0]
    assert ", ".join(ROLES[role]) in header


def test_rendered_yaml_has_no_anchors():
    for text in rendered().values():
        assert "&id" not in text and "*id" not in text
