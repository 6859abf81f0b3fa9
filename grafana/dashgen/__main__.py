"""Write (or, with ``--check``, verify) grafana/dashboards/*.json from the builders.

The JSON is committed so Grafana provisions it without running Python; the check keeps it from
drifting from this source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slo.committed import write_or_check

from . import BUILDERS

OUT_DIR = Path(__file__).resolve().parents[1] / "dashboards"


def render(name: str) -> str:
    return json.dumps(BUILDERS[name](), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.dashgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is stale")
    args = parser.parse_args(argv)
    return write_or_check({OUT_DIR / name: render(name) for name in BUILDERS},
                          check=args.check, command="python -m grafana.dashgen")


if __name__ == "__main__":
    sys.exit(main())
