"""The bot's flood budget: every Bot API call passes through it (PTB's `BaseRateLimiter`).

A sending call waits for its chat's bucket (one a second with a short burst in a private chat,
20 a minute in a group) and the global one (30 a second) before it goes, so Telegram's limits
are met ahead of time rather than with a 429. A 429 anyway makes that chat wait `retry_after`
(everything, when it hits calls to several chats at once, as a global limit does), nothing goes
there meanwhile, and the call is tried again.

When answers queue for the global bucket, those to groups go first: a group's own bucket refills
only one message every 3 s, so each second it waits behind private chats is lost for good, while
a private chat's wait is repaid at once.

Priorities: answers and results (`Priority.ANSWER`, the default) wait their turn and are never
dropped. Status updates (`STATUS`) and chat actions (`ACTION`) never wait: they go only when the
budget has room to spare for the results still to come, else they raise `Deferred` and the
caller merges or skips them. The priority of a call is the `rate_limit_args` PTB passes, else
the one `sending_as` set around it.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import heapq
import itertools
import logging
import math
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from telegram.error import RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter

from bots.telegram.buckets import Bucket, chat_of, message_cost
from bots.telegram.clock import Clock, budget_clock
from bots.telegram.settings import TelegramSettings

log = logging.getLogger("retouch.telegram")

MAX_FLOOD_WAITS = 5
"""429s one call waits out before its error reaches the caller."""
MAX_WAIT_SECONDS = 120.0
"""A longer flood wait is not waited out by a call: its error reaches the caller at once."""
ACTION_EVERY = 5.0
"""Telegram shows a chat action for 5 s: at most one per chat in that time."""
GLOBAL_RESERVE = 1 / 3
"""The share of the global bucket a status update leaves for results still to come."""
SPREAD_SECONDS = 1.0
"""429s for this many chats within this many seconds are taken for a global limit."""
SPREAD_CHATS = 2


class Priority(IntEnum):
    ANSWER = 0
    STATUS = 1
    ACTION = 2


_PRIORITY: ContextVar[Priority] = ContextVar("telegram_send_priority", default=Priority.ANSWER)


@contextmanager
def sending_as(priority: Priority) -> Iterator[None]:
    """Bot API calls made inside go with `priority` (shortcuts like `Message.reply_text` take
    no `rate_limit_args`)."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


class Deferred(TelegramError):
    """A status update or chat action held back: sent now, it would delay a result."""

    def __init__(self) -> None:
        super().__init__("held back: the flood budget is kept for results")


@dataclass(frozen=True, slots=True)
class FloodLimits:
    """Telegram's limits as the bot budgets them (`TELEGRAM_FLOOD_*`)."""

    global_per_second: float = 30.0
    chat_per_second: float = 1.0
    chat_burst: int = 3
    group_per_minute: float = 20.0

    @classmethod
    def of(cls, telegram: TelegramSettings) -> FloodLimits:
        return cls(
            telegram.flood_global_per_second,
            telegram.flood_chat_per_second,
            telegram.flood_chat_burst,
            telegram.flood_group_per_minute,
        )


@dataclass(order=True)
class _Turn:
    """An answer's place in the queue for the global bucket: groups (rank 0) first."""

    rank: int
    number: int
    woken: asyncio.Event = field(default_factory=asyncio.Event, compare=False)


Callback = Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]]


class FloodBudget(BaseRateLimiter[Priority]):
    """Global, per-chat and per-group budgets in front of every Bot API call."""

    def __init__(self, limits: FloodLimits, clock: Clock | None = None) -> None:
        self.limits = limits
        self.clock = clock or budget_clock()
        burst = max(1, math.floor(limits.global_per_second))
        self._global = Bucket(1 / limits.global_per_second, burst)
        self._chats: dict[int, Bucket] = {}
        self._global_wait = -math.inf
        self._chat_waits: dict[int, float] = {}
        self._waiting: defaultdict[int | None, int] = defaultdict(int)  # answers, by chat
        self._waiting_globally = 0  # answers waiting for the global bucket or a global wait
        self._expected: defaultdict[int, set[str]] = defaultdict(set)
        self._last_action: dict[int, float] = {}
        self._recent_floods: deque[tuple[float, int | None]] = deque()
        self._floods: defaultdict[int | None, int] = defaultdict(int)  # 429s so far, by chat
        self._landed = asyncio.Event()  # set (and replaced) whenever a sending call is answered
        self._turns: list[_Turn] = []  # answers waiting for the global bucket, first to go first
        self._turn_numbers = itertools.count()

    async def initialize(self) -> None:
        """Nothing to open: the budget is kept in memory."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    # ------------------------------------------------------------------ what is to come

    def expect(self, chat_id: int, job_id: str) -> None:
        """A job's result is still to come in this chat: status updates leave room for it."""
        self._expected[chat_id].add(job_id)

    def settle(self, chat_id: int, job_id: str) -> None:
        """The job ended: its result needs no room any more."""
        jobs = self._expected.get(chat_id)
        if jobs is not None:
            jobs.discard(job_id)
            if not jobs:
                del self._expected[chat_id]

    # ------------------------------------------------------------------ PTB's hook

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Priority | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        priority = rate_limit_args if rate_limit_args is not None else _PRIORITY.get()
        if endpoint == "sendChatAction":
            priority = Priority.ACTION
        chat = chat_of(data)
        cost = message_cost(endpoint, data)
        for attempt in range(MAX_FLOOD_WAITS + 1):
            if priority is Priority.ANSWER:
                launched = await self._wait_turn(chat, cost)
            else:
                launched = self._spare(chat, cost, priority)
            self.clock.in_flight(1)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = _seconds(exc.retry_after)
                self._flood(chat, seconds, endpoint)
                if priority is not Priority.ANSWER:
                    raise Deferred() from exc
                if attempt == MAX_FLOOD_WAITS or seconds > MAX_WAIT_SECONDS:
                    raise
            finally:
                self.clock.in_flight(-1)
                self._land(launched, cost)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ internals

    async def _wait_turn(self, chat: int | None, cost: int) -> list[Bucket]:
        """Wait out flood waits, then for a slot in the chat's bucket and the global one; the
        buckets the call is let out of."""
        self._waiting[chat] += 1
        try:
            while True:
                await self._out_of_flood(chat)
                if cost == 0:
                    return []
                floods = self._floods[chat], self._floods[None]
                buckets = [self._global] if chat is None else [self._bucket(chat), self._global]
                if chat is not None:
                    await self._reserve(buckets[0], cost)
                self._waiting_globally += 1
                try:
                    await self._global_turn(chat, cost)
                    if await self._clear(buckets, cost, floods, chat):
                        return buckets
                finally:
                    self._waiting_globally -= 1
                # a 429 came meanwhile: the slot was reckoned on a bucket Telegram found full
        finally:
            self._waiting[chat] -= 1
            if not self._waiting[chat]:
                del self._waiting[chat]

    async def _reserve(self, bucket: Bucket, cost: int) -> None:
        """Take the bucket's next slot for `cost` messages and sleep until it comes."""
        now = self.clock.monotonic()
        start = bucket.ready_at(now, cost)
        bucket.take(start, cost)
        if start > now:
            await self.clock.sleep_until(start)

    async def _global_turn(self, chat: int | None, cost: int) -> None:
        """Wait for a slot in the global bucket, answers to groups before the others (each in
        the order it came), and take it."""
        turn = _Turn(0 if chat is not None and chat < 0 else 1, next(self._turn_numbers))
        heapq.heappush(self._turns, turn)
        try:
            while True:
                if self._turns[0] is not turn:
                    turn.woken.clear()
                    await turn.woken.wait()
                    continue
                now = self.clock.monotonic()
                start = self._global.ready_at(now, cost)
                if start <= now:
                    self._global.take(now, cost)
                    return
                await self.clock.sleep_until(start)
        finally:
            if self._turns and self._turns[0] is turn:
                heapq.heappop(self._turns)
            elif turn in self._turns:  # cancelled while it waited
                self._turns.remove(turn)
                heapq.heapify(self._turns)
            if self._turns:
                self._turns[0].woken.set()

    async def _clear(
        self, buckets: list[Bucket], cost: int, floods: tuple[int, int], chat: int | None
    ) -> bool:
        """Wait until the messages fit in every bucket however late the calls in flight arrive,
        and let them out; False if a 429 came first."""
        while floods == (self._floods[chat], self._floods[None]):
            now = self.clock.monotonic()
            landed = self._landed
            times = [bucket.clear_at(now, cost) for bucket in buckets]
            if any(t is None for t in times):
                await landed.wait()
            elif (until := max(t for t in times if t is not None)) > now:
                await self.clock.sleep_until(until)
            else:
                for bucket in buckets:
                    bucket.launch(cost)
                return True
        return False

    async def _out_of_flood(self, chat: int | None) -> None:
        while (wait := self._wait_end(chat)) > self.clock.monotonic():
            await self.clock.sleep_until(wait)

    def _spare(self, chat: int | None, cost: int, priority: Priority) -> list[Bucket]:
        """Take the budget for a status update or chat action now, or raise `Deferred`."""
        now = self.clock.monotonic()
        if self._wait_end(chat) > now or self._waiting_globally or self._waiting.get(chat):
            raise Deferred()  # an answer waits (here or for the global bucket): it goes first
        if priority is Priority.ACTION:
            if chat is not None:
                if now - self._last_action.get(chat, -math.inf) < ACTION_EVERY:
                    raise Deferred()
                self._last_action[chat] = now
            return []
        if cost == 0:
            return []
        to_come = len(self._expected.get(chat, ())) if chat is not None else 0
        bucket = self._bucket(chat) if chat is not None else None
        if bucket is not None and not bucket.has_room(now, cost + to_come):
            raise Deferred()
        everywhere = sum(len(jobs) for jobs in self._expected.values())
        reserve = min(everywhere, math.floor(self._global.burst * GLOBAL_RESERVE))
        if not self._global.has_room(now, cost + reserve):
            raise Deferred()
        launched = [self._global] if bucket is None else [bucket, self._global]
        for each in launched:
            each.take(now, cost)
            each.launch(cost)
        return launched

    def _land(self, launched: list[Bucket], cost: int) -> None:
        """The call was answered: it reached Telegram by now at the latest."""
        now = self.clock.monotonic()
        for bucket in launched:
            bucket.land(now, cost)
        if launched:
            self._landed.set()
            self._landed = asyncio.Event()

    def _flood(self, chat: int | None, seconds: float, endpoint: str) -> None:
        """A 429: the chat waits; a call to no chat, or 429s in several chats at once, make
        everything wait."""
        now = self.clock.monotonic()
        until = now + seconds
        self._recent_floods.append((now, chat))
        while self._recent_floods and self._recent_floods[0][0] < now - SPREAD_SECONDS:
            self._recent_floods.popleft()
        spread = {c for _, c in self._recent_floods}
        if chat is None or len(spread) >= SPREAD_CHATS:
            self._global_wait = max(self._global_wait, until)
            self._floods[None] += 1
            self._global.drain(until)
            log.warning("flood control: every chat waits %.0f s (%s)", seconds, endpoint)
        else:
            self._chat_waits[chat] = max(self._chat_waits.get(chat, -math.inf), until)
            self._floods[chat] += 1
            self._bucket(chat).drain(until)
            log.warning("flood control: chat %s waits %.0f s (%s)", chat, seconds, endpoint)

    def _wait_end(self, chat: int | None) -> float:
        if chat is None:
            return self._global_wait
        return max(self._global_wait, self._chat_waits.get(chat, -math.inf))

    def _bucket(self, chat: int) -> Bucket:
        bucket = self._chats.get(chat)
        if bucket is None:
            if chat < 0:  # groups, supergroups and channels: 20 a minute, a minute's worth at once
                burst = max(1, math.floor(self.limits.group_per_minute))
                bucket = Bucket(60 / self.limits.group_per_minute, burst)
            else:
                bucket = Bucket(1 / self.limits.chat_per_second, self.limits.chat_burst)
            self._chats[chat] = bucket
        return bucket


def budget_of(bot: object) -> FloodBudget | None:
    """The flood budget a PTB bot sends through, if it has this one."""
    limiter = getattr(bot, "rate_limiter", None)
    return limiter if isinstance(limiter, FloodBudget) else None


def _seconds(delay: float | dtm.timedelta) -> float:
    return delay.total_seconds() if isinstance(delay, dtm.timedelta) else float(delay)
