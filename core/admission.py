"""Admission: who may ask (allow-lists), how much at once (per-user in-flight and burst limits),
at which fidelity, and the atomic quota reservation that turns a request into a job.

A request turned away here costs nothing. Each user's in-flight count lives here too: a place is
held while a job is admitted or resumed, and given back when the job settles or leaves.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import AccessDeniedError, RateLimitedError, TooManyInFlightError
from core.fidelity import check_fidelity
from core.jobs import Job, NewJob
from core.platform import RetouchRequest
from core.preferences import Preferences, pick_fidelity
from core.quota import QuotaPolicy
from core.settings import Settings
from core.store import ChatSettings, JobStore, QuotaExceededError

User = tuple[str, str]
"""A user as (platform, user id)."""


@dataclass
class _UserLoad:
    in_flight: int = 0
    recent: deque[float] = field(default_factory=deque)
    """When the user's recent jobs were admitted (the last minute's, for the burst limit)."""


class Admission:
    """The checks a request passes before it is a job, and the per-user counts they read."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        policy: QuotaPolicy,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._store = store
        self._policy = policy
        self._clock = clock
        self._preferences = Preferences(store)
        self._users: defaultdict[User, _UserLoad] = defaultdict(_UserLoad)

    async def admit(self, request: RetouchRequest, *, owner: str) -> Job:
        """The request as a queued job claimed by `owner`, its quota reserved; a place is held.

        Raises an `AdmissionError`, `FidelityError` or `QuotaExceededError` (with `resets_at`)
        having charged nothing and held nothing.
        """
        self._check_access(request)
        load = self._users[(request.platform, request.user_id)]
        self._check_rate(request, load)
        group = request.chat_id if request.is_group else None
        chat = await self._preferences.chat(request.platform, group)
        fidelity = await self._fidelity_for(request, chat)
        now = self._clock()
        user_limit, chat_limit = self._policy.limits_for(
            request.platform,
            request.user_id,
            request.chat_id,
            request.is_group,
            chat.daily_limit if chat is not None else None,
        )
        new = NewJob(
            platform=request.platform,
            user_id=request.user_id,
            chat_id=request.chat_id,
            reply_target=request.reply_target,
            input_ref=request.input_ref,
            fidelity=fidelity,
            source_update=request.source_update,
        )
        load.in_flight += 1  # before the await, so concurrent requests see it
        try:
            job = await self._store.reserve(
                new,
                day=self._policy.day_key(now),
                user_limit=user_limit,
                chat_limit=chat_limit,
                owner=owner,
            )
        except QuotaExceededError as exc:
            load.in_flight -= 1
            exc.params.update(resets_at=self._policy.next_reset(now), tz=self._policy.tz, now=now)
            raise
        except BaseException:
            load.in_flight -= 1
            raise
        load.recent.append(now)
        return job

    def hold(self, user: User) -> None:
        """Count one more job of `user` in flight (one resumed after a restart or adopted)."""
        self._users[user].in_flight += 1

    def release(self, user: User) -> None:
        """Give back a place `admit` or `hold` took."""
        load = self._users.get(user)
        if load is not None and load.in_flight > 0:
            load.in_flight -= 1

    def _check_access(self, request: RetouchRequest) -> None:
        users = self._settings.access_allowed_users
        chats = self._settings.access_allowed_chats
        if self._policy.is_admin(request.platform, request.user_id) or not (users or chats):
            return
        if f"{request.platform}:{request.user_id}" in users:
            return
        if f"{request.platform}:{request.chat_id}" in chats:
            return
        raise AccessDeniedError("This bot is private; ask its operator for access.")

    def _check_rate(self, request: RetouchRequest, load: _UserLoad) -> None:
        if self._policy.is_admin(request.platform, request.user_id):
            return
        limit = self._settings.quota_max_in_flight_per_user
        if load.in_flight >= limit:
            raise TooManyInFlightError(
                f"You already have {load.in_flight} photos in progress; wait for them to finish.",
                limit=limit,
            )
        burst = self._settings.quota_burst_per_minute
        if not burst:
            return
        now = self._clock()
        while load.recent and load.recent[0] <= now - 60:
            load.recent.popleft()
        if len(load.recent) >= burst:
            retry_after = max(1, round(load.recent[0] + 60 - now))
            raise RateLimitedError(
                f"Too many photos in a minute; try again in {retry_after} s.",
                retry_after=retry_after,
                limit=burst,
            )

    async def _fidelity_for(self, request: RetouchRequest, chat: ChatSettings | None) -> float:
        """The request's own fidelity, else the saved defaults (`core.preferences`)."""
        if request.fidelity is not None:
            return check_fidelity(request.fidelity)
        user = await self._store.get_user_settings(request.platform, request.user_id)
        return pick_fidelity(None, user, chat, self._settings.retouch_default_fidelity)
