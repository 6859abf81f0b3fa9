"""The daemon's configuration, read once from the environment (and an optional ``.env`` file).

Every name and default here is the contract's (``daemon-protocol.md``); one place, so defaults
cannot disagree between files. Telemetry is configured by the standard ``OTEL_*`` variables, which
the OpenTelemetry SDK reads itself, so none of them appear here.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.providers.table import GLM, KIMI, ProviderEntry

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MIB = 1024 * 1024
# This process's id when EXAI_INSTANCE_ID is not set: drawn once, so every user agrees.
_FRESH_INSTANCE_ID = str(uuid.uuid4())


def default_token_file() -> Path:
    """Where a generated WebSocket token is kept: ``$XDG_CONFIG_HOME/exai/ws-token``, i.e.
    ``~/.config/exai/ws-token``, readable by the user alone."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "exai" / "ws-token"


@dataclass(frozen=True)
class ProviderSettings:
    """What one provider is configured with: its key, base URL and concurrency cap."""

    api_key: SecretStr
    api_url: str
    max_inflight: int


class _InstanceIdSetting(BaseSettings):
    """``EXAI_INSTANCE_ID`` alone, read like ``Settings`` reads it (environment, then ``.env``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)
    instance_id: str = Field("", alias="EXAI_INSTANCE_ID")


def instance_id(configured: str | None = None) -> str:
    """This daemon's id: its telemetry's ``service.instance.id`` and its name as a consumer of
    the Supabase outbox. ``EXAI_INSTANCE_ID`` when set (``configured``, else read from the
    environment or ``.env``), so a daemon restarted under the same id takes back its own
    unfinished outbox writes at once; otherwise a uuid drawn once per process. Two daemons
    running at the same time must not share one."""
    if configured is None:
        configured = _InstanceIdSetting().instance_id
    return configured.strip() or _FRESH_INSTANCE_ID


class Settings(BaseSettings):
    """All daemon settings. Secrets are ``SecretStr`` so they never print by accident."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # WebSocket transport
    ws_host: str = Field("127.0.0.1", alias="EXAI_WS_HOST")
    ws_port: int = Field(8079, alias="EXAI_WS_PORT")
    ws_token: SecretStr = Field(SecretStr(""), alias="EXAI_WS_TOKEN")
    # Where the token is generated and kept when EXAI_WS_TOKEN is empty (default_token_file()).
    ws_token_file: str = Field("", alias="EXAI_WS_TOKEN_FILE")
    # The explicit opt-out: no token at all (loopback only, loudly logged).
    ws_auth_disabled: bool = Field(False, alias="EXAI_WS_AUTH_DISABLED")
    ws_allow_insecure_public: bool = Field(False, alias="EXAI_WS_ALLOW_INSECURE_PUBLIC")
    # Browser pages: an upgrade carrying an Origin not listed here is refused with 403.
    ws_allowed_origins: str = Field("", alias="EXAI_WS_ALLOWED_ORIGINS")
    # Extra Host names accepted besides loopback names and EXAI_WS_HOST (DNS rebinding).
    ws_allowed_hosts: str = Field("", alias="EXAI_WS_ALLOWED_HOSTS")
    ws_max_bytes: int = Field(4 * MIB, alias="EXAI_WS_MAX_BYTES")
    ws_ping_interval: float = Field(30.0, alias="EXAI_WS_PING_INTERVAL")
    ws_ping_timeout: float = Field(10.0, alias="EXAI_WS_PING_TIMEOUT")
    ws_hello_timeout: float = Field(15.0, alias="EXAI_WS_HELLO_TIMEOUT")
    ws_idle_timeout_secs: float = Field(600.0, alias="EXAI_WS_IDLE_TIMEOUT_SECS", gt=0)
    # A reply the client does not read within this closes the session (it is not reading).
    ws_send_timeout_secs: float = Field(30.0, alias="EXAI_WS_SEND_TIMEOUT_SECS", gt=0)
    max_connections: int = Field(1000, alias="EXAI_MAX_CONNECTIONS")
    max_connections_per_client: int = Field(10, alias="EXAI_MAX_CONNECTIONS_PER_CLIENT")

    # Concurrency, waiting and rate limits
    session_max_inflight: int = Field(8, alias="EXAI_WS_SESSION_MAX_INFLIGHT")
    # Frames (and their bytes) one session may have in processing; past either, it stops reading.
    session_max_pending_frames: int = Field(64, alias="EXAI_WS_SESSION_MAX_PENDING_FRAMES")
    session_max_pending_bytes: int = Field(8 * MIB, alias="EXAI_WS_SESSION_MAX_PENDING_BYTES")
    global_max_inflight: int = Field(24, alias="EXAI_WS_GLOBAL_MAX_INFLIGHT")
    kimi_max_inflight: int = Field(KIMI.max_inflight_default, alias=KIMI.max_inflight_env)
    glm_max_inflight: int = Field(GLM.max_inflight_default, alias=GLM.max_inflight_env)
    slot_wait_secs: float = Field(5.0, alias="EXAI_SLOT_WAIT_SECS")
    # Each provider's max_inflight counted across every daemon on REDIS_URL (app.shared_limits),
    # falling back to the per-daemon limit while Redis is away.
    shared_provider_limits: bool = Field(False, alias="EXAI_SHARED_PROVIDER_LIMITS")
    rate_limit_per_sec: float = Field(20.0, alias="EXAI_RATE_LIMIT_PER_SEC")
    rate_limit_burst: int = Field(40, alias="EXAI_RATE_LIMIT_BURST")
    tool_timeout_secs: float = Field(120.0, alias="EXAI_TOOL_TIMEOUT_SECS")

    # Providers
    default_model: str = Field("glm-4.5-flash", alias="DEFAULT_MODEL")
    # Per provider, named ``{key}_api_key``, ``{key}_api_url``, ``{key}_max_inflight`` (above)
    # after app.providers.table, which gives their variables and defaults.
    kimi_api_key: SecretStr = Field(SecretStr(""), alias=KIMI.api_key_env)
    kimi_api_url: str = Field(KIMI.api_url_default, alias=KIMI.api_url_env)
    glm_api_key: SecretStr = Field(SecretStr(""), alias=GLM.api_key_env)
    glm_api_url: str = Field(GLM.api_url_default, alias=GLM.api_url_env)
    provider_timeout_secs: float = Field(60.0, alias="EXAI_PROVIDER_TIMEOUT_SECS")
    # An answer (or error body) larger than this is refused and its connection closed.
    provider_max_response_bytes: int = Field(8 * MIB, alias="EXAI_PROVIDER_MAX_RESPONSE_BYTES")
    provider_max_retries: int = Field(3, alias="EXAI_PROVIDER_MAX_RETRIES")
    provider_retry_base_secs: float = Field(0.5, alias="EXAI_PROVIDER_RETRY_BASE_SECS")
    provider_retry_max_secs: float = Field(20.0, alias="EXAI_PROVIDER_RETRY_MAX_SECS")
    circuit_failure_threshold: int = Field(5, alias="EXAI_CIRCUIT_FAILURE_THRESHOLD")
    circuit_reset_secs: float = Field(30.0, alias="EXAI_CIRCUIT_RESET_SECS")

    # Conversation threads
    redis_url: str = Field("", alias="REDIS_URL")
    redis_retry_secs: float = Field(5.0, alias="EXAI_REDIS_RETRY_SECS")
    conversation_timeout_hours: float = Field(3.0, alias="CONVERSATION_TIMEOUT_HOURS")
    max_conversation_turns: int = Field(20, alias="MAX_CONVERSATION_TURNS")
    # What a thread keeps of one turn's text; longer turns are stored cut, with a marker.
    max_turn_chars: int = Field(100_000, alias="EXAI_THREAD_MAX_TURN_CHARS")

    # Stopping: one deadline for everything (calls, sessions, telemetry), inside Docker's 10 s.
    shutdown_timeout_secs: float = Field(8.0, alias="EXAI_SHUTDOWN_TIMEOUT_SECS", gt=0)

    # Supabase persistence
    supabase_url: str = Field("", alias="SUPABASE_URL")
    supabase_service_role_key: SecretStr = Field(SecretStr(""), alias="SUPABASE_SERVICE_ROLE_KEY")
    # One REST call's limit; a slower Supabase counts as down and the write is retried.
    supabase_timeout_secs: float = Field(10.0, alias="EXAI_SUPABASE_TIMEOUT_SECS", gt=0)
    # Redelivery backoff (equal jitter): base doubling up to max while Supabase is down.
    supabase_retry_base_secs: float = Field(0.5, alias="EXAI_SUPABASE_RETRY_BASE_SECS", gt=0)
    supabase_retry_max_secs: float = Field(30.0, alias="EXAI_SUPABASE_RETRY_MAX_SECS", gt=0)
    # How often an idle worker looks at the outbox (new writes wake it at once anyway).
    supabase_idle_poll_secs: float = Field(5.0, alias="EXAI_SUPABASE_IDLE_POLL_SECS", gt=0)
    # Writes kept in memory without Redis (oldest dropped past it), and dead letters kept.
    supabase_outbox_memory_limit: int = Field(10_000, alias="EXAI_SUPABASE_OUTBOX_MEMORY_LIMIT",
                                              ge=1)
    supabase_dead_letter_limit: int = Field(10_000, alias="EXAI_SUPABASE_DEAD_LETTER_LIMIT", ge=1)
    # An oldest pending write older than this makes the archive's health degraded.
    supabase_stale_backlog_secs: float = Field(300.0, alias="EXAI_SUPABASE_STALE_BACKLOG_SECS",
                                               gt=0)
    # An outbox write its daemon has not touched for this long (killed, hung) is taken over by
    # another daemon on the same Redis; a live daemon refreshes its hold well before.
    supabase_claim_idle_secs: float = Field(60.0, alias="EXAI_SUPABASE_CLAIM_IDLE_SECS", gt=0)
    # This daemon's id (telemetry's service.instance.id, the outbox consumer); see instance_id().
    instance_id: str = Field("", alias="EXAI_INSTANCE_ID")

    # Health endpoint
    health_host: str = Field("127.0.0.1", alias="HEALTH_CHECK_HOST")
    health_port: int = Field(8081, alias="HEALTH_CHECK_PORT")

    @property
    def service_instance_id(self) -> str:
        return instance_id(self.instance_id)

    @field_validator("ws_max_bytes", "max_connections", "max_connections_per_client",
                     "session_max_inflight", "global_max_inflight", "kimi_max_inflight",
                     "glm_max_inflight", "rate_limit_burst", "max_conversation_turns",
                     "session_max_pending_frames", "session_max_pending_bytes",
                     "provider_max_response_bytes", "max_turn_chars")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("ws_token", "kimi_api_key", "glm_api_key")
    @classmethod
    def _header_safe(cls, value: SecretStr) -> SecretStr:
        """Secrets travel in HTTP headers and the hello: surrounding whitespace (a ``$(cat f)``
        newline) is dropped, and anything else a header cannot carry is refused at start, since
        httpx would quote the offending header, secret included, in its error."""
        secret = value.get_secret_value().strip()
        if not all(" " < char < "\x7f" for char in secret):
            raise ValueError("holds a character an HTTP header cannot carry (printable ASCII "
                             "without spaces only)")
        return SecretStr(secret)

    def provider(self, entry: ProviderEntry) -> ProviderSettings:
        """The settings of one provider of the table."""
        return ProviderSettings(api_key=getattr(self, f"{entry.key}_api_key"),
                                api_url=getattr(self, f"{entry.key}_api_url"),
                                max_inflight=getattr(self, f"{entry.key}_max_inflight"))

    @property
    def auth_enabled(self) -> bool:
        """On unless explicitly disabled: without EXAI_WS_TOKEN a token is generated (app.auth)."""
        return not self.ws_auth_disabled

    @property
    def token_file(self) -> Path:
        return Path(self.ws_token_file).expanduser() if self.ws_token_file else default_token_file()

    @property
    def allowed_origins(self) -> frozenset[str]:
        return _comma_set(self.ws_allowed_origins)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return _comma_set(self.ws_allowed_hosts)

    @property
    def conversation_ttl_secs(self) -> int:
        return max(1, int(self.conversation_timeout_hours * 3600))

    def unsafe_bind_reason(self) -> str | None:
        """Why starting would be unsafe (no token on a public address), or None when it is fine."""
        if self.auth_enabled or self.ws_host in LOOPBACK_HOSTS or self.ws_allow_insecure_public:
            return None
        return (f"EXAI_WS_AUTH_DISABLED=true and EXAI_WS_HOST={self.ws_host} is not loopback; "
                "enable authentication or set EXAI_WS_ALLOW_INSECURE_PUBLIC=true")


def _comma_set(value: str) -> frozenset[str]:
    return frozenset(item.strip().lower().rstrip("/") for item in value.split(",") if item.strip())
