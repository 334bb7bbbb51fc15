"""`retouch-bot discord`: the bot on Discord's gateway, until SIGINT or SIGTERM.

One process with a plain client by default; `DISCORD_SHARD_COUNT` switches to discord.py's
`AutoShardedClient` (`auto`: Discord's recommended count) and `DISCORD_SHARD_IDS` picks which
shards this process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import discord

from bots.discord.adapter import PLATFORM, DiscordBot
from bots.discord.commands import build_tree, sync_commands
from core.backend import open_backend
from core.errors import ConfigError
from core.http import create_http_client
from core.service import RetouchService
from core.settings import Settings
from core.store import open_store

log = logging.getLogger("retouch.discord")


def build_client(settings: Settings) -> discord.Client:
    """A client with the default (unprivileged) intents, sharded as the settings say."""
    count = settings.discord_shard_count
    ids = settings.discord_shard_ids
    options: dict[str, Any] = {
        "intents": discord.Intents.default(),
        "max_messages": None,  # the bot reads messages from interactions, never from a cache
        "member_cache_flags": discord.MemberCacheFlags.none(),
        "allowed_mentions": discord.AllowedMentions.none(),
    }
    if count is None:
        if ids:
            raise ConfigError("DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT set to a number")
        return discord.Client(**options)
    if count == "auto":
        if ids:
            raise ConfigError("DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT set to a number")
        return discord.AutoShardedClient(**options)
    if any(shard >= count for shard in ids):
        raise ConfigError(f"DISCORD_SHARD_IDS: every id must be below DISCORD_SHARD_COUNT={count}")
    if ids:
        options["shard_ids"] = ids
    return discord.AutoShardedClient(shard_count=count, **options)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM ask for a graceful stop; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("%s: finishing running jobs, then stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handle, signum)


def quiet_discord_loggers() -> None:
    """discord.py logs gateway events and webhook URLs at DEBUG: both carry interaction tokens."""
    logger = logging.getLogger("discord")
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)


async def run_discord(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Run until `stop` is set (or a signal arrives); jobs left unfinished resume next time.

    `clock` tells the age of interaction tokens (tests make them look old).
    """
    token = settings.discord_bot_token.get_secret_value()
    if not token:
        raise ConfigError("DISCORD_BOT_TOKEN: must be set to run the Discord bot")
    client = build_client(settings)
    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    quiet_discord_loggers()
    store = await open_store(settings)
    try:
        async with (
            open_backend(settings) as backend,
            create_http_client(settings) as http,
            client,
        ):
            service = RetouchService(settings, store, backend)
            bot = DiscordBot(settings, service, client, http, clock=clock)
            tree = build_tree(client, bot)
            service.register(PLATFORM, bot)
            try:
                await client.login(token)
            except discord.LoginFailure:
                raise ConfigError("DISCORD_BOT_TOKEN: Discord refused the token") from None
            if settings.discord_sync_commands:
                await sync_commands(tree, settings.discord_guild_ids)
            await service.start()
            gateway = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
            stopping = asyncio.create_task(stop.wait(), name="discord-stop")
            log.info("Discord bot %s is running (%s backend)", client.user, backend.name)
            await asyncio.wait({gateway, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await service.shutdown()
            await bot.close()
            await client.close()
            with contextlib.suppress(asyncio.CancelledError):
                await gateway
    finally:
        await store.close()
