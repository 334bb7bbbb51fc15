"""The application commands: their names, options and descriptions, each handing over to the bot.

Discord enforces the option types and the fidelity range (`min_value`/`max_value` in the synced
JSON); the bot checks again, since nothing stops a client from sending other values.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bots.discord.adapter import DiscordBot

log = logging.getLogger("retouch.discord")

Fidelity = app_commands.Range[float, 0.0, 1.0]
Credits = app_commands.Range[int, -1_000_000, 1_000_000]

EVERYWHERE = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)
ANY_INSTALL = app_commands.AppInstallationType(guild=True, user=True)


def build_tree(client: discord.Client, bot: DiscordBot) -> app_commands.CommandTree[Any]:
    """A command tree with every command, usable in servers, DMs and group DMs."""
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(
        client, allowed_contexts=EVERYWHERE, allowed_installs=ANY_INSTALL
    )
    default = bot.settings.retouch_default_fidelity

    @tree.command(name="retouch", description="Retouch a portrait photo")
    @app_commands.describe(
        image="A portrait photo (JPEG, PNG, WebP or HEIC)",
        fidelity=f"0 to 1: lower retouches more (default: your /fidelity, else {default:g})",
    )
    async def retouch(
        interaction: discord.Interaction[Any],
        image: discord.Attachment,
        fidelity: Fidelity | None = None,
    ) -> None:
        await bot.retouch(interaction, image, fidelity)

    @tree.context_menu(name="Retouch photo")
    async def retouch_photo(
        interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        await bot.retouch_message(interaction, message)

    @tree.command(name="quota", description="Your photos left today")
    async def quota(interaction: discord.Interaction[Any]) -> None:
        await bot.quota(interaction)

    @tree.command(name="fidelity", description="Show or save your default strength")
    @app_commands.describe(
        value="0 to 1: lower retouches more", reset="Go back to the bot's default"
    )
    async def fidelity(
        interaction: discord.Interaction[Any], value: Fidelity | None = None, reset: bool = False
    ) -> None:
        await bot.fidelity(interaction, value, reset)

    @tree.command(name="forget", description="Delete what the bot keeps about you")
    async def forget(interaction: discord.Interaction[Any]) -> None:
        await bot.forget(interaction)

    @tree.command(name="language", description="English or 中文 (or your Discord's language)")
    @app_commands.describe(choice="The language I answer you in")
    @app_commands.choices(
        choice=[
            app_commands.Choice(name="English", value="en"),
            app_commands.Choice(name="中文", value="zh"),
            app_commands.Choice(name="Automatic (your Discord's language)", value="auto"),
        ]
    )
    async def language(
        interaction: discord.Interaction[Any], choice: app_commands.Choice[str] | None = None
    ) -> None:
        await bot.language(interaction, choice.value if choice is not None else None)

    @tree.command(name="whoami", description="Your id, as the bot's operator writes it")
    async def whoami(interaction: discord.Interaction[Any]) -> None:
        await bot.whoami(interaction)

    @tree.command(name="settings", description="This server's settings for the bot")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    @app_commands.allowed_installs(guilds=True, users=False)
    async def settings(interaction: discord.Interaction[Any]) -> None:
        await bot.open_settings(interaction)

    @tree.command(name="help", description="How to use the bot")
    async def help_(interaction: discord.Interaction[Any]) -> None:
        await bot.help(interaction)

    @tree.command(name="stats", description="Today's jobs (bot admins only)")
    async def stats(interaction: discord.Interaction[Any]) -> None:
        await bot.stats(interaction)

    @tree.command(name="grant", description="Give a user extra photos (bot admins only)")
    @app_commands.describe(user="Who gets them", credits="How many (negative takes back)")
    async def grant(
        interaction: discord.Interaction[Any], user: discord.User, credits: Credits
    ) -> None:
        await bot.grant(interaction, user, credits)

    @tree.error
    async def on_error(
        interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await bot.on_failure(interaction, cause)

    return tree


async def sync_commands(tree: app_commands.CommandTree[Any], guild_ids: list[int]) -> None:
    """Publish the commands: globally, or to the given guilds (instant, for development)."""
    if not guild_ids:
        synced = await tree.sync()
        log.info("synced %d global commands", len(synced))
        return
    for guild_id in guild_ids:
        guild = discord.Object(guild_id)
        tree.copy_global_to(guild=guild)
        try:
            synced = await tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.error("could not sync commands to guild %s: HTTP %s", guild_id, exc.status)
            continue
        log.info("synced %d commands to guild %s", len(synced), guild_id)
