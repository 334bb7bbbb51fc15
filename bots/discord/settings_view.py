"""`/settings` of a Discord server: a select menu per setting, for members with Manage Server.

The command is registered with `default_member_permissions` (Manage Server), so Discord shows it
to those members only, and every change is checked again against the member's permissions the
interaction carries. The menus are persistent (`rt:set:<setting>`): they work after a restart.
There is no "retouch every photo" here: on Discord the bot sees only what it is asked to retouch.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bots import messages as m
from bots.chat_settings import ChatSettingsMenu
from bots.discord.answers import PLATFORM, Interaction, language_of, tell
from bots.discord.views import dispatch
from core.preferences import ChatSettings
from core.service import RetouchService

log = logging.getLogger("retouch.discord")

KEYS = ("fidelity", "limit", "who", "lang")
Select = discord.ui.Select[discord.ui.View]


class SettingSelect(discord.ui.DynamicItem[Select], template=r"rt:set:(?P<key>[a-z]{1,16})"):
    """The options of one setting; choosing one saves it (for Manage Server members)."""

    def __init__(
        self,
        key: str,
        options: list[discord.SelectOption],
        placeholder: str = "",
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"rt:set:{key}",
                options=options,
                placeholder=placeholder or None,
                min_values=1,
                max_values=1,
                row=row,
            )
        )
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> SettingSelect:
        return cls(match["key"], list(getattr(item, "options", [])))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await dispatch(interaction, lambda h: h.on_setting(interaction, self.key))


def settings_view(
    menu: ChatSettingsMenu, settings: ChatSettings, lang: m.Lang, server: str
) -> discord.ui.View:
    """One select per setting (a row each), the value in force chosen."""
    view = discord.ui.View(timeout=None)
    for row, setting in enumerate(menu.settings):
        current = menu.value(settings, setting)
        options = [
            discord.SelectOption(
                label=menu.label(setting, option.value, lang, server)[:100],
                value=option.token,
                default=option.value == current,
            )
            for option in setting.options
        ]
        view.add_item(SettingSelect(setting.key, options, menu.name(setting, lang), row))
    return view


class ServerSettings:
    """`/settings` and the presses on its menus."""

    def __init__(self, service: RetouchService) -> None:
        self.service = service
        self.menu = ChatSettingsMenu(service, PLATFORM, KEYS)

    async def open(self, interaction: Interaction) -> None:
        """The command: the server's settings, privately, to a member with Manage Server."""
        lang = await language_of(self.service, interaction)
        if interaction.guild_id is None:
            await tell(interaction, m.text("d:settings_guild", lang))
            return
        if not interaction.permissions.manage_guild:
            await tell(interaction, m.text("d:settings_not_admin", lang))
            return
        server = str(interaction.guild_id)
        settings = await self.menu.current(server)
        text = self.menu.summary(settings, _name(interaction), lang, server)
        await tell(interaction, text, settings_view(self.menu, settings, lang, server))

    async def choose(self, interaction: Interaction, key: str) -> None:
        """A choice in one of the menus: saved if the member may, and the menu redrawn."""
        lang = await language_of(self.service, interaction)
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            await tell(interaction, m.text("d:settings_not_admin", lang))
            return
        server = str(interaction.guild_id)
        settings, line = await self.menu.choose(
            server, key, _chosen(interaction), is_admin=True, lang=lang
        )
        lang = await language_of(self.service, interaction)  # the server's may have changed
        text = self.menu.summary(settings, _name(interaction), lang, server)
        try:
            await interaction.response.edit_message(
                content=f"{text}\n\n{line}" if line else text,
                view=settings_view(self.menu, settings, lang, server),
            )
        except discord.HTTPException as exc:
            log.warning("could not redraw the settings (HTTP %s)", exc.status)


def _chosen(interaction: Interaction) -> str:
    """The option a select interaction carries ("" when none)."""
    data: dict[str, Any] = dict(interaction.data or {})
    values = data.get("values")
    return str(values[0]) if isinstance(values, list) and values else ""


def _name(interaction: Interaction) -> str:
    return interaction.guild.name if interaction.guild is not None else str(interaction.guild_id)
