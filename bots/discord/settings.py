"""The Discord bot's settings: `DISCORD_*`, from the environment and `.env` like the core's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from core.errors import ConfigError
from core.settings import EnvSettings, IntList


class DiscordSettings(EnvSettings):
    """Every `DISCORD_*` setting; a field's environment name is `DISCORD_` + its name."""

    model_config = SettingsConfigDict(env_prefix="DISCORD_")

    bot_token: SecretStr = SecretStr("")
    api_base_url: str = ""
    gateway_url: str = ""
    guild_ids: IntList = Field(default_factory=list)
    sync_commands: bool = True
    shard_count: int | Literal["auto"] | None = None
    shard_ids: IntList = Field(default_factory=list)
    status_edit_interval_seconds: float = Field(2.0, ge=0, le=60)

    @field_validator("shard_count", mode="before")
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

    def check(self) -> None:
        count, ids = self.shard_count, self.shard_ids
        if ids and not isinstance(count, int):
            raise ConfigError("DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT set to a number")
        if isinstance(count, int) and any(shard >= count for shard in ids):
            raise ConfigError(
                f"DISCORD_SHARD_IDS: every id must be below DISCORD_SHARD_COUNT={count}"
            )
