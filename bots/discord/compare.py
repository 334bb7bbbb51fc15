"""The Compare button under a Discord result: the before/after image, sent privately (only the
requester sees it), free."""

from __future__ import annotations

import io
import logging

import aiohttp
import discord

from bots import messages as m
from bots.compare import Comparisons
from bots.discord.answers import Interaction, language_of, tell

log = logging.getLogger("retouch.discord")


class CompareHandler:
    """Checks the press, acknowledges it at once, then follows up with the image."""

    def __init__(self, comparisons: Comparisons) -> None:
        self.comparisons = comparisons

    async def press(self, interaction: Interaction, job_id: str) -> None:
        service = self.comparisons.service
        lang = await language_of(service, interaction)
        job = await self.comparisons.check(job_id, str(interaction.user.id), lang)
        if isinstance(job, str):
            await tell(interaction, job)
            return
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            made = await self.comparisons.build(job, lang)
            if isinstance(made, str):
                await interaction.followup.send(made, ephemeral=True)
                return
            await interaction.followup.send(
                m.text("compare_caption", lang, fidelity=job.fidelity),
                file=discord.File(io.BytesIO(made.image), filename="before-after.jpg"),
                ephemeral=True,
            )
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("job %s: could not send the comparison (%s)", job.id, type(exc).__name__)
