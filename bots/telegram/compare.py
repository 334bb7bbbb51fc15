"""The Compare button under a Telegram result (callback data `k:<job id>`): the before/after
image, sent as a reply to the result. Refusals are alerts; nothing here counts."""

from __future__ import annotations

import logging

from telegram import Message, ReplyParameters, Update
from telegram.error import TelegramError
from telegram.ext import BaseHandler, CallbackQueryHandler, ContextTypes

from bots import messages as m
from bots.compare import Comparisons
from bots.telegram.keyboards import COMPARE
from bots.telegram.languages import Languages
from bots.telegram.replies import reply
from bots.telegram.target import user_id

log = logging.getLogger("retouch.telegram")
Context = ContextTypes.DEFAULT_TYPE


class CompareHandlers:
    """Answers a Compare press at once, then sends the image when it is made."""

    def __init__(self, languages: Languages, comparisons: Comparisons) -> None:
        self.languages = languages
        self.comparisons = comparisons

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [CallbackQueryHandler(self.on_compare, pattern=rf"^{COMPARE}:")]

    async def on_compare(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return
        result = query.message
        lang = await self.languages.of_user(query.from_user, result.chat)
        presser = user_id(query.from_user)
        job = (
            m.text("anonymous_sender", lang)
            if presser is None
            else await self.comparisons.check(query.data.partition(":")[2], presser, lang)
        )
        if isinstance(job, str):
            await query.answer(job, show_alert=True)
            return
        await query.answer()  # the press is acknowledged within its deadline
        made = await self.comparisons.build(job, lang)
        if isinstance(made, str):
            await reply(result, made)
            return
        caption = m.text("compare_caption", lang, fidelity=job.fidelity)
        try:
            await result.get_bot().send_photo(
                result.chat.id,
                made.image,
                caption=caption,
                filename="before-after.jpg",
                message_thread_id=result.message_thread_id if result.is_topic_message else None,
                reply_parameters=ReplyParameters(
                    result.message_id, allow_sending_without_reply=True
                ),
            )
        except TelegramError as exc:
            log.warning("job %s: could not send the comparison: %s", job.id, exc.message)
