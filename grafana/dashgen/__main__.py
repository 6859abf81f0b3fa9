"""Write (or, with ``--check``, verify) grafana/dashboards/*.json from the builders.

The JSON is committed so Grafana provisions it without running Python; the check keeps it from
drifting from this source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import BUILDERS

OUT_DIR = Path(__file__).resolve().parents[1] / "dashboards"


def render(name: str) -> str:
    return json.dumps(BUILDERS[name](), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.dashgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is stale")
    args = parser.parse_args(argv)
    stale = []
    OUT_DIR.mkdir(exist_ok=True)
    for name in BUILDERS:
        path, wanted = OUT_DIR / name, render(name)
        if path.exists() and path.read_text() == wanted:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(wanted)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m grafana.dashgen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
