"""The Telegram bot: handlers that turn updates into `RetouchRequest`s, and the service's hooks.

Updates are handled concurrently (the real work runs in the service's worker pool), replies go
to the message that asked, and everything the bot says comes from `bots.messages`.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image
from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots import messages as m
from bots.chat_commands import ChatCommands, read_fidelity
from bots.telegram.addressing import address
from bots.telegram.albums import IncomingAlbums, OutgoingAlbums
from bots.telegram.flood import patiently
from bots.telegram.memory import IdleTrimmer
from bots.telegram.status import ChatActions, StatusBoard
from core.errors import (
    DeliveryError,
    FidelityError,
    ImageTooLargeError,
    InputGoneError,
    RetouchError,
)
from core.fidelity import REDO_CHOICES
from core.jobs import Job, Platform
from core.service import JobEvent, RetouchRequest, RetouchService
from core.settings import Settings

log = logging.getLogger("retouch.telegram")

PLATFORM: Platform = "telegram"
CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The official Bot API server hands bots files up to 20 MB; self-hosted servers go further."""
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDE_SUM = 10_000
PHOTO_MAX_RATIO = 20
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff")

COMMANDS = {
    "en": [
        ("retouch", "Retouch a photo (reply to one, or caption it)"),
        ("quota", "Photos left today"),
        ("fidelity", "Save or show your default strength"),
        ("help", "How to use the bot"),
        ("forget", "Delete what the bot keeps about you"),
        ("start", "Start"),
    ],
    "zh": [
        ("retouch", "美颜照片(回复照片或写在说明中)"),
        ("quota", "今天剩余次数"),
        ("fidelity", "保存或查看默认强度"),
        ("help", "使用说明"),
        ("forget", "删除关于你的数据"),
        ("start", "开始"),
    ],
}

Context = ContextTypes.DEFAULT_TYPE


class TelegramBot:
    """One bot: its handlers, and the `PlatformHooks` the service calls back."""

    def __init__(
        self,
        settings: Settings,
        service: RetouchService,
        app: Application[Any, Any, Any, Any, Any, Any],
    ) -> None:
        self.settings = settings
        self.service = service
        self.app = app
        self.bot = app.bot
        self.status = StatusBoard(app.bot, settings.telegram_status_edit_interval_seconds)
        self.actions = ChatActions(app.bot)
        self.albums_in = IncomingAlbums(settings.telegram_album_wait_seconds, self._handle_media)
        self.albums_out = OutgoingAlbums()
        self._acting: set[str] = set()
        self.commands = ChatCommands(service, PLATFORM, settings.retouch_default_fidelity)
        self.trimmer = IdleTrimmer(lambda: bool(service.running_count or service.queue_depth))
        official = "api.telegram.org" in settings.telegram_file_base_url
        self.download_limit = min(
            settings.image_max_input_bytes,
            CLOUD_DOWNLOAD_LIMIT if official else settings.image_max_input_bytes,
        )
        self._add_handlers()

    @property
    def username(self) -> str:
        return str(self.bot.username)

    # --- life cycle -----------------------------------------------------------------------

    async def register_commands(self) -> None:
        """Publish the command menu (`setMyCommands`), in English and Chinese."""
        for lang, commands in COMMANDS.items():
            await self.bot.set_my_commands(
                [BotCommand(name, description) for name, description in commands],
                language_code=None if lang == "en" else lang,
            )

    async def close(self) -> None:
        await self.albums_in.close()
        self.albums_out.close()
        await self.status.close()
        await self.actions.close()
        await self.trimmer.close()

    def _add_handlers(self) -> None:
        app = self.app
        app.add_handler(CommandHandler("start", self.on_start))
        app.add_handler(CommandHandler("help", self.on_help))
        app.add_handler(CommandHandler("retouch", self.on_retouch))
        app.add_handler(CommandHandler("quota", self.on_quota))
        app.add_handler(CommandHandler("fidelity", self.on_fidelity))
        app.add_handler(CommandHandler("forget", self.on_forget))
        app.add_handler(CommandHandler("stats", self.on_stats))
        app.add_handler(CommandHandler("grant", self.on_grant))
        app.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, self.on_media))
        other = (
            filters.Sticker.ALL
            | filters.VIDEO
            | filters.ANIMATION
            | filters.VIDEO_NOTE
            | filters.VOICE
            | filters.AUDIO
            | (filters.TEXT & ~filters.COMMAND)
        )
        app.add_handler(MessageHandler(filters.ChatType.PRIVATE & other, self.on_other))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_error_handler(self.on_error)

    # --- photos ---------------------------------------------------------------------------

    async def on_media(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        if message.media_group_id:
            if self._private(message) or self._all_photos(message) or message.caption:
                self.albums_in.add(message)
            return
        await self._handle_media([message])

    async def _handle_media(self, messages: list[Message]) -> None:
        """One photo or a whole album: check, then one job per image."""
        first = messages[0]
        lang = _lang(first)
        caption_text = next((msg.caption for msg in messages if msg.caption), None)
        caption = address(caption_text, self.username)
        if not (self._private(first) or self._all_photos(first) or caption.addressed):
            return
        try:
            fidelity = caption.fidelity()
        except FidelityError as exc:
            await self._reply(first, m.rejection(exc, lang))
            return
        usable = []
        for msg in messages:
            problem = self._media_problem(msg, lang)
            if problem:
                await self._reply(msg, problem)
            else:
                usable.append(msg)
        if not usable:
            return
        status = await self._status_reply(first, lang)
        album = len(usable) > 1
        for index, msg in enumerate(usable):
            await self._submit(
                source=msg,
                answer_to=msg,
                fidelity=fidelity,
                status=status,
                album=(str(first.media_group_id), len(usable), index) if album else None,
            )

    def _media_problem(self, message: Message, lang: m.Lang) -> str | None:
        """Why this message's file can't be retouched, before anything is downloaded."""
        if message.photo:
            size = message.photo[-1].file_size
        elif message.document is not None:
            doc = message.document
            name = (doc.file_name or "").lower()
            looks_like_image = (doc.mime_type or "").startswith("image/") or name.endswith(
                IMAGE_SUFFIXES
            )
            if not looks_like_image:
                return m.text("not_an_image_file", lang)
            size = doc.file_size
        else:
            return m.text("send_a_photo", lang)
        if size and size > self.download_limit:
            return m.text(
                "file_too_big",
                lang,
                size=f"{size / 1e6:.0f}",
                limit=f"{self.download_limit / 1e6:.0f}",
            )
        return None

    async def _submit(
        self,
        *,
        source: Message,
        answer_to: Message,
        fidelity: float | None,
        status: Message | None,
        album: tuple[str, int, int] | None = None,
        user_id: int | None = None,
        lang: m.Lang | None = None,
    ) -> bool:
        """Queue a job for the image in `source`, answering `answer_to`; False when refused."""
        lang = lang or _lang(answer_to)
        file = source.photo[-1] if source.photo else source.document
        assert file is not None
        user = user_id or (answer_to.from_user.id if answer_to.from_user else 0)
        reply_target: dict[str, Any] = {
            "chat_id": answer_to.chat.id,
            "message_id": answer_to.message_id,
            "thread_id": answer_to.message_thread_id if answer_to.is_topic_message else None,
            "status_id": status.message_id if status else None,
            "lang": lang,
        }
        if album:
            reply_target["album"] = {"id": album[0], "size": album[1], "index": album[2]}
        request = RetouchRequest(
            platform=PLATFORM,
            user_id=str(user),
            chat_id=str(answer_to.chat.id),
            reply_target=reply_target,
            input_ref={"file_id": file.file_id, "file_unique_id": file.file_unique_id},
            fidelity=fidelity,
            is_group=answer_to.chat.type != ChatType.PRIVATE,
        )
        try:
            await self.service.submit(request)
        except RetouchError as exc:
            refusal = m.rejection(exc, lang)
            if status is not None:
                await self.status.show(answer_to.chat.id, status.message_id, refusal, None)
            else:
                await self._reply(answer_to, refusal)
            return False
        return True

    async def on_retouch(self, update: Update, context: Context) -> None:
        """`/retouch [fidelity]`, as a reply to a photo (or alone: how to use it)."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        lang = _lang(message)
        try:
            fidelity = read_fidelity(" ".join(context.args)) if context.args else None
        except FidelityError as exc:
            await self._reply(message, m.rejection(exc, lang))
            return
        target = message.reply_to_message
        if target is None or not (target.photo or target.document):
            key = "reply_to_photo" if not self._private(message) else "send_a_photo"
            await self._reply(message, m.text(key, lang))
            return
        problem = self._media_problem(target, lang)
        if problem:
            await self._reply(message, problem)
            return
        status = await self._status_reply(message, lang)
        await self._submit(source=target, answer_to=message, fidelity=fidelity, status=status)

    async def on_other(self, update: Update, context: Context) -> None:
        """Stickers, videos, voice and plain text in a private chat: say what to send."""
        message = update.effective_message
        if message is not None:
            await self._reply(message, m.text("send_a_photo", _lang(message)))

    # --- commands -------------------------------------------------------------------------

    async def on_start(self, update: Update, context: Context) -> None:
        if update.effective_message:
            await self._reply(
                update.effective_message, m.text("start", _lang(update.effective_message))
            )

    async def on_help(self, update: Update, context: Context) -> None:
        if update.effective_message:
            await self._reply(
                update.effective_message, m.text("help", _lang(update.effective_message))
            )

    async def on_quota(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and message.from_user is not None:
            line = await self.commands.quota(str(message.from_user.id), _lang(message))
            await self._reply(message, line)

    async def on_fidelity(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and message.from_user is not None:
            value = " ".join(context.args or [])
            line = await self.commands.fidelity(str(message.from_user.id), _lang(message), value)
            await self._reply(message, line)

    async def on_forget(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        lang = _lang(message)
        uid = message.from_user.id
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(m.text("forget_yes", lang), callback_data=f"f:y:{uid}"),
                    InlineKeyboardButton(m.text("forget_no", lang), callback_data=f"f:n:{uid}"),
                ]
            ]
        )
        await self._reply(message, m.text("forget_confirm", lang), keyboard)

    async def on_stats(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and message.from_user is not None:
            line = await self.commands.stats(str(message.from_user.id), _lang(message))
            await self._reply(message, line)

    async def on_grant(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and message.from_user is not None:
            args = context.args or []
            user, credits = args if len(args) == 2 else (None, None)
            caller = str(message.from_user.id)
            line = await self.commands.grant(caller, _lang(message), user, credits)
            await self._reply(message, line)

    # --- buttons --------------------------------------------------------------------------

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None or query.data is None:
            return
        lang = m.lang_for(query.from_user.language_code)
        kind, _, rest = query.data.partition(":")
        try:
            popup = await self._press(query, kind, rest, lang)
        except RetouchError as exc:
            popup = m.rejection(exc, lang)
        await patiently(lambda: query.answer(popup, show_alert=bool(popup) and kind != "r"))

    async def _press(self, query: CallbackQuery, kind: str, rest: str, lang: m.Lang) -> str:
        presser = str(query.from_user.id)
        if kind == "f":
            choice, _, owner = rest.partition(":")
            if owner != presser:
                return m.text("not_yours", lang)
            await _edit(query, await self.commands.forget(presser, choice == "y", lang))
            return ""
        job_id, _, value = rest.partition(":")
        if kind == "c":
            job = await self.commands.own_job(job_id, presser, lang)
            if isinstance(job, str):
                return job
            cancelled = await self.service.cancel(job_id, PLATFORM, presser)
            return m.text("cancel_ok" if cancelled else "too_late", lang)
        if kind == "r" and isinstance(query.message, Message):
            pressed = await self.commands.redo(job_id, presser, value, lang)
            if isinstance(pressed, str):
                return pressed
            return await self._redo(query.message, *pressed, presser, lang)
        return m.text("job_gone", lang)

    async def _redo(
        self, result: Message, job: Job, fidelity: float, presser: str, lang: m.Lang
    ) -> str:
        """A redo is a new job on the same input, answering the result message."""
        status = await self._status_reply(result, lang)
        reply_target: dict[str, Any] = {
            "chat_id": result.chat.id,
            "message_id": result.message_id,
            "thread_id": job.reply_target.get("thread_id"),
            "status_id": status.message_id if status else None,
            "lang": lang,
        }
        request = RetouchRequest(
            platform=PLATFORM,
            user_id=presser,
            chat_id=str(result.chat.id),
            reply_target=reply_target,
            input_ref=job.input_ref,
            fidelity=fidelity,
            is_group=result.chat.type != ChatType.PRIVATE,
        )
        try:
            await self.service.submit(request)
        except RetouchError:
            if status is not None:
                await self.status.remove(result.chat.id, status.message_id)
            raise
        return m.text("redo_ok", lang, fidelity=fidelity)

    # --- the service's hooks --------------------------------------------------------------

    async def fetch_input(self, job: Job) -> bytes:
        """Download the job's photo from Telegram by its file id (never sent upstream as a URL)."""
        file_id = str(job.input_ref.get("file_id", ""))
        try:
            file = await patiently(lambda: self.bot.get_file(file_id))
            if file.file_size and file.file_size > self.download_limit:
                raise ImageTooLargeError("That file is too large.", size=file.file_size)
            return bytes(await patiently(file.download_as_bytearray))
        except BadRequest as exc:
            raise InputGoneError(f"Telegram no longer has the photo ({exc.message})") from None
        except TelegramError as exc:
            raise RetouchError(f"Telegram did not send the photo ({exc.message})") from None

    async def deliver(self, job: Job, result: bytes) -> None:
        """Upload the result as a reply (an album when all its photos are done)."""
        target = job.reply_target
        album = target.get("album")
        try:
            if album and await self.albums_out.deliver(
                album["id"], album["size"], album["index"], result, self._album_sender(job)
            ):
                return
            await self._send_result(job, result)
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
        job = event.job
        target = job.reply_target
        chat_id = int(target["chat_id"])
        status_id = target.get("status_id")
        lang: m.Lang = target.get("lang", "en")
        thread_id = target.get("thread_id")
        if event.kind == "running" and job.id not in self._acting:
            self._acting.add(job.id)
            self.actions.start(chat_id, thread_id)
        if event.kind in ("done", "failed", "cancelled"):
            self.trimmer.job_ended()
            if job.id in self._acting:
                self._acting.discard(job.id)
                self.actions.stop(chat_id, thread_id)
        if event.kind == "failed" and target.get("album"):
            self.albums_out.failed(target["album"]["id"])

        if event.kind == "queued" and status_id:
            line = m.text("queued", lang, position=event.position or 1)
            await self.status.show(chat_id, status_id, line, cancel_keyboard(job.id, lang))
        elif event.kind == "running" and status_id:
            line = m.text("running", lang)
            await self.status.show(chat_id, status_id, line, cancel_keyboard(job.id, lang))
        elif event.kind == "done" and status_id:
            await self.status.remove(chat_id, status_id)
        elif event.kind in ("failed", "cancelled"):
            line = (
                m.failure(event.error, lang)
                if event.kind == "failed" and event.error is not None
                else m.text("cancelled", lang)
            )
            if status_id:
                await self.status.show(chat_id, status_id, line, None)
            else:
                await self._send_text(job, line)

    # --- sending --------------------------------------------------------------------------

    async def _send_result(self, job: Job, result: bytes) -> None:
        target = job.reply_target
        lang: m.Lang = target.get("lang", "en")
        caption = await self._caption(job, lang)
        keyboard = redo_keyboard(job.id, lang)
        common: dict[str, Any] = {
            "chat_id": target["chat_id"],
            "caption": caption,
            "reply_markup": keyboard,
            "message_thread_id": target.get("thread_id"),
            "reply_parameters": ReplyParameters(
                target["message_id"], allow_sending_without_reply=True
            ),
        }
        if fits_send_photo(result):
            await patiently(
                lambda: self.bot.send_photo(photo=result, filename="retouched.jpg", **common)
            )
            if self.settings.telegram_send_file_too:
                try:
                    await patiently(
                        lambda: self.bot.send_document(
                            target["chat_id"],
                            result,
                            filename=_file_name(result),
                            message_thread_id=target.get("thread_id"),
                            reply_parameters=common["reply_parameters"],
                        )
                    )
                except TelegramError as exc:  # the photo went out; the extra file is a bonus
                    log.warning("job %s: sending the full-quality file failed: %s", job.id, exc)
        else:
            await patiently(
                lambda: self.bot.send_document(
                    document=result, filename=_file_name(result), **common
                )
            )

    def _album_sender(self, job: Job):  # type: ignore[no-untyped-def]
        target = job.reply_target
        lang: m.Lang = target.get("lang", "en")

        async def send(results: dict[int, bytes]) -> None:
            caption = await self._caption(job, lang)
            media = [
                InputMediaPhoto(
                    data, caption=caption if i == 0 else None, filename=f"retouched-{i + 1}.jpg"
                )
                for i, data in enumerate(results.values())
            ]
            await patiently(
                lambda: self.bot.send_media_group(
                    target["chat_id"],
                    media,
                    message_thread_id=target.get("thread_id"),
                    reply_parameters=ReplyParameters(
                        target["message_id"], allow_sending_without_reply=True
                    ),
                )
            )

        return send

    async def _caption(self, job: Job, lang: m.Lang) -> str:
        left = ""
        quota_left = await self.service.quota_left(PLATFORM, job.user_id)
        if quota_left is not None:
            left = m.text("left_today", lang, left=quota_left)
        return m.text("done_caption", lang, fidelity=job.fidelity, left=left)

    async def _send_text(self, job: Job, line: str) -> None:
        target = job.reply_target
        try:
            await patiently(
                lambda: self.bot.send_message(
                    target["chat_id"],
                    line,
                    message_thread_id=target.get("thread_id"),
                    reply_parameters=ReplyParameters(
                        target["message_id"], allow_sending_without_reply=True
                    ),
                )
            )
        except TelegramError as exc:
            log.warning("job %s: could not tell the user: %s", job.id, exc.message)

    async def _status_reply(self, message: Message, lang: m.Lang) -> Message | None:
        """The status reply a job's progress is shown in, edited later by the `StatusBoard`."""
        status = await self._reply(message, m.text("received", lang))
        if status is not None:
            self.status.sent(status.chat.id)
        return status

    async def _reply(
        self, message: Message, line: str, keyboard: InlineKeyboardMarkup | None = None
    ) -> Message | None:
        try:
            return await patiently(
                lambda: message.reply_text(
                    line, reply_markup=keyboard, do_quote=True, disable_web_page_preview=True
                )
            )
        except TelegramError as exc:
            log.warning("could not reply in chat %s: %s", message.chat.id, exc.message)
            return None

    # --- helpers --------------------------------------------------------------------------

    def _private(self, message: Message) -> bool:
        return message.chat.type == ChatType.PRIVATE

    def _all_photos(self, message: Message) -> bool:
        return message.chat.id in self.settings.telegram_all_photos_chats

    async def on_error(self, update: object, context: Context) -> None:
        log.error("a handler failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            lang = _lang(update.effective_message)
            await self._reply(
                update.effective_message, m.text("failed", lang, reason=m.text("e:other", lang))
            )


def cancel_keyboard(job_id: str, lang: m.Lang) -> InlineKeyboardMarkup:
    """The Cancel button under a status message; callback data `c:<job id>`."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(m.text("cancel", lang), callback_data=f"c:{job_id}")]]
    )


def redo_keyboard(job_id: str, lang: m.Lang) -> InlineKeyboardMarkup:
    """Redo buttons; callback data `r:<job id>:<fidelity>` stays far below Telegram's 64 bytes."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    m.text("redo", lang, fidelity=f), callback_data=f"r:{job_id}:{f:g}"
                )
                for f in REDO_CHOICES
            ]
        ]
    )


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
    from core.formats import EXTENSIONS, sniff_format

    return f"retouched{EXTENSIONS.get(sniff_format(data) or 'jpeg', '.jpg')}"


def _lang(message: Message) -> m.Lang:
    return m.lang_for(message.from_user.language_code if message.from_user else None)


async def _edit(query: CallbackQuery, line: str) -> None:
    try:
        await patiently(lambda: query.edit_message_text(line))
    except TelegramError as exc:
        log.debug("could not edit the button message: %s", exc)
