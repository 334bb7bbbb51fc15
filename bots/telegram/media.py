"""Photos, image files and albums, and `/retouch` in reply to one: checked, then a job each.

In a private chat every photo is retouched; in a group only those addressed to the bot, or all
of them where the group's admins turned that on (`/settings`; else the chats
`TELEGRAM_ALL_PHOTOS_CHATS` names). A group whose admins chose "admins only" is served to them
alone. Nothing is downloaded here: the service fetches each photo by its file id when its job runs.
"""

from __future__ import annotations

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.ext import BaseHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bots import messages as m
from bots.chat_commands import read_fidelity
from bots.chat_settings import may_use
from bots.telegram.addressing import address
from bots.telegram.albums import IncomingAlbums
from bots.telegram.languages import group_id
from bots.telegram.parts import BotParts
from bots.telegram.replies import reply
from bots.telegram.settings import TelegramSettings
from bots.telegram.target import PLATFORM, AlbumSlot, Target, input_ref, sender_of
from core.errors import FidelityError, RetouchError
from core.preferences import pick_auto_retouch

Context = ContextTypes.DEFAULT_TYPE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff")
MEDIA = filters.PHOTO | filters.Document.ALL
OTHER = filters.ChatType.PRIVATE & (
    filters.Sticker.ALL
    | filters.VIDEO
    | filters.ANIMATION
    | filters.VIDEO_NOTE
    | filters.VOICE
    | filters.AUDIO
    | (filters.TEXT & ~filters.COMMAND)
)
"""What a private chat may send that is no photo: the bot says what to send instead."""


class MediaHandlers:
    """The handlers that turn photos into jobs."""

    def __init__(self, parts: BotParts, telegram: TelegramSettings) -> None:
        self.service = parts.service
        self.bot = parts.bot
        self.status = parts.status
        self.download_limit = parts.download_limit
        self.languages = parts.languages
        self.admins = parts.admins
        self.all_photos_chats = frozenset(telegram.all_photos_chats)
        self.albums = IncomingAlbums(telegram.album_wait_seconds, self.handle)

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [
            CommandHandler("retouch", self.on_retouch),
            MessageHandler(MEDIA, self.on_media),
            MessageHandler(OTHER, self.on_other),
        ]

    async def close(self) -> None:
        await self.albums.close()

    async def on_media(self, update: Update, context: Context) -> None:
        """A photo or image file; an album's parts are gathered and handled together."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        if message.media_group_id:
            if _private(message) or message.caption or await self._all_photos(message):
                self.albums.add(message)
            return
        await self.handle([message])

    async def handle(self, messages: list[Message]) -> None:
        """One photo or a whole album: check, then one job per image."""
        first = messages[0]
        caption = address(next((msg.caption for msg in messages if msg.caption), None), self._me())
        if not (_private(first) or caption.addressed or await self._all_photos(first)):
            return
        if not await self._may_use(first):
            if caption.addressed or _private(first):  # photos nobody addressed pass in silence
                await reply(first, m.text("admins_only_use", await self.languages.of(first)))
            return
        lang = await self.languages.of(first)
        if sender_of(first) is None:
            await reply(first, m.text("anonymous_sender", lang))
            return
        try:
            fidelity = caption.fidelity()
        except FidelityError as exc:
            await reply(first, m.rejection(exc, lang))
            return
        usable = []
        for msg in messages:
            problem = self._media_problem(msg, lang)
            if problem:
                await reply(msg, problem)
            else:
                usable.append(msg)
        if not usable:
            return
        status = await self.status.open(first, m.text("received", lang), jobs=len(usable))
        for index, msg in enumerate(usable):
            album = AlbumSlot(str(first.media_group_id), len(usable), index)
            await self._submit(msg, msg, fidelity, status, lang, album if len(usable) > 1 else None)

    async def on_retouch(self, update: Update, context: Context) -> None:
        """`/retouch [fidelity]`, as a reply to a photo (or alone: how to use it)."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        lang = await self.languages.of(message)
        if sender_of(message) is None:
            await reply(message, m.text("anonymous_sender", lang))
            return
        try:
            fidelity = read_fidelity(" ".join(context.args)) if context.args else None
        except FidelityError as exc:
            await reply(message, m.rejection(exc, lang))
            return
        photo = message.reply_to_message
        if photo is None or not (photo.photo or photo.document):
            key = "reply_to_photo" if not _private(message) else "send_a_photo"
            await reply(message, m.text(key, lang))
            return
        problem = self._media_problem(photo, lang)
        if problem is None and not await self._may_use(message):
            problem = m.text("admins_only_use", lang)
        if problem:
            await reply(message, problem)
            return
        status = await self.status.open(message, m.text("received", lang))
        await self._submit(photo, message, fidelity, status, lang)

    async def on_other(self, update: Update, context: Context) -> None:
        """Stickers, videos, voice and plain text in a private chat: say what to send."""
        message = update.effective_message
        if message is not None:
            await reply(message, m.text("send_a_photo", await self.languages.of(message)))

    def _media_problem(self, message: Message, lang: m.Lang) -> str | None:
        """Why this message's file can't be retouched, before anything is downloaded."""
        if message.photo:
            size = message.photo[-1].file_size
        elif message.document is not None:
            doc = message.document
            name = (doc.file_name or "").lower()
            if not ((doc.mime_type or "").startswith("image/") or name.endswith(IMAGE_SUFFIXES)):
                return m.text("not_an_image_file", lang)
            size = doc.file_size
        else:
            return m.text("send_a_photo", lang)
        if size and size > self.download_limit:
            limit = f"{self.download_limit / 1e6:.0f}"
            return m.text("file_too_big", lang, size=f"{size / 1e6:.0f}", limit=limit)
        return None

    async def _submit(
        self,
        source: Message,
        answer_to: Message,
        fidelity: float | None,
        status: Message | None,
        lang: m.Lang,
        album: AlbumSlot | None = None,
    ) -> None:
        """Queue a job for the image in `source`, answering `answer_to`; refusals are said there."""
        target = Target.replying_to(answer_to, lang, status, album)
        user = sender_of(answer_to)
        if user is None:  # refused before: see `handle` and `on_retouch`
            return
        request = target.request(
            user, input_ref(source), fidelity, is_group=not _private(answer_to)
        )
        try:
            await self.service.submit(request)
        except RetouchError as exc:
            refusal = m.rejection(exc, lang)
            if not (
                status is not None
                and await self.status.final(status.chat.id, status.message_id, refusal)
            ):
                await reply(answer_to, refusal)

    async def _all_photos(self, message: Message) -> bool:
        """Whether every photo of this group is retouched, addressed or not."""
        chat = await self.service.preferences.chat(PLATFORM, group_id(message.chat))
        return pick_auto_retouch(chat, message.chat.id in self.all_photos_chats)

    async def _may_use(self, message: Message) -> bool:
        """Anyone may, unless the group's admins chose "admins only" (then: an admin?)."""

        async def is_admin() -> bool:
            return await self.admins.is_admin(message.chat, message.from_user, message.sender_chat)

        return await may_use(PLATFORM, self.service, group_id(message.chat), is_admin)

    def _me(self) -> str:
        return str(self.bot.username)


def _private(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE
