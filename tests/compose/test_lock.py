"""requirements.lock, from which the Dockerfile and the test command install, agrees with
pyproject.toml: every declared dependency is pinned there, at a version its specifier allows."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def _locked() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_dependency_is_locked_at_an_allowed_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"],
                *(d for extra in project["optional-dependencies"].values() for d in extra)]
    locked = _locked()
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in locked, f"{spec.name} is not in requirements.lock: run scripts/lock.sh"
        assert spec.specifier.contains(locked[name], prereleases=True), \
            f"requirements.lock pins {spec.name}=={locked[name]}, outside {spec.specifier}"
