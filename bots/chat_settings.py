"""A group's own settings, shared by both bots: what can be set, to which values, how each reads,
and the one rule of who may change them (the chat's admins, as each platform knows them).

Each setting has a short key (for callback data and custom ids) and a few options, each with a
token. The adapters draw them as an inline keyboard (Telegram) or select menus (Discord) and
hand the presses back here; which setting wins over which is `core.preferences`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bots import messages as m
from core.fidelity import REDO_CHOICES
from core.jobs import Platform
from core.preferences import LANGUAGES, pick_auto_retouch
from core.service import RetouchService
from core.store import ChatSettings

LIMIT_CHOICES = (10, 20, 50, 100)


@dataclass(frozen=True, slots=True)
class Option:
    """One value a setting can take: its token in callback data, and what is stored."""

    token: str
    value: object


@dataclass(frozen=True, slots=True)
class Setting:
    """A setting of `ChatSettings.<field>`, shown as `set:<key>` with its options."""

    key: str
    field: str
    options: tuple[Option, ...]

    def option(self, token: str) -> Option | None:
        return next((o for o in self.options if o.token == token), None)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "fidelity",
        "default_fidelity",
        (Option("-", None), *(Option(f"{f:g}", f) for f in REDO_CHOICES)),
    ),
    Setting("auto", "auto_retouch", (Option("off", False), Option("on", True))),
    Setting(
        "limit", "daily_limit", (Option("-", None), *(Option(str(n), n) for n in LIMIT_CHOICES))
    ),
    Setting("who", "admins_only", (Option("all", False), Option("admins", True))),
    Setting("lang", "locale", (Option("-", None), *(Option(code, code) for code in LANGUAGES))),
)
"""Every group setting, in the order the menus show them."""
BY_KEY = {setting.key: setting for setting in SETTINGS}


class ChatSettingsMenu:
    """The settings of one platform's groups: read, described, changed by admins only.

    `keys` are the settings the platform offers (Discord has no `auto`: it never sees photos
    nobody addressed to it); `auto_default` tells whether a chat retouches every photo when its
    admins chose nothing (the operator's list, `TELEGRAM_ALL_PHOTOS_CHATS`).
    """

    def __init__(
        self,
        service: RetouchService,
        platform: Platform,
        keys: Sequence[str],
        *,
        auto_default: Callable[[str], bool] = lambda chat: False,
    ) -> None:
        self.service = service
        self.platform: Platform = platform
        self.settings = [BY_KEY[key] for key in keys]
        self.default_fidelity = service.settings.retouch_default_fidelity
        self._auto_default = auto_default

    def setting(self, key: str) -> Setting | None:
        return BY_KEY.get(key) if key in {s.key for s in self.settings} else None

    async def current(self, chat_id: str) -> ChatSettings:
        return await self.service.chat_settings(self.platform, chat_id)

    def name(self, setting: Setting, lang: m.Lang) -> str:
        return m.text(f"set:{setting.key}", lang)

    def label(self, setting: Setting, value: object, lang: m.Lang, chat_id: str = "") -> str:
        """How a value of the setting reads ("0.3", "on", "admins only"...)."""
        if setting.key == "fidelity":
            if value is None:
                return m.text("v:bot_default", lang, fidelity=self.default_fidelity)
            return f"{value:g}" if isinstance(value, float) else str(value)
        if setting.key == "auto":
            on = pick_auto_retouch(
                ChatSettings(auto_retouch=_flag(value)), self._auto_default(chat_id)
            )
            return m.text("v:on" if on else "v:off", lang)
        if setting.key == "limit":
            return (
                m.text("v:no_limit", lang)
                if value is None
                else m.text("v:limit", lang, limit=value)
            )
        if setting.key == "who":
            return m.text("v:admins" if value else "v:everyone", lang)
        return m.text(f"lang:{value}", lang) if value else m.text("v:each_own", lang)

    def value(self, settings: ChatSettings, setting: Setting) -> object:
        return getattr(settings, setting.field)

    def summary(self, settings: ChatSettings, title: str, lang: m.Lang, chat_id: str) -> str:
        """The menu's text: the chat's name, then each setting and its value."""
        lines = [m.text("settings_title", lang, chat=title)]
        for setting in self.settings:
            value = self.label(setting, self.value(settings, setting), lang, chat_id)
            lines.append(m.text("settings_line", lang, name=self.name(setting, lang), value=value))
        return "\n".join(lines)

    def picker(self, settings: ChatSettings, setting: Setting, lang: m.Lang, chat_id: str) -> str:
        """The text above one setting's options."""
        value = self.label(setting, self.value(settings, setting), lang, chat_id)
        return m.text("settings_pick", lang, name=self.name(setting, lang), value=value)

    async def choose(
        self, chat_id: str, key: str, token: str, *, is_admin: bool, lang: m.Lang
    ) -> tuple[ChatSettings, str]:
        """Apply a press: the chat's settings after it and the line to show ("" for none).

        Only admins change anything; a setting or option not offered changes nothing either.
        """
        setting = self.setting(key)
        option = setting.option(token) if setting is not None else None
        if not is_admin:
            return await self.current(chat_id), m.text("settings_not_admin", lang)
        if setting is None or option is None:
            return await self.current(chat_id), ""
        saved = await self.service.set_chat_setting(
            self.platform, chat_id, setting.field, option.value
        )
        label = self.label(setting, option.value, lang, chat_id)
        return saved, m.text("settings_saved", lang, name=self.name(setting, lang), value=label)


async def may_use(
    platform: Platform,
    service: RetouchService,
    chat_id: str | None,
    is_admin: Callable[[], Awaitable[bool]],
) -> bool:
    """Whether the sender may use the bot in this chat: anyone, unless its admins chose
    "admins only". `is_admin` is asked only then (it may cost a platform call)."""
    if chat_id is None:
        return True
    settings = await service.chat_settings(platform, chat_id)
    return not settings.admins_only or await is_admin()


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None
