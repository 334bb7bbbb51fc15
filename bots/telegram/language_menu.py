"""`/language`: English, 中文 or automatic (the app's language), by argument or by button.

The choice is stored for the user and wins over the group's language and the app's locale.
"""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ContextTypes

from bots import messages as m
from bots.chat_commands import ChatCommands
from bots.telegram.keyboards import LANGUAGE, language_keyboard
from bots.telegram.languages import Languages, group_id
from bots.telegram.replies import edit, reply
from bots.telegram.target import sender_of, user_id

Context = ContextTypes.DEFAULT_TYPE


class LanguageHandlers:
    """`/language [en|zh|auto]` and its buttons (callback data `l:<choice>:<user id>`)."""

    def __init__(self, languages: Languages, commands: ChatCommands) -> None:
        self.languages = languages
        self.commands = commands

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [
            CommandHandler("language", self.on_language),
            CallbackQueryHandler(self.on_choice, pattern=rf"^{LANGUAGE}:"),
        ]

    async def on_language(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        lang = await self.languages.of(message)
        user = message.from_user
        if sender_of(message) is None:
            await reply(message, m.text("anonymous_sender", lang))
            return
        choice = " ".join(context.args or [])
        line = await self.commands.language(
            str(user.id),
            lang,
            choice or None,
            chat=group_id(message.chat),
            client=user.language_code,
        )
        await reply(message, line, None if choice else language_keyboard(user.id, lang))

    async def on_choice(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return
        _, choice, owner = query.data.split(":", 2) if query.data.count(":") == 2 else ("", "", "")
        presser = query.from_user
        if owner != user_id(presser):
            lang = await self.languages.of_user(presser, query.message.chat)
            refusal = m.text(
                "anonymous_sender" if user_id(presser) is None else "not_your_buttons", lang
            )
            await query.answer(refusal, show_alert=True)
            return
        chat = query.message.chat
        lang = await self.languages.of_user(presser, chat)
        line = await self.commands.language(
            owner, lang, choice, chat=group_id(chat), client=presser.language_code
        )
        await edit(query, line)
        await query.answer()
