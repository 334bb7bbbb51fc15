"""Telegram's flood limits for the fake Bot API, written from the Bot FAQ ("My bot is hitting
limits, how do I avoid this?"):

- about 30 messages a second in all ("the API will not allow more than 30 messages per second");
- in one chat about one message a second, "short bursts" pass;
- "no more than 20 messages per minute to the same group".

Each is a token bucket (GCRA): `rate` messages a second refill it, `burst` is its size. A group is
governed by its 20-a-minute bucket (a minute's worth may come at once); a private chat by the
one-a-second bucket. Edits (`editMessage*`) cost a message, `sendMediaGroup` one per item. The
FAQ names messages only: `sendChatAction` and `deleteMessage(s)` cost nothing, but like every
call to a chat they are refused while that chat's flood wait runs.

Past a limit the answer is 429 `Too Many Requests: retry after N` with `parameters.retry_after`
(whole seconds, at least 1). A call made while a wait it announced still runs is counted in
`calls_during_flood_wait`, refused again, and, as real Telegram escalates, lengthens the wait by
`penalty_seconds` (up to `max_penalty_seconds` a wait). A limit on all chats at once is a
global wait: every sending call is refused.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

MESSAGE_METHODS = frozenset(
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
"""Calls that put a message (or an edit of one) in a chat: each costs the chat's budget."""
FREE_CHAT_METHODS = frozenset({"sendChatAction", "deleteMessage", "deleteMessages"})
"""Calls to a chat that cost no message, yet are refused during the chat's flood wait."""
SENDING_METHODS = MESSAGE_METHODS | FREE_CHAT_METHODS


@dataclass(frozen=True)
class TelegramLimits:
    """The fake's limits; the defaults are Telegram's published ones."""

    global_per_second: float = 30.0
    global_burst: int = 30
    chat_per_second: float = 1.0
    chat_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 20
    penalty_seconds: float = 1.0
    max_penalty_seconds: float = 30.0


@dataclass
class _Bucket:
    """A generic-cell-rate bucket: `tat` is when it would be full again."""

    interval: float
    burst: int
    tat: float = -math.inf

    def ready_at(self, now: float, cost: int) -> float:
        """The earliest time `cost` messages conform (a cost above the burst needs it full)."""
        room = max(self.burst, cost) - cost
        return max(now, self.tat - room * self.interval)

    def take(self, now: float, cost: int) -> None:
        self.tat = max(self.tat, now) + cost * self.interval


@dataclass
class FloodStats:
    """What the limits saw, for tests and the `flood` benchmark."""

    sending_calls: int = 0
    too_many_requests: int = 0
    calls_during_flood_wait: int = 0
    messages_by_chat: Counter[int] = field(default_factory=Counter)


class TooManyRequests(Exception):
    """A call refused by the limits; the fake answers it as Telegram's 429."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too Many Requests: retry after {retry_after}")
        self.retry_after = retry_after


class FloodControl:
    """The fake's limits: `check` a call before it is handled; raises `TooManyRequests`."""

    def __init__(
        self,
        limits: TelegramLimits,
        clock: Callable[[], float],
        is_group: Callable[[int], bool],
        *,
        enforce: bool = True,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.enforce = enforce
        self.stats = FloodStats()
        self._is_group = is_group
        self._global = _Bucket(1 / limits.global_per_second, limits.global_burst)
        self._chats: dict[int, _Bucket] = {}
        self._global_wait = -math.inf
        self._chat_waits: dict[int, float] = {}
        self._penalties: dict[int | None, float] = {}  # seconds added to the running wait

    def check(self, method: str, params: JSON) -> None:
        """Count the call; refuse it with a 429 if a wait runs or a limit is passed."""
        if method not in SENDING_METHODS:
            return
        self.stats.sending_calls += 1
        now = self.clock()
        chat = _chat_of(params)
        if self.enforce:
            self._refuse_during_wait(now, chat)
        cost = message_cost(method, params)
        if cost == 0:
            return
        bucket = self._bucket(chat) if chat is not None else None
        if self.enforce:
            self._refuse_past_limit(now, chat, bucket, cost)
        self._global.take(now, cost)
        if chat is not None and bucket is not None:
            bucket.take(now, cost)

    def announce(self, params: JSON, retry_after: int) -> None:
        """A scripted 429 told the bot to wait: calls meanwhile count as the limits' own do."""
        self.stats.too_many_requests += 1
        chat = _chat_of(params)
        until = self.clock() + retry_after
        if chat is None:
            self._global_wait = max(self._global_wait, until)
        else:
            self._chat_waits[chat] = max(self._chat_waits.get(chat, -math.inf), until)

    def delivered(self, chat_id: int, messages: int) -> None:
        """`messages` messages now exist in the chat (album items one by one)."""
        self.stats.messages_by_chat[chat_id] += messages

    def snapshot(self, calls: int) -> dict[str, Any]:
        return {
            "calls": calls,
            "sending_calls": self.stats.sending_calls,
            "too_many_requests": self.stats.too_many_requests,
            "calls_during_flood_wait": self.stats.calls_during_flood_wait,
            "messages_by_chat": dict(self.stats.messages_by_chat),
            "messages": sum(self.stats.messages_by_chat.values()),
        }

    def _refuse_during_wait(self, now: float, chat: int | None) -> None:
        if self._global_wait > now:
            self._global_wait += self._penalty(None)
            self._count_violation()
            raise self._too_many(self._global_wait - now)
        if chat is not None and self._chat_waits.get(chat, -math.inf) > now:
            self._chat_waits[chat] += self._penalty(chat)
            self._count_violation()
            raise self._too_many(self._chat_waits[chat] - now)

    def _penalty(self, scope: int | None) -> float:
        """The seconds a call during a wait adds to it, until the wait's penalties reach the cap."""
        spent = self._penalties.get(scope, 0.0)
        added = max(0.0, min(self.limits.penalty_seconds, self.limits.max_penalty_seconds - spent))
        self._penalties[scope] = spent + added
        return added

    def _refuse_past_limit(
        self, now: float, chat: int | None, bucket: _Bucket | None, cost: int
    ) -> None:
        if bucket is not None and chat is not None:
            ready = bucket.ready_at(now, cost)
            if ready > now:
                retry_after = _whole_seconds(ready - now)
                self._chat_waits[chat] = now + retry_after
                self._penalties.pop(chat, None)
                raise self._too_many(retry_after)
        ready = self._global.ready_at(now, cost)
        if ready > now:
            retry_after = _whole_seconds(ready - now)
            self._global_wait = now + retry_after
            self._penalties.pop(None, None)
            raise self._too_many(retry_after)

    def _count_violation(self) -> None:
        self.stats.calls_during_flood_wait += 1

    def _too_many(self, seconds: float) -> TooManyRequests:
        self.stats.too_many_requests += 1
        return TooManyRequests(_whole_seconds(seconds))

    def _bucket(self, chat: int) -> _Bucket:
        bucket = self._chats.get(chat)
        if bucket is None:
            if self._is_group(chat):
                interval = 60 / self.limits.group_per_minute
                bucket = _Bucket(interval, self.limits.group_burst)
            else:
                bucket = _Bucket(1 / self.limits.chat_per_second, self.limits.chat_burst)
            self._chats[chat] = bucket
        return bucket


def message_cost(method: str, params: JSON) -> int:
    """Messages a call costs: one, one per album item, or none."""
    if method not in MESSAGE_METHODS:
        return 0
    if method == "sendMediaGroup":
        media = params.get("media")
        return max(1, len(media)) if isinstance(media, list) else 1
    return 1


def _chat_of(params: JSON) -> int | None:
    value = params.get("chat_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None  # an inline message, or an @username: only the global limit applies


def _whole_seconds(seconds: float) -> int:
    """Telegram's retry_after: whole seconds, rounded up, at least one."""
    return max(1, math.ceil(seconds - 1e-9))
