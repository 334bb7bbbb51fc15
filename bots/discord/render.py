"""What the bot shows, built from the shared catalog: the result embed, `/quota` and `/stats`."""

from __future__ import annotations

import discord

from bots import messages as m
from core.quota import QuotaStatus
from core.store import Stats

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


def quota_line(status: QuotaStatus, lang: m.Lang) -> str:
    """The `/quota` answer."""
    if status.limit is None:
        return m.text("quota_unlimited", lang, used=status.used)
    credits = m.text("quota_credits", lang, credits=status.credits) if status.credits else ""
    return m.text(
        "quota",
        lang,
        used=status.used,
        limit=status.limit,
        left=status.left,
        credits=credits,
        reset=m.when(status.resets_at, lang),
    )


def stats_line(stats: Stats, queued: int, running: int, lang: m.Lang) -> str:
    """The `/stats` answer for admins."""
    return m.text(
        "stats",
        lang,
        day=stats.day,
        jobs=stats.jobs,
        users=stats.users,
        states=_counts(stats.by_state),
        platforms=_counts(stats.by_platform),
        queued=queued,
        running=running,
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
