"""Group chats' settings in SQL, for both databases: one row per chat, one field set at a time.

Setting one field is one upsert, so two admins changing different settings at once both win;
flags are stored as 0/1 integers and read back as booleans.
"""

from __future__ import annotations

from typing import Final

from core.store.access import SqlAccess
from core.store.dialect import Row
from core.store.protocol import CHAT_SETTING_TYPES, ChatSettings, check_chat_setting

CHAT_COLUMNS: Final = tuple(CHAT_SETTING_TYPES)
"""The settings columns of `chat_settings`, in the order of `ChatSettings`' fields."""
_FLAGS: Final = frozenset({"auto_retouch", "admins_only"})

SELECT_CHAT: Final = (
    f"SELECT {', '.join(CHAT_COLUMNS)} FROM chat_settings "  # noqa: S608
    "WHERE platform = $1 AND chat_id = $2"
)


def set_chat_sql(field: str) -> str:
    """The upsert of one settings column ($3, at time $4), returning every column."""
    if field not in CHAT_SETTING_TYPES:
        raise TypeError(f"no chat setting {field}")
    return (
        f"INSERT INTO chat_settings (platform, chat_id, {field}, updated_at) "  # noqa: S608
        "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, chat_id) "
        f"DO UPDATE SET {field} = excluded.{field}, updated_at = excluded.updated_at "
        f"RETURNING {', '.join(CHAT_COLUMNS)}"
    )


def chat_param(field: str, value: object) -> object:
    """A setting's value as its column takes it (flags as 0/1)."""
    if field in _FLAGS and value is not None:
        return int(bool(value))
    return value


def chat_from_row(row: Row | None) -> ChatSettings:
    """A row of `CHAT_COLUMNS` as `ChatSettings` (no row: the defaults)."""
    if row is None:
        return ChatSettings()
    fidelity, auto, limit, admins_only, locale = row
    return ChatSettings(
        default_fidelity=fidelity,
        auto_retouch=None if auto is None else bool(auto),
        daily_limit=limit,
        admins_only=bool(admins_only),
        locale=locale,
    )


class ChatRows:
    """The `JobStore` methods of chat settings, mixed into `SqlStore`."""

    async def get_chat_settings(self: SqlAccess, platform: str, chat_id: str) -> ChatSettings:
        """The chat's saved settings (the defaults when none are saved)."""
        return chat_from_row(await self._fetchrow(SELECT_CHAT, platform, chat_id))

    async def set_chat_setting(
        self: SqlAccess, platform: str, chat_id: str, field: str, value: object
    ) -> ChatSettings:
        """Save one field of the chat's settings; all of them as they are now."""
        check_chat_setting(field, value)
        rows = await self._write(
            set_chat_sql(field), platform, chat_id, chat_param(field, value), self._clock()
        )
        return chat_from_row(rows[0])
