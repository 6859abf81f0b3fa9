"""Scrubbing free text (exception messages, upstream error fields) before it reaches telemetry,
a reply or a log line, and escaping what a client controls before it reaches a console line.

The daemon never *puts* secrets or content into telemetry; this module is for text it does not
write itself: an upstream's error code, a library's exception message, a client's request id.
The secret patterns are the collector's ``blocked_values`` (``collector-config/config.yaml``),
written here as Python expressions; ``tests/pipeline/test_static_configs.py`` keeps the two lists
equal, so the daemon and the collector's second line of defence mask the same things.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "****"

SECRET_PATTERNS: tuple[str, ...] = (
    # OpenAI-style keys (Moonshot/Kimi use sk-...).
    r"sk-[A-Za-z0-9_-]{16,}",
    # Zhipu / Z.ai (GLM) keys: 32 hex, a dot, 16 alphanumerics.
    r"[0-9a-f]{32}[.][A-Za-z0-9]{16}",
    # Bearer tokens in any header-like string.
    r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}",
    # JWTs (header.payload.signature, base64url).
    r"eyJ[A-Za-z0-9_-]{4,}[.]eyJ[A-Za-z0-9_-]{4,}[.][A-Za-z0-9_-]{4,}",
)
# Beyond the collector's list: any long unbroken run of token characters is treated as a
# credential in free text (generated WebSocket tokens, hex or base64 keys of other vendors).
_LONG_TOKEN = r"[A-Za-z0-9_~+/=.-]{32,}"
_SECRETS = re.compile("|".join(f"(?:{p})" if not p.startswith("(?i)") else f"(?i:{p[4:]})"
                               for p in (*SECRET_PATTERNS, _LONG_TOKEN)))
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, lone surrogates.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
MAX_SCRUBBED_CHARS = 300


def scrub(text: str, secrets: Iterable[str] = (), limit: int = MAX_SCRUBBED_CHARS) -> str:
    """``text`` with known secrets and secret-looking runs masked, controls escaped, and cut to
    ``limit`` characters. ``secrets`` are exact values to mask (configured keys, passwords)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = escape_controls(_SECRETS.sub(MASK, text))
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def escape_controls(text: str) -> str:
    """Control characters, line separators and lone surrogates as visible escapes (``\\n``,
    ``\\x1b``, ``\\udc00``), so text from outside can neither forge a console line nor make an
    encoder fail."""
    if not _UNSAFE_CHARS.search(text):
        return text
    return _UNSAFE_CHARS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` cannot be encoded as UTF-8. A decoded pair is one code point, so any
    surrogate code point left in a Python string is a lone one (``"\\udc00"`` in JSON)."""
    return _SURROGATE.search(text) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")
