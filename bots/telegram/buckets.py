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
    Telegram counts a message when it arrives, which can be well after it was let out (queued for
    a connection, uploading): `late` is the bucket reckoned from when the answers came back (the
    latest each can have arrived), and `in_flight` the messages not answered yet, so `clear_at`
    holds however late they arrive.
    """

    interval: float
    burst: int
    tat: float = -math.inf
    late: float = -math.inf
    in_flight: int = 0

    def ready_at(self, now: float, cost: int) -> float:
        """The earliest time `cost` messages may go."""
        room = max(self.burst, cost) - cost
        return max(now, self.tat - room * self.interval)

    def has_room(self, now: float, cost: int) -> bool:
        """Whether `cost` messages fit now, without paying anything off later."""
        fits = cost <= self.burst and self.tat - (self.burst - cost) * self.interval <= now
        return fits and self.clear_at(now, cost) == now

    def clear_at(self, now: float, cost: int) -> float | None:
        """When `cost` more messages fit however late those in flight arrive; None while too
        many are in flight (only their answers tell)."""
        size = max(self.burst, cost)
        if self.in_flight and self.in_flight + cost > size:
            return None
        bound = (
            max(self.late, now) + self.in_flight * self.interval if self.in_flight else self.late
        )
        return max(now, bound - (size - cost) * self.interval)

    def launch(self, cost: int) -> None:
        """`cost` messages are on their way."""
        self.in_flight += cost

    def land(self, at: float, cost: int) -> None:
        """Their answer came back at `at`: they arrived by then."""
        self.in_flight -= cost
        self.late = max(self.late, at) + cost * self.interval

    def drain(self, until: float) -> None:
        """A 429: the bucket is as Telegram sees it, one message fits when the wait ends."""
        full = until + (self.burst - 1) * self.interval
        self.tat, self.late = max(self.tat, full), max(self.late, full)

    def take(self, at: float, cost: int) -> None:
        """Spend `cost` messages at time `at` (now, or a slot reserved ahead)."""
        self.tat = max(self.tat, at) + cost * self.interval
