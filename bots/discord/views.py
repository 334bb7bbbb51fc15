"""Buttons that survive restarts: each `custom_id` carries its action and arguments.

They are `discord.ui.DynamicItem`s, matched by a pattern on any message, so a button under a
result posted before a restart still works. The callbacks hand over to a `ButtonHandler` bound to
the client, and never let an exception reach discord.py's event loop.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import discord

from bots import messages as m
from core.fidelity import REDO_CHOICES

log = logging.getLogger("retouch.discord")

Button = discord.ui.Button[discord.ui.View]


class ButtonHandler(Protocol):
    """What the buttons call; the adapter implements it."""

    async def on_redo(
        self, interaction: discord.Interaction[Any], job_id: str, choice: str
    ) -> None: ...

    async def on_cancel(
        self, interaction: discord.Interaction[Any], interaction_id: int
    ) -> None: ...

    async def on_forget(
        self, interaction: discord.Interaction[Any], confirmed: bool, owner: int
    ) -> None: ...

    async def on_compare(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...

    async def on_setting(self, interaction: discord.Interaction[Any], key: str) -> None: ...

    async def on_failure(self, interaction: discord.Interaction[Any], error: Exception) -> None: ...


_HANDLERS: weakref.WeakKeyDictionary[discord.Client, ButtonHandler] = weakref.WeakKeyDictionary()


def bind_buttons(client: discord.Client, handler: ButtonHandler) -> None:
    """Route the client's button presses to `handler` and register the button patterns."""
    _HANDLERS[client] = handler
    client.add_dynamic_items(RedoButton, CancelButton, ForgetButton, CompareButton)


async def dispatch(
    interaction: discord.Interaction[Any], call: Callable[[ButtonHandler], Awaitable[None]]
) -> None:
    handler = _HANDLERS.get(interaction.client)
    if handler is None:
        return
    try:
        await call(handler)
    except Exception as exc:
        await handler.on_failure(interaction, exc)


class RedoButton(
    discord.ui.DynamicItem[Button],
    template=r"rt:redo:(?P<job>[0-9a-f]{32}):(?P<choice>[^:]{1,16})",
):
    """Retouch a finished job's photo again with another fidelity (a new job).

    Any value matches, so that a forged one is answered (and refused) rather than ignored.
    """

    def __init__(self, job_id: str, choice: str, label: str, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"rt:redo:{job_id}:{choice}",
                row=row,
            )
        )
        self.job_id = job_id
        self.choice = choice

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> RedoButton:
        label = getattr(item, "label", None) or match["choice"]
        return cls(match["job"], match["choice"], label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await dispatch(interaction, lambda h: h.on_redo(interaction, self.job_id, self.choice))


class CancelButton(discord.ui.DynamicItem[Button], template=r"rt:cancel:(?P<interaction>\d+)"):
    """Cancel the jobs one interaction started (only for the person who started them)."""

    def __init__(self, interaction_id: int, label: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.danger,
                custom_id=f"rt:cancel:{interaction_id}",
            )
        )
        self.interaction_id = interaction_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CancelButton:
        return cls(int(match["interaction"]), getattr(item, "label", None) or "Cancel")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await dispatch(interaction, lambda h: h.on_cancel(interaction, self.interaction_id))


class ForgetButton(
    discord.ui.DynamicItem[Button], template=r"rt:forget:(?P<choice>[yn]):(?P<owner>\d+)"
):
    """The answer to `/forget`'s confirmation."""

    def __init__(self, confirmed: bool, owner: int, label: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.danger if confirmed else discord.ButtonStyle.secondary,
                custom_id=f"rt:forget:{'y' if confirmed else 'n'}:{owner}",
            )
        )
        self.confirmed = confirmed
        self.owner = owner

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ForgetButton:
        label = getattr(item, "label", None) or match["choice"]
        return cls(match["choice"] == "y", int(match["owner"]), label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await dispatch(interaction, lambda h: h.on_forget(interaction, self.confirmed, self.owner))


class CompareButton(discord.ui.DynamicItem[Button], template=r"rt:cmp:(?P<job>[0-9a-f]{32})"):
    """The before/after of a result, for the person who asked (free)."""

    def __init__(self, job_id: str, label: str, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.primary,
                custom_id=f"rt:cmp:{job_id}",
                row=row,
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CompareButton:
        return cls(match["job"], getattr(item, "label", None) or "Compare")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await dispatch(interaction, lambda h: h.on_compare(interaction, self.job_id))


def redo_view(job_ids: Sequence[str], lang: m.Lang, *, compare: bool = False) -> discord.ui.View:
    """Redo buttons under a result (and Compare, the fifth of the row); one row per photo,
    numbered when there are several."""
    view = discord.ui.View(timeout=None)
    for row, job_id in enumerate(job_ids[:5]):
        number = f"#{row + 1} " if len(job_ids) > 1 else ""
        for fidelity in REDO_CHOICES:
            label = number + m.text("redo", lang, fidelity=fidelity)
            view.add_item(RedoButton(job_id, f"{fidelity:g}", label, row=row))
        if compare:
            view.add_item(CompareButton(job_id, number + m.text("compare", lang), row=row))
    return view


def cancel_view(interaction_id: int, lang: m.Lang) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(interaction_id, m.text("cancel", lang)))
    return view


def forget_view(owner: int, lang: m.Lang) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(True, owner, m.text("forget_yes", lang)))
    view.add_item(ForgetButton(False, owner, m.text("forget_no", lang)))
    return view
