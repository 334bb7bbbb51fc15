"""Sending a line of text in reply and editing a button's message (the flood budget paces both).

Lines come from the catalog (`bots.messages`) and go out as HTML (`to_html`): what the catalog
marks as code or bold shows so, and everything else, user text included, is escaped. A line that
cannot be sent is logged, never raised: the user's next message will try again.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery, InlineKeyboardMarkup, Message
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bots.messages import to_html
from bots.telegram.budget import Deferred

log = logging.getLogger("retouch.telegram")


async def reply(
    message: Message, line: str, keyboard: InlineKeyboardMarkup | None = None
) -> Message | None:
    """Reply to `message` with `line` (quoting it); the sent message, or None if it failed."""
    try:
        return await message.reply_text(
            to_html(line),
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
            do_quote=True,
            disable_web_page_preview=True,
        )
    except Deferred:
        return None  # a status reply the flood budget held back for results
    except TelegramError as exc:
        log.warning("could not reply in chat %s: %s", message.chat.id, exc.message)
        return None


async def edit(
    query: CallbackQuery, line: str, keyboard: InlineKeyboardMarkup | None = None
) -> None:
    """Replace the text of the message whose button was pressed (and its buttons)."""
    try:
        await query.edit_message_text(
            to_html(line),
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
            disable_web_page_preview=True,
        )
    except TelegramError as exc:
        log.debug("could not edit the button message: %s", exc)
