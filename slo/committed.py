"""Generated files that are committed, so the services read them without running Python: write
them, or (``check``) fail when one differs from what its generator makes now."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(files: Mapping[Path, str], *, check: bool, command: str) -> int:
    """Write each stale file (or, with ``check``, name them); 1 when ``check`` found one stale."""
    stale = []
    for path, wanted in files.items():
        if path.exists() and path.read_text() == wanted:
            continue
        if check:
            stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run {command}", file=sys.stderr)
        return 1
    return 0
