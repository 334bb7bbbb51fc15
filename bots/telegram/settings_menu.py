"""`/settings` in a Telegram group: an inline-keyboard menu of the group's own settings.

Only the group's admins open it or change anything: each command and each press is checked with
`getChatMember` (cached a few seconds, `ChatAdmins`); anyone else gets a polite no. The menu
lives in one message, edited in place: the main menu (each setting with its value), one
setting's options, and Done.
"""

from __future__ import annotations

from telegram import CallbackQuery, Chat, Message, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ContextTypes

from bots import messages as m
from bots.chat_settings import ChatSettingsMenu
from bots.telegram.keyboards import CLOSE, SETTINGS, options_keyboard, settings_keyboard
from bots.telegram.languages import group_id
from bots.telegram.parts import BotParts
from bots.telegram.replies import edit, reply
from bots.telegram.target import PLATFORM

Context = ContextTypes.DEFAULT_TYPE
KEYS = ("fidelity", "auto", "limit", "who", "lang")
"""The settings a Telegram group has, in menu order."""


class SettingsMenuHandlers:
    """`/settings` and the presses on its menu (callback data `s:...`)."""

    def __init__(self, parts: BotParts, all_photos_chats: frozenset[int]) -> None:
        self.languages = parts.languages
        self.admins = parts.admins
        self.menu = ChatSettingsMenu(
            parts.service,
            PLATFORM,
            KEYS,
            auto_default=lambda chat: int(chat) in all_photos_chats,
        )

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [
            CommandHandler("settings", self.on_settings),
            CallbackQueryHandler(self.on_press, pattern=rf"^{SETTINGS}:"),
        ]

    async def on_settings(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        lang = await self.languages.of(message)
        chat_id = group_id(message.chat)
        if chat_id is None:
            await reply(message, m.text("settings_private", lang))
            return
        if not await self.admins.is_admin(message.chat, message.from_user, message.sender_chat):
            await reply(message, m.text("settings_not_admin", lang))
            return
        settings = await self.menu.current(chat_id)
        text = self.menu.summary(settings, _title(message.chat), lang, chat_id)
        await reply(message, text, settings_keyboard(self.menu, settings, lang, chat_id))

    async def on_press(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return
        chat = query.message.chat
        chat_id = group_id(chat)
        lang = await self.languages.of_user(query.from_user, chat)
        if chat_id is None or not await self.admins.is_admin(chat, query.from_user):
            refusal = m.text("settings_not_admin", lang)
            await query.answer(refusal, show_alert=True)
            return
        toast = await self._press(query, chat, chat_id, query.data, lang)
        await query.answer(toast)

    async def _press(
        self, query: CallbackQuery, chat: Chat, chat_id: str, data: str, lang: m.Lang
    ) -> str:
        """Open a setting, choose an option, go back or close; the toast to show."""
        _, _, rest = data.partition(":")
        key, _, token = rest.partition(":")
        if key == CLOSE:
            await edit(query, m.text("settings_closed", lang))
            return ""
        settings = await self.menu.current(chat_id)
        setting = self.menu.setting(key)
        if setting is not None and not token:
            text = self.menu.picker(settings, setting, lang, chat_id)
            await edit(query, text, options_keyboard(self.menu, settings, key, lang, chat_id))
            return ""
        toast = ""
        if token:
            settings, toast = await self.menu.choose(chat_id, key, token, is_admin=True, lang=lang)
            lang = await self.languages.of_user(query.from_user, chat)  # the group's may change
        text = self.menu.summary(settings, _title(chat), lang, chat_id)
        await edit(query, text, settings_keyboard(self.menu, settings, lang, chat_id))
        return toast


def _title(chat: Chat) -> str:
    return chat.title or str(chat.id)
