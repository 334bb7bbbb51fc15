"""What a Bot API call costs of Telegram's flood limits, and the token bucket that counts it.

Telegram's Bot FAQ limits messages: about 30 a second in all, about one a second per chat (short
bursts pass), 20 a minute per group. Edits count as messages, an album as one per item; chat
actions and deletions send no message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MESSAGE_ENDPOINTS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAnimation",
        "sendAudio",
        "sendVoice",
        "sendSticker",
        "sendMediaGroup",
        "sendInvoice",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
    }
)


def message_cost(endpoint: str, data: dict[str, Any]) -> int:
    """How many messages a call puts in a chat: one, one per album item, or none."""
    if endpoint not in MESSAGE_ENDPOINTS:
        return 0
    if endpoint == "sendMediaGroup":
        media = data.get("media")
        return max(1, len(media)) if isinstance(media, list | tuple) else 1
    return 1


def chat_of(data: dict[str, Any]) -> int | None:
    """The numeric chat a call addresses, if any (an @username or inline message: none)."""
    value = data.get("chat_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


@dataclass
class Bucket:
    """A token bucket kept as the generic cell rate algorithm: `tat` is when it is full again.

    `burst` messages may go at once, then one every `interval` seconds; a cost above the burst
    (a ten-photo album in a private chat) goes when the bucket is full, and is paid off after.
    """

    interval: float
    burst: int
    tat: float = -math.inf

    def ready_at(self, now: float, cost: int) -> float:
        """The earliest time `cost` messages may go."""
        room = max(self.burst, cost) - cost
        return max(now, self.tat - room * self.interval)

    def has_room(self, now: float, cost: int) -> bool:
        """Whether `cost` messages fit now, without paying anything off later."""
        return cost <= self.burst and self.tat - (self.burst - cost) * self.interval <= now

    def take(self, at: float, cost: int) -> None:
        """Spend `cost` messages at time `at` (now, or a slot reserved ahead)."""
        self.tat = max(self.tat, at) + cost * self.interval
