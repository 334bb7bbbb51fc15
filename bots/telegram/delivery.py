"""The service's hooks for Telegram: fetch a job's photo, send its result, show its progress.

Results go out before status edits (the flood budget holds those back while results wait), as a
reply to the message that asked, and an album's results as one album when every photo is done.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image
from telegram import InputMediaPhoto
from telegram.error import BadRequest, Forbidden, TelegramError

from bots import messages as m
from bots.telegram.albums import OutgoingAlbums, Send
from bots.telegram.budget import budget_of
from bots.telegram.chat_actions import ChatActions
from bots.telegram.keyboards import cancel_keyboard, redo_keyboard
from bots.telegram.memory import IdleTrimmer
from bots.telegram.parts import BotParts
from bots.telegram.target import PLATFORM, Target
from core.errors import DeliveryError, ImageTooLargeError, InputGoneError, RetouchError
from core.formats import EXTENSIONS, sniff_format
from core.jobs import Job
from core.service import JobEvent

log = logging.getLogger("retouch.telegram")

PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDE_SUM = 10_000
PHOTO_MAX_RATIO = 20


class Delivery:
    """`PlatformHooks` for Telegram, with the chat actions and the idle memory trim."""

    def __init__(self, parts: BotParts, *, send_file_too: bool) -> None:
        self.service = service = parts.service
        self.bot = parts.bot
        self.status = parts.status
        self.download_limit = parts.download_limit
        self.send_file_too = send_file_too
        self.compare = parts.compare
        self.actions = ChatActions(parts.bot)
        self.albums = OutgoingAlbums()
        self.trimmer = IdleTrimmer(lambda: bool(service.running_count or service.queue_depth))
        self._acting: set[str] = set()

    async def close(self) -> None:
        self.albums.close()
        await self.actions.close()
        await self.trimmer.close()

    async def fetch_input(self, job: Job) -> bytes:
        """Download the job's photo from Telegram by its file id (never sent upstream as a URL)."""
        file_id = str(job.input_ref.get("file_id", ""))
        try:
            file = await self.bot.get_file(file_id)
            if file.file_size and file.file_size > self.download_limit:
                raise ImageTooLargeError("That file is too large.", size=file.file_size)
            return bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            raise InputGoneError(f"Telegram no longer has the photo ({exc.message})") from None
        except TelegramError as exc:
            raise RetouchError(f"Telegram did not send the photo ({exc.message})") from None

    async def deliver(self, job: Job, result: bytes) -> None:
        """Upload the result as a reply (an album when all its photos are done)."""
        target = Target.of(job)
        album = target.album
        try:
            if album and await self.albums.deliver(
                album.id, album.size, album.index, result, self._album_sender(job, target)
            ):
                return
            await self._send_result(job, target, result)
        except Forbidden as exc:
            raise DeliveryError(
                f"the bot can't post here ({exc.message})", permanent=True
            ) from None
        except BadRequest as exc:
            raise DeliveryError(
                f"Telegram refused the upload ({exc.message})", permanent=True
            ) from None
        except TelegramError as exc:
            raise DeliveryError(f"upload failed ({exc.message})") from None

    async def on_event(self, event: JobEvent) -> None:
        """Keep the chat action, the status message and the album in step with the job."""
        job = event.job
        target = Target.of(job)
        chat, status, lang = target.chat_id, target.status_id, target.lang
        budget = budget_of(self.bot)
        if budget is not None:  # status updates leave room for the results still to come
            if event.kind in ("done", "failed", "cancelled"):
                budget.settle(chat, job.id)
            else:
                budget.expect(chat, job.id)
        if event.kind == "running" and job.id not in self._acting:
            self._acting.add(job.id)
            self.actions.start(chat, target.thread_id)
        if event.kind in ("done", "failed", "cancelled"):
            self.trimmer.job_ended()
            if job.id in self._acting:
                self._acting.discard(job.id)
                self.actions.stop(chat, target.thread_id)
        if event.kind == "failed" and target.album:
            self.albums.failed(target.album.id)

        if event.kind == "queued" and status:
            line = m.text("queued", lang, position=event.position or 1)
            await self.status.show(chat, status, line, cancel_keyboard(job.id, lang))
        elif event.kind == "running" and status:
            await self.status.show(
                chat, status, m.text("running", lang), cancel_keyboard(job.id, lang)
            )
        elif event.kind == "done" and status:
            await self.status.remove(chat, status)
        elif event.kind in ("failed", "cancelled"):
            line = (
                m.failure(event.error, lang)
                if event.kind == "failed" and event.error is not None
                else m.text("cancelled", lang)
            )
            if not (status and await self.status.final(chat, status, line)):
                await self._send_text(job, target, line)

    async def _send_result(self, job: Job, target: Target, result: bytes) -> None:
        common: dict[str, Any] = {
            "caption": await self._caption(job, target.lang),
            "reply_markup": redo_keyboard(job.id, target.lang, compare=self.compare),
            **target.where(),
        }
        if not fits_send_photo(result):
            name = _file_name(result)
            await self.bot.send_document(document=result, filename=name, **common)
            return
        await self.bot.send_photo(photo=result, filename="retouched.jpg", **common)
        if self.send_file_too:
            try:
                await self.bot.send_document(
                    document=result, filename=_file_name(result), **target.where()
                )
            except TelegramError as exc:  # the photo went out; the extra file is a bonus
                log.warning("job %s: sending the full-quality file failed: %s", job.id, exc)

    def _album_sender(self, job: Job, target: Target) -> Send:
        async def send(results: dict[int, bytes]) -> None:
            caption = await self._caption(job, target.lang)
            media = [
                InputMediaPhoto(
                    data, caption=caption if i == 0 else None, filename=f"retouched-{i + 1}.jpg"
                )
                for i, data in enumerate(results.values())
            ]
            await self.bot.send_media_group(media=media, **target.where())

        return send

    async def _caption(self, job: Job, lang: m.Lang) -> str:
        left = ""
        quota_left = await self.service.quota_left(PLATFORM, job.user_id)
        if quota_left is not None:
            left = m.text("left_today", lang, left=quota_left)
        return m.text("done_caption", lang, fidelity=job.fidelity, left=left)

    async def _send_text(self, job: Job, target: Target, line: str) -> None:
        try:
            await self.bot.send_message(text=line, **target.where())
        except TelegramError as exc:
            log.warning("job %s: could not tell the user: %s", job.id, exc.message)


def fits_send_photo(data: bytes) -> bool:
    """Whether Telegram's sendPhoto takes it: 10 MB, width + height <= 10000, ratio <= 20."""
    if len(data) > PHOTO_MAX_BYTES:
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError):
        return False
    ratio = max(width, height) / max(1, min(width, height))
    return width + height <= PHOTO_MAX_SIDE_SUM and ratio <= PHOTO_MAX_RATIO


def _file_name(data: bytes) -> str:
    return f"retouched{EXTENSIONS.get(sniff_format(data) or 'jpeg', '.jpg')}"
