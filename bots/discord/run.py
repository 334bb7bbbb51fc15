"""`retouch-bot discord`: the bot on Discord's gateway, until SIGINT or SIGTERM.

One process with a plain client by default; `DISCORD_SHARD_COUNT` switches to discord.py's
`AutoShardedClient` (`auto`: Discord's recommended count) and `DISCORD_SHARD_IDS` picks which
shards this process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bots.discord.adapter import PLATFORM, DiscordBot
from bots.discord.commands import build_tree, sync_commands
from bots.discord.settings import DiscordSettings
from bots.runtime import Runtime, serve
from core.errors import ConfigError
from core.http import url_origin
from core.settings import Settings

log = logging.getLogger("retouch.discord")


def build_client(settings: DiscordSettings) -> discord.Client:
    """A client with the default (unprivileged) intents, sharded as the settings say, and no
    voice (whose missing libraries discord.py would warn about).

    The settings have checked that shard ids come only with a numeric shard count.
    """
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    count = settings.shard_count
    options: dict[str, Any] = {
        "intents": discord.Intents.default(),
        "max_messages": None,  # the bot reads messages from interactions, never from a cache
        "member_cache_flags": discord.MemberCacheFlags.none(),
        "allowed_mentions": discord.AllowedMentions.none(),
    }
    if count is None:
        return discord.Client(**options)
    if count == "auto":
        return discord.AutoShardedClient(**options)
    if settings.shard_ids:
        options["shard_ids"] = settings.shard_ids
    return discord.AutoShardedClient(shard_count=count, **options)


def point_at_servers(settings: DiscordSettings) -> None:
    """Use the configured REST base / gateway (a proxy, or a test server) instead of Discord's."""
    if settings.api_base_url:
        discord.http.Route.BASE = settings.api_base_url.rstrip("/")
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
            settings.gateway_url.rstrip("/") + "/"
        )


def quiet_discord_loggers() -> None:
    """discord.py logs gateway events and webhook URLs at DEBUG: both carry interaction tokens."""
    logger = logging.getLogger("discord")
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)


class DiscordRunner:
    """Discord as a `BotRunner`: log in and sync commands, then the gateway connection."""

    name = "discord"

    def __init__(
        self,
        settings: Settings,
        discord_settings: DiscordSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.discord = discord_settings
        self.clock = clock
        self.token = discord_settings.bot_token.get_secret_value()
        if not self.token:
            raise ConfigError("DISCORD_BOT_TOKEN: must be set to run the Discord bot")
        point_at_servers(discord_settings)
        self.client = build_client(discord_settings)
        self.bot: DiscordBot | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._entered = False

    async def prepare(self, runtime: Runtime) -> None:
        quiet_discord_loggers()
        await self.client.__aenter__()
        self._entered = True
        self.bot = DiscordBot(
            self.settings,
            self.discord,
            runtime.service,
            self.client,
            runtime.http,
            clock=self.clock,
        )
        tree = build_tree(self.client, self.bot)
        runtime.register(PLATFORM, self.bot)
        try:
            await self.client.login(self.token)
        except discord.LoginFailure:
            raise ConfigError(
                "DISCORD_BOT_TOKEN: Discord refused the token; "
                "fix: copy it again from the Developer Portal (Bot, Reset Token)"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            where = url_origin(discord.http.Route.BASE)
            raise ConfigError(
                f"DISCORD_API_BASE_URL: cannot reach Discord at {where} "
                f"({type(exc).__name__}); fix: check the network, or the setting"
            ) from None
        if self.discord.sync_commands:
            await sync_commands(tree, self.discord.guild_ids)

    async def start(self) -> None:
        self._gateway = asyncio.create_task(
            self.client.connect(reconnect=True), name="discord-gateway"
        )
        log.info("Discord bot %s is connecting", self.client.user)

    async def wait_closed(self) -> None:
        if self._gateway is not None:
            await asyncio.shield(self._gateway)

    def healthy(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    async def stop(self) -> None:
        """Interactions keep arriving until `close`; the service already refuses new jobs."""

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._entered:
            await self.client.close()
        if self._gateway is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._gateway


async def run_discord(
    settings: Settings,
    discord_settings: DiscordSettings,
    stop: asyncio.Event | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Run until `stop` is set (or a signal arrives); jobs left unfinished resume next time.

    `clock` tells the age of interaction tokens (tests make them look old).
    """
    await serve(settings, [DiscordRunner(settings, discord_settings, clock=clock)], stop)
