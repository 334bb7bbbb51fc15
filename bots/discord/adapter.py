"""The Discord bot: interactions become `RetouchRequest`s, and the service's hooks answer them.

Every command defers at once (after checks that need no I/O) and the job's progress shows in
the deferred response; results are follow-ups, or channel messages once the token has expired.
Errors the user caused are ephemeral. Everything the bot says comes from `bots.messages`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import discord
import httpx

from bots import messages as m
from bots.chat_commands import ChatCommands, read_fidelity
from bots.chat_settings import may_use
from bots.compare import Comparisons
from bots.discord.answers import chat_of, language_of, tell
from bots.discord.batches import Batches
from bots.discord.compare import CompareHandler
from bots.discord.delivery import Replier, Upload, fit, result_nonce
from bots.discord.render import result_embed
from bots.discord.settings import DiscordSettings
from bots.discord.settings_view import ServerSettings, SettingSelect
from bots.discord.status import StatusBoard
from bots.discord.targets import Target, attachment_ref, image_refs, lang_of, looks_like_image
from bots.discord.views import bind_buttons, forget_view, redo_view
from core.errors import (
    BackendError,
    DeliveryError,
    FidelityError,
    ImageTooLargeError,
    InputGoneError,
    NotAnImageError,
    ResultExpiredError,
    ResultInvalidError,
    ResultTooLargeError,
    RetouchError,
)
from core.fetch import download_image
from core.jobs import Job, Platform
from core.service import JobEvent, RetouchRequest, RetouchService
from core.settings import Settings

log = logging.getLogger("retouch.discord")

PLATFORM: Platform = "discord"
DOWNLOAD_TIMEOUT = 120.0
MAX_FILES_PER_MESSAGE = 5
"""One row of redo buttons per photo, and a message has five rows."""

Interaction = discord.Interaction[Any]


class DiscordBot:
    """Command and button handlers, and the `PlatformHooks` the service calls back."""

    def __init__(
        self,
        settings: Settings,
        discord_settings: DiscordSettings,
        service: RetouchService,
        client: discord.Client,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.service = service
        self.client = client
        self.http = http
        self.replier = Replier(client, clock)
        interval = discord_settings.status_edit_interval_seconds
        self.status = StatusBoard(self.replier, interval)
        self.batches = Batches(self._busy_siblings)
        self.commands = ChatCommands(service, PLATFORM, settings.retouch_default_fidelity)
        self.server_settings = ServerSettings(service)
        self.comparisons = CompareHandler(Comparisons(service, self.commands, self.fetch_input))
        bind_buttons(client, self)
        client.add_dynamic_items(SettingSelect)

    async def close(self) -> None:
        await self.status.close()

    # --- retouching -----------------------------------------------------------------------

    async def retouch(
        self, interaction: Interaction, image: discord.Attachment, fidelity: float | None
    ) -> None:
        """`/retouch image [fidelity]`."""
        lang = await self._lang(interaction)
        problem = self._attachment_problem(image, lang)
        if problem is None and fidelity is not None:
            try:
                fidelity = read_fidelity(fidelity)
            except FidelityError as exc:
                problem = m.rejection(exc, lang)
        if problem is None and not interaction.app_permissions.attach_files:
            problem = m.text("no_attach_permission", lang)
        if problem is not None:
            await self._tell(interaction, problem)
            return
        await self._start(interaction, [attachment_ref(image)], fidelity)

    async def retouch_message(self, interaction: Interaction, message: discord.Message) -> None:
        """The "Retouch photo" context menu: every image of the message, one job each."""
        lang = await self._lang(interaction)
        limit = self.settings.image_max_input_bytes
        refs, too_large = image_refs(message, limit)
        if not refs:
            problem = self._too_big(too_large, lang) if too_large else m.text("d:no_images", lang)
            await self._tell(interaction, problem)
            return
        if not interaction.app_permissions.attach_files:
            await self._tell(interaction, m.text("no_attach_permission", lang))
            return
        await self._start(interaction, refs[:10], None)

    async def _start(
        self, interaction: Interaction, refs: Sequence[dict[str, Any]], fidelity: float | None
    ) -> None:
        """Defer, then one job per input; refusals are ephemeral and cost nothing."""
        lang = await self._lang(interaction)
        if not await self._may_use(interaction):
            await self._tell(interaction, m.text("admins_only_use", lang))
            return
        try:
            response = await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            log.warning("could not acknowledge interaction %s: %s", interaction.id, exc.status)
            return
        original = response.message_id if response else None
        base = Target.for_interaction(interaction, original, lang)
        refusals: list[str] = []
        for index, ref in enumerate(refs):
            target = base.in_batch(len(refs), index)
            request = RetouchRequest(
                platform=PLATFORM,
                user_id=str(interaction.user.id),
                chat_id=chat_of(interaction),
                reply_target=target.to_json(),
                input_ref=ref,
                fidelity=fidelity,
                is_group=interaction.guild_id is not None,
            )
            try:
                await self.service.submit(request)
            except RetouchError as exc:
                refusals.append(m.rejection(exc, lang))
        if len(refusals) == len(refs):
            await self.replier.delete_status(base)
        for line in dict.fromkeys(refusals):
            await self.replier.note(base, line)

    def _attachment_problem(self, attachment: discord.Attachment, lang: m.Lang) -> str | None:
        """Why this attachment can't be retouched, judged before anything is downloaded."""
        if not looks_like_image(attachment.content_type, attachment.filename):
            return m.text("not_an_image_file", lang)
        if attachment.size > self.settings.image_max_input_bytes:
            return self._too_big(attachment.size, lang)
        return None

    def _too_big(self, size: int, lang: m.Lang) -> str:
        limit = self.settings.image_max_input_bytes
        return m.text("file_too_big", lang, size=f"{size / 1e6:.0f}", limit=f"{limit / 1e6:.0f}")

    # --- other commands -------------------------------------------------------------------

    async def help(self, interaction: Interaction) -> None:
        await self._tell(interaction, m.text("d:help", await self._lang(interaction)))

    async def quota(self, interaction: Interaction) -> None:
        line = await self.commands.quota(str(interaction.user.id), await self._lang(interaction))
        await self._tell(interaction, line)

    async def fidelity(self, interaction: Interaction, value: float | None, reset: bool) -> None:
        """`/fidelity [value] [reset]`: show, save or clear the user's default."""
        user, lang = str(interaction.user.id), await self._lang(interaction)
        await self._tell(interaction, await self.commands.fidelity(user, lang, value, reset=reset))

    async def forget(self, interaction: Interaction) -> None:
        lang = await self._lang(interaction)
        view = forget_view(interaction.user.id, lang)
        await self._tell(interaction, m.text("forget_confirm", lang), view)

    async def stats(self, interaction: Interaction) -> None:
        line = await self.commands.stats(str(interaction.user.id), await self._lang(interaction))
        await self._tell(interaction, line)

    async def language(self, interaction: Interaction, choice: str | None) -> None:
        """`/language [choice]`: show, choose or go back to the client's language."""
        line = await self.commands.language(
            str(interaction.user.id),
            await self._lang(interaction),
            choice,
            chat=str(interaction.guild_id) if interaction.guild_id is not None else None,
            client=interaction.locale.value,
        )
        await self._tell(interaction, line)

    async def whoami(self, interaction: Interaction) -> None:
        server = str(interaction.guild_id) if interaction.guild_id is not None else None
        line = self.commands.whoami(str(interaction.user.id), await self._lang(interaction), server)
        await self._tell(interaction, line)

    async def open_settings(self, interaction: Interaction) -> None:
        """`/settings`: the server's own settings (see `bots.discord.settings_view`)."""
        await self.server_settings.open(interaction)

    async def grant(self, interaction: Interaction, user: discord.User, credits: int) -> None:
        caller, lang = str(interaction.user.id), await self._lang(interaction)
        line = await self.commands.grant(caller, lang, str(user.id), credits)
        await self._tell(interaction, line)

    # --- buttons --------------------------------------------------------------------------

    async def on_redo(self, interaction: Interaction, job_id: str, choice: str) -> None:
        """A redo is a new job on the same input, with its own deferred response."""
        lang = await self._lang(interaction)
        pressed = await self.commands.redo(job_id, str(interaction.user.id), choice, lang)
        if isinstance(pressed, str):
            await self._tell(interaction, pressed)
        elif not interaction.app_permissions.attach_files:
            await self._tell(interaction, m.text("no_attach_permission", lang))
        else:
            job, fidelity = pressed
            await self._start(interaction, [job.input_ref], fidelity)

    async def on_cancel(self, interaction: Interaction, interaction_id: int) -> None:
        """Cancel the presser's waiting or running jobs of that interaction."""
        lang = await self._lang(interaction)
        presser = str(interaction.user.id)
        jobs = await self.service.unfinished_jobs_where(PLATFORM, "interaction_id", interaction_id)
        mine = [job for job in jobs if job.user_id == presser]
        if jobs and not mine:
            await self._tell(interaction, m.text("not_yours", lang))
            return
        cancelled = [await self.service.cancel(job.id, PLATFORM, presser) for job in mine]
        await self._tell(interaction, m.text("cancelled" if any(cancelled) else "too_late", lang))

    async def on_forget(self, interaction: Interaction, confirmed: bool, owner: int) -> None:
        lang = await self._lang(interaction)
        if owner != interaction.user.id:
            await self._tell(interaction, m.text("not_yours", lang))
            return
        line = await self.commands.forget(str(owner), confirmed, lang)
        try:
            await interaction.response.edit_message(content=line, view=None)
        except discord.HTTPException as exc:
            log.warning("could not answer /forget: %s", exc.status)

    async def on_compare(self, interaction: Interaction, job_id: str) -> None:
        await self.comparisons.press(interaction, job_id)

    async def on_setting(self, interaction: Interaction, key: str) -> None:
        await self.server_settings.choose(interaction, key)

    async def on_failure(self, interaction: Interaction, error: Exception) -> None:
        """A handler raised: log it and tell the user, never the event loop."""
        log.error("interaction %s failed", interaction.id, exc_info=error)
        lang = lang_of(interaction)
        await self._tell(interaction, m.text("failed", lang, reason=m.text("e:other", lang)))

    # --- the service's hooks --------------------------------------------------------------

    async def fetch_input(self, job: Job) -> bytes:
        """Download the job's image from Discord's CDN (size-capped; expired URLs are gone)."""
        url = str(job.input_ref.get("url") or "")
        if not url:
            raise InputGoneError("the job has no image to fetch")
        try:
            return await download_image(
                self.http,
                url,
                max_bytes=self.settings.image_max_input_bytes,
                timeout=DOWNLOAD_TIMEOUT,
            )
        except ResultExpiredError:
            raise InputGoneError("Discord no longer has the photo") from None
        except ResultTooLargeError:
            raise ImageTooLargeError("That file is too large.") from None
        except ResultInvalidError:
            raise NotAnImageError("That file is not an image.") from None
        except BackendError as exc:
            raise RetouchError(f"could not download the photo from Discord ({exc.code})") from None

    async def deliver(self, job: Job, result: bytes) -> None:
        """Post the result (with a batch's other photos when they finish together)."""
        target = Target.of(job)
        if target.batch is None:
            await self._send_results([(job, result)])
        else:
            await self.batches.deliver(target.interaction_id, job, result, self._send_results)

    async def on_event(self, event: JobEvent) -> None:
        job = event.job
        target = Target.of(job)
        lang = target.lang
        if event.kind == "queued":
            await self.status.show(target, m.text("queued", lang, position=event.position or 1))
        elif event.kind == "running":
            await self.status.show(target, m.text("running", lang))
        elif event.kind in ("done", "cancelled", "failed"):
            if target.batch is not None and event.kind != "done":
                await self.batches.sibling_done(target.interaction_id)
            await self.status.finish(target)
            if event.kind == "failed":
                await self.replier.note(target, _failure_line(event.error, lang))

    # --- helpers --------------------------------------------------------------------------

    async def _send_results(self, items: Sequence[tuple[Job, bytes]]) -> None:
        for start in range(0, len(items), MAX_FILES_PER_MESSAGE):
            await self._send_message(items[start : start + MAX_FILES_PER_MESSAGE])

    async def _send_message(self, items: Sequence[tuple[Job, bytes]]) -> None:
        first = items[0][0]
        target = Target.of(first)
        uploads: list[Upload] = []
        for job, data in items:
            stem = "retouched" if target.batch is None else f"retouched-{Target.of(job).index + 1}"
            try:
                uploads.append(await fit(data, target.upload_limit, stem))
            except RetouchError as exc:
                raise DeliveryError(
                    f"the result can't be made small enough for Discord ({exc.code})",
                    permanent=True,
                ) from None
        quota = await self.service.quota_status(PLATFORM, first.user_id)
        seconds = max(time.time() - job.created_at for job, _ in items)
        image = uploads[0].name if len(uploads) == 1 else None
        embed = result_embed(target.lang, first.fidelity, seconds, quota, image)
        compare = self.settings.compare_enabled
        view = redo_view([job.id for job, _ in items], target.lang, compare=compare)
        nonce = result_nonce([job.id for job, _ in items])
        await self.status.quiet(Target.of(job) for job, _ in items)
        await self.replier.send_result(target, uploads, embed, view, nonce)

    async def _busy_siblings(self, interaction_id: int) -> set[str]:
        jobs = await self.service.unfinished_jobs_where(PLATFORM, "interaction_id", interaction_id)
        return {job.id for job in jobs if job.state in ("running", "delivering")}

    async def _tell(
        self, interaction: Interaction, line: str, view: discord.ui.View | None = None
    ) -> None:
        await tell(interaction, line, view)

    async def _lang(self, interaction: Interaction) -> m.Lang:
        return await language_of(self.service, interaction)

    async def _may_use(self, interaction: Interaction) -> bool:
        """Anyone may, unless the server chose "admins only" (Manage Server, then)."""
        server = str(interaction.guild_id) if interaction.guild_id is not None else None

        async def is_admin() -> bool:
            return interaction.permissions.manage_guild

        return await may_use(PLATFORM, self.service, server, is_admin)


def _failure_line(error: RetouchError | None, lang: m.Lang) -> str:
    if isinstance(error, DeliveryError) and error.params.get("reason") == "no_attach_permission":
        return m.text("no_attach_permission", lang)
    return m.failure(error or RetouchError("unknown"), lang)
