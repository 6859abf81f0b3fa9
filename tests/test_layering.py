"""The telemetry layer stands alone: ``otel/`` never imports the daemon (``app/``), so the
daemon's composition root hands it what it needs (the instance id, the version) instead."""

from __future__ import annotations

import ast
from pathlib import Path

OTEL = Path(__file__).resolve().parents[1] / "otel"


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_otel_never_imports_app() -> None:
    offenders = {path.name: sorted(m for m in _imported_modules(path)
                                   if m == "app" or m.startswith("app."))
                 for path in sorted(OTEL.glob("*.py"))}
    assert not {name: mods for name, mods in offenders.items() if mods}
