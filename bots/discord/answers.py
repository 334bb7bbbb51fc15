"""Answering an interaction privately, and in which language: shared by the adapter and the
feature modules (settings, Compare)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import discord

from bots import messages as m
from core.jobs import Platform
from core.service import RetouchService

log = logging.getLogger("retouch.discord")

PLATFORM: Platform = "discord"
Interaction = discord.Interaction[Any]


def chat_of(interaction: Interaction) -> str:
    """The chat an interaction is in, as the core counts and configures it: the server, or
    (outside one) the DM channel."""
    if interaction.guild_id is not None:
        return str(interaction.guild_id)
    return str(interaction.channel_id or interaction.user.id)


async def language_of(service: RetouchService, interaction: Interaction) -> m.Lang:
    """The user's `/language`, else the server's, else their Discord client's."""
    server = str(interaction.guild_id) if interaction.guild_id is not None else None
    return await service.preferences.language(
        PLATFORM, str(interaction.user.id), server, interaction.locale.value
    )


async def tell(interaction: Interaction, line: str, view: discord.ui.View | None = None) -> None:
    """An ephemeral answer: the interaction's response, or a follow-up once it has one."""
    extra: dict[str, Any] = {"view": view} if view is not None else {}
    try:
        if interaction.response.is_done():
            await interaction.followup.send(line, ephemeral=True, **extra)
        else:
            await interaction.response.send_message(line, ephemeral=True, **extra)
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("could not answer interaction %s (%s)", interaction.id, type(exc).__name__)
