"""The inline buttons: Cancel under a status, Redo under a result, and /forget's answer.

Every press is answered (a toast, or an alert for refusals) so the client stops its spinner;
what the press may do is checked by `ChatCommands`, as for the Discord bot.
"""

from __future__ import annotations

import dataclasses

from telegram import CallbackQuery, Message, Update, User
from telegram.constants import ChatType
from telegram.ext import BaseHandler, CallbackQueryHandler, ContextTypes

from bots import messages as m
from bots.chat_commands import ChatCommands
from bots.chat_settings import may_use
from bots.telegram.keyboards import CANCEL, FORGET, REDO
from bots.telegram.languages import group_id
from bots.telegram.parts import BotParts
from bots.telegram.replies import edit
from bots.telegram.target import PLATFORM, Target, user_id
from core.errors import RetouchError
from core.jobs import Job

Context = ContextTypes.DEFAULT_TYPE


class ButtonHandlers:
    """The one callback-query handler, dispatching on the callback data's kind."""

    def __init__(self, parts: BotParts, commands: ChatCommands) -> None:
        self.commands = commands
        self.service = parts.service
        self.status = parts.status
        self.languages = parts.languages
        self.admins = parts.admins

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [CallbackQueryHandler(self.on_button)]

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None or query.data is None:
            return
        chat = query.message.chat if isinstance(query.message, Message) else None
        lang = await self.languages.of_user(query.from_user, chat)
        kind, _, rest = query.data.partition(":")
        try:
            popup = await self._press(query, kind, rest, lang)
        except RetouchError as exc:
            popup = m.rejection(exc, lang)
        await query.answer(popup, show_alert=bool(popup) and kind != REDO)

    async def _press(self, query: CallbackQuery, kind: str, rest: str, lang: m.Lang) -> str:
        """What the press does; the text of its answer ("" for none)."""
        presser = user_id(query.from_user)
        if presser is None:
            return m.text("anonymous_sender", lang)
        if kind == FORGET:
            choice, _, owner = rest.partition(":")
            if owner != presser:
                return m.text("not_yours", lang)
            await edit(query, await self.commands.forget(presser, choice == "y", lang))
            return ""
        job_id, _, value = rest.partition(":")
        if kind == CANCEL:
            job = await self.commands.own_job(job_id, presser, lang)
            if isinstance(job, str):
                return job
            cancelled = await self.service.cancel(job_id, PLATFORM, presser)
            return m.text("cancel_ok" if cancelled else "too_late", lang)
        if kind == REDO and isinstance(query.message, Message):
            pressed = await self.commands.redo(job_id, presser, value, lang)
            if isinstance(pressed, str):
                return pressed
            return await self._redo(query.message, *pressed, query.from_user, lang)
        return m.text("job_gone", lang)

    async def _redo(
        self, result: Message, job: Job, fidelity: float, presser: User, lang: m.Lang
    ) -> str:
        """A redo is a new job on the same input, answering the result message; in a group
        for its admins only, refused (costing nothing) to anyone else."""

        async def is_admin() -> bool:
            return await self.admins.is_admin(result.chat, presser)

        if not await may_use(PLATFORM, self.service, group_id(result.chat), is_admin):
            return m.text("admins_only_use", lang)
        status = await self.status.open(result, m.text("received", lang))
        target = dataclasses.replace(
            Target.replying_to(result, lang, status), thread_id=Target.of(job).thread_id
        )
        is_group = result.chat.type != ChatType.PRIVATE
        try:
            await self.service.submit(
                target.request(str(presser.id), job.input_ref, fidelity, is_group=is_group)
            )
        except RetouchError:
            if status is not None:
                await self.status.remove(result.chat.id, status.message_id)
            raise
        return m.text("redo_ok", lang, fidelity=fidelity)
