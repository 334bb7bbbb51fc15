"""Discord's REST rate limits for the fake Discord: per-route buckets and the global limit.

From the developer docs (Topics > Rate Limits): a bucket is a route (or a group of routes sharing
an `X-RateLimit-Bucket`) per top-level resource (channel_id, guild_id, webhook_id + token); every
answer carries `X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket`; past a limit the answer
is 429 with `Retry-After`, `X-RateLimit-Scope` and `{"message", "retry_after", "global"}`. A bot
may make 50 requests a second in all; interaction routes (callbacks, follow-ups, `@original`) are
not bound to that global limit. The sizes below are the ones Discord answers with in practice.

Windows run on `clock` (monotonic seconds): tests that need exact timing inject one they advance.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

RATE_LIMITED = "You are being rate limited."


@dataclass(frozen=True, slots=True)
class Bucket:
    """`limit` requests per `per` seconds (a fixed window from the first request in it)."""

    limit: int
    per: float


@dataclass(frozen=True, slots=True)
class DiscordLimits:
    """The buckets the fake enforces; `scaled` keeps the counts and shortens every window."""

    global_per_second: int = 50
    global_window: float = 1.0
    channel_messages: Bucket = Bucket(5, 5.0)
    """`POST /channels/{channel_id}/messages`, per channel."""
    channel_message_edits: Bucket = Bucket(5, 5.0)
    """`PATCH`/`DELETE /channels/{channel_id}/messages/{id}`, per channel."""
    interaction_webhook: Bucket = Bucket(5, 2.0)
    """Follow-ups and `@original` edits/deletes, per application id + interaction token."""
    interaction_callback: Bucket = Bucket(5, 5.0)
    """`POST /interactions/{id}/{token}/callback`, per interaction."""
    other: Bucket = Bucket(10, 10.0)
    """Any other route, per route and top-level resource."""

    def scaled(self, factor: float) -> DiscordLimits:
        """The same counts with every window `factor` times as long (tests use small ones)."""

        def scale(bucket: Bucket) -> Bucket:
            return Bucket(bucket.limit, bucket.per * factor)

        return replace(
            self,
            global_window=self.global_window * factor,
            channel_messages=scale(self.channel_messages),
            channel_message_edits=scale(self.channel_message_edits),
            interaction_webhook=scale(self.interaction_webhook),
            interaction_callback=scale(self.interaction_callback),
            other=scale(self.other),
        )


@dataclass(slots=True)
class _Window:
    limit: int
    per: float
    started: float = -math.inf
    used: int = 0
    wait_until: float = -math.inf
    """The end of the last wait a 429 announced for this bucket."""

    def roll(self, now: float) -> None:
        if now >= self.started + self.per:
            self.started, self.used = now, 0

    def reset_after(self, now: float) -> float:
        return max(0.0, self.started + self.per - now)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limiter decided for one request: headers to send, and a 429 body if refused."""

    headers: dict[str, str]
    refusal: dict[str, Any] | None = None


@dataclass
class RateLimitStats:
    requests: int = 0
    too_many_requests: int = 0
    """Every 429 answered: the limiter's own and the injected ones (`fail_next`)."""
    injected_too_many_requests: int = 0
    global_too_many_requests: int = 0
    requests_during_wait: int = 0
    by_bucket: dict[str, int] = field(default_factory=dict)
    """Requests per bucket name (`channel_messages`, `interaction_webhook`, ...)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "too_many_requests": self.too_many_requests,
            "injected_too_many_requests": self.injected_too_many_requests,
            "global_too_many_requests": self.global_too_many_requests,
            "requests_during_wait": self.requests_during_wait,
            "by_bucket": dict(self.by_bucket),
        }


def classify(method: str, template: str, params: Mapping[str, str]) -> tuple[str, str, bool]:
    """A route's bucket name, its top-level resource, and whether the global limit binds it."""
    if template.startswith("/interactions/"):
        return "interaction_callback", params.get("interaction_id", ""), False
    if template.startswith("/webhooks/{application_id}/{token}"):
        major = f"{params.get('application_id', '')}/{params.get('token', '')}"
        return "interaction_webhook", major, False
    channel = params.get("channel_id")
    if template == "/channels/{channel_id}/messages" and method == "POST":
        return "channel_messages", channel or "", True
    if template == "/channels/{channel_id}/messages/{message_id}" and method in ("PATCH", "DELETE"):
        return "channel_message_edits", channel or "", True
    major = channel or params.get("guild_id") or ""
    return f"{method} {template}", major, True


class RateLimiter:
    """Decides, per request, Discord's answer headers or its 429; counts what a test asserts on."""

    def __init__(self, limits: DiscordLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self.stats = RateLimitStats()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global = _Window(limits.global_per_second, limits.global_window)

    def check(self, method: str, template: str, params: Mapping[str, str]) -> Verdict:
        """Count one request and answer it (the caller sends the 429 when `refusal` is set)."""
        name, major, bound_globally = classify(method, template, params)
        now = self.clock()
        window = self._window(name, major)
        stats = self.stats
        stats.requests += 1
        stats.by_bucket[name] = stats.by_bucket.get(name, 0) + 1
        if now < window.wait_until or (bound_globally and now < self._global.wait_until):
            stats.requests_during_wait += 1
        if bound_globally:
            self._global.roll(now)
            if self._global.used >= self._global.limit:
                return self._refuse_globally(now)
            self._global.used += 1
        window.roll(now)
        if window.used >= window.limit:
            return self._refuse(name, window, now)
        window.used += 1
        return Verdict(self._headers(name, window, now))

    def announce(
        self, method: str, template: str, params: Mapping[str, str], wait: float, *, global_: bool
    ) -> None:
        """Record a wait a 429 announced from elsewhere (an injected fault), as if it were ours."""
        name, major, _ = classify(method, template, params)
        until = self.clock() + wait
        window = self._global if global_ else self._window(name, major)
        window.wait_until = max(window.wait_until, until)
        self.stats.too_many_requests += 1
        self.stats.injected_too_many_requests += 1
        self.stats.global_too_many_requests += int(global_)

    def _window(self, name: str, major: str) -> _Window:
        key = (name, major)
        if key not in self._windows:
            bucket = getattr(self.limits, name, None)
            if not isinstance(bucket, Bucket):
                bucket = self.limits.other
            self._windows[key] = _Window(bucket.limit, bucket.per)
        return self._windows[key]

    def _headers(self, name: str, window: _Window, now: float) -> dict[str, str]:
        after = _ceil_ms(window.reset_after(now))
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(max(0, window.limit - window.used)),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}",
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": bucket_hash(name),
        }

    def _refuse(self, name: str, window: _Window, now: float) -> Verdict:
        wait = _ceil_ms(window.reset_after(now))
        window.wait_until = max(window.wait_until, now + wait)
        self.stats.too_many_requests += 1
        headers = {
            **self._headers(name, window, now),
            "Retry-After": str(max(1, math.ceil(wait))),
            "X-RateLimit-Scope": "user",
        }
        return Verdict(headers, {"message": RATE_LIMITED, "retry_after": wait, "global": False})

    def _refuse_globally(self, now: float) -> Verdict:
        wait = _ceil_ms(self._global.reset_after(now))
        self._global.wait_until = max(self._global.wait_until, now + wait)
        self.stats.too_many_requests += 1
        self.stats.global_too_many_requests += 1
        headers = {
            "Retry-After": str(max(1, math.ceil(wait))),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        }
        return Verdict(headers, {"message": RATE_LIMITED, "retry_after": wait, "global": True})


class Unlimited(RateLimiter):
    """No limit at all (for the few tests that opt out): headers of a bucket never exhausted."""

    def check(self, method: str, template: str, params: Mapping[str, str]) -> Verdict:
        name, _, _ = classify(method, template, params)
        self.stats.requests += 1
        self.stats.by_bucket[name] = self.stats.by_bucket.get(name, 0) + 1
        return Verdict(
            {
                "X-RateLimit-Limit": "50",
                "X-RateLimit-Remaining": "49",
                "X-RateLimit-Reset": f"{time.time() + 0.1:.3f}",
                "X-RateLimit-Reset-After": "0.100",
                "X-RateLimit-Bucket": bucket_hash(name),
            }
        )


def bucket_hash(name: str) -> str:
    """An opaque bucket id, as Discord's (it names the bucket, not the resource)."""
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:32]


def _ceil_ms(seconds: float) -> float:
    """Rounded up to the millisecond, so a client that waits exactly this is past the window."""
    return math.ceil(seconds * 1000) / 1000


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
