"""The Telegram bot's settings: `TELEGRAM_*`, from the environment and `.env` like the core's."""

from __future__ import annotations

import hashlib

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from core.settings import EnvSettings, HttpUrlText, IntList, ListenAddress

CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The official Bot API server hands bots files up to 20 MB; self-hosted servers go further."""


class TelegramSettings(EnvSettings):
    """Every `TELEGRAM_*` setting; a field's environment name is `TELEGRAM_` + its name."""

    model_config = SettingsConfigDict(env_prefix="TELEGRAM_")

    bot_token: SecretStr = SecretStr("")
    api_base_url: HttpUrlText = "https://api.telegram.org/bot"
    file_base_url: HttpUrlText = "https://api.telegram.org/file/bot"
    webhook_url: str = ""
    webhook_listen: ListenAddress = "0.0.0.0:8443"
    webhook_secret: SecretStr = SecretStr("")
    send_file_too: bool = False
    all_photos_chats: IntList = Field(default_factory=list)
    album_wait_seconds: float = Field(1.0, ge=0, le=30)
    status_edit_interval_seconds: float = Field(3.0, ge=0, le=60)
    admin_cache_seconds: float = Field(5.0, ge=0, le=300)
    flood_global_per_second: float = Field(30.0, gt=0, le=1000)
    flood_chat_per_second: float = Field(1.0, gt=0, le=100)
    flood_chat_burst: int = Field(3, ge=1, le=100)
    flood_group_per_minute: float = Field(20.0, gt=0, le=6000)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        # Telegram's cloud calls only https:// webhooks; a self-hosted Bot API server may use http.
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL")
        return value

    @property
    def secret_token(self) -> str:
        """The webhook's secret token: the setting, else one derived from the bot token.

        Derived, every replica of a bot computes the same secret without sharing another value.
        """
        explicit = self.webhook_secret.get_secret_value()
        if explicit:
            return explicit
        digest = hashlib.sha256(
            b"retouch-bot webhook:" + self.bot_token.get_secret_value().encode()
        )
        return digest.hexdigest()[:48]

    def download_limit(self, max_input_bytes: int) -> int:
        """The largest file the bot fetches: `max_input_bytes`, but 20 MB on Telegram's cloud."""
        official = "api.telegram.org" in self.file_base_url
        return min(max_input_bytes, CLOUD_DOWNLOAD_LIMIT) if official else max_input_bytes
