"""Admission: who may ask (allow-lists), how much at once (per-user in-flight and burst limits),
at which fidelity, and the atomic quota reservation that turns a request into a job.

A request turned away here costs nothing. The in-flight and burst limits are counted by the store
inside the reservation's transaction (the user's unfinished jobs, and those created in the last
minute), so replicas sharing a store together admit exactly the limits.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import AccessDeniedError
from core.fidelity import check_fidelity
from core.jobs import Job, NewJob
from core.platform import RetouchRequest
from core.preferences import Preferences, pick_fidelity
from core.quota import QuotaPolicy
from core.settings import Settings
from core.store import ChatSettings, JobStore, QuotaExceededError


class Admission:
    """The checks a request passes before it is a job."""

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

    async def admit(self, request: RetouchRequest, *, owner: str) -> Job:
        """The request as a queued job claimed by `owner`, its quota reserved.

        Raises an `AdmissionError` (`TooManyInFlightError`, `RateLimitedError` with
        `retry_after`, ...), `FidelityError` or `QuotaExceededError` (with `resets_at`) having
        charged nothing.
        """
        self._check_access(request)
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
        exempt = self._policy.is_admin(request.platform, request.user_id)
        try:
            return await self._store.reserve(
                new,
                day=self._policy.day_key(now),
                user_limit=user_limit,
                chat_limit=chat_limit,
                owner=owner,
                max_in_flight=None if exempt else self._settings.quota_max_in_flight_per_user,
                max_per_minute=None if exempt else self._settings.quota_burst_per_minute or None,
            )
        except QuotaExceededError as exc:
            exc.params.update(resets_at=self._policy.next_reset(now), tz=self._policy.tz, now=now)
            raise

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

    async def _fidelity_for(self, request: RetouchRequest, chat: ChatSettings | None) -> float:
        """The request's own fidelity, else the saved defaults (`core.preferences`)."""
        if request.fidelity is not None:
            return check_fidelity(request.fidelity)
        user = await self._store.get_user_settings(request.platform, request.user_id)
        return pick_fidelity(None, user, chat, self._settings.retouch_default_fidelity)
