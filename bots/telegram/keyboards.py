"""The inline keyboards under the bot's messages, and their callback data.

Callback data is `kind:args` and stays far below Telegram's 64 bytes: `c:<job id>` (cancel),
`r:<job id>:<fidelity>` (redo), `k:<job id>` (compare), `f:<y|n>:<user id>` (the answer to
/forget), `l:<en|zh|auto>:<user id>` (/language), `s:<setting>[:<option>]` (a group's
/settings; `s:` is its main menu, `s:x` closes it) and `b:<photos>` (a pack of /buy).
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bots import messages as m
from bots.chat_settings import ChatSettingsMenu
from core.fidelity import REDO_CHOICES
from core.packs import Pack
from core.preferences import LANGUAGES, ChatSettings

CANCEL = "c"
REDO = "r"
COMPARE = "k"
FORGET = "f"
LANGUAGE = "l"
SETTINGS = "s"
BUY = "b"
CLOSE = "x"
"""The `s:` option that closes the settings menu."""
CHOSEN = "• "
"""Marks the option in force."""


def cancel_keyboard(job_id: str, lang: m.Lang) -> InlineKeyboardMarkup:
    """The Cancel button under a status message."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(m.text("cancel", lang), callback_data=f"{CANCEL}:{job_id}")]]
    )


def redo_keyboard(job_id: str, lang: m.Lang, *, compare: bool = False) -> InlineKeyboardMarkup:
    """The redo buttons under a result, one per offered fidelity; Compare below them."""
    rows = [
        [
            InlineKeyboardButton(
                m.text("redo", lang, fidelity=f), callback_data=f"{REDO}:{job_id}:{f:g}"
            )
            for f in REDO_CHOICES
        ]
    ]
    if compare:
        rows.append(
            [InlineKeyboardButton(m.text("compare", lang), callback_data=f"{COMPARE}:{job_id}")]
        )
    return InlineKeyboardMarkup(rows)


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


def language_keyboard(user_id: int, lang: m.Lang) -> InlineKeyboardMarkup:
    """English / 中文 / Automatic under /language; only `user_id` may choose."""
    choices = [*LANGUAGES, "auto"]
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    m.text(f"lang:{choice}", lang), callback_data=f"{LANGUAGE}:{choice}:{user_id}"
                )
                for choice in choices
            ]
        ]
    )


def settings_keyboard(
    menu: ChatSettingsMenu, settings: ChatSettings, lang: m.Lang, chat_id: str
) -> InlineKeyboardMarkup:
    """The main settings menu: one button per setting with its value, and Done."""
    rows = [
        [
            InlineKeyboardButton(
                f"{menu.name(s, lang)}: {menu.label(s, menu.value(settings, s), lang, chat_id)}",
                callback_data=f"{SETTINGS}:{s.key}",
            )
        ]
        for s in menu.settings
    ]
    rows.append(
        [InlineKeyboardButton(m.text("settings_close", lang), callback_data=f"{SETTINGS}:{CLOSE}")]
    )
    return InlineKeyboardMarkup(rows)


def options_keyboard(
    menu: ChatSettingsMenu, settings: ChatSettings, key: str, lang: m.Lang, chat_id: str
) -> InlineKeyboardMarkup:
    """One setting's options (the one in force marked), and Back to the main menu."""
    setting = menu.setting(key)
    assert setting is not None
    current = menu.value(settings, setting)
    buttons = [
        InlineKeyboardButton(
            (CHOSEN if option.value == current else "")
            + menu.label(setting, option.value, lang, chat_id),
            callback_data=f"{SETTINGS}:{setting.key}:{option.token}",
        )
        for option in setting.options
    ]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    rows.append([InlineKeyboardButton(m.text("settings_back", lang), callback_data=f"{SETTINGS}:")])
    return InlineKeyboardMarkup(rows)


def buy_keyboard(packs: Sequence[Pack], lang: m.Lang) -> InlineKeyboardMarkup:
    """One button per pack on sale."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    m.text("buy_pack", lang, photos=pack.photos, stars=pack.stars),
                    callback_data=f"{BUY}:{pack.photos}",
                )
            ]
            for pack in packs
        ]
    )
