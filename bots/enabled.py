"""Which chat bots the settings enable (their token is set), and the line when none is."""

from __future__ import annotations

from bots.discord.settings import DiscordSettings
from bots.telegram.settings import TelegramSettings

NO_BOT_FIX = "set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN"
NO_BOT = f"no bot configured: {NO_BOT_FIX}"
"""What `run` and `doctor` say when no token is set."""


def enabled_bots(telegram: TelegramSettings, discord: DiscordSettings) -> list[str]:
    """The names of the bots whose token is set, Telegram first."""
    tokens = (("telegram", telegram.bot_token), ("discord", discord.bot_token))
    return [name for name, token in tokens if token.get_secret_value()]
