"""What a Discord job stores: where to answer (`Target`) and where its photo lives (`input_ref`).

Both are plain JSON in the job row, so a job can be answered and its input fetched again after a
restart, when the `discord.Interaction` that started it is long gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import discord

from bots import messages as m
from core.jobs import Job

TOKEN_LIFETIME = 15 * 60
"""Discord accepts follow-ups with an interaction token for 15 minutes."""
TOKEN_MARGIN = 60
"""Past `TOKEN_LIFETIME - TOKEN_MARGIN` the answer goes to the channel instead."""
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".jfif",
    ".png",
    ".webp",
    ".heic",
    ".heif",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a job's answers go: its interaction (token, original response) and its channel."""

    application_id: int
    token: str
    interaction_id: int
    channel_id: int
    guild_id: int | None
    user_id: int
    lang: m.Lang
    created_at: float
    """When the interaction (and so its token) was created, unix seconds."""
    original_id: int | None
    """The deferred response, which shows the job's progress."""
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    batch: int | None = None
    """How many jobs the interaction started, when it started several (context menu)."""
    index: int = 0

    def __repr__(self) -> str:  # the token stays out of reprs, hence out of logs
        return f"Target(interaction={self.interaction_id}, channel={self.channel_id})"

    @classmethod
    def of(cls, job: Job) -> Target:
        return cls.from_json(job.reply_target)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        guild = data.get("guild_id")
        original = data.get("original_id")
        lang: m.Lang = "zh" if data.get("lang") == "zh" else "en"
        return cls(
            application_id=int(data["application_id"]),
            token=str(data["token"]),
            interaction_id=int(data["interaction_id"]),
            channel_id=int(data["channel_id"]),
            guild_id=int(guild) if guild else None,
            user_id=int(data["user_id"]),
            lang=lang,
            created_at=float(data["created_at"]),
            original_id=int(original) if original else None,
            upload_limit=int(data.get("upload_limit") or DEFAULT_UPLOAD_LIMIT),
            batch=int(data["batch"]) if data.get("batch") else None,
            index=int(data.get("index") or 0),
        )

    @classmethod
    def for_interaction(
        cls,
        interaction: discord.Interaction[Any],
        original_id: int | None,
        lang: m.Lang | None = None,
    ) -> Target:
        """Answers to `interaction` in `lang` (default: the client's language)."""
        return cls(
            application_id=interaction.application_id,
            token=interaction.token,
            interaction_id=interaction.id,
            channel_id=interaction.channel_id or 0,
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
            lang=lang or lang_of(interaction),
            created_at=interaction.created_at.timestamp(),
            original_id=original_id,
            upload_limit=interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT,
        )

    def in_batch(self, size: int, index: int) -> Target:
        """This target for job `index` of `size` started by one interaction."""
        return Target(**{**self.to_json(), "batch": size if size > 1 else None, "index": index})

    def to_json(self) -> dict[str, Any]:
        return {
            "application_id": self.application_id,
            "token": self.token,
            "interaction_id": self.interaction_id,
            "channel_id": self.channel_id,
            "guild_id": self.guild_id,
            "user_id": self.user_id,
            "lang": self.lang,
            "created_at": self.created_at,
            "original_id": self.original_id,
            "upload_limit": self.upload_limit,
            "batch": self.batch,
            "index": self.index,
        }

    def token_fresh(self, now: float) -> bool:
        """Whether follow-ups with the token still work (with a margin for slow uploads)."""
        return now - self.created_at < TOKEN_LIFETIME - TOKEN_MARGIN


def lang_of(interaction: discord.Interaction[Any]) -> m.Lang:
    """The catalog for the user's Discord client language (`zh-CN`, `zh-TW` -> Chinese)."""
    return m.lang_for(interaction.locale.value)


def looks_like_image(content_type: str | None, filename: str) -> bool:
    """A cheap guess from what Discord tells; the core still sniffs the bytes."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind and kind != "application/octet-stream":
        return kind.startswith("image/")
    return os.path.splitext(filename.lower())[1] in IMAGE_SUFFIXES


def attachment_ref(attachment: discord.Attachment) -> dict[str, Any]:
    """How to fetch an attachment again: its CDN URL (signed, expires after about a day)."""
    return {
        "kind": "attachment",
        "id": attachment.id,
        "url": attachment.url,
        "size": attachment.size,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
    }


def embed_ref(url: str) -> dict[str, Any]:
    """An embedded image, fetched through Discord's media proxy, never from the poster's host."""
    return {"kind": "embed", "url": url}


def image_refs(message: discord.Message, max_bytes: int) -> tuple[list[dict[str, Any]], int]:
    """The retouchable images of a message, and the size of the largest one skipped as too big."""
    refs: list[dict[str, Any]] = []
    too_large = 0
    for attachment in message.attachments:
        if not looks_like_image(attachment.content_type, attachment.filename):
            continue
        if attachment.size > max_bytes:
            too_large = max(too_large, attachment.size)
            continue
        refs.append(attachment_ref(attachment))
    for embed in message.embeds:
        # A link to an image shows as an "image" embed with the picture as its thumbnail.
        url = embed.thumbnail.proxy_url if embed.type == "image" else embed.image.proxy_url
        if url:
            refs.append(embed_ref(url))
    return refs, too_large
