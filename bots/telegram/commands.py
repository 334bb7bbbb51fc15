"""The text commands (`/start`, `/help`, `/quota`, `/fidelity`, `/whoami`, `/forget`, `/stats`,
`/grant`) and the command menu. The answers come from `ChatCommands`, shared with the Discord bot;
`/settings`, `/language` and the Stars commands have modules of their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Bot, BotCommand, Update
from telegram.ext import BaseHandler, CommandHandler, ContextTypes

from bots import messages as m
from bots.chat_commands import ChatCommands
from bots.telegram.keyboards import forget_keyboard
from bots.telegram.languages import Languages, group_id
from bots.telegram.replies import reply
from bots.telegram.target import sender_of

Context = ContextTypes.DEFAULT_TYPE
Answer = Callable[[str, m.Lang], Awaitable[str]]
"""The line for a user id and language."""

MENU = {
    "en": [
        ("retouch", "Retouch a photo (reply to one, or caption it)"),
        ("quota", "Photos left today"),
        ("fidelity", "Save or show your default strength"),
        ("language", "English or 中文"),
        ("settings", "This group's settings (its admins)"),
        ("help", "How to use the bot"),
        ("whoami", "Your id, for the bot's operator"),
        ("forget", "Delete what the bot keeps about you"),
        ("start", "Start"),
    ],
    "zh": [
        ("retouch", "美颜照片（回复照片或写在说明中）"),
        ("quota", "今天剩余次数"),
        ("fidelity", "保存或查看默认强度"),
        ("language", "选择 English 或中文"),
        ("settings", "本群的设置（管理员）"),
        ("help", "使用说明"),
        ("whoami", "你的 ID，供运营者使用"),
        ("forget", "删除关于你的数据"),
        ("start", "开始"),
    ],
}
"""The command menu (`setMyCommands`) by language; the admin commands stay out of it."""
PAYMENT_MENU = {
    "en": [
        ("buy", "Buy extra photos with Stars"),
        ("terms", "Terms of sale"),
        ("paysupport", "Help with a payment"),
    ],
    "zh": [("buy", "用 Stars 购买额外次数"), ("terms", "购买条款"), ("paysupport", "付款帮助")],
}
"""Added to the menu when Stars packs are on sale."""


class CommandHandlers:
    """Each command's handler: who asked and with what in, the shared answer out."""

    def __init__(self, commands: ChatCommands, languages: Languages, *, payments: bool) -> None:
        self.commands = commands
        self.languages = languages
        self.payments = payments

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [
            CommandHandler("start", self.on_start),
            CommandHandler("help", self.on_help),
            CommandHandler("quota", self.on_quota),
            CommandHandler("fidelity", self.on_fidelity),
            CommandHandler("whoami", self.on_whoami),
            CommandHandler("forget", self.on_forget),
            CommandHandler("stats", self.on_stats),
            CommandHandler("grant", self.on_grant),
        ]

    async def on_start(self, update: Update, context: Context) -> None:
        await self._say(update, "start")

    async def on_help(self, update: Update, context: Context) -> None:
        await self._say(update, "help", "help_buy" if self.payments else None)

    async def on_quota(self, update: Update, context: Context) -> None:
        await self._answer(update, self.commands.quota)

    async def on_fidelity(self, update: Update, context: Context) -> None:
        value = " ".join(context.args or [])
        await self._answer(update, lambda user, lang: self.commands.fidelity(user, lang, value))

    async def on_whoami(self, update: Update, context: Context) -> None:
        message = update.effective_message
        chat = group_id(message.chat) if message is not None else None

        async def line(user: str, lang: m.Lang) -> str:
            return self.commands.whoami(user, lang, chat)

        await self._answer(update, line)

    async def on_stats(self, update: Update, context: Context) -> None:
        await self._answer(update, self.commands.stats)

    async def on_grant(self, update: Update, context: Context) -> None:
        args = context.args or []
        who, credits = args if len(args) == 2 else (None, None)
        await self._answer(update, lambda user, lang: self.commands.grant(user, lang, who, credits))

    async def on_forget(self, update: Update, context: Context) -> None:
        """Ask first: the answer comes by button (see `ButtonHandlers`)."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        lang = await self.languages.of(message)
        user = sender_of(message)
        if user is None:
            await reply(message, m.text("anonymous_sender", lang))
            return
        await reply(message, m.text("forget_confirm", lang), forget_keyboard(int(user), lang))

    async def _say(self, update: Update, key: str, more: str | None = None) -> None:
        """A line that is the same for everyone, anonymous senders too (`more` appended)."""
        message = update.effective_message
        if message is not None:
            lang = await self.languages.of(message)
            await reply(message, m.text(key, lang) + (m.text(more, lang) if more else ""))

    async def _answer(self, update: Update, answer: Answer) -> None:
        """The user's own answer; senders Telegram does not name are asked to post as themselves."""
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        lang = await self.languages.of(message)
        user = sender_of(message)
        if user is None:
            await reply(message, m.text("anonymous_sender", lang))
            return
        await reply(message, await answer(user, lang))


async def publish_menu(bot: Bot, *, payments: bool = False) -> None:
    """Publish the command menu (`setMyCommands`), in English and Chinese."""
    for lang, commands in MENU.items():
        listed = commands + (PAYMENT_MENU[lang] if payments else [])
        await bot.set_my_commands(
            [BotCommand(name, description) for name, description in listed],
            language_code=None if lang == "en" else lang,
        )
