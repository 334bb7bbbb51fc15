"""What the bot shows, built from the shared catalog: the result embed, `/quota` and `/stats`."""

from __future__ import annotations

import discord

from bots import messages as m
from core.quota import QuotaStatus

EMBED_COLOUR = discord.Colour(0xE8A0B4)


def result_embed(
    lang: m.Lang, fidelity: float, seconds: float, quota: QuotaStatus, image: str | None
) -> discord.Embed:
    """The short card under a result: fidelity used, time taken, quota left today."""
    embed = discord.Embed(title=m.text("d:result_title", lang), colour=EMBED_COLOUR)
    embed.add_field(name=m.text("d:fidelity", lang), value=f"{fidelity:g}")
    embed.add_field(name=m.text("d:time", lang), value=m.text("d:seconds", lang, seconds=seconds))
    left = m.text("d:unlimited", lang) if quota.left is None else str(quota.left)
    if quota.credits:
        left += m.text("quota_credits", lang, credits=quota.credits)
    embed.add_field(name=m.text("d:left", lang), value=left)
    if image is not None:
        embed.set_image(url=f"attachment://{image}")
    return embed
