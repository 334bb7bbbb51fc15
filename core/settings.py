"""The core's configuration, read from the environment and `.env` by pydantic-settings.

The environment names are part of the product's interface (see `.env.example`). A bad value stops
start-up with one line naming the setting, raised as `ConfigError`. Each chat platform declares
its own settings beside its adapter, on the same `EnvSettings` base and with the same field types.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.crash import parse_crash_at
from core.errors import ConfigError
from core.packs import Pack, parse_packs
from core.platform_ids import Kind, parse_platform_id

Backend = Literal["auto", "api", "local"]


def split_csv(value: Any) -> Any:
    """`a, b,,c` -> ["a", "b", "c"]: how a list setting is written in the environment."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _listen_address(value: str) -> str:
    value = value.strip()
    if value:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
"""A URL setting that must be http(s)."""
ListenAddress = Annotated[str, AfterValidator(_listen_address)]
"""`host:port` to listen on, or empty for none."""
IntList = Annotated[list[int], NoDecode, BeforeValidator(split_csv)]
"""Comma-separated integers, e.g. chat or guild ids."""


class EnvSettings(BaseSettings):
    """Settings from the environment and `.env`; `load` turns a bad value into one clear line."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Read the settings (`overrides` win); a bad value raises `ConfigError` naming it."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(unknown)}")
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, cls)) from None
        settings.check()
        return settings

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment name of a field (`bot_token` -> `TELEGRAM_BOT_TOKEN`)."""
        return f"{cls.model_config.get('env_prefix') or ''}{field}".upper()

    def check(self) -> None:
        """Rules that tie settings together, each raising `ConfigError` naming the setting."""


class Settings(EnvSettings):
    """Every setting of the core; field names are the environment names in lower case."""

    # --- the retouch backend ----------------------------------------------------------------
    retouch_api_key: SecretStr = SecretStr("")
    retouch_api_base_url: HttpUrlText = "https://api.xty.app/v1"
    retouch_backend: Backend = "auto"
    retouch_default_fidelity: float = Field(0.1, ge=0.0, le=1.0)
    retouch_model: str = "retouch"
    retouch_timeout_seconds: float = Field(120.0, gt=0)
    retouch_total_timeout_seconds: float = Field(600.0, gt=0)
    retouch_connect_timeout_seconds: float = Field(10.0, gt=0)
    retouch_max_retries: int = Field(3, ge=0, le=10)
    retouch_max_result_bytes: int = Field(50_000_000, gt=0)

    # --- images ---------------------------------------------------------------------------
    image_max_input_bytes: int = Field(50_000_000, gt=0)
    image_max_input_pixels: int = Field(67_108_864, gt=0)
    image_max_upload_bytes: int = Field(10_000_000, gt=0)
    image_max_pixels: int = Field(24_000_000, gt=0)
    image_decode_budget_bytes: int = Field(400_000_000, gt=0)

    # --- the embedded engine ----------------------------------------------------------------
    engine_threads: int = Field(0, ge=0)

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
    jobs_retention_days: float = Field(30.0, ge=0)
    jobs_crash_at: str = ""
    """Test-only: SIGKILL the process at this `core.crash` point (`point[#n]`)."""

    # --- features -------------------------------------------------------------------------
    compare_enabled: bool = True

    # --- payments (Telegram Stars) --------------------------------------------------------
    payments_stars_packs: Annotated[list[Pack], NoDecode, BeforeValidator(parse_packs)] = []
    payments_support: str = Field("", max_length=200)
    payments_terms_url: str = ""

    # --- operations -----------------------------------------------------------------------
    ops_listen: ListenAddress = ""

    # --- logging --------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("admin_ids", "access_allowed_users", "access_allowed_chats", mode="before")
    @classmethod
    def _parse_admins(cls, value: Any, info: ValidationInfo) -> Any:
        kind: Kind = "chat" if info.field_name == "access_allowed_chats" else "user"
        items = split_csv(value)
        for item in items:
            if parse_platform_id(str(item), kind=kind) is None:
                raise ValueError(f"{item!r} is not platform:id, e.g. telegram:123 or discord:456")
        return items

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

    @field_validator("jobs_crash_at")
    @classmethod
    def _crash_point(cls, value: str) -> str:
        parse_crash_at(value)  # a ValueError names the points
        return value.strip()

    @field_validator("replica_id")
    @classmethod
    def _replica_id(cls, value: str) -> str:
        value = value.strip()
        if value and not value.isprintable():
            raise ValueError("must be printable text, e.g. the host name")
        return value

    @field_validator("payments_terms_url")
    @classmethod
    def _terms_url(cls, value: str) -> str:
        value = value.strip()
        return _http_url(value) if value else value

    @field_validator("payments_support")
    @classmethod
    def _support(cls, value: str) -> str:
        value = value.strip()
        if value and not value.isprintable():
            raise ValueError("must be printable text, e.g. @your_support or an e-mail address")
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
    def results_dir(self) -> Path:
        """Where finished results wait until they are delivered."""
        return self.data_dir / "results"

    @property
    def engine_thread_count(self) -> int:
        return self.engine_threads or max(1, os.cpu_count() or 1)

    def check(self) -> None:
        if self.retouch_backend == "api" and not self.retouch_api_key.get_secret_value():
            raise ConfigError("RETOUCH_API_KEY: must be set when RETOUCH_BACKEND=api")
        if self.payments_stars_packs and not self.payments_support:
            raise ConfigError(
                "PAYMENTS_SUPPORT: must be set when PAYMENTS_STARS_PACKS is (Telegram requires "
                "a contact for payment questions, shown by /paysupport)"
            )
        if self.jobs_stale_after_seconds <= 2 * self.jobs_heartbeat_seconds:
            raise ConfigError(
                "JOBS_STALE_AFTER_SECONDS: must be more than twice JOBS_HEARTBEAT_SECONDS "
                f"(got {self.jobs_stale_after_seconds:g} and {self.jobs_heartbeat_seconds:g})"
            )


def load_settings(**overrides: Any) -> Settings:
    """Read the core's settings; a bad value raises `ConfigError` with one line naming it."""
    return Settings.load(**overrides)


def _describe(exc: ValidationError, settings: type[EnvSettings]) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    info = settings.model_fields.get(field)
    secret = info is not None and "SecretStr" in repr(info.annotation)
    shown = "" if secret else f" (got {error.get('input')!r})"
    name = settings.env_name(field) if field else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}{shown}"
