"""What a Telegram job stores: where to answer (`Target`) and where its photo lives (`input_ref`).

Both are plain JSON in the job row, so a job can be answered and its photo fetched again after a
restart. The JSON keeps the shape of the `reply_target` dict earlier versions stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telegram import Message, ReplyParameters, User
from telegram.constants import ChatID

from bots import messages as m
from core.jobs import Job, Platform
from core.service import RetouchRequest

PLATFORM: Platform = "telegram"

SHARED_SENDERS = frozenset({ChatID.ANONYMOUS_ADMIN, ChatID.FAKE_CHANNEL, ChatID.SERVICE_CHAT})
"""The accounts Telegram shows as the sender of messages sent on behalf of a chat: every
anonymous admin of every group is GroupAnonymousBot (1087968824), every channel Channel_Bot."""


@dataclass(frozen=True, slots=True)
class AlbumSlot:
    """A job's photo in an album: the album's id, how many photos it has, and which this is."""

    id: str
    size: int
    index: int


@dataclass(frozen=True, slots=True)
class Target:
    """Where a job's answers go: the message replied to, its topic, and the status reply."""

    chat_id: int
    message_id: int
    thread_id: int | None
    status_id: int | None
    """The "received" reply that shows the job's progress, when there is one."""
    lang: m.Lang
    album: AlbumSlot | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        album = data.get("album")
        return cls(
            chat_id=int(data["chat_id"]),
            message_id=int(data["message_id"]),
            thread_id=_optional_int(data.get("thread_id")),
            status_id=_optional_int(data.get("status_id")),
            lang="zh" if data.get("lang") == "zh" else "en",
            album=AlbumSlot(str(album["id"]), int(album["size"]), int(album["index"]))
            if album
            else None,
        )

    @classmethod
    def of(cls, job: Job) -> Target:
        return cls.from_json(job.reply_target)

    @classmethod
    def replying_to(
        cls,
        message: Message,
        lang: m.Lang,
        status: Message | None = None,
        album: AlbumSlot | None = None,
    ) -> Target:
        """Answer `message`, in its forum topic if it has one, showing progress in `status`."""
        return cls(
            chat_id=message.chat.id,
            message_id=message.message_id,
            thread_id=message.message_thread_id if message.is_topic_message else None,
            status_id=status.message_id if status is not None else None,
            lang=lang,
            album=album,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "thread_id": self.thread_id,
            "status_id": self.status_id,
            "lang": self.lang,
        }
        if self.album is not None:
            data["album"] = {
                "id": self.album.id,
                "size": self.album.size,
                "index": self.album.index,
            }
        return data

    def where(self) -> dict[str, Any]:
        """The arguments of a `send*` call that put a message in reply, in the right topic."""
        return {
            "chat_id": self.chat_id,
            "message_thread_id": self.thread_id,
            "reply_parameters": ReplyParameters(self.message_id, allow_sending_without_reply=True),
        }

    def request(
        self, user_id: str, input_ref: dict[str, Any], fidelity: float | None, *, is_group: bool
    ) -> RetouchRequest:
        """The service request for a job answering here."""
        return RetouchRequest(
            platform=PLATFORM,
            user_id=user_id,
            chat_id=str(self.chat_id),
            reply_target=self.to_json(),
            input_ref=input_ref,
            fidelity=fidelity,
            is_group=is_group,
        )


def input_ref(message: Message) -> dict[str, Any]:
    """How to fetch the photo or file again: its file id (never its URL, which has the token)."""
    file = message.photo[-1] if message.photo else message.document
    if file is None:
        raise ValueError("the message has no photo or file")
    return {"file_id": file.file_id, "file_unique_id": file.file_unique_id}


def sender_of(message: Message) -> str | None:
    """The user a message is from, as quotas and buttons know them; None for a message sent on
    behalf of a chat (an anonymous admin, a channel). Those share one account among many
    people, so the rule is: no job, no quota, no button is theirs; they are asked to post as
    themselves."""
    if message.sender_chat is not None:
        return None
    return user_id(message.from_user)


def user_id(user: User | None) -> str | None:
    """A user's id as text; None for none, or for an account many people share."""
    if user is None or user.id in SHARED_SENDERS:
        return None
    return str(user.id)


def lang_of(message: Message) -> m.Lang:
    """The catalog for the sender's Telegram language (`zh-hans` -> Chinese)."""
    return m.lang_for(message.from_user.language_code if message.from_user else None)


def _optional_int(value: Any) -> int | None:
    return int(value) if value is not None else None
