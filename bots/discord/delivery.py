"""Answering a stored `Target`: follow-ups while its token lives, channel messages after that.

Everything goes through the interaction's webhook rebuilt from the stored application id and
token, so the same code answers before and after a restart. Failures become `DeliveryError`s
(permanent when retrying cannot help) with messages that never contain the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import discord

from bots import messages as m
from bots.discord.targets import Target
from core.errors import DeliveryError
from core.formats import EXTENSIONS
from core.imaging import fit_for_upload

log = logging.getLogger("retouch.discord")

MISSING_PERMISSIONS = 50013
MISSING_ACCESS = 50001
UNKNOWN_WEBHOOK = 10015
MENTION_USERS = discord.AllowedMentions(everyone=False, users=True, roles=False)
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(frozen=True, slots=True)
class Upload:
    """One file to attach, kept as bytes so every attempt gets a fresh `discord.File`."""

    name: str
    data: bytes

    def file(self) -> discord.File:
        return discord.File(io.BytesIO(self.data), filename=self.name)


NONCE_LENGTH = 25
"""Discord's limit for a message nonce."""


def result_nonce(job_ids: Sequence[str]) -> str:
    """The nonce of the channel message that carries these jobs' results.

    Derived from the jobs alone, so a resend after a crash carries the same one and Discord
    (`enforce_nonce`) returns the message already posted; other jobs, other nonce.
    """
    digest = hashlib.sha256("\n".join(sorted(job_ids)).encode()).hexdigest()
    return ("rt" + digest)[:NONCE_LENGTH]


async def fit(data: bytes, limit: int, stem: str) -> Upload:
    """The result as an upload under the interaction's size limit (re-encoded only if over it)."""
    prepared = await asyncio.to_thread(fit_for_upload, data, max_bytes=limit)
    return Upload(f"{stem}{EXTENSIONS[prepared.format]}", prepared.data)


class ChannelTurns:
    """One post at a time per channel, so discord.py reads each answer's rate-limit headers in
    order: concurrent posts can update its bucket from a stale `X-RateLimit-Remaining` and
    send into a spent window (a 429)."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def turn(self, channel_id: int) -> AsyncIterator[None]:
        lock, waiting = self._locks.get(channel_id, (asyncio.Lock(), 0))
        self._locks[channel_id] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._locks[channel_id]
            if waiting == 1:
                del self._locks[channel_id]
            else:
                self._locks[channel_id] = (lock, waiting - 1)


class Replier:
    """Sends, edits and deletes a target's messages; `clock` decides whether its token lives."""

    def __init__(self, client: discord.Client, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock
        self.turns = ChannelTurns()

    def webhook(self, target: Target) -> discord.Webhook:
        """The interaction's follow-up webhook, built as `Interaction.followup` builds it."""
        payload = {"id": target.application_id, "type": 3, "token": target.token}
        return discord.Webhook.from_state(data=cast(Any, payload), state=self.client._connection)

    def fresh(self, target: Target) -> bool:
        return target.token_fresh(self.clock())

    # --- results --------------------------------------------------------------------------

    async def send_result(
        self,
        target: Target,
        uploads: Sequence[Upload],
        embed: discord.Embed,
        view: discord.ui.View,
        nonce: str,
    ) -> None:
        """Post the result: a follow-up, else (token too old, or gone) a channel message that
        carries `nonce` (follow-ups take none: a token lives 15 minutes, a resend is rare)."""
        if self.fresh(target):
            try:
                await self.webhook(target).send(
                    embed=embed,
                    files=[u.file() for u in uploads],
                    view=view,
                    allowed_mentions=NO_MENTIONS,
                    wait=True,
                )
                return
            except discord.NotFound:
                log.info("interaction %s expired; posting in the channel", target.interaction_id)
            except discord.HTTPException as exc:
                raise _delivery_error(exc, target, files=True) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise DeliveryError(f"upload failed ({type(exc).__name__})") from None
        mention = f"<@{target.user_id}>"
        await self._post(
            target,
            content=m.text("d:late", target.lang, mention=mention),
            embed=embed,
            uploads=uploads,
            view=view,
            nonce=nonce,
        )

    # --- notes and the status message -------------------------------------------------------

    async def note(self, target: Target, line: str) -> None:
        """Tell the requester something: an ephemeral follow-up, else a mention in the channel."""
        if self.fresh(target):
            try:
                await self.webhook(target).send(
                    line, ephemeral=True, allowed_mentions=NO_MENTIONS, wait=True
                )
                return
            except discord.NotFound:
                pass
            except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("could not tell the user (%s)", _describe(exc))
                return
        try:
            await self._post(target, content=f"<@{target.user_id}> {line}")
        except DeliveryError as exc:
            log.warning("could not tell the user in channel %s: %s", target.channel_id, exc)

    async def edit_status(self, target: Target, content: str, view: discord.ui.View | None) -> None:
        """Show `content` in the deferred response (best effort: only while the token lives)."""
        if target.original_id is None or not self.fresh(target):
            return
        try:
            await self.webhook(target).edit_message(
                target.original_id, content=content, view=view, allowed_mentions=NO_MENTIONS
            )
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("status edit skipped (%s)", _describe(exc))

    async def delete_status(self, target: Target) -> None:
        if target.original_id is None or not self.fresh(target):
            return
        try:
            await self.webhook(target).delete_message(target.original_id)
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("status delete skipped (%s)", _describe(exc))

    # --- the channel ----------------------------------------------------------------------

    async def _post(
        self,
        target: Target,
        *,
        content: str,
        embed: discord.Embed | None = None,
        uploads: Sequence[Upload] = (),
        view: discord.ui.View | None = None,
        nonce: str | None = None,
    ) -> None:
        """`POST /channels/{id}/messages` with the bot's own token; with a `nonce`, discord.py
        also sends `enforce_nonce`, so the same nonce again returns the first message."""
        channel = self.client.get_partial_messageable(target.channel_id, guild_id=target.guild_id)
        kwargs: dict[str, Any] = {"content": content, "allowed_mentions": MENTION_USERS}
        if nonce is not None:
            kwargs["nonce"] = nonce
        if embed is not None:
            kwargs["embed"] = embed
        if uploads:
            kwargs["files"] = [u.file() for u in uploads]
        if view is not None:
            kwargs["view"] = view
        try:
            async with self.turns.turn(target.channel_id):
                await channel.send(**kwargs)
        except discord.HTTPException as exc:
            raise _delivery_error(exc, target, files=bool(uploads)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"posting in the channel failed ({type(exc).__name__})") from None


def _delivery_error(exc: discord.HTTPException, target: Target, *, files: bool) -> DeliveryError:
    """Discord's refusal as a `DeliveryError`: 5xx may pass, a 4xx will not."""
    if isinstance(exc, discord.Forbidden) and exc.code == MISSING_PERMISSIONS and files:
        return DeliveryError(
            m.text("no_attach_permission", "en"),
            permanent=True,
            reason="no_attach_permission",
            channel=target.channel_id,
        )
    permanent = not isinstance(exc, discord.DiscordServerError) and exc.status != 429
    return DeliveryError(f"Discord refused the message ({_describe(exc)})", permanent=permanent)


def _describe(exc: BaseException) -> str:
    """An error as safe text: status and code, never the URL (it carries the token)."""
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status}, code {exc.code}: {exc.text[:200]}"
    return type(exc).__name__
