"""Write (or, with ``--check``, verify) deploy/kubernetes/{agent,gateway}.yaml from
collector-config/.

The manifests are committed so ``kubectl apply -k deploy/kubernetes`` needs no Python; the check
keeps them from drifting from the collector files compose and the tests run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slo.committed import write_or_check

from . import manifests
from .collector_config import ROLES

OUT_DIR = Path(__file__).resolve().parent / "kubernetes"


def rendered() -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    def header(role: str) -> str:
        return manifests.GENERATED.format(files=", ".join(ROLES[role]))

    return {
        OUT_DIR / "agent.yaml": header("agent") + manifests.dump(manifests.agent()),
        OUT_DIR / "gateway.yaml": header("gateway") + manifests.dump(
            manifests.gateway(), manifests.gateway_service()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a manifest is stale")
    args = parser.parse_args(argv)
    return write_or_check(rendered(), check=args.check, command="python -m deploy")


if __name__ == "__main__":
    sys.exit(main())
