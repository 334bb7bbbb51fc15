"""The inline keyboards under the bot's messages, and their callback data.

Callback data is `kind:args` and stays far below Telegram's 64 bytes: `c:<job id>` (cancel),
`r:<job id>:<fidelity>` (redo) and `f:<y|n>:<user id>` (the answer to /forget).
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bots import messages as m
from core.fidelity import REDO_CHOICES

CANCEL = "c"
REDO = "r"
FORGET = "f"


def cancel_keyboard(job_id: str, lang: m.Lang) -> InlineKeyboardMarkup:
    """The Cancel button under a status message."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(m.text("cancel", lang), callback_data=f"{CANCEL}:{job_id}")]]
    )


def redo_keyboard(job_id: str, lang: m.Lang) -> InlineKeyboardMarkup:
    """The redo buttons under a result, one per offered fidelity."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    m.text("redo", lang, fidelity=f), callback_data=f"{REDO}:{job_id}:{f:g}"
                )
                for f in REDO_CHOICES
            ]
        ]
    )


def forget_keyboard(user_id: int, lang: m.Lang) -> InlineKeyboardMarkup:
    """Yes / Keep under /forget's question; only `user_id` may answer it."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    m.text("forget_yes", lang), callback_data=f"{FORGET}:y:{user_id}"
                ),
                InlineKeyboardButton(
                    m.text("forget_no", lang), callback_data=f"{FORGET}:n:{user_id}"
                ),
            ]
        ]
    )
