"""``otel.redaction``: the daemon's first line of defence for free text it did not write, and a
user of it (the MCP bridge's account of a failed connection)."""

from __future__ import annotations

import base64
import json

import pytest

from app.client import HandshakeError
from app.mcp_bridge.link import _describe
from app.protocol import CloseCode
from otel.redaction import MASK, MAX_SCRUBBED_CHARS, escape_controls, has_lone_surrogate, scrub


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Fake secrets in the shapes the patterns recognise, built here so that no key-like literal sits
# in the repository.
SK_KEY = "sk-" + "test" + "X" * 24
GLM_KEY = "0123456789abcdef" * 2 + ".AbCdEfGhIjKlMnOp"
JWT = ".".join([_base64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
                _base64url(json.dumps({"sub": "test-user"}).encode()),
                _base64url(b"signature-value-for-test")])
LONG_TOKEN = "Zk9" * 12  # 36 token characters: a generated token of any vendor


@pytest.mark.parametrize("secret", [SK_KEY, GLM_KEY, JWT, LONG_TOKEN])
def test_scrub_masks_secret_shapes(secret: str) -> None:
    assert scrub(f"upstream said: bad key {secret}, retry") == \
        f"upstream said: bad key {MASK}, retry"


def test_scrub_masks_bearer_tokens_whatever_the_case() -> None:
    assert scrub("header was bEaReR abc.DEF-123_tok") == f"header was {MASK}"


def test_scrub_masks_known_secrets_exactly_even_short_ones() -> None:
    assert scrub("password hunter2 refused", secrets=("hunter2", "")) == \
        f"password {MASK} refused"


def test_scrub_escapes_controls_and_cuts_long_text() -> None:
    assert scrub("one\ntwo\r\x1b[31m") == "one\\ntwo\\r\\x1b[31m"
    cut = scrub("word " * 200)
    assert len(cut) == MAX_SCRUBBED_CHARS and cut.endswith("\u2026")
    assert scrub("short", limit=3) == "sh\u2026"


def test_escape_controls_returns_clean_text_itself() -> None:
    """The common case allocates nothing: every log record goes through it."""
    clean = "call r-1 failed: TOOL_NOT_FOUND \u00e9\U0001f600"
    assert escape_controls(clean) is clean


@pytest.mark.parametrize("text, escaped", [
    ("a\nb", "a\\nb"), ("a\tb", "a\\tb"), ("\x00\x7f\x85", "\\x00\\x7f\\x85"),
    ("\u2028\u2029", "\\u2028\\u2029"), ("lone \udc00 \ud800", "lone \\udc00 \\ud800"),
])
def test_escape_controls_makes_text_one_encodable_line(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped
    escaped.encode("utf-8")


def test_lone_surrogates_are_what_utf8_refuses() -> None:
    assert has_lone_surrogate("\udc00") and has_lone_surrogate("x\ud83d")
    assert not has_lone_surrogate("\U0001f600")  # a decoded pair is one code point
    assert not has_lone_surrogate("\\udc00")     # the six characters of an escape


def test_the_bridge_describes_a_failed_connection_without_its_token() -> None:
    token = "bridge-token-0123"
    described = _describe(OSError(f"refused for {token}\nforged"), (token,))
    assert described == f"OSError: refused for {MASK}\\nforged"
    refused = _describe(HandshakeError("unauthorized\x1b[2J", CloseCode.UNAUTHORIZED), (token,))
    assert "\x1b" not in refused and refused.startswith("the daemon refused the hello:")
    assert _describe(TimeoutError(), (token,)) == "timed out connecting"
