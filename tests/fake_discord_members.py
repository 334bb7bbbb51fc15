"""Members' permissions for the fake Discord, and who may invoke which command.

From Discord's documentation: an interaction in a guild carries `member.permissions`, the
member's permissions in the channel (every permission for the owner and for Administrator); a
command registered with `default_member_permissions` (permission bits) is shown,
and so can be invoked, only by members who have all those bits (or Administrator); `contexts`
says where a command exists at all (0 guild, 1 the bot's DM, 2 private channels). A client never
sends an interaction it would not show, so `FakeDiscord.slash_command` refuses to build one.

    fake.members.grant(user, MANAGE_GUILD)     # e.g. a moderator in the first guild
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.fake_discord import ADMINISTRATOR, ALL_PERMISSIONS, GuildSpec, _invalid_form

if TYPE_CHECKING:
    from tests.fake_discord import FakeDiscord

MANAGE_GUILD = 1 << 5
GUILD_CONTEXT, DM_CONTEXT = 0, 1


class CommandHidden(PermissionError):
    """The member's client does not show this command: no interaction can be made for it."""


class MemberPermissions:
    """Permissions granted to members on top of @everyone's, per guild."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._granted: dict[tuple[int, int], int] = {}

    def grant(self, user: Mapping[str, Any], bits: int, guild: GuildSpec | None = None) -> None:
        """Give `user` the permission `bits` (a role of theirs) in `guild` (the first one)."""
        guild = guild or self.fake.guild
        key = (guild.id, int(user["id"]))
        self._granted[key] = self._granted.get(key, 0) | bits

    def of(self, user: Mapping[str, Any], guild: GuildSpec) -> int:
        """The member's permissions: @everyone's and their roles', all of them for the owner
        and for Administrator."""
        if str(user["id"]) == str(self.fake.owner["id"]):
            return ALL_PERMISSIONS
        bits = guild.everyone_permissions | self._granted.get((guild.id, int(user["id"])), 0)
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def check_command(self, command: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> None:
        """Refuse to build an interaction for a command its member's client would not show."""
        if command is None:
            return
        context = int(payload.get("context", GUILD_CONTEXT))
        contexts = command.get("contexts")
        if contexts is not None and context not in contexts:
            raise CommandHidden(f"/{command['name']} does not exist in context {context}")
        required = command.get("default_member_permissions")
        member = payload.get("member")
        if required is None or member is None:  # DMs know no member permissions
            return
        bits = int(member["permissions"])
        if int(required) & ~bits and not bits & ADMINISTRATOR:
            raise CommandHidden(f"/{command['name']} is hidden from members without {required}")

    @staticmethod
    def check_definition(data: Mapping[str, Any]) -> None:
        """`default_member_permissions` is null or permission bits (a string of digits, which
        the API documents, or the number, which it takes too and discord.py sends)."""
        value = data.get("default_member_permissions")
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return
        if not (isinstance(value, str) and re.fullmatch(r"\d{1,20}", value)):
            raise _invalid_form("default_member_permissions", "Must be a permission bit string.")
