"""All configuration, read from the environment and `.env` by pydantic-settings.

The environment names are part of the product's interface (see `.env.example`). A bad value stops
start-up with one line naming the setting, raised as `ConfigError`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError
from core.platform_ids import parse_platform_id

Backend = Literal["auto", "api", "local"]


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of retouch-bot; field names are the environment names in lower case."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # --- the retouch backend ----------------------------------------------------------------
    retouch_api_key: SecretStr = SecretStr("")
    retouch_api_base_url: str = "https://api.xty.app/v1"
    retouch_backend: Backend = "auto"
    retouch_default_fidelity: float = Field(0.1, ge=0.0, le=1.0)
    retouch_model: str = "retouch"
    retouch_timeout_seconds: float = Field(120.0, gt=0)
    retouch_connect_timeout_seconds: float = Field(10.0, gt=0)
    retouch_max_retries: int = Field(3, ge=0, le=10)
    retouch_max_result_bytes: int = Field(50_000_000, gt=0)

    # --- images ---------------------------------------------------------------------------
    image_max_input_bytes: int = Field(50_000_000, gt=0)
    image_max_input_pixels: int = Field(100_000_000, gt=0)
    image_max_upload_bytes: int = Field(10_000_000, gt=0)
    image_max_pixels: int = Field(40_000_000, gt=0)

    # --- the embedded engine ----------------------------------------------------------------
    engine_threads: int = Field(0, ge=0)

    # --- serve-api (the local engine as an OpenAI-compatible server) -------------------------
    serve_api_host: str = "127.0.0.1"
    serve_api_port: int = Field(8000, ge=0, le=65535)
    serve_api_keys: Annotated[list[SecretStr], NoDecode] = []
    serve_api_public_url: str = ""
    serve_api_result_ttl_seconds: int = Field(3600, gt=0)
    serve_api_results_dir: Path = Path("data/serve-api-results")
    serve_api_workers: int = Field(0, ge=0)
    serve_api_queue_size: int = Field(16, ge=1)
    serve_api_allow_private_urls: bool = False

    # --- chat platforms -------------------------------------------------------------------
    telegram_bot_token: SecretStr = SecretStr("")
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_webhook_url: str = ""
    telegram_webhook_listen: str = "0.0.0.0:8443"
    telegram_webhook_secret: SecretStr = SecretStr("")
    telegram_send_file_too: bool = False
    telegram_all_photos_chats: Annotated[list[int], NoDecode] = []
    telegram_album_wait_seconds: float = Field(1.0, ge=0, le=30)
    telegram_status_edit_interval_seconds: float = Field(3.0, ge=0, le=60)
    discord_bot_token: SecretStr = SecretStr("")
    discord_api_base_url: str = ""
    discord_gateway_url: str = ""
    discord_guild_ids: Annotated[list[int], NoDecode] = []
    discord_sync_commands: bool = True
    discord_shard_count: int | Literal["auto"] | None = None
    discord_shard_ids: Annotated[list[int], NoDecode] = []
    discord_status_edit_interval_seconds: float = Field(2.0, ge=0, le=60)

    # --- storage and quotas ---------------------------------------------------------------
    data_dir: Path = Path("data")
    database_path: Path = Path("data/retouch.db")
    database_url: SecretStr = SecretStr("")
    database_pool_size: int = Field(10, ge=1, le=1000)
    replica_id: str = Field("", max_length=200)
    quota_per_user_per_day: int = Field(20, ge=0)
    admin_ids: Annotated[list[str], NoDecode] = []
    max_concurrent_jobs: int = Field(8, ge=1)
    quota_per_chat_per_day: int = Field(0, ge=0)
    quota_timezone: str = "UTC"
    quota_max_in_flight_per_user: int = Field(3, ge=1)
    quota_burst_per_minute: int = Field(10, ge=0)

    # --- access ---------------------------------------------------------------------------
    access_allowed_users: Annotated[list[str], NoDecode] = []
    access_allowed_chats: Annotated[list[str], NoDecode] = []

    # --- jobs -----------------------------------------------------------------------------
    jobs_delivery_attempts: int = Field(3, ge=1, le=20)
    jobs_max_attempts: int = Field(3, ge=1, le=20)
    jobs_result_max_age_hours: float = Field(24.0, gt=0)
    jobs_shutdown_grace_seconds: float = Field(30.0, ge=0)
    jobs_heartbeat_seconds: float = Field(10.0, gt=0, le=3600)
    jobs_stale_after_seconds: float = Field(60.0, gt=0)

    # --- operations -----------------------------------------------------------------------
    ops_listen: str = ""

    # --- logging --------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "telegram_all_photos_chats", "discord_guild_ids", "discord_shard_ids", mode="before"
    )
    @classmethod
    def _parse_chats(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("discord_shard_count", mode="before")
    @classmethod
    def _parse_shard_count(cls, value: Any) -> Any:
        """Empty: no sharding; `auto`: as many shards as Discord recommends; else a count >= 1."""
        if isinstance(value, str):
            value = value.strip().lower()
            if not value:
                return None
            if value != "auto" and not value.isdigit():
                raise ValueError("must be empty, auto, or a number of shards")
        if value not in (None, "auto") and int(value) < 1:
            raise ValueError("must be empty, auto, or a number of shards")
        return value

    @field_validator("serve_api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("admin_ids", "access_allowed_users", "access_allowed_chats", mode="before")
    @classmethod
    def _parse_admins(cls, value: Any) -> Any:
        items = _split_csv(value)
        for item in items:
            if parse_platform_id(str(item)) is None:
                raise ValueError(f"{item!r} is not platform:id, e.g. telegram:123 or discord:456")
        return items

    @field_validator("retouch_api_base_url", "telegram_api_base_url", "telegram_file_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("telegram_webhook_listen", "ops_listen")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        value = value.strip()
        if value:
            _, sep, port = value.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
        return value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        # Telegram's cloud calls only https:// webhooks; a self-hosted Bot API server may use http.
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL")
        return value

    @field_validator("quota_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like UTC") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip()
        if url and not url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError("must be empty or a postgresql:// URL")
        return SecretStr(url)

    @field_validator("replica_id")
    @classmethod
    def _replica_id(cls, value: str) -> str:
        value = value.strip()
        if value and not value.isprintable():
            raise ValueError("must be printable text, e.g. the host name")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def effective_backend(self) -> Literal["api", "local"]:
        """`auto` means the hosted API when a key is set, else the embedded engine."""
        if self.retouch_backend == "auto":
            return "api" if self.retouch_api_key.get_secret_value() else "local"
        return self.retouch_backend

    @property
    def webhook_secret(self) -> str:
        """The webhook's secret token: the setting, else one derived from the bot token.

        Derived, every replica of a bot computes the same secret without sharing another value.
        """
        explicit = self.telegram_webhook_secret.get_secret_value()
        if explicit:
            return explicit
        digest = hashlib.sha256(
            b"retouch-bot webhook:" + self.telegram_bot_token.get_secret_value().encode()
        )
        return digest.hexdigest()[:48]

    @property
    def results_dir(self) -> Path:
        """Where finished results wait until they are delivered."""
        return self.data_dir / "results"

    @property
    def engine_thread_count(self) -> int:
        return self.engine_threads or max(1, os.cpu_count() or 1)

    @property
    def serve_api_worker_count(self) -> int:
        return self.serve_api_workers or max(1, os.cpu_count() or 1)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value raises `ConfigError` with one line naming the setting."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    if settings.retouch_backend == "api" and not settings.retouch_api_key.get_secret_value():
        raise ConfigError("RETOUCH_API_KEY: must be set when RETOUCH_BACKEND=api")
    if settings.jobs_stale_after_seconds <= 2 * settings.jobs_heartbeat_seconds:
        raise ConfigError(
            "JOBS_STALE_AFTER_SECONDS: must be more than twice JOBS_HEARTBEAT_SECONDS "
            f"(got {settings.jobs_stale_after_seconds:g} and {settings.jobs_heartbeat_seconds:g})"
        )
    return settings


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "" if field in _SECRET_FIELDS else f" (got {error.get('input')!r})"
    return f"{field.upper()}: {message}{shown}"


_SECRET_FIELDS = {
    name for name, info in Settings.model_fields.items() if "SecretStr" in repr(info.annotation)
}
