"""Which setting wins, in one place: the request's own, the user's saved one, the chat's (set by
its admins), then the configured default.

- fidelity: the caption or button, else the user's `/fidelity`, else the chat's default, else
  `RETOUCH_DEFAULT_FIDELITY`. A person's own choice beats their group's.
- language: the user's `/language`, else the chat's language, else the client's locale.
- retouching every photo of a group: the chat's setting, else the operator's list of chats.
- a group's daily limit: the smaller of the chat's own and `QUOTA_PER_CHAT_PER_DAY` (that rule
  is `core.quota.QuotaPolicy.limits_for`): a group may spend less than the operator allows.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from core.fidelity import check_fidelity
from core.store import ChatSettings, JobStore, UserSettings

__all__ = [
    "ChatSettings",
    "Language",
    "Preferences",
    "UserSettings",
    "language_code",
    "pick_auto_retouch",
    "pick_fidelity",
    "pick_language",
]

Language = Literal["en", "zh"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)


def language_code(code: str | None) -> Language:
    """A platform's language code as one the bot speaks: `zh-hans`, `zh-CN`, `zh` -> zh."""
    return "zh" if code and code.lower().startswith("zh") else "en"


def pick_language(
    user: UserSettings, chat: ChatSettings | None, client_code: str | None
) -> Language:
    """The user's chosen language, else the chat's, else the client's."""
    for chosen in (user.locale, chat.locale if chat is not None else None):
        if chosen:
            return language_code(chosen)
    return language_code(client_code)


def pick_fidelity(
    explicit: float | None, user: UserSettings, chat: ChatSettings | None, configured: float
) -> float:
    """The request's fidelity, else the user's default, else the chat's, else the configured."""
    if explicit is not None:
        return check_fidelity(explicit)
    for saved in (user.default_fidelity, chat.default_fidelity if chat is not None else None):
        if saved is not None:
            return saved
    return configured


def pick_auto_retouch(chat: ChatSettings | None, configured: bool) -> bool:
    """Whether every photo of a group is retouched: the chat's choice, else the operator's."""
    if chat is not None and chat.auto_retouch is not None:
        return chat.auto_retouch
    return configured


class Preferences:
    """The rules above, read from the store for one user in one chat."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def chat(self, platform: str, chat_id: str | None) -> ChatSettings | None:
        """The chat's settings, or None outside a group (`chat_id` None)."""
        if chat_id is None:
            return None
        return await self._store.get_chat_settings(platform, chat_id)

    async def language(
        self, platform: str, user_id: str, chat_id: str | None, client_code: str | None
    ) -> Language:
        """The language to answer `user_id` in; `chat_id` names a group, None a private chat."""
        user = await self._store.get_user_settings(platform, user_id)
        if user.locale:
            return language_code(user.locale)
        return pick_language(user, await self.chat(platform, chat_id), client_code)
